//! Engine configuration, its validation, and the storage it needs.

use core::fmt;

use super::plan::{Dropped, Finished, Preemption, ScheduledEntry};
use super::request::RequestSlot;
use super::wait_queue::{PairNode, TenantSlot};
use crate::kv::{
    BlockPair, BlockSlot, Chunk, KvConfig, KvConfigError, KvEvent, KvLayout, KvStorage, SeqSlot,
    TableChunk,
};
use crate::policy::{Policy, PolicyError, PolicyKind};
use crate::queue::HeapEntry;

/// Items per chunk of a request's block-hash list (a chunk is 64 bytes).
pub const HASH_CHUNK_LEN: usize = 7;

/// Tokens one request may hold at most (prompt, appended tool output and generated tokens
/// together), whatever `max_sequence_tokens` says: 2^31 − 1, so that the sum of any two token
/// counts fits in a `u32`. A request reaching it finishes with
/// [`FinishReason::Length`](super::FinishReason::Length), and longer prompts are refused.
pub const TOKEN_LIMIT: u32 = u32::MAX / 2;

/// The most draft tokens [`EngineConfig::max_draft_tokens`] may allow (speculative decoders
/// propose a handful; this bounds the damage of a wrong configuration).
pub const MAX_DRAFT_TOKENS: u32 = 256;

/// One chunk of a request's block-hash list.
pub type HashChunk = Chunk<u64, HASH_CHUNK_LEN>;

/// How a running request is preempted when memory runs out or a better request must start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreemptionMode {
    /// Free its KV; recompute it when it runs again (cached prefix blocks survive and are hit).
    Recompute,
    /// Copy its KV to the host pool and back (falls back to recompute when the host is full).
    Swap,
    /// Whichever the cost model says is cheaper: recompute `computed tokens × recompute cost`
    /// against swap `2 × blocks × swap cost per block`.
    Auto,
}

/// What must fit before a waiting request is admitted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AdmissionMode {
    /// Blocks for this step's chunk only (vLLM's default). Admits most; may preempt later.
    Eager,
    /// Blocks for the whole remaining prompt must be available (vLLM #37307).
    FullPrompt,
    /// Reserve blocks for prompt + predicted output × `headroom` (capped by the output cap):
    /// the per-request replacement for SGLang's global new-token ratio.
    Predicted {
        /// Multiplier on the predicted remaining output (≥ 1 is conservative).
        headroom: f64,
    },
    /// Reserve prompt + the output cap (or `max_sequence_tokens`): TensorRT-LLM's
    /// guaranteed-no-evict and TGI's reservation.
    WorstCase,
}

/// What happens to a request's KV while it waits on an external call (tool/API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseMode {
    /// Keep the KV on the device.
    Preserve,
    /// Free it; recompute on resume.
    Discard,
    /// Copy it to the host pool (falls back to discard when the host is full).
    Swap,
    /// The option wasting the least memory-time (InferCept / LAMPS): preserve wastes
    /// `blocks × pause`, discard wastes `recompute time × blocks held by everyone`, swap wastes
    /// `2 × swap time × blocks`.
    Auto,
}

/// Per-unit costs the engine weighs when choosing how to preempt or pause.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostWeights {
    /// Time to recompute one token's KV, µs.
    pub recompute_us_per_token: f64,
    /// Time to copy one block one way between device and host, µs.
    pub swap_us_per_block: f64,
}

