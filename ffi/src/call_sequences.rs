//! Random call sequences through the C ABI, made the way a C host makes them (good calls and
//! bad ones), with the ABI's contract checked after every call.
//!
//! One generator, two drivers: the cargo-fuzz target `ffi_api` (`fuzz/fuzz_targets/ffi_api.rs`,
//! which compiles this crate's source into the fuzzer with `#[path]`) and the proptest
//! `random_call_sequences_keep_the_c_contract` in `tests.rs` (which Miri also runs, a few
//! cases, so these sequences exercise every `unsafe` block of the crate under Miri too).
//!
//! [`run`] decodes bytes into a configuration (valid or not: extreme values in any field),
//! an engine (allocated, or inside a caller region after a too-small and a misaligned try),
//! and then calls: add (duplicate ids, bad flags, NaN predictions, NULL pointers), find,
//! update prediction, prompt block hashes, abort, resume, schedule, complete (wrong counts,
//! bad results, accepted drafts, pauses, finishes; well-formed results positional or sparse
//! through `augur_complete_except`), block tables (short buffers), stats and info, stale and
//! forged request handles, a forged engine pointer, time going backwards.
//! What it checks, after every call:
//! - every status is one `augur_status` defines, never `AUGUR_E_PANIC` or `AUGUR_E_POISONED`
//!   (a panic is caught by the guard, so the harness must look for it), and every failure
//!   leaves a non-empty last-error message;
//! - out-parameters are untouched on failure (each is pre-filled with a sentinel);
//! - a failed call changes nothing the host can see (the live count; a refused `complete`
//!   leaves the plan outstanding, and the same step then completes);
//! - stale and forged handles are never accepted, a duplicate external id never is, and
//!   `augur_find_request` agrees with the requests the host knows;
//! - each plan keeps its contract: entries within `max_running` and the token budget, each
//!   request once, live and not paused; block ids inside their tiers; `table_start` within
//!   the host's mirror of the table;
//! - after every step, each mirror built only from plan deltas equals
//!   `augur_request_block_table` (by handle and by external id), and the statistics count the
//!   live requests the host knows.

use core::ffi::{CStr, c_char, c_void};
use core::mem::MaybeUninit;
use core::ptr::{null, null_mut};
use std::collections::HashMap;
use std::format;
use std::string::String;
use std::vec::Vec;

use super::*;

/// Bytes to decode; reading past the end gives zeros.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// Decodes `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn exhausted(&self) -> bool {
        self.data.is_empty()
    }
    fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }
    /// True with probability `k / 256`.
    fn chance(&mut self, k: u8) -> bool {
        self.byte() < k
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    /// A value in `lo..=hi` (`hi - lo` below 2^32).
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        let span = u64::from(hi.saturating_sub(lo)) + 1;
        let r = if span <= 256 {
            u64::from(self.byte())
        } else {
            u64::from(self.u32())
        };
        lo + (r % span) as u32
    }
    /// A float a C host might pass: ordinary values, and now and then NaN, infinities,
    /// negatives and extremes.
    fn float(&mut self) -> f64 {
        match self.byte() % 16 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -1.0,
            3 => 0.0,
            4 => f64::MAX,
            5 => f64::from_bits(self.u64()),
            _ => f64::from(self.range(0, 400)) / 4.0,
        }
    }
}

/// Bounds on one run.
pub struct Limits {
    /// Calls after the engine is built.
    pub max_ops: usize,
    /// Configurations whose region is larger are skipped.
    pub max_region_bytes: usize,
}

type Checked = Result<(), String>;

/// What one run reached, so a test can fail if the generator stops reaching the corners.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reached {
    /// Engines built inside a caller region.
    pub region_engines: u64,
    /// Engines built by `augur_engine_new`.
    pub owned_engines: u64,
    /// Configurations refused as invalid.
    pub invalid_configs: u64,
    /// Requests accepted.
    pub added: u64,
    /// Plans with at least one entry.
    pub plans: u64,
    /// Preempted requests.
    pub preempted: u64,
    /// Swap-out and swap-in pairs.
    pub swapped_blocks: u64,
    /// Requests finished.
    pub finished: u64,
    /// Requests resumed after a pause.
    pub resumed: u64,
    /// Steps completed with more than one token for some entry.
    pub drafts: u64,
    /// Steps completed with `augur_complete_except`.
    pub sparse_completes: u64,
    /// Malformed result batches refused.
    pub refused_results: u64,
    /// Mirrors compared with the engine's tables.
    pub mirror_checks: u64,
    /// KV events drained and replayed.
    pub kv_events: u64,
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            return Err(format!($($msg)*));
        }
    };
}

/// The status of a failed call: one augur defines, not a panic or poison, with a message.
fn check_failure(engine: *const augur_engine, call: &str, s: augur_status) -> Checked {
    ensure!(s != AUGUR_OK, "{call}: expected a failure");
    ensure!(
        (AUGUR_E_NULL_POINTER..=AUGUR_E_OUT_OF_MEMORY).contains(&s),
        "{call}: status {s} is not an augur_status"
    );
    ensure!(
        s != AUGUR_E_PANIC && s != AUGUR_E_POISONED,
        "{call}: {s} (a panic inside augur)"
    );
    // SAFETY: a static NUL-terminated string.
    let text = unsafe { CStr::from_ptr(augur_status_str(s)) };
    ensure!(
        text.to_bytes() != b"unknown status",
        "{call}: status {s} has no text"
    );
    if !engine.is_null() {
        // SAFETY: `engine` is live or NULL; the message is NUL-terminated.
        let msg = unsafe { CStr::from_ptr(augur_engine_last_error(engine)) };
        ensure!(!msg.to_bytes().is_empty(), "{call}: {s} without a message");
    }
    Ok(())
}

