//! An intrusive chained hash index with no heap: the bucket heads are a caller-provided slice
//! and each entry's "next in bucket" link lives in the entry itself. The block manager uses it
//! for prefix caching (block hash → block) and the engine for external ids (id → request).

use crate::internal::{InternalError, OrBroken, broken};
use crate::util::{NIL, mix64};

/// Access to the key and the bucket-chain link of entry `i` of some storage. Each accessor
/// fails with an [`InternalError`] when `i` is out of range.
pub(crate) trait HashChain {
    /// What entries are found by: compared exactly, so two keys share an entry only if equal.
    type Key: Copy + PartialEq;
    fn key(&self, i: u32) -> Result<Self::Key, InternalError>;
    /// The 64 bits a key is bucketed by (mixed again before use).
    fn key_bits(key: Self::Key) -> u64;
    fn chain_next(&self, i: u32) -> Result<u32, InternalError>;
    fn set_chain_next(&mut self, i: u32, v: u32) -> Result<(), InternalError>;
}

/// Bucket heads over caller storage. The bucket count is a power of two, at least the number
/// of entries that can be indexed, so chains stay short.
///
/// Chains are walked at most `len` entries deep, so a corrupted chain (a cycle) is reported as
/// an [`InternalError`] instead of looping forever; so is an entry index out of range.
#[derive(Debug)]
pub(crate) struct HashIndex<'a> {
    buckets: &'a mut [u32],
    /// `buckets.len() − 1`: bucket choice is a mask.
    mask: usize,
    len: u32,
}

/// The number of buckets to give an index that holds up to `entries` keys: the next power of
/// two (at least 2), at most 2^31 (beyond that chains just get longer).
pub(crate) const fn bucket_count(entries: u32) -> usize {
    let n = if entries < 2 { 2 } else { entries };
    match n.checked_next_power_of_two() {
        Some(p) => p as usize,
        None => 1 << 31,
    }
}

impl<'a> HashIndex<'a> {
    /// Takes the bucket slice and empties it. Its length should be a power of two (as
    /// [`bucket_count`] gives); of any other length only the largest power-of-two prefix is
    /// used. An empty slice gives an index in which every insert fails.
    pub(crate) fn new(buckets: &'a mut [u32]) -> Self {
        let len = buckets.len();
        // The largest power of two ≤ len, minus one (0 for an empty slice).
        let mask = usize::MAX.checked_shr(len.leading_zeros()).unwrap_or(0) >> 1;
        buckets.fill(NIL);
        HashIndex {
            buckets,
            mask,
            len: 0,
        }
    }

    #[inline]
    fn bucket(&self, bits: u64) -> usize {
        (mix64(bits) as usize) & self.mask
    }

    #[inline]
    fn head(&self, b: usize) -> Result<u32, InternalError> {
        self.buckets
            .get(b)
            .copied()
            .or_broken("hash bucket out of range")
    }

    #[inline]
    fn head_mut(&mut self, b: usize) -> Result<&mut u32, InternalError> {
        self.buckets
            .get_mut(b)
            .or_broken("hash bucket out of range")
    }

    /// The number of indexed entries.
    #[inline]
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// The entry indexed under `key`, if any.
    #[inline]
    pub(crate) fn find<C: HashChain + ?Sized>(
        &self,
        chain: &C,
        key: C::Key,
    ) -> Result<Option<u32>, InternalError> {
        let mut i = self.head(self.bucket(C::key_bits(key)))?;
        let mut left = self.len;
        while i != NIL {
            left = left
                .checked_sub(1)
                .or_broken("hash chain longer than the index")?;
            if chain.key(i)? == key {
                return Ok(Some(i));
            }
            i = chain.chain_next(i)?;
        }
        Ok(None)
    }

    /// Indexes entry `i` under its current key. The caller makes sure no other entry has the key.
    #[inline]
    pub(crate) fn insert<C: HashChain + ?Sized>(
        &mut self,
        chain: &mut C,
        i: u32,
    ) -> Result<(), InternalError> {
        let len = self
            .len
            .checked_add(1)
            .or_broken("hash index length overflows")?;
        let b = self.bucket(C::key_bits(chain.key(i)?));
        let head = self.head(b)?;
        chain.set_chain_next(i, head)?;
        *self.head_mut(b)? = i;
        self.len = len;
        Ok(())
    }

