//! From flags and configuration file to the simulator's inputs.
//!
//! Precedence, highest first: command-line flags, the `--config` file, the defaults (those of
//! [`EngineConfig::new`], [`Policy::new`], the llama-3.1-8b / h100-sxm presets).

use anyhow::anyhow;
use augur::core::engine::{EngineConfig, EngineConfigError};
use augur::core::kv::KvConfigError;
use augur::core::policy::{MlfqParams, Policy, PolicyKind};
use augur::cost::{BatchShape, CostModel};
use augur::metrics::Slo;
use augur::predict::{Predictor, PredictorSpec};
use augur::sim::SimConfig;
use augur::trace::{self, LoadOptions, Trace, TraceError};

use super::config_file::FileConfig;
use super::options::{CommonOpts, DEFAULT_GPU, DEFAULT_MODEL, PolicyName, PolicyOpts};
use super::{CliResult, Failure, usage};

/// Trail's cutoff when none is given.
pub const DEFAULT_TRAIL_CUTOFF: f64 = 0.8;
/// One-bit threshold (tokens) when none is given.
pub const DEFAULT_ONEBIT_THRESHOLD: f64 = 256.0;
/// Relative deadline (s) of slack and EDF when none is given.
pub const DEFAULT_DEADLINE_S: f64 = 30.0;

/// The most memory the engine's storage may take (the simulator allocates it up front).
pub const MAX_ENGINE_BYTES: u64 = 16 << 30;

/// The most device + host KV blocks a run may have.
pub const MAX_BLOCKS: u64 = 1 << 28;

/// Everything resolved that does not depend on the policy, predictor or rate scale.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The trace as loaded (not rate-scaled).
    pub trace: Trace,
    /// The cost model.
    pub cost: CostModel,
    /// The engine configuration, its policy still the default.
    pub engine: EngineConfig,
    /// Policy parameters, flags over file.
    pub policy: PolicyOpts,
    /// Device KV blocks overriding the cost model's capacity.
    pub kv_blocks: Option<u32>,
    /// Output cap sent with every request.
    pub max_output: Option<u32>,
    /// SLOs for goodput.
    pub slo: Slo,
    /// Seed of the predictor noise.
    pub seed: u64,
}

/// Maps a trace error to a failure: bad specs and arguments are usage errors, unreadable or
/// malformed files runtime ones.
fn trace_failure(e: TraceError) -> Failure {
    match e {
        TraceError::Spec { .. } | TraceError::InvalidArgument { .. } => usage(anyhow!("{e}")),
        TraceError::Io { .. } | TraceError::Parse { .. } => {
            Failure::Runtime(anyhow!("loading the trace: {e}"))
        }
    }
}

/// Loads a trace spec (`default` is the built-in demo workload).
pub fn load_trace(spec: &str, opts: &LoadOptions) -> CliResult<Trace> {
    if spec == "default" {
        let mut t = trace::default_workload();
        if let Some(n) = opts.limit {
            t.truncate(n);
        }
        return Ok(t);
    }
    let t = trace::load(spec, opts).map_err(trace_failure)?;
    if t.is_empty() {
        return Err(Failure::Runtime(anyhow!("trace `{spec}` has no requests")));
    }
    Ok(t)
}

/// Scales a trace's arrival rate.
pub fn scaled(trace: &Trace, scale: f64) -> CliResult<Trace> {
    let mut t = trace.clone();
    if scale != 1.0 {
        t.scale_rate(scale).map_err(trace_failure)?;
    }
    Ok(t)
}

/// The cost model: model and GPU presets from the flags, else the file, else the defaults;
/// then the file's single-field overrides.
pub fn cost_model(
    model: Option<&str>,
    gpu: Option<&str>,
    file: &FileConfig,
) -> CliResult<CostModel> {
    let mut cfg = file.cost_config();
    if let Some(m) = model {
        cfg.model.preset = Some(m.to_owned());
    }
    if let Some(g) = gpu {
        cfg.gpu.preset = Some(g.to_owned());
    }
    let base = CostModel::preset(DEFAULT_MODEL, DEFAULT_GPU).map_err(usage)?;
    cfg.apply(&base)
        .map_err(|e| usage(e.context("invalid cost model")))
}

