//! Broken internal invariants as values.
//!
//! augur-core is embedded in servers that must not unwind: no call may panic, whatever the
//! input. Caller mistakes are reported by each call's own error enum. What remains is the
//! "impossible" case, a structure found inconsistent at run time (an index out of range, a
//! list that does not hold what its length says). Those are reported as an [`InternalError`]
//! naming the check, never as a panic; the engine then refuses every further call (it is
//! *poisoned*), since its state can no longer be trusted.

use core::fmt;

/// An internal invariant of augur-core was found broken; names the check that failed. This is
/// a bug in augur (please report it), never the caller's fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InternalError {
    what: &'static str,
}

impl InternalError {
    /// An error naming the broken check.
    #[inline]
    pub(crate) const fn new(what: &'static str) -> Self {
        InternalError { what }
    }

    /// The check that failed.
    #[inline]
    pub const fn what(&self) -> &'static str {
        self.what
    }
}

impl fmt::Display for InternalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "augur internal invariant broken: {}", self.what)
    }
}

impl core::error::Error for InternalError {}

/// `Err(InternalError)` naming `what`.
#[inline]
pub(crate) const fn broken<T>(what: &'static str) -> Result<T, InternalError> {
    Err(InternalError::new(what))
}

/// Turns an `Option` that an invariant says is `Some` into a `Result`.
pub(crate) trait OrBroken<T> {
    /// `Ok` for `Some`, else an [`InternalError`] naming `what`.
    fn or_broken(self, what: &'static str) -> Result<T, InternalError>;
}

impl<T> OrBroken<T> for Option<T> {
    #[inline]
    fn or_broken(self, what: &'static str) -> Result<T, InternalError> {
        self.ok_or(InternalError::new(what))
    }
}
