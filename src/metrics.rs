//! Per-request records of a simulation run and the summary metrics computed from them.
//!
//! The simulator produces one [`RequestRecord`] per trace request and a set of [`RunCounters`]
//! for the whole run; [`summarize`] turns them into a [`Summary`], the row that reports, sweep
//! CSVs and plots are made of.
//!
//! # Definitions
//!
//! A request is *completed* when it has a `finish_s`, *rejected* when it has no `finish_s` but a
//! rejection reason, and *unfinished* (the simulation was cut off) when it has neither. Latency
//! statistics are taken over the completed requests only:
//!
//! | metric | definition | population |
//! | --- | --- | --- |
//! | e2e | `finish_s − arrival_s` | completed |
//! | TTFT | `first_token_s − arrival_s` | completed with a `first_token_s` |
//! | TPOT | `(finish_s − first_token_s) / (output_tokens − 1)` | completed with a `first_token_s` and `output_tokens ≥ 2` |
//! | throughput | Σ `output_tokens` of completed requests / `simulated_s` | |
//! | prefix hit rate | `prefix_hit_tokens / prompt_tokens_scheduled` | |
//! | KV utilization | `kv_utilization_sum / kv_utilization_samples` | |
//! | MFU (busy) | Σ iteration FLOPs / Σ (peak FLOP/s × iteration time) | iterations |
//! | MFU | Σ iteration FLOPs / (peak FLOP/s × `simulated_s`), peaks summed over replicas | |
//! | HBM bandwidth utilisation | the same with HBM bytes and the peak bandwidth | |
//! | bound shares | iterations (or their busy time) by [`crate::cost::IterationCost::bound`] / all | iterations |
//!
//! Percentiles use linear interpolation between closest ranks, numpy's default
//! (see [`percentile`]).
//!
//! # Empty inputs
//!
//! Every floating-point field of a [`Summary`] is finite, so JSON output never carries `NaN`.
//! A latency statistic over an empty population (no completed request; for TPOT, no completed
//! request with two or more output tokens) is `None`: `null` in JSON, an empty CSV cell and
//! `-` in tables, never a fake `0.00 ms`. Other rates over an empty population (no utilization
//! samples, a zero simulated time) are `0.0`; the counts (`requests_completed` and so on) tell
//! a reader whether a zero is real. A non-finite value computed from non-finite inputs, which a correct
//! simulation never produces, is also reported as `0.0`. The SLO fields are the only optional
//! ones: they are `None` when no SLO is given (see [`Slo`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What happened to one trace request during a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The request's id in the trace.
    pub id: u64,
    /// Arrival time, in simulated seconds.
    pub arrival_s: f64,
    /// Prompt (input) length in tokens.
    pub prompt_tokens: u32,
    /// Output length in tokens (the true length from the trace).
    pub output_tokens: u32,
    /// When the first output token was produced, if it was.
    pub first_token_s: Option<f64>,
    /// When the last output token was produced; `Some` exactly for completed requests.
    pub finish_s: Option<f64>,
    /// Why the request was rejected, if it was (for example, it can never fit the KV cache).
    pub rejected: Option<String>,
    /// How many times the request was preempted (recompute or swap).
    pub preemptions: u32,
}

impl RequestRecord {
    /// Whether the request completed (has a finish time).
    pub fn is_completed(&self) -> bool {
        self.finish_s.is_some()
    }

    /// Whether the request was rejected (and did not complete).
    pub fn is_rejected(&self) -> bool {
        self.finish_s.is_none() && self.rejected.is_some()
    }

    /// End-to-end latency `finish_s − arrival_s`, for a completed request.
    pub fn e2e_s(&self) -> Option<f64> {
        self.finish_s.map(|f| f - self.arrival_s)
    }

    /// Time to first token `first_token_s − arrival_s`, for a completed request that has a
    /// first-token time.
    pub fn ttft_s(&self) -> Option<f64> {
        self.finish_s?;
        self.first_token_s.map(|t| t - self.arrival_s)
    }

    /// Time per output token after the first, `(finish_s − first_token_s) / (output_tokens − 1)`,
    /// for a completed request with a first-token time and at least two output tokens.
    pub fn tpot_s(&self) -> Option<f64> {
        if self.output_tokens < 2 {
            return None;
        }
        let (first, finish) = (self.first_token_s?, self.finish_s?);
        Some((finish - first) / f64::from(self.output_tokens - 1))
    }
}