/// Everything that shapes an engine. [`EngineConfig::new`] gives defaults; change fields, then
/// [`EngineConfig::validate`] (also done by `Engine::new`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EngineConfig {
    /// Tokens per KV block.
    pub block_size: u32,
    /// Device KV blocks.
    pub device_blocks: u32,
    /// Host (swap) KV blocks; 0 disables swapping.
    pub host_blocks: u32,
    /// Live requests at most (waiting + running + swapped + paused).
    pub max_requests: u32,
    /// Requests scheduled in one step at most (vLLM's `max_num_seqs`).
    pub max_running: u32,
    /// Tokens computed in one step at most, prefill and decode together.
    pub token_budget: u32,
    /// Prefill tokens per request per step at most (chunked prefill); 0 = only the budget.
    pub prefill_chunk: u32,
    /// Fraction of device blocks kept free when admitting while others run.
    pub watermark: f64,
    /// The scheduling policy.
    pub policy: Policy,
    /// How to preempt.
    pub preemption: PreemptionMode,
    /// What must fit to admit.
    pub admission: AdmissionMode,
    /// A waiting request displaces a running one only if its rank is lower by more than this.
    pub priority_margin: f64,
    /// Preemptions per step at most (storm guard; at least 1).
    pub max_preemptions_per_step: u32,
    /// Whether a rank preemption may throw a request's KV away. By default it may not: a
    /// better-ranked request displaces a running one only by keeping the victim's KV in place
    /// (when only the batch is full) or swapping it to the host (when memory is short), never
    /// by discarding computed work, which under memory pressure feeds preemption storms.
    pub rank_preemption_may_recompute: bool,
    /// Reuse cached prefix blocks.
    pub prefix_caching: bool,
    /// Tokens per request (prompt + output) at most; 0 = only [`TOKEN_LIMIT`]. Requests
    /// reaching it finish with reason `Length`; prompts at or above it are rejected.
    pub max_sequence_tokens: u32,
    /// Speculative decoding: draft tokens a sampling entry's result may report as accepted, on
    /// top of its one sampled token (0 = no speculation). Accepted drafts are appended to the
    /// request like sampled tokens; augur schedules no lookahead slots for them, so their KV is
    /// computed in the request's next step (a short prefill entry), not kept from the
    /// verification pass.
    pub max_draft_tokens: u32,
    /// Costs for `Auto` preemption and pause decisions.
    pub costs: CostWeights,
    /// What to do with a paused request's KV.
    pub pause: PauseMode,
    /// Tenant ids run from 0 to `max_tenants − 1`.
    pub max_tenants: u32,
    /// Fair share: weight of a prompt token in a tenant's virtual counter.
    pub vtc_input_weight: f64,
    /// Fair share: weight of an output token in a tenant's virtual counter.
    pub vtc_output_weight: f64,
    /// Block hashes stored across all live requests (prompt hashes and hashes of blocks filled
    /// while decoding).
    pub hash_capacity: u32,
    /// Entries of the KV event ring (block stored / removed / all cleared, for cluster
    /// routers; drained with `Engine::drain_kv_events`). 0, the default, records no events
    /// and costs nothing.
    pub kv_event_capacity: u32,
}

/// A field of [`EngineConfig`] that is invalid, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineConfigError {
    /// The named field is out of range.
    Field(&'static str),
    /// The policy has an invalid parameter.
    Policy(PolicyError),
    /// The KV shape is invalid.
    Kv(KvConfigError),
    /// The storage this configuration needs does not fit in the address space.
    TooLarge,
}

impl fmt::Display for EngineConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineConfigError::Field(name) => {
                write!(f, "invalid engine configuration field `{name}`")
            }
            EngineConfigError::Policy(e) => write!(f, "{e}"),
            EngineConfigError::Kv(e) => write!(f, "{e}"),
            EngineConfigError::TooLarge => {
                f.write_str("the engine's storage would not fit in the address space")
            }
        }
    }
}

impl core::error::Error for EngineConfigError {}

impl EngineConfig {
    /// Defaults: no host pool, 256 running, 8,192-token budget, chunks of 2,048, 1% watermark,
    /// SPRPT, `Auto` preemption, eager admission, margin 0, 8 preemptions per step, prefix
    /// caching on, one tenant, preserve on pause.
    pub const fn new(block_size: u32, device_blocks: u32, max_requests: u32) -> Self {
        EngineConfig {
            block_size,
            device_blocks,
            host_blocks: 0,
            max_requests,
            max_running: 256,
            token_budget: 8192,
            prefill_chunk: 2048,
            watermark: 0.01,
            policy: Policy::new(PolicyKind::Sprpt),
            preemption: PreemptionMode::Auto,
            admission: AdmissionMode::Eager,
            priority_margin: 0.0,
            max_preemptions_per_step: 8,
            rank_preemption_may_recompute: false,
            prefix_caching: true,
            max_sequence_tokens: 0,
            max_draft_tokens: 0,
            costs: CostWeights {
                recompute_us_per_token: 25.0,
                swap_us_per_block: 40.0,
            },
            pause: PauseMode::Preserve,
            max_tenants: 1,
            vtc_input_weight: 1.0,
            vtc_output_weight: 2.0,
            hash_capacity: 0,
            kv_event_capacity: 0,
        }
    }

