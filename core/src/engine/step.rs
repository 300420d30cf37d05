//! `schedule`: one step (see the module docs of [`crate::engine`] for the order of passes).

use super::config::AdmissionMode;
use super::plan::{
    DropReason, Dropped, EntryKind, Plan, Preemption, PreemptionCause, PreemptionKind,
    ScheduleError, ScheduledEntry,
};
use super::request::{STATE_PAUSED, STATE_SWAPPED, STATE_WAITING};
use super::{Engine, blocks_for};
use crate::kv::Tier;
use crate::queue::RankKey;
use crate::time::Instant;
use crate::util::NIL;

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
    /// Not enough free blocks at all.
    Physical,
    /// Budget, plan capacity, reservations or the watermark.
    Policy,
}

impl<'a> Engine<'a> {
    /// Decides the next step. The plan stays readable (also via [`Engine::plan`]) until the
    /// next call that changes the engine. Every entry must be reported with
    /// [`Engine::complete`] (or its request aborted) before the next `schedule`.
    pub fn schedule(&mut self, now: Instant) -> Result<Plan<'_>, ScheduleError> {
        if self.awaiting > 0 {
            return Err(ScheduleError::ResultsPending {
                missing: self.awaiting,
            });
        }
        if !self.check_time(now) {
            return Err(ScheduleError::TimeWentBackwards);
        }
        self.step += 1;
        self.stats.steps += 1;
        let p = &mut self.plan;
        p.entries_len = 0;
        p.blocks_len = 0;
        p.swap_in_len = 0;
        p.copies_len = 0;
        p.preempted_len = 0;
        p.dropped_len = 0;
        if !p.swap_out_pending {
            p.swap_out_len = 0;
        }
        p.swap_out_pending = false;

        let mut budget = self.cfg.token_budget;
        let mut need = self.plan_running(&mut budget);

