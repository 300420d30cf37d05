//! Regression tests for the bugs a review of the engine found (each failed on the engine before
//! its fix, commit 01ca3ed, and passes now): one deterministic test per finding, each checking
//! the correct behaviour through the public API and the KV content oracle
//! (`engine_support::kv_oracle`), which every `Driver` step runs.
//!
//! The last two reproduce a bug the oracle found after those fixes (a plan swapping a request
//! out and back in); they failed until the engine's fix and pass now.

mod engine_support;

use augur::core::engine::{
    AddError, EngineConfig, FinishReason, PauseMode, PreemptionMode, RequestDesc, StepResult,
};
use augur::core::kv::{KvConfig, KvError};
use augur::core::policy::{Policy, PolicyKind};
use augur::core::time::Instant;
use augur::storage::{EngineBuffers, KvBuffers};
use engine_support::{Driver, compat, req};

/// A prompt of `blocks` full blocks whose first `shared` hashes are one chain (family `f`) and
/// the rest the request's own.
fn chain(f: u64, id: u64, shared: u32, blocks: u32) -> Vec<u64> {
    (0..blocks as u64)
        .map(|k| {
            if k < shared as u64 {
                (f + 1) << 40 | k
            } else {
                (f + 1) << 40 | (id + 1) << 20 | k
            }
        })
        .collect()
}

/// Finding 1: table chunks were sized as if no block were shared, so a prefix hit that puts
/// one block into many tables ran the chunk pool dry while blocks were free; the planned
/// attach then failed and `schedule` panicked (`expect("planned")`, `OutOfTableChunks`). Block
/// size 16, 1,000 device blocks, 64 request slots, 40 requests sharing one 100-block prefix.
#[test]
fn forty_requests_sharing_a_hundred_block_prefix_never_run_out_of_table_chunks() {
    let mut cfg = EngineConfig::new(16, 1000, 64);
    cfg.max_running = 64;
    cfg.policy = Policy::new(PolicyKind::Fcfs);
    cfg.hash_capacity = 8192; // 40 × 100 prompt hashes
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    let prompt = 100 * 16 + 8; // the shared 100 blocks and half a block of its own
    let hashes: Vec<Vec<u64>> = (0..40).map(|id| chain(0, id, 100, 100)).collect();
    for id in 0..40u64 {
        let desc = RequestDesc {
            prompt_block_hashes: &hashes[id as usize],
            ..req(id, prompt, 4.0)
        };
        d.add(&mut e, desc, 4);
    }
    let steps = d.drain(&mut e, 1000);
    let s = e.stats();
    assert_eq!(s.finished, 40);
    assert!(
        s.prefix_hit_tokens >= 30 * 100 * 16,
        "the shared prefix was not shared: {s:?}"
    );
    assert!(d.oracle.stats.shared_blocks > 0);
    assert!(steps < 100, "{steps} steps");
}

/// Finding 2: a swap-in admitted in a step freed the request's host blocks, and a later
/// eviction of idle KV in the same step (a paused request, pause mode `Auto`) swapped another
/// request out into those host blocks. The executor runs swap-outs first, so the swapped-in
/// request's KV was overwritten before it was copied back. 3 host blocks all in use, SJF.
#[test]
fn a_swap_in_reads_host_blocks_no_swap_out_of_the_same_plan_writes() {
    let mut cfg = EngineConfig::new(4, 8, 16);
    cfg.host_blocks = 3;
    cfg.max_running = 4;
    cfg.token_budget = 64;
    cfg.prefill_chunk = 64;
    cfg.watermark = 0.0;
    cfg.policy = Policy::new(PolicyKind::Sjf);
    cfg.preemption = PreemptionMode::Recompute;
    cfg.pause = PauseMode::Auto;
    // Swapping is cheap and recomputing dear: a long pause swaps, a zero one preserves.
    cfg.costs.recompute_us_per_token = 100.0;
    cfg.costs.swap_us_per_block = 1.0;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    // A (3 blocks) pauses for long: swapped out, all 3 host blocks.
    d.add(&mut e, req(1, 10, 1.0), 5);
    d.step_with(&mut e, |id, _| (id == 1).then_some(1_000_000_000));
    assert_eq!(e.stats().pauses_swapped, 1);
    // B (3 blocks) pauses for no time: its KV stays on the device, evictable.
    d.add(&mut e, req(2, 10, 1.0), 5);
    let s = d.step_with(&mut e, |id, _| (id == 2).then_some(0));
    assert_eq!(s.swap_out, 3, "A's pause swap-out");
    assert_eq!(e.stats().pauses_preserved, 1);
    // A resumes (swapped, first by SJF); C does not fit next to A and B.
    d.resume(&mut e, 1);
    d.add(&mut e, req(3, 12, 50.0), 2);
    let s = d.step(&mut e);
    let plan = d.last_plan.clone().unwrap();
    assert_eq!(s.swap_in, 3, "A swapped in: {plan:?}");
    assert!(s.entries.iter().any(|x| x.0 == 1) && s.entries.iter().any(|x| x.0 == 3));
    assert_eq!(e.stats().idle_evicted, 1, "B evicted for C");
    for p in &plan.swap_in {
        assert!(
            !plan.swap_out.iter().any(|o| o.dst == p.src),
            "swap-in {p:?} reads a host block a swap-out of the same plan writes: {plan:?}"
        );
    }
    d.resume(&mut e, 2);
    d.drain(&mut e, 100);
    assert_eq!(e.stats().finished, 3);
}

