//! GPU tests: the CUDA backend against the CPU reference, on random data.
//!
//! The tests that need a GPU are `#[ignore]`d, so `cargo test` on a machine without one lists
//! them as ignored with the reason, never as passed. Run them with `--ignored` (or
//! `scripts/gpu-check.sh`); run that way without a usable GPU they **fail**, naming the reason
//! (no driver, no device, no NVRTC): a GPU test that cannot reach a GPU has not passed.
//!
//! Two tests always run: creating a backend without a driver or device is an error and not a
//! panic; and with `AUGUR_REQUIRE_GPU=1` set, a missing GPU fails the run even when the ignored
//! tests were (by mistake) not asked for.

#![cfg(feature = "cuda")]

use augur_cuda::reference::{execute_pairs, reshape_and_cache};
use augur_cuda::testutil::{Rng, random_plan};
use augur_cuda::{
    BackendError, BlockOps, BlockPair, CudaBackend, Dtype, InputError, KvPools, KvShape, OpKind,
    PlanError, Tier,
};

fn gpu() -> CudaBackend {
    match CudaBackend::new(0) {
        Ok(b) => b,
        Err(e) => panic!(
            "this GPU test was run (--ignored) but there is no usable GPU: {e}. \
             It needs a CUDA GPU, its driver and NVRTC; without them it fails rather than pass."
        ),
    }
}

