//! The C ABI driven from Rust, through the exported functions exactly as C calls them (Miri
//! runs these: they cover every `unsafe` block of this crate). The C tests in `tests/c/` do
//! the same from C under AddressSanitizer.

use core::ffi::CStr;
use core::mem::MaybeUninit;
use core::ptr::{null, null_mut};

use super::*;

fn config() -> augur_config {
    let mut c = MaybeUninit::uninit();
    // SAFETY: `c` is writable.
    let s = unsafe { augur_config_default(c.as_mut_ptr(), 4, 32, 8) };
    assert_eq!(s, AUGUR_OK);
    // SAFETY: written on success.
    let mut c = unsafe { c.assume_init() };
    c.max_running = 4;
    c.token_budget = 64;
    c.host_blocks = 8;
    c
}

fn new_engine(c: &augur_config) -> *mut augur_engine {
    let mut e = null_mut();
    // SAFETY: valid pointers.
    assert_eq!(unsafe { augur_engine_new(c, &mut e) }, AUGUR_OK);
    assert!(!e.is_null());
    e
}

fn desc(id: u64, prompt: u32) -> augur_request_desc {
    augur_request_desc {
        external_id: id,
        flags: AUGUR_DESC_PREDICTION,
        prompt_tokens: prompt,
        max_output_tokens: 0,
        priority: 0,
        predicted_output_tokens: 8.0,
        deadline_us: 0,
        ttft_target_us: 0,
        tenant: 0,
        reserved: 0,
        cache_salt: 0,
        prompt_block_hashes: null(),
        prompt_block_hashes_len: 0,
    }
}

fn last_error(e: *mut augur_engine) -> String {
    // SAFETY: a NUL-terminated string, valid until the next call.
    unsafe { CStr::from_ptr(augur_engine_last_error(e)) }
        .to_str()
        .unwrap()
        .to_owned()
}

fn add(e: *mut augur_engine, d: &augur_request_desc, now: u64) -> Result<u64, augur_status> {
    let mut h = 0;
    // SAFETY: valid pointers.
    match unsafe { augur_add_request(e, d, now, &mut h) } {
        AUGUR_OK => Ok(h),
        s => Err(s),
    }
}

fn plan(e: *mut augur_engine, now: u64) -> Result<augur_plan, augur_status> {
    let mut p = MaybeUninit::uninit();
    // SAFETY: valid pointers.
    match unsafe { augur_schedule(e, now, p.as_mut_ptr()) } {
        // SAFETY: written on success.
        AUGUR_OK => Ok(unsafe { p.assume_init() }),
        s => Err(s),
    }
}

fn entries(p: &augur_plan) -> &[augur_plan_entry] {
    if p.entries_len == 0 {
        &[]
    } else {
        // SAFETY: the plan's array, valid until the next changing call.
        unsafe { core::slice::from_raw_parts(p.entries, p.entries_len) }
    }
}

fn blocks(p: &augur_plan) -> &[u32] {
    if p.blocks_len == 0 {
        &[]
    } else {
        // SAFETY: as above.
        unsafe { core::slice::from_raw_parts(p.blocks, p.blocks_len) }
    }
}

fn table(e: *mut augur_engine, h: u64) -> Vec<u32> {
    let mut buf = [0u32; 64];
    let mut n = usize::MAX;
    // SAFETY: valid pointers, `buf` holds 64.
    let s = unsafe { augur_request_block_table(e, h, 0, buf.as_mut_ptr(), buf.len(), &mut n) };
    assert_eq!(s, AUGUR_OK, "{}", last_error(e));
    buf[..n].to_vec()
}

