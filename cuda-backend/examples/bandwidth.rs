//! Bandwidth of the batched block ops against plain copies of the same bytes.
//!
//! `cargo run --release -p augur-cuda --features cuda --example bandwidth [BLOCKS]`
//!
//! Swaps (device ↔ pinned host, through the host pool's mapped address) are compared with one
//! contiguous `cuMemcpy` of the same bytes between device memory and a pinned buffer (the host
//! link's ceiling); copy-on-write copies with one contiguous device-to-device `cuMemcpy` of the
//! same bytes. Each case moves BLOCKS blocks (default 512) across all layers' K and V planes,
//! adjacent (coalesced into runs) or scattered (random block ids). Times from CUDA events, the
//! median of 10 runs after 2 warm-ups.

use std::sync::Arc;

use augur_cuda::testutil::Rng;
use augur_cuda::{BlockOps, BlockPair, CudaBackend, Dtype, KvShape};
use cudarc::driver::{CudaStream, DriverError, sys};

const WARMUP: usize = 2;
const RUNS: usize = 10;

fn time_ms(
    stream: &Arc<CudaStream>,
    mut f: impl FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<f64, Box<dyn std::error::Error>> {
    let ctx = stream.context();
    let mut times = Vec::with_capacity(RUNS);
    for i in 0..WARMUP + RUNS {
        let start = ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
        let end = ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
        start.record(stream)?;
        f()?;
        end.record(stream)?;
        end.synchronize()?;
        if i >= WARMUP {
            times.push(f64::from(start.elapsed_ms(&end)?));
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let blocks: u32 = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 512,
    };
    let b = CudaBackend::new(0)?;
    let stream = b.stream().clone();
    // Llama-3.1-8B-like: 32 layers, 8 KV heads of 128, bf16, 16-token blocks (32 KiB per block
    // per plane, 2 MiB per block across the 64 planes).
    let shape = KvShape {
        layers: 32,
        block_size: 16,
        kv_heads: 8,
        head_dim: 128,
        dtype: Dtype::Bf16,
    };
    let (dev, host) = (blocks * 3, blocks * 2);
    let mut pools = b.alloc_pools(shape, dev, host)?;
    let bytes = pools.device_layout().block_bytes_all_planes() as u64 * u64::from(blocks);
    println!(
        "device {:?}, compute capability {:?}; {} blocks x {} planes x {} KiB = {:.1} MiB per op",
        b.context().name()?,
        b.compute_capability(),
        blocks,
        pools.device_layout().planes(),
        pools.device_layout().block_bytes() / 1024,
        bytes as f64 / (1 << 20) as f64
    );

    // Baselines: one contiguous copy of the same bytes.
    let mut dev_a = stream.alloc_zeros::<u8>(bytes as usize)?;
    let mut dev_b = stream.alloc_zeros::<u8>(bytes as usize)?;
    // SAFETY: the pinned buffer is uninitialized; it is only ever a copy destination or a
    // source after a copy into it (the first dtoh below), and u8 has no invalid bit patterns.
    let mut pinned = unsafe { b.context().alloc_pinned_with_flags::<u8>(bytes as usize, 0) }?;
    let dtod = time_ms(&stream, || Ok(stream.memcpy_dtod(&dev_a, &mut dev_b)?))?;
    let dtoh = time_ms(&stream, || Ok(stream.memcpy_dtoh(&dev_a, &mut pinned)?))?;
    let htod = time_ms(&stream, || Ok(stream.memcpy_htod(&pinned, &mut dev_a)?))?;

    let mut rng = Rng::new(1);
    let ids = |rng: &mut Rng, n: u32, scattered: bool| {
        let mut v: Vec<u32> = (0..n).collect();
        if scattered {
            rng.shuffle(&mut v);
        }
        v
    };
    let mut rows = Vec::new();
    let gbs = |ms: f64| bytes as f64 / (ms * 1e-3) / 1e9;
    for scattered in [false, true] {
        let layout = if scattered { "scattered" } else { "adjacent" };
        let d = ids(&mut rng, dev, scattered);
        let h = ids(&mut rng, host, scattered);
        let pairs = |a: &[u32], c: &[u32]| -> Vec<BlockPair> {
            (0..blocks as usize)
                .map(|i| BlockPair {
                    src: a[i],
                    dst: c[i],
                })
                .collect()
        };
        let so = pairs(&d, &h);
        let si = pairs(&h, &d);
        // Copies: sources from the first third of `d`, destinations from the last third.
        let cp: Vec<BlockPair> = (0..blocks as usize)
            .map(|i| BlockPair {
                src: d[i],
                dst: d[2 * blocks as usize + i],
            })
            .collect();
        for (name, lists, base_name, base) in [
            ("swap out", [&so[..], &[], &[]], "memcpy DtoH", dtoh),
            ("swap in", [&[][..], &si[..], &[]], "memcpy HtoD", htod),
            ("copy", [&[][..], &[], &cp[..]], "memcpy DtoD", dtod),
        ] {
            let mut ops = BlockOps::new();
            ops.build(
                lists[0],
                lists[1],
                lists[2],
                dev,
                host,
                augur_cuda::batch::DEFAULT_MAX_RUN_LEN,
            )?;
            let runs = ops.runs().len();
            let ms = time_ms(&stream, || Ok(b.execute(&mut pools, &ops)?))?;
            rows.push((
                name,
                layout,
                runs,
                ops.ops().len(),
                ms,
                gbs(ms),
                base_name,
                gbs(base),
            ));
        }
    }
    println!();
    println!(
        "{:<9} {:<9} {:>6} {:>8} {:>9} {:>8}   {:<11} {:>8} {:>6}",
        "op", "blocks", "runs", "launches", "ms", "GB/s", "baseline", "GB/s", "ratio"
    );
    for (name, layout, runs, launches, ms, g, bn, bg) in rows {
        println!(
            "{name:<9} {layout:<9} {runs:>6} {launches:>8} {ms:>9.3} {g:>8.1}   {bn:<11} {bg:>8.1} {:>5.0}%",
            100.0 * g / bg
        );
    }
    stream
        .synchronize()
        .map_err(|e: DriverError| Box::new(e) as Box<dyn std::error::Error>)?;
    Ok(())
}