/// Run-wide counters the simulator accumulates alongside the per-request records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunCounters {
    /// Preemptions that dropped the victim's KV cache (to be recomputed later).
    pub preemptions_recompute: u64,
    /// Preemptions that swapped the victim's KV cache out to host memory.
    pub preemptions_swap: u64,
    /// Preemptions that kept the victim's KV cache on the device (only the batch was full).
    pub preemptions_keep: u64,
    /// Tokens whose KV entries had to be computed again after a recompute preemption.
    pub recomputed_tokens: u64,
    /// Prompt tokens whose KV entries were found in the prefix cache.
    pub prefix_hit_tokens: u64,
    /// Prompt tokens scheduled for prefill, hits included (the prefix hit rate's denominator).
    pub prompt_tokens_scheduled: u64,
    /// Sum of the sampled KV cache utilizations (each in `[0, 1]`).
    pub kv_utilization_sum: f64,
    /// Number of KV cache utilization samples in `kv_utilization_sum`.
    pub kv_utilization_samples: u64,
    /// Simulated time covered by the run, in seconds.
    pub simulated_s: f64,
    /// Wall-clock time the simulation took, in seconds.
    pub wall_s: f64,
    /// KV blocks swapped out to host memory.
    pub swapped_blocks: u64,
    /// Model iterations run.
    #[serde(default)]
    pub steps: u64,
    /// Σ over iterations of their time (swaps included), µs: the time the replica was busy.
    #[serde(default)]
    pub busy_us: f64,
    /// Σ over iterations of their FLOPs (over all GPUs of the replica), from the cost model.
    #[serde(default)]
    pub flops: f64,
    /// Σ over iterations of their HBM bytes (over all GPUs), from the cost model.
    #[serde(default)]
    pub hbm_bytes: f64,
    /// Σ over iterations of peak FLOP/s × the iteration's time in s: the FLOPs the replica's
    /// GPUs could have done while busy (the denominator of [`Summary::mfu_busy`]).
    #[serde(default)]
    pub flops_capacity_busy: f64,
    /// Σ over iterations of peak HBM bandwidth × the iteration's time in s.
    #[serde(default)]
    pub hbm_capacity_busy: f64,
    /// The replicas' peak FLOP/s, summed over replicas (the makespan denominator of
    /// [`Summary::mfu`] is this times `simulated_s`).
    #[serde(default)]
    pub peak_flops: f64,
    /// The replicas' peak HBM bandwidth, bytes/s, summed over replicas.
    #[serde(default)]
    pub peak_hbm_bytes_per_s: f64,
    /// Iterations whose time was mostly compute-bound kernels, mostly memory-bound kernels,
    /// or mostly overhead (see [`crate::cost::IterationCost::bound`]).
    #[serde(default)]
    pub steps_by_bound: [u64; 3],
    /// Busy time (µs) of the iterations in each class of `steps_by_bound`.
    #[serde(default)]
    pub busy_us_by_bound: [f64; 3],
}

impl RunCounters {
    /// Adds `c`'s utilisation counters (steps, busy time, FLOPs, bytes, capacities, peaks and
    /// bound classes) into these.
    pub fn add_utilisation(&mut self, c: &RunCounters) {
        self.steps += c.steps;
        self.busy_us += c.busy_us;
        self.flops += c.flops;
        self.hbm_bytes += c.hbm_bytes;
        self.flops_capacity_busy += c.flops_capacity_busy;
        self.hbm_capacity_busy += c.hbm_capacity_busy;
        self.peak_flops += c.peak_flops;
        self.peak_hbm_bytes_per_s += c.peak_hbm_bytes_per_s;
        for k in 0..3 {
            self.steps_by_bound[k] += c.steps_by_bound[k];
            self.busy_us_by_bound[k] += c.busy_us_by_bound[k];
        }
    }
}

/// Service-level objectives for goodput; each given bound must hold for a request to count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// Upper bound on the time to first token, in seconds. A completed request without a
    /// first-token time does not meet it.
    pub ttft_s: Option<f64>,
    /// Upper bound on the time per output token, in seconds. A request with fewer than two
    /// output tokens has no TPOT and meets it vacuously.
    pub tpot_s: Option<f64>,
}

