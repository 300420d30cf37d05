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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant as WallClock;

use anyhow::{Context, Result, bail};
use augur_core::engine::{
    AddError, EngineConfig, EngineStats, PauseRequest, RequestDesc, RequestHandle, StepResult,
};
use augur_core::time::Instant;

use crate::cost::{BatchShape, CostModel};
use crate::metrics::{RequestRecord, RunCounters, Slo, Summary, summarize};
use crate::predict::Predictor;
use crate::storage::EngineBuffers;
use crate::timeline::Timeline;
use crate::trace::Trace;

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

/// Per-request simulation state.
#[derive(Clone, Debug, Default)]
struct Live {
    handle: Option<RequestHandle>,
    true_output: u32,
    generated: u32,
    next_tool_call: usize,
}

/// Runs `trace` through the engine. Fails only on invalid configuration; requests the engine
/// cannot serve are reported as rejected, with the reason.
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

/// Tells the timeline, if any, that request `i` went through admission at `t`: accepted, or
/// rejected with the reason in its record.
fn note_admission<W: Write>(
    tl: &mut Option<&mut Timeline<W>>,
    trace: &Trace,
    records: &[RequestRecord],
    i: usize,
    t: u64,
) {
    if let Some(tl) = tl {
        tl.arrive(i as u64, trace.requests[i].arrival_us);
        if let Some(why) = &records[i].rejected {
            tl.reject(i as u64, t, why);
        }
    }
}

