//! The block manager itself: block pools, sequences and their tables.

use super::{
    ChunkList, ChunkPool, HashChain, HashIndex, KvConfig, KvError, KvInitError, KvStorage,
    TABLE_CHUNK_LEN, Tier, chunk_list::chunks_for, list::Links, list::List,
};
use crate::handle::{handle_type, next_generation};
use crate::util::{NIL, blocks_for};

/// Flag: the block carries a valid hash (on the device it is then in the hash index).
const HASHED: u8 = 1;

/// Metadata of one physical block. Opaque; create storage with `BlockSlot::default()`.
#[derive(Clone, Copy, Debug)]
pub struct BlockSlot {
    hash: u64,
    /// The prefix-cache namespace the hash belongs to (tenant, LoRA adapter, cache salt):
    /// blocks are found by `(namespace, hash)`, so equal hashes of different namespaces never
    /// share KV.
    namespace: u64,
    prev: u32,
    next: u32,
    chain_next: u32,
    ref_count: u32,
    flags: u8,
}

impl Default for BlockSlot {
    fn default() -> Self {
        BlockSlot {
            hash: 0,
            namespace: 0,
            prev: NIL,
            next: NIL,
            chain_next: NIL,
            ref_count: 0,
            flags: 0,
        }
    }
}

/// One sequence slot. Opaque; create storage with `SeqSlot::default()`.
#[derive(Clone, Copy, Debug)]
pub struct SeqSlot {
    table: ChunkList,
    /// The prefix-cache namespace of every hash this sequence registers or looks up.
    namespace: u64,
    num_tokens: u32,
    generation: u32,
    next_free: u32,
    tier: Tier,
    live: bool,
    /// Forked, or forked from: only then can a partly filled last block be shared (prefix
    /// hits and swap-in reclaims share full blocks only), so only then is copy-on-write checked.
    forked: bool,
}

impl Default for SeqSlot {
    fn default() -> Self {
        SeqSlot {
            table: ChunkList::EMPTY,
            namespace: 0,
            num_tokens: 0,
            generation: 1,
            next_free: NIL,
            tier: Tier::Device,
            live: false,
            forked: false,
        }
    }
}

handle_type!(
    /// A sequence (one block table) in a [`BlockManager`]; carries a generation.
    SeqHandle
);

/// A block-to-block copy the executor must carry out, as per-tier block indices: device → host
/// for a swap out, host → device for a swap in, device → device for copy-on-write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockPair {
    /// Source block index (in the source tier).
    pub src: u32,
    /// Destination block index (in the destination tier).
    pub dst: u32,
}

/// What [`BlockManager::append_tokens`] changed in the table: entries from `first_changed` to
/// the end are new (or, for copy-on-write, replaced). An executor mirroring the table truncates
/// it to `first_changed` and appends the blocks read back with [`BlockManager::read_table`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Logical index of the first new or replaced entry.
    pub first_changed: u32,
    /// Entries from `first_changed` to the end of the table.
    pub changed: u32,
    /// The copy-on-write copy (device → device) to perform before the step, if any.
    pub copy: Option<BlockPair>,
}

/// The longest cached prefix of a list of block hashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixMatch {
    /// Leading hashes found on the device.
    pub blocks: u32,
    /// How many of those are free-cached (taking them uses up evictable supply).
    pub idle: u32,
}

/// A sequence's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqInfo {
    /// Where its blocks are.
    pub tier: Tier,
    /// Blocks in its table (`ceil(num_tokens / block_size)`).
    pub num_blocks: u32,
    /// Tokens its table covers.
    pub num_tokens: u32,
}

/// Block counts of one tier. `free_uncached + free_cached + in_use == total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierCounts {
    /// Blocks in the pool.
    pub total: u32,
    /// Free blocks with no cached content.
    pub free_uncached: u32,
    /// Free blocks that still hold a cached, hash-indexed prefix block (evictable).
    pub free_cached: u32,
    /// Blocks referenced by at least one table.
    pub in_use: u32,
}

