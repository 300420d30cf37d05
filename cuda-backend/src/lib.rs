//! `augur-cuda`: the optional CUDA backend of augur (DESIGN.md section 6): it carries out a
//! plan's KV block ops on a GPU.
//!
//! # Design goals
//!
//! - **Few launches per plan.** A plan's `swap_out`, `swap_in` and `copies` lists become at most
//!   three kernel launches, whatever the number of blocks and layers: pairs are sorted and
//!   coalesced into runs of adjacent blocks ([`batch`]), and one launch of one kernel copies
//!   every run of every layer's K and V plane. Swaps go through the pinned host pool's
//!   *mapped* address (the kernel reads and writes host memory over the host link directly),
//!   so there is neither one `memcpy` per block per layer nor a staging buffer.
//! - **The plan contract's order, on a stream the caller controls.** Launches are enqueued in
//!   the contract's order (swap out, swap in, copies) on one stream; the caller runs its model
//!   on the same stream (`CudaBackend::with_stream`, feature `cuda`) or orders it with events.
//! - **Layout matching the engine.** One device allocation and one pinned host allocation, each
//!   `2 × layers` planes of blocks indexed by the engine's block ids for that tier
//!   ([`layout`]); `reshape_and_cache` writes a step's new K and V into their slots.
//! - **Builds and tests without CUDA.** The layout math, the batching and a CPU reference of
//!   every op ([`mod@reference`], the oracle of the GPU tests) are plain Rust with
//!   `#![forbid(unsafe_code)]`, built and tested everywhere. The GPU part is behind the `cuda`
//!   feature, on cudarc with dynamic loading: it compiles with no toolkit, and creating a
//!   backend on a machine without a driver, device or NVRTC returns an error, never a panic.
//!   Kernels are compiled with NVRTC at run time from embedded source ([`kernels`] says why).
//! - **No panics on caller input.** Every block id, slot id, stride and buffer length is checked
//!   on the CPU before a launch, and refused as an error value.
//!
//! # Use
//!
//! ```text
//! let backend = augur_cuda::CudaBackend::new(0)?;
//! let mut pools = backend.alloc_pools(shape, device_blocks, host_blocks)?;
//! let mut ops = augur_cuda::BlockOps::new();
//! // each step, before the model runs:
//! backend.execute_plan(&mut pools, &mut ops, plan.swap_out, plan.swap_in, plan.copies)?;
//! // in each layer, after computing the new K and V:
//! backend.reshape_and_cache(&mut pools, layer, &k, k_stride, &v, v_stride, &slot_mapping)?;
//! ```
//!
//! Not here yet: a C entry point in augur-ffi.

#![cfg_attr(not(feature = "cuda"), forbid(unsafe_code))]

pub mod batch;
pub mod kernels;
pub mod layout;
pub mod reference;
#[doc(hidden)]
pub mod testutil;

#[cfg(feature = "cuda")]
mod cuda;

pub use batch::{BatchedOp, BlockOps, BlockPair, OpKind, PlanError, Run, Tier};
#[cfg(feature = "cuda")]
pub use cuda::{BackendError, CudaBackend, KvPools};
pub use layout::{Dtype, Kv, KvShape, LayoutError, PoolLayout};
pub use reference::InputError;

/// Whether this build was compiled with the `cuda` feature (the cudarc dependency).
pub const CUDA_FEATURE_ENABLED: bool = cfg!(feature = "cuda");

#[cfg(test)]
mod tests {
    #[test]
    fn feature_flag_is_reported() {
        assert_eq!(super::CUDA_FEATURE_ENABLED, cfg!(feature = "cuda"));
    }
}
