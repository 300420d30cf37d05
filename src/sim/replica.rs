//! One simulated serving replica: an `augur-core` engine, its clock, and the executor model
//! around it (plan pricing, in-flight requests, tool-call pauses, refinements, records).
//!
//! A [`Replica`] is advanced one *turn* at a time by the event loop `run_replicas` in `crate::sim`:
//! a turn is one pass of what used to be the body of the single-engine simulation loop
//! (admit what is due, resume tool calls that returned, then either go idle or run one model
//! iteration). Keeping the turn here, and the choice of *which* replica moves next in the
//! event loop, is what lets `simulate` be exactly the one-replica cluster: the turn is the
//! same code whatever the number of replicas, so no loop is written twice.
//!
//! Between turns a replica is either *ready* at a known time (the end of the iteration it
//! just ran, or the return of a tool call), or *parked* until the router hands it a request.
//! [`Replica::wake`] encodes, for a parked replica, the time at which the old loop would have
//! woken on that arrival, so that a one-replica run advances its clock exactly as before.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::Write;

use anyhow::{Context, Result, bail};
use augur_core::engine::{
    AddError, Engine, EngineStats, PauseRequest, RequestDesc, RequestHandle, StepResult,
};
use augur_core::time::Instant;

use super::SimConfig;
use crate::cost::{BatchShape, Bound, CostModel, IterationCost};
use crate::metrics::{RequestRecord, RunCounters};
use crate::timeline::Timeline;
use crate::trace::Trace;

/// The rejection reason of a request the engine dropped.
const DROPPED: &str = "needs more KV blocks than the device has";

/// Per-request simulation state, shared by all replicas (a request lives on one of them).
#[derive(Clone, Debug, Default)]
pub(crate) struct Live {
    pub(crate) handle: Option<RequestHandle>,
    pub(crate) true_output: u32,
    pub(crate) generated: u32,
    pub(crate) next_tool_call: usize,
    /// Prompt tokens computed so far, while the prefill has not produced its first token (for
    /// the replica's published prefill backlog).
    pub(crate) prefilled: u32,
}

/// What the replicas of one run share: the trace, the configuration, and one record and one
/// live state per trace request.
pub(crate) struct Shared<'t> {
    pub(crate) trace: &'t Trace,
    pub(crate) cfg: &'t SimConfig,
    pub(crate) records: Vec<RequestRecord>,
    pub(crate) live: Vec<Live>,
    /// Requests finished or dropped, over all replicas (the progress bar's count).
    pub(crate) finished: u64,
}

impl<'t> Shared<'t> {
    /// Fresh records and live states for `trace`.
    pub(crate) fn new(trace: &'t Trace, cfg: &'t SimConfig) -> Self {
        let records: Vec<RequestRecord> = trace
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
        let live = records
            .iter()
            .map(|r| Live {
                // The engine has no prefill-only request: every request samples once at the
                // end of its prefill. A request with 0 output tokens runs that step and
                // finishes; its record keeps 0 output tokens, so throughput does not count the
                // sample.
                true_output: r.output_tokens.max(1),
                ..Live::default()
            })
            .collect();
        Shared {
            trace,
            cfg,
            records,
            live,
            finished: 0,
        }
    }
}

/// Why a replica is parked (has no turn scheduled until something wakes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parked {
    /// Not parked: its next turn is at `ready`.
    No,
    /// Nothing live: it wakes at an arrival (at the arrival time).
    Idle,
    /// Live requests, none runnable (all paused, say): it wakes at an arrival, at least one
    /// microsecond later than now.
    Stalled,
}

/// What a replica tells its router after each model iteration, as a serving engine would
/// publish its metrics: gauges read from the engine and from the replica's own bookkeeping.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReplicaLoad {
    /// Simulated time of the report, µs.
    pub at_us: u64,
    /// Requests live in the engine plus those handed to the replica and not yet added.
    pub outstanding: u32,
    /// Requests waiting in the engine (not running, not swapped).
    pub waiting: u32,
    /// Requests running.
    pub running: u32,
    /// Device KV blocks in use.
    pub kv_used_blocks: u32,
    /// Device KV blocks in all.
    pub kv_total_blocks: u32,
    /// The engine's predicted backlog: Σ predicted remaining output tokens of live requests.
    pub predicted_backlog_tokens: u64,
    /// Prompt tokens of live requests still to prefill (replica bookkeeping; a recompute after
    /// preemption is not counted).
    pub prefill_backlog_tokens: u64,
    /// Mean context (prompt tokens) of live requests, the decode cost's context length.
    pub mean_context_tokens: u32,
}

