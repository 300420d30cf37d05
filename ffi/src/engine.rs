//! The engine object behind `augur_engine *`, where it lives, and the guard every export
//! runs in.
//!
//! An engine is one block of memory: this header (the core `Engine`, the last-error buffer,
//! a tag) followed by the core's storage region. `augur_engine_new` allocates the block once;
//! `augur_engine_init` builds it inside memory the caller owns (the zero-malloc path). The
//! core's storage is carved by `augur-region`; the only `unsafe` here is turning the caller's
//! pointers into references, each with its `// SAFETY:` argument.

use core::alloc::Layout;
use core::fmt::{self, Write as _};
use core::mem::{MaybeUninit, align_of, size_of};
use core::panic::AssertUnwindSafe;
use std::panic::catch_unwind;

use augur_core::engine::{Engine, EngineConfig, RegionLayout};
use augur_region::RegionError;

use super::status::*;

/// Bytes of the last-error message, its NUL included.
pub(crate) const ERROR_CAP: usize = 256;

/// "augurENG": marks a live engine; cleared when it is freed, so a double free or a call on a
/// freed in-region engine (whose memory is still mapped) is caught.
const LIVE_TAG: u64 = 0x6175_6775_7245_4e47;
// `call_sequences.rs` forges engine pointers whose first word is even.
const _: () = assert!(LIVE_TAG % 2 == 1);

/// An engine (opaque to C): made by `augur_engine_new` or `augur_engine_init`, destroyed by
/// `augur_engine_free`.
// In Rust, a type with no fields that is never instantiated: an `augur_engine *` points at
// an `EngineObject`.
#[allow(non_camel_case_types)]
pub struct augur_engine {
    _opaque: [u8; 0],
}

/// The object behind an `augur_engine *`. `#[repr(C)]` only so that the tag is the first
/// field: a pointer that is not an engine is refused after reading its first 8 bytes,
/// however small the memory it points to (Miri found the tag read past a small block when
/// the fields were reordered).
#[repr(C)]
pub(crate) struct EngineObject {
    tag: u64,
    pub(crate) engine: Engine<'static>,
    /// The allocation this engine lives at the start of, if `augur_engine_new` made it.
    owned: Option<Layout>,
    /// Set when a call panicked: the engine's state can no longer be trusted.
    panicked: bool,
    /// The message of the most recent failed call, NUL-terminated.
    error: ErrorText,
}

/// The last-error buffer. A newtype only because cbindgen cannot read a generic field of a
/// `#[repr(C)]` struct (C never sees it).
pub(crate) struct ErrorText(heapless::String<ERROR_CAP>);

/// A failed call's status. Its message is staged in this thread's [`STAGED`] buffer until
/// the export copies it where C reads it (the engine's last error, or a reason buffer), so
/// that `Result<_, Fail>` stays one word wide on the hot path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fail {
    pub(crate) status: augur_status,
}

std::thread_local! {
    /// The message of the failure being returned on this thread.
    static STAGED: core::cell::RefCell<heapless::String<ERROR_CAP>> =
        const { core::cell::RefCell::new(heapless::String::new()) };
}

/// Runs `f` on the staged message of the failure being returned.
pub(crate) fn with_staged<R>(f: impl FnOnce(&str) -> R) -> R {
    STAGED.with(|m| f(&m.borrow()))
}

/// Writes into a bounded string, dropping what does not fit (at a character boundary) and
/// always leaving room for the NUL.
struct Truncating<'s>(&'s mut heapless::String<ERROR_CAP>);

impl fmt::Write for Truncating<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            // Keep one byte for the NUL; a character that would not fit ends the message.
            if self.0.len() + c.len_utf8() >= ERROR_CAP || c == '\0' {
                return Ok(());
            }
            let _ = self.0.push(c);
        }
        Ok(())
    }
}

/// A failure with a formatted message.
pub(crate) fn fail(status: augur_status, args: fmt::Arguments<'_>) -> Fail {
    STAGED.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            m.clear();
            let _ = Truncating(&mut m).write_fmt(args);
        }
    });
    Fail { status }
}

