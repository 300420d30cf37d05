/*!
KV events: what a cluster router must learn about this block manager's prefix cache.

A prefix-aware router (NVIDIA Dynamo's KV router, llm-d's indexer, augur's own cluster
simulator) keeps, per replica, the set of blocks that a new request could hit. It learns that
set from a stream of events the replica publishes, in the shape vLLM defines
(`vllm/distributed/kv_events.py`; the std side `augur::events` encodes them on the wire):

- [`KvEventKind::Stored`]: a block became cached. On the device that is the moment its hash
  is set (`set_block_hash`, or a swap in that copies a hashed block back): from then on
  `attach_prefix` can find it. On the host it is a hashed block copied there by `swap_out`.
- [`KvEventKind::Removed`]: a cached block is gone. On the device that is an eviction (a
  free-cached block reused for other content: the only way a device block loses its hash); on
  the host it is the release of a hashed host block (the sequence was swapped back in or freed).
- [`KvEventKind::AllCleared`]: forget everything this manager said so far; the events that
  follow rebuild it (see *Overflow and resync* below).

Nothing else changes what is cached, so nothing else makes an event: freeing a sequence keeps
its hashed device blocks cached (free-cached, evictable), a fork or a prefix hit shares blocks
that are already cached, a swap out leaves the device copy cached (and adds a host copy), and a
swap in that takes a block back from the device cache copies nothing. This matches vLLM's
`block_pool.py`, which emits `BlockStored` when it caches full blocks and `BlockRemoved` when it
evicts a block from its hash map, with `medium` naming the tier.

Each event names one physical block (`tier`, `block`: the per-tier index, as in
[`BlockPair`](super::BlockPair)), so a subscriber keyed by `(tier, block)` holds a set. Keyed
by `(namespace, hash, tier)` as vLLM's subscribers are, the device tier is a set too (a hash is
indexed by at most one device block at a time), but the host tier is a multiset: two sequences
that shared a cached block and were both swapped out hold one host copy each, and each copy is
stored and removed on its own. Host copies are private to their sequence (no prefix lookup
finds them); a router that only routes on device hits can ignore the host tier.

# The ring
Events go into a ring in caller storage ([`KvStorage::events`](super::KvStorage::events),
[`KvConfig::event_capacity`](super::KvConfig::event_capacity) entries, plus one
`Option<u64>` per block in [`KvStorage::event_parents`](super::KvStorage::event_parents) to
remember each cached block's parent hash). With a capacity of 0 (the default) both slices are
empty and every hook returns at its first test: events cost nothing. The caller drains the ring
after each step ([`BlockManager::drain_events`](super::BlockManager::drain_events), or
`Engine::drain_kv_events`), oldest first. Each drained event carries a sequence number
([`KvEvent::seq`]) that starts at 0 and grows by one per delivered event, so a gap can only
come from the transport, never from the core.

# Overflow and resync
Overflow is never silent. When an event finds the ring full, the ring's contents and the new
event are discarded (counted in [`KvEventStats::dropped`], and [`KvEventStats::resyncs`] counts
the overflow), and the manager records nothing more until the next drain. That drain starts
with an [`KvEventKind::AllCleared`] marker, followed by a *snapshot*: one `Stored` event for
every block cached at that moment (in block order, device first). A subscriber that clears
this replica's entries on `AllCleared` and then applies what follows is exact again.

A snapshot longer than the caller's buffer continues over several drains. Meanwhile the
manager records live events only for blocks the snapshot has already passed; a change to a
block it has yet to reach is left out (and counted as dropped), since the snapshot will describe
that block as it is when it gets there. Each block's events therefore stay in order, and the
subscriber's view is exact once the snapshot ends. Another overflow during a snapshot starts a
new resync. A subscriber can also ask for a full view at any time with
[`BlockManager::cached_blocks`](super::BlockManager::cached_blocks) (read only, between steps).

# Parent hashes
A stored device block's parent is the hash of the block before it in the table of the
sequence that registered it, if that block is cached (vLLM's `parent_block_hash`); `None` for
a sequence's first block. If that earlier block is not cached itself (two sequences computed
the same block in the same step and the other one's copy is the cached one), the parent is
reported as `None` too: augur never learns the hash of a block it did not index. Host copies
keep the parent of their device block.
*/

use super::Tier;

/// One KV event: what happened, and its place in the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvEvent {
    /// Position in the event stream: 0 for the first event drained, then one more per event.
    pub seq: u64,
    /// What happened.
    pub kind: KvEventKind,
}

