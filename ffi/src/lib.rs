//! `augur-ffi` (library name `augur`): the C ABI of augur. `include/augur.h` is generated
//! from this crate by a pinned cbindgen (`ffi/cbindgen.toml`) and checked in; CI regenerates
//! it and fails if it differs. `include/augur.hpp` is the C++17 wrapper.
//!
//! The rules every export follows (after rustls-ffi and wasmtime's C API):
//! - One numbered status (`augur_status`, [`status`]); values are never reused.
//! - Out-parameters are written only on success.
//! - NULL, misaligned and stale pointers and handles, and out-of-range sizes are checked
//!   before use ([`ptr`]; request handles carry a generation; engines carry a tag).
//! - Every export runs under `catch_unwind`: a panic (a bug in augur) returns
//!   `AUGUR_E_PANIC` and poisons that engine; it never unwinds into or aborts the host.
//! - One engine is used by one thread at a time; distinct engines are independent.
//! - The plan and the finished list are read in place (`#[repr(C)]` views of the core's
//!   arrays, [`types`]) and stay valid until the next call that changes the engine.

#![deny(missing_docs)]

#[cfg(feature = "cuda")]
pub mod cuda;
mod engine;
mod ptr;
pub mod status;
pub mod types;

use core::ffi::{c_char, c_void};

use augur_core::engine::{
    Engine, EntryException, EntryResult, Plan, RequestDesc, RequestHandle, RequestState,
    RequestView,
};
use augur_core::kv::Tier;
use augur_core::time::Instant;

pub use engine::augur_engine;
use engine::{Fail, fail, fail_from, guarded, guarded_result, with_engine};
use status::*;
use types::*;

/// The version of augur, as in `Cargo.toml`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Major version (equal to `Cargo.toml`; a test checks it).
pub const AUGUR_VERSION_MAJOR: u32 = 0;
/// Minor version.
pub const AUGUR_VERSION_MINOR: u32 = 1;
/// Patch version.
pub const AUGUR_VERSION_PATCH: u32 = 0;

const VERSION_C: &core::ffi::CStr = {
    match core::ffi::CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes())
    {
        Ok(s) => s,
        Err(_) => panic!("the version has a NUL"),
    }
};

/// The library version, e.g. "0.1.0" (a static string).
#[unsafe(no_mangle)]
pub extern "C" fn augur_version() -> *const c_char {
    VERSION_C.as_ptr()
}

/// A static description of `status` ("unknown status" for a value augur does not define).
#[unsafe(no_mangle)]
pub extern "C" fn augur_status_str(status: augur_status) -> *const c_char {
    status_text(status)
}

/// Fills `*out` with the defaults for a pool of `device_blocks` blocks of `block_size` tokens
/// and at most `max_requests` live requests: no host pool, SPRPT, Auto preemption, eager
/// admission, prefix caching on (the Rust `EngineConfig::new`). Does not validate.
///
/// # Safety
/// `out` must be NULL or point to writable memory for an `augur_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_config_default(
    out: *mut augur_config,
    block_size: u32,
    device_blocks: u32,
    max_requests: u32,
) -> augur_status {
    guarded(|| {
        let c = augur_core::engine::EngineConfig::new(block_size, device_blocks, max_requests);
        // SAFETY: the caller's contract above.
        match unsafe { ptr::output(out, "out") } {
            Ok(o) => {
                o.write(augur_config::from_core(&c));
                AUGUR_OK
            }
            Err(f) => f.status,
        }
    })
}

/// The core configuration `cfg` describes, checked (kind fields, flags, then every value).
///
/// # Safety
/// `cfg` must be NULL or point to a readable `augur_config`.
unsafe fn config_in(cfg: *const augur_config) -> Result<augur_core::engine::EngineConfig, Fail> {
    // SAFETY: the caller's contract.
    let c = unsafe { ptr::input(cfg, "config") }?;
    let core = c.to_core().map_err(|e| {
        fail(
            ConfigFieldError::STATUS,
            format_args!("invalid engine configuration field `{}`", e.0),
        )
    })?;
    core.validate().map_err(|e| {
        fail(
            AUGUR_E_INVALID_CONFIG,
            format_args!("invalid engine configuration field `{}`", c_field_of(&e)),
        )
    })?;
    Ok(core)
}

