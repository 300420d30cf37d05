//! The cudarc backend (feature `cuda`): device and pinned host KV pools, and the batched block
//! ops and `reshape_and_cache` as kernel launches on one stream.
//!
//! This is the only module with `unsafe`: kernel launches and the pinned allocation, each with a
//! `// SAFETY:` comment. Every launch's memory accesses are bounded by checks done on the CPU
//! first (block ids against the pools, slot ids against the pool, input lengths against the
//! strides), so no caller input reaches a kernel unchecked.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DriverError,
    LaunchConfig, PinnedHostSlice, PushKernelArg, sys,
};
use cudarc::nvrtc;

use crate::batch::{BlockOps, BlockPair, DEFAULT_MAX_RUN_LEN, OpKind};
use crate::kernels;
use crate::layout::{Dtype, Kv, KvShape, PoolLayout};
use crate::reference::{InputError, check_slot_mapping, input_bytes};

/// Why the backend could not be created or an op could not be carried out.
#[derive(Debug)]
pub enum BackendError {
    /// The CUDA driver library (`libcuda`) could not be loaded or used.
    DriverUnavailable(String),
    /// The NVRTC library (`libnvrtc`) could not be loaded.
    NvrtcUnavailable(String),
    /// The driver is there but has no device of this ordinal.
    NoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// Devices the driver reports.
        devices: usize,
    },
    /// A CUDA driver call failed.
    Driver(DriverError),
    /// NVRTC could not compile the kernels.
    Compile(String),
    /// The caller's input was refused before anything was launched.
    Input(InputError),
    /// The pools were allocated by another backend (another stream or context).
    ForeignPools,
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendError::DriverUnavailable(m) => write!(f, "CUDA driver unavailable: {m}"),
            BackendError::NvrtcUnavailable(m) => write!(f, "NVRTC unavailable: {m}"),
            BackendError::NoDevice { ordinal, devices } => {
                write!(f, "no CUDA device {ordinal} (the driver reports {devices})")
            }
            BackendError::Driver(e) => write!(f, "CUDA driver error: {e}"),
            BackendError::Compile(m) => write!(f, "NVRTC compile error: {m}"),
            BackendError::Input(e) => e.fmt(f),
            BackendError::ForeignPools => f.write_str("these pools belong to another backend"),
        }
    }
}

impl std::error::Error for BackendError {}

impl From<DriverError> for BackendError {
    fn from(e: DriverError) -> Self {
        BackendError::Driver(e)
    }
}

impl From<InputError> for BackendError {
    fn from(e: InputError) -> Self {
        BackendError::Input(e)
    }
}

/// Run a cudarc call that may panic when a library or symbol is missing (its dynamic loading
/// panics then), turning the panic into `on_panic`'s error.
fn no_panic<T>(
    on_panic: fn(String) -> BackendError,
    f: impl FnOnce() -> Result<T, BackendError>,
) -> Result<T, BackendError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "cudarc panicked".to_string());
            Err(on_panic(msg))
        }
    }
}

const THREADS: u32 = 256;

/// A CUDA device with the backend's kernels loaded, and the stream every op is enqueued on.
///
/// Ops are asynchronous: they are ordered on [`CudaBackend::stream`] and return once enqueued.
/// Order the model against them by running it on the same stream (create the backend with
/// [`CudaBackend::with_stream`]) or with events.
#[derive(Debug)]
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    copy_runs: CudaFunction,
    reshape_16: CudaFunction,
    reshape_32: CudaFunction,
    compute_capability: (i32, i32),
}

impl CudaBackend {
    /// The backend on device `ordinal`, on a new stream. Without a driver, a device or NVRTC it
    /// returns an error; it never panics for their absence.
    pub fn new(ordinal: usize) -> Result<Self, BackendError> {
        // SAFETY: this only tries to dlopen the driver library under its usual names (running
        // its initializers, as any use of the driver does) and closes it again.
        if !unsafe { sys::is_culib_present() } {
            return Err(BackendError::DriverUnavailable(
                "libcuda.so not found (no NVIDIA driver on this machine)".into(),
            ));
        }
        let devices = no_panic(BackendError::DriverUnavailable, || {
            Ok(CudaContext::device_count()?)
        })?;
        let devices = usize::try_from(devices).unwrap_or(0);
        if ordinal >= devices {
            return Err(BackendError::NoDevice { ordinal, devices });
        }
        let stream = no_panic(BackendError::DriverUnavailable, || {
            let ctx = CudaContext::new(ordinal)?;
            Ok(ctx.new_stream()?)
        })?;
        Self::with_stream(stream)
    }

