//! A 4-ary indexed min-heap. Four children per node halve the depth of a binary heap, which
//! matters at a million waiting requests (fewer cache misses per sift).

use crate::internal::{InternalError, OrBroken};
use crate::util::{NIL, ordered_bits};
use core::fmt;

/// A heap key: the rank (lower first) and a tiebreak (lower first; the arrival sequence
/// number, so ties go to the earlier arrival). Compared as integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RankKey {
    primary: u64,
    tiebreak: u64,
}

impl RankKey {
    /// The key as one integer, `primary` above `tiebreak`: the order the derived,
    /// field-by-field comparison gives, in one 128-bit compare (a subtract with borrow)
    /// instead of two compares and branches. A heap sift compares three or four keys per
    /// level.
    #[inline(always)]
    fn as_u128(self) -> u128 {
        (u128::from(self.primary) << 64) | u128::from(self.tiebreak)
    }
}

impl Ord for RankKey {
    #[inline(always)]
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.as_u128().cmp(&other.as_u128())
    }
}

impl PartialOrd for RankKey {
    #[inline(always)]
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl RankKey {
    /// A key from a rank and a tiebreak. Ranks are ordered as `f64::total_cmp` orders them:
    /// finite and infinite ranks as numbers, a NaN (validate inputs first; it is accepted
    /// rather than a panic) after +∞ or before −∞ by its sign bit.
    #[inline]
    pub fn new(rank: f64, tiebreak: u64) -> Self {
        RankKey {
            primary: ordered_bits(rank),
            tiebreak,
        }
    }

    /// The rank this key was made from.
    #[inline]
    pub fn rank(&self) -> f64 {
        let b = self.primary;
        f64::from_bits(if b >> 63 == 1 { b & !(1 << 63) } else { !b })
    }

    /// The tiebreak.
    #[inline]
    pub fn tiebreak(&self) -> u64 {
        self.tiebreak
    }
}

/// One heap slot. Opaque; create storage with `HeapEntry::default()`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapEntry {
    key: RankKey,
    item: u32,
}

/// Why an [`IndexedHeap`] operation failed. On every error but [`HeapError::Internal`] the heap
/// is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapError {
    /// `push` on a full heap ([`IndexedHeap::capacity`] items).
    Full,
    /// `push` of an item id not below the length of the `positions` slice.
    ItemOutOfRange,
    /// `push` of an item that is already in the heap.
    AlreadyQueued,
    /// An internal invariant of the heap was found broken: a bug in augur (please report it),
    /// never the caller's fault. The heap's state can no longer be trusted.
    Internal(InternalError),
}

impl From<InternalError> for HeapError {
    fn from(e: InternalError) -> Self {
        HeapError::Internal(e)
    }
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapError::Full => f.write_str("heap is full"),
            HeapError::ItemOutOfRange => f.write_str("item id out of range for the heap"),
            HeapError::AlreadyQueued => f.write_str("item is already in the heap"),
            HeapError::Internal(e) => write!(f, "{e} (the heap can no longer be trusted)"),
        }
    }
}

impl core::error::Error for HeapError {}

const D: usize = 4;

/// A min-heap of item ids (`0..positions.len()`) with O(log n) push, pop, re-key and remove by
/// id, and O(1) peek and membership.
///
/// No method panics: positions and entries are read with checked accesses, and a heap found
/// inconsistent (a bug) is reported as [`HeapError::Internal`].
#[derive(Debug)]
pub struct IndexedHeap<'a> {
    entries: &'a mut [HeapEntry],
    positions: &'a mut [u32],
    len: usize,
}

/// `i` as a position (positions are below the capacity, which is below `NIL`).
#[inline]
fn position(i: usize) -> Result<u32, InternalError> {
    u32::try_from(i)
        .ok()
        .or_broken("heap position overflows 32 bits")
}

