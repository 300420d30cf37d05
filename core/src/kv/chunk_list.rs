//! Lists of any length with no heap: fixed-size chunks taken from a caller-provided pool and
//! linked per list. Block tables (`u32` block ids) and the engine's per-request block-hash lists
//! (`u64`) are both chunk lists over their own pools.
//!
//! Every chunk of a list but the last is full, so element `i` lives in chunk `i / N`: access
//! near the tail (where a sequence grows and where blocks fill) is O(1); elsewhere it walks
//! `i / N` links.

use crate::internal::{InternalError, OrBroken, broken};
use crate::util::NIL;

/// One chunk: `N` items and the links to its neighbours in its list (or in the pool's free list).
#[derive(Clone, Copy, Debug)]
pub struct Chunk<T: Copy, const N: usize> {
    items: [T; N],
    prev: u32,
    next: u32,
}

impl<T: Copy + Default, const N: usize> Default for Chunk<T, N> {
    fn default() -> Self {
        Chunk {
            items: [T::default(); N],
            prev: NIL,
            next: NIL,
        }
    }
}

/// Head, tail and length of one chunk list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkList {
    head: u32,
    tail: u32,
    len: u32,
}

impl ChunkList {
    pub(crate) const EMPTY: ChunkList = ChunkList {
        head: NIL,
        tail: NIL,
        len: 0,
    };

    #[inline]
    pub(crate) fn len(&self) -> u32 {
        self.len
    }
}

/// The pool of chunks, with a singly linked free list.
///
/// Lists are trusted only as far as they are checked: an item index past the length, a chunk
/// index out of range or links that end early are reported as an [`InternalError`] (the pool
/// can then no longer be trusted), never as a panic; every walk is bounded by the list length.
#[derive(Debug)]
pub(crate) struct ChunkPool<'a, T: Copy, const N: usize> {
    chunks: &'a mut [Chunk<T, N>],
    free_head: u32,
    free: u32,
}

/// Chunks needed to hold `len` items, `n` to a chunk (`n` = 0 counts as 1; a chunk type with
/// no room is refused at compile time by [`ChunkPool`]).
#[inline]
pub(crate) const fn chunks_for(len: u32, n: usize) -> u32 {
    let n = if n == 0 {
        1
    } else if n > u32::MAX as usize {
        u32::MAX
    } else {
        n as u32
    };
    len.div_ceil(n)
}

/// `N` as a `u32` (chunks are small; checked at compile time).
const fn chunk_len<const N: usize>() -> u32 {
    N as u32
}

/// Where item `i` sits in its chunk: `i % N` (`N` = 0 counts as 1; a constant divisor, so
/// the check folds away).
#[inline]
fn offset_in_chunk<const N: usize>(i: u32) -> usize {
    i.checked_rem(chunk_len::<N>()).unwrap_or(0) as usize
}

impl<'a, T: Copy, const N: usize> ChunkPool<'a, T, N> {
    /// A chunk holds at least one item and its length fits a `u32`: checked at compile time
    /// where a pool is built, so `% N` and `/ N` below never divide by zero.
    const CHUNK_LEN_OK: () = assert!(N > 0 && N <= u32::MAX as usize);

    /// Takes the pool storage and threads every chunk onto the free list. At most
    /// 2^32 − 2 chunks are used (indices must stay below the `NIL` sentinel); the rest of a
    /// longer slice is ignored.
    pub(crate) fn new(chunks: &'a mut [Chunk<T, N>]) -> Self {
        let () = Self::CHUNK_LEN_OK;
        let usable = chunks.len().min(NIL as usize);
        let chunks = chunks
            .split_at_mut_checked(usable)
            .map_or(&mut [][..], |(used, _)| used);
        let count = u32::try_from(chunks.len()).unwrap_or(NIL);
        let mut head = NIL;
        for (i, c) in (0..count).zip(chunks.iter_mut()).rev() {
            c.prev = NIL;
            c.next = head;
            head = i;
        }
        ChunkPool {
            chunks,
            free_head: head,
            free: count,
        }
    }

    /// Chunks in the pool's free list.
    #[inline]
    pub(crate) fn free_chunks(&self) -> u32 {
        self.free
    }

