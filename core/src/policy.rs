/*!
Scheduling policies as rank functions (the SOAP view: Scully, Harchol-Balter, Scheller-Wolf,
SIGMETRICS 2018). Every policy maps what the scheduler knows about a request — its descriptor
and its progress — to a number; lower rank is served first and ties go to the earlier arrival.
The engine, the waiting queue and the M/G/1 simulator all use these same functions, which is
how `augur mg1` shows that augur's policies are the theory's policies.

Two facts keep ranking cheap:
- **Linear aging keeps waiting keys static.** `rank − β·(now − arrival)` orders requests exactly
  as `rank + β·arrival` does, so [`Policy::key`] adds `β·arrival` and the waiting heap never
  needs re-keying as time passes.
- **Waiting ranks only change when a prediction changes.** A waiting request makes no progress,
  so its rank is fixed until `update_prediction` re-keys it. Running ranks move every step, but
  the running set is small.

Sizes are in tokens in the engine (prompt, generated) and in units of service in the M/G/1
simulator; the functions do not care.
*/

use crate::queue::RankKey;
use core::fmt;

/// Parameters of skip-join MLFQ (FastServe).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MlfqParams {
    /// Quantum of the highest-priority level, in generated tokens (≥ 1).
    pub base_quantum: f64,
    /// Each level's quantum is this many times the previous one's (≥ 1).
    pub growth: f64,
    /// Number of levels (1..=[`MAX_MLFQ_LEVELS`]).
    pub levels: u32,
    /// Prompt tokens are weighed by this to pick the entry level: a request joins the first
    /// level whose quantum covers `prompt × prefill_weight` (the "skip-join").
    pub prefill_weight: f64,
}

impl Default for MlfqParams {
    fn default() -> Self {
        MlfqParams {
            base_quantum: 16.0,
            growth: 2.0,
            levels: 8,
            prefill_weight: 0.05,
        }
    }
}

/// Per-token service costs for the time-keyed ranks ([`PolicyKind::SprptTime`],
/// [`PolicyKind::TrailTime`]): plain numbers, in µs, measured or derived by the caller (the
/// simulator derives them from its cost model), so that the core needs no cost model.
///
/// A request with `u` prompt tokens still to prefill, context `x` (prompt + generated) and `r`
/// predicted remaining output tokens has predicted remaining service time
///
/// `T = u·prefill_us_per_token + r·(decode_us_per_token + context_us_per_token·(x + r/2))`
///
/// The decode term is the closed form of the per-step cost summed over the remaining steps,
/// Σ_{k<r} (d + c·(x + k)) = r·d + c·(r·x + r(r−1)/2), taken in its continuous form
/// `r·(d + c·(x + r/2))` (the same shape as [`PolicyKind::MemoryTime`]; it differs from the
/// discrete sum by `c·r/2`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TimeCosts {
    /// µs of service per prompt token still to prefill.
    pub prefill_us_per_token: f64,
    /// µs of service per decode step, independent of context.
    pub decode_us_per_token: f64,
    /// µs of service per decode step per token of context (the KV read).
    pub context_us_per_token: f64,
}

impl TimeCosts {
    /// Predicted remaining service time in µs: see [`TimeCosts`]. `prefill_left`, `context`
    /// and `remaining` below 0 (or NaN) count as 0.
    #[inline]
    pub fn remaining_us(&self, prefill_left: f64, context: f64, remaining: f64) -> f64 {
        let u = prefill_left.max(0.0);
        let x = context.max(0.0);
        let r = remaining.max(0.0);
        u * self.prefill_us_per_token
            + r * (self.decode_us_per_token + self.context_us_per_token * (x + r * 0.5))
    }

    fn validate(&self) -> Result<(), PolicyError> {
        finite_nonneg(self.prefill_us_per_token, "time.prefill_us_per_token")?;
        finite_nonneg(self.decode_us_per_token, "time.decode_us_per_token")?;
        finite_nonneg(self.context_us_per_token, "time.context_us_per_token")
    }
}

