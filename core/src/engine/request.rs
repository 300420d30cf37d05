//! Requests: what the caller describes, what the engine keeps, and what it shows.

use crate::handle::handle_type;
use crate::internal::{InternalError, OrBroken};
use crate::kv::{ChunkList, HashChain, SeqHandle, Tier};
use crate::queue::RankKey;
use crate::time::Instant;
use crate::util::NIL;

handle_type!(
    /// A request in an engine; carries a generation, so a stale or forged handle is rejected.
    RequestHandle
);

/// A new request.
#[derive(Clone, Copy, Debug)]
pub struct RequestDesc<'h> {
    /// The caller's id; must be unique among live requests.
    pub external_id: u64,
    /// Prompt length in tokens (≥ 1).
    pub prompt_tokens: u32,
    /// Output cap; the request finishes when it is reached.
    pub max_output_tokens: Option<u32>,
    /// Predicted output length in tokens (finite, ≥ 0).
    pub predicted_output_tokens: Option<f64>,
    /// Priority class, lower first (used by the `Priority` policy).
    pub priority: i32,
    /// Absolute deadline for the whole request (slack / EDF).
    pub deadline: Option<Instant>,
    /// Time-to-first-token target in µs; used as the deadline when `deadline` is `None`.
    pub ttft_target_us: Option<u64>,
    /// Tenant id for fair share (below `max_tenants`).
    pub tenant: u32,
    /// Chained hashes of the prompt's full blocks, in order, for prefix caching (at most
    /// `prompt_tokens / block_size` of them).
    pub prompt_block_hashes: &'h [u64],
    /// The prefix-cache namespace of `prompt_block_hashes` (vLLM's `cache_salt`, plus
    /// whatever else must keep KV apart: tenant, LoRA adapter). Requests share cached blocks
    /// only when both the namespace and the hash are equal, so equal hashes from different
    /// namespaces never share KV. Fold several keys into one value (e.g. hash them together);
    /// 0 is the default namespace.
    pub cache_salt: u64,
}

impl RequestDesc<'static> {
    /// A request with only an id and a prompt length.
    pub const fn new(external_id: u64, prompt_tokens: u32) -> Self {
        RequestDesc {
            external_id,
            prompt_tokens,
            max_output_tokens: None,
            predicted_output_tokens: None,
            priority: 0,
            deadline: None,
            ttft_target_us: None,
            tenant: 0,
            prompt_block_hashes: &[],
            cache_salt: 0,
        }
    }
}

/// Where a request is. Every live request is in exactly one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// In the waiting queue: new, preempted for recompute, or resumed.
    Waiting,
    /// In the running set.
    Running,
    /// In the waiting queue with its KV in host memory.
    Swapped,
    /// Waiting on an external call.
    Paused,
}

/// A read-only view of one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequestView {
    /// The caller's id.
    pub external_id: u64,
    /// Its state.
    pub state: RequestState,
    /// Prompt tokens, including tokens appended by resumed external calls.
    pub prompt_tokens: u32,
    /// Output tokens generated.
    pub generated_tokens: u32,
    /// Tokens whose KV is computed (0 after a recompute preemption).
    pub computed_tokens: u32,
    /// The current prediction of the total output, if any.
    pub predicted_output_tokens: Option<f64>,
    /// Where its KV is, if anywhere.
    pub kv_tier: Option<Tier>,
    /// Entries in its block table (0 without KV); see [`crate::engine::Engine::block_table`].
    pub kv_blocks: u32,
    /// Times it was preempted.
    pub preemptions: u32,
    /// When it arrived.
    pub arrival: Instant,
    /// When its first output token was reported.
    pub first_token: Option<Instant>,
}

/// Where a request slot is (the engine's side of [`RequestState`], plus "free").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum SlotState {
    /// Not a live request: the slot is in the free list.
    Free,
    /// In the waiting queue, its KV (if any) on the device.
    Waiting,
    /// In the running set.
    Running,
    /// In the waiting queue with its KV in host memory.
    Swapped,
    /// Waiting on an external call.
    Paused,
}

