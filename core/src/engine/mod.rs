/*!
The scheduling engine: requests, the waiting queue, the running set, and the step.

A serving stack drives it once per model iteration:

```text
add_request(desc, now)   ──► waiting queue (keyed by the policy's rank)
schedule(now) -> Plan    ──► entries to run (prefill chunks, decode tokens, block-table deltas),
                             block copies (swap out, swap in, copy-on-write), preemptions
   executor carries out the copies, runs the model
complete(results, now)   ──► tokens appended, finished requests freed, predictions refined,
                             pauses for external calls applied
```

# One step (`schedule`)
1. **Running requests first.** Every running decode gets its token; running prefills get their
   next chunk (at most `prefill_chunk`) while the token budget lasts.
2. **Memory.** If the running requests need more blocks than are free (free + evictable
   cached blocks): first evict the KV kept by paused requests (also once resumed, until
   they run again), then preempt running requests from the worst rank up — only preemptible
   ones (TRAIL protects requests past their cutoff), at most `max_preemptions_per_step` — by
   recompute, swap, or whichever the cost model prefers.
   A request is not a victim until it has sampled a token since its last admission, so ranks
   that change while a request prefills (fair share charging prompt tokens, slack counting
   prefill work) cannot make two requests throw each other's work away forever. If no
   victim is allowed, the most recently admitted requests wait this step (keeping their KV);
   if only one request is left and it still does not fit, others are preempted regardless,
   most recently admitted first, so the step always makes progress.
3. **Rank preemption.** For preemptive policies, while the best waiting request outranks the
   worst running one by more than `priority_margin` and could not start otherwise (batch full
   or memory short; a spent token budget does not count, since it frees up next step), the
   running one is preempted and the waiting one starts — including when `max_running` is the
   limit (vLLM issue #40004). A rank preemption never throws computed KV away unless
   `rank_preemption_may_recompute` says so: the victim keeps its KV in place when only the
   batch is full, and is swapped to the host when memory is short (if the mode and the host
   allow; otherwise the waiting request waits).
4. **Admission**, only in steps without memory preemption (storm guard): waiting and swapped
   requests in rank order while the budget, `max_running`, and memory under the admission mode
   allow. The first request that does not fit stops admission (no overtaking, so large requests
   are not starved); a request that can never fit is dropped with a reason, never retried.
5. Preempted requests go back to the queue with their current rank and original arrival order.

Every decision is deterministic; ties go to the earlier arrival. Per-step work is O(running +
admitted + preempted × running), never proportional to the waiting queue: the queue is an
indexed heap, and waiting keys are static (see [`crate::policy`]).

# Invariants (checked by [`Engine::audit`] in the tests)
- Every live request is in exactly one of waiting / running / swapped / paused, and counted.
- The block manager's invariants hold; a running request's table covers its computed tokens.
- A plan never exceeds the token budget, `max_running`, or the free memory.
*/

mod complete;
mod config;
mod plan;
mod request;
mod step;
mod wait_queue;

pub use config::{
    AdmissionMode, CostWeights, EngineConfig, EngineConfigError, EngineLayout, EngineStorage,
    HASH_CHUNK_LEN, HashChunk, PauseMode, PreemptionMode,
};
pub use plan::{
    AddError, CompleteError, DropReason, Dropped, EntryKind, FinishReason, Finished, PauseRequest,
    Plan, Preemption, PreemptionCause, PreemptionKind, RequestError, ResultErrorKind,
    ScheduleError, ScheduledEntry, StepResult,
};
pub use request::{RequestDesc, RequestHandle, RequestSlot, RequestState, RequestView};
pub use wait_queue::{PairNode, TenantSlot};

use core::fmt;

use crate::handle::next_generation;
use crate::kv::{
    BlockManager, BlockPair, ChunkPool, HashIndex, KvCounters, KvInitError, List, Tier,
};
use crate::policy::RankInput;
use crate::queue::RankKey;
use crate::time::Instant;
use crate::util::NIL;
pub(crate) use crate::util::blocks_for;
use request::{STATE_FREE, STATE_PAUSED, STATE_RUNNING, STATE_SWAPPED, STATE_WAITING};
use wait_queue::WaitQueue;

