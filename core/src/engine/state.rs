//! State transitions: the counters per state, the waiting queue, the running set, the
//! idle-KV list, reservations, the KV moves (discard, swap out), and ending a request.
//!
//! Every function here takes a slot index the engine itself holds; an index or link found out
//! of range is a broken invariant, returned as an [`InternalError`].

use super::Engine;
use super::request::SlotState;
use crate::handle::next_generation;
use crate::internal::{InternalError, OrBroken, broken};
use crate::kv::Tier;
use crate::util::NIL;

impl Engine<'_> {
    /// Moves the per-state gauges for a request leaving `old` and entering `new`.
    fn count_transition(&mut self, old: SlotState, new: SlotState) {
        if let Some(c) = self.gauge(old) {
            *c = c.saturating_sub(1);
        }
        if let Some(c) = self.gauge(new) {
            *c = c.saturating_add(1);
        }
    }

    /// The gauge counting requests in `state` (running is the running set's length).
    fn gauge(&mut self, state: SlotState) -> Option<&mut u32> {
        match state {
            SlotState::Waiting => Some(&mut self.stats.waiting),
            SlotState::Swapped => Some(&mut self.stats.swapped),
            SlotState::Paused => Some(&mut self.stats.paused),
            SlotState::Running | SlotState::Free => None,
        }
    }

    pub(super) fn set_state(&mut self, i: u32, state: SlotState) -> Result<(), InternalError> {
        let old = self.req(i)?.state;
        self.count_transition(old, state);
        self.req_mut(i)?.state = state;
        Ok(())
    }

    /// Puts `i` in the waiting queue in `state` (waiting or swapped), keyed by its rank now.
    pub(super) fn enqueue(&mut self, i: u32, state: SlotState) -> Result<(), InternalError> {
        self.set_state(i, state)?;
        let key = self.queue_key(i)?;
        let r = self.req_mut(i)?;
        r.key = key;
        r.queued = true;
        let t = r.tenant;
        self.queue.push(self.tenants, i, t, key)?;
        Ok(())
    }

    pub(super) fn dequeue(&mut self, i: u32) -> Result<(), InternalError> {
        let r = self.req_mut(i)?;
        r.queued = false;
        let t = r.tenant;
        self.queue.remove(self.tenants, i, t)?;
        Ok(())
    }

    pub(super) fn add_running(&mut self, i: u32) -> Result<(), InternalError> {
        let pos = self.running_len;
        *self
            .running
            .get_mut(pos as usize)
            .or_broken("running set over max_running")? = i;
        self.set_state(i, SlotState::Running)?;
        self.req_mut(i)?.running_pos = pos;
        self.running_len = pos.saturating_add(1);
        Ok(())
    }

    /// Takes `i` out of the running set (the last running request fills its position).
    pub(super) fn remove_running(&mut self, i: u32) -> Result<(), InternalError> {
        let pos = self.req(i)?.running_pos;
        let last_pos = self
            .running_len
            .checked_sub(1)
            .or_broken("removing from an empty running set")?;
        if pos > last_pos {
            return broken("a running request's position is past the running set");
        }
        let last = self.running_at(last_pos as usize)?;
        if self.running_at(pos as usize)? != i {
            return broken("running position does not hold the request");
        }
        *self
            .running
            .get_mut(pos as usize)
            .or_broken("running position out of range")? = last;
        self.req_mut(last)?.running_pos = pos;
        self.running_len = last_pos;
        let r = self.req_mut(i)?;
        r.running_pos = NIL;
        r.sched_tokens = 0;
        r.sched_blocks = 0;
        r.sched_chunks = 0;
        self.release_reserve(i)
    }

    pub(super) fn release_reserve(&mut self, i: u32) -> Result<(), InternalError> {
        let r = self.req_mut(i)?;
        let left = u64::from(r.reserve_left);
        r.reserve_left = 0;
        self.outstanding_reserve = self
            .outstanding_reserve
            .checked_sub(left)
            .or_broken("outstanding reservation below a request's")?;
        Ok(())
    }

    /// Accounts `new_blocks` allocated to running request `i` against its reservation.
    pub(super) fn consume_reserve(&mut self, i: u32, new_blocks: u32) -> Result<(), InternalError> {
        let r = self.req_mut(i)?;
        let used = new_blocks.min(r.reserve_left);
        r.reserve_left = r.reserve_left.saturating_sub(used);
        self.outstanding_reserve = self
            .outstanding_reserve
            .checked_sub(u64::from(used))
            .or_broken("outstanding reservation below a request's")?;
        Ok(())
    }

    /// Lists `i` as holding device KV while not running (evictable under memory pressure).
    pub(super) fn idle_push(&mut self, i: u32) -> Result<(), InternalError> {
        self.req_mut(i)?.idle_listed = true;
        self.idle_kv.push_back(&mut *self.reqs, i)
    }

    /// Takes `i` off the idle-KV list.
    pub(super) fn idle_remove(&mut self, i: u32) -> Result<(), InternalError> {
        self.req_mut(i)?.idle_listed = false;
        self.idle_kv.remove(&mut *self.reqs, i)
    }

    /// Frees `i`'s device KV (keeping cached prefix blocks findable); it recomputes later.
    /// Only device KV is ever discarded (preemption, idle eviction, a pause), so no unsent
    /// swap-out pairs can name it; host KV is freed by `release`, which withdraws them.
    pub(super) fn discard_kv(&mut self, i: u32) -> Result<(), InternalError> {
        let Some(seq) = self.req(i)?.seq() else {
            return Ok(());
        };
        self.kv
            .free_seq(seq)
            .map_err(|_| InternalError::new("a request holds a stale sequence"))?;
        let r = self.req_mut(i)?;
        r.recompute_upto = r.recompute_upto.max(r.computed);
        r.seq_raw = 0;
        r.computed = 0;
        Ok(())
    }

    /// Blocks in `i`'s table if it could be swapped out now (device KV, host space, plan
    /// room, and no swap-in planned yet in this plan).
    pub(super) fn swap_out_size(&self, i: u32) -> Result<Option<u32>, InternalError> {
        let Some(seq) = self.req(i)?.seq() else {
            return Ok(None);
        };
        let info = self
            .kv
            .seq_info(seq)
            .map_err(|_| InternalError::new("a request holds a stale sequence"))?;
        let p = &self.plan;
        let fits = info.tier == Tier::Device
            && !p.swapped_in
            && info.num_blocks <= self.kv.available_host()
            && info.num_blocks as usize <= p.swap_out.room();
        Ok(fits.then_some(info.num_blocks))
    }

    /// Moves `i`'s KV to the host if possible, writing the pairs into the plan's swap-out
    /// list. Never after a swap-in of the same plan: the executor copies swap-outs first, so
    /// a host block that a swap-in of this plan frees (and still reads) must not be a
    /// swap-out destination in it.
    pub(super) fn try_swap_out(&mut self, i: u32) -> Result<bool, InternalError> {
        if self.swap_out_size(i)?.is_none() {
            return Ok(false);
        }
        let seq = self
            .req(i)?
            .seq()
            .or_broken("swap-out of a request without KV")?;
        let p = &mut self.plan;
        let n = self
            .kv
            .swap_out(seq, p.swap_out.spare_mut())
            .map_err(|_| InternalError::new("swap-out refused after its checks passed"))?;
        p.swap_out
            .commit(n as usize, "swap-out pairs past the list")?;
        Ok(true)
    }

    /// Where `i`'s swap-out pairs are in the swap-out list that the executor has not been
    /// given yet (a pause's swap-out waiting for the next plan, or one of the plan being
    /// built): `(start, count)`, or `None` when it has none there.
    pub(super) fn unsent_swap_out(&self, i: u32) -> Result<Option<(usize, usize)>, InternalError> {
        let unsent = self.plan.swap_out_pending || self.in_schedule;
        let Some(seq) = self.req(i)?.seq() else {
            return Ok(None);
        };
        if !unsent || self.plan.swap_out.len() == 0 {
            return Ok(None);
        }
        let Ok(info) = self.kv.seq_info(seq) else {
            return broken("a request holds a stale sequence");
        };
        if info.tier != Tier::Host || info.num_blocks == 0 {
            return Ok(None);
        }
        // Its pairs are contiguous, written tail first: the first names its last block. Host
        // blocks are never shared, and a freed one loses its unsent pairs (below), so a pair
        // naming it belongs to this request.
        let mut last = [0u32; 1];
        self.kv
            .read_table(seq, info.num_blocks.saturating_sub(1), &mut last)
            .map_err(|_| InternalError::new("a host table shorter than its length"))?;
        let n = info.num_blocks as usize;
        let pairs = self.plan.swap_out.as_slice();
        let Some(start) = pairs.iter().position(|p| p.dst == last[0]) else {
            return Ok(None); // swapped out in an earlier plan, already carried out
        };
        if pairs.len().saturating_sub(start) < n {
            return broken("a request's swap-out pairs are cut short");
        }
        Ok(Some((start, n)))
    }

    /// Withdraws `i`'s unsent swap-out pairs: its host blocks are about to be freed, and a
    /// later swap-out of the same plan may take them, which would give two pairs one
    /// destination.
    fn forget_pending_swap_out(&mut self, i: u32) -> Result<(), InternalError> {
        match self.unsent_swap_out(i)? {
            Some((start, n)) => self.plan.swap_out.remove_range(start, n),
            None => Ok(()),
        }
    }

    /// Ends request `i` and retires its handle.
    pub(super) fn release(&mut self, i: u32) -> Result<(), InternalError> {
        if self.req(i)?.queued {
            self.dequeue(i)?;
        }
        if self.req(i)?.state == SlotState::Running {
            self.remove_running(i)?;
        }
        if self.req(i)?.idle_listed {
            self.idle_remove(i)?;
        }
        let state = self.req(i)?.state;
        self.count_transition(state, SlotState::Free);
        if let Some(seq) = self.req(i)?.seq() {
            self.forget_pending_swap_out(i)?;
            self.kv
                .free_seq(seq)
                .map_err(|_| InternalError::new("a request holds a stale sequence"))?;
        }
        let mut hashes = self.req(i)?.hashes;
        self.hashes.clear(&mut hashes)?;
        self.ids.remove(&mut *self.reqs, i)?;
        let r = *self.req(i)?;
        if self.step > 0 && r.scheduled_step == self.step && !r.reported {
            self.awaiting = self
                .awaiting
                .checked_sub(1)
                .or_broken("awaited results below zero")?;
        }
        let t = r.tenant;
        let contrib = r.backlog_contrib;
        let tenant = self
            .tenants
            .get_mut(t as usize)
            .or_broken("tenant out of range")?;
        tenant.live = tenant.live.saturating_sub(1);
        self.stats.predicted_backlog_tokens =
            self.stats.predicted_backlog_tokens.saturating_sub(contrib);
        let free_head = self.free_head;
        let r = self.req_mut(i)?;
        let generation = next_generation(r.generation);
        *r = super::RequestSlot::default();
        r.generation = generation;
        r.next_free = free_head;
        self.free_head = i;
        Ok(())
    }
}
