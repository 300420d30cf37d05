//! The CUDA C source of the backend's kernels, compiled with NVRTC at run time.
//!
//! Why NVRTC and not checked-in PTX or `nvcc` in `build.rs`: the crate must build (and its CPU
//! tests run) on machines with no CUDA toolkit, so nothing may need `nvcc` at build time; and
//! compiling when the backend starts gives PTX for the device's own compute capability
//! (`--gpu-architecture=compute_XY`), with no list of architectures to keep in sync and no
//! generated file to keep current. The cost is a one-off compile of well under a second when a
//! backend is created, and a run-time dependency on `libnvrtc` (part of the CUDA runtime
//! packages; a missing one is an error from `CudaBackend::new`, not a panic).
//!
//! The source is plain C (no headers, no templates beyond one helper), so it needs no include
//! paths. All kernels copy bits: bf16 and fp16 use the same 16-bit `reshape_and_cache` kernel.

#![forbid(unsafe_code)]

/// Kernel names in [`SOURCE`].
pub const COPY_RUNS: &str = "augur_copy_runs";
/// 16-bit elements (fp16, bf16).
pub const RESHAPE_AND_CACHE_16: &str = "augur_reshape_and_cache_16";
/// 32-bit elements (f32).
pub const RESHAPE_AND_CACHE_32: &str = "augur_reshape_and_cache_32";

/// The CUDA C source.
///
/// `augur_copy_runs`: grid `(runs, planes)`; thread block `(r, p)` copies run `r` (`runs[3r]` =
/// first source block, `runs[3r+1]` = first destination block, `runs[3r+2]` = length) of plane
/// `p` from `src` to `dst`, where a plane is `src_plane` (`dst_plane`) bytes and a block
/// `block_bytes`. `src` and `dst` are device pointers: the device pool, or the host pool's
/// mapped (pinned, `DEVICEMAP`) address, so one kernel serves swap out, swap in and copies, and
/// a swap moves all its blocks and layers in one launch. 16-byte loads and stores when
/// `block_bytes` is a multiple of 16 (pool bases are at least 256-byte aligned).
///
/// `augur_reshape_and_cache_*`: grid `(tokens)`; thread block `t` copies token `t`'s
/// `token_elems` key elements (from `key + t * key_stride`) to slot `slots[t]` of the K plane
/// `k_plane`, and likewise for values; a negative slot is skipped (padding).
pub const SOURCE: &str = r#"
typedef unsigned long long u64;
typedef long long i64;

extern "C" __global__ void augur_copy_runs(
    const unsigned char* src, unsigned char* dst, const unsigned int* runs,
    u64 src_plane, u64 dst_plane, u64 block_bytes)
{
    const u64 r = blockIdx.x;
    const u64 plane = blockIdx.y;
    const u64 s = runs[3 * r];
    const u64 d = runs[3 * r + 1];
    const u64 n = runs[3 * r + 2];
    const unsigned char* sp = src + plane * src_plane + s * block_bytes;
    unsigned char* dp = dst + plane * dst_plane + d * block_bytes;
    const u64 bytes = n * block_bytes;
    if ((block_bytes & 15) == 0) {
        const uint4* s4 = (const uint4*)sp;
        uint4* d4 = (uint4*)dp;
        const u64 n4 = bytes >> 4;
        for (u64 i = threadIdx.x; i < n4; i += blockDim.x) {
            d4[i] = s4[i];
        }
    } else {
        for (u64 i = threadIdx.x; i < bytes; i += blockDim.x) {
            dp[i] = sp[i];
        }
    }
}

#define AUGUR_RESHAPE_AND_CACHE(NAME, T)                                              \
extern "C" __global__ void NAME(                                                      \
    const T* key, const T* value, T* k_plane, T* v_plane, const i64* slots,            \
    u64 token_elems, u64 key_stride, u64 value_stride)                                 \
{                                                                                      \
    const u64 t = blockIdx.x;                                                          \
    const i64 slot = slots[t];                                                         \
    if (slot < 0) return;                                                              \
    const T* k = key + t * key_stride;                                                 \
    const T* v = value + t * value_stride;                                             \
    T* kd = k_plane + (u64)slot * token_elems;                                         \
    T* vd = v_plane + (u64)slot * token_elems;                                         \
    for (u64 i = threadIdx.x; i < token_elems; i += blockDim.x) {                      \
        kd[i] = k[i];                                                                  \
        vd[i] = v[i];                                                                  \
    }                                                                                  \
}

AUGUR_RESHAPE_AND_CACHE(augur_reshape_and_cache_16, unsigned short)
AUGUR_RESHAPE_AND_CACHE(augur_reshape_and_cache_32, unsigned int)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_defines_every_kernel_as_extern_c() {
        for name in [COPY_RUNS, RESHAPE_AND_CACHE_16, RESHAPE_AND_CACHE_32] {
            assert!(SOURCE.contains(name), "{name} missing");
        }
        assert!(!SOURCE.contains('\0'), "NVRTC takes a C string");
        assert!(
            !SOURCE.contains("#include"),
            "no headers: no include paths needed"
        );
    }
}
