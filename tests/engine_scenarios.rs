//! Scenario tests of the scheduling engine with exact expected plans: small, hand-checked
//! traces of decisions for every policy and mechanism (as embassy tests its run queue).

mod engine_support;

use augur::core::engine::{
    AddError, AdmissionMode, CompleteError, EngineConfig, EntryKind::*, PauseMode, PauseRequest,
    PreemptionCause::*, PreemptionKind::*, PreemptionMode, RequestDesc, RequestError, RequestState,
    ResultErrorKind, ScheduleError, StepResult,
};
use augur::core::kv::Tier;
use augur::core::policy::{MlfqParams, Policy, PolicyKind, TimeCosts};
use augur::core::time::Instant;
use augur::storage::EngineBuffers;
use engine_support::{Driver, req};

fn config(kind: PolicyKind) -> EngineConfig {
    let mut c = EngineConfig::new(4, 64, 32);
    c.policy = Policy::new(kind);
    c.max_running = 8;
    c.token_budget = 64;
    c.prefill_chunk = 64;
    c.watermark = 0.0;
    c.preemption = PreemptionMode::Recompute;
    c
}

#[test]
fn fcfs_chunked_prefill_runs_decodes_first_and_respects_limits() {
    let mut cfg = config(PolicyKind::Fcfs);
    cfg.max_running = 2;
    cfg.token_budget = 8;
    cfg.prefill_chunk = 4;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    d.add(&mut e, RequestDesc::new(1, 6), 3);
    d.add(&mut e, RequestDesc::new(2, 3), 2);
    d.add(&mut e, RequestDesc::new(3, 5), 1);
    let s = d.step(&mut e);
    assert_eq!(s.entries, vec![(1, Prefill, 4), (2, Prefill, 3)]);
    let s = d.step(&mut e);
    assert_eq!(s.entries, vec![(1, Prefill, 2), (2, Decode, 1)]);
    assert_eq!(s.finished, vec![2]);
    let s = d.step(&mut e);
    assert_eq!(s.entries, vec![(1, Decode, 1), (3, Prefill, 4)]);
    let s = d.step(&mut e);
    assert_eq!(s.entries, vec![(1, Decode, 1), (3, Prefill, 1)]);
    assert_eq!(s.finished, vec![1, 3]);
    assert_eq!(e.live_requests(), 0);
    assert_eq!(e.stats().finished, 3);
}

#[test]
fn sprpt_preempts_a_long_request_for_a_short_one_when_the_batch_is_full() {
    for margin in [0.0, 200.0] {
        let mut cfg = config(PolicyKind::Sprpt);
        cfg.max_running = 1;
        cfg.priority_margin = margin;
        let mut buf = EngineBuffers::new(&cfg).unwrap();
        let mut e = buf.engine(cfg).unwrap();
        let mut d = Driver::new(cfg);
        d.add(&mut e, req(1, 8, 100.0), 100);
        assert_eq!(d.step(&mut e).entries, vec![(1, Prefill, 8)]);
        assert_eq!(d.step(&mut e).entries, vec![(1, Decode, 1)]);
        d.add(&mut e, req(2, 4, 5.0), 5);
        let s = d.step(&mut e);
        if margin == 0.0 {
            // Only the batch is full, memory is not short: the KV stays where it is.
            assert_eq!(s.preempted, vec![(1, Keep, Rank)]);
            assert_eq!(s.entries, vec![(2, Prefill, 4)]);
            for _ in 0..4 {
                assert_eq!(d.step(&mut e).entries, vec![(2, Decode, 1)]);
            }
            // The long request comes back where it stopped: nothing is recomputed.
            let s = d.step(&mut e);
            assert_eq!(s.entries, vec![(1, Decode, 1)]);
            let st = e.stats();
            assert_eq!(
                (
                    st.recomputed_tokens,
                    st.preemptions_for_rank,
                    st.preemptions_keep
                ),
                (0, 1, 1)
            );
        } else {
            assert!(s.preempted.is_empty(), "gap 95 is within the margin");
            assert_eq!(s.entries, vec![(1, Decode, 1)]);
        }
        d.drain(&mut e, 500);
    }
}