impl TierCounts {
    /// Blocks that can be handed out now (free plus evictable).
    pub fn available(&self) -> u32 {
        self.free_uncached + self.free_cached
    }
}

/// Block counts and event counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvCounters {
    /// Device pool.
    pub device: TierCounts,
    /// Host pool.
    pub host: TierCounts,
    /// Blocks found in the prefix cache by `attach_prefix`.
    pub prefix_hit_blocks: u64,
    /// Hashes offered to `attach_prefix` that were not used (from the first miss on).
    pub prefix_miss_blocks: u64,
    /// Cached blocks whose content was evicted to reuse the block.
    pub evictions: u64,
    /// Copy-on-write copies.
    pub cow_copies: u64,
    /// Blocks copied device → host.
    pub swapped_out_blocks: u64,
    /// Blocks copied host → device.
    pub swapped_in_blocks: u64,
    /// Blocks a swap in took back from the device prefix cache instead of copying.
    pub swap_in_reclaimed: u64,
}

impl Links for [BlockSlot] {
    #[inline]
    fn prev(&self, i: u32) -> u32 {
        self[i as usize].prev
    }
    #[inline]
    fn next(&self, i: u32) -> u32 {
        self[i as usize].next
    }
    #[inline]
    fn set_prev(&mut self, i: u32, v: u32) {
        self[i as usize].prev = v;
    }
    #[inline]
    fn set_next(&mut self, i: u32, v: u32) {
        self[i as usize].next = v;
    }
}

/// What a cached block is found by: its namespace and its content hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockKey {
    namespace: u64,
    hash: u64,
}

impl HashChain for [BlockSlot] {
    type Key = BlockKey;
    #[inline]
    fn key(&self, i: u32) -> BlockKey {
        let s = &self[i as usize];
        BlockKey {
            namespace: s.namespace,
            hash: s.hash,
        }
    }
    #[inline]
    fn key_bits(key: BlockKey) -> u64 {
        // The namespace is mixed on its own first, so that (ns, h) and (h, ns) differ.
        key.hash ^ crate::util::mix64(key.namespace)
    }
    #[inline]
    fn chain_next(&self, i: u32) -> u32 {
        self[i as usize].chain_next
    }
    #[inline]
    fn set_chain_next(&mut self, i: u32, v: u32) {
        self[i as usize].chain_next = v;
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Events {
    hits: u64,
    misses: u64,
    evictions: u64,
    cow: u64,
    swapped_out: u64,
    swapped_in: u64,
    reclaimed: u64,
}

/// The physical side: block metadata, free lists and the hash index. Kept apart from the
/// tables so that a table can be walked while blocks are allocated and released.
#[derive(Debug)]
struct BlockPool<'a> {
    blocks: &'a mut [BlockSlot],
    index: HashIndex<'a>,
    device_blocks: u32,
    device_free: List,
    device_cached: List,
    host_free: List,
    events: Events,
}

impl BlockPool<'_> {
    #[inline]
    fn available_device(&self) -> u32 {
        self.device_free.len() + self.device_cached.len()
    }

    /// A device block with ref count 1. Prefers never-cached blocks; otherwise evicts the least
    /// recently freed cached block. The caller has checked `available_device() > 0`.
    #[inline]
    fn alloc_device(&mut self) -> u32 {
        let b = match self.device_free.pop_front(self.blocks) {
            Some(b) => b,
            None => {
                let b = self
                    .device_cached
                    .pop_front(self.blocks)
                    .expect("caller checked supply");
                self.index.remove(self.blocks, b);
                self.blocks[b as usize].flags &= !HASHED;
                self.events.evictions += 1;
                b
            }
        };
        self.blocks[b as usize].ref_count = 1;
        b
    }

    /// A host block with ref count 1; the caller has checked supply.
    #[inline]
    fn alloc_host(&mut self) -> u32 {
        let b = self
            .host_free
            .pop_front(self.blocks)
            .expect("caller checked supply");
        self.blocks[b as usize].ref_count = 1;
        b
    }