/// What a [`KvEvent`] reports (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvEventKind {
    /// A block became cached (vLLM's `BlockStored`).
    Stored {
        /// The block's hash (the caller's chained content hash).
        hash: u64,
        /// The hash of the block before it in its sequence, if that one is cached.
        parent: Option<u64>,
        /// Tokens the block holds: always `block_size` (only full blocks are cached).
        tokens: u32,
        /// Tokens per block.
        block_size: u32,
        /// Which pool the block is in.
        tier: Tier,
        /// The block's index in its tier.
        block: u32,
        /// The prefix-cache namespace (tenant, LoRA adapter, cache salt) the hash belongs to.
        namespace: u64,
    },
    /// A cached block is gone (vLLM's `BlockRemoved`).
    Removed {
        /// The block's hash.
        hash: u64,
        /// Which pool the block was in.
        tier: Tier,
        /// The block's index in its tier.
        block: u32,
        /// The prefix-cache namespace of the hash.
        namespace: u64,
    },
    /// Forget every block this manager reported; the events that follow rebuild the view
    /// (vLLM's `AllBlocksCleared`). Sent after an overflow, followed by a snapshot.
    #[default]
    AllCleared,
}

/// Counters of the event stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvEventStats {
    /// Events delivered by drains (the next event's sequence number).
    pub delivered: u64,
    /// Events never delivered one by one: discarded by an overflow, or superseded by a
    /// snapshot in progress. Each loss is made good by the resync that follows.
    pub dropped: u64,
    /// Overflows (each one leads to an `AllCleared` marker and a snapshot).
    pub resyncs: u64,
    /// Events waiting in the ring.
    pub pending: u32,
    /// Whether a resync (marker or snapshot) is still to be delivered.
    pub resyncing: bool,
}

/// Where the stream stands with respect to a resync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resync {
    /// Live events flow.
    Idle,
    /// The ring overflowed: nothing is recorded until the next drain sends the marker.
    Marker,
    /// The snapshot has described blocks `0..cursor` (global index, device first); live
    /// events of those blocks are recorded, the others are left to the snapshot.
    Snapshot(u32),
}

/// The event ring and the per-block parent hashes, in caller storage.
#[derive(Debug)]
pub(crate) struct EventLog<'a> {
    ring: &'a mut [KvEvent],
    parents: &'a mut [Option<u64>],
    head: usize,
    len: usize,
    device_blocks: u32,
    total_blocks: u32,
    block_size: u32,
    resync: Resync,
    stats: KvEventStats,
}

impl<'a> EventLog<'a> {
    /// A log over `ring` (empty: events off) and `parents` (one per block when on).
    pub(crate) fn new(
        ring: &'a mut [KvEvent],
        parents: &'a mut [Option<u64>],
        device_blocks: u32,
        total_blocks: u32,
        block_size: u32,
    ) -> Self {
        parents.fill(None);
        EventLog {
            ring,
            parents,
            head: 0,
            len: 0,
            device_blocks,
            total_blocks,
            block_size,
            resync: Resync::Idle,
            stats: KvEventStats::default(),
        }
    }

