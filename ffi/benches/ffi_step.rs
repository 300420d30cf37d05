//! `ffi/step`: the steady-state step of `benches/step.rs` made through the C ABI, next to the
//! same step made in Rust, in one binary so that the ratio is measured on one machine state.
//!
//! Run with `cargo bench -p augur-ffi --bench ffi_step -- --warm-up-time 1 --measurement-time 3`.
//!
//! Two drivers run the workload of `benches/common/steady_decode.rs` (R running requests
//! decoding, W waiting, ~1% finishing and replaced each step), each on its own engine with
//! identical states:
//! - `rust/…`: the Rust step of `benches/step.rs` (`Engine::schedule`, handle-keyed
//!   `Engine::complete`), the engine carved from one region (`augur_region::engine_in_region`);
//! - `ffi/…`: `augur_schedule`, reading the plan in place, one `augur_entry_result` per entry,
//!   `augur_complete`, `augur_last_finished` and `augur_add_request` for the replacements: what
//!   a C server pays, guard (`catch_unwind`), engine tag and pointer checks included;
//! - `ffi-sparse/…`: the same with `augur_complete_except`, listing only the finishing
//!   entries (the form a server of plain decodes uses).
//!
//! augur-ffi builds only a staticlib and a cdylib, so its source is compiled in with `#[path]`:
//! the functions measured are the `extern "C"` functions C links. Throughput is R elements, so
//! criterion reports time per running request. `AUGUR_BENCH_STEPS=N` instead runs N steps of
//! each driver once, outside criterion, for callgrind: `CDriver::step` and `RustDriver::step`
//! are never inlined, so `callgrind_annotate --inclusive=yes` gives each one's instructions;
//! `AUGUR_BENCH_ONLY=/sprpt/running=256/` keeps the configurations whose id contains it.

use core::mem::MaybeUninit;

use augur_core::engine::{Engine, RequestHandle};
use augur_core::policy::PolicyKind;
use augur_region::{RegionUnit, engine_in_region, units_as_bytes};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

// `cargo bench` compiles with `cfg(test)`, so the crate's unit tests come along, unused.
#[allow(dead_code, missing_docs, unreachable_pub, unused_imports)]
#[path = "../src/lib.rs"]
mod capi;

#[allow(dead_code)]
#[path = "../../benches/common/steady_decode.rs"]
mod steady_decode;

use capi::status::*;
use capi::types::*;
use capi::*;
use steady_decode::{PREDICTION, PROMPT, RustDriver, Targets, config};

/// The same loop through the C ABI.
struct CDriver {
    engine: *mut augur_engine,
    next_id: u64,
    now: u64,
    targets: Targets,
    results: Vec<augur_entry_result>,
    /// Only the finishing entries, for `augur_complete_except` (when `sparse`).
    exceptions: Vec<augur_entry_exception>,
    sparse: bool,
    finished: u64,
}

impl CDriver {
    fn new(cfg: &augur_core::engine::EngineConfig, running: u32, sparse: bool) -> Self {
        let c = augur_config::from_core(cfg);
        let mut engine = core::ptr::null_mut();
        // SAFETY: valid pointers.
        assert_eq!(unsafe { augur_engine_new(&c, &mut engine) }, AUGUR_OK);
        Self {
            engine,
            next_id: 1,
            now: 0,
            targets: Targets::new(cfg.max_requests),
            results: Vec::with_capacity(running as usize),
            exceptions: Vec::with_capacity(running as usize),
            sparse,
            finished: 0,
        }
    }

    fn add(&mut self) {
        let d = augur_request_desc {
            external_id: self.next_id,
            flags: AUGUR_DESC_PREDICTION,
            prompt_tokens: PROMPT,
            max_output_tokens: 0,
            priority: 0,
            predicted_output_tokens: PREDICTION,
            deadline_us: 0,
            ttft_target_us: 0,
            tenant: 0,
            reserved: 0,
            cache_salt: 0,
            prompt_block_hashes: core::ptr::null(),
            prompt_block_hashes_len: 0,
        };
        self.next_id += 1;
        let mut h = 0;
        // SAFETY: valid pointers.
        let s = unsafe { augur_add_request(self.engine, &d, self.now, &mut h) };
        assert_eq!(s, AUGUR_OK);
        self.targets.draw(RequestHandle::from_raw(h).index());
    }