/// The `augur_config` field a core validation error is about (the core names its own
/// fields, which differ for the flattened policy and admission parameters).
fn c_field_of(e: &augur_core::engine::EngineConfigError) -> &'static str {
    use augur_core::engine::EngineConfigError as E;
    use augur_core::kv::KvConfigError as K;
    match e {
        E::Field("admission.headroom") => "admission_headroom",
        E::Field("costs.recompute_us_per_token") => "recompute_us_per_token",
        E::Field("costs.swap_us_per_block") => "swap_us_per_block",
        E::Field(name) => name,
        E::Policy(p) => match p.0 {
            "overrun.factor" => "policy.overrun_factor",
            "cutoff" => "policy.trail_cutoff",
            "base_quantum" => "policy.mlfq_base_quantum",
            "growth" => "policy.mlfq_growth",
            "levels" => "policy.mlfq_levels",
            "prefill_weight" => "policy.mlfq_prefill_weight",
            "threshold" => "policy.one_bit_threshold",
            "decode_us_per_token" => "policy.slack_decode_us_per_token",
            "prefill_us_per_token" => "policy.slack_prefill_us_per_token",
            "time.prefill_us_per_token" => "policy.time_prefill_us_per_token",
            "time.decode_us_per_token" => "policy.time_decode_us_per_token",
            "time.context_us_per_token" => "policy.time_context_us_per_token",
            "aging_per_s" => "policy.aging_per_s",
            "fallback_prediction" => "policy.fallback_prediction",
            "default_deadline_us" => "policy.default_deadline_us",
            other => other,
        },
        E::Kv(K::ZeroBlockSize) => "block_size",
        E::Kv(K::ZeroDeviceBlocks) => "device_blocks",
        E::Kv(K::BadMaxSeqs) => "max_requests",
        E::Kv(K::TooLarge) | E::TooLarge => "device_blocks (the storage would not fit in memory)",
        E::Kv(_) => "device_blocks / host_blocks",
    }
}

/// Writes `message` into `buf` (`len` bytes), truncated and NUL-terminated; nothing if `buf`
/// is NULL or `len` is 0.
fn write_message(buf: *mut c_char, len: usize, message: &str) {
    if buf.is_null() || len == 0 {
        return;
    }
    let n = message.len().min(len - 1);
    // SAFETY: the caller of the export passed `buf` as `len` writable bytes; `n < len`.
    unsafe {
        core::ptr::copy_nonoverlapping(message.as_ptr().cast::<c_char>(), buf, n);
        buf.add(n).write(0);
    }
}

/// Checks `*cfg`. On `AUGUR_E_INVALID_CONFIG` (or another failure) and a non-NULL `reason`,
/// writes a NUL-terminated message naming the bad field into `reason` (`reason_len` bytes,
/// truncated); on success `reason` is untouched.
///
/// # Safety
/// `cfg` must be NULL or point to a readable `augur_config`; `reason` must be NULL or point
/// to `reason_len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_config_validate(
    cfg: *const augur_config,
    reason: *mut c_char,
    reason_len: usize,
) -> augur_status {
    guarded(|| {
        // SAFETY: the caller's contract.
        match unsafe { config_in(cfg) } {
            Ok(_) => AUGUR_OK,
            Err(f) => {
                engine::with_staged(|m| write_message(reason, reason_len, m));
                f.status
            }
        }
    })
}

