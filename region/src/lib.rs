//! # augur-region
//!
//! One-region storage for [`augur_core`]'s engine: the whole [`Engine`] — its 23 typed arrays —
//! carved out of one byte region the caller provides.
//!
//! Why a crate of its own:
//! - **augur-core stays `#![forbid(unsafe_code)]`.** The core borrows every array as a typed
//!   `&mut [T]` ([`EngineStorage`](augur_core::engine::EngineStorage)). Turning one untyped
//!   byte region into 23 typed slices needs pointer casts, and those cannot be written in safe
//!   Rust. The core computes *where* each array goes
//!   ([`EngineLayout::region`](augur_core::engine::EngineLayout::region), safe code, shared
//!   with the size query so the two never disagree); this crate does the casting, and nothing
//!   else.
//! - **The zero-malloc path.** Embedded users, and servers that want the scheduler's state in
//!   pinned or pre-reserved memory, hand over one buffer of [`region_size`] bytes (a static,
//!   an arena chunk, a page from their own allocator) and never call an allocator.
//! - **The C ABI uses it.** A C or C++ caller passes one pointer and a length instead of 23
//!   arrays; `std` callers in Rust get an aligned region without any unsafe code of their own
//!   from a `Vec<`[`RegionUnit`]`>` and [`units_as_bytes`].
//!
//! All unsafe code is in one private module (`carve`, a few lines) and the rest of the crate
//! denies it. The carver does not trust the layout it is given: every span is checked for
//! alignment, order (so the slices are disjoint) and bounds before the region is split, and
//! every element is initialised with `T::default()` before a reference to it exists, so the
//! region's previous contents never matter. A layout that fails a check is an error
//! ([`RegionError::Layout`]), never undefined behaviour. Miri runs the tests in CI.
//!
//! ```
//! use augur_core::engine::{EngineConfig, RequestDesc};
//! use augur_core::time::Instant;
//! use augur_region::{RegionUnit, engine_in_region, region_size, units_as_bytes};
//!
//! let mut cfg = EngineConfig::new(4, 32, 8);
//! cfg.max_running = 8;
//! let (size, _align) = region_size(&cfg)?;
//! let mut units = vec![RegionUnit::UNINIT; RegionUnit::count_for(size)];
//! let mut engine = engine_in_region(cfg, units_as_bytes(&mut units))?;
//! engine.add_request(&RequestDesc::new(1, 10), Instant::from_micros(0))?;
//! let plan = engine.schedule(Instant::from_micros(1))?;
//! assert_eq!(plan.entries.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! MSRV: Rust 1.88.

#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]
// augur-core's no-panic lint set, outside tests.
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

#[allow(unsafe_code)]
mod carve;

use core::fmt;
use core::mem::MaybeUninit;

use augur_core::engine::{Engine, EngineConfig, EngineConfigError, EngineInitError, RegionLayout};

pub use carve::units_as_bytes;

/// 64 bytes, aligned to 64: the unit a `std` caller allocates a region in
/// (`vec![RegionUnit::UNINIT; RegionUnit::count_for(size)]`, then [`units_as_bytes`]), so the
/// region is aligned for [`RegionLayout::ALIGN`] without any unsafe code.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct RegionUnit([MaybeUninit<u8>; 64]);

// The unit must be at least as aligned as the region needs, and exactly 64 bytes with no
// padding (the byte view in `carve::units_as_bytes` relies on it).
const _: () = assert!(RegionLayout::ALIGN <= align_of::<RegionUnit>());
const _: () = assert!(size_of::<RegionUnit>() == RegionUnit::BYTES);

impl RegionUnit {
    /// Bytes per unit.
    pub const BYTES: usize = 64;

    /// A unit of uninitialised bytes (the engine initialises what it uses).
    pub const UNINIT: RegionUnit = RegionUnit([MaybeUninit::uninit(); 64]);

    /// Units needed for a region of `bytes` bytes (rounded up).
    pub const fn count_for(bytes: usize) -> usize {
        bytes.div_ceil(Self::BYTES)
    }
}

impl Default for RegionUnit {
    fn default() -> Self {
        RegionUnit::UNINIT
    }
}

impl fmt::Debug for RegionUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RegionUnit")
    }
}

/// Why [`engine_in_region`] could not build an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// The configuration is invalid (or its storage would not fit in the address space).
    Config(EngineConfigError),
    /// The region is shorter than [`region_size`] says.
    TooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        got: usize,
    },
    /// The region does not start at a multiple of `align` ([`RegionLayout::ALIGN`]).
    Misaligned {
        /// The alignment needed, in bytes.
        align: usize,
    },
    /// The layout computed by augur-core failed the carver's own check of the named span
    /// (misaligned, overlapping the one before it, or past the region's end). It means a bug
    /// in augur; no configuration should produce it.
    Layout {
        /// The span (an `EngineStorage` slice name).
        what: &'static str,
    },
    /// The engine refused the storage.
    Init(EngineInitError),
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionError::Config(e) => write!(f, "{e}"),
            RegionError::TooSmall { need, got } => {
                write!(f, "region has {got} bytes, the configuration needs {need}")
            }
            RegionError::Misaligned { align } => {
                write!(f, "region does not start at a multiple of {align} bytes")
            }
            RegionError::Layout { what } => {
                write!(
                    f,
                    "internal error: the region layout's span `{what}` is out of place"
                )
            }
            RegionError::Init(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for RegionError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            RegionError::Config(e) => Some(e),
            RegionError::Init(e) => Some(e),
            RegionError::TooSmall { .. }
            | RegionError::Misaligned { .. }
            | RegionError::Layout { .. } => None,
        }
    }
}

impl From<EngineConfigError> for RegionError {
    fn from(e: EngineConfigError) -> Self {
        RegionError::Config(e)
    }
}

/// The region an engine with `cfg` needs: `(size, align)` in bytes. `size` is a multiple of
/// `align`, and `align` is [`RegionLayout::ALIGN`] (at most [`RegionUnit::BYTES`]).
pub fn region_size(cfg: &EngineConfig) -> Result<(usize, usize), EngineConfigError> {
    let layout = cfg.layout()?;
    let region = layout.region().ok_or(EngineConfigError::TooLarge)?;
    Ok((region.size, RegionLayout::ALIGN))
}

/// Builds an engine whose whole storage is carved out of `region`, which must start at a
/// multiple of [`RegionLayout::ALIGN`] and be at least [`region_size`] bytes long (extra bytes
/// are left alone). Its contents do not matter: every element is initialised before use.
///
/// Checks, in this order and before touching the region: the configuration, the region's
/// alignment, its length.
pub fn engine_in_region<'a>(
    cfg: EngineConfig,
    region: &'a mut [MaybeUninit<u8>],
) -> Result<Engine<'a>, RegionError> {
    let layout = cfg.layout()?;
    let spans = layout
        .region()
        .ok_or(RegionError::Config(EngineConfigError::TooLarge))?;
    if !region.as_ptr().addr().is_multiple_of(RegionLayout::ALIGN) {
        return Err(RegionError::Misaligned {
            align: RegionLayout::ALIGN,
        });
    }
    if region.len() < spans.size {
        return Err(RegionError::TooSmall {
            need: spans.size,
            got: region.len(),
        });
    }
    let storage = carve::carve(&spans, region).map_err(|what| RegionError::Layout { what })?;
    Engine::new(cfg, storage).map_err(RegionError::Init)
}
