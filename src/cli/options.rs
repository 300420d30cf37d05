//! Flags shared by `simulate` and `sweep`, and the parsers of their values.
//!
//! [`EngineOpts`] and [`PolicyOpts`] are both clap argument groups and the `[engine]` and
//! `[policy]` tables of the configuration file (see [`super::config_file`]): a field named
//! `max_running` is the flag `--max-running` and the file key `max_running`. Every field is
//! optional so that [`EngineOpts::or`] can layer the command line over the file over the
//! defaults.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use augur::core::engine::{AdmissionMode, PauseMode, PreemptionMode};
use augur::core::policy::OverrunRule;
use augur::cost::{GpuSpec, ModelSpec};
use augur::predict::{ParsePredictorError, PredictorSpec};
use augur::report::compact;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Deserializer};

/// The default model preset.
pub const DEFAULT_MODEL: &str = "llama-3.1-8b";
/// The default GPU preset.
pub const DEFAULT_GPU: &str = "h100-sxm";

/// A scheduling policy by name (see `augur policies`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyName {
    /// First come, first served (vLLM's default).
    Fcfs,
    /// Static priority class, then arrival (all trace requests share one class).
    Priority,
    /// Shortest predicted job first, non-preemptive.
    Sjf,
    /// Preemptive shortest predicted job first.
    Pspjf,
    /// Shortest predicted remaining processing time.
    Sprpt,
    /// SPRPT that stops preempting past `--trail-cutoff` × the initial prediction.
    Trail,
    /// SPRPT on predicted remaining service time (prefill included), from the cost model.
    SprptTime,
    /// TRAIL on predicted remaining service time: sprpt-time that stops preempting past
    /// `--trail-cutoff` × the initial prediction.
    TrailTime,
    /// Least attained service.
    Las,
    /// Skip-join multi-level feedback queue (FastServe).
    Mlfq,
    /// Predicted short (≤ `--onebit-threshold`) before long.
    Onebit,
    /// Least predicted remaining memory-time (LAMPS).
    MemoryTime,
    /// Least slack: deadline − predicted remaining work.
    Slack,
    /// Earliest deadline first.
    Edf,
    /// FCFS with fair share between tenants (virtual token counters).
    Fair,
}

impl PolicyName {
    /// The name as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::Fcfs => "fcfs",
            PolicyName::Priority => "priority",
            PolicyName::Sjf => "sjf",
            PolicyName::Pspjf => "pspjf",
            PolicyName::Sprpt => "sprpt",
            PolicyName::Trail => "trail",
            PolicyName::SprptTime => "sprpt-time",
            PolicyName::TrailTime => "trail-time",
            PolicyName::Las => "las",
            PolicyName::Mlfq => "mlfq",
            PolicyName::Onebit => "onebit",
            PolicyName::MemoryTime => "memory-time",
            PolicyName::Slack => "slack",
            PolicyName::Edf => "edf",
            PolicyName::Fair => "fair",
        }
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An output format of the commands that print a table or JSON, and no CSV (`mg1`,
/// `reproduce`); each command's help gives its JSON's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TextFormat {
    /// An aligned table.
    Table,
    /// JSON.
    Json,
}

/// How running requests are preempted (`--preemption`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreemptionArg {
    /// Free the KV and recompute it later.
    Recompute,
    /// Copy the KV to the host pool (`--host-blocks`) and back.
    Swap,
    /// Whichever the cost model says is cheaper.
    Auto,
}

impl From<PreemptionArg> for PreemptionMode {
    fn from(p: PreemptionArg) -> Self {
        match p {
            PreemptionArg::Recompute => PreemptionMode::Recompute,
            PreemptionArg::Swap => PreemptionMode::Swap,
            PreemptionArg::Auto => PreemptionMode::Auto,
        }
    }
}

/// What happens to a request's KV while it waits on a tool call (`--pause`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PauseArg {
    /// Keep the KV on the device.
    Preserve,
    /// Free it; recompute on resume.
    Discard,
    /// Copy it to the host pool.
    Swap,
    /// Whichever wastes the least memory-time.
    Auto,
}

