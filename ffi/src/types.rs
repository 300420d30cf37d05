//! The plain `#[repr(C)]` types of the C ABI.
//!
//! Two kinds:
//! - **Inputs** C fills in (`augur_config`, `augur_policy`, `augur_request_desc`,
//!   `augur_entry_result`): integer and floating-point fields only, with kind fields and
//!   flag words instead of Rust enums and `Option`s, so no bit pattern C writes is invalid.
//!   They are converted (and checked) into the core's types on the way in.
//! - **Plan views** C reads in place (`augur_plan_entry`, `augur_block_pair`,
//!   `augur_preemption`, `augur_dropped`, `augur_finished`): the same layout as the core's
//!   `#[repr(C)]` plan types, checked field by field at compile time below, so the plan's
//!   arrays are handed out without a copy.

#![allow(non_camel_case_types)]

use core::mem::{align_of, offset_of, size_of};

use augur_core::engine::{
    AdmissionMode, CostWeights, Dropped, EngineConfig, EntryException, EntryResult, Finished,
    PauseMode, Preemption, PreemptionMode, ScheduledEntry,
};
use augur_core::kv::{BlockPair, KvEvent, KvEventKind, Tier};
use augur_core::policy::{MlfqParams, OverrunRule, Policy, PolicyKind, TimeCosts};

use super::status::{AUGUR_E_INVALID_CONFIG, augur_status};

/// A request handle: index and generation packed in 64 bits. 0 is never a valid handle.
pub type augur_request = u64;

// ----- configuration -----

/// `augur_policy.kind`: first come, first served.
pub const AUGUR_POLICY_FCFS: u32 = 0;
/// Static priority class (`augur_request_desc.priority`, lower first).
pub const AUGUR_POLICY_PRIORITY: u32 = 1;
/// Shortest predicted job first (non-preemptive).
pub const AUGUR_POLICY_SJF: u32 = 2;
/// Preemptive shortest predicted job first.
pub const AUGUR_POLICY_PSPJF: u32 = 3;
/// Shortest predicted remaining processing time.
pub const AUGUR_POLICY_SPRPT: u32 = 4;
/// SPRPT with limited preemption; parameter `trail_cutoff`.
pub const AUGUR_POLICY_TRAIL: u32 = 5;
/// Least attained service.
pub const AUGUR_POLICY_LAS: u32 = 6;
/// Skip-join MLFQ; parameters `mlfq_*`.
pub const AUGUR_POLICY_MLFQ: u32 = 7;
/// One bit of advice; parameters `one_bit_threshold`, `one_bit_preemptive`.
pub const AUGUR_POLICY_ONE_BIT: u32 = 8;
/// Predicted remaining memory-time.
pub const AUGUR_POLICY_MEMORY_TIME: u32 = 9;
/// Least slack; parameters `slack_*`.
pub const AUGUR_POLICY_SLACK: u32 = 10;
/// Earliest deadline first.
pub const AUGUR_POLICY_EDF: u32 = 11;
/// SPRPT keyed on predicted remaining service time (µs, prefill included); parameters
/// `time_*`.
pub const AUGUR_POLICY_SPRPT_TIME: u32 = 12;
/// TRAIL keyed on predicted remaining service time; parameters `trail_cutoff`, `time_*`.
pub const AUGUR_POLICY_TRAIL_TIME: u32 = 13;

/// `augur_policy.overrun`: remaining = predicted − generated may go negative.
pub const AUGUR_OVERRUN_NEGATIVE: u32 = 0;
/// Remaining floored at 0.
pub const AUGUR_OVERRUN_CLAMP: u32 = 1;
/// Re-estimate by `overrun_factor`.
pub const AUGUR_OVERRUN_RESCALE: u32 = 2;

/// `augur_config.preemption`: free the KV, recompute later.
pub const AUGUR_PREEMPT_RECOMPUTE: u32 = 0;
/// Swap the KV to the host pool.
pub const AUGUR_PREEMPT_SWAP: u32 = 1;
/// Whichever the cost model prefers.
pub const AUGUR_PREEMPT_AUTO: u32 = 2;

/// `augur_config.admission`: blocks for this step's chunk only.
pub const AUGUR_ADMIT_EAGER: u32 = 0;
/// Blocks for the whole prompt.
pub const AUGUR_ADMIT_FULL_PROMPT: u32 = 1;
/// Prompt + predicted output × `admission_headroom`.
pub const AUGUR_ADMIT_PREDICTED: u32 = 2;
/// Prompt + the output cap.
pub const AUGUR_ADMIT_WORST_CASE: u32 = 3;

/// `augur_config.pause`: keep the KV on the device.
pub const AUGUR_PAUSE_PRESERVE: u32 = 0;
/// Free it; recompute on resume.
pub const AUGUR_PAUSE_DISCARD: u32 = 1;
/// Swap it to the host pool.
pub const AUGUR_PAUSE_SWAP: u32 = 2;
/// The option wasting the least memory-time.
pub const AUGUR_PAUSE_AUTO: u32 = 3;