    /// The block manager's shape: one sequence per request.
    pub fn kv_config(&self) -> KvConfig {
        let mut kv = KvConfig::new(
            self.block_size,
            self.device_blocks,
            self.host_blocks,
            self.max_requests,
        );
        kv.prefix_caching = self.prefix_caching;
        kv.event_capacity = self.kv_event_capacity;
        kv
    }

    /// Block hashes storable: `hash_capacity`, or when 0, one per device and host block plus 16
    /// per request.
    pub fn effective_hash_capacity(&self) -> u32 {
        if self.hash_capacity > 0 {
            self.hash_capacity
        } else {
            let n = u64::from(self.device_blocks)
                .saturating_add(u64::from(self.host_blocks))
                .saturating_add(16u64.saturating_mul(u64::from(self.max_requests)));
            n.min((u32::MAX / 2) as u64) as u32
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), EngineConfigError> {
        use EngineConfigError::Field;
        self.kv_config().validate().map_err(EngineConfigError::Kv)?;
        self.policy.validate().map_err(EngineConfigError::Policy)?;
        if self.max_requests == 0 || self.max_requests >= u32::MAX / 2 {
            return Err(Field("max_requests"));
        }
        if self.max_running == 0 || self.max_running > self.max_requests {
            return Err(Field("max_running"));
        }
        if self.token_budget == 0 {
            return Err(Field("token_budget"));
        }
        if !(self.watermark.is_finite() && (0.0..1.0).contains(&self.watermark)) {
            return Err(Field("watermark"));
        }
        if !(self.priority_margin.is_finite() && self.priority_margin >= 0.0) {
            return Err(Field("priority_margin"));
        }
        if self.max_preemptions_per_step == 0 {
            return Err(Field("max_preemptions_per_step"));
        }
        if let AdmissionMode::Predicted { headroom } = self.admission
            && !(headroom.is_finite() && headroom >= 0.0)
        {
            return Err(Field("admission.headroom"));
        }
        let c = self.costs;
        if !(c.recompute_us_per_token.is_finite() && c.recompute_us_per_token >= 0.0) {
            return Err(Field("costs.recompute_us_per_token"));
        }
        if !(c.swap_us_per_block.is_finite() && c.swap_us_per_block >= 0.0) {
            return Err(Field("costs.swap_us_per_block"));
        }
        if self.max_tenants == 0 || self.max_tenants >= u32::MAX / 2 {
            return Err(Field("max_tenants"));
        }
        if !(self.vtc_input_weight.is_finite() && self.vtc_input_weight >= 0.0) {
            return Err(Field("vtc_input_weight"));
        }
        if !(self.vtc_output_weight.is_finite() && self.vtc_output_weight >= 0.0) {
            return Err(Field("vtc_output_weight"));
        }
        if self.max_draft_tokens > MAX_DRAFT_TOKENS {
            return Err(Field("max_draft_tokens"));
        }
        if self.max_sequence_tokens != 0 && !(2..=TOKEN_LIMIT).contains(&self.max_sequence_tokens) {
            return Err(Field("max_sequence_tokens"));
        }
        Ok(())
    }

    /// Tokens one request may hold at most: `max_sequence_tokens`, or [`TOKEN_LIMIT`] when
    /// that is 0.
    #[inline]
    pub fn token_limit(&self) -> u32 {
        if self.max_sequence_tokens == 0 {
            TOKEN_LIMIT
        } else {
            self.max_sequence_tokens.min(TOKEN_LIMIT)
        }
    }

    /// Device blocks the watermark keeps free while others run.
    pub(crate) fn watermark_blocks(&self) -> u32 {
        let w = libm::ceil(self.watermark * f64::from(self.device_blocks));
        // `as` saturates; validation keeps the watermark in [0, 1).
        (w as u32).min(self.device_blocks)
    }

    /// The storage an engine with this configuration needs.
    pub fn layout(&self) -> Result<EngineLayout, EngineConfigError> {
        self.validate()?;
        let kv = self.kv_config().layout().map_err(EngineConfigError::Kv)?;
        let fair = self.policy.fair_share;
        let count = |n: u64| usize::try_from(n).map_err(|_| EngineConfigError::TooLarge);
        let reqs = count(u64::from(self.max_requests))?;
        let tenants = count(u64::from(self.max_tenants))?;
        let device = count(u64::from(self.device_blocks))?;
        let host = count(u64::from(self.host_blocks))?;
        let running = count(u64::from(self.max_running))?;
        let hash_chunks = count(
            u64::from(self.effective_hash_capacity())
                .div_ceil(HASH_CHUNK_LEN as u64)
                .saturating_add(u64::from(self.max_requests)),
        )?;
        let plan_blocks = count(
            u64::from(self.device_blocks)
                .saturating_add(2u64.saturating_mul(self.max_running.into())),
        )?;
        let dropped = count(u64::from(self.max_running).saturating_add(8))?;
        let layout = EngineLayout {
            kv,
            requests: reqs,
            id_buckets: crate::kv::bucket_count(self.max_requests),
            queue_entries: if fair { 0 } else { reqs },
            queue_positions: if fair { 0 } else { reqs },
            pair_nodes: if fair { reqs } else { 0 },
            tenants,
            tenant_entries: if fair { tenants } else { 0 },
            tenant_positions: if fair { tenants } else { 0 },
            running,
            hash_chunks,
            plan_entries: running,
            plan_blocks,
            swap_out: host,
            swap_in: device,
            copies: running,
            // Each running request is preempted at most once per step, and only running
            // requests are preempted: every preemption fits, whatever the per-step cap.
            preempted: running,
            dropped,
            finished: running,
        };
        layout.region().ok_or(EngineConfigError::TooLarge)?;
        Ok(layout)
    }
}

/// How many elements each [`EngineStorage`] slice needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineLayout {
    /// The block manager's slices.
    pub kv: KvLayout,
    /// [`EngineStorage::requests`].
    pub requests: usize,
    /// [`EngineStorage::id_buckets`] (a power of two).
    pub id_buckets: usize,
    /// [`EngineStorage::queue_entries`] (0 under fair share).
    pub queue_entries: usize,
    /// [`EngineStorage::queue_positions`] (0 under fair share).
    pub queue_positions: usize,
    /// [`EngineStorage::pair_nodes`] (0 without fair share).
    pub pair_nodes: usize,
    /// [`EngineStorage::tenants`].
    pub tenants: usize,
    /// [`EngineStorage::tenant_entries`] (0 without fair share).
    pub tenant_entries: usize,
    /// [`EngineStorage::tenant_positions`] (0 without fair share).
    pub tenant_positions: usize,
    /// [`EngineStorage::running`].
    pub running: usize,
    /// [`EngineStorage::hash_chunks`].
    pub hash_chunks: usize,
    /// [`EngineStorage::plan_entries`].
    pub plan_entries: usize,
    /// [`EngineStorage::plan_blocks`].
    pub plan_blocks: usize,
    /// [`EngineStorage::swap_out`].
    pub swap_out: usize,
    /// [`EngineStorage::swap_in`].
    pub swap_in: usize,
    /// [`EngineStorage::copies`].
    pub copies: usize,
    /// [`EngineStorage::preempted`].
    pub preempted: usize,
    /// [`EngineStorage::dropped`].
    pub dropped: usize,
    /// [`EngineStorage::finished`].
    pub finished: usize,
}

