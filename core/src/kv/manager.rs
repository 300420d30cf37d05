//! The block manager itself: block pools, sequences and their tables.
//!
//! Nothing here panics: every index into the caller's storage is checked, and a structure
//! found inconsistent is reported as [`KvError::Internal`] (the manager can then no longer be
//! trusted). Caller mistakes keep their own [`KvError`] variants.

use super::events::{EventLog, KvEvent, KvEventStats};
use super::{
    ChunkList, ChunkPool, HashChain, HashIndex, KvConfig, KvConfigError, KvError, KvInitError,
    KvStorage, TABLE_CHUNK_LEN, Tier, chunk_list::chunks_for, list::Links, list::List, list::Stack,
};
use crate::handle::{handle_type, next_generation};
use crate::internal::{InternalError, OrBroken};
use crate::util::{NIL, blocks_for, div_block};

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

impl BlockSlot {
    /// What a cached block is found by, as `(namespace, hash)` (for the event log).
    #[inline]
    fn key(&self) -> (u64, u64) {
        (self.namespace, self.hash)
    }
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
    /// `generation` while the slot is live, on the device and not forked, else 0 (never a
    /// generation): the in-place appends' one compare for the handle and their preconditions
    /// (a decode step makes one such append per running request). Kept by
    /// [`SeqSlot::sync_in_place`] wherever one of those four changes; checked by `audit`.
    in_place: u32,
}

impl SeqSlot {
    /// What `in_place` must hold.
    fn in_place_key(&self) -> u32 {
        if self.live && self.tier == Tier::Device && !self.forked {
            self.generation
        } else {
            0
        }
    }

    fn sync_in_place(&mut self) {
        self.in_place = self.in_place_key();
    }
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
            in_place: 0,
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
#[repr(C)]
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

/// A cached block, as [`BlockManager::cached_blocks`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CachedBlock {
    /// Which pool the block is in.
    pub tier: Tier,
    /// The block's index in its tier.
    pub block: u32,
    /// The prefix-cache namespace of its hash.
    pub namespace: u64,
    /// Its hash.
    pub hash: u64,
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
        self.free_uncached.saturating_add(self.free_cached)
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

/// Block `b` of `blocks`.
#[inline]
fn block(blocks: &[BlockSlot], b: u32) -> Result<&BlockSlot, InternalError> {
    blocks.get(b as usize).or_broken("block index out of range")
}

/// Block `b` of `blocks`, to change.
#[inline]
fn block_mut(blocks: &mut [BlockSlot], b: u32) -> Result<&mut BlockSlot, InternalError> {
    blocks
        .get_mut(b as usize)
        .or_broken("block index out of range")
}

impl Links for [BlockSlot] {
    #[inline]
    fn prev(&self, i: u32) -> Result<u32, InternalError> {
        Ok(block(self, i)?.prev)
    }
    #[inline]
    fn next(&self, i: u32) -> Result<u32, InternalError> {
        Ok(block(self, i)?.next)
    }
    #[inline]
    fn set_prev(&mut self, i: u32, v: u32) -> Result<(), InternalError> {
        block_mut(self, i)?.prev = v;
        Ok(())
    }
    #[inline]
    fn set_next(&mut self, i: u32, v: u32) -> Result<(), InternalError> {
        block_mut(self, i)?.next = v;
        Ok(())
    }
}

/// The audit's view of a free list of either kind: its length and its blocks.
trait FreeList {
    fn len(&self) -> u32;
    fn walk(
        &self,
        blocks: &[BlockSlot],
        f: &mut dyn FnMut(u32) -> Result<(), InternalError>,
    ) -> Result<(), InternalError>;
}

impl FreeList for List {
    fn len(&self) -> u32 {
        List::len(self)
    }
    fn walk(
        &self,
        blocks: &[BlockSlot],
        f: &mut dyn FnMut(u32) -> Result<(), InternalError>,
    ) -> Result<(), InternalError> {
        self.for_each(blocks, f)
    }
}

impl FreeList for Stack {
    fn len(&self) -> u32 {
        Stack::len(self)
    }
    fn walk(
        &self,
        blocks: &[BlockSlot],
        f: &mut dyn FnMut(u32) -> Result<(), InternalError>,
    ) -> Result<(), InternalError> {
        self.for_each(blocks, f)
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
    fn key(&self, i: u32) -> Result<BlockKey, InternalError> {
        let s = block(self, i)?;
        Ok(BlockKey {
            namespace: s.namespace,
            hash: s.hash,
        })
    }
    #[inline]
    fn key_bits(key: BlockKey) -> u64 {
        // The namespace is mixed on its own first, so that (ns, h) and (h, ns) differ.
        key.hash ^ crate::util::mix64(key.namespace)
    }
    #[inline]
    fn chain_next(&self, i: u32) -> Result<u32, InternalError> {
        Ok(block(self, i)?.chain_next)
    }
    #[inline]
    fn set_chain_next(&mut self, i: u32, v: u32) -> Result<(), InternalError> {
        block_mut(self, i)?.chain_next = v;
        Ok(())
    }
}

/// Event counters. Each saturates at `u64::MAX` (one event per block operation: centuries
/// away) rather than wrap.
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
    /// Device blocks that hold nothing findable: their order does not matter, so a stack.
    device_free: Stack,
    /// Free device blocks that stay findable by hash, least recently freed first (evicted in
    /// that order, and taken back out from the middle on a prefix hit).
    device_cached: List,
    host_free: List,
    events: Events,
    /// KV events for routers (off when its ring is empty).
    log: EventLog<'a>,
}

impl BlockPool<'_> {
    #[inline]
    fn available_device(&self) -> u32 {
        // Both lists hold distinct device blocks (at most 2^31): the sum cannot saturate.
        self.device_free
            .len()
            .saturating_add(self.device_cached.len())
    }