impl Setup {
    /// Resolves the shared options (reads the configuration file and the trace).
    pub fn new(c: &CommonOpts) -> CliResult<Setup> {
        let file = match &c.config {
            Some(path) => FileConfig::load(path).map_err(usage)?,
            None => FileConfig::default(),
        };
        let cost = cost_model(c.model.as_deref(), c.gpu.as_deref(), &file)?;
        let e = c.engine.or(&file.engine);
        let mut engine = EngineConfig::new(e.block_size.unwrap_or(16), 1, 1);
        if let Some(v) = e.host_blocks {
            engine.host_blocks = v;
        }
        if let Some(v) = e.max_running {
            engine.max_running = v;
        }
        if let Some(v) = e.token_budget {
            engine.token_budget = v;
        }
        if let Some(v) = e.prefill_chunk {
            engine.prefill_chunk = v;
        }
        if let Some(v) = e.watermark {
            engine.watermark = v;
        }
        if let Some(v) = e.preemption {
            engine.preemption = v.into();
        }
        if let Some(v) = e.admission {
            engine.admission = v.0;
        }
        if let Some(v) = e.margin {
            engine.priority_margin = v;
        }
        if let Some(v) = e.max_preemptions {
            engine.max_preemptions_per_step = v;
        }
        if let Some(v) = e.prefix_caching {
            engine.prefix_caching = v;
        }
        if let Some(v) = e.pause {
            engine.pause = v.into();
        }
        if e.kv_blocks == Some(0) {
            return Err(usage(anyhow!("--kv-blocks must be at least 1")));
        }
        if e.max_output == Some(0) {
            return Err(usage(anyhow!("--max-output must be at least 1")));
        }
        let opts = LoadOptions {
            seed: c.seed,
            lengths_rate: c.lengths_rate,
            limit: c.requests,
        };
        if c.requests == Some(0) {
            return Err(usage(anyhow!("--requests must be at least 1")));
        }
        let trace = load_trace(&c.trace, &opts)?;
        Ok(Setup {
            trace,
            cost,
            engine,
            policy: c.policy.or(&file.policy),
            kv_blocks: e.kv_blocks,
            max_output: e.max_output,
            slo: Slo {
                ttft_s: c.slo_ttft,
                tpot_s: c.slo_tpot,
            },
            seed: c.seed,
        })
    }

    /// The policy named `name` with the resolved parameters.
    pub fn policy(&self, name: PolicyName) -> Policy {
        build_policy(name, &self.policy, &self.cost)
    }

    /// The simulator configuration for one run; checks the engine configuration against the
    /// trace (a usage error names the bad field).
    pub fn sim_config(
        &self,
        policy: Policy,
        predictor: PredictorSpec,
        trace: &Trace,
    ) -> CliResult<SimConfig> {
        let mut engine = self.engine;
        engine.policy = policy;
        let mut cfg = SimConfig::new(
            engine,
            self.cost.clone(),
            Predictor::new(predictor, self.seed),
        );
        cfg.kv_blocks = self.kv_blocks;
        cfg.max_output_cap = self.max_output;
        cfg.slo = self.slo;
        // Validate first with a stand-in KV size, so that the error can name the flag.
        let mut probe = engine;
        probe.device_blocks = self.kv_blocks.unwrap_or(1 << 16);
        probe.max_requests = (trace.len() as u32).max(1);
        probe.max_running = probe.max_running.min(probe.max_requests);
        if let Err(e) = probe.validate() {
            return Err(usage(anyhow!(
                "invalid configuration: {e}{}",
                flag_hint(&e)
            )));
        }
        let resolved = cfg
            .resolved_engine(trace)
            .map_err(|e| usage(anyhow!("{e:#}")))?;
        // Refuse sizes whose storage cannot be allocated rather than abort on allocation
        // (and keep block counts far from the core's u32 index arithmetic).
        let blocks = u64::from(resolved.device_blocks) + u64::from(resolved.host_blocks);
        if blocks > MAX_BLOCKS {
            return Err(usage(anyhow!(
                "{blocks} KV blocks (device + host) is more than the {MAX_BLOCKS} the simulator \
                 allocates: lower --kv-blocks or --host-blocks"
            )));
        }
        let bytes = resolved
            .layout()
            .map_err(|e| usage(anyhow!("invalid configuration: {e}{}", flag_hint(&e))))?
            .bytes();
        if bytes as u64 > MAX_ENGINE_BYTES {
            return Err(usage(anyhow!(
                "the engine's storage would take {:.1} GiB (over the {} GiB limit): lower \
                 --kv-blocks, --host-blocks or the trace length, or raise --block-size",
                bytes as f64 / (1u64 << 30) as f64,
                MAX_ENGINE_BYTES >> 30
            )));
        }
        Ok(cfg)
    }
}

