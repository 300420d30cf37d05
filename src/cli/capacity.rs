//! `augur capacity`: the highest load at which each policy still meets an SLO.

use std::io::Write;

use anyhow::anyhow;
use augur::metrics::slo_fraction_met;
use augur::predict::PredictorSpec;
use augur::report::{self, CapacityRow, Format, RunLabel, compact};
use augur::sim::SimOutcome;
use augur::trace::Trace;
use clap::Args;
use serde::Serialize;

use super::options::{CommonOpts, PolicyName, parse_predictor};
use super::runner::{Job, default_threads, run_all};
use super::setup::{Setup, policy_label, scaled};
use super::{CliResult, Failure, usage};

/// The smallest and largest rate scale the search takes as a bound.
pub const SCALE_RANGE: (f64, f64) = (1e-6, 1e6);
/// The smallest and largest relative tolerance.
pub const TOLERANCE_RANGE: (f64, f64) = (1e-6, 1.0);

/// What "load" means in this command's output.
const LOAD_MEANING: &str = "a multiplier on the trace's arrival rate (--rate-scale of simulate)";

/// Find the highest load at which each policy meets an SLO for a fraction of requests
///
/// Load here is a rate multiplier on the trace: the arrival rate scale of `augur simulate
/// --rate-scale` (arrival times divided by X), not the utilisation ρ of simulate's and sweep's --load. For each policy the search simulates the trace at --max-scale, then at
/// --min-scale, then bisects between them (geometrically, at the midpoint √(lo·hi)) until
/// hi/lo ≤ 1 + --tolerance, and reports the highest scale that met the SLO. A request meets
/// the SLO when it completes with TTFT ≤ --slo-ttft and TPOT ≤ --slo-tpot (each bound given);
/// rejected and unfinished requests miss it, so the fraction is over all requests (unlike
/// simulate's slo_attainment, which is over completed ones).
///
/// The search assumes that the fraction meeting the SLO falls as the load grows; where a
/// simulation is not monotone, the answer is a scale that meets the SLO with a scale at most
/// --tolerance above it that does not ("fails at").
///
/// A policy that meets the SLO at --max-scale reports --max-scale with a note (its capacity is
/// at least that); one that misses it at --min-scale reports none (null in JSON).
///
/// The JSON output is one object: trace, requests, load, slo_ttft_s, slo_tpot_s, slo_fraction,
/// min_scale, max_scale, tolerance and results, an array with one object per policy: policy,
/// predictor, max_rate_scale, offered_req_per_s, achieved_req_per_s, slo_fraction_met,
/// fails_at_rate_scale, slo_fraction_at_fail, runs, note. CSV has one row per policy with
/// those columns.
///
/// Example:
///   augur capacity --trace synthetic:n=500,rate=6 --slo-ttft 0.5 --slo-tpot 0.05
///   --policies fcfs,sprpt,trail --kv-blocks 2048
#[derive(Args, Debug)]
#[command(verbatim_doc_comment, allow_negative_numbers = true)]
pub struct CapacityArgs {
    /// Policies, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [PolicyName::Fcfs, PolicyName::Sprpt])]
    pub policies: Vec<PolicyName>,
    /// Output-length predictor (see `augur policies`).
    #[arg(long, value_name = "SPEC", default_value = "oracle", value_parser = parse_predictor)]
    pub predictor: PredictorSpec,
    /// Fraction of all requests that must meet the SLO, in (0, 1].
    #[arg(long, value_name = "F", default_value_t = 0.9, value_parser = parse_fraction)]
    pub slo_fraction: f64,
    /// Lowest rate scale searched, in [1e-6, 1e6].
    #[arg(long, value_name = "X", default_value_t = 0.1, value_parser = parse_scale)]
    pub min_scale: f64,
    /// Highest rate scale searched, in [1e-6, 1e6] and above --min-scale.
    #[arg(long, value_name = "X", default_value_t = 16.0, value_parser = parse_scale)]
    pub max_scale: f64,
    /// Stop when the bracket's ratio hi/lo is at most 1 + R; R in [1e-6, 1].
    #[arg(long, value_name = "R", default_value_t = 0.02, value_parser = parse_tolerance)]
    pub tolerance: f64,
    /// Simulations run at once [default: 2, or 1 on a one-core machine].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Output format.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Trace, model and engine settings (give --slo-ttft and/or --slo-tpot).
    #[command(flatten)]
    pub common: CommonOpts,
}