#[test]
fn rank_preemption_for_memory_never_discards_work_unless_allowed() {
    for (may_recompute, mode, host) in [
        (false, PreemptionMode::Recompute, 0),
        (true, PreemptionMode::Recompute, 0),
        (false, PreemptionMode::Auto, 8),
    ] {
        let mut cfg = config(PolicyKind::Sprpt);
        cfg.device_blocks = 4;
        cfg.host_blocks = host;
        cfg.preemption = mode;
        cfg.rank_preemption_may_recompute = may_recompute;
        let mut buf = EngineBuffers::new(&cfg).unwrap();
        let mut e = buf.engine(cfg).unwrap();
        let mut d = Driver::new(cfg);
        d.add(&mut e, req(1, 12, 100.0), 100);
        d.step(&mut e); // 12 prompt tokens: 3 blocks
        d.step(&mut e); // 13 computed: 4 blocks, the device is full
        d.add(&mut e, req(2, 4, 5.0), 5);
        let s = d.step(&mut e);
        match (may_recompute, host) {
            (false, 0) => {
                assert!(
                    s.preempted.is_empty(),
                    "no way to preempt without losing work"
                );
                assert_eq!(s.entries, vec![(1, Decode, 1)]);
            }
            (true, _) => {
                assert_eq!(s.preempted, vec![(1, Recompute, Rank)]);
                assert_eq!(s.entries, vec![(2, Prefill, 4)]);
            }
            _ => {
                assert_eq!(s.preempted, vec![(1, Swap, Rank)]);
                assert_eq!((s.swap_out, s.entries.clone()), (4, vec![(2, Prefill, 4)]));
            }
        }
        d.drain(&mut e, 300);
        assert_eq!(
            e.stats().recomputed_tokens,
            if may_recompute { 13 } else { 0 }
        );
    }
}

#[test]
fn priority_preempts_when_max_running_is_the_limit_and_fcfs_never_does() {
    for kind in [PolicyKind::Priority, PolicyKind::Fcfs] {
        let mut cfg = config(kind);
        cfg.max_running = 1;
        let mut buf = EngineBuffers::new(&cfg).unwrap();
        let mut e = buf.engine(cfg).unwrap();
        let mut d = Driver::new(cfg);
        d.add(
            &mut e,
            RequestDesc {
                priority: 5,
                ..RequestDesc::new(1, 4)
            },
            10,
        );
        d.step(&mut e);
        d.add(
            &mut e,
            RequestDesc {
                priority: 0,
                ..RequestDesc::new(2, 4)
            },
            3,
        );
        let s = d.step(&mut e);
        if kind == PolicyKind::Priority {
            assert_eq!(s.preempted, vec![(1, Keep, Rank)]);
            assert_eq!(s.entries, vec![(2, Prefill, 4)]);
        } else {
            assert!(s.preempted.is_empty());
            assert_eq!(s.entries, vec![(1, Decode, 1)]);
        }
        d.drain(&mut e, 100);
    }
}

fn memory_pressure(
    mode: PreemptionMode,
    host_blocks: u32,
    swap_us: f64,
) -> (Vec<engine_support::Step>, augur::core::engine::EngineStats) {
    let mut cfg = config(PolicyKind::Fcfs);
    cfg.device_blocks = 4;
    cfg.host_blocks = host_blocks;
    cfg.preemption = mode;
    cfg.costs.swap_us_per_block = swap_us;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    d.add(&mut e, RequestDesc::new(1, 7), 10);
    d.add(&mut e, RequestDesc::new(2, 7), 10);
    let mut steps = vec![];
    for _ in 0..4 {
        steps.push(d.step(&mut e));
    }
    d.drain(&mut e, 200);
    (steps, e.stats())
}

#[test]
fn memory_preemption_by_recompute_takes_the_latest_arrival_and_admits_nothing() {
    let (s, stats) = memory_pressure(PreemptionMode::Recompute, 0, 40.0);
    assert_eq!(s[0].entries, vec![(1, Prefill, 7), (2, Prefill, 7)]);
    assert_eq!(s[1].entries, vec![(1, Decode, 1), (2, Decode, 1)]);
    assert_eq!(s[2].preempted, vec![(2, Recompute, Memory)]);
    assert_eq!(s[2].entries, vec![(1, Decode, 1)]);
    assert_eq!(
        s[3].entries,
        vec![(1, Decode, 1)],
        "request 2 (9 tokens, 3 blocks) does not fit in 1 free block"
    );
    assert_eq!(stats.preemptions_recompute, 1);
    assert_eq!(stats.recomputed_tokens, 8);
    assert_eq!(stats.finished, 2);
}

#[test]
fn memory_preemption_by_swap_reports_block_pairs_both_ways() {
    let (s, stats) = memory_pressure(PreemptionMode::Swap, 8, 40.0);
    assert_eq!(s[2].preempted, vec![(2, Swap, Memory)]);
    assert_eq!(s[2].swap_out, 2);
    assert_eq!(stats.preemptions_swap, 1);
    assert_eq!(stats.kv.swapped_out_blocks, 2);
    assert_eq!(
        stats.kv.swapped_in_blocks, 2,
        "swapped back in when request 1 finished"
    );
    assert_eq!(stats.recomputed_tokens, 0);
    // Swap with no host space falls back to recompute.
    let (s, _) = memory_pressure(PreemptionMode::Swap, 1, 40.0);
    assert_eq!(s[2].preempted, vec![(2, Recompute, Memory)]);
}