/// Per-request bookkeeping. Opaque; create storage with `RequestSlot::default()`.
#[derive(Clone, Copy, Debug)]
pub struct RequestSlot {
    pub(crate) external_id: u64,
    pub(crate) arrival_us: u64,
    pub(crate) arrival_seq: u64,
    pub(crate) deadline_us: u64,
    pub(crate) first_token_us: u64,
    pub(crate) predicted_total: f64,
    pub(crate) initial_prediction: f64,
    pub(crate) seq_raw: u64,
    /// The plan (step number) this request was scheduled in, 0 if none.
    pub(crate) scheduled_step: u64,
    /// The last `complete` call (stamp) that validated a result for it.
    pub(crate) validated_stamp: u64,
    pub(crate) backlog_contrib: u64,
    /// Ceiling of the stable effective total (0: none), for the integer backlog update
    /// (`Engine::advance_backlog`).
    pub(crate) backlog_ceil: u32,
    /// The generated-token count a result must stay below to be plain (no finish by the
    /// output cap or the token limit, the backlog still on its integer update): the least of
    /// `max_output`, the token limit less the prompt, and `backlog_ceil`. One compare per
    /// result instead of three; set by [`RequestSlot::set_quiet_until`] wherever one of them
    /// changes, and checked by `Engine::audit`.
    pub(crate) quiet_until: u32,
    /// The prefix-cache namespace of its block hashes.
    pub(crate) cache_salt: u64,
    pub(crate) hashes: ChunkList,
    pub(crate) key: RankKey,
    pub(crate) generation: u32,
    pub(crate) id_chain_next: u32,
    pub(crate) prompt_tokens: u32,
    pub(crate) extra_prompt: u32,
    pub(crate) max_output: u32,
    pub(crate) generated: u32,
    pub(crate) computed: u32,
    pub(crate) recompute_upto: u32,
    pub(crate) priority: i32,
    pub(crate) tenant: u32,
    pub(crate) running_pos: u32,
    pub(crate) reserve_left: u32,
    pub(crate) preemptions: u32,
    pub(crate) sched_tokens: u32,
    pub(crate) sched_blocks: u32,
    /// Block-table chunks this step's tokens take.
    pub(crate) sched_chunks: u32,
    pub(crate) sched_from: u32,
    /// Links in the engine's idle-KV list (requests holding device KV while not running).
    pub(crate) idle_prev: u32,
    pub(crate) idle_next: u32,
    /// The next slot in the free-slot list (free slots only).
    pub(crate) next_free: u32,
    /// The next request in the step's list of requests promoted by rank preemption.
    pub(crate) promoted_next: u32,
    /// Position of this request's result among the exceptions of `complete_except` (valid
    /// while `validated_stamp` is that call's stamp).
    pub(crate) exception: u32,
    pub(crate) state: SlotState,
    pub(crate) has_prediction: bool,
    pub(crate) reported: bool,
    pub(crate) queued: bool,
    /// In the engine's list of requests holding device KV while not running.
    pub(crate) idle_listed: bool,
    /// Sampled a token since it was last admitted: only then may it be chosen as a victim.
    pub(crate) sampled_since_admit: bool,
    /// When it was last admitted, as the engine's admission count.
    pub(crate) admitted_seq: u64,
    /// Its KV was thrown away for memory (a recompute preemption, or its idle KV evicted)
    /// since it was last admitted: it is admitted again only when its whole context fits (see
    /// `Engine::reserve_target`), not just its next prefill chunk.
    pub(crate) memory_evicted: bool,
}

impl Default for RequestSlot {
    fn default() -> Self {
        RequestSlot {
            external_id: 0,
            arrival_us: 0,
            arrival_seq: 0,
            deadline_us: u64::MAX,
            first_token_us: u64::MAX,
            predicted_total: 0.0,
            initial_prediction: 0.0,
            seq_raw: 0,
            scheduled_step: 0,
            validated_stamp: 0,
            backlog_contrib: 0,
            backlog_ceil: 0,
            quiet_until: 0,
            cache_salt: 0,
            hashes: ChunkList::EMPTY,
            key: RankKey::default(),
            generation: 1,
            id_chain_next: NIL,
            prompt_tokens: 0,
            extra_prompt: 0,
            max_output: u32::MAX,
            generated: 0,
            computed: 0,
            recompute_upto: 0,
            priority: 0,
            tenant: 0,
            running_pos: NIL,
            reserve_left: 0,
            preemptions: 0,
            sched_tokens: 0,
            sched_blocks: 0,
            sched_chunks: 0,
            sched_from: 0,
            idle_prev: NIL,
            idle_next: NIL,
            next_free: NIL,
            promoted_next: NIL,
            exception: NIL,
            state: SlotState::Free,
            has_prediction: false,
            reported: false,
            queued: false,
            idle_listed: false,
            sampled_since_admit: false,
            admitted_seq: 0,
            memory_evicted: false,
        }
    }
}

