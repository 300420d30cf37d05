//! What one step decides (the plan), what the executor reports back, and the errors of the
//! engine's calls.

use core::fmt;

use super::request::RequestHandle;
use crate::internal::InternalError;
use crate::kv::BlockPair;

/// Whether a scheduled entry computes prompt tokens or one decode token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum EntryKind {
    /// Prompt (or recomputed, or appended tool-output) tokens; the last chunk also samples the
    /// first new token.
    #[default]
    Prefill = 0,
    /// One decode token.
    Decode = 1,
}

/// One request scheduled in a step. `#[repr(C)]`: the C ABI hands out the plan's array of
/// these in place (`augur_plan_entry` has the same layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct ScheduledEntry {
    /// The request.
    pub handle: RequestHandle,
    /// The caller's id.
    pub external_id: u64,
    /// Prefill or decode.
    pub kind: EntryKind,
    /// Tokens to compute this step.
    pub tokens: u32,
    /// Tokens whose KV was already computed before this step (the position of the first).
    pub computed_before: u32,
    /// Whether this step reaches the last known token, so the model samples a new one (the
    /// result must then report at least 1 token, or finish; more only with speculative
    /// decoding, `EngineConfig::max_draft_tokens`). An entry that does not sample reports 0.
    pub samples: bool,
    /// Block-table delta: the executor's copy of this request's block table is truncated to
    /// `table_start` entries and extended with `Plan::blocks(entry)`.
    pub table_start: u32,
    /// Where this entry's new block ids start in [`Plan::blocks`] (the plan's one block-id
    /// array).
    pub blocks_offset: u32,
    /// How many new block ids it has there.
    pub blocks_len: u32,
}

impl ScheduledEntry {
    /// This entry's result when nothing happened but what was scheduled: one sampled token
    /// if it samples, none if it does not, nothing else. What
    /// [`Engine::complete_except`](crate::engine::Engine::complete_except) gives every entry
    /// it is not told about.
    pub const fn default_result(&self) -> StepResult {
        StepResult::new(self.handle, self.samples as u32)
    }
}

impl Default for ScheduledEntry {
    fn default() -> Self {
        ScheduledEntry {
            handle: RequestHandle::from_raw(0),
            external_id: 0,
            kind: EntryKind::Prefill,
            tokens: 0,
            computed_before: 0,
            samples: false,
            table_start: 0,
            blocks_offset: 0,
            blocks_len: 0,
        }
    }
}

/// How a request was preempted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PreemptionKind {
    /// KV freed; the request recomputes when it runs again.
    #[default]
    Recompute = 0,
    /// KV copied to host blocks (see the plan's swap-out pairs).
    Swap = 1,
    /// KV kept on the device: the batch was full but memory was not short, so nothing is
    /// thrown away. The KV is evicted later only if memory runs short.
    Keep = 2,
}

/// Why a request was preempted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PreemptionCause {
    /// The running requests needed more blocks than were free.
    #[default]
    Memory = 0,
    /// A better-ranked waiting request displaced it.
    Rank = 1,
}

/// A preemption in this step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Preemption {
    /// The request.
    pub handle: RequestHandle,
    /// The caller's id.
    pub external_id: u64,
    /// Recompute or swap.
    pub kind: PreemptionKind,
    /// Memory or rank.
    pub cause: PreemptionCause,
}

impl Default for Preemption {
    fn default() -> Self {
        Preemption {
            handle: RequestHandle::from_raw(0),
            external_id: 0,
            kind: PreemptionKind::Recompute,
            cause: PreemptionCause::Memory,
        }
    }
}

/// Why the engine gave up on a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum DropReason {
    /// It needs more KV blocks than the whole device pool has.
    #[default]
    ExceedsKvCapacity = 0,
}

/// A request the engine removed in this step; its handle is now stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Dropped {
    /// The request.
    pub handle: RequestHandle,
    /// The caller's id.
    pub external_id: u64,
    /// Why.
    pub reason: DropReason,
}