/// The size and alignment of the memory an engine with configuration `*cfg` needs, for
/// `augur_engine_init` (the engine object and all its storage, in one region).
///
/// # Safety
/// `cfg` must be NULL or point to a readable `augur_config`; `size` and `align` must be NULL
/// or point to writable `size_t`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_engine_layout(
    cfg: *const augur_config,
    size: *mut usize,
    align: *mut usize,
) -> augur_status {
    guarded_result(|| {
        // SAFETY: the caller's contract.
        let c = unsafe { config_in(cfg) }?;
        let (s, a) = engine::block_layout(&c)?;
        // SAFETY: the caller's contract.
        let (so, ao) = unsafe { (ptr::output(size, "size")?, ptr::output(align, "align")?) };
        so.write(s);
        ao.write(a);
        Ok(())
    })
}

/// Creates an engine with configuration `*cfg`, allocating its memory once (all of it; no
/// later call allocates). Free it with `augur_engine_free`. On failure `*out` is untouched;
/// the reason is available from `augur_config_validate`.
///
/// # Safety
/// `cfg` must be NULL or point to a readable `augur_config`; `out` must be NULL or point to a
/// writable `augur_engine *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_engine_new(
    cfg: *const augur_config,
    out: *mut *mut augur_engine,
) -> augur_status {
    guarded_result(|| {
        // SAFETY: the caller's contract.
        let c = unsafe { config_in(cfg) }?;
        // SAFETY: the caller's contract.
        let o = unsafe { ptr::output(out, "out") }?;
        o.write(engine::build_owned(c)?);
        Ok(())
    })
}

/// Creates an engine inside `region` (`region_len` bytes, aligned and sized as
/// `augur_engine_layout` says): no allocation at all. The region's contents do not matter;
/// it belongs to the engine until `augur_engine_free`, and must not be touched or freed
/// before. On failure `*out` is untouched.
///
/// # Safety
/// `cfg` must be NULL or point to a readable `augur_config`; `region` must be NULL or point
/// to `region_len` bytes readable and writable until the engine is freed; `out` must be NULL
/// or point to a writable `augur_engine *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_engine_init(
    cfg: *const augur_config,
    region: *mut c_void,
    region_len: usize,
    out: *mut *mut augur_engine,
) -> augur_status {
    guarded_result(|| {
        // SAFETY: the caller's contract.
        let c = unsafe { config_in(cfg) }?;
        // SAFETY: the caller's contract.
        let o = unsafe { ptr::output(out, "out") }?;
        // SAFETY: the caller's contract: the region is ours until free.
        let e = unsafe { engine::build_at(c, region.cast::<u8>(), region_len, None) }?;
        o.write(e);
        Ok(())
    })
}

/// Destroys an engine: frees its memory if `augur_engine_new` allocated it (an
/// `augur_engine_init` region is then the caller's again). NULL, and an engine already
/// freed whose memory is still mapped, are ignored. Every pointer into the engine (plans,
/// finished lists, messages) becomes invalid.
///
/// # Safety
/// `engine` must be NULL or an engine pointer from `augur_engine_new` / `augur_engine_init`
/// (for `augur_engine_new` engines: not freed before).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_engine_free(engine: *mut augur_engine) {
    let _ = guarded(|| {
        engine::free(engine);
        AUGUR_OK
    });
}

/// The message of the most recent call on `engine` that failed ("" if none), NUL-terminated;
/// valid until the next call on `engine`. For a NULL or dead engine, a static message.
///
/// # Safety
/// `engine` must be NULL or a live engine pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_engine_last_error(engine: *const augur_engine) -> *const c_char {
    let mut msg = c"augur panicked reading the last error".as_ptr();
    let _ = guarded(|| {
        msg = engine::last_error_of(engine);
        AUGUR_OK
    });
    msg
}

/// The engine's configuration.
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_engine_config(
    engine: *mut augur_engine,
    out: *mut augur_config,
) -> augur_status {
    with_engine(engine, |e| {
        // SAFETY: the caller's contract.
        let o = unsafe { ptr::output(out, "out") }?;
        o.write(augur_config::from_core(e.engine.config()));
        Ok(())
    })
}

fn time(now_us: u64) -> Instant {
    Instant(now_us)
}

