//! Generational handles: an index plus a generation packed into a `u64`.
//!
//! Every id that crosses the API carries a generation, so a stale id (the slot was freed and
//! reused) or a forged one is detected and rejected instead of aliasing whatever lives in the
//! slot now. Generations start at 1, so the all-zero value is never a valid handle.

/// Packs `(index, generation)` into the `u64` form used by every handle type.
#[inline]
pub(crate) const fn pack(index: u32, generation: u32) -> u64 {
    ((generation as u64) << 32) | index as u64
}

/// Splits a packed handle into `(index, generation)`.
#[inline]
pub(crate) const fn unpack(raw: u64) -> (u32, u32) {
    (raw as u32, (raw >> 32) as u32)
}

/// The generation a slot gets when it is released: never 0, wraps after 2^32 − 1 reuses.
#[inline]
pub(crate) const fn next_generation(generation: u32) -> u32 {
    match generation.checked_add(1) {
        Some(g) => g,
        None => 1,
    }
}

macro_rules! handle_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// The handle as a plain `u64` (index in the low 32 bits, generation in the high 32),
            /// e.g. to pass through a C ABI.
            #[inline]
            pub const fn to_raw(self) -> u64 {
                self.0
            }

            /// Rebuilds a handle from [`Self::to_raw`]. Any value is accepted here; a stale or
            /// forged one is rejected by the operation it is passed to.
            #[inline]
            pub const fn from_raw(raw: u64) -> Self {
                Self(raw)
            }

            /// The slot index inside the handle.
            #[inline]
            pub const fn index(self) -> u32 {
                $crate::handle::unpack(self.0).0
            }

            #[inline]
            pub(crate) const fn new(index: u32, generation: u32) -> Self {
                Self($crate::handle::pack(index, generation))
            }

            #[inline]
            pub(crate) const fn generation(self) -> u32 {
                $crate::handle::unpack(self.0).1
            }
        }
    };
}
pub(crate) use handle_type;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_and_generation_skips_zero() {
        assert_eq!(unpack(pack(7, 9)), (7, 9));
        assert_eq!(unpack(pack(u32::MAX, u32::MAX)), (u32::MAX, u32::MAX));
        assert_eq!(next_generation(1), 2);
        assert_eq!(next_generation(u32::MAX), 1);
    }
}
