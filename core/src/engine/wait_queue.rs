//! The waiting queue: one indexed heap keyed by rank, or, under fair share, a heap of tenants
//! keyed by their virtual token counters over one pairing heap per tenant keyed by rank.
//!
//! A rank that depends on shared state (the tokens a whole tenant has received) would re-key
//! every waiting request of a tenant whenever any of them is served. Two levels avoid that:
//! serving a tenant re-keys one tenant-heap entry. Pairing heaps give each tenant its own
//! priority queue inside one shared node array (links live in the nodes), with O(1) insert and
//! O(log n) amortised pop and remove.

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

/// Links `b` under `a` or `a` under `b` (both roots with no siblings); returns the new root.
fn link(nodes: &mut [PairNode], a: u32, b: u32) -> u32 {
    let (a, b) = if nodes[b as usize].key < nodes[a as usize].key {
        (b, a)
    } else {
        (a, b)
    };
    let c = nodes[a as usize].child;
    nodes[b as usize].sibling = c;
    if c != NIL {
        nodes[c as usize].prev = b;
    }
    nodes[b as usize].prev = a;
    nodes[a as usize].child = b;
    a
}

/// Two-pass pairing of the sibling list starting at `first`; returns the new root.
fn combine(nodes: &mut [PairNode], first: u32) -> u32 {
    if first == NIL {
        return NIL;
    }
    // Pass 1: link pairs left to right, collecting the results in a reversed list.
    let mut acc = NIL;
    let mut cur = first;
    while cur != NIL {
        let a = cur;
        let b = nodes[a as usize].sibling;
        nodes[a as usize].sibling = NIL;
        nodes[a as usize].prev = NIL;
        let (r, next) = if b == NIL {
            (a, NIL)
        } else {
            let next = nodes[b as usize].sibling;
            nodes[b as usize].sibling = NIL;
            nodes[b as usize].prev = NIL;
            (link(nodes, a, b), next)
        };
        nodes[r as usize].sibling = acc;
        acc = r;
        cur = next;
    }
    // Pass 2: meld right to left.
    let mut root = acc;
    let mut rest = nodes[root as usize].sibling;
    nodes[root as usize].sibling = NIL;
    while rest != NIL {
        let next = nodes[rest as usize].sibling;
        nodes[rest as usize].sibling = NIL;
        root = link(nodes, root, rest);
        rest = next;
    }
    nodes[root as usize].prev = NIL;
    root
}