/// A serving loop through the C ABI keeps a mirror of every table from the plan deltas and
/// checks it against `augur_request_block_table` after every step.
#[test]
fn a_serving_loop_keeps_mirrors_equal_to_the_engine_tables() {
    let c = config();
    let e = new_engine(&c);
    let mut mirrors: std::collections::HashMap<u64, Vec<u32>> = Default::default();
    let mut now = 0;
    for id in 0..6 {
        add(e, &desc(id, 5 + 3 * id as u32), now).unwrap();
    }
    let mut finished = 0;
    let mut steps = 0;
    let mut sparse_exceptions = 0;
    while finished < 6 && steps < 400 {
        steps += 1;
        now += 10;
        let p = plan(e, now).unwrap();
        let pre = if p.preempted_len == 0 {
            &[][..]
        } else {
            // SAFETY: the plan's array.
            unsafe { core::slice::from_raw_parts(p.preempted, p.preempted_len) }
        };
        for x in pre {
            mirrors.remove(&x.handle);
        }
        let mut results = Vec::new();
        for en in entries(&p) {
            let m = mirrors.entry(en.handle).or_default();
            m.truncate(en.table_start as usize);
            m.extend_from_slice(&blocks(&p)[en.blocks_offset as usize..][..en.blocks_len as usize]);
            let mut r = augur_entry_result {
                tokens: u32::from(en.samples),
                flags: 0,
                pause_duration_us: 0,
                filled_block_hash: 0,
            };
            // Finish after a few tokens, at a length that depends on the request.
            let mut info = augur_request_info::default();
            // SAFETY: valid pointers.
            let s = unsafe { augur_request_get_info(e, en.handle, &mut info) };
            assert_eq!(s, AUGUR_OK);
            if en.samples && info.generated_tokens + 1 >= 3 + (en.external_id as u32 % 4) {
                r.flags = AUGUR_RESULT_FINISHED;
            }
            results.push(r);
        }
        let s = if steps % 2 == 0 {
            // SAFETY: `results` holds one result per entry.
            unsafe { augur_complete(e, results.as_ptr(), results.len(), now) }
        } else {
            // Odd steps sparsely: only the finishing entries, by position.
            let exceptions: Vec<augur_entry_exception> = results
                .iter()
                .enumerate()
                .filter(|(_, r)| r.flags != 0)
                .map(|(k, r)| augur_entry_exception {
                    entry: k as u32,
                    result: *r,
                })
                .collect();
            sparse_exceptions += exceptions.len();
            // SAFETY: `exceptions` holds `len` exceptions (a dangling pointer when empty,
            // which `len` 0 never reads).
            unsafe { augur_complete_except(e, exceptions.as_ptr(), exceptions.len(), now) }
        };
        assert_eq!(s, AUGUR_OK, "{}", last_error(e));
        let (mut fp, mut fl) = (null(), 0);
        // SAFETY: valid pointers.
        let s = unsafe { augur_last_finished(e, &mut fp, &mut fl) };
        assert_eq!(s, AUGUR_OK);
        if fl > 0 {
            // SAFETY: the engine's array.
            for f in unsafe { core::slice::from_raw_parts(fp, fl) } {
                mirrors.remove(&f.handle);
                finished += 1;
            }
        }
        for (&h, m) in &mirrors {
            let mut info = augur_request_info::default();
            // SAFETY: valid pointers.
            if unsafe { augur_request_get_info(e, h, &mut info) } == AUGUR_OK
                && info.state == AUGUR_STATE_RUNNING
            {
                assert_eq!(&table(e, h), m, "mirror of request {h:#x}");
            }
        }
    }
    assert_eq!(finished, 6, "every request finishes");
    assert!(
        sparse_exceptions > 0,
        "some finishes were reported sparsely"
    );
    let mut st = augur_stats::default();
    // SAFETY: valid pointers.
    assert_eq!(unsafe { augur_engine_stats(e, &mut st) }, AUGUR_OK);
    assert_eq!(st.finished, 6);
    assert_eq!(st.device_blocks_in_use, 0);
    // SAFETY: an engine from `augur_engine_new`.
    unsafe { augur_engine_free(e) };
}

