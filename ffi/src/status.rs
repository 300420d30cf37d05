//! The one status enum of the C ABI and how every core error maps onto it.
//!
//! A status is a plain `int32_t` (not a C `enum`), so a value C passes back (to
//! `augur_status_str`) can never be an invalid Rust value. Values are never reused: a new
//! status gets the next number, a retired one keeps its number forever.

use core::ffi::c_char;

use augur_core::engine::{
    AddError, CompleteError, EngineConfigError, EngineInitError, RequestError, ScheduleError,
};

/// The result of every fallible call: `AUGUR_OK` (0) or one of the `AUGUR_E_*` values.
#[allow(non_camel_case_types)]
pub type augur_status = i32;

/// Success.
pub const AUGUR_OK: augur_status = 0;
/// A required pointer argument is NULL.
pub const AUGUR_E_NULL_POINTER: augur_status = 1;
/// The engine pointer does not point at a live engine (freed, or never one).
pub const AUGUR_E_INVALID_ENGINE: augur_status = 2;
/// The request handle is stale (finished, aborted, dropped) or was never issued.
pub const AUGUR_E_STALE_HANDLE: augur_status = 3;
/// The configuration is invalid; the message names the field.
pub const AUGUR_E_INVALID_CONFIG: augur_status = 4;
/// The caller's region is smaller than `augur_engine_layout` says.
pub const AUGUR_E_REGION_TOO_SMALL: augur_status = 5;
/// The caller's region is not aligned as `augur_engine_layout` says.
pub const AUGUR_E_REGION_MISALIGNED: augur_status = 6;
/// An output buffer is shorter than what must be written.
pub const AUGUR_E_BUFFER_TOO_SMALL: augur_status = 7;
/// Every request slot is taken (`max_requests`).
pub const AUGUR_E_QUEUE_FULL: augur_status = 8;
/// The request can never fit in the device KV pool.
pub const AUGUR_E_CANNOT_FIT: augur_status = 9;
/// An argument or a field of an argument is invalid; the message names it.
pub const AUGUR_E_INVALID_ARGUMENT: augur_status = 10;
/// A live request already has this external id.
pub const AUGUR_E_DUPLICATE_ID: augur_status = 11;
/// The block-hash store is full (`hash_capacity`).
pub const AUGUR_E_OUT_OF_HASH_STORAGE: augur_status = 12;
/// `now_us` is earlier than a previous call's.
pub const AUGUR_E_TIME_WENT_BACKWARDS: augur_status = 13;
/// The request is not in a state where this call applies.
pub const AUGUR_E_WRONG_STATE: augur_status = 14;
/// A prediction is NaN, infinite or negative.
pub const AUGUR_E_INVALID_PREDICTION: augur_status = 15;
/// Too many tokens for this request.
pub const AUGUR_E_TOO_MANY_TOKENS: augur_status = 16;
/// Entries of the previous plan have no result yet.
pub const AUGUR_E_RESULTS_PENDING: augur_status = 17;
/// A result given to `augur_complete` is invalid; the message names its index and why.
pub const AUGUR_E_INVALID_RESULT: augur_status = 18;
/// `augur_complete` got a different number of results than the plan has entries.
pub const AUGUR_E_RESULT_COUNT: augur_status = 19;
/// No live request has this external id.
pub const AUGUR_E_UNKNOWN_ID: augur_status = 20;
/// The engine found an internal invariant broken, now or earlier, and refuses every call
/// that would change it (a bug in augur, never the caller's fault).
pub const AUGUR_E_POISONED: augur_status = 21;
/// augur panicked inside this call (a bug in augur). The panic was caught; the engine is
/// poisoned.
pub const AUGUR_E_PANIC: augur_status = 22;
/// Memory for the engine could not be allocated.
pub const AUGUR_E_OUT_OF_MEMORY: augur_status = 23;
/// The CUDA backend (`augur_cuda_*`, built with the `cuda` feature): no driver, no such
/// device, NVRTC missing, a kernel that did not compile, or a failed driver call; the message
/// says which.
pub const AUGUR_E_CUDA: augur_status = 24;