impl<'a> IndexedHeap<'a> {
    /// An empty heap holding up to `entries.len()` items (at most 2^32 − 2: positions are
    /// 32-bit and `u32::MAX` marks "not in the heap"; the rest of a longer slice is ignored)
    /// whose ids are below `positions.len()`. Contents of both slices on entry do not matter.
    pub fn new(entries: &'a mut [HeapEntry], positions: &'a mut [u32]) -> Self {
        positions.fill(NIL);
        let usable = entries.len().min(NIL as usize);
        let entries = entries
            .split_at_mut_checked(usable)
            .map_or(&mut [][..], |(used, _)| used);
        IndexedHeap {
            entries,
            positions,
            len: 0,
        }
    }

    /// Items in the heap.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the heap is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many items it can hold.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Whether `item` is in the heap (false for ids out of range).
    #[inline]
    pub fn contains(&self, item: u32) -> bool {
        self.positions.get(item as usize).is_some_and(|&p| p != NIL)
    }

    /// The key of `item`, if it is in the heap.
    #[inline]
    pub fn key_of(&self, item: u32) -> Option<RankKey> {
        let p = *self.positions.get(item as usize)?;
        if p == NIL {
            return None;
        }
        self.entries.get(p as usize).map(|e| e.key)
    }

    /// The minimum item and its key.
    #[inline]
    pub fn peek(&self) -> Option<(u32, RankKey)> {
        if self.len == 0 {
            return None;
        }
        self.entries.first().map(|e| (e.item, e.key))
    }

    /// Adds `item`, which must be below `positions.len()` and not in the heap.
    pub fn push(&mut self, item: u32, key: RankKey) -> Result<(), HeapError> {
        if self.len >= self.entries.len() {
            return Err(HeapError::Full);
        }
        match self.positions.get(item as usize) {
            None => return Err(HeapError::ItemOutOfRange),
            Some(&p) if p != NIL => return Err(HeapError::AlreadyQueued),
            Some(_) => {}
        }
        let i = self.len;
        *self.entry_mut(i)? = HeapEntry { key, item };
        self.len = i.checked_add(1).or_broken("heap length overflows")?;
        self.sift_up(i)?;
        Ok(())
    }

    /// Removes and returns the minimum item.
    pub fn pop(&mut self) -> Result<Option<(u32, RankKey)>, HeapError> {
        let Some((item, key)) = self.peek() else {
            return Ok(None);
        };
        self.remove_at(0)?;
        Ok(Some((item, key)))
    }

    /// Removes `item`, returning its key; `Ok(None)` if it was not in the heap.
    pub fn remove(&mut self, item: u32) -> Result<Option<RankKey>, HeapError> {
        let Some(p) = self.position_of(item) else {
            return Ok(None);
        };
        let key = self.entry(p)?.key;
        self.remove_at(p)?;
        Ok(Some(key))
    }

    /// Gives `item` a new key; `Ok(false)` if it was not in the heap.
    pub fn update(&mut self, item: u32, key: RankKey) -> Result<bool, HeapError> {
        let Some(p) = self.position_of(item) else {
            return Ok(false);
        };
        let entry = self.entry_mut(p)?;
        let old = entry.key;
        entry.key = key;
        if key < old {
            self.sift_up(p)?;
        } else {
            self.sift_down(p)?;
        }
        Ok(true)
    }

    /// Visits every (item, key) in heap order (not sorted). For audits.
    pub fn for_each(&self, mut f: impl FnMut(u32, RankKey)) {
        for e in self.entries.iter().take(self.len) {
            f(e.item, e.key);
        }
    }

    /// Where `item` sits, if it is in the heap.
    #[inline]
    fn position_of(&self, item: u32) -> Option<usize> {
        match self.positions.get(item as usize) {
            Some(&p) if p != NIL => Some(p as usize),
            _ => None,
        }
    }

    #[inline]
    fn entry(&self, i: usize) -> Result<&HeapEntry, InternalError> {
        self.entries.get(i).or_broken("heap entry out of range")
    }

