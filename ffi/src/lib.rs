//! `augur-ffi` (library name `augur`): the C ABI of augur.
//!
//! This crate will hold the C interface described in DESIGN.md section 5: opaque engine handles,
//! one numbered status enum whose values are never reused, out-parameters written only on
//! success, every export guarded against panics, and the one-time allocation of the engine's
//! storage (the core itself never allocates). `include/augur.h` will be generated from it by a
//! pinned cbindgen and checked in, with `include/augur.hpp` as a small C++17 wrapper.
//!
//! Today it is a skeleton: it links `augur-core` and exports nothing yet. No function here
//! pretends to work.

#![forbid(unsafe_code)]

/// The version of the augur C ABI crate, as in `Cargo.toml`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    #[test]
    fn version_matches_the_manifest() {
        assert_eq!(super::VERSION, env!("CARGO_PKG_VERSION"));
        assert!(!super::VERSION.is_empty());
    }
}