#[test]
fn bad_input_gets_its_status_and_leaves_the_engine_usable() {
    let c = config();
    let e = new_engine(&c);
    // SAFETY: every pointer passed in this test is valid or deliberately NULL.
    unsafe {
        assert_eq!(
            augur_schedule(null_mut(), 0, null_mut()),
            AUGUR_E_NULL_POINTER
        );
        assert_eq!(augur_schedule(e, 0, null_mut()), AUGUR_E_NULL_POINTER);
        assert!(last_error(e).contains("out"));
        let h = add(e, &desc(1, 8), 5).unwrap();
        assert_eq!(add(e, &desc(1, 8), 5), Err(AUGUR_E_DUPLICATE_ID));
        assert_eq!(add(e, &desc(2, 8), 4), Err(AUGUR_E_TIME_WENT_BACKWARDS));
        let mut d = desc(3, 8);
        d.flags |= 1 << 20;
        assert_eq!(add(e, &d, 5), Err(AUGUR_E_INVALID_ARGUMENT));
        assert!(last_error(e).contains("flag"), "{}", last_error(e));
        d = desc(3, 8);
        d.prompt_block_hashes_len = 2; // NULL pointer with a length
        assert_eq!(add(e, &d, 5), Err(AUGUR_E_NULL_POINTER));
        d = desc(3, 0);
        assert_eq!(add(e, &d, 5), Err(AUGUR_E_INVALID_ARGUMENT));
        // Stale and forged handles.
        let forged = h + (1 << 32);
        assert_eq!(augur_abort(e, forged, 5), AUGUR_E_STALE_HANDLE);
        assert_eq!(augur_abort(e, 0, 5), AUGUR_E_STALE_HANDLE);
        assert_eq!(augur_resume(e, h, 0, 5), AUGUR_E_WRONG_STATE);
        assert_eq!(
            augur_update_prediction(e, h, f64::NAN, 5),
            AUGUR_E_INVALID_PREDICTION
        );
        // Results: wrong count, unknown flags; nothing changes.
        let p = plan(e, 10).unwrap();
        assert_eq!(p.entries_len, 1);
        assert_eq!(plan(e, 11).unwrap_err(), AUGUR_E_RESULTS_PENDING);
        assert_eq!(augur_complete(e, null(), 0, 12), AUGUR_E_RESULT_COUNT);
        let bad = [augur_entry_result {
            tokens: 1,
            flags: 64,
            pause_duration_us: 0,
            filled_block_hash: 0,
        }];
        assert_eq!(
            augur_complete(e, bad.as_ptr(), 1, 12),
            AUGUR_E_INVALID_RESULT
        );
        assert!(last_error(e).contains("result 0"), "{}", last_error(e));
        let mut table_buf = [7u32; 1];
        let mut n = 99usize;
        // Two blocks needed (8 tokens of 4): too small, nothing written.
        assert_eq!(
            augur_request_block_table(e, h, 0, table_buf.as_mut_ptr(), 1, &mut n),
            AUGUR_E_BUFFER_TOO_SMALL
        );
        assert_eq!((table_buf, n), ([7], 99));
        let ok = [augur_entry_result {
            tokens: 1,
            flags: 0,
            pause_duration_us: 0,
            filled_block_hash: 0,
        }];
        assert_eq!(augur_complete(e, ok.as_ptr(), 1, 12), AUGUR_OK);
        // The table covers the computed tokens: the 8 of the prompt (the sampled ninth is
        // computed next step).
        assert_eq!(table(e, h).len(), 2, "8 computed tokens → 2 blocks of 4");
        let mut found = 0;
        assert_eq!(augur_find_request(e, 1, &mut found), AUGUR_OK);
        assert_eq!(found, h);
        assert_eq!(augur_find_request(e, 77, &mut found), AUGUR_E_UNKNOWN_ID);
        augur_engine_free(e);
    }
}

#[test]
fn configs_are_checked_with_a_reason() {
    let mut c = config();
    let mut reason = [0 as c_char; 128];
    // SAFETY: valid pointers, or NULL where the test says so.
    unsafe {
        assert_eq!(
            augur_config_validate(&c, reason.as_mut_ptr(), 128),
            AUGUR_OK
        );
        c.policy.kind = 99;
        assert_eq!(
            augur_config_validate(&c, reason.as_mut_ptr(), 128),
            AUGUR_E_INVALID_CONFIG
        );
        let msg = CStr::from_ptr(reason.as_ptr()).to_str().unwrap();
        assert!(msg.contains("policy.kind"), "{msg}");
        c = config();
        c.max_running = 0;
        assert_eq!(
            augur_config_validate(&c, reason.as_mut_ptr(), 8),
            AUGUR_E_INVALID_CONFIG
        );
        // Truncated to the buffer, NUL-terminated.
        assert_eq!(CStr::from_ptr(reason.as_ptr()).to_bytes().len(), 7);
        c.max_running = 4;
        c.prefix_caching = 2;
        assert_eq!(
            augur_config_validate(&c, null_mut(), 0),
            AUGUR_E_INVALID_CONFIG
        );
        let mut e = null_mut();
        assert_eq!(augur_engine_new(&c, &mut e), AUGUR_E_INVALID_CONFIG);
        assert!(e.is_null(), "out-parameters are written only on success");
    }
}

