/*!
The paged KV block manager.

The KV cache is cut into blocks of `block_size` tokens. A *device* pool of `N` blocks holds the
KV the model reads; an optional *host* pool of `M` blocks is swap space. Each sequence (one per
request, more after a fork) owns a *block table*: the list of physical blocks that hold its
tokens, in order. All metadata lives in storage the caller provides ([`KvStorage`], sized by
[`KvConfig::layout`]); nothing allocates after construction.

Design points (DESIGN.md section 3):
- **O(1) block operations.** Free blocks sit in index-linked lists threaded through the block
  metadata, so allocate, free and "take this cached block back out of the free list" are O(1).
  Free cached blocks (findable by hash) are a doubly linked list in the order they were freed,
  for eviction and for taking one back from the middle; blocks that hold nothing findable are
  a stack, taken most recently freed first, which costs about half as many loads and stores
  per block (an admission takes a table's worth, a finish gives it back).
- **Prefix caching.** The caller supplies chained block hashes (augur never sees tokens); an
  intrusive hash index maps hash → device block. A freed block keeps its hash and stays findable
  (free-cached, evictable) until it is reused; eviction is lazy and least-recently-freed first,
  and a sequence frees its blocks tail first so its prefix outlives its tail.
- **Sharing.** Blocks are reference counted; a fork shares every block, and appending into a
  shared, partly filled last block copies it first (copy-on-write) and reports the copy.
- **Two tiers.** Swap out / swap in move a sequence between device and host and report
  `(from, to)` block pairs for the executor to copy. On swap in, a block whose hash is still
  cached on the device is taken back instead of copied.
- **Checked handles.** [`SeqHandle`]s carry a generation: a freed-then-reused slot rejects the
  old handle.

Costs: allocate and free are O(1) per block; `append_tokens` is O(new blocks); `free_seq`,
`fork`, `swap_out` and `swap_in` are O(blocks of the sequence); `set_block_hash` is O(1) for
blocks in the last two table chunks (where blocks fill) and O(index / 14) elsewhere.

Nothing here panics. A broken internal invariant (a bug in augur) is reported as
[`KvError::Internal`], after which the manager's state can no longer be trusted.
*/

mod chunk_list;
pub mod events;
mod hash_index;
mod list;
mod manager;

pub use chunk_list::Chunk;
pub(crate) use chunk_list::{ChunkList, ChunkPool};
pub use events::{KvEvent, KvEventKind, KvEventStats};
pub(crate) use hash_index::{HashChain, HashIndex, bucket_count};
pub(crate) use list::{Links, List};
pub use manager::{
    AppendOutcome, BlockManager, BlockPair, BlockSlot, CachedBlock, KvCounters, PrefixMatch,
    SeqHandle, SeqInfo, SeqSlot, TierCounts,
};

use crate::internal::InternalError;
use core::fmt;
use core::mem::size_of;

/// Entries per block-table chunk (a chunk is 64 bytes).
pub const TABLE_CHUNK_LEN: usize = 14;

/// Block-table chunks a table of `entries` entries occupies: every chunk but the last is full,
/// so `ceil(entries / TABLE_CHUNK_LEN)`. With [`BlockManager::chunks_to_grow`] this lets a
/// caller plan table chunks as a resource.
pub const fn table_chunks_for(entries: u32) -> u32 {
    entries.div_ceil(TABLE_CHUNK_LEN as u32)
}

/// One chunk of a block table.
pub type TableChunk = Chunk<u32, TABLE_CHUNK_LEN>;

/// Which memory a block lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Tier {
    /// GPU memory: where the model reads KV.
    #[default]
    Device,
    /// Host memory: swap space.
    Host,
}

/// The shape of a block manager: pool sizes and capacities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvConfig {
    /// Tokens per block (vLLM's default is 16).
    pub block_size: u32,
    /// Blocks in the device pool (N).
    pub device_blocks: u32,
    /// Blocks in the host swap pool (M); 0 disables swapping.
    pub host_blocks: u32,
    /// Sequences that can exist at once (requests, plus forks).
    pub max_seqs: u32,
    /// Block-table chunks in the pool; [`KvConfig::new`] sizes it so that every block can be in
    /// a table with one partly used chunk per sequence. Raise it when forks share many blocks
    /// (a shared block appears in several tables).
    pub table_chunks: u32,
    /// Whether full blocks are indexed by hash for reuse.
    pub prefix_caching: bool,
    /// Entries of the KV event ring ([`events`]); 0 (the default) records no events and
    /// costs nothing.
    pub event_capacity: u32,
}