fn pairing_remove(nodes: &mut [PairNode], root: u32, x: u32) -> u32 {
    if x == root {
        let c = nodes[x as usize].child;
        nodes[x as usize].child = NIL;
        return combine(nodes, c);
    }
    let p = nodes[x as usize].prev;
    let s = nodes[x as usize].sibling;
    if nodes[p as usize].child == x {
        nodes[p as usize].child = s;
    } else {
        nodes[p as usize].sibling = s;
    }
    if s != NIL {
        nodes[s as usize].prev = p;
    }
    nodes[x as usize].prev = NIL;
    nodes[x as usize].sibling = NIL;
    let c = nodes[x as usize].child;
    nodes[x as usize].child = NIL;
    let sub = combine(nodes, c);
    if sub == NIL {
        root
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

    fn tenant_key(tenants: &[TenantSlot], nodes: &[PairNode], t: u32) -> RankKey {
        let ts = &tenants[t as usize];
        RankKey::new(ts.counter, nodes[ts.root as usize].key.tiebreak())
    }

    fn refresh_tenant(
        tenant_heap: &mut IndexedHeap<'_>,
        tenants: &[TenantSlot],
        nodes: &[PairNode],
        t: u32,
    ) {
        if tenants[t as usize].root == NIL {
            tenant_heap.remove(t).expect("tenant heap intact");
        } else {
            let k = Self::tenant_key(tenants, nodes, t);
            if !tenant_heap.update(t, k).expect("tenant heap intact") {
                let pushed = tenant_heap.push(t, k);
                debug_assert!(pushed.is_ok());
            }
        }
    }

    /// Adds request `i` of tenant `t` with `key`.
    pub(crate) fn push(&mut self, tenants: &mut [TenantSlot], i: u32, t: u32, key: RankKey) {
        match self {
            WaitQueue::Single(h) => {
                let pushed = h.push(i, key);
                debug_assert!(pushed.is_ok());
            }
            WaitQueue::Fair {
                tenant_heap,
                nodes,
                len,
            } => {
                nodes[i as usize] = PairNode {
                    key,
                    child: NIL,
                    sibling: NIL,
                    prev: NIL,
                };
                let root = tenants[t as usize].root;
                tenants[t as usize].root = if root == NIL { i } else { link(nodes, root, i) };
                *len += 1;
                Self::refresh_tenant(tenant_heap, tenants, nodes, t);
            }
        }
    }

    /// Removes request `i` of tenant `t` (which must be queued).
    pub(crate) fn remove(&mut self, tenants: &mut [TenantSlot], i: u32, t: u32) {
        match self {
            WaitQueue::Single(h) => {
                let removed = h.remove(i);
                debug_assert!(matches!(removed, Ok(Some(_))));
            }
            WaitQueue::Fair {
                tenant_heap,
                nodes,
                len,
            } => {
                let root = tenants[t as usize].root;
                tenants[t as usize].root = pairing_remove(nodes, root, i);
                *len -= 1;
                Self::refresh_tenant(tenant_heap, tenants, nodes, t);
            }
        }
    }

    /// The request that would be served next.
    pub(crate) fn peek(&self, tenants: &[TenantSlot]) -> Option<u32> {
        match self {
            WaitQueue::Single(h) => h.peek().map(|(i, _)| i),
            WaitQueue::Fair { tenant_heap, .. } => {
                tenant_heap.peek().map(|(t, _)| tenants[t as usize].root)
            }
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
    pub(crate) fn update(&mut self, tenants: &mut [TenantSlot], i: u32, t: u32, key: RankKey) {
        match self {
            WaitQueue::Single(h) => {
                let updated = h.update(i, key);
                debug_assert!(updated == Ok(true));
            }
            WaitQueue::Fair { .. } => {
                self.remove(tenants, i, t);
                self.push(tenants, i, t, key);
            }
        }
    }

    /// Adds `amount` to tenant `t`'s virtual counter (fair share only).
    pub(crate) fn charge(&mut self, tenants: &mut [TenantSlot], t: u32, amount: f64) {
        if let WaitQueue::Fair {
            tenant_heap, nodes, ..
        } = self
        {
            tenants[t as usize].counter += amount;
            if tenants[t as usize].root != NIL {
                Self::refresh_tenant(tenant_heap, tenants, nodes, t);
            }
        }
    }

    /// VTC's rule for a tenant that becomes active: lift its counter to the smallest counter
    /// among tenants with waiting requests, so idle time cannot be banked.
    pub(crate) fn lift_new_tenant(&mut self, tenants: &mut [TenantSlot], t: u32) {
        if let WaitQueue::Fair { tenant_heap, .. } = self
            && let Some((_, k)) = tenant_heap.peek()
        {
            let floor = k.rank();
            if tenants[t as usize].counter < floor {
                tenants[t as usize].counter = floor;
            }
        }
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
                link(&mut nodes, root, i)
            };
        }
        for i in (0..n).step_by(3) {
            root = pairing_remove(&mut nodes, root, i);
        }
        let mut expect: Vec<(RankKey, u32)> = (0..n)
            .filter(|i| i % 3 != 0)
            .map(|i| (keys[i as usize], i))
            .collect();
        expect.sort();
        let mut got = vec![];
        while root != NIL {
            got.push((nodes[root as usize].key, root));
            root = pairing_remove(&mut nodes, root, root);
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
            q.push(&mut tenants, i, 0, RankKey::new(i as f64, i as u64));
        }
        q.push(&mut tenants, 3, 1, RankKey::new(0.0, 3));
        assert_eq!(q.peek(&tenants), Some(0), "equal counters: earlier arrival");
        q.charge(&mut tenants, 0, 100.0);
        assert_eq!(
            q.peek(&tenants),
            Some(3),
            "tenant 0 was served: tenant 1 goes first"
        );
        q.remove(&mut tenants, 3, 1);
        assert_eq!(q.peek(&tenants), Some(0));
        q.update(&mut tenants, 2, 0, RankKey::new(-1.0, 2));
        assert_eq!(q.peek(&tenants), Some(2), "re-keyed within the tenant");
        assert_eq!(q.len(), 3);
        // A tenant arriving later is lifted to the current minimum counter.
        q.lift_new_tenant(&mut tenants, 2);
        assert_eq!(tenants[2].counter, 100.0);
    }
}