    #[inline]
    fn slot(&self, b: u32) -> Result<&BlockSlot, InternalError> {
        block(self.blocks, b)
    }

    /// A device block with ref count 1. Prefers never-cached blocks; otherwise evicts the least
    /// recently freed cached block. The caller has checked `available_device() > 0`.
    /// Inlined into its loops (a table of 32 blocks per admission): the call's register
    /// saves and restores were a third of its cost. The eviction stays out of line.
    #[inline(always)]
    fn alloc_device(&mut self) -> Result<u32, InternalError> {
        let b = match self.device_free.pop(&*self.blocks)? {
            Some(b) => b,
            None => self.evict_cached()?,
        };
        block_mut(self.blocks, b)?.ref_count = 1;
        Ok(b)
    }

    /// Fills `out` with device blocks of ref count 1, as [`Self::alloc_device`] would one at
    /// a time: never-cached blocks first, popped in one go, then evicted cached ones. The
    /// caller has checked `available_device() >= out.len()`.
    #[inline(always)]
    fn alloc_device_into(&mut self, out: &mut [u32]) -> Result<(), InternalError> {
        let popped = self.device_free.pop_into(self.blocks, out, |slot| {
            slot.ref_count = 1;
            slot.next
        })?;
        for b in out.iter_mut().skip(popped) {
            *b = self.alloc_device()?;
        }
        Ok(())
    }

    /// [`Self::alloc_device`] without a never-cached block: the least recently freed cached
    /// block, its hash dropped from the index.
    #[inline(never)]
    fn evict_cached(&mut self) -> Result<u32, InternalError> {
        let b = self
            .device_cached
            .pop_front(self.blocks)?
            .or_broken("device block allocated beyond the checked supply")?;
        self.index.remove(self.blocks, b)?;
        self.log.removed(b, true, block(self.blocks, b)?.key());
        block_mut(self.blocks, b)?.flags &= !HASHED;
        self.events.evictions = self.events.evictions.saturating_add(1);
        Ok(b)
    }

    /// A host block with ref count 1; the caller has checked supply.
    #[inline]
    fn alloc_host(&mut self) -> Result<u32, InternalError> {
        let b = self
            .host_free
            .pop_front(self.blocks)?
            .or_broken("host block allocated beyond the checked supply")?;
        block_mut(self.blocks, b)?.ref_count = 1;
        Ok(b)
    }

    /// Drops one reference; a device block that becomes free stays findable if it is hashed.
    /// Inlined into the loop that frees a table (every finish frees one); host blocks take
    /// the out-of-line path.
    #[inline(always)]
    fn release(&mut self, b: u32) -> Result<(), InternalError> {
        let slot = block_mut(self.blocks, b)?;
        slot.ref_count = slot
            .ref_count
            .checked_sub(1)
            .or_broken("released a block that holds no reference")?;
        if slot.ref_count > 0 {
            return Ok(());
        }
        if b >= self.device_blocks {
            return self.free_host_block(b);
        }
        if slot.flags & HASHED != 0 {
            self.device_cached.push_back(self.blocks, b)
        } else {
            self.device_free.push_onto(b, &mut slot.next)
        }
    }

    /// [`Self::release`]'s end for a host block that became free: its cached content is
    /// forgotten (the host tier keeps no cache once free).
    #[inline(never)]
    fn free_host_block(&mut self, b: u32) -> Result<(), InternalError> {
        let slot = block_mut(self.blocks, b)?;
        self.log.removed(b, slot.flags & HASHED != 0, slot.key());
        slot.flags &= !HASHED;
        self.host_free.push_back(self.blocks, b)
    }

    /// Takes one more reference to a device block found in the cache.
    #[inline]
    fn take_cached(&mut self, b: u32) -> Result<(), InternalError> {
        if self.slot(b)?.ref_count == 0 {
            self.device_cached.remove(self.blocks, b)?;
        }
        let slot = block_mut(self.blocks, b)?;
        // References come from table entries, at most one per sequence slot and block.
        slot.ref_count = slot
            .ref_count
            .checked_add(1)
            .or_broken("block reference count overflows")?;
        Ok(())
    }

    /// Gives device block `b` the hash `hash` in `namespace` and indexes it; `parent` is the
    /// hash before it, for the event log.
    #[inline]
    fn register(
        &mut self,
        b: u32,
        namespace: u64,
        hash: u64,
        parent: Option<u64>,
    ) -> Result<(), InternalError> {
        let slot = block_mut(self.blocks, b)?;
        slot.hash = hash;
        slot.namespace = namespace;
        slot.flags |= HASHED;
        self.log.stored(b, (namespace, hash), parent);
        self.index.insert(self.blocks, b)
    }

    #[inline]
    fn find(&self, namespace: u64, hash: u64) -> Result<Option<u32>, InternalError> {
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

/// The first `need` elements of a storage slice, or why there are fewer.
fn take<'s, T>(
    what: &'static str,
    slice: &'s mut [T],
    need: usize,
) -> Result<&'s mut [T], KvInitError> {
    let got = slice.len();
    slice
        .get_mut(..need)
        .ok_or(KvInitError::StorageTooSmall { what, need, got })
}

/// A list of blocks `first..end`, linked in order (their links are set by the caller's loop).
fn linked_range(first: u32, end: u32) -> List {
    match (end.checked_sub(first), end.checked_sub(1)) {
        (Some(len), Some(tail)) if len > 0 => List::from_linked(first, tail, len),
        _ => List::EMPTY,
    }
}