/// Why a [`KvConfig`] was rejected; each variant names the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvConfigError {
    /// `block_size` must be at least 1.
    ZeroBlockSize,
    /// `device_blocks` must be at least 1.
    ZeroDeviceBlocks,
    /// `device_blocks` must be at most 2^31 (the hash index's bucket count) and
    /// `device_blocks + host_blocks` below 2^32 − 1 (the no-link sentinel).
    TooManyBlocks,
    /// `max_seqs` must be at least 1 and below 2^32 − 1.
    BadMaxSeqs,
    /// `table_chunks` must be at least 1 and below 2^32 − 1.
    BadTableChunks,
    /// The storage would not fit in the address space: an element count or the total byte
    /// count of [`KvLayout`] overflows `usize` (only possible on 32-bit targets).
    TooLarge,
}

impl fmt::Display for KvConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KvConfigError::ZeroBlockSize => "block_size must be at least 1",
            KvConfigError::ZeroDeviceBlocks => "device_blocks must be at least 1",
            KvConfigError::TooManyBlocks => {
                "device_blocks must be at most 2^31 and device_blocks + host_blocks below 2^32 - 1"
            }
            KvConfigError::BadMaxSeqs => "max_seqs must be between 1 and 2^32 - 2",
            KvConfigError::BadTableChunks => "table_chunks must be between 1 and 2^32 - 2",
            KvConfigError::TooLarge => "the storage would not fit in the address space",
        })
    }
}

impl core::error::Error for KvConfigError {}

/// How many elements each storage slice needs for a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    /// Length of [`KvStorage::blocks`]: device plus host blocks.
    pub blocks: usize,
    /// Length of [`KvStorage::hash_buckets`]: a power of two.
    pub hash_buckets: usize,
    /// Length of [`KvStorage::table_chunks`].
    pub table_chunks: usize,
    /// Length of [`KvStorage::seqs`].
    pub seqs: usize,
    /// Length of [`KvStorage::events`]: the event capacity.
    pub events: usize,
    /// Length of [`KvStorage::event_parents`]: one per block with events on, else 0.
    pub event_parents: usize,
}

/// Storage slices of a block manager.
const SLICES: usize = 6;

/// Bytes per element of the storage slices, in [`KvLayout`] field order.
const ELEMENT_BYTES: [u64; SLICES] = [
    size_of::<BlockSlot>() as u64,
    size_of::<u32>() as u64,
    size_of::<TableChunk>() as u64,
    size_of::<SeqSlot>() as u64,
    size_of::<KvEvent>() as u64,
    size_of::<Option<u64>>() as u64,
];

/// The total bytes of slices of `counts` elements ([`KvLayout`] field order), if it is at
/// most `limit`.
fn bytes_within(counts: [u64; SLICES], limit: u64) -> Option<u64> {
    let mut total = 0u64;
    for (n, size) in counts.iter().zip(ELEMENT_BYTES) {
        total = total.checked_add(n.checked_mul(size)?)?;
    }
    (total <= limit).then_some(total)
}

/// `usize::MAX` as a `u64`.
const USIZE_MAX: u64 = if usize::BITS > u64::BITS {
    u64::MAX
} else {
    usize::MAX as u64
};

impl KvLayout {
    /// Bytes of metadata this layout takes. Exact for a layout from [`KvConfig::layout`],
    /// which refuses configurations whose total overflows `usize`
    /// ([`KvConfigError::TooLarge`]); for a hand-built layout whose total does not fit, it
    /// saturates at `usize::MAX`.
    pub fn bytes(&self) -> usize {
        let counts = [
            self.blocks,
            self.hash_buckets,
            self.table_chunks,
            self.seqs,
            self.events,
            self.event_parents,
        ]
        .map(|n| u64::try_from(n).unwrap_or(u64::MAX));
        bytes_within(counts, USIZE_MAX)
            .and_then(|b| usize::try_from(b).ok())
            .unwrap_or(usize::MAX)
    }
}