/// The flag (and file key) behind an invalid engine or policy field, as a suffix.
fn flag_hint(e: &EngineConfigError) -> String {
    let field = match e {
        EngineConfigError::Field(f) => *f,
        EngineConfigError::Policy(p) => p.0,
        EngineConfigError::Kv(KvConfigError::ZeroBlockSize) => "block_size",
        EngineConfigError::Kv(KvConfigError::ZeroDeviceBlocks) => "kv_blocks",
        EngineConfigError::Kv(KvConfigError::TooManyBlocks) => {
            return " (set by --kv-blocks and --host-blocks, or `kv_blocks` and `host_blocks` in \
                    the configuration file)"
                .to_string();
        }
        EngineConfigError::Kv(_) | EngineConfigError::TooLarge => {
            return " (lower --kv-blocks, --host-blocks or --max-requests)".to_string();
        }
    };
    let flag = match field {
        "max_running" => "max-running",
        "token_budget" => "token-budget",
        "watermark" => "watermark",
        "priority_margin" => "margin",
        "max_preemptions_per_step" => "max-preemptions",
        "admission.headroom" => "admission",
        "block_size" => "block-size",
        "kv_blocks" => "kv-blocks",
        "host_blocks" => "host-blocks",
        "aging_per_s" => "aging",
        "overrun.factor" => "overrun",
        "default_deadline_us" => "default-deadline-s",
        "cutoff" => "trail-cutoff",
        "base_quantum" => "mlfq-quantum",
        "growth" => "mlfq-growth",
        "levels" => "mlfq-levels",
        "prefill_weight" => "mlfq-prefill-weight",
        "threshold" => "onebit-threshold",
        "decode_us_per_token" => "slack-decode-us",
        "prefill_us_per_token" => "slack-prefill-us",
        _ => return String::new(),
    };
    format!(
        " (set by --{flag}, or `{}` in the configuration file)",
        flag.replace('-', "_")
    )
}

/// Builds a policy from its name and parameters. Parameters of other policies are ignored;
/// out-of-range values are caught by the engine's validation, which names them.
pub fn build_policy(name: PolicyName, p: &PolicyOpts, cost: &CostModel) -> Policy {
    let kind = match name {
        PolicyName::Fcfs | PolicyName::Fair => PolicyKind::Fcfs,
        PolicyName::Priority => PolicyKind::Priority,
        PolicyName::Sjf => PolicyKind::Sjf,
        PolicyName::Pspjf => PolicyKind::Pspjf,
        PolicyName::Sprpt => PolicyKind::Sprpt,
        PolicyName::Trail => PolicyKind::Trail {
            cutoff: p.trail_cutoff.unwrap_or(DEFAULT_TRAIL_CUTOFF),
        },
        PolicyName::Las => PolicyKind::Las,
        PolicyName::Mlfq => {
            let d = MlfqParams::default();
            PolicyKind::Mlfq(MlfqParams {
                base_quantum: p.mlfq_quantum.unwrap_or(d.base_quantum),
                growth: p.mlfq_growth.unwrap_or(d.growth),
                levels: p.mlfq_levels.unwrap_or(d.levels),
                prefill_weight: p.mlfq_prefill_weight.unwrap_or(d.prefill_weight),
            })
        }
        PolicyName::Onebit => PolicyKind::OneBit {
            threshold: p.onebit_threshold.unwrap_or(DEFAULT_ONEBIT_THRESHOLD),
            preemptive: !p.onebit_nonpreemptive,
        },
        PolicyName::MemoryTime => PolicyKind::MemoryTime,
        PolicyName::Slack => {
            let (decode, prefill) = per_token_costs_us(cost);
            PolicyKind::Slack {
                decode_us_per_token: p.slack_decode_us.unwrap_or(decode),
                prefill_us_per_token: p.slack_prefill_us.unwrap_or(prefill),
            }
        }
        PolicyName::Edf => PolicyKind::Edf,
    };
    let mut policy = Policy::new(kind);
    policy.fair_share = p.fair_share || name == PolicyName::Fair;
    if let Some(a) = p.aging {
        policy.aging_per_s = a;
    }
    if let Some(o) = p.overrun {
        policy.overrun = o.0;
    }
    if matches!(name, PolicyName::Slack | PolicyName::Edf) {
        policy.default_deadline_us = Some(p.default_deadline_s.unwrap_or(DEFAULT_DEADLINE_S) * 1e6);
    } else if let Some(d) = p.default_deadline_s {
        policy.default_deadline_us = Some(d * 1e6);
    }
    policy
}

/// The policy's name for reports: the name, then `+fair` and `+aging` when they apply.
pub fn policy_label(name: PolicyName, p: &PolicyOpts) -> String {
    let mut s = name.as_str().to_owned();
    if p.fair_share && name != PolicyName::Fair {
        s.push_str("+fair");
    }
    if p.aging.is_some_and(|a| a > 0.0) {
        s.push_str("+aging");
    }
    s
}

/// Slack's default per-token costs from the cost model: the iteration time of a 32-request
/// decode batch at 1,024 tokens of context (each request gets one token per iteration), and a
/// 2,048-token prefill's time per token.
fn per_token_costs_us(cost: &CostModel) -> (f64, f64) {
    let decode = cost.iteration_time_us(&BatchShape::uniform_decode(32, 1024));
    let mut prefill = BatchShape::new();
    prefill.add(2048, 0);
    (decode, cost.iteration_time_us(&prefill) / 2048.0)
}