/// A failure whose message is a core error's `Display`.
pub(crate) fn fail_from<E: fmt::Display + ToStatus>(e: E) -> Fail {
    fail(e.status(), format_args!("{e}"))
}

/// The header's size rounded up to the region's alignment, and the block's alignment.
fn header() -> (usize, usize) {
    let align = RegionLayout::ALIGN.max(align_of::<EngineObject>());
    (size_of::<EngineObject>().next_multiple_of(align), align)
}

/// Bytes and alignment of the whole block (header + storage) for `cfg`.
pub(crate) fn block_layout(cfg: &EngineConfig) -> Result<(usize, usize), Fail> {
    let l = cfg.layout().map_err(fail_from)?;
    let (head, align) = header();
    let size = head.checked_add(l.bytes()).ok_or_else(|| {
        fail(
            AUGUR_E_INVALID_CONFIG,
            format_args!("the engine's storage would not fit in the address space"),
        )
    })?;
    Ok((size, align))
}

fn region_fail(e: RegionError) -> Fail {
    let status = match e {
        RegionError::Config(_) => AUGUR_E_INVALID_CONFIG,
        RegionError::TooSmall { .. } => AUGUR_E_REGION_TOO_SMALL,
        RegionError::Misaligned { .. } => AUGUR_E_REGION_MISALIGNED,
        _ => AUGUR_E_POISONED,
    };
    fail(status, format_args!("{e}"))
}

/// Builds an engine at `region` (`len` bytes the caller keeps alive and untouched until
/// `free`). `owned`: the allocation to give back on free, if augur made it.
///
/// # Safety
/// `region` must be valid for reads and writes of `len` bytes for as long as the engine
/// lives, and not be accessed by anyone else meanwhile.
pub(crate) unsafe fn build_at(
    cfg: EngineConfig,
    region: *mut u8,
    len: usize,
    owned: Option<Layout>,
) -> Result<*mut augur_engine, Fail> {
    let (need, align) = block_layout(&cfg)?;
    if region.is_null() {
        return Err(fail(AUGUR_E_NULL_POINTER, format_args!("region is NULL")));
    }
    if !(region as usize).is_multiple_of(align) {
        return Err(fail(
            AUGUR_E_REGION_MISALIGNED,
            format_args!("region at {region:p} is not aligned to {align} bytes"),
        ));
    }
    if len < need {
        return Err(fail(
            AUGUR_E_REGION_TOO_SMALL,
            format_args!("region has {len} bytes, this configuration needs {need}"),
        ));
    }
    let (head, _) = header();
    // SAFETY: `head < need <= len`, so the storage part starts inside the region; the
    // caller guarantees the region is valid and exclusively ours for the engine's lifetime,
    // which `'static` stands for here: the engine is dropped (in `free`) before the region
    // can go away, and this slice is never handed out.
    let storage: &'static mut [MaybeUninit<u8>] = unsafe {
        core::slice::from_raw_parts_mut(region.add(head).cast::<MaybeUninit<u8>>(), len - head)
    };
    let engine = augur_region::engine_in_region(cfg, storage).map_err(region_fail)?;
    let e = region.cast::<EngineObject>();
    // SAFETY: `region` is aligned for `EngineObject` (its alignment divides `align`) and has
    // `head >= size_of::<EngineObject>()` bytes before the storage, which the engine does
    // not touch.
    unsafe {
        e.write(EngineObject {
            tag: LIVE_TAG,
            engine,
            owned,
            panicked: false,
            error: ErrorText::new(),
        });
    }
    Ok(e.cast::<augur_engine>())
}