/// Parses a number in `[lo, hi]` (with `lo_open`, `(lo, hi]`).
fn parse_in(s: &str, lo: f64, hi: f64, lo_open: bool) -> Result<f64, String> {
    let range = if lo_open {
        format!("({}, {}]", compact(lo), compact(hi))
    } else {
        format!("[{}, {}]", compact(lo), compact(hi))
    };
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x <= hi && (x > lo || (!lo_open && x == lo)) => Ok(x),
        Ok(x) => Err(format!("must be in {range}, got {}", compact(x))),
        Err(_) => Err(format!("`{s}` is not a number; must be in {range}")),
    }
}

/// Parses `--slo-fraction`: a number in (0, 1].
fn parse_fraction(s: &str) -> Result<f64, String> {
    parse_in(s, 0.0, 1.0, true)
}

/// Parses `--min-scale` / `--max-scale`: a number in [`SCALE_RANGE`].
fn parse_scale(s: &str) -> Result<f64, String> {
    parse_in(s, SCALE_RANGE.0, SCALE_RANGE.1, false)
}

/// Parses `--tolerance`: a number in [`TOLERANCE_RANGE`].
fn parse_tolerance(s: &str) -> Result<f64, String> {
    parse_in(s, TOLERANCE_RANGE.0, TOLERANCE_RANGE.1, false)
}

/// One simulation's result, as the search needs it.
#[derive(Clone, Copy, Debug)]
struct Probe {
    scale: f64,
    fraction: f64,
    offered: Option<f64>,
    achieved: Option<f64>,
}

/// Where one policy's search stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Next: the upper bound.
    Upper,
    /// Next: the lower bound.
    Lower,
    /// Next: the bracket's midpoint.
    Bisect,
    /// Finished.
    Done,
}

/// What a capacity search looks for: the SLO fraction and the bracket of rate scales.
#[derive(Clone, Copy, Debug)]
pub struct SearchBounds {
    /// Fraction of all requests that must meet the SLO, in (0, 1].
    pub slo_fraction: f64,
    /// Lowest rate scale searched.
    pub min_scale: f64,
    /// Highest rate scale searched (above `min_scale`).
    pub max_scale: f64,
    /// Stop when the bracket's ratio hi/lo is at most 1 + this.
    pub tolerance: f64,
}

/// One policy's search.
#[derive(Debug)]
struct Search {
    name: PolicyName,
    stage: Stage,
    /// The highest scale known to meet the SLO.
    meets: Option<Probe>,
    /// The lowest scale known to miss it.
    fails: Option<Probe>,
    runs: u32,
    note: Option<String>,
}

impl Search {
    /// The scale to simulate next (`None` when done).
    fn next_scale(&self, a: &SearchBounds) -> Option<f64> {
        match self.stage {
            Stage::Upper => Some(a.max_scale),
            Stage::Lower => Some(a.min_scale),
            Stage::Bisect => match (self.meets, self.fails) {
                (Some(lo), Some(hi)) => Some((lo.scale * hi.scale).sqrt()),
                _ => None,
            },
            Stage::Done => None,
        }
    }