/// The rank function of a policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PolicyKind {
    /// First come, first served: rank = arrival time. Never preempts for rank.
    Fcfs,
    /// Static priority class (lower value first), then arrival. Preempts for rank when a
    /// waiting request's class is better than a running one's by more than the engine's margin.
    Priority,
    /// Shortest (predicted) job first: rank = predicted total output at arrival.
    /// Non-preemptive.
    Sjf,
    /// Preemptive shortest predicted job first: rank = current predicted total output.
    Pspjf,
    /// Shortest predicted remaining processing time: rank = predicted total − generated.
    Sprpt,
    /// SPRPT with limited preemption (TRAIL): ranked as SPRPT, but a request that has generated
    /// more than `cutoff` × its initial prediction can no longer be preempted.
    Trail {
        /// Fraction of the initial prediction after which the request is not preemptible.
        cutoff: f64,
    },
    /// SPRPT keyed on time: rank = predicted remaining service time in µs, prefill included
    /// ([`TimeCosts::remaining_us`]). Preemptive.
    SprptTime(TimeCosts),
    /// TRAIL keyed on time: ranked as [`PolicyKind::SprptTime`], with TRAIL's limited
    /// preemption (a request that has generated `cutoff` × its initial prediction or more can
    /// no longer be preempted).
    TrailTime {
        /// Fraction of the initial prediction after which the request is not preemptible.
        cutoff: f64,
        /// The per-token costs of the rank.
        costs: TimeCosts,
    },
    /// Least attained service (foreground-background): rank = tokens generated.
    Las,
    /// Skip-join multi-level feedback queue (FastServe): rank = queue level from attained
    /// service, the first level chosen from the prompt length.
    Mlfq(MlfqParams),
    /// One bit of advice: rank = 0 if the predicted total is at most `threshold`, else 1.
    OneBit {
        /// Short/long threshold on the predicted total output.
        threshold: f64,
        /// Whether a predicted-short request may preempt a predicted-long one.
        preemptive: bool,
    },
    /// LAMPS-style memory-time: rank = predicted remaining memory-time area,
    /// `r × (context + r/2)` with `r` the predicted remaining output.
    MemoryTime,
    /// Least slack: rank = deadline − predicted remaining service time.
    Slack {
        /// Predicted time per output token, µs.
        decode_us_per_token: f64,
        /// Predicted time per prompt token still to prefill, µs.
        prefill_us_per_token: f64,
    },
    /// Earliest deadline first: rank = deadline.
    Edf,
}

/// What a rank uses when a request outlives its prediction (generated ≥ predicted total).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OverrunRule {
    /// The theory's SPRPT: remaining = predicted − generated goes negative, so an overrunning
    /// request outranks everything that has not overrun.
    Negative,
    /// Remaining is floored at 0: the request is treated as about to finish.
    Clamp,
    /// Re-estimate: multiply the prediction by `factor` (> 1) until it exceeds what was
    /// generated.
    Rescale {
        /// Growth factor of the re-estimate.
        factor: f64,
    },
}

/// A policy: a rank function plus the knobs that apply to every rank.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// The rank function.
    pub kind: PolicyKind,
    /// Linear aging β, in rank units per second of waiting (0 = none).
    pub aging_per_s: f64,
    /// The rule for requests that outlive their prediction.
    pub overrun: OverrunRule,
    /// Fair share by virtual token counter (VTC): serve the tenant that has received the fewest
    /// tokens first, and order each tenant's requests by `kind`.
    pub fair_share: bool,
    /// The predicted total output assumed for a request with no prediction and no output cap.
    pub fallback_prediction: f64,
    /// Deadline assumed for a request without one, relative to its arrival, in µs
    /// (`None`: no deadline, ranked last by slack/EDF, ties by arrival).
    pub default_deadline_us: Option<f64>,
}

impl Policy {
    /// A policy with no aging, the `Clamp` overrun rule, no fair share, fallback prediction 256
    /// tokens and no default deadline.
    pub const fn new(kind: PolicyKind) -> Self {
        Policy {
            kind,
            aging_per_s: 0.0,
            overrun: OverrunRule::Clamp,
            fair_share: false,
            fallback_prediction: 256.0,
            default_deadline_us: None,
        }
    }
}

/// What a rank function may look at.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RankInput {
    /// Arrival time, seconds.
    pub arrival_s: f64,
    /// Prompt tokens (context before any output).
    pub prompt: f64,
    /// Output generated so far (attained service).
    pub attained: f64,
    /// Prompt tokens still to prefill.
    pub prefill_left: f64,
    /// The current prediction of the total output, if any.
    pub predicted_total: Option<f64>,
    /// The prediction of the total output made at arrival, if any.
    pub initial_prediction: Option<f64>,
    /// The request's output cap, used as the prediction when there is none.
    pub max_output: Option<f64>,
    /// Priority class (lower first).
    pub priority: f64,
    /// Absolute deadline, seconds, if any.
    pub deadline_s: Option<f64>,
}

/// An invalid policy parameter; names the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyError(pub &'static str);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid policy parameter `{}`", self.0)
    }
}

impl core::error::Error for PolicyError {}

fn finite_nonneg(x: f64, name: &'static str) -> Result<(), PolicyError> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(PolicyError(name))
    }
}