        let mut preemptions = 0u32;
        let memory_preempted = self.make_room(&mut need, &mut budget, &mut preemptions);
        let mut promoted = NIL;
        if !memory_preempted && self.cfg.policy.preempts_for_rank() {
            promoted = self.preempt_for_rank(&mut need, &mut budget, &mut preemptions);
        }
        for k in 0..self.running_len as usize {
            let i = self.running[k];
            let n = self.reqs[i as usize].sched_tokens;
            if n > 0 {
                self.run_tokens(i, n, false);
            }
        }
        if !memory_preempted {
            self.admit_waiting(promoted, &mut budget);
        }
        if preemptions > 0 && budget > 0 {
            self.top_up_running(&mut budget);
        }
        Ok(self.plan())
    }

    /// One pass over the running set (a second only when some are prefilling): drops requests
    /// that can never fit, gives every decode its token, then prefills their chunks, within
    /// the budget. Returns the blocks all of that needs.
    fn plan_running(&mut self, budget: &mut u32) -> u64 {
        let bs = self.cfg.block_size;
        let device = self.cfg.device_blocks as u64;
        let mut need = 0u64;
        let mut prefills = 0u32;
        let mut k = 0usize;
        while k < self.running_len as usize {
            let i = self.running[k];
            let r = &mut self.reqs[i as usize];
            let total = r.num_tokens();
            if blocks_for(total as u64, bs) > device {
                // Can never run again: dropping it moves the last running request to `k`.
                self.drop_request(i, DropReason::ExceedsKvCapacity);
                continue;
            }
            let owed = total - r.computed;
            r.sched_tokens = 0;
            r.sched_blocks = 0;
            if r.owes_decode() {
                if *budget > 0 {
                    *budget -= 1;
                    r.sched_tokens = 1;
                    // Engine sequences are never forked, so a partly filled last block is
                    // never shared: growing needs exactly the blocks the new tokens start.
                    let b = (blocks_for(r.computed as u64 + 1, bs)
                        - blocks_for(r.computed as u64, bs)) as u32;
                    r.sched_blocks = b;
                    need += b as u64;
                }
            } else if owed > 0 {
                prefills += 1;
            }
            k += 1;
        }
        if prefills > 0 {
            let chunk_cap = self.chunk_cap();
            for k in 0..self.running_len as usize {
                if *budget == 0 {
                    break;
                }
                let r = &mut self.reqs[self.running[k] as usize];
                let owed = r.num_tokens() - r.computed;
                if owed == 0 || r.owes_decode() {
                    continue;
                }
                let n = owed.min(chunk_cap).min(*budget);
                *budget -= n;
                r.sched_tokens = n;
                let b = (blocks_for((r.computed + n) as u64, bs)
                    - blocks_for(r.computed as u64, bs)) as u32;
                r.sched_blocks = b;
                need += b as u64;
            }
        }
        need
    }

    /// Gives budget that preemptions returned to running requests that got no tokens in this
    /// step (the budget ran out before them), decodes first, in running order, where their
    /// new blocks fit. Without it, preempting the request that held the budget could leave
    /// the step empty although the others could run.
    fn top_up_running(&mut self, budget: &mut u32) {
        let chunk_cap = self.chunk_cap();
        for pass in 0..2 {
            for k in 0..self.running_len as usize {
                if *budget == 0 {
                    return;
                }
                let i = self.running[k];
                let r = &self.reqs[i as usize];
                if r.scheduled_step == self.step {
                    continue;
                }
                let owed = r.num_tokens() - r.computed;
                let is_decode = r.owes_decode();
                if owed == 0 || is_decode != (pass == 0) {
                    continue;
                }
                let Some(seq) = r.seq() else { continue };
                let n = owed.min(chunk_cap).min(*budget);
                let b = self
                    .kv
                    .blocks_needed(seq, r.computed + n)
                    .unwrap_or(u32::MAX);
                if b > self.kv.available_device() {
                    continue;
                }
                self.run_tokens(i, n, false);
                *budget -= n;
            }
        }
    }

    /// The preemptible running request with the worst competing key, ranking each running
    /// request once.
    fn worst_preemptible(&self) -> Option<(RankKey, u32)> {
        let mut worst: Option<(RankKey, u32)> = None;
        for k in 0..self.running_len as usize {
            let i = self.running[k];
            let (key, preemptible) = self.compete(i);
            if preemptible && worst.is_none_or(|(w, _)| key > w) {
                worst = Some((key, i));
            }
        }
        worst
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
    fn latest_admitted(&self, filter: impl Fn(u32) -> bool) -> Option<u32> {
        let mut latest: Option<(u64, u32)> = None;
        for k in 0..self.running_len as usize {
            let i = self.running[k];
            let seq = self.reqs[i as usize].admitted_seq;
            if filter(i) && latest.is_none_or(|(s, _)| seq > s) {
                latest = Some((seq, i));
            }
        }
        latest.map(|(_, i)| i)
    }

    /// Frees memory until the running requests' needs fit. Returns whether anything running
    /// was preempted.
    fn make_room(&mut self, need: &mut u64, budget: &mut u32, preemptions: &mut u32) -> bool {
        let mut preempted = false;
        loop {
            if *need <= self.kv.available_device() as u64 {
                return preempted;
            }
            if self.idle_kv.len() > 0 {
                self.evict_idle_head();
                continue;
            }
            if *preemptions < self.cfg.max_preemptions_per_step
                && let Some((_, v)) = self.worst_preemptible()
            {
                *need -= self.reqs[v as usize].sched_blocks as u64;
                *budget += self.reqs[v as usize].sched_tokens;
                self.preempt(v, PreemptionCause::Memory);
                *preemptions += 1;
                preempted = true;
                continue;
            }
            let mut scheduled = 0u32;
            let mut only = NIL;
            for k in 0..self.running_len as usize {
                let i = self.running[k];
                if self.reqs[i as usize].sched_tokens > 0 {
                    scheduled += 1;
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
                    .latest_admitted(|i| self.reqs[i as usize].sched_tokens > 0)
                    .expect("two scheduled");
                let r = &mut self.reqs[v as usize];
                *need -= r.sched_blocks as u64;
                *budget += r.sched_tokens;
                r.sched_tokens = 0;
                r.sched_blocks = 0;
                continue;
            }
            // One request left and it does not fit: preempt others regardless of protection
            // and of the cap, most recently admitted first, so the step makes progress.
            match self.latest_admitted(|i| i != only) {
                Some(v) => {
                    *need -= self.reqs[v as usize].sched_blocks as u64;
                    self.preempt(v, PreemptionCause::Memory);
                    *preemptions += 1;
                    preempted = true;
                }
                None => return preempted,
            }
        }
    }

    /// Rank preemption: while the head of the queue outranks the worst running request by the
    /// margin and could not start otherwise, preempt and promote. Returns the promoted list.
    fn preempt_for_rank(&mut self, need: &mut u64, budget: &mut u32, preemptions: &mut u32) -> u32 {
        let mut head = NIL;
        let mut tail = NIL;
        while *preemptions < self.cfg.max_preemptions_per_step {
            let (Some(w), Some(kw)) = (self.queue.peek(self.tenants), self.queue.head_key()) else {
                break;
            };
            if self.preempted_now(w) {
                // The request just preempted now heads the queue (its rank improved when it
                // lost its KV, e.g. slack counts the prefill it must redo): promoting it would
                // run it in the plan that preempts it.
                break;
            }
            // Only lasting limits justify a preemption: a full batch or memory. A spent token
            // budget is not one (the request gets budget next step, and the victim's work would
            // be thrown away), so the check runs with a full step's budget. Checked first: it
            // spares the scan of the running set whenever the head can simply start.
            let avail = (self.kv.available_device() as u64).saturating_sub(*need) as u32;
            let memory_ok = self.plan_admission(w, self.cfg.token_budget, avail).is_ok();
            if memory_ok && self.running_len < self.cfg.max_running {
                break;
            }
            let Some((key_v, v)) = self.worst_preemptible() else {
                break;
            };
            // Ranks are never NaN (inputs are validated), so `>=` is the plain negation.
            let improves = kw.rank() + self.cfg.priority_margin < key_v.rank();
            if !improves {
                break;
            }
            // Only the batch is full: keep the victim's KV where it is, losing nothing. Memory
            // is short: swap it out if the mode and the host allow, recompute only if allowed.
            let how = if memory_ok {
                PreemptionKind::Keep
            } else if self.cfg.preemption != super::PreemptionMode::Recompute
                && self.can_swap_out(v)
            {
                PreemptionKind::Swap
            } else if self.cfg.rank_preemption_may_recompute {
                PreemptionKind::Recompute
            } else {
                break;
            };
            *need -= self.reqs[v as usize].sched_blocks as u64;
            *budget += self.reqs[v as usize].sched_tokens;
            self.preempt_as(v, PreemptionCause::Rank, Some(how));
            *preemptions += 1;
            self.dequeue(w);
            self.reqs[w as usize].next_free = NIL;
            if tail == NIL {
                head = w;
            } else {
                self.reqs[tail as usize].next_free = w;
            }
            tail = w;
        }
        head
    }

    /// Admits promoted requests, then the queue's head, in order, until one does not fit.
    fn admit_waiting(&mut self, mut promoted: u32, budget: &mut u32) {
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
                || self.plan.entries_len >= self.plan.entries.len()
            {
                break;
            }
            if !from_promoted && self.preempted_now(w) {
                // Preempted in this very step (for rank, to make room for a promoted request):
                // it keeps its place at the head but does not run again in the same plan, which
                // would discard or swap out its KV only to recompute or swap it back in.
                break;
            }
            let r = &self.reqs[w as usize];
            if blocks_for(r.num_tokens() as u64 + 1, self.cfg.block_size)
                > self.cfg.device_blocks as u64
            {
                if self.plan.dropped_len >= self.plan.dropped.len() {
                    break;
                }
                if from_promoted {
                    promoted = self.reqs[w as usize].next_free;
                    self.reqs[w as usize].next_free = NIL;
                }
                self.drop_request(w, DropReason::ExceedsKvCapacity);
                continue;
            }
            let avail = self.kv.available_device();
            match self.plan_admission(w, *budget, avail) {
                Ok(adm) => {
                    if from_promoted {
                        promoted = self.reqs[w as usize].next_free;
                        self.reqs[w as usize].next_free = NIL;
                    } else {
                        self.dequeue(w);
                    }
                    self.admit(w, adm);
                    *budget -= adm.chunk;
                }
                Err(NoFit::Physical) if self.idle_kv.len() > 0 => self.evict_idle_head(),
                Err(_) => break,
            }
        }
        while promoted != NIL {
            let w = promoted;
            promoted = self.reqs[w as usize].next_free;
            self.reqs[w as usize].next_free = NIL;
            let state = self.reqs[w as usize].state;
            self.enqueue(w, state);
        }
    }

    /// Whether request `i` was preempted in the step being planned.
    fn preempted_now(&self, i: u32) -> bool {
        let p = &self.plan;
        p.preempted[..p.preempted_len]
            .iter()
            .any(|x| x.handle.index() == i)
    }

    /// Blocks `i` may need in all under the admission mode (0 for eager).
    fn reserve_target(&self, i: u32) -> u64 {
        let r = &self.reqs[i as usize];
        let bs = self.cfg.block_size;
        let total = r.num_tokens() as u64;
        let cap = {
            let by_output = (r.max_output != u32::MAX)
                .then(|| (r.prompt_tokens + r.extra_prompt) as u64 + r.max_output as u64);
            let by_len =
                (self.cfg.max_sequence_tokens != 0).then_some(self.cfg.max_sequence_tokens as u64);
            match (by_output, by_len) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        match self.cfg.admission {
            AdmissionMode::Eager => 0,
            AdmissionMode::FullPrompt => blocks_for(total, bs),
            AdmissionMode::Predicted { headroom } => {
                let ri = self.rank_input(i);
                let rem =
                    (self.cfg.policy.effective_prediction(&ri) - ri.attained).max(0.0) * headroom;
                let mut t = total.saturating_add(libm::ceil(rem).min(u32::MAX as f64) as u64);
                if let Some(c) = cap {
                    t = t.min(c.max(total));
                }
                blocks_for(t, bs)
            }
            AdmissionMode::WorstCase => {
                let t = cap
                    .unwrap_or(self.cfg.device_blocks as u64 * bs as u64)
                    .max(total);
                blocks_for(t, bs).min(self.cfg.device_blocks as u64)
            }
        }
    }

    /// Whether waiting request `w` can start now with `budget` tokens and `avail` blocks, and
    /// how.
    fn plan_admission(&self, w: u32, budget: u32, avail: u32) -> Result<Admission, NoFit> {
        let r = &self.reqs[w as usize];
        let bs = self.cfg.block_size;
        let total = r.num_tokens();
        let chunk_cap = self.chunk_cap();
        let info = r.seq().and_then(|s| self.kv.seq_info(s).ok());
        let (kind, chunk, supply, blocks_after) = match info {
            None => {
                let cap = (total - 1) / bs;
                let m = self.kv.lookup_prefix_iter(
                    r.cache_salt,
                    self.hashes
                        .iter(&r.hashes)
                        .map_while(Result::ok)
                        .take(cap as usize),
                );
                let hit_tokens = m.blocks * bs;
                let chunk = (total - hit_tokens).min(chunk_cap).min(budget);
                let after = blocks_for((hit_tokens + chunk) as u64, bs) as u32;
                (
                    AdmitKind::Fresh {
                        hit_blocks: m.blocks,
                    },
                    chunk,
                    after - m.blocks + m.idle,
                    after,
                )
            }
            Some(x) => {
                let owed = total - r.computed;
                let chunk = owed.min(chunk_cap).min(budget);
                let after = blocks_for((r.computed + chunk) as u64, bs) as u32;
                if x.tier == Tier::Host {
                    if self.plan.swap_in_len + x.num_blocks as usize > self.plan.swap_in.len() {
                        return Err(NoFit::Policy);
                    }
                    (AdmitKind::Swapped, chunk, after.max(x.num_blocks), after)
                } else {
                    let seq = r.seq().expect("has KV");
                    let grow = self
                        .kv
                        .blocks_needed(seq, r.computed + chunk)
                        .unwrap_or(u32::MAX);
                    (AdmitKind::Resident, chunk, grow, after)
                }
            }
        };
        if chunk == 0 {
            return Err(NoFit::Policy);
        }
        if supply > avail {
            return Err(NoFit::Physical);
        }
        if self.plan.blocks_len + blocks_after as usize > self.plan.blocks.len() {
            return Err(NoFit::Policy);
        }
        let reserve_target = self.reserve_target(w);
        if self.running_len > 0 {
            let reserve_left = reserve_target.saturating_sub(blocks_after as u64);
            let needed = supply as u64
                + reserve_left
                + self.outstanding_reserve
                + self.watermark_blocks as u64;
            if needed > avail as u64 {
                return Err(NoFit::Policy);
            }
        }
        Ok(Admission {
            kind,
            chunk,
            reserve_target,
        })
    }

    /// Starts waiting request `w` (already out of the queue) as planned.
    fn admit(&mut self, w: u32, adm: Admission) {
        let bs = self.cfg.block_size;
        match adm.kind {
            AdmitKind::Fresh { hit_blocks } => {
                let salt = self.reqs[w as usize].cache_salt;
                let seq = self
                    .kv
                    .create_seq_in(salt)
                    .expect("one sequence slot per request");
                let r = &self.reqs[w as usize];
                let cap = (r.num_tokens() - 1) / bs;
                let got = self
                    .kv
                    .attach_prefix_iter(
                        seq,
                        self.hashes
                            .iter(&r.hashes)
                            .map_while(Result::ok)
                            .take(cap as usize),
                    )
                    .expect("planned");
                debug_assert_eq!(got, hit_blocks);
                let r = &mut self.reqs[w as usize];
                r.seq_raw = seq.to_raw();
                r.computed = got * bs;
                let prompt = r.prompt_tokens + r.extra_prompt;
                self.stats.prompt_tokens_admitted += prompt as u64;
                self.stats.prefix_hit_tokens += (got * bs).min(prompt) as u64;
            }
            AdmitKind::Swapped => {
                let seq = self.reqs[w as usize]
                    .seq()
                    .expect("swapped requests hold KV");
                let p = &mut self.plan;
                let n = self
                    .kv
                    .swap_in(seq, &mut p.swap_in[p.swap_in_len..])
                    .expect("planned");
                p.swap_in_len += n as usize;
            }
            AdmitKind::Resident => {
                if self.reqs[w as usize].idle_listed {
                    self.idle_remove(w);
                }
            }
        }
        self.add_running(w);
        self.admissions += 1;
        self.reqs[w as usize].sampled_since_admit = false;
        self.reqs[w as usize].admitted_seq = self.admissions;
        // Reserve what the mode asks for beyond the blocks held now; `run_tokens` then counts
        // this step's new blocks against it.
        let seq = self.reqs[w as usize]
            .seq()
            .expect("admitted requests hold KV");
        let held = self.kv.seq_info(seq).map_or(0, |x| x.num_blocks) as u64;
        let left = adm.reserve_target.saturating_sub(held).min(u32::MAX as u64) as u32;
        self.reqs[w as usize].reserve_left = left;
        self.outstanding_reserve += left as u64;
        self.run_tokens(w, adm.chunk, true);
    }

    /// Allocates `n` more tokens for running request `i` and emits its plan entry; with
    /// `whole_table` the entry carries the full block table (newly admitted requests).
    fn run_tokens(&mut self, i: u32, n: u32, whole_table: bool) {
        let seq = self.reqs[i as usize]
            .seq()
            .expect("running requests hold KV");
        let before = self.reqs[i as usize].computed;
        let out = self
            .kv
            .append_tokens(seq, n)
            .expect("room was made for this step");
        self.consume_reserve(i, out.changed);
        let p = &mut self.plan;
        if let Some(c) = out.copy {
            p.copies[p.copies_len] = c;
            p.copies_len += 1;
        }
        let table_start = if whole_table { 0 } else { out.first_changed };
        // Most decodes add no block: nothing to read back then.
        let read = if !whole_table && out.changed == 0 {
            0
        } else {
            self.kv
                .read_table(seq, table_start, &mut p.blocks[p.blocks_len..])
                .expect("live sequence")
        };
        let r = &mut self.reqs[i as usize];
        let total = r.num_tokens();
        let kind = if n == 1 && r.generated > 0 && before + 1 == total {
            EntryKind::Decode
        } else {
            EntryKind::Prefill
        };
        p.entries[p.entries_len] = ScheduledEntry {
            handle: super::RequestHandle::new(i, r.generation),
            external_id: r.external_id,
            kind,
            tokens: n,
            computed_before: before,
            samples: before + n == total,
            table_start,
            blocks_start: p.blocks_len as u32,
            blocks_len: read as u32,
        };
        p.entries_len += 1;
        p.blocks_len += read;
        if before < r.recompute_upto {
            self.stats.recomputed_tokens += ((before + n).min(r.recompute_upto) - before) as u64;
        }
        r.computed = before + n;
        r.sched_from = before;
        r.sched_tokens = n;
        r.scheduled_step = self.step;
        r.reported = false;
        self.awaiting += 1;
    }

    /// Preempts running request `v` by the configured mode and requeues it with its current
    /// rank and original arrival order.
    fn preempt(&mut self, v: u32, cause: PreemptionCause) {
        self.preempt_as(v, cause, None);
    }

    /// As [`Engine::preempt`], with the kind chosen by the caller (`None`: by the mode). A
    /// swap that cannot be done falls back to recompute.
    fn preempt_as(&mut self, v: u32, cause: PreemptionCause, how: Option<PreemptionKind>) {
        let want_swap = match how {
            None => self.prefers_swap(v),
            Some(k) => k == PreemptionKind::Swap,
        };
        self.remove_running(v);
        let kind = if how == Some(PreemptionKind::Keep) {
            self.enqueue(v, STATE_WAITING);
            self.idle_push(v);
            self.stats.preemptions_keep += 1;
            PreemptionKind::Keep
        } else if want_swap && self.try_swap_out(v) {
            self.enqueue(v, STATE_SWAPPED);
            self.stats.preemptions_swap += 1;
            PreemptionKind::Swap
        } else {
            self.discard_kv(v);
            self.enqueue(v, STATE_WAITING);
            self.stats.preemptions_recompute += 1;
            PreemptionKind::Recompute
        };
        if cause == PreemptionCause::Rank {
            self.stats.preemptions_for_rank += 1;
        }
        let r = &mut self.reqs[v as usize];
        r.preemptions += 1;
        let p = &mut self.plan;
        if p.preempted_len < p.preempted.len() {
            p.preempted[p.preempted_len] = Preemption {
                handle: super::RequestHandle::new(v, r.generation),
                external_id: r.external_id,
                kind,
                cause,
            };
            p.preempted_len += 1;
        }
    }

    /// Evicts the KV of the request idle the longest (paused, or preempted with its KV kept):
    /// a paused one by the pause mode, a waiting one by the preemption mode — swapped if that
    /// mode allows and the host has room, else discarded.
    fn evict_idle_head(&mut self) {
        let Some(i) = self
            .idle_kv
            .pop_front(&mut *self.reqs)
            .expect("idle-KV list intact")
        else {
            return;
        };
        self.reqs[i as usize].idle_listed = false;
        let paused = self.reqs[i as usize].state == STATE_PAUSED;
        let swap = if paused {
            matches!(
                self.cfg.pause,
                super::PauseMode::Swap | super::PauseMode::Auto
            )
        } else {
            self.prefers_swap(i)
        };
        if swap && self.try_swap_out(i) {
            if !paused {
                self.set_state(i, STATE_SWAPPED);
            }
        } else {
            self.discard_kv(i);
        }
        self.stats.idle_evicted += 1;
    }

    /// Whether the preemption mode swaps `i` rather than recomputing it.
    fn prefers_swap(&self, i: u32) -> bool {
        let c = self.cfg.costs;
        let r = &self.reqs[i as usize];
        let blocks = r
            .seq()
            .and_then(|s| self.kv.seq_info(s).ok())
            .map_or(0, |x| x.num_blocks);
        match self.cfg.preemption {
            super::PreemptionMode::Recompute => false,
            super::PreemptionMode::Swap => true,
            super::PreemptionMode::Auto => {
                2.0 * blocks as f64 * c.swap_us_per_block
                    < r.computed as f64 * c.recompute_us_per_token
            }
        }
    }

    /// Removes request `i` for good, recording why in the plan.
    fn drop_request(&mut self, i: u32, reason: DropReason) {
        let r = &self.reqs[i as usize];
        let p = &mut self.plan;
        if p.dropped_len < p.dropped.len() {
            p.dropped[p.dropped_len] = Dropped {
                handle: super::RequestHandle::new(i, r.generation),
                external_id: r.external_id,
                reason,
            };
            p.dropped_len += 1;
        }
        self.release(i);
        self.stats.dropped += 1;
    }
}