/// The growth of a table to a new token count.
#[derive(Clone, Copy, Debug)]
struct Growth {
    /// New table entries (fresh blocks).
    fresh: u32,
    /// Whether the shared, partly filled last block is copied first.
    cow: bool,
}

impl<'a> BlockManager<'a> {
    /// Builds an empty manager over `storage`: every block free, no sequences.
    pub fn new(config: KvConfig, storage: KvStorage<'a>) -> Result<Self, KvInitError> {
        let layout = config.layout()?;
        let blocks = take("blocks", storage.blocks, layout.blocks)?;
        let hash_buckets = take("hash_buckets", storage.hash_buckets, layout.hash_buckets)?;
        let table_chunks = take("table_chunks", storage.table_chunks, layout.table_chunks)?;
        let seqs = take("seqs", storage.seqs, layout.seqs)?;
        let ring = take("events", storage.events, layout.events)?;
        let parents = take("event_parents", storage.event_parents, layout.event_parents)?;
        // Validated: device + host blocks and the sequence count stay below the NIL sentinel.
        let too_many = KvInitError::Config(KvConfigError::TooManyBlocks);
        let total = u32::try_from(blocks.len()).map_err(|_| too_many)?;
        let device = config.device_blocks;
        // Device blocks 0..device and host blocks device..total, each a list in index order.
        for (b, slot) in (0..total).zip(blocks.iter_mut()) {
            let (first, end) = if b < device {
                (0, device)
            } else {
                (device, total)
            };
            *slot = BlockSlot {
                prev: if b == first {
                    NIL
                } else {
                    b.checked_sub(1).unwrap_or(NIL)
                },
                next: match b.checked_add(1) {
                    Some(n) if n < end => n,
                    _ => NIL,
                },
                ..BlockSlot::default()
            };
        }
        let device_free = match linked_range(0, device.min(total)) {
            l if l.len() > 0 => Stack::from_linked(0, l.len()),
            _ => Stack::from_linked(NIL, 0),
        };
        let host_free = linked_range(device.min(total), total);
        let count = u32::try_from(seqs.len())
            .map_err(|_| KvInitError::Config(KvConfigError::BadMaxSeqs))?;
        let mut seq_free_head = NIL;
        for (i, s) in (0..count).zip(seqs.iter_mut()).rev() {
            *s = SeqSlot {
                next_free: seq_free_head,
                ..SeqSlot::default()
            };
            seq_free_head = i;
        }
        Ok(BlockManager {
            config,
            pool: BlockPool {
                blocks,
                index: HashIndex::new(hash_buckets),
                device_blocks: device,
                device_free,
                device_cached: List::EMPTY,
                host_free,
                events: Events::default(),
                log: EventLog::new(ring, parents, device, total, config.block_size),
            },
            tables: ChunkPool::new(table_chunks),
            seqs,
            seq_free_head,
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

    /// The slot index of live handle `seq`.
    #[inline]
    fn slot(&self, seq: SeqHandle) -> Result<usize, KvError> {
        self.seq(seq).map(|_| seq.index() as usize)
    }

    /// The slot of live handle `seq`.
    #[inline]
    fn seq(&self, seq: SeqHandle) -> Result<&SeqSlot, KvError> {
        match self.seqs.get(seq.index() as usize) {
            Some(s) if s.live && s.generation == seq.generation() => Ok(s),
            _ => Err(KvError::StaleHandle),
        }
    }

    /// Slot `i`, found live a moment ago.
    #[inline]
    fn seq_at(&self, i: usize) -> Result<&SeqSlot, InternalError> {
        self.seqs.get(i).or_broken("sequence slot out of range")
    }

    /// Slot `i`, to change.
    #[inline]
    fn seq_at_mut(&mut self, i: usize) -> Result<&mut SeqSlot, InternalError> {
        self.seqs.get_mut(i).or_broken("sequence slot out of range")
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
        let live_seqs = self
            .live_seqs
            .checked_add(1)
            .or_broken("live sequence count overflows")?;
        let s = self.seq_at_mut(i as usize)?;
        if s.live {
            return Err(InternalError::new("sequence free list holds a live slot").into());
        }
        let next_free = s.next_free;
        s.next_free = NIL;
        s.live = true;
        s.tier = Tier::Device;
        s.num_tokens = 0;
        s.table = ChunkList::EMPTY;
        s.namespace = namespace;
        s.forked = false;
        s.sync_in_place();
        let generation = s.generation;
        self.seq_free_head = next_free;
        self.live_seqs = live_seqs;
        Ok(SeqHandle::new(i, generation))
    }

    /// Whether `seq` is a live handle.
    pub fn is_live(&self, seq: SeqHandle) -> bool {
        self.seq(seq).is_ok()
    }

    /// A sequence's tier, block count and token count.
    pub fn seq_info(&self, seq: SeqHandle) -> Result<SeqInfo, KvError> {
        let s = self.seq(seq)?;
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

    /// [`BlockManager::lookup_prefix`] in `namespace`, over any sequence of hashes. This query
    /// cannot fail: should the prefix-cache index be found broken (a bug in augur, reported as
    /// [`KvError::Internal`] by the calls that change the manager), it reports no match.
    pub fn lookup_prefix_iter(
        &self,
        namespace: u64,
        hashes: impl Iterator<Item = u64>,
    ) -> PrefixMatch {
        self.try_lookup_prefix_iter(namespace, hashes)
            .unwrap_or_default()
    }

    /// [`BlockManager::lookup_prefix_iter`], reporting a broken index instead of no match.
    pub(crate) fn try_lookup_prefix_iter(
        &self,
        namespace: u64,
        hashes: impl Iterator<Item = u64>,
    ) -> Result<PrefixMatch, InternalError> {
        let mut m = PrefixMatch::default();
        if !self.config.prefix_caching {
            return Ok(m);
        }
        for h in hashes {
            let Some(b) = self.pool.find(namespace, h)? else {
                break;
            };
            // Saturating: a caller may offer the same hash more than 2^32 times.
            m.blocks = m.blocks.saturating_add(1);
            if self.pool.slot(b)?.ref_count == 0 {
                m.idle = m.idle.saturating_add(1);
            }
        }
        Ok(m)
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
    /// (once to measure the match), so it must be cheap to clone. (Should a clone yield other
    /// hashes than the original, the sequence gets the prefix both walks found.)
    pub fn attach_prefix_iter<I>(&mut self, seq: SeqHandle, hashes: I) -> Result<u32, KvError>
    where
        I: Iterator<Item = u64> + Clone,
    {
        let i = self.slot(seq)?;
        let s = self.seq_at(i)?;
        if s.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        if s.num_tokens != 0 {
            return Err(KvError::NotEmpty);
        }
        let namespace = s.namespace;
        let bs = self.config.block_size;
        let m = self
            .try_lookup_prefix_iter(namespace, hashes.clone())?
            .blocks;
        if m.checked_mul(bs).is_none() {
            return Err(KvError::TooManyTokens);
        }
        if chunks_for(m, TABLE_CHUNK_LEN) > self.tables.free_chunks() {
            return Err(KvError::OutOfTableChunks);
        }
        let s = self
            .seqs
            .get_mut(i)
            .or_broken("sequence slot out of range")?;
        let mut got = 0u32;
        let mut offered = 0u64;
        // Cleared at the first miss, which only a clone that differs from the original meets.
        let mut taking = true;
        for h in hashes {
            offered = offered.saturating_add(1);
            if !taking || got >= m {
                continue;
            }
            match self.pool.find(namespace, h)? {
                Some(b) => {
                    self.pool.take_cached(b)?;
                    if !self.tables.push(&mut s.table, b)? {
                        return Err(InternalError::new(
                            "table chunks ran out after they were checked",
                        )
                        .into());
                    }
                    got = got.saturating_add(1);
                }
                None => taking = false,
            }
        }
        // got ≤ m and m × bs was checked above.
        s.num_tokens = got
            .checked_mul(bs)
            .or_broken("attached prefix token count")?;
        self.pool.events.hits = self.pool.events.hits.saturating_add(u64::from(got));
        self.pool.events.misses = self
            .pool
            .events
            .misses
            .saturating_add(offered.saturating_sub(u64::from(got)));
        Ok(got)
    }

    /// Device blocks `seq` would take to grow to `new_total_tokens`: new blocks plus one
    /// copy-on-write copy when its partly filled last block is shared.
    pub fn blocks_needed(&self, seq: SeqHandle, new_total_tokens: u32) -> Result<u32, KvError> {
        let g = self.growth_of(self.seq(seq)?, new_total_tokens)?;
        Ok(g.blocks()?)
    }

    /// Block-table chunks [`BlockManager::append_tokens`] would take from the pool (see
    /// [`BlockManager::free_table_chunks`]) to grow `seq` to `new_total_tokens`: 0 when the
    /// new entries fit the table's last chunk, or when `new_total_tokens` is not above the
    /// sequence's tokens. A copy-on-write replaces an entry in place and takes no chunk. As
    /// [`BlockManager::blocks_needed`], it does not look at the tier (appending to a
    /// swapped-out sequence fails with [`KvError::WrongTier`]).
    ///
    /// With [`table_chunks_for`](super::table_chunks_for) a caller can plan table chunks as
    /// a resource: `table_chunks_for(entries)` is what a table of `entries` blocks occupies.
    pub fn chunks_to_grow(&self, seq: SeqHandle, new_total_tokens: u32) -> Result<u32, KvError> {
        let s = self.seq(seq)?;
        let g = self.growth_of(s, new_total_tokens)?;
        Ok(ChunkPool::<u32, TABLE_CHUNK_LEN>::extra_chunks(
            &s.table, g.fresh,
        ))
    }

    /// How `s` grows to `new_total` tokens.
    #[inline]
    fn growth_of(&self, s: &SeqSlot, new_total: u32) -> Result<Growth, InternalError> {
        if new_total <= s.num_tokens {
            return Ok(Growth {
                fresh: 0,
                cow: false,
            });
        }
        let bs = self.config.block_size;
        // At most `new_total` blocks: fits in 32 bits.
        let blocks = u32::try_from(blocks_for(u64::from(new_total), bs))
            .ok()
            .or_broken("block count of a 32-bit token count")?;
        let fresh = blocks
            .checked_sub(s.table.len())
            .or_broken("a table holds more blocks than its tokens need")?;
        let cow = s.forked
            && !s.num_tokens.is_multiple_of(bs)
            && match self.tables.last(&s.table)? {
                Some(b) => self.pool.slot(b)?.ref_count > 1,
                None => false,
            };
        Ok(Growth { fresh, cow })
    }

    /// Grows device sequence `seq` by `n` tokens if they fit in the blocks its table already
    /// holds: no block is allocated and no table entry changes. Returns the table's length
    /// then (what [`AppendOutcome::first_changed`] would be, with nothing changed), or
    /// `Ok(None)`, changing nothing, when they do not fit,
    /// when `seq` is on the host, or when it is forked (a shared, partly filled last block must
    /// be copied first); [`BlockManager::append_tokens`] does those.
    ///
    /// Why it exists: with 16-token blocks, 15 of 16 decodes land in the last block, and the
    /// engine's step makes one such call per running request. This path costs a handle check
    /// and a multiply instead of `append_tokens`' growth planning.
    #[inline(always)]
    pub fn append_in_place(&mut self, seq: SeqHandle, n: u32) -> Result<Option<u32>, KvError> {
        let bs = self.config.block_size;
        // One lookup checks the handle and yields the slot (this runs once per decode).
        let s = match self.seqs.get_mut(seq.index() as usize) {
            Some(s) if s.in_place == seq.generation() => s,
            Some(s) if s.live && s.generation == seq.generation() => return Ok(None),
            _ => return Err(KvError::StaleHandle),
        };
        // Products and sums of two 32-bit values cannot wrap in 64 bits.
        let capacity = u64::from(s.table.len()).wrapping_mul(u64::from(bs));
        let new_total = u64::from(s.num_tokens).wrapping_add(u64::from(n));
        match u32::try_from(new_total) {
            Ok(t) if new_total <= capacity => {
                s.num_tokens = t;
                Ok(Some(s.table.len()))
            }
            _ => Ok(None),
        }
    }

    /// Grows device sequence `seq` by `n` tokens when they need exactly one fresh block and
    /// nothing else: the sequence is on the device and not forked (no copy-on-write), and a
    /// block and, if the table's last chunk is full, a table chunk are free. Returns the new
    /// block's table index and id, or `Ok(None)`, changing nothing, when the growth is not of
    /// that kind; [`BlockManager::append_tokens`] does the rest. What it does is what
    /// `append_tokens` does then: one block allocated and appended, `first_changed` the old
    /// table length, one entry changed, no copy.
    ///
    /// Why it exists: one decode in 16 (16-token blocks) starts a block, and for those
    /// `append_tokens`' general growth planning and reading the table back cost more than
    /// all the other decodes of the step took together.
    #[inline]
    pub fn append_one_block(
        &mut self,
        seq: SeqHandle,
        n: u32,
    ) -> Result<Option<(u32, u32)>, KvError> {
        let bs = u64::from(self.config.block_size);
        let i = seq.index() as usize;
        let s = match self.seqs.get_mut(i) {
            Some(s) if s.in_place == seq.generation() => s,
            Some(s) if s.live && s.generation == seq.generation() => return Ok(None),
            _ => return Err(KvError::StaleHandle),
        };
        let len = s.table.len();
        // Products and sums of 32-bit values cannot wrap in 64 bits.
        let capacity = u64::from(len).wrapping_mul(bs);
        let new_total = u64::from(s.num_tokens).wrapping_add(u64::from(n));
        let one_more = new_total > capacity && new_total <= capacity.wrapping_add(bs);
        let (true, Ok(total)) = (one_more, u32::try_from(new_total)) else {
            return Ok(None);
        };
        if self.pool.available_device() == 0
            || ChunkPool::<u32, TABLE_CHUNK_LEN>::extra_chunks(&s.table, 1)
                > self.tables.free_chunks()
        {
            return Ok(None);
        }
        let pool = &mut self.pool;
        let mut block = NIL;
        if !self.tables.extend_with(&mut s.table, 1, |run| {
            for b in run {
                block = pool.alloc_device()?;
                *b = block;
            }
            Ok(())
        })? {
            return Err(InternalError::new("table chunks ran out after they were checked").into());
        }
        s.num_tokens = total;
        Ok(Some((len, block)))
    }

    /// Grows device sequence `seq` by `n` tokens, allocating blocks as needed (and copying a
    /// shared partly filled last block first). All or nothing.
    pub fn append_tokens(&mut self, seq: SeqHandle, n: u32) -> Result<AppendOutcome, KvError> {
        let i = self.slot(seq)?;
        let s = *self.seq_at(i)?;
        if s.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        let new_total = s.num_tokens.checked_add(n).ok_or(KvError::TooManyTokens)?;
        let g = self.growth_of(&s, new_total)?;
        let need = g.blocks()?;
        let available = self.pool.available_device();
        if need > available {
            return Err(KvError::OutOfDeviceBlocks { need, available });
        }
        if ChunkPool::<u32, TABLE_CHUNK_LEN>::extra_chunks(&s.table, g.fresh)
            > self.tables.free_chunks()
        {
            return Err(KvError::OutOfTableChunks);
        }
        let len = s.table.len();
        let mut outcome = AppendOutcome {
            first_changed: len,
            changed: g.fresh,
            copy: None,
        };
        let slot = self
            .seqs
            .get_mut(i)
            .or_broken("sequence slot out of range")?;
        let table = &mut slot.table;
        if g.cow {
            let old = self
                .tables
                .last(table)?
                .or_broken("copy-on-write of a table with no last block")?;
            let last = len
                .checked_sub(1)
                .or_broken("copy-on-write of an empty table")?;
            let new = self.pool.alloc_device()?;
            self.tables.set(table, last, new)?;
            self.pool.release(old)?;
            self.pool.events.cow = self.pool.events.cow.saturating_add(1);
            outcome.first_changed = last;
            // g.blocks() = fresh + 1 did not overflow.
            outcome.changed = need;
            outcome.copy = Some(BlockPair { src: old, dst: new });
        }
        let pool = &mut self.pool;
        if !self
            .tables
            .extend_with(table, g.fresh, |run| pool.alloc_device_into(run))?
        {
            return Err(InternalError::new("table chunks ran out after they were checked").into());
        }
        slot.num_tokens = new_total;
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
        let s = *self.seq(seq)?;
        if s.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        if block >= div_block(s.num_tokens, self.config.block_size) {
            return Err(KvError::BlockNotFull);
        }
        let b = self.tables.get(&s.table, block)?;
        let slot = *self.pool.slot(b)?;
        if slot.flags & HASHED != 0 {
            return if slot.hash == hash && slot.namespace == s.namespace {
                Ok(false)
            } else {
                Err(KvError::HashConflict)
            };
        }
        if !self.config.prefix_caching || self.pool.find(s.namespace, hash)?.is_some() {
            return Ok(false);
        }
        self.pool
            .register(b, s.namespace, hash, self.parent_hash(&s, block)?)?;
        Ok(true)
    }

    /// A new sequence sharing every block of device sequence `seq` (parallel sampling). The
    /// first append to a shared, partly filled last block copies it.
    pub fn fork(&mut self, seq: SeqHandle) -> Result<SeqHandle, KvError> {
        let si = self.slot(seq)?;
        let src = *self.seq_at(si)?;
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
        let mut table = ChunkList::EMPTY;
        if !self.tables.clone_list(&src.table, &mut table)? {
            return Err(InternalError::new("table chunks ran out after they were checked").into());
        }
        let blocks = &mut *self.pool.blocks;
        self.tables.for_each_from(&table, 0, |_, b| {
            let slot = block_mut(blocks, b)?;
            slot.ref_count = slot
                .ref_count
                .checked_add(1)
                .or_broken("block reference count overflows")?;
            Ok(())
        })?;
        let c = self.seq_at_mut(child.index() as usize)?;
        c.table = table;
        c.num_tokens = src.num_tokens;
        c.forked = true;
        c.namespace = src.namespace;
        c.sync_in_place();
        let s = self.seq_at_mut(si)?;
        s.forked = true;
        s.sync_in_place();
        Ok(child)
    }

    /// Ends `seq`: drops its references tail first (so a cached prefix outlives its tail in
    /// the LRU order) and retires the handle.
    pub fn free_seq(&mut self, seq: SeqHandle) -> Result<(), KvError> {
        let i = self.slot(seq)?;
        let live_seqs = self
            .live_seqs
            .checked_sub(1)
            .or_broken("live sequence count underflows")?;
        let mut table = self.seq_at(i)?.table;
        let pool = &mut self.pool;
        self.tables.for_each_rev_mut(&table, |b| pool.release(*b))?;
        self.tables.clear(&mut table)?;
        let next_free = self.seq_free_head;
        let s = self.seq_at_mut(i)?;
        s.table = ChunkList::EMPTY;
        s.num_tokens = 0;
        s.live = false;
        s.generation = next_generation(s.generation);
        s.sync_in_place();
        s.next_free = next_free;
        self.seq_free_head = seq.index();
        self.live_seqs = live_seqs;
        Ok(())
    }

    /// Moves device sequence `seq` to host blocks, writing one `(device, host)` pair per block
    /// into `out` (tail first) and returning how many. Refuses, changing nothing, when the host
    /// pool or `out` is too small. Hashed device blocks stay findable in the device cache.
    pub fn swap_out(&mut self, seq: SeqHandle, out: &mut [BlockPair]) -> Result<u32, KvError> {
        let i = self.slot(seq)?;
        let s = *self.seq_at(i)?;
        if s.tier != Tier::Device {
            return Err(KvError::WrongTier);
        }
        let n = s.table.len();
        if (out.len() as u64) < u64::from(n) {
            return Err(KvError::BufferTooSmall { need: n });
        }
        let available = self.pool.host_free.len();
        if n > available {
            return Err(KvError::OutOfHostBlocks { need: n, available });
        }
        let pool = &mut self.pool;
        let device_blocks = pool.device_blocks;
        let mut pairs = out.iter_mut();
        self.tables.for_each_rev_mut(&s.table, |entry| {
            let dev = *entry;
            let host = pool.alloc_host()?;
            let src = *pool.slot(dev)?;
            let dst = block_mut(pool.blocks, host)?;
            dst.hash = src.hash;
            dst.namespace = src.namespace;
            dst.flags = src.flags & HASHED;
            pool.log
                .copied(dev, host, src.flags & HASHED != 0, src.key());
            *pairs
                .next()
                .or_broken("swap-out buffer shorter than checked")? = BlockPair {
                src: dev,
                dst: host
                    .checked_sub(device_blocks)
                    .or_broken("host block below the host pool")?,
            };
            pool.release(dev)?;
            *entry = host;
            Ok(())
        })?;
        pool.events.swapped_out = pool.events.swapped_out.saturating_add(u64::from(n));
        let s = self.seq_at_mut(i)?;
        s.tier = Tier::Host;
        s.sync_in_place();
        Ok(n)
    }

    /// Moves host sequence `seq` back to device blocks, writing one `(host, device)` pair per
    /// copied block into `out` (tail first) and returning how many. A block whose hash is still
    /// cached on the device is taken back instead of copied. Refuses, changing nothing, unless
    /// the device has a block available for every block of the sequence and `out` can hold a
    /// pair for each.
    pub fn swap_in(&mut self, seq: SeqHandle, out: &mut [BlockPair]) -> Result<u32, KvError> {
        let i = self.slot(seq)?;
        let s = *self.seq_at(i)?;
        if s.tier != Tier::Host {
            return Err(KvError::WrongTier);
        }
        let n = s.table.len();
        if (out.len() as u64) < u64::from(n) {
            return Err(KvError::BufferTooSmall { need: n });
        }
        let available = self.pool.available_device();
        if n > available {
            return Err(KvError::OutOfDeviceBlocks { need: n, available });
        }
        let pool = &mut self.pool;
        let device_blocks = pool.device_blocks;
        let prefix_caching = self.config.prefix_caching;
        let mut pairs = out.iter_mut();
        let mut copies = 0u32;
        self.tables.for_each_rev_mut(&s.table, |entry| {
            let host = *entry;
            let slot = *pool.slot(host)?;
            let hashed = slot.flags & HASHED != 0;
            let cached = if hashed && prefix_caching {
                pool.find(slot.namespace, slot.hash)?
            } else {
                None
            };
            let dev = match cached {
                Some(b) => {
                    pool.take_cached(b)?;
                    pool.events.reclaimed = pool.events.reclaimed.saturating_add(1);
                    b
                }
                None => {
                    let b = pool.alloc_device()?;
                    *pairs
                        .next()
                        .or_broken("swap-in buffer shorter than checked")? = BlockPair {
                        src: host
                            .checked_sub(device_blocks)
                            .or_broken("host block below the host pool")?,
                        dst: b,
                    };
                    copies = copies
                        .checked_add(1)
                        .or_broken("more swap-in copies than table entries")?;
                    if hashed && prefix_caching {
                        pool.register(b, slot.namespace, slot.hash, pool.log.parent(host))?;
                    }
                    b
                }
            };
            pool.release(host)?;
            *entry = dev;
            Ok(())
        })?;
        pool.events.swapped_in = pool.events.swapped_in.saturating_add(u64::from(copies));
        let s = self.seq_at_mut(i)?;
        s.tier = Tier::Device;
        s.sync_in_place();
        Ok(copies)
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
        let s = self.seq(seq)?;
        let offset = if s.tier == Tier::Host {
            self.pool.device_blocks
        } else {
            0
        };
        let count = s.table.len().saturating_sub(start);
        if (out.len() as u64) < u64::from(count) {
            return Err(KvError::BufferTooSmall { need: count });
        }
        let mut slots = out.iter_mut();
        self.tables.for_each_from(&s.table, start, |_, b| {
            *slots
                .next()
                .or_broken("table buffer shorter than checked")? = b
                .checked_sub(offset)
                .or_broken("host table entry below the host pool")?;
            Ok(())
        })?;
        Ok(count as usize)
    }

    /// Moves recorded KV events into `out`, oldest first, and returns how many were written
    /// (at most `out.len()`; what does not fit stays for the next call). Call it after each
    /// step and publish what it returns. With [`KvConfig::event_capacity`] 0 it always returns
    /// 0. After an overflow, the first event is an `AllCleared` marker followed by a snapshot
    /// of every cached block (see [`crate::kv::events`] for the protocol).
    pub fn drain_events(&mut self, out: &mut [KvEvent]) -> usize {
        let blocks = &*self.pool.blocks;
        self.pool.log.drain(out, |b| {
            blocks
                .get(b as usize)
                .filter(|s| s.flags & HASHED != 0)
                .map(BlockSlot::key)
        })
    }

    /// Counters of the KV event stream (see [`BlockManager::drain_events`]).
    pub fn event_stats(&self) -> KvEventStats {
        self.pool.log.stats()
    }

    /// Every block whose content is cached now, device blocks first, in block order: hashed
    /// device blocks (in use or free-cached: what a prefix lookup can find) and hashed host
    /// blocks (copies of swapped-out sequences). Read only; the view a KV-event subscriber
    /// must hold after applying every drained event, and a snapshot to resync one from.
    pub fn cached_blocks(&self) -> impl Iterator<Item = CachedBlock> + '_ {
        let device = self.pool.device_blocks;
        (0u32..)
            .zip(self.pool.blocks.iter())
            .filter(|(_, s)| s.flags & HASHED != 0)
            .map(move |(b, s)| {
                let (tier, block) = match b.checked_sub(device) {
                    Some(h) => (Tier::Host, h),
                    None => (Tier::Device, b),
                };
                CachedBlock {
                    tier,
                    block,
                    namespace: s.namespace,
                    hash: s.hash,
                }
            })
    }

    /// The hash of the block before logical block `block` of `s`, if that block is cached
    /// (for the event log; not looked up when events are off).
    fn parent_hash(&self, s: &SeqSlot, block: u32) -> Result<Option<u64>, InternalError> {
        let Some(prev) = block.checked_sub(1).filter(|_| self.pool.log.enabled()) else {
            return Ok(None);
        };
        let p = self.pool.slot(self.tables.get(&s.table, prev)?)?;
        Ok((p.flags & HASHED != 0 && p.namespace == s.namespace).then_some(p.hash))
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
                in_use: p.device_blocks.saturating_sub(p.available_device()),
            },
            host: TierCounts {
                total: host_total,
                free_uncached: p.host_free.len(),
                free_cached: 0,
                in_use: host_total.saturating_sub(p.host_free.len()),
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
        let scratch = scratch
            .get_mut(..p.blocks.len())
            .ok_or("audit scratch shorter than the block pool")?;
        scratch.fill(0);
        // Each block in at most one free list, in the right tier and state.
        let mut bad: Option<&'static str> = None;
        let mut check_list = |list: &dyn FreeList, device: bool, hashed: bool, tag: u32| {
            let mut n = 0u32;
            list.walk(p.blocks, &mut |b| {
                n = n.saturating_add(1);
                let slot = p.slot(b)?;
                if (b < p.device_blocks) != device {
                    bad = bad.or(Some("free list holds a block of the other tier"));
                }
                if slot.ref_count != 0 {
                    bad = bad.or(Some("free list holds a referenced block"));
                }
                if (slot.flags & HASHED != 0) != hashed {
                    bad = bad.or(Some("free list holds a block in the wrong cache state"));
                }
                let mark = scratch
                    .get_mut(b as usize)
                    .or_broken("block index out of range")?;
                if *mark != 0 {
                    bad = bad.or(Some("block in two free lists (or twice in one)"));
                }
                *mark = tag;
                Ok(())
            })
            .map_err(|e| e.what())?;
            if n != list.len() {
                bad = bad.or(Some("free list length disagrees with its links"));
            }
            Ok::<(), &'static str>(())
        };
        check_list(&p.device_free, true, false, 1)?;
        check_list(&p.device_cached, true, true, 2)?;
        check_list(&p.host_free, false, false, 3)?;
        if let Some(e) = bad {
            return Err(e);
        }
        // Blocks outside the free lists must be referenced, and vice versa.
        for (mark, slot) in scratch.iter().zip(p.blocks.iter()) {
            if (*mark == 0) != (slot.ref_count > 0) {
                return Err("a block is neither free nor referenced, or both");
            }
        }
        // Hash index: exactly the hashed device blocks, each findable.
        let mut hashed_device = 0u32;
        for (b, slot) in (0..p.device_blocks).zip(p.blocks.iter()) {
            if slot.flags & HASHED != 0 {
                hashed_device = hashed_device.saturating_add(1);
                if p.find(slot.namespace, slot.hash).map_err(|e| e.what())? != Some(b) {
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
        if self.seqs.iter().any(|s| s.in_place != s.in_place_key()) {
            return Err("a sequence's in-place key disagrees with its state");
        }
        for s in self.seqs.iter().filter(|s| s.live) {
            live = live.saturating_add(1);
            chunks_used = chunks_used.saturating_add(chunks_for(s.table.len(), TABLE_CHUNK_LEN));
            if u64::from(s.table.len()) != blocks_for(u64::from(s.num_tokens), bs) {
                return Err("a table does not cover exactly its tokens");
            }
            let device = s.tier == Tier::Device;
            let mut wrong_tier = false;
            self.tables
                .for_each_from(&s.table, 0, |_, b| {
                    wrong_tier |= (b < p.device_blocks) != device;
                    let count = scratch
                        .get_mut(b as usize)
                        .or_broken("table entry outside the block pools")?;
                    *count = count
                        .checked_add(1)
                        .or_broken("table entry count overflows")?;
                    Ok(())
                })
                .map_err(|e| e.what())?;
            if wrong_tier {
                return Err("a table holds a block of the other tier");
            }
        }
        for (count, slot) in scratch.iter().zip(p.blocks.iter()) {
            if *count != slot.ref_count {
                return Err("a reference count differs from the tables that hold the block");
            }
        }
        if live != self.live_seqs {
            return Err("live sequence count is off");
        }
        if chunks_used.checked_add(self.tables.free_chunks()) != Some(self.tables.capacity()) {
            return Err("table chunks leaked or double-counted");
        }
        Ok(())
    }
}

impl Growth {
    /// Device blocks the growth takes: the fresh ones and the copy.
    #[inline]
    fn blocks(&self) -> Result<u32, InternalError> {
        self.fresh
            .checked_add(u32::from(self.cow))
            .or_broken("blocks needed overflow")
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::kv::TableChunk;
    use std::vec;

    /// Broken internal state (here corrupted on purpose) surfaces as `KvError::Internal`, never
    /// as a panic: the old code indexed the block array with whatever the table held.
    #[test]
    fn test_corrupted_state_is_an_internal_error_not_a_panic() {
        let cfg = KvConfig::new(4, 8, 4, 4);
        let l = cfg.layout().unwrap();
        let mut blocks = vec![BlockSlot::default(); l.blocks];
        let mut buckets = vec![0u32; l.hash_buckets];
        let mut chunks = vec![TableChunk::default(); l.table_chunks];
        let mut seqs = vec![SeqSlot::default(); l.seqs];
        let mut m = BlockManager::new(
            cfg,
            KvStorage {
                blocks: &mut blocks,
                hash_buckets: &mut buckets,
                table_chunks: &mut chunks,
                seqs: &mut seqs,
                events: &mut [],
                event_parents: &mut [],
            },
        )
        .unwrap();
        let a = m.create_seq().unwrap();
        m.append_tokens(a, 9).unwrap();
        let b = m.create_seq().unwrap();
        m.append_tokens(b, 4).unwrap();
        // A block whose reference count says it is free while a table holds it.
        let mut held = [0u32; 1];
        m.read_table(b, 0, &mut held).unwrap();
        m.pool.blocks[held[0] as usize].ref_count = 0;
        let e = m.free_seq(b).unwrap_err();
        assert!(matches!(e, KvError::Internal(_)), "{e:?}");
        assert!(
            std::format!("{e}").contains("can no longer be trusted"),
            "{e}"
        );
        // A table entry naming a block that does not exist.
        let table = m.seqs[a.index() as usize].table;
        m.tables.set(&table, 1, 1000).unwrap();
        let internal = |r: Result<u32, KvError>| matches!(r, Err(KvError::Internal(_)));
        assert!(internal(m.set_block_hash(a, 1, 7).map(|_| 0)));
        assert_eq!(m.blocks_needed(a, 100), Ok(22), "entry 1 is not looked at");
        assert!(m.audit(&mut [0; 12]).is_err());
        assert!(internal(m.swap_out(a, &mut [BlockPair::default(); 8])));
        // A free list whose length is off: allocation reports it instead of panicking.
        m.pool.device_free = Stack::from_linked(NIL, 3);
        m.pool.device_cached = List::EMPTY;
        let c = m.create_seq().unwrap();
        assert!(matches!(m.append_tokens(c, 4), Err(KvError::Internal(_))));
    }
}
