//! Scenario tests of the block manager; the random-operation model test is in the workspace
//! `tests/kv_model.rs`.

extern crate std;
use std::vec;
use std::vec::Vec;

use super::*;

struct Store {
    blocks: Vec<BlockSlot>,
    buckets: Vec<u32>,
    chunks: Vec<TableChunk>,
    seqs: Vec<SeqSlot>,
}

impl Store {
    fn new(cfg: &KvConfig) -> Self {
        let l = cfg.layout().unwrap();
        Store {
            blocks: vec![BlockSlot::default(); l.blocks],
            buckets: vec![0; l.hash_buckets],
            chunks: vec![TableChunk::default(); l.table_chunks],
            seqs: vec![SeqSlot::default(); l.seqs],
        }
    }
    fn manager(&mut self, cfg: KvConfig) -> BlockManager<'_> {
        BlockManager::new(
            cfg,
            KvStorage {
                blocks: &mut self.blocks,
                hash_buckets: &mut self.buckets,
                table_chunks: &mut self.chunks,
                seqs: &mut self.seqs,
            },
        )
        .unwrap()
    }
}

fn audit(m: &BlockManager<'_>) {
    let mut scratch = vec![0u32; (m.config().device_blocks + m.config().host_blocks) as usize];
    m.audit(&mut scratch).unwrap();
}