/// A scheduling policy: a rank function (`kind`) and its parameters. Parameters of other
/// kinds are ignored. Get defaults from `augur_config_default`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct augur_policy {
    /// `AUGUR_POLICY_*`.
    pub kind: u32,
    /// `AUGUR_OVERRUN_*`: what a rank uses once a request outlives its prediction.
    pub overrun: u32,
    /// With `AUGUR_OVERRUN_RESCALE`: the growth factor (> 1).
    pub overrun_factor: f64,
    /// Linear aging, rank units per second of waiting (0 = none).
    pub aging_per_s: f64,
    /// 1: fair share across tenants (virtual token counter); 0: off.
    pub fair_share: u32,
    /// 1: `default_deadline_us` applies; 0: requests without a deadline have none.
    pub has_default_deadline: u32,
    /// Deadline assumed for a request without one, µs after its arrival.
    pub default_deadline_us: f64,
    /// Predicted total output assumed for a request with no prediction and no cap (> 0).
    pub fallback_prediction: f64,
    /// TRAIL: fraction of the initial prediction after which a request is not preemptible.
    pub trail_cutoff: f64,
    /// MLFQ: quantum of the first level, generated tokens (≥ 1).
    pub mlfq_base_quantum: f64,
    /// MLFQ: quantum growth per level (≥ 1).
    pub mlfq_growth: f64,
    /// MLFQ: number of levels.
    pub mlfq_levels: u32,
    /// MLFQ: weight of prompt tokens when choosing the entry level.
    pub mlfq_prefill_weight: f64,
    /// One-bit: short/long threshold on the predicted total output.
    pub one_bit_threshold: f64,
    /// One-bit: 1 if a predicted-short request may preempt a predicted-long one.
    pub one_bit_preemptive: u32,
    /// Slack: predicted µs per output token.
    pub slack_decode_us_per_token: f64,
    /// Slack: predicted µs per prompt token still to prefill.
    pub slack_prefill_us_per_token: f64,
    /// SPRPT-time / TRAIL-time: µs of service per prompt token still to prefill.
    pub time_prefill_us_per_token: f64,
    /// SPRPT-time / TRAIL-time: µs of service per decode step.
    pub time_decode_us_per_token: f64,
    /// SPRPT-time / TRAIL-time: µs of service per decode step per token of context.
    pub time_context_us_per_token: f64,
}

/// Everything that shapes an engine; the fields mean what the Rust `EngineConfig` fields of
/// the same name mean. Fill with `augur_config_default`, change fields, then create.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct augur_config {
    /// Tokens per KV block.
    pub block_size: u32,
    /// Device KV blocks.
    pub device_blocks: u32,
    /// Host (swap) KV blocks; 0 disables swapping.
    pub host_blocks: u32,
    /// Live requests at most.
    pub max_requests: u32,
    /// Requests scheduled in one step at most.
    pub max_running: u32,
    /// Tokens computed in one step at most.
    pub token_budget: u32,
    /// Prefill tokens per request per step at most; 0 = only the budget.
    pub prefill_chunk: u32,
    /// `AUGUR_PREEMPT_*`.
    pub preemption: u32,
    /// Fraction of device blocks kept free when admitting while others run, in [0, 1).
    pub watermark: f64,
    /// The policy.
    pub policy: augur_policy,
    /// `AUGUR_ADMIT_*`.
    pub admission: u32,
    /// Preemptions per step at most (≥ 1).
    pub max_preemptions_per_step: u32,
    /// With `AUGUR_ADMIT_PREDICTED`: multiplier on the predicted remaining output.
    pub admission_headroom: f64,
    /// A waiting request displaces a running one only if better by more than this.
    pub priority_margin: f64,
    /// 1 if a rank preemption may throw a request's KV away; 0 (default) if not.
    pub rank_preemption_may_recompute: u32,
    /// 1 to reuse cached prefix blocks; 0 not.
    pub prefix_caching: u32,
    /// Tokens per request at most; 0 = only the engine's limit (2^31 − 1).
    pub max_sequence_tokens: u32,
    /// Speculative decoding: draft tokens a result may report as accepted (0 = none).
    pub max_draft_tokens: u32,
    /// Cost model: µs to recompute one token's KV.
    pub recompute_us_per_token: f64,
    /// Cost model: µs to copy one block one way between device and host.
    pub swap_us_per_block: f64,
    /// `AUGUR_PAUSE_*`.
    pub pause: u32,
    /// Tenant ids run from 0 to `max_tenants − 1`.
    pub max_tenants: u32,
    /// Fair share: weight of a prompt token.
    pub vtc_input_weight: f64,
    /// Fair share: weight of an output token.
    pub vtc_output_weight: f64,
    /// Block hashes stored across live requests; 0 = a default from the pool sizes.
    pub hash_capacity: u32,
    /// KV events kept between drains (`augur_drain_kv_events`); 0 (the default) records none
    /// and costs nothing.
    pub kv_event_capacity: u32,
    /// Reserved; must be 0.
    pub reserved: u32,
}

/// Why an `augur_config` could not be converted: the field, for the error message.
pub(crate) struct ConfigFieldError(pub &'static str);

impl ConfigFieldError {
    pub(crate) const STATUS: augur_status = AUGUR_E_INVALID_CONFIG;
}

fn flag(v: u32, name: &'static str) -> Result<bool, ConfigFieldError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(ConfigFieldError(name)),
    }
}