/// `check_failure` unless `s` is OK.
fn check_status(engine: *const augur_engine, call: &str, s: augur_status) -> Checked {
    if s == AUGUR_OK {
        Ok(())
    } else {
        check_failure(engine, call, s)
    }
}

fn config(b: &mut Bytes<'_>) -> augur_config {
    let block_size = match b.byte() % 16 {
        0..=2 => 1,
        3..=5 => 2,
        6..=9 => 4,
        10..=13 => 16,
        14 => b.u32(),
        _ => b.range(0, 64),
    };
    let mut c = MaybeUninit::uninit();
    // SAFETY: `c` is writable; written on success, which the defaults always are.
    let c = unsafe {
        let s = augur_config_default(c.as_mut_ptr(), block_size, b.range(1, 64), b.range(1, 24));
        assert_eq!(s, AUGUR_OK, "augur_config_default");
        c.assume_init()
    };
    let mut c = c;
    c.host_blocks = b.range(0, 24);
    c.max_running = b.range(1, c.max_requests.min(12));
    c.token_budget = b.range(1, 300);
    c.prefill_chunk = b.range(0, 64);
    c.preemption = b.range(0, 2);
    c.pause = b.range(0, 3);
    c.admission = b.range(0, 1);
    c.policy.kind = b.range(0, AUGUR_POLICY_TRAIL_TIME);
    if matches!(
        c.policy.kind,
        AUGUR_POLICY_SPRPT_TIME | AUGUR_POLICY_TRAIL_TIME
    ) {
        c.policy.time_prefill_us_per_token = f64::from(b.range(0, 100)) / 10.0;
        c.policy.time_decode_us_per_token = f64::from(b.range(0, 100)) / 10.0;
        c.policy.time_context_us_per_token = f64::from(b.range(0, 10)) / 100.0;
    }
    c.policy.fair_share = u32::from(b.chance(40));
    c.max_draft_tokens = b.range(0, 3);
    c.hash_capacity = b.range(0, 64);
    c.kv_event_capacity = if b.bool() { b.range(1, 24) } else { 0 };
    c.prefix_caching = u32::from(b.bool());
    c.max_preemptions_per_step = b.range(1, 4);
    // Now and then a field no valid configuration has.
    if b.chance(48) {
        let v = b.u32();
        match b.byte() % 14 {
            0 => c.block_size = v,
            1 => c.device_blocks = v,
            2 => c.max_requests = v,
            3 => c.preemption = v,
            4 => c.pause = v,
            5 => c.admission = v,
            6 => c.policy.kind = v,
            7 => c.policy.overrun = v,
            8 => c.watermark = b.float(),
            9 => c.policy.aging_per_s = b.float(),
            10 => c.max_draft_tokens = v,
            11 => c.max_sequence_tokens = v,
            12 => c.reserved = v,
            _ => c.priority_margin = b.float(),
        }
    }
    c
}

/// Region memory aligned for any engine (`augur_engine_layout`'s alignment is at most this).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Unit([u8; 64]);

/// What the host knows of one live request.
struct Known {
    handle: augur_request,
    /// The block table as built from plan deltas; `None` once the host must forget it
    /// (preempted, or its KV left the device).
    mirror: Option<Vec<u32>>,
    paused: bool,
}

struct Host {
    engine: *mut augur_engine,
    cfg: augur_config,
    live: HashMap<u64, Known>,
    /// Handles of requests that finished, were aborted or dropped: never valid again.
    dead: Vec<augur_request>,
    /// The outstanding plan's entries, until `complete` accepts their results or every one
    /// of their requests is aborted (then nothing is outstanding).
    pending: Option<Vec<augur_plan_entry>>,
    /// The last plan's requests were all aborted: how `complete` treats its results is not
    /// the harness's to say.
    orphaned: bool,
    now: u64,
    /// The latest time a call was accepted at: earlier times may be refused.
    latest: u64,
    /// The KV-event subscriber's view, replayed from drained events alone.
    events: EventReplay,
    reached: Reached,
}

/// What a router keeps of one engine's prefix cache: the hash each (tier, block) caches, and
/// the sequence number the next event must carry.
#[derive(Default)]
struct EventReplay {
    cached: HashMap<(u32, u32), u64>,
    next_seq: u64,
}

/// Runs one decoded sequence; `Err` names the broken contract.
pub fn run(data: &[u8], limits: &Limits) -> Result<Reached, String> {
    let mut reached = Reached::default();
    run_into(data, limits, &mut reached)?;
    Ok(reached)
}

