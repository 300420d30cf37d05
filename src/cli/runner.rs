//! Runs a batch of simulations on a few threads.
//!
//! Each run is independent (its own engine and storage), so runs are handed out to
//! `std::thread::scope` workers through a shared counter; results come back in job order.
//! A progress bar is drawn on stderr when it is a terminal and asked for; [`simulate_one`]
//! draws one for a single long run.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use augur::report::RunLabel;
use augur::sim::{SimConfig, SimOutcome, simulate};
use augur::trace::Trace;
use indicatif::{ProgressBar, ProgressStyle};

use super::{CliResult, Failure};

/// One simulation to run.
pub struct Job<'a> {
    /// How the run is labelled in reports.
    pub label: RunLabel,
    /// The (rate-scaled) trace.
    pub trace: &'a Trace,
    /// The configuration.
    pub cfg: SimConfig,
}

/// The default number of worker threads: 2, or fewer on a smaller machine.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

/// Runs every job on up to `threads` threads; returns the outcomes in job order, or the first
/// failure (in job order).
pub fn run_all(jobs: &[Job<'_>], threads: usize, progress: bool) -> CliResult<Vec<SimOutcome>> {
    let bar = if progress && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(jobs.len() as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} runs {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<SimOutcome>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let threads = threads.clamp(1, jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let r = simulate(job.trace, &job.cfg).map_err(|e| {
                        e.context(format!(
                            "simulating {} / {} at rate x{}",
                            job.label.policy, job.label.predictor, job.label.rate_scale
                        ))
                    });
                    bar.set_message(format!("{} / {}", job.label.policy, job.label.predictor));
                    bar.inc(1);
                    if let Ok(mut guard) = results.lock() {
                        guard[i] = Some(r);
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    let results = results
        .into_inner()
        .map_err(|_| Failure::Runtime(anyhow!("a simulation thread failed")))?;
    results
        .into_iter()
        .map(|r| match r {
            Some(Ok(o)) => Ok(o),
            Some(Err(e)) => Err(Failure::Runtime(e)),
            None => Err(Failure::Runtime(anyhow!("a simulation did not run"))),
        })
        .collect()
}

/// Requests from which a single `simulate` run on a terminal shows a progress bar.
pub const PROGRESS_FROM_REQUESTS: usize = 20_000;

/// Runs one simulation; on a terminal, and for a trace of at least
/// [`PROGRESS_FROM_REQUESTS`] requests, with a progress bar of requests done on stderr.
pub fn simulate_one(trace: &Trace, cfg: &SimConfig) -> anyhow::Result<SimOutcome> {
    if trace.len() < PROGRESS_FROM_REQUESTS || !std::io::stderr().is_terminal() {
        return simulate(trace, cfg);
    }
    let done = Arc::new(AtomicU64::new(0));
    let mut cfg = cfg.clone();
    cfg.progress = Some(Arc::clone(&done));
    let bar = ProgressBar::new(trace.len() as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} requests done (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let finished = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !finished.load(Ordering::Relaxed) {
                bar.set_position(done.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let r = simulate(trace, &cfg);
        finished.store(true, Ordering::Relaxed);
        r
    });
    bar.finish_and_clear();
    result
}
