//! The trace-driven simulator: the real `augur-core` engine driven by a model of the executor.
//!
//! There is no second implementation of any policy here: every scheduling decision comes from
//! [`augur_core::engine::Engine`]. The simulator only plays the executor's part:
//! - requests arrive at their trace times and get a prediction from the [`Predictor`];
//! - each iteration it calls `schedule`, prices the plan with the roofline [`CostModel`]
//!   (plus host-link time for the plan's swaps), advances the clock by that much, and reports
//!   one token for every entry that samples, finishing a request when it reaches its true
//!   output length;
//! - requests with tool calls pause after the given number of tokens and resume (with the
//!   response appended) when the call returns;
//! - refining predictors send updated predictions through `complete`.
//!
//! Per-request times (arrival, first token, finish) become [`RequestRecord`]s and the run's
//! counters a [`RunCounters`]; [`crate::metrics::summarize`] turns them into the report.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant as WallClock;

use anyhow::{Context, Result, bail};
use augur_core::engine::{EngineConfig, EngineStats};

use crate::cluster::Frontend;
use crate::cost::CostModel;
use crate::metrics::{RequestRecord, RunCounters, Slo, Summary, summarize};
use crate::predict::Predictor;
use crate::storage::EngineBuffers;
use crate::timeline::Timeline;
use crate::trace::Trace;

pub(crate) mod replica;
pub mod tenants;

pub use replica::ReplicaLoad;
use replica::{Live, Parked, Replica, Shared, Turn};

/// Everything a simulation run needs besides the trace.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The engine's configuration. `device_blocks` is replaced by the cost model's KV
    /// capacity unless `kv_blocks` is given; `max_requests` and `hash_capacity` are sized
    /// from the trace; the preemption costs come from the cost model.
    pub engine: EngineConfig,
    /// Prices each iteration and swap.
    pub cost: CostModel,
    /// Predicts output lengths.
    pub predictor: Predictor,
    /// Service-level objectives for goodput.
    pub slo: Slo,
    /// Device KV blocks, overriding the cost model's capacity.
    pub kv_blocks: Option<u32>,
    /// Output cap given to the scheduler with every request (the true output is clamped to
    /// it); `None` gives none, as most clients send none.
    pub max_output_cap: Option<u32>,
    /// A refining predictor is consulted every this many generated tokens.
    pub refine_every: u32,
    /// When set, the run stores here how many requests are done (finished or rejected) as it
    /// goes, for a progress bar.
    pub progress: Option<Arc<AtomicU64>>,
}

impl SimConfig {
    /// A configuration with the engine defaults, no SLO and refinement every 16 tokens.
    pub fn new(engine: EngineConfig, cost: CostModel, predictor: Predictor) -> Self {
        SimConfig {
            engine,
            cost,
            predictor,
            slo: Slo::default(),
            kv_blocks: None,
            max_output_cap: None,
            refine_every: 16,
            progress: None,
        }
    }

    /// The engine configuration actually used for `trace` (KV size, request capacity, costs).
    pub fn resolved_engine(&self, trace: &Trace) -> Result<EngineConfig> {
        let mut e = self.engine;
        let bs = e.block_size;
        e.device_blocks = match self.kv_blocks {
            Some(n) => n,
            None => self
                .cost
                .kv_capacity_blocks(bs)
                .context("deriving the KV capacity from the cost model")?,
        };
        e.max_requests = (trace.len() as u32).max(1);
        e.max_running = e.max_running.min(e.max_requests);
        let hashes: u64 = trace
            .requests
            .iter()
            .filter_map(|r| {
                r.prefix.as_ref().map(|p| {
                    (r.prompt_tokens / bs).min(p.ids.len() as u32 * p.source_block_tokens / bs)
                        as u64
                })
            })
            .sum();
        e.hash_capacity = (hashes + 16 * e.max_requests as u64).min(u32::MAX as u64 / 4) as u32;
        e.max_tenants = e.max_tenants.max(trace.tenant_count());
        e.costs.recompute_us_per_token = self.cost.recompute_cost_us_per_token();
        e.costs.swap_us_per_block = self.cost.swap_cost_us_per_block(bs);
        e.validate()
            .map_err(|err| anyhow::anyhow!("invalid engine configuration: {err}"))?;
        Ok(e)
    }
}

/// Bytes one trace request takes in memory besides its heap parts (prefix ids, tool calls).
pub const TRACE_REQUEST_BYTES: u64 = std::mem::size_of::<crate::trace::TraceRequest>() as u64;

/// Bytes the simulator holds per trace request while it runs, besides the trace and the
/// engine: the [`RequestRecord`] (with 128 bytes for a rejection reason and its allocation),
/// its live state, and the sorted latency vectors and CDF of the summary. Checked against
/// the peak RSS of a release run: 2,000,000 requests with `--kv-blocks 1` took 1.80 GiB,
/// estimated 1.82 GiB.
pub const RUN_BYTES_PER_REQUEST: u64 = (std::mem::size_of::<RequestRecord>()
    + 128
    + std::mem::size_of::<Live>()
    + 6 * std::mem::size_of::<f64>()
    + 2 * std::mem::size_of::<usize>()) as u64;