/// Engine counters and gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EngineStats {
    /// Requests waiting (not swapped).
    pub waiting: u32,
    /// Requests running.
    pub running: u32,
    /// Requests waiting with their KV in host memory.
    pub swapped: u32,
    /// Requests paused on an external call.
    pub paused: u32,
    /// Steps scheduled.
    pub steps: u64,
    /// Requests accepted by `add_request`.
    pub added: u64,
    /// Requests finished.
    pub finished: u64,
    /// Requests aborted by the caller.
    pub aborted: u64,
    /// Requests dropped by the engine (can never fit).
    pub dropped: u64,
    /// Preemptions by recompute.
    pub preemptions_recompute: u64,
    /// Preemptions by swap.
    pub preemptions_swap: u64,
    /// Preemptions caused by rank (the rest were for memory).
    pub preemptions_for_rank: u64,
    /// Pauses that kept their KV on the device.
    pub pauses_preserved: u64,
    /// Pauses that discarded their KV.
    pub pauses_discarded: u64,
    /// Pauses that swapped their KV to the host.
    pub pauses_swapped: u64,
    /// Preemptions that kept the KV on the device (a full batch, not memory, forced them).
    pub preemptions_keep: u64,
    /// Idle requests (paused, or preempted with their KV kept) whose KV was later evicted for
    /// memory.
    pub idle_evicted: u64,
    /// Tokens computed again after a recompute preemption or discard.
    pub recomputed_tokens: u64,
    /// Prompt tokens served from the prefix cache at admission.
    pub prefix_hit_tokens: u64,
    /// Prompt tokens of admitted requests (the denominator of the prefix hit rate).
    pub prompt_tokens_admitted: u64,
    /// Sum over live requests of the predicted remaining output tokens (for routers).
    pub predicted_backlog_tokens: u64,
    /// Block hashes not stored because the hash store was full.
    pub hashes_dropped: u64,
    /// The block manager's counters.
    pub kv: KvCounters,
}

/// Why an engine could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineInitError {
    /// The configuration is invalid.
    Config(EngineConfigError),
    /// A storage slice is too short.
    StorageTooSmall {
        /// Which slice.
        what: &'static str,
        /// Elements needed.
        need: usize,
        /// Elements given.
        got: usize,
    },
}

impl fmt::Display for EngineInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineInitError::Config(e) => write!(f, "{e}"),
            EngineInitError::StorageTooSmall { what, need, got } => {
                write!(
                    f,
                    "storage slice `{what}` has {got} elements, the configuration needs {need}"
                )
            }
        }
    }
}

impl core::error::Error for EngineInitError {}

impl From<EngineConfigError> for EngineInitError {
    fn from(e: EngineConfigError) -> Self {
        EngineInitError::Config(e)
    }
}

/// The plan's buffers and fill levels.
#[derive(Debug)]
struct PlanBuffers<'a> {
    entries: &'a mut [ScheduledEntry],
    entries_len: usize,
    blocks: &'a mut [u32],
    blocks_len: usize,
    swap_out: &'a mut [BlockPair],
    swap_out_len: usize,
    /// The swap-out list holds pauses' swap-outs for the next plan, not the last plan's.
    swap_out_pending: bool,
    swap_in: &'a mut [BlockPair],
    swap_in_len: usize,
    copies: &'a mut [BlockPair],
    copies_len: usize,
    preempted: &'a mut [Preemption],
    preempted_len: usize,
    dropped: &'a mut [Dropped],
    dropped_len: usize,
}

/// The scheduling engine (see the [module docs](self)).
#[derive(Debug)]
pub struct Engine<'a> {
    cfg: EngineConfig,
    kv: BlockManager<'a>,
    reqs: &'a mut [RequestSlot],
    free_head: u32,
    ids: HashIndex<'a>,
    queue: WaitQueue<'a>,
    tenants: &'a mut [TenantSlot],
    running: &'a mut [u32],
    running_len: u32,
    hashes: ChunkPool<'a, u64, HASH_CHUNK_LEN>,
    idle_kv: List,
    plan: PlanBuffers<'a>,
    finished: &'a mut [Finished],
    finished_len: usize,
    step: u64,
    awaiting: u32,
    complete_stamp: u64,
    last_now: u64,
    next_arrival_seq: u64,
    admissions: u64,
    outstanding_reserve: u64,
    watermark_blocks: u32,
    stats: EngineStats,
}

fn take<'s, T>(
    what: &'static str,
    slice: &'s mut [T],
    need: usize,
) -> Result<&'s mut [T], EngineInitError> {
    if slice.len() < need {
        return Err(EngineInitError::StorageTooSmall {
            what,
            need,
            got: slice.len(),
        });
    }
    Ok(&mut slice[..need])
}

