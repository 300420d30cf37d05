//! Runs a batch of simulations on a few threads.
//!
//! Each run is independent (its own engines and storage), so runs are handed out to
//! `std::thread::scope` workers through a shared counter; results come back in job order.
//! [`run_each`] does this for any list of runs (`sweep` runs single engines and clusters
//! through it); [`run_all`] runs [`Job`]s with `simulate`.
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

/// Runs every job with `simulate` (see [`run_each`]).
pub fn run_all(jobs: &[Job<'_>], threads: usize, progress: bool) -> CliResult<Vec<SimOutcome>> {
    run_each(
        jobs,
        threads,
        progress,
        |j| format!("{} / {}", j.label.policy, j.label.predictor),
        |j| {
            simulate(j.trace, &j.cfg).map_err(|e| {
                e.context(format!(
                    "simulating {} / {} at rate x{}",
                    j.label.policy, j.label.predictor, j.label.rate_scale
                ))
            })
        },
    )
}

/// Runs `run` on every item on up to `threads` threads; returns the results in item order, or
/// the first failure (in item order). With `progress`, and stderr a terminal, a bar of the
/// items done is drawn on stderr, showing the `name` of the last one.
pub fn run_each<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    progress: bool,
    name: impl Fn(&T) -> String + Sync,
    run: impl Fn(&T) -> anyhow::Result<R> + Sync,
) -> CliResult<Vec<R>> {
    let bar = if progress && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(items.len() as u64);
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
    let results: Mutex<Vec<Option<anyhow::Result<R>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    let threads = threads.clamp(1, items.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = run(item);
                    bar.set_message(name(item));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_each_keeps_item_order_and_reports_the_first_failure() {
        let items: Vec<u64> = (0..50).collect();
        let squares = run_each(&items, 3, false, |i| i.to_string(), |&i| Ok(i * i));
        let expected: Vec<u64> = items.iter().map(|i| i * i).collect();
        assert_eq!(squares.ok(), Some(expected));
        let failed = run_each(
            &items,
            3,
            false,
            |i| i.to_string(),
            |&i| {
                if i % 10 == 7 {
                    Err(anyhow!("item {i}"))
                } else {
                    Ok(i)
                }
            },
        );
        match failed {
            Err(Failure::Runtime(e)) => assert_eq!(e.to_string(), "item 7"),
            other => panic!("expected the failure of item 7, got {other:?}"),
        }
    }
}