    /// Total chunks in the pool.
    #[inline]
    pub(crate) fn capacity(&self) -> u32 {
        u32::try_from(self.chunks.len()).unwrap_or(NIL)
    }

    /// Extra chunks `list` needs to grow by `add` items (saturating at `u32::MAX`, more than
    /// any pool holds).
    #[inline]
    pub(crate) fn extra_chunks(list: &ChunkList, add: u32) -> u32 {
        let n = u64::from(chunk_len::<N>()).max(1);
        let before = u64::from(list.len).div_ceil(n);
        let after = u64::from(list.len)
            .saturating_add(u64::from(add))
            .div_ceil(n);
        u32::try_from(after.saturating_sub(before)).unwrap_or(u32::MAX)
    }

    #[inline]
    fn chunk(&self, c: u32) -> Result<&Chunk<T, N>, InternalError> {
        self.chunks
            .get(c as usize)
            .or_broken("chunk index out of range")
    }

    #[inline]
    fn chunk_mut(&mut self, c: u32) -> Result<&mut Chunk<T, N>, InternalError> {
        self.chunks
            .get_mut(c as usize)
            .or_broken("chunk index out of range")
    }

    /// Item `i`'s position in its chunk.
    #[inline]
    fn offset(i: u32) -> usize {
        offset_in_chunk::<N>(i)
    }

    /// Appends `v`; `Ok(false)` (and nothing changed) when a new chunk is needed and none is
    /// free, or the list already holds `u32::MAX` items.
    #[inline]
    pub(crate) fn push(&mut self, list: &mut ChunkList, v: T) -> Result<bool, InternalError> {
        let Some(len) = list.len.checked_add(1) else {
            return Ok(false);
        };
        let offset = Self::offset(list.len);
        if offset == 0 && !self.link_free_chunk(list)? {
            return Ok(false);
        }
        let tail = list.tail;
        *self
            .chunk_mut(tail)?
            .items
            .get_mut(offset)
            .or_broken("chunk offset out of range")? = v;
        list.len = len;
        Ok(true)
    }

    /// Appends `count` items, a chunk's share at a time: `fill` is given each run of new
    /// slots (the rest of the last chunk, then whole fresh chunks, then part of one) and must
    /// fill all of it. A new block table is 32 items, and `push` looks its chunk up for every
    /// item. `Ok(false)`, with nothing changed and `fill` never called, when the chunks they
    /// need are not free or the list would pass `u32::MAX` items. An error of `fill` ends it
    /// with the runs filled before it appended.
    #[inline]
    pub(crate) fn extend_with(
        &mut self,
        list: &mut ChunkList,
        count: u32,
        mut fill: impl FnMut(&mut [T]) -> Result<(), InternalError>,
    ) -> Result<bool, InternalError> {
        if list.len.checked_add(count).is_none() || Self::extra_chunks(list, count) > self.free {
            return Ok(false);
        }
        let mut left = count;
        while left > 0 {
            let offset = Self::offset(list.len);
            if offset == 0 && !self.link_free_chunk(list)? {
                return broken("chunks ran out after they were counted");
            }
            let tail = list.tail;
            let room = self
                .chunk_mut(tail)?
                .items
                .get_mut(offset..)
                .or_broken("chunk offset out of range")?;
            let run = room.len().min(left as usize);
            fill(room.get_mut(..run).or_broken("chunk run out of range")?)?;
            // `run` <= `left`, and both stay within the checked `len + count`.
            list.len = list.len.wrapping_add(run as u32);
            left = left.wrapping_sub(run as u32);
        }
        Ok(true)
    }

    /// Takes a chunk off the free list onto the tail of `list` (whose last chunk is full);
    /// `false`, changing nothing, when none is free.
    #[inline]
    fn link_free_chunk(&mut self, list: &mut ChunkList) -> Result<bool, InternalError> {
        let c = self.free_head;
        if c == NIL {
            return Ok(false);
        }
        let free = self
            .free
            .checked_sub(1)
            .or_broken("chunk free list longer than its count")?;
        let tail = list.tail;
        let chunk = self.chunk_mut(c)?;
        let next_free = chunk.next;
        chunk.prev = tail;
        chunk.next = NIL;
        if tail == NIL {
            list.head = c;
        } else {
            self.chunk_mut(tail)?.next = c;
        }
        self.free_head = next_free;
        self.free = free;
        list.tail = c;
        Ok(true)
    }