fn table(m: &BlockManager<'_>, s: SeqHandle) -> Vec<u32> {
    let mut out = vec![0u32; 256];
    let n = m.read_table(s, 0, &mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn test_config_validation_names_the_field() {
    assert_eq!(
        KvConfig::new(0, 8, 0, 4).validate(),
        Err(KvConfigError::ZeroBlockSize)
    );
    assert_eq!(
        KvConfig::new(16, 0, 0, 4).validate(),
        Err(KvConfigError::ZeroDeviceBlocks)
    );
    assert_eq!(
        KvConfig::new(16, u32::MAX - 8, 8, 4).validate(),
        Err(KvConfigError::TooManyBlocks)
    );
    assert_eq!(
        KvConfig::new(16, (1 << 31) + 1, 0, 4).validate(),
        Err(KvConfigError::TooManyBlocks)
    );
    assert_eq!(KvConfig::new(16, 1 << 31, 0, 4).validate(), Ok(()));
    assert_eq!(
        KvConfig::new(16, 8, 0, 0).validate(),
        Err(KvConfigError::BadMaxSeqs)
    );
    let l = KvConfig::new(16, 100, 20, 10).layout().unwrap();
    assert_eq!(l.blocks, 120);
    assert_eq!(l.hash_buckets, 128);
    assert_eq!(l.table_chunks, 120usize.div_ceil(TABLE_CHUNK_LEN) + 10);
    assert!(l.bytes() > 0);
}

#[test]
fn test_storage_too_small_is_reported() {
    let cfg = KvConfig::new(16, 8, 0, 4);
    let mut s = Store::new(&cfg);
    s.seqs.truncate(3);
    let err = BlockManager::new(
        cfg,
        KvStorage {
            blocks: &mut s.blocks,
            hash_buckets: &mut s.buckets,
            table_chunks: &mut s.chunks,
            seqs: &mut s.seqs,
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        KvInitError::StorageTooSmall {
            what: "seqs",
            need: 4,
            got: 3
        }
    );
}

#[test]
fn test_append_allocates_per_block_and_free_returns_everything() {
    let cfg = KvConfig::new(4, 8, 0, 4);
    let mut st = Store::new(&cfg);
    let mut m = st.manager(cfg);
    let s = m.create_seq().unwrap();
    let o = m.append_tokens(s, 5).unwrap();
    assert_eq!(
        o,
        AppendOutcome {
            first_changed: 0,
            changed: 2,
            copy: None
        }
    );
    assert_eq!(
        m.append_tokens(s, 3).unwrap().changed,
        0,
        "fills the second block"
    );
    assert_eq!(
        m.append_tokens(s, 1).unwrap(),
        AppendOutcome {
            first_changed: 2,
            changed: 1,
            copy: None
        }
    );
    assert_eq!(table(&m, s), vec![0, 1, 2]);
    assert_eq!(
        m.seq_info(s).unwrap(),
        SeqInfo {
            tier: Tier::Device,
            num_blocks: 3,
            num_tokens: 9
        }
    );
    assert_eq!(m.counters().device.in_use, 3);
    audit(&m);
    m.free_seq(s).unwrap();
    assert_eq!(m.counters().device.free_uncached, 8);
    assert_eq!(
        m.free_seq(s),
        Err(KvError::StaleHandle),
        "freed handle is stale"
    );
    let s2 = m.create_seq().unwrap();
    assert_eq!(s2.index(), s.index(), "slot reused");
    assert_ne!(s2, s, "with a new generation");
    assert_eq!(m.append_tokens(s, 1), Err(KvError::StaleHandle));
    audit(&m);
}

#[test]
fn test_out_of_blocks_changes_nothing() {
    let cfg = KvConfig::new(4, 3, 0, 4);
    let mut st = Store::new(&cfg);
    let mut m = st.manager(cfg);
    let s = m.create_seq().unwrap();
    m.append_tokens(s, 6).unwrap();
    assert_eq!(
        m.append_tokens(s, 7),
        Err(KvError::OutOfDeviceBlocks {
            need: 2,
            available: 1
        })
    );
    assert_eq!(m.seq_info(s).unwrap().num_tokens, 6);
    assert_eq!(m.blocks_needed(s, 13).unwrap(), 2);
    audit(&m);
}

#[test]
fn test_prefix_cache_hit_lru_and_tail_first_eviction() {
    let cfg = KvConfig::new(2, 4, 0, 4);
    let mut st = Store::new(&cfg);
    let mut m = st.manager(cfg);
    let a = m.create_seq().unwrap();
    m.append_tokens(a, 6).unwrap(); // blocks 0,1,2
    for (i, h) in [11u64, 12, 13].into_iter().enumerate() {
        assert!(m.set_block_hash(a, i as u32, h).unwrap());
    }
    assert_eq!(
        m.set_block_hash(a, 1, 12),
        Ok(false),
        "same hash again is a no-op"
    );
    assert_eq!(m.set_block_hash(a, 1, 99), Err(KvError::HashConflict));
    assert_eq!(
        m.lookup_prefix(&[11, 12, 77]),
        PrefixMatch { blocks: 2, idle: 0 }
    );
    m.free_seq(a).unwrap();
    let c = m.counters();
    assert_eq!((c.device.free_cached, c.device.free_uncached), (3, 1));
    assert_eq!(
        m.lookup_prefix(&[11, 12, 13]),
        PrefixMatch { blocks: 3, idle: 3 }
    );
    // A new sequence needing two blocks takes the uncached block, then evicts the tail (13).
    let b = m.create_seq().unwrap();
    m.append_tokens(b, 4).unwrap();
    assert_eq!(table(&m, b), vec![3, 2]);
    assert_eq!(m.counters().evictions, 1);
    assert_eq!(
        m.lookup_prefix(&[11, 12, 13]).blocks,
        2,
        "prefix survives, tail evicted"
    );
    let d = m.create_seq().unwrap();
    assert_eq!(m.attach_prefix(d, &[11, 12, 13]), Ok(2));
    assert_eq!(table(&m, d), vec![0, 1]);
    assert_eq!(m.seq_info(d).unwrap().num_tokens, 4);
    assert_eq!(m.attach_prefix(d, &[11]), Err(KvError::NotEmpty));
    let c = m.counters();
    assert_eq!((c.prefix_hit_blocks, c.prefix_miss_blocks), (2, 1));
    assert_eq!(c.device.free_cached, 0);
    // A second request shares the same cached blocks.
    let e = m.create_seq().unwrap();
    assert_eq!(m.attach_prefix(e, &[11, 12]), Ok(2));
    assert_eq!(m.lookup_prefix(&[11]), PrefixMatch { blocks: 1, idle: 0 });
    audit(&m);
    assert_eq!(m.set_block_hash(e, 2, 5), Err(KvError::BlockNotFull));
}

#[test]
fn test_fork_shares_and_copy_on_write_reports_the_copy() {
    let cfg = KvConfig::new(4, 8, 0, 4);
    let mut st = Store::new(&cfg);
    let mut m = st.manager(cfg);
    let a = m.create_seq().unwrap();
    m.append_tokens(a, 6).unwrap(); // blocks 0 (full), 1 (2 of 4)
    let b = m.fork(a).unwrap();
    assert_eq!(table(&m, b), vec![0, 1]);
    assert_eq!(m.counters().device.in_use, 2);
    audit(&m);
    assert_eq!(m.blocks_needed(b, 7).unwrap(), 1, "one copy");
    let o = m.append_tokens(b, 1).unwrap();
    assert_eq!(
        o,
        AppendOutcome {
            first_changed: 1,
            changed: 1,
            copy: Some(BlockPair { src: 1, dst: 2 })
        }
    );
    assert_eq!(table(&m, b), vec![0, 2]);
    assert_eq!(table(&m, a), vec![0, 1]);
    // `a` now owns block 1 alone: no copy.
    assert_eq!(m.append_tokens(a, 1).unwrap().copy, None);
    assert_eq!(m.counters().cow_copies, 1);
    audit(&m);
    m.free_seq(a).unwrap();
    assert_eq!(
        m.counters().device.in_use,
        2,
        "block 0 still held by the fork"
    );
    audit(&m);
}

#[test]
fn test_swap_out_and_in_report_pairs_and_refuse_when_full() {
    let cfg = KvConfig::new(4, 4, 3, 4);
    let mut st = Store::new(&cfg);
    let mut m = st.manager(cfg);
    let a = m.create_seq().unwrap();
    m.append_tokens(a, 12).unwrap(); // device 0,1,2
    m.set_block_hash(a, 0, 500).unwrap();
    let mut pairs = [BlockPair::default(); 8];
    assert_eq!(
        m.swap_out(a, &mut pairs[..2]),
        Err(KvError::BufferTooSmall { need: 3 })
    );
    assert_eq!(m.swap_out(a, &mut pairs), Ok(3));
    assert_eq!(
        &pairs[..3],
        &[
            BlockPair { src: 2, dst: 0 },
            BlockPair { src: 1, dst: 1 },
            BlockPair { src: 0, dst: 2 }
        ]
    );
    assert_eq!(table(&m, a), vec![2, 1, 0], "host indices");
    assert_eq!(m.seq_info(a).unwrap().tier, Tier::Host);
    assert_eq!(m.append_tokens(a, 1), Err(KvError::WrongTier));
    assert_eq!(
        m.counters().device.free_cached,
        1,
        "hashed block stays findable"
    );
    audit(&m);
    // Another sequence cannot swap out: the host is full.
    let b = m.create_seq().unwrap();
    m.append_tokens(b, 4).unwrap();
    assert_eq!(
        m.swap_out(b, &mut pairs),
        Err(KvError::OutOfHostBlocks {
            need: 1,
            available: 0
        })
    );
    assert_eq!(m.seq_info(b).unwrap().tier, Tier::Device);
    // Device has 3 available (4 − 1 used by b): a fits back; block 0 is reclaimed, not copied.
    assert_eq!(m.swap_in(a, &mut pairs), Ok(2));
    assert_eq!(m.counters().swap_in_reclaimed, 1);
    let t = table(&m, a);
    assert_eq!(t[0], 0, "reclaimed from the cache");
    assert_eq!(m.seq_info(a).unwrap().tier, Tier::Device);
    audit(&m);
    assert_eq!(m.swap_in(a, &mut pairs), Err(KvError::WrongTier));
    let c = m.counters();
    assert_eq!(
        (c.swapped_out_blocks, c.swapped_in_blocks, c.host.in_use),
        (3, 2, 0)
    );
}

#[test]
fn test_swap_in_refuses_when_device_is_short() {
    let cfg = KvConfig::new(4, 3, 3, 4);
    let mut st = Store::new(&cfg);
    let mut m = st.manager(cfg);
    let a = m.create_seq().unwrap();
    m.append_tokens(a, 8).unwrap();
    let mut pairs = [BlockPair::default(); 4];
    m.swap_out(a, &mut pairs).unwrap();
    let b = m.create_seq().unwrap();
    m.append_tokens(b, 8).unwrap();
    assert_eq!(
        m.swap_in(a, &mut pairs),
        Err(KvError::OutOfDeviceBlocks {
            need: 2,
            available: 1
        })
    );
    assert_eq!(m.seq_info(a).unwrap().tier, Tier::Host);
    audit(&m);
}

#[test]
fn test_long_tables_and_chunk_exhaustion() {
    let mut cfg = KvConfig::new(1, 64, 0, 2);
    cfg.table_chunks = 3; // 42 entries at most
    let mut st = Store::new(&cfg);
    let mut m = st.manager(cfg);
    let a = m.create_seq().unwrap();
    m.append_tokens(a, 40).unwrap();
    assert_eq!(m.append_tokens(a, 3), Err(KvError::OutOfTableChunks));
    m.append_tokens(a, 2).unwrap();
    let t = table(&m, a);
    assert_eq!(t, (0..42).collect::<Vec<u32>>());
    let mut part = [0u32; 5];
    assert_eq!(
        m.read_table(a, 20, &mut part),
        Err(KvError::BufferTooSmall { need: 22 }),
        "never truncates silently"
    );
    assert_eq!(part, [0; 5], "nothing written on error");
    assert_eq!(m.read_table(a, 37, &mut part), Ok(5));
    assert_eq!(part, [37, 38, 39, 40, 41]);
    assert_eq!(m.read_table(a, 40, &mut part), Ok(2));
    assert_eq!(m.read_table(a, 42, &mut part), Ok(0));
    assert_eq!(m.read_table(a, 50, &mut part), Ok(0));
    assert!(m.set_block_hash(a, 3, 1).unwrap(), "walks from the head");
    assert_eq!(m.fork(a), Err(KvError::OutOfTableChunks));
    audit(&m);
}

#[test]
fn test_prefix_caching_off_never_hits() {
    let mut cfg = KvConfig::new(2, 4, 0, 4);
    cfg.prefix_caching = false;
    let mut st = Store::new(&cfg);
    let mut m = st.manager(cfg);
    let a = m.create_seq().unwrap();
    m.append_tokens(a, 4).unwrap();
    assert_eq!(m.set_block_hash(a, 0, 1), Ok(false));
    assert_eq!(m.lookup_prefix(&[1]).blocks, 0);
    m.free_seq(a).unwrap();
    assert_eq!(m.counters().device.free_cached, 0);
    audit(&m);
}

#[test]
fn test_out_of_seq_slots() {
    let cfg = KvConfig::new(2, 4, 0, 2);
    let mut st = Store::new(&cfg);
    let mut m = st.manager(cfg);
    let a = m.create_seq().unwrap();
    let _b = m.create_seq().unwrap();
    assert_eq!(m.create_seq(), Err(KvError::OutOfSeqSlots));
    assert_eq!(m.fork(a), Err(KvError::OutOfSeqSlots));
    assert_eq!(m.live_seqs(), 2);
    let forged = SeqHandle::from_raw(a.to_raw() ^ (1 << 40));
    assert_eq!(m.seq_info(forged), Err(KvError::StaleHandle));
    assert_eq!(
        m.seq_info(SeqHandle::from_raw(99)),
        Err(KvError::StaleHandle)
    );
}

#[test]
fn test_namespaces_never_share_blocks() {
    let cfg = KvConfig::new(2, 8, 0, 4);
    let mut st = Store::new(&cfg);
    let mut m = st.manager(cfg);
    let a = m.create_seq_in(7).unwrap();
    m.append_tokens(a, 4).unwrap();
    assert_eq!(m.set_block_hash(a, 0, 100), Ok(true));
    assert_eq!(m.set_block_hash(a, 1, 101), Ok(true));
    // The same hashes in another namespace are not found, and may be registered again.
    assert_eq!(m.lookup_prefix(&[100, 101]).blocks, 0);
    assert_eq!(m.lookup_prefix_iter(8, [100, 101].into_iter()).blocks, 0);
    assert_eq!(m.lookup_prefix_iter(7, [100, 101].into_iter()).blocks, 2);
    let b = m.create_seq_in(8).unwrap();
    assert_eq!(m.attach_prefix(b, &[100, 101]), Ok(0));
    m.append_tokens(b, 2).unwrap();
    assert_eq!(
        m.set_block_hash(b, 0, 100),
        Ok(true),
        "own block in its namespace"
    );
    let c = m.create_seq_in(7).unwrap();
    assert_eq!(m.attach_prefix(c, &[100, 101]), Ok(2));
    assert_eq!(table(&m, c), table(&m, a));
    assert_ne!(table(&m, b)[0], table(&m, a)[0]);
    audit(&m);
}

#[test]
fn test_layout_refuses_storage_beyond_the_address_space() {
    // 2^27 device blocks: 5 GiB of block metadata alone (40 bytes a block), past a 32-bit
    // address space. The old `usize` arithmetic wrapped there (and panicked with overflow
    // checks on).
    let big = KvConfig::new(16, 1 << 27, 0, 4);
    assert_eq!(
        big.layout_within(u32::MAX as u64),
        Err(KvConfigError::TooLarge),
        "a 32-bit usize cannot hold it"
    );
    // On a 64-bit usize it fits, and `bytes` is the checked total.
    let counts = big.layout_within(u64::MAX).unwrap();
    let total = super::bytes_within(counts, u64::MAX).unwrap();
    assert!(total > u32::MAX as u64, "{total}");
    if usize::BITS == 64 {
        let l = big.layout().unwrap();
        assert_eq!(l.bytes() as u64, total);
        assert_eq!(
            [l.blocks, l.hash_buckets, l.table_chunks, l.seqs].map(|n| n as u64),
            counts
        );
    }
    // Just below the 32-bit limit it still fits the 32-bit model; one more block does not.
    let per_block = core::mem::size_of::<BlockSlot>() as u64;
    let fits = |blocks: u32| {
        KvConfig {
            table_chunks: 1,
            ..KvConfig::new(16, blocks, 0, 1)
        }
        .layout_within(u32::MAX as u64)
    };
    let mut lo = 1u32;
    let mut hi = 1 << 27;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid).is_ok() {
            lo = mid
        } else {
            hi = mid
        }
    }
    assert!(fits(lo).is_ok() && fits(lo + 1) == Err(KvConfigError::TooLarge));
    let [b, h, c, s] = fits(lo).unwrap();
    let bytes = b * per_block + h * 4 + c * 64 + s * core::mem::size_of::<SeqSlot>() as u64;
    assert!(bytes <= u32::MAX as u64 && bytes + per_block > u32::MAX as u64 - 64 * 1024 * 1024);
    // A small configuration has the same layout under both models.
    let small = KvConfig::new(16, 100, 20, 10);
    let l = small.layout().unwrap();
    assert_eq!(
        small.layout_within(u32::MAX as u64).unwrap(),
        [l.blocks, l.hash_buckets, l.table_chunks, l.seqs].map(|n| n as u64)
    );
    // Validation still comes first.
    assert_eq!(
        KvConfig::new(0, 1 << 27, 0, 4).layout_within(u32::MAX as u64),
        Err(KvConfigError::ZeroBlockSize)
    );
    assert_eq!(
        std::format!("{}", KvConfigError::TooLarge),
        "the storage would not fit in the address space"
    );
}

#[test]
fn test_layout_bytes_saturates_instead_of_overflowing() {
    let absurd = KvLayout {
        blocks: usize::MAX / 2,
        hash_buckets: usize::MAX,
        table_chunks: 1,
        seqs: 1,
    };
    assert_eq!(absurd.bytes(), usize::MAX);
    let one = KvLayout {
        blocks: 1,
        hash_buckets: 2,
        table_chunks: 1,
        seqs: 1,
    };
    assert_eq!(
        one.bytes(),
        core::mem::size_of::<BlockSlot>() + 8 + 64 + core::mem::size_of::<SeqSlot>()
    );
}

#[test]
fn test_chunks_to_grow_and_table_chunks_for_match_what_append_takes() {
    assert_eq!(table_chunks_for(0), 0);
    assert_eq!(table_chunks_for(1), 1);
    assert_eq!(table_chunks_for(TABLE_CHUNK_LEN as u32), 1);
    assert_eq!(table_chunks_for(TABLE_CHUNK_LEN as u32 + 1), 2);
    assert_eq!(
        table_chunks_for(u32::MAX),
        u32::MAX.div_ceil(TABLE_CHUNK_LEN as u32)
    );
    for bs in [1u32, 3, 16] {
        let cfg = KvConfig::new(bs, 600, 0, 4);
        let mut st = Store::new(&cfg);
        let mut m = st.manager(cfg);
        let s = m.create_seq().unwrap();
        let capacity = m.free_table_chunks();
        let mut total = 0u32;
        for step in [1u32, 5, 13, 14, 15, 27, 0, 40, 2, 100, 1, 13, 29] {
            let want = m.chunks_to_grow(s, total + step).unwrap();
            let before = m.free_table_chunks();
            m.append_tokens(s, step).unwrap();
            assert_eq!(
                before - m.free_table_chunks(),
                want,
                "bs {bs}, {total} + {step}"
            );
            total += step;
            let blocks = m.seq_info(s).unwrap().num_blocks;
            assert_eq!(table_chunks_for(blocks), capacity - m.free_table_chunks());
        }
        assert_eq!(m.chunks_to_grow(s, total), Ok(0), "no growth");
        assert_eq!(m.chunks_to_grow(s, 0), Ok(0), "shrinking is no growth");
        // A copy-on-write replaces the last entry in place: no chunk for it.
        if !total.is_multiple_of(bs) {
            let child = m.fork(s).unwrap();
            let want = m.chunks_to_grow(child, total + 1).unwrap();
            assert_eq!(m.blocks_needed(child, total + 1), Ok(1), "only the copy");
            let before = m.free_table_chunks();
            let o = m.append_tokens(child, 1).unwrap();
            assert!(o.copy.is_some());
            assert_eq!((want, before - m.free_table_chunks()), (0, 0));
        }
        audit(&m);
        m.free_seq(s).unwrap();
        assert_eq!(m.chunks_to_grow(s, 10), Err(KvError::StaleHandle));
    }
}
