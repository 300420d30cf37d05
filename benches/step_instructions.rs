//! Instruction counts of the steady-state decode step under callgrind (gungraun): the stable
//! measurement behind issue 10's target of at most 150 instructions per running request per
//! step (wall clock swings by 3x on a shared machine; instruction counts do not).
//!
//! Run with `scripts/step-instructions` (installs the matching `gungraun-runner`, runs this
//! bench and prints instructions per running request), or directly with
//! `cargo bench --bench step_instructions` when `gungraun-runner` 0.20.0 is on the PATH.
//!
//! Each benchmark runs [`STEPS`] steps of the workload of `common/steady_decode.rs` (the one
//! `benches/step.rs` and the C ABI bench measure) from a warmed-up state built in the setup,
//! which callgrind does not count. What is counted is the whole serving-loop step: `schedule`,
//! building the results, `complete` and the replacement arrivals (`RustDriver::step`).
//! A toggle on `Engine::schedule`/`Engine::complete` alone cannot be used: it would also
//! count the setup's warm-up steps. `callgrind_annotate --inclusive=yes` on the output under
//! `target/gungraun` splits the count by function.
//!
//! Divide by `STEPS × R` for instructions per running request per step.
//!
//! Groups: `step::cases_N` reports one result per entry (`Engine::complete`);
//! `sparse::cases_N`, the same fifteen cases, only the finishing entries
//! (`Engine::complete_except`); `variant::*` the other step paths.

// gungraun's macros generate undocumented modules and constants.
#![allow(missing_docs)]

// Each bench that includes the workload uses a part of it.
#[allow(dead_code)]
#[path = "common/steady_decode.rs"]
mod steady_decode;

use std::hint::black_box;

use augur::core::policy::PolicyKind;
use augur::storage::EngineBuffers;
use gungraun::{library_benchmark, library_benchmark_group, main};
use steady_decode::{RustDriver, Variant, variant_config};

/// Steps measured per benchmark.
pub const STEPS: u32 = 20;

/// A warmed-up driver: `running` decoding, `waiting` queued, lengths mixed. The storage is
/// leaked: the process ends after the one benchmark it runs.
fn warmed(policy: &str, running: u32, waiting: u32) -> RustDriver<'static> {
    warmed_with(policy, running, waiting, Variant::Steady, false)
}

/// [`warmed`], reporting with `Engine::complete_except` from the first step on.
fn warmed_sparse(policy: &str, running: u32, waiting: u32) -> RustDriver<'static> {
    warmed_with(policy, running, waiting, Variant::Steady, true)
}

/// [`warmed`] for a variant of the workload.
fn warmed_variant(
    policy: &str,
    running: u32,
    waiting: u32,
    variant: Variant,
) -> RustDriver<'static> {
    warmed_with(policy, running, waiting, variant, false)
}

/// The one setup behind the others: `variant` of the workload, results sparse or keyed.
fn warmed_with(
    policy: &str,
    running: u32,
    waiting: u32,
    variant: Variant,
    sparse: bool,
) -> RustDriver<'static> {
    let cfg = variant_config(policy_kind(policy), running, waiting, variant);
    let buf: &'static mut EngineBuffers = Box::leak(Box::new(EngineBuffers::new(&cfg).unwrap()));
    let mut d = RustDriver::with_variant(buf.engine(cfg).unwrap(), running, variant);
    if sparse {
        d = d.sparse_results();
    }
    d.warm_up(running, waiting);
    d
}

/// The policy a case names.
fn policy_kind(policy: &str) -> PolicyKind {
    match policy {
        "fcfs" => PolicyKind::Fcfs,
        "sprpt" => PolicyKind::Sprpt,
        "memory-time" => PolicyKind::MemoryTime,
        other => panic!("no policy {other} in this bench"),
    }
}

/// Runs [`STEPS`] steps; checks that the workload preempted only if it is meant to.
fn steps(mut d: RustDriver<'static>, preempts: bool) -> RustDriver<'static> {
    let preemptions = |d: &RustDriver<'static>| {
        let s = d.engine.stats();
        s.preemptions_recompute + s.preemptions_swap
    };
    let before = preemptions(&d);
    for _ in 0..STEPS {
        d.step();
    }
    let during = preemptions(&d) - before;
    assert_eq!(
        during > 0,
        preempts,
        "{during} preemptions: {:?}",
        d.engine.stats()
    );
    black_box(d)
}

#[library_benchmark(setup = warmed)]
#[benches::cases(
    args = [
        ("fcfs", 256, 10_000), ("fcfs", 1024, 10_000), ("fcfs", 256, 1_000_000),
        ("fcfs", 1024, 1_000_000), ("fcfs", 1024, 1_000),
        ("sprpt", 256, 10_000), ("sprpt", 1024, 10_000), ("sprpt", 256, 1_000_000),
        ("sprpt", 1024, 1_000_000), ("sprpt", 1024, 1_000),
        ("memory-time", 256, 10_000), ("memory-time", 1024, 10_000),
        ("memory-time", 256, 1_000_000), ("memory-time", 1024, 1_000_000),
        ("memory-time", 1024, 1_000),
    ]
)]
fn step(d: RustDriver<'static>) -> RustDriver<'static> {
    steps(d, false)
}

// The steady decode reported sparsely (`Engine::complete_except`: only the finishing entries
// are listed), the form a server with plain decodes uses; same cases as `step`.
#[library_benchmark(setup = warmed_sparse)]
#[benches::cases(
    args = [
        ("fcfs", 256, 10_000), ("fcfs", 1024, 10_000), ("fcfs", 256, 1_000_000),
        ("fcfs", 1024, 1_000_000), ("fcfs", 1024, 1_000),
        ("sprpt", 256, 10_000), ("sprpt", 1024, 10_000), ("sprpt", 256, 1_000_000),
        ("sprpt", 1024, 1_000_000), ("sprpt", 1024, 1_000),
        ("memory-time", 256, 10_000), ("memory-time", 1024, 10_000),
        ("memory-time", 256, 1_000_000), ("memory-time", 1024, 1_000_000),
        ("memory-time", 1024, 1_000),
    ]
)]
fn sparse(d: RustDriver<'static>) -> RustDriver<'static> {
    steps(d, false)
}

// The other step paths (issue 10 reports them; its target is the steady decode only). Same
// measure: divide by `STEPS × R` (R is `max_running`; under memory pressure fewer run).
#[library_benchmark(setup = warmed_variant)]
#[bench::prefix_caching_fcfs("fcfs", 256, 10_000, Variant::PrefixCaching)]
#[bench::prefix_caching_sprpt("sprpt", 256, 10_000, Variant::PrefixCaching)]
#[bench::chunked_prefill_fcfs("fcfs", 256, 10_000, Variant::ChunkedPrefill)]
#[bench::chunked_prefill_sprpt("sprpt", 256, 10_000, Variant::ChunkedPrefill)]
#[bench::memory_pressure_fcfs("fcfs", 256, 10_000, Variant::MemoryPressure)]
#[bench::memory_pressure_sprpt("sprpt", 256, 10_000, Variant::MemoryPressure)]
fn variant(d: RustDriver<'static>) -> RustDriver<'static> {
    let preempts = !d.variant().fills_running_set();
    steps(d, preempts)
}

library_benchmark_group!(
    name = steady_decode_step;
    benchmarks = step, sparse, variant
);

main!(library_benchmark_groups = steady_decode_step);