#[test]
fn auto_preemption_follows_the_cost_model() {
    // 8 computed tokens × 25 µs = 200 µs to recompute; 2 blocks × 2 × 40 µs = 160 µs to swap.
    let (s, _) = memory_pressure(PreemptionMode::Auto, 8, 40.0);
    assert_eq!(s[2].preempted, vec![(2, Swap, Memory)]);
    // 2 × 2 × 60 µs = 240 µs: recompute is cheaper.
    let (s, _) = memory_pressure(PreemptionMode::Auto, 8, 60.0);
    assert_eq!(s[2].preempted, vec![(2, Recompute, Memory)]);
}

#[test]
fn trail_protects_requests_past_the_cutoff() {
    for (kind, expect_preempt) in [
        (PolicyKind::Trail { cutoff: 0.5 }, false),
        (PolicyKind::Sprpt, true),
    ] {
        let mut cfg = config(kind);
        cfg.max_running = 1;
        let mut buf = EngineBuffers::new(&cfg).unwrap();
        let mut e = buf.engine(cfg).unwrap();
        let mut d = Driver::new(cfg);
        d.add(&mut e, req(1, 4, 10.0), 10);
        for _ in 0..6 {
            d.step(&mut e); // prefill + 5 decodes: 6 generated ≥ 0.5 × 10
        }
        d.add(&mut e, req(2, 4, 1.0), 1);
        let s = d.step(&mut e);
        assert_eq!(!s.preempted.is_empty(), expect_preempt, "{kind:?}");
        d.drain(&mut e, 100);
    }
}

#[test]
fn prefix_cache_hits_share_blocks_and_are_counted() {
    let cfg = config(PolicyKind::Fcfs);
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    let hashes = [11u64, 12, 13];
    d.add(
        &mut e,
        RequestDesc {
            prompt_block_hashes: &hashes,
            ..RequestDesc::new(1, 12)
        },
        5,
    );
    assert_eq!(d.step(&mut e).entries, vec![(1, Prefill, 12)]);
    d.add(
        &mut e,
        RequestDesc {
            prompt_block_hashes: &hashes,
            ..RequestDesc::new(2, 12)
        },
        5,
    );
    let s = d.step(&mut e);
    // Two cached blocks (8 tokens) are reused; the third is not, since the prompt's last
    // token must be computed to sample from.
    assert_eq!(s.entries, vec![(1, Decode, 1), (2, Prefill, 4)]);
    assert_eq!(d.tables[&2][..2], d.tables[&1][..2]);
    assert_ne!(d.tables[&2][2], d.tables[&1][2]);
    let st = e.stats();
    assert_eq!((st.prefix_hit_tokens, st.prompt_tokens_admitted), (8, 24));
    d.drain(&mut e, 100);
}

fn admitted_in_first_step(
    mode: AdmissionMode,
    prompt: u32,
    max_output: Option<u32>,
    predicted: f64,
) -> usize {
    let mut cfg = config(PolicyKind::Fcfs);
    cfg.device_blocks = 8;
    cfg.admission = mode;
    cfg.prefill_chunk = 4;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    for id in 0..5 {
        let desc = RequestDesc {
            max_output_tokens: max_output,
            predicted_output_tokens: Some(predicted),
            ..RequestDesc::new(id, prompt)
        };
        e.add_request(&desc, Instant(0)).unwrap();
    }
    e.schedule(Instant(1)).unwrap().entries.len()
}

#[test]
fn admission_modes_reserve_what_they_promise() {
    // 8 device blocks of 4 tokens. Prompt 4, output cap 12: worst case 4 blocks each.
    assert_eq!(
        admitted_in_first_step(AdmissionMode::Eager, 4, Some(12), 4.0),
        5
    );
    assert_eq!(
        admitted_in_first_step(AdmissionMode::WorstCase, 4, Some(12), 4.0),
        2
    );
    assert_eq!(
        admitted_in_first_step(AdmissionMode::Predicted { headroom: 1.0 }, 4, Some(12), 4.0),
        4
    );
    // Prompt 12 in chunks of 4: full-prompt admission reserves 3 blocks each.
    assert_eq!(
        admitted_in_first_step(AdmissionMode::Eager, 12, None, 4.0),
        5
    );
    assert_eq!(
        admitted_in_first_step(AdmissionMode::FullPrompt, 12, None, 4.0),
        2
    );
}