impl<'a> Engine<'a> {
    /// Builds an empty engine over `storage` (sized by [`EngineConfig::layout`]).
    pub fn new(cfg: EngineConfig, storage: EngineStorage<'a>) -> Result<Self, EngineInitError> {
        let l = cfg.layout()?;
        let kv = BlockManager::new(cfg.kv_config(), storage.kv).map_err(|e| match e {
            KvInitError::Config(c) => EngineInitError::Config(EngineConfigError::Kv(c)),
            KvInitError::StorageTooSmall { what, need, got } => {
                EngineInitError::StorageTooSmall { what, need, got }
            }
        })?;
        let reqs = take("requests", storage.requests, l.requests)?;
        let count = reqs.len() as u32;
        for (i, r) in reqs.iter_mut().enumerate() {
            *r = RequestSlot::default();
            r.next_free = if i as u32 + 1 < count {
                i as u32 + 1
            } else {
                NIL
            };
        }
        let queue = if cfg.policy.fair_share {
            WaitQueue::fair(
                take("tenant_entries", storage.tenant_entries, l.tenant_entries)?,
                take(
                    "tenant_positions",
                    storage.tenant_positions,
                    l.tenant_positions,
                )?,
                take("pair_nodes", storage.pair_nodes, l.pair_nodes)?,
            )
        } else {
            WaitQueue::single(
                take("queue_entries", storage.queue_entries, l.queue_entries)?,
                take(
                    "queue_positions",
                    storage.queue_positions,
                    l.queue_positions,
                )?,
            )
        };
        let tenants = take("tenants", storage.tenants, l.tenants)?;
        tenants.fill(TenantSlot::default());
        Ok(Engine {
            cfg,
            kv,
            reqs,
            free_head: 0,
            ids: HashIndex::new(take("id_buckets", storage.id_buckets, l.id_buckets)?),
            queue,
            tenants,
            running: take("running", storage.running, l.running)?,
            running_len: 0,
            hashes: ChunkPool::new(take("hash_chunks", storage.hash_chunks, l.hash_chunks)?),
            idle_kv: List::EMPTY,
            plan: PlanBuffers {
                entries: take("plan_entries", storage.plan_entries, l.plan_entries)?,
                entries_len: 0,
                blocks: take("plan_blocks", storage.plan_blocks, l.plan_blocks)?,
                blocks_len: 0,
                swap_out: take("swap_out", storage.swap_out, l.swap_out)?,
                swap_out_len: 0,
                swap_out_pending: false,
                swap_in: take("swap_in", storage.swap_in, l.swap_in)?,
                swap_in_len: 0,
                copies: take("copies", storage.copies, l.copies)?,
                copies_len: 0,
                preempted: take("preempted", storage.preempted, l.preempted)?,
                preempted_len: 0,
                dropped: take("dropped", storage.dropped, l.dropped)?,
                dropped_len: 0,
            },
            finished: take("finished", storage.finished, l.finished)?,
            finished_len: 0,
            step: 0,
            awaiting: 0,
            complete_stamp: 0,
            last_now: 0,
            next_arrival_seq: 0,
            admissions: 0,
            outstanding_reserve: 0,
            watermark_blocks: libm::ceil(cfg.watermark * cfg.device_blocks as f64) as u32,
            stats: EngineStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Counters and gauges.
    pub fn stats(&self) -> EngineStats {
        let mut s = self.stats;
        s.running = self.running_len;
        s.kv = self.kv.counters();
        s
    }

    /// The block manager (read only), e.g. to read a request's whole block table.
    pub fn kv(&self) -> &BlockManager<'a> {
        &self.kv
    }

    /// Requests finished by the last `complete` call.
    pub fn last_finished(&self) -> &[Finished] {
        &self.finished[..self.finished_len]
    }

    /// Live requests.
    pub fn live_requests(&self) -> u32 {
        self.stats.waiting + self.running_len + self.stats.swapped + self.stats.paused
    }

    /// The plan of the last `schedule` call (empty before the first).
    pub fn plan(&self) -> Plan<'_> {
        let p = &self.plan;
        Plan {
            step: self.step,
            entries: &p.entries[..p.entries_len],
            swap_out: if p.swap_out_pending {
                &[]
            } else {
                &p.swap_out[..p.swap_out_len]
            },
            swap_in: &p.swap_in[..p.swap_in_len],
            copies: &p.copies[..p.copies_len],
            preempted: &p.preempted[..p.preempted_len],
            dropped: &p.dropped[..p.dropped_len],
            blocks: &p.blocks[..p.blocks_len],
        }
    }

    // ----- time and handles -----

    fn check_time(&mut self, now: Instant) -> bool {
        if now.as_micros() < self.last_now {
            return false;
        }
        self.last_now = now.as_micros();
        true
    }

    #[inline]
    fn slot_of(&self, h: RequestHandle) -> Option<u32> {
        let i = h.index();
        match self.reqs.get(i as usize) {
            Some(r) if r.live() && r.generation == h.generation() => Some(i),
            _ => None,
        }
    }

    #[inline]
    fn handle_of(&self, i: u32) -> RequestHandle {
        RequestHandle::new(i, self.reqs[i as usize].generation)
    }

    /// The live request with this external id.
    pub fn find(&self, external_id: u64) -> Option<RequestHandle> {
        self.ids
            .find(&*self.reqs, external_id)
            .expect("id index intact")
            .map(|i| self.handle_of(i))
    }

    /// A read-only view of one request.
    pub fn request(&self, h: RequestHandle) -> Result<RequestView, RequestError> {
        let i = self.slot_of(h).ok_or(RequestError::StaleHandle)?;
        let r = &self.reqs[i as usize];
        let state = match r.state {
            STATE_RUNNING => RequestState::Running,
            STATE_SWAPPED => RequestState::Swapped,
            STATE_PAUSED => RequestState::Paused,
            _ => RequestState::Waiting,
        };
        Ok(RequestView {
            external_id: r.external_id,
            state,
            prompt_tokens: r.prompt_tokens + r.extra_prompt,
            generated_tokens: r.generated,
            computed_tokens: r.computed,
            predicted_output_tokens: r.has_prediction.then_some(r.predicted_total),
            kv_tier: r
                .seq()
                .and_then(|s| self.kv.seq_info(s).ok())
                .map(|i| i.tier),
            preemptions: r.preemptions,
            arrival: Instant(r.arrival_us),
            first_token: (r.first_token_us != u64::MAX).then_some(Instant(r.first_token_us)),
        })
    }

    // ----- ranks -----

    fn rank_input(&self, i: u32) -> RankInput {
        let r = &self.reqs[i as usize];
        RankInput {
            arrival_s: r.arrival_us as f64 * 1e-6,
            prompt: (r.prompt_tokens + r.extra_prompt) as f64,
            attained: r.generated as f64,
            prefill_left: r.num_tokens().saturating_sub(r.computed).saturating_sub(1) as f64,
            predicted_total: r.has_prediction.then_some(r.predicted_total),
            initial_prediction: r.has_prediction.then_some(r.initial_prediction),
            max_output: (r.max_output != u32::MAX).then_some(r.max_output as f64),
            priority: r.priority as f64,
            deadline_s: (r.deadline_us != u64::MAX).then_some(r.deadline_us as f64 * 1e-6),
        }
    }

    /// The key ordering `i` inside the waiting queue.
    fn queue_key(&self, i: u32) -> RankKey {
        self.cfg
            .policy
            .key(&self.rank_input(i), self.reqs[i as usize].arrival_seq)
    }

    /// The key `i` competes with by rank against other running/waiting requests (its queue key,
    /// or under fair share its tenant's counter), and whether it may be preempted now — from
    /// one rank input.
    fn compete(&self, i: u32) -> (RankKey, bool) {
        let ri = self.rank_input(i);
        let r = &self.reqs[i as usize];
        let key = if self.cfg.policy.fair_share {
            RankKey::new(self.tenants[r.tenant as usize].counter, r.arrival_seq)
        } else {
            self.cfg.policy.key(&ri, r.arrival_seq)
        };
        // A request that has not sampled since it was (re)admitted is not a victim: ranks that
        // worsen with the request's own prefill (fair share charging prompt tokens, slack
        // counting prefill work) would otherwise let two requests preempt each other forever
        // without either producing a token. The step's deadlock breaker still overrides this.
        (
            key,
            r.sampled_since_admit && self.cfg.policy.preemptible(&ri),
        )
    }

    /// Predicted remaining output, rounded up, for the backlog gauge.
    fn backlog_of(&self, i: u32) -> u64 {
        let r = &self.reqs[i as usize];
        let attained = r.generated as f64;
        let total = self.cfg.policy.effective_total(
            r.has_prediction.then_some(r.predicted_total),
            (r.max_output != u32::MAX).then_some(r.max_output as f64),
            attained,
        );
        let rem = total - attained;
        // No request can produce more than u32::MAX tokens: capping keeps the sum exact and
        // far from overflow whatever predictions the caller sends.
        if rem > 0.0 {
            // ceil without libm's software rounding (this runs for every request every step).
            let rem = rem.min(u32::MAX as f64);
            let whole = rem as u64;
            whole + ((whole as f64) < rem) as u64
        } else {
            0
        }
    }

    fn refresh_backlog(&mut self, i: u32) {
        let new = self.backlog_of(i);
        let r = &mut self.reqs[i as usize];
        self.stats.predicted_backlog_tokens =
            self.stats.predicted_backlog_tokens - r.backlog_contrib + new;
        r.backlog_contrib = new;
    }

    // ----- state transitions -----

    fn count(&mut self, state: u8, delta: i32) {
        let c = match state {
            STATE_WAITING => &mut self.stats.waiting,
            STATE_SWAPPED => &mut self.stats.swapped,
            STATE_PAUSED => &mut self.stats.paused,
            _ => return,
        };
        *c = c.wrapping_add_signed(delta);
    }

    fn set_state(&mut self, i: u32, state: u8) {
        let old = self.reqs[i as usize].state;
        self.count(old, -1);
        self.count(state, 1);
        self.reqs[i as usize].state = state;
    }

    fn enqueue(&mut self, i: u32, state: u8) {
        self.set_state(i, state);
        let key = self.queue_key(i);
        self.reqs[i as usize].key = key;
        self.reqs[i as usize].queued = true;
        let t = self.reqs[i as usize].tenant;
        self.queue.push(self.tenants, i, t, key);
    }

    fn dequeue(&mut self, i: u32) {
        self.reqs[i as usize].queued = false;
        let t = self.reqs[i as usize].tenant;
        self.queue.remove(self.tenants, i, t);
    }

    fn add_running(&mut self, i: u32) {
        self.set_state(i, STATE_RUNNING);
        self.running[self.running_len as usize] = i;
        self.reqs[i as usize].running_pos = self.running_len;
        self.running_len += 1;
    }

    fn remove_running(&mut self, i: u32) {
        let pos = self.reqs[i as usize].running_pos;
        let last = self.running[self.running_len as usize - 1];
        self.running[pos as usize] = last;
        self.reqs[last as usize].running_pos = pos;
        self.running_len -= 1;
        self.reqs[i as usize].running_pos = NIL;
        self.reqs[i as usize].sched_tokens = 0;
        self.reqs[i as usize].sched_blocks = 0;
        self.release_reserve(i);
    }

    fn release_reserve(&mut self, i: u32) {
        let r = &mut self.reqs[i as usize];
        self.outstanding_reserve -= r.reserve_left as u64;
        r.reserve_left = 0;
    }

    /// Accounts `new_blocks` allocated to running request `i` against its reservation.
    fn consume_reserve(&mut self, i: u32, new_blocks: u32) {
        let r = &mut self.reqs[i as usize];
        let used = new_blocks.min(r.reserve_left);
        r.reserve_left -= used;
        self.outstanding_reserve -= used as u64;
    }

    /// Lists `i` as holding device KV while not running (evictable under memory pressure).
    fn idle_push(&mut self, i: u32) {
        self.reqs[i as usize].idle_listed = true;
        self.idle_kv
            .push_back(&mut *self.reqs, i)
            .expect("idle-KV list intact");
    }

    /// Takes `i` off the idle-KV list.
    fn idle_remove(&mut self, i: u32) {
        self.reqs[i as usize].idle_listed = false;
        self.idle_kv
            .remove(&mut *self.reqs, i)
            .expect("idle-KV list intact");
    }

    /// Frees `i`'s KV (keeping cached prefix blocks findable); it recomputes later.
    fn discard_kv(&mut self, i: u32) {
        let r = &mut self.reqs[i as usize];
        if let Some(seq) = r.seq() {
            r.recompute_upto = r.recompute_upto.max(r.computed);
            let freed = self.kv.free_seq(seq);
            debug_assert!(freed.is_ok());
            r.seq_raw = 0;
            r.computed = 0;
        }
    }

    /// Whether `i`'s KV could be swapped out now (host space and plan room).
    fn can_swap_out(&self, i: u32) -> bool {
        let Some(info) = self.reqs[i as usize]
            .seq()
            .and_then(|s| self.kv.seq_info(s).ok())
        else {
            return false;
        };
        info.tier == Tier::Device
            && info.num_blocks <= self.kv.available_host()
            && self.plan.swap_out_len + info.num_blocks as usize <= self.plan.swap_out.len()
    }

    /// Moves `i`'s KV to the host if possible, writing the pairs into the plan's swap-out list.
    fn try_swap_out(&mut self, i: u32) -> bool {
        let Some(seq) = self.reqs[i as usize].seq() else {
            return false;
        };
        let Ok(info) = self.kv.seq_info(seq) else {
            return false;
        };
        let p = &mut self.plan;
        if info.tier != Tier::Device
            || info.num_blocks > self.kv.available_host()
            || p.swap_out_len + info.num_blocks as usize > p.swap_out.len()
        {
            return false;
        }
        match self.kv.swap_out(seq, &mut p.swap_out[p.swap_out_len..]) {
            Ok(n) => {
                p.swap_out_len += n as usize;
                true
            }
            Err(_) => false,
        }
    }

    /// Ends request `i` and retires its handle.
    fn release(&mut self, i: u32) {
        if self.reqs[i as usize].queued {
            self.dequeue(i);
        }
        if self.reqs[i as usize].state == STATE_RUNNING {
            self.remove_running(i);
        }
        if self.reqs[i as usize].idle_listed {
            self.idle_remove(i);
        }
        let state = self.reqs[i as usize].state;
        self.count(state, -1);
        if let Some(seq) = self.reqs[i as usize].seq() {
            let freed = self.kv.free_seq(seq);
            debug_assert!(freed.is_ok());
        }
        let mut hashes = self.reqs[i as usize].hashes;
        self.hashes.clear(&mut hashes).expect("hash chunks intact");
        let removed = self.ids.remove(&mut *self.reqs, i);
        debug_assert!(removed.is_ok());
        if self.reqs[i as usize].scheduled_step == self.step
            && !self.reqs[i as usize].reported
            && self.step > 0
        {
            self.awaiting -= 1;
        }
        let t = self.reqs[i as usize].tenant;
        self.tenants[t as usize].live -= 1;
        let r = &mut self.reqs[i as usize];
        self.stats.predicted_backlog_tokens -= r.backlog_contrib;
        let generation = next_generation(r.generation);
        *r = RequestSlot::default();
        r.generation = generation;
        r.next_free = self.free_head;
        self.free_head = i;
    }

    // ----- the request API -----

    /// Accepts a request. It waits until a step admits it.
    pub fn add_request(
        &mut self,
        desc: &RequestDesc<'_>,
        now: Instant,
    ) -> Result<RequestHandle, AddError> {
        let bs = self.cfg.block_size;
        if desc.prompt_tokens == 0 {
            return Err(AddError::InvalidField("prompt_tokens"));
        }
        if desc.max_output_tokens == Some(0) {
            return Err(AddError::InvalidField("max_output_tokens"));
        }
        if let Some(p) = desc.predicted_output_tokens
            && !(p.is_finite() && p >= 0.0)
        {
            return Err(AddError::InvalidField("predicted_output_tokens"));
        }
        if desc.tenant >= self.cfg.max_tenants {
            return Err(AddError::InvalidField("tenant"));
        }
        if desc.prompt_block_hashes.len() as u64 > (desc.prompt_tokens / bs) as u64 {
            return Err(AddError::InvalidField("prompt_block_hashes"));
        }
        let max_seq = self.cfg.max_sequence_tokens;
        if max_seq != 0 && desc.prompt_tokens >= max_seq {
            return Err(AddError::InvalidField("prompt_tokens"));
        }
        if now.as_micros() < self.last_now {
            return Err(AddError::TimeWentBackwards);
        }
        let need = self.min_blocks_to_finish(desc);
        if need > self.cfg.device_blocks as u64 {
            return Err(AddError::CannotFit {
                need_blocks: need,
                device_blocks: self.cfg.device_blocks,
            });
        }
        if self
            .ids
            .find(&*self.reqs, desc.external_id)
            .expect("id index intact")
            .is_some()
        {
            return Err(AddError::DuplicateExternalId);
        }
        let i = self.free_head;
        if i == NIL {
            return Err(AddError::QueueFull);
        }
        let n_hashes = desc.prompt_block_hashes.len() as u32;
        if ChunkPool::<u64, HASH_CHUNK_LEN>::extra_chunks(&crate::kv::ChunkList::EMPTY, n_hashes)
            > self.hashes.free_chunks()
        {
            return Err(AddError::OutOfHashStorage);
        }
        // Accepted: nothing below fails.
        self.check_time(now);
        self.free_head = self.reqs[i as usize].next_free;
        let seq_no = self.next_arrival_seq;
        self.next_arrival_seq += 1;
        let generation = self.reqs[i as usize].generation;
        let deadline_us = match (desc.deadline, desc.ttft_target_us) {
            (Some(d), _) => d.as_micros(),
            (None, Some(t)) => now.as_micros().saturating_add(t),
            (None, None) => u64::MAX,
        };
        let mut slot = RequestSlot {
            external_id: desc.external_id,
            arrival_us: now.as_micros(),
            arrival_seq: seq_no,
            deadline_us,
            generation,
            prompt_tokens: desc.prompt_tokens,
            max_output: desc.max_output_tokens.unwrap_or(u32::MAX),
            priority: desc.priority,
            tenant: desc.tenant,
            cache_salt: desc.cache_salt,
            ..RequestSlot::default()
        };
        if let Some(p) = desc.predicted_output_tokens {
            slot.has_prediction = true;
            slot.predicted_total = p;
            slot.initial_prediction = p;
        }
        let mut list = crate::kv::ChunkList::EMPTY;
        for &h in desc.prompt_block_hashes {
            let pushed = self.hashes.push(&mut list, h);
            debug_assert!(matches!(pushed, Ok(true)));
        }
        slot.hashes = list;
        self.reqs[i as usize] = slot;
        self.ids
            .insert(&mut *self.reqs, i)
            .expect("id index intact");
        let t = desc.tenant;
        if self.tenants[t as usize].live == 0 {
            self.queue.lift_new_tenant(self.tenants, t);
        }
        self.tenants[t as usize].live += 1;
        self.reqs[i as usize].state = STATE_FREE;
        self.enqueue(i, STATE_WAITING);
        self.refresh_backlog(i);
        self.stats.added += 1;
        Ok(RequestHandle::new(i, generation))
    }

    /// Blocks the request needs at least to produce its first output tokens (and, under
    /// worst-case admission, to finish).
    fn min_blocks_to_finish(&self, desc: &RequestDesc<'_>) -> u64 {
        let bs = self.cfg.block_size;
        let base = blocks_for(desc.prompt_tokens as u64 + 1, bs);
        if let config::AdmissionMode::WorstCase = self.cfg.admission {
            let cap = desc
                .max_output_tokens
                .map(|m| desc.prompt_tokens as u64 + m as u64);
            let cap = match (cap, self.cfg.max_sequence_tokens) {
                (Some(c), 0) => Some(c),
                (Some(c), m) => Some(c.min(m as u64)),
                (None, 0) => None,
                (None, m) => Some(m as u64),
            };
            if let Some(total) = cap {
                return base.max(blocks_for(total, bs));
            }
        }
        base
    }

    /// Replaces the prediction of `h`'s remaining output tokens.
    pub fn update_prediction(
        &mut self,
        h: RequestHandle,
        predicted_remaining: f64,
        now: Instant,
    ) -> Result<(), RequestError> {
        let i = self.slot_of(h).ok_or(RequestError::StaleHandle)?;
        if !(predicted_remaining.is_finite() && predicted_remaining >= 0.0) {
            return Err(RequestError::InvalidPrediction);
        }
        if !self.check_time(now) {
            return Err(RequestError::TimeWentBackwards);
        }
        self.set_prediction(i, predicted_remaining);
        Ok(())
    }

    fn set_prediction(&mut self, i: u32, predicted_remaining: f64) {
        let r = &mut self.reqs[i as usize];
        r.predicted_total = r.generated as f64 + predicted_remaining;
        if !r.has_prediction {
            r.initial_prediction = r.predicted_total;
            r.has_prediction = true;
        }
        if r.queued {
            let key = self.queue_key(i);
            self.reqs[i as usize].key = key;
            let t = self.reqs[i as usize].tenant;
            self.queue.update(self.tenants, i, t, key);
        }
        self.refresh_backlog(i);
    }

    /// Removes `h` wherever it is and frees its KV. If it was scheduled in the current plan,
    /// no result is expected for it any more.
    pub fn abort(&mut self, h: RequestHandle, now: Instant) -> Result<(), RequestError> {
        let i = self.slot_of(h).ok_or(RequestError::StaleHandle)?;
        if !self.check_time(now) {
            return Err(RequestError::TimeWentBackwards);
        }
        self.release(i);
        self.stats.aborted += 1;
        Ok(())
    }

    /// Ends the pause of `h` (its external call returned): it waits to run again.
    pub fn resume(&mut self, h: RequestHandle, now: Instant) -> Result<(), RequestError> {
        self.resume_with_tokens(h, 0, now)
    }

    /// Ends the pause of `h` and appends `appended_tokens` (the call's response) to its context;
    /// they are prefilled when it runs again.
    pub fn resume_with_tokens(
        &mut self,
        h: RequestHandle,
        appended_tokens: u32,
        now: Instant,
    ) -> Result<(), RequestError> {
        let i = self.slot_of(h).ok_or(RequestError::StaleHandle)?;
        let r = &self.reqs[i as usize];
        if r.state != STATE_PAUSED {
            return Err(RequestError::WrongState);
        }
        let total = r.num_tokens() as u64 + appended_tokens as u64;
        if total >= u32::MAX as u64 / 2
            || (self.cfg.max_sequence_tokens != 0 && total >= self.cfg.max_sequence_tokens as u64)
            || blocks_for(total + 1, self.cfg.block_size) > self.cfg.device_blocks as u64
        {
            return Err(RequestError::TooManyTokens);
        }
        let tier = r
            .seq()
            .and_then(|s| self.kv.seq_info(s).ok())
            .map(|x| x.tier);
        if !self.check_time(now) {
            return Err(RequestError::TimeWentBackwards);
        }
        self.reqs[i as usize].extra_prompt += appended_tokens;
        let state = if tier == Some(Tier::Host) {
            STATE_SWAPPED
        } else {
            STATE_WAITING
        };
        self.enqueue(i, state);
        Ok(())
    }

    /// Checks the engine's invariants and the block manager's (O(everything); for tests),
    /// with `scratch` at least `device_blocks + host_blocks` long.
    pub fn audit(&self, scratch: &mut [u32]) -> Result<(), &'static str> {
        self.kv.audit(scratch)?;
        let (mut w, mut r, mut s, mut p, mut live) = (0u32, 0u32, 0u32, 0u32, 0u32);
        for (i, slot) in self.reqs.iter().enumerate() {
            match slot.state {
                STATE_FREE => continue,
                STATE_WAITING => w += 1,
                STATE_RUNNING => r += 1,
                STATE_SWAPPED => s += 1,
                STATE_PAUSED => p += 1,
                _ => return Err("unknown request state"),
            }
            live += 1;
            let info = slot.seq().map(|q| self.kv.seq_info(q));
            match (slot.state, info) {
                (STATE_RUNNING, Some(Ok(x)))
                    if x.tier == Tier::Device && x.num_tokens == slot.computed => {}
                (STATE_RUNNING, _) => return Err("running request without matching device KV"),
                (STATE_SWAPPED, Some(Ok(x)))
                    if x.tier == Tier::Host && x.num_tokens == slot.computed => {}
                (STATE_SWAPPED, _) => return Err("swapped request without host KV"),
                (_, Some(Ok(x))) if x.num_tokens != slot.computed => {
                    return Err("computed tokens differ from the KV table");
                }
                (_, Some(Err(_))) => return Err("request holds a stale sequence"),
                _ => {}
            }
            if slot.state == STATE_RUNNING && self.running[slot.running_pos as usize] != i as u32 {
                return Err("running set position is off");
            }
            if slot.computed > slot.num_tokens() {
                return Err("more tokens computed than known");
            }
        }
        if (w, r, s, p)
            != (
                self.stats.waiting,
                self.running_len,
                self.stats.swapped,
                self.stats.paused,
            )
        {
            return Err("state counts are off");
        }
        if self.queue.len() as u32 != w + s {
            return Err("queue length differs from waiting + swapped");
        }
        if live != self.ids.len() {
            return Err("external-id index size differs from live requests");
        }
        let mut reserve = 0u64;
        for k in 0..self.running_len as usize {
            reserve += self.reqs[self.running[k] as usize].reserve_left as u64;
        }
        if reserve != self.outstanding_reserve {
            return Err("outstanding reservation is off");
        }
        let mut backlog = 0u64;
        for slot in self.reqs.iter().filter(|r| r.live()) {
            backlog += slot.backlog_contrib;
        }
        if backlog != self.stats.predicted_backlog_tokens {
            return Err("predicted backlog is off");
        }
        Ok(())
    }
}
