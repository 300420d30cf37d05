//! The C entry points of the CUDA backend (feature `cuda`): one `augur_cuda` object holds a
//! backend on a CUDA device (its own stream), the device KV pool and the pinned host pool laid
//! out by the engine's block ids, and the reusable op buffers. A C++ server hands it each
//! plan (`augur_cuda_execute_plan`): the plan's swap-outs, swap-ins and copies are enqueued on
//! the backend's stream in the contract's order, in at most three launches. The server runs its
//! model on that stream (`augur_cuda_stream`) or orders against it, and addresses the KV pool
//! through `augur_cuda_device_pool` and `augur_cuda_block_offset`.
//!
//! Without a driver, a device or NVRTC, `augur_cuda_new` returns `AUGUR_E_CUDA` with the
//! reason in its message; it never panics.

use core::ffi::c_char;

use augur_core::kv::BlockPair;
// `::augur_cuda`: the crate, not the C type of that name below.
use ::augur_cuda::{BackendError, BlockOps, CudaBackend, Dtype, Kv, KvPools, KvShape};
use cudarc::driver::DevicePtr;

use super::engine::{
    ErrorText, Fail, GuardedObject, fail, guarded_result, run_guarded, with_staged,
};
use super::ptr;
use super::status::*;
use super::types::{augur_block_pair, augur_plan};

/// KV element type: IEEE half precision.
pub const AUGUR_DTYPE_F16: u32 = 0;
/// KV element type: bfloat16.
pub const AUGUR_DTYPE_BF16: u32 = 1;
/// KV element type: IEEE single precision.
pub const AUGUR_DTYPE_F32: u32 = 2;

/// The model-side shape of the KV cache, the same for the device and the host pool. Each pool
/// holds `2 × layers` planes (plane `2·layer` keys, `2·layer + 1` values); each plane holds
/// the blocks in block-id order, each block `[block_size][kv_heads][head_dim]` elements.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct augur_kv_shape {
    /// Transformer layers.
    pub layers: u32,
    /// Tokens per block: the engine's `block_size`.
    pub block_size: u32,
    /// KV heads (after grouped-query sharing; per tensor-parallel rank).
    pub kv_heads: u32,
    /// Head dimension.
    pub head_dim: u32,
    /// `AUGUR_DTYPE_*`.
    pub dtype: u32,
}

/// A CUDA backend with its KV pools (opaque to C): made by `augur_cuda_new`, destroyed by
/// `augur_cuda_free`.
// In Rust, a type with no fields that is never instantiated: an `augur_cuda *` points at a
// `CudaObject`.
#[allow(non_camel_case_types)]
pub struct augur_cuda {
    _opaque: [u8; 0],
}

/// "augurCUD": marks a live backend object; cleared when it is freed.
const CUDA_TAG: u64 = 0x6175_6775_7243_5544;

/// The object behind `augur_cuda *`; the tag first, as for engines.
#[repr(C)]
struct CudaObject {
    tag: u64,
    /// Dropped before the backend (field order): the pools synchronise its stream.
    pools: KvPools,
    backend: CudaBackend,
    ops: BlockOps,
    panicked: bool,
    error: ErrorText,
}

impl GuardedObject for CudaObject {
    fn poisoned(&mut self) -> &mut bool {
        &mut self.panicked
    }
    fn error_text(&mut self) -> &mut ErrorText {
        &mut self.error
    }
}

fn cuda_fail(e: BackendError) -> Fail {
    let status = match e {
        BackendError::Input(_) | BackendError::ForeignPools => AUGUR_E_INVALID_ARGUMENT,
        _ => AUGUR_E_CUDA,
    };
    fail(status, format_args!("{e}"))
}

fn shape_in(s: &augur_kv_shape) -> Result<KvShape, Fail> {
    let dtype = match s.dtype {
        AUGUR_DTYPE_F16 => Dtype::F16,
        AUGUR_DTYPE_BF16 => Dtype::Bf16,
        AUGUR_DTYPE_F32 => Dtype::F32,
        d => {
            return Err(fail(
                AUGUR_E_INVALID_ARGUMENT,
                format_args!("augur_kv_shape.dtype {d} is not an AUGUR_DTYPE_* value"),
            ));
        }
    };
    Ok(KvShape {
        layers: s.layers,
        block_size: s.block_size,
        kv_heads: s.kv_heads,
        head_dim: s.head_dim,
        dtype,
    })
}

/// Writes the staged message into `reason` (`reason_len` bytes, NUL-terminated, truncated).
fn stage_into(reason: *mut c_char, reason_len: usize) {
    with_staged(|m| super::write_message(reason, reason_len, m));
}