impl EngineLayout {
    /// Total bytes of the storage as one region, padding included ([`EngineConfig::layout`]
    /// refuses configurations where this would overflow, so it saturates only for hand-made
    /// layouts).
    pub fn bytes(&self) -> usize {
        self.region().map_or(usize::MAX, |r| r.size)
    }

    /// The alignment a one-region storage needs: the largest of its element types'.
    pub fn align(&self) -> usize {
        RegionLayout::ALIGN
    }

    /// Where each array lives when the whole storage is carved out of one region (`None` if
    /// the total overflows `usize`). The carving itself needs `unsafe` and lives outside this
    /// crate (`augur-region`); this is the safe half that both the carver and the size query
    /// share, so the two can never disagree.
    pub fn region(&self) -> Option<RegionLayout> {
        let mut bump = Bump::default();
        let kv = &self.kv;
        Some(RegionLayout {
            // Widest alignment first: less padding.
            requests: bump.place::<RequestSlot>(self.requests)?,
            blocks: bump.place::<BlockSlot>(kv.blocks)?,
            table_chunks: bump.place::<TableChunk>(kv.table_chunks)?,
            seqs: bump.place::<SeqSlot>(kv.seqs)?,
            hash_chunks: bump.place::<HashChunk>(self.hash_chunks)?,
            events: bump.place::<KvEvent>(kv.events)?,
            event_parents: bump.place::<Option<u64>>(kv.event_parents)?,
            queue_entries: bump.place::<HeapEntry>(self.queue_entries)?,
            tenant_entries: bump.place::<HeapEntry>(self.tenant_entries)?,
            pair_nodes: bump.place::<PairNode>(self.pair_nodes)?,
            tenants: bump.place::<TenantSlot>(self.tenants)?,
            plan_entries: bump.place::<ScheduledEntry>(self.plan_entries)?,
            preempted: bump.place::<Preemption>(self.preempted)?,
            dropped: bump.place::<Dropped>(self.dropped)?,
            finished: bump.place::<Finished>(self.finished)?,
            swap_out: bump.place::<BlockPair>(self.swap_out)?,
            swap_in: bump.place::<BlockPair>(self.swap_in)?,
            copies: bump.place::<BlockPair>(self.copies)?,
            hash_buckets: bump.place::<u32>(kv.hash_buckets)?,
            id_buckets: bump.place::<u32>(self.id_buckets)?,
            queue_positions: bump.place::<u32>(self.queue_positions)?,
            tenant_positions: bump.place::<u32>(self.tenant_positions)?,
            running: bump.place::<u32>(self.running)?,
            plan_blocks: bump.place::<u32>(self.plan_blocks)?,
            size: bump.end()?,
        })
    }
}