    /// Takes in the simulation at `p.scale`.
    fn record(&mut self, p: Probe, a: &SearchBounds) {
        self.runs += 1;
        let ok = p.fraction >= a.slo_fraction;
        match (self.stage, ok) {
            (Stage::Upper, true) => {
                self.meets = Some(p);
                self.stage = Stage::Done;
                self.note = Some(format!(
                    "meets the SLO at --max-scale {} (the highest load searched): the capacity \
                     is at least that; raise --max-scale to search higher",
                    compact(a.max_scale)
                ));
            }
            (Stage::Upper, false) => {
                self.fails = Some(p);
                self.stage = Stage::Lower;
            }
            (Stage::Lower, true) => {
                self.meets = Some(p);
                self.stage = Stage::Bisect;
            }
            (Stage::Lower, false) => {
                self.fails = Some(p);
                self.stage = Stage::Done;
                self.note = Some(format!(
                    "misses the SLO already at --min-scale {} ({:.1}% of requests meet it, \
                     {:.1}% needed): lower --min-scale or relax the SLO",
                    compact(a.min_scale),
                    p.fraction * 100.0,
                    a.slo_fraction * 100.0
                ));
            }
            (Stage::Bisect, true) => self.meets = Some(p),
            (Stage::Bisect, false) => self.fails = Some(p),
            (Stage::Done, _) => {}
        }
        if self.stage == Stage::Bisect
            && let (Some(lo), Some(hi)) = (self.meets, self.fails)
            && hi.scale <= lo.scale * (1.0 + a.tolerance)
        {
            self.stage = Stage::Done;
        }
    }

    /// The result row.
    fn row(&self, label: String, predictor: &PredictorSpec) -> CapacityRow {
        CapacityRow {
            policy: label,
            predictor: predictor.to_string(),
            max_rate_scale: self.meets.map(|p| p.scale),
            offered_req_per_s: self.meets.and_then(|p| p.offered),
            achieved_req_per_s: self.meets.and_then(|p| p.achieved),
            slo_fraction_met: self.meets.map(|p| p.fraction),
            fails_at_rate_scale: self.fails.map(|p| p.scale),
            slo_fraction_at_fail: self.fails.map(|p| p.fraction),
            runs: self.runs,
            note: self.note.clone(),
        }
    }
}

/// The JSON output.
#[derive(Serialize)]
struct CapacityReport<'a> {
    trace: &'a str,
    requests: u64,
    load: &'a str,
    slo_ttft_s: Option<f64>,
    slo_tpot_s: Option<f64>,
    slo_fraction: f64,
    min_scale: f64,
    max_scale: f64,
    tolerance: f64,
    results: &'a [CapacityRow],
}

/// The probe of a finished simulation of `trace` (already rate-scaled by `scale`).
fn probe(scale: f64, trace: &Trace, o: &SimOutcome, setup: &Setup) -> Probe {
    let span_s = trace.duration_us() as f64 * 1e-6;
    let n = trace.len() as f64;
    Probe {
        scale,
        fraction: slo_fraction_met(&o.records, &setup.slo),
        offered: (span_s > 0.0).then(|| n / span_s),
        achieved: (o.summary.simulated_s > 0.0)
            .then(|| o.summary.requests_completed as f64 / o.summary.simulated_s),
    }
}

/// Searches each of `policies` for the highest rate scale at which `setup.slo` is met by
/// `bounds.slo_fraction` of all requests, running up to `threads` simulations at once; one row
/// per policy, in order. The caller checks that the bracket is ordered and an SLO is set.
pub fn search(
    setup: &Setup,
    policies: &[PolicyName],
    predictor: PredictorSpec,
    bounds: &SearchBounds,
    threads: usize,
) -> CliResult<Vec<CapacityRow>> {
    // Both bounds must give a trace the simulator's clock can hold.
    scaled(&setup.trace, bounds.min_scale)?;
    let mut searches: Vec<Search> = policies
        .iter()
        .map(|&name| Search {
            name,
            stage: Stage::Upper,
            meets: None,
            fails: None,
            runs: 0,
            note: None,
        })
        .collect();
    loop {
        let pending: Vec<(usize, f64)> = searches
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.next_scale(bounds).map(|x| (i, x)))
            .collect();
        if pending.is_empty() {
            break;
        }
        let traces = pending
            .iter()
            .map(|&(_, x)| scaled(&setup.trace, x))
            .collect::<CliResult<Vec<_>>>()?;
        let mut jobs = Vec::with_capacity(pending.len());
        for (&(i, x), trace) in pending.iter().zip(&traces) {
            let name = searches[i].name;
            jobs.push(Job {
                label: RunLabel {
                    policy: policy_label(name, &setup.policy),
                    predictor: predictor.to_string(),
                    rate_scale: x,
                    trace: setup.trace.name.clone(),
                },
                trace,
                cfg: setup.sim_config(setup.policy(name), predictor, trace)?,
            });
        }
        let outcomes = run_all(&jobs, threads, false)?;
        for ((&(i, x), trace), o) in pending.iter().zip(&traces).zip(&outcomes) {
            let p = probe(x, trace, o, setup);
            searches[i].record(p, bounds);
        }
    }
    Ok(searches
        .iter()
        .map(|s| s.row(policy_label(s.name, &setup.policy), &predictor))
        .collect())
}

