//! Wall time of simulating the whole Azure conversation trace (19,366 requests, one hour) with
//! llama-3.1-8b on an H100 (`simulate/azure_conv/<policy>`). Skips, saying so, when the trace
//! is absent. Results are recorded in BENCHMARKS.md.

use augur::core::engine::EngineConfig;
use augur::core::policy::{Policy, PolicyKind};
use augur::cost::CostModel;
use augur::predict::{Predictor, PredictorSpec};
use augur::sim::{SimConfig, simulate};
use augur::trace::{LoadOptions, load};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/traces/azure_llm_2023_conv.csv"
    );
    if !std::path::Path::new(path).exists() {
        eprintln!("skipping simulate benchmarks: {path} is absent");
        return;
    }
    let trace = load(path, &LoadOptions::default()).expect("trace loads");
    let mut g = c.benchmark_group("simulate/azure_conv");
    g.sample_size(10);
    for (name, kind) in [("fcfs", PolicyKind::Fcfs), ("sprpt", PolicyKind::Sprpt)] {
        let mut engine = EngineConfig::new(16, 1, 1);
        engine.policy = Policy::new(kind);
        let cost = CostModel::preset("llama-3.1-8b", "h100-sxm").expect("preset");
        let cfg = SimConfig::new(
            engine,
            cost,
            Predictor::new(PredictorSpec::LogNormal { sigma: 1.0 }, 1),
        );
        g.bench_function(name, |b| b.iter(|| simulate(&trace, &cfg).expect("runs")));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