fn run_into(data: &[u8], limits: &Limits, reached: &mut Reached) -> Checked {
    let mut b = Bytes::new(data);
    let cfg = config(&mut b);

    let mut reason = [0x55 as c_char; 64];
    let reason_len = b.range(0, 64) as usize;
    // SAFETY: `reason` holds `reason_len` bytes.
    let valid = unsafe { augur_config_validate(&cfg, reason.as_mut_ptr(), reason_len) };
    let (mut size, mut align) = (usize::MAX, usize::MAX);
    // SAFETY: valid pointers.
    let layout = unsafe { augur_engine_layout(&cfg, &mut size, &mut align) };
    if valid != AUGUR_OK {
        check_failure(null(), "augur_config_validate", valid)?;
        ensure!(
            valid == AUGUR_E_INVALID_CONFIG,
            "validate: {valid} for a config"
        );
        ensure!(layout == valid, "layout says {layout}, validate {valid}");
        ensure!(
            size == usize::MAX && align == usize::MAX,
            "layout wrote on failure"
        );
        if reason_len > 0 {
            let nul = reason[..reason_len].iter().position(|&c| c == 0);
            ensure!(nul.is_some(), "reason not NUL-terminated in {reason_len}");
            ensure!(
                reason_len == 1 || nul > Some(0),
                "empty reason in {reason_len} bytes"
            );
        }
        let mut e = core::ptr::without_provenance_mut::<augur_engine>(1);
        // SAFETY: valid pointers.
        let s = unsafe { augur_engine_new(&cfg, &mut e) };
        ensure!(
            s == valid,
            "engine_new gives {s} where validate gave {valid}"
        );
        ensure!(e.addr() == 1, "engine_new wrote on failure");
        reached.invalid_configs += 1;
        return Ok(());
    }
    ensure!(
        reason.iter().all(|&c| c == 0x55),
        "validate wrote a reason on success"
    );
    ensure!(layout == AUGUR_OK, "layout {layout} for a valid config");
    ensure!(align.is_power_of_two() && align <= 64, "alignment {align}");
    if size > limits.max_region_bytes {
        return Ok(());
    }

    let mut region: Vec<Unit> = Vec::new();
    let mut engine = null_mut();
    if b.bool() {
        region = vec![Unit([0xa5; 64]); size.div_ceil(64) + 1];
        let base = region.as_mut_ptr().cast::<u8>();
        // A region one byte short, then one misaligned by a byte: refused, nothing written.
        let mut e = core::ptr::without_provenance_mut::<augur_engine>(1);
        // SAFETY: `base` has `size` bytes (and more).
        let s = unsafe { augur_engine_init(&cfg, base.cast::<c_void>(), size - 1, &mut e) };
        ensure!(
            s == AUGUR_E_REGION_TOO_SMALL && e.addr() == 1,
            "short region: {s}"
        );
        if align > 1 {
            // SAFETY: `base + 1` has `size` bytes within the allocation.
            let s = unsafe { augur_engine_init(&cfg, base.add(1).cast::<c_void>(), size, &mut e) };
            ensure!(
                s == AUGUR_E_REGION_MISALIGNED && e.addr() == 1,
                "misaligned region: {s}"
            );
        }
        // SAFETY: `base` holds `size` bytes, aligned to 64, until the engine is freed below.
        let s = unsafe { augur_engine_init(&cfg, base.cast::<c_void>(), size, &mut engine) };
        ensure!(s == AUGUR_OK, "init in a region of its layout: {s}");
        reached.region_engines += 1;
    } else {
        // SAFETY: valid pointers.
        let s = unsafe { augur_engine_new(&cfg, &mut engine) };
        ensure!(s == AUGUR_OK, "engine_new for a valid config: {s}");
        reached.owned_engines += 1;
    }
    ensure!(!engine.is_null(), "a NULL engine on success");

    let mut host = Host {
        engine,
        cfg,
        live: HashMap::new(),
        dead: Vec::new(),
        pending: None,
        orphaned: false,
        now: 0,
        latest: 0,
        events: EventReplay::default(),
        reached: Reached::default(),
    };
    let outcome = (|| {
        for _ in 0..limits.max_ops {
            if b.exhausted() {
                break;
            }
            host.op(&mut b)?;
        }
        Ok(())
    })();
    // SAFETY: the engine is live; freed once (a region engine gives its region back).
    unsafe { augur_engine_free(host.engine) };
    let r = host.reached;
    reached.added += r.added;
    reached.plans += r.plans;
    reached.preempted += r.preempted;
    reached.swapped_blocks += r.swapped_blocks;
    reached.finished += r.finished;
    reached.resumed += r.resumed;
    reached.drafts += r.drafts;
    reached.sparse_completes += r.sparse_completes;
    reached.refused_results += r.refused_results;
    reached.mirror_checks += r.mirror_checks;
    reached.kv_events += r.kv_events;
    drop(region);
    outcome
}

impl Host {
    /// The time of the next call: usually later, now and then earlier than the last one.
    fn time(&mut self, b: &mut Bytes<'_>) -> u64 {
        if b.chance(8) {
            self.now.saturating_sub(u64::from(b.range(1, 1000)))
        } else {
            self.now = self.now.saturating_add(u64::from(b.range(0, 2000)));
            self.now
        }
    }

    /// A time-taking call returned `s` at `t`: it may refuse a time before the latest one.
    fn note_time(&mut self, call: &str, s: augur_status, t: u64) -> Checked {
        if s == AUGUR_OK {
            self.latest = self.latest.max(t);
        } else if s == AUGUR_E_TIME_WENT_BACKWARDS {
            ensure!(
                t < self.latest,
                "{call}: time {t} refused as backwards, latest {}",
                self.latest
            );
        }
        Ok(())
    }

    /// A handle to call with: live, stale, forged or zero.
    fn pick(&self, b: &mut Bytes<'_>) -> (augur_request, Option<u64>) {
        let k = b.byte();
        if k < 170 && !self.live.is_empty() {
            let i = usize::from(b.byte()) % self.live.len();
            let (&id, r) = self.live.iter().nth(i).unwrap_or_else(|| unreachable!());
            return (r.handle, Some(id));
        }
        if k < 220 && !self.dead.is_empty() {
            return (self.dead[usize::from(b.byte()) % self.dead.len()], None);
        }
        let forged = if b.bool() { 0 } else { b.u64() };
        // A forged value can equal a live handle (the fuzzer finds the first handle the
        // engine hands out); it then names that request, and the engine is right to act on it.
        let owner = self
            .live
            .iter()
            .find(|(_, r)| r.handle == forged)
            .map(|(&id, _)| id);
        (forged, owner)
    }

