//! Steady-state cost of one engine step (`schedule` + `complete`), per running request.
//!
//! Run with `cargo bench --bench step -- --warm-up-time 1 --measurement-time 3`.
//!
//! Each benchmark `step/<policy>/running=<R>/waiting=<W>` runs the steady-state decode workload
//! of `common/steady_decode.rs` (shared with the C ABI benchmark `ffi/benches/ffi_step.rs`) with
//! R running and W waiting requests, reporting one result per entry (`Engine::complete`);
//! `.../sparse` reports only the finishing entries (`Engine::complete_except`).
//!
//! The state (W = 10^6 waiting requests takes a few hundred MB, checked against
//! `EngineConfig::layout().bytes()`) is built once per benchmark, outside the measured loop,
//! and run to steady state first. Throughput is R elements, so criterion reports time per
//! running request.

// Each bench that includes the workload uses a part of it.
#[allow(dead_code)]
#[path = "common/steady_decode.rs"]
mod steady_decode;

use augur::core::policy::PolicyKind;
use augur::storage::EngineBuffers;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use steady_decode::{RustDriver, config};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("step");
    for (name, kind) in [("sprpt", PolicyKind::Sprpt), ("fcfs", PolicyKind::Fcfs)] {
        for running in [256u32, 1024] {
            // W = 10^6 only with keyed results: the waiting queue's size is what it varies.
            for (waiting, sparse) in [(10_000u32, false), (10_000, true), (1_000_000, false)] {
                let cfg = config(kind, running, waiting);
                let bytes = cfg.layout().expect("valid").bytes();
                assert!(bytes < 2 << 30, "storage of {bytes} bytes");
                let mut buf = EngineBuffers::new(&cfg).expect("valid");
                let mut load = RustDriver::new(buf.engine(cfg).expect("engine"), running);
                if sparse {
                    load = load.sparse_results();
                }
                load.warm_up(running, waiting);
                g.throughput(Throughput::Elements(running as u64));
                let form = if sparse { "/sparse" } else { "" };
                g.bench_function(
                    format!("{name}/running={running}/waiting={waiting}{form}"),
                    |b| b.iter(|| load.step()),
                );
                let s = load.engine.stats();
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