impl augur_policy {
    /// The C form of `p`.
    pub(crate) fn from_core(p: &Policy) -> Self {
        let mlfq = match p.kind {
            PolicyKind::Mlfq(m) => m,
            _ => MlfqParams::default(),
        };
        let time = match p.kind {
            PolicyKind::SprptTime(c) | PolicyKind::TrailTime { costs: c, .. } => c,
            _ => TimeCosts::default(),
        };
        let (kind, trail_cutoff, one_bit_threshold, one_bit_preemptive, slack) = match p.kind {
            PolicyKind::Fcfs => (AUGUR_POLICY_FCFS, 0.0, 0.0, 0, (0.0, 0.0)),
            PolicyKind::Priority => (AUGUR_POLICY_PRIORITY, 0.0, 0.0, 0, (0.0, 0.0)),
            PolicyKind::Sjf => (AUGUR_POLICY_SJF, 0.0, 0.0, 0, (0.0, 0.0)),
            PolicyKind::Pspjf => (AUGUR_POLICY_PSPJF, 0.0, 0.0, 0, (0.0, 0.0)),
            PolicyKind::Sprpt => (AUGUR_POLICY_SPRPT, 0.0, 0.0, 0, (0.0, 0.0)),
            PolicyKind::Trail { cutoff } => (AUGUR_POLICY_TRAIL, cutoff, 0.0, 0, (0.0, 0.0)),
            PolicyKind::Las => (AUGUR_POLICY_LAS, 0.0, 0.0, 0, (0.0, 0.0)),
            PolicyKind::Mlfq(_) => (AUGUR_POLICY_MLFQ, 0.0, 0.0, 0, (0.0, 0.0)),
            PolicyKind::OneBit {
                threshold,
                preemptive,
            } => (
                AUGUR_POLICY_ONE_BIT,
                0.0,
                threshold,
                u32::from(preemptive),
                (0.0, 0.0),
            ),
            PolicyKind::MemoryTime => (AUGUR_POLICY_MEMORY_TIME, 0.0, 0.0, 0, (0.0, 0.0)),
            PolicyKind::Slack {
                decode_us_per_token,
                prefill_us_per_token,
            } => (
                AUGUR_POLICY_SLACK,
                0.0,
                0.0,
                0,
                (decode_us_per_token, prefill_us_per_token),
            ),
            PolicyKind::Edf => (AUGUR_POLICY_EDF, 0.0, 0.0, 0, (0.0, 0.0)),
            PolicyKind::SprptTime(_) => (AUGUR_POLICY_SPRPT_TIME, 0.0, 0.0, 0, (0.0, 0.0)),
            PolicyKind::TrailTime { cutoff, .. } => {
                (AUGUR_POLICY_TRAIL_TIME, cutoff, 0.0, 0, (0.0, 0.0))
            }
        };
        let (overrun, overrun_factor) = match p.overrun {
            OverrunRule::Negative => (AUGUR_OVERRUN_NEGATIVE, 0.0),
            OverrunRule::Clamp => (AUGUR_OVERRUN_CLAMP, 0.0),
            OverrunRule::Rescale { factor } => (AUGUR_OVERRUN_RESCALE, factor),
        };
        augur_policy {
            kind,
            overrun,
            overrun_factor,
            aging_per_s: p.aging_per_s,
            fair_share: u32::from(p.fair_share),
            has_default_deadline: u32::from(p.default_deadline_us.is_some()),
            default_deadline_us: p.default_deadline_us.unwrap_or(0.0),
            fallback_prediction: p.fallback_prediction,
            trail_cutoff,
            mlfq_base_quantum: mlfq.base_quantum,
            mlfq_growth: mlfq.growth,
            mlfq_levels: mlfq.levels,
            mlfq_prefill_weight: mlfq.prefill_weight,
            one_bit_threshold,
            one_bit_preemptive,
            slack_decode_us_per_token: slack.0,
            slack_prefill_us_per_token: slack.1,
            time_prefill_us_per_token: time.prefill_us_per_token,
            time_decode_us_per_token: time.decode_us_per_token,
            time_context_us_per_token: time.context_us_per_token,
        }
    }

    fn time_costs(&self) -> TimeCosts {
        TimeCosts {
            prefill_us_per_token: self.time_prefill_us_per_token,
            decode_us_per_token: self.time_decode_us_per_token,
            context_us_per_token: self.time_context_us_per_token,
        }
    }

