//! `augur mg1`: the M/G/1 queue with predictions, simulated beside its closed forms.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::anyhow;
use augur::mg1::sim::POLICY_NAMES;
use augur::mg1::sim::report_with_progress;
use augur::mg1::{Mg1Config, Mg1Error, Mg1Policy, Mg1Report, PredictionModel, ServiceDist, report};
use augur::report::compact;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::options::TextFormat;
use super::{CliResult, usage};

/// The policies `--policy all` compares.
pub const ALL_POLICIES: [&str; 7] = ["fcfs", "sjf", "spjf", "pspjf", "srpt", "sprpt", "trail:0.8"];

/// Simulate the M/G/1 queue with predictions beside its closed-form mean response time
///
/// One server, Poisson arrivals, job sizes of mean 1 and preemption at arrivals, scheduled by
/// a policy that sees predicted sizes (the same rank functions and queue as the engine). Prints
/// the simulated mean response time beside the closed form (SOAP) where one exists.
///
/// The JSON fields are policy, load, prediction, service, jobs, mean_response_time,
/// analytic_mean_response_time, ci95_half_width and relative_error.
///
/// Example:
///   augur mg1 --policy all --load 0.8 --prediction exp --service weibull
#[derive(Args, Debug)]
#[command(verbatim_doc_comment, allow_negative_numbers = true)]
pub struct Mg1Args {
    /// The policy, or `all` for fcfs, sjf, spjf, pspjf, srpt, sprpt and trail:0.8. One of:
    /// fcfs, sjf, spjf, pspjf, srpt, sprpt, trail[:C], onebit:T, onebit-np:T, memory-time,
    /// mlfq[:QUANTUM:GROWTH:LEVELS].
    #[arg(long, value_name = "POLICY|all")]
    pub policy: String,
    /// The load ρ = arrival rate × mean size, in [1e-6, 1).
    #[arg(long, value_name = "RHO", value_parser = parse_load)]
    pub load: f64,
    /// How predictions relate to true sizes: perfect, exp, uniform:A (0 ≤ A ≤ 1) or none.
    #[arg(long, value_name = "MODEL", default_value = "perfect")]
    pub prediction: PredictionModel,
    /// Job-size distribution (mean 1): exp, weibull, det or lognormal:SIGMA.
    #[arg(long, value_name = "DIST", default_value = "exp")]
    pub service: ServiceDist,
    /// Jobs simulated, warm-up included, in 1..=1000000000.
    #[arg(long, value_name = "N", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_JOBS))]
    pub jobs: u64,
    /// Jobs at the start that are simulated but not measured [default: 10,000, or jobs / 10
    /// when that is smaller].
    #[arg(long, value_name = "N")]
    pub warmup: Option<u64>,
    /// Seed of the arrival, size and prediction streams.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Output format: an aligned table, or one JSON object per policy, one per line.
    #[arg(long, value_enum, default_value = "table")]
    pub format: TextFormat,
}

/// The most jobs one run takes (about a minute per policy in a release build).
pub const MAX_JOBS: u64 = 1_000_000_000;

/// The smallest load taken: below it the clock (arrivals 1/ρ apart) grows so large that the
/// f64 time loses the job sizes (at 1e-300 every response time measures 0).
pub const MIN_LOAD: f64 = 1e-6;

/// Parses `--load`: a number in [[`MIN_LOAD`], 1).
fn parse_load(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if (MIN_LOAD..1.0).contains(&x) => Ok(x),
        Ok(x) => Err(format!(
            "the load must be in [{MIN_LOAD:e}, 1), got {}",
            compact(x)
        )),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// Jobs from which a run on a terminal shows a progress bar.
const PROGRESS_FROM_JOBS: u64 = 2_000_000;

/// Runs one report, with a progress bar on stderr when it is a terminal and the run is long.
fn run_one(cfg: &Mg1Config, label: &str) -> Result<Mg1Report, Mg1Error> {
    if cfg.jobs < PROGRESS_FROM_JOBS || !std::io::stderr().is_terminal() {
        return report(cfg);
    }
    let done = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    let bar = ProgressBar::new(cfg.jobs - cfg.warmup_jobs);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} jobs {msg} (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_owned());
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !finished.load(Ordering::Relaxed) {
                bar.set_position(done.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let r = report_with_progress(cfg, Some(&done));
        finished.store(true, Ordering::Relaxed);
        r
    });
    bar.finish_and_clear();
    result
}

/// Runs `augur mg1`.
pub fn run(a: &Mg1Args) -> CliResult {
    let policies: Vec<Mg1Policy> = if a.policy == "all" {
        ALL_POLICIES
            .iter()
            .filter_map(|p| p.parse::<Mg1Policy>().ok())
            .filter(|p| a.prediction != PredictionModel::None || !p.uses_predictions())
            .collect()
    } else {
        vec![
            a.policy
                .parse()
                .map_err(|e| usage(anyhow!("invalid value for --policy: {e} (or `all`)")))?,
        ]
    };
    if a.policy == "all" && a.prediction == PredictionModel::None {
        eprintln!("note: with --prediction none only the policies that need no predictions run");
    }
    let mut reports: Vec<Mg1Report> = Vec::new();
    for policy in policies {
        let mut cfg = Mg1Config::new(policy, a.load, a.service, a.prediction);
        cfg.jobs = a.jobs;
        cfg.seed = a.seed;
        cfg.warmup_jobs = a.warmup.unwrap_or((a.jobs / 10).min(10_000));
        let r = run_one(&cfg, &policy.to_string()).map_err(|e| usage(anyhow!("{e}")))?;
        reports.push(r);
    }
    let mut out = std::io::stdout().lock();
    match a.format {
        TextFormat::Json => {
            for r in &reports {
                serde_json::to_writer(&mut out, r).map_err(anyhow::Error::from)?;
                writeln!(out)?;
            }
        }
        TextFormat::Table => write_table(&mut out, a, &reports)?,
    }
    out.flush()?;
    Ok(())
}

/// Prints the reports as an aligned table.
fn write_table(out: &mut impl Write, a: &Mg1Args, reports: &[Mg1Report]) -> std::io::Result<()> {
    writeln!(
        out,
        "M/G/1: load {}, service {}, prediction {}, {} jobs (seed {})",
        a.load, a.service, a.prediction, a.jobs, a.seed
    )?;
    writeln!(
        out,
        "{:<12} {:>12} {:>10} {:>12} {:>9}",
        "policy", "simulated", "±95%", "closed form", "error"
    )?;
    for r in reports {
        let ci = r
            .ci95_half_width
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.4}"));
        let analytic = r
            .analytic_mean_response_time
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
        let err = r
            .relative_error
            .map_or_else(|| "-".to_owned(), |e| format!("{:+.2}%", e * 100.0));
        writeln!(
            out,
            "{:<12} {:>12.4} {:>10} {:>12} {:>9}",
            r.policy, r.mean_response_time, ci, analytic, err
        )?;
    }
    writeln!(
        out,
        "mean response time in units of the mean job size; policies: {POLICY_NAMES}"
    )?;
    Ok(())
}
