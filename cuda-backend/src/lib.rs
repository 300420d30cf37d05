//! `augur-cuda`: the optional CUDA backend of augur (DESIGN.md section 6).
//!
//! It will hold a device KV pool (one allocation, layers × K/V × blocks), a pinned host pool for
//! swap, and kernels that carry out a plan's block operations (swap out, swap in, copy) in a few
//! batched launches, plus the kernel that writes a step's new K/V into their paged slots. It is
//! built on cudarc with dynamic loading behind the `cuda` feature, so it compiles on machines
//! without a CUDA toolkit; its GPU tests will say when they were skipped for lack of a GPU.
//!
//! Today it is a skeleton: with or without the `cuda` feature it exposes no backend yet, and
//! nothing here pretends to run on a GPU.

#![forbid(unsafe_code)]

/// Whether this build was compiled with the `cuda` feature (the cudarc dependency).
pub const CUDA_FEATURE_ENABLED: bool = cfg!(feature = "cuda");

#[cfg(test)]
mod tests {
    #[test]
    fn feature_flag_is_reported() {
        assert_eq!(super::CUDA_FEATURE_ENABLED, cfg!(feature = "cuda"));
    }
}