    /// The core form (kinds and flags checked; parameter values are checked by the core's
    /// validation).
    pub(crate) fn to_core(self) -> Result<Policy, ConfigFieldError> {
        let kind = match self.kind {
            AUGUR_POLICY_FCFS => PolicyKind::Fcfs,
            AUGUR_POLICY_PRIORITY => PolicyKind::Priority,
            AUGUR_POLICY_SJF => PolicyKind::Sjf,
            AUGUR_POLICY_PSPJF => PolicyKind::Pspjf,
            AUGUR_POLICY_SPRPT => PolicyKind::Sprpt,
            AUGUR_POLICY_TRAIL => PolicyKind::Trail {
                cutoff: self.trail_cutoff,
            },
            AUGUR_POLICY_LAS => PolicyKind::Las,
            AUGUR_POLICY_MLFQ => PolicyKind::Mlfq(MlfqParams {
                base_quantum: self.mlfq_base_quantum,
                growth: self.mlfq_growth,
                levels: self.mlfq_levels,
                prefill_weight: self.mlfq_prefill_weight,
            }),
            AUGUR_POLICY_ONE_BIT => PolicyKind::OneBit {
                threshold: self.one_bit_threshold,
                preemptive: flag(self.one_bit_preemptive, "policy.one_bit_preemptive")?,
            },
            AUGUR_POLICY_MEMORY_TIME => PolicyKind::MemoryTime,
            AUGUR_POLICY_SLACK => PolicyKind::Slack {
                decode_us_per_token: self.slack_decode_us_per_token,
                prefill_us_per_token: self.slack_prefill_us_per_token,
            },
            AUGUR_POLICY_EDF => PolicyKind::Edf,
            AUGUR_POLICY_SPRPT_TIME => PolicyKind::SprptTime(self.time_costs()),
            AUGUR_POLICY_TRAIL_TIME => PolicyKind::TrailTime {
                cutoff: self.trail_cutoff,
                costs: self.time_costs(),
            },
            _ => return Err(ConfigFieldError("policy.kind")),
        };
        let overrun = match self.overrun {
            AUGUR_OVERRUN_NEGATIVE => OverrunRule::Negative,
            AUGUR_OVERRUN_CLAMP => OverrunRule::Clamp,
            AUGUR_OVERRUN_RESCALE => OverrunRule::Rescale {
                factor: self.overrun_factor,
            },
            _ => return Err(ConfigFieldError("policy.overrun")),
        };
        Ok(Policy {
            kind,
            aging_per_s: self.aging_per_s,
            overrun,
            fair_share: flag(self.fair_share, "policy.fair_share")?,
            fallback_prediction: self.fallback_prediction,
            default_deadline_us: flag(self.has_default_deadline, "policy.has_default_deadline")?
                .then_some(self.default_deadline_us),
        })
    }
}

impl augur_config {
    /// The C form of `c`.
    pub(crate) fn from_core(c: &EngineConfig) -> Self {
        let (admission, admission_headroom) = match c.admission {
            AdmissionMode::Eager => (AUGUR_ADMIT_EAGER, 1.0),
            AdmissionMode::FullPrompt => (AUGUR_ADMIT_FULL_PROMPT, 1.0),
            AdmissionMode::Predicted { headroom } => (AUGUR_ADMIT_PREDICTED, headroom),
            AdmissionMode::WorstCase => (AUGUR_ADMIT_WORST_CASE, 1.0),
        };
        augur_config {
            block_size: c.block_size,
            device_blocks: c.device_blocks,
            host_blocks: c.host_blocks,
            max_requests: c.max_requests,
            max_running: c.max_running,
            token_budget: c.token_budget,
            prefill_chunk: c.prefill_chunk,
            preemption: match c.preemption {
                PreemptionMode::Recompute => AUGUR_PREEMPT_RECOMPUTE,
                PreemptionMode::Swap => AUGUR_PREEMPT_SWAP,
                PreemptionMode::Auto => AUGUR_PREEMPT_AUTO,
            },
            watermark: c.watermark,
            policy: augur_policy::from_core(&c.policy),
            admission,
            max_preemptions_per_step: c.max_preemptions_per_step,
            admission_headroom,
            priority_margin: c.priority_margin,
            rank_preemption_may_recompute: u32::from(c.rank_preemption_may_recompute),
            prefix_caching: u32::from(c.prefix_caching),
            max_sequence_tokens: c.max_sequence_tokens,
            max_draft_tokens: c.max_draft_tokens,
            recompute_us_per_token: c.costs.recompute_us_per_token,
            swap_us_per_block: c.costs.swap_us_per_block,
            pause: match c.pause {
                PauseMode::Preserve => AUGUR_PAUSE_PRESERVE,
                PauseMode::Discard => AUGUR_PAUSE_DISCARD,
                PauseMode::Swap => AUGUR_PAUSE_SWAP,
                PauseMode::Auto => AUGUR_PAUSE_AUTO,
            },
            max_tenants: c.max_tenants,
            vtc_input_weight: c.vtc_input_weight,
            vtc_output_weight: c.vtc_output_weight,
            hash_capacity: c.hash_capacity,
            kv_event_capacity: c.kv_event_capacity,
            reserved: 0,
        }
    }

