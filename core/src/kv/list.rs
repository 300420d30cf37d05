//! An index-linked doubly linked list threaded through caller storage (the vLLM v1 /
//! mistral.rs free-block-queue shape). `push_back`, `pop_front` and `remove` are O(1), and no node
//! is ever allocated: the links live in the elements themselves.

use crate::util::NIL;

/// Access to the `prev` / `next` links of element `i` of some storage.
pub(crate) trait Links {
    fn prev(&self, i: u32) -> u32;
    fn next(&self, i: u32) -> u32;
    fn set_prev(&mut self, i: u32, v: u32);
    fn set_next(&mut self, i: u32, v: u32);
}

/// Head, tail and length of one list. `NIL` marks "no element".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct List {
    head: u32,
    tail: u32,
    len: u32,
}

impl List {
    pub(crate) const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };

    #[inline]
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Appends `i`, which must not be in any list.
    #[inline]
    pub(crate) fn push_back<L: Links + ?Sized>(&mut self, links: &mut L, i: u32) {
        links.set_prev(i, self.tail);
        links.set_next(i, NIL);
        if self.tail == NIL {
            self.head = i;
        } else {
            links.set_next(self.tail, i);
        }
        self.tail = i;
        self.len += 1;
    }

    /// Removes and returns the oldest element.
    #[inline]
    pub(crate) fn pop_front<L: Links + ?Sized>(&mut self, links: &mut L) -> Option<u32> {
        if self.head == NIL {
            return None;
        }
        let i = self.head;
        self.remove(links, i);
        Some(i)
    }

    /// Unlinks `i`, which must be in this list.
    #[inline]
    pub(crate) fn remove<L: Links + ?Sized>(&mut self, links: &mut L, i: u32) {
        let (p, n) = (links.prev(i), links.next(i));
        if p == NIL {
            self.head = n;
        } else {
            links.set_next(p, n);
        }
        if n == NIL {
            self.tail = p;
        } else {
            links.set_prev(n, p);
        }
        links.set_prev(i, NIL);
        links.set_next(i, NIL);
        self.len -= 1;
    }

    /// Walks the list front to back (for audits and tests).
    pub(crate) fn for_each<L: Links + ?Sized>(&self, links: &L, mut f: impl FnMut(u32)) {
        let mut i = self.head;
        while i != NIL {
            f(i);
            i = links.next(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nodes([(u32, u32); 8]);
    impl Links for Nodes {
        fn prev(&self, i: u32) -> u32 {
            self.0[i as usize].0
        }
        fn next(&self, i: u32) -> u32 {
            self.0[i as usize].1
        }
        fn set_prev(&mut self, i: u32, v: u32) {
            self.0[i as usize].0 = v;
        }
        fn set_next(&mut self, i: u32, v: u32) {
            self.0[i as usize].1 = v;
        }
    }

    fn collect(list: &List, nodes: &Nodes) -> ([u32; 8], usize) {
        let mut out = [NIL; 8];
        let mut n = 0;
        list.for_each(nodes, |i| {
            out[n] = i;
            n += 1;
        });
        (out, n)
    }

    #[test]
    fn test_push_pop_remove_keep_order() {
        let mut nodes = Nodes([(NIL, NIL); 8]);
        let mut list = List::EMPTY;
        for i in [3, 1, 4, 0] {
            list.push_back(&mut nodes, i);
        }
        list.remove(&mut nodes, 4); // middle
        list.remove(&mut nodes, 0); // tail
        assert_eq!(
            collect(&list, &nodes),
            ([3, 1, NIL, NIL, NIL, NIL, NIL, NIL], 2)
        );
        assert_eq!(list.pop_front(&mut nodes), Some(3));
        list.push_back(&mut nodes, 7);
        assert_eq!(list.pop_front(&mut nodes), Some(1));
        assert_eq!(list.pop_front(&mut nodes), Some(7));
        assert_eq!(list.pop_front(&mut nodes), None);
        assert_eq!(list, List::EMPTY);
    }
}