impl Default for Dropped {
    fn default() -> Self {
        Dropped {
            handle: RequestHandle::from_raw(0),
            external_id: 0,
            reason: DropReason::ExceedsKvCapacity,
        }
    }
}

/// Why a request finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum FinishReason {
    /// The executor said so (stop token, client done).
    #[default]
    Stop = 0,
    /// It reached its output cap.
    MaxOutput = 1,
    /// It reached `max_sequence_tokens`.
    Length = 2,
}

/// A request that finished in the last `complete` call; its handle is now stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Finished {
    /// The request.
    pub handle: RequestHandle,
    /// The caller's id.
    pub external_id: u64,
    /// Output tokens generated.
    pub generated_tokens: u32,
    /// Why.
    pub reason: FinishReason,
}

impl Default for Finished {
    fn default() -> Self {
        Finished {
            handle: RequestHandle::from_raw(0),
            external_id: 0,
            generated_tokens: 0,
            reason: FinishReason::Stop,
        }
    }
}

/// The decisions of one step. Borrowed from the engine until its next call.
///
/// # The plan contract
///
/// What the executor must do, and what it may assume. The property tests check every clause
/// with an executor model that tracks what each block *contains* (the KV content oracle).
///
/// **Order.** Carry out the block copies in this order, each list in any order or batched
/// (no two pairs of one list touch the same destination):
/// 1. `swap_out`: device block `src` → host block `dst`;
/// 2. `swap_in`: host block `src` → device block `dst`;
/// 3. `copies`: device block `src` → device block `dst` (copy-on-write);
/// 4. run the model on `entries`: entry `e` writes the KV of its request's token positions
///    `e.computed_before .. e.computed_before + e.tokens`, position `p` into block
///    `table[p / block_size]` of the request's table, after the table is truncated to
///    `e.table_start` entries and extended with [`Plan::blocks`]`(e)`.
///
/// **Reads and writes.** `swap_out` reads device blocks and writes host blocks; `swap_in`
/// reads host blocks and writes device blocks; `copies` read and write device blocks; the
/// model reads every block of each entry's table and writes only the positions above.
/// Within one plan:
/// - destinations are distinct: no block is the destination of two pairs, in one list or
///   across lists of the same tier;
/// - no host block that a `swap_in` reads is written by a `swap_out` of the same plan (no
///   swap-out is planned after a swap-in, and an aborted request's unsent swap-out pairs are
///   withdrawn before its host blocks are freed);
/// - a device block that a `swap_out` reads may be written later in the same plan (as a
///   `swap_in` or copy destination, or by the model for another request): the order above
///   makes that correct, since it was read first;
/// - no pair names a block outside its tier's pool, and no entry's table names a free block;
///   a block read by an op holds the content the op expects (the source's request's tokens).
///
/// **Lifetimes.** Preempted and dropped requests are absent from `entries`; forget their
/// mirrored tables (a preempted request's KV is discarded, swapped out by this plan's
/// `swap_out`, or kept in place for [`PreemptionKind::Keep`]; when it runs again its entry
/// has `table_start == 0` and carries the whole table). A pause reported in `complete` that
/// swaps the request's KV out puts its pairs in the *next* plan's `swap_out` (the model may
/// still be reading those blocks until then). Every preemption, drop and finish is reported:
/// in `preempted`, `dropped` or [`Engine::last_finished`](crate::engine::Engine::last_finished);
/// none is ever left out for lack of room.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'p> {
    /// The step number (1 for the first).
    pub step: u64,
    /// Requests to run, with their token counts and block-table deltas.
    pub entries: &'p [ScheduledEntry],
    /// Device → host copies (device block, host block).
    pub swap_out: &'p [BlockPair],
    /// Host → device copies (host block, device block).
    pub swap_in: &'p [BlockPair],
    /// Device → device copy-on-write copies.
    pub copies: &'p [BlockPair],
    /// Requests preempted in this step.
    pub preempted: &'p [Preemption],
    /// Requests the engine gave up on in this step.
    pub dropped: &'p [Dropped],
    /// The new block ids of all entries, back to back; entry `e`'s are
    /// `blocks[e.blocks_offset ..][.. e.blocks_len]` ([`Plan::blocks`]).
    pub blocks: &'p [u32],
}