impl KvConfig {
    /// A configuration with prefix caching on and the table-chunk pool sized for one table
    /// entry per block plus one partly used chunk per sequence.
    pub const fn new(block_size: u32, device_blocks: u32, host_blocks: u32, max_seqs: u32) -> Self {
        // Sums of 32-bit values in 64 bits: never saturate.
        let entries = (device_blocks as u64).saturating_add(host_blocks as u64);
        let chunks = entries
            .div_ceil(TABLE_CHUNK_LEN as u64)
            .saturating_add(max_seqs as u64);
        KvConfig {
            block_size,
            device_blocks,
            host_blocks,
            max_seqs,
            table_chunks: if chunks > (u32::MAX - 1) as u64 {
                u32::MAX - 1
            } else {
                chunks as u32
            },
            prefix_caching: true,
            event_capacity: 0,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), KvConfigError> {
        if self.block_size == 0 {
            return Err(KvConfigError::ZeroBlockSize);
        }
        if self.device_blocks == 0 {
            return Err(KvConfigError::ZeroDeviceBlocks);
        }
        // The hash index needs a power-of-two bucket count ≥ device blocks, in 32 bits.
        if self.device_blocks > 1 << 31
            || u64::from(self.device_blocks).saturating_add(u64::from(self.host_blocks))
                >= u64::from(u32::MAX - 1)
        {
            return Err(KvConfigError::TooManyBlocks);
        }
        if self.max_seqs == 0 || self.max_seqs >= u32::MAX - 1 {
            return Err(KvConfigError::BadMaxSeqs);
        }
        if self.table_chunks == 0 || self.table_chunks >= u32::MAX - 1 {
            return Err(KvConfigError::BadTableChunks);
        }
        Ok(())
    }

    /// The storage this configuration needs. Fails with [`KvConfigError::TooLarge`] when an
    /// element count or the total byte count ([`KvLayout::bytes`]) overflows `usize`.
    pub fn layout(&self) -> Result<KvLayout, KvConfigError> {
        let [
            blocks,
            hash_buckets,
            table_chunks,
            seqs,
            events,
            event_parents,
        ] = self
            .layout_within(USIZE_MAX)?
            .map(|n| usize::try_from(n).map_err(|_| KvConfigError::TooLarge));
        Ok(KvLayout {
            blocks: blocks?,
            hash_buckets: hash_buckets?,
            table_chunks: table_chunks?,
            seqs: seqs?,
            events: events?,
            event_parents: event_parents?,
        })
    }

    /// [`KvConfig::layout`]'s element counts for an address space of `usize_max` bytes
    /// ([`KvLayout`] field order): every count and the byte total must be at most
    /// `usize_max`. Tests pass `u32::MAX` to model a 32-bit target on a 64-bit host.
    pub(crate) fn layout_within(&self, usize_max: u64) -> Result<[u64; SLICES], KvConfigError> {
        self.validate()?;
        let blocks = u64::from(self.device_blocks).saturating_add(u64::from(self.host_blocks));
        let counts = [
            blocks,
            u64::try_from(bucket_count(self.device_blocks)).unwrap_or(u64::MAX),
            u64::from(self.table_chunks),
            u64::from(self.max_seqs),
            u64::from(self.event_capacity),
            if self.event_capacity > 0 { blocks } else { 0 },
        ];
        if counts.iter().any(|&n| n > usize_max) {
            return Err(KvConfigError::TooLarge);
        }
        bytes_within(counts, usize_max).ok_or(KvConfigError::TooLarge)?;
        Ok(counts)
    }
}

/// The caller-provided storage of a [`BlockManager`]. Each slice must be at least as long as
/// [`KvConfig::layout`] says; extra elements are ignored. Contents on entry do not matter.
#[derive(Debug)]
pub struct KvStorage<'a> {
    /// Per-block metadata, device blocks first.
    pub blocks: &'a mut [BlockSlot],
    /// Bucket heads of the prefix-cache hash index.
    pub hash_buckets: &'a mut [u32],
    /// The pool of block-table chunks.
    pub table_chunks: &'a mut [TableChunk],
    /// Sequence slots.
    pub seqs: &'a mut [SeqSlot],
    /// The KV event ring ([`KvLayout::events`] entries; empty with events off).
    pub events: &'a mut [KvEvent],
    /// The parent hash of each cached block, for event snapshots ([`KvLayout::event_parents`]
    /// entries; empty with events off).
    pub event_parents: &'a mut [Option<u64>],
}

