//! Runs a batch of simulations on a few threads.
//!
//! Each run is independent (its own engine and storage), so runs are handed out to
//! `std::thread::scope` workers through a shared counter; results come back in job order.
//! A progress bar is drawn on stderr when it is a terminal and asked for.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

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
