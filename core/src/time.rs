//! Time is an input: every engine call takes `now`, the caller's clock in microseconds.
//! The core never reads a clock, so the same calls always give the same decisions.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

/// A point in time, in microseconds since an origin the caller chooses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Instant(pub u64);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);

    /// From microseconds.
    #[inline]
    pub const fn from_micros(us: u64) -> Self {
        Instant(us)
    }

    /// The time in microseconds.
    #[inline]
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// The time in seconds, as used by rank functions (aging is in rank units per second).
    #[inline]
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 * 1e-6
    }

    /// Microseconds from `earlier` to `self`, 0 if `earlier` is later.
    #[inline]
    pub const fn saturating_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