    #[inline]
    fn entry_mut(&mut self, i: usize) -> Result<&mut HeapEntry, InternalError> {
        self.entries.get_mut(i).or_broken("heap entry out of range")
    }

    /// Records that `item` now sits at `i`.
    #[inline]
    fn set_position(&mut self, item: u32, i: usize) -> Result<(), InternalError> {
        *self
            .positions
            .get_mut(item as usize)
            .or_broken("heap item out of range")? = position(i)?;
        Ok(())
    }

    /// Puts `e` at `i` and records its position.
    #[inline]
    fn place(&mut self, i: usize, e: HeapEntry) -> Result<(), InternalError> {
        *self.entry_mut(i)? = e;
        self.set_position(e.item, i)
    }

    fn remove_at(&mut self, p: usize) -> Result<(), InternalError> {
        let removed = self.entry(p)?.item;
        let last_index = self
            .len
            .checked_sub(1)
            .or_broken("remove from an empty heap")?;
        *self
            .positions
            .get_mut(removed as usize)
            .or_broken("heap item out of range")? = NIL;
        self.len = last_index;
        if p == last_index {
            return Ok(());
        }
        let last = *self.entry(last_index)?;
        self.place(p, last)?;
        let below_parent = match p.checked_sub(1) {
            Some(q) => last.key < self.entry(q / D)?.key,
            None => false,
        };
        if below_parent {
            self.sift_up(p)
        } else {
            self.sift_down(p)
        }
    }

    #[inline]
    fn sift_up(&mut self, mut i: usize) -> Result<(), InternalError> {
        let moving = *self.entry(i)?;
        while let Some(q) = i.checked_sub(1) {
            let parent = q / D;
            let pe = *self.entry(parent)?;
            if moving.key >= pe.key {
                break;
            }
            self.place(i, pe)?;
            i = parent;
        }
        self.place(i, moving)
    }

