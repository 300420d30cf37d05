//! End-to-end runs of the simulator on the real traces in `../shared/traces/`: ignored ("needs
//! ../shared/traces") when the folder is absent, failing when it is absent and
//! `AUGUR_REQUIRE_TRACES=1` (see `build.rs`).

use augur::core::engine::{EngineConfig, PauseMode, PreemptionMode};
use augur::core::policy::{Policy, PolicyKind};
use augur::cost::CostModel;
use augur::predict::{Predictor, PredictorSpec};
use augur::sim::{SimConfig, simulate};
use augur::trace::{LoadOptions, Trace, load};

/// A real trace from `../shared/traces/`. The tests are ignored when the folder is absent (see
/// `build.rs`); run without the file (`AUGUR_REQUIRE_TRACES=1`) they fail with this message.
fn trace(name: &str) -> Trace {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/traces/").to_string() + name;
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is absent: the real-trace tests need ../shared/traces (without the folder they \
         are ignored, unless AUGUR_REQUIRE_TRACES=1)"
    );
    load(&path, &LoadOptions::default()).expect("trace loads")
}

/// Llama-3.1-8B on one H100 (KV capacity from the cost model), vLLM-like limits.
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
#[cfg_attr(
    not(any(augur_traces, augur_require_traces)),
    ignore = "needs ../shared/traces"
)]
fn sprpt_beats_fcfs_on_the_azure_trace_under_load() {
    let mut t = trace("azure_llm_2023_conv.csv");
    // Three times the recorded rate with 64 batch slots: requests queue for a slot, which is
    // where ordering by predicted remaining work pays (mean e2e about 16 s against 30 s).
    t.scale_rate(3.0).unwrap();
    let mut cfg_f = config(PolicyKind::Fcfs, PredictorSpec::Oracle);
    let mut cfg_s = config(PolicyKind::Sprpt, PredictorSpec::Oracle);
    cfg_f.engine.max_running = 64;
    cfg_s.engine.max_running = 64;
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
    let (s_e2e, f_e2e) = (s.summary.mean_e2e_s.unwrap(), f.summary.mean_e2e_s.unwrap());
    assert!(s_e2e < f_e2e, "sprpt {s_e2e} vs fcfs {f_e2e}");
}

#[test]
#[cfg_attr(
    not(any(augur_traces, augur_require_traces)),
    ignore = "needs ../shared/traces"
)]
fn mooncake_prefix_hit_rate_approaches_the_reuse_bound_with_ample_memory() {
    let t = trace("mooncake_fast25_conversation_trace.jsonl");
    let bound = t.prefix_reuse_bound(16);
    let mut cfg = config(PolicyKind::Fcfs, PredictorSpec::Oracle);
    cfg.kv_blocks = Some(4_000_000);
    // 64M tokens of KV: memory never forces a preemption, and cached prefixes live long
    // (the whole trace allocates ~9M blocks, so the oldest cached ones are evicted in LRU order).
    let o = simulate(&t, &cfg).unwrap();
    eprintln!(
        "bound {bound:.4} hit rate {:.4} evictions {} {:?}",
        o.summary.prefix_hit_rate, o.engine_stats.kv.evictions, o.summary
    );
    assert_eq!(o.summary.requests_completed, o.summary.requests_total);
    assert_eq!(
        o.summary.preemptions_recompute + o.summary.preemptions_swap,
        0
    );
    assert!(o.summary.prefix_hit_rate <= bound + 1e-9);
    assert!(
        o.summary.prefix_hit_rate > bound - 0.02,
        "hit rate {} vs bound {bound}",
        o.summary.prefix_hit_rate
    );
}

#[test]
fn every_request_completes_or_is_rejected_with_a_reason() {
    // A synthetic workload with tool calls, some requests too long for the device, memory
    // pressure, and every pause mode.
    let spec = "synthetic:n=400,rate=40,prompt=lognormal:300:1.2,output=lognormal:80:1.0,max_prompt=3000,tools=0.3,tool_duration=exp:0.5,tool_response=32,seed=3";
    let t = load(spec, &LoadOptions::default()).unwrap();
    for pause in [
        PauseMode::Preserve,
        PauseMode::Discard,
        PauseMode::Swap,
        PauseMode::Auto,
    ] {
        let mut cfg = config(PolicyKind::Sprpt, PredictorSpec::LogNormal { sigma: 1.0 });
        cfg.kv_blocks = Some(160); // 2,560 tokens: long prompts can never fit
        cfg.engine.host_blocks = 64;
        cfg.engine.pause = pause;
        let o = simulate(&t, &cfg).unwrap();
        let s = &o.summary;
        assert!(s.requests_rejected > 0, "some prompts exceed the device");
        assert_eq!(
            s.requests_completed + s.requests_rejected,
            s.requests_total,
            "{pause:?}: {s:?}"
        );
        for r in &o.records {
            assert!(r.finish_s.is_some() != r.rejected.is_some(), "{r:?}");
            if let Some(reason) = &r.rejected {
                assert!(reason.contains("KV blocks"), "{reason}");
            }
        }
        let st = o.engine_stats;
        let pauses = st.pauses_preserved + st.pauses_discarded + st.pauses_swapped;
        assert!(pauses > 0, "{pause:?}");
        match pause {
            PauseMode::Preserve => assert_eq!(pauses, st.pauses_preserved),
            PauseMode::Discard => assert_eq!(pauses, st.pauses_discarded),
            _ => {}
        }
    }
}

#[test]
fn simulation_is_deterministic() {
    let t = augur::trace::default_workload();
    let mut t = t;
    t.truncate(500);
    let cfg = config(
        PolicyKind::Trail { cutoff: 0.8 },
        PredictorSpec::LogNormal { sigma: 0.8 },
    );
    let a = simulate(&t, &cfg).unwrap();
    let b = simulate(&t, &cfg).unwrap();
    assert_eq!(a.iterations, b.iterations);
    for (x, y) in a.records.iter().zip(&b.records) {
        assert_eq!(
            (x.first_token_s, x.finish_s, x.preemptions),
            (y.first_token_s, y.finish_s, y.preemptions)
        );
    }
}

/// Issue 9, item 3: a long run reports its progress (the CLI draws it as a bar on a terminal):
/// the simulator's counter ends at the number of requests, mg1's at the measured jobs.
#[test]
fn progress_counters_reach_the_end_of_the_run() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let t = load("synthetic:n=300,rate=50,seed=2", &LoadOptions::default()).unwrap();
    let mut cfg = config(PolicyKind::Fcfs, PredictorSpec::Oracle);
    cfg.kv_blocks = Some(4096);
    let done = Arc::new(AtomicU64::new(0));
    cfg.progress = Some(Arc::clone(&done));
    let out = simulate(&t, &cfg).unwrap();
    assert_eq!(out.summary.requests_completed, 300);
    assert_eq!(done.load(Ordering::Relaxed), 300);

    let mut m = augur::mg1::Mg1Config::new(
        "fcfs".parse().unwrap(),
        0.5,
        augur::mg1::ServiceDist::Exponential,
        augur::mg1::PredictionModel::Perfect,
    );
    m.jobs = 200_000;
    m.warmup_jobs = 1_000;
    let jobs = AtomicU64::new(0);
    augur::mg1::sim::report_with_progress(&m, Some(&jobs)).unwrap();
    assert_eq!(jobs.load(Ordering::Relaxed), 199_000);
}