    /// The backend on the caller's stream (say, the model's), so block ops and the model are
    /// ordered by the stream itself.
    pub fn with_stream(stream: Arc<CudaStream>) -> Result<Self, BackendError> {
        // SAFETY: as in `new`, for the NVRTC library.
        if !unsafe { nvrtc::sys::is_culib_present() } {
            return Err(BackendError::NvrtcUnavailable(
                "libnvrtc.so not found (install the CUDA runtime's NVRTC package)".into(),
            ));
        }
        let ctx = stream.context().clone();
        let compute_capability = ctx.compute_capability()?;
        let (major, minor) = compute_capability;
        let ptx = no_panic(BackendError::NvrtcUnavailable, || {
            let opts = nvrtc::CompileOptions {
                options: vec![format!("--gpu-architecture=compute_{major}{minor}")],
                name: Some("augur_kernels.cu".into()),
                ..Default::default()
            };
            nvrtc::compile_ptx_with_opts(kernels::SOURCE, opts)
                .map_err(|e| BackendError::Compile(e.to_string()))
        })?;
        let module = no_panic(
            BackendError::DriverUnavailable,
            || Ok(ctx.load_module(ptx)?),
        )?;
        Ok(CudaBackend {
            copy_runs: module.load_function(kernels::COPY_RUNS)?,
            reshape_16: module.load_function(kernels::RESHAPE_AND_CACHE_16)?,
            reshape_32: module.load_function(kernels::RESHAPE_AND_CACHE_32)?,
            ctx,
            stream,
            compute_capability,
        })
    }

    fn check_own(&self, pools: &KvPools) -> Result<(), BackendError> {
        if Arc::ptr_eq(&pools.stream, &self.stream) {
            Ok(())
        } else {
            Err(BackendError::ForeignPools)
        }
    }

    /// The stream every op is enqueued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The device's compute capability (the kernels were compiled for it).
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// Allocate the KV pools: one device allocation of `device_blocks` blocks and one pinned,
    /// device-mapped host allocation of `host_blocks` blocks, both zeroed, laid out as
    /// [`PoolLayout`] says with the engine's block ids of each tier.
    pub fn alloc_pools(
        &self,
        shape: KvShape,
        device_blocks: u32,
        host_blocks: u32,
    ) -> Result<KvPools, BackendError> {
        let dl = PoolLayout::new(shape, device_blocks).map_err(InputError::from)?;
        let hl = PoolLayout::new(shape, host_blocks).map_err(InputError::from)?;
        let device = self.stream.alloc_zeros::<u8>(dl.total_bytes())?;
        // SAFETY: the memory is uninitialized until the `fill(0)` just below, and nothing reads
        // it before; u8 has no invalid bit patterns. DEVICEMAP makes it addressable by kernels.
        let mut host = unsafe {
            self.ctx.alloc_pinned_with_flags::<u8>(
                hl.total_bytes(),
                sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE,
            )
        }?;
        host.as_mut_slice()?.fill(0);
        let host_ptr = host.as_mut_ptr()?;
        let mut host_dptr: sys::CUdeviceptr = 0;
        // SAFETY: `host_ptr` is the start of a live pinned allocation made with DEVICEMAP in
        // this context (bound to this thread by the allocation), flags must be 0, and the
        // result is written to a valid local.
        unsafe {
            sys::cuMemHostGetDevicePointer_v2(&mut host_dptr, host_ptr.cast(), 0).result()?;
        }
        Ok(KvPools {
            device,
            host,
            host_dptr,
            dl,
            hl,
            runs: self.stream.alloc_zeros::<u32>(3)?,
            runs_host: Vec::new(),
            slots: self.stream.alloc_zeros::<i64>(1)?,
            stream: self.stream.clone(),
        })
    }

