//! The waiting queue: one indexed heap keyed by rank, or, under fair share, a heap of tenants
//! keyed by their virtual token counters over one pairing heap per tenant keyed by rank.
//!
//! A rank that depends on shared state (the tokens a whole tenant has received) would re-key
//! every waiting request of a tenant whenever any of them is served. Two levels avoid that:
//! serving a tenant re-keys one tenant-heap entry. Pairing heaps give each tenant its own
//! priority queue inside one shared node array (links live in the nodes), with O(1) insert and
//! O(log n) amortised pop and remove.

use crate::internal::{InternalError, OrBroken};
use crate::queue::{HeapEntry, IndexedHeap, RankKey};
use crate::util::NIL;

/// A request's node in its tenant's pairing heap. Opaque; create with `PairNode::default()`.
#[derive(Clone, Copy, Debug)]
pub struct PairNode {
    key: RankKey,
    child: u32,
    sibling: u32,
    prev: u32,
}

impl Default for PairNode {
    fn default() -> Self {
        PairNode {
            key: RankKey::default(),
            child: NIL,
            sibling: NIL,
            prev: NIL,
        }
    }
}

/// A tenant's fair-share state. Opaque; create with `TenantSlot::default()`.
#[derive(Clone, Copy, Debug)]
pub struct TenantSlot {
    pub(crate) counter: f64,
    pub(crate) root: u32,
    pub(crate) live: u32,
}

impl Default for TenantSlot {
    fn default() -> Self {
        TenantSlot {
            counter: 0.0,
            root: NIL,
            live: 0,
        }
    }
}

/// A heap operation the queue's own bookkeeping says cannot fail.
fn heap_broken(_: crate::queue::HeapError) -> InternalError {
    InternalError::new("waiting-queue heap refused an operation")
}

fn node(nodes: &[PairNode], i: u32) -> Result<&PairNode, InternalError> {
    nodes
        .get(i as usize)
        .or_broken("pairing-heap node out of range")
}

fn node_mut(nodes: &mut [PairNode], i: u32) -> Result<&mut PairNode, InternalError> {
    nodes
        .get_mut(i as usize)
        .or_broken("pairing-heap node out of range")
}

/// Links `b` under `a` or `a` under `b` (both roots with no siblings); returns the new root.
fn link(nodes: &mut [PairNode], a: u32, b: u32) -> Result<u32, InternalError> {
    let (a, b) = if node(nodes, b)?.key < node(nodes, a)?.key {
        (b, a)
    } else {
        (a, b)
    };
    let c = node(nodes, a)?.child;
    let nb = node_mut(nodes, b)?;
    nb.sibling = c;
    nb.prev = a;
    if c != NIL {
        node_mut(nodes, c)?.prev = b;
    }
    node_mut(nodes, a)?.child = b;
    Ok(a)
}

/// Detaches root `x` of a sibling list from its siblings and parent; returns its old sibling.
fn detach(nodes: &mut [PairNode], x: u32) -> Result<u32, InternalError> {
    let n = node_mut(nodes, x)?;
    let next = core::mem::replace(&mut n.sibling, NIL);
    n.prev = NIL;
    Ok(next)
}

/// Two-pass pairing of the sibling list starting at `first`; returns the new root.
fn combine(nodes: &mut [PairNode], first: u32) -> Result<u32, InternalError> {
    if first == NIL {
        return Ok(NIL);
    }
    // Pass 1: link pairs left to right, collecting the results in a reversed list.
    let mut acc = NIL;
    let mut cur = first;
    while cur != NIL {
        let a = cur;
        let b = detach(nodes, a)?;
        let (r, next) = if b == NIL {
            (a, NIL)
        } else {
            let next = detach(nodes, b)?;
            (link(nodes, a, b)?, next)
        };
        node_mut(nodes, r)?.sibling = acc;
        acc = r;
        cur = next;
    }
    // Pass 2: meld right to left.
    let mut root = acc;
    let mut rest = detach(nodes, root)?;
    while rest != NIL {
        let next = detach(nodes, rest)?;
        root = link(nodes, root, rest)?;
        rest = next;
    }
    node_mut(nodes, root)?.prev = NIL;
    Ok(root)
}

fn pairing_remove(nodes: &mut [PairNode], root: u32, x: u32) -> Result<u32, InternalError> {
    if x == root {
        let c = core::mem::replace(&mut node_mut(nodes, x)?.child, NIL);
        return combine(nodes, c);
    }
    let (p, s) = {
        let n = node(nodes, x)?;
        (n.prev, n.sibling)
    };
    let parent = node_mut(nodes, p)?;
    if parent.child == x {
        parent.child = s;
    } else {
        parent.sibling = s;
    }
    if s != NIL {
        node_mut(nodes, s)?.prev = p;
    }
    let n = node_mut(nodes, x)?;
    n.prev = NIL;
    n.sibling = NIL;
    let c = core::mem::replace(&mut n.child, NIL);
    let sub = combine(nodes, c)?;
    if sub == NIL {
        Ok(root)
    } else {
        link(nodes, root, sub)
    }
}