/// Adds a request at time `now_us` (µs on the caller's clock, never decreasing across calls)
/// and writes its handle to `*out`. The hashes are copied; `desc` is not retained.
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `desc` NULL or a readable descriptor
/// whose `prompt_block_hashes` points to `prompt_block_hashes_len` readable `uint64_t`s;
/// `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_add_request(
    engine: *mut augur_engine,
    desc: *const augur_request_desc,
    now_us: u64,
    out: *mut augur_request,
) -> augur_status {
    with_engine(engine, |e| {
        // SAFETY: the caller's contract.
        let d = unsafe { ptr::input(desc, "desc") }?;
        let known = AUGUR_DESC_PREDICTION
            | AUGUR_DESC_DEADLINE
            | AUGUR_DESC_TTFT_TARGET
            | AUGUR_DESC_MAX_OUTPUT;
        if d.flags & !known != 0 {
            return Err(fail(
                AUGUR_E_INVALID_ARGUMENT,
                format_args!("unknown request flag bits {:#x}", d.flags & !known),
            ));
        }
        if d.reserved != 0 {
            return Err(fail(
                AUGUR_E_INVALID_ARGUMENT,
                format_args!("invalid request field `reserved` (must be 0)"),
            ));
        }
        // SAFETY: the caller's contract.
        let hashes = unsafe {
            ptr::slice_in(
                d.prompt_block_hashes,
                d.prompt_block_hashes_len,
                "prompt_block_hashes",
            )
        }?;
        // SAFETY: the caller's contract.
        let o = unsafe { ptr::output(out, "out") }?;
        let has = |f: u32| d.flags & f != 0;
        let rd = RequestDesc {
            external_id: d.external_id,
            prompt_tokens: d.prompt_tokens,
            max_output_tokens: has(AUGUR_DESC_MAX_OUTPUT).then_some(d.max_output_tokens),
            predicted_output_tokens: has(AUGUR_DESC_PREDICTION)
                .then_some(d.predicted_output_tokens),
            priority: d.priority,
            deadline: has(AUGUR_DESC_DEADLINE).then_some(Instant(d.deadline_us)),
            ttft_target_us: has(AUGUR_DESC_TTFT_TARGET).then_some(d.ttft_target_us),
            tenant: d.tenant,
            prompt_block_hashes: hashes,
            cache_salt: d.cache_salt,
        };
        let h = e.engine.add_request(&rd, time(now_us)).map_err(fail_from)?;
        o.write(h.to_raw());
        Ok(())
    })
}

/// The handle of the live request with this external id.
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_find_request(
    engine: *mut augur_engine,
    external_id: u64,
    out: *mut augur_request,
) -> augur_status {
    with_engine(engine, |e| {
        // SAFETY: the caller's contract.
        let o = unsafe { ptr::output(out, "out") }?;
        let h = find(&e.engine, external_id)?;
        o.write(h.to_raw());
        Ok(())
    })
}

fn find(e: &Engine<'_>, external_id: u64) -> Result<RequestHandle, Fail> {
    e.find(external_id).ok_or_else(|| {
        fail(
            AUGUR_E_UNKNOWN_ID,
            format_args!("no live request has external id {external_id}"),
        )
    })
}

/// Replaces the prediction of the request's remaining output tokens (finite, ≥ 0).
///
/// # Safety
/// `engine` must be NULL or a live engine pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_update_prediction(
    engine: *mut augur_engine,
    request: augur_request,
    predicted_remaining: f64,
    now_us: u64,
) -> augur_status {
    with_engine(engine, |e| {
        e.engine
            .update_prediction(
                RequestHandle::from_raw(request),
                predicted_remaining,
                time(now_us),
            )
            .map_err(fail_from)
    })
}

/// Supplies (or replaces) a waiting request's prompt block hashes after
/// `augur_add_request` (for a server that hashes while the request waits): allowed until it
/// first runs (`AUGUR_E_WRONG_STATE` after), at most `prompt_tokens / block_size` hashes
/// (`AUGUR_E_TOO_MANY_TOKENS`). The hashes are copied.
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `hashes` NULL or `len` readable
/// `uint64_t`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_set_prompt_block_hashes(
    engine: *mut augur_engine,
    request: augur_request,
    hashes: *const u64,
    len: usize,
    now_us: u64,
) -> augur_status {
    with_engine(engine, |e| {
        // SAFETY: the caller's contract.
        let hs = unsafe { ptr::slice_in(hashes, len, "hashes") }?;
        e.engine
            .set_prompt_block_hashes(RequestHandle::from_raw(request), hs, time(now_us))
            .map_err(fail_from)
    })
}