impl From<PauseArg> for PauseMode {
    fn from(p: PauseArg) -> Self {
        match p {
            PauseArg::Preserve => PauseMode::Preserve,
            PauseArg::Discard => PauseMode::Discard,
            PauseArg::Swap => PauseMode::Swap,
            PauseArg::Auto => PauseMode::Auto,
        }
    }
}

/// An overrun rule: `negative`, `clamp` or `rescale:F` (F > 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overrun(pub OverrunRule);

impl FromStr for Overrun {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s {
            "negative" => Ok(Overrun(OverrunRule::Negative)),
            "clamp" => Ok(Overrun(OverrunRule::Clamp)),
            _ => match s.strip_prefix("rescale:") {
                Some(f) => match f.trim().parse::<f64>() {
                    Ok(factor) if factor.is_finite() && factor > 1.0 => {
                        Ok(Overrun(OverrunRule::Rescale { factor }))
                    }
                    _ => Err(format!(
                        "`{s}`: the rescale factor `{f}` must be a number > 1"
                    )),
                },
                None => Err(format!(
                    "unknown overrun rule `{s}`; expected negative, clamp or rescale:FACTOR"
                )),
            },
        }
    }
}

/// An admission mode: `eager`, `full-prompt`, `predicted[:HEADROOM]` or `worst-case`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Admission(pub AdmissionMode);

impl FromStr for Admission {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (head, arg) = match s.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (s, None),
        };
        match (head, arg) {
            ("eager", None) => Ok(Admission(AdmissionMode::Eager)),
            ("full-prompt", None) => Ok(Admission(AdmissionMode::FullPrompt)),
            ("worst-case", None) => Ok(Admission(AdmissionMode::WorstCase)),
            ("predicted", None) => Ok(Admission(AdmissionMode::Predicted { headroom: 1.0 })),
            ("predicted", Some(h)) => match h.trim().parse::<f64>() {
                Ok(headroom) if (0.0..=MAX_TOKENS_PARAM).contains(&headroom) => {
                    Ok(Admission(AdmissionMode::Predicted { headroom }))
                }
                _ => Err(format!(
                    "`{s}`: the headroom `{h}` must be a number in [0, {MAX_TOKENS_PARAM}]"
                )),
            },
            _ => Err(format!(
                "unknown admission mode `{s}`; expected eager, full-prompt, predicted[:HEADROOM] or worst-case"
            )),
        }
    }
}

/// Deserializes an optional value from its string form through `FromStr`, so that a
/// configuration file accepts exactly what the flag accepts.
fn from_str_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| s.parse().map_err(serde::de::Error::custom))
        .transpose()
}