    /// The core form, kinds and flags checked; the caller then runs the core's validation.
    pub(crate) fn to_core(self) -> Result<EngineConfig, ConfigFieldError> {
        if self.reserved != 0 {
            return Err(ConfigFieldError("reserved"));
        }
        let mut c = EngineConfig::new(self.block_size, self.device_blocks, self.max_requests);
        c.host_blocks = self.host_blocks;
        c.max_running = self.max_running;
        c.token_budget = self.token_budget;
        c.prefill_chunk = self.prefill_chunk;
        c.watermark = self.watermark;
        c.policy = self.policy.to_core()?;
        c.preemption = match self.preemption {
            AUGUR_PREEMPT_RECOMPUTE => PreemptionMode::Recompute,
            AUGUR_PREEMPT_SWAP => PreemptionMode::Swap,
            AUGUR_PREEMPT_AUTO => PreemptionMode::Auto,
            _ => return Err(ConfigFieldError("preemption")),
        };
        c.admission = match self.admission {
            AUGUR_ADMIT_EAGER => AdmissionMode::Eager,
            AUGUR_ADMIT_FULL_PROMPT => AdmissionMode::FullPrompt,
            AUGUR_ADMIT_PREDICTED => AdmissionMode::Predicted {
                headroom: self.admission_headroom,
            },
            AUGUR_ADMIT_WORST_CASE => AdmissionMode::WorstCase,
            _ => return Err(ConfigFieldError("admission")),
        };
        c.priority_margin = self.priority_margin;
        c.max_preemptions_per_step = self.max_preemptions_per_step;
        c.rank_preemption_may_recompute = flag(
            self.rank_preemption_may_recompute,
            "rank_preemption_may_recompute",
        )?;
        c.prefix_caching = flag(self.prefix_caching, "prefix_caching")?;
        c.max_sequence_tokens = self.max_sequence_tokens;
        c.max_draft_tokens = self.max_draft_tokens;
        c.costs = CostWeights {
            recompute_us_per_token: self.recompute_us_per_token,
            swap_us_per_block: self.swap_us_per_block,
        };
        c.pause = match self.pause {
            AUGUR_PAUSE_PRESERVE => PauseMode::Preserve,
            AUGUR_PAUSE_DISCARD => PauseMode::Discard,
            AUGUR_PAUSE_SWAP => PauseMode::Swap,
            AUGUR_PAUSE_AUTO => PauseMode::Auto,
            _ => return Err(ConfigFieldError("pause")),
        };
        c.max_tenants = self.max_tenants;
        c.vtc_input_weight = self.vtc_input_weight;
        c.vtc_output_weight = self.vtc_output_weight;
        c.hash_capacity = self.hash_capacity;
        c.kv_event_capacity = self.kv_event_capacity;
        Ok(c)
    }
}

// ----- requests -----

/// `augur_request_desc.flags`: `predicted_output_tokens` is set.
pub const AUGUR_DESC_PREDICTION: u32 = 1;
/// `deadline_us` is set.
pub const AUGUR_DESC_DEADLINE: u32 = 2;
/// `ttft_target_us` is set.
pub const AUGUR_DESC_TTFT_TARGET: u32 = 4;
/// `max_output_tokens` is set.
pub const AUGUR_DESC_MAX_OUTPUT: u32 = 8;

/// A new request. Fields behind a flag are read only when the flag is set.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct augur_request_desc {
    /// The caller's id; unique among live requests.
    pub external_id: u64,
    /// `AUGUR_DESC_*` or'ed together; other bits are refused.
    pub flags: u32,
    /// Prompt length in tokens (≥ 1).
    pub prompt_tokens: u32,
    /// With `AUGUR_DESC_MAX_OUTPUT`: the output cap (≥ 1).
    pub max_output_tokens: u32,
    /// Priority class, lower first (`AUGUR_POLICY_PRIORITY`).
    pub priority: i32,
    /// With `AUGUR_DESC_PREDICTION`: predicted output tokens (finite, ≥ 0).
    pub predicted_output_tokens: f64,
    /// With `AUGUR_DESC_DEADLINE`: absolute deadline, µs on the caller's clock.
    pub deadline_us: u64,
    /// With `AUGUR_DESC_TTFT_TARGET`: time-to-first-token target, µs.
    pub ttft_target_us: u64,
    /// Tenant id for fair share (below `max_tenants`).
    pub tenant: u32,
    /// Reserved; must be 0.
    pub reserved: u32,
    /// Prefix-cache namespace of the hashes (0 = default).
    pub cache_salt: u64,
    /// Chained hashes of the prompt's full blocks (may be NULL when `prompt_block_hashes_len`
    /// is 0). Copied during the call; not retained.
    pub prompt_block_hashes: *const u64,
    /// Number of hashes.
    pub prompt_block_hashes_len: usize,
}

// ----- the plan, read in place -----

/// `augur_plan_entry.kind`: prompt (or recomputed, or appended) tokens.
pub const AUGUR_ENTRY_PREFILL: u32 = 0;
/// One decode token.
pub const AUGUR_ENTRY_DECODE: u32 = 1;

/// One request scheduled in a step.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct augur_plan_entry {
    /// The request.
    pub handle: augur_request,
    /// The caller's id.
    pub external_id: u64,
    /// `AUGUR_ENTRY_*`.
    pub kind: u32,
    /// Tokens to compute this step.
    pub tokens: u32,
    /// Tokens whose KV was computed before this step (the first position computed now).
    pub computed_before: u32,
    /// Whether the model samples a token at the end of this entry.
    pub samples: bool,
    /// Block-table delta: truncate the mirrored table to this many entries, then append
    /// `plan.blocks[blocks_offset .. blocks_offset + blocks_len]`.
    pub table_start: u32,
    /// Start of this entry's new block ids in `augur_plan.blocks`.
    pub blocks_offset: u32,
    /// How many new block ids.
    pub blocks_len: u32,
}

/// A block copy: swap out (device → host), swap in (host → device), copy-on-write (device
/// → device).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct augur_block_pair {
    /// Source block id (in the source tier).
    pub src: u32,
    /// Destination block id (in the destination tier).
    pub dst: u32,
}

/// `augur_preemption.kind`: KV freed, recomputed later.
pub const AUGUR_PREEMPTED_RECOMPUTE: u32 = 0;
/// KV swapped out by this plan's `swap_out` pairs.
pub const AUGUR_PREEMPTED_SWAP: u32 = 1;
/// KV kept in place on the device.
pub const AUGUR_PREEMPTED_KEEP: u32 = 2;
/// `augur_preemption.cause`: memory was short.
pub const AUGUR_CAUSE_MEMORY: u32 = 0;
/// A better-ranked request displaced it.
pub const AUGUR_CAUSE_RANK: u32 = 1;