/// Why a [`BlockManager`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvInitError {
    /// The configuration is invalid.
    Config(KvConfigError),
    /// A storage slice is shorter than the layout needs.
    StorageTooSmall {
        /// Which slice.
        what: &'static str,
        /// Elements needed.
        need: usize,
        /// Elements given.
        got: usize,
    },
}

impl fmt::Display for KvInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvInitError::Config(e) => write!(f, "invalid KV configuration: {e}"),
            KvInitError::StorageTooSmall { what, need, got } => {
                write!(
                    f,
                    "storage slice `{what}` has {got} elements, the configuration needs {need}"
                )
            }
        }
    }
}

impl core::error::Error for KvInitError {}

impl From<KvConfigError> for KvInitError {
    fn from(e: KvConfigError) -> Self {
        KvInitError::Config(e)
    }
}

/// Why a block-manager operation failed. Every operation is all-or-nothing: on error nothing
/// changed (except for [`KvError::Internal`], a bug in augur).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvError {
    /// The sequence handle is stale (its slot was freed) or was never issued.
    StaleHandle,
    /// Not enough free or evictable device blocks.
    OutOfDeviceBlocks {
        /// Blocks the operation needs.
        need: u32,
        /// Blocks that could be had (free plus evictable).
        available: u32,
    },
    /// Not enough free host blocks.
    OutOfHostBlocks {
        /// Blocks the operation needs.
        need: u32,
        /// Free host blocks.
        available: u32,
    },
    /// The block-table chunk pool is exhausted (raise `KvConfig::table_chunks`).
    OutOfTableChunks,
    /// Every sequence slot is in use (raise `KvConfig::max_seqs`).
    OutOfSeqSlots,
    /// The sequence is in the other tier for this operation (e.g. appending to a swapped-out
    /// sequence, swapping in one that is on the device).
    WrongTier,
    /// `attach_prefix` needs an empty sequence.
    NotEmpty,
    /// A logical block index is past the end of the table, or the block is not yet full.
    BlockNotFull,
    /// The caller's output buffer is too short.
    BufferTooSmall {
        /// Elements needed.
        need: u32,
    },
    /// The block already carries a different hash.
    HashConflict,
    /// The operation would overflow a 32-bit token count.
    TooManyTokens,
    /// An internal invariant of the block manager was found broken: a bug in augur (please
    /// report it), never the caller's fault. The manager's state can no longer be trusted;
    /// drop it (and what it manages) rather than keep using it. Unlike the other errors, the
    /// operation may have changed state before the check failed.
    Internal(InternalError),
}

impl From<InternalError> for KvError {
    fn from(e: InternalError) -> Self {
        KvError::Internal(e)
    }
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::StaleHandle => f.write_str("stale or unknown sequence handle"),
            KvError::OutOfDeviceBlocks { need, available } => {
                write!(
                    f,
                    "out of device blocks: need {need}, {available} free or evictable"
                )
            }
            KvError::OutOfHostBlocks { need, available } => {
                write!(f, "out of host blocks: need {need}, {available} free")
            }
            KvError::OutOfTableChunks => f.write_str("out of block-table chunks"),
            KvError::OutOfSeqSlots => f.write_str("out of sequence slots"),
            KvError::WrongTier => f.write_str("sequence is in the wrong tier for this operation"),
            KvError::NotEmpty => f.write_str("sequence already holds blocks"),
            KvError::BlockNotFull => f.write_str("block index past the end or block not full"),
            KvError::BufferTooSmall { need } => write!(f, "output buffer too small: need {need}"),
            KvError::HashConflict => f.write_str("block already carries a different hash"),
            KvError::TooManyTokens => f.write_str("token count overflows 32 bits"),
            KvError::Internal(e) => {
                write!(
                    f,
                    "{e} (the block manager's state can no longer be trusted)"
                )
            }
        }
    }
}

impl core::error::Error for KvError {}

#[cfg(test)]
mod tests;