/// Every status and its description, in value order (`augur_status_str`, and the test that
/// no value is missing or repeated).
pub(crate) const STATUS_TEXT: [(augur_status, &core::ffi::CStr); 25] = [
    (AUGUR_OK, c"ok"),
    (AUGUR_E_NULL_POINTER, c"a required pointer argument is NULL"),
    (AUGUR_E_INVALID_ENGINE, c"not a live augur engine"),
    (AUGUR_E_STALE_HANDLE, c"stale or unknown request handle"),
    (AUGUR_E_INVALID_CONFIG, c"invalid configuration"),
    (AUGUR_E_REGION_TOO_SMALL, c"storage region too small"),
    (AUGUR_E_REGION_MISALIGNED, c"storage region misaligned"),
    (AUGUR_E_BUFFER_TOO_SMALL, c"output buffer too small"),
    (AUGUR_E_QUEUE_FULL, c"request queue is full"),
    (
        AUGUR_E_CANNOT_FIT,
        c"request can never fit in the device KV pool",
    ),
    (AUGUR_E_INVALID_ARGUMENT, c"invalid argument"),
    (
        AUGUR_E_DUPLICATE_ID,
        c"a live request already has this external id",
    ),
    (AUGUR_E_OUT_OF_HASH_STORAGE, c"block-hash storage is full"),
    (AUGUR_E_TIME_WENT_BACKWARDS, c"time went backwards"),
    (
        AUGUR_E_WRONG_STATE,
        c"request is not in a state where this applies",
    ),
    (
        AUGUR_E_INVALID_PREDICTION,
        c"prediction must be finite and non-negative",
    ),
    (AUGUR_E_TOO_MANY_TOKENS, c"too many tokens for this request"),
    (
        AUGUR_E_RESULTS_PENDING,
        c"the previous plan's results are pending",
    ),
    (AUGUR_E_INVALID_RESULT, c"invalid step result"),
    (
        AUGUR_E_RESULT_COUNT,
        c"result count differs from the plan's entries",
    ),
    (AUGUR_E_UNKNOWN_ID, c"no live request has this external id"),
    (AUGUR_E_POISONED, c"engine poisoned by an internal error"),
    (AUGUR_E_PANIC, c"augur panicked (caught); engine poisoned"),
    (AUGUR_E_OUT_OF_MEMORY, c"out of memory"),
    (AUGUR_E_CUDA, c"CUDA driver, device or kernel error"),
];

/// The description of `status` (a static string), or "unknown status".
pub(crate) fn status_text(status: augur_status) -> *const c_char {
    STATUS_TEXT
        .iter()
        .find(|(s, _)| *s == status)
        .map_or(c"unknown status".as_ptr(), |(_, t)| t.as_ptr())
}

/// A core error as a status.
pub(crate) trait ToStatus {
    fn status(&self) -> augur_status;
}

impl ToStatus for EngineConfigError {
    fn status(&self) -> augur_status {
        AUGUR_E_INVALID_CONFIG
    }
}

impl ToStatus for EngineInitError {
    fn status(&self) -> augur_status {
        match self {
            EngineInitError::Config(_) => AUGUR_E_INVALID_CONFIG,
            EngineInitError::StorageTooSmall { .. } => AUGUR_E_REGION_TOO_SMALL,
        }
    }
}

impl ToStatus for AddError {
    fn status(&self) -> augur_status {
        match self {
            AddError::QueueFull => AUGUR_E_QUEUE_FULL,
            AddError::CannotFit { .. } => AUGUR_E_CANNOT_FIT,
            AddError::InvalidField(_) => AUGUR_E_INVALID_ARGUMENT,
            AddError::DuplicateExternalId => AUGUR_E_DUPLICATE_ID,
            AddError::OutOfHashStorage => AUGUR_E_OUT_OF_HASH_STORAGE,
            AddError::TimeWentBackwards => AUGUR_E_TIME_WENT_BACKWARDS,
            AddError::Internal(_) => AUGUR_E_POISONED,
        }
    }
}

impl ToStatus for RequestError {
    fn status(&self) -> augur_status {
        match self {
            RequestError::StaleHandle => AUGUR_E_STALE_HANDLE,
            RequestError::WrongState => AUGUR_E_WRONG_STATE,
            RequestError::InvalidPrediction => AUGUR_E_INVALID_PREDICTION,
            RequestError::TooManyTokens => AUGUR_E_TOO_MANY_TOKENS,
            RequestError::TimeWentBackwards => AUGUR_E_TIME_WENT_BACKWARDS,
            RequestError::BufferTooSmall { .. } => AUGUR_E_BUFFER_TOO_SMALL,
            RequestError::OutOfHashStorage => AUGUR_E_OUT_OF_HASH_STORAGE,
            RequestError::Internal(_) => AUGUR_E_POISONED,
        }
    }
}

impl ToStatus for ScheduleError {
    fn status(&self) -> augur_status {
        match self {
            ScheduleError::ResultsPending { .. } => AUGUR_E_RESULTS_PENDING,
            ScheduleError::TimeWentBackwards => AUGUR_E_TIME_WENT_BACKWARDS,
            ScheduleError::Internal(_) => AUGUR_E_POISONED,
        }
    }
}

impl ToStatus for CompleteError {
    fn status(&self) -> augur_status {
        match self {
            CompleteError::Result { .. } => AUGUR_E_INVALID_RESULT,
            CompleteError::ResultCount { .. } => AUGUR_E_RESULT_COUNT,
            CompleteError::TimeWentBackwards => AUGUR_E_TIME_WENT_BACKWARDS,
            CompleteError::AlreadyCompleted => AUGUR_E_WRONG_STATE,
            CompleteError::Internal(_) => AUGUR_E_POISONED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_one_text_and_values_are_dense() {
        for (k, (s, t)) in STATUS_TEXT.iter().enumerate() {
            assert_eq!(*s as usize, k, "status values are 0..N in order");
            assert!(!t.to_bytes().is_empty());
            assert_eq!(status_text(*s), t.as_ptr());
        }
        // SAFETY: `status_text` returns a pointer to a static NUL-terminated string.
        let unknown = unsafe { core::ffi::CStr::from_ptr(status_text(9999)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown status");
    }
}