/// Creates a backend on CUDA device `device` (its own stream; kernels compiled by NVRTC for
/// the device) with a device KV pool of `device_blocks` blocks and a pinned, device-mapped host
/// pool of `host_blocks` blocks of shape `*shape`, both zeroed. Use the engine's
/// `device_blocks` and `host_blocks`, so that plan block ids index the pools. On failure
/// `*out` is untouched and, if `reason` is not NULL, the reason is written there
/// (`reason_len` bytes, NUL-terminated): `AUGUR_E_CUDA` without a driver, device or NVRTC,
/// `AUGUR_E_INVALID_ARGUMENT` for a shape whose pools cannot be laid out.
///
/// # Safety
/// `shape` must be NULL or point to a readable `augur_kv_shape`; `out` NULL or writable;
/// `reason` NULL or `reason_len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_cuda_new(
    device: u32,
    shape: *const augur_kv_shape,
    device_blocks: u32,
    host_blocks: u32,
    out: *mut *mut augur_cuda,
    reason: *mut c_char,
    reason_len: usize,
) -> augur_status {
    guarded_result(|| {
        let r = (|| {
            // SAFETY: the caller's contract.
            let s = unsafe { ptr::input(shape, "shape") }?;
            // SAFETY: the caller's contract.
            let o = unsafe { ptr::output(out, "out") }?;
            let shape = shape_in(s)?;
            let backend = CudaBackend::new(device as usize).map_err(cuda_fail)?;
            let pools = backend
                .alloc_pools(shape, device_blocks, host_blocks)
                .map_err(cuda_fail)?;
            let obj = Box::new(CudaObject {
                tag: CUDA_TAG,
                pools,
                backend,
                ops: BlockOps::default(),
                panicked: false,
                error: ErrorText::new(),
            });
            o.write(Box::into_raw(obj).cast::<augur_cuda>());
            Ok::<(), Fail>(())
        })();
        // The reason, for a caller that has no object to ask yet.
        r.inspect_err(|_| stage_into(reason, reason_len))
    })
}

/// The live object behind `c`.
///
/// # Safety
/// `c` must be NULL or point to at least 8 readable bytes (a live object from
/// `augur_cuda_new`, or memory that is not one, which is refused).
unsafe fn live<'c>(c: *mut augur_cuda) -> Result<&'c mut CudaObject, augur_status> {
    let c = c.cast::<CudaObject>();
    if c.is_null() {
        return Err(AUGUR_E_NULL_POINTER);
    }
    if !c.is_aligned() {
        return Err(AUGUR_E_INVALID_ARGUMENT);
    }
    // SAFETY: non-NULL and aligned; the tag is the first field, read before anything else.
    let tag = unsafe { core::ptr::addr_of!((*c).tag).read() };
    if tag != CUDA_TAG {
        return Err(AUGUR_E_INVALID_ARGUMENT);
    }
    // SAFETY: a live object, used by one thread at a time (augur.h).
    Ok(unsafe { &mut *c })
}

fn with_cuda(
    c: *mut augur_cuda,
    f: impl FnOnce(&mut CudaObject) -> Result<(), Fail>,
) -> augur_status {
    super::engine::guarded(|| {
        // SAFETY: the C caller's contract for every `augur_cuda *` argument.
        match unsafe { live(c) } {
            Ok(obj) => run_guarded(obj, "the CUDA backend", f),
            Err(s) => s,
        }
    })
}

/// The block pairs of a plan list, as the backend takes them.
///
/// # Safety
/// As `ptr::slice_in`.
unsafe fn pairs<'a>(
    p: *const augur_block_pair,
    n: usize,
    what: &str,
) -> Result<&'a [BlockPair], Fail> {
    // SAFETY: the caller's contract; `augur_block_pair` and `BlockPair` have one layout
    // (`same_layout!` in types.rs).
    unsafe { ptr::slice_in(p.cast::<BlockPair>(), n, what) }
}