    /// Drops one reference; a device block that becomes free stays findable if it is hashed.
    #[inline]
    fn release(&mut self, b: u32) {
        let slot = &mut self.blocks[b as usize];
        slot.ref_count -= 1;
        if slot.ref_count > 0 {
            return;
        }
        if b < self.device_blocks {
            if slot.flags & HASHED != 0 {
                self.device_cached.push_back(self.blocks, b);
            } else {
                self.device_free.push_back(self.blocks, b);
            }
        } else {
            slot.flags &= !HASHED;
            self.host_free.push_back(self.blocks, b);
        }
    }

    /// Takes one more reference to a device block found in the cache.
    #[inline]
    fn take_cached(&mut self, b: u32) {
        if self.blocks[b as usize].ref_count == 0 {
            self.device_cached.remove(self.blocks, b);
        }
        self.blocks[b as usize].ref_count += 1;
    }

    /// Gives device block `b` the hash `hash` in `namespace` and indexes it.
    #[inline]
    fn register(&mut self, b: u32, namespace: u64, hash: u64) {
        let slot = &mut self.blocks[b as usize];
        slot.hash = hash;
        slot.namespace = namespace;
        slot.flags |= HASHED;
        self.index.insert(self.blocks, b);
    }

    #[inline]
    fn find(&self, namespace: u64, hash: u64) -> Option<u32> {
        self.index.find(self.blocks, BlockKey { namespace, hash })
    }
}

/// The paged KV block manager (see the [module docs](crate::kv)).
#[derive(Debug)]
pub struct BlockManager<'a> {
    config: KvConfig,
    pool: BlockPool<'a>,
    tables: ChunkPool<'a, u32, TABLE_CHUNK_LEN>,
    seqs: &'a mut [SeqSlot],
    seq_free_head: u32,
    live_seqs: u32,
}

fn check_len(what: &'static str, need: usize, got: usize) -> Result<(), KvInitError> {
    if got < need {
        Err(KvInitError::StorageTooSmall { what, need, got })
    } else {
        Ok(())
    }
}

impl<'a> BlockManager<'a> {
    /// Builds an empty manager over `storage`: every block free, no sequences.
    pub fn new(config: KvConfig, storage: KvStorage<'a>) -> Result<Self, KvInitError> {
        let layout = config.layout()?;
        check_len("blocks", layout.blocks, storage.blocks.len())?;
        check_len(
            "hash_buckets",
            layout.hash_buckets,
            storage.hash_buckets.len(),
        )?;
        check_len(
            "table_chunks",
            layout.table_chunks,
            storage.table_chunks.len(),
        )?;
        check_len("seqs", layout.seqs, storage.seqs.len())?;
        let blocks = &mut storage.blocks[..layout.blocks];
        let mut device_free = List::EMPTY;
        let mut host_free = List::EMPTY;
        for b in 0..layout.blocks as u32 {
            blocks[b as usize] = BlockSlot::default();
            if b < config.device_blocks {
                device_free.push_back(blocks, b);
            } else {
                host_free.push_back(blocks, b);
            }
        }
        let seqs = &mut storage.seqs[..layout.seqs];
        let count = seqs.len() as u32;
        for (i, s) in seqs.iter_mut().enumerate() {
            *s = SeqSlot::default();
            s.next_free = if i as u32 + 1 < count {
                i as u32 + 1
            } else {
                NIL
            };
        }
        Ok(BlockManager {
            config,
            pool: BlockPool {
                blocks,
                index: HashIndex::new(&mut storage.hash_buckets[..layout.hash_buckets]),
                device_blocks: config.device_blocks,
                device_free,
                device_cached: List::EMPTY,
                host_free,
                events: Events::default(),
            },
            tables: ChunkPool::new(&mut storage.table_chunks[..layout.table_chunks]),
            seqs,
            seq_free_head: 0,
            live_seqs: 0,
        })
    }

    /// The configuration.
    #[inline]
    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// Tokens per block.
    #[inline]
    pub fn block_size(&self) -> u32 {
        self.config.block_size
    }

    /// Device blocks that can be handed out now (free plus evictable).
    #[inline]
    pub fn available_device(&self) -> u32 {
        self.pool.available_device()
    }