    /// The chunk holding item `i` (< len).
    #[inline]
    fn locate(&self, list: &ChunkList, i: u32) -> Result<u32, InternalError> {
        let n = chunk_len::<N>().max(1);
        let last_item = list
            .len
            .checked_sub(1)
            .or_broken("item of an empty chunk list")?;
        if i > last_item {
            return broken("item index past the end of a chunk list");
        }
        let k = i.checked_div(n).unwrap_or(i);
        let last = last_item.checked_div(n).unwrap_or(last_item);
        if k == last {
            Ok(list.tail)
        } else if k.checked_add(1) == Some(last) {
            Ok(self.chunk(list.tail)?.prev)
        } else {
            let mut c = list.head;
            for _ in 0..k {
                c = self.chunk(c)?.next;
            }
            Ok(c)
        }
    }

    /// Item `i`, which must be below `list.len()`.
    #[inline]
    pub(crate) fn get(&self, list: &ChunkList, i: u32) -> Result<T, InternalError> {
        let c = self.locate(list, i)?;
        self.chunk(c)?
            .items
            .get(Self::offset(i))
            .copied()
            .or_broken("chunk offset out of range")
    }

    /// Overwrites item `i`, which must be below `list.len()`.
    #[inline]
    pub(crate) fn set(&mut self, list: &ChunkList, i: u32, v: T) -> Result<(), InternalError> {
        let c = self.locate(list, i)?;
        *self
            .chunk_mut(c)?
            .items
            .get_mut(Self::offset(i))
            .or_broken("chunk offset out of range")? = v;
        Ok(())
    }

    /// The last item, if any.
    #[inline]
    pub(crate) fn last(&self, list: &ChunkList) -> Result<Option<T>, InternalError> {
        match list.len.checked_sub(1) {
            None => Ok(None),
            Some(i) => self
                .chunk(list.tail)?
                .items
                .get(Self::offset(i))
                .copied()
                .map(Some)
                .or_broken("chunk offset out of range"),
        }
    }

    /// Appends copies of every item of `src` to the empty list `dst`, chunk by chunk;
    /// `Ok(false)` (and nothing changed) when the pool has too few free chunks.
    pub(crate) fn clone_list(
        &mut self,
        src: &ChunkList,
        dst: &mut ChunkList,
    ) -> Result<bool, InternalError> {
        if dst.len != 0 {
            return broken("clone into a non-empty chunk list");
        }
        if chunks_for(src.len, N) > self.free {
            return Ok(false);
        }
        let mut c = src.head;
        let mut left = src.len;
        while left > 0 {
            let take = left.min(chunk_len::<N>());
            for k in 0..take as usize {
                let v = *self
                    .chunk(c)?
                    .items
                    .get(k)
                    .or_broken("chunk offset out of range")?;
                if !self.push(dst, v)? {
                    return broken("chunk pool ran out after its free count was checked");
                }
            }
            left = left.saturating_sub(take);
            c = self.chunk(c)?.next;
        }
        Ok(true)
    }

    /// Returns every chunk of `list` to the pool and empties it.
    pub(crate) fn clear(&mut self, list: &mut ChunkList) -> Result<(), InternalError> {
        let mut c = list.head;
        for _ in 0..chunks_for(list.len, N) {
            let free_head = self.free_head;
            let free = self
                .free
                .checked_add(1)
                .or_broken("chunk free count overflows")?;
            let chunk = self.chunk_mut(c)?;
            let next = chunk.next;
            chunk.prev = NIL;
            chunk.next = free_head;
            self.free_head = c;
            self.free = free;
            c = next;
        }
        *list = ChunkList::EMPTY;
        Ok(())
    }