    fn forget(&mut self, handle: augur_request, id: u64) -> Checked {
        if let Some(p) = &self.pending
            && p.iter().all(|en| {
                en.handle == handle
                    || self
                        .live
                        .get(&en.external_id)
                        .is_none_or(|k| k.handle != en.handle)
            })
        {
            self.pending = None;
            self.orphaned = true;
        }
        let known = self.live.remove(&id);
        ensure!(
            known.as_ref().is_some_and(|k| k.handle == handle),
            "request {id} ended but the host did not know it live"
        );
        self.dead.push(handle);
        Ok(())
    }

    fn op(&mut self, b: &mut Bytes<'_>) -> Checked {
        let e = self.engine;
        match b.byte() % 16 {
            0..=2 => self.add(b),
            3 => {
                let id = u64::from(b.range(0, 40));
                let mut h = u64::MAX;
                // SAFETY: valid pointers.
                let s = unsafe { augur_find_request(e, id, &mut h) };
                match self.live.get(&id) {
                    Some(k) => ensure!(s == AUGUR_OK && h == k.handle, "find {id}: {s}"),
                    None => {
                        ensure!(s == AUGUR_E_UNKNOWN_ID && h == u64::MAX, "find {id}: {s}");
                        check_failure(e, "find", s)?;
                    }
                }
                Ok(())
            }
            4 => {
                let (h, id) = self.pick(b);
                let (p, t) = (b.float(), self.time(b));
                // SAFETY: `e` is live.
                let s = unsafe { augur_update_prediction(e, h, p, t) };
                self.note_time("update_prediction", s, t)?;
                ensure!(
                    id.is_some() || s != AUGUR_OK,
                    "update of a dead handle {h:#x}"
                );
                check_status(e, "update_prediction", s)
            }
            5 => {
                let (h, id) = self.pick(b);
                let hashes: Vec<u64> = (0..b.range(0, 6)).map(|_| b.u64()).collect();
                let t = self.time(b);
                let p = if hashes.is_empty() && b.bool() {
                    null()
                } else {
                    hashes.as_ptr()
                };
                // SAFETY: `p` is NULL (length 0) or holds `hashes.len()` values.
                let s = unsafe { augur_set_prompt_block_hashes(e, h, p, hashes.len(), t) };
                self.note_time("set_prompt_block_hashes", s, t)?;
                ensure!(id.is_some() || s != AUGUR_OK, "hashes for a dead handle");
                check_status(e, "set_prompt_block_hashes", s)
            }
            6 => {
                let (h, id) = self.pick(b);
                let t = self.time(b);
                // SAFETY: `e` is live.
                let s = unsafe { augur_abort(e, h, t) };
                self.note_time("abort", s, t)?;
                match id {
                    Some(id) if s == AUGUR_OK => self.forget(h, id),
                    _ => {
                        ensure!(s != AUGUR_OK, "abort of a dead handle {h:#x}");
                        check_failure(e, "abort", s)
                    }
                }
            }
            7 => {
                let (h, id) = self.pick(b);
                let (n, t) = (b.range(0, 8), self.time(b));
                // SAFETY: `e` is live.
                let s = unsafe { augur_resume(e, h, n, t) };
                self.note_time("resume", s, t)?;
                if s == AUGUR_OK {
                    let k = id.and_then(|id| self.live.get_mut(&id));
                    ensure!(
                        k.as_ref().is_some_and(|k| k.paused),
                        "resume accepted for a request that is not paused"
                    );
                    if let Some(k) = k {
                        k.paused = false;
                    }
                    self.reached.resumed += 1;
                    Ok(())
                } else {
                    check_failure(e, "resume", s)
                }
            }
            8..=10 => self.schedule(b),
            11..=13 => self.complete(b),
            14 if b.bool() => self.short_table(b),
            14 => self.drain_events(b),
            _ => self.bad_engine_calls(b),
        }
    }

    fn add(&mut self, b: &mut Bytes<'_>) -> Checked {
        let e = self.engine;
        let bs = self.cfg.block_size.min(64);
        let prompt = if b.chance(8) {
            b.u32()
        } else {
            b.range(0, 4 * bs + 8)
        };
        // Hashes for the prompt's full blocks (a few chains, so prefixes are shared), now and
        // then one too many.
        let full = (prompt / self.cfg.block_size.max(1)).min(6) + u32::from(b.chance(12));
        let chain = u64::from(b.range(0, 2));
        let hashes: Vec<u64> = (0..b.range(0, full))
            .map(|j| chain * 100 + u64::from(j))
            .collect();
        let mut d = augur_request_desc {
            external_id: u64::from(b.range(0, 40)),
            flags: (b.range(0, 15) | (AUGUR_DESC_PREDICTION * u32::from(b.chance(200))))
                | if b.chance(6) { 1 << b.range(4, 31) } else { 0 },
            prompt_tokens: prompt,
            max_output_tokens: b.range(0, 40),
            priority: b.range(0, 6) as i32 - 3,
            predicted_output_tokens: b.float(),
            deadline_us: u64::from(b.u32()),
            ttft_target_us: u64::from(b.range(0, 100_000)),
            tenant: if b.chance(8) {
                b.u32()
            } else {
                b.range(0, self.cfg.max_tenants.saturating_sub(1))
            },
            reserved: u32::from(b.chance(6)),
            cache_salt: u64::from(b.range(0, 2)),
            prompt_block_hashes: null(),
            prompt_block_hashes_len: 0,
        };
        if !hashes.is_empty() {
            d.prompt_block_hashes = hashes.as_ptr();
            d.prompt_block_hashes_len = hashes.len();
        }
        let t = self.time(b);
        let mut h = u64::MAX;
        let s = match b.byte() {
            // SAFETY: NULL pointers are what is being tested.
            0..=5 => unsafe { augur_add_request(e, null(), t, &mut h) },
            // SAFETY: as above.
            6..=11 => unsafe { augur_add_request(e, &d, t, null_mut()) },
            // SAFETY: valid pointers; the hashes outlive the call.
            _ => unsafe { augur_add_request(e, &d, t, &mut h) },
        };
        self.note_time("add_request", s, t)?;
        if s != AUGUR_OK {
            ensure!(
                h == u64::MAX,
                "add_request wrote its handle on failure ({s})"
            );
            return check_failure(e, "add_request", s);
        }
        ensure!(
            !self.live.contains_key(&d.external_id),
            "add_request accepted duplicate id {}",
            d.external_id
        );
        ensure!(
            !self.dead.contains(&h),
            "add_request reissued handle {h:#x}"
        );
        self.reached.added += 1;
        self.live.insert(
            d.external_id,
            Known {
                handle: h,
                mirror: None,
                paused: false,
            },
        );
        Ok(())
    }