    /// Free host blocks.
    #[inline]
    pub fn available_host(&self) -> u32 {
        self.pool.host_free.len()
    }

    /// Free block-table chunks.
    #[inline]
    pub fn free_table_chunks(&self) -> u32 {
        self.tables.free_chunks()
    }

    /// Live sequences.
    #[inline]
    pub fn live_seqs(&self) -> u32 {
        self.live_seqs
    }

    #[inline]
    fn slot(&self, seq: SeqHandle) -> Result<usize, KvError> {
        let i = seq.index() as usize;
        match self.seqs.get(i) {
            Some(s) if s.live && s.generation == seq.generation() => Ok(i),
            _ => Err(KvError::StaleHandle),
        }
    }

    /// Starts an empty sequence on the device in the default prefix-cache namespace (0).
    pub fn create_seq(&mut self) -> Result<SeqHandle, KvError> {
        self.create_seq_in(0)
    }

    /// Starts an empty sequence on the device whose block hashes live in `namespace`: it only
    /// ever shares cached blocks with sequences of the same namespace. Use one namespace per
    /// tenant, LoRA adapter or cache salt (vLLM's `cache_salt`), e.g. a hash of all three.
    pub fn create_seq_in(&mut self, namespace: u64) -> Result<SeqHandle, KvError> {
        let i = self.seq_free_head;
        if i == NIL {
            return Err(KvError::OutOfSeqSlots);
        }
        let s = &mut self.seqs[i as usize];
        self.seq_free_head = s.next_free;
        s.next_free = NIL;
        s.live = true;
        s.tier = Tier::Device;
        s.num_tokens = 0;
        s.table = ChunkList::EMPTY;
        s.namespace = namespace;
        s.forked = false;
        self.live_seqs += 1;
        Ok(SeqHandle::new(i, s.generation))
    }

    /// Whether `seq` is a live handle.
    pub fn is_live(&self, seq: SeqHandle) -> bool {
        self.slot(seq).is_ok()
    }

    /// A sequence's tier, block count and token count.
    pub fn seq_info(&self, seq: SeqHandle) -> Result<SeqInfo, KvError> {
        let s = &self.seqs[self.slot(seq)?];
        Ok(SeqInfo {
            tier: s.tier,
            num_blocks: s.table.len(),
            num_tokens: s.num_tokens,
        })
    }

    /// How many leading `hashes` of the default namespace (0) are cached on the device (read
    /// only). Always 0 with prefix caching off.
    pub fn lookup_prefix(&self, hashes: &[u64]) -> PrefixMatch {
        self.lookup_prefix_iter(0, hashes.iter().copied())
    }

    /// [`BlockManager::lookup_prefix`] in `namespace`, over any sequence of hashes.
    pub fn lookup_prefix_iter(
        &self,
        namespace: u64,
        hashes: impl Iterator<Item = u64>,
    ) -> PrefixMatch {
        let mut m = PrefixMatch::default();
        if !self.config.prefix_caching {
            return m;
        }
        for h in hashes {
            match self.pool.find(namespace, h) {
                Some(b) => {
                    m.blocks += 1;
                    if self.pool.blocks[b as usize].ref_count == 0 {
                        m.idle += 1;
                    }
                }
                None => break,
            }
        }
        m
    }

    /// Gives the empty device sequence `seq` the longest cached prefix of `hashes` in its
    /// namespace (sharing
    /// those blocks) and returns how many blocks it got; the sequence then covers
    /// `blocks × block_size` tokens. Pass only hashes of blocks that may be reused (e.g. leave
    /// out the block holding a prompt's last token, which must be computed to sample from).
    pub fn attach_prefix(&mut self, seq: SeqHandle, hashes: &[u64]) -> Result<u32, KvError> {
        self.attach_prefix_iter(seq, hashes.iter().copied())
    }

