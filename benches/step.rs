//! Steady-state cost of one engine step (`schedule` + `complete`), per running request.
//!
//! Run with `cargo bench --bench step -- --warm-up-time 1 --measurement-time 3`.
//!
//! Each benchmark `step/<policy>/running=<R>/waiting=<W>` holds R running requests that decode
//! one token per step and W waiting ones, and keeps both counts constant:
//! - prompts are 512 tokens (32 blocks of 16), the device has 65,536 blocks, `max_running` is R
//!   and the token budget R + (8 + R/32) × 512, so every running request decodes every step
//!   and 8 + R/32 admissions per step (well above the ~R/100 finishes) can prefill their
//!   whole prompt;
//! - output lengths are uniform in 1..=199 (mean 100), so about 1% of the running requests
//!   finish per step; each finished request is replaced at once by a new waiting request, and
//!   the next step admits as many from the head of the queue (a 512-token prefill each). So an
//!   iteration measures what a serving loop pays per step at steady state: R decodes (a new
//!   block every 16 tokens), ~R/100 finishes (freeing ~38 blocks each), ~R/100 arrivals
//!   (an O(log W) heap push each) and admissions (heap pop, 32-block allocation, full table);
//! - every request is predicted at 256 tokens (above every actual output): with exact
//!   predictions SPRPT would admit the shortest of the W waiting requests first, and the mix
//!   would drift (with W = 10^6, the finish rate changes over the run). SPRPT still ranks
//!   every running request each step (predicted − generated) and compares the worst one with
//!   the best waiting one (that scan is measured); the rank-preemption margin is huge, so it
//!   never preempts: preemption churn is a different workload.
//!
//! The state (W = 10^6 waiting requests takes a few hundred MB, checked against
//! `EngineConfig::layout().bytes()`) is built once per benchmark, outside the measured loop,
//! and run to steady state first. Throughput is R elements, so criterion reports time per
//! running request.

use augur::core::engine::{Engine, EngineConfig, RequestDesc, StepResult};
use augur::core::policy::{Policy, PolicyKind};
use augur::core::time::Instant;
use augur::storage::EngineBuffers;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const PROMPT: u32 = 512;
/// Prompts the budget can prefill per step beyond the decodes: well above the ~R/100 finishes
/// per step, so the running set refills every step.
const fn admissions_per_step(running: u32) -> u32 {
    8 + running / 32
}
/// Every request's predicted output: above every actual output (at most 199), so the rank of
/// a waiting request never depends on its length and the running mix stays stationary.
const PREDICTION: f64 = 256.0;

/// The driver: arrival ids, output targets by request slot, the result buffer.
struct Load {
    next_id: u64,
    rng: u64,
    now: u64,
    /// Output length of the request in each slot (indexed by handle index).
    target: Vec<u32>,
    results: Vec<StepResult>,
    finished: u64,
}

impl Load {
    fn target(&mut self) -> u32 {
        self.rng = self
            .rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        1 + ((self.rng >> 33) % 199) as u32
    }

    fn add(&mut self, e: &mut Engine<'_>) {
        let t = self.target();
        let id = self.next_id;
        self.next_id += 1;
        let desc = RequestDesc {
            predicted_output_tokens: Some(PREDICTION),
            ..RequestDesc::new(id, PROMPT)
        };
        let h = e.add_request(&desc, Instant(self.now)).expect("accepted");
        self.target[h.index() as usize] = t;
    }

    /// One step: schedule, report one token per sampling entry (finishing at the target),
    /// replace the finished requests with new arrivals.
    fn step(&mut self, e: &mut Engine<'_>) {
        self.now += 1;
        let now = Instant(self.now);
        self.results.clear();
        let plan = e.schedule(now).expect("schedule");
        for en in plan.entries {
            let mut r = StepResult::new(en.handle, en.samples as u32);
            if en.samples {
                // Tokens generated once this one is: computed tokens past the prompt, plus 1.
                let generated = en.computed_before + en.tokens + 1 - PROMPT;
                r.finished = generated >= self.target[en.handle.index() as usize];
            }
            self.results.push(r);
        }
        e.complete(&self.results, now).expect("complete");
        let done = e.last_finished().len();
        self.finished += done as u64;
        for _ in 0..done {
            self.add(e);
        }
    }
}

fn config(kind: PolicyKind, running: u32, waiting: u32) -> EngineConfig {
    let mut c = EngineConfig::new(16, 65_536, running + waiting + 2 * running);
    c.policy = Policy::new(kind);
    c.max_running = running;
    c.token_budget = running + admissions_per_step(running) * PROMPT;
    c.prefill_chunk = PROMPT;
    c.priority_margin = 1e12;
    c.prefix_caching = false;
    // No prompt hashes: keep the hash store to its minimum.
    c.hash_capacity = 1;
    c
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("step");
    for (name, kind) in [("sprpt", PolicyKind::Sprpt), ("fcfs", PolicyKind::Fcfs)] {
        for running in [256u32, 1024] {
            for waiting in [10_000u32, 1_000_000] {
                let cfg = config(kind, running, waiting);
                let bytes = cfg.layout().expect("valid").bytes();
                assert!(bytes < 2 << 30, "storage of {bytes} bytes");
                let mut buf = EngineBuffers::new(&cfg).expect("valid");
                let mut e = buf.engine(cfg).expect("engine");
                let mut load = Load {
                    next_id: 1,
                    rng: 0x2545_f491_4f6c_dd1d,
                    now: 0,
                    target: vec![0; cfg.max_requests as usize],
                    results: Vec::with_capacity(running as usize),
                    finished: 0,
                };
                for _ in 0..running + waiting {
                    load.add(&mut e);
                }
                // Fill the running set (counted at schedule time: the step's finishes have
                // left it since), then let the output lengths mix (a few mean lengths).
                while e.stats().running + (e.last_finished().len() as u32) < running {
                    load.step(&mut e);
                }
                for _ in 0..400 {
                    load.step(&mut e);
                }
                // Between steps, this step's finishes wait as new arrivals; the next step admits
                // as many.
                let s = e.stats();
                assert_eq!(s.running + s.waiting, running + waiting, "{s:?}");
                assert!(s.running + admissions_per_step(running) >= running, "{s:?}");
                g.throughput(Throughput::Elements(running as u64));
                g.bench_function(format!("{name}/running={running}/waiting={waiting}"), |b| {
                    b.iter(|| load.step(&mut e))
                });
                let s = e.stats();
                assert_eq!(s.running + s.waiting, running + waiting, "{s:?}");
                assert_eq!(s.preemptions_recompute + s.preemptions_swap, 0);
                eprintln!(
                    "  storage {:.0} MiB; {} finished over {} steps ({:.2}% of running per step)",
                    bytes as f64 / (1 << 20) as f64,
                    load.finished,
                    s.steps,
                    100.0 * load.finished as f64 / (s.steps as f64 * running as f64)
                );
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