/// A preemption in this step.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct augur_preemption {
    /// The request (still live).
    pub handle: augur_request,
    /// The caller's id.
    pub external_id: u64,
    /// `AUGUR_PREEMPTED_*`.
    pub kind: u32,
    /// `AUGUR_CAUSE_*`.
    pub cause: u32,
}

/// `augur_dropped.reason`: needs more KV than the whole device pool.
pub const AUGUR_DROP_EXCEEDS_KV_CAPACITY: u32 = 0;

/// A request the engine gave up on in this step; its handle is now stale.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct augur_dropped {
    /// The request (now stale).
    pub handle: augur_request,
    /// The caller's id.
    pub external_id: u64,
    /// `AUGUR_DROP_*`.
    pub reason: u32,
}

/// `augur_finished.reason`: the executor said so.
pub const AUGUR_FINISH_STOP: u32 = 0;
/// The output cap was reached.
pub const AUGUR_FINISH_MAX_OUTPUT: u32 = 1;
/// The sequence length limit was reached.
pub const AUGUR_FINISH_LENGTH: u32 = 2;

/// A request finished by the last `augur_complete`; its handle is now stale.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct augur_finished {
    /// The request (now stale).
    pub handle: augur_request,
    /// The caller's id.
    pub external_id: u64,
    /// Output tokens generated.
    pub generated_tokens: u32,
    /// `AUGUR_FINISH_*`.
    pub reason: u32,
}

/// The decisions of one step, pointing into the engine: valid until the next call on this
/// engine that changes it (`augur_schedule`, `augur_complete`, `augur_add_request`, ...;
/// read-only calls keep it valid). Arrays of length 0 are NULL. Carry out `swap_out`, then
/// `swap_in`, then `copies`, then run `entries` (the plan contract in augur.h's preamble).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct augur_plan {
    /// The step number (1 for the first).
    pub step: u64,
    /// Requests to run.
    pub entries: *const augur_plan_entry,
    /// Number of entries.
    pub entries_len: usize,
    /// New block ids of all entries, back to back.
    pub blocks: *const u32,
    /// Number of block ids.
    pub blocks_len: usize,
    /// Device → host copies.
    pub swap_out: *const augur_block_pair,
    /// Number of swap-out pairs.
    pub swap_out_len: usize,
    /// Host → device copies.
    pub swap_in: *const augur_block_pair,
    /// Number of swap-in pairs.
    pub swap_in_len: usize,
    /// Device → device copy-on-write copies.
    pub copies: *const augur_block_pair,
    /// Number of copies.
    pub copies_len: usize,
    /// Requests preempted in this step.
    pub preempted: *const augur_preemption,
    /// Number of preemptions.
    pub preempted_len: usize,
    /// Requests dropped in this step.
    pub dropped: *const augur_dropped,
    /// Number of drops.
    pub dropped_len: usize,
}

// ----- results -----

/// `augur_entry_result.flags`: the request is done.
pub const AUGUR_RESULT_FINISHED: u32 = 1;
/// The request waits on an external call of `pause_duration_us`.
pub const AUGUR_RESULT_PAUSE: u32 = 2;
/// `filled_block_hash` is set.
pub const AUGUR_RESULT_FILLED_BLOCK_HASH: u32 = 4;

/// What happened to one plan entry; `augur_complete` takes one per entry, in plan order.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct augur_entry_result {
    /// Tokens produced: 0 if the entry did not sample, else 1 plus accepted draft tokens
    /// (at most `max_draft_tokens`); 0 allowed when finishing.
    pub tokens: u32,
    /// `AUGUR_RESULT_*` or'ed together; other bits are refused.
    pub flags: u32,
    /// With `AUGUR_RESULT_PAUSE`: predicted duration of the external call, µs.
    pub pause_duration_us: u64,
    /// With `AUGUR_RESULT_FILLED_BLOCK_HASH`: chained hash of the block this step filled.
    pub filled_block_hash: u64,
}

/// One exception of `augur_complete_except`: the result of plan entry `entry` (its index in
/// `augur_plan.entries`) when it is not the default.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct augur_entry_exception {
    /// The entry's position in the current plan.
    pub entry: u32,
    /// Its result, as `augur_complete` takes it.
    pub result: augur_entry_result,
}

// ----- reading state -----

/// `augur_request_info.state`: in the waiting queue.
pub const AUGUR_STATE_WAITING: u32 = 0;
/// Running.
pub const AUGUR_STATE_RUNNING: u32 = 1;
/// Waiting with its KV in host memory.
pub const AUGUR_STATE_SWAPPED: u32 = 2;
/// Paused on an external call.
pub const AUGUR_STATE_PAUSED: u32 = 3;
/// `augur_request_info.kv_tier`: holds no KV.
pub const AUGUR_TIER_NONE: u32 = 0;
/// KV on the device (block ids are device ids).
pub const AUGUR_TIER_DEVICE: u32 = 1;
/// KV in host memory (block ids are host ids).
pub const AUGUR_TIER_HOST: u32 = 2;

