//! From flags and configuration file to the simulator's inputs.
//!
//! Precedence, highest first: command-line flags, the `--config` file, the defaults (those of
//! [`EngineConfig::new`], [`Policy::new`], the llama-3.1-8b / h100-sxm presets).

use anyhow::anyhow;
use augur::core::engine::{EngineConfig, EngineConfigError};
use augur::core::kv::KvConfigError;
use augur::core::policy::{MlfqParams, Policy, PolicyKind, TimeCosts};
use augur::cost::{BatchShape, CostKind, CostModel};
use augur::metrics::Slo;
use augur::predict::{Predictor, PredictorSpec};
use augur::sim::tenants::TenantSpec;
use augur::sim::{RUN_BYTES_PER_REQUEST, SimConfig, TRACE_REQUEST_BYTES, run_memory_bytes};
use augur::trace::{self, LoadOptions, SyntheticSpec, Trace, TraceError};

use super::config_file::FileConfig;
use super::options::{CommonOpts, DEFAULT_GPU, DEFAULT_MODEL, PolicyName, PolicyOpts};
use super::{CliResult, Failure, usage};

/// Trail's cutoff when none is given.
pub const DEFAULT_TRAIL_CUTOFF: f64 = 0.8;
/// One-bit threshold (tokens) when none is given.
pub const DEFAULT_ONEBIT_THRESHOLD: f64 = 256.0;
/// Relative deadline (s) of slack and EDF when none is given.
pub const DEFAULT_DEADLINE_S: f64 = 30.0;

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
    /// `--max-memory` in bytes.
    pub max_memory_bytes: u64,
    /// Where the trace's tenants came from (the `--tenants` spec, or `column`); `None` when it
    /// has none, so runs report no per-tenant service.
    pub tenants: Option<String>,
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
    cost_kind: Option<&str>,
    file: &FileConfig,
) -> CliResult<CostModel> {
    let mut cfg = file.cost_config();
    if let Some(k) = cost_kind {
        cfg.cost.kind = Some(CostKind::parse(k).map_err(|e| usage(e.context("--cost")))?);
    }
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
    /// Resolves the shared options (reads the configuration file and the trace). `copies`
    /// rate-scaled copies of the trace and `concurrent` runs at once are planned for; a
    /// synthetic trace whose runs would not fit in `--max-memory` is refused before it is
    /// generated.
    pub fn new(c: &CommonOpts, copies: usize, concurrent: usize) -> CliResult<Setup> {
        let file = match &c.config {
            Some(path) => FileConfig::load(path).map_err(usage)?,
            None => FileConfig::default(),
        };
        let cost = cost_model(
            c.model.as_deref(),
            c.gpu.as_deref(),
            c.cost_kind.as_deref(),
            &file,
        )?;
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
        let max_memory_bytes = (c.max_memory * (1u64 << 30) as f64).min(u64::MAX as f64) as u64;
        if let Some(rest) = c.trace.strip_prefix("synthetic:") {
            let spec = SyntheticSpec::parse(rest).map_err(trace_failure)?;
            let n = c.requests.map_or(spec.n, |r| r.min(spec.n)) as u64;
            let mut probe = engine;
            probe.device_blocks = match e.kv_blocks {
                Some(b) => b,
                None => cost.kv_capacity_blocks(probe.block_size).unwrap_or(1),
            };
            check_synthetic_memory(n, &probe, max_memory_bytes, copies, concurrent)?;
        }
        let tenant_spec = c
            .tenants
            .as_deref()
            .map(|t| TenantSpec::parse(t, c.seed))
            .transpose()
            .map_err(usage)?;
        let mut trace = load_trace(&c.trace, &opts)?;
        let tenants = match tenant_spec {
            Some(spec) => {
                spec.apply(&mut trace).map_err(usage)?;
                Some(spec.text().to_owned())
            }
            None => (!trace.tenants.is_empty()).then(|| "column".to_owned()),
        };
        Ok(Setup {
            trace,
            tenants,
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
            max_memory_bytes,
        })
    }

    /// The policy named `name` with the resolved parameters.
    pub fn policy(&self, name: PolicyName) -> Policy {
        build_policy(name, &self.policy, &self.cost, self.saturating_batch())
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
        if self.kv_blocks.is_none() {
            check_derived_kv_blocks(&self.cost, engine.block_size)?;
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
        resolved
            .layout()
            .map_err(|e| usage(anyhow!("invalid configuration: {e}{}", flag_hint(&e))))?;
        Ok(cfg)
    }

    /// Refuses a batch of runs whose estimated memory (the trace and its rate-scaled copies,
    /// plus `concurrent` runs at once, each with its engine storage and per-request records)
    /// is over `--max-memory`.
    pub fn check_memory(&self, cfg: &SimConfig, copies: usize, concurrent: usize) -> CliResult {
        let trace = &self.trace;
        let tool_bytes: u64 = trace
            .requests
            .iter()
            .map(|r| {
                (r.tool_calls.len() * std::mem::size_of::<augur::trace::ToolCall>()
                    + r.prefix.as_ref().map_or(0, |p| p.ids.len() * 8)) as u64
            })
            .sum();
        let trace_bytes = trace.len() as u64 * TRACE_REQUEST_BYTES + tool_bytes;
        let engine = cfg
            .resolved_engine(trace)
            .map_err(|e| usage(anyhow!("{e:#}")))?;
        let run = run_memory_bytes(trace.len() as u64, &engine).unwrap_or(u64::MAX);
        let total = trace_bytes
            .saturating_mul(1 + copies as u64)
            .saturating_add(run.saturating_mul(concurrent.max(1) as u64));
        check_budget(total, self.max_memory_bytes, "this run")
    }
}

/// Fails with the estimate and the flag to change when `bytes` is over `limit`.
fn check_budget(bytes: u64, limit: u64, what: &str) -> CliResult {
    if bytes > limit {
        return Err(usage(anyhow!(
            "{what} would need about {} of memory (trace, per-request records and the engine's \
             storage), over the --max-memory limit of {}: use fewer requests (--requests, or \
             `n` of a synthetic trace), a smaller --kv-blocks / --host-blocks, or raise \
             --max-memory (in GiB; default {DEFAULT_MAX_MEMORY_GIB})",
            fmt_gib(bytes),
            fmt_gib(limit)
        )));
    }
    Ok(())
}

/// Bytes as MiB or GiB with one decimal (`12.5 MiB`, `46.2 GiB`), `{:e}` form when huge.
fn fmt_gib(bytes: u64) -> String {
    let g = bytes as f64 / (1u64 << 30) as f64;
    if g < 1.0 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else if g < 1e6 {
        format!("{g:.1} GiB")
    } else {
        format!("{g:.2e} GiB")
    }
}

/// The KV capacity the cost model derives must be a block count the engine takes: at least
/// one block, at most 2^31; the error names the flags that set it.
fn check_derived_kv_blocks(cost: &CostModel, block_size: u32) -> CliResult {
    let blocks = cost
        .kv_capacity_blocks(block_size)
        .map_err(|e| usage(e.context("deriving the KV capacity from --model and --gpu")))?;
    if blocks == 0 {
        return Err(usage(anyhow!(
            "--block-size {block_size}: one block of {block_size} tokens does not fit in the \
             KV memory of `{}` on `{}` (the derived KV capacity is 0 blocks); use a smaller \
             --block-size (e.g. 16) or set --kv-blocks",
            cost.model.name,
            cost.gpu.name
        )));
    }
    if blocks > MAX_DERIVED_BLOCKS {
        return Err(usage(anyhow!(
            "--model `{}` on --gpu `{}` with --block-size {block_size} gives {blocks} KV blocks, \
             more than the engine's 2^31: use a lower tensor-parallel degree (-tpN) or a larger \
             --block-size, or set --kv-blocks",
            cost.model.name,
            cost.gpu.name
        )));
    }
    Ok(())
}

/// The most device blocks the engine takes (2^31).
const MAX_DERIVED_BLOCKS: u32 = 1 << 31;

/// `--max-memory`'s default, in GiB (fixed, not a fraction of the machine's memory, so that a
/// run is refused or not the same way everywhere).
pub const DEFAULT_MAX_MEMORY_GIB: f64 = 8.0;

/// Refuses, before generating it, a synthetic trace of `n` requests whose runs would need more
/// than `limit` bytes (`engine` with the device blocks resolved; `copies` rate-scaled copies of
/// the trace and `concurrent` runs at once).
pub fn check_synthetic_memory(
    n: u64,
    engine: &EngineConfig,
    limit: u64,
    copies: usize,
    concurrent: usize,
) -> CliResult {
    let trace_bytes = n.saturating_mul(TRACE_REQUEST_BYTES);
    let mut e = *engine;
    e.max_requests = n.clamp(1, u64::from(u32::MAX / 2 - 1)) as u32;
    e.max_running = e.max_running.min(e.max_requests);
    e.hash_capacity = (16 * u64::from(e.max_requests)).min(u64::from(u32::MAX / 4)) as u32;
    // An invalid configuration has no layout: count the records only here and leave the
    // error, which names the flag, to the validation that follows.
    let run = run_memory_bytes(n, &e).unwrap_or(n.saturating_mul(RUN_BYTES_PER_REQUEST));
    let total = trace_bytes
        .saturating_mul(1 + copies as u64)
        .saturating_add(run.saturating_mul(concurrent.max(1) as u64));
    check_budget(total, limit, &format!("a synthetic trace of {n} requests"))
}

/// The flag, file key and valid range behind an invalid engine or policy field, as a suffix.
fn flag_hint(e: &EngineConfigError) -> String {
    let field = match e {
        EngineConfigError::Field(f) => *f,
        EngineConfigError::Policy(p) => p.0,
        EngineConfigError::Kv(KvConfigError::ZeroBlockSize) => "block_size",
        EngineConfigError::Kv(KvConfigError::ZeroDeviceBlocks) => "kv_blocks",
        EngineConfigError::Kv(KvConfigError::TooManyBlocks) => {
            return " (set by --kv-blocks and --host-blocks, or `kv_blocks` and `host_blocks` in \
                    the configuration file; device blocks must be at most 2^31 and device + host \
                    blocks below 2^32 - 1)"
                .to_string();
        }
        EngineConfigError::Kv(_) | EngineConfigError::TooLarge => {
            return " (lower --kv-blocks, --host-blocks or the number of requests)".to_string();
        }
    };
    let Some((flag, range)) = flag_of(field) else {
        return String::new();
    };
    format!(
        ": --{flag} must be {range} (also `{}` in the configuration file)",
        flag.replace('-', "_")
    )
}

/// The flag behind an engine or policy field, and its valid range in words.
fn flag_of(field: &str) -> Option<(&'static str, &'static str)> {
    Some(match field {
        "max_running" => ("max-running", "an integer ≥ 1"),
        "token_budget" => ("token-budget", "an integer ≥ 1"),
        "watermark" => ("watermark", "a fraction in [0, 1)"),
        "priority_margin" => ("margin", "a finite number ≥ 0"),
        "max_preemptions_per_step" => ("max-preemptions", "an integer ≥ 1"),
        "admission.headroom" => ("admission", "predicted:H with H a finite number ≥ 0"),
        "block_size" => ("block-size", "an integer ≥ 1"),
        "kv_blocks" => ("kv-blocks", "an integer ≥ 1"),
        "host_blocks" => ("host-blocks", "an integer ≥ 0"),
        "aging_per_s" => ("aging", "a finite number ≥ 0"),
        "overrun.factor" => ("overrun", "negative, clamp or rescale:F with F > 1"),
        "default_deadline_us" => ("default-deadline-s", "a finite number ≥ 0"),
        "cutoff" => ("trail-cutoff", "a finite number ≥ 0"),
        "base_quantum" => ("mlfq-quantum", "a finite number ≥ 1"),
        "growth" => ("mlfq-growth", "a finite number ≥ 1"),
        "levels" => ("mlfq-levels", "an integer in 1..=64"),
        "prefill_weight" => ("mlfq-prefill-weight", "a finite number ≥ 0"),
        "threshold" => ("onebit-threshold", "a finite number ≥ 0"),
        "decode_us_per_token" => ("slack-decode-us", "a finite number ≥ 0"),
        "prefill_us_per_token" => ("slack-prefill-us", "a finite number ≥ 0"),
        "time.prefill_us_per_token" => ("time-prefill-us", "a finite number ≥ 0"),
        "time.decode_us_per_token" => ("time-decode-us", "a finite number ≥ 0"),
        "time.context_us_per_token" => ("time-context-us", "a finite number ≥ 0"),
        _ => return None,
    })
}

/// Builds a policy from its name and parameters. Parameters of other policies are ignored;
/// out-of-range values are caught by the engine's validation, which names them.
/// sprpt-time and trail-time price a decode step at a batch of `time_batch` requests (see
/// [`service_costs`]).
pub fn build_policy(name: PolicyName, p: &PolicyOpts, cost: &CostModel, time_batch: u32) -> Policy {
    let kind = match name {
        PolicyName::Fcfs | PolicyName::Fair => PolicyKind::Fcfs,
        PolicyName::Priority => PolicyKind::Priority,
        PolicyName::Sjf => PolicyKind::Sjf,
        PolicyName::Pspjf => PolicyKind::Pspjf,
        PolicyName::Sprpt => PolicyKind::Sprpt,
        PolicyName::Trail => PolicyKind::Trail {
            cutoff: p.trail_cutoff.unwrap_or(DEFAULT_TRAIL_CUTOFF),
        },
        PolicyName::SprptTime => PolicyKind::SprptTime(time_costs_of(p, cost, time_batch)),
        PolicyName::TrailTime => PolicyKind::TrailTime {
            cutoff: p.trail_cutoff.unwrap_or(DEFAULT_TRAIL_CUTOFF),
            costs: time_costs_of(p, cost, time_batch),
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

/// The batch at which sprpt-time and trail-time price a decode step where there is no trace
/// to size it from (`augur demo`); elsewhere it is [`Setup::saturating_batch`].
pub const TIME_RANK_BATCH: u32 = 32;

/// Context (tokens) between the two decode iterations whose difference prices a context token.
const CONTEXT_PROBE_TOKENS: u32 = 4096;

/// Per-token service costs from the cost model, with a decode batch of `batch` requests (the
/// server is shared, so a request's share of a decode iteration is 1/`batch` of it):
/// - prefill: the time of one 2,048-token prefill iteration / 2,048;
/// - decode: the time of a `batch`-request decode iteration at 1 token of context / `batch`;
/// - context: (the same iteration at 1 + 4,096 tokens of context − at 1) / (`batch` × 4,096),
///   the KV read per context token per step.
pub fn service_costs(cost: &CostModel, batch: u32) -> TimeCosts {
    let b = batch.max(1);
    let mut prefill = BatchShape::new();
    prefill.add(2048, 0);
    let short = cost.iteration_time_us(&BatchShape::uniform_decode(b, 1));
    let long = cost.iteration_time_us(&BatchShape::uniform_decode(b, 1 + CONTEXT_PROBE_TOKENS));
    let b = f64::from(b);
    TimeCosts {
        prefill_us_per_token: cost.iteration_time_us(&prefill) / 2048.0,
        decode_us_per_token: short / b,
        context_us_per_token: ((long - short) / (b * f64::from(CONTEXT_PROBE_TOKENS))).max(0.0),
    }
}

/// The prefill attention cost per (token, earlier token) pair, µs: (a 2,048-token prefill chunk
/// after 4,096 cached tokens − the same chunk after none) / (2,048 × 4,096). Prefilling `x`
/// tokens costs about `q·x²/2` on top of `p·x`: for Mooncake's longest prompts (85k tokens at
/// p99) this term is larger than the linear one.
fn prefill_pair_us(cost: &CostModel) -> f64 {
    let mut fresh = BatchShape::new();
    fresh.add(2048, 0);
    let mut late = BatchShape::new();
    late.add(2048, CONTEXT_PROBE_TOKENS);
    let d = cost.iteration_time_us(&late) - cost.iteration_time_us(&fresh);
    (d / (2048.0 * f64::from(CONTEXT_PROBE_TOKENS))).max(0.0)
}

/// sprpt-time's and trail-time's costs: the flags where given, else [`service_costs`] at
/// `batch`.
fn time_costs_of(p: &PolicyOpts, cost: &CostModel, batch: u32) -> TimeCosts {
    let d = service_costs(cost, batch);
    TimeCosts {
        prefill_us_per_token: p.time_prefill_us.unwrap_or(d.prefill_us_per_token),
        decode_us_per_token: p.time_decode_us.unwrap_or(d.decode_us_per_token),
        context_us_per_token: p.time_context_us.unwrap_or(d.context_us_per_token),
    }
}

/// How `--load RHO` maps to a rate scale on one trace (see [`Setup::load_scale`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadScale {
    /// The load asked for.
    pub load: f64,
    /// The rate scale that gives it.
    pub rate_scale: f64,
    /// The trace's own offered load (at rate scale 1).
    pub trace_load: f64,
    /// The saturating batch the capacity is computed at.
    pub batch: u32,
    /// The offered work, seconds of one replica at that batch.
    pub work_s: f64,
    /// The trace's span (first to last arrival), seconds.
    pub duration_s: f64,
    /// Replicas sharing the work: the load is per replica, so the cluster is offered
    /// `replicas` × `load` of one replica's capacity.
    pub replicas: usize,
}

impl std::fmt::Display for LoadScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = if self.replicas > 1 {
            format!(" per replica on {} replicas", self.replicas)
        } else {
            String::new()
        };
        write!(
            f,
            "--load {}{per}: {:.1} s of work at a saturating batch of {} over {:.1} s of arrivals \
             (the trace's own load {:.3} on one replica) -> rate scale {:.4}",
            augur::report::compact(self.load),
            self.work_s,
            self.batch,
            self.duration_s,
            self.trace_load,
            self.rate_scale
        )
    }
}

impl Setup {
    /// The batch at which a replica saturates on this trace: min(max running,
    /// ⌊KV tokens / mean(prompt + output/2)⌋), at least 1 (max running alone when the KV
    /// capacity cannot be derived; running the simulation reports that error).
    pub fn saturating_batch(&self) -> u32 {
        let max_running = self.engine.max_running.max(1);
        let t = &self.trace;
        let block_size = self.engine.block_size;
        let blocks = match self.kv_blocks {
            Some(b) => b,
            None => match self.cost.kv_capacity_blocks(block_size) {
                Ok(b) => b,
                Err(_) => return max_running,
            },
        };
        if t.is_empty() {
            return max_running;
        }
        let kv_tokens = f64::from(blocks) * f64::from(block_size);
        let mean_context = t
            .requests
            .iter()
            .map(|r| f64::from(r.prompt_tokens) + 0.5 * f64::from(r.output_tokens))
            .sum::<f64>()
            / t.len() as f64;
        let by_kv = (kv_tokens / mean_context.max(1.0)).floor().max(1.0);
        f64::from(max_running).min(by_kv) as u32
    }

    /// The rate scale that makes the trace's offered work `rho` of one replica's capacity.
    ///
    /// The capacity model: a replica runs `B` requests at once, `B` = min(max running,
    /// ⌊KV tokens / mean(prompt + output/2)⌋) (the batch at which the KV cache or the batch
    /// limit saturates), and a request's work is its service time at that batch,
    /// `s = prompt·(p + q·prompt/2) + n·(d_B + c_B·(prompt + n/2))` with `n` its output tokens,
    /// `p`, `d_B`, `c_B` from [`service_costs`] at batch `B` and `q` the prefill attention cost
    /// per token pair (prefix-cache hits not subtracted). A
    /// replica serves one second of work per second, so the trace's load is Σs / duration and
    /// the rate scale is `rho` / that.
    pub fn load_scale(&self, rho: f64) -> CliResult<LoadScale> {
        self.load_scale_over(rho, 1)
    }

    /// [`Setup::load_scale`] for `replicas` replicas sharing the trace: `rho` is each
    /// replica's load, so the rate scale is `replicas` times the one-replica one.
    pub fn load_scale_over(&self, rho: f64, replicas: usize) -> CliResult<LoadScale> {
        if !(rho.is_finite() && rho > 0.0) {
            return Err(usage(anyhow!(
                "--load must be finite and > 0, got {}",
                augur::report::compact(rho)
            )));
        }
        let t = &self.trace;
        let duration_s = t.duration_us() as f64 * 1e-6;
        if t.len() < 2 || duration_s <= 0.0 {
            return Err(usage(anyhow!(
                "--load: the trace's arrivals span no time (one request, or all at once), so it \
                 has no load to scale; use --rate-scale"
            )));
        }
        let batch = self.saturating_batch();
        let c = service_costs(&self.cost, batch);
        let q = prefill_pair_us(&self.cost);
        let work_us: f64 = t
            .requests
            .iter()
            .map(|r| {
                let x = f64::from(r.prompt_tokens);
                let out = f64::from(r.output_tokens);
                x * (c.prefill_us_per_token + q * x * 0.5)
                    + out * (c.decode_us_per_token + c.context_us_per_token * (x + out * 0.5))
            })
            .sum();
        let work_s = work_us * 1e-6;
        let trace_load = work_s / duration_s;
        if !(trace_load.is_finite() && trace_load > 0.0) {
            return Err(usage(anyhow!(
                "--load: the trace's offered work is {work_s} s, so no rate scale gives a load"
            )));
        }
        Ok(LoadScale {
            load: rho,
            rate_scale: rho * replicas.max(1) as f64 / trace_load,
            replicas: replicas.max(1),
            trace_load,
            batch,
            work_s,
            duration_s,
        })
    }
}