/// Finding 3: aborting a request whose pause swap-out was still pending (pauses reported in
/// `complete` swap out in the next plan) freed its host blocks, but its pairs stayed in the
/// list: the next plan carried them (reading freed device blocks), and a swap-out later in that
/// plan reused the freed host blocks — two pairs with one destination. Here D's KV already
/// fills half the host pool, so the eviction of B can only take the host blocks A had.
#[test]
fn aborting_a_pause_with_a_pending_swap_out_withdraws_its_pairs() {
    let mut cfg = EngineConfig::new(4, 8, 16);
    cfg.host_blocks = 6;
    cfg.max_running = 4;
    cfg.token_budget = 64;
    cfg.prefill_chunk = 64;
    cfg.watermark = 0.0;
    cfg.policy = Policy::new(PolicyKind::Fcfs);
    cfg.preemption = PreemptionMode::Swap;
    cfg.pause = PauseMode::Auto;
    cfg.costs.recompute_us_per_token = 100.0;
    cfg.costs.swap_us_per_block = 1.0;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    // D (3 blocks) pauses for long: swapped out, half the host pool.
    d.add(&mut e, req(4, 10, 1.0), 5);
    d.step_with(&mut e, |_, _| Some(1_000_000_000));
    d.add(&mut e, req(1, 10, 1.0), 5);
    d.add(&mut e, req(2, 10, 1.0), 5);
    // A pauses for long (swap, the other half, pending for the next plan), B for no time
    // (preserve).
    let s = d.step_with(&mut e, |id, _| match id {
        1 => Some(1_000_000_000),
        _ => Some(0),
    });
    assert_eq!(s.swap_out, 3, "D's pause swap-out");
    let s = e.stats();
    assert_eq!((s.pauses_swapped, s.pauses_preserved), (2, 1));
    assert_eq!(s.kv.host.in_use, 6);
    // A is aborted before the plan that would carry its swap-out.
    let b_blocks = d.tables[&2].clone();
    d.abort(&mut e, 1);
    // C does not fit next to B's kept KV: B is evicted, swapped into the host blocks A had.
    d.add(&mut e, req(3, 24, 1.0), 2);
    let s = d.step(&mut e);
    let plan = d.last_plan.clone().unwrap();
    assert_eq!(e.stats().idle_evicted, 1, "B evicted for C");
    let mut dst: Vec<u32> = plan.swap_out.iter().map(|p| p.dst).collect();
    dst.sort_unstable();
    dst.dedup();
    assert_eq!(
        dst.len(),
        plan.swap_out.len(),
        "duplicate destinations: {plan:?}"
    );
    for p in &plan.swap_out {
        assert!(
            b_blocks.contains(&p.src),
            "swap-out {p:?} reads device block {}, not one of B's {b_blocks:?} (A's, freed)",
            p.src
        );
    }
    assert_eq!(s.swap_out, 3, "only B's pairs: {plan:?}");
    d.resume(&mut e, 2);
    d.resume(&mut e, 4);
    d.drain(&mut e, 100);
    assert_eq!(e.stats().finished, 3);
}