/// A snapshot of one request.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct augur_request_info {
    /// The caller's id.
    pub external_id: u64,
    /// `AUGUR_STATE_*`.
    pub state: u32,
    /// Prompt tokens, including appended tool output.
    pub prompt_tokens: u32,
    /// Output tokens generated.
    pub generated_tokens: u32,
    /// Tokens whose KV is computed.
    pub computed_tokens: u32,
    /// 1 if `predicted_output_tokens` is set.
    pub has_prediction: u32,
    /// `AUGUR_TIER_*`.
    pub kv_tier: u32,
    /// The current prediction of the total output.
    pub predicted_output_tokens: f64,
    /// Entries in its block table (`augur_request_block_table`).
    pub kv_blocks: u32,
    /// Times preempted.
    pub preemptions: u32,
    /// Arrival, µs.
    pub arrival_us: u64,
    /// First output token, µs; `UINT64_MAX` if none yet.
    pub first_token_us: u64,
}

/// Engine counters and gauges (the Rust `EngineStats`, flattened).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct augur_stats {
    /// Requests waiting (not swapped).
    pub waiting: u32,
    /// Requests running.
    pub running: u32,
    /// Requests waiting with their KV in host memory.
    pub swapped: u32,
    /// Requests paused on an external call.
    pub paused: u32,
    /// Steps scheduled.
    pub steps: u64,
    /// Requests accepted.
    pub added: u64,
    /// Requests finished.
    pub finished: u64,
    /// Requests aborted by the caller.
    pub aborted: u64,
    /// Requests dropped by the engine (can never fit).
    pub dropped: u64,
    /// Preemptions by recompute.
    pub preemptions_recompute: u64,
    /// Preemptions by swap.
    pub preemptions_swap: u64,
    /// Preemptions that kept the KV on the device.
    pub preemptions_keep: u64,
    /// Preemptions caused by rank (the rest were for memory).
    pub preemptions_for_rank: u64,
    /// Pauses that kept their KV on the device.
    pub pauses_preserved: u64,
    /// Pauses that discarded their KV.
    pub pauses_discarded: u64,
    /// Pauses that swapped their KV to the host.
    pub pauses_swapped: u64,
    /// Idle requests whose kept KV was later evicted for memory.
    pub idle_evicted: u64,
    /// Tokens computed again after a recompute preemption or discard.
    pub recomputed_tokens: u64,
    /// Prompt tokens served from the prefix cache at admission.
    pub prefix_hit_tokens: u64,
    /// Prompt tokens of admitted requests.
    pub prompt_tokens_admitted: u64,
    /// Sum over live requests of the predicted remaining output tokens.
    pub predicted_backlog_tokens: u64,
    /// Block hashes not stored because the hash store was full.
    pub hashes_dropped: u64,
    /// Device pool: blocks.
    pub device_blocks_total: u32,
    /// Device pool: free blocks without cached content.
    pub device_blocks_free: u32,
    /// Device pool: free blocks holding an evictable cached prefix block.
    pub device_blocks_cached: u32,
    /// Device pool: blocks referenced by a table.
    pub device_blocks_in_use: u32,
    /// Host pool: blocks.
    pub host_blocks_total: u32,
    /// Host pool: free blocks without cached content.
    pub host_blocks_free: u32,
    /// Host pool: free blocks holding cached content.
    pub host_blocks_cached: u32,
    /// Host pool: blocks referenced by a table.
    pub host_blocks_in_use: u32,
    /// Blocks found in the prefix cache.
    pub kv_prefix_hit_blocks: u64,
    /// Cached blocks evicted to reuse the block.
    pub kv_evictions: u64,
    /// Copy-on-write copies.
    pub kv_cow_copies: u64,
    /// Blocks copied device to host.
    pub kv_swapped_out_blocks: u64,
    /// Blocks copied host to device.
    pub kv_swapped_in_blocks: u64,
}

// ----- KV events -----

/// `augur_kv_event.kind`: a block became cached (vLLM's `BlockStored`).
pub const AUGUR_KV_EVENT_STORED: u32 = 0;
/// A cached block is gone (vLLM's `BlockRemoved`).
pub const AUGUR_KV_EVENT_REMOVED: u32 = 1;
/// Forget every block this engine reported; the events that follow rebuild the view (vLLM's
/// `AllBlocksCleared`; sent after the ring overflowed, followed by a snapshot).
pub const AUGUR_KV_EVENT_ALL_CLEARED: u32 = 2;

/// One KV event, for a cluster router (the Rust `KvEvent`, flattened; augur-core's
/// `kv::events` module documents when each kind is recorded and how overflow resyncs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct augur_kv_event {
    /// Position in the stream: 0 for the first event drained, then one more per event.
    pub seq: u64,
    /// `AUGUR_KV_EVENT_*`.
    pub kind: u32,
    /// `AUGUR_TIER_DEVICE` or `AUGUR_TIER_HOST`; `AUGUR_TIER_NONE` for `ALL_CLEARED`.
    pub tier: u32,
    /// The block's hash (0 for `ALL_CLEARED`).
    pub hash: u64,
    /// Stored only: the hash of the block before it in its sequence, if `has_parent`.
    pub parent_hash: u64,
    /// Stored only: 1 if `parent_hash` is set (0 for a sequence's first block).
    pub has_parent: u32,
    /// The block's index in its tier.
    pub block: u32,
    /// Stored only: tokens the block holds (always `block_size`: only full blocks are cached).
    pub tokens: u32,
    /// Stored only: tokens per block.
    pub block_size: u32,
    /// The prefix-cache namespace (tenant, LoRA adapter, cache salt) of the hash.
    pub namespace_id: u64,
}

