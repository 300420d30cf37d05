//! A tiny executor for engine tests: schedules, mirrors block tables from the plan deltas,
//! checks each plan against the configuration and against the KV content oracle
//! ([`kv_oracle::KvOracle`]), and reports results.

#![allow(dead_code)]

pub mod compat;
pub mod kv_oracle;
pub mod rng;

use std::collections::HashMap;

use augur::core::engine::{
    Dropped, Engine, EngineConfig, EngineStats, EntryKind, Plan, Preemption, PreemptionCause,
    PreemptionKind, RequestDesc, RequestHandle, ScheduledEntry, StepResult,
};
use augur::core::kv::BlockPair;
use augur::core::time::Instant;
use kv_oracle::KvOracle;

/// A plan copied out of the engine, for exact comparisons across runs (determinism).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRecord {
    pub step: u64,
    /// Each entry with its block-table delta.
    pub entries: Vec<(ScheduledEntry, Vec<u32>)>,
    pub preempted: Vec<Preemption>,
    pub dropped: Vec<Dropped>,
    pub swap_out: Vec<BlockPair>,
    pub swap_in: Vec<BlockPair>,
    pub copies: Vec<BlockPair>,
}

impl PlanRecord {
    pub fn of(plan: &Plan<'_>) -> Self {
        PlanRecord {
            step: plan.step,
            entries: plan
                .entries
                .iter()
                .map(|e| (*e, plan.blocks(e).to_vec()))
                .collect(),
            preempted: plan.preempted.to_vec(),
            dropped: plan.dropped.to_vec(),
            swap_out: plan.swap_out.to_vec(),
            swap_in: plan.swap_in.to_vec(),
            copies: plan.copies.to_vec(),
        }
    }
}

/// Checks one plan against the configuration and mirrors the block tables (by external id)
/// from its deltas; panics on any violation:
/// - tokens ≤ budget, entries ≤ `max_running`, no request twice, every entry computes ≥ 1
///   token and a decode exactly 1;
/// - preempted and dropped requests are not among the entries (their mirrors are dropped);
/// - each delta starts inside the mirrored table (or at 0), and the mirrored table then covers
///   exactly `computed_before + tokens`, with device block ids in range;
/// - swap-out pairs are (device, host), swap-in (host, device), copies (device, device), all in
///   range, each list with distinct destinations, and no device block the destination of both
///   a swap-in and a copy.
pub fn check_plan(cfg: &EngineConfig, plan: &Plan<'_>, tables: &mut HashMap<u64, Vec<u32>>) {
    let total: u64 = plan.entries.iter().map(|x| x.tokens as u64).sum();
    assert!(total <= cfg.token_budget as u64, "budget exceeded: {total}");
    assert!(
        plan.entries.len() <= cfg.max_running as usize,
        "max_running exceeded"
    );
    let mut seen = std::collections::HashSet::new();
    for en in plan.entries {
        assert!(
            seen.insert(en.external_id),
            "request scheduled twice in one step"
        );
        assert!(en.tokens >= 1, "empty entry");
        if en.kind == EntryKind::Decode {
            assert_eq!(en.tokens, 1, "decode of more than one token");
            assert!(en.samples, "decode that does not sample");
        }
    }
    for p in plan.preempted {
        assert!(
            !seen.contains(&p.external_id),
            "preempted request is scheduled"
        );
        tables.remove(&p.external_id);
    }
    for d in plan.dropped {
        assert!(
            !seen.contains(&d.external_id),
            "dropped request is scheduled"
        );
        tables.remove(&d.external_id);
    }
    let (dev, host) = (cfg.device_blocks, cfg.host_blocks);
    let pairs = |what: &str, list: &[BlockPair], src_n: u32, dst_n: u32, distinct: bool| {
        let mut dst = std::collections::HashSet::new();
        for p in list {
            assert!(
                p.src < src_n && p.dst < dst_n,
                "{what} pair out of range: {p:?}"
            );
            assert!(
                dst.insert(p.dst) || !distinct,
                "{what} names destination {} twice",
                p.dst
            );
        }
    };
    // Every list has distinct destinations (the executor may carry out a list in any order or
    // batched), and the device destinations of swap-ins and copies are distinct across lists.
    pairs("swap-out", plan.swap_out, dev, host, true);
    pairs("swap-in", plan.swap_in, host, dev, true);
    pairs("copy", plan.copies, dev, dev, true);
    for c in plan.copies {
        assert!(
            !plan.swap_in.iter().any(|p| p.dst == c.dst),
            "device block {} is the destination of a swap-in and a copy",
            c.dst
        );
    }
    let bs = cfg.block_size;
    for en in plan.entries {
        let t = tables.entry(en.external_id).or_default();
        assert!(
            en.table_start as usize <= t.len() || en.table_start == 0,
            "delta starts past the mirrored table"
        );
        t.truncate(en.table_start as usize);
        t.extend_from_slice(plan.blocks(en));
        let covered = (en.computed_before + en.tokens).div_ceil(bs) as usize;
        assert_eq!(
            t.len(),
            covered,
            "mirrored table does not cover the computed tokens of {}",
            en.external_id
        );
        for &b in t.iter() {
            assert!(b < dev, "block id out of range");
        }
    }
}

