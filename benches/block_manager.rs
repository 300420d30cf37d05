//! Cost of the block manager's hot operations: allocate + free per block, and a prefix-cache
//! hit. Run with `cargo bench --bench block_manager`; results are recorded in BENCHMARKS.md.

use augur::core::kv::KvConfig;
use augur::storage::KvBuffers;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let cfg = KvConfig::new(16, 65_536, 0, 1_024);
    let mut buffers = KvBuffers::new(&cfg).unwrap();
    let mut m = buffers.manager(cfg).unwrap();
    let mut g = c.benchmark_group("kv");
    // 64 sequences of 32 blocks each: allocate 2,048 blocks, then free them all.
    g.throughput(Throughput::Elements(2_048));
    g.bench_function("alloc_free/blocks=2048", |b| {
        let mut seqs = [None; 64];
        b.iter(|| {
            for s in seqs.iter_mut() {
                let h = m.create_seq().unwrap();
                m.append_tokens(h, 32 * 16).unwrap();
                *s = Some(h);
            }
            for s in seqs.iter_mut() {
                m.free_seq(s.take().unwrap()).unwrap();
            }
        })
    });
    // One block at a time, as decode does: append 16 tokens one by one (one new block), free.
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_append_16_tokens_then_free", |b| {
        b.iter(|| {
            let h = m.create_seq().unwrap();
            for _ in 0..16 {
                black_box(m.append_tokens(h, 1).unwrap());
            }
            m.free_seq(h).unwrap();
        })
    });
    // Prefix hit: 32 cached blocks attached to a new sequence, then freed.
    let warm = m.create_seq().unwrap();
    m.append_tokens(warm, 32 * 16).unwrap();
    let hashes: Vec<u64> = (0..32).map(|i| 0xabc0_0000 + i).collect();
    for (i, &h) in hashes.iter().enumerate() {
        m.set_block_hash(warm, i as u32, h).unwrap();
    }
    m.free_seq(warm).unwrap();
    g.throughput(Throughput::Elements(32));
    g.bench_function("prefix_hit_attach_free/blocks=32", |b| {
        b.iter_batched(
            || (),
            |_| {
                let h = m.create_seq().unwrap();
                assert_eq!(m.attach_prefix(h, black_box(&hashes)).unwrap(), 32);
                m.free_seq(h).unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