/// Finding 4: the preempted list had `max_preemptions_per_step + 1` slots, but the deadlock
/// breaker (one request left that does not fit: preempt others regardless of the cap) may
/// preempt more, and the extra records were silently dropped. Every preemption is reported:
/// the plan's records equal the preemption counters' increase (checked by every `Driver` step).
#[test]
fn every_preemption_is_reported_past_the_per_step_cap() {
    let mut cfg = EngineConfig::new(1, 20, 16);
    cfg.max_running = 8;
    cfg.token_budget = 64;
    cfg.prefill_chunk = 8;
    cfg.watermark = 0.0;
    cfg.policy = Policy::new(PolicyKind::Fcfs);
    cfg.preemption = PreemptionMode::Recompute;
    cfg.max_preemptions_per_step = 1;
    cfg.prefix_caching = false;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    // One long prefill (8 tokens a step) and five short requests that decode.
    d.add(&mut e, req(1, 19, 1.0), 1);
    for id in 2..=6 {
        d.add(&mut e, req(id, 2, 10.0), 10);
    }
    let s = d.step(&mut e);
    assert_eq!(s.entries.len(), 6, "{s:?}");
    assert_eq!(e.stats().kv.device.in_use, 18);
    // Next step the prefill needs 8 blocks and the decodes 5, with 2 free: the cap allows one
    // preemption, then the breaker preempts as many as the prefill needs.
    let before = e.stats();
    let s = d.step(&mut e);
    let after = e.stats();
    let gained = after.preemptions_recompute - before.preemptions_recompute;
    assert!(
        gained >= 3,
        "expected the breaker to preempt past the cap: {s:?}"
    );
    assert_eq!(s.preempted.len() as u64, gained, "{s:?}");
    d.drain(&mut e, 500);
    assert_eq!(e.stats().finished, 6);
}

/// Finding 5: with `max_sequence_tokens == 0` nothing bounded the prompt, and a prompt near
/// `u32::MAX` overflowed token sums later. Prompts at or above `TOKEN_LIMIT` (2^31 − 1) are
/// refused; one token below is served and finishes with `Length` at the limit. Blocks of 2^26
/// tokens make the device (64 blocks, 2^32 tokens) large enough for any prompt.
#[test]
fn prompts_at_the_token_limit_are_refused_and_below_it_served() {
    let limit = compat::TOKEN_LIMIT;
    let mut cfg = EngineConfig::new(1 << 26, 64, 8);
    cfg.max_running = 8;
    cfg.token_budget = 1 << 30;
    cfg.prefill_chunk = 0;
    cfg.watermark = 0.0;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    for (id, prompt) in [
        (1u64, limit),
        (2, limit + 1),
        (3, u32::MAX - 1),
        (4, u32::MAX),
    ] {
        assert_eq!(
            e.add_request(&RequestDesc::new(id, prompt), Instant(0))
                .map(|_| ()),
            Err(AddError::InvalidField("prompt_tokens")),
            "prompt of {prompt} tokens"
        );
    }
    assert_eq!(e.live_requests(), 0);
    let mut d = Driver::new(cfg);
    d.add(&mut e, RequestDesc::new(5, limit - 1), 10);
    d.drain(&mut e, 10);
    let f = e.last_finished();
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].external_id, f[0].generated_tokens), (5, 1));
    assert_eq!(f[0].reason, FinishReason::Length);
}

/// Finding 6a: `Plan::blocks` of an entry from an earlier plan indexed past the plan's block
/// list and panicked; now it returns an in-bounds (meaningless) or empty slice.
#[test]
fn plan_blocks_of_an_entry_from_an_earlier_plan_never_panics() {
    let mut cfg = EngineConfig::new(1, 64, 8);
    cfg.max_running = 8;
    cfg.watermark = 0.0;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    e.add_request(&RequestDesc::new(1, 40), Instant(0)).unwrap();
    let first = *e.schedule(Instant(1)).unwrap().entries.first().unwrap();
    assert_eq!(e.plan().blocks(&first).len(), 40);
    e.complete(&[StepResult::new(first.handle, 1)], Instant(2))
        .unwrap();
    let plan = e.schedule(Instant(3)).unwrap();
    assert_eq!(plan.entries.len(), 1);
    let total: usize = plan.entries.iter().map(|x| plan.blocks(x).len()).sum();
    let stale = plan.blocks(&first);
    assert!(
        stale.len() <= total,
        "{} block ids from a plan holding {total}",
        stale.len()
    );
}

