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
    events: Vec<KvEvent>,
    parents: Vec<Option<u64>>,
}

impl Store {
    fn new(cfg: &KvConfig) -> Self {
        let l = cfg.layout().unwrap();
        Store {
            blocks: vec![BlockSlot::default(); l.blocks],
            buckets: vec![0; l.hash_buckets],
            chunks: vec![TableChunk::default(); l.table_chunks],
            seqs: vec![SeqSlot::default(); l.seqs],
            events: vec![KvEvent::default(); l.events],
            parents: vec![None; l.event_parents],
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
                events: &mut self.events,
                event_parents: &mut self.parents,
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
            events: &mut s.events,
            event_parents: &mut s.parents,
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
            [l.blocks, l.hash_buckets, l.table_chunks, l.seqs, 0, 0].map(|n| n as u64),
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
    let [b, h, c, s, 0, 0] = fits(lo).unwrap() else {
        panic!("events are off")
    };
    let bytes = b * per_block + h * 4 + c * 64 + s * core::mem::size_of::<SeqSlot>() as u64;
    assert!(bytes <= u32::MAX as u64 && bytes + per_block > u32::MAX as u64 - 64 * 1024 * 1024);
    // A small configuration has the same layout under both models.
    let small = KvConfig::new(16, 100, 20, 10);
    let l = small.layout().unwrap();
    assert_eq!(
        small.layout_within(u32::MAX as u64).unwrap(),
        [l.blocks, l.hash_buckets, l.table_chunks, l.seqs, 0, 0].map(|n| n as u64)
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
        events: 0,
        event_parents: 0,
    };
    assert_eq!(absurd.bytes(), usize::MAX);
    let one = KvLayout {
        blocks: 1,
        hash_buckets: 2,
        table_chunks: 1,
        seqs: 1,
        events: 0,
        event_parents: 0,
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

/// A subscriber's view: the cached blocks as `(tier, block, namespace, hash)`, rebuilt only from
/// drained events, checking the stream's sequence numbers on the way.
#[derive(Default)]
struct Replay {
    view: std::collections::BTreeSet<CachedBlock>,
    next_seq: u64,
}

impl Replay {
    fn apply(&mut self, events: &[KvEvent]) {
        for e in events {
            assert_eq!(e.seq, self.next_seq, "sequence numbers are contiguous");
            self.next_seq += 1;
            match e.kind {
                KvEventKind::Stored {
                    hash,
                    tier,
                    block,
                    namespace,
                    tokens,
                    block_size,
                    ..
                } => {
                    assert_eq!(tokens, block_size);
                    let new = self.view.insert(CachedBlock {
                        tier,
                        block,
                        namespace,
                        hash,
                    });
                    assert!(new, "stored twice: {e:?}");
                }
                KvEventKind::Removed {
                    hash,
                    tier,
                    block,
                    namespace,
                } => {
                    let had = self.view.remove(&CachedBlock {
                        tier,
                        block,
                        namespace,
                        hash,
                    });
                    assert!(had, "removed what was not stored: {e:?}");
                }
                KvEventKind::AllCleared => self.view.clear(),
            }
        }
    }
    /// Drains `m` through a buffer of `buf` events until it is empty.
    fn drain(&mut self, m: &mut BlockManager<'_>, buf: usize) -> Vec<KvEvent> {
        let mut all = Vec::new();
        let mut out = vec![KvEvent::default(); buf];
        loop {
            let n = m.drain_events(&mut out);
            self.apply(&out[..n]);
            all.extend_from_slice(&out[..n]);
            if n < buf {
                return all;
            }
        }
    }
    fn matches(&self, m: &BlockManager<'_>) -> bool {
        let truth: std::collections::BTreeSet<CachedBlock> = m.cached_blocks().collect();
        truth == self.view
    }
}

fn with_events(mut cfg: KvConfig, cap: u32) -> KvConfig {
    cfg.event_capacity = cap;
    cfg
}

#[test]
fn test_events_are_off_by_default_and_cost_no_storage() {
    let cfg = KvConfig::new(4, 8, 4, 4);
    let l = cfg.layout().unwrap();
    assert_eq!((l.events, l.event_parents), (0, 0));
    let on = with_events(cfg, 5).layout().unwrap();
    assert_eq!((on.events, on.event_parents), (5, 12));
    assert!(on.bytes() > l.bytes());
    let mut s = Store::new(&cfg);
    let mut m = s.manager(cfg);
    let a = m.create_seq().unwrap();
    m.append_tokens(a, 8).unwrap();
    assert!(m.set_block_hash(a, 0, 7).unwrap());
    let mut out = [KvEvent::default(); 4];
    assert_eq!(m.drain_events(&mut out), 0);
    assert_eq!(m.event_stats(), KvEventStats::default());
    // The oracle still sees the cached block.
    assert_eq!(m.cached_blocks().count(), 1);
}

#[test]
fn test_stored_on_hash_removed_on_eviction_not_on_free() {
    let cfg = with_events(KvConfig::new(4, 4, 0, 4), 16);
    let mut s = Store::new(&cfg);
    let mut m = s.manager(cfg);
    let mut r = Replay::default();
    let a = m.create_seq_in(9).unwrap();
    m.append_tokens(a, 10).unwrap();
    assert!(m.set_block_hash(a, 0, 100).unwrap());
    assert!(m.set_block_hash(a, 1, 101).unwrap());
    assert_eq!(m.set_block_hash(a, 1, 101), Ok(false), "no second event");
    let ev = r.drain(&mut m, 8);
    let t = table(&m, a);
    assert_eq!(
        ev.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [
            KvEventKind::Stored {
                hash: 100,
                parent: None,
                tokens: 4,
                block_size: 4,
                tier: Tier::Device,
                block: t[0],
                namespace: 9,
            },
            KvEventKind::Stored {
                hash: 101,
                parent: Some(100),
                tokens: 4,
                block_size: 4,
                tier: Tier::Device,
                block: t[1],
                namespace: 9,
            },
        ]
    );
    // Freed, the blocks stay cached: no event.
    m.free_seq(a).unwrap();
    assert!(r.drain(&mut m, 8).is_empty());
    assert!(r.matches(&m));
    // A prefix hit and a fork share cached blocks: no event either.
    let b = m.create_seq_in(9).unwrap();
    assert_eq!(m.attach_prefix(b, &[100, 101]).unwrap(), 2);
    let c = m.fork(b).unwrap();
    assert!(r.drain(&mut m, 8).is_empty());
    m.free_seq(b).unwrap();
    m.free_seq(c).unwrap();
    // Four fresh blocks: the two uncached ones, then both cached ones are evicted, the tail
    // (freed first) first.
    let d = m.create_seq().unwrap();
    m.append_tokens(d, 16).unwrap();
    let ev = r.drain(&mut m, 8);
    let removed: Vec<u64> = ev
        .iter()
        .map(|e| match e.kind {
            KvEventKind::Removed { hash, tier, .. } => {
                assert_eq!(tier, Tier::Device);
                hash
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(removed, [101, 100]);
    assert_eq!(ev[0].seq, 2);
    assert!(r.matches(&m));
    assert_eq!(m.cached_blocks().count(), 0);
    assert_eq!(m.event_stats().delivered, 4);
}

#[test]
fn test_swaps_store_and_remove_host_copies() {
    let cfg = with_events(KvConfig::new(4, 4, 4, 4), 32);
    let mut s = Store::new(&cfg);
    let mut m = s.manager(cfg);
    let mut r = Replay::default();
    let a = m.create_seq().unwrap();
    m.append_tokens(a, 9).unwrap();
    m.set_block_hash(a, 0, 1).unwrap();
    m.set_block_hash(a, 1, 2).unwrap();
    r.drain(&mut m, 4);
    let mut pairs = [BlockPair::default(); 4];
    assert_eq!(m.swap_out(a, &mut pairs).unwrap(), 3);
    let ev = r.drain(&mut m, 4);
    // Two hashed blocks copied to the host (the partial one carries no hash); the device
    // copies stay cached.
    let host: Vec<(u64, Option<u64>)> = ev
        .iter()
        .map(|e| match e.kind {
            KvEventKind::Stored {
                hash,
                parent,
                tier: Tier::Host,
                ..
            } => (hash, parent),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(host, [(2, Some(1)), (1, None)], "tail first");
    assert!(r.matches(&m));
    assert_eq!(m.cached_blocks().count(), 4);
    // Swap in takes both hashed blocks back from the device cache: the host copies go.
    m.swap_in(a, &mut pairs).unwrap();
    let ev = r.drain(&mut m, 4);
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|e| matches!(
        e.kind,
        KvEventKind::Removed {
            tier: Tier::Host,
            ..
        }
    )));
    assert!(r.matches(&m));
    // Out again, and evict the device copies: the swap in copies and stores them anew.
    m.swap_out(a, &mut pairs).unwrap();
    let e = m.create_seq().unwrap();
    m.append_tokens(e, 16).unwrap();
    m.free_seq(e).unwrap();
    r.drain(&mut m, 4);
    assert!(r.matches(&m));
    assert_eq!(
        m.cached_blocks().filter(|c| c.tier == Tier::Device).count(),
        0
    );
    m.swap_in(a, &mut pairs).unwrap();
    let ev = r.drain(&mut m, 3);
    let stored: Vec<(u64, Option<u64>)> = ev
        .iter()
        .filter_map(|e| match e.kind {
            KvEventKind::Stored {
                hash,
                parent,
                tier: Tier::Device,
                ..
            } => Some((hash, parent)),
            _ => None,
        })
        .collect();
    assert_eq!(
        stored,
        [(2, Some(1)), (1, None)],
        "parents survive the round trip"
    );
    assert!(r.matches(&m));
    audit(&m);
}

#[test]
fn test_overflow_sends_a_marker_and_a_snapshot() {
    let cfg = with_events(KvConfig::new(2, 8, 0, 4), 2);
    let mut s = Store::new(&cfg);
    let mut m = s.manager(cfg);
    let mut r = Replay::default();
    let a = m.create_seq().unwrap();
    m.append_tokens(a, 8).unwrap();
    for (i, h) in [10, 11, 12].into_iter().enumerate() {
        m.set_block_hash(a, i as u32, h).unwrap();
    }
    // Three events into a ring of two: all three lost, one resync.
    let st = m.event_stats();
    assert_eq!((st.dropped, st.resyncs, st.pending), (3, 1, 0));
    assert!(st.resyncing);
    // Nothing is recorded until the marker is drained.
    m.set_block_hash(a, 3, 13).unwrap();
    assert_eq!(m.event_stats().dropped, 4);
    // Drained two at a time: the marker, then the snapshot, with a change in between.
    let mut out = [KvEvent::default(); 2];
    let n = m.drain_events(&mut out);
    assert_eq!(n, 2);
    assert_eq!(out[0].kind, KvEventKind::AllCleared);
    assert!(matches!(
        out[1].kind,
        KvEventKind::Stored {
            hash: 10,
            parent: None,
            ..
        }
    ));
    r.apply(&out[..n]);
    // A block the snapshot has passed (10's) is recorded; the others are left to it.
    m.free_seq(a).unwrap();
    let b = m.create_seq().unwrap();
    m.append_tokens(b, 16).unwrap(); // evicts all four cached blocks
    let c = m.create_seq().unwrap();
    m.free_seq(b).unwrap();
    m.append_tokens(c, 2).unwrap();
    m.set_block_hash(c, 0, 20).unwrap();
    r.drain(&mut m, 2);
    assert!(r.matches(&m), "exact again once the snapshot is done");
    assert!(!m.event_stats().resyncing);
    // And live events flow again.
    m.append_tokens(c, 2).unwrap();
    m.set_block_hash(c, 1, 21).unwrap();
    let ev = r.drain(&mut m, 2);
    assert!(matches!(
        ev[..],
        [KvEvent {
            kind: KvEventKind::Stored {
                hash: 21,
                parent: Some(20),
                ..
            },
            ..
        }]
    ));
    assert!(r.matches(&m));
}

/// `append_one_block` does what `append_tokens` does whenever the growth is exactly one fresh
/// block of a device sequence that is not forked, declines (changing nothing) otherwise, and
/// declines rather than fails when the block or the table chunk is not there: twin managers,
/// every start length and growth across two table chunks, with and without free blocks.
#[test]
fn test_append_one_block_is_append_tokens_when_it_applies() {
    for bs in [1u32, 4] {
        for device in [3u32, 40] {
            for start in 0..=(2 * TABLE_CHUNK_LEN as u32 * bs).min(device * bs) {
                for n in 1..=(2 * bs + 1) {
                    let mut cfg = KvConfig::new(bs, device, 0, 2);
                    cfg.table_chunks = 3;
                    let (mut sa, mut sb) = (Store::new(&cfg), Store::new(&cfg));
                    let (mut a, mut b) = (sa.manager(cfg), sb.manager(cfg));
                    let (qa, qb) = (a.create_seq().unwrap(), b.create_seq().unwrap());
                    if a.append_tokens(qa, start).is_err() {
                        continue; // more than the pools hold
                    }
                    b.append_tokens(qb, start).unwrap();
                    let before = (table(&a, qa), a.seq_info(qa).unwrap(), a.counters());
                    let fast = a.append_one_block(qa, n).unwrap();
                    let slow = b.append_tokens(qb, n);
                    let case = (bs, device, start, n);
                    match fast {
                        Some((at, block)) => {
                            let want = AppendOutcome {
                                first_changed: at,
                                changed: 1,
                                copy: None,
                            };
                            assert_eq!(slow, Ok(want), "{case:?}");
                            assert_eq!(table(&a, qa).last(), Some(&block), "{case:?}");
                        }
                        None => {
                            let now = (table(&a, qa), a.seq_info(qa).unwrap(), a.counters());
                            assert_eq!(now, before, "a decline changes nothing: {case:?}");
                            assert!(
                                !matches!(slow, Ok(o) if o.changed == 1),
                                "declined a one-block growth: {case:?} {slow:?}"
                            );
                            // What append_tokens then does, so the twins stay equal.
                            let _ = a.append_tokens(qa, n);
                        }
                    }
                    assert_eq!(table(&a, qa), table(&b, qb), "{case:?}");
                    assert_eq!(a.seq_info(qa), b.seq_info(qb), "{case:?}");
                    assert_eq!(a.counters(), b.counters(), "{case:?}");
                    audit(&a);
                }
            }
        }
    }
}

#[test]
fn test_append_one_block_declines_forked_and_host_sequences() {
    let mut cfg = KvConfig::new(4, 16, 8, 4);
    cfg.table_chunks = 8;
    let mut st = Store::new(&cfg);
    let mut m = st.manager(cfg);
    let a = m.create_seq().unwrap();
    m.append_tokens(a, 8).unwrap();
    let f = m.fork(a).unwrap();
    assert_eq!(
        m.append_one_block(f, 1),
        Ok(None),
        "forked: append_tokens decides"
    );
    let h = m.create_seq().unwrap();
    m.append_tokens(h, 4).unwrap();
    let mut pairs = [BlockPair::default(); 4];
    m.swap_out(h, &mut pairs).unwrap();
    assert_eq!(m.append_one_block(h, 1), Ok(None), "on the host");
    m.free_seq(h).unwrap();
    assert_eq!(m.append_one_block(h, 1), Err(KvError::StaleHandle));
    audit(&m);
}