    fn schedule(&mut self, b: &mut Bytes<'_>) -> Checked {
        let e = self.engine;
        let t = self.time(b);
        let mut p = MaybeUninit::<augur_plan>::new(plan_sentinel());
        // SAFETY: valid pointers.
        let s = unsafe { augur_schedule(e, t, p.as_mut_ptr()) };
        self.note_time("schedule", s, t)?;
        if s != AUGUR_OK {
            check_failure(e, "schedule", s)?;
            // SAFETY: initialised with the sentinel.
            let untouched = unsafe { p.assume_init() }.step == u64::MAX;
            ensure!(untouched, "schedule wrote on failure");
            ensure!(
                s == AUGUR_E_RESULTS_PENDING || s == AUGUR_E_TIME_WENT_BACKWARDS,
                "schedule: {s}"
            );
            ensure!(
                (s == AUGUR_E_RESULTS_PENDING) == self.pending.is_some() || t < self.latest,
                "schedule: {s} with pending={}",
                self.pending.is_some()
            );
            return Ok(());
        }
        ensure!(
            self.pending.is_none(),
            "schedule accepted with results pending"
        );
        self.orphaned = false;
        // SAFETY: written on success.
        let plan = unsafe { p.assume_init() };
        let mut again = MaybeUninit::<augur_plan>::uninit();
        // SAFETY: valid pointers.
        let s = unsafe { augur_last_plan(e, again.as_mut_ptr()) };
        ensure!(s == AUGUR_OK, "last_plan: {s}");
        // SAFETY: written on success.
        let again = unsafe { again.assume_init() };
        ensure!(
            again.entries == plan.entries && again.entries_len == plan.entries_len,
            "last_plan differs from the plan"
        );
        // SAFETY: the plan's arrays, valid until the next changing call.
        let (entries, blocks, preempted, dropped, swaps) = unsafe {
            (
                view(plan.entries, plan.entries_len),
                view(plan.blocks, plan.blocks_len),
                view(plan.preempted, plan.preempted_len),
                view(plan.dropped, plan.dropped_len),
                [
                    (view(plan.swap_out, plan.swap_out_len), (true, false)),
                    (view(plan.swap_in, plan.swap_in_len), (false, true)),
                    (view(plan.copies, plan.copies_len), (true, true)),
                ],
            )
        };
        let (dev, hostb) = (self.cfg.device_blocks, self.cfg.host_blocks);
        for (pairs, (src_dev, dst_dev)) in swaps {
            for pr in pairs {
                let (sl, dl) = (
                    if src_dev { dev } else { hostb },
                    if dst_dev { dev } else { hostb },
                );
                ensure!(
                    pr.src < sl && pr.dst < dl,
                    "block pair {}>{} out of its tier",
                    pr.src,
                    pr.dst
                );
            }
        }
        self.reached.preempted += preempted.len() as u64;
        self.reached.swapped_blocks += (plan.swap_out_len + plan.swap_in_len) as u64;
        self.reached.plans += u64::from(!entries.is_empty());
        for x in preempted {
            let k = self.live.get_mut(&x.external_id);
            ensure!(
                k.as_ref().is_some_and(|k| k.handle == x.handle),
                "preempted {} unknown",
                x.external_id
            );
            if let Some(k) = k {
                k.mirror = None;
            }
        }
        for x in dropped {
            self.forget(x.handle, x.external_id)?;
        }
        ensure!(
            entries.len() <= self.cfg.max_running as usize,
            "{} entries over max_running {}",
            entries.len(),
            self.cfg.max_running
        );
        let tokens: u64 = entries.iter().map(|x| u64::from(x.tokens)).sum();
        ensure!(
            tokens <= u64::from(self.cfg.token_budget),
            "{tokens} tokens over the budget"
        );
        for (i, en) in entries.iter().enumerate() {
            ensure!(
                entries[..i].iter().all(|o| o.handle != en.handle),
                "request {} twice in one plan",
                en.external_id
            );
            ensure!(en.tokens >= 1, "an entry of 0 tokens");
            let k = self.live.get_mut(&en.external_id);
            ensure!(
                k.as_ref()
                    .is_some_and(|k| k.handle == en.handle && !k.paused),
                "entry for {} which is not live and unpaused",
                en.external_id
            );
            let Some(k) = k else { unreachable!() };
            let mirror = k.mirror.get_or_insert_with(Vec::new);
            ensure!(
                en.table_start as usize <= mirror.len(),
                "table_start {} beyond the mirror's {}",
                en.table_start,
                mirror.len()
            );
            let delta = blocks
                .get(en.blocks_offset as usize..)
                .and_then(|d| d.get(..en.blocks_len as usize));
            ensure!(
                delta.is_some(),
                "entry blocks outside the plan's block array"
            );
            let delta = delta.unwrap_or_default();
            ensure!(
                delta.iter().all(|&x| x < dev),
                "a delta block outside the device"
            );
            mirror.truncate(en.table_start as usize);
            mirror.extend_from_slice(delta);
            let covered = mirror.len() as u64 * u64::from(self.cfg.block_size);
            ensure!(
                covered >= u64::from(en.computed_before) + u64::from(en.tokens),
                "{} blocks do not cover the entry's tokens",
                mirror.len()
            );
        }
        // A plan without entries leaves nothing to report.
        self.pending = (!entries.is_empty()).then(|| entries.to_vec());
        Ok(())
    }