/// The results of `entries` (`results[k]` for `entries[k]`) that are not the entry's
/// default result: what `Engine::complete_except` takes for the same step.
pub fn exceptions_of(entries: &[ScheduledEntry], results: &[StepResult]) -> Vec<StepResult> {
    entries
        .iter()
        .zip(results)
        .filter(|(en, r)| **r != en.default_result())
        .map(|(_, r)| *r)
        .collect()
}

/// Every preemption is reported: the plan's preemption records are exactly the preemptions the
/// counters gained in that `schedule` call.
pub fn check_preemptions_reported(before: &EngineStats, after: &EngineStats, plan: &Plan<'_>) {
    let total = |s: &EngineStats| s.preemptions_recompute + s.preemptions_swap + s.preemptions_keep;
    assert_eq!(
        plan.preempted.len() as u64,
        total(after) - total(before),
        "plan {} reports {} preemptions, the counters gained {} ({:?} -> {:?})",
        plan.step,
        plan.preempted.len(),
        total(after) - total(before),
        (
            before.preemptions_recompute,
            before.preemptions_swap,
            before.preemptions_keep
        ),
        (
            after.preemptions_recompute,
            after.preemptions_swap,
            after.preemptions_keep
        ),
    );
}

/// One entry as (external id, kind, tokens).
pub type Line = (u64, EntryKind, u32);

/// What a step did, in plain values for exact assertions.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Step {
    pub entries: Vec<Line>,
    pub preempted: Vec<(u64, PreemptionKind, PreemptionCause)>,
    pub dropped: Vec<u64>,
    pub swap_out: usize,
    pub swap_in: usize,
    pub copies: usize,
    pub finished: Vec<u64>,
}

/// Drives one engine like an executor would.
pub struct Driver {
    pub cfg: EngineConfig,
    /// The output length each request will have (finish when reached).
    pub target: HashMap<u64, u32>,
    pub handles: HashMap<u64, RequestHandle>,
    pub generated: HashMap<u64, u32>,
    /// Mirror of each request's device block table, built only from plan deltas.
    pub tables: HashMap<u64, Vec<u32>>,
    pub now: u64,
    pub tick: u64,
    /// The KV content oracle, run on every plan.
    pub oracle: KvOracle,
    /// The last plan, copied.
    pub last_plan: Option<PlanRecord>,
}

impl Driver {
    pub fn new(cfg: EngineConfig) -> Self {
        Driver {
            cfg,
            target: HashMap::new(),
            handles: HashMap::new(),
            generated: HashMap::new(),
            tables: HashMap::new(),
            now: 0,
            tick: 1000,
            oracle: KvOracle::new(&cfg),
            last_plan: None,
        }
    }

