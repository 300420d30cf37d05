//! Checked conversions of the caller's pointers into references: NULL, misalignment and
//! sizes that overflow the address space are refused with a status before anything is read
//! or written.

use core::mem::{MaybeUninit, size_of};

use super::engine::{Fail, fail};
use super::status::{AUGUR_E_INVALID_ARGUMENT, AUGUR_E_NULL_POINTER};

fn check<T>(p: *const T, what: &str) -> Result<(), Fail> {
    if p.is_null() {
        return Err(fail(AUGUR_E_NULL_POINTER, format_args!("`{what}` is NULL")));
    }
    if !p.is_aligned() {
        return Err(fail(
            AUGUR_E_INVALID_ARGUMENT,
            format_args!("`{what}` is not aligned for its type"),
        ));
    }
    Ok(())
}

/// `*p`, read.
///
/// # Safety
/// A non-NULL `p` must point to a readable, initialised `T`.
pub(crate) unsafe fn input<'a, T>(p: *const T, what: &str) -> Result<&'a T, Fail> {
    check(p, what)?;
    // SAFETY: non-NULL and aligned (checked); readable by the caller's contract.
    Ok(unsafe { &*p })
}

/// `*p`, to be written (only on success, by the caller of this helper).
///
/// # Safety
/// A non-NULL `p` must point to writable memory for a `T`.
pub(crate) unsafe fn output<'a, T>(p: *mut T, what: &str) -> Result<&'a mut MaybeUninit<T>, Fail> {
    check(p, what)?;
    // SAFETY: non-NULL and aligned (checked); writable by the caller's contract, and
    // `MaybeUninit` makes no claim about what it holds now.
    Ok(unsafe { &mut *p.cast::<MaybeUninit<T>>() })
}

fn check_len<T>(len: usize, what: &str) -> Result<(), Fail> {
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err(fail(
            AUGUR_E_INVALID_ARGUMENT,
            format_args!("`{what}` length {len} exceeds the address space"),
        ));
    }
    Ok(())
}

/// `len` elements at `p` (which may be NULL when `len` is 0).
///
/// # Safety
/// When `len > 0`, `p` must point to `len` readable, initialised `T`s.
pub(crate) unsafe fn slice_in<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    check(p, what)?;
    check_len::<T>(len, what)?;
    // SAFETY: non-NULL, aligned, a length that fits the address space (checked); readable
    // by the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts(p, len) })
}

/// `len` writable elements at `p` (which may be NULL when `len` is 0), zeroed first so they
/// can be handed to code that takes `&mut [T]`. Call only once the write is certain to
/// succeed (outputs are written only on success).
///
/// # Safety
/// When `len > 0`, `p` must point to `len` writable `T`s; `T` must be an integer type (all
/// zero bytes is a valid value).
pub(crate) unsafe fn zeroed_slice_out<'a, T>(
    p: *mut T,
    len: usize,
    what: &str,
) -> Result<&'a mut [T], Fail> {
    if len == 0 {
        return Ok(&mut []);
    }
    check(p, what)?;
    check_len::<T>(len, what)?;
    // SAFETY: non-NULL, aligned, in the address space (checked), writable by the caller's
    // contract; zero bytes are a valid `T` (the caller's contract), so the slice is
    // initialised before it is made.
    unsafe {
        core::ptr::write_bytes(p, 0, len);
        Ok(core::slice::from_raw_parts_mut(p, len))
    }
}

/// Checks that `len` writable elements at `p` could be written, without writing.
pub(crate) fn check_out<T>(p: *mut T, len: usize, what: &str) -> Result<(), Fail> {
    if len == 0 {
        return Ok(());
    }
    check(p.cast_const(), what)?;
    check_len::<T>(len, what)
}