/// Finding 6b: `read_table` (and so an executor reading a table back) truncated silently to the
/// buffer; now a short buffer is `BufferTooSmall { need }`, naming the length needed, and
/// `Engine::block_table` reports it as `RequestError::BufferTooSmall`.
#[test]
fn reading_a_table_into_a_short_buffer_fails_instead_of_truncating() {
    let kv_cfg = KvConfig::new(4, 32, 0, 4);
    let mut kb = KvBuffers::new(&kv_cfg).unwrap();
    let mut kv = kb.manager(kv_cfg).unwrap();
    let seq = kv.create_seq().unwrap();
    kv.append_tokens(seq, 40).unwrap(); // 10 blocks
    let mut full = [u32::MAX; 10];
    assert_eq!(kv.read_table(seq, 0, &mut full), Ok(10));
    let mut short = [u32::MAX; 4];
    assert_eq!(
        kv.read_table(seq, 0, &mut short),
        Err(KvError::BufferTooSmall { need: 10 })
    );
    assert_eq!(short, [u32::MAX; 4], "nothing written on failure");
    let mut tail = [u32::MAX; 7];
    assert_eq!(kv.read_table(seq, 3, &mut tail), Ok(7));
    assert_eq!(tail, full[3..]);
    if compat::READBACK {
        let mut cfg = EngineConfig::new(4, 32, 4);
        cfg.max_running = 4;
        let mut buf = EngineBuffers::new(&cfg).unwrap();
        let mut e = buf.engine(cfg).unwrap();
        let h = e.add_request(&RequestDesc::new(1, 40), Instant(0)).unwrap();
        e.schedule(Instant(1)).unwrap();
        assert_eq!(
            compat::block_table_into(&e, h, 0, 4).map(|t| t.len()),
            Err(10)
        );
        assert_eq!(
            compat::block_table_into(&e, h, 2, 8).map(|t| t.len()),
            Ok(8)
        );
        assert_eq!(compat::block_table_into(&e, h, 10, 0), Ok(vec![]));
    }
}

/// Finding 6c: prefix hashes had no namespace, so two tenants whose prompts hashed equal shared
/// KV. With `cache_salt`, equal hashes in different namespaces never share a block (the oracle
/// checks every live table), while equal hashes in one namespace still do.
#[test]
fn equal_hashes_in_different_namespaces_never_share_kv() {
    let mut cfg = EngineConfig::new(4, 64, 8);
    cfg.max_running = 8;
    cfg.watermark = 0.0;
    cfg.policy = Policy::new(PolicyKind::Fcfs);
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    let hashes = chain(0, 0, 4, 4); // identical chains for everyone
    add_salted(&mut d, &mut e, 1, 1, &hashes);
    d.step(&mut e); // A computes and publishes its 4 prompt blocks
    add_salted(&mut d, &mut e, 2, 2, &hashes);
    d.step(&mut e);
    assert_eq!(
        e.stats().prefix_hit_tokens,
        0,
        "namespace 2 found namespace 1's blocks"
    );
    add_salted(&mut d, &mut e, 3, 1, &hashes);
    d.step(&mut e);
    assert_eq!(
        e.stats().prefix_hit_tokens,
        16,
        "namespace 1 shares within itself"
    );
    d.drain(&mut e, 100);
    assert_eq!(e.stats().finished, 3);
}

/// Adds request `id` (18 tokens, these hashes) in namespace `salt` through the driver, telling
/// the oracle the namespace.
fn add_salted(
    d: &mut Driver,
    e: &mut augur::core::engine::Engine<'_>,
    id: u64,
    salt: u64,
    hashes: &[u64],
) {
    let mut desc = RequestDesc {
        prompt_block_hashes: hashes,
        ..req(id, 18, 8.0)
    };
    compat::set_salt(&mut desc, salt);
    let h = e.add_request(&desc, Instant(d.now)).expect("accepted");
    d.oracle.on_add_salted(&desc, salt, h);
    d.target.insert(id, 8);
    d.handles.insert(id, h);
    d.generated.insert(id, 0);
}

