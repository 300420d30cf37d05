//! The crate's only unsafe code: splitting one byte region into the engine's typed slices, and
//! the byte view of a `[RegionUnit]`.
//!
//! [`carve`] trusts nothing about the [`RegionLayout`] it is given. It walks the spans in the
//! layout's field order (the order augur-core's bump allocator places them in) and, for each,
//! checks that the span starts at or after the end of the one before (so no two overlap), that
//! its end fits in the region (checked arithmetic), and that the piece's address is aligned
//! for the element type. Only then does it split the piece off the front of what is left of
//! the region (`split_at_mut`, so the borrows are disjoint by construction), write
//! `T::default()` into every element through `MaybeUninit<T>`, and only after that view the
//! piece as `&mut [T]`.

use core::mem::MaybeUninit;
use core::slice;

use augur_core::engine::{
    Dropped, EngineStorage, Finished, HashChunk, PairNode, Preemption, RegionLayout, RequestSlot,
    ScheduledEntry, Span, TenantSlot,
};
use augur_core::kv::{BlockPair, BlockSlot, KvEvent, KvStorage, SeqSlot, TableChunk};
use augur_core::queue::HeapEntry;

use crate::RegionUnit;

/// The bytes of `units`, as one region (aligned to 64, `64 × units.len()` bytes long) for
/// [`engine_in_region`](crate::engine_in_region).
pub fn units_as_bytes(units: &mut [RegionUnit]) -> &mut [MaybeUninit<u8>] {
    let len = size_of_val(units);
    let ptr = units.as_mut_ptr().cast::<MaybeUninit<u8>>();
    // SAFETY: `RegionUnit` is `repr(C)` around `[MaybeUninit<u8>; 64]` and exactly 64 bytes
    // (asserted at compile time in lib.rs), so `units` is `len` contiguous bytes of one
    // allocation, and any byte, initialised or not, is a valid `MaybeUninit<u8>` (alignment 1).
    // The result reborrows `units` mutably for the same lifetime, so nothing else can reach
    // those bytes while it lives, and `len` is the size of an existing slice (≤ isize::MAX).
    unsafe { slice::from_raw_parts_mut(ptr, len) }
}

/// What is left of the region, and its byte offset from the region's start.
struct Carver<'a> {
    rest: &'a mut [MaybeUninit<u8>],
    pos: usize,
}

impl<'a> Carver<'a> {
    /// Splits `span` (of `T`s) off the front of what is left, initialised; `Err(what)` if the
    /// span overlaps the previous one, runs past the region, or is misaligned.
    fn take<T: Copy + Default>(
        &mut self,
        span: Span,
        what: &'static str,
    ) -> Result<&'a mut [T], &'static str> {
        let pad = span.offset.checked_sub(self.pos).ok_or(what)?;
        let bytes = span.len.checked_mul(size_of::<T>()).ok_or(what)?;
        let end = span.offset.checked_add(bytes).ok_or(what)?;
        if !span.offset.is_multiple_of(align_of::<T>()) {
            return Err(what);
        }
        let rest = core::mem::take(&mut self.rest);
        let (_padding, rest) = rest.split_at_mut_checked(pad).ok_or(what)?;
        let (piece, rest) = rest.split_at_mut_checked(bytes).ok_or(what)?;
        self.rest = rest;
        self.pos = end;
        init_slice(piece, span.len).ok_or(what)
    }
}

/// `piece` as `len` elements of `T`, each set to `T::default()` first; `None` unless `piece`
/// is exactly `len × size_of::<T>()` bytes at an address aligned for `T`.
fn init_slice<T: Copy + Default>(piece: &mut [MaybeUninit<u8>], len: usize) -> Option<&mut [T]> {
    let ptr = piece.as_mut_ptr().cast::<MaybeUninit<T>>();
    if len.checked_mul(size_of::<T>()) != Some(piece.len()) || !ptr.is_aligned() {
        return None;
    }
    // SAFETY: `ptr` comes from `piece`, which is exactly `len × size_of::<T>()` bytes of one
    // allocation (checked above), and is aligned for `T` (checked above), so it is valid for
    // reads and writes of `len` values of `MaybeUninit<T>`, for which any bytes are valid.
    // `piece` is borrowed mutably for the result's lifetime and not used again, so this is the
    // only reference to those bytes; the size is that of an existing slice (≤ isize::MAX).
    let slots: &mut [MaybeUninit<T>] = unsafe { slice::from_raw_parts_mut(ptr, len) };
    for slot in slots.iter_mut() {
        slot.write(T::default());
    }
    let ptr = slots.as_mut_ptr().cast::<T>();
    // SAFETY: the same `len` slots, derived from `slots` (not used again), each of which was
    // just initialised with a valid `T`; `MaybeUninit<T>` has the size and alignment of `T`.
    // `T: Copy`, so it has no drop glue that the region's owner would skip.
    Some(unsafe { slice::from_raw_parts_mut(ptr, len) })
}