    /// The items of `list` in order; a broken link ends the walk with one `Err`.
    pub(crate) fn iter<'p>(&'p self, list: &ChunkList) -> ChunkIter<'p, T, N> {
        ChunkIter {
            chunks: self.chunks,
            chunk: list.head,
            index: 0,
            len: list.len,
        }
    }

    /// Visits items `start..len` in order, stopping at the first error of `f`.
    pub(crate) fn for_each_from(
        &self,
        list: &ChunkList,
        start: u32,
        f: impl FnMut(u32, T) -> Result<(), InternalError>,
    ) -> Result<(), InternalError> {
        self.for_each_in(list, start, list.len, f)
    }

    /// Visits items `start..end` (`end` capped at `len`) in order, stopping at the first
    /// error of `f`. Costs `start / N` chunk hops to get there, then one step per item: a
    /// window late in a long list is not walked from its head item by item.
    pub(crate) fn for_each_in(
        &self,
        list: &ChunkList,
        start: u32,
        end: u32,
        mut f: impl FnMut(u32, T) -> Result<(), InternalError>,
    ) -> Result<(), InternalError> {
        let end = end.min(list.len);
        if start >= end {
            return Ok(());
        }
        let mut c = self.locate(list, start)?;
        let mut i = start;
        while i < end {
            let chunk = self.chunk(c)?;
            for item in chunk.items.iter().skip(Self::offset(i)) {
                if i >= end {
                    break;
                }
                f(i, *item)?;
                i = i.saturating_add(1);
            }
            c = chunk.next;
        }
        Ok(())
    }

    /// Visits every item from the last to the first, allowing it to be rewritten; stops at
    /// the first error of `f`.
    pub(crate) fn for_each_rev_mut(
        &mut self,
        list: &ChunkList,
        mut f: impl FnMut(&mut T) -> Result<(), InternalError>,
    ) -> Result<(), InternalError> {
        let Some(last) = list.len.checked_sub(1) else {
            return Ok(());
        };
        let mut c = list.tail;
        let mut in_chunk = Self::offset(last).saturating_add(1);
        for _ in 0..chunks_for(list.len, N) {
            let chunk = self.chunk_mut(c)?;
            let items = chunk
                .items
                .get_mut(..in_chunk)
                .or_broken("chunk offset out of range")?;
            for item in items.iter_mut().rev() {
                f(item)?;
            }
            c = chunk.prev;
            in_chunk = N;
        }
        Ok(())
    }
}

/// Iterator over a chunk list's items (cheap to clone). A broken link (a chunk index out of
/// range) yields one `Err` and ends the iteration.
#[derive(Clone, Debug)]
pub(crate) struct ChunkIter<'p, T: Copy, const N: usize> {
    chunks: &'p [Chunk<T, N>],
    chunk: u32,
    index: u32,
    len: u32,
}

