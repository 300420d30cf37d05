//! `schedule`: one step (see the module docs of [`crate::engine`] for the order of passes).
//!
//! Two resources bound what a step may allocate: device blocks and block-table chunks. Both
//! are planned before anything is allocated (the running requests' needs, then each admission),
//! so the allocation that carries a plan out cannot fail. Table chunks matter because a prefix
//! hit puts one block into many tables: forty requests sharing a hundred-block prefix hold four
//! thousand table entries over a hundred blocks.

use super::config::AdmissionMode;
use super::plan::{
    DropReason, Dropped, EntryKind, Plan, Preemption, PreemptionCause, PreemptionKind,
    ScheduleError, ScheduledEntry,
};
use super::request::SlotState;
use super::{Engine, PauseMode, PreemptionMode, RequestHandle, blocks_for};
use crate::internal::{InternalError, OrBroken, broken};
use crate::kv::{Tier, table_chunks_for};
use crate::policy::{Policy, PolicyKind};
use crate::queue::RankKey;
use crate::time::Instant;
use crate::util::{NIL, div_block, rem_block};

/// Table chunks a table of `blocks` entries occupies (a table longer than `u32::MAX` entries
/// cannot exist, so saturating there only makes an impossible plan look unaffordable).
#[inline]
fn chunks_for_blocks(blocks: u64) -> u64 {
    u64::from(table_chunks_for(u32::try_from(blocks).unwrap_or(u32::MAX)))
}

/// The first `cap` hashes of a request's prompt-hash list, for a prefix lookup. A broken
/// chunk list ends the walk early: the lookup then finds a shorter prefix, which is still a
/// correct plan (fewer cache hits), and the same walk is used to plan and to attach.
fn prompt_hashes<'p>(
    pool: &'p crate::kv::ChunkPool<'_, u64, { super::HASH_CHUNK_LEN }>,
    list: &crate::kv::ChunkList,
    cap: u32,
) -> impl Iterator<Item = u64> + Clone + 'p {
    pool.iter(list).map_while(Result::ok).take(cap as usize)
}

/// How a waiting request gets its KV when admitted.
#[derive(Clone, Copy, Debug)]
enum AdmitKind {
    /// No KV yet: attach the cached prefix, allocate the rest.
    Fresh { hit_blocks: u32 },
    /// KV in host memory: swap it in.
    Swapped,
    /// KV still on the device (a resumed pause that kept it).
    Resident,
}

#[derive(Clone, Copy, Debug)]
struct Admission {
    kind: AdmitKind,
    chunk: u32,
    /// Blocks the admission mode reserves for the request in all.
    reserve_target: u64,
}

/// Why a waiting request does not start now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoFit {
    /// Not enough free device blocks.
    Blocks,
    /// Not enough free block-table chunks.
    Chunks,
    /// Budget, plan capacity, reservations or the watermark.
    Policy,
}

/// What the running requests' tokens of this step need.
#[derive(Clone, Copy, Debug, Default)]
struct Need {
    blocks: u64,
    chunks: u64,
}

/// A rank preemption to make ([`Engine::rank_preemption_target`]): waiting request `w`
/// replaces running request `v`; `memory_ok` says `w` would fit in memory (only the batch is
/// full).
#[derive(Clone, Copy, Debug)]
struct RankTarget {
    w: u32,
    v: u32,
    memory_ok: bool,
}

/// Device blocks and table chunks that can still be handed out.
#[derive(Clone, Copy, Debug)]
struct Supply {
    blocks: u64,
    chunks: u64,
}

/// One request's run of tokens in the plan being built: what its entry says beyond the
/// request's own fields (see [`Engine::record_run`]).
#[derive(Clone, Copy)]
struct TokenRun {
    n: u32,
    kind: EntryKind,
    samples: bool,
    /// The first table entry the tokens changed (the table's length when none did).
    table_start: u32,
    /// Where the entry's block ids start in the plan's block list, and how many.
    blocks_offset: usize,
    blocks_len: usize,
}