/// Found by the oracle (fixed): a request paused with a swap-out (its pairs wait for the next
/// plan) and resumed before that plan was admitted in it: the plan carried the pause's swap-out
/// pairs *and* swap-in pairs reading the very host blocks those swap-outs write, against the
/// plan contract (no host block a `swap_in` reads is written by a `swap_out` of the same plan).
/// Correct only because the executor copies swap-outs first; the KV made a pointless round trip.
/// Now a request whose swap-out is not yet carried out starts in the next plan.
#[test]
fn a_resumed_pause_is_not_swapped_back_in_by_the_plan_that_swaps_it_out() {
    let mut cfg = EngineConfig::new(4, 16, 8);
    cfg.host_blocks = 4;
    cfg.max_running = 4;
    cfg.token_budget = 64;
    cfg.watermark = 0.0;
    cfg.pause = PauseMode::Swap;
    cfg.prefix_caching = false;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    d.add(&mut e, req(1, 6, 4.0), 4);
    d.step_with(&mut e, |_, _| Some(1_000));
    assert_eq!(e.stats().pauses_swapped, 1);
    d.resume(&mut e, 1);
    d.step(&mut e);
    let plan = d.last_plan.clone().unwrap();
    for p in &plan.swap_in {
        assert!(
            !plan.swap_out.iter().any(|o| o.dst == p.src),
            "swap-in {p:?} reads a host block a swap-out of the same plan writes: {plan:?}"
        );
    }
}

/// Found by the oracle (fixed): the same round trip through memory pressure. A resumed pause (its KV kept on the
/// device, evictable) outranks a running request; the running requests' growth does not fit,
/// so the step first evicts the idle KV by swapping it out, then preempts the worse running
/// request for rank and promotes the evicted one — which is swapped back in by the same plan,
/// reading the host blocks its own swap-out writes.
#[test]
fn an_evicted_idle_request_is_not_swapped_back_in_by_the_plan_that_evicts_it() {
    let mut cfg = EngineConfig::new(4, 10, 8);
    cfg.host_blocks = 16;
    cfg.max_running = 2;
    cfg.token_budget = 64;
    cfg.prefill_chunk = 16;
    cfg.watermark = 0.0;
    cfg.policy = Policy::new(PolicyKind::Priority);
    cfg.preemption = PreemptionMode::Swap;
    cfg.pause = PauseMode::Preserve;
    cfg.prefix_caching = false;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut d = Driver::new(cfg);
    // X (priority 0, 2 blocks) pauses, keeping its KV.
    d.add(
        &mut e,
        RequestDesc {
            priority: 0,
            ..req(1, 7, 4.0)
        },
        4,
    );
    d.step_with(&mut e, |_, _| Some(1_000));
    assert_eq!(e.stats().pauses_preserved, 1);
    // A (priority 1) prefills 16 of 36 tokens, B (priority 2) its 4: 7 of 10 blocks in use.
    d.add(
        &mut e,
        RequestDesc {
            priority: 1,
            ..req(2, 36, 4.0)
        },
        4,
    );
    d.add(
        &mut e,
        RequestDesc {
            priority: 2,
            ..req(3, 4, 4.0)
        },
        4,
    );
    d.step(&mut e);
    assert_eq!(e.stats().kv.device.in_use, 7);
    // X resumes. A needs 4 blocks and B 1, 3 are free: X's kept KV is evicted (swapped out),
    // then B is preempted for X's rank, and X is admitted (swapped in) in the same plan.
    d.resume(&mut e, 1);
    let s = d.step(&mut e);
    let plan = d.last_plan.clone().unwrap();
    assert_eq!(e.stats().idle_evicted, 1, "{s:?}");
    for p in &plan.swap_in {
        assert!(
            !plan.swap_out.iter().any(|o| o.dst == p.src),
            "swap-in {p:?} reads a host block a swap-out of the same plan writes: {plan:?}"
        );
    }
}
