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

Results come in one of three forms, all one engine (the tests drive the same workload
through each and compare every plan): [`Engine::complete`] takes handle-keyed results, in
any number of calls; [`Engine::complete_entries`] one positional `#[repr(C)]` result per
plan entry (what a C executor sends); [`Engine::complete_except`] only the results that are
not an entry's default (one token where it samples, nothing else), so a step of plain
decodes is reported with the few requests that stopped and the engine reads no result for
the rest.

# One step (`schedule`)
1. **Running requests first.** Every running decode gets its token; running prefills get their
   next chunk (at most `prefill_chunk`) while the token budget lasts.
2. **Memory.** If the running requests need more device blocks than are free (free +
   evictable cached blocks), or more block-table chunks (a prefix hit puts one block in many
   tables, so chunks are planned like blocks): first evict the KV kept by paused requests (also once resumed, until
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
   A request whose KV was thrown away for memory (a recompute preemption, or its kept KV
   evicted) is admitted again only when its whole context fits, whatever the admission mode:
   under eager admission it would otherwise come straight back into the room it just left,
   and two requests that cannot both fit would evict each other forever, recomputing a whole
   context per token of progress (issue 9; see `Engine::reserve_target` in `step`).
5. Preempted requests go back to the queue with their current rank and original arrival order.

**The steady step.** When every running request owes exactly a decode (a count `complete`
keeps as it applies results, never above the truth: the audit checks it), the budget covers a
token each, one new block, table chunk and block id per request fit, and rank preemption would
preempt nothing, steps 1 to 3 cannot change anything: `schedule` then runs each decode in one
pass instead of planning the step's need first, and goes on with admission. The plan is the one
the general path makes (the property and twin tests compare both paths on every step);
[`EngineStats::steady_steps`] counts how often it applied.

Every decision is deterministic; ties go to the earlier arrival. Per-step work is O(running +
admitted + preempted × running), never proportional to the waiting queue: the queue is an
indexed heap, and waiting keys are static (see [`crate::policy`]).

# Prefix-cache namespaces
Requests find each other's cached prompt blocks only when both the block hash and the
request's [`RequestDesc::cache_salt`] are equal: tenants, LoRA adapters and cache salts are
kept apart by folding them into that one value.

# Errors and poisoning
No call panics. A refused call returns its error enum and changes nothing. If a call finds an
internal invariant broken (a bug in augur), it returns `Internal(InternalError)` and the
engine is *poisoned*: every later call that would change it fails with the same error, since
its state can no longer be trusted ([`Engine::poisoned`]).

# Modules
`config` (configuration, validation, storage layout), `request` (what a request is),
`requests` (the request API), `step` (`schedule`), `complete` (`complete`), `plan` (what a
step decides, the plan contract, errors), `state` (state transitions and KV moves), `rank`
(ranks and the backlog gauge), `wait_queue` (single and fair-share queues), `bounded` (the
plan's fixed-capacity lists), `audit` (the invariant check).

# Invariants (checked by [`Engine::audit`] in the tests)
- Every live request is in exactly one of waiting / running / swapped / paused, and counted.
- The block manager's invariants hold; a running request's table covers its computed tokens.
- A plan never exceeds the token budget, `max_running`, or the free memory.
*/

mod audit;
mod bounded;
mod complete;
mod config;
mod plan;
mod rank;
mod request;
mod requests;
mod state;
mod step;
mod wait_queue;

pub use config::{
    AdmissionMode, CostWeights, EngineConfig, EngineConfigError, EngineLayout, EngineStorage,
    HASH_CHUNK_LEN, HashChunk, MAX_DRAFT_TOKENS, PauseMode, PreemptionMode, RegionLayout, Span,
    TOKEN_LIMIT,
};
pub use plan::{
    AddError, CompleteError, DropReason, Dropped, EntryException, EntryKind, EntryResult,
    FinishReason, Finished, PauseRequest, Plan, Preemption, PreemptionCause, PreemptionKind,
    RequestError, ResultErrorKind, ScheduleError, ScheduledEntry, StepResult,
};
pub use request::{RequestDesc, RequestHandle, RequestSlot, RequestState, RequestView};
pub use wait_queue::{PairNode, TenantSlot};

use core::fmt;

use crate::internal::{InternalError, OrBroken};
use crate::kv::{
    BlockManager, BlockPair, ChunkPool, HashIndex, KvCounters, KvError, KvEvent, KvEventStats,
    KvInitError, List,
};
use crate::time::Instant;
use crate::util::NIL;
pub(crate) use crate::util::blocks_for;
use bounded::BoundedVec;
use request::SlotState;
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
    /// Block hashes not stored because the hash store was full (once one of a request is
    /// dropped, its later ones cannot be stored either and count here too).
    pub hashes_dropped: u64,
    /// Steps planned by the steady one-pass path (every running request decoding, its block
    /// fitting, nothing to preempt); the rest of `steps` took the general path. The plans
    /// are the same either way: this only says how often the cheap path applied.
    pub steady_steps: u64,
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

/// The plan's lists, in caller storage.
#[derive(Debug)]
struct PlanBuffers<'a> {
    entries: BoundedVec<'a, ScheduledEntry>,
    blocks: BoundedVec<'a, u32>,
    swap_out: BoundedVec<'a, BlockPair>,
    /// The swap-out list holds pauses' swap-outs for the next plan, not the last plan's.
    swap_out_pending: bool,
    /// A swap-in was planned in the plan being built: from then on no swap-out may be added
    /// to it, since swap-outs run first and could overwrite the host blocks a swap-in reads.
    swapped_in: bool,
    swap_in: BoundedVec<'a, BlockPair>,
    copies: BoundedVec<'a, BlockPair>,
    preempted: BoundedVec<'a, Preemption>,
    dropped: BoundedVec<'a, Dropped>,
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
    finished: BoundedVec<'a, Finished>,
    step: u64,
    awaiting: u32,
    /// How many running requests are known to owe exactly a decode: counted by `complete` as
    /// it applies results (a request that stays running and owes its decode), reset by
    /// `schedule` as it reads it, cleared by an abort of a running request. Never above the
    /// true number, so when it equals `running_len` every running request decodes and the
    /// step can take [`Engine::plan_decodes`]' one pass. See the audit.
    decode_ready: u32,
    /// A `complete` call accepted results for the current plan: positional results, which
    /// cover the whole plan in one call, are then refused (`CompleteError::AlreadyCompleted`).
    results_accepted: bool,
    complete_stamp: u64,
    last_now: u64,
    next_arrival_seq: u64,
    admissions: u64,
    outstanding_reserve: u64,
    watermark_blocks: u32,
    /// `cfg.token_limit()`, read for every result.
    token_limit: u32,
    /// The most tokens whose KV fits in the whole device pool (`device_blocks × block_size`),
    /// tested for every running request every step ([`Engine::never_fits`]).
    fit_tokens: u64,
    /// Set when a call found an internal invariant broken: every later call fails with it.
    poisoned: Option<InternalError>,
    /// Inside `schedule`: the plan being built is not yet the executor's.
    in_schedule: bool,
    /// Test hook (feature `test-hooks`): plan every step by the general path.
    #[cfg(feature = "test-hooks")]
    general_path_only: bool,
    stats: EngineStats,
}

fn take<'s, T>(
    what: &'static str,
    slice: &'s mut [T],
    need: usize,
) -> Result<&'s mut [T], EngineInitError> {
    let got = slice.len();
    slice
        .get_mut(..need)
        .ok_or(EngineInitError::StorageTooSmall { what, need, got })
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
        for (i, r) in (0u32..).zip(reqs.iter_mut()) {
            *r = RequestSlot::default();
            r.next_free = if i.saturating_add(1) < count {
                i.saturating_add(1)
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
            free_head: if count > 0 { 0 } else { NIL },
            ids: HashIndex::new(take("id_buckets", storage.id_buckets, l.id_buckets)?),
            queue,
            tenants,
            running: take("running", storage.running, l.running)?,
            running_len: 0,
            hashes: ChunkPool::new(take("hash_chunks", storage.hash_chunks, l.hash_chunks)?),
            idle_kv: List::EMPTY,
            plan: PlanBuffers {
                entries: BoundedVec::new(take(
                    "plan_entries",
                    storage.plan_entries,
                    l.plan_entries,
                )?),
                blocks: BoundedVec::new(take("plan_blocks", storage.plan_blocks, l.plan_blocks)?),
                swap_out: BoundedVec::new(take("swap_out", storage.swap_out, l.swap_out)?),
                swap_out_pending: false,
                swapped_in: false,
                swap_in: BoundedVec::new(take("swap_in", storage.swap_in, l.swap_in)?),
                copies: BoundedVec::new(take("copies", storage.copies, l.copies)?),
                preempted: BoundedVec::new(take("preempted", storage.preempted, l.preempted)?),
                dropped: BoundedVec::new(take("dropped", storage.dropped, l.dropped)?),
            },
            finished: BoundedVec::new(take("finished", storage.finished, l.finished)?),
            step: 0,
            awaiting: 0,
            decode_ready: 0,
            #[cfg(feature = "test-hooks")]
            general_path_only: false,
            results_accepted: false,
            complete_stamp: 0,
            last_now: 0,
            next_arrival_seq: 0,
            admissions: 0,
            outstanding_reserve: 0,
            watermark_blocks: cfg.watermark_blocks(),
            token_limit: cfg.token_limit(),
            // Cannot wrap in 64 bits: two 32-bit factors.
            fit_tokens: u64::from(cfg.device_blocks).wrapping_mul(u64::from(cfg.block_size.max(1))),
            poisoned: None,
            in_schedule: false,
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

    /// Test hook, not part of the API (feature `test-hooks`, which only the workspace's own
    /// tests enable): with `true`, every step is planned by the general path, never by the
    /// steady one-pass path, so that tests can check that both plan alike.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn set_general_path_only(&mut self, on: bool) {
        self.general_path_only = on;
    }

    /// The block manager (read only).
    pub fn kv(&self) -> &BlockManager<'a> {
        &self.kv
    }

    /// Moves the KV events recorded since the last call (blocks stored, removed, all cleared;
    /// see [`crate::kv::events`]) into `out`, oldest first, and returns how many were written.
    /// A server calls it after each step (after `complete`, or after `schedule` too, since
    /// both change the cache) until it returns less than `out.len()`, and publishes the events
    /// to its cluster router; what does not fit stays for the next call. Always 0 with
    /// [`EngineConfig::kv_event_capacity`] 0. Never fails, also on a poisoned engine (the
    /// events then describe a state that can no longer be trusted).
    pub fn drain_kv_events(&mut self, out: &mut [KvEvent]) -> usize {
        self.kv.drain_events(out)
    }

    /// Counters of the KV event stream: delivered, dropped, resyncs, pending.
    pub fn kv_event_stats(&self) -> KvEventStats {
        self.kv.event_stats()
    }

    /// The internal error that poisoned the engine, if any: after one, every call that changes
    /// the engine fails with it.
    pub fn poisoned(&self) -> Option<InternalError> {
        self.poisoned
    }

    /// Requests finished by the last `complete` call.
    pub fn last_finished(&self) -> &[Finished] {
        self.finished.as_slice()
    }

    /// Live requests.
    pub fn live_requests(&self) -> u32 {
        self.stats
            .waiting
            .saturating_add(self.running_len)
            .saturating_add(self.stats.swapped)
            .saturating_add(self.stats.paused)
    }

    /// The plan of the last `schedule` call (empty before the first).
    pub fn plan(&self) -> Plan<'_> {
        let p = &self.plan;
        Plan {
            step: self.step,
            entries: p.entries.as_slice(),
            swap_out: if p.swap_out_pending {
                &[]
            } else {
                p.swap_out.as_slice()
            },
            swap_in: p.swap_in.as_slice(),
            copies: p.copies.as_slice(),
            preempted: p.preempted.as_slice(),
            dropped: p.dropped.as_slice(),
            blocks: p.blocks.as_slice(),
        }
    }

    // ----- poison, time and handles -----

    /// Fails if an earlier call poisoned the engine.
    #[inline]
    fn check_poison(&self) -> Result<(), InternalError> {
        match self.poisoned {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Records `e` as the engine's poison and returns it.
    #[cold]
    fn poison(&mut self, e: InternalError) -> InternalError {
        if self.poisoned.is_none() {
            self.poisoned = Some(e);
        }
        e
    }

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

    /// Request slot `i` (an index the engine itself holds).
    #[inline]
    fn req(&self, i: u32) -> Result<&RequestSlot, InternalError> {
        self.reqs
            .get(i as usize)
            .or_broken("request index out of range")
    }

    /// Request slot `i`, writable.
    #[inline]
    fn req_mut(&mut self, i: u32) -> Result<&mut RequestSlot, InternalError> {
        self.reqs
            .get_mut(i as usize)
            .or_broken("request index out of range")
    }

    /// The request at running position `k`, checked against its own record of the position
    /// (a stale or duplicated running-set entry would otherwise run a request twice).
    #[inline]
    fn running_at(&self, k: usize) -> Result<u32, InternalError> {
        // Positions past `running_len` hold stale ids: every loop stops at `running_len`,
        // and `remove_running`, whose position comes from the request, checks it first.
        let i = self
            .running
            .get(k)
            .copied()
            .or_broken("running position out of range")?;
        let r = self.req(i)?;
        if r.state != SlotState::Running || r.running_pos as usize != k {
            return Err(InternalError::new(
                "running set holds a request not at that position",
            ));
        }
        Ok(i)
    }

    /// Whether the KV of `tokens` tokens could never fit, even in the whole device pool: the
    /// one test behind dropping a running request (`tokens` = what it must compute now) and
    /// refusing to admit or resume one (`tokens` = what it knows plus the token it will
    /// sample next, so that it can make progress once admitted).
    #[inline]
    fn never_fits(&self, tokens: u64) -> bool {
        // ceil(tokens / bs) > D exactly when tokens > D × bs.
        tokens > self.fit_tokens
    }

    fn handle_of(&self, i: u32) -> Result<RequestHandle, InternalError> {
        Ok(RequestHandle::new(i, self.req(i)?.generation))
    }

    /// The live request with this external id.
    pub fn find(&self, external_id: u64) -> Option<RequestHandle> {
        self.ids
            .find(&*self.reqs, external_id)
            .ok()
            .flatten()
            .and_then(|i| self.handle_of(i).ok())
    }

    /// A read-only view of one request.
    pub fn request(&self, h: RequestHandle) -> Result<RequestView, RequestError> {
        let i = self.slot_of(h).ok_or(RequestError::StaleHandle)?;
        let r = self.req(i)?;
        let state = match r.state {
            SlotState::Running => RequestState::Running,
            SlotState::Swapped => RequestState::Swapped,
            SlotState::Paused => RequestState::Paused,
            SlotState::Waiting | SlotState::Free => RequestState::Waiting,
        };
        let info = r.seq().and_then(|s| self.kv.seq_info(s).ok());
        Ok(RequestView {
            external_id: r.external_id,
            state,
            prompt_tokens: r.prompt_tokens.saturating_add(r.extra_prompt),
            generated_tokens: r.generated,
            computed_tokens: r.computed,
            predicted_output_tokens: r.has_prediction.then_some(r.predicted_total),
            kv_tier: info.map(|x| x.tier),
            kv_blocks: info.map_or(0, |x| x.num_blocks),
            preemptions: r.preemptions,
            arrival: Instant(r.arrival_us),
            first_token: (r.first_token_us != u64::MAX).then_some(Instant(r.first_token_us)),
        })
    }

    /// Copies request `h`'s block table from logical entry `start` to its end into `out`
    /// (block ids in the tier [`RequestView::kv_tier`] names: device ids while it runs or
    /// keeps its KV on the device, host ids while swapped) and returns how many it wrote: 0
    /// when it holds no KV or `start` is past the end. An executor can rebuild or check its
    /// mirror of the table with this at any time. Never truncates: a buffer shorter than the
    /// entries to copy is [`RequestError::BufferTooSmall`], naming the length needed
    /// ([`RequestView::kv_blocks`] is the whole table's length).
    pub fn block_table(
        &self,
        h: RequestHandle,
        start: u32,
        out: &mut [u32],
    ) -> Result<usize, RequestError> {
        let i = self.slot_of(h).ok_or(RequestError::StaleHandle)?;
        let Some(seq) = self.req(i)?.seq() else {
            return Ok(0);
        };
        self.kv.read_table(seq, start, out).map_err(|e| match e {
            KvError::BufferTooSmall { need } => RequestError::BufferTooSmall { need },
            _ => {
                RequestError::Internal(InternalError::new("a live request holds a stale sequence"))
            }
        })
    }
}

#[cfg(test)]
mod poison_tests {
    extern crate std;
    use std::vec;

    use super::*;
    use crate::kv::{BlockSlot, KvStorage, SeqSlot, TableChunk};
    use crate::queue::HeapEntry;

    /// A broken internal invariant (here: the running set's length, corrupted from inside)
    /// must come back as `Internal` from the call that meets it, and every later call must
    /// refuse with the same error instead of acting on a state that cannot be trusted.
    #[test]
    fn a_broken_invariant_poisons_the_engine() {
        let mut cfg = EngineConfig::new(4, 16, 4);
        cfg.max_running = 4;
        let l = cfg.layout().unwrap();
        let mut blocks = vec![BlockSlot::default(); l.kv.blocks];
        let mut buckets = vec![0u32; l.kv.hash_buckets];
        let mut chunks = vec![TableChunk::default(); l.kv.table_chunks];
        let mut seqs = vec![SeqSlot::default(); l.kv.seqs];
        let mut requests = vec![RequestSlot::default(); l.requests];
        let mut id_buckets = vec![0u32; l.id_buckets];
        let mut queue_entries = vec![HeapEntry::default(); l.queue_entries];
        let mut queue_positions = vec![0u32; l.queue_positions];
        let mut running = vec![0u32; l.running];
        let mut hash_chunks = vec![HashChunk::default(); l.hash_chunks];
        let mut plan_entries = vec![ScheduledEntry::default(); l.plan_entries];
        let mut plan_blocks = vec![0u32; l.plan_blocks];
        let mut swap_out = vec![BlockPair::default(); l.swap_out];
        let mut swap_in = vec![BlockPair::default(); l.swap_in];
        let mut copies = vec![BlockPair::default(); l.copies];
        let mut preempted = vec![Preemption::default(); l.preempted];
        let mut dropped = vec![Dropped::default(); l.dropped];
        let mut finished = vec![Finished::default(); l.finished];
        let mut tenants = vec![TenantSlot::default(); l.tenants];
        let mut e = Engine::new(
            cfg,
            EngineStorage {
                kv: KvStorage {
                    blocks: &mut blocks,
                    hash_buckets: &mut buckets,
                    table_chunks: &mut chunks,
                    seqs: &mut seqs,
                    events: &mut [],
                    event_parents: &mut [],
                },
                requests: &mut requests,
                id_buckets: &mut id_buckets,
                queue_entries: &mut queue_entries,
                queue_positions: &mut queue_positions,
                pair_nodes: &mut [],
                tenants: &mut tenants,
                tenant_entries: &mut [],
                tenant_positions: &mut [],
                running: &mut running,
                hash_chunks: &mut hash_chunks,
                plan_entries: &mut plan_entries,
                plan_blocks: &mut plan_blocks,
                swap_out: &mut swap_out,
                swap_in: &mut swap_in,
                copies: &mut copies,
                preempted: &mut preempted,
                dropped: &mut dropped,
                finished: &mut finished,
            },
        )
        .unwrap();
        let h = e.add_request(&RequestDesc::new(1, 8), Instant(0)).unwrap();
        let plan = e.schedule(Instant(1)).unwrap();
        assert_eq!(plan.entries.len(), 1);
        let results = [StepResult::new(h, 1)];
        e.complete(&results, Instant(2)).unwrap();
        // Corrupt: claim a running request the running set does not hold.
        e.running_len = 2;
        let err = match e.schedule(Instant(3)) {
            Err(ScheduleError::Internal(err)) => err,
            other => panic!("expected an internal error, got {other:?}"),
        };
        assert_eq!(e.poisoned(), Some(err));
        assert!(e.audit(&mut [0u32; 64]).is_err());
        assert_eq!(
            e.add_request(&RequestDesc::new(2, 8), Instant(4)),
            Err(AddError::Internal(err))
        );
        assert_eq!(e.abort(h, Instant(4)), Err(RequestError::Internal(err)));
        assert_eq!(
            e.update_prediction(h, 1.0, Instant(4)),
            Err(RequestError::Internal(err))
        );
        assert_eq!(e.resume(h, Instant(4)), Err(RequestError::Internal(err)));
        assert_eq!(
            e.complete(&results, Instant(4)),
            Err(CompleteError::Internal(err))
        );
        assert!(matches!(e.schedule(Instant(5)), Err(ScheduleError::Internal(x)) if x == err));
    }
}