    #[inline]
    fn sift_down(&mut self, mut i: usize) -> Result<(), InternalError> {
        let moving = *self.entry(i)?;
        // A position whose first child index overflows a usize has no children.
        while let Some(first) = i
            .checked_mul(D)
            .and_then(|x| x.checked_add(1))
            .filter(|&first| first < self.len)
        {
            let end = first.saturating_add(D).min(self.len);
            let children = self
                .entries
                .get(first..end)
                .or_broken("heap children out of range")?;
            // The first of equal minima, as a left-to-right scan finds it.
            let Some((offset, be)) = children
                .iter()
                .copied()
                .enumerate()
                .min_by_key(|(_, e)| e.key)
            else {
                break;
            };
            if be.key >= moving.key {
                break;
            }
            let best = first
                .checked_add(offset)
                .or_broken("heap child index overflows")?;
            self.place(i, be)?;
            i = best;
        }
        self.place(i, moving)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn test_rank_key_round_trips_and_orders() {
        for r in [-5.5, -0.0, 0.0, 1.0, 1e12, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(RankKey::new(r, 0).rank().to_bits(), r.to_bits());
        }
        assert!(RankKey::new(1.0, 9) < RankKey::new(2.0, 0));
        assert!(RankKey::new(1.0, 1) < RankKey::new(1.0, 2));
        assert!(RankKey::new(-1.0, 5) < RankKey::new(0.0, 0));
        // The one-integer compare orders as `(primary, tiebreak)` tuples do, with the top
        // bits of either half set.
        let halves = [0, 1, 1 << 63, u64::MAX - 1, u64::MAX, 0x8000_0000_0000_0001];
        for (a, b, c, d) in (0..halves.len().pow(4)).map(|n| {
            let at = |k: u32| halves[n / halves.len().pow(k) % halves.len()];
            (at(0), at(1), at(2), at(3))
        }) {
            let (x, y) = (
                RankKey {
                    primary: a,
                    tiebreak: b,
                },
                RankKey {
                    primary: c,
                    tiebreak: d,
                },
            );
            assert_eq!(x.cmp(&y), (a, b).cmp(&(c, d)), "{x:?} vs {y:?}");
            assert_eq!(x.partial_cmp(&y), Some((a, b).cmp(&(c, d))));
        }
    }

    #[test]
    fn test_heap_orders_rekeys_and_removes() {
        let mut entries = vec![HeapEntry::default(); 64];
        let mut pos = vec![0u32; 65];
        let mut h = IndexedHeap::new(&mut entries, &mut pos);
        // Pseudo-random ranks.
        let mut x = 12345u64;
        let mut keys = vec![];
        for item in 0..64u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = RankKey::new((x >> 40) as f64, item as u64);
            keys.push(k);
            h.push(item, k).unwrap();
            if item < 63 {
                assert_eq!(h.push(item, k), Err(HeapError::AlreadyQueued));
            }
        }
        assert_eq!(h.push(64, RankKey::default()), Err(HeapError::Full));
        for item in (0..64u32).step_by(5) {
            assert_eq!(h.remove(item), Ok(Some(keys[item as usize])));
            assert!(!h.contains(item));
        }
        assert_eq!(h.remove(0), Ok(None));
        assert_eq!(h.update(0, RankKey::default()), Ok(false));
        for item in (1..64u32).step_by(7) {
            if h.contains(item) {
                let k = RankKey::new(-(item as f64), item as u64);
                keys[item as usize] = k;
                assert_eq!(h.update(item, k), Ok(true));
            }
        }
        for item in (3..64u32).step_by(11) {
            if h.contains(item) {
                let k = RankKey::new(1e18 + item as f64, item as u64);
                keys[item as usize] = k;
                assert_eq!(h.update(item, k), Ok(true));
            }
        }
        let mut expect: Vec<(RankKey, u32)> = (0..64u32)
            .filter(|i| i % 5 != 0)
            .map(|i| (keys[i as usize], i))
            .collect();
        expect.sort();
        let mut got = vec![];
        while let Some((item, key)) = h.pop().unwrap() {
            got.push((key, item));
        }
        assert_eq!(got, expect);
        assert!(h.is_empty());
        assert_eq!(h.pop(), Ok(None));
    }

    #[test]
    fn test_caller_mistakes_are_errors_and_change_nothing() {
        let mut entries = vec![HeapEntry::default(); 4];
        let mut pos = vec![0u32; 3];
        let mut h = IndexedHeap::new(&mut entries, &mut pos);
        assert_eq!(
            h.push(3, RankKey::new(1.0, 0)),
            Err(HeapError::ItemOutOfRange)
        );
        assert_eq!(
            h.push(u32::MAX, RankKey::new(1.0, 0)),
            Err(HeapError::ItemOutOfRange)
        );
        h.push(1, RankKey::new(2.0, 1)).unwrap();
        assert_eq!(
            h.push(1, RankKey::new(0.0, 1)),
            Err(HeapError::AlreadyQueued)
        );
        assert_eq!(h.key_of(1), Some(RankKey::new(2.0, 1)));
        assert_eq!(h.len(), 1);
        assert_eq!(h.remove(7), Ok(None));
        assert_eq!(h.update(7, RankKey::default()), Ok(false));
        // NaN ranks are keys like any other (after +inf), not a panic.
        h.push(0, RankKey::new(f64::NAN, 0)).unwrap();
        h.push(2, RankKey::new(f64::INFINITY, 2)).unwrap();
        assert_eq!(h.pop().unwrap().map(|(i, _)| i), Some(1));
        assert_eq!(h.pop().unwrap().map(|(i, _)| i), Some(2));
        assert!(h.pop().unwrap().unwrap().1.rank().is_nan());
        // No storage at all.
        let mut h = IndexedHeap::new(&mut [], &mut []);
        assert_eq!(h.push(0, RankKey::default()), Err(HeapError::Full));
        assert_eq!((h.peek(), h.pop()), (None, Ok(None)));
    }
}