/// Where one typed array of an [`EngineStorage`] lives in a one-region storage: `len`
/// elements from byte `offset` (a multiple of the element type's alignment).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Byte offset from the region's start.
    pub offset: usize,
    /// Elements.
    pub len: usize,
}

/// The one-region storage of an engine ([`EngineLayout::region`]): one [`Span`] per
/// [`EngineStorage`] slice (named alike; the four block-manager slices are flattened in),
/// laid out back to back without overlap, the total size, and (as [`Self::ALIGN`]) the
/// region's alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionLayout {
    /// Bytes of the whole region.
    pub size: usize,
    /// The span of [`EngineStorage`]`::requests`.
    pub requests: Span,
    /// The span of [`EngineStorage`]`::kv.blocks`.
    pub blocks: Span,
    /// The span of [`EngineStorage`]`::kv.table_chunks`.
    pub table_chunks: Span,
    /// The span of [`EngineStorage`]`::kv.seqs`.
    pub seqs: Span,
    /// The span of [`EngineStorage`]`::hash_chunks`.
    pub hash_chunks: Span,
    /// The span of [`EngineStorage`]`::kv.events`.
    pub events: Span,
    /// The span of [`EngineStorage`]`::kv.event_parents`.
    pub event_parents: Span,
    /// The span of [`EngineStorage`]`::queue_entries`.
    pub queue_entries: Span,
    /// The span of [`EngineStorage`]`::tenant_entries`.
    pub tenant_entries: Span,
    /// The span of [`EngineStorage`]`::pair_nodes`.
    pub pair_nodes: Span,
    /// The span of [`EngineStorage`]`::tenants`.
    pub tenants: Span,
    /// The span of [`EngineStorage`]`::plan_entries`.
    pub plan_entries: Span,
    /// The span of [`EngineStorage`]`::preempted`.
    pub preempted: Span,
    /// The span of [`EngineStorage`]`::dropped`.
    pub dropped: Span,
    /// The span of [`EngineStorage`]`::finished`.
    pub finished: Span,
    /// The span of [`EngineStorage`]`::swap_out`.
    pub swap_out: Span,
    /// The span of [`EngineStorage`]`::swap_in`.
    pub swap_in: Span,
    /// The span of [`EngineStorage`]`::copies`.
    pub copies: Span,
    /// The span of [`EngineStorage`]`::kv.hash_buckets`.
    pub hash_buckets: Span,
    /// The span of [`EngineStorage`]`::id_buckets`.
    pub id_buckets: Span,
    /// The span of [`EngineStorage`]`::queue_positions`.
    pub queue_positions: Span,
    /// The span of [`EngineStorage`]`::tenant_positions`.
    pub tenant_positions: Span,
    /// The span of [`EngineStorage`]`::running`.
    pub running: Span,
    /// The span of [`EngineStorage`]`::plan_blocks`.
    pub plan_blocks: Span,
}