/// An estimate of the memory one run of `simulate` takes for a trace of `requests` requests
/// with an engine of configuration `engine` (already resolved for the trace, see
/// [`SimConfig::resolved_engine`]), the trace itself not counted: the engine's storage
/// (exact, from [`EngineConfig::layout`]) plus [`RUN_BYTES_PER_REQUEST`] per request. `None`
/// when the configuration has no layout.
pub fn run_memory_bytes(requests: u64, engine: &EngineConfig) -> Option<u64> {
    let storage = engine.layout().ok()?.bytes() as u64;
    storage.checked_add(requests.checked_mul(RUN_BYTES_PER_REQUEST)?)
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct SimOutcome {
    /// One record per trace request, in trace order.
    pub records: Vec<RequestRecord>,
    /// Run-level counters.
    pub counters: RunCounters,
    /// The report.
    pub summary: Summary,
    /// The engine's final counters.
    pub engine_stats: EngineStats,
    /// The engine configuration used.
    pub engine_config: EngineConfig,
    /// Model iterations simulated.
    pub iterations: u64,
}

/// Runs `trace` through the engine. Fails only on invalid configuration; requests the engine
/// cannot serve are reported as rejected, with the reason.
///
/// This is the one-replica cluster: the same replica turns and the same
/// `run_replicas` event loop as [`crate::cluster::simulate_cluster`], with one replica
/// behind a router that has nothing to choose.
pub fn simulate(trace: &Trace, cfg: &SimConfig) -> Result<SimOutcome> {
    run(trace, cfg, None::<&mut Timeline<std::io::Sink>>)
}

/// [`simulate`], writing a timeline of the run to `timeline` as it goes (see
/// [`crate::timeline`]); the run itself, and so its outcome, is exactly that of [`simulate`].
/// The timeline is left open: end it with [`Timeline::finish_file`] at the outcome's
/// `counters.simulated_s`. A write error of the timeline does not stop the run;
/// `finish_file` reports it.
pub fn simulate_with_timeline<W: Write>(
    trace: &Trace,
    cfg: &SimConfig,
    timeline: &mut Timeline<W>,
) -> Result<SimOutcome> {
    run(trace, cfg, Some(timeline))
}

/// The one-replica run behind [`simulate`] and [`simulate_with_timeline`].
fn run<W: Write>(
    trace: &Trace,
    cfg: &SimConfig,
    mut tl: Option<&mut Timeline<W>>,
) -> Result<SimOutcome> {
    let wall = WallClock::now();
    let ecfg = cfg.resolved_engine(trace)?;
    let mut buffers = EngineBuffers::new(&ecfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = buffers.engine(ecfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut replicas = vec![Replica::new(engine)];
    replicas[0].set_peaks(&cfg.cost);
    let mut shared = Shared::new(trace, cfg);
    let mut frontend = Frontend::single();
    run_replicas(&mut shared, &mut replicas, &mut frontend, &mut tl)?;
    let replica = &replicas[0];
    let counters = replica.final_counters(wall.elapsed().as_secs_f64());
    let summary = summarize(&shared.records, &counters, &cfg.slo);
    Ok(SimOutcome {
        records: shared.records,
        counters,
        summary,
        engine_stats: replica.stats(),
        engine_config: ecfg,
        iterations: replica.iterations,
    })
}

/// The event loop over replicas: the next event is the earliest of the next arrival (routed
/// by `frontend` to a replica's inbox) and the turn of the replica that is due first (ties to
/// arrivals, then to the lowest replica index, so a run is deterministic). Runs until no
/// arrival is left and every replica is parked with nothing to wait for.
pub(crate) fn run_replicas<W: Write>(
    sh: &mut Shared<'_>,
    replicas: &mut [Replica<'_>],
    frontend: &mut Frontend,
    tl: &mut Option<&mut Timeline<W>>,
) -> Result<()> {
    let n = sh.trace.len();
    let mut next_arrival = 0usize;
    let mut steps = 0u64;
    loop {
        let due = replicas
            .iter()
            .enumerate()
            .filter_map(|(k, r)| r.ready.map(|at| (at, k)))
            .min();
        let arrival = (next_arrival < n).then(|| sh.trace.requests[next_arrival].arrival_us);
        match (arrival, due) {
            (Some(a), d) if d.is_none_or(|(at, _)| a <= at) => {
                let k = frontend.route(sh, next_arrival, replicas.len());
                replicas[k].hand_over(next_arrival, a);
                next_arrival += 1;
            }
            (_, Some((_, k))) => {
                let turn = replicas[k].turn(sh, tl)?;
                if turn == Turn::Stepped {
                    steps += 1;
                    if let Some(p) = &sh.cfg.progress
                        && steps.is_multiple_of(256)
                    {
                        // Finished plus dropped; requests refused at admission are not counted
                        // until the end (a bar that jumps at the end is honest enough).
                        p.store(sh.finished, Ordering::Relaxed);
                    }
                }
                frontend.after_turn(k, &mut replicas[k], turn);
            }
            (_, None) => break,
        }
    }
    if replicas
        .iter()
        .any(|r| r.parked == Parked::Idle && !r.retry.is_empty())
    {
        bail!("requests waiting for hash storage with nothing running");
    }
    if let Some(p) = &sh.cfg.progress {
        p.store(n as u64, Ordering::Relaxed);
    }
    Ok(())
}