    /// [`BlockManager::attach_prefix`] over any sequence of hashes; `hashes` is walked twice
    /// (once to measure the match), so it must be cheap to clone.
    pub fn attach_prefix_iter<I>(&mut self, seq: SeqHandle, hashes: I) -> Result<u32, KvError>
    where
        I: Iterator<Item = u64> + Clone,
    {
        let i = self.slot(seq)?;
        let s = &self.seqs[i];
        if s.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        if s.num_tokens != 0 {
            return Err(KvError::NotEmpty);
        }
        let namespace = s.namespace;
        let m = self.lookup_prefix_iter(namespace, hashes.clone()).blocks;
        let tokens = m as u64 * self.config.block_size as u64;
        if tokens > u32::MAX as u64 {
            return Err(KvError::TooManyTokens);
        }
        if chunks_for(m, TABLE_CHUNK_LEN) > self.tables.free_chunks() {
            return Err(KvError::OutOfTableChunks);
        }
        let s = &mut self.seqs[i];
        let mut offered = 0u64;
        for (k, h) in hashes.enumerate() {
            offered += 1;
            if (k as u32) < m {
                let b = self
                    .pool
                    .find(namespace, h)
                    .expect("found by lookup_prefix");
                self.pool.take_cached(b);
                let pushed = self.tables.push(&mut s.table, b);
                debug_assert!(pushed);
            }
        }
        s.num_tokens = tokens as u32;
        self.pool.events.hits += m as u64;
        self.pool.events.misses += offered - m as u64;
        Ok(m)
    }

    /// Device blocks `seq` would take to grow to `new_total_tokens`: new blocks plus one
    /// copy-on-write copy when its partly filled last block is shared.
    pub fn blocks_needed(&self, seq: SeqHandle, new_total_tokens: u32) -> Result<u32, KvError> {
        let s = &self.seqs[self.slot(seq)?];
        Ok(self.growth_of(s, new_total_tokens).0)
    }

    /// (blocks needed including a copy, whether a copy is needed)
    #[inline]
    fn growth_of(&self, s: &SeqSlot, new_total: u32) -> (u32, bool) {
        if new_total <= s.num_tokens {
            return (0, false);
        }
        let bs = self.config.block_size;
        let fresh = blocks_for(new_total as u64, bs) as u32 - s.table.len();
        let cow = s.forked
            && !s.num_tokens.is_multiple_of(bs)
            && self
                .tables
                .last(&s.table)
                .is_some_and(|b| self.pool.blocks[b as usize].ref_count > 1);
        (fresh + cow as u32, cow)
    }

    /// Grows device sequence `seq` by `n` tokens, allocating blocks as needed (and copying a
    /// shared partly filled last block first). All or nothing.
    pub fn append_tokens(&mut self, seq: SeqHandle, n: u32) -> Result<AppendOutcome, KvError> {
        let i = self.slot(seq)?;
        let s = self.seqs[i];
        if s.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        let new_total = s.num_tokens.checked_add(n).ok_or(KvError::TooManyTokens)?;
        let (need, cow) = self.growth_of(&s, new_total);
        let available = self.pool.available_device();
        if need > available {
            return Err(KvError::OutOfDeviceBlocks { need, available });
        }
        let fresh = need - cow as u32;
        if ChunkPool::<u32, TABLE_CHUNK_LEN>::extra_chunks(&s.table, fresh)
            > self.tables.free_chunks()
        {
            return Err(KvError::OutOfTableChunks);
        }
        let len = s.table.len();
        let mut outcome = AppendOutcome {
            first_changed: len,
            changed: fresh,
            copy: None,
        };
        let table = &mut self.seqs[i].table;
        if cow {
            let old = self.tables.last(table).expect("cow implies a last block");
            let new = self.pool.alloc_device();
            self.tables.set(table, len - 1, new);
            self.pool.release(old);
            self.pool.events.cow += 1;
            outcome.first_changed = len - 1;
            outcome.changed += 1;
            outcome.copy = Some(BlockPair { src: old, dst: new });
        }
        for _ in 0..fresh {
            let b = self.pool.alloc_device();
            let pushed = self.tables.push(table, b);
            debug_assert!(pushed);
        }
        self.seqs[i].num_tokens = new_total;
        Ok(outcome)
    }