impl<'p> Plan<'p> {
    /// The new device block ids of `entry`'s table (from `entry.table_start` on). `entry`
    /// must come from this plan's `entries`; for an entry of another plan the result is
    /// meaningless (but never a panic: an out-of-range entry gives an empty slice).
    pub fn blocks(&self, entry: &ScheduledEntry) -> &'p [u32] {
        let s = entry.blocks_offset as usize;
        s.checked_add(entry.blocks_len as usize)
            .and_then(|e| self.blocks.get(s..e))
            .unwrap_or(&[])
    }

    /// Tokens scheduled in this step.
    pub fn total_tokens(&self) -> u64 {
        self.entries.iter().map(|e| u64::from(e.tokens)).sum()
    }
}

/// A pause for an external call (tool/API), reported with the token that asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PauseRequest {
    /// Predicted duration of the call, µs (drives the `Auto` pause mode).
    pub predicted_duration_us: u64,
}

/// What happened to one scheduled request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepResult {
    /// The request.
    pub handle: RequestHandle,
    /// Output tokens produced: 0 if the entry did not sample; if it did, 1 plus the draft
    /// tokens accepted by speculative decoding (at most `EngineConfig::max_draft_tokens`); a
    /// finishing entry may say 0.
    pub tokens: u32,
    /// Whether the request is done.
    pub finished: bool,
    /// A refined prediction of the *remaining* output tokens (after this step's token).
    pub predicted_remaining: Option<f64>,
    /// The chained hash of the block this step filled, for prefix caching of output blocks.
    pub filled_block_hash: Option<u64>,
    /// The request now waits on an external call.
    pub pause: Option<PauseRequest>,
}

impl StepResult {
    /// A plain result: `tokens` produced, not finished, nothing else.
    pub const fn new(handle: RequestHandle, tokens: u32) -> Self {
        StepResult {
            handle,
            tokens,
            finished: false,
            predicted_remaining: None,
            filled_block_hash: None,
            pause: None,
        }
    }
}

/// What happened to one plan entry, reported by position: `results[k]` is for
/// `plan.entries[k]` ([`Engine::complete_entries`](crate::engine::Engine::complete_entries)).
/// `#[repr(C)]` with integer fields only, so a C caller can fill an array of these in place
/// (`augur_entry_result` has the same layout) and no bit pattern it writes is invalid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EntryResult {
    /// Output tokens produced: 0 if the entry did not sample; if it did, 1 plus the draft
    /// tokens accepted by speculative decoding (at most `EngineConfig::max_draft_tokens`); a
    /// finishing entry may say 0.
    pub tokens: u32,
    /// [`EntryResult::FINISHED`], [`EntryResult::PAUSE`], [`EntryResult::FILLED_BLOCK_HASH`]
    /// or'ed together; any other bit is refused.
    pub flags: u32,
    /// With [`EntryResult::PAUSE`]: the predicted duration of the external call, µs.
    pub pause_duration_us: u64,
    /// With [`EntryResult::FILLED_BLOCK_HASH`]: the chained hash of the block this step
    /// filled.
    pub filled_block_hash: u64,
}

/// One exception of [`Engine::complete_entries_except`](crate::engine::Engine::complete_entries_except):
/// the result of plan entry `entry` when it is not the default. `#[repr(C)]`, integers only,
/// like [`EntryResult`] (`augur_entry_exception` has the same layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EntryException {
    /// The entry's position in the current plan (`plan.entries[entry]`).
    pub entry: u32,
    /// Its result.
    pub result: EntryResult,
}

impl EntryException {
    /// The result `result` of entry `entry`.
    pub const fn new(entry: u32, result: EntryResult) -> Self {
        EntryException { entry, result }
    }
}