#[test]
fn requests_that_can_never_fit_are_rejected_or_dropped() {
    let mut cfg = config(PolicyKind::Fcfs);
    cfg.device_blocks = 4;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    assert_eq!(
        e.add_request(&RequestDesc::new(1, 16), Instant(0)),
        Err(AddError::CannotFit {
            need_blocks: 5,
            device_blocks: 4
        })
    );
    let mut d = Driver::new(cfg);
    d.add(&mut e, RequestDesc::new(2, 8), 100);
    let mut dropped = vec![];
    for _ in 0..20 {
        dropped.extend(d.step(&mut e).dropped);
    }
    assert_eq!(
        dropped,
        vec![2],
        "a request outgrowing the device is dropped, not retried"
    );
    assert_eq!(e.live_requests(), 0);
    assert_eq!(e.stats().dropped, 1);
    // Worst-case admission rejects up front what could never finish.
    let mut cfg2 = cfg;
    cfg2.admission = AdmissionMode::WorstCase;
    let mut buf2 = EngineBuffers::new(&cfg2).unwrap();
    let mut e2 = buf2.engine(cfg2).unwrap();
    let desc = RequestDesc {
        max_output_tokens: Some(20),
        ..RequestDesc::new(3, 4)
    };
    assert_eq!(
        e2.add_request(&desc, Instant(0)),
        Err(AddError::CannotFit {
            need_blocks: 6,
            device_blocks: 4
        })
    );
}

/// (state right after the pause, its KV tier, swap-out pairs in the next plan, the entries
/// of the step after resuming)
type PauseOutcome = (RequestState, Option<Tier>, usize, Vec<engine_support::Line>);

fn pause_run(mode: PauseMode, duration_us: u64) -> PauseOutcome {
    let mut cfg = config(PolicyKind::Fcfs);
    cfg.pause = mode;
    cfg.host_blocks = 16;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    let h = d.add(&mut e, RequestDesc::new(1, 10), 6);
    d.step_with(&mut e, |_, g| (g == 1).then_some(duration_us));
    let v = e.request(h).unwrap();
    // A swap-out for the pause shows up in the next plan.
    let s = d.step(&mut e);
    assert!(s.entries.is_empty());
    e.resume_with_tokens(h, 3, Instant(d.now + 1)).unwrap();
    let after = d.step(&mut e);
    d.drain(&mut e, 50);
    (v.state, v.kv_tier, s.swap_out, after.entries)
}

#[test]
fn pauses_preserve_discard_or_swap_the_kv() {
    // After the prefill of 10 tokens, the first token asks for a tool call.
    let (state, tier, swaps, resumed) = pause_run(PauseMode::Preserve, 1_000);
    assert_eq!(
        (state, tier, swaps),
        (RequestState::Paused, Some(Tier::Device), 0)
    );
    assert_eq!(
        resumed,
        vec![(1, Prefill, 4)],
        "the sampled token plus 3 response tokens"
    );
    let (_, tier, _, resumed) = pause_run(PauseMode::Discard, 1_000);
    assert_eq!(tier, None);
    assert_eq!(resumed, vec![(1, Prefill, 14)], "recompute 10 + 1 + 3");
    let (_, tier, swaps, resumed) = pause_run(PauseMode::Swap, 1_000);
    assert_eq!((tier, swaps), (Some(Tier::Host), 3));
    assert_eq!(resumed, vec![(1, Prefill, 4)]);
    // Auto: a short pause keeps the KV; a long one gives it up.
    assert_eq!(pause_run(PauseMode::Auto, 10).1, Some(Tier::Device));
    assert_ne!(
        pause_run(PauseMode::Auto, 100_000_000).1,
        Some(Tier::Device)
    );
}

#[test]
fn aging_prevents_starvation_under_sjf() {
    for aging in [0.0, 50.0] {
        let mut cfg = config(PolicyKind::Sjf);
        cfg.policy.aging_per_s = aging;
        cfg.max_running = 1;
        cfg.max_requests = 512;
        let mut buf = EngineBuffers::new(&cfg).unwrap();
        let mut e = buf.engine(cfg).unwrap();
        let mut d = Driver::new(cfg);
        d.tick = 10_000; // 10 ms per step
        d.add(&mut e, req(0, 4, 1.0), 1);
        d.add(&mut e, req(1, 4, 100.0), 100);
        let mut long_started = None;
        for k in 0..400u64 {
            d.add(&mut e, req(1000 + k, 4, 1.0), 1); // a stream of short jobs, one per step
            let s = d.step(&mut e);
            if long_started.is_none() && s.entries.iter().any(|x| x.0 == 1) {
                long_started = Some(k);
            }
        }
        if aging == 0.0 {
            assert_eq!(long_started, None, "without aging the long job starves");
        } else {
            // 99 rank units at 50/s: within ~2 s (200 steps).
            assert!(long_started.is_some_and(|k| k < 250), "{long_started:?}");
        }
    }
}