/// The zero-malloc path: an engine inside a caller's region, which may hold garbage; too
/// small and misaligned regions are refused.
#[test]
fn an_engine_lives_in_a_caller_region() {
    let c = config();
    let (mut size, mut align) = (0usize, 0usize);
    // SAFETY: valid pointers.
    let s = unsafe { augur_engine_layout(&c, &mut size, &mut align) };
    assert_eq!(s, AUGUR_OK);
    assert!(align.is_power_of_two() && size > 0);
    let mut buf = vec![0xA5u8; size + 2 * align];
    let base = buf.as_mut_ptr();
    let start = base.align_offset(align);
    // SAFETY: `start + size` is inside `buf`.
    let region = unsafe { base.add(start) };
    let mut e = null_mut();
    // SAFETY: a region of `size` bytes (one short, misaligned by one) inside `buf`.
    unsafe {
        assert_eq!(
            augur_engine_init(&c, region.cast(), size - 1, &mut e),
            AUGUR_E_REGION_TOO_SMALL
        );
        assert_eq!(
            augur_engine_init(&c, region.add(1).cast(), size, &mut e),
            AUGUR_E_REGION_MISALIGNED
        );
        assert!(e.is_null());
        assert_eq!(augur_engine_init(&c, region.cast(), size, &mut e), AUGUR_OK);
    }
    let h = add(e, &desc(9, 6), 0).unwrap();
    let p = plan(e, 1).unwrap();
    assert_eq!(entries(&p)[0].handle, h);
    // SAFETY: the engine lives in `buf`, which outlives it.
    unsafe { augur_engine_free(e) };
    // A freed in-region engine is refused, not used.
    assert_eq!(plan(e, 2).unwrap_err(), AUGUR_E_INVALID_ENGINE);
    // SAFETY: freeing twice is detected while the memory is mapped.
    unsafe { augur_engine_free(e) };
    drop(buf);
}