/// The simulation loop behind [`simulate`] and [`simulate_with_timeline`].
fn run<W: Write>(
    trace: &Trace,
    cfg: &SimConfig,
    mut tl: Option<&mut Timeline<W>>,
) -> Result<SimOutcome> {
    let wall = WallClock::now();
    let ecfg = cfg.resolved_engine(trace)?;
    let mut buffers = EngineBuffers::new(&ecfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut engine = buffers.engine(ecfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let bs = ecfg.block_size;
    let n = trace.len();
    let mut records: Vec<RequestRecord> = trace
        .requests
        .iter()
        .enumerate()
        .map(|(i, r)| RequestRecord {
            id: i as u64,
            arrival_s: r.arrival_us as f64 * 1e-6,
            prompt_tokens: r.prompt_tokens,
            output_tokens: cfg
                .max_output_cap
                .map_or(r.output_tokens, |c| r.output_tokens.min(c)),
            first_token_s: None,
            finish_s: None,
            rejected: None,
            preemptions: 0,
        })
        .collect();
    let mut live: Vec<Live> = records
        .iter()
        .map(|r| Live {
            // The engine has no prefill-only request: every request samples once at the end
            // of its prefill. A request with 0 output tokens runs that step and finishes; its
            // record keeps 0 output tokens, so throughput does not count the sample.
            true_output: r.output_tokens.max(1),
            ..Live::default()
        })
        .collect();
    let mut resumes: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut retry: VecDeque<usize> = VecDeque::new();
    let mut next_arrival = 0usize;
    let mut t: u64 = 0;
    let mut iterations = 0u64;
    let mut finished = 0u64;
    let mut counters = RunCounters::default();
    let mut results: Vec<StepResult> = Vec::with_capacity(ecfg.max_running as usize);
    let mut dropped: Vec<u64> = Vec::new();
    let mut resumed: Vec<(u64, usize)> = Vec::new();
    loop {
        // Arrivals due (and requests refused earlier for lack of hash storage).
        let mut pending_retry = retry.len();
        while pending_retry > 0 {
            pending_retry -= 1;
            let i = retry.pop_front().expect("counted");
            if !admit_request(&mut engine, trace, cfg, bs, i, t, &mut live, &mut records)? {
                retry.push_back(i);
            } else {
                note_admission(&mut tl, trace, &records, i, t);
            }
        }
        while next_arrival < n && trace.requests[next_arrival].arrival_us <= t {
            if !admit_request(
                &mut engine,
                trace,
                cfg,
                bs,
                next_arrival,
                t,
                &mut live,
                &mut records,
            )? {
                retry.push_back(next_arrival);
            } else {
                note_admission(&mut tl, trace, &records, next_arrival, t);
            }
            next_arrival += 1;
        }
        resumed.clear();
        while resumes.peek().is_some_and(|Reverse((at, _))| *at <= t) {
            let Reverse(x) = resumes.pop().expect("peeked");
            resumed.push(x);
        }
        for &(_, i) in &resumed {
            let call = &trace.requests[i].tool_calls[live[i].next_tool_call - 1];
            let h = live[i].handle.expect("paused requests are live");
            engine
                .resume_with_tokens(h, call.response_tokens, Instant(t))
                .map_err(|e| anyhow::anyhow!("resume: {e}"))?;
            if let Some(tl) = &mut tl {
                tl.resume(i as u64, t);
            }
        }
        let next_event = || {
            let a = (next_arrival < n).then(|| trace.requests[next_arrival].arrival_us);
            let r = resumes.peek().map(|Reverse((at, _))| *at);
            match (a, r) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            }
        };
        if engine.live_requests() == 0 {
            if let Some(tl) = &mut tl {
                tl.idle(t, &engine.stats());
            }
            match next_event() {
                Some(at) => {
                    t = t.max(at);
                    continue;
                }
                None if retry.is_empty() => break,
                None => bail!("requests waiting for hash storage with nothing running"),
            }
        }
        // `schedule` returns `engine.plan()`; reading it back lets the timeline also read the
        // engine's counters after scheduling.
        engine
            .schedule(Instant(t))
            .map_err(|e| anyhow::anyhow!("schedule: {e}"))?;
        let plan = engine.plan();
        if let Some(tl) = &mut tl {
            tl.step(t, &plan, &engine.stats());
        }
        let mut shape = BatchShape::new();
        for e in plan.entries {
            shape.add(e.tokens, e.computed_before);
        }
        let swapped = (plan.swap_out.len() + plan.swap_in.len()) as u32;
        counters.swapped_blocks += plan.swap_out.len() as u64;
        dropped.clear();
        dropped.extend(plan.dropped.iter().map(|d| d.external_id));
        for p in plan.preempted {
            records[p.external_id as usize].preemptions += 1;
        }
        if plan.entries.is_empty() {
            for &i in &dropped {
                records[i as usize].rejected =
                    Some("needs more KV blocks than the device has".into());
                live[i as usize].handle = None;
            }
            if let Some(tl) = &mut tl {
                for &i in &dropped {
                    tl.reject(i, t, "needs more KV blocks than the device has");
                }
                tl.flush_done(t);
            }
            // Nothing can run until something arrives or a tool call returns.
            match next_event() {
                Some(at) => t = t.max(at).max(t.saturating_add(1)),
                None => break,
            }
            continue;
        }
        let mut dt = cfg.cost.iteration_time_us(&shape);
        if swapped > 0 {
            dt += cfg.cost.swap_time_us(swapped, bs);
        }
        let t_end = t
            .checked_add((dt.ceil() as u64).max(1))
            .context("the simulated clock overflowed 64-bit microseconds")?;
        results.clear();
        for e in plan.entries {
            let i = e.external_id as usize;
            if let Some(tl) = &mut tl {
                tl.entry(e, t, t_end);
            }
            let mut r = StepResult::new(e.handle, e.samples as u32);
            if e.samples {
                let l = &mut live[i];
                l.generated += 1;
                if l.generated == 1 {
                    records[i].first_token_s = Some(t_end as f64 * 1e-6);
                }
                let calls = &trace.requests[i].tool_calls;
                if l.generated >= l.true_output {
                    r.finished = true;
                } else if l.next_tool_call < calls.len()
                    && calls[l.next_tool_call].after_output_tokens <= l.generated
                {
                    let call = &calls[l.next_tool_call];
                    l.next_tool_call += 1;
                    r.pause = Some(PauseRequest {
                        predicted_duration_us: call.duration_us,
                    });
                    let Some(at) = t_end.checked_add(call.duration_us) else {
                        bail!(
                            "request {i}: a tool call of {} s ends past the simulated clock's \
                             range (64-bit microseconds)",
                            call.duration_us as f64 * 1e-6
                        );
                    };
                    resumes.push(Reverse((at, i)));
                    if let Some(tl) = &mut tl {
                        tl.pause(i as u64, t_end, call.duration_us);
                    }
                } else if cfg.predictor.refines()
                    && l.generated.is_multiple_of(cfg.refine_every.max(1))
                    && let Some(p) = cfg.predictor.refine(i as u64, l.true_output, l.generated)
                {
                    r.predicted_remaining = Some((p - l.generated as f64).max(0.0));
                }
            }
            results.push(r);
        }
        let util = {
            let k = engine.stats().kv.device;
            k.in_use as f64 / k.total.max(1) as f64
        };
        engine
            .complete(&results, Instant(t_end))
            .map_err(|e| anyhow::anyhow!("complete: {e}"))?;
        for f in engine.last_finished() {
            finished += 1;
            let i = f.external_id as usize;
            records[i].finish_s = Some(t_end as f64 * 1e-6);
            live[i].handle = None;
            if let Some(tl) = &mut tl {
                tl.finish(i as u64, t_end, records[i].output_tokens);
            }
        }
        for &i in &dropped {
            finished += 1;
            records[i as usize].rejected = Some("needs more KV blocks than the device has".into());
            live[i as usize].handle = None;
            if let Some(tl) = &mut tl {
                tl.reject(i, t, "needs more KV blocks than the device has");
            }
        }
        if let Some(tl) = &mut tl {
            tl.flush_done(t_end);
        }
        counters.kv_utilization_sum += util;
        counters.kv_utilization_samples += 1;
        iterations += 1;
        t = t_end;
        if let Some(p) = &cfg.progress
            && iterations.is_multiple_of(256)
        {
            // Finished plus dropped; requests refused at admission are not counted until the
            // end (a bar that jumps at the end is honest enough).
            p.store(finished, Ordering::Relaxed);
        }
    }
    if let Some(p) = &cfg.progress {
        p.store(n as u64, Ordering::Relaxed);
    }
    let stats = engine.stats();
    counters.preemptions_recompute = stats.preemptions_recompute;
    counters.preemptions_swap = stats.preemptions_swap;
    counters.preemptions_keep = stats.preemptions_keep;
    counters.recomputed_tokens = stats.recomputed_tokens;
    counters.prefix_hit_tokens = stats.prefix_hit_tokens;
    counters.prompt_tokens_scheduled = stats.prompt_tokens_admitted;
    counters.simulated_s = t as f64 * 1e-6;
    counters.wall_s = wall.elapsed().as_secs_f64();
    let summary = summarize(&records, &counters, &cfg.slo);
    Ok(SimOutcome {
        records,
        counters,
        summary,
        engine_stats: stats,
        engine_config: ecfg,
        iterations,
    })
}

/// Adds trace request `i` at time `t`. Returns `false` if it must be retried later (the
/// block-hash store is full); a request the engine refuses for good is recorded as rejected.
#[allow(clippy::too_many_arguments)]
fn admit_request(
    engine: &mut augur_core::engine::Engine<'_>,
    trace: &Trace,
    cfg: &SimConfig,
    bs: u32,
    i: usize,
    t: u64,
    live: &mut [Live],
    records: &mut [RequestRecord],
) -> Result<bool> {
    let r = &trace.requests[i];
    let context = cfg.cost.model.max_context_tokens;
    let sequence = u64::from(r.prompt_tokens) + u64::from(records[i].output_tokens);
    if context > 0 && sequence > u64::from(context) {
        records[i].rejected = Some(format!(
            "exceeds the model's context window of {context} tokens: prompt + output = \
             {sequence} tokens"
        ));
        return Ok(true);
    }
    let hashes = r
        .prefix
        .as_ref()
        .map(|p| p.block_hashes(r.prompt_tokens, bs))
        .unwrap_or_default();
    let desc = RequestDesc {
        max_output_tokens: cfg.max_output_cap,
        predicted_output_tokens: cfg.predictor.initial(i as u64, live[i].true_output),
        prompt_block_hashes: &hashes,
        ..RequestDesc::new(i as u64, r.prompt_tokens)
    };
    match engine.add_request(&desc, Instant(t)) {
        Ok(h) => {
            live[i].handle = Some(h);
            Ok(true)
        }
        Err(AddError::OutOfHashStorage) => Ok(false),
        Err(e @ (AddError::CannotFit { .. } | AddError::InvalidField(_))) => {
            records[i].rejected = Some(e.to_string());
            Ok(true)
        }
        Err(e) => bail!("request {i}: {e}"),
    }
}