impl<T: Copy, const N: usize> Iterator for ChunkIter<'_, T, N> {
    type Item = Result<T, InternalError>;

    #[inline]
    fn next(&mut self) -> Option<Result<T, InternalError>> {
        if self.index >= self.len {
            return None;
        }
        let n = chunk_len::<N>().max(1);
        let item = self.chunks.get(self.chunk as usize).and_then(|c| {
            Some((
                c.items.get(offset_in_chunk::<N>(self.index)).copied()?,
                c.next,
            ))
        });
        let Some((v, next)) = item else {
            self.index = self.len;
            return Some(broken("chunk index out of range"));
        };
        self.index = self.index.saturating_add(1);
        if self.index.is_multiple_of(n) {
            self.chunk = next;
        }
        Some(Ok(v))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    #[test]
    fn test_push_get_set_iterate_clear() {
        let mut storage = [Chunk::<u32, 3>::default(); 5];
        let mut pool = ChunkPool::new(&mut storage);
        let mut a = ChunkList::EMPTY;
        let mut b = ChunkList::EMPTY;
        for v in 0..7 {
            assert!(pool.push(&mut a, v).unwrap());
        }
        assert_eq!(pool.free_chunks(), 2);
        for v in 100..106 {
            assert!(pool.push(&mut b, v).unwrap());
        }
        assert!(
            !pool.push(&mut b, 106).unwrap(),
            "pool exhausted: push must refuse"
        );
        assert_eq!(b.len(), 6);
        for i in 0..7 {
            assert_eq!(pool.get(&a, i), Ok(i));
        }
        pool.set(&a, 1, 41).unwrap();
        pool.set(&a, 6, 46).unwrap();
        let mut seen = [0u32; 7];
        pool.for_each_from(&a, 0, |i, v| {
            seen[i as usize] = v;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [0, 41, 2, 3, 4, 5, 46]);
        let mut via_iter = [0u32; 7];
        for (k, v) in pool.iter(&a).enumerate() {
            via_iter[k] = v.unwrap();
        }
        assert_eq!(via_iter, seen);
        assert_eq!(pool.iter(&a).take(3).count(), 3);
        let mut tail = [0u32; 3];
        let mut n = 0;
        pool.for_each_from(&a, 4, |_, v| {
            tail[n] = v;
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((tail, n), ([4, 5, 46], 3));
        // Windows: inside, past the end (capped), empty.
        for (start, end, want) in [(3u32, 5u32, &[3u32, 4][..]), (5, 99, &[5, 46]), (3, 3, &[])] {
            let (mut got, mut m) = ([0u32; 4], 0);
            pool.for_each_in(&a, start, end, |i, v| {
                assert!(i >= start && i < end);
                got[m] = v;
                m += 1;
                Ok(())
            })
            .unwrap();
            assert_eq!(&got[..m], want, "window {start}..{end}");
        }
        let mut rev = [0u32; 7];
        let mut k = 0;
        pool.for_each_rev_mut(&a, |v| {
            rev[k] = *v;
            k += 1;
            *v += 1000;
            Ok(())
        })
        .unwrap();
        assert_eq!(rev, [46, 5, 4, 3, 2, 41, 0]);
        assert_eq!(pool.get(&a, 0), Ok(1000));
        assert_eq!(pool.last(&a), Ok(Some(1046)));
        pool.clear(&mut a).unwrap();
        assert_eq!(pool.free_chunks(), 3);
        assert_eq!(pool.last(&a), Ok(None));
        assert!(pool.push(&mut b, 106).unwrap());
        assert_eq!(pool.get(&b, 6), Ok(106));
        assert_eq!(ChunkPool::<u32, 3>::extra_chunks(&b, 2), 0);
        assert_eq!(ChunkPool::<u32, 3>::extra_chunks(&b, 3), 1);
        pool.clear(&mut b).unwrap();
        assert_eq!(pool.free_chunks(), 5);
        let mut e = ChunkList::EMPTY;
        for v in 10..14 {
            assert!(pool.push(&mut e, v).unwrap());
        }
        let mut c = ChunkList::EMPTY;
        assert!(pool.clone_list(&e, &mut c).unwrap());
        let cloned: [u32; 4] = core::array::from_fn(|i| pool.get(&c, i as u32).unwrap());
        assert_eq!(cloned, [10, 11, 12, 13]);
        assert_eq!(pool.free_chunks(), 1);
        let mut d = ChunkList::EMPTY;
        assert!(!pool.clone_list(&e, &mut d).unwrap(), "too few free chunks");
        assert_eq!((d, pool.free_chunks()), (ChunkList::EMPTY, 1));
    }

    /// `extend_with` appends what the same pushes would (every start offset and count across
    /// chunk boundaries, two lists sharing the pool), and refuses without calling `next`
    /// when the chunks are not free or the length would pass `u32::MAX`.
    #[test]
    fn test_extend_with_is_pushes_in_one_go() {
        for start in 0..7u32 {
            for count in 0..9u32 {
                let mut by_push = [Chunk::<u32, 3>::default(); 6];
                let mut by_extend = [Chunk::<u32, 3>::default(); 6];
                let (mut p, mut e) = (ChunkPool::new(&mut by_push), ChunkPool::new(&mut by_extend));
                let (mut lp, mut le) = (ChunkList::EMPTY, ChunkList::EMPTY);
                let (mut other_p, mut other_e) = (ChunkList::EMPTY, ChunkList::EMPTY);
                for v in 0..start {
                    assert!(p.push(&mut lp, v).unwrap() && e.push(&mut le, v).unwrap());
                    // Interleaved with another list, so the chunks are not contiguous.
                    assert!(p.push(&mut other_p, v).unwrap() && e.push(&mut other_e, v).unwrap());
                }
                let fits = ChunkPool::<u32, 3>::extra_chunks(&lp, count) <= p.free_chunks();
                let mut v = 100;
                let extended = e
                    .extend_with(&mut le, count, |run| {
                        assert!(!run.is_empty(), "an empty run");
                        for item in run {
                            v += 1;
                            *item = v;
                        }
                        Ok(())
                    })
                    .unwrap();
                assert_eq!(extended, fits, "start {start}, count {count}");
                if fits {
                    for v in 101..101 + count {
                        assert!(p.push(&mut lp, v).unwrap());
                    }
                } else {
                    assert_eq!(v, 100, "next called although it did not fit");
                }
                let (got, want): (Vec<u32>, Vec<u32>) = (
                    e.iter(&le).map(|x| x.unwrap()).collect(),
                    p.iter(&lp).map(|x| x.unwrap()).collect(),
                );
                assert_eq!(got, want, "start {start}, count {count}");
                assert_eq!(e.free_chunks(), p.free_chunks());
                let other: Vec<u32> = e.iter(&other_e).map(|x| x.unwrap()).collect();
                assert_eq!(
                    other,
                    (0..start).collect::<Vec<_>>(),
                    "the other list changed"
                );
            }
        }
        let mut storage = [Chunk::<u32, 3>::default(); 2];
        let mut pool = ChunkPool::new(&mut storage);
        let mut huge = ChunkList {
            len: u32::MAX - 1,
            ..ChunkList::EMPTY
        };
        assert!(
            !pool
                .extend_with(&mut huge, 2, |_| panic!("not called"))
                .unwrap()
        );
        // An error of `fill` ends it, the runs before it appended (chunks of 3: the first
        // run is 3 items, the second fails).
        let mut list = ChunkList::EMPTY;
        let mut runs = 0;
        let r = pool.extend_with(&mut list, 5, |run| {
            runs += 1;
            run.fill(runs);
            if runs == 2 {
                Err(InternalError::new("test"))
            } else {
                Ok(())
            }
        });
        assert!(r.is_err());
        assert_eq!(list.len(), 3);
    }

    #[test]
    fn test_broken_lists_are_errors_not_panics() {
        let mut storage = [Chunk::<u32, 3>::default(); 8];
        let mut pool = ChunkPool::new(&mut storage);
        let mut a = ChunkList::EMPTY;
        for v in 0..5 {
            assert!(pool.push(&mut a, v).unwrap());
        }
        assert!(pool.get(&a, 5).is_err(), "index past the end");
        assert!(pool.set(&a, 9, 0).is_err());
        assert!(pool.get(&ChunkList::EMPTY, 0).is_err());
        // A list whose length says more than its links hold.
        let long = ChunkList { len: 15, ..a };
        assert!(pool.get(&long, 6).is_err());
        assert!(pool.for_each_from(&long, 0, |_, _| Ok(())).is_err());
        assert!(pool.for_each_rev_mut(&long, |_| Ok(())).is_err());
        assert!(pool.iter(&long).any(|r| r.is_err()));
        assert_eq!(pool.iter(&long).filter(|r| r.is_err()).count(), 1);
        let mut dst = ChunkList::EMPTY;
        assert!(pool.clone_list(&long, &mut dst).is_err());
        let mut dst = ChunkList::EMPTY;
        assert!(pool.push(&mut dst, 1).unwrap());
        assert!(
            pool.clone_list(&a, &mut dst).is_err(),
            "clone into a non-empty list"
        );
        // Lengths near u32::MAX saturate instead of wrapping.
        let huge = ChunkList {
            len: u32::MAX,
            ..ChunkList::EMPTY
        };
        assert_eq!(
            ChunkPool::<u32, 3>::extra_chunks(&huge, u32::MAX),
            ((2 * u32::MAX as u64).div_ceil(3) - (u32::MAX as u64).div_ceil(3)) as u32
        );
        assert!(!pool.push(&mut { huge }, 0).unwrap(), "a full list refuses");
        assert_eq!(ChunkPool::<u32, 1>::extra_chunks(&huge, u32::MAX), u32::MAX);
    }
}