/// One replica: an engine and the executor model around it.
pub(crate) struct Replica<'e> {
    engine: Engine<'e>,
    bs: u32,
    /// The replica's clock, µs: the time of its current (or last) turn.
    pub(crate) t: u64,
    /// When its next turn is due; `None` while parked with nothing to wait for.
    pub(crate) ready: Option<u64>,
    pub(crate) parked: Parked,
    /// Requests the router handed over, in arrival order, not yet added to the engine.
    inbox: VecDeque<usize>,
    /// Requests refused for lack of hash storage, retried at every turn.
    pub(crate) retry: VecDeque<usize>,
    resumes: BinaryHeap<Reverse<(u64, usize)>>,
    /// The step's results that are not an entry's default (finishes, pauses, refined
    /// predictions), for `Engine::complete_except`.
    results: Vec<StepResult>,
    dropped: Vec<u64>,
    resumed: Vec<(u64, usize)>,
    pub(crate) counters: RunCounters,
    pub(crate) iterations: u64,
    /// Requests that left the replica (finished, dropped or rejected) since the router was
    /// last told.
    pub(crate) done: Vec<u64>,
    /// Prompt tokens of live requests still to prefill.
    prefill_backlog: u64,
    /// Σ prompt tokens of live requests.
    live_prompt_tokens: u64,
    /// Scratch for draining the engine's KV events.
    event_buf: Vec<augur_core::kv::KvEvent>,
}

/// What a turn did, for the event loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// The replica ran a model iteration (its report is due).
    Stepped,
    /// The replica ran no iteration (it went idle or stalled).
    Waited,
}

impl<'e> Replica<'e> {
    /// A replica around `engine`, at time 0.
    pub(crate) fn new(engine: Engine<'e>) -> Self {
        let cfg = *engine.config();
        Replica {
            bs: cfg.block_size,
            engine,
            t: 0,
            ready: Some(0),
            parked: Parked::No,
            inbox: VecDeque::new(),
            retry: VecDeque::new(),
            resumes: BinaryHeap::new(),
            results: Vec::with_capacity(cfg.max_running as usize),
            dropped: Vec::new(),
            resumed: Vec::new(),
            counters: RunCounters::default(),
            iterations: 0,
            done: Vec::new(),
            prefill_backlog: 0,
            live_prompt_tokens: 0,
            event_buf: if cfg.kv_event_capacity > 0 {
                vec![augur_core::kv::KvEvent::default(); 1024]
            } else {
                Vec::new()
            },
        }
    }

    /// The engine's counters.
    pub(crate) fn stats(&self) -> EngineStats {
        self.engine.stats()
    }

    /// Hands request `i`, arriving at `arrival_us`, to this replica: it is added to the engine
    /// at the replica's next turn (at or after the arrival). A parked replica is woken for it
    /// at the time the single-engine loop would have woken.
    pub(crate) fn hand_over(&mut self, i: usize, arrival_us: u64) {
        self.inbox.push_back(i);
        let wake = match self.parked {
            Parked::No => return,
            Parked::Idle => arrival_us.max(self.t),
            Parked::Stalled => arrival_us.max(self.t).max(self.t.saturating_add(1)),
        };
        self.ready = Some(self.ready.map_or(wake, |r| r.min(wake)));
    }

    /// The replica's published load.
    pub(crate) fn load(&self) -> ReplicaLoad {
        let s = self.engine.stats();
        let live = self.engine.live_requests();
        ReplicaLoad {
            at_us: self.t,
            outstanding: live + self.inbox.len() as u32 + self.retry.len() as u32,
            waiting: s.waiting,
            running: s.running,
            kv_used_blocks: s.kv.device.in_use,
            kv_total_blocks: s.kv.device.total,
            predicted_backlog_tokens: s.predicted_backlog_tokens,
            prefill_backlog_tokens: self.prefill_backlog,
            mean_context_tokens: self
                .live_prompt_tokens
                .checked_div(u64::from(live))
                .unwrap_or(0)
                .min(u64::from(u32::MAX)) as u32,
        }
    }