impl<'a> Engine<'a> {
    /// Decides the next step. The plan stays readable (also via [`Engine::plan`]) until the
    /// next call that changes the engine. Every entry must be reported with
    /// [`Engine::complete`] (or its request aborted) before the next `schedule`.
    pub fn schedule(&mut self, now: Instant) -> Result<Plan<'_>, ScheduleError> {
        self.check_poison()?;
        if self.awaiting > 0 {
            return Err(ScheduleError::ResultsPending {
                missing: self.awaiting,
            });
        }
        if !self.check_time(now) {
            return Err(ScheduleError::TimeWentBackwards);
        }
        self.in_schedule = true;
        let planned = self.plan_step();
        self.in_schedule = false;
        if let Err(e) = planned {
            return Err(ScheduleError::Internal(self.poison(e)));
        }
        Ok(self.plan())
    }

    fn plan_step(&mut self) -> Result<(), InternalError> {
        self.results_accepted = false;
        self.step = self.step.saturating_add(1);
        self.stats.steps = self.stats.steps.saturating_add(1);
        let p = &mut self.plan;
        p.entries.clear();
        p.blocks.clear();
        p.swap_in.clear();
        p.copies.clear();
        p.preempted.clear();
        p.dropped.clear();
        if !p.swap_out_pending {
            p.swap_out.clear();
        }
        p.swap_out_pending = false;
        p.swapped_in = false;

        let mut budget = self.cfg.token_budget;
        let decode_ready = core::mem::take(&mut self.decode_ready);
        #[cfg(feature = "test-hooks")]
        let decode_ready = if self.general_path_only {
            u32::MAX
        } else {
            decode_ready
        };
        if decode_ready == self.running_len && self.decodes_need_nothing_else()? {
            self.stats.steady_steps = self.stats.steady_steps.saturating_add(1);
            self.plan_decodes(&mut budget)?;
            // Nothing was preempted, so there is no budget to top up with.
            return self.admit_waiting(NIL, &mut budget);
        }
        let mut need = self.plan_running(&mut budget)?;

        let memory_preempted = self.make_room(&mut need, &mut budget)?;
        let mut promoted = NIL;
        if !memory_preempted && self.cfg.policy.preempts_for_rank() {
            promoted = self.preempt_for_rank(&mut need, &mut budget)?;
        }
        let mut k = 0usize;
        while k < self.running_len as usize {
            let i = self.running_at(k)?;
            k = k.wrapping_add(1); // below `running_len`
            let r = self.req(i)?;
            let (n, blocks, chunks) = (r.sched_tokens, r.sched_blocks, r.sched_chunks);
            if n == 0 {
                continue;
            }
            // Most decodes take no block: nothing to check then.
            if (blocks == 0 && chunks == 0) || self.growth_fits(blocks, chunks, u64::from(blocks)) {
                self.run_tokens(i, n, false)?;
            } else {
                // Room could not be made (only possible when nothing else is left to take it
                // from): the request waits this step, keeping its KV.
                budget = budget.saturating_add(n);
                let r = self.req_mut(i)?;
                r.sched_tokens = 0;
                r.sched_blocks = 0;
                r.sched_chunks = 0;
            }
        }
        if !memory_preempted {
            self.admit_waiting(promoted, &mut budget)?;
        }
        if self.plan.preempted.len() > 0 && budget > 0 {
            self.top_up_running(&mut budget)?;
        }
        Ok(())
    }

    /// Whether a step in which every running request decodes can skip the general path's
    /// bookkeeping: the budget covers one token each, the memory bound of one new block,
    /// one new table chunk and one block id per request fits (so no request's need can be
    /// short and `make_room` would do nothing), and rank preemption would preempt nothing
    /// ([`Self::rank_preemption_idle`]). O(1) except for that last test's scan of the running
    /// set under a preemptive policy with a full batch, which the general path makes too.
    /// (The budget test never fails after a counted step: every request it counted got
    /// tokens from the budget then. It guards the pass's budget arithmetic all the same.)
    fn decodes_need_nothing_else(&self) -> Result<bool, InternalError> {
        let n = self.running_len;
        if n == 0 || self.cfg.token_budget < n || !self.growth_fits(n, n, u64::from(n)) {
            return Ok(false);
        }
        if self.cfg.policy.preempts_for_rank() {
            return self.rank_preemption_idle();
        }
        Ok(true)
    }

    /// Whether [`Self::preempt_for_rank`] would preempt nothing in this step whatever the
    /// running requests' exact need, given that it is at most one block and one table chunk
    /// each: its first iteration finds no target even with the most need (an admission that
    /// fits with less supply fits with more; the rank test does not depend on memory).
    fn rank_preemption_idle(&self) -> Result<bool, InternalError> {
        let n = u64::from(self.running_len);
        let most = Need {
            blocks: n,
            chunks: n,
        };
        Ok(self.rank_preemption_target(&most)?.is_none())
    }

    /// The steady step's one pass: every running request owes a decode and its token, block
    /// and table chunk fit ([`Self::decodes_need_nothing_else`]), so each is run at once, in
    /// running order — the entries, blocks and budget the general path would plan. A
    /// request that owes no decode here means `decode_ready` was counted wrong.
    #[inline(never)]
    fn plan_decodes(&mut self, budget: &mut u32) -> Result<(), InternalError> {
        let mut k = 0usize;
        // One token each, at most `running_len` (checked): taken from the budget at the end.
        let mut ran = 0u32;
        while k < self.running_len as usize {
            let i = self.running_at(k)?;
            let r = self.req(i)?;
            // `owes_decode` without its saturating subtraction (the same test: both counts are
            // below 2^31, so `computed + 1` cannot wrap).
            if r.computed.wrapping_add(1) != r.num_tokens() || r.generated == 0 {
                return broken("a request counted as decoding owes no decode");
            }
            if self.never_fits(u64::from(r.num_tokens())) {
                // Unreachable with a block free (a decode that never fits holds every device
                // block), kept so that both paths drop alike.
                self.drop_request(i, DropReason::ExceedsKvCapacity)?;
                continue;
            }
            let seq = r.seq().or_broken("running request without KV")?;
            // The plan's block list is read where it is used, so that it is not held across
            // the append (one register fewer in the loop).
            let (table_start, read, blocks_start) = match self.kv.append_in_place(seq, 1) {
                Ok(Some(len)) => (len, 0, self.plan.blocks.len()),
                Ok(None) => {
                    let start = self.plan.blocks.len();
                    let (at, read) = self.grow_table(i, seq, 1, false)?;
                    (at, read, start)
                }
                Err(e) => return Err(growth_refused(e)),
            };
            // What `run_tokens` finds for a request that owes its decode: the token it runs
            // is the last one known, after one generated.
            let run = TokenRun {
                n: 1,
                kind: EntryKind::Decode,
                samples: true,
                table_start,
                blocks_offset: blocks_start,
                blocks_len: read,
            };
            self.record_run(i, run)?;
            ran = ran.wrapping_add(1);
            k = k.wrapping_add(1); // below `running_len`
        }
        *budget = budget.saturating_sub(ran);
        Ok(())
    }

    /// Whether `blocks` new device blocks and `chunks` new table chunks can be allocated now
    /// and `entries` block ids still fit in the plan.
    fn growth_fits(&self, blocks: u32, chunks: u32, entries: u64) -> bool {
        blocks <= self.kv.available_device()
            && chunks <= self.kv.free_table_chunks()
            && entries <= self.plan.blocks.room() as u64
    }

    /// The device blocks and table chunks running request `i` needs to compute `n` more tokens
    /// (engine sequences are never forked, so a partly filled last block is never shared and
    /// growing needs exactly the blocks the new tokens start).
    #[inline]
    fn growth(&self, computed: u32, n: u32) -> (u32, u32) {
        let bs = self.cfg.block_size;
        // Tokens that land in the partly filled last block need nothing (15 of 16 decodes).
        let offset = rem_block(computed, bs);
        if offset != 0 && n <= bs.saturating_sub(offset) {
            return (0, 0);
        }
        self.growth_across(computed, n)
    }

    /// [`Self::growth`] for tokens that start at least one block.
    #[inline(never)]
    fn growth_across(&self, computed: u32, n: u32) -> (u32, u32) {
        let bs = self.cfg.block_size;
        let before = blocks_for(u64::from(computed), bs);
        let after = blocks_for(u64::from(computed).saturating_add(u64::from(n)), bs);
        let blocks = after.saturating_sub(before);
        let chunks = chunks_for_blocks(after).saturating_sub(chunks_for_blocks(before));
        // Both are below the device pool size (< 2^31): the request's tokens fit in it.
        (
            u32::try_from(blocks).unwrap_or(u32::MAX),
            u32::try_from(chunks).unwrap_or(u32::MAX),
        )
    }

    /// One pass over the running set (a second only when some are prefilling): drops requests
    /// that can never fit, gives every decode its token, then prefills their chunks, within
    /// the budget. Returns what all of that needs.
    fn plan_running(&mut self, budget: &mut u32) -> Result<Need, InternalError> {
        let mut need = Need::default();
        let mut prefills = 0u32;
        let mut k = 0usize;
        // Read once: the loop's stores could otherwise, as far as the compiler knows, change it.
        let bs = self.cfg.block_size;
        // Sums below stay far from wrapping: at most `max_running` terms, each below the
        // device pool's size (< 2^32); `k` < `running_len`.
        while k < self.running_len as usize {
            let i = self.running_at(k)?;
            let r = self.req(i)?;
            let (computed, decode, owed) = (r.computed, r.owes_decode(), r.owed());
            if self.never_fits(u64::from(r.num_tokens())) {
                // Can never run again: dropping it moves the last running request to `k`.
                self.drop_request(i, DropReason::ExceedsKvCapacity)?;
                continue;
            }
            let (mut n, mut b, mut c) = (0, 0, 0);
            if decode {
                if *budget > 0 {
                    *budget = budget.wrapping_sub(1);
                    n = 1;
                    // One token lands in the last block unless that block is full
                    // (`growth`'s test for one token).
                    if rem_block(computed, bs) == 0 {
                        (b, c) = self.growth_across(computed, 1);
                    }
                }
            } else if owed > 0 {
                prefills = prefills.saturating_add(1);
            }
            self.set_scheduled(i, n, b, c)?;
            need.blocks = need.blocks.wrapping_add(u64::from(b));
            need.chunks = need.chunks.wrapping_add(u64::from(c));
            k = k.wrapping_add(1);
        }
        if prefills > 0 {
            let chunk_cap = self.chunk_cap();
            for k in 0..self.running_len as usize {
                if *budget == 0 {
                    break;
                }
                let i = self.running_at(k)?;
                let r = self.req(i)?;
                let (owed, computed) = (r.owed(), r.computed);
                if owed == 0 || r.owes_decode() {
                    continue;
                }
                let n = owed.min(chunk_cap).min(*budget);
                *budget = budget.saturating_sub(n);
                let (b, c) = self.growth(computed, n);
                self.set_scheduled(i, n, b, c)?;
                need.blocks = need.blocks.saturating_add(u64::from(b));
                need.chunks = need.chunks.saturating_add(u64::from(c));
            }
        }
        Ok(need)
    }

    /// Records what running request `i` is to compute this step and what that takes.
    fn set_scheduled(
        &mut self,
        i: u32,
        tokens: u32,
        blocks: u32,
        chunks: u32,
    ) -> Result<(), InternalError> {
        let r = self.req_mut(i)?;
        r.sched_tokens = tokens;
        r.sched_blocks = blocks;
        r.sched_chunks = chunks;
        Ok(())
    }

    /// Takes running request `v`'s share out of this step's need and budget (it will not run).
    fn unschedule(
        &mut self,
        v: u32,
        need: &mut Need,
        budget: &mut u32,
    ) -> Result<(), InternalError> {
        let r = self.req_mut(v)?;
        need.blocks = need.blocks.saturating_sub(u64::from(r.sched_blocks));
        need.chunks = need.chunks.saturating_sub(u64::from(r.sched_chunks));
        *budget = budget.saturating_add(r.sched_tokens);
        r.sched_tokens = 0;
        r.sched_blocks = 0;
        r.sched_chunks = 0;
        Ok(())
    }

    /// Gives budget that preemptions returned to running requests that got no tokens in this
    /// step (the budget ran out before them), decodes first, in running order, where their
    /// new blocks, table chunks and block ids fit. Without it, preempting the request that
    /// held the budget could leave the step empty although the others could run.
    fn top_up_running(&mut self, budget: &mut u32) -> Result<(), InternalError> {
        let chunk_cap = self.chunk_cap();
        for pass in 0..2 {
            for k in 0..self.running_len as usize {
                if *budget == 0 {
                    return Ok(());
                }
                let i = self.running_at(k)?;
                let r = self.req(i)?;
                if r.scheduled_step == self.step {
                    continue;
                }
                let owed = r.owed();
                let is_decode = r.owes_decode();
                if owed == 0 || is_decode != (pass == 0) {
                    continue;
                }
                let n = owed.min(chunk_cap).min(*budget);
                let (b, c) = self.growth(r.computed, n);
                if !self.growth_fits(b, c, u64::from(b)) {
                    continue;
                }
                self.run_tokens(i, n, false)?;
                *budget = budget.saturating_sub(n);
            }
        }
        Ok(())
    }

    /// The preemptible running request with the worst competing key, ranking each running
    /// request once.
    fn worst_preemptible(&self) -> Result<Option<(RankKey, u32)>, InternalError> {
        // With the batch full and requests waiting, this ranks the whole running set every
        // step. The size-based policies get a loop each in which the kind is a constant: the
        // rank's dispatch on it, and the rank inputs only other kinds read, fold away.
        let policy = self.cfg.policy;
        let under = |kind| Policy { kind, ..policy };
        match policy.kind {
            PolicyKind::Sprpt => self.worst_preemptible_under(&under(PolicyKind::Sprpt)),
            PolicyKind::MemoryTime => self.worst_preemptible_under(&under(PolicyKind::MemoryTime)),
            _ => self.worst_preemptible_under(&policy),
        }
    }

    /// [`Self::worst_preemptible`] under `policy` (the engine's own, its kind perhaps made a
    /// constant).
    #[inline(always)]
    fn worst_preemptible_under(
        &self,
        policy: &Policy,
    ) -> Result<Option<(RankKey, u32)>, InternalError> {
        let mut worst: Option<(RankKey, u32)> = None;
        for k in 0..self.running_len as usize {
            let i = self.running_at(k)?;
            let (key, preemptible) = self.compete_under(policy, i)?;
            if preemptible && worst.is_none_or(|(w, _)| key > w) {
                worst = Some((key, i));
            }
        }
        Ok(worst)
    }

    /// The per-request prefill chunk cap (`prefill_chunk`, 0 meaning only the budget limits).
    #[inline]
    fn chunk_cap(&self) -> u32 {
        if self.cfg.prefill_chunk == 0 {
            u32::MAX
        } else {
            self.cfg.prefill_chunk
        }
    }

    /// The most recently admitted running request among those `filter` accepts.
    fn latest_admitted(
        &self,
        filter: impl Fn(u32, &super::RequestSlot) -> bool,
    ) -> Result<Option<u32>, InternalError> {
        let mut latest: Option<(u64, u32)> = None;
        for k in 0..self.running_len as usize {
            let i = self.running_at(k)?;
            let r = self.req(i)?;
            if filter(i, r) && latest.is_none_or(|(s, _)| r.admitted_seq > s) {
                latest = Some((r.admitted_seq, i));
            }
        }
        Ok(latest.map(|(_, i)| i))
    }

    /// Whether `need` fits what can be allocated now; the second flag says table chunks are
    /// short (then only freeing a table helps: swapping keeps a table, in the other tier).
    fn shortage(&self, need: &Need) -> (bool, bool) {
        let blocks_short = need.blocks > u64::from(self.kv.available_device());
        let chunks_short = need.chunks > u64::from(self.kv.free_table_chunks());
        (blocks_short || chunks_short, chunks_short)
    }

    /// Frees memory until the running requests' needs fit. Returns whether anything running
    /// was preempted.
    fn make_room(&mut self, need: &mut Need, budget: &mut u32) -> Result<bool, InternalError> {
        let mut preempted = false;
        loop {
            let (short, chunks_short) = self.shortage(need);
            if !short {
                return Ok(preempted);
            }
            if self.idle_kv.len() > 0 {
                self.evict_idle_head(chunks_short)?;
                continue;
            }
            let force = chunks_short.then_some(PreemptionKind::Recompute);
            if self.plan.preempted.len() < self.cfg.max_preemptions_per_step as usize
                && let Some((_, v)) = self.worst_preemptible()?
            {
                self.unschedule(v, need, budget)?;
                self.preempt_as(v, PreemptionCause::Memory, force)?;
                preempted = true;
                continue;
            }
            let mut scheduled = 0u32;
            let mut only = NIL;
            for k in 0..self.running_len as usize {
                let i = self.running_at(k)?;
                if self.req(i)?.sched_tokens > 0 {
                    scheduled = scheduled.saturating_add(1);
                    only = i;
                }
            }
            // What is left has not sampled since its admission (or the preemption cap is
            // reached). Yield in reverse admission order, so the request admitted first keeps
            // its progress and reaches its sampling point: ordering these by rank instead lets
            // two requests whose ranks flip as they prefill take turns throwing each other's
            // work away forever.
            if scheduled >= 2 {
                // The most recently admitted scheduled request waits a step.
                let v = self
                    .latest_admitted(|_, r| r.sched_tokens > 0)?
                    .or_broken("two scheduled requests but no latest")?;
                self.unschedule(v, need, budget)?;
                continue;
            }
            // One request left and it does not fit: preempt others regardless of protection
            // and of the cap, most recently admitted first, so the step makes progress. Every
            // preemption is reported (the list holds one per running request).
            match self.latest_admitted(|i, _| i != only)? {
                Some(v) => {
                    self.unschedule(v, need, budget)?;
                    self.preempt_as(v, PreemptionCause::Memory, force)?;
                    preempted = true;
                }
                None => return Ok(preempted),
            }
        }
    }

    /// The preemption rank preemption would make now, the running requests needing `need`:
    /// the head of the queue `w`, when it outranks the worst running request `v` by the
    /// margin and could not start otherwise, and whether memory would let `w` start
    /// (`memory_ok`: then only the batch is full). `None` when it would preempt nothing.
    fn rank_preemption_target(&self, need: &Need) -> Result<Option<RankTarget>, InternalError> {
        let (Some(w), Some(kw)) = (self.queue.peek(self.tenants), self.queue.head_key()) else {
            return Ok(None);
        };
        if self.unsent_swap_out(w)?.is_some() {
            // Its KV is still on its way to the host: it cannot start in this plan, so
            // preempting for it would only throw work away.
            return Ok(None);
        }
        if self.preempted_now(w) {
            // The request just preempted now heads the queue (its rank improved when it
            // lost its KV, e.g. slack counts the prefill it must redo): promoting it would
            // run it in the plan that preempts it.
            return Ok(None);
        }
        // Only lasting limits justify a preemption: a full batch or memory. A spent token
        // budget is not one (the request gets budget next step, and the victim's work would
        // be thrown away), so the check runs with a full step's budget. Checked first: it
        // spares the scan of the running set whenever the head can simply start.
        let supply = Supply {
            blocks: u64::from(self.kv.available_device()).saturating_sub(need.blocks),
            chunks: u64::from(self.kv.free_table_chunks()).saturating_sub(need.chunks),
        };
        let memory_ok = self
            .plan_admission(w, self.cfg.token_budget, supply)?
            .is_ok();
        if memory_ok && self.running_len < self.cfg.max_running {
            return Ok(None);
        }
        let Some((key_v, v)) = self.worst_preemptible()? else {
            return Ok(None);
        };
        // Ranks are never NaN (inputs are validated), so `>=` is the plain negation.
        let improves = kw.rank() + self.cfg.priority_margin < key_v.rank();
        Ok(improves.then_some(RankTarget { w, v, memory_ok }))
    }

    /// Rank preemption: while the head of the queue outranks the worst running request by the
    /// margin and could not start otherwise, preempt and promote. Returns the promoted list
    /// (linked through `promoted_next`).
    fn preempt_for_rank(
        &mut self,
        need: &mut Need,
        budget: &mut u32,
    ) -> Result<u32, InternalError> {
        let mut head = NIL;
        let mut tail = NIL;
        while self.plan.preempted.len() < self.cfg.max_preemptions_per_step as usize {
            let Some(RankTarget { w, v, memory_ok }) = self.rank_preemption_target(need)? else {
                break;
            };
            // Only the batch is full: keep the victim's KV where it is, losing nothing. Memory
            // is short: swap it out if the mode and the host allow, recompute only if allowed.
            let how = if memory_ok {
                PreemptionKind::Keep
            } else if self.cfg.preemption != PreemptionMode::Recompute
                && self.swap_out_size(v)?.is_some()
            {
                PreemptionKind::Swap
            } else if self.cfg.rank_preemption_may_recompute {
                PreemptionKind::Recompute
            } else {
                break;
            };
            self.unschedule(v, need, budget)?;
            self.preempt_as(v, PreemptionCause::Rank, Some(how))?;
            self.dequeue(w)?;
            self.req_mut(w)?.promoted_next = NIL;
            if tail == NIL {
                head = w;
            } else {
                self.req_mut(tail)?.promoted_next = w;
            }
            tail = w;
        }
        Ok(head)
    }

    /// Takes `w` off the front of the promoted list (or the queue) as it is admitted or
    /// dropped, returning the promoted list's new head.
    fn take_candidate(
        &mut self,
        w: u32,
        from_promoted: bool,
        promoted: u32,
    ) -> Result<u32, InternalError> {
        if from_promoted {
            let r = self.req_mut(w)?;
            let next = core::mem::replace(&mut r.promoted_next, NIL);
            Ok(next)
        } else {
            self.dequeue(w)?;
            Ok(promoted)
        }
    }

    /// Admits promoted requests, then the queue's head, in order, until one does not fit.
    /// A request whose KV this plan is still swapping out steps aside for this plan (it keeps
    /// its place: it is queued again with its key afterwards).
    fn admit_waiting(&mut self, mut promoted: u32, budget: &mut u32) -> Result<(), InternalError> {
        let mut in_transit = NIL;
        loop {
            let (w, from_promoted) = if promoted != NIL {
                (promoted, true)
            } else if let Some(w) = self.queue.peek(self.tenants) {
                (w, false)
            } else {
                break;
            };
            if self.running_len >= self.cfg.max_running
                || *budget == 0
                || self.plan.entries.room() == 0
            {
                break;
            }
            if !from_promoted && self.preempted_now(w) {
                // Preempted in this very step (for rank, to make room for a promoted request):
                // it keeps its place at the head but does not run again in the same plan, which
                // would discard or swap out its KV only to recompute or swap it back in.
                break;
            }
            if self.req(w)?.state == SlotState::Swapped && self.unsent_swap_out(w)?.is_some() {
                promoted = self.take_candidate(w, from_promoted, promoted)?;
                self.req_mut(w)?.promoted_next = in_transit;
                in_transit = w;
                continue;
            }
            if self.never_fits(u64::from(self.req(w)?.num_tokens()).saturating_add(1)) {
                if self.plan.dropped.room() == 0 {
                    break;
                }
                promoted = self.take_candidate(w, from_promoted, promoted)?;
                self.drop_request(w, DropReason::ExceedsKvCapacity)?;
                continue;
            }
            let supply = Supply {
                blocks: u64::from(self.kv.available_device()),
                chunks: u64::from(self.kv.free_table_chunks()),
            };
            match self.plan_admission(w, *budget, supply)? {
                Ok(adm) => {
                    promoted = self.take_candidate(w, from_promoted, promoted)?;
                    self.admit(w, adm)?;
                    *budget = budget.saturating_sub(adm.chunk);
                }
                Err(NoFit::Blocks) if self.idle_kv.len() > 0 => self.evict_idle_head(false)?,
                Err(NoFit::Chunks) if self.idle_kv.len() > 0 => self.evict_idle_head(true)?,
                Err(_) => break,
            }
        }
        for mut list in [promoted, in_transit] {
            while list != NIL {
                let w = list;
                list = self.take_candidate(w, true, list)?;
                let state = self.req(w)?.state;
                self.enqueue(w, state)?;
            }
        }
        Ok(())
    }

    /// Whether request `i` was preempted in the step being planned.
    fn preempted_now(&self, i: u32) -> bool {
        self.plan
            .preempted
            .as_slice()
            .iter()
            .any(|x| x.handle.index() == i)
    }

    /// Blocks `i` may need in all: what the admission mode reserves (0 for eager), and at
    /// least its whole context (prompt, appended tokens, output so far) when its KV was thrown
    /// away for memory since it was last admitted (`memory_evicted`: a recompute preemption
    /// for memory, or its kept KV evicted). Admission checks that this fits beside the
    /// running requests and holds the part beyond the first chunk as a reservation.
    ///
    /// Why the floor (issue 9, preemption ping-pong). Under eager admission a request
    /// preempted for memory came back as soon as its next prefill chunk fit, which was at
    /// once: its own blocks had just been freed. Its following chunk, or the others' growth,
    /// then ran memory out again; a readmitted request is not a victim until it samples, so a
    /// running request was evicted instead, and came back the same way. Two requests that
    /// cannot both fit took turns recomputing their whole contexts for one token of progress
    /// per round (`augur simulate --trace
    /// synthetic:n=2,output=const:4294967295,max_output=4294967295`: 174,260 preemptions, 3.2e10
    /// tokens recomputed, before both were dropped as too large). With the floor a victim
    /// returns only once its whole context fits, i.e. once memory has really been freed (a
    /// request finished, was dropped or was evicted in turn), so each eviction is paid for by
    /// that freeing rather than repeated at every chunk. In vLLM's terms: a request evicted for
    /// memory does not come back to evict the request it yielded to while that one still needs
    /// the room.
    ///
    /// It changes nothing for requests never evicted for memory, and nothing for an evicted
    /// one whose context fits in its first chunk (the chunk is then its whole context) unless
    /// the step's token budget cuts that chunk short.
    fn reserve_target(&self, i: u32) -> Result<u64, InternalError> {
        let floor = if self.req(i)?.memory_evicted {
            blocks_for(u64::from(self.req(i)?.num_tokens()), self.cfg.block_size)
        } else {
            0
        };
        Ok(self.mode_reserve_target(i)?.max(floor))
    }

    /// Blocks `i` may need in all under the admission mode alone (0 for eager).
    fn mode_reserve_target(&self, i: u32) -> Result<u64, InternalError> {
        let r = self.req(i)?;
        let bs = self.cfg.block_size;
        let total = u64::from(r.num_tokens());
        let prompt = u64::from(r.prompt_tokens).saturating_add(u64::from(r.extra_prompt));
        let by_output =
            (r.max_output != u32::MAX).then(|| prompt.saturating_add(r.max_output.into()));
        let limit = u64::from(self.cfg.token_limit());
        let cap = by_output.map_or(limit, |c| c.min(limit));
        Ok(match self.cfg.admission {
            AdmissionMode::Eager => 0,
            AdmissionMode::FullPrompt => blocks_for(total, bs),
            AdmissionMode::Predicted { headroom } => {
                let ri = self.rank_input(i)?;
                let rem =
                    (self.cfg.policy.effective_prediction(&ri) - ri.attained).max(0.0) * headroom;
                // `as` saturates; the value is capped to the u32 range first.
                let extra = libm::ceil(rem).min(f64::from(u32::MAX)) as u64;
                blocks_for(total.saturating_add(extra).min(cap.max(total)), bs)
            }
            AdmissionMode::WorstCase => {
                blocks_for(cap.max(total), bs).min(u64::from(self.cfg.device_blocks))
            }
        })
    }

    /// Whether waiting request `w` can start now with `budget` tokens and `supply` blocks
    /// and chunks, and how. The outer error is a broken invariant; the inner says why not.
    fn plan_admission(
        &self,
        w: u32,
        budget: u32,
        supply: Supply,
    ) -> Result<Result<Admission, NoFit>, InternalError> {
        let r = self.req(w)?;
        let bs = self.cfg.block_size;
        let total = r.num_tokens();
        let chunk_cap = self.chunk_cap();
        let info = match r.seq() {
            Some(s) => Some(
                self.kv
                    .seq_info(s)
                    .map_err(|_| InternalError::new("a request holds a stale sequence"))?,
            ),
            None => None,
        };
        // (how, tokens now, device blocks taken, table chunks taken, table length after)
        let (kind, chunk, blocks, chunks, blocks_after) = match info {
            None => {
                // The last prompt token is always computed (it samples), so its block is
                // never taken from the cache.
                let cap = div_block(total.saturating_sub(1), bs);
                let m = self
                    .kv
                    .lookup_prefix_iter(r.cache_salt, prompt_hashes(&self.hashes, &r.hashes, cap));
                let hit_tokens = m.blocks.saturating_mul(bs);
                let chunk = total.saturating_sub(hit_tokens).min(chunk_cap).min(budget);
                let after = blocks_for(u64::from(hit_tokens).saturating_add(chunk.into()), bs);
                (
                    AdmitKind::Fresh {
                        hit_blocks: m.blocks,
                    },
                    chunk,
                    after
                        .saturating_sub(u64::from(m.blocks))
                        .saturating_add(m.idle.into()),
                    chunks_for_blocks(after),
                    after,
                )
            }
            Some(x) => {
                let chunk = r.owed().min(chunk_cap).min(budget);
                let after = blocks_for(u64::from(r.computed).saturating_add(chunk.into()), bs);
                let held = u64::from(x.num_blocks);
                let chunks = chunks_for_blocks(after).saturating_sub(chunks_for_blocks(held));
                if x.tier == Tier::Host {
                    // A request whose KV this plan is still swapping out never gets here: both
                    // callers set it aside first (`unsent_swap_out`).
                    if x.num_blocks as usize > self.plan.swap_in.room() {
                        return Ok(Err(NoFit::Policy));
                    }
                    (AdmitKind::Swapped, chunk, after.max(held), chunks, after)
                } else {
                    (
                        AdmitKind::Resident,
                        chunk,
                        after.saturating_sub(held),
                        chunks,
                        after,
                    )
                }
            }
        };
        if chunk == 0 {
            return Ok(Err(NoFit::Policy));
        }
        if blocks > supply.blocks {
            return Ok(Err(NoFit::Blocks));
        }
        if chunks > supply.chunks {
            return Ok(Err(NoFit::Chunks));
        }
        if blocks_after > self.plan.blocks.room() as u64 {
            return Ok(Err(NoFit::Policy));
        }
        let reserve_target = self.reserve_target(w)?;
        if self.running_len > 0 {
            let reserve_left = reserve_target.saturating_sub(blocks_after);
            let needed = blocks
                .saturating_add(reserve_left)
                .saturating_add(self.outstanding_reserve)
                .saturating_add(self.watermark_blocks.into());
            if needed > supply.blocks {
                return Ok(Err(NoFit::Policy));
            }
        }
        Ok(Ok(Admission {
            kind,
            chunk,
            reserve_target,
        }))
    }

    /// Starts waiting request `w` (already out of the queue) as planned.
    fn admit(&mut self, w: u32, adm: Admission) -> Result<(), InternalError> {
        let bs = self.cfg.block_size;
        match adm.kind {
            AdmitKind::Fresh { hit_blocks } => {
                let salt = self.req(w)?.cache_salt;
                let seq = self
                    .kv
                    .create_seq_in(salt)
                    .map_err(|_| InternalError::new("no sequence slot for an admitted request"))?;
                let r = self.req(w)?;
                let cap = div_block(r.num_tokens().saturating_sub(1), bs);
                let got = self
                    .kv
                    .attach_prefix_iter(seq, prompt_hashes(&self.hashes, &r.hashes, cap))
                    .map_err(|_| InternalError::new("planned prefix attach refused"))?;
                if got != hit_blocks {
                    return Err(InternalError::new("prefix hit differs from the plan's"));
                }
                let r = self.req_mut(w)?;
                r.seq_raw = seq.to_raw();
                r.computed = got.saturating_mul(bs);
                let prompt = r.prompt_tokens.saturating_add(r.extra_prompt);
                let hit = r.computed.min(prompt);
                self.stats.prompt_tokens_admitted = self
                    .stats
                    .prompt_tokens_admitted
                    .saturating_add(prompt.into());
                self.stats.prefix_hit_tokens =
                    self.stats.prefix_hit_tokens.saturating_add(hit.into());
            }
            AdmitKind::Swapped => {
                let seq = self.req(w)?.seq().or_broken("swapped request without KV")?;
                let p = &mut self.plan;
                let n = self
                    .kv
                    .swap_in(seq, p.swap_in.spare_mut())
                    .map_err(|_| InternalError::new("planned swap-in refused"))?;
                p.swap_in
                    .commit(n as usize, "swap-in pairs past the list")?;
                p.swapped_in = true;
            }
            AdmitKind::Resident => {
                if self.req(w)?.idle_listed {
                    self.idle_remove(w)?;
                }
            }
        }
        self.add_running(w)?;
        self.admissions = self.admissions.saturating_add(1);
        let admissions = self.admissions;
        let r = self.req_mut(w)?;
        r.sampled_since_admit = false;
        r.memory_evicted = false;
        r.admitted_seq = admissions;
        // Reserve what the mode asks for beyond the blocks held now; `run_tokens` then counts
        // this step's new blocks against it.
        let seq = r.seq().or_broken("admitted request without KV")?;
        let held = self.kv.seq_info(seq).map_or(0, |x| x.num_blocks);
        let left = adm.reserve_target.saturating_sub(held.into());
        let left = u32::try_from(left).unwrap_or(u32::MAX);
        self.req_mut(w)?.reserve_left = left;
        self.outstanding_reserve = self.outstanding_reserve.saturating_add(left.into());
        self.run_tokens(w, adm.chunk, true)
    }

    /// Allocates `n` more tokens for running request `i` and emits its plan entry; with
    /// `whole_table` the entry carries the full block table (newly admitted requests). The
    /// caller has checked that the blocks, table chunks and plan room are there. Inlined: the
    /// step calls it once per running request, and its in-place path is a few dozen
    /// instructions that a call's register saves and restores would add a third to.
    #[inline(always)]
    fn run_tokens(&mut self, i: u32, n: u32, whole_table: bool) -> Result<(), InternalError> {
        let r = self.req(i)?;
        let seq = r.seq().or_broken("running request without KV")?;
        let blocks_start = self.plan.blocks.len();
        // Most decodes land in the table's last block: no allocation, nothing to read back.
        let in_place = if whole_table {
            None
        } else {
            self.kv.append_in_place(seq, n).map_err(growth_refused)?
        };
        let (table_start, read) = match in_place {
            Some(len) => (len, 0),
            None => self.grow_table(i, seq, n, whole_table)?,
        };
        let r = self.req_mut(i)?;
        // Below `TOKEN_LIMIT` (< 2^31), and `n` is at most what the request owes.
        let after = r.computed.wrapping_add(n);
        let samples = after == r.num_tokens();
        let kind = if n == 1 && r.generated > 0 && samples {
            EntryKind::Decode
        } else {
            EntryKind::Prefill
        };
        let run = TokenRun {
            n,
            kind,
            samples,
            table_start,
            blocks_offset: blocks_start,
            blocks_len: read,
        };
        self.record_run(i, run)
    }

    /// The plan entry of a run, pushed, and the request's and engine's counters moved past
    /// it: the end [`Self::run_tokens`] and the steady pass ([`Self::plan_decodes`]) share.
    #[inline(always)]
    fn record_run(&mut self, i: u32, run: TokenRun) -> Result<(), InternalError> {
        let step = self.step;
        let r = self
            .reqs
            .get_mut(i as usize)
            .or_broken("request index out of range")?;
        let before = r.computed;
        // Below `TOKEN_LIMIT` (< 2^31), and `n` is at most what the request owes.
        let after = before.wrapping_add(run.n);
        let entry = ScheduledEntry {
            handle: RequestHandle::new(i, r.generation),
            external_id: r.external_id,
            kind: run.kind,
            tokens: run.n,
            computed_before: before,
            samples: run.samples,
            table_start: run.table_start,
            blocks_offset: u32::try_from(run.blocks_offset).unwrap_or(u32::MAX),
            blocks_len: u32::try_from(run.blocks_len).unwrap_or(u32::MAX),
        };
        // Tokens below `recompute_upto` were computed before a preemption discarded them.
        let upto = r.recompute_upto;
        r.computed = after;
        r.sched_from = before;
        r.sched_tokens = run.n;
        r.scheduled_step = step;
        r.reported = false;
        if upto > before {
            let recomputed = after.min(upto).wrapping_sub(before); // no wrap: both ≥ before
            self.stats.recomputed_tokens = self
                .stats
                .recomputed_tokens
                .saturating_add(recomputed.into());
        }
        self.plan
            .entries
            .push(entry, "plan entries past max_running")?;
        // At most one entry per running request: far below `u32::MAX`.
        self.awaiting = self.awaiting.wrapping_add(1);
        Ok(())
    }

    /// `run_tokens`' path for tokens that start blocks (or a whole new table): allocates
    /// them, accounts them against the reservation, and copies the changed table entries
    /// into the plan. Returns the entry's `table_start` and how many block ids it wrote. Kept
    /// out of line so that the in-place decode path stays small.
    #[inline(never)]
    fn grow_table(
        &mut self,
        i: u32,
        seq: crate::kv::SeqHandle,
        n: u32,
        whole_table: bool,
    ) -> Result<(u32, usize), InternalError> {
        // Most growth of a running request is one block (a decode, a short chunk): no copy,
        // and the one new id is the only table entry to send.
        if !whole_table
            && let Some((at, block)) = self.kv.append_one_block(seq, n).map_err(growth_refused)?
        {
            self.consume_reserve(i, 1)?;
            self.plan
                .blocks
                .push(block, "plan block ids past the list")?;
            return Ok((at, 1));
        }
        let out = self.kv.append_tokens(seq, n).map_err(growth_refused)?;
        self.consume_reserve(i, out.changed)?;
        let p = &mut self.plan;
        if let Some(c) = out.copy {
            p.copies.push(c, "copy-on-write pairs past the list")?;
        }
        let table_start = if whole_table { 0 } else { out.first_changed };
        if !whole_table && out.changed == 0 {
            return Ok((table_start, 0));
        }
        let read = self
            .kv
            .read_table(seq, table_start, p.blocks.spare_mut())
            .map_err(|_| InternalError::new("plan block list too short for a table"))?;
        p.blocks.commit(read, "plan block ids past the list")?;
        Ok((table_start, read))
    }

    /// Preempts running request `v` — by `how`, or by the configured mode when `None` — and
    /// requeues it with its current rank and original arrival order. A swap that cannot be
    /// done falls back to recompute. Every preemption is reported in the plan.
    fn preempt_as(
        &mut self,
        v: u32,
        cause: PreemptionCause,
        how: Option<PreemptionKind>,
    ) -> Result<(), InternalError> {
        let want_swap = match how {
            None => self.prefers_swap(v)?,
            Some(k) => k == PreemptionKind::Swap,
        };
        self.remove_running(v)?;
        let kind = if how == Some(PreemptionKind::Keep) {
            self.enqueue(v, SlotState::Waiting)?;
            self.idle_push(v)?;
            self.stats.preemptions_keep = self.stats.preemptions_keep.saturating_add(1);
            PreemptionKind::Keep
        } else if want_swap && self.try_swap_out(v)? {
            self.enqueue(v, SlotState::Swapped)?;
            self.stats.preemptions_swap = self.stats.preemptions_swap.saturating_add(1);
            PreemptionKind::Swap
        } else {
            self.discard_kv(v)?;
            self.enqueue(v, SlotState::Waiting)?;
            self.stats.preemptions_recompute = self.stats.preemptions_recompute.saturating_add(1);
            PreemptionKind::Recompute
        };
        if cause == PreemptionCause::Rank {
            self.stats.preemptions_for_rank = self.stats.preemptions_for_rank.saturating_add(1);
        }
        let r = self.req_mut(v)?;
        r.preemptions = r.preemptions.saturating_add(1);
        if cause == PreemptionCause::Memory && kind == PreemptionKind::Recompute {
            // Admitted again only when its whole context fits (`reserve_target`).
            r.memory_evicted = true;
        }
        let record = Preemption {
            handle: RequestHandle::new(v, r.generation),
            external_id: r.external_id,
            kind,
            cause,
        };
        self.plan
            .preempted
            .push(record, "more preemptions than running requests")
    }

    /// Evicts the KV of the request idle the longest (paused, or preempted with its KV kept):
    /// a paused one by the pause mode, a waiting one by the preemption mode — swapped if that
    /// mode allows and the host has room, else discarded. With `must_free_table` (table
    /// chunks are short) it is discarded: a swap keeps the table.
    fn evict_idle_head(&mut self, must_free_table: bool) -> Result<(), InternalError> {
        let Some(i) = self.idle_kv.pop_front(&mut *self.reqs)? else {
            return Ok(());
        };
        self.req_mut(i)?.idle_listed = false;
        let paused = self.req(i)?.state == SlotState::Paused;
        let swap = !must_free_table
            && if paused {
                matches!(self.cfg.pause, PauseMode::Swap | PauseMode::Auto)
            } else {
                self.prefers_swap(i)?
            };
        if swap && self.try_swap_out(i)? {
            if !paused {
                self.set_state(i, SlotState::Swapped)?;
            }
        } else {
            self.discard_kv(i)?;
            // Thrown away for memory like a recompute preemption: it comes back only when its
            // whole context fits (`reserve_target`).
            self.req_mut(i)?.memory_evicted = true;
        }
        self.stats.idle_evicted = self.stats.idle_evicted.saturating_add(1);
        Ok(())
    }

    /// Whether the preemption mode swaps `i` rather than recomputing it.
    fn prefers_swap(&self, i: u32) -> Result<bool, InternalError> {
        let c = self.cfg.costs;
        let r = self.req(i)?;
        let blocks = r
            .seq()
            .and_then(|s| self.kv.seq_info(s).ok())
            .map_or(0, |x| x.num_blocks);
        Ok(match self.cfg.preemption {
            PreemptionMode::Recompute => false,
            PreemptionMode::Swap => true,
            PreemptionMode::Auto => {
                2.0 * f64::from(blocks) * c.swap_us_per_block
                    < f64::from(r.computed) * c.recompute_us_per_token
            }
        })
    }

    /// Removes request `i` for good, recording why in the plan.
    fn drop_request(&mut self, i: u32, reason: DropReason) -> Result<(), InternalError> {
        let r = self.req(i)?;
        let record = Dropped {
            handle: RequestHandle::new(i, r.generation),
            external_id: r.external_id,
            reason,
        };
        self.plan
            .dropped
            .push(record, "more drops than the plan can report")?;
        self.release(i)?;
        self.stats.dropped = self.stats.dropped.saturating_add(1);
        Ok(())
    }
}

/// The error of `run_tokens` and `grow_table` when the block manager refuses growth that
/// planning counted on: the plan and the block manager disagree, an internal invariant.
fn growth_refused(_: crate::kv::KvError) -> InternalError {
    InternalError::new("planned growth refused by the block manager")
}