impl RequestSlot {
    /// All tokens known: prompt, appended tool output, generated output. Each part, and the
    /// sum, stays below [`super::TOKEN_LIMIT`] (checked on entry, and a request finishes when
    /// it reaches the limit), so the sum never wraps (wrapping adds cost one instruction
    /// each; this runs several times per request per step).
    #[inline]
    pub(crate) fn num_tokens(&self) -> u32 {
        self.prompt_tokens
            .wrapping_add(self.extra_prompt)
            .wrapping_add(self.generated)
    }

    /// What [`RequestSlot::quiet_until`] must be under token limit `limit`.
    #[inline]
    pub(crate) fn quiet_until_for(&self, limit: u32) -> u32 {
        let prompt = self.prompt_tokens.saturating_add(self.extra_prompt);
        self.max_output
            .min(limit.saturating_sub(prompt))
            .min(self.backlog_ceil)
    }

    /// Sets [`RequestSlot::quiet_until`] after `max_output`, the prompt or `backlog_ceil`
    /// changed.
    #[inline]
    pub(crate) fn set_quiet_until(&mut self, limit: u32) {
        self.quiet_until = self.quiet_until_for(limit);
    }

    /// Tokens known but not computed yet.
    #[inline]
    pub(crate) fn owed(&self) -> u32 {
        self.num_tokens().saturating_sub(self.computed)
    }

    /// Whether its next step is a decode: exactly the last sampled token is left to compute.
    #[inline]
    pub(crate) fn owes_decode(&self) -> bool {
        self.owed() == 1 && self.generated > 0
    }

    #[inline]
    pub(crate) fn seq(&self) -> Option<SeqHandle> {
        (self.seq_raw != 0).then(|| SeqHandle::from_raw(self.seq_raw))
    }

    #[inline]
    pub(crate) fn live(&self) -> bool {
        self.state != SlotState::Free
    }
}

impl HashChain for [RequestSlot] {
    type Key = u64;
    #[inline]
    fn key(&self, i: u32) -> Result<u64, InternalError> {
        self.get(i as usize)
            .map(|r| r.external_id)
            .or_broken("request slot out of range")
    }
    #[inline]
    fn key_bits(key: u64) -> u64 {
        key
    }
    #[inline]
    fn chain_next(&self, i: u32) -> Result<u32, InternalError> {
        self.get(i as usize)
            .map(|r| r.id_chain_next)
            .or_broken("request slot out of range")
    }
    #[inline]
    fn set_chain_next(&mut self, i: u32, v: u32) -> Result<(), InternalError> {
        self.get_mut(i as usize)
            .or_broken("request slot out of range")?
            .id_chain_next = v;
        Ok(())
    }
}

impl crate::kv::Links for [RequestSlot] {
    #[inline]
    fn prev(&self, i: u32) -> Result<u32, InternalError> {
        self.get(i as usize)
            .map(|r| r.idle_prev)
            .or_broken("request slot out of range")
    }
    #[inline]
    fn next(&self, i: u32) -> Result<u32, InternalError> {
        self.get(i as usize)
            .map(|r| r.idle_next)
            .or_broken("request slot out of range")
    }
    #[inline]
    fn set_prev(&mut self, i: u32, v: u32) -> Result<(), InternalError> {
        self.get_mut(i as usize)
            .or_broken("request slot out of range")?
            .idle_prev = v;
        Ok(())
    }
    #[inline]
    fn set_next(&mut self, i: u32, v: u32) -> Result<(), InternalError> {
        self.get_mut(i as usize)
            .or_broken("request slot out of range")?
            .idle_next = v;
        Ok(())
    }
}