#[test]
fn the_version_matches_the_manifest() {
    // SAFETY: a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(augur_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        AUGUR_VERSION_MAJOR.to_string(),
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert_eq!(
        AUGUR_VERSION_MINOR.to_string(),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    assert_eq!(
        AUGUR_VERSION_PATCH.to_string(),
        env!("CARGO_PKG_VERSION_PATCH")
    );
    // SAFETY: static strings.
    let ok = unsafe { CStr::from_ptr(augur_status_str(AUGUR_OK)) };
    assert_eq!(ok.to_str().unwrap(), "ok");
}

/// Hashes supplied after `augur_add_request` make a later request with the same prefix hit
/// the cache; once a request has run, its hashes can no longer be replaced.
#[test]
fn prompt_hashes_can_follow_the_request() {
    let c = config();
    let e = new_engine(&c);
    let hashes = [11u64, 12];
    let a = add(e, &desc(1, 9), 0).unwrap();
    // SAFETY: valid pointers; NULL with a length is refused.
    unsafe {
        assert_eq!(
            augur_set_prompt_block_hashes(e, a, null(), 2, 0),
            AUGUR_E_NULL_POINTER
        );
        let three = [1u64, 2, 3];
        assert_eq!(
            augur_set_prompt_block_hashes(e, a, three.as_ptr(), 3, 0),
            AUGUR_E_TOO_MANY_TOKENS,
            "9 tokens of 4 have 2 full blocks"
        );
        assert_eq!(
            augur_set_prompt_block_hashes(e, a, hashes.as_ptr(), 2, 0),
            AUGUR_OK
        );
    }
    let p = plan(e, 1).unwrap();
    complete_all(e, &p, 2);
    // SAFETY: valid pointers.
    unsafe {
        assert_eq!(
            augur_set_prompt_block_hashes(e, a, hashes.as_ptr(), 2, 2),
            AUGUR_E_WRONG_STATE
        );
    }
    let mut d = desc(2, 9);
    d.prompt_block_hashes = hashes.as_ptr();
    d.prompt_block_hashes_len = 2;
    add(e, &d, 3).unwrap();
    plan(e, 4).unwrap();
    let mut st = augur_stats::default();
    // SAFETY: valid pointers.
    let s = unsafe { augur_engine_stats(e, &mut st) };
    assert_eq!(s, AUGUR_OK);
    assert_eq!(
        st.prefix_hit_tokens, 8,
        "both full prompt blocks of request 1 are hit"
    );
    // SAFETY: an engine from `augur_engine_new`.
    unsafe { augur_engine_free(e) };
}

/// Completes every entry of `p`, one token for each that samples.
fn complete_all(e: *mut augur_engine, p: &augur_plan, now: u64) {
    let results: Vec<augur_entry_result> = entries(p)
        .iter()
        .map(|en| augur_entry_result {
            tokens: u32::from(en.samples),
            flags: 0,
            pause_duration_us: 0,
            filled_block_hash: 0,
        })
        .collect();
    // SAFETY: one result per entry; valid pointers.
    let s = unsafe { augur_complete(e, results.as_ptr(), results.len(), now) };
    assert_eq!(s, AUGUR_OK);
}

fn drain(e: *mut augur_engine, cap: usize) -> Result<Vec<augur_kv_event>, augur_status> {
    let mut out = vec![augur_kv_event::default(); cap];
    let mut n = usize::MAX;
    // SAFETY: `out` holds `cap` events; `n` is writable.
    match unsafe { augur_drain_kv_events(e, out.as_mut_ptr(), cap, &mut n) } {
        AUGUR_OK => {
            assert!(n <= cap);
            out.truncate(n);
            Ok(out)
        }
        s => {
            assert_eq!(n, usize::MAX, "`written` is untouched on failure");
            Err(s)
        }
    }
}

fn event_stats(e: *mut augur_engine) -> augur_kv_event_stats {
    let mut st = augur_kv_event_stats::default();
    // SAFETY: valid pointers.
    assert_eq!(unsafe { augur_engine_kv_event_stats(e, &mut st) }, AUGUR_OK);
    st
}

#[test]
fn kv_events_reach_c_with_their_hashes_parents_and_sequence() {
    let mut c = config();
    c.kv_event_capacity = 16;
    let e = new_engine(&c);
    let hashes = [11u64, 12];
    let mut d = desc(1, 9);
    d.prompt_block_hashes = hashes.as_ptr();
    d.prompt_block_hashes_len = 2;
    d.cache_salt = 5;
    add(e, &d, 0).unwrap();
    let p = plan(e, 1).unwrap();
    complete_all(e, &p, 2);

    // Bad arguments are refused and drain nothing.
    let mut n = usize::MAX;
    let mut one = augur_kv_event::default();
    // SAFETY: the pointers are valid or NULL, as each case says.
    unsafe {
        assert_eq!(
            augur_drain_kv_events(null_mut(), &mut one, 1, &mut n),
            AUGUR_E_NULL_POINTER
        );
        assert_eq!(
            augur_drain_kv_events(e, &mut one, 1, null_mut()),
            AUGUR_E_NULL_POINTER
        );
        assert!(last_error(e).contains("written"), "{}", last_error(e));
        assert_eq!(
            augur_drain_kv_events(e, null_mut(), 1, &mut n),
            AUGUR_E_NULL_POINTER
        );
        assert!(last_error(e).contains("out"), "{}", last_error(e));
        let misaligned = (&raw mut one).cast::<u8>().add(1).cast::<augur_kv_event>();
        assert_eq!(
            augur_drain_kv_events(e, misaligned, 1, &mut n),
            AUGUR_E_INVALID_ARGUMENT
        );
        assert_eq!(n, usize::MAX);
        assert_eq!(
            augur_engine_kv_event_stats(e, null_mut()),
            AUGUR_E_NULL_POINTER
        );
        // NULL with room for none drains none.
        assert_eq!(augur_drain_kv_events(e, null_mut(), 0, &mut n), AUGUR_OK);
        assert_eq!(n, 0);
    }
    let before = event_stats(e);
    assert_eq!(
        before.delivered, 0,
        "nothing was drained by the refused calls"
    );

    // The prompt's two full blocks are cached once their prefill is computed: the first
    // without a parent, the second chained to it, both in the request's namespace.
    let mut events = drain(e, 1).unwrap();
    events.extend(drain(e, 16).unwrap());
    assert_eq!(events.len(), 2, "{events:?}");
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev.seq, i as u64);
        assert_eq!(ev.kind, AUGUR_KV_EVENT_STORED);
        assert_eq!(ev.tier, AUGUR_TIER_DEVICE);
        assert_eq!((ev.tokens, ev.block_size), (4, 4));
        assert_eq!(ev.hash, hashes[i]);
        assert!(ev.block < c.device_blocks);
    }
    assert_eq!((events[0].has_parent, events[1].has_parent), (0, 1));
    assert_eq!(events[1].parent_hash, 11);
    assert_eq!(events[0].namespace_id, events[1].namespace_id);
    let st = event_stats(e);
    assert_eq!(
        (st.delivered, st.pending, st.dropped, st.resyncs),
        (2, 0, 0, 0)
    );
    assert!(drain(e, 4).unwrap().is_empty());
    // SAFETY: an engine from `augur_engine_new`.
    unsafe { augur_engine_free(e) };

    // Off (the default): nothing is recorded.
    let e = new_engine(&config());
    add(e, &d, 0).unwrap();
    let p = plan(e, 1).unwrap();
    complete_all(e, &p, 2);
    assert!(drain(e, 4).unwrap().is_empty());
    assert_eq!(event_stats(e).delivered, 0);
    // SAFETY: an engine from `augur_engine_new`.
    unsafe { augur_engine_free(e) };
}