    pub fn add(&mut self, e: &mut Engine<'_>, desc: RequestDesc<'_>, output: u32) -> RequestHandle {
        let h = e.add_request(&desc, Instant(self.now)).expect("accepted");
        self.oracle.on_add(&desc, h);
        self.target.insert(desc.external_id, output);
        self.handles.insert(desc.external_id, h);
        self.generated.insert(desc.external_id, 0);
        h
    }

    /// Schedules one step, checks it, completes every entry (finishing requests that reach
    /// their target) and returns what happened.
    pub fn step(&mut self, e: &mut Engine<'_>) -> Step {
        self.step_with(e, |_, _| None)
    }

    /// As [`Driver::step`], with `pause(external_id, generated)` deciding pauses.
    pub fn step_with(
        &mut self,
        e: &mut Engine<'_>,
        pause: impl Fn(u64, u32) -> Option<u64>,
    ) -> Step {
        self.now += self.tick;
        let now = Instant(self.now);
        let before = e.stats();
        e.schedule(now).expect("schedule");
        let plan = e.plan();
        check_preemptions_reported(&before, &e.stats(), &plan);
        check_plan(&self.cfg, &plan, &mut self.tables);
        self.oracle.apply_plan(&plan, e);
        self.oracle.check(e);
        self.last_plan = Some(PlanRecord::of(&plan));
        let mut out = Step::default();
        for p in plan.preempted {
            out.preempted.push((p.external_id, p.kind, p.cause));
        }
        for d in plan.dropped {
            out.dropped.push(d.external_id);
        }
        out.swap_out = plan.swap_out.len();
        out.swap_in = plan.swap_in.len();
        out.copies = plan.copies.len();
        let mut results = vec![];
        for en in plan.entries {
            out.entries.push((en.external_id, en.kind, en.tokens));
            let mut r = StepResult::new(en.handle, en.samples as u32);
            if en.samples {
                let g = self.generated.get_mut(&en.external_id).unwrap();
                *g += 1;
                if *g >= self.target[&en.external_id] {
                    r.finished = true;
                } else if let Some(d) = pause(en.external_id, *g) {
                    r.pause = Some(augur::core::engine::PauseRequest {
                        predicted_duration_us: d,
                    });
                }
            }
            results.push(r);
        }
        e.complete(&results, now).expect("complete");
        self.oracle.on_complete(&results, e);
        for f in e.last_finished() {
            out.finished.push(f.external_id);
            self.tables.remove(&f.external_id);
            self.handles.remove(&f.external_id);
        }
        let mut scratch = vec![0u32; (self.cfg.device_blocks + self.cfg.host_blocks) as usize];
        e.audit(&mut scratch).expect("audit");
        out
    }

    /// Aborts request `id` (live), telling the oracle.
    pub fn abort(&mut self, e: &mut Engine<'_>, id: u64) {
        let h = self.handles.remove(&id).expect("live request");
        e.abort(h, Instant(self.now)).expect("abort");
        self.oracle.on_abort(id);
        self.tables.remove(&id);
    }

    /// Resumes paused request `id`.
    pub fn resume(&mut self, e: &mut Engine<'_>, id: u64) {
        e.resume(self.handles[&id], Instant(self.now))
            .expect("resume");
    }

    /// Runs until nothing is live or `max_steps` pass; returns the steps taken.
    pub fn drain(&mut self, e: &mut Engine<'_>, max_steps: usize) -> usize {
        for k in 0..max_steps {
            if e.live_requests() == 0 {
                return k;
            }
            self.step(e);
        }
        panic!("not drained after {max_steps} steps: {:?}", e.stats());
    }
}

/// A request with a prediction.
pub fn req(id: u64, prompt: u32, predicted: f64) -> RequestDesc<'static> {
    RequestDesc {
        predicted_output_tokens: Some(predicted),
        ..RequestDesc::new(id, prompt)
    }
}
