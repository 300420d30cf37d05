//! A vector of fixed capacity over borrowed storage: the plan's lists and the finished list.
//!
//! `heapless::Vec` keeps its storage inline with a compile-time capacity; the plan's lists are
//! sized by the configuration at run time and live in caller storage, so they are slices with
//! a fill level. Every write is checked: a full list is an error value, never a panic and never
//! a silently dropped record.

use crate::internal::{InternalError, broken};

/// Up to `buf.len()` items of `T` in caller storage.
#[derive(Debug)]
pub(crate) struct BoundedVec<'a, T> {
    buf: &'a mut [T],
    len: usize,
}

impl<'a, T: Copy> BoundedVec<'a, T> {
    /// An empty vector over `buf` (its contents do not matter).
    pub(crate) fn new(buf: &'a mut [T]) -> Self {
        BoundedVec { buf, len: 0 }
    }

    /// Items held.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Items that still fit.
    #[inline]
    pub(crate) fn room(&self) -> usize {
        self.buf.len().saturating_sub(self.len)
    }

    /// Empties it.
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// The items held.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[T] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Appends `v`; `what` names the list in the error when it is full (the engine sizes each
    /// list for the worst case, so a full list is a broken invariant).
    #[inline]
    pub(crate) fn push(&mut self, v: T, what: &'static str) -> Result<(), InternalError> {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = v;
                // `len` < `buf.len()` ≤ `isize::MAX` here, so this cannot wrap.
                self.len = self.len.wrapping_add(1);
                Ok(())
            }
            None => broken(what),
        }
    }

    /// The free part of the storage, for a callee that writes items in place (e.g. block
    /// pairs); follow with [`BoundedVec::commit`] of how many it wrote.
    #[inline]
    pub(crate) fn spare_mut(&mut self) -> &mut [T] {
        self.buf.get_mut(self.len..).unwrap_or(&mut [])
    }

    /// Counts `n` items written into [`BoundedVec::spare_mut`] as held.
    #[inline]
    pub(crate) fn commit(&mut self, n: usize, what: &'static str) -> Result<(), InternalError> {
        if n > self.room() {
            return broken(what);
        }
        self.len = self.len.saturating_add(n);
        Ok(())
    }

    /// Removes the items in `start..start + n`, keeping the order of the rest.
    pub(crate) fn remove_range(&mut self, start: usize, n: usize) -> Result<(), InternalError> {
        let end = start.checked_add(n).filter(|&e| e <= self.len);
        let Some(end) = end else {
            return broken("removed range outside a plan list");
        };
        self.buf.copy_within(end..self.len, start);
        self.len = self.len.saturating_sub(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_until_full_then_error_and_remove_range_keeps_order() {
        let mut storage = [0u32; 4];
        let mut v = BoundedVec::new(&mut storage);
        for x in 1..=4 {
            v.push(x, "test list").unwrap();
        }
        assert_eq!(v.push(5, "test list"), broken("test list"));
        assert_eq!(v.as_slice(), &[1, 2, 3, 4]);
        v.remove_range(1, 2).unwrap();
        assert_eq!(v.as_slice(), &[1, 4]);
        assert!(v.remove_range(1, 2).is_err());
        assert_eq!(v.room(), 2);
        v.spare_mut()[0] = 9;
        v.commit(1, "test list").unwrap();
        assert_eq!(v.as_slice(), &[1, 4, 9]);
        assert!(v.commit(2, "test list").is_err());
        v.clear();
        assert_eq!(v.len(), 0);
    }
}
