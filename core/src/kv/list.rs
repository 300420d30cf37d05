//! Index-linked lists threaded through caller storage: no node is ever allocated, the links
//! live in the elements themselves.
//!
//! - [`List`], doubly linked (the vLLM v1 / mistral.rs free-block-queue shape): `push_back`,
//!   `pop_front` and `remove` are O(1). For free lists whose order matters or whose elements
//!   leave from the middle (the LRU of cached blocks).
//! - [`Stack`], singly linked through `next`: `push` and `pop` at the head, O(1) and about half
//!   the loads and stores of a `List`'s. For free lists whose order does not matter (blocks
//!   that hold nothing findable): every admission takes a table's worth of blocks from one and
//!   every finish gives them back.

use crate::internal::{InternalError, OrBroken, broken};
use crate::util::NIL;

/// Access to the `prev` / `next` links of element `i` of some storage. Each accessor fails with
/// an [`InternalError`] when `i` is out of range.
pub(crate) trait Links {
    fn prev(&self, i: u32) -> Result<u32, InternalError>;
    fn next(&self, i: u32) -> Result<u32, InternalError>;
    fn set_prev(&mut self, i: u32, v: u32) -> Result<(), InternalError>;
    fn set_next(&mut self, i: u32, v: u32) -> Result<(), InternalError>;
}

/// Head, tail and length of one list. `NIL` marks "no element".
///
/// Every operation checks what it touches: an index out of range, a length that would wrap or
/// links that run past the length are reported as an [`InternalError`] (the list can then no
/// longer be trusted), never as a panic or an endless walk.
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

    /// A list over elements the caller has already linked: `head` to `tail` by `next`, back by
    /// `prev`, `len` of them (`NIL`, `NIL`, 0 for none).
    #[inline]
    pub(crate) const fn from_linked(head: u32, tail: u32, len: u32) -> List {
        List { head, tail, len }
    }

    #[inline]
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Appends `i`, which must not be in any list.
    #[inline]
    pub(crate) fn push_back<L: Links + ?Sized>(
        &mut self,
        links: &mut L,
        i: u32,
    ) -> Result<(), InternalError> {
        let len = self.len.checked_add(1).or_broken("list length overflows")?;
        links.set_prev(i, self.tail)?;
        links.set_next(i, NIL)?;
        if self.tail == NIL {
            self.head = i;
        } else {
            links.set_next(self.tail, i)?;
        }
        self.tail = i;
        self.len = len;
        Ok(())
    }

    /// Removes and returns the oldest element.
    #[inline]
    pub(crate) fn pop_front<L: Links + ?Sized>(
        &mut self,
        links: &mut L,
    ) -> Result<Option<u32>, InternalError> {
        if self.head == NIL {
            return Ok(None);
        }
        let i = self.head;
        self.remove(links, i)?;
        Ok(Some(i))
    }

    /// Unlinks `i`, which must be in this list.
    #[inline]
    pub(crate) fn remove<L: Links + ?Sized>(
        &mut self,
        links: &mut L,
        i: u32,
    ) -> Result<(), InternalError> {
        let len = self
            .len
            .checked_sub(1)
            .or_broken("remove from an empty list")?;
        let (p, n) = (links.prev(i)?, links.next(i)?);
        if p == NIL {
            if self.head != i {
                return broken("removed element is not the head it claims to be");
            }
            self.head = n;
        } else {
            links.set_next(p, n)?;
        }
        if n == NIL {
            if self.tail != i {
                return broken("removed element is not the tail it claims to be");
            }
            self.tail = p;
        } else {
            links.set_prev(n, p)?;
        }
        links.set_prev(i, NIL)?;
        links.set_next(i, NIL)?;
        self.len = len;
        Ok(())
    }

    /// Walks the list front to back (for audits and tests), stopping at the first error of `f`.
    /// Links that run past the length are an error, so a cycle cannot loop forever.
    pub(crate) fn for_each<L: Links + ?Sized>(
        &self,
        links: &L,
        mut f: impl FnMut(u32) -> Result<(), InternalError>,
    ) -> Result<(), InternalError> {
        let mut i = self.head;
        let mut left = self.len;
        while i != NIL {
            left = left
                .checked_sub(1)
                .or_broken("list links run past its length")?;
            f(i)?;
            i = links.next(i)?;
        }
        Ok(())
    }
}

