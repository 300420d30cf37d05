//! `augur sweep`: every combination of policies, rate scales and predictors.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use augur::metrics::latency_cdf;
use augur::predict::PredictorSpec;
use augur::report::{self, Metric, RunLabel, compact};
use clap::Args;

use super::options::{CommonOpts, PolicyName, parse_load, parse_predictor, parse_rate_scale};
use super::runner::{Job, default_threads, run_all};
use super::setup::{Setup, policy_label, scaled};
use super::{CliResult, Failure};

/// Simulate every combination of policies × rate scales × predictors; write CSV and plots
///
/// Writes, under --out DIR (created if needed):
///   sweep.csv          one row per run: policy, predictor, rate_scale, trace, then the summary
///   latency_mean.svg   mean end-to-end latency against rate scale, one line per policy/predictor
///   latency_p99.svg    the same for p99
///   cdf_<rate>.svg     end-to-end latency CDFs of every run at that rate scale
/// and prints the comparison table. Engine, model and policy settings apply to every run.
///
/// Example:
///   augur sweep --trace synthetic:n=1000,rate=5 --policies fcfs,sprpt,trail
///   --rate-scales 0.5,1,2 --predictors oracle,lognormal:1 --kv-blocks 4096 --out sweep-out
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
    /// (see README, "Load"; the mapping is printed on stderr, and the runs are labelled by the
    /// rate scale).
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
    /// Directory for sweep.csv and the plots.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Simulations run at once [default: 2, or 1 on a one-core machine].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Trace, model and engine settings.
    #[command(flatten)]
    pub common: CommonOpts,
}

/// A rate scale as a file-name part: `1`, `0.5`, `2.25`, `1e300`.
fn rate_tag(x: f64) -> String {
    compact(x)
}

/// Runs `augur sweep`.
pub fn run(a: &SweepArgs) -> CliResult {
    let threads = a.threads.unwrap_or_else(default_threads).max(1);
    let axis = if a.loads.is_empty() {
        a.rate_scales.len()
    } else {
        a.loads.len()
    };
    let runs = a.policies.len() * axis * a.predictors.len();
    let concurrent = threads.min(runs.max(1));
    let setup = Setup::new(&a.common, axis, concurrent)?;
    let rate_scales: Vec<f64> = if a.loads.is_empty() {
        a.rate_scales.clone()
    } else {
        let mut v = Vec::new();
        for &rho in &a.loads {
            let l = setup.load_scale(rho)?;
            eprintln!("{l}");
            v.push(l.rate_scale);
        }
        v
    };
    if let (Some(&name), Some(&predictor)) = (a.policies.first(), a.predictors.first()) {
        let probe = setup.sim_config(setup.policy(name), predictor, &setup.trace)?;
        setup.check_memory(&probe, rate_scales.len(), concurrent)?;
    }
    let traces = rate_scales
        .iter()
        .map(|&x| scaled(&setup.trace, x))
        .collect::<CliResult<Vec<_>>>()?;
    let mut jobs = Vec::new();
    for (ri, &rate) in rate_scales.iter().enumerate() {
        for &name in &a.policies {
            for &predictor in &a.predictors {
                let trace = &traces[ri];
                jobs.push(Job {
                    label: RunLabel {
                        policy: policy_label(name, &setup.policy),
                        predictor: predictor.to_string(),
                        rate_scale: rate,
                        trace: setup.trace.name.clone(),
                    },
                    trace,
                    cfg: setup.sim_config(setup.policy(name), predictor, trace)?,
                });
            }
        }
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("creating the output directory {}", a.out.display()))?;
    // Every output file is created (empty) now, so that a name the file system refuses fails
    // before the runs rather than after them.
    let mut names = vec![
        "sweep.csv".to_owned(),
        "latency_mean.svg".to_owned(),
        "latency_p99.svg".to_owned(),
    ];
    names.extend(
        rate_scales
            .iter()
            .map(|&x| format!("cdf_{}.svg", rate_tag(x))),
    );
    for name in &names {
        let path = a.out.join(name);
        std::fs::File::create(&path)
            .with_context(|| format!("creating the output file {}", path.display()))
            .map_err(Failure::Usage)?;
    }
    let outcomes = run_all(&jobs, threads, true)?;
    let rows: Vec<(RunLabel, _)> = jobs
        .iter()
        .zip(&outcomes)
        .map(|(j, o)| (j.label.clone(), o.summary.clone()))
        .collect();
    report::write_sweep_csv(a.out.join("sweep.csv"), &rows)?;
    report::plot_latency_vs_load(a.out.join("latency_mean.svg"), &rows, Metric::MeanE2e)?;
    report::plot_latency_vs_load(a.out.join("latency_p99.svg"), &rows, Metric::P99E2e)?;
    let mut written = Vec::new();
    for &rate in &rate_scales {
        let tag = rate_tag(rate);
        if written.contains(&tag) {
            continue;
        }
        let series: Vec<(String, Vec<(f64, f64)>)> = jobs
            .iter()
            .zip(&outcomes)
            .filter(|(j, _)| j.label.rate_scale == rate)
            .map(|(j, o)| {
                (
                    format!("{} / {}", j.label.policy, j.label.predictor),
                    latency_cdf(&o.records),
                )
            })
            .collect();
        report::plot_latency_cdfs(a.out.join(format!("cdf_{tag}.svg")), &series)?;
        written.push(tag);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} runs of {} ({} requests); results in {}",
        rows.len(),
        setup.trace.name,
        setup.trace.len(),
        a.out.display()
    )?;
    report::write_comparison_table(&mut out, &rows).map_err(Failure::Runtime)?;
    out.flush()?;
    Ok(())
}