/// Removes a request wherever it is and frees its KV; its handle becomes stale.
///
/// # Safety
/// `engine` must be NULL or a live engine pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_abort(
    engine: *mut augur_engine,
    request: augur_request,
    now_us: u64,
) -> augur_status {
    with_engine(engine, |e| {
        e.engine
            .abort(RequestHandle::from_raw(request), time(now_us))
            .map_err(fail_from)
    })
}

/// Ends a request's pause (reported with `AUGUR_RESULT_PAUSE`): its external call returned
/// `appended_tokens` tokens (0 for none), which are prefilled when it runs again.
///
/// # Safety
/// `engine` must be NULL or a live engine pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_resume(
    engine: *mut augur_engine,
    request: augur_request,
    appended_tokens: u32,
    now_us: u64,
) -> augur_status {
    with_engine(engine, |e| {
        e.engine
            .resume_with_tokens(
                RequestHandle::from_raw(request),
                appended_tokens,
                time(now_us),
            )
            .map_err(fail_from)
    })
}

fn raw_parts<T, C>(s: &[T]) -> (*const C, usize) {
    if s.is_empty() {
        (core::ptr::null(), 0)
    } else {
        (s.as_ptr().cast::<C>(), s.len())
    }
}

/// The C view of `p`: pointers into the engine's arrays (the layouts are checked equal in
/// `types`).
fn plan_view(p: &Plan<'_>) -> augur_plan {
    let (entries, entries_len) = raw_parts(p.entries);
    let (blocks, blocks_len) = raw_parts(p.blocks);
    let (swap_out, swap_out_len) = raw_parts(p.swap_out);
    let (swap_in, swap_in_len) = raw_parts(p.swap_in);
    let (copies, copies_len) = raw_parts(p.copies);
    let (preempted, preempted_len) = raw_parts(p.preempted);
    let (dropped, dropped_len) = raw_parts(p.dropped);
    augur_plan {
        step: p.step,
        entries,
        entries_len,
        blocks,
        blocks_len,
        swap_out,
        swap_out_len,
        swap_in,
        swap_in_len,
        copies,
        copies_len,
        preempted,
        preempted_len,
        dropped,
        dropped_len,
    }
}

/// Plans the next step at `now_us` and writes a view of it to `*out` (pointers into the
/// engine, valid until the next call that changes the engine). Every entry of the previous
/// plan must have been reported with `augur_complete` first.
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_schedule(
    engine: *mut augur_engine,
    now_us: u64,
    out: *mut augur_plan,
) -> augur_status {
    with_engine(engine, |e| {
        // SAFETY: the caller's contract.
        let o = unsafe { ptr::output(out, "out") }?;
        let plan = e.engine.schedule(time(now_us)).map_err(fail_from)?;
        o.write(plan_view(&plan));
        Ok(())
    })
}

/// The view of the last plan again (empty before the first `augur_schedule`).
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_last_plan(
    engine: *mut augur_engine,
    out: *mut augur_plan,
) -> augur_status {
    with_engine(engine, |e| {
        // SAFETY: the caller's contract.
        let o = unsafe { ptr::output(out, "out") }?;
        o.write(plan_view(&e.engine.plan()));
        Ok(())
    })
}