#[test]
fn fair_share_serves_the_lighter_tenant_first() {
    let mut cfg = config(PolicyKind::Fcfs);
    cfg.policy.fair_share = true;
    cfg.max_tenants = 2;
    cfg.max_running = 1;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    for id in 0..6 {
        d.add(
            &mut e,
            RequestDesc {
                tenant: 0,
                ..RequestDesc::new(id, 8)
            },
            2,
        );
    }
    d.step(&mut e); // tenant 0's first request prefills 8 tokens
    d.add(
        &mut e,
        RequestDesc {
            tenant: 1,
            ..RequestDesc::new(100, 8)
        },
        2,
    );
    d.add(
        &mut e,
        RequestDesc {
            tenant: 1,
            ..RequestDesc::new(101, 8)
        },
        2,
    );
    let mut order = vec![];
    for _ in 0..40 {
        for x in d.step(&mut e).entries {
            if !order.contains(&x.0) {
                order.push(x.0);
            }
        }
    }
    // Tenant 1 (served nothing yet) goes before tenant 0's backlog, and both get turns.
    assert_eq!(&order[..3], &[0, 100, 1], "{order:?}");
    assert!(
        order.iter().position(|&x| x == 101).unwrap() < order.iter().position(|&x| x == 5).unwrap()
    );
    assert_eq!(e.live_requests(), 0);
}

/// The order in which requests first run with one slot, for requests that all arrive before
/// the first step.
fn first_run_order(policy: Policy) -> Vec<u64> {
    let mut cfg = config(policy.kind);
    cfg.policy = policy;
    cfg.max_running = 1;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    // (id, prompt, predicted output, priority, deadline s)
    let reqs = [
        (1u64, 40u32, 50.0, 2, 10.0),
        (2, 4, 200.0, 1, 5.0),
        (3, 20, 5.0, 3, 20.0),
        (4, 8, 20.0, 0, 2.0),
    ];
    for (id, prompt, pred, prio, deadline) in reqs {
        let desc = RequestDesc {
            predicted_output_tokens: Some(pred),
            priority: prio,
            deadline: Some(Instant((deadline * 1e6) as u64)),
            ..RequestDesc::new(id, prompt)
        };
        d.add(&mut e, desc, pred as u32);
        d.now += 1;
    }
    let mut order = vec![];
    for _ in 0..2000 {
        if e.live_requests() == 0 {
            break;
        }
        for x in d.step(&mut e).entries {
            if !order.contains(&x.0) {
                order.push(x.0);
            }
        }
    }
    assert_eq!(e.live_requests(), 0);
    order
}

#[test]
fn every_policy_orders_requests_by_its_rank() {
    let p = Policy::new;
    assert_eq!(first_run_order(p(PolicyKind::Fcfs)), vec![1, 2, 3, 4]);
    assert_eq!(first_run_order(p(PolicyKind::Priority)), vec![4, 2, 1, 3]);
    assert_eq!(first_run_order(p(PolicyKind::Sjf)), vec![3, 4, 1, 2]);
    assert_eq!(first_run_order(p(PolicyKind::Pspjf)), vec![3, 4, 1, 2]);
    assert_eq!(first_run_order(p(PolicyKind::Sprpt)), vec![3, 4, 1, 2]);
    assert_eq!(
        first_run_order(p(PolicyKind::Trail { cutoff: 0.8 })),
        vec![3, 4, 1, 2]
    );
    assert_eq!(first_run_order(p(PolicyKind::Edf)), vec![4, 2, 1, 3]);
    // r × (context + r/2): 3 → 112.5, 4 → 360, 1 → 3250, 2 → 20800.
    assert_eq!(first_run_order(p(PolicyKind::MemoryTime)), vec![3, 4, 1, 2]);
    // Slack at 10 ms per token: 4 → 1.8 s, 2 → 3 s, 1 → 9.5 s, 3 → 19.95 s.
    let slack = PolicyKind::Slack {
        decode_us_per_token: 10_000.0,
        prefill_us_per_token: 0.0,
    };
    assert_eq!(first_run_order(p(slack)), vec![4, 2, 1, 3]);
    // sprpt-time at 100 µs per prompt token still to prefill (all but the last prompt token,
    // which the first decode step computes) and 1 µs per decode step: 1 → 39·100 + 50 = 3950,
    // 2 → 3·100 + 200 = 500, 3 → 19·100 + 5 = 1905, 4 → 7·100 + 20 = 720. The long prompts
    // go behind the long outputs, unlike sprpt's order.
    let time = |p: f64, c: f64| TimeCosts {
        prefill_us_per_token: p,
        decode_us_per_token: 1.0,
        context_us_per_token: c,
    };
    assert_eq!(
        first_run_order(p(PolicyKind::SprptTime(time(100.0, 0.0)))),
        vec![2, 4, 3, 1]
    );
    assert_eq!(
        first_run_order(p(PolicyKind::TrailTime {
            cutoff: 0.8,
            costs: time(100.0, 0.0)
        })),
        vec![2, 4, 3, 1]
    );
    // No prefill cost: remaining decode time orders as sprpt does.
    assert_eq!(
        first_run_order(p(PolicyKind::SprptTime(time(0.0, 0.0)))),
        vec![3, 4, 1, 2]
    );
    // Short (≤ 30) first, then by arrival.
    assert_eq!(
        first_run_order(p(PolicyKind::OneBit {
            threshold: 30.0,
            preemptive: true
        })),
        vec![3, 4, 1, 2]
    );
    // LAS: everyone at 0 attained goes before the runner, which yields after one token.
    assert_eq!(first_run_order(p(PolicyKind::Las)), vec![1, 2, 3, 4]);
    // MLFQ skip-join: request 1's prompt (40 × 0.5 = 20 > 16) puts it one level down.
    let mlfq = PolicyKind::Mlfq(MlfqParams {
        base_quantum: 16.0,
        growth: 2.0,
        levels: 4,
        prefill_weight: 0.5,
    });
    assert_eq!(first_run_order(p(mlfq)), vec![2, 3, 4, 1]);
}