fn require_gpu() -> bool {
    std::env::var("AUGUR_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

#[test]
fn no_gpu_is_an_error_not_a_panic() {
    let r = std::panic::catch_unwind(|| CudaBackend::new(0).map(|_| ()));
    let r = r.expect("CudaBackend::new panicked");
    match r {
        Ok(()) => println!("a CUDA device is present"),
        Err(e) => {
            println!("no GPU here: {e}");
            assert!(
                matches!(
                    e,
                    BackendError::DriverUnavailable(_)
                        | BackendError::NoDevice { .. }
                        | BackendError::NvrtcUnavailable(_)
                ),
                "unexpected error kind: {e:?}"
            );
        }
    }
    // No machine has this many devices: always an error, on either kind of machine.
    let r = std::panic::catch_unwind(|| CudaBackend::new(usize::MAX).map(|_| ()));
    assert!(r.expect("CudaBackend::new panicked").is_err());
}

#[test]
fn require_gpu_when_asked() {
    match CudaBackend::new(0) {
        Ok(b) => println!(
            "GPU found (compute capability {:?})",
            b.compute_capability()
        ),
        Err(e) if require_gpu() => panic!("AUGUR_REQUIRE_GPU=1 but no usable GPU: {e}"),
        Err(e) => println!(
            "SKIPPED: the GPU tests in this file are ignored here ({e}); \
             run them with --ignored or scripts/gpu-check.sh on a GPU machine"
        ),
    }
}

fn random_pools(
    b: &CudaBackend,
    rng: &mut Rng,
    shape: KvShape,
    dev: u32,
    host: u32,
) -> (KvPools, Vec<u8>, Vec<u8>) {
    let mut pools = b.alloc_pools(shape, dev, host).unwrap();
    let mut d = vec![0u8; pools.device_layout().total_bytes()];
    let mut h = vec![0u8; pools.host_layout().total_bytes()];
    rng.fill(&mut d);
    rng.fill(&mut h);
    pools.upload_device(&d).unwrap();
    pools.host_mut().unwrap().copy_from_slice(&h);
    (pools, d, h)
}

fn shapes() -> Vec<KvShape> {
    let s = |layers, block_size, kv_heads, head_dim, dtype| KvShape {
        layers,
        block_size,
        kv_heads,
        head_dim,
        dtype,
    };
    vec![
        s(1, 1, 1, 3, Dtype::F16),    // 6-byte blocks: the kernel's byte path
        s(2, 16, 2, 64, Dtype::Bf16), // 4 KiB blocks: the 16-byte path
        s(3, 4, 1, 5, Dtype::F32),    // 80-byte blocks
        s(4, 16, 8, 128, Dtype::Bf16),
        s(2, 8, 4, 32, Dtype::F16),
    ]
}

#[test]
#[ignore = "needs a CUDA GPU; run with --ignored or scripts/gpu-check.sh"]
fn gpu_block_ops_match_reference() {
    let b = gpu();
    let mut rng = Rng::new(42);
    let mut ops = BlockOps::new();
    let mut case = 0;
    for shape in shapes() {
        for (dev, host) in [(2, 2), (7, 5), (64, 33), (300, 200)] {
            for rep in 0..4 {
                case += 1;
                let (mut pools, mut d, mut h) = random_pools(&b, &mut rng, shape, dev, host);
                let (so, si, cp) = random_plan(&mut rng, dev, host, rep % 2 == 0);
                let dl = *pools.device_layout();
                let hl = *pools.host_layout();
                execute_pairs(&so, &si, &cp, &mut d, &dl, &mut h, &hl).unwrap();
                b.execute_plan(&mut pools, &mut ops, &so, &si, &cp).unwrap();
                let got_d = pools.download_device().unwrap();
                let got_h = pools.host().unwrap().to_vec();
                assert!(
                    got_d == d,
                    "case {case} {shape:?} {dev}/{host}: device pool differs"
                );
                assert!(
                    got_h == h,
                    "case {case} {shape:?} {dev}/{host}: host pool differs"
                );
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU; run with --ignored or scripts/gpu-check.sh"]
fn gpu_large_plan_long_runs() {
    // Many blocks and layers; runs longer than the run cap; one launch per list.
    let b = gpu();
    let mut rng = Rng::new(7);
    let shape = KvShape {
        layers: 32,
        block_size: 16,
        kv_heads: 2,
        head_dim: 64,
        dtype: Dtype::Bf16,
    };
    let (dev, host) = (4096, 2048);
    let (mut pools, mut d, mut h) = random_pools(&b, &mut rng, shape, dev, host);
    let bp = |src, dst| BlockPair { src, dst };
    let so: Vec<_> = (0..1000).map(|i| bp(i, 500 + i)).collect();
    let si: Vec<_> = (0..400).map(|i| bp(1600 + i, 200 + 2 * i)).collect();
    let cp: Vec<_> = (0..700).map(|i| bp(3000 + i, 1000 + i)).collect();
    let dl = *pools.device_layout();
    let hl = *pools.host_layout();
    execute_pairs(&so, &si, &cp, &mut d, &dl, &mut h, &hl).unwrap();
    let mut ops = BlockOps::new();
    b.execute_plan(&mut pools, &mut ops, &so, &si, &cp).unwrap();
    assert_eq!(ops.ops().len(), 3);
    assert!(pools.download_device().unwrap() == d, "device pool differs");
    assert!(pools.host().unwrap() == &h[..], "host pool differs");
}

#[test]
#[ignore = "needs a CUDA GPU; run with --ignored or scripts/gpu-check.sh"]
fn gpu_reshape_and_cache_matches_reference() {
    let b = gpu();
    let mut rng = Rng::new(9);
    for shape in shapes() {
        for blocks in [1u32, 3, 40] {
            let (mut pools, mut d, _) = random_pools(&b, &mut rng, shape, blocks, 1);
            let l = *pools.device_layout();
            let te = (shape.kv_heads * shape.head_dim) as usize;
            let elem = shape.dtype.size();
            let mut slots: Vec<i64> = (0..l.slots() as i64).collect();
            rng.shuffle(&mut slots);
            slots.truncate(1 + rng.below(l.slots()) as usize);
            for s in slots.iter_mut() {
                if rng.below(6) == 0 {
                    *s = -1;
                }
            }
            let tokens = slots.len();
            let (ks, vs) = (te + rng.below(4) as usize, te);
            let mut key = vec![0u8; tokens * ks * elem];
            let mut value = vec![0u8; tokens * vs * elem];
            rng.fill(&mut key);
            rng.fill(&mut value);
            let layer = rng.below(u64::from(shape.layers)) as u32;
            reshape_and_cache(&mut d, &l, layer, &key, ks, &value, vs, &slots).unwrap();
            let kd = b.stream().clone_htod(&key).unwrap();
            let vd = b.stream().clone_htod(&value).unwrap();
            b.reshape_and_cache(&mut pools, layer, &kd, ks, &vd, vs, &slots)
                .unwrap();
            assert!(
                pools.download_device().unwrap() == d,
                "{shape:?} blocks {blocks}: differs"
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU; run with --ignored or scripts/gpu-check.sh"]
fn gpu_stream_orders_swap_out_before_the_model_write() {
    // Swap device block 1 out, then (no host sync in between) write a new token into slot 0 of
    // block 1 as the model would: the host copy must hold the old content.
    let b = gpu();
    let mut rng = Rng::new(5);
    let shape = KvShape {
        layers: 2,
        block_size: 4,
        kv_heads: 2,
        head_dim: 16,
        dtype: Dtype::F16,
    };
    let (mut pools, mut d, mut h) = random_pools(&b, &mut rng, shape, 4, 2);
    let dl = *pools.device_layout();
    let hl = *pools.host_layout();
    let so = [BlockPair { src: 1, dst: 0 }];
    execute_pairs(&so, &[], &[], &mut d, &dl, &mut h, &hl).unwrap();
    let mut key = vec![0u8; dl.token_bytes()];
    rng.fill(&mut key);
    let slot = [i64::from(shape.block_size)];
    reshape_and_cache(&mut d, &dl, 1, &key, 32, &key, 32, &slot).unwrap();
    let kd = b.stream().clone_htod(&key).unwrap();
    let mut ops = BlockOps::new();
    b.execute_plan(&mut pools, &mut ops, &so, &[], &[]).unwrap();
    b.reshape_and_cache(&mut pools, 1, &kd, 32, &kd, 32, &slot)
        .unwrap();
    assert!(
        pools.host().unwrap() == &h[..],
        "the swap-out saw the model's later write"
    );
    assert!(pools.download_device().unwrap() == d);
}

#[test]
#[ignore = "needs a CUDA GPU; run with --ignored or scripts/gpu-check.sh"]
fn gpu_bad_input_is_an_error_and_launches_nothing() {
    let b = gpu();
    let mut rng = Rng::new(3);
    let shape = KvShape {
        layers: 1,
        block_size: 2,
        kv_heads: 1,
        head_dim: 8,
        dtype: Dtype::Bf16,
    };
    let (mut pools, d, h) = random_pools(&b, &mut rng, shape, 4, 2);
    let mut ops = BlockOps::new();
    let bp = |src, dst| BlockPair { src, dst };
    let e = b
        .execute_plan(&mut pools, &mut ops, &[bp(0, 2)], &[], &[])
        .unwrap_err();
    assert!(matches!(
        e,
        BackendError::Input(InputError::Plan(PlanError::BlockOutOfRange {
            kind: OpKind::SwapOut,
            tier: Tier::Host,
            block: 2,
            ..
        }))
    ));
    // Ops built for bigger pools are refused by `execute` too.
    ops.build(&[], &[], &[bp(0, 9)], 16, 16, 32).unwrap();
    assert!(b.execute(&mut pools, &ops).is_err());
    let k = b.stream().clone_htod(&[1u8; 64]).unwrap();
    assert!(
        b.reshape_and_cache(&mut pools, 0, &k, 8, &k, 8, &[8])
            .is_err()
    );
    assert!(
        b.reshape_and_cache(&mut pools, 0, &k, 8, &k, 8, &[1, 1])
            .is_err()
    );
    assert!(
        b.reshape_and_cache(&mut pools, 1, &k, 8, &k, 8, &[0])
            .is_err()
    );
    assert!(
        b.reshape_and_cache(&mut pools, 0, &k, 8, &k, 8, &[0, 1, 2, 3, 4])
            .is_err()
    );
    assert!(
        pools.download_device().unwrap() == d,
        "an error changed the device pool"
    );
    assert!(
        pools.host().unwrap() == &h[..],
        "an error changed the host pool"
    );
    let other = CudaBackend::new(0).unwrap();
    assert!(matches!(
        other.execute(&mut pools, &ops),
        Err(BackendError::ForeignPools)
    ));
}
