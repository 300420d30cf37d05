//! An intrusive chained hash index with no heap: the bucket heads are a caller-provided slice
//! and each entry's "next in bucket" link lives in the entry itself. The block manager uses it
//! for prefix caching (block hash → block) and the engine for external ids (id → request).

use crate::util::{NIL, mix64};

/// Access to the key and the bucket-chain link of entry `i` of some storage.
pub(crate) trait HashChain {
    /// What entries are found by: compared exactly, so two keys share an entry only if equal.
    type Key: Copy + PartialEq;
    fn key(&self, i: u32) -> Self::Key;
    /// The 64 bits a key is bucketed by (mixed again before use).
    fn key_bits(key: Self::Key) -> u64;
    fn chain_next(&self, i: u32) -> u32;
    fn set_chain_next(&mut self, i: u32, v: u32);
}

/// Bucket heads over caller storage. The bucket count is a power of two, at least the number
/// of entries that can be indexed, so chains stay short.
#[derive(Debug)]
pub(crate) struct HashIndex<'a> {
    buckets: &'a mut [u32],
    len: u32,
}

/// The number of buckets to give an index that holds up to `entries` keys.
pub(crate) const fn bucket_count(entries: u32) -> usize {
    let n = if entries < 2 { 2 } else { entries };
    n.next_power_of_two() as usize
}

impl<'a> HashIndex<'a> {
    /// Takes the bucket slice (whose length must be a power of two) and empties it.
    pub(crate) fn new(buckets: &'a mut [u32]) -> Self {
        debug_assert!(buckets.len().is_power_of_two());
        buckets.fill(NIL);
        HashIndex { buckets, len: 0 }
    }

    #[inline]
    fn bucket(&self, bits: u64) -> usize {
        (mix64(bits) as usize) & (self.buckets.len() - 1)
    }

    /// The number of indexed entries.
    #[inline]
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// The entry indexed under `key`, if any.
    #[inline]
    pub(crate) fn find<C: HashChain + ?Sized>(&self, chain: &C, key: C::Key) -> Option<u32> {
        let mut i = self.buckets[self.bucket(C::key_bits(key))];
        while i != NIL {
            if chain.key(i) == key {
                return Some(i);
            }
            i = chain.chain_next(i);
        }
        None
    }

    /// Indexes entry `i` under its current key. The caller makes sure no other entry has the key.
    #[inline]
    pub(crate) fn insert<C: HashChain + ?Sized>(&mut self, chain: &mut C, i: u32) {
        let b = self.bucket(C::key_bits(chain.key(i)));
        chain.set_chain_next(i, self.buckets[b]);
        self.buckets[b] = i;
        self.len += 1;
    }

    /// Unindexes entry `i` (which must be indexed under its current key).
    pub(crate) fn remove<C: HashChain + ?Sized>(&mut self, chain: &mut C, i: u32) {
        let b = self.bucket(C::key_bits(chain.key(i)));
        let mut cur = self.buckets[b];
        let mut prev = NIL;
        while cur != NIL {
            let next = chain.chain_next(cur);
            if cur == i {
                if prev == NIL {
                    self.buckets[b] = next;
                } else {
                    chain.set_chain_next(prev, next);
                }
                chain.set_chain_next(i, NIL);
                self.len -= 1;
                return;
            }
            prev = cur;
            cur = next;
        }
        debug_assert!(false, "entry {i} was not indexed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Entries {
        keys: [u64; 16],
        next: [u32; 16],
    }
    impl HashChain for Entries {
        type Key = u64;
        fn key(&self, i: u32) -> u64 {
            self.keys[i as usize]
        }
        fn key_bits(key: u64) -> u64 {
            key
        }
        fn chain_next(&self, i: u32) -> u32 {
            self.next[i as usize]
        }
        fn set_chain_next(&mut self, i: u32, v: u32) {
            self.next[i as usize] = v;
        }
    }

    #[test]
    fn test_insert_find_remove_with_collisions() {
        let mut buckets = [0u32; 2]; // two buckets: many collisions
        let mut index = HashIndex::new(&mut buckets);
        let mut e = Entries {
            keys: [0; 16],
            next: [NIL; 16],
        };
        for i in 0..16u32 {
            e.keys[i as usize] = 1000 + i as u64 * 7;
            index.insert(&mut e, i);
        }
        assert_eq!(index.len(), 16);
        for i in 0..16u32 {
            assert_eq!(index.find(&e, 1000 + i as u64 * 7), Some(i));
        }
        for i in (0..16u32).step_by(3) {
            index.remove(&mut e, i);
        }
        for i in 0..16u32 {
            let found = index.find(&e, 1000 + i as u64 * 7);
            assert_eq!(found, if i % 3 == 0 { None } else { Some(i) });
        }
        assert_eq!(index.find(&e, 5), None);
        assert_eq!(bucket_count(0), 2);
        assert_eq!(bucket_count(5), 8);
    }
}
