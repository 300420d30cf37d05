//! The router-side prefix index: which replica holds which KV block, learned only from the KV
//! events the replicas publish.
//!
//! This is the index Dynamo's KV router keeps (a radix tree of block hashes to worker sets,
//! fed by the engines' `BlockStored` / `BlockRemoved` / `AllBlocksCleared` events) and that
//! llm-d's precise prefix scorer keeps. Block hashes are chained (each covers its whole
//! prefix), so a flat map from hash to the set of replicas holding it answers the only
//! question a router asks: for a request's block hashes `h0, h1, …`, how many leading blocks
//! does each replica already hold? The index never looks inside an engine: a replica that
//! evicts a block is only forgotten when its `Removed` event arrives, as for a real router.

use hashbrown::HashMap;

/// The most replicas a cluster may have (the holder sets are 128-bit masks).
pub const MAX_REPLICAS: usize = 128;

/// A KV event as a router receives it from one replica (the fields of vLLM's
/// `BlockStored` / `BlockRemoved` / `AllBlocksCleared` that a prefix index uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvEvent {
    /// A block with this hash is now cached on the replica.
    Stored {
        /// The block's chained hash.
        hash: u64,
    },
    /// The replica no longer holds a block with this hash.
    Removed {
        /// The block's chained hash.
        hash: u64,
    },
    /// The replica dropped everything (or its event stream overflowed: resync from empty).
    Cleared,
}

/// Which replicas hold which block hashes.
#[derive(Clone, Debug, Default)]
pub struct PrefixIndex {
    holders: HashMap<u64, u128>,
    events: u64,
}

impl PrefixIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event of replica `replica` (< [`MAX_REPLICAS`]).
    pub fn apply(&mut self, replica: usize, event: KvEvent) {
        debug_assert!(replica < MAX_REPLICAS);
        let bit = 1u128 << replica;
        self.events += 1;
        match event {
            KvEvent::Stored { hash } => *self.holders.entry(hash).or_insert(0) |= bit,
            KvEvent::Removed { hash } => {
                if let Some(m) = self.holders.get_mut(&hash) {
                    *m &= !bit;
                    if *m == 0 {
                        self.holders.remove(&hash);
                    }
                }
            }
            KvEvent::Cleared => self.holders.retain(|_, m| {
                *m &= !bit;
                *m != 0
            }),
        }
    }

    /// Events applied so far.
    pub fn events_applied(&self) -> u64 {
        self.events
    }

    /// Distinct hashes held by at least one replica.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    /// Whether no replica holds anything.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    /// Whether replica `replica` holds `hash`.
    pub fn holds(&self, replica: usize, hash: u64) -> bool {
        self.holders
            .get(&hash)
            .is_some_and(|m| m & (1u128 << replica) != 0)
    }

    /// For each of `out.len()` replicas, the number of leading blocks of `hashes` it holds
    /// (stops at the first block no remaining replica holds).
    pub fn overlaps(&self, hashes: &[u64], out: &mut [u32]) {
        out.fill(0);
        let n = out.len().min(MAX_REPLICAS);
        let mut active: u128 = if n == MAX_REPLICAS {
            u128::MAX
        } else {
            (1u128 << n) - 1
        };
        for (j, h) in hashes.iter().enumerate() {
            let held = self.holders.get(h).copied().unwrap_or(0);
            let next = active & held;
            let mut gone = active & !next;
            while gone != 0 {
                let r = gone.trailing_zeros() as usize;
                out[r] = j as u32;
                gone &= gone - 1;
            }
            active = next;
            if active == 0 {
                return;
            }
        }
        while active != 0 {
            let r = active.trailing_zeros() as usize;
            out[r] = hashes.len() as u32;
            active &= active - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_count_leading_blocks_per_replica() {
        let mut ix = PrefixIndex::new();
        for h in [1, 2, 3] {
            ix.apply(0, KvEvent::Stored { hash: h });
        }
        ix.apply(1, KvEvent::Stored { hash: 1 });
        // Replica 1 holds 3 but not 2: only the leading run counts.
        ix.apply(1, KvEvent::Stored { hash: 3 });
        let mut out = [9; 3];
        ix.overlaps(&[1, 2, 3, 4], &mut out);
        assert_eq!(out, [3, 1, 0]);
        ix.apply(0, KvEvent::Removed { hash: 2 });
        ix.overlaps(&[1, 2, 3, 4], &mut out);
        assert_eq!(out, [1, 1, 0]);
        ix.apply(0, KvEvent::Cleared);
        ix.overlaps(&[1, 2, 3], &mut out);
        assert_eq!(out, [0, 1, 0]);
        assert!(!ix.holds(0, 1) && ix.holds(1, 1) && ix.holds(1, 3));
        assert_eq!(ix.len(), 2);
        // Removing what a replica never held changes nothing.
        ix.apply(2, KvEvent::Removed { hash: 1 });
        assert!(ix.holds(1, 1));
        assert_eq!(ix.events_applied(), 8);
    }

    #[test]
    fn overlaps_with_every_replica_and_a_full_match() {
        let mut ix = PrefixIndex::new();
        for r in 0..MAX_REPLICAS {
            ix.apply(r, KvEvent::Stored { hash: 7 });
        }
        let mut out = vec![0; MAX_REPLICAS];
        ix.overlaps(&[7], &mut out);
        assert!(out.iter().all(|&o| o == 1));
        ix.overlaps(&[], &mut out);
        assert!(out.iter().all(|&o| o == 0));
    }
}