/// Enqueues the block operations of `*plan` on the backend's stream: its swap-outs, then its
/// swap-ins, then its copies (the plan contract's order), each list coalesced into runs of
/// adjacent blocks and carried out by one kernel launch. Returns once they are enqueued; run
/// the step's model on `augur_cuda_stream` (or wait on it) so that it sees them. Every block id
/// is checked against the pools first: a plan from another engine configuration is
/// `AUGUR_E_INVALID_ARGUMENT` and nothing is launched.
///
/// # Safety
/// `cuda` must be NULL or a live pointer from `augur_cuda_new`; `plan` NULL or a plan from
/// `augur_schedule` whose arrays are still valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_cuda_execute_plan(
    cuda: *mut augur_cuda,
    plan: *const augur_plan,
) -> augur_status {
    with_cuda(cuda, |c| {
        // SAFETY: the caller's contract.
        let p = unsafe { ptr::input(plan, "plan") }?;
        // SAFETY: the plan's arrays, valid until the engine changes (the caller's contract).
        let (out, inn, cp) = unsafe {
            (
                pairs(p.swap_out, p.swap_out_len, "plan.swap_out")?,
                pairs(p.swap_in, p.swap_in_len, "plan.swap_in")?,
                pairs(p.copies, p.copies_len, "plan.copies")?,
            )
        };
        c.backend
            .execute_plan(&mut c.pools, &mut c.ops, out, inn, cp)
            .map_err(cuda_fail)
    })
}

/// Waits until everything enqueued on the backend's stream has finished.
///
/// # Safety
/// `cuda` must be NULL or a live pointer from `augur_cuda_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_cuda_synchronize(cuda: *mut augur_cuda) -> augur_status {
    with_cuda(cuda, |c| {
        c.backend
            .stream()
            .synchronize()
            .map_err(|e| cuda_fail(BackendError::Driver(e)))
    })
}

/// The backend's stream, as a `CUstream` (driver API; a `cudaStream_t` is the same handle),
/// owned by the backend until `augur_cuda_free`.
///
/// # Safety
/// `cuda` must be NULL or a live pointer from `augur_cuda_new`; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_cuda_stream(
    cuda: *mut augur_cuda,
    out: *mut *mut core::ffi::c_void,
) -> augur_status {
    with_cuda(cuda, |c| {
        // SAFETY: the caller's contract.
        let o = unsafe { ptr::output(out, "out") }?;
        o.write(c.backend.stream().cu_stream().cast());
        Ok(())
    })
}

/// The device KV pool: its device address (`CUdeviceptr`) and size in bytes. It stays at that
/// address until `augur_cuda_free`.
///
/// # Safety
/// `cuda` must be NULL or a live pointer from `augur_cuda_new`; `address` and `bytes` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_cuda_device_pool(
    cuda: *mut augur_cuda,
    address: *mut u64,
    bytes: *mut usize,
) -> augur_status {
    with_cuda(cuda, |c| {
        // SAFETY: the caller's contract.
        let (a, b) = unsafe {
            (
                ptr::output(address, "address")?,
                ptr::output(bytes, "bytes")?,
            )
        };
        let stream = c.backend.stream();
        let (dptr, _sync) = c.pools.device().device_ptr(stream);
        a.write(dptr);
        b.write(c.pools.device_layout().total_bytes());
        Ok(())
    })
}

/// The byte offset of block `block`'s keys (`kv` 0) or values (`kv` 1) of layer `layer` in the
/// device pool (`[block_size][kv_heads][head_dim]` elements from there).
///
/// # Safety
/// `cuda` must be NULL or a live pointer from `augur_cuda_new`; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_cuda_block_offset(
    cuda: *mut augur_cuda,
    layer: u32,
    kv: u32,
    block: u32,
    out: *mut usize,
) -> augur_status {
    with_cuda(cuda, |c| {
        // SAFETY: the caller's contract.
        let o = unsafe { ptr::output(out, "out") }?;
        let kv = match kv {
            0 => Kv::K,
            1 => Kv::V,
            k => {
                return Err(fail(
                    AUGUR_E_INVALID_ARGUMENT,
                    format_args!("kv {k} is neither 0 (keys) nor 1 (values)"),
                ));
            }
        };
        let off = c
            .pools
            .device_layout()
            .block_offset(layer, kv, block)
            .map_err(|e| fail(AUGUR_E_INVALID_ARGUMENT, format_args!("{e}")))?;
        o.write(off);
        Ok(())
    })
}

/// The message of the last failed call on `cuda` (NUL-terminated, valid until the next call
/// on it), or a static message for NULL or a pointer that is not a live backend.
///
/// # Safety
/// `cuda` must be NULL or point to at least 8 readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_cuda_last_error(cuda: *const augur_cuda) -> *const c_char {
    // SAFETY: the caller's contract; `live` only reads the tag before the reference is used.
    match unsafe { live(cuda.cast_mut()) } {
        Ok(c) => c.error.as_c_str(),
        Err(AUGUR_E_NULL_POINTER) => c"augur_cuda is NULL".as_ptr(),
        Err(_) => c"not a live augur_cuda".as_ptr(),
    }
}

