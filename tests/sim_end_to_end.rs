//! End-to-end runs of the simulator on the real traces in `../shared/traces/` (skipped, with a
//! printed reason, when the files are absent).

use augur::core::engine::{EngineConfig, PreemptionMode};
use augur::core::policy::{Policy, PolicyKind};
use augur::cost::CostModel;
use augur::predict::{Predictor, PredictorSpec};
use augur::sim::{SimConfig, simulate};
use augur::trace::{LoadOptions, Trace, load};

fn trace(name: &str) -> Option<Trace> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/traces/").to_string() + name;
    if !std::path::Path::new(&path).exists() {
        eprintln!("skipping: {path} is absent");
        return None;
    }
    Some(load(&path, &LoadOptions::default()).expect("trace loads"))
}

fn config(kind: PolicyKind, predictor: PredictorSpec) -> SimConfig {
    let mut e = EngineConfig::new(16, 1, 1);
    e.policy = Policy::new(kind);
    e.max_running = 256;
    e.token_budget = 8192;
    e.prefill_chunk = 2048;
    e.preemption = PreemptionMode::Auto;
    let cost = CostModel::preset("llama-3.1-8b", "h100-sxm").unwrap();
    SimConfig::new(e, cost, Predictor::new(predictor, 7))
}

#[test]
fn sprpt_beats_fcfs_on_the_azure_trace_under_load() {
    let Some(mut t) = trace("azure_llm_2023_conv.csv") else {
        return;
    };
    t.scale_rate(4.0).unwrap();
    let mut cfg_f = config(PolicyKind::Fcfs, PredictorSpec::Oracle);
    let mut cfg_s = config(PolicyKind::Sprpt, PredictorSpec::Oracle);
    // A smaller KV pool puts the run under memory pressure as well as load.
    cfg_f.kv_blocks = Some(4096);
    cfg_s.kv_blocks = Some(4096);
    let f = simulate(&t, &cfg_f).unwrap();
    let s = simulate(&t, &cfg_s).unwrap();
    eprintln!("fcfs:  {:?}", f.summary);
    eprintln!("sprpt: {:?}", s.summary);
    for o in [&f, &s] {
        assert_eq!(
            o.summary.requests_completed + o.summary.requests_rejected,
            o.summary.requests_total
        );
    }
    assert!(
        s.summary.mean_e2e_s < f.summary.mean_e2e_s,
        "sprpt {} vs fcfs {}",
        s.summary.mean_e2e_s,
        f.summary.mean_e2e_s
    );
}