    #[inline(never)]
    fn step(&mut self) {
        self.now += 1;
        let mut plan = MaybeUninit::<augur_plan>::uninit();
        // SAFETY: valid pointers.
        let s = unsafe { augur_schedule(self.engine, self.now, plan.as_mut_ptr()) };
        assert_eq!(s, AUGUR_OK);
        // SAFETY: written on success.
        let plan = unsafe { plan.assume_init() };
        let entries = if plan.entries_len == 0 {
            &[][..]
        } else {
            // SAFETY: the plan's entries, valid until the next changing call.
            unsafe { core::slice::from_raw_parts(plan.entries, plan.entries_len) }
        };
        self.results.clear();
        self.exceptions.clear();
        for (k, en) in entries.iter().enumerate() {
            let finished = en.samples
                && self.targets.finishes(
                    RequestHandle::from_raw(en.handle).index(),
                    en.computed_before,
                    en.tokens,
                );
            let result = augur_entry_result {
                tokens: u32::from(en.samples),
                flags: if finished { AUGUR_RESULT_FINISHED } else { 0 },
                pause_duration_us: 0,
                filled_block_hash: 0,
            };
            if !self.sparse {
                self.results.push(result);
            } else if finished {
                self.exceptions.push(augur_entry_exception {
                    entry: k as u32,
                    result,
                });
            }
        }
        let s = if self.sparse {
            // SAFETY: `exceptions.len()` exceptions.
            unsafe {
                augur_complete_except(
                    self.engine,
                    self.exceptions.as_ptr(),
                    self.exceptions.len(),
                    self.now,
                )
            }
        } else {
            // SAFETY: one result per entry.
            unsafe {
                augur_complete(
                    self.engine,
                    self.results.as_ptr(),
                    self.results.len(),
                    self.now,
                )
            }
        };
        assert_eq!(s, AUGUR_OK);
        let (mut fin, mut n) = (core::ptr::null(), 0);
        // SAFETY: valid pointers.
        let s = unsafe { augur_last_finished(self.engine, &mut fin, &mut n) };
        assert_eq!(s, AUGUR_OK);
        self.finished += n as u64;
        for _ in 0..n {
            self.add();
        }
    }

    fn stats(&self) -> augur_stats {
        let mut s = augur_stats::default();
        // SAFETY: valid pointers.
        assert_eq!(unsafe { augur_engine_stats(self.engine, &mut s) }, AUGUR_OK);
        s
    }

    fn warm_up(&mut self, running: u32, waiting: u32, steps_of_rust: u64) {
        for _ in 0..running + waiting {
            self.add();
        }
        // The same number of steps as the Rust driver's warm-up: the same state.
        for _ in 0..steps_of_rust {
            self.step();
        }
        let s = self.stats();
        assert_eq!(s.running + s.waiting, running + waiting, "{s:?}");
    }
}

impl Drop for CDriver {
    fn drop(&mut self) {
        // SAFETY: an engine from `augur_engine_new`, freed once.
        unsafe { augur_engine_free(self.engine) };
    }
}

fn region_for(cfg: &augur_core::engine::EngineConfig) -> Vec<RegionUnit> {
    let (size, _) = augur_region::region_size(cfg).expect("valid");
    vec![RegionUnit::UNINIT; RegionUnit::count_for(size)]
}

fn rust_engine<'a>(
    cfg: augur_core::engine::EngineConfig,
    region: &'a mut [RegionUnit],
) -> Engine<'a> {
    engine_in_region(cfg, units_as_bytes(region)).expect("engine")
}

fn bench(c: &mut Criterion) {
    // `AUGUR_BENCH_STEPS=N [AUGUR_BENCH_ONLY=substring of the id]`: N plain steps, no criterion.
    let steps_only: Option<u64> = std::env::var("AUGUR_BENCH_STEPS")
        .ok()
        .map(|v| v.parse().expect("AUGUR_BENCH_STEPS is a step count"));
    let mut g = c.benchmark_group("ffi_step");
    for (name, kind) in [("sprpt", PolicyKind::Sprpt), ("fcfs", PolicyKind::Fcfs)] {
        for running in [256u32, 1024] {
            let waiting = 10_000;
            let cfg = config(kind, running, waiting);
            let mut region = region_for(&cfg);
            let mut rust = RustDriver::new(rust_engine(cfg, &mut region), running);
            rust.warm_up(running, waiting);
            let warm_steps = rust.engine.stats().steps;
            let mut ffi = CDriver::new(&cfg, running, false);
            ffi.warm_up(running, waiting, warm_steps);
            let mut sparse = CDriver::new(&cfg, running, true);
            sparse.warm_up(running, waiting, warm_steps);
            let rs = rust.engine.stats();
            for cs in [ffi.stats(), sparse.stats()] {
                assert_eq!(
                    (rs.running, rs.waiting, rs.finished, rs.steps),
                    (cs.running, cs.waiting, cs.finished, cs.steps),
                    "the drivers reached different states"
                );
            }
            let id = |api: &str| format!("{api}/{name}/running={running}/waiting={waiting}");
            if let Some(n) = steps_only {
                let only = std::env::var("AUGUR_BENCH_ONLY").unwrap_or_default();
                if !id("").contains(&only) {
                    continue;
                }
                for _ in 0..n {
                    rust.step();
                }
                for _ in 0..n {
                    ffi.step();
                }
                for _ in 0..n {
                    sparse.step();
                }
                eprintln!(
                    "{}: {} steps of each driver ({warm_steps} of warm-up)",
                    id(""),
                    rust.engine.stats().steps
                );
                continue;
            }
            g.throughput(Throughput::Elements(u64::from(running)));
            g.bench_function(id("rust"), |b| b.iter(|| rust.step()));
            g.bench_function(id("ffi"), |b| b.iter(|| ffi.step()));
            g.bench_function(id("ffi-sparse"), |b| b.iter(|| sparse.step()));
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