/// Random call sequences through the C ABI, checked by the harness the fuzz target `ffi_api`
/// shares (`call_sequences.rs`). Miri runs a few short cases.
mod random_calls {
    use proptest::prelude::*;

    use super::super::call_sequences::{Limits, Reached, run};

    const LIMITS: Limits = Limits {
        max_ops: if cfg!(miri) { 40 } else { 400 },
        max_region_bytes: 4 << 20,
    };

    fn config() -> ProptestConfig {
        ProptestConfig {
            // `AUGUR_SOAK_CASES` for a long run.
            cases: if cfg!(miri) {
                3
            } else {
                std::env::var("AUGUR_SOAK_CASES")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(256)
            },
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]
        #[test]
        fn random_call_sequences_keep_the_c_contract(
            data in proptest::collection::vec(any::<u8>(), 0..if cfg!(miri) { 400 } else { 4000 })
        ) {
            if let Err(msg) = run(&data, &LIMITS) {
                prop_assert!(false, "{}", msg);
            }
        }
    }

    /// The generator reaches what it is meant to test: if a change stops it reaching one of
    /// these (every config refused, no plans, no preemption...), this fails.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "reach is a statistical check; Miri runs the proptest above"
    )]
    fn random_call_sequences_reach_the_corners() {
        let mut total = Reached::default();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..300 {
            let data: Vec<u8> = (0..3000)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect();
            let r = run(&data, &LIMITS).unwrap_or_else(|m| panic!("{m}"));
            total.region_engines += r.region_engines;
            total.owned_engines += r.owned_engines;
            total.invalid_configs += r.invalid_configs;
            total.added += r.added;
            total.plans += r.plans;
            total.preempted += r.preempted;
            total.swapped_blocks += r.swapped_blocks;
            total.finished += r.finished;
            total.resumed += r.resumed;
            total.drafts += r.drafts;
            total.sparse_completes += r.sparse_completes;
            total.refused_results += r.refused_results;
            total.mirror_checks += r.mirror_checks;
            total.kv_events += r.kv_events;
        }
        eprintln!("{total:?}");
        let Reached {
            region_engines,
            owned_engines,
            invalid_configs,
            added,
            plans,
            preempted,
            swapped_blocks,
            finished,
            resumed,
            drafts,
            sparse_completes,
            refused_results,
            mirror_checks,
            kv_events,
        } = total;
        for (what, n, at_least) in [
            ("region engines", region_engines, 50),
            ("owned engines", owned_engines, 50),
            ("invalid configs", invalid_configs, 10),
            ("requests added", added, 1000),
            ("plans", plans, 1000),
            ("preemptions", preempted, 20),
            ("swapped blocks", swapped_blocks, 150),
            ("finished", finished, 150),
            ("resumed", resumed, 30),
            ("steps with drafts", drafts, 50),
            ("steps completed sparsely", sparse_completes, 300),
            ("refused result batches", refused_results, 300),
            ("mirror checks", mirror_checks, 2000),
            ("KV events replayed", kv_events, 100),
        ] {
            assert!(
                n >= at_least,
                "{what}: {n}, expected at least {at_least} ({total:?})"
            );
        }
    }
}
