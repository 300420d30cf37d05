//! `augur simulate`: one policy, one predictor, one trace.

use std::io::Write;
use std::path::PathBuf;

use augur::predict::PredictorSpec;
use augur::report::{self, Format, RunLabel};
use clap::Args;

use super::options::{CommonOpts, PolicyName, parse_predictor, parse_rate_scale};
use super::runner::simulate_one;
use super::setup::{Setup, policy_label, scaled};
use super::{CliResult, Failure};

/// Simulate one policy on one trace and print the run's summary
///
/// The JSON output is one object whose keys are the run label (policy, predictor, rate_scale,
/// trace) and the summary fields (requests_total, requests_completed, requests_rejected,
/// mean_e2e_s, p50_e2e_s, p90_e2e_s, p99_e2e_s, mean_ttft_s, p99_ttft_s, mean_tpot_s,
/// p99_tpot_s, throughput_output_tokens_per_s, preemptions_recompute, preemptions_swap,
/// preemptions_keep,
/// recomputed_tokens, prefix_hit_rate, kv_utilization_mean, simulated_s, wall_s,
/// goodput_req_per_s, slo_attainment, requests_rejected_by_reason); CSV has the same columns
/// (the last as a JSON-encoded cell). Latencies are null (empty in CSV, `-` in the table)
/// when no request completed.
///
/// Example:
///   augur simulate --trace synthetic:n=500,rate=6 --policy trail --predictor lognormal:1
///   --kv-blocks 2048 --format json
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
    /// Output format.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Also write one CSV row per request to FILE.
    #[arg(long, value_name = "FILE")]
    pub requests_csv: Option<PathBuf>,
    /// Trace, model and engine settings.
    #[command(flatten)]
    pub common: CommonOpts,
}

/// Runs `augur simulate`.
pub fn run(a: &SimulateArgs) -> CliResult {
    let copies = usize::from(a.rate_scale != 1.0);
    let setup = Setup::new(&a.common, copies, 1)?;
    let name = a.policy.or(setup.policy.name).unwrap_or(PolicyName::Sprpt);
    let probe = setup.sim_config(setup.policy(name), a.predictor, &setup.trace)?;
    setup.check_memory(&probe, copies, 1)?;
    let trace = scaled(&setup.trace, a.rate_scale)?;
    let cfg = setup.sim_config(setup.policy(name), a.predictor, &trace)?;
    let outcome = simulate_one(&trace, &cfg).map_err(Failure::Runtime)?;
    if let Some(path) = &a.requests_csv {
        report::write_requests_csv(path, &outcome.records)?;
    }
    let label = RunLabel {
        policy: policy_label(name, &setup.policy),
        predictor: a.predictor.to_string(),
        rate_scale: a.rate_scale,
        trace: trace.name.clone(),
    };
    let mut out = std::io::stdout().lock();
    report::write_summary(&mut out, &label, &outcome.summary, a.format)?;
    out.flush()?;
    Ok(())
}
