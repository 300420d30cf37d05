//! `augur demo` (and `augur` with no arguments): a comparison that needs no files.
//!
//! The built-in workload ([`augur::trace::default_workload`]: 3,000 requests, 85% short chats
//! and 15% long generations, Poisson at 5 req/s) on llama-3.1-8b / h100-sxm, at twice its
//! arrival rate with 3,072 KV blocks of 16 tokens, so that the server is loaded and memory is
//! tight: that is where the order in which requests are served matters. (At the recorded rate
//! with the H100's real KV capacity every policy gives the same numbers: nothing queues.) Policies that ignore sizes (fcfs, las) run
//! once; the size-based ones run with exact (oracle) and with noisy (lognormal:1, i.e. typically
//! off by a factor of 2.7) predictions.

use std::io::Write;
use std::time::Instant;

use augur::core::engine::EngineConfig;
use augur::cost::CostModel;
use augur::predict::{Predictor, PredictorSpec};
use augur::report::{self, RunLabel};
use augur::sim::SimConfig;
use clap::Args;

use super::options::{DEFAULT_GPU, DEFAULT_MODEL, PolicyName, PolicyOpts};
use super::runner::{Job, default_threads, run_all};
use super::setup::{TIME_RANK_BATCH, build_policy, scaled};
use super::{CliResult, Failure, usage};

/// The demo's arrival-rate factor over the workload's 5 req/s.
pub const DEMO_RATE_SCALE: f64 = 2.0;
/// The demo's device KV blocks of 16 tokens (the H100's real capacity would hide memory
/// pressure at this load).
pub const DEMO_KV_BLOCKS: u32 = 3072;

/// Compare scheduling policies on the built-in workload (no files needed)
///
/// Runs fcfs and las (which need no predictions) and sjf, sprpt, trail and memory-time with
/// oracle and lognormal:1 predictions, on the built-in synthetic workload (3,000 requests of
/// mixed chat and long generation) at twice its arrival rate, on llama-3.1-8b / h100-sxm with
/// a 3,072-block KV pool, and prints one row per run. The same runs one by one:
///   augur simulate --trace default --rate-scale 2 --kv-blocks 3072 --policy trail
///   --predictor lognormal:1
/// `augur simulate --help` shows everything else that can be set.
#[derive(Args, Debug, Default)]
#[command(verbatim_doc_comment)]
pub struct DemoArgs {
    /// Use only the first N requests (for quick checks).
    #[arg(long, value_name = "N", hide = true)]
    pub requests: Option<usize>,
    /// Simulations run at once [default: 2].
    #[arg(long, value_name = "N", hide = true)]
    pub threads: Option<usize>,
}

/// The demo's runs: (policy, predictor).
fn runs() -> Vec<(PolicyName, PredictorSpec)> {
    let noisy = PredictorSpec::LogNormal { sigma: 1.0 };
    let mut v = vec![
        (PolicyName::Fcfs, PredictorSpec::None),
        (PolicyName::Las, PredictorSpec::None),
    ];
    for p in [
        PolicyName::Sjf,
        PolicyName::Sprpt,
        PolicyName::Trail,
        PolicyName::MemoryTime,
    ] {
        v.push((p, PredictorSpec::Oracle));
        v.push((p, noisy));
    }
    v
}

/// Runs `augur demo`.
pub fn run(a: &DemoArgs) -> CliResult {
    let started = Instant::now();
    let mut trace = augur::trace::default_workload();
    match a.requests {
        Some(0) => return Err(usage(anyhow::anyhow!("--requests must be at least 1"))),
        Some(n) => trace.truncate(n),
        None => {}
    }
    let trace = scaled(&trace, DEMO_RATE_SCALE)?;
    let cost = CostModel::preset(DEFAULT_MODEL, DEFAULT_GPU).map_err(Failure::Runtime)?;
    let params = PolicyOpts::default();
    let jobs: Vec<Job<'_>> = runs()
        .into_iter()
        .map(|(name, predictor)| {
            let mut engine = EngineConfig::new(16, 1, 1);
            engine.policy = build_policy(name, &params, &cost, TIME_RANK_BATCH);
            Job {
                label: RunLabel {
                    policy: name.to_string(),
                    predictor: predictor.to_string(),
                    rate_scale: DEMO_RATE_SCALE,
                    trace: trace.name.clone(),
                },
                trace: &trace,
                cfg: demo_config(engine, &cost, predictor),
            }
        })
        .collect();
    let s = trace.summary();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "augur demo: {} scheduling policies on the built-in workload ({} requests, {:.1} req/s, \
         mean prompt {:.0} / output {:.0} tokens), llama-3.1-8b on h100-sxm, {} KV blocks of 16 \
         tokens; size-based policies with exact (oracle) and noisy (lognormal:1) length predictions.",
        runs()
            .iter()
            .map(|r| r.0)
            .fold(Vec::new(), |mut v: Vec<PolicyName>, p| {
                if !v.contains(&p) {
                    v.push(p);
                }
                v
            })
            .len(),
        s.requests,
        s.rate_per_s,
        s.mean_prompt_tokens,
        s.mean_output_tokens,
        DEMO_KV_BLOCKS,
    )?;
    out.flush()?;
    let threads = a.threads.unwrap_or_else(default_threads).max(1);
    let outcomes = run_all(&jobs, threads, false)?;
    let rows: Vec<(RunLabel, _)> = jobs
        .iter()
        .zip(&outcomes)
        .map(|(j, o)| (j.label.clone(), o.summary.clone()))
        .collect();
    report::write_comparison_table(&mut out, &rows).map_err(Failure::Runtime)?;
    writeln!(
        out,
        "({} runs in {:.1} s. Your own trace, policy and engine: `augur simulate --help`; \
         all policies and presets: `augur policies`.)",
        rows.len(),
        started.elapsed().as_secs_f64()
    )?;
    out.flush()?;
    Ok(())
}

/// One demo run's configuration.
fn demo_config(engine: EngineConfig, cost: &CostModel, predictor: PredictorSpec) -> SimConfig {
    let mut cfg = SimConfig::new(engine, cost.clone(), Predictor::new(predictor, 0));
    cfg.kv_blocks = Some(DEMO_KV_BLOCKS);
    cfg
}
