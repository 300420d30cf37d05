//! # augur-core
//!
//! The scheduling core of augur: prediction- and memory-aware scheduling for LLM inference,
//! as a small library with no heap, no clock, no randomness and no I/O.
//!
//! Design goals:
//! - **Embeddable anywhere.** `#![no_std]` and no `alloc`: all large arrays live in storage the
//!   caller provides (as in smoltcp), sized by a function of the configuration. After
//!   construction nothing allocates; a test with a counting allocator checks it, and CI builds
//!   the crate for a bare-metal target.
//! - **Deterministic.** Time is an input (integer microseconds) and predictions are inputs; the
//!   same calls give the same decisions, ties broken by arrival.
//! - **Checked at the boundary.** Every id that crosses the API carries a generation; every
//!   fallible operation returns a small, specific error and leaves the state unchanged.
//! - **Cheap per step.** Block operations are O(1); per-step work is proportional to what is
//!   scheduled, never to the waiting queue.
//!
//! Modules:
//! - [`engine`]: the scheduling engine: requests, the step, preemption, pauses.
//! - [`kv`]: the paged KV block manager (device and host pools, prefix caching, copy-on-write,
//!   swap).
//! - [`policy`]: policies as rank functions.
//! - [`queue`]: the indexed heap behind the waiting queue.
//! - [`time`]: the [`Instant`](time::Instant) type.
//!
//! MSRV: Rust 1.88.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// The no-panic guarantee, enforced: no unwrap, expect, panic, unchecked indexing or slicing,
// and no integer arithmetic that can overflow, anywhere outside tests. An invariant that the
// code relies on is checked and, if broken, returned as an `InternalError`.
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

pub mod engine;
mod handle;
mod internal;
pub mod kv;
pub mod policy;
pub mod queue;
pub mod time;
mod util;

pub use internal::InternalError;
pub use util::NIL;