/// Runs `augur capacity`.
pub fn run(a: &CapacityArgs) -> CliResult {
    if a.min_scale >= a.max_scale {
        return Err(usage(anyhow!(
            "--min-scale {} must be below --max-scale {}",
            compact(a.min_scale),
            compact(a.max_scale)
        )));
    }
    if a.common.slo_ttft.is_none() && a.common.slo_tpot.is_none() {
        return Err(usage(anyhow!(
            "capacity needs an SLO: give --slo-ttft S and/or --slo-tpot S (seconds, > 0)"
        )));
    }
    if a.policies.is_empty() {
        return Err(usage(anyhow!("--policies needs at least one policy")));
    }
    let threads = a.threads.unwrap_or_else(default_threads).max(1);
    let copies = a.policies.len();
    let concurrent = threads.min(copies);
    let setup = Setup::new(&a.common, copies, concurrent)?;
    let first = a.policies[0];
    let check = setup.sim_config(setup.policy(first), a.predictor, &setup.trace)?;
    setup.check_memory(&check, copies, concurrent)?;
    let bounds = SearchBounds {
        slo_fraction: a.slo_fraction,
        min_scale: a.min_scale,
        max_scale: a.max_scale,
        tolerance: a.tolerance,
    };
    let rows = search(&setup, &a.policies, a.predictor, &bounds, threads)?;
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => {
            let r = CapacityReport {
                trace: &setup.trace.name,
                requests: setup.trace.len() as u64,
                load: LOAD_MEANING,
                slo_ttft_s: setup.slo.ttft_s,
                slo_tpot_s: setup.slo.tpot_s,
                slo_fraction: a.slo_fraction,
                min_scale: a.min_scale,
                max_scale: a.max_scale,
                tolerance: a.tolerance,
                results: &rows,
            };
            serde_json::to_writer(&mut out, &r).map_err(|e| Failure::Runtime(e.into()))?;
            writeln!(out)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            for r in &rows {
                w.serialize(r).map_err(|e| Failure::Runtime(e.into()))?;
            }
            w.flush()?;
        }
        Format::Table => {
            let bound =
                |name: &str, x: Option<f64>| x.map(|v| format!("{name} ≤ {} s", compact(v)));
            let slo: Vec<String> = [
                bound("TTFT", setup.slo.ttft_s),
                bound("TPOT", setup.slo.tpot_s),
            ]
            .into_iter()
            .flatten()
            .collect();
            writeln!(
                out,
                "capacity on {} ({} requests): {} for at least {:.1}% of requests",
                setup.trace.name,
                setup.trace.len(),
                slo.join(", "),
                a.slo_fraction * 100.0
            )?;
            writeln!(
                out,
                "load = arrival-rate scale of the trace, searched in [{}, {}] to within {}%",
                compact(a.min_scale),
                compact(a.max_scale),
                compact(a.tolerance * 100.0)
            )?;
            report::write_capacity_table(&mut out, &rows)?;
        }
    }
    out.flush()?;
    Ok(())
}