impl RegionLayout {
    /// The alignment the region needs: the largest alignment of the element types.
    pub const ALIGN: usize = max_align(&[
        align_of::<RequestSlot>(),
        align_of::<BlockSlot>(),
        align_of::<TableChunk>(),
        align_of::<SeqSlot>(),
        align_of::<HashChunk>(),
        align_of::<KvEvent>(),
        align_of::<Option<u64>>(),
        align_of::<HeapEntry>(),
        align_of::<PairNode>(),
        align_of::<TenantSlot>(),
        align_of::<ScheduledEntry>(),
        align_of::<Preemption>(),
        align_of::<Dropped>(),
        align_of::<Finished>(),
        align_of::<BlockPair>(),
        align_of::<u32>(),
    ]);
}

const fn max_align(aligns: &[usize]) -> usize {
    let mut max = 1;
    let mut rest = aligns;
    while let [first, tail @ ..] = rest {
        if *first > max {
            max = *first;
        }
        rest = tail;
    }
    max
}

/// A bump allocator over byte offsets: places arrays back to back, each at its type's
/// alignment. `None` on overflow.
#[derive(Default)]
struct Bump {
    offset: usize,
}

impl Bump {
    fn place<T>(&mut self, len: usize) -> Option<Span> {
        let offset = self.offset.checked_next_multiple_of(align_of::<T>())?;
        self.offset = offset.checked_add(len.checked_mul(size_of::<T>())?)?;
        Some(Span { offset, len })
    }

    /// The total, rounded up to the region's alignment (so regions can be laid end to end).
    fn end(&self) -> Option<usize> {
        self.offset.checked_next_multiple_of(RegionLayout::ALIGN)
    }
}

/// The caller-provided storage of an engine; each slice at least as long as
/// [`EngineConfig::layout`] says (extra elements are ignored; contents do not matter).
#[derive(Debug)]
pub struct EngineStorage<'a> {
    /// The block manager's storage.
    pub kv: KvStorage<'a>,
    /// Request slots.
    pub requests: &'a mut [RequestSlot],
    /// Bucket heads of the external-id index.
    pub id_buckets: &'a mut [u32],
    /// Waiting-queue heap entries.
    pub queue_entries: &'a mut [HeapEntry],
    /// Waiting-queue positions.
    pub queue_positions: &'a mut [u32],
    /// Per-request nodes of the per-tenant queues (fair share).
    pub pair_nodes: &'a mut [PairNode],
    /// Tenant counters.
    pub tenants: &'a mut [TenantSlot],
    /// Tenant-heap entries (fair share).
    pub tenant_entries: &'a mut [HeapEntry],
    /// Tenant-heap positions (fair share).
    pub tenant_positions: &'a mut [u32],
    /// The running set.
    pub running: &'a mut [u32],
    /// Chunks of the per-request block-hash lists.
    pub hash_chunks: &'a mut [HashChunk],
    /// The plan's scheduled entries.
    pub plan_entries: &'a mut [ScheduledEntry],
    /// The plan's new block ids.
    pub plan_blocks: &'a mut [u32],
    /// The plan's swap-out pairs.
    pub swap_out: &'a mut [BlockPair],
    /// The plan's swap-in pairs.
    pub swap_in: &'a mut [BlockPair],
    /// The plan's copy-on-write pairs.
    pub copies: &'a mut [BlockPair],
    /// The plan's preemptions.
    pub preempted: &'a mut [Preemption],
    /// The plan's dropped requests.
    pub dropped: &'a mut [Dropped],
    /// Requests finished by the last `complete`.
    pub finished: &'a mut [Finished],
}