    fn complete(&mut self, b: &mut Bytes<'_>) -> Checked {
        let e = self.engine;
        let t = self.time(b);
        let Some(entries) = self.pending.clone() else {
            // Nothing outstanding: results for no plan are refused.
            let r = [result(1, 0)];
            let n = usize::from(b.bool());
            // SAFETY: `r` holds `n <= 1` results.
            let s = unsafe { augur_complete(e, r.as_ptr(), n, t) };
            self.note_time("complete", s, t)?;
            ensure!(
                n == 0 || s != AUGUR_OK || self.orphaned,
                "complete accepted with no plan"
            );
            return check_status(e, "complete", s);
        };
        let draft = self.cfg.max_draft_tokens;
        let bs = u64::from(self.cfg.block_size);
        let mut results: Vec<augur_entry_result> = entries
            .iter()
            .map(|en| {
                if !en.samples {
                    return result(0, 0);
                }
                let mut r = result(1, 0);
                match b.byte() % 8 {
                    0 => r.flags = AUGUR_RESULT_FINISHED,
                    1 => {
                        r.flags = AUGUR_RESULT_PAUSE;
                        r.pause_duration_us = u64::from(b.range(0, 5000));
                    }
                    _ => {}
                }
                let cb = u64::from(en.computed_before);
                if (cb + u64::from(en.tokens)) / bs > cb / bs && b.bool() {
                    r.flags |= AUGUR_RESULT_FILLED_BLOCK_HASH;
                    r.filled_block_hash = u64::from(b.range(0, 8));
                }
                r
            })
            .collect();
        // Accepted drafts: more than one token may be past the request's output cap, which
        // is refused as too many tokens; then the step completes with one.
        let drafted = draft > 0 && !results.is_empty() && b.chance(60);
        if drafted {
            let i = usize::from(b.byte()) % results.len();
            if entries[i].samples {
                results[i].tokens = b.range(1, draft + 1);
            }
        }
        // Now and then a malformed batch first: refused (with its status where it is certain),
        // and the plan stays outstanding for the well-formed one.
        let mut bad = results.clone();
        // Positions of requests aborted since the plan are ignored: corrupt a live one.
        let live_positions: Vec<usize> = (0..entries.len())
            .filter(|&i| {
                self.live
                    .get(&entries[i].external_id)
                    .is_some_and(|k| k.handle == entries[i].handle)
            })
            .collect();
        let any_live = !live_positions.is_empty();
        let live_at =
            |b: &mut Bytes<'_>| live_positions[usize::from(b.byte()) % live_positions.len()];
        let refusal = match b.byte() % 8 {
            0 if !bad.is_empty() => {
                bad.pop();
                Some(Some(AUGUR_E_RESULT_COUNT))
            }
            1 => {
                bad.push(result(1, 0));
                Some(Some(AUGUR_E_RESULT_COUNT))
            }
            2 if any_live => {
                let i = live_at(b);
                bad[i].flags |= 1 << b.range(3, 31);
                Some(Some(AUGUR_E_INVALID_RESULT))
            }
            3 if any_live => {
                let i = live_at(b);
                bad[i].tokens = bad[i].tokens.saturating_add(draft + 1);
                Some(None)
            }
            _ => None,
        };
        if let Some(want) = refusal {
            // SAFETY: `bad` holds its length.
            let s = unsafe { augur_complete(e, bad.as_ptr(), bad.len(), t) };
            self.note_time("complete", s, t)?;
            check_failure(e, "complete (bad results)", s)?;
            self.reached.refused_results += 1;
            if let Some(want) = want
                && s != AUGUR_E_TIME_WENT_BACKWARDS
            {
                ensure!(s == want, "complete (bad results): {s}, expected {want}");
            }
        }
        // The well-formed results, as one per entry or, half the time, sparsely: only the
        // entries whose result is not the default, last entry first.
        let sparse = b.bool();
        let report = |results: &[augur_entry_result]| {
            if sparse {
                let exceptions = sparse_results(&entries, results);
                // SAFETY: `exceptions` holds its length.
                unsafe { augur_complete_except(e, exceptions.as_ptr(), exceptions.len(), t) }
            } else {
                // SAFETY: `results` holds its length.
                unsafe { augur_complete(e, results.as_ptr(), results.len(), t) }
            }
        };
        let mut s = report(&results);
        self.note_time("complete", s, t)?;
        if s == AUGUR_E_TIME_WENT_BACKWARDS {
            return Ok(());
        }
        if s != AUGUR_OK && drafted {
            check_failure(e, "complete (drafts)", s)?;
            ensure!(
                s == AUGUR_E_TOO_MANY_TOKENS || s == AUGUR_E_INVALID_RESULT,
                "complete with drafts: {s}"
            );
            for r in &mut results {
                r.tokens = r.tokens.min(1);
            }
            s = report(&results);
            self.note_time("complete", s, t)?;
        }
        if s != AUGUR_OK {
            // SAFETY: NUL-terminated.
            let msg = unsafe { CStr::from_ptr(augur_engine_last_error(e)) };
            return Err(format!("complete refused well-formed results: {s} {msg:?}"));
        }
        self.pending = None;
        self.reached.drafts += u64::from(results.iter().any(|r| r.tokens > 1));
        self.reached.sparse_completes += u64::from(sparse);
        self.after_step()
    }