    /// Takes the request off the replica's books (it finished or was dropped).
    fn forget(&mut self, sh: &mut Shared<'_>, i: usize) {
        let l = &mut sh.live[i];
        l.handle = None;
        if l.generated == 0 {
            let prompt = sh.records[i].prompt_tokens;
            self.prefill_backlog -= u64::from(prompt.saturating_sub(l.prefilled));
            l.prefilled = prompt;
        }
        self.live_prompt_tokens -= u64::from(sh.records[i].prompt_tokens);
        self.done.push(i as u64);
    }

    /// Adds request `i` at the replica's time; returns `false` when it must be retried (the
    /// hash store is full).
    fn admit<W: Write>(
        &mut self,
        sh: &mut Shared<'_>,
        tl: &mut Option<&mut Timeline<W>>,
        i: usize,
    ) -> Result<bool> {
        let t = self.t;
        if !admit_request(
            &mut self.engine,
            sh.trace,
            sh.cfg,
            self.bs,
            i,
            t,
            &mut sh.live,
            &mut sh.records,
        )? {
            return Ok(false);
        }
        if sh.live[i].handle.is_some() {
            let prompt = sh.records[i].prompt_tokens;
            self.prefill_backlog += u64::from(prompt);
            self.live_prompt_tokens += u64::from(prompt);
        } else {
            self.done.push(i as u64);
        }
        if let Some(tl) = tl {
            tl.arrive(i as u64, sh.trace.requests[i].arrival_us);
            if let Some(why) = &sh.records[i].rejected {
                tl.reject(i as u64, t, why);
            }
        }
        Ok(true)
    }