/// The engine's storage, carved from `region` as `layout` says (see the module docs).
/// `Err` names the first span that failed a check.
pub(crate) fn carve<'a>(
    layout: &RegionLayout,
    region: &'a mut [MaybeUninit<u8>],
) -> Result<EngineStorage<'a>, &'static str> {
    let l = layout;
    let mut c = Carver {
        rest: region,
        pos: 0,
    };
    // In `RegionLayout`'s field order, which is the bump allocator's placement order: a span
    // out of that order fails the overlap check instead of aliasing another.
    let requests = c.take::<RequestSlot>(l.requests, "requests")?;
    let blocks = c.take::<BlockSlot>(l.blocks, "blocks")?;
    let table_chunks = c.take::<TableChunk>(l.table_chunks, "table_chunks")?;
    let seqs = c.take::<SeqSlot>(l.seqs, "seqs")?;
    let hash_chunks = c.take::<HashChunk>(l.hash_chunks, "hash_chunks")?;
    let events = c.take::<KvEvent>(l.events, "events")?;
    let event_parents = c.take::<Option<u64>>(l.event_parents, "event_parents")?;
    let queue_entries = c.take::<HeapEntry>(l.queue_entries, "queue_entries")?;
    let tenant_entries = c.take::<HeapEntry>(l.tenant_entries, "tenant_entries")?;
    let pair_nodes = c.take::<PairNode>(l.pair_nodes, "pair_nodes")?;
    let tenants = c.take::<TenantSlot>(l.tenants, "tenants")?;
    let plan_entries = c.take::<ScheduledEntry>(l.plan_entries, "plan_entries")?;
    let preempted = c.take::<Preemption>(l.preempted, "preempted")?;
    let dropped = c.take::<Dropped>(l.dropped, "dropped")?;
    let finished = c.take::<Finished>(l.finished, "finished")?;
    let swap_out = c.take::<BlockPair>(l.swap_out, "swap_out")?;
    let swap_in = c.take::<BlockPair>(l.swap_in, "swap_in")?;
    let copies = c.take::<BlockPair>(l.copies, "copies")?;
    let hash_buckets = c.take::<u32>(l.hash_buckets, "hash_buckets")?;
    let id_buckets = c.take::<u32>(l.id_buckets, "id_buckets")?;
    let queue_positions = c.take::<u32>(l.queue_positions, "queue_positions")?;
    let tenant_positions = c.take::<u32>(l.tenant_positions, "tenant_positions")?;
    let running = c.take::<u32>(l.running, "running")?;
    let plan_blocks = c.take::<u32>(l.plan_blocks, "plan_blocks")?;
    Ok(EngineStorage {
        kv: KvStorage {
            blocks,
            hash_buckets,
            table_chunks,
            seqs,
            events,
            event_parents,
        },
        requests,
        id_buckets,
        queue_entries,
        queue_positions,
        pair_nodes,
        tenants,
        tenant_entries,
        tenant_positions,
        running,
        hash_chunks,
        plan_entries,
        plan_blocks,
        swap_out,
        swap_in,
        copies,
        preempted,
        dropped,
        finished,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec;
    use std::vec::Vec;

    use augur_core::engine::{EngineConfig, RegionLayout, Span};

    use super::{carve, units_as_bytes};
    use crate::RegionUnit;

    fn small() -> (RegionLayout, Vec<RegionUnit>) {
        let mut cfg = EngineConfig::new(4, 32, 8);
        cfg.max_running = 4;
        let l = cfg.layout().unwrap().region().unwrap();
        let units = vec![RegionUnit::UNINIT; RegionUnit::count_for(l.size)];
        (l, units)
    }

    #[test]
    fn test_units_as_bytes_covers_every_unit() {
        let mut units = vec![RegionUnit::UNINIT; 3];
        let bytes = units_as_bytes(&mut units);
        assert_eq!(bytes.len(), 3 * RegionUnit::BYTES);
        assert!(bytes.as_ptr().addr().is_multiple_of(RegionUnit::BYTES));
        bytes[191].write(7);
        assert!(units_as_bytes(&mut []).is_empty());
    }

    #[test]
    fn test_core_layout_carves() {
        let (l, mut units) = small();
        let s = carve(&l, units_as_bytes(&mut units)).unwrap();
        assert_eq!(s.requests.len(), l.requests.len);
        assert_eq!(s.kv.blocks.len(), l.blocks.len);
        assert_eq!(s.plan_blocks.len(), l.plan_blocks.len);
        // Initialised, whatever the bytes were.
        assert!(s.running.iter().all(|&x| x == 0));
    }

    #[test]
    fn test_overlapping_span_is_refused() {
        let (mut l, mut units) = small();
        l.blocks.offset = l.requests.offset;
        assert_eq!(carve(&l, units_as_bytes(&mut units)).err(), Some("blocks"));
        // Out of the bump order: swap_in before swap_out.
        let (mut l, mut units) = small();
        core::mem::swap(&mut l.swap_out, &mut l.swap_in);
        assert!(carve(&l, units_as_bytes(&mut units)).is_err());
    }

    #[test]
    fn test_misaligned_span_is_refused() {
        let (mut l, mut units) = small();
        l.hash_chunks.offset += 1;
        assert_eq!(
            carve(&l, units_as_bytes(&mut units)).err(),
            Some("hash_chunks")
        );
    }

    #[test]
    fn test_span_past_the_end_is_refused() {
        let (mut l, mut units) = small();
        l.plan_blocks.len += units.len() * RegionUnit::BYTES;
        assert_eq!(
            carve(&l, units_as_bytes(&mut units)).err(),
            Some("plan_blocks")
        );
        let (mut l, mut units) = small();
        l.running = Span {
            offset: l.running.offset,
            len: usize::MAX,
        };
        assert_eq!(carve(&l, units_as_bytes(&mut units)).err(), Some("running"));
        let (mut l, mut units) = small();
        l.plan_blocks.offset = usize::MAX - 3;
        assert_eq!(
            carve(&l, units_as_bytes(&mut units)).err(),
            Some("plan_blocks")
        );
        // A region shorter than the layout: the first span past its end fails.
        let (l, mut units) = small();
        let bytes = units_as_bytes(&mut units);
        let short = &mut bytes[..l.blocks.offset + 1];
        assert_eq!(carve(&l, short).err(), Some("blocks"));
    }
}