    /// After a completed step: the finished leave, and every mirror equals the engine's table.
    fn after_step(&mut self) -> Checked {
        let e = self.engine;
        let (mut fin, mut n) = (null(), usize::MAX);
        // SAFETY: valid pointers.
        let s = unsafe { augur_last_finished(e, &mut fin, &mut n) };
        ensure!(s == AUGUR_OK, "last_finished: {s}");
        // SAFETY: the engine's array, valid until the next changing call.
        for f in unsafe { view(fin, n) }.to_vec() {
            self.forget(f.handle, f.external_id)?;
            self.reached.finished += 1;
        }
        let mut buf = vec![0u32; self.cfg.device_blocks.max(self.cfg.host_blocks) as usize + 1];
        for (&id, k) in &mut self.live {
            let mut info = augur_request_info::default();
            // SAFETY: valid pointers.
            let s = unsafe { augur_request_get_info(e, k.handle, &mut info) };
            ensure!(s == AUGUR_OK, "get_info of live {id}: {s}");
            k.paused = info.state == AUGUR_STATE_PAUSED;
            if info.state == AUGUR_STATE_RUNNING {
                ensure!(
                    k.mirror.is_some(),
                    "running request {id} was never in a plan"
                );
            } else if info.kv_tier != AUGUR_TIER_DEVICE {
                k.mirror = None;
            }
            let Some(m) = &k.mirror else { continue };
            for by_id in [false, true] {
                let mut w = usize::MAX;
                // SAFETY: `buf` holds `buf.len()` ids.
                let s = unsafe {
                    if by_id {
                        augur_request_block_table_by_id(
                            e,
                            id,
                            0,
                            buf.as_mut_ptr(),
                            buf.len(),
                            &mut w,
                        )
                    } else {
                        augur_request_block_table(
                            e,
                            k.handle,
                            0,
                            buf.as_mut_ptr(),
                            buf.len(),
                            &mut w,
                        )
                    }
                };
                ensure!(s == AUGUR_OK, "block_table of {id}: {s}");
                self.reached.mirror_checks += 1;
                ensure!(
                    buf.get(..w) == Some(&m[..]),
                    "request {id}: mirror {m:?}, engine {:?}",
                    buf.get(..w)
                );
            }
        }
        let mut st = MaybeUninit::<augur_stats>::uninit();
        // SAFETY: valid pointers.
        let s = unsafe { augur_engine_stats(e, st.as_mut_ptr()) };
        ensure!(s == AUGUR_OK, "stats: {s}");
        // SAFETY: written on success.
        let st = unsafe { st.assume_init() };
        let counted = u64::from(st.waiting)
            + u64::from(st.running)
            + u64::from(st.swapped)
            + u64::from(st.paused);
        ensure!(
            counted == self.live.len() as u64,
            "stats count {counted} live requests, the host {}",
            self.live.len()
        );
        Ok(())
    }

    /// A block table into a buffer one entry short: refused, nothing written.
    /// Drains KV events into a buffer of random size and replays them: sequence numbers
    /// without gaps, a block stored only while not cached, removed only while cached with the
    /// same hash, every block in its pool; nothing at all with events off.
    fn drain_events(&mut self, b: &mut Bytes<'_>) -> Checked {
        let e = self.engine;
        let cap = b.range(0, 8) as usize;
        let mut buf = vec![augur_kv_event::default(); cap];
        let mut n = usize::MAX;
        let out = if cap == 0 && b.bool() {
            core::ptr::null_mut()
        } else {
            buf.as_mut_ptr()
        };
        // SAFETY: `out` is NULL with `cap` 0, or holds `cap` events.
        let s = unsafe { augur_drain_kv_events(e, out, cap, &mut n) };
        check_status(e, "drain_kv_events", s)?;
        if s != AUGUR_OK {
            return Ok(());
        }
        ensure!(n <= cap, "drained {n} events into room for {cap}");
        ensure!(
            n == 0 || self.cfg.kv_event_capacity > 0,
            "events drained with events off"
        );
        let bs = self.cfg.block_size;
        for ev in &buf[..n] {
            let r = &mut self.events;
            ensure!(
                ev.seq == r.next_seq,
                "event seq {} where {} was due",
                ev.seq,
                r.next_seq
            );
            r.next_seq += 1;
            self.reached.kv_events += 1;
            if ev.kind == AUGUR_KV_EVENT_ALL_CLEARED {
                r.cached.clear();
                continue;
            }
            let pool = match ev.tier {
                AUGUR_TIER_DEVICE => self.cfg.device_blocks,
                AUGUR_TIER_HOST => self.cfg.host_blocks,
                t => return Err(format!("event tier {t}: {ev:?}")),
            };
            ensure!(ev.block < pool, "event block outside its pool: {ev:?}");
            let key = (ev.tier, ev.block);
            match ev.kind {
                AUGUR_KV_EVENT_STORED => {
                    ensure!(
                        ev.tokens == bs && ev.block_size == bs,
                        "stored block not full: {ev:?}"
                    );
                    let before = r.cached.insert(key, ev.hash);
                    ensure!(before.is_none(), "stored a block already cached: {ev:?}");
                }
                AUGUR_KV_EVENT_REMOVED => {
                    let before = r.cached.remove(&key);
                    ensure!(
                        before == Some(ev.hash),
                        "removed {ev:?}, which the replay holds as {before:?}"
                    );
                }
                k => return Err(format!("event kind {k}: {ev:?}")),
            }
        }
        let mut st = augur_kv_event_stats::default();
        // SAFETY: valid pointers.
        let s = unsafe { augur_engine_kv_event_stats(e, &mut st) };
        ensure!(s == AUGUR_OK, "kv event stats: {s}");
        ensure!(
            st.delivered == self.events.next_seq,
            "stats say {} events delivered, the host got {}",
            st.delivered,
            self.events.next_seq
        );
        Ok(())
    }