    /// Registers `hash` for the full block at logical index `block` of device sequence `seq`,
    /// so later lookups can reuse it. Returns whether the block was indexed: `false` with
    /// prefix caching off, when the block already carries this hash, or when another block
    /// already holds it.
    pub fn set_block_hash(
        &mut self,
        seq: SeqHandle,
        block: u32,
        hash: u64,
    ) -> Result<bool, KvError> {
        let s = self.seqs[self.slot(seq)?];
        if s.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        if block >= s.num_tokens / self.config.block_size {
            return Err(KvError::BlockNotFull);
        }
        let b = self.tables.get(&s.table, block);
        let slot = self.pool.blocks[b as usize];
        if slot.flags & HASHED != 0 {
            return if slot.hash == hash && slot.namespace == s.namespace {
                Ok(false)
            } else {
                Err(KvError::HashConflict)
            };
        }
        if !self.config.prefix_caching || self.pool.find(s.namespace, hash).is_some() {
            return Ok(false);
        }
        self.pool.register(b, s.namespace, hash);
        Ok(true)
    }

    /// A new sequence sharing every block of device sequence `seq` (parallel sampling). The
    /// first append to a shared, partly filled last block copies it.
    pub fn fork(&mut self, seq: SeqHandle) -> Result<SeqHandle, KvError> {
        let src = self.seqs[self.slot(seq)?];
        if src.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        if self.seq_free_head == NIL {
            return Err(KvError::OutOfSeqSlots);
        }
        if chunks_for(src.table.len(), TABLE_CHUNK_LEN) > self.tables.free_chunks() {
            return Err(KvError::OutOfTableChunks);
        }
        let child = self.create_seq()?;
        let c = child.index() as usize;
        let mut table = ChunkList::EMPTY;
        let cloned = self.tables.clone_list(&src.table, &mut table);
        debug_assert!(cloned);
        let blocks = &mut *self.pool.blocks;
        self.tables
            .for_each_from(&table, 0, |_, b| blocks[b as usize].ref_count += 1);
        self.seqs[c].table = table;
        self.seqs[c].num_tokens = src.num_tokens;
        self.seqs[c].forked = true;
        self.seqs[c].namespace = src.namespace;
        self.seqs[seq.index() as usize].forked = true;
        Ok(child)
    }

    /// Ends `seq`: drops its references tail first (so a cached prefix outlives its tail in
    /// the LRU order) and retires the handle.
    pub fn free_seq(&mut self, seq: SeqHandle) -> Result<(), KvError> {
        let i = self.slot(seq)?;
        let mut table = self.seqs[i].table;
        let pool = &mut self.pool;
        self.tables.for_each_rev_mut(&table, |b| pool.release(*b));
        self.tables.clear(&mut table);
        let s = &mut self.seqs[i];
        s.table = ChunkList::EMPTY;
        s.num_tokens = 0;
        s.live = false;
        s.generation = next_generation(s.generation);
        s.next_free = self.seq_free_head;
        self.seq_free_head = i as u32;
        self.live_seqs -= 1;
        Ok(())
    }

    /// Moves device sequence `seq` to host blocks, writing one `(device, host)` pair per block
    /// into `out` (tail first) and returning how many. Refuses, changing nothing, when the host
    /// pool or `out` is too small. Hashed device blocks stay findable in the device cache.
    pub fn swap_out(&mut self, seq: SeqHandle, out: &mut [BlockPair]) -> Result<u32, KvError> {
        let i = self.slot(seq)?;
        let s = self.seqs[i];
        if s.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        let n = s.table.len();
        if (out.len() as u64) < n as u64 {
            return Err(KvError::BufferTooSmall { need: n });
        }
        let available = self.pool.host_free.len();
        if n > available {
            return Err(KvError::OutOfHostBlocks { need: n, available });
        }
        let pool = &mut self.pool;
        let device_blocks = pool.device_blocks;
        let mut k = 0;
        self.tables.for_each_rev_mut(&s.table, |entry| {
            let dev = *entry;
            let host = pool.alloc_host();
            let (hash, namespace, flags) = (
                pool.blocks[dev as usize].hash,
                pool.blocks[dev as usize].namespace,
                pool.blocks[dev as usize].flags,
            );
            pool.blocks[host as usize].hash = hash;
            pool.blocks[host as usize].namespace = namespace;
            pool.blocks[host as usize].flags = flags & HASHED;
            out[k] = BlockPair {
                src: dev,
                dst: host - device_blocks,
            };
            k += 1;
            pool.release(dev);
            *entry = host;
        });
        pool.events.swapped_out += n as u64;
        self.seqs[i].tier = Tier::Host;
        Ok(n)
    }