impl Policy {
    /// Checks every parameter; the error names the bad one.
    pub fn validate(&self) -> Result<(), PolicyError> {
        finite_nonneg(self.aging_per_s, "aging_per_s")?;
        if !(self.fallback_prediction.is_finite() && self.fallback_prediction > 0.0) {
            return Err(PolicyError("fallback_prediction"));
        }
        if let Some(d) = self.default_deadline_us {
            finite_nonneg(d, "default_deadline_us")?;
        }
        if let OverrunRule::Rescale { factor } = self.overrun
            && !(factor.is_finite() && factor > 1.0)
        {
            return Err(PolicyError("overrun.factor"));
        }
        match self.kind {
            PolicyKind::Trail { cutoff } => finite_nonneg(cutoff, "cutoff")?,
            PolicyKind::SprptTime(costs) => costs.validate()?,
            PolicyKind::TrailTime { cutoff, costs } => {
                finite_nonneg(cutoff, "cutoff")?;
                costs.validate()?;
            }
            PolicyKind::Mlfq(p) => {
                if !(p.base_quantum.is_finite() && p.base_quantum >= 1.0) {
                    return Err(PolicyError("base_quantum"));
                }
                if !(p.growth.is_finite() && p.growth >= 1.0) {
                    return Err(PolicyError("growth"));
                }
                if p.levels == 0 || p.levels > MAX_MLFQ_LEVELS {
                    return Err(PolicyError("levels"));
                }
                finite_nonneg(p.prefill_weight, "prefill_weight")?;
            }
            PolicyKind::OneBit { threshold, .. } => finite_nonneg(threshold, "threshold")?,
            PolicyKind::Slack {
                decode_us_per_token,
                prefill_us_per_token,
            } => {
                finite_nonneg(decode_us_per_token, "decode_us_per_token")?;
                finite_nonneg(prefill_us_per_token, "prefill_us_per_token")?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether a better-ranked waiting request may displace a running one (by the engine's
    /// margin). `false` for the non-preemptive policies: FCFS, SJF, non-preemptive one-bit.
    pub fn preempts_for_rank(&self) -> bool {
        !matches!(
            self.kind,
            PolicyKind::Fcfs
                | PolicyKind::Sjf
                | PolicyKind::OneBit {
                    preemptive: false,
                    ..
                }
        )
    }

    /// Whether a running request may be preempted at all (for rank or for memory). Only TRAIL
    /// (and TRAIL-time) protects requests: past `cutoff` × their initial prediction they run to
    /// completion.
    pub fn preemptible(&self, r: &RankInput) -> bool {
        match self.kind {
            PolicyKind::Trail { cutoff } | PolicyKind::TrailTime { cutoff, .. } => {
                let initial = r
                    .initial_prediction
                    .or(r.max_output)
                    .unwrap_or(self.fallback_prediction);
                r.attained < cutoff * initial
            }
            _ => true,
        }
    }

    /// The predicted total output the rank uses, after the overrun rule.
    pub fn effective_prediction(&self, r: &RankInput) -> f64 {
        self.effective_total(r.predicted_total, r.max_output, r.attained)
    }

    /// [`Policy::effective_prediction`] from just the fields it needs (the engine calls it for
    /// every request every step, so it avoids building a whole [`RankInput`]).
    #[inline]
    pub fn effective_total(
        &self,
        predicted_total: Option<f64>,
        max_output: Option<f64>,
        attained: f64,
    ) -> f64 {
        let q = self.stable_total(predicted_total, max_output);
        match self.overrun {
            OverrunRule::Negative => q,
            OverrunRule::Clamp => q.max(attained),
            OverrunRule::Rescale { factor } => rescale(q, attained, factor),
        }
    }

    /// The effective predicted total while the request has generated less than it:
    /// [`Policy::effective_total`] returns exactly this for every `attained` below it, under
    /// every [`OverrunRule`]. The engine uses it to update the predicted backlog with integer
    /// arithmetic on every generated token, recomputing only when a prediction changes or the
    /// request reaches it.
    #[inline]
    pub fn stable_total(&self, predicted_total: Option<f64>, max_output: Option<f64>) -> f64 {
        let p = predicted_total
            .or(max_output)
            .unwrap_or(self.fallback_prediction);
        match self.overrun {
            OverrunRule::Negative | OverrunRule::Clamp => p,
            OverrunRule::Rescale { .. } => {
                if p >= 1.0 {
                    p
                } else {
                    1.0
                }
            }
        }
    }

    fn deadline(&self, r: &RankInput) -> f64 {
        match (r.deadline_s, self.default_deadline_us) {
            (Some(d), _) => d,
            (None, Some(rel)) => r.arrival_s + rel * 1e-6,
            (None, None) => f64::INFINITY,
        }
    }

    /// The rank (lower first), without aging.
    #[inline(always)]
    pub fn rank(&self, r: &RankInput) -> f64 {
        let remaining = || self.effective_prediction(r) - r.attained;
        match self.kind {
            PolicyKind::Fcfs => r.arrival_s,
            PolicyKind::Priority => r.priority,
            PolicyKind::Sjf => r
                .initial_prediction
                .or(r.predicted_total)
                .or(r.max_output)
                .unwrap_or(self.fallback_prediction),
            PolicyKind::Pspjf => r
                .predicted_total
                .or(r.max_output)
                .unwrap_or(self.fallback_prediction),
            PolicyKind::Sprpt | PolicyKind::Trail { .. } => remaining(),
            PolicyKind::SprptTime(costs) | PolicyKind::TrailTime { costs, .. } => {
                costs.remaining_us(r.prefill_left, r.prompt + r.attained, remaining())
            }
            PolicyKind::Las => r.attained,
            PolicyKind::Mlfq(p) => mlfq_level(&p, r.prompt, r.attained) as f64,
            PolicyKind::OneBit { threshold, .. } => {
                let p = r
                    .predicted_total
                    .or(r.max_output)
                    .unwrap_or(self.fallback_prediction);
                if p <= threshold { 0.0 } else { 1.0 }
            }
            PolicyKind::MemoryTime => {
                let rem = remaining().max(0.0);
                rem * (r.prompt + r.attained + rem * 0.5)
            }
            PolicyKind::Slack {
                decode_us_per_token,
                prefill_us_per_token,
            } => {
                let rem = remaining().max(0.0);
                let work_s =
                    (r.prefill_left * prefill_us_per_token + rem * decode_us_per_token) * 1e-6;
                self.deadline(r) - work_s
            }
            PolicyKind::Edf => self.deadline(r),
        }
    }

    /// The heap key: rank plus aging (`β × arrival`), then the tiebreak (arrival order).
    #[inline]
    pub fn key(&self, r: &RankInput, tiebreak: u64) -> RankKey {
        let mut k = self.rank(r);
        if self.aging_per_s != 0.0 {
            k += self.aging_per_s * r.arrival_s;
        }
        if k.is_nan() {
            // inf − inf in a deadline with infinite work: rank last rather than poison the heap.
            k = f64::INFINITY;
        }
        RankKey::new(k, tiebreak)
    }
}

/// Rescale steps taken one multiplication at a time before switching to logarithms: small step
/// counts (the common case) give exactly the result of repeated multiplication.
const RESCALE_DIRECT_STEPS: u32 = 16;

/// Bounded corrections of the logarithmic step count for rounding, each way.
const RESCALE_CORRECTIONS: u32 = 4;

/// [`OverrunRule::Rescale`]: the smallest `q · factor^k` (k ≥ 0) strictly above `attained`, in
/// O(1) whatever the factor (a factor just above 1 needs billions of steps one at a time).
///
/// Up to [`RESCALE_DIRECT_STEPS`] multiplications are done one by one; past that `k` comes
/// from `ln(attained / q) / ln(factor)` and is corrected by at most [`RESCALE_CORRECTIONS`]
/// steps each way for rounding. Edge cases: a NaN `attained` gives `q`; an infinite one gives
/// infinity (as does a step that overflows); a factor that is not above 1 (which
/// [`Policy::validate`] rejects) gives `max(q, attained)`, the `Clamp` rule, instead of never
/// finishing.
fn rescale(q: f64, attained: f64, factor: f64) -> f64 {
    // A NaN `attained` takes the early return, as in the one-step loop.
    if attained.is_nan() || q > attained {
        return q;
    }
    if factor.is_nan() || factor <= 1.0 {
        return q.max(attained);
    }
    if attained == f64::INFINITY {
        return f64::INFINITY;
    }
    let mut direct = q;
    for _ in 0..RESCALE_DIRECT_STEPS {
        direct *= factor;
        if direct > attained {
            return direct;
        }
    }
    // `direct` ≤ attained is finite and ≥ 1. `factor − 1` is exact for factors up to 2, and
    // `log1p` keeps the precision of a factor just above 1.
    let base = direct;
    let step = libm::log1p(factor - 1.0);
    let at = |k: f64| base * libm::pow(factor, k);
    // `max` also maps a NaN to 0.
    let mut k = libm::ceil(libm::log(attained / base) / step).max(0.0);
    let mut result = at(k);
    for _ in 0..RESCALE_CORRECTIONS {
        if result > attained {
            break;
        }
        k += 1.0;
        result = at(k);
    }
    for _ in 0..RESCALE_CORRECTIONS {
        if k < 1.0 {
            break;
        }
        let lower = at(k - 1.0);
        if lower > attained {
            k -= 1.0;
            result = lower;
        } else {
            break;
        }
    }
    if result > attained {
        result
    } else {
        // Rounding beat the corrections (a factor within a few ulps of 1 and a huge `k`):
        // the smallest value strictly above `attained` is what the one-step loop approaches.
        attained.next_up()
    }
}

/// The most MLFQ levels ([`Policy::validate`] rejects more).
pub const MAX_MLFQ_LEVELS: u32 = 64;

/// Skip-join MLFQ level for a request with `prompt` tokens that has generated `attained`:
/// it enters at the first level whose quantum covers `prompt × prefill_weight` and moves down
/// one level each time it uses up a level's quantum.
///
/// O(levels): both walks are bounded by the level count, and more than [`MAX_MLFQ_LEVELS`]
/// levels (which [`Policy::validate`] rejects) act as that many.
pub fn mlfq_level(p: &MlfqParams, prompt: f64, attained: f64) -> u32 {
    let entry_cost = prompt * p.prefill_weight;
    // The deepest level; `levels` = 0 (rejected by validation) acts as 1.
    let last = p.levels.clamp(1, MAX_MLFQ_LEVELS).saturating_sub(1);
    let mut level = 0u32;
    let mut quantum = p.base_quantum;
    while level < last && quantum < entry_cost {
        level = level.saturating_add(1);
        quantum *= p.growth;
    }
    let mut used = attained;
    while level < last && used >= quantum {
        used -= quantum;
        level = level.saturating_add(1);
        quantum *= p.growth;
    }
    level
}

/// One line per policy for documentation and `augur policies`: name, rank, preemption rule,
/// parameters.
#[derive(Clone, Copy, Debug)]
pub struct PolicyInfo {
    /// The name the command line uses.
    pub name: &'static str,
    /// The rank, lower first.
    pub rank: &'static str,
    /// When it preempts running work.
    pub preemption: &'static str,
    /// Its parameters.
    pub parameters: &'static str,
}

/// Every policy, in the order of DESIGN.md's table.
pub const POLICIES: &[PolicyInfo] = &[
    PolicyInfo {
        name: "fcfs",
        rank: "arrival time",
        preemption: "never for rank; memory victims are the latest arrivals",
        parameters: "-",
    },
    PolicyInfo {
        name: "priority",
        rank: "priority class (lower first), then arrival",
        preemption: "when a waiting class beats a running one by more than the margin",
        parameters: "margin",
    },
    PolicyInfo {
        name: "sjf",
        rank: "predicted total output at arrival",
        preemption: "never for rank (non-preemptive)",
        parameters: "-",
    },
    PolicyInfo {
        name: "pspjf",
        rank: "current predicted total output",
        preemption: "when a waiting request ranks better by more than the margin",
        parameters: "margin",
    },
    PolicyInfo {
        name: "sprpt",
        rank: "predicted total − generated",
        preemption: "when a waiting request ranks better by more than the margin",
        parameters: "overrun rule, margin",
    },
    PolicyInfo {
        name: "trail",
        rank: "predicted total − generated",
        preemption: "as sprpt, but never once generated ≥ cutoff × initial prediction",
        parameters: "cutoff (default 0.8)",
    },
    PolicyInfo {
        name: "sprpt-time",
        rank: "predicted remaining service time, µs: prefill left × p + r × (d + c × (context + r/2))",
        preemption: "when a waiting request ranks better by more than the margin",
        parameters: "µs per prefill token p, per decode step d, per context token per step c; overrun rule",
    },
    PolicyInfo {
        name: "trail-time",
        rank: "as sprpt-time",
        preemption: "as sprpt-time, but never once generated ≥ cutoff × initial prediction",
        parameters: "cutoff (default 0.8), p, d, c as sprpt-time",
    },
    PolicyInfo {
        name: "las",
        rank: "tokens generated (attained service)",
        preemption: "when a waiting request ranks better by more than the margin",
        parameters: "margin",
    },
    PolicyInfo {
        name: "mlfq",
        rank: "queue level from attained service; entry level from prompt length (skip-join)",
        preemption: "when a waiting request is in a better level by more than the margin",
        parameters: "base quantum, growth, levels, prefill weight",
    },
    PolicyInfo {
        name: "onebit",
        rank: "0 if predicted total ≤ threshold else 1, then arrival",
        preemption: "configurable",
        parameters: "threshold, preemptive",
    },
    PolicyInfo {
        name: "memory-time",
        rank: "predicted remaining memory-time: r × (context + r/2)",
        preemption: "when a waiting request ranks better by more than the margin",
        parameters: "overrun rule",
    },
    PolicyInfo {
        name: "slack",
        rank: "deadline − predicted remaining service time",
        preemption: "when a waiting request ranks better by more than the margin",
        parameters: "µs per decode token, µs per prefill token, default deadline",
    },
    PolicyInfo {
        name: "edf",
        rank: "deadline",
        preemption: "when a waiting request ranks better by more than the margin",
        parameters: "default deadline",
    },
    PolicyInfo {
        name: "+aging",
        rank: "any rank − β × time waited (static key: rank + β × arrival)",
        preemption: "as the base policy",
        parameters: "β (rank units per second)",
    },
    PolicyInfo {
        name: "+fair",
        rank: "tenant's virtual token counter first, then the base rank within the tenant",
        preemption: "the tenant with the largest counter yields first",
        parameters: "input/output token weights",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn req(attained: f64, predicted: f64) -> RankInput {
        RankInput {
            arrival_s: 2.0,
            prompt: 100.0,
            attained,
            predicted_total: Some(predicted),
            initial_prediction: Some(predicted),
            ..RankInput::default()
        }
    }

    #[test]
    fn test_ranks_of_size_based_policies() {
        let r = req(30.0, 100.0);
        assert_eq!(Policy::new(PolicyKind::Fcfs).rank(&r), 2.0);
        assert_eq!(Policy::new(PolicyKind::Sjf).rank(&r), 100.0);
        assert_eq!(Policy::new(PolicyKind::Pspjf).rank(&r), 100.0);
        assert_eq!(Policy::new(PolicyKind::Sprpt).rank(&r), 70.0);
        assert_eq!(Policy::new(PolicyKind::Las).rank(&r), 30.0);
        // memory-time: 70 × (130 + 35)
        assert_eq!(Policy::new(PolicyKind::MemoryTime).rank(&r), 70.0 * 165.0);
        let onebit = Policy::new(PolicyKind::OneBit {
            threshold: 100.0,
            preemptive: true,
        });
        assert_eq!(onebit.rank(&r), 0.0);
        assert_eq!(onebit.rank(&req(0.0, 101.0)), 1.0);
    }

    #[test]
    fn test_overrun_rules() {
        let r = req(150.0, 100.0);
        let mut p = Policy::new(PolicyKind::Sprpt);
        p.overrun = OverrunRule::Negative;
        assert_eq!(p.rank(&r), -50.0);
        p.overrun = OverrunRule::Clamp;
        assert_eq!(p.rank(&r), 0.0);
        p.overrun = OverrunRule::Rescale { factor: 2.0 };
        assert_eq!(p.rank(&r), 50.0); // 100 → 200
        assert_eq!(p.rank(&req(200.0, 100.0)), 200.0); // 100 → 200 → 400
    }

    /// The loop the O(1) rescale replaces: the smallest `q·factor^k` strictly above `attained`.
    fn naive_rescale(p: f64, attained: f64, factor: f64) -> f64 {
        let mut q = if p >= 1.0 { p } else { 1.0 };
        while q <= attained {
            q *= factor;
        }
        q
    }

    fn rescale_policy(factor: f64) -> Policy {
        let mut p = Policy::new(PolicyKind::Sprpt);
        p.overrun = OverrunRule::Rescale { factor };
        p
    }

    #[test]
    fn test_rescale_with_a_factor_just_above_one_is_instant() {
        // The loop took ~2e13 multiplications here (hours); validation accepts the factor.
        let factor = 1.0 + 1e-12;
        let p = rescale_policy(factor);
        assert_eq!(p.validate(), Ok(()));
        let attained = 4e9;
        let q = p.effective_total(Some(100.0), None, attained);
        assert!(q > attained, "{q}");
        assert!(
            q / factor <= attained * (1.0 + 1e-9),
            "{q} is not the smallest step"
        );
        // The smallest representable factor above 1, and huge or infinite attained service.
        let tiny = rescale_policy(1.0 + f64::EPSILON);
        let q = tiny.effective_total(Some(1.0), None, 1e300);
        assert!(q > 1e300 && q < 1.000_001e300, "{q}");
        assert_eq!(
            tiny.effective_total(Some(1.0), None, f64::INFINITY),
            f64::INFINITY
        );
        assert_eq!(
            rescale_policy(2.0).effective_total(Some(1.0), None, f64::MAX),
            f64::INFINITY
        );
    }

    #[test]
    fn test_rescale_matches_the_loop() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        for case in 0..20_000 {
            let factor = match case % 4 {
                0 => 2.0,
                1 => 1.0 + next() * 3.0,
                2 => 1.0 + next() * 0.05 + 1e-6,
                _ => 1.5,
            };
            let p = next() * 2000.0 - 10.0;
            let attained = match case % 3 {
                0 => next() * 100.0,
                1 => next() * 1e5,
                _ => libm::floor(next() * 3000.0),
            };
            let fast = rescale_policy(factor).effective_total(Some(p), None, attained);
            let naive = naive_rescale(p, attained, factor);
            assert!(fast > attained, "{p} {attained} {factor}: {fast}");
            // Equal up to rounding; where `attained` sits on a step boundary (within rounding),
            // the two may pick neighbouring steps.
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
            assert!(
                close(fast, naive)
                    || ((close(fast, naive * factor) || close(fast * factor, naive))
                        && (close(naive / factor, attained) || close(fast / factor, attained))),
                "p {p} attained {attained} factor {factor}: fast {fast} naive {naive}"
            );
        }
        // Exact for the common small step counts.
        assert_eq!(
            rescale_policy(2.0).effective_total(Some(100.0), None, 150.0),
            200.0
        );
        assert_eq!(
            rescale_policy(1.1).effective_total(Some(3.0), None, 50.0),
            naive_rescale(3.0, 50.0, 1.1)
        );
    }

    #[test]
    fn test_trail_cutoff_and_preemptiveness() {
        let trail = Policy::new(PolicyKind::Trail { cutoff: 0.8 });
        assert!(trail.preemptible(&req(79.0, 100.0)));
        assert!(!trail.preemptible(&req(80.0, 100.0)));
        assert!(trail.preempts_for_rank());
        assert!(!Policy::new(PolicyKind::Sjf).preempts_for_rank());
        assert!(!Policy::new(PolicyKind::Fcfs).preempts_for_rank());
        assert!(Policy::new(PolicyKind::Sprpt).preemptible(&req(1e9, 1.0)));
    }

    #[test]
    fn test_aging_keys_are_static_and_order_by_waiting_time() {
        let mut p = Policy::new(PolicyKind::Sjf);
        p.aging_per_s = 10.0;
        // Same size: earlier arrival wins. A 50-token-larger job that arrived 10 s earlier
        // (aging 10/s → 100 rank units) outranks a fresh one.
        let old_big = RankInput {
            arrival_s: 0.0,
            ..req(0.0, 150.0)
        };
        let new_small = RankInput {
            arrival_s: 10.0,
            ..req(0.0, 100.0)
        };
        assert!(p.key(&old_big, 0) < p.key(&new_small, 1));
        p.aging_per_s = 0.0;
        assert!(p.key(&old_big, 0) > p.key(&new_small, 1));
        // Ties go to the tiebreak.
        assert!(p.key(&new_small, 1) < p.key(&new_small, 2));
    }

    #[test]
    fn test_mlfq_skip_join_and_demotion() {
        let p = MlfqParams {
            base_quantum: 10.0,
            growth: 2.0,
            levels: 4,
            prefill_weight: 0.1,
        };
        assert_eq!(mlfq_level(&p, 50.0, 0.0), 0); // 5 ≤ 10
        assert_eq!(mlfq_level(&p, 150.0, 0.0), 1); // 15 > 10, ≤ 20
        assert_eq!(mlfq_level(&p, 50.0, 9.0), 0);
        assert_eq!(mlfq_level(&p, 50.0, 10.0), 1);
        assert_eq!(mlfq_level(&p, 50.0, 29.0), 1);
        assert_eq!(mlfq_level(&p, 50.0, 30.0), 2);
        assert_eq!(mlfq_level(&p, 50.0, 1e9), 3, "capped at the last level");
        // An unvalidated level count is bounded by MAX_MLFQ_LEVELS: the walk stays short.
        let flat = MlfqParams {
            base_quantum: 1.0,
            growth: 1.0,
            levels: u32::MAX,
            prefill_weight: 0.0,
        };
        assert_eq!(mlfq_level(&flat, 0.0, 1e12), MAX_MLFQ_LEVELS - 1);
        assert_eq!(mlfq_level(&MlfqParams { levels: 0, ..p }, 1e9, 1e9), 0);
    }

    #[test]
    fn test_slack_and_edf() {
        let mut p = Policy::new(PolicyKind::Slack {
            decode_us_per_token: 10_000.0,
            prefill_us_per_token: 0.0,
        });
        let mut r = req(0.0, 100.0);
        r.deadline_s = Some(5.0);
        assert!((p.rank(&r) - 4.0).abs() < 1e-12); // 100 tokens × 10 ms = 1 s of work
        r.deadline_s = None;
        assert_eq!(p.rank(&r), f64::INFINITY);
        p.default_deadline_us = Some(3e6);
        assert!((p.rank(&r) - 4.0).abs() < 1e-12); // 2 + 3 − 1
        let edf = Policy {
            default_deadline_us: Some(1e6),
            ..Policy::new(PolicyKind::Edf)
        };
        assert_eq!(edf.rank(&r), 3.0);
    }

    fn costs(p: f64, d: f64, c: f64) -> TimeCosts {
        TimeCosts {
            prefill_us_per_token: p,
            decode_us_per_token: d,
            context_us_per_token: c,
        }
    }

    #[test]
    fn test_time_rank_hand_computed() {
        // 300 prompt tokens of which 200 still to prefill, 40 generated of a predicted 100:
        // r = 60, context 340. T = 200·2 + 60·(10 + 0.5·(340 + 30)) = 400 + 60·195 = 12,100.
        let r = RankInput {
            prompt: 300.0,
            attained: 40.0,
            prefill_left: 200.0,
            predicted_total: Some(100.0),
            initial_prediction: Some(100.0),
            ..RankInput::default()
        };
        let k = costs(2.0, 10.0, 0.5);
        assert_eq!(Policy::new(PolicyKind::SprptTime(k)).rank(&r), 12_100.0);
        let trail = Policy::new(PolicyKind::TrailTime {
            cutoff: 0.8,
            costs: k,
        });
        assert_eq!(trail.rank(&r), 12_100.0);
        // Zero costs rank everything alike; decode-only costs order as SPRPT does.
        assert_eq!(
            Policy::new(PolicyKind::SprptTime(TimeCosts::default())).rank(&r),
            0.0
        );
        assert_eq!(
            Policy::new(PolicyKind::SprptTime(costs(0.0, 1.0, 0.0))).rank(&r),
            Policy::new(PolicyKind::Sprpt).rank(&r)
        );
        // Overrun under Clamp: no decode left, only the prefill term.
        let over = RankInput {
            attained: 150.0,
            ..r
        };
        assert_eq!(Policy::new(PolicyKind::SprptTime(k)).rank(&over), 400.0);
    }

    #[test]
    fn test_time_rank_puts_long_prompts_behind_exactly_when_the_formula_says() {
        // A: long prompt (8,000 to prefill), 10 output tokens. B: short prompt (100), 500 out.
        let a = RankInput {
            prompt: 8000.0,
            prefill_left: 8000.0,
            predicted_total: Some(10.0),
            initial_prediction: Some(10.0),
            ..RankInput::default()
        };
        let b = RankInput {
            arrival_s: 1.0,
            prompt: 100.0,
            prefill_left: 100.0,
            predicted_total: Some(500.0),
            initial_prediction: Some(500.0),
            ..RankInput::default()
        };
        // Output-length SPRPT always serves A first.
        let sprpt = Policy::new(PolicyKind::Sprpt);
        assert!(sprpt.key(&a, 0) < sprpt.key(&b, 1));
        let d = 20.0;
        let c = 0.01;
        for p in [0.0, 0.5, 1.0, 1.2, 1.25, 1.3, 2.0, 5.0] {
            let time_a = 8000.0 * p + 10.0 * (d + c * (8000.0 + 5.0));
            let time_b = 100.0 * p + 500.0 * (d + c * (100.0 + 250.0));
            let pol = Policy::new(PolicyKind::SprptTime(costs(p, d, c)));
            let a_first = pol.key(&a, 0) < pol.key(&b, 1);
            assert_eq!(a_first, time_a < time_b, "p = {p}: {time_a} vs {time_b}");
        }
        // The crossing is inside the range tried: both orders occur.
        let at = |p| Policy::new(PolicyKind::SprptTime(costs(p, d, c)));
        assert!(at(0.5).key(&a, 0) < at(0.5).key(&b, 1));
        assert!(at(2.0).key(&a, 0) > at(2.0).key(&b, 1));
    }

    #[test]
    fn test_trail_time_keeps_trails_cutoff() {
        let t = Policy::new(PolicyKind::TrailTime {
            cutoff: 0.5,
            costs: costs(1.0, 1.0, 0.0),
        });
        assert!(t.preemptible(&req(49.0, 100.0)));
        assert!(!t.preemptible(&req(50.0, 100.0)));
        assert!(t.preempts_for_rank());
        assert!(
            Policy::new(PolicyKind::SprptTime(costs(1.0, 1.0, 0.0))).preemptible(&req(1e9, 1.0))
        );
    }

    #[test]
    fn test_time_costs_are_validated() {
        for (bad, field) in [
            (costs(f64::NAN, 0.0, 0.0), "time.prefill_us_per_token"),
            (costs(0.0, -1.0, 0.0), "time.decode_us_per_token"),
            (costs(0.0, 0.0, f64::INFINITY), "time.context_us_per_token"),
        ] {
            assert_eq!(
                Policy::new(PolicyKind::SprptTime(bad)).validate(),
                Err(PolicyError(field))
            );
            let trail = PolicyKind::TrailTime {
                cutoff: 0.8,
                costs: bad,
            };
            assert_eq!(Policy::new(trail).validate(), Err(PolicyError(field)));
        }
        let bad_cutoff = PolicyKind::TrailTime {
            cutoff: -0.1,
            costs: costs(1.0, 1.0, 1.0),
        };
        assert_eq!(
            Policy::new(bad_cutoff).validate(),
            Err(PolicyError("cutoff"))
        );
        assert_eq!(
            Policy::new(PolicyKind::SprptTime(costs(1.0, 2.0, 3.0))).validate(),
            Ok(())
        );
    }

    #[test]
    fn test_validation_names_fields() {
        let mut p = Policy::new(PolicyKind::Trail { cutoff: f64::NAN });
        assert_eq!(p.validate(), Err(PolicyError("cutoff")));
        p.kind = PolicyKind::Sprpt;
        p.aging_per_s = -1.0;
        assert_eq!(p.validate(), Err(PolicyError("aging_per_s")));
        p.aging_per_s = 0.0;
        p.overrun = OverrunRule::Rescale { factor: 1.0 };
        assert_eq!(p.validate(), Err(PolicyError("overrun.factor")));
        p.overrun = OverrunRule::Clamp;
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(POLICIES.len(), 16);
    }
}