/// Waits for the backend's stream, then frees the pools and the backend. NULL is ignored.
///
/// # Safety
/// `cuda` must be NULL or a pointer from `augur_cuda_new` not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn augur_cuda_free(cuda: *mut augur_cuda) {
    let _ = super::engine::guarded(|| {
        // SAFETY: the caller's contract.
        if let Ok(c) = unsafe { live(cuda) } {
            c.tag = 0;
            let _ = c.backend.stream().synchronize();
            // SAFETY: made by `Box::into_raw` in `augur_cuda_new`, freed once (the tag is
            // cleared above).
            drop(unsafe { Box::from_raw(cuda.cast::<CudaObject>()) });
        }
        AUGUR_OK
    });
}

#[cfg(test)]
mod tests {
    use core::ptr::{null, null_mut};

    use super::*;

    fn shape() -> augur_kv_shape {
        augur_kv_shape {
            layers: 2,
            block_size: 16,
            kv_heads: 2,
            head_dim: 64,
            dtype: AUGUR_DTYPE_BF16,
        }
    }

    /// Without a GPU (this CI machine), creating a backend is `AUGUR_E_CUDA` with the reason,
    /// `*out` untouched; bad arguments are refused first. With a GPU, the object works.
    #[test]
    fn new_reports_a_missing_driver_and_refuses_bad_input() {
        let mut reason = [0 as c_char; 128];
        let mut out = core::ptr::without_provenance_mut::<augur_cuda>(8);
        // SAFETY: valid pointers.
        let s = unsafe { augur_cuda_new(0, &shape(), 8, 4, &mut out, reason.as_mut_ptr(), 128) };
        // SAFETY: NUL-terminated by the call.
        let why = unsafe { core::ffi::CStr::from_ptr(reason.as_ptr()) }.to_string_lossy();
        if s == AUGUR_OK {
            // A GPU is present: the object answers and frees.
            let mut bytes = 0;
            let mut addr = 0;
            // SAFETY: a live object; valid pointers.
            unsafe {
                assert_eq!(augur_cuda_device_pool(out, &mut addr, &mut bytes), AUGUR_OK);
                assert_eq!(bytes, 2 * 2 * 8 * 16 * 2 * 64 * 2);
                augur_cuda_free(out);
            }
        } else {
            assert_eq!(s, AUGUR_E_CUDA, "{why}");
            assert_eq!(out.addr(), 8, "out written on failure");
            assert!(why.contains("CUDA") || why.contains("NVRTC"), "{why}");
        }
        let mut bad = shape();
        bad.dtype = 9;
        // SAFETY: valid pointers.
        let s = unsafe { augur_cuda_new(0, &bad, 8, 4, &mut out, reason.as_mut_ptr(), 128) };
        assert_eq!(s, AUGUR_E_INVALID_ARGUMENT);
        // SAFETY: NUL-terminated by the call.
        let why = unsafe { core::ffi::CStr::from_ptr(reason.as_ptr()) }.to_string_lossy();
        assert!(why.contains("dtype 9"), "{why}");
        // SAFETY: NULL pointers are what is tested.
        unsafe {
            assert_eq!(
                augur_cuda_new(0, null(), 8, 4, &mut out, null_mut(), 0),
                AUGUR_E_NULL_POINTER
            );
            assert_eq!(
                augur_cuda_new(0, &shape(), 8, 4, null_mut(), null_mut(), 0),
                AUGUR_E_NULL_POINTER
            );
        }
    }

    #[test]
    fn calls_on_null_or_forged_objects_are_refused() {
        let mut forged = [0u64; 2];
        let f = forged.as_mut_ptr().cast::<augur_cuda>();
        let mut stream = null_mut();
        // SAFETY: NULL, and 16 readable bytes that are not an object: both refused.
        unsafe {
            assert_eq!(
                augur_cuda_execute_plan(null_mut(), null()),
                AUGUR_E_NULL_POINTER
            );
            assert_eq!(augur_cuda_stream(f, &mut stream), AUGUR_E_INVALID_ARGUMENT);
            assert_eq!(augur_cuda_synchronize(f), AUGUR_E_INVALID_ARGUMENT);
            let msg = core::ffi::CStr::from_ptr(augur_cuda_last_error(f));
            assert_eq!(msg.to_str().unwrap(), "not a live augur_cuda");
            augur_cuda_free(null_mut());
            augur_cuda_free(f);
        }
        assert!(stream.is_null());
        assert_eq!(forged, [0, 0]);
    }
}