#[test]
fn bad_input_is_rejected_with_a_specific_error_and_changes_nothing() {
    let cfg = config(PolicyKind::Sprpt);
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut scratch = vec![0u32; 64];
    assert_eq!(
        e.add_request(&RequestDesc::new(1, 0), Instant(0)),
        Err(AddError::InvalidField("prompt_tokens"))
    );
    let nan = RequestDesc {
        predicted_output_tokens: Some(f64::NAN),
        ..RequestDesc::new(1, 4)
    };
    assert_eq!(
        e.add_request(&nan, Instant(0)),
        Err(AddError::InvalidField("predicted_output_tokens"))
    );
    let neg = RequestDesc {
        predicted_output_tokens: Some(-1.0),
        ..RequestDesc::new(1, 4)
    };
    assert_eq!(
        e.add_request(&neg, Instant(0)),
        Err(AddError::InvalidField("predicted_output_tokens"))
    );
    let bad_tenant = RequestDesc {
        tenant: 5,
        ..RequestDesc::new(1, 4)
    };
    assert_eq!(
        e.add_request(&bad_tenant, Instant(0)),
        Err(AddError::InvalidField("tenant"))
    );
    let too_many_hashes = RequestDesc {
        prompt_block_hashes: &[1, 2],
        ..RequestDesc::new(1, 4)
    };
    assert_eq!(
        e.add_request(&too_many_hashes, Instant(0)),
        Err(AddError::InvalidField("prompt_block_hashes"))
    );
    // Prompts of 3 tokens: the first step fills no 4-token block.
    let a = e.add_request(&req(1, 3, 10.0), Instant(10)).unwrap();
    let b = e.add_request(&req(2, 3, 10.0), Instant(10)).unwrap();
    assert_eq!(
        e.add_request(&req(1, 4, 10.0), Instant(10)),
        Err(AddError::DuplicateExternalId)
    );
    assert_eq!(
        e.add_request(&req(3, 4, 10.0), Instant(5)),
        Err(AddError::TimeWentBackwards)
    );
    assert_eq!(
        e.update_prediction(a, f64::NAN, Instant(10)),
        Err(RequestError::InvalidPrediction)
    );
    assert_eq!(
        e.update_prediction(a, -3.0, Instant(10)),
        Err(RequestError::InvalidPrediction)
    );
    assert_eq!(e.resume(a, Instant(10)), Err(RequestError::WrongState));
    let before = (e.stats(), e.live_requests());
    e.audit(&mut scratch).unwrap();

    let plan = e.schedule(Instant(20)).unwrap();
    assert_eq!(plan.entries.len(), 2);
    let forged = augur::core::engine::RequestHandle::from_raw(a.to_raw() + (1 << 32));
    let stats_before = e.stats();
    let bad: [(StepResult, ResultErrorKind); 5] = [
        (StepResult::new(forged, 1), ResultErrorKind::StaleHandle),
        (
            StepResult::new(a, 2),
            ResultErrorKind::TooManyTokens { max: 1, got: 2 },
        ),
        (
            StepResult::new(a, 0),
            ResultErrorKind::WrongTokenCount {
                expected: 1,
                got: 0,
            },
        ),
        (
            StepResult {
                predicted_remaining: Some(f64::INFINITY),
                ..StepResult::new(a, 1)
            },
            ResultErrorKind::InvalidPrediction,
        ),
        (
            StepResult {
                pause: Some(PauseRequest {
                    predicted_duration_us: 1,
                }),
                finished: true,
                ..StepResult::new(a, 1)
            },
            ResultErrorKind::PauseWhenFinished,
        ),
    ];
    for (r, kind) in bad {
        assert_eq!(
            e.complete(&[StepResult::new(b, 1), r], Instant(30)),
            Err(CompleteError::Result { index: 1, kind })
        );
    }
    assert_eq!(
        e.complete(&[StepResult::new(a, 1), StepResult::new(a, 1)], Instant(30)),
        Err(CompleteError::Result {
            index: 1,
            kind: ResultErrorKind::Duplicate
        })
    );
    assert_eq!(
        e.complete(
            &[StepResult {
                filled_block_hash: Some(9),
                ..StepResult::new(a, 1)
            }],
            Instant(30)
        ),
        Err(CompleteError::Result {
            index: 0,
            kind: ResultErrorKind::NoBlockFilled
        })
    );
    assert_eq!(
        e.complete(&[StepResult::new(a, 1)], Instant(15)),
        Err(CompleteError::TimeWentBackwards)
    );
    assert_eq!(e.stats(), stats_before, "rejected results changed nothing");
    assert_eq!(
        e.schedule(Instant(40)).unwrap_err(),
        ScheduleError::ResultsPending { missing: 2 }
    );
    e.complete(&[StepResult::new(a, 1)], Instant(30)).unwrap();
    assert_eq!(
        e.complete(&[StepResult::new(a, 1)], Instant(30)),
        Err(CompleteError::Result {
            index: 0,
            kind: ResultErrorKind::Duplicate
        }),
        "already reported in an earlier call"
    );
    e.complete(&[StepResult::new(b, 1)], Instant(30)).unwrap();
    // A request that was not scheduled in this plan.
    e.abort(b, Instant(31)).unwrap();
    assert_eq!(e.abort(b, Instant(31)), Err(RequestError::StaleHandle));
    let c = e.add_request(&req(3, 4, 1.0), Instant(31)).unwrap();
    assert_eq!(
        e.complete(&[StepResult::new(c, 1)], Instant(32)),
        Err(CompleteError::Result {
            index: 0,
            kind: ResultErrorKind::NotScheduled
        })
    );
    e.audit(&mut scratch).unwrap();
    let _ = before;
}