/// Reports the results of the current plan by position: `results[k]` for `entries[k]`, all
/// `entries_len` of them in one call. All-or-nothing: on `AUGUR_E_INVALID_RESULT` the
/// message names the index and what is wrong, and nothing changed. Requests that finished
/// are then listed by `augur_last_finished`. A plan is completed once: a second call for it
/// is `AUGUR_E_WRONG_STATE` (schedule the next step first).
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `results` NULL or `len` readable results.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_complete(
    engine: *mut augur_engine,
    results: *const augur_entry_result,
    len: usize,
    now_us: u64,
) -> augur_status {
    with_engine(engine, |e| {
        // SAFETY: the caller's contract; `augur_entry_result` and `EntryResult` have the same
        // layout (checked in `types`) and every bit pattern of their integer fields is valid.
        let r = unsafe { ptr::slice_in(results.cast::<EntryResult>(), len, "results") }?;
        e.engine
            .complete_entries(r, time(now_us))
            .map_err(fail_from)
    })
}

/// Reports the results of the current plan sparsely: only the entries whose result is not
/// the default are listed, each with its position (`exceptions[j].entry`, in any order);
/// every other entry produced exactly what it was scheduled for — one sampled token if its
/// `samples` is set, none otherwise — and nothing else (no flags). A step of plain decodes is
/// reported with the few entries that finished, paused or accepted drafts, and augur reads
/// nothing for the rest. The engine ends exactly as `augur_complete` with every result would
/// leave it. All-or-nothing like `augur_complete`: on `AUGUR_E_INVALID_RESULT` the message
/// names the exception's index (an entry past the plan, one entry twice, a bad result) and
/// nothing changed; an exception for an entry whose request was aborted since the plan is
/// ignored. A plan is completed once (`AUGUR_E_WRONG_STATE` after any completing call).
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `exceptions` NULL or `len` readable
/// exceptions (NULL with `len` 0: no exceptions).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_complete_except(
    engine: *mut augur_engine,
    exceptions: *const augur_entry_exception,
    len: usize,
    now_us: u64,
) -> augur_status {
    with_engine(engine, |e| {
        // SAFETY: the caller's contract; `augur_entry_exception` and `EntryException` have the
        // same layout (checked in `types`) and every bit pattern of their integer fields is
        // valid (padding is never read as a value).
        let x = unsafe { ptr::slice_in(exceptions.cast::<EntryException>(), len, "exceptions") }?;
        e.engine
            .complete_entries_except(x, time(now_us))
            .map_err(fail_from)
    })
}