impl augur_kv_event {
    /// The C form of `e`.
    pub(crate) fn from_core(e: &KvEvent) -> Self {
        let tier_of = |t: Tier| match t {
            Tier::Device => AUGUR_TIER_DEVICE,
            Tier::Host => AUGUR_TIER_HOST,
        };
        let mut c = augur_kv_event {
            seq: e.seq,
            ..Self::default()
        };
        match e.kind {
            KvEventKind::Stored {
                hash,
                parent,
                tokens,
                block_size,
                tier,
                block,
                namespace,
            } => {
                c.kind = AUGUR_KV_EVENT_STORED;
                c.tier = tier_of(tier);
                c.hash = hash;
                c.parent_hash = parent.unwrap_or(0);
                c.has_parent = u32::from(parent.is_some());
                c.block = block;
                c.tokens = tokens;
                c.block_size = block_size;
                c.namespace_id = namespace;
            }
            KvEventKind::Removed {
                hash,
                tier,
                block,
                namespace,
            } => {
                c.kind = AUGUR_KV_EVENT_REMOVED;
                c.tier = tier_of(tier);
                c.hash = hash;
                c.block = block;
                c.namespace_id = namespace;
            }
            KvEventKind::AllCleared => {
                c.kind = AUGUR_KV_EVENT_ALL_CLEARED;
                c.tier = AUGUR_TIER_NONE;
            }
        }
        c
    }
}

/// Counters of the KV event stream (the Rust `KvEventStats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct augur_kv_event_stats {
    /// Events delivered by drains (the next event's sequence number).
    pub delivered: u64,
    /// Events never delivered one by one (overflow, or superseded by a snapshot); each loss
    /// is made good by the resync that follows.
    pub dropped: u64,
    /// Overflows (each one leads to an `ALL_CLEARED` marker and a snapshot).
    pub resyncs: u64,
    /// Events waiting to be drained.
    pub pending: u32,
    /// 1 while a resync (marker or snapshot) is still to be delivered.
    pub resyncing: u32,
}

// ----- layout equality of the plan views with the core's types -----

macro_rules! same_layout {
    ($c:ty, $rust:ty, [$($field:ident),* $(,)?]) => {
        const _: () = {
            assert!(size_of::<$c>() == size_of::<$rust>());
            assert!(align_of::<$c>() == align_of::<$rust>());
            $(assert!(offset_of!($c, $field) == offset_of!($rust, $field));)*
        };
    };
}

same_layout!(
    augur_plan_entry,
    ScheduledEntry,
    [
        handle,
        external_id,
        kind,
        tokens,
        computed_before,
        samples,
        table_start,
        blocks_offset,
        blocks_len
    ]
);
same_layout!(augur_block_pair, BlockPair, [src, dst]);
same_layout!(
    augur_preemption,
    Preemption,
    [handle, external_id, kind, cause]
);
same_layout!(augur_dropped, Dropped, [handle, external_id, reason]);
same_layout!(
    augur_finished,
    Finished,
    [handle, external_id, generated_tokens, reason]
);
same_layout!(
    augur_entry_result,
    EntryResult,
    [tokens, flags, pause_duration_us, filled_block_hash]
);
same_layout!(augur_entry_exception, EntryException, [entry, result]);

// The field types too: a handle is a `u64`, kinds are `u32` enums with the values above.
const _: () = {
    use augur_core::engine::{
        DropReason, EntryKind, FinishReason, PreemptionCause, PreemptionKind, RequestHandle,
    };
    assert!(size_of::<RequestHandle>() == 8);
    assert!(AUGUR_RESULT_FINISHED == EntryResult::FINISHED);
    assert!(AUGUR_RESULT_PAUSE == EntryResult::PAUSE);
    assert!(AUGUR_RESULT_FILLED_BLOCK_HASH == EntryResult::FILLED_BLOCK_HASH);
    assert!(size_of::<EntryKind>() == 4 && EntryKind::Decode as u32 == AUGUR_ENTRY_DECODE);
    assert!(EntryKind::Prefill as u32 == AUGUR_ENTRY_PREFILL);
    assert!(size_of::<PreemptionKind>() == 4);
    assert!(PreemptionKind::Recompute as u32 == AUGUR_PREEMPTED_RECOMPUTE);
    assert!(PreemptionKind::Swap as u32 == AUGUR_PREEMPTED_SWAP);
    assert!(PreemptionKind::Keep as u32 == AUGUR_PREEMPTED_KEEP);
    assert!(size_of::<PreemptionCause>() == 4);
    assert!(PreemptionCause::Memory as u32 == AUGUR_CAUSE_MEMORY);
    assert!(PreemptionCause::Rank as u32 == AUGUR_CAUSE_RANK);
    assert!(size_of::<DropReason>() == 4);
    assert!(DropReason::ExceedsKvCapacity as u32 == AUGUR_DROP_EXCEEDS_KV_CAPACITY);
    assert!(size_of::<FinishReason>() == 4);
    assert!(FinishReason::Stop as u32 == AUGUR_FINISH_STOP);
    assert!(FinishReason::MaxOutput as u32 == AUGUR_FINISH_MAX_OUTPUT);
    assert!(FinishReason::Length as u32 == AUGUR_FINISH_LENGTH);
};