    /// Moves host sequence `seq` back to device blocks, writing one `(host, device)` pair per
    /// copied block into `out` (tail first) and returning how many. A block whose hash is still
    /// cached on the device is taken back instead of copied. Refuses, changing nothing, unless
    /// the device has a block available for every block of the sequence and `out` can hold a
    /// pair for each.
    pub fn swap_in(&mut self, seq: SeqHandle, out: &mut [BlockPair]) -> Result<u32, KvError> {
        let i = self.slot(seq)?;
        let s = self.seqs[i];
        if s.tier != Tier::Host {
            return Err(KvError::WrongTier);
        }
        let n = s.table.len();
        if (out.len() as u64) < n as u64 {
            return Err(KvError::BufferTooSmall { need: n });
        }
        let available = self.pool.available_device();
        if n > available {
            return Err(KvError::OutOfDeviceBlocks { need: n, available });
        }
        let pool = &mut self.pool;
        let device_blocks = pool.device_blocks;
        let prefix_caching = self.config.prefix_caching;
        let mut copies = 0usize;
        self.tables.for_each_rev_mut(&s.table, |entry| {
            let host = *entry;
            let slot = pool.blocks[host as usize];
            let hashed = slot.flags & HASHED != 0;
            let cached = if hashed && prefix_caching {
                pool.find(slot.namespace, slot.hash)
            } else {
                None
            };
            let dev = match cached {
                Some(b) => {
                    pool.take_cached(b);
                    pool.events.reclaimed += 1;
                    b
                }
                None => {
                    let b = pool.alloc_device();
                    out[copies] = BlockPair {
                        src: host - device_blocks,
                        dst: b,
                    };
                    copies += 1;
                    if hashed && prefix_caching {
                        pool.register(b, slot.namespace, slot.hash);
                    }
                    b
                }
            };
            pool.release(host);
            *entry = dev;
        });
        pool.events.swapped_in += copies as u64;
        self.seqs[i].tier = Tier::Device;
        Ok(copies as u32)
    }

    /// Copies the block ids (per-tier indices, in the sequence's tier) of logical entries
    /// `start..` (to the end of the table) into `out` and returns how many were written: 0
    /// when `start` is at or past the end. Never truncates: when `out` is shorter than the
    /// entries to copy, it fails with [`KvError::BufferTooSmall`] (naming the length needed)
    /// and writes nothing.
    pub fn read_table(
        &self,
        seq: SeqHandle,
        start: u32,
        out: &mut [u32],
    ) -> Result<usize, KvError> {
        let s = &self.seqs[self.slot(seq)?];
        let offset = if s.tier == Tier::Host {
            self.pool.device_blocks
        } else {
            0
        };
        let count = s.table.len().saturating_sub(start);
        if (out.len() as u64) < count as u64 {
            return Err(KvError::BufferTooSmall { need: count });
        }
        let mut n = 0usize;
        self.tables.for_each_from(&s.table, start, |_, b| {
            out[n] = b - offset;
            n += 1;
        });
        Ok(n)
    }

    /// Block counts per tier and event counters.
    pub fn counters(&self) -> KvCounters {
        let p = &self.pool;
        let host_total = self.config.host_blocks;
        let e = p.events;
        KvCounters {
            device: TierCounts {
                total: p.device_blocks,
                free_uncached: p.device_free.len(),
                free_cached: p.device_cached.len(),
                in_use: p.device_blocks - p.device_free.len() - p.device_cached.len(),
            },
            host: TierCounts {
                total: host_total,
                free_uncached: p.host_free.len(),
                free_cached: 0,
                in_use: host_total - p.host_free.len(),
            },
            prefix_hit_blocks: e.hits,
            prefix_miss_blocks: e.misses,
            evictions: e.evictions,
            cow_copies: e.cow,
            swapped_out_blocks: e.swapped_out,
            swapped_in_blocks: e.swapped_in,
            swap_in_reclaimed: e.reclaimed,
        }
    }