/// Parses a rate-scale factor: finite and > 0.
pub fn parse_rate_scale(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(x) => Err(format!(
            "the rate scale must be finite and > 0, got {}",
            compact(x)
        )),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// Parses a load ρ (`--load`, `--loads`): finite and > 0.
pub fn parse_load(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(x) => Err(format!(
            "the load must be finite and > 0, got {}",
            compact(x)
        )),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// Parses a finite number ≥ 0 (seconds, µs, rates).
pub fn parse_nonneg(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        Ok(x) => Err(format!("must be finite and ≥ 0, got {}", compact(x))),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// Parses a token count given as a number in [0, [`MAX_TOKENS_PARAM`]].
pub fn parse_tokens(s: &str) -> Result<f64, String> {
    let x = parse_nonneg(s)?;
    if x > MAX_TOKENS_PARAM {
        return Err(format!(
            "must be at most {MAX_TOKENS_PARAM}, got {}",
            compact(x)
        ));
    }
    Ok(x)
}

/// Parses a finite number > 0.
pub fn parse_positive(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(x) => Err(format!("must be finite and > 0, got {}", compact(x))),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// Largest log-normal σ accepted: beyond it single predictions reach 10¹⁵ tokens and more,
/// which the engine's token counters were not built for.
pub const MAX_SIGMA: f64 = 5.0;
/// Largest one-bit threshold and admission headroom accepted, for the same reason.
pub const MAX_TOKENS_PARAM: f64 = 1e9;

/// Parses a predictor spec ([`PredictorSpec`]'s forms) and bounds its parameters.
pub fn parse_predictor(s: &str) -> Result<PredictorSpec, String> {
    let spec: PredictorSpec = s.parse().map_err(|e: ParsePredictorError| e.to_string())?;
    match spec {
        PredictorSpec::LogNormal { sigma } | PredictorSpec::Refining { sigma }
            if sigma > MAX_SIGMA =>
        {
            Err(format!("`{s}`: SIGMA must be at most {MAX_SIGMA}"))
        }
        PredictorSpec::OneBit { threshold, .. } if threshold > MAX_TOKENS_PARAM => Err(format!(
            "`{s}`: THRESHOLD must be at most {MAX_TOKENS_PARAM} tokens"
        )),
        _ => Ok(spec),
    }
}

/// Checks a model preset name (with an optional `-tpN` suffix).
pub fn parse_model(s: &str) -> Result<String, String> {
    ModelSpec::preset(s)
        .map(|_| s.trim().to_owned())
        .map_err(|e| format!("{e:#}"))
}

/// Checks a GPU preset name.
pub fn parse_gpu(s: &str) -> Result<String, String> {
    GpuSpec::preset(s)
        .map(|_| s.trim().to_owned())
        .map_err(|e| format!("{e:#}"))
}

/// Engine knobs: flags, and the `[engine]` table of the configuration file.
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Engine")]
pub struct EngineOpts {
    /// Tokens per KV block [default: 16].
    #[arg(long, value_name = "TOKENS")]
    pub block_size: Option<u32>,
    /// Device KV blocks, overriding the capacity the cost model derives from GPU memory.
    #[arg(long, value_name = "N")]
    pub kv_blocks: Option<u32>,
    /// Host (swap) KV blocks; 0 disables swapping [default: 0].
    #[arg(long, value_name = "N")]
    pub host_blocks: Option<u32>,
    /// Requests scheduled in one step at most (vLLM's max_num_seqs) [default: 256].
    #[arg(long, value_name = "N")]
    pub max_running: Option<u32>,
    /// Tokens computed in one step at most, prefill and decode together [default: 8192].
    #[arg(long, value_name = "TOKENS")]
    pub token_budget: Option<u32>,
    /// Prefill tokens per request per step at most; 0 = only the token budget [default: 2048].
    #[arg(long, value_name = "TOKENS")]
    pub prefill_chunk: Option<u32>,
    /// Fraction of device blocks kept free when admitting while others run [default: 0.01].
    #[arg(long, value_name = "FRACTION")]
    pub watermark: Option<f64>,
    /// How to preempt a running request [default: auto].
    #[arg(long, value_enum)]
    pub preemption: Option<PreemptionArg>,
    /// What must fit to admit a request: eager, full-prompt, predicted[:HEADROOM] or worst-case
    /// [default: eager].
    #[arg(long, value_name = "MODE")]
    #[serde(default, deserialize_with = "from_str_opt")]
    pub admission: Option<Admission>,
    /// A waiting request displaces a running one only if its rank is lower by more than this
    /// [default: 0].
    #[arg(long, value_name = "RANK", value_parser = parse_nonneg)]
    pub margin: Option<f64>,
    /// Preemptions per step at most [default: 8].
    #[arg(long, value_name = "N")]
    pub max_preemptions: Option<u32>,
    /// Turn prefix caching off (file key: `prefix_caching = false`).
    #[arg(long)]
    #[serde(skip)]
    pub no_prefix_caching: bool,
    /// Prefix caching (configuration file only; the flag is `--no-prefix-caching`).
    #[arg(skip)]
    pub prefix_caching: Option<bool>,
    /// What to do with a paused request's KV during a tool call [default: preserve].
    #[arg(long, value_enum)]
    pub pause: Option<PauseArg>,
    /// Output cap sent with every request; true outputs are clamped to it [default: none].
    #[arg(long, value_name = "TOKENS")]
    pub max_output: Option<u32>,
}

macro_rules! layer {
    ($hi:expr, $lo:expr, $out:ident; $($f:ident),+ $(,)?) => {
        $( $out.$f = $hi.$f.or($lo.$f); )+
    };
}

impl EngineOpts {
    /// `self` where set, else `lower` (command line over file).
    pub fn or(&self, lower: &EngineOpts) -> EngineOpts {
        let mut out = EngineOpts::default();
        layer!(self, lower, out; block_size, kv_blocks, host_blocks, max_running, token_budget,
            prefill_chunk, watermark, preemption, admission, margin, max_preemptions, pause,
            max_output);
        out.prefix_caching = if self.no_prefix_caching {
            Some(false)
        } else {
            self.prefix_caching.or(lower.prefix_caching)
        };
        out
    }
}

/// Policy parameters: flags, and the `[policy]` table of the configuration file.
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Policy parameters")]
pub struct PolicyOpts {
    /// The policy (configuration file only; on the command line it is `--policy`).
    #[arg(skip)]
    pub name: Option<PolicyName>,
    /// Linear aging β: rank units subtracted per second of waiting [default: 0].
    #[arg(long, value_name = "BETA", value_parser = parse_nonneg)]
    pub aging: Option<f64>,
    /// What a rank uses when a request outlives its prediction: negative, clamp or
    /// rescale:FACTOR [default: clamp].
    #[arg(long, value_name = "RULE")]
    #[serde(default, deserialize_with = "from_str_opt")]
    pub overrun: Option<Overrun>,
    /// Fair share between tenants (virtual token counters) on top of the policy.
    #[arg(long)]
    #[serde(default)]
    pub fair_share: bool,
    /// trail: no preemption once generated ≥ C × the initial prediction [default: 0.8].
    #[arg(long, value_name = "C", value_parser = parse_nonneg)]
    pub trail_cutoff: Option<f64>,
    /// onebit: predicted totals at most T tokens are "short" [default: 256].
    #[arg(long, value_name = "T", value_parser = parse_tokens)]
    pub onebit_threshold: Option<f64>,
    /// onebit: a short request does not preempt a running long one.
    #[arg(long)]
    #[serde(default)]
    pub onebit_nonpreemptive: bool,
    /// mlfq: quantum of the first level, in generated tokens (≥ 1) [default: 16].
    #[arg(long, value_name = "Q")]
    pub mlfq_quantum: Option<f64>,
    /// mlfq: each level's quantum is G × the previous one's (≥ 1) [default: 2].
    #[arg(long, value_name = "G")]
    pub mlfq_growth: Option<f64>,
    /// mlfq: number of levels (1..=64) [default: 8].
    #[arg(long, value_name = "L")]
    pub mlfq_levels: Option<u32>,
    /// mlfq: prompt tokens are weighed by W to pick the entry level [default: 0.05].
    #[arg(long, value_name = "W")]
    pub mlfq_prefill_weight: Option<f64>,
    /// slack: predicted µs per output token [default: from the cost model].
    #[arg(long, value_name = "US", value_parser = parse_nonneg)]
    pub slack_decode_us: Option<f64>,
    /// slack: predicted µs per prompt token still to prefill [default: from the cost model].
    #[arg(long, value_name = "US", value_parser = parse_nonneg)]
    pub slack_prefill_us: Option<f64>,
    /// sprpt-time, trail-time: µs of service per prompt token still to prefill [default: from
    /// the cost model, a 2,048-token prefill's time per token].
    #[arg(long, value_name = "US", value_parser = parse_nonneg)]
    pub time_prefill_us: Option<f64>,
    /// sprpt-time, trail-time: µs of service per decode step [default: from the cost model, a
    /// decode iteration of B requests at 1 token of context divided by B, B the saturating
    /// batch min(max running, KV tokens / mean(prompt + output/2))].
    #[arg(long, value_name = "US", value_parser = parse_nonneg)]
    pub time_decode_us: Option<f64>,
    /// sprpt-time, trail-time: µs of service per decode step per context token [default: from
    /// the cost model, the growth of that iteration per context token, divided by B].
    #[arg(long, value_name = "US", value_parser = parse_nonneg)]
    pub time_context_us: Option<f64>,
    /// slack, edf: deadline of every request, seconds after its arrival (traces carry none)
    /// [default: 30].
    #[arg(long, value_name = "S", value_parser = parse_nonneg)]
    pub default_deadline_s: Option<f64>,
}

impl PolicyOpts {
    /// `self` where set, else `lower` (command line over file).
    pub fn or(&self, lower: &PolicyOpts) -> PolicyOpts {
        let mut out = PolicyOpts::default();
        layer!(self, lower, out; name, aging, overrun, trail_cutoff, onebit_threshold,
            mlfq_quantum, mlfq_growth, mlfq_levels, mlfq_prefill_weight, slack_decode_us,
            slack_prefill_us, time_prefill_us, time_decode_us, time_context_us,
            default_deadline_s);
        out.fair_share = self.fair_share || lower.fair_share;
        out.onebit_nonpreemptive = self.onebit_nonpreemptive || lower.onebit_nonpreemptive;
        out
    }
}

/// The workload, model and run settings shared by `simulate` and `sweep`.
#[derive(Args, Clone, Debug)]
pub struct CommonOpts {
    /// The trace: an Azure or lengths-only `.csv`, a Mooncake `.jsonl`,
    /// `synthetic:KEY=VALUE,...` (e.g. `synthetic:n=500,rate=4,output=lognormal:200:1`), or
    /// `default` for the built-in demo workload.
    #[arg(
        long,
        value_name = "FILE|synthetic:SPEC|default",
        default_value = "default"
    )]
    pub trace: String,
    /// Use only the first N requests of the trace.
    #[arg(long, value_name = "N")]
    pub requests: Option<usize>,
    /// Model preset (any may take a `-tpN` suffix) [default: llama-3.1-8b; see `augur policies`].
    #[arg(long, value_name = "MODEL", value_parser = parse_model)]
    pub model: Option<String>,
    /// GPU preset [default: h100-sxm; see `augur policies`].
    #[arg(long, value_name = "GPU", value_parser = parse_gpu)]
    pub gpu: Option<String>,
    /// Cost model pricing each iteration: `per-operator` [default] or `roofline-simple` (the
    /// original single roofline, for comparison); also `[cost] kind` in the config file.
    #[arg(long = "cost", value_name = "MODEL")]
    pub cost_kind: Option<String>,
    /// A TOML file with optional [model], [gpu], [cost], [engine] and [policy] tables
    /// (see examples/augur.toml); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Seed of synthetic traces, lengths-only arrivals and predictor noise.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Spread the requests over synthetic tenants, deterministically for --seed: `uniform:K`
    /// or `zipf:K:S` (tenant k's weight 1/(k+1)^S), replacing any tenant column the trace
    /// has; for fair share (--fair-share, the `fair` policy). Runs whose trace has tenants
    /// (this flag or a `tenant` column) report per-tenant service and Jain's index.
    #[arg(long, value_name = "SPEC")]
    pub tenants: Option<String>,
    /// Arrival rate (req/s) given to lengths-only traces, which have no timestamps.
    #[arg(long, value_name = "R", default_value_t = 4.0, value_parser = parse_positive)]
    pub lengths_rate: f64,
    /// SLO on time to first token, seconds (enables goodput).
    #[arg(long, value_name = "S", value_parser = parse_positive)]
    pub slo_ttft: Option<f64>,
    /// SLO on time per output token, seconds (enables goodput).
    #[arg(long, value_name = "S", value_parser = parse_positive)]
    pub slo_tpot: Option<f64>,
    /// Refuse runs whose estimated memory (trace, per-request records, engine storage) is
    /// over this many GiB (a fixed default, not a fraction of this machine's memory).
    #[arg(long, value_name = "GIB", default_value_t = 8.0, value_parser = parse_positive)]
    pub max_memory: f64,
    /// Engine knobs.
    #[command(flatten)]
    pub engine: EngineOpts,
    /// Policy parameters.
    #[command(flatten)]
    pub policy: PolicyOpts,
}