/// The waiting queue.
#[derive(Debug)]
pub(crate) enum WaitQueue<'a> {
    /// One heap of requests keyed by rank.
    Single(IndexedHeap<'a>),
    /// Tenants keyed by (counter, best request's arrival) over per-tenant pairing heaps.
    Fair {
        tenant_heap: IndexedHeap<'a>,
        nodes: &'a mut [PairNode],
        len: usize,
    },
}

impl<'a> WaitQueue<'a> {
    pub(crate) fn single(entries: &'a mut [HeapEntry], positions: &'a mut [u32]) -> Self {
        WaitQueue::Single(IndexedHeap::new(entries, positions))
    }

    pub(crate) fn fair(
        entries: &'a mut [HeapEntry],
        positions: &'a mut [u32],
        nodes: &'a mut [PairNode],
    ) -> Self {
        nodes.fill(PairNode::default());
        WaitQueue::Fair {
            tenant_heap: IndexedHeap::new(entries, positions),
            nodes,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            WaitQueue::Single(h) => h.len(),
            WaitQueue::Fair { len, .. } => *len,
        }
    }

    fn tenant(tenants: &[TenantSlot], t: u32) -> Result<&TenantSlot, InternalError> {
        tenants.get(t as usize).or_broken("tenant out of range")
    }

    fn tenant_mut(tenants: &mut [TenantSlot], t: u32) -> Result<&mut TenantSlot, InternalError> {
        tenants.get_mut(t as usize).or_broken("tenant out of range")
    }

    fn tenant_key(
        tenants: &[TenantSlot],
        nodes: &[PairNode],
        t: u32,
    ) -> Result<RankKey, InternalError> {
        let ts = Self::tenant(tenants, t)?;
        Ok(RankKey::new(
            ts.counter,
            node(nodes, ts.root)?.key.tiebreak(),
        ))
    }

    fn refresh_tenant(
        tenant_heap: &mut IndexedHeap<'_>,
        tenants: &[TenantSlot],
        nodes: &[PairNode],
        t: u32,
    ) -> Result<(), InternalError> {
        if Self::tenant(tenants, t)?.root == NIL {
            tenant_heap.remove(t).map_err(heap_broken)?;
        } else {
            let k = Self::tenant_key(tenants, nodes, t)?;
            if !tenant_heap.update(t, k).map_err(heap_broken)? {
                tenant_heap
                    .push(t, k)
                    .map_err(|_| InternalError::new("tenant heap full"))?;
            }
        }
        Ok(())
    }

    /// Adds request `i` of tenant `t` with `key`.
    pub(crate) fn push(
        &mut self,
        tenants: &mut [TenantSlot],
        i: u32,
        t: u32,
        key: RankKey,
    ) -> Result<(), InternalError> {
        match self {
            WaitQueue::Single(h) => h
                .push(i, key)
                .map_err(|_| InternalError::new("waiting queue full")),
            WaitQueue::Fair {
                tenant_heap,
                nodes,
                len,
            } => {
                *node_mut(nodes, i)? = PairNode {
                    key,
                    child: NIL,
                    sibling: NIL,
                    prev: NIL,
                };
                let root = Self::tenant(tenants, t)?.root;
                let root = if root == NIL {
                    i
                } else {
                    link(nodes, root, i)?
                };
                Self::tenant_mut(tenants, t)?.root = root;
                *len = len.saturating_add(1);
                Self::refresh_tenant(tenant_heap, tenants, nodes, t)
            }
        }
    }

    /// Removes request `i` of tenant `t` (which must be queued).
    pub(crate) fn remove(
        &mut self,
        tenants: &mut [TenantSlot],
        i: u32,
        t: u32,
    ) -> Result<(), InternalError> {
        match self {
            WaitQueue::Single(h) => h
                .remove(i)
                .map_err(heap_broken)?
                .map(|_| ())
                .or_broken("removing a request that is not queued"),
            WaitQueue::Fair {
                tenant_heap,
                nodes,
                len,
            } => {
                let root = Self::tenant(tenants, t)?.root;
                let root = pairing_remove(nodes, root, i)?;
                Self::tenant_mut(tenants, t)?.root = root;
                *len = len
                    .checked_sub(1)
                    .or_broken("removing from an empty queue")?;
                Self::refresh_tenant(tenant_heap, tenants, nodes, t)
            }
        }
    }

    /// The request that would be served next.
    pub(crate) fn peek(&self, tenants: &[TenantSlot]) -> Option<u32> {
        match self {
            WaitQueue::Single(h) => h.peek().map(|(i, _)| i),
            WaitQueue::Fair { tenant_heap, .. } => tenant_heap
                .peek()
                .and_then(|(t, _)| tenants.get(t as usize))
                .map(|ts| ts.root),
        }
    }

