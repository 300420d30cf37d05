//! Lists of any length with no heap: fixed-size chunks taken from a caller-provided pool and
//! linked per list. Block tables (`u32` block ids) and the engine's per-request block-hash lists
//! (`u64`) are both chunk lists over their own pools.
//!
//! Every chunk of a list but the last is full, so element `i` lives in chunk `i / N`: access
//! near the tail (where a sequence grows and where blocks fill) is O(1); elsewhere it walks
//! `i / N` links.

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
#[derive(Debug)]
pub(crate) struct ChunkPool<'a, T: Copy, const N: usize> {
    chunks: &'a mut [Chunk<T, N>],
    free_head: u32,
    free: u32,
}

/// Chunks needed to hold `len` items.
#[inline]
pub(crate) const fn chunks_for(len: u32, n: usize) -> u32 {
    len.div_ceil(n as u32)
}

impl<'a, T: Copy, const N: usize> ChunkPool<'a, T, N> {
    /// Takes the pool storage and threads every chunk onto the free list.
    pub(crate) fn new(chunks: &'a mut [Chunk<T, N>]) -> Self {
        let count = chunks.len() as u32;
        for (i, c) in chunks.iter_mut().enumerate() {
            c.prev = NIL;
            c.next = if i as u32 + 1 < count {
                i as u32 + 1
            } else {
                NIL
            };
        }
        ChunkPool {
            chunks,
            free_head: if count > 0 { 0 } else { NIL },
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
        self.chunks.len() as u32
    }

    /// Extra chunks `list` needs to grow by `add` items.
    #[inline]
    pub(crate) fn extra_chunks(list: &ChunkList, add: u32) -> u32 {
        chunks_for(list.len + add, N) - chunks_for(list.len, N)
    }

    /// Appends `v`; `false` (and nothing changed) when a new chunk is needed and none is free.
    #[inline]
    pub(crate) fn push(&mut self, list: &mut ChunkList, v: T) -> bool {
        let offset = list.len as usize % N;
        if offset == 0 {
            let c = self.free_head;
            if c == NIL {
                return false;
            }
            self.free_head = self.chunks[c as usize].next;
            self.free -= 1;
            let chunk = &mut self.chunks[c as usize];
            chunk.prev = list.tail;
            chunk.next = NIL;
            if list.tail == NIL {
                list.head = c;
            } else {
                self.chunks[list.tail as usize].next = c;
            }
            list.tail = c;
        }
        self.chunks[list.tail as usize].items[offset] = v;
        list.len += 1;
        true
    }

    /// The chunk holding item `i` (< len).
    #[inline]
    fn locate(&self, list: &ChunkList, i: u32) -> u32 {
        let k = i as usize / N;
        let last = (list.len as usize - 1) / N;
        if k == last {
            list.tail
        } else if k + 1 == last {
            self.chunks[list.tail as usize].prev
        } else {
            let mut c = list.head;
            for _ in 0..k {
                c = self.chunks[c as usize].next;
            }
            c
        }
    }

    /// Item `i`, which must be below `list.len()`.
    #[inline]
    pub(crate) fn get(&self, list: &ChunkList, i: u32) -> T {
        let c = self.locate(list, i);
        self.chunks[c as usize].items[i as usize % N]
    }

    /// Overwrites item `i`, which must be below `list.len()`.
    #[inline]
    pub(crate) fn set(&mut self, list: &ChunkList, i: u32, v: T) {
        let c = self.locate(list, i);
        self.chunks[c as usize].items[i as usize % N] = v;
    }

    /// The last item, if any.
    #[inline]
    pub(crate) fn last(&self, list: &ChunkList) -> Option<T> {
        if list.len == 0 {
            None
        } else {
            Some(self.chunks[list.tail as usize].items[(list.len as usize - 1) % N])
        }
    }

    /// Appends copies of every item of `src` to the empty list `dst`, chunk by chunk;
    /// `false` (and nothing changed) when the pool has too few free chunks.
    pub(crate) fn clone_list(&mut self, src: &ChunkList, dst: &mut ChunkList) -> bool {
        debug_assert_eq!(dst.len, 0);
        if chunks_for(src.len, N) > self.free {
            return false;
        }
        let mut c = src.head;
        let mut left = src.len as usize;
        while c != NIL {
            let take = left.min(N);
            for k in 0..take {
                let v = self.chunks[c as usize].items[k];
                let pushed = self.push(dst, v);
                debug_assert!(pushed);
            }
            left -= take;
            c = self.chunks[c as usize].next;
        }
        true
    }

    /// Returns every chunk of `list` to the pool and empties it.
    pub(crate) fn clear(&mut self, list: &mut ChunkList) {
        let mut c = list.head;
        while c != NIL {
            let next = self.chunks[c as usize].next;
            self.chunks[c as usize].prev = NIL;
            self.chunks[c as usize].next = self.free_head;
            self.free_head = c;
            self.free += 1;
            c = next;
        }
        *list = ChunkList::EMPTY;
    }

    /// The items of `list` in order.
    pub(crate) fn iter<'p>(&'p self, list: &ChunkList) -> ChunkIter<'p, T, N> {
        ChunkIter {
            chunks: self.chunks,
            chunk: list.head,
            index: 0,
            len: list.len,
        }
    }

    /// Visits items `start..len` in order.
    pub(crate) fn for_each_from(&self, list: &ChunkList, start: u32, mut f: impl FnMut(u32, T)) {
        if start >= list.len {
            return;
        }
        let mut c = self.locate(list, start);
        let mut i = start;
        while i < list.len {
            let chunk = &self.chunks[c as usize];
            let end = ((i as usize / N + 1) * N).min(list.len as usize) as u32;
            while i < end {
                f(i, chunk.items[i as usize % N]);
                i += 1;
            }
            c = chunk.next;
        }
    }

    /// Visits every item from the last to the first, allowing it to be rewritten.
    pub(crate) fn for_each_rev_mut(&mut self, list: &ChunkList, mut f: impl FnMut(&mut T)) {
        if list.len == 0 {
            return;
        }
        let mut c = list.tail;
        let mut in_chunk = (list.len as usize - 1) % N + 1;
        while c != NIL {
            let chunk = &mut self.chunks[c as usize];
            for item in chunk.items[..in_chunk].iter_mut().rev() {
                f(item);
            }
            c = chunk.prev;
            in_chunk = N;
        }
    }
}