/// Head and length of a last-in, first-out list linked through `next` alone (`prev` is left
/// as it was: a `Stack` never reads it). `NIL` marks "no element".
///
/// Checked like [`List`]: an index out of range, a length that would wrap or links that run
/// past the length are an [`InternalError`], never a panic or an endless walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stack {
    head: u32,
    len: u32,
}

impl Stack {
    /// A stack over elements the caller has already linked: `head` to the last by `next`,
    /// `len` of them (`NIL`, 0 for none). Pops come in link order.
    #[inline]
    pub(crate) const fn from_linked(head: u32, len: u32) -> Stack {
        Stack { head, len }
    }

    #[inline]
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Removes and returns the element on top.
    #[inline(always)]
    pub(crate) fn pop<L: Links + ?Sized>(
        &mut self,
        links: &L,
    ) -> Result<Option<u32>, InternalError> {
        let i = self.head;
        if i == NIL {
            return Ok(None);
        }
        let len = self
            .len
            .checked_sub(1)
            .or_broken("stack links run past its length")?;
        self.head = links.next(i)?;
        self.len = len;
        Ok(Some(i))
    }

    /// Puts `i`, which must not be in any list, on top. The caller holds `i`'s element:
    /// `next` is its `next` field (one lookup of the element, in the loop that frees a
    /// table, instead of a second through [`Links`]).
    #[inline(always)]
    pub(crate) fn push_onto(&mut self, i: u32, next: &mut u32) -> Result<(), InternalError> {
        let len = self
            .len
            .checked_add(1)
            .or_broken("stack length overflows")?;
        *next = self.head;
        self.head = i;
        self.len = len;
        Ok(())
    }

    /// Pops into `out`, in pop order, as many elements as it holds or `out` has room for,
    /// and returns how many. `take` is given each popped element of `nodes` (which the
    /// stack is linked through) and returns its `next`; it is where the caller marks the
    /// element taken, so each element is looked up once.
    ///
    /// Why it exists: an admission takes a whole block table at once (32 blocks for a
    /// 512-token prompt), and popping one at a time stored the head and length back and
    /// looked each block up twice per block. A link out of range is an error; the stack then
    /// holds what is below the elements popped before it.
    #[inline(always)]
    pub(crate) fn pop_into<N>(
        &mut self,
        nodes: &mut [N],
        out: &mut [u32],
        mut take: impl FnMut(&mut N) -> u32,
    ) -> Result<usize, InternalError> {
        let n = out.len().min(self.len as usize);
        let mut head = self.head;
        for (popped, slot) in out.iter_mut().take(n).enumerate() {
            let Some(node) = nodes.get_mut(head as usize) else {
                self.head = head;
                // `popped` < n <= len.
                self.len = self.len.wrapping_sub(popped as u32);
                return broken("stack links run past its length");
            };
            *slot = head;
            head = take(node);
        }
        self.head = head;
        // n <= len.
        self.len = self.len.wrapping_sub(n as u32);
        Ok(n)
    }

