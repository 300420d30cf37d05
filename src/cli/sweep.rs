//! `augur sweep`: every combination of policies, rate scales (or loads) and predictors, and
//! with `--replicas`, of replica counts and routers.
//!
//! [`plan`] turns the flags into the list of runs and runs them; [`output`] writes the files
//! and prints the table.

use std::path::PathBuf;

use augur::cluster::RouterSpec;
use augur::predict::PredictorSpec;
use clap::Args;

use super::CliResult;
use super::cluster::{RouterOpts, parse_replicas};
use super::options::{CommonOpts, PolicyName, parse_load, parse_predictor, parse_rate_scale};
use super::runner::default_threads;

mod output;
mod plan;

/// Simulate policies × rate scales × predictors (× replicas × routers); write CSV and plots
///
/// Writes, under --out DIR (created if needed):
///   sweep.csv          one row per run: policy, predictor, rate_scale, trace, then the summary
///   latency_mean.svg   mean end-to-end latency against rate scale, one line per policy/predictor
///   latency_p99.svg    the same for p99
///   cdf_<rate>.svg     end-to-end latency CDFs of every run at that rate scale
/// and prints the comparison table. Engine, model and policy settings apply to every run.
///
/// With --replicas N,..., every combination runs, instead of on one engine, on a cluster of
/// each size behind each of --routers (default round-robin), as `augur cluster` runs it
/// (--seed seeds power-of-two); --loads are then per replica, so each replica count gets its
/// own rate scale. Then:
///   sweep.csv          gains router and replicas after the label, and load_imbalance_requests,
///                      load_imbalance_tokens, cluster_prefix_hit_rate after the summary
///   latency_mean.svg,  one line per policy/predictor/replicas/router
///   latency_p99.svg
///   latency_vs_replicas.svg      mean end-to-end latency against replicas, one line per
///                                router (and per policy, predictor, rate or load if several)
///   latency_p99_vs_replicas.svg  the same for p99
/// and the table's rows start with replicas and router. --routers, --overlap-weight and
/// --weights without --replicas are usage errors.
///
/// Examples:
///   augur sweep --trace synthetic:n=1000,rate=5 --policies fcfs,sprpt,trail
///   --rate-scales 0.5,1,2 --predictors oracle,lognormal:1 --kv-blocks 4096 --out sweep-out
///   augur sweep --trace ../shared/traces/mooncake_fast25_conversation_trace.jsonl
///   --policies sprpt --loads 0.8 --replicas 2,4,8 --routers round-robin,kv-prefix --out fleet
#[derive(Args, Debug)]
#[command(verbatim_doc_comment, allow_negative_numbers = true)]
pub struct SweepArgs {
    /// Policies, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    pub policies: Vec<PolicyName>,
    /// Arrival-rate factors, comma-separated (each > 0).
    #[arg(long, value_name = "X,...", value_delimiter = ',', default_value = "1",
          value_parser = parse_rate_scale)]
    pub rate_scales: Vec<f64>,
    /// Loads ρ, comma-separated (each > 0), instead of --rate-scales: each is turned into the
    /// rate scale that makes the offered work ρ of one replica's capacity under the cost model
    /// (with --replicas, ρ of each replica's, so the rate scale differs per replica count; see
    /// README, "Load"; the mapping is printed on stderr, and the runs are labelled by the rate
    /// scale).
    #[arg(long, value_name = "RHO,...", value_delimiter = ',', value_parser = parse_load,
          conflicts_with = "rate_scales")]
    pub loads: Vec<f64>,
    /// Predictor specs, comma-separated (see `augur policies`).
    #[arg(
        long,
        value_name = "SPEC,...",
        value_delimiter = ',',
        default_value = "oracle",
        value_parser = parse_predictor
    )]
    pub predictors: Vec<PredictorSpec>,
    /// Replica counts, comma-separated (each 1..=128): run every combination on a cluster of
    /// each size (see above and `augur cluster`).
    #[arg(long, value_name = "N,...", value_delimiter = ',', value_parser = parse_replicas)]
    pub replicas: Vec<usize>,
    /// Routers, comma-separated, with --replicas (see `augur cluster`) [default: round-robin].
    #[arg(long, value_name = "ROUTER,...", value_delimiter = ',',
          value_parser = str::parse::<RouterSpec>)]
    pub routers: Vec<RouterSpec>,
    /// Directory for sweep.csv and the plots.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Simulations run at once [default: 2, or 1 on a one-core machine].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Trace, model and engine settings (per replica with --replicas).
    #[command(flatten)]
    pub common: CommonOpts,
    // Last: RouterOpts's help heading carries over to the flags after it.
    /// Router parameters (with --replicas).
    #[command(flatten)]
    pub router_opts: RouterOpts,
}

/// Runs `augur sweep`.
pub fn run(a: &SweepArgs) -> CliResult {
    let threads = a.threads.unwrap_or_else(default_threads).max(1);
    let plan = plan::Plan::new(a, threads)?;
    output::create_files(&a.out, &plan)?;
    let outcomes = plan.run(threads)?;
    output::write(&a.out, &plan, &outcomes)
}