impl Slo {
    /// Whether any bound is given.
    pub fn is_set(&self) -> bool {
        self.ttft_s.is_some() || self.tpot_s.is_some()
    }

    /// Whether a completed request meets every given bound (`false` for a request that did not
    /// complete).
    pub fn is_met_by(&self, r: &RequestRecord) -> bool {
        if !r.is_completed() {
            return false;
        }
        let ttft_ok = self
            .ttft_s
            .is_none_or(|bound| r.ttft_s().is_some_and(|t| t <= bound));
        let tpot_ok = self
            .tpot_s
            .is_none_or(|bound| r.tpot_s().is_none_or(|t| t <= bound));
        ttft_ok && tpot_ok
    }
}

/// The summary metrics of one run (see the [module documentation](self) for the definitions).
///
/// The field names are a stable interface: they are the JSON keys and CSV column names that
/// other tools read. Times are in seconds, rates per simulated second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of request records.
    pub requests_total: u64,
    /// Requests that completed.
    pub requests_completed: u64,
    /// Requests that were rejected.
    pub requests_rejected: u64,
    /// Rejected requests by reason (the reasons of [`RequestRecord::rejected`] up to their
    /// first `": "`, which starts a request's own detail). Not one of
    /// [`crate::report::SUMMARY_FIELDS`]' serde fields: reports write it themselves, as a JSON
    /// object in JSON and as a JSON-encoded cell in CSV (see [`crate::report`]).
    #[serde(skip)]
    pub requests_rejected_by_reason: BTreeMap<String, u64>,
    /// Mean end-to-end latency of completed requests.
    pub mean_e2e_s: Option<f64>,
    /// Median end-to-end latency.
    pub p50_e2e_s: Option<f64>,
    /// 90th percentile of end-to-end latency.
    pub p90_e2e_s: Option<f64>,
    /// 99th percentile of end-to-end latency.
    pub p99_e2e_s: Option<f64>,
    /// Mean time to first token.
    pub mean_ttft_s: Option<f64>,
    /// 99th percentile of time to first token.
    pub p99_ttft_s: Option<f64>,
    /// Mean time per output token (requests with at least two output tokens).
    pub mean_tpot_s: Option<f64>,
    /// 99th percentile of time per output token.
    pub p99_tpot_s: Option<f64>,
    /// Output tokens of completed requests per simulated second.
    pub throughput_output_tokens_per_s: f64,
    /// Preemptions by recomputation.
    pub preemptions_recompute: u64,
    /// Preemptions by swapping.
    pub preemptions_swap: u64,
    /// Preemptions that kept the KV cache in place (a full batch, not memory, forced them).
    pub preemptions_keep: u64,
    /// Tokens recomputed after preemptions.
    pub recomputed_tokens: u64,
    /// Fraction of scheduled prompt tokens served from the prefix cache (0 when none scheduled).
    pub prefix_hit_rate: f64,
    /// Mean sampled KV cache utilization (0 when never sampled).
    pub kv_utilization_mean: f64,
    /// Simulated time covered by the run.
    pub simulated_s: f64,
    /// Wall-clock time of the simulation.
    pub wall_s: f64,
    /// Completed requests meeting the SLO per simulated second; `None` without an SLO.
    pub goodput_req_per_s: Option<f64>,
    /// Fraction of completed requests meeting the SLO (0 when none completed); `None` without
    /// an SLO.
    pub slo_attainment: Option<f64>,
    /// Model FLOPs utilisation over busy time: Σ iteration FLOPs / Σ (peak FLOP/s × iteration
    /// time), from the cost model (0 with no iteration).
    #[serde(default)]
    pub mfu_busy: f64,
    /// Model FLOPs utilisation over the makespan: Σ FLOPs / (peak FLOP/s × `simulated_s`),
    /// summed over replicas.
    #[serde(default)]
    pub mfu: f64,
    /// HBM bandwidth utilisation over busy time: Σ bytes / Σ (peak bandwidth × iteration time).
    #[serde(default)]
    pub hbm_bw_util_busy: f64,
    /// HBM bandwidth utilisation over the makespan.
    #[serde(default)]
    pub hbm_bw_util: f64,
    /// Fraction of the makespan the replicas were running iterations (`mfu / mfu_busy`).
    #[serde(default)]
    pub busy_fraction: f64,
    /// Fraction of iterations mostly spent in compute-bound kernels.
    #[serde(default)]
    pub compute_bound_steps: f64,
    /// Fraction of iterations mostly spent in memory-bound kernels.
    #[serde(default)]
    pub memory_bound_steps: f64,
    /// Fraction of iterations mostly spent in overhead (floor-bound kernels, all-reduces,
    /// CPU/framework time).
    #[serde(default)]
    pub overhead_bound_steps: f64,
    /// Fraction of busy time in compute-bound iterations.
    #[serde(default)]
    pub compute_bound_time: f64,
    /// Fraction of busy time in memory-bound iterations.
    #[serde(default)]
    pub memory_bound_time: f64,
    /// Fraction of busy time in overhead-bound iterations.
    #[serde(default)]
    pub overhead_bound_time: f64,
}