#[test]
fn absurd_predictions_are_accepted_without_overflow() {
    for admission in [
        AdmissionMode::Eager,
        AdmissionMode::Predicted { headroom: 2.0 },
    ] {
        let mut cfg = config(PolicyKind::MemoryTime);
        cfg.admission = admission;
        let mut buf = EngineBuffers::new(&cfg).unwrap();
        let mut e = buf.engine(cfg).unwrap();
        let mut d = Driver::new(cfg);
        let h = d.add(&mut e, req(1, 4, 1e300), 3);
        d.add(&mut e, req(2, 4, f64::MAX), 3);
        e.update_prediction(h, 1e308, Instant(d.now)).unwrap();
        assert_eq!(e.stats().predicted_backlog_tokens, 2 * u32::MAX as u64);
        d.drain(&mut e, 50);
        assert_eq!(e.stats().predicted_backlog_tokens, 0);
    }
}

#[test]
fn ranks_that_worsen_while_prefilling_do_not_livelock() {
    // Fair share charging prompt tokens: each prefill chunk raises the running tenant's counter
    // past the waiting tenant's, so the two requests' ranks flip while they prefill. With
    // preemption by recompute this once let them preempt each other forever without either
    // producing a token (found by the property tests); now a request is not a victim until it
    // has sampled since its admission, and both must finish promptly.
    let mut cfg = config(PolicyKind::Pspjf);
    cfg.block_size = 1;
    cfg.device_blocks = 4; // both never fit: the rank preemption is for memory, by recompute
    cfg.token_budget = 1;
    cfg.max_running = 1;
    cfg.policy.fair_share = true;
    cfg.max_tenants = 2;
    cfg.vtc_input_weight = 0.99;
    cfg.rank_preemption_may_recompute = true;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    d.add(
        &mut e,
        RequestDesc {
            tenant: 0,
            ..RequestDesc::new(1, 2)
        },
        2,
    );
    d.add(
        &mut e,
        RequestDesc {
            tenant: 1,
            ..RequestDesc::new(2, 2)
        },
        2,
    );
    let steps = d.drain(&mut e, 40);
    assert!(steps <= 12, "{steps} steps");
    assert_eq!(e.stats().finished, 2);
}