impl EntryResult {
    /// The request is done (stop token, client gone).
    pub const FINISHED: u32 = 1;
    /// The request now waits on an external call (`pause_duration_us`).
    pub const PAUSE: u32 = 2;
    /// `filled_block_hash` is set.
    pub const FILLED_BLOCK_HASH: u32 = 4;
    /// Every defined flag.
    pub const ALL_FLAGS: u32 = Self::FINISHED | Self::PAUSE | Self::FILLED_BLOCK_HASH;

    /// `tokens` produced, no flags.
    pub const fn new(tokens: u32) -> Self {
        EntryResult {
            tokens,
            flags: 0,
            pause_duration_us: 0,
            filled_block_hash: 0,
        }
    }

    /// The same result for the request `handle`, as the handle-keyed [`StepResult`] (no
    /// refined prediction: that goes through `update_prediction`). Unknown flag bits are
    /// refused.
    pub fn to_step_result(&self, handle: RequestHandle) -> Result<StepResult, ResultErrorKind> {
        if self.flags & !Self::ALL_FLAGS != 0 {
            return Err(ResultErrorKind::UnknownFlags {
                flags: self.flags & !Self::ALL_FLAGS,
            });
        }
        Ok(StepResult {
            handle,
            tokens: self.tokens,
            finished: self.flags & Self::FINISHED != 0,
            predicted_remaining: None,
            filled_block_hash: (self.flags & Self::FILLED_BLOCK_HASH != 0)
                .then_some(self.filled_block_hash),
            pause: (self.flags & Self::PAUSE != 0).then_some(PauseRequest {
                predicted_duration_us: self.pause_duration_us,
            }),
        })
    }
}

/// Why `add_request` refused a request. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    /// Every request slot is taken (`max_requests`).
    QueueFull,
    /// The request can never fit in the device KV pool.
    CannotFit {
        /// Blocks it needs at least.
        need_blocks: u64,
        /// Blocks the device has.
        device_blocks: u32,
    },
    /// A field is invalid; names it.
    InvalidField(&'static str),
    /// A live request already has this external id.
    DuplicateExternalId,
    /// The block-hash store is full (`hash_capacity`).
    OutOfHashStorage,
    /// `now` is earlier than a previous call's.
    TimeWentBackwards,
    /// The engine found an internal invariant broken (in this call or an earlier one) and
    /// refuses every call: a bug in augur, never the caller's fault.
    Internal(InternalError),
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddError::QueueFull => f.write_str("request queue is full"),
            AddError::CannotFit {
                need_blocks,
                device_blocks,
            } => write!(
                f,
                "request can never fit: needs {need_blocks} KV blocks, the device has {device_blocks}"
            ),
            AddError::InvalidField(name) => write!(f, "invalid request field `{name}`"),
            AddError::DuplicateExternalId => {
                f.write_str("a live request already has this external id")
            }
            AddError::OutOfHashStorage => f.write_str("block-hash storage is full"),
            AddError::TimeWentBackwards => f.write_str("time went backwards"),
            AddError::Internal(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for AddError {}

/// Why a call about one request failed. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The handle is stale (the request finished, was aborted or dropped) or was never issued.
    StaleHandle,
    /// The request is not in a state where this call applies (e.g. `resume` of one that is
    /// not paused).
    WrongState,
    /// A prediction is NaN, infinite or negative.
    InvalidPrediction,
    /// Appending this many tokens would overflow or exceed `max_sequence_tokens`.
    TooManyTokens,
    /// `now` is earlier than a previous call's.
    TimeWentBackwards,
    /// The block-hash store is full (`hash_capacity`).
    OutOfHashStorage,
    /// The caller's buffer is shorter than what must be written into it.
    BufferTooSmall {
        /// Elements needed.
        need: u32,
    },
    /// The engine found an internal invariant broken (in this call or an earlier one) and
    /// refuses every call: a bug in augur, never the caller's fault.
    Internal(InternalError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::StaleHandle => "stale or unknown request handle",
            RequestError::WrongState => "request is not in a state where this applies",
            RequestError::InvalidPrediction => "prediction must be finite and non-negative",
            RequestError::TooManyTokens => "too many tokens for this request",
            RequestError::TimeWentBackwards => "time went backwards",
            RequestError::OutOfHashStorage => "block-hash storage is full",
            RequestError::BufferTooSmall { need } => {
                return write!(f, "buffer too small: {need} elements needed");
            }
            RequestError::Internal(e) => return write!(f, "{e}"),
        })
    }
}