    /// Validate and batch a plan's block ops into `ops` (reused) and enqueue them on the stream:
    /// at most three launches, in the contract's order.
    pub fn execute_plan(
        &self,
        pools: &mut KvPools,
        ops: &mut BlockOps,
        swap_out: &[BlockPair],
        swap_in: &[BlockPair],
        copies: &[BlockPair],
    ) -> Result<(), BackendError> {
        ops.build(
            swap_out,
            swap_in,
            copies,
            pools.dl.blocks(),
            pools.hl.blocks(),
            DEFAULT_MAX_RUN_LEN,
        )
        .map_err(InputError::from)?;
        self.execute(pools, ops)
    }

    /// Enqueue batched ops: one `augur_copy_runs` launch per op (all its runs and planes), in
    /// the order of `ops.ops()`. Every run is checked against the pools first.
    pub fn execute(&self, pools: &mut KvPools, ops: &BlockOps) -> Result<(), BackendError> {
        self.check_own(pools)?;
        if ops.is_empty() {
            return Ok(());
        }
        let planes = pools.dl.planes();
        if planes > 65_535 {
            return Err(InputError::TooLarge("layers (grid y is at most 65535 planes)").into());
        }
        for op in ops.ops() {
            let (sb, db) = match op.kind {
                OpKind::SwapOut => (pools.dl.blocks(), pools.hl.blocks()),
                OpKind::SwapIn => (pools.hl.blocks(), pools.dl.blocks()),
                OpKind::Copy => (pools.dl.blocks(), pools.dl.blocks()),
            };
            for r in ops.runs_of(op) {
                let fits = |start: u32, blocks: u32| {
                    r.len >= 1 && start.checked_add(r.len).is_some_and(|e| e <= blocks)
                };
                if !fits(r.src, sb) || !fits(r.dst, db) {
                    return Err(InputError::Plan(crate::batch::PlanError::BlockOutOfRange {
                        kind: op.kind,
                        tier: if fits(r.src, sb) {
                            op.kind.dst_tier()
                        } else {
                            op.kind.src_tier()
                        },
                        block: if fits(r.src, sb) { r.dst } else { r.src },
                        pool_blocks: if fits(r.src, sb) { db } else { sb },
                    })
                    .into());
                }
            }
            // Grid x is at most 2^31 - 1 thread blocks.
            if op.runs.len() > i32::MAX as usize {
                return Err(InputError::TooLarge("runs in one op").into());
            }
        }
        // Upload all runs once.
        pools.runs_host.clear();
        for r in ops.runs() {
            pools.runs_host.extend_from_slice(&[r.src, r.dst, r.len]);
        }
        if pools.runs.len() < pools.runs_host.len() {
            pools.runs = self.stream.alloc_zeros::<u32>(pools.runs_host.len())?;
        }
        let n = pools.runs_host.len();
        self.stream
            .memcpy_htod(&pools.runs_host, &mut pools.runs.slice_mut(..n))?;

        let block_bytes = pools.dl.block_bytes() as u64;
        let (dplane, hplane) = (pools.dl.plane_bytes() as u64, pools.hl.plane_bytes() as u64);
        let host = pools.host_dptr;
        let (runs_base, _runs_guard) = pools.runs.device_ptr(&self.stream);
        let (dev, _dev_guard) = pools.device.device_ptr_mut(&self.stream);
        for op in ops.ops() {
            let (src, dst, src_plane, dst_plane) = match op.kind {
                OpKind::SwapOut => (dev, host, dplane, hplane),
                OpKind::SwapIn => (host, dev, hplane, dplane),
                OpKind::Copy => (dev, dev, dplane, dplane),
            };
            let runs_ptr = runs_base + (op.runs.start as u64) * 12;
            let cfg = LaunchConfig {
                grid_dim: (op.runs.len() as u32, planes, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = self.stream.launch_builder(&self.copy_runs);
            b.arg(&src)
                .arg(&dst)
                .arg(&runs_ptr)
                .arg(&src_plane)
                .arg(&dst_plane)
                .arg(&block_bytes);
            // SAFETY: the argument list matches `augur_copy_runs` (three pointers, three u64).
            // Every run was checked above to lie inside its source and destination pools, so
            // each thread block reads `len × block_bytes` bytes of one plane of a live
            // allocation and writes as many inside the other; `runs_ptr` points at this op's
            // runs, uploaded above on the same stream (so before the launch). The device pool
            // is borrowed mutably and the runs buffer shared until the guards drop, after the
            // launches are enqueued; the host pool lives in `pools`, borrowed mutably here.
            // Destinations of one op are distinct and no copy reads a copy's destination
            // (checked by `BlockOps::build`), so thread blocks of one launch never race.
            unsafe { b.launch(cfg) }?;
        }
        Ok(())
    }

    /// vLLM's `reshape_and_cache` for layer `layer`: token `t`'s key (`kv_heads × head_dim`
    /// elements from element `t × key_stride` of `key`) and value are written to slot
    /// `slot_mapping[t]` (`block × block_size + offset`) of the layer's K and V planes of the
    /// device pool; negative slots are skipped. `key` and `value` hold elements of the pool's
    /// dtype (any `T` of that size); strides are in elements. Slots are checked (in range, no
    /// slot twice) before the launch.
    #[allow(clippy::too_many_arguments)]
    pub fn reshape_and_cache<T, K: DevicePtr<T>, V: DevicePtr<T>>(
        &self,
        pools: &mut KvPools,
        layer: u32,
        key: &K,
        key_stride: usize,
        value: &V,
        value_stride: usize,
        slot_mapping: &[i64],
    ) -> Result<(), BackendError> {
        self.check_own(pools)?;
        let l = pools.dl;
        let kp = l.plane(layer, Kv::K).map_err(InputError::from)?;
        let vp = l.plane(layer, Kv::V).map_err(InputError::from)?;
        let tokens = slot_mapping.len();
        for (what, len, stride) in [
            ("key", key.num_bytes(), key_stride),
            ("value", value.num_bytes(), value_stride),
        ] {
            let need = input_bytes(&l, tokens, stride, what)?;
            if len < need {
                return Err(InputError::BufferSize {
                    what,
                    expected: need,
                    got: len,
                }
                .into());
            }
        }
        check_slot_mapping(&l, slot_mapping)?;
        if tokens == 0 {
            return Ok(());
        }
        let grid = u32::try_from(tokens).map_err(|_| InputError::TooLarge("tokens"))?;
        if pools.slots.len() < tokens {
            pools.slots = self.stream.alloc_zeros::<i64>(tokens)?;
        }
        self.stream
            .memcpy_htod(slot_mapping, &mut pools.slots.slice_mut(..tokens))?;
        let func = match l.shape().dtype {
            Dtype::F16 | Dtype::Bf16 => &self.reshape_16,
            Dtype::F32 => &self.reshape_32,
        };
        let token_elems = (l.token_bytes() / l.shape().dtype.size()) as u64;
        let (ks, vs) = (key_stride as u64, value_stride as u64);
        let (k_off, v_off) = (
            l.plane_offset(kp).map_err(InputError::from)? as u64,
            l.plane_offset(vp).map_err(InputError::from)? as u64,
        );
        let (kptr, _kg) = key.device_ptr(&self.stream);
        let (vptr, _vg) = value.device_ptr(&self.stream);
        let (slots, _sg) = pools.slots.device_ptr(&self.stream);
        let (dev, _dg) = pools.device.device_ptr_mut(&self.stream);
        let (k_plane, v_plane) = (dev + k_off, dev + v_off);
        let threads = (token_elems.min(u64::from(THREADS)) as u32).div_ceil(32) * 32;
        let cfg = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream.launch_builder(func);
        b.arg(&kptr)
            .arg(&vptr)
            .arg(&k_plane)
            .arg(&v_plane)
            .arg(&slots);
        b.arg(&token_elems).arg(&ks).arg(&vs);
        // SAFETY: the arguments match `augur_reshape_and_cache_*` (five pointers, three u64),
        // and the kernel's element size is the pool's dtype size. Token t reads
        // `token_elems` elements from element `t × stride` of key and value, which the length
        // checks above keep inside them; it writes `token_elems` elements at slot
        // `slot_mapping[t]` of the layer's K and V planes, in range (checked) and distinct
        // across tokens (checked), so inside the device pool and race-free. The slot ids were
        // uploaded on this stream before the launch. All buffers are borrowed until the guards
        // drop, after the launch is enqueued.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }
}

/// The device KV pool and the pinned host pool (plus small buffers the launches use).
#[derive(Debug)]
pub struct KvPools {
    device: CudaSlice<u8>,
    host: PinnedHostSlice<u8>,
    host_dptr: sys::CUdeviceptr,
    dl: PoolLayout,
    hl: PoolLayout,
    runs: CudaSlice<u32>,
    runs_host: Vec<u32>,
    slots: CudaSlice<i64>,
    stream: Arc<CudaStream>,
}

impl Drop for KvPools {
    fn drop(&mut self) {
        // Kernels may still be reading or writing the host pool through its mapped address:
        // wait for them before the pinned memory is freed. An error cannot be returned from
        // here; it is recorded on the context (cudarc's `check_err`).
        self.stream.context().record_err(self.stream.synchronize());
    }
}

impl KvPools {
    /// The device pool's layout.
    pub fn device_layout(&self) -> &PoolLayout {
        &self.dl
    }

    /// The host pool's layout.
    pub fn host_layout(&self) -> &PoolLayout {
        &self.hl
    }

    /// The device pool (for the model's attention kernels: plane `p` starts at byte
    /// `device_layout().plane_offset(p)`).
    pub fn device(&self) -> &CudaSlice<u8> {
        &self.device
    }

    /// The device pool, writable.
    pub fn device_mut(&mut self) -> &mut CudaSlice<u8> {
        &mut self.device
    }

    /// The host pool, after the stream has finished (the kernels write it through its mapped
    /// address, which cudarc's event tracking does not see, so this synchronizes the stream).
    pub fn host(&mut self) -> Result<&[u8], BackendError> {
        self.stream.synchronize()?;
        Ok(self.host.as_slice()?)
    }

    /// The host pool, writable, after the stream has finished.
    pub fn host_mut(&mut self) -> Result<&mut [u8], BackendError> {
        self.stream.synchronize()?;
        Ok(self.host.as_mut_slice()?)
    }

    /// Copy `data` (exactly the device pool's size) into the device pool.
    pub fn upload_device(&mut self, data: &[u8]) -> Result<(), BackendError> {
        if data.len() != self.dl.total_bytes() {
            return Err(InputError::BufferSize {
                what: "device pool",
                expected: self.dl.total_bytes(),
                got: data.len(),
            }
            .into());
        }
        self.stream.memcpy_htod(data, &mut self.device)?;
        Ok(())
    }

    /// The device pool's bytes, after the stream has finished.
    pub fn download_device(&self) -> Result<Vec<u8>, BackendError> {
        let v = self.stream.clone_dtoh(&self.device)?;
        self.stream.synchronize()?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cudarc's dynamic loading panics when libcuda is missing; the guard turns that into an
    /// error. On a machine without a driver this exercises the panic path itself (bypassing
    /// the `is_culib_present` probe `CudaBackend::new` does first).
    #[test]
    fn a_missing_driver_panic_becomes_an_error() {
        let r = no_panic(BackendError::DriverUnavailable, || {
            Ok(CudaContext::device_count()?)
        });
        // SAFETY: only probes for the driver library (see `CudaBackend::new`).
        let present = unsafe { sys::is_culib_present() };
        if !present {
            match r {
                Err(BackendError::DriverUnavailable(m)) => assert!(!m.is_empty()),
                other => panic!("expected DriverUnavailable, got {other:?}"),
            }
        }
        let r: Result<(), _> = no_panic(BackendError::Compile, || panic!("boom"));
        assert!(matches!(r, Err(BackendError::Compile(m)) if m == "boom"));
    }
}