    /// The key the head competes with running requests by: its rank key, or under fair share
    /// its tenant's (counter, arrival) key.
    pub(crate) fn head_key(&self) -> Option<RankKey> {
        match self {
            WaitQueue::Single(h) => h.peek().map(|(_, k)| k),
            WaitQueue::Fair { tenant_heap, .. } => tenant_heap.peek().map(|(_, k)| k),
        }
    }

    /// Gives queued request `i` of tenant `t` a new key.
    pub(crate) fn update(
        &mut self,
        tenants: &mut [TenantSlot],
        i: u32,
        t: u32,
        key: RankKey,
    ) -> Result<(), InternalError> {
        match self {
            WaitQueue::Single(h) => {
                if h.update(i, key).map_err(heap_broken)? {
                    Ok(())
                } else {
                    Err(InternalError::new("re-keying a request that is not queued"))
                }
            }
            WaitQueue::Fair { .. } => {
                self.remove(tenants, i, t)?;
                self.push(tenants, i, t, key)
            }
        }
    }

    /// Adds `amount` to tenant `t`'s virtual counter (fair share only).
    pub(crate) fn charge(
        &mut self,
        tenants: &mut [TenantSlot],
        t: u32,
        amount: f64,
    ) -> Result<(), InternalError> {
        if let WaitQueue::Fair {
            tenant_heap, nodes, ..
        } = self
        {
            let ts = Self::tenant_mut(tenants, t)?;
            ts.counter += amount;
            if ts.root != NIL {
                Self::refresh_tenant(tenant_heap, tenants, nodes, t)?;
            }
        }
        Ok(())
    }

    /// VTC's rule for a tenant that becomes active: lift its counter to the smallest counter
    /// among tenants with waiting requests, so idle time cannot be banked.
    pub(crate) fn lift_new_tenant(
        &mut self,
        tenants: &mut [TenantSlot],
        t: u32,
    ) -> Result<(), InternalError> {
        if let WaitQueue::Fair { tenant_heap, .. } = self
            && let Some((_, k)) = tenant_heap.peek()
        {
            let floor = k.rank();
            let ts = Self::tenant_mut(tenants, t)?;
            if ts.counter < floor {
                ts.counter = floor;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn test_pairing_heap_pops_in_order_and_removes_anywhere() {
        let n = 200u32;
        let mut nodes = vec![PairNode::default(); n as usize];
        let mut root = NIL;
        let mut x = 99u64;
        let mut keys = vec![];
        for i in 0..n {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let k = RankKey::new((x >> 44) as f64, i as u64);
            keys.push(k);
            nodes[i as usize] = PairNode {
                key: k,
                child: NIL,
                sibling: NIL,
                prev: NIL,
            };
            root = if root == NIL {
                i
            } else {
                link(&mut nodes, root, i).unwrap()
            };
        }
        for i in (0..n).step_by(3) {
            root = pairing_remove(&mut nodes, root, i).unwrap();
        }
        let mut expect: Vec<(RankKey, u32)> = (0..n)
            .filter(|i| i % 3 != 0)
            .map(|i| (keys[i as usize], i))
            .collect();
        expect.sort();
        let mut got = vec![];
        while root != NIL {
            got.push((nodes[root as usize].key, root));
            root = pairing_remove(&mut nodes, root, root).unwrap();
        }
        assert_eq!(got, expect);
    }

    #[test]
    fn test_fair_queue_serves_the_least_served_tenant() {
        let mut entries = vec![HeapEntry::default(); 3];
        let mut positions = vec![0u32; 3];
        let mut nodes = vec![PairNode::default(); 8];
        let mut tenants = vec![TenantSlot::default(); 3];
        let mut q = WaitQueue::fair(&mut entries, &mut positions, &mut nodes);
        // Tenant 0 has requests 0, 1, 2; tenant 1 has request 3 (later arrival).
        for i in 0..3u32 {
            q.push(&mut tenants, i, 0, RankKey::new(i as f64, i as u64))
                .unwrap();
        }
        q.push(&mut tenants, 3, 1, RankKey::new(0.0, 3)).unwrap();
        assert_eq!(q.peek(&tenants), Some(0), "equal counters: earlier arrival");
        q.charge(&mut tenants, 0, 100.0).unwrap();
        assert_eq!(
            q.peek(&tenants),
            Some(3),
            "tenant 0 was served: tenant 1 goes first"
        );
        q.remove(&mut tenants, 3, 1).unwrap();
        assert_eq!(q.peek(&tenants), Some(0));
        q.update(&mut tenants, 2, 0, RankKey::new(-1.0, 2)).unwrap();
        assert_eq!(q.peek(&tenants), Some(2), "re-keyed within the tenant");
        assert_eq!(q.len(), 3);
        // A tenant arriving later is lifted to the current minimum counter.
        q.lift_new_tenant(&mut tenants, 2).unwrap();
        assert_eq!(tenants[2].counter, 100.0);
    }
}