/// Iterator over a chunk list's items (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct ChunkIter<'p, T: Copy, const N: usize> {
    chunks: &'p [Chunk<T, N>],
    chunk: u32,
    index: u32,
    len: u32,
}

impl<T: Copy, const N: usize> Iterator for ChunkIter<'_, T, N> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.index >= self.len {
            return None;
        }
        let c = &self.chunks[self.chunk as usize];
        let v = c.items[self.index as usize % N];
        self.index += 1;
        if (self.index as usize).is_multiple_of(N) {
            self.chunk = c.next;
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_push_get_set_iterate_clear() {
        let mut storage = [Chunk::<u32, 3>::default(); 5];
        let mut pool = ChunkPool::new(&mut storage);
        let mut a = ChunkList::EMPTY;
        let mut b = ChunkList::EMPTY;
        for v in 0..7 {
            assert!(pool.push(&mut a, v));
        }
        assert_eq!(pool.free_chunks(), 2);
        for v in 100..106 {
            assert!(pool.push(&mut b, v));
        }
        assert!(!pool.push(&mut b, 106), "pool exhausted: push must refuse");
        assert_eq!(b.len(), 6);
        for i in 0..7 {
            assert_eq!(pool.get(&a, i), i);
        }
        pool.set(&a, 1, 41);
        pool.set(&a, 6, 46);
        let mut seen = [0u32; 7];
        pool.for_each_from(&a, 0, |i, v| seen[i as usize] = v);
        assert_eq!(seen, [0, 41, 2, 3, 4, 5, 46]);
        let mut via_iter = [0u32; 7];
        for (k, v) in pool.iter(&a).enumerate() {
            via_iter[k] = v;
        }
        assert_eq!(via_iter, seen);
        assert_eq!(pool.iter(&a).take(3).count(), 3);
        let mut tail = [0u32; 3];
        let mut n = 0;
        pool.for_each_from(&a, 4, |_, v| {
            tail[n] = v;
            n += 1;
        });
        assert_eq!((tail, n), ([4, 5, 46], 3));
        let mut rev = [0u32; 7];
        let mut k = 0;
        pool.for_each_rev_mut(&a, |v| {
            rev[k] = *v;
            k += 1;
            *v += 1000;
        });
        assert_eq!(rev, [46, 5, 4, 3, 2, 41, 0]);
        assert_eq!(pool.get(&a, 0), 1000);
        assert_eq!(pool.last(&a), Some(1046));
        pool.clear(&mut a);
        assert_eq!(pool.free_chunks(), 3);
        assert_eq!(pool.last(&a), None);
        assert!(pool.push(&mut b, 106));
        assert_eq!(pool.get(&b, 6), 106);
        assert_eq!(ChunkPool::<u32, 3>::extra_chunks(&b, 2), 0);
        assert_eq!(ChunkPool::<u32, 3>::extra_chunks(&b, 3), 1);
    }
}