/// The `q`-th percentile (`q` in percent, clamped to `[0, 100]`) of an ascending slice, by
/// linear interpolation between closest ranks, like numpy's default
/// (`numpy.percentile(..., method="linear")`): with `h = (n − 1) · q / 100`, the result is
/// `x[⌊h⌋] + (h − ⌊h⌋) · (x[⌊h⌋ + 1] − x[⌊h⌋])`.
///
/// Returns `0.0` for an empty slice. The slice must be sorted ascending; this is not checked.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 100.0) };
    let h = (n - 1) as f64 * q / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = h - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    if frac == 0.0 { a } else { a + frac * (b - a) }
}

/// The arithmetic mean, `0.0` for an empty slice.
fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// `x`, or `0.0` when `x` is not finite.
fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// `num / den`, or `0.0` when the quotient is not finite (in particular when `den` is 0).
fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 { 0.0 } else { finite(num / den) }
}

/// `f(xs)` (made finite), or `None` over an empty population.
fn stat(xs: &[f64], f: impl Fn(&[f64]) -> f64) -> Option<f64> {
    (!xs.is_empty()).then(|| finite(f(xs)))
}

/// The rejected requests counted by reason: the part of [`RequestRecord::rejected`] before
/// its first `": "` (the rest is the request's own detail, such as its block count), or the
/// whole reason when it has none.
fn rejected_by_reason(records: &[RequestRecord]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for r in records.iter().filter(|r| r.is_rejected()) {
        if let Some(why) = &r.rejected {
            let class = why.split_once(": ").map_or(why.as_str(), |(head, _)| head);
            *counts.entry(class.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// The values in ascending order.
fn sorted(mut xs: Vec<f64>) -> Vec<f64> {
    xs.sort_by(f64::total_cmp);
    xs
}

/// Computes the [`Summary`] of a run from its per-request records and counters.
///
/// See the [module documentation](self) for the definitions and the handling of empty inputs.
/// The SLO fields are `Some` exactly when `slo` gives at least one bound.
pub fn summarize(records: &[RequestRecord], counters: &RunCounters, slo: &Slo) -> Summary {
    let completed: Vec<&RequestRecord> = records.iter().filter(|r| r.is_completed()).collect();
    let e2e = sorted(completed.iter().filter_map(|r| r.e2e_s()).collect());
    let ttft = sorted(completed.iter().filter_map(|r| r.ttft_s()).collect());
    let tpot = sorted(completed.iter().filter_map(|r| r.tpot_s()).collect());
    let output_tokens: u64 = completed.iter().map(|r| u64::from(r.output_tokens)).sum();
    let simulated_s = finite(counters.simulated_s);

    let (goodput_req_per_s, slo_attainment) = if slo.is_set() {
        let met = completed.iter().filter(|r| slo.is_met_by(r)).count() as f64;
        (
            Some(ratio(met, simulated_s)),
            Some(ratio(met, completed.len() as f64)),
        )
    } else {
        (None, None)
    };

    Summary {
        requests_total: records.len() as u64,
        requests_completed: completed.len() as u64,
        requests_rejected: records.iter().filter(|r| r.is_rejected()).count() as u64,
        requests_rejected_by_reason: rejected_by_reason(records),
        mean_e2e_s: stat(&e2e, mean),
        p50_e2e_s: stat(&e2e, |x| percentile(x, 50.0)),
        p90_e2e_s: stat(&e2e, |x| percentile(x, 90.0)),
        p99_e2e_s: stat(&e2e, |x| percentile(x, 99.0)),
        mean_ttft_s: stat(&ttft, mean),
        p99_ttft_s: stat(&ttft, |x| percentile(x, 99.0)),
        mean_tpot_s: stat(&tpot, mean),
        p99_tpot_s: stat(&tpot, |x| percentile(x, 99.0)),
        throughput_output_tokens_per_s: ratio(output_tokens as f64, simulated_s),
        preemptions_recompute: counters.preemptions_recompute,
        preemptions_swap: counters.preemptions_swap,
        preemptions_keep: counters.preemptions_keep,
        recomputed_tokens: counters.recomputed_tokens,
        prefix_hit_rate: ratio(
            counters.prefix_hit_tokens as f64,
            counters.prompt_tokens_scheduled as f64,
        ),
        kv_utilization_mean: ratio(
            counters.kv_utilization_sum,
            counters.kv_utilization_samples as f64,
        ),
        simulated_s,
        wall_s: finite(counters.wall_s),
        goodput_req_per_s,
        slo_attainment,
        mfu_busy: ratio(counters.flops, counters.flops_capacity_busy),
        mfu: ratio(counters.flops, counters.peak_flops * simulated_s),
        hbm_bw_util_busy: ratio(counters.hbm_bytes, counters.hbm_capacity_busy),
        hbm_bw_util: ratio(
            counters.hbm_bytes,
            counters.peak_hbm_bytes_per_s * simulated_s,
        ),
        // Mathematically at most 1; the two sums round differently.
        busy_fraction: ratio(
            counters.flops_capacity_busy,
            counters.peak_flops * simulated_s,
        )
        .min(1.0),
        compute_bound_steps: ratio(counters.steps_by_bound[0] as f64, counters.steps as f64),
        memory_bound_steps: ratio(counters.steps_by_bound[1] as f64, counters.steps as f64),
        overhead_bound_steps: ratio(counters.steps_by_bound[2] as f64, counters.steps as f64),
        compute_bound_time: ratio(counters.busy_us_by_bound[0], counters.busy_us),
        memory_bound_time: ratio(counters.busy_us_by_bound[1], counters.busy_us),
        overhead_bound_time: ratio(counters.busy_us_by_bound[2], counters.busy_us),
    }
}

/// The fraction of *all* `records` (completed or not) that meet `slo`: requests that were
/// rejected or left unfinished count as missing it. `0.0` for no records. (The summary's
/// [`Summary::slo_attainment`] is over completed requests only.)
pub fn slo_fraction_met(records: &[RequestRecord], slo: &Slo) -> f64 {
    let met = records.iter().filter(|r| slo.is_met_by(r)).count();
    ratio(met as f64, records.len() as f64)
}

/// The mean normalised latency, seconds per output token: the mean over completed requests
/// with at least one output token of end-to-end latency / output tokens (the metric of
/// FastServe, InferCept and Orca). `None` when there is no such request.
pub fn mean_normalized_latency_s(records: &[RequestRecord]) -> Option<f64> {
    let per_token: Vec<f64> = records
        .iter()
        .filter(|r| r.output_tokens > 0)
        .filter_map(|r| r.e2e_s().map(|e| e / f64::from(r.output_tokens)))
        .collect();
    stat(&per_token, mean)
}

/// The most points [`latency_cdf`] returns.
pub const CDF_MAX_POINTS: usize = 500;

/// The empirical CDF of the end-to-end latency of completed requests, as ascending
/// `(latency_s, cumulative_fraction)` points, the fraction being that of completed requests
/// with a latency at most `latency_s`.
///
/// Tied latencies give one point (with the fraction after the last of them). When there are
/// more than [`CDF_MAX_POINTS`] distinct latencies, the points are downsampled evenly by rank
/// to at most that many, always keeping the first and the last (whose fraction is 1). Empty
/// when no request completed; non-finite latencies are left out.
pub fn latency_cdf(records: &[RequestRecord]) -> Vec<(f64, f64)> {
    let e2e = sorted(
        records
            .iter()
            .filter_map(RequestRecord::e2e_s)
            .filter(|x| x.is_finite())
            .collect(),
    );
    let n = e2e.len() as f64;
    let distinct: Vec<(f64, f64)> = e2e
        .iter()
        .enumerate()
        .filter(|&(i, x)| e2e.get(i + 1) != Some(x))
        .map(|(i, &x)| (x, (i + 1) as f64 / n))
        .collect();
    let m = distinct.len();
    if m <= CDF_MAX_POINTS {
        return distinct;
    }
    // Evenly spaced ranks 0 = k_0 < k_1 < ... < k_{P−1} = m − 1; strictly increasing since
    // m − 1 ≥ P − 1.
    let last = CDF_MAX_POINTS - 1;
    (0..CDF_MAX_POINTS)
        .map(|j| distinct[(j * (m - 1) + last / 2) / last])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    macro_rules! assert_close {
        ($a:expr, $b:expr) => {{
            let (a, b): (f64, f64) = ($a, $b);
            assert!(close(a, b), "{} = {a}, expected {b}", stringify!($a));
        }};
    }

    fn record(arrival_s: f64, output_tokens: u32, finish_s: Option<f64>) -> RequestRecord {
        RequestRecord {
            id: 0,
            arrival_s,
            prompt_tokens: 8,
            output_tokens,
            first_token_s: finish_s,
            finish_s,
            rejected: None,
            preemptions: 0,
        }
    }

    #[test]
    fn normalized_latency_averages_per_token_latency_of_completed_requests() {
        assert_eq!(mean_normalized_latency_s(&[]), None);
        // Unfinished and zero-output requests are left out.
        let none = [record(0.0, 4, None), record(0.0, 0, Some(1.0))];
        assert_eq!(mean_normalized_latency_s(&none), None);
        // (2 s / 4 tokens + 9 s / 3 tokens) / 2 = (0.5 + 3) / 2; a mean of ratios, not 11 / 7.
        let rs = [
            record(1.0, 4, Some(3.0)),
            record(0.0, 3, Some(9.0)),
            record(0.0, 5, None),
        ];
        assert_close!(mean_normalized_latency_s(&rs).unwrap(), 1.75);
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        assert_eq!(percentile(&[], 50.0), 0.0);
        // One element: every percentile is that element.
        for q in [0.0, 1.0, 50.0, 99.0, 100.0] {
            assert_eq!(percentile(&[7.5], q), 7.5);
        }
        // Two elements: h = q / 100.
        let two = [1.0, 3.0];
        assert_close!(percentile(&two, 0.0), 1.0);
        assert_close!(percentile(&two, 50.0), 2.0);
        assert_close!(percentile(&two, 90.0), 2.8);
        assert_close!(percentile(&two, 99.0), 2.98);
        assert_close!(percentile(&two, 100.0), 3.0);
        // numpy.percentile([1, 2, 3, 4], [25, 50, 90, 99]) = [1.75, 2.5, 3.7, 3.97]
        let four = [1.0, 2.0, 3.0, 4.0];
        assert_close!(percentile(&four, 25.0), 1.75);
        assert_close!(percentile(&four, 50.0), 2.5);
        assert_close!(percentile(&four, 90.0), 3.7);
        assert_close!(percentile(&four, 99.0), 3.97);
        // numpy.percentile([10, 20, 30, 40, 50], [50, 90, 99]) = [30, 46, 49.6]
        let five = [10.0, 20.0, 30.0, 40.0, 50.0];
        assert_close!(percentile(&five, 50.0), 30.0);
        assert_close!(percentile(&five, 90.0), 46.0);
        assert_close!(percentile(&five, 99.0), 49.6);
        // Out-of-range q is clamped.
        assert_eq!(percentile(&five, -5.0), 10.0);
        assert_eq!(percentile(&five, 150.0), 50.0);
        // Equal neighbours interpolate to themselves exactly.
        assert_eq!(percentile(&[2.0, 2.0, 2.0], 37.0), 2.0);
    }

    fn rec(
        id: u64,
        arrival: f64,
        out: u32,
        first: Option<f64>,
        finish: Option<f64>,
        rejected: Option<&str>,
    ) -> RequestRecord {
        RequestRecord {
            id,
            arrival_s: arrival,
            prompt_tokens: 10,
            output_tokens: out,
            first_token_s: first,
            finish_s: finish,
            rejected: rejected.map(str::to_owned),
            preemptions: 0,
        }
    }

    /// Four completed requests (one with a single output token), one rejected, one unfinished.
    fn sample_records() -> Vec<RequestRecord> {
        vec![
            // e2e 2, ttft 0.5, tpot 1.5 / 3 = 0.5
            rec(0, 0.0, 4, Some(0.5), Some(2.0), None),
            // e2e 4, ttft 1, tpot 3 / 5 = 0.6
            rec(1, 1.0, 6, Some(2.0), Some(5.0), None),
            // e2e 1, ttft 1, no tpot (one output token)
            rec(2, 2.0, 1, Some(3.0), Some(3.0), None),
            // e2e 3, ttft 0.25, tpot 2.75 / 11 = 0.25
            rec(3, 3.0, 12, Some(3.25), Some(6.0), None),
            rec(4, 4.0, 100, None, None, Some("prompt exceeds KV capacity")),
            rec(5, 5.0, 50, Some(5.5), None, None),
        ]
    }

    fn sample_counters() -> RunCounters {
        RunCounters {
            preemptions_recompute: 3,
            preemptions_swap: 2,
            preemptions_keep: 5,
            recomputed_tokens: 40,
            prefix_hit_tokens: 25,
            prompt_tokens_scheduled: 100,
            kv_utilization_sum: 3.0,
            kv_utilization_samples: 4,
            simulated_s: 10.0,
            wall_s: 0.125,
            swapped_blocks: 7,
            ..RunCounters::default()
        }
    }

    #[test]
    fn summarize_checks_every_field() {
        let s = summarize(&sample_records(), &sample_counters(), &Slo::default());
        assert_eq!(s.requests_total, 6);
        assert_eq!(s.requests_completed, 4);
        assert_eq!(s.requests_rejected, 1);
        assert_eq!(
            s.requests_rejected_by_reason
                .get("prompt exceeds KV capacity"),
            Some(&1)
        );
        // e2e sorted: [1, 2, 3, 4]
        assert_close!(s.mean_e2e_s.unwrap(), 2.5);
        assert_close!(s.p50_e2e_s.unwrap(), 2.5);
        assert_close!(s.p90_e2e_s.unwrap(), 3.7);
        assert_close!(s.p99_e2e_s.unwrap(), 3.97);
        // ttft sorted: [0.25, 0.5, 1, 1]
        assert_close!(s.mean_ttft_s.unwrap(), 2.75 / 4.0);
        assert_close!(s.p99_ttft_s.unwrap(), 1.0);
        // tpot sorted: [0.25, 0.5, 0.6]; h = 2 * 0.99 = 1.98
        assert_close!(s.mean_tpot_s.unwrap(), 1.35 / 3.0);
        assert_close!(s.p99_tpot_s.unwrap(), 0.5 + 0.98 * 0.1);
        // (4 + 6 + 1 + 12) output tokens over 10 s
        assert_close!(s.throughput_output_tokens_per_s, 2.3);
        assert_eq!(s.preemptions_recompute, 3);
        assert_eq!(s.preemptions_swap, 2);
        assert_eq!(s.preemptions_keep, 5);
        assert_eq!(s.recomputed_tokens, 40);
        assert_close!(s.prefix_hit_rate, 0.25);
        assert_close!(s.kv_utilization_mean, 0.75);
        assert_close!(s.simulated_s, 10.0);
        assert_close!(s.wall_s, 0.125);
        assert_eq!(s.goodput_req_per_s, None);
        assert_eq!(s.slo_attainment, None);
    }

    #[test]
    fn summarize_empty_gives_zeros() {
        let s = summarize(&[], &RunCounters::default(), &Slo::default());
        assert_eq!(s, Summary::default());
        let slo = Slo {
            ttft_s: Some(1.0),
            tpot_s: None,
        };
        let s = summarize(&[], &RunCounters::default(), &slo);
        assert_eq!(s.goodput_req_per_s, Some(0.0));
        assert_eq!(s.slo_attainment, Some(0.0));
        // Only unfinished and rejected requests: no latency samples.
        let records = &sample_records()[4..];
        let s = summarize(records, &sample_counters(), &slo);
        assert_eq!((s.requests_total, s.requests_completed), (2, 0));
        assert_eq!(s.mean_e2e_s, None);
        assert_eq!(s.p99_tpot_s, None);
        assert_eq!(s.requests_rejected_by_reason.len(), 1);
        assert_eq!(
            s.requests_rejected_by_reason
                .get("prompt exceeds KV capacity"),
            Some(&1)
        );
        assert_eq!(s.throughput_output_tokens_per_s, 0.0);
        assert_eq!(s.slo_attainment, Some(0.0));
    }

    #[test]
    fn summarize_never_produces_non_finite_values() {
        let mut records = sample_records();
        records[0].finish_s = Some(f64::INFINITY);
        records[1].first_token_s = Some(f64::NAN);
        let counters = RunCounters {
            simulated_s: f64::NAN,
            kv_utilization_sum: f64::INFINITY,
            kv_utilization_samples: 1,
            ..RunCounters::default()
        };
        let slo = Slo {
            ttft_s: Some(1.0),
            tpot_s: Some(1.0),
        };
        let s = summarize(&records, &counters, &slo);
        let json = serde_json::to_value(&s).unwrap();
        for (k, v) in json.as_object().unwrap() {
            assert!(!v.is_null(), "{k} is null");
            if let Some(x) = v.as_f64() {
                assert!(x.is_finite(), "{k} = {x}");
            }
        }
    }

    #[test]
    fn slo_attainment_and_goodput() {
        let records = sample_records();
        let counters = sample_counters();
        // TTFT ≤ 0.5: requests 0 and 3 (ttft 0.5, 0.25) of 4 completed.
        let slo = Slo {
            ttft_s: Some(0.5),
            tpot_s: None,
        };
        let s = summarize(&records, &counters, &slo);
        assert_close!(s.slo_attainment.unwrap(), 0.5);
        assert_close!(s.goodput_req_per_s.unwrap(), 0.2);
        // TPOT ≤ 0.5: requests 0 (0.5), 2 (one token: vacuous), 3 (0.25).
        let slo = Slo {
            ttft_s: None,
            tpot_s: Some(0.5),
        };
        let s = summarize(&records, &counters, &slo);
        assert_close!(s.slo_attainment.unwrap(), 0.75);
        assert_close!(s.goodput_req_per_s.unwrap(), 0.3);
        // Both: requests 0 and 3; request 2 fails TTFT (1 > 0.9).
        let slo = Slo {
            ttft_s: Some(0.9),
            tpot_s: Some(0.5),
        };
        let s = summarize(&records, &counters, &slo);
        assert_close!(s.slo_attainment.unwrap(), 0.5);
        assert_close!(s.goodput_req_per_s.unwrap(), 0.2);
        // A completed request without a first-token time fails a TTFT bound.
        let r = rec(9, 0.0, 3, None, Some(1.0), None);
        assert!(!slo.is_met_by(&r));
        assert!(Slo::default().is_met_by(&r));
        // An unfinished request never meets an SLO.
        assert!(!Slo::default().is_met_by(&records[5]));
    }

    #[test]
    fn latency_cdf_small_and_ties() {
        assert!(latency_cdf(&[]).is_empty());
        let cdf = latency_cdf(&sample_records());
        assert_eq!(cdf, vec![(1.0, 0.25), (2.0, 0.5), (3.0, 0.75), (4.0, 1.0)]);
        let tied: Vec<RequestRecord> = [1.0, 2.0, 2.0, 3.0]
            .iter()
            .enumerate()
            .map(|(i, &f)| rec(i as u64, 0.0, 2, Some(0.0), Some(f), None))
            .collect();
        assert_eq!(
            latency_cdf(&tied),
            vec![(1.0, 0.25), (2.0, 0.75), (3.0, 1.0)]
        );
    }

    #[test]
    fn latency_cdf_downsamples() {
        for n in [501_usize, 1000, 12_345] {
            let records: Vec<RequestRecord> = (0..n)
                .map(|i| {
                    let arrival = (i * 7 % n) as f64;
                    let finish = arrival + 1.0 + i as f64 / n as f64;
                    rec(i as u64, arrival, 2, Some(arrival), Some(finish), None)
                })
                .collect();
            let cdf = latency_cdf(&records);
            assert_eq!(cdf.len(), CDF_MAX_POINTS);
            assert_close!(cdf[0].0, 1.0);
            assert_close!(cdf[0].1, 1.0 / n as f64);
            assert_eq!(cdf.last().unwrap().1, 1.0);
            assert!(cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        }
    }
}