    /// Whether events are recorded at all (a ring of at least one entry).
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        !self.ring.is_empty()
    }

    /// The tier and per-tier index of global block `b`.
    #[inline]
    fn place(&self, b: u32) -> (Tier, u32) {
        match b.checked_sub(self.device_blocks) {
            Some(h) => (Tier::Host, h),
            None => (Tier::Device, b),
        }
    }

    /// The remembered parent hash of cached block `b`.
    #[inline]
    pub(crate) fn parent(&self, b: u32) -> Option<u64> {
        self.parents.get(b as usize).copied().flatten()
    }

    /// Global block `b` became cached under `(namespace, hash)`, after `parent`.
    #[inline]
    pub(crate) fn stored(&mut self, b: u32, (namespace, hash): (u64, u64), parent: Option<u64>) {
        if !self.enabled() {
            return;
        }
        if let Some(p) = self.parents.get_mut(b as usize) {
            *p = parent;
        }
        let (tier, block) = self.place(b);
        let kind = KvEventKind::Stored {
            hash,
            parent,
            tokens: self.block_size,
            block_size: self.block_size,
            tier,
            block,
            namespace,
        };
        self.record(b, kind);
    }

    /// Global block `b` was copied to host block `to` (global index); `hashed` says whether it
    /// carries `key` (namespace, hash), i.e. whether the copy is cached.
    #[inline]
    pub(crate) fn copied(&mut self, b: u32, to: u32, hashed: bool, key: (u64, u64)) {
        if hashed && self.enabled() {
            self.stored(to, key, self.parent(b));
        }
    }

    /// Global block `b`, cached under `(namespace, hash)` if `hashed`, loses its content.
    #[inline]
    pub(crate) fn removed(&mut self, b: u32, hashed: bool, (namespace, hash): (u64, u64)) {
        if !hashed || !self.enabled() {
            return;
        }
        let (tier, block) = self.place(b);
        let kind = KvEventKind::Removed {
            hash,
            tier,
            block,
            namespace,
        };
        self.record(b, kind);
    }

    /// Appends an event about global block `b`, or handles the overflow.
    fn record(&mut self, b: u32, kind: KvEventKind) {
        let keep = match self.resync {
            Resync::Idle => true,
            Resync::Marker => false,
            Resync::Snapshot(cursor) => b < cursor,
        };
        if !keep {
            self.stats.dropped = self.stats.dropped.saturating_add(1);
            return;
        }
        let cap = self.ring.len();
        if self.len >= cap {
            // Overflow: what the ring holds is superseded by the resync.
            let lost = u64::try_from(self.len).unwrap_or(u64::MAX);
            self.stats.dropped = self.stats.dropped.saturating_add(lost).saturating_add(1);
            self.stats.resyncs = self.stats.resyncs.saturating_add(1);
            self.head = 0;
            self.len = 0;
            self.resync = Resync::Marker;
            return;
        }
        let at = self
            .head
            .wrapping_add(self.len)
            .checked_rem(cap)
            .unwrap_or(0);
        if let Some(slot) = self.ring.get_mut(at) {
            *slot = KvEvent { seq: 0, kind };
            self.len = self.len.saturating_add(1);
        }
    }

    /// Moves events into `out`, oldest first, and returns how many: the resync marker if one
    /// is due, then the ring, then the snapshot in progress. `cached(b)` is global block
    /// `b`'s `(namespace, hash)` if it is cached now.
    pub(crate) fn drain(
        &mut self,
        out: &mut [KvEvent],
        cached: impl Fn(u32) -> Option<(u64, u64)>,
    ) -> usize {
        if !self.enabled() {
            return 0;
        }
        let mut slots = out.iter_mut();
        let mut n = 0usize;
        let mut emit = |stats: &mut KvEventStats, slot: &mut KvEvent, kind: KvEventKind| {
            *slot = KvEvent {
                seq: stats.delivered,
                kind,
            };
            stats.delivered = stats.delivered.saturating_add(1);
            n = n.saturating_add(1);
        };
        if self.resync == Resync::Marker {
            let Some(slot) = slots.next() else {
                return 0;
            };
            emit(&mut self.stats, slot, KvEventKind::AllCleared);
            self.resync = Resync::Snapshot(0);
        }
        let cap = self.ring.len();
        while self.len > 0 {
            let Some(slot) = slots.next() else {
                break;
            };
            let kind = self
                .ring
                .get(self.head)
                .map_or(KvEventKind::AllCleared, |e| e.kind);
            emit(&mut self.stats, slot, kind);
            self.head = self.head.wrapping_add(1).checked_rem(cap).unwrap_or(0);
            self.len = self.len.saturating_sub(1);
        }
        if let Resync::Snapshot(mut cursor) = self.resync {
            while cursor < self.total_blocks {
                let c = cached(cursor);
                if let Some((namespace, hash)) = c {
                    let Some(slot) = slots.next() else {
                        break;
                    };
                    let (tier, block) = self.place(cursor);
                    let kind = KvEventKind::Stored {
                        hash,
                        parent: self.parent(cursor),
                        tokens: self.block_size,
                        block_size: self.block_size,
                        tier,
                        block,
                        namespace,
                    };
                    emit(&mut self.stats, slot, kind);
                }
                cursor = cursor.saturating_add(1);
            }
            self.resync = if cursor >= self.total_blocks {
                Resync::Idle
            } else {
                Resync::Snapshot(cursor)
            };
        }
        if self.len == 0 {
            self.head = 0;
        }
        n
    }

    /// The stream's counters.
    pub(crate) fn stats(&self) -> KvEventStats {
        KvEventStats {
            pending: u32::try_from(self.len).unwrap_or(u32::MAX),
            resyncing: self.resync != Resync::Idle,
            ..self.stats
        }
    }
}