    /// Checks every structural invariant (DESIGN.md section 3) in O(blocks + table entries),
    /// using `scratch` (at least `device_blocks + host_blocks` long) for reference counting.
    /// For tests and debugging; returns the first violation found.
    pub fn audit(&self, scratch: &mut [u32]) -> Result<(), &'static str> {
        let p = &self.pool;
        let total = p.blocks.len();
        if scratch.len() < total {
            return Err("audit scratch shorter than the block pool");
        }
        let scratch = &mut scratch[..total];
        scratch.fill(0);
        // Each block in at most one free list, in the right tier and state.
        let mut bad: Option<&'static str> = None;
        let mut check_list = |list: &List, device: bool, hashed: bool, tag: u32| {
            let mut n = 0;
            list.for_each(&*p.blocks, |b| {
                n += 1;
                let slot = &p.blocks[b as usize];
                if (b < p.device_blocks) != device {
                    bad = bad.or(Some("free list holds a block of the other tier"));
                }
                if slot.ref_count != 0 {
                    bad = bad.or(Some("free list holds a referenced block"));
                }
                if (slot.flags & HASHED != 0) != hashed {
                    bad = bad.or(Some("free list holds a block in the wrong cache state"));
                }
                if scratch[b as usize] != 0 {
                    bad = bad.or(Some("block in two free lists (or twice in one)"));
                }
                scratch[b as usize] = tag;
            });
            if n != list.len() {
                bad = bad.or(Some("free list length disagrees with its links"));
            }
        };
        check_list(&p.device_free, true, false, 1);
        check_list(&p.device_cached, true, true, 2);
        check_list(&p.host_free, false, false, 3);
        if let Some(e) = bad {
            return Err(e);
        }
        // Blocks outside the free lists must be referenced, and vice versa.
        for (b, slot) in p.blocks.iter().enumerate() {
            if (scratch[b] == 0) != (slot.ref_count > 0) {
                return Err("a block is neither free nor referenced, or both");
            }
        }
        // Hash index: exactly the hashed device blocks, each findable.
        let mut hashed_device = 0u32;
        for b in 0..p.device_blocks {
            let slot = &p.blocks[b as usize];
            if slot.flags & HASHED != 0 {
                hashed_device += 1;
                if p.find(slot.namespace, slot.hash) != Some(b) {
                    return Err("hashed device block not findable by its hash");
                }
            }
        }
        if hashed_device != p.index.len() {
            return Err("hash index size differs from the number of hashed device blocks");
        }
        // Reference counts equal the number of table entries naming the block.
        scratch.fill(0);
        let mut live = 0u32;
        let mut chunks_used = 0u32;
        let bs = self.config.block_size;
        for s in self.seqs.iter().filter(|s| s.live) {
            live += 1;
            chunks_used += chunks_for(s.table.len(), TABLE_CHUNK_LEN);
            if s.table.len() != s.num_tokens.div_ceil(bs) {
                return Err("a table does not cover exactly its tokens");
            }
            let device = s.tier == Tier::Device;
            let mut wrong_tier = false;
            self.tables.for_each_from(&s.table, 0, |_, b| {
                wrong_tier |= (b < p.device_blocks) != device;
                scratch[b as usize] += 1;
            });
            if wrong_tier {
                return Err("a table holds a block of the other tier");
            }
        }
        for (b, slot) in p.blocks.iter().enumerate() {
            if scratch[b] != slot.ref_count {
                return Err("a reference count differs from the tables that hold the block");
            }
        }
        if live != self.live_seqs {
            return Err("live sequence count is off");
        }
        if chunks_used + self.tables.free_chunks() != self.tables.capacity() {
            return Err("table chunks leaked or double-counted");
        }
        Ok(())
    }
}