    fn short_table(&mut self, b: &mut Bytes<'_>) -> Checked {
        let e = self.engine;
        let (h, _) = self.pick(b);
        let mut info = augur_request_info::default();
        // SAFETY: valid pointers.
        if unsafe { augur_request_get_info(e, h, &mut info) } != AUGUR_OK || info.kv_blocks == 0 {
            return Ok(());
        }
        let start = b.range(0, info.kv_blocks - 1);
        let cap = (info.kv_blocks - start - 1) as usize;
        let mut buf = vec![u32::MAX; cap + 1];
        let mut w = usize::MAX;
        // SAFETY: `buf` holds at least `cap` ids.
        let s = unsafe { augur_request_block_table(e, h, start, buf.as_mut_ptr(), cap, &mut w) };
        ensure!(s == AUGUR_E_BUFFER_TOO_SMALL, "short table buffer: {s}");
        ensure!(
            w == usize::MAX && buf.iter().all(|&x| x == u32::MAX),
            "short table buffer written"
        );
        check_failure(e, "block_table", s)
    }

    /// NULL and forged engine pointers, and NULL out-parameters: refused, the engine usable.
    fn bad_engine_calls(&mut self, b: &mut Bytes<'_>) -> Checked {
        // Memory the size of an engine header with arbitrary contents, never an engine.
        let mut forged = [0u64; 32];
        for w in &mut forged {
            *w = b.u64();
        }
        // Never the live tag in the first word (the fuzzer finds the constant): the tag is
        // odd (a const assertion in engine.rs), so an even word is never it. Memory that
        // carries the tag is indistinguishable from an engine by design.
        forged[0] &= !1;
        let forged = forged.as_mut_ptr().cast::<augur_engine>();
        let mut stats = MaybeUninit::<augur_stats>::uninit();
        for (what, engine) in [("NULL", null_mut()), ("forged", forged)] {
            // SAFETY: `engine` is NULL or readable memory that is not an engine: both checked.
            let s = unsafe { augur_engine_stats(engine, stats.as_mut_ptr()) };
            ensure!(
                s == AUGUR_E_INVALID_ENGINE || s == AUGUR_E_NULL_POINTER,
                "{what} engine: {s}"
            );
            check_failure(null(), "stats", s)?;
            // SAFETY: as above.
            let msg = unsafe { CStr::from_ptr(augur_engine_last_error(engine)) };
            ensure!(!msg.to_bytes().is_empty(), "{what} engine: no message");
        }
        // SAFETY: a live engine, a NULL out-parameter (checked).
        let s = unsafe { augur_engine_stats(self.engine, null_mut()) };
        ensure!(s == AUGUR_E_NULL_POINTER, "NULL stats out: {s}");
        let mut c = MaybeUninit::<augur_config>::uninit();
        // SAFETY: valid pointers.
        let s = unsafe { augur_engine_config(self.engine, c.as_mut_ptr()) };
        ensure!(s == AUGUR_OK, "engine_config: {s}");
        // SAFETY: written on success.
        let c = unsafe { c.assume_init() };
        ensure!(
            c.device_blocks == self.cfg.device_blocks && c.block_size == self.cfg.block_size,
            "engine_config differs from the config it was built with"
        );
        Ok(())
    }
}

fn result(tokens: u32, flags: u32) -> augur_entry_result {
    augur_entry_result {
        tokens,
        flags,
        pause_duration_us: 0,
        filled_block_hash: 0,
    }
}

/// A plan value no engine writes (`step` `u64::MAX`), to see that a failure wrote nothing.
fn plan_sentinel() -> augur_plan {
    augur_plan {
        step: u64::MAX,
        entries: null(),
        entries_len: 0,
        blocks: null(),
        blocks_len: 0,
        swap_out: null(),
        swap_out_len: 0,
        swap_in: null(),
        swap_in_len: 0,
        copies: null(),
        copies_len: 0,
        preempted: null(),
        preempted_len: 0,
        dropped: null(),
        dropped_len: 0,
    }
}

/// # Safety
/// `p` must point to `n` values (or `n` be 0), valid for the returned lifetime.
unsafe fn view<'a, T>(p: *const T, n: usize) -> &'a [T] {
    if n == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { core::slice::from_raw_parts(p, n) }
    }
}

/// The results of `entries` that are not an entry's default (one token where it samples, no
/// flags), as `augur_complete_except` takes them, last entry first.
fn sparse_results(
    entries: &[augur_plan_entry],
    results: &[augur_entry_result],
) -> Vec<augur_entry_exception> {
    entries
        .iter()
        .zip(results)
        .enumerate()
        .rev()
        .filter(|(_, (en, r))| r.flags != 0 || r.tokens != u32::from(en.samples))
        .map(|(k, (_, r))| augur_entry_exception {
            entry: k as u32,
            result: *r,
        })
        .collect()
}