/// Fair share charges a tenant `vtc_input_weight` per prompt token a step computes plus
/// `vtc_output_weight` per sampled token, and a decode step only the output weight. With one
/// slot and FCFS inside tenants, the order in which the tenants' second requests start shows
/// the counters: A (tenant 0: 10 prompt tokens, 1 output) costs 2·10 + 3·1 = 23; B (tenant 1:
/// 4 prompt tokens, 4 outputs) costs 2·4 + 3 (its prefill samples) + 3 decodes × 3 = 20. So
/// tenant 1 (20 < 23) starts D before tenant 0 starts C. Charging a decode 3 + 1 instead of
/// 3 · 1 would make it 23 = 23 and the tie would go to C (the earlier arrival).
#[test]
fn fair_share_charges_prompt_and_output_tokens_by_their_weights() {
    let mut cfg = config(PolicyKind::Fcfs);
    cfg.policy.fair_share = true;
    cfg.max_tenants = 2;
    cfg.max_running = 1;
    cfg.vtc_input_weight = 2.0;
    cfg.vtc_output_weight = 3.0;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    let add = |d: &mut Driver, e: &mut augur::core::engine::Engine<'_>, id, tenant, prompt, out| {
        d.add(
            e,
            RequestDesc {
                tenant,
                ..RequestDesc::new(id, prompt)
            },
            out,
        );
    };
    add(&mut d, &mut e, 1, 0, 10, 1); // A
    add(&mut d, &mut e, 2, 1, 4, 4); // B
    add(&mut d, &mut e, 3, 0, 4, 1); // C
    add(&mut d, &mut e, 4, 1, 4, 1); // D
    let mut order = vec![];
    for _ in 0..20 {
        for x in d.step(&mut e).entries {
            if !order.contains(&x.0) {
                order.push(x.0);
            }
        }
    }
    assert_eq!(order, vec![1, 2, 4, 3]);
    assert_eq!(e.live_requests(), 0);
}

/// `RequestView::first_token` is the time of the `complete` call that reported the first
/// output token, and later tokens do not move it.
#[test]
fn first_token_time_is_the_completion_that_reported_it() {
    let cfg = config(PolicyKind::Fcfs);
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let h = e.add_request(&RequestDesc::new(1, 6), Instant(10)).unwrap();
    assert_eq!(e.request(h).unwrap().first_token, None);
    let plan = e.schedule(Instant(20)).unwrap();
    let entry = plan.entries[0];
    assert!(entry.samples);
    e.complete(&[StepResult::new(entry.handle, 1)], Instant(30))
        .unwrap();
    assert_eq!(e.request(h).unwrap().first_token, Some(Instant(30)));
    let plan = e.schedule(Instant(40)).unwrap();
    let entry = plan.entries[0];
    e.complete(&[StepResult::new(entry.handle, 1)], Instant(50))
        .unwrap();
    let v = e.request(h).unwrap();
    assert_eq!((v.generated_tokens, v.first_token), (2, Some(Instant(30))));
}

/// Hashes of blocks filled while decoding are stored while the hash store has room; one that
/// does not fit is counted in `hashes_dropped`, and nothing else is.
#[test]
fn filled_block_hashes_beyond_the_hash_store_are_counted_as_dropped() {
    let mut cfg = config(PolicyKind::Fcfs);
    cfg.block_size = 2;
    cfg.max_requests = 1;
    cfg.max_running = 1;
    cfg.hash_capacity = 1; // one chunk, plus one per request: 14 hashes
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let h = e.add_request(&RequestDesc::new(1, 2), Instant(0)).unwrap();
    let mut now = 0;
    let mut filled = 0u64;
    for _ in 0..40 {
        now += 1;
        let plan = e.schedule(Instant(now)).unwrap();
        let en = plan.entries[0];
        let mut r = StepResult::new(en.handle, en.samples as u32);
        // A block fills when this step's tokens end on a block boundary.
        if (en.computed_before + en.tokens).is_multiple_of(2) {
            filled += 1;
            r.filled_block_hash = Some(1000 + filled);
        }
        e.complete(&[r], Instant(now)).unwrap();
    }
    let dropped = e.stats().hashes_dropped;
    let capacity = (cfg.layout().unwrap().hash_chunks * augur::core::engine::HASH_CHUNK_LEN) as u64;
    assert!(
        filled > capacity,
        "the test must overflow the store: {filled} ≤ {capacity}"
    );
    assert_eq!(dropped, filled - capacity, "stored {capacity} of {filled}");
    assert!(e.request(h).is_ok());
}