    /// Runs one turn at `self.ready` (which the event loop has checked is due): admits retried
    /// and handed-over requests, resumes returned tool calls, then runs one model iteration or
    /// parks.
    pub(crate) fn turn<W: Write>(
        &mut self,
        sh: &mut Shared<'_>,
        tl: &mut Option<&mut Timeline<W>>,
    ) -> Result<Turn> {
        let t = self
            .ready
            .take()
            .expect("the event loop runs ready replicas only");
        self.t = t;
        self.parked = Parked::No;
        // Requests refused earlier for lack of hash storage, then arrivals due.
        let mut pending_retry = self.retry.len();
        while pending_retry > 0 {
            pending_retry -= 1;
            let i = self.retry.pop_front().expect("counted");
            if !self.admit(sh, tl, i)? {
                self.retry.push_back(i);
            }
        }
        while let Some(i) = self.inbox.pop_front() {
            if !self.admit(sh, tl, i)? {
                self.retry.push_back(i);
            }
        }
        self.resumed.clear();
        while self.resumes.peek().is_some_and(|Reverse((at, _))| *at <= t) {
            let Reverse(x) = self.resumes.pop().expect("peeked");
            self.resumed.push(x);
        }
        for &(_, i) in &self.resumed {
            let call = &sh.trace.requests[i].tool_calls[sh.live[i].next_tool_call - 1];
            let h = sh.live[i].handle.expect("paused requests are live");
            self.engine
                .resume_with_tokens(h, call.response_tokens, Instant(t))
                .map_err(|e| anyhow::anyhow!("resume: {e}"))?;
            if let Some(tl) = tl {
                tl.resume(i as u64, t);
            }
        }
        let next_resume = self.resumes.peek().map(|Reverse((at, _))| *at);
        if self.engine.live_requests() == 0 {
            if let Some(tl) = tl {
                tl.idle(t, &self.engine.stats());
            }
            self.parked = Parked::Idle;
            self.ready = next_resume.map(|at| t.max(at));
            return Ok(Turn::Waited);
        }
        // `schedule` returns `engine.plan()`; reading it back lets the timeline also read the
        // engine's counters after scheduling.
        self.engine
            .schedule(Instant(t))
            .map_err(|e| anyhow::anyhow!("schedule: {e}"))?;
        let plan = self.engine.plan();
        if let Some(tl) = tl {
            tl.step(t, &plan, &self.engine.stats());
        }
        let mut shape = BatchShape::new();
        for e in plan.entries {
            shape.add(e.tokens, e.computed_before);
        }
        let swapped = (plan.swap_out.len() + plan.swap_in.len()) as u32;
        self.counters.swapped_blocks += plan.swap_out.len() as u64;
        self.dropped.clear();
        self.dropped
            .extend(plan.dropped.iter().map(|d| d.external_id));
        for p in plan.preempted {
            sh.records[p.external_id as usize].preemptions += 1;
        }
        if plan.entries.is_empty() {
            let dropped = std::mem::take(&mut self.dropped);
            for &i in &dropped {
                sh.records[i as usize].rejected = Some(DROPPED.into());
                self.forget(sh, i as usize);
            }
            if let Some(tl) = tl {
                for &i in &dropped {
                    tl.reject(i, t, DROPPED);
                }
                tl.flush_done(t);
            }
            self.dropped = dropped;
            // Nothing can run until something arrives or a tool call returns.
            self.parked = Parked::Stalled;
            self.ready = next_resume.map(|at| t.max(at).max(t.saturating_add(1)));
            return Ok(Turn::Waited);
        }
        let cfg = sh.cfg;
        let cost = cfg.cost.iteration_cost(&shape);
        let mut dt = cost.total_us;
        if swapped > 0 {
            dt += cfg.cost.swap_time_us(swapped, self.bs);
        }
        let step_us = (dt.ceil() as u64).max(1);
        let t_end = t
            .checked_add(step_us)
            .context("the simulated clock overflowed 64-bit microseconds")?;
        count_utilisation(&mut self.counters, &cfg.cost, &cost, step_us as f64);
        self.results.clear();
        for e in plan.entries {
            let i = e.external_id as usize;
            if let Some(tl) = tl {
                tl.entry(e, t, t_end);
            }
            let mut r = e.default_result();
            let l = &mut sh.live[i];
            if l.generated == 0 {
                // Prefill progress (a prefix hit shows as `computed_before`).
                let prompt = sh.records[i].prompt_tokens;
                let now = if e.samples {
                    prompt
                } else {
                    (e.computed_before + e.tokens).min(prompt)
                };
                if now > l.prefilled {
                    self.prefill_backlog -= u64::from(now - l.prefilled);
                    l.prefilled = now;
                }
            }
            if e.samples {
                l.generated += 1;
                if l.generated == 1 {
                    sh.records[i].first_token_s = Some(t_end as f64 * 1e-6);
                }
                let calls = &sh.trace.requests[i].tool_calls;
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
                    self.resumes.push(Reverse((at, i)));
                    if let Some(tl) = tl {
                        tl.pause(i as u64, t_end, call.duration_us);
                    }
                } else if cfg.predictor.refines()
                    && l.generated.is_multiple_of(cfg.refine_every.max(1))
                    && let Some(p) = cfg.predictor.refine(i as u64, l.true_output, l.generated)
                {
                    r.predicted_remaining = Some((p - l.generated as f64).max(0.0));
                }
            }
            // Only the results that are not the entry's default (see `complete_except`).
            if r != e.default_result() {
                self.results.push(r);
            }
        }
        let util = {
            let k = self.engine.stats().kv.device;
            k.in_use as f64 / k.total.max(1) as f64
        };
        self.engine
            .complete_except(&self.results, Instant(t_end))
            .map_err(|e| anyhow::anyhow!("complete: {e}"))?;
        let mut finished = std::mem::take(&mut self.resumed);
        finished.clear();
        finished.extend(
            self.engine
                .last_finished()
                .iter()
                .map(|f| (0, f.external_id as usize)),
        );
        for &(_, i) in &finished {
            sh.finished += 1;
            sh.records[i].finish_s = Some(t_end as f64 * 1e-6);
            self.forget(sh, i);
            if let Some(tl) = tl {
                tl.finish(i as u64, t_end, sh.records[i].output_tokens);
            }
        }
        self.resumed = finished;
        let dropped = std::mem::take(&mut self.dropped);
        for &i in &dropped {
            sh.finished += 1;
            sh.records[i as usize].rejected = Some(DROPPED.into());
            self.forget(sh, i as usize);
            if let Some(tl) = tl {
                tl.reject(i, t, DROPPED);
            }
        }
        self.dropped = dropped;
        if let Some(tl) = tl {
            tl.flush_done(t_end);
        }
        self.counters.kv_utilization_sum += util;
        self.counters.kv_utilization_samples += 1;
        self.iterations += 1;
        self.t = t_end;
        self.ready = Some(t_end);
        Ok(Turn::Stepped)
    }

    /// Appends the KV events the engine recorded since the last drain to `out`, as the
    /// replica's publisher would send them after each step (`Engine::drain_kv_events`, the
    /// core's event ring; the engine must have been built with a `kv_event_capacity`).
    /// Only the device tier is indexed: a host-tier copy is not a cache hit for a new
    /// request until it is swapped back in.
    pub(crate) fn drain_kv_events(&mut self, out: &mut Vec<crate::cluster::KvEvent>) {
        use crate::cluster::KvEvent;
        use augur_core::kv::{KvEventKind, Tier};
        if self.event_buf.is_empty() {
            return; // events are off for this engine
        }
        loop {
            let n = self.engine.drain_kv_events(&mut self.event_buf);
            for e in &self.event_buf[..n] {
                match e.kind {
                    KvEventKind::Stored {
                        hash,
                        tier: Tier::Device,
                        ..
                    } => out.push(KvEvent::Stored { hash }),
                    KvEventKind::Removed {
                        hash,
                        tier: Tier::Device,
                        ..
                    } => out.push(KvEvent::Removed { hash }),
                    KvEventKind::AllCleared => out.push(KvEvent::Cleared),
                    _ => {}
                }
            }
            if n < self.event_buf.len() {
                break;
            }
        }
    }

    /// Copies the engine's final counters into the run counters; `simulated_s` is the
    /// replica's clock.
    pub(crate) fn final_counters(&self, wall_s: f64) -> RunCounters {
        let stats = self.engine.stats();
        let mut c = self.counters.clone();
        c.preemptions_recompute = stats.preemptions_recompute;
        c.preemptions_swap = stats.preemptions_swap;
        c.preemptions_keep = stats.preemptions_keep;
        c.recomputed_tokens = stats.recomputed_tokens;
        c.prefix_hit_tokens = stats.prefix_hit_tokens;
        c.prompt_tokens_scheduled = stats.prompt_tokens_admitted;
        c.simulated_s = self.t as f64 * 1e-6;
        c.wall_s = wall_s;
        c
    }

    /// Sets the replica's peaks in its counters (see [`RunCounters::peak_flops`]).
    pub(crate) fn set_peaks(&mut self, model: &CostModel) {
        self.counters.peak_flops = model.peak_flops();
        self.counters.peak_hbm_bytes_per_s = model.peak_hbm_bytes_per_s();
    }
}

/// Adds trace request `i` at time `t`. Returns `false` if it must be retried later (the
/// block-hash store is full); a request the engine refuses for good is recorded as rejected.
#[allow(clippy::too_many_arguments)]
fn admit_request(
    engine: &mut Engine<'_>,
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
        tenant: r.tenant,
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

/// Adds one iteration, priced `cost` and lasting `step_us` (swaps included, rounded up as
/// the clock is), to the utilisation counters.
fn count_utilisation(c: &mut RunCounters, model: &CostModel, cost: &IterationCost, step_us: f64) {
    let step_s = step_us * 1e-6;
    c.steps += 1;
    c.busy_us += step_us;
    c.flops += cost.flops;
    c.hbm_bytes += cost.hbm_bytes;
    c.flops_capacity_busy += model.peak_flops() * step_s;
    c.hbm_capacity_busy += model.peak_hbm_bytes_per_s() * step_s;
    let k = match cost.bound() {
        Bound::Compute => 0,
        Bound::Memory => 1,
        Bound::Overhead => 2,
    };
    c.steps_by_bound[k] += 1;
    c.busy_us_by_bound[k] += step_us;
}