    /// Walks the stack top to bottom (for audits and tests), stopping at the first error of
    /// `f`. Links that run past the length are an error, so a cycle cannot loop forever.
    pub(crate) fn for_each<L: Links + ?Sized>(
        &self,
        links: &L,
        mut f: impl FnMut(u32) -> Result<(), InternalError>,
    ) -> Result<(), InternalError> {
        let mut i = self.head;
        let mut left = self.len;
        while i != NIL {
            left = left
                .checked_sub(1)
                .or_broken("stack links run past its length")?;
            f(i)?;
            i = links.next(i)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nodes([(u32, u32); 8]);
    impl Links for Nodes {
        fn prev(&self, i: u32) -> Result<u32, InternalError> {
            self.0.get(i as usize).map(|n| n.0).or_broken("test node")
        }
        fn next(&self, i: u32) -> Result<u32, InternalError> {
            self.0.get(i as usize).map(|n| n.1).or_broken("test node")
        }
        fn set_prev(&mut self, i: u32, v: u32) -> Result<(), InternalError> {
            self.0.get_mut(i as usize).or_broken("test node")?.0 = v;
            Ok(())
        }
        fn set_next(&mut self, i: u32, v: u32) -> Result<(), InternalError> {
            self.0.get_mut(i as usize).or_broken("test node")?.1 = v;
            Ok(())
        }
    }

    fn collect(list: &List, nodes: &Nodes) -> ([u32; 8], usize) {
        let mut out = [NIL; 8];
        let mut n = 0;
        list.for_each(nodes, |i| {
            out[n] = i;
            n += 1;
            Ok(())
        })
        .unwrap();
        (out, n)
    }

    #[test]
    fn test_push_pop_remove_keep_order() {
        let mut nodes = Nodes([(NIL, NIL); 8]);
        let mut list = List::EMPTY;
        for i in [3, 1, 4, 0] {
            list.push_back(&mut nodes, i).unwrap();
        }
        list.remove(&mut nodes, 4).unwrap(); // middle
        list.remove(&mut nodes, 0).unwrap(); // tail
        assert_eq!(
            collect(&list, &nodes),
            ([3, 1, NIL, NIL, NIL, NIL, NIL, NIL], 2)
        );
        assert_eq!(list.pop_front(&mut nodes), Ok(Some(3)));
        list.push_back(&mut nodes, 7).unwrap();
        assert_eq!(list.pop_front(&mut nodes), Ok(Some(1)));
        assert_eq!(list.pop_front(&mut nodes), Ok(Some(7)));
        assert_eq!(list.pop_front(&mut nodes), Ok(None));
        assert_eq!(list, List::EMPTY);
    }

    #[test]
    fn test_broken_links_are_errors_not_panics() {
        let mut nodes = Nodes([(NIL, NIL); 8]);
        let mut list = List::EMPTY;
        assert!(list.push_back(&mut nodes, 8).is_err(), "index out of range");
        assert!(
            list.remove(&mut nodes, 0).is_err(),
            "remove from an empty list"
        );
        list.push_back(&mut nodes, 2).unwrap();
        list.push_back(&mut nodes, 5).unwrap();
        // A cycle: 5 → 2 → 5 → ...
        nodes.0[5].1 = 2;
        assert!(list.for_each(&nodes, |_| Ok(())).is_err());
        // A link out of range.
        nodes.0[2].1 = 100;
        assert!(list.for_each(&nodes, |_| Ok(())).is_err());
        // An element claiming to be the head that is not.
        let mut other = List::EMPTY;
        other.push_back(&mut nodes, 6).unwrap();
        nodes.0[6] = (NIL, NIL);
        assert!(list.remove(&mut nodes, 6).is_err());
    }

    fn collect_stack(stack: &Stack, nodes: &Nodes) -> ([u32; 8], usize) {
        let mut out = [NIL; 8];
        let mut n = 0;
        stack
            .for_each(nodes, |i| {
                out[n] = i;
                n += 1;
                Ok(())
            })
            .unwrap();
        (out, n)
    }

    #[test]
    fn test_stack_pops_last_pushed_first_and_starts_in_link_order() {
        // 2 -> 5 -> 1, linked by the caller.
        let mut nodes = Nodes([(NIL, NIL); 8]);
        nodes.0[2].1 = 5;
        nodes.0[5].1 = 1;
        let mut stack = Stack::from_linked(2, 3);
        assert_eq!(
            collect_stack(&stack, &nodes),
            ([2, 5, 1, NIL, NIL, NIL, NIL, NIL], 3)
        );
        assert_eq!(stack.pop(&nodes), Ok(Some(2)));
        stack.push_onto(7, &mut nodes.0[7].1).unwrap();
        stack.push_onto(0, &mut nodes.0[0].1).unwrap();
        assert_eq!(
            collect_stack(&stack, &nodes),
            ([0, 7, 5, 1, NIL, NIL, NIL, NIL], 4)
        );
        for want in [0, 7, 5, 1] {
            assert_eq!(stack.pop(&nodes), Ok(Some(want)));
        }
        assert_eq!(stack.pop(&nodes), Ok(None));
        assert_eq!(stack, Stack::from_linked(NIL, 0));
    }

    #[test]
    fn test_broken_stacks_are_errors_not_panics() {
        let mut nodes = Nodes([(NIL, NIL); 8]);
        let mut full = Stack::from_linked(3, u32::MAX);
        assert!(
            full.push_onto(1, &mut nodes.0[1].1).is_err(),
            "length overflows"
        );
        assert_eq!(
            full,
            Stack::from_linked(3, u32::MAX),
            "a refused push changes nothing"
        );
        assert_eq!(nodes.0[1].1, NIL, "a refused push links nothing");
        // A head beyond the length: the pop is refused, not wrapped.
        let mut short = Stack::from_linked(3, 0);
        assert!(short.pop(&nodes).is_err());
        // A head out of range.
        let mut wild = Stack::from_linked(100, 1);
        assert!(wild.pop(&nodes).is_err());
        // A cycle: 4 -> 6 -> 4 -> ...
        nodes.0[4].1 = 6;
        nodes.0[6].1 = 4;
        assert!(
            Stack::from_linked(4, 5)
                .for_each(&nodes, |_| Ok(()))
                .is_err()
        );
    }

    /// `pop_into` pops what the same `pop`s would, in that order, stops at the stack's
    /// length, calls `take` once per popped element, and on a link out of range keeps the
    /// stack at what lies below the elements popped before it.
    #[test]
    fn test_stack_pop_into_is_pops_in_one_go() {
        extern crate std;
        use std::{vec, vec::Vec};
        for len in 0..6u32 {
            for room in 0..8usize {
                // 4 -> 2 -> 7 -> 0 -> 5 -> 3, the first `len` of them.
                let order = [4u32, 2, 7, 0, 5, 3];
                let mut nodes = Nodes([(NIL, NIL); 8]);
                for w in order.windows(2).take(len.saturating_sub(1) as usize) {
                    nodes.0[w[0] as usize].1 = w[1];
                }
                let head = if len == 0 { NIL } else { order[0] };
                let (mut by_pop, mut by_into) =
                    (Stack::from_linked(head, len), Stack::from_linked(head, len));
                let want: Vec<u32> = (0..room)
                    .map_while(|_| by_pop.pop(&nodes).unwrap())
                    .collect();
                let mut out = vec![NIL; room];
                let mut taken = Vec::new();
                let n = by_into
                    .pop_into(&mut nodes.0, &mut out, |node| {
                        taken.push(node.1);
                        node.1
                    })
                    .unwrap();
                assert_eq!(&out[..n], &want[..], "len {len}, room {room}");
                assert!(
                    out[n..].iter().all(|&b| b == NIL),
                    "wrote past what it popped"
                );
                assert_eq!(taken.len(), n, "take once per pop");
                assert_eq!(by_into, by_pop, "len {len}, room {room}");
            }
        }
        // 1 -> 6 -> 100 (out of range): two popped, then the error, the stack at 100.
        let mut nodes = Nodes([(NIL, NIL); 8]);
        nodes.0[1].1 = 6;
        nodes.0[6].1 = 100;
        let mut stack = Stack::from_linked(1, 4);
        let mut out = [NIL; 4];
        assert!(
            stack
                .pop_into(&mut nodes.0, &mut out, |node| node.1)
                .is_err()
        );
        assert_eq!(stack, Stack::from_linked(100, 2));
        assert_eq!(out, [1, 6, NIL, NIL]);
    }
}
