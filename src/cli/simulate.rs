//! `augur simulate`: one policy, one predictor, one trace.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::anyhow;
use augur::metrics::Summary;
use augur::predict::PredictorSpec;
use augur::report::{self, Format, RunLabel};
use augur::sim::simulate_with_timeline;
use augur::sim::tenants::{self, TenantReport};
use augur::timeline::{Timeline, TimelineMeta};
use clap::Args;

use super::options::{CommonOpts, PolicyName, parse_load, parse_predictor, parse_rate_scale};
use super::runner::simulate_one;
use super::setup::{Setup, policy_label, scaled};
use super::{CliResult, Failure, usage};

/// `--timeline-max-requests`' default.
pub const DEFAULT_TIMELINE_MAX_REQUESTS: u64 = 50_000;
/// The largest `--timeline-max-requests` accepted.
pub const MAX_TIMELINE_MAX_REQUESTS: u64 = 100_000_000;

/// Parses `--timeline-max-requests`: an integer in 1..=10^8.
fn parse_timeline_max(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_TIMELINE_MAX_REQUESTS).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}`: must be an integer in 1..={MAX_TIMELINE_MAX_REQUESTS}"
        )),
    }
}

/// Simulate one policy on one trace and print the run's summary
///
/// The JSON output is one object whose keys are the run label (policy, predictor, rate_scale,
/// trace) and the summary fields (requests_total, requests_completed, requests_rejected,
/// mean_e2e_s, p50_e2e_s, p90_e2e_s, p99_e2e_s, mean_ttft_s, p99_ttft_s, mean_tpot_s,
/// p99_tpot_s, throughput_output_tokens_per_s, preemptions_recompute, preemptions_swap,
/// preemptions_keep,
/// recomputed_tokens, prefix_hit_rate, kv_utilization_mean, simulated_s, wall_s,
/// goodput_req_per_s, slo_attainment, the utilisation figures mfu_busy, mfu,
/// hbm_bw_util_busy, hbm_bw_util, busy_fraction, compute_bound_steps, memory_bound_steps,
/// overhead_bound_steps, compute_bound_time, memory_bound_time, overhead_bound_time (see
/// README, "What planners look at"), requests_rejected_by_reason); CSV has the same columns
/// (the last as a JSON-encoded cell). Latencies are null (empty in CSV, `-` in the table)
/// when no request completed.
///
/// --timeline FILE writes the run as Chrome trace-event JSON (open it in ui.perfetto.dev or
/// chrome://tracing): one track per request with its queued, prefill, decode and paused spans
/// and its preemption, pause, finish and rejection instants; engine counters per iteration
/// (requests running / waiting / swapped / paused, prefill and decode tokens, KV blocks in use
/// on the device and the host, requests finished and rejected). Times are microseconds of
/// simulated time. Runs of more than --timeline-max-requests requests are refused.
///
/// Example:
///   augur simulate --trace synthetic:n=500,rate=6 --policy trail --predictor lognormal:1
///   --kv-blocks 2048 --format json
///   augur simulate --trace synthetic:n=200,rate=20 --policy sprpt --timeline run.json
#[derive(Args, Debug)]
#[command(verbatim_doc_comment, allow_negative_numbers = true)]
pub struct SimulateArgs {
    /// The scheduling policy [default: the config file's [policy] name, else sprpt].
    #[arg(long, value_enum)]
    pub policy: Option<PolicyName>,
    /// Output-length predictor: oracle, none, lognormal:SIGMA, exp, uniform:A,
    /// onebit:THRESHOLD:ACCURACY or refining:SIGMA.
    #[arg(long, value_name = "SPEC", default_value = "oracle", value_parser = parse_predictor)]
    pub predictor: PredictorSpec,
    /// Multiply the trace's arrival rate by X (> 0).
    #[arg(long, value_name = "X", default_value = "1", value_parser = parse_rate_scale)]
    pub rate_scale: f64,
    /// Scale arrivals so that the offered work is RHO (> 0) of one replica's capacity under the
    /// cost model (see README, "Load"); prints the rate scale it used on stderr. Conflicts with
    /// --rate-scale.
    #[arg(long, value_name = "RHO", value_parser = parse_load, conflicts_with = "rate_scale")]
    pub load: Option<f64>,
    /// Output format.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Also write one CSV row per request to FILE.
    #[arg(long, value_name = "FILE")]
    pub requests_csv: Option<PathBuf>,
    /// Also write a timeline of the run to FILE (Chrome trace-event JSON, for Perfetto or
    /// chrome://tracing).
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// The most requests a run with --timeline may have (its file grows by about 1 KB per
    /// request plus 0.3 KB per model iteration).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TIMELINE_MAX_REQUESTS,
          value_parser = parse_timeline_max)]
    pub timeline_max_requests: u64,
    /// Trace, model and engine settings.
    #[command(flatten)]
    pub common: CommonOpts,
}

/// Runs `augur simulate`.
pub fn run(a: &SimulateArgs) -> CliResult {
    let copies = usize::from(a.rate_scale != 1.0 || a.load.is_some());
    let setup = Setup::new(&a.common, copies, 1)?;
    let name = a.policy.or(setup.policy.name).unwrap_or(PolicyName::Sprpt);
    let probe = setup.sim_config(setup.policy(name), a.predictor, &setup.trace)?;
    setup.check_memory(&probe, copies, 1)?;
    let rate_scale = match a.load {
        Some(rho) => {
            let l = setup.load_scale(rho)?;
            eprintln!("{l}");
            l.rate_scale
        }
        None => a.rate_scale,
    };
    let trace = scaled(&setup.trace, rate_scale)?;
    let cfg = setup.sim_config(setup.policy(name), a.predictor, &trace)?;
    let label = RunLabel {
        policy: policy_label(name, &setup.policy),
        predictor: a.predictor.to_string(),
        rate_scale,
        trace: trace.name.clone(),
    };
    let outcome = match &a.timeline {
        None => simulate_one(&trace, &cfg).map_err(Failure::Runtime)?,
        Some(path) => {
            let n = trace.len() as u64;
            if n > a.timeline_max_requests {
                return Err(usage(anyhow!(
                    "--timeline: the trace has {n} requests, more than --timeline-max-requests \
                     {} (a timeline takes about 1 KB per request and 0.3 KB per model \
                     iteration): use fewer requests (--requests, or `n` of a synthetic trace) \
                     or raise --timeline-max-requests (at most {MAX_TIMELINE_MAX_REQUESTS})",
                    a.timeline_max_requests
                )));
            }
            // Created before the run, so that a path that cannot be written fails first.
            let file = File::create(path).map_err(|e| {
                usage(anyhow!(
                    "--timeline {}: cannot create the file: {e}",
                    path.display()
                ))
            })?;
            let meta = TimelineMeta {
                policy: label.policy.clone(),
                predictor: label.predictor.clone(),
                rate_scale,
                trace: trace.name.clone(),
                requests: n,
            };
            let mut tl = Timeline::new(BufWriter::new(file), meta);
            let outcome =
                simulate_with_timeline(&trace, &cfg, &mut tl).map_err(Failure::Runtime)?;
            let end_us = (outcome.counters.simulated_s * 1e6).round() as u64;
            tl.finish_file(end_us).map_err(|e| {
                Failure::Runtime(anyhow!(
                    "--timeline {}: writing the file: {e}",
                    path.display()
                ))
            })?;
            outcome
        }
    };
    if let Some(path) = &a.requests_csv {
        report::write_requests_csv(path, &outcome.records)?;
    }
    let mut out = std::io::stdout().lock();
    match &setup.tenants {
        Some(source) => {
            let r = tenants::service(&trace, &outcome.records, source);
            write_summary_with_tenants(&mut out, &label, &outcome.summary, &r, a.format)?;
        }
        None => report::write_summary(&mut out, &label, &outcome.summary, a.format)?,
    }
    out.flush()?;
    Ok(())
}

/// Writes the summary with the per-tenant service: in JSON one more key, `tenants`, after the
/// summary's own (kept in their order); under the table, a few lines; CSV is unchanged.
fn write_summary_with_tenants(
    out: &mut impl Write,
    label: &RunLabel,
    summary: &Summary,
    r: &TenantReport,
    format: Format,
) -> CliResult {
    match format {
        Format::Json => {
            let mut line = Vec::new();
            report::write_summary(&mut line, label, summary, format)?;
            let text = String::from_utf8(line).map_err(|e| anyhow!(e))?;
            let body = text
                .trim_end()
                .strip_suffix('}')
                .ok_or_else(|| anyhow!("the summary is not a JSON object"))?;
            let extra = serde_json::to_string(r).map_err(|e| anyhow!(e))?;
            writeln!(out, "{body},\"tenants\":{extra}}}")?;
        }
        Format::Table => {
            report::write_summary(out, label, summary, format)?;
            r.write_table(out)?;
        }
        Format::Csv => report::write_summary(out, label, summary, format)?,
    }
    Ok(())
}