/// Allocates a block for `cfg` and builds the engine in it.
pub(crate) fn build_owned(cfg: EngineConfig) -> Result<*mut augur_engine, Fail> {
    let (size, align) = block_layout(&cfg)?;
    let layout = Layout::from_size_align(size, align).map_err(|_| {
        fail(
            AUGUR_E_INVALID_CONFIG,
            format_args!("the engine's storage would not fit in the address space"),
        )
    })?;
    // SAFETY: `layout` has a non-zero size (the header alone is not empty).
    let p = unsafe { std::alloc::alloc(layout) };
    if p.is_null() {
        return Err(fail(
            AUGUR_E_OUT_OF_MEMORY,
            format_args!("could not allocate {size} bytes for the engine"),
        ));
    }
    // SAFETY: `p` is a fresh allocation of `size` bytes that only this engine uses; `free`
    // gives it back after dropping the engine.
    match unsafe { build_at(cfg, p, size, Some(layout)) } {
        Ok(e) => Ok(e),
        Err(f) => {
            // SAFETY: allocated above with this layout and not handed out.
            unsafe { std::alloc::dealloc(p, layout) };
            Err(f)
        }
    }
}

/// The live engine behind `e`.
///
/// # Safety
/// `e` must be NULL or point to memory readable as an `augur_engine` (a live engine, or one
/// freed by `augur_engine_init`'s caller's still-mapped region); see `augur.h`.
unsafe fn live<'e>(e: *mut augur_engine) -> Result<&'e mut EngineObject, augur_status> {
    let e = e.cast::<EngineObject>();
    if e.is_null() {
        return Err(AUGUR_E_NULL_POINTER);
    }
    if !e.is_aligned() {
        return Err(AUGUR_E_INVALID_ENGINE);
    }
    // SAFETY: non-NULL and aligned; readable by the caller's contract. The tag is read
    // before anything else, so memory that is not a live engine is refused.
    let tag = unsafe { core::ptr::addr_of!((*e).tag).read() };
    if tag != LIVE_TAG {
        return Err(AUGUR_E_INVALID_ENGINE);
    }
    // SAFETY: a live engine; the C caller uses one engine from one thread at a time, so no
    // other reference to it exists during this call.
    Ok(unsafe { &mut *e })
}

/// Runs `f` on the live engine `e`: NULL and dead engines are refused, a panic is caught
/// (the engine is then poisoned), and a failure's message is kept for
/// `augur_engine_last_error`.
pub(crate) fn with_engine(
    e: *mut augur_engine,
    f: impl FnOnce(&mut EngineObject) -> Result<(), Fail>,
) -> augur_status {
    // SAFETY: the C caller's contract for every `augur_engine *` argument (augur.h).
    match unsafe { live(e) } {
        Ok(eng) => run_guarded(eng, "the engine", f),
        Err(s) => s,
    }
}

/// An object C holds a pointer to (an engine, a CUDA backend): a poison flag and a last-error
/// buffer, which [`run_guarded`] maintains.
pub(crate) trait GuardedObject {
    /// Set once a call panicked: the object's state can no longer be trusted.
    fn poisoned(&mut self) -> &mut bool;
    /// The message of the most recent failed call.
    fn error_text(&mut self) -> &mut ErrorText;
}

/// Runs `f` on `obj` (`what` names it in messages): refused once poisoned, a panic caught
/// (`obj` is then poisoned), a failure's message kept as its last error.
pub(crate) fn run_guarded<O: GuardedObject>(
    obj: &mut O,
    what: &str,
    f: impl FnOnce(&mut O) -> Result<(), Fail>,
) -> augur_status {
    if *obj.poisoned() {
        fail(
            AUGUR_E_POISONED,
            format_args!("an earlier call panicked inside augur; {what} is poisoned"),
        );
        obj.error_text().keep_staged();
        return AUGUR_E_POISONED;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| f(&mut *obj)));
    match outcome {
        Ok(Ok(())) => AUGUR_OK,
        Ok(Err(failure)) => {
            obj.error_text().keep_staged();
            failure.status
        }
        Err(_) => {
            *obj.poisoned() = true;
            fail(
                AUGUR_E_PANIC,
                format_args!("augur panicked inside this call (a bug); {what} is poisoned"),
            );
            obj.error_text().keep_staged();
            AUGUR_E_PANIC
        }
    }
}

impl GuardedObject for EngineObject {
    fn poisoned(&mut self) -> &mut bool {
        &mut self.panicked
    }
    fn error_text(&mut self) -> &mut ErrorText {
        &mut self.error
    }
}