    /// Unindexes entry `i` (which must be indexed under its current key).
    pub(crate) fn remove<C: HashChain + ?Sized>(
        &mut self,
        chain: &mut C,
        i: u32,
    ) -> Result<(), InternalError> {
        let b = self.bucket(C::key_bits(chain.key(i)?));
        let mut cur = self.head(b)?;
        let mut prev = NIL;
        let mut left = self.len;
        while cur != NIL {
            left = left
                .checked_sub(1)
                .or_broken("hash chain longer than the index")?;
            let next = chain.chain_next(cur)?;
            if cur == i {
                let len = self
                    .len
                    .checked_sub(1)
                    .or_broken("hash index length underflows")?;
                if prev == NIL {
                    *self.head_mut(b)? = next;
                } else {
                    chain.set_chain_next(prev, next)?;
                }
                chain.set_chain_next(i, NIL)?;
                self.len = len;
                return Ok(());
            }
            prev = cur;
            cur = next;
        }
        broken("removed hash entry was not indexed")
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
        fn key(&self, i: u32) -> Result<u64, InternalError> {
            self.keys.get(i as usize).copied().or_broken("test key")
        }
        fn key_bits(key: u64) -> u64 {
            key
        }
        fn chain_next(&self, i: u32) -> Result<u32, InternalError> {
            self.next.get(i as usize).copied().or_broken("test link")
        }
        fn set_chain_next(&mut self, i: u32, v: u32) -> Result<(), InternalError> {
            *self.next.get_mut(i as usize).or_broken("test link")? = v;
            Ok(())
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
            index.insert(&mut e, i).unwrap();
        }
        assert_eq!(index.len(), 16);
        for i in 0..16u32 {
            assert_eq!(index.find(&e, 1000 + i as u64 * 7), Ok(Some(i)));
        }
        for i in (0..16u32).step_by(3) {
            index.remove(&mut e, i).unwrap();
        }
        for i in 0..16u32 {
            let found = index.find(&e, 1000 + i as u64 * 7).unwrap();
            assert_eq!(found, if i % 3 == 0 { None } else { Some(i) });
        }
        assert_eq!(index.find(&e, 5), Ok(None));
        assert!(index.remove(&mut e, 0).is_err(), "not indexed");
        assert_eq!(bucket_count(0), 2);
        assert_eq!(bucket_count(5), 8);
        assert_eq!(bucket_count(1 << 31), 1 << 31);
        assert_eq!(
            bucket_count(u32::MAX),
            1 << 31,
            "saturates instead of overflowing"
        );
    }

    #[test]
    fn test_broken_chains_and_odd_bucket_slices_are_errors_not_panics() {
        let mut e = Entries {
            keys: [0; 16],
            next: [NIL; 16],
        };
        for (i, k) in e.keys.iter_mut().enumerate() {
            *k = i as u64;
        }
        // No buckets: nothing can be indexed, nothing is found.
        let mut none: [u32; 0] = [];
        let mut empty = HashIndex::new(&mut none);
        assert!(empty.insert(&mut e, 0).is_err());
        assert!(empty.find(&e, 0).is_err());
        // Six buckets: only the first four are used.
        let mut six = [0u32; 6];
        let mut index = HashIndex::new(&mut six);
        for i in 0..16 {
            index.insert(&mut e, i).unwrap();
        }
        for i in 0..16u32 {
            assert_eq!(index.find(&e, i as u64), Ok(Some(i)));
        }
        assert_eq!(&six[4..], &[NIL, NIL]);
        // An entry out of range, and a chain that loops.
        let mut two = [0u32; 2];
        let mut index = HashIndex::new(&mut two);
        assert!(index.insert(&mut e, 16).is_err());
        index.insert(&mut e, 3).unwrap();
        e.next[3] = 3;
        let same_bucket = (100u64..).find(|k| mix64(*k) & 1 == mix64(3) & 1).unwrap();
        assert!(index.find(&e, same_bucket).is_err());
        e.keys[7] = same_bucket;
        assert!(index.remove(&mut e, 7).is_err());
    }
}