impl core::error::Error for RequestError {}

/// Why `schedule` refused to run. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    /// Entries of the previous plan have not been reported with `complete` (or aborted).
    ResultsPending {
        /// How many.
        missing: u32,
    },
    /// `now` is earlier than a previous call's.
    TimeWentBackwards,
    /// The engine found an internal invariant broken (in this call or an earlier one) and
    /// refuses every call: a bug in augur, never the caller's fault.
    Internal(InternalError),
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::ResultsPending { missing } => {
                write!(
                    f,
                    "{missing} entries of the previous plan have no result yet"
                )
            }
            ScheduleError::TimeWentBackwards => f.write_str("time went backwards"),
            ScheduleError::Internal(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for ScheduleError {}

/// What was wrong with one result given to `complete`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultErrorKind {
    /// The handle is stale or was never issued.
    StaleHandle,
    /// The request was not scheduled in the current plan.
    NotScheduled,
    /// The request was already reported for this plan.
    Duplicate,
    /// The token count does not match what was scheduled.
    WrongTokenCount {
        /// Tokens the entry must report: 0 if it did not sample, else at least 1 (the most it
        /// may report is in [`ResultErrorKind::TooManyTokens`]).
        expected: u32,
        /// Tokens reported.
        got: u32,
    },
    /// More tokens than the entry may report: above 1 + `max_draft_tokens`, or past the
    /// request's output cap or token limit.
    TooManyTokens {
        /// The most it may report.
        max: u32,
        /// Tokens reported.
        got: u32,
    },
    /// Flag bits that [`EntryResult`] does not define.
    UnknownFlags {
        /// The unknown bits.
        flags: u32,
    },
    /// The refined prediction is NaN, infinite or negative.
    InvalidPrediction,
    /// `finished` or `pause` on an entry that did not sample a token.
    NotAtSamplingPoint,
    /// `pause` together with `finished`.
    PauseWhenFinished,
    /// `filled_block_hash` although no block filled in this step.
    NoBlockFilled,
}

/// Why `complete` refused a batch of results; names the offending result. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompleteError {
    /// Result number `index` is invalid.
    Result {
        /// Position in the slice given to `complete`.
        index: usize,
        /// What is wrong.
        kind: ResultErrorKind,
    },
    /// Positional results must cover the whole plan at once.
    ResultCount {
        /// Entries in the plan.
        expected: usize,
        /// Results given.
        got: usize,
    },
    /// `now` is earlier than a previous call's.
    TimeWentBackwards,
    /// Positional results for a plan whose results were already accepted (by an earlier
    /// `complete` or `complete_entries` call): a plan is completed once.
    AlreadyCompleted,
    /// The engine found an internal invariant broken (in this call or an earlier one) and
    /// refuses every call: a bug in augur, never the caller's fault.
    Internal(InternalError),
}

impl fmt::Display for CompleteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompleteError::Result { index, kind } => write!(f, "result {index}: {kind:?}"),
            CompleteError::ResultCount { expected, got } => write!(
                f,
                "{got} positional results for a plan of {expected} entries (give all at once)"
            ),
            CompleteError::TimeWentBackwards => f.write_str("time went backwards"),
            CompleteError::AlreadyCompleted => f.write_str(
                "this plan's results were already accepted; schedule the next step first",
            ),
            CompleteError::Internal(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for CompleteError {}

macro_rules! from_internal {
    ($($t:ty),*) => {$(
        impl From<InternalError> for $t {
            fn from(e: InternalError) -> Self {
                <$t>::Internal(e)
            }
        }
    )*};
}
from_internal!(AddError, RequestError, ScheduleError, CompleteError);