/// Runs `f` (a call without an engine) with panics caught.
pub(crate) fn guarded(f: impl FnOnce() -> augur_status) -> augur_status {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(AUGUR_E_PANIC)
}

/// [`guarded`] for a call without an engine that fails with a [`Fail`]: its status.
pub(crate) fn guarded_result(f: impl FnOnce() -> Result<(), Fail>) -> augur_status {
    guarded(|| f().map_or_else(|f| f.status, |()| AUGUR_OK))
}

impl EngineObject {
    /// The last error, NUL-terminated ("" if none yet).
    pub(crate) fn last_error(&self) -> *const core::ffi::c_char {
        self.error.as_c_str()
    }
}

impl ErrorText {
    /// An empty message.
    pub(crate) const fn new() -> Self {
        Self(heapless::String::new())
    }

    /// Keeps this thread's staged message (the failure being returned), NUL-terminated.
    pub(crate) fn keep_staged(&mut self) {
        self.0.clear();
        with_staged(|m| {
            let _ = Truncating(&mut self.0).write_str(m);
        });
        let _ = self.0.push('\0');
    }

    /// The message, NUL-terminated ("" if none yet).
    pub(crate) fn as_c_str(&self) -> *const core::ffi::c_char {
        if self.0.is_empty() {
            c"".as_ptr()
        } else {
            self.0.as_ptr().cast()
        }
    }
}

/// Reads the last error of `e`, or a static message for a NULL or dead engine.
pub(crate) fn last_error_of(e: *const augur_engine) -> *const core::ffi::c_char {
    // SAFETY: the C caller's contract for every `augur_engine *` argument; `live` only reads.
    match unsafe { live(e.cast_mut()) } {
        Ok(eng) => eng.last_error(),
        Err(AUGUR_E_NULL_POINTER) => c"engine is NULL".as_ptr(),
        Err(_) => c"not a live augur engine".as_ptr(),
    }
}

/// Drops the engine at `e` and gives its memory back if augur allocated it.
pub(crate) fn free(e: *mut augur_engine) {
    // SAFETY: the C caller's contract; a dead or NULL engine is ignored.
    let Ok(eng) = (unsafe { live(e) }) else {
        return;
    };
    eng.tag = 0;
    let owned = eng.owned;
    // SAFETY: a live engine built by `build_at`; after this nothing reads it (its tag is
    // cleared first, so a later call on it is refused while the memory stays mapped).
    unsafe {
        core::ptr::drop_in_place(core::ptr::addr_of_mut!((*e.cast::<EngineObject>()).engine))
    };
    if let Some(layout) = owned {
        // SAFETY: allocated by `build_owned` with this layout; the engine inside is dropped.
        unsafe { std::alloc::dealloc(e.cast::<u8>(), layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_a_call_is_caught_and_poisons_the_engine() {
        let mut cfg = EngineConfig::new(4, 16, 4);
        cfg.max_running = 4;
        let e = build_owned(cfg).ok().unwrap();
        let s = with_engine(e, |_| panic!("injected"));
        assert_eq!(s, AUGUR_E_PANIC);
        // Every later call is refused.
        assert_eq!(with_engine(e, |_| Ok(())), AUGUR_E_POISONED);
        // SAFETY: `last_error_of` returns a NUL-terminated string.
        let msg = unsafe { core::ffi::CStr::from_ptr(last_error_of(e)) };
        assert!(msg.to_str().unwrap().contains("panicked"));
        free(e);
    }

    #[test]
    fn long_messages_are_truncated_and_terminated() {
        let f = fail(
            AUGUR_E_INVALID_ARGUMENT,
            format_args!("{}", "é".repeat(400)),
        );
        assert_eq!(f.status, AUGUR_E_INVALID_ARGUMENT);
        with_staged(|m| {
            assert!(m.len() < ERROR_CAP && m.len() >= ERROR_CAP - 2);
            assert!(m.chars().all(|c| c == 'é'));
        });
    }
}