/// The requests the last `augur_complete` finished: `*out` points into the engine (valid
/// until the next call that changes it; NULL when `*len` is 0).
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `out` and `len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_last_finished(
    engine: *mut augur_engine,
    out: *mut *const augur_finished,
    len: *mut usize,
) -> augur_status {
    with_engine(engine, |e| {
        // SAFETY: the caller's contract.
        let (o, l) = unsafe { (ptr::output(out, "out")?, ptr::output(len, "len")?) };
        let (p, n) = raw_parts(e.engine.last_finished());
        o.write(p);
        l.write(n);
        Ok(())
    })
}

/// Counters and gauges.
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_engine_stats(
    engine: *mut augur_engine,
    out: *mut augur_stats,
) -> augur_status {
    with_engine(engine, |e| {
        // SAFETY: the caller's contract.
        let o = unsafe { ptr::output(out, "out") }?;
        let s = e.engine.stats();
        let (d, h) = (s.kv.device, s.kv.host);
        o.write(augur_stats {
            waiting: s.waiting,
            running: s.running,
            swapped: s.swapped,
            paused: s.paused,
            steps: s.steps,
            added: s.added,
            finished: s.finished,
            aborted: s.aborted,
            dropped: s.dropped,
            preemptions_recompute: s.preemptions_recompute,
            preemptions_swap: s.preemptions_swap,
            preemptions_keep: s.preemptions_keep,
            preemptions_for_rank: s.preemptions_for_rank,
            pauses_preserved: s.pauses_preserved,
            pauses_discarded: s.pauses_discarded,
            pauses_swapped: s.pauses_swapped,
            idle_evicted: s.idle_evicted,
            recomputed_tokens: s.recomputed_tokens,
            prefix_hit_tokens: s.prefix_hit_tokens,
            prompt_tokens_admitted: s.prompt_tokens_admitted,
            predicted_backlog_tokens: s.predicted_backlog_tokens,
            hashes_dropped: s.hashes_dropped,
            device_blocks_total: d.total,
            device_blocks_free: d.free_uncached,
            device_blocks_cached: d.free_cached,
            device_blocks_in_use: d.in_use,
            host_blocks_total: h.total,
            host_blocks_free: h.free_uncached,
            host_blocks_cached: h.free_cached,
            host_blocks_in_use: h.in_use,
            kv_prefix_hit_blocks: s.kv.prefix_hit_blocks,
            kv_evictions: s.kv.evictions,
            kv_cow_copies: s.kv.cow_copies,
            kv_swapped_out_blocks: s.kv.swapped_out_blocks,
            kv_swapped_in_blocks: s.kv.swapped_in_blocks,
        });
        Ok(())
    })
}

/// Moves up to `cap` KV events recorded since the last drain into `out`, oldest first, and
/// writes how many to `*written` (blocks stored, removed, all cleared: what a cluster router
/// such as Dynamo's KV router or llm-d's indexer learns a replica's prefix cache from). Call
/// it after each `augur_schedule` and `augur_complete` until `*written < cap`; what does not
/// fit stays for the next call. Each event's `seq` is one more than the last one's, so a
/// transport can detect its own gaps; the engine's overflow is never silent (an
/// `AUGUR_KV_EVENT_ALL_CLEARED` marker and a snapshot follow, `augur_engine_kv_event_stats`
/// counts it: `augur_engine_kv_event_stats`). Always 0 events with `augur_config.kv_event_capacity` 0. The events are in
/// augur's own layout: encoding them for vLLM's wire format is the publisher's job (the
/// Rust crate `augur`'s `events` module, or the server's own code).
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `out` NULL (with `cap` 0) or `cap`
/// writable `augur_kv_event`s; `written` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_drain_kv_events(
    engine: *mut augur_engine,
    out: *mut augur_kv_event,
    cap: usize,
    written: *mut usize,
) -> augur_status {
    with_engine(engine, |e| {
        // SAFETY: the caller's contract.
        let w = unsafe { ptr::output(written, "written") }?;
        ptr::check_out(out, cap, "out")?;
        // Drained through a small buffer of core events, converted as they come: the C
        // layout differs from the Rust enum, and the engine allocates nothing.
        let mut chunk = [augur_core::kv::KvEvent::default(); 64];
        let mut n = 0;
        while n < cap {
            let want = (cap - n).min(chunk.len());
            let got = e.engine.drain_kv_events(&mut chunk[..want]);
            for (i, ev) in chunk[..got].iter().enumerate() {
                // SAFETY: `n + i < cap`, and `out` holds `cap` writable, aligned
                // `augur_kv_event`s (checked non-NULL and aligned above, the length by the
                // caller's contract); `write` reads nothing from the destination.
                unsafe { out.add(n + i).write(augur_kv_event::from_core(ev)) };
            }
            n += got;
            if got < want {
                break;
            }
        }
        w.write(n);
        Ok(())
    })
}

/// Counters of the KV event stream: delivered, dropped, resyncs, pending.
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_engine_kv_event_stats(
    engine: *mut augur_engine,
    out: *mut augur_kv_event_stats,
) -> augur_status {
    with_engine(engine, |e| {
        // SAFETY: the caller's contract.
        let o = unsafe { ptr::output(out, "out") }?;
        let s = e.engine.kv_event_stats();
        o.write(augur_kv_event_stats {
            delivered: s.delivered,
            dropped: s.dropped,
            resyncs: s.resyncs,
            pending: s.pending,
            resyncing: u32::from(s.resyncing),
        });
        Ok(())
    })
}

fn info_of(v: &RequestView) -> augur_request_info {
    augur_request_info {
        external_id: v.external_id,
        state: match v.state {
            RequestState::Waiting => AUGUR_STATE_WAITING,
            RequestState::Running => AUGUR_STATE_RUNNING,
            RequestState::Swapped => AUGUR_STATE_SWAPPED,
            RequestState::Paused => AUGUR_STATE_PAUSED,
        },
        prompt_tokens: v.prompt_tokens,
        generated_tokens: v.generated_tokens,
        computed_tokens: v.computed_tokens,
        has_prediction: u32::from(v.predicted_output_tokens.is_some()),
        kv_tier: match v.kv_tier {
            None => AUGUR_TIER_NONE,
            Some(Tier::Device) => AUGUR_TIER_DEVICE,
            Some(Tier::Host) => AUGUR_TIER_HOST,
        },
        predicted_output_tokens: v.predicted_output_tokens.unwrap_or(0.0),
        kv_blocks: v.kv_blocks,
        preemptions: v.preemptions,
        arrival_us: v.arrival.as_micros(),
        first_token_us: v.first_token.map_or(u64::MAX, |t| t.as_micros()),
    }
}

/// A snapshot of one request.
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_request_get_info(
    engine: *mut augur_engine,
    request: augur_request,
    out: *mut augur_request_info,
) -> augur_status {
    with_engine(engine, |e| {
        // SAFETY: the caller's contract.
        let o = unsafe { ptr::output(out, "out") }?;
        let v = e
            .engine
            .request(RequestHandle::from_raw(request))
            .map_err(fail_from)?;
        o.write(info_of(&v));
        Ok(())
    })
}

fn block_table(
    e: &Engine<'_>,
    h: RequestHandle,
    start: u32,
    out: *mut u32,
    cap: usize,
    written: *mut usize,
) -> Result<(), Fail> {
    let v = e.request(h).map_err(fail_from)?;
    // SAFETY: checked: `written` is non-NULL and aligned (this is the only write to it).
    let w = unsafe { ptr::output(written, "written") }?;
    let need = v.kv_blocks.saturating_sub(start) as usize;
    if need > cap {
        return Err(fail(
            AUGUR_E_BUFFER_TOO_SMALL,
            format_args!(
                "the table has {need} entries from {start}; the buffer holds {cap} (nothing was written)"
            ),
        ));
    }
    ptr::check_out(out, need, "out")?;
    // SAFETY: `out` holds `cap >= need` writable `uint32_t`s by the caller's contract, and is
    // written only now that the copy cannot fail for size.
    let buf = unsafe { ptr::zeroed_slice_out(out, need, "out") }?;
    let n = e.block_table(h, start, buf).map_err(fail_from)?;
    w.write(n);
    Ok(())
}

/// Copies the request's block table from entry `start` to its end into `out` (room for
/// `cap` ids) and writes the number copied to `*written`: device block ids while its KV is
/// on the device, host ids while swapped (`augur_request_info.kv_tier`); 0 when it holds no
/// KV. A buffer shorter than the rest of the table is `AUGUR_E_BUFFER_TOO_SMALL` and nothing
/// is written (`augur_request_info.kv_blocks` (`augur_request_get_info`) is the whole table's length). An executor can
/// rebuild or check its mirror of the table with this at any time.
///
/// # Safety
/// `engine` must be NULL or a live engine pointer; `out` NULL or `cap` writable `uint32_t`s;
/// `written` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_request_block_table(
    engine: *mut augur_engine,
    request: augur_request,
    start: u32,
    out: *mut u32,
    cap: usize,
    written: *mut usize,
) -> augur_status {
    with_engine(engine, |e| {
        block_table(
            &e.engine,
            RequestHandle::from_raw(request),
            start,
            out,
            cap,
            written,
        )
    })
}

/// `augur_request_block_table` for the live request with this external id.
///
/// # Safety
/// As `augur_request_block_table`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_request_block_table_by_id(
    engine: *mut augur_engine,
    external_id: u64,
    start: u32,
    out: *mut u32,
    cap: usize,
    written: *mut usize,
) -> augur_status {
    with_engine(engine, |e| {
        let h = find(&e.engine, external_id)?;
        block_table(&e.engine, h, start, out, cap, written)
    })
}

#[cfg(test)]
mod call_sequences;
#[cfg(test)]
mod tests;
