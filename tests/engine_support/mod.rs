//! A tiny executor for engine tests: schedules, mirrors block tables from the plan deltas,
//! checks each plan against the configuration, and reports results.

#![allow(dead_code)]

use std::collections::HashMap;

use augur::core::engine::{
    Engine, EngineConfig, EntryKind, PreemptionCause, PreemptionKind, RequestDesc, RequestHandle,
    StepResult,
};
use augur::core::time::Instant;

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
        }
    }

    pub fn add(&mut self, e: &mut Engine<'_>, desc: RequestDesc<'_>, output: u32) -> RequestHandle {
        let h = e.add_request(&desc, Instant(self.now)).expect("accepted");
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
        let plan = e.schedule(now).expect("schedule");
        let mut out = Step::default();
        let total: u32 = plan.entries.iter().map(|x| x.tokens).sum();
        assert!(total <= self.cfg.token_budget, "budget exceeded: {total}");
        assert!(
            plan.entries.len() <= self.cfg.max_running as usize,
            "max_running exceeded"
        );
        for p in plan.preempted {
            out.preempted.push((p.external_id, p.kind, p.cause));
            self.tables.remove(&p.external_id);
        }
        for d in plan.dropped {
            out.dropped.push(d.external_id);
            self.tables.remove(&d.external_id);
        }
        out.swap_out = plan.swap_out.len();
        out.swap_in = plan.swap_in.len();
        out.copies = plan.copies.len();
        let bs = self.cfg.block_size;
        let mut results = vec![];
        let mut seen = std::collections::HashSet::new();
        for en in plan.entries {
            assert!(
                seen.insert(en.external_id),
                "request scheduled twice in one step"
            );
            out.entries.push((en.external_id, en.kind, en.tokens));
            let t = self.tables.entry(en.external_id).or_default();
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
                assert!(b < self.cfg.device_blocks, "block id out of range");
            }
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
        for f in e.last_finished() {
            out.finished.push(f.external_id);
            self.tables.remove(&f.external_id);
            self.handles.remove(&f.external_id);
        }
        let mut scratch = vec![0u32; (self.cfg.device_blocks + self.cfg.host_blocks) as usize];
        e.audit(&mut scratch).expect("audit");
        out
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
