//! `complete`: applying what the executor reports for the scheduled entries.

use super::plan::{
    CompleteError, EntryException, EntryResult, FinishReason, Finished, PauseRequest,
    ResultErrorKind, StepResult,
};
use super::rank::{advance_backlog_in, advance_backlog_part};
use super::request::{RequestSlot, SlotState};
use super::{Engine, PauseMode, RequestHandle};
use crate::internal::{InternalError, OrBroken, broken};
use crate::time::Instant;
use crate::util::div_block;

/// What to do with a paused request's KV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PauseAction {
    Preserve,
    Discard,
    Swap,
}

impl<'a> Engine<'a> {
    /// Applies the results of the current plan's entries: tokens produced, finishes, refined
    /// predictions, filled-block hashes, pauses. Results may come in several calls, each entry
    /// exactly once. All-or-nothing: if any result is invalid the error names it and nothing
    /// changes. Requests that finish are listed by [`Engine::last_finished`].
    pub fn complete(&mut self, results: &[StepResult], now: Instant) -> Result<(), CompleteError> {
        self.complete_with(results.len(), now, |_, k| {
            results
                .get(k)
                .map(Some)
                .ok_or(ResultErrorKind::NotScheduled)
        })
    }

    /// [`Engine::complete`] by position: `results[k]` is the result of entry `k` of the
    /// current plan, and all entries are reported in this one call (a shorter or longer
    /// slice is [`CompleteError::ResultCount`]); the result at the position of a request
    /// aborted since the plan was made is ignored. This is the call a C executor makes: no
    /// handles to echo back, one small `#[repr(C)]` record per entry. Refined predictions go
    /// through [`Engine::update_prediction`]. All-or-nothing, like `complete`. Once a call
    /// accepted results for this plan, positional results are [`CompleteError::AlreadyCompleted`]
    /// (a second call would otherwise pass whenever every request of the plan had finished).
    ///
    /// It is applied as [`Engine::complete_entries_except`] with every result that is not
    /// its entry's default as an exception: a default result (`tokens` 1 where the entry
    /// samples, 0 where it does not, no flags) is valid for every entry, so it is neither
    /// converted nor validated, and goes through the cheap first pass.
    pub fn complete_entries(
        &mut self,
        results: &[EntryResult],
        now: Instant,
    ) -> Result<(), CompleteError> {
        self.check_poison()?;
        if self.results_accepted {
            return Err(CompleteError::AlreadyCompleted);
        }
        let expected = self.plan.entries.len();
        if results.len() != expected {
            return Err(CompleteError::ResultCount {
                expected,
                got: results.len(),
            });
        }
        self.complete_sparse_with(results.len(), now, |e, k| {
            e.positional_exception_at(results, k)
        })
    }

    /// [`Engine::complete`] for the whole plan, listing only the entries whose result is not
    /// the default: every entry not in `exceptions` produced exactly what it was scheduled
    /// for and nothing else — one sampled token if it samples (a decode, a prompt's last
    /// chunk), none if it does not (a prefill chunk before the last) — with no finish, no
    /// refined prediction, no hash and no pause. A step of plain decodes is then reported
    /// with an empty slice, or with one result per request that stopped; the engine reads no
    /// result for the others and validates none.
    ///
    /// `exceptions` are validated as `complete` validates results (each names an entry of
    /// this plan, at most once, in any order). All results are then applied in plan order,
    /// so this call leaves the engine exactly as `complete` with every entry's result in plan
    /// order does. Entries of requests aborted since the plan was made are skipped. Like
    /// [`Engine::complete_entries`] it covers the whole plan in one call:
    /// [`CompleteError::AlreadyCompleted`] once a call accepted results for this plan.
    /// All-or-nothing: an invalid exception changes nothing.
    pub fn complete_except(
        &mut self,
        exceptions: &[StepResult],
        now: Instant,
    ) -> Result<(), CompleteError> {
        self.complete_sparse_with(exceptions.len(), now, |_, k| {
            exceptions
                .get(k)
                .map(Some)
                .ok_or(ResultErrorKind::NotScheduled)
        })
    }

    /// [`Engine::complete_except`] by position, the C executor's form: each exception names
    /// its plan entry (`entry`, an index into the current plan's entries) and carries the
    /// positional [`EntryResult`]; every other entry gets its default result. An exception
    /// naming no entry of the plan is [`ResultErrorKind::NotScheduled`], two naming one entry
    /// [`ResultErrorKind::Duplicate`]; an exception for an entry whose request was aborted
    /// since the plan was made is ignored, as [`Engine::complete_entries`] ignores the result
    /// at its position. Refined predictions go through [`Engine::update_prediction`].
    pub fn complete_entries_except(
        &mut self,
        exceptions: &[EntryException],
        now: Instant,
    ) -> Result<(), CompleteError> {
        self.complete_sparse_with(exceptions.len(), now, |e, k| {
            let x = exceptions.get(k).ok_or(ResultErrorKind::NotScheduled)?;
            e.positional_result(x.entry as usize, &x.result)
        })
    }

    /// The one path of both sparse forms: validate the exceptions (read through
    /// `exception_at`, `None` for one to ignore), then apply every entry's result in plan
    /// order. Generic like [`Engine::complete_with`].
    fn complete_sparse_with<R: core::borrow::Borrow<StepResult>>(
        &mut self,
        count: usize,
        now: Instant,
        exception_at: impl Fn(&Self, usize) -> Result<Option<R>, ResultErrorKind>,
    ) -> Result<(), CompleteError> {
        self.check_poison()?;
        if self.results_accepted {
            return Err(CompleteError::AlreadyCompleted);
        }
        if now.as_micros() < self.last_now {
            return Err(CompleteError::TimeWentBackwards);
        }
        self.complete_stamp = self.complete_stamp.saturating_add(1);
        let stamp = self.complete_stamp;
        for index in 0..count {
            let res = exception_at(self, index)
                .and_then(|res| {
                    if let Some(res) = &res {
                        self.validate_result(res.borrow(), stamp)?;
                    }
                    Ok(res)
                })
                .map_err(|kind| CompleteError::Result { index, kind })?;
            // Valid, so the slot is in range; `count` is below `max_running` (each entry
            // at most once).
            if let Some(res) = res
                && let Some(r) = self.reqs.get_mut(res.borrow().handle.index() as usize)
            {
                r.exception = u32::try_from(index).unwrap_or(u32::MAX);
            }
        }
        self.check_time(now);
        self.results_accepted = true;
        self.finished.clear();
        if let Err(e) = self.apply_plan_order(stamp, now, &exception_at) {
            return Err(CompleteError::Internal(self.poison(e)));
        }
        Ok(())
    }

    /// The second half of the sparse forms: every entry's result in plan order, its
    /// validated exception (marked by `stamp`) or the default result. A default result
    /// needs no validation (it is valid for every entry) and none is read.
    ///
    /// Two passes. The first applies the default results that touch nothing but the
    /// request's own slot and the backlog gauge ([`plain_default`]: no block to index, no
    /// finish, no backlog refresh, no fair share), on the slots directly, and notes where
    /// the others are; the second applies those (the exceptions and the other defaults) in
    /// plan order through [`Engine::apply_result`]. The order between the two groups cannot
    /// show: a plain default changes only its own slot and a sum, which the others never
    /// read.
    fn apply_plan_order<R: core::borrow::Borrow<StepResult>>(
        &mut self,
        stamp: u64,
        now: Instant,
        exception_at: &impl Fn(&Self, usize) -> Result<Option<R>, ResultErrorKind>,
    ) -> Result<(), InternalError> {
        // Where the second pass must look: the first `REST` positions, or every entry when
        // there are more (or fair share skips the first pass).
        let mut rest_at = [0u32; REST];
        let (rest, applied) = if self.cfg.policy.fair_share {
            (0, 0)
        } else {
            self.apply_plain_defaults(stamp, now, &mut rest_at)?
        };
        match rest_at.get(..rest) {
            Some(at) if applied > 0 => {
                for &k in at {
                    self.apply_in_plan_order(k as usize, stamp, now, exception_at)?;
                }
            }
            _ => {
                for k in 0..self.plan.entries.len() {
                    self.apply_in_plan_order(k, stamp, now, exception_at)?;
                }
            }
        }
        if self.awaiting != 0 {
            return Err(InternalError::new("entries left unreported in plan order"));
        }
        Ok(())
    }

    /// [`Self::apply_plan_order`]'s first pass: applies the plain default results
    /// ([`plain_default`]) on the slots directly and notes in `rest_at` the positions of the
    /// other entries (up to its length). Returns how many other entries there are and how
    /// many results it applied. Out of line, so that its loop keeps its state in registers.
    #[inline(never)]
    fn apply_plain_defaults(
        &mut self,
        stamp: u64,
        now: Instant,
        rest_at: &mut [u32; REST],
    ) -> Result<(usize, u32), InternalError> {
        let step = self.step;
        let bs = self.cfg.block_size;
        let mut rest = 0usize;
        let mut plain = PlainResults::default();
        for (k, e) in self.plan.entries.as_slice().iter().enumerate() {
            let r = self
                .reqs
                .get_mut(e.handle.index() as usize)
                .or_broken("plan entry for a request out of range")?;
            // Aborted since the plan was made: a freed slot takes its next generation at
            // once (`Engine::release`), so its generation is that of no handle given out, and
            // the generation compare alone finds it.
            if r.generation != e.handle.generation() {
                continue;
            }
            let result = e.default_result();
            if r.validated_stamp == stamp || !plain_default(r, &result, bs) {
                if let Some(at) = rest_at.get_mut(rest) {
                    // Below the plan's length, itself a u32.
                    *at = k as u32;
                }
                rest = rest.wrapping_add(1);
                continue;
            }
            if r.scheduled_step != step || r.state != SlotState::Running || r.reported {
                return broken("a plan entry's request awaits no result");
            }
            plain.apply(r, &result, now)?;
        }
        let applied = plain.applied;
        self.commit_plain(plain)?;
        Ok((rest, applied))
    }

    /// Moves the engine's counters past the plain results `plain` applied on the slots:
    /// the entries no longer awaited, the decodes they leave owed, the backlog they released.
    #[inline(always)]
    fn commit_plain(&mut self, plain: PlainResults) -> Result<(), InternalError> {
        self.awaiting = self
            .awaiting
            .checked_sub(plain.applied)
            .or_broken("more results than entries awaited")?;
        self.decode_ready = self.decode_ready.wrapping_add(plain.decoding);
        let backlog = &mut self.stats.predicted_backlog_tokens;
        *backlog = backlog
            .checked_sub(plain.released)
            .or_broken("plain results released more backlog than the gauge holds")?;
        Ok(())
    }

    /// The result of plan entry `k` (its exception, or the default) unless it was applied
    /// already in this call or its request was aborted since the plan was made.
    fn apply_in_plan_order<R: core::borrow::Borrow<StepResult>>(
        &mut self,
        k: usize,
        stamp: u64,
        now: Instant,
        exception_at: &impl Fn(&Self, usize) -> Result<Option<R>, ResultErrorKind>,
    ) -> Result<(), InternalError> {
        let step = self.step;
        let (handle, default) = self
            .plan
            .entries
            .as_slice()
            .get(k)
            .map(|e| (e.handle, e.default_result()))
            .or_broken("plan entry out of range")?;
        let i = handle.index();
        let r = self.req(i)?;
        if !r.live() || r.generation != handle.generation() {
            return Ok(()); // aborted since the plan was made: no result is expected
        }
        if r.reported && r.scheduled_step == step {
            return Ok(()); // a plain default of the first pass
        }
        if r.scheduled_step != step || r.state != SlotState::Running {
            return broken("a plan entry's request awaits no result");
        }
        if r.validated_stamp == stamp {
            let res = match exception_at(self, r.exception as usize) {
                Ok(Some(res)) => *res.borrow(),
                _ => return broken("a validated exception can no longer be read"),
            };
            self.apply_result(i, &res, now)
        } else {
            self.apply_result(i, &default, now)
        }
    }

    /// Positional result `k` as a handle-keyed exception of the sparse path: `None` when it
    /// is its entry's default (applied as such) or the entry's request was aborted after the
    /// plan was made (no result is expected for it, so whatever the caller put there is
    /// ignored).
    fn positional_exception_at(
        &self,
        results: &[EntryResult],
        k: usize,
    ) -> Result<Option<StepResult>, ResultErrorKind> {
        let res = results.get(k).ok_or(ResultErrorKind::NotScheduled)?;
        let entry = self
            .plan
            .entries
            .as_slice()
            .get(k)
            .ok_or(ResultErrorKind::NotScheduled)?;
        // The fields a default result's flags leave unread do not matter.
        if res.flags == 0 && res.tokens == u32::from(entry.samples) {
            return Ok(None);
        }
        self.positional_result(k, res)
    }

    /// Positional result `res` of plan entry `k` as a handle-keyed result, for both
    /// positional forms: `None` if the entry's request was aborted after the plan was made
    /// (whatever `res` says is ignored), [`ResultErrorKind::NotScheduled`] if the plan has
    /// no entry `k`.
    fn positional_result(
        &self,
        k: usize,
        res: &EntryResult,
    ) -> Result<Option<StepResult>, ResultErrorKind> {
        let e = self
            .plan
            .entries
            .as_slice()
            .get(k)
            .ok_or(ResultErrorKind::NotScheduled)?;
        if self.slot_of(e.handle).is_none() {
            return Ok(None);
        }
        res.to_step_result(e.handle).map(Some)
    }

    /// The one path of both `complete` calls: validate every result, then apply them all.
    /// Generic over how result `k` is read (`result_at`), so each form gets its own
    /// monomorphic loop: a `match` on the form and a 64-byte copy per result cost more than
    /// the rest of a plain decode's validation.
    fn complete_with<R: core::borrow::Borrow<StepResult>>(
        &mut self,
        count: usize,
        now: Instant,
        result_at: impl Fn(&Self, usize) -> Result<Option<R>, ResultErrorKind>,
    ) -> Result<(), CompleteError> {
        self.check_poison()?;
        if now.as_micros() < self.last_now {
            return Err(CompleteError::TimeWentBackwards);
        }
        self.complete_stamp = self.complete_stamp.saturating_add(1);
        let stamp = self.complete_stamp;
        for index in 0..count {
            match result_at(self, index) {
                Ok(Some(res)) => self.validate_result(res.borrow(), stamp),
                Ok(None) => Ok(()),
                Err(kind) => Err(kind),
            }
            .map_err(|kind| CompleteError::Result { index, kind })?;
        }
        self.check_time(now);
        self.results_accepted = true;
        self.finished.clear();
        // Plain results (see `apply_plan_order`) are applied on their slots, their sums
        // committed after the loop: they change only their own slot and those sums, which
        // the other results' application never reads.
        let bs = self.cfg.block_size;
        let plain_allowed = !self.cfg.policy.fair_share;
        let mut plain = PlainResults::default();
        for index in 0..count {
            // Validated above, so a failure here is a broken invariant.
            let applied = match result_at(self, index) {
                Ok(Some(res)) => {
                    let res = res.borrow();
                    match self.reqs.get_mut(res.handle.index() as usize) {
                        Some(r) if plain_allowed && plain_result(r, res, bs) => {
                            plain.apply(r, res, now)
                        }
                        _ => self.apply_result(res.handle.index(), res, now),
                    }
                }
                Ok(None) => Ok(()),
                Err(_) => Err(InternalError::new(
                    "a validated result can no longer be read",
                )),
            };
            if let Err(e) = applied {
                return Err(CompleteError::Internal(self.poison(e)));
            }
        }
        if let Err(e) = self.commit_plain(plain) {
            return Err(CompleteError::Internal(self.poison(e)));
        }
        Ok(())
    }

    /// Checks result `res` against its request and marks it seen (`stamp`). Inlined into the
    /// result loops; the checks beyond the common result are out of line
    /// ([`Engine::validate_rest`]).
    #[inline(always)]
    fn validate_result(&mut self, res: &StepResult, stamp: u64) -> Result<(), ResultErrorKind> {
        let step = self.step;
        // One lookup for the slot check and the fields below (this runs once per result).
        let r = match self.reqs.get_mut(res.handle.index() as usize) {
            Some(r) if r.live() && r.generation == res.handle.generation() => r,
            _ => return Err(ResultErrorKind::StaleHandle),
        };
        if step == 0 || r.scheduled_step != step || r.state != SlotState::Running {
            return Err(ResultErrorKind::NotScheduled);
        }
        if r.reported || r.validated_stamp == stamp {
            return Err(ResultErrorKind::Duplicate);
        }
        r.validated_stamp = stamp;
        let samples = r.computed == r.num_tokens();
        // The common result, one sampled token and nothing else (a decode, or the last chunk
        // of a prefill), passes every check below.
        if samples
            && res.tokens == 1
            && res.predicted_remaining.is_none()
            && res.pause.is_none()
            && res.filled_block_hash.is_none()
        {
            return Ok(());
        }
        self.validate_rest(res, samples)
    }

    /// The checks of [`Engine::validate_result`] beyond the common result: token counts
    /// against drafts, the output cap and the token limit; predictions; pauses and finishes
    /// at sampling points; filled-block hashes.
    #[inline(never)]
    fn validate_rest(&self, res: &StepResult, samples: bool) -> Result<(), ResultErrorKind> {
        let r = self
            .reqs
            .get(res.handle.index() as usize)
            .ok_or(ResultErrorKind::StaleHandle)?;
        let (limit, draft) = (self.token_limit, self.cfg.max_draft_tokens);
        let bs = self.cfg.block_size;
        // What a sampling entry may report: its sampled token plus accepted drafts, never past
        // the output cap or the token limit. Both leave room for at least the one token, so a
        // plain decode's result (one token) skips computing them.
        let max = if samples && res.tokens <= 1 {
            1
        } else if samples {
            let left_output = r.max_output.saturating_sub(r.generated);
            let left_tokens = limit.saturating_sub(r.num_tokens());
            draft
                .saturating_add(1)
                .min(left_output)
                .min(left_tokens)
                .max(1)
        } else {
            0
        };
        if res.tokens > max {
            return Err(if samples {
                ResultErrorKind::TooManyTokens {
                    max,
                    got: res.tokens,
                }
            } else {
                ResultErrorKind::WrongTokenCount {
                    expected: 0,
                    got: res.tokens,
                }
            });
        }
        if samples && res.tokens == 0 && !res.finished {
            return Err(ResultErrorKind::WrongTokenCount {
                expected: 1,
                got: 0,
            });
        }
        if let Some(p) = res.predicted_remaining
            && !(p.is_finite() && p >= 0.0)
        {
            return Err(ResultErrorKind::InvalidPrediction);
        }
        if res.pause.is_some() && res.finished {
            return Err(ResultErrorKind::PauseWhenFinished);
        }
        if (res.pause.is_some() || res.finished) && !samples {
            return Err(ResultErrorKind::NotAtSamplingPoint);
        }
        if res.filled_block_hash.is_some()
            && div_block(r.computed, bs) <= div_block(r.sched_from, bs)
        {
            return Err(ResultErrorKind::NoBlockFilled);
        }
        Ok(())
    }

    /// Applies one validated result. Inlined into its two loops: with the default results of
    /// `complete_except` every optional field is a known `None`, and their tests fold away.
    /// The common result (no block to index, no fair share, no prediction, pause or finish)
    /// touches the request's slot once: the bookkeeping of the slot and the backlog gauge are
    /// done on the one reference.
    #[inline(always)]
    fn apply_result(
        &mut self,
        i: u32,
        res: &StepResult,
        now: Instant,
    ) -> Result<(), InternalError> {
        let bs = self.cfg.block_size;
        let fair_share = self.cfg.policy.fair_share;
        self.awaiting = self
            .awaiting
            .checked_sub(1)
            .or_broken("a result for an entry no longer awaited")?;
        let r = self.req_mut(i)?;
        r.reported = true;
        let (from, to) = (div_block(r.sched_from, bs), div_block(r.computed, bs));
        // Only a step that filled a block of the request's hash list (or reports a hash) has
        // hashes to index (at most 1 decode in 16; none without prefix caching), and only fair
        // share charges tenants: both out of the common path.
        let index = (to > from && r.hashes.len() > from) || res.filled_block_hash.is_some();
        if index || fair_share {
            if index {
                self.index_filled_blocks(i, from, to, res.filled_block_hash)?;
            }
            if fair_share {
                self.charge_tenant(i, res.tokens)?;
            }
        }
        let limit = self.token_limit;
        let r = self
            .reqs
            .get_mut(i as usize)
            .or_broken("request index out of range")?;
        let reason = record_tokens(r, res, now, limit);
        if reason.is_none() && res.predicted_remaining.is_none() && res.pause.is_none() {
            if advance_backlog_in(r, &mut self.stats.predicted_backlog_tokens)? {
                self.refresh_backlog(i)?;
            }
            self.count_decode_ready(res.tokens);
            return Ok(());
        }
        if let Some(p) = res.predicted_remaining {
            self.set_prediction(i, p)?;
        }
        if let Some(reason) = reason {
            let r = self.req(i)?;
            let record = Finished {
                handle: RequestHandle::new(i, r.generation),
                external_id: r.external_id,
                generated_tokens: r.generated,
                reason,
            };
            self.finished
                .push(record, "more finishes than entries in a plan")?;
            self.release(i)?;
            self.stats.finished = self.stats.finished.saturating_add(1);
            return Ok(());
        }
        if let Some(p) = res.pause {
            self.pause(i, p)?;
            return self.advance_backlog(i);
        }
        self.advance_backlog(i)?;
        self.count_decode_ready(res.tokens);
        Ok(())
    }

    /// Counts the request whose result of `tokens` tokens was just applied, and which stays
    /// running, in `decode_ready` ([`decodes_after`]). At most one per running request per
    /// plan: far below `u32::MAX`.
    #[inline(always)]
    fn count_decode_ready(&mut self, tokens: u32) {
        self.decode_ready = self.decode_ready.wrapping_add(decodes_after(tokens));
    }

    /// Makes the blocks that running request `i` filled in this step (block indices
    /// `from..to`) findable for prefix reuse: its prompt hashes in that window, and the
    /// result's `filled_block_hash` for the last one. Out of line: most steps fill none.
    #[inline(never)]
    fn index_filled_blocks(
        &mut self,
        i: u32,
        from: u32,
        to: u32,
        filled_block_hash: Option<u64>,
    ) -> Result<(), InternalError> {
        let r = self.req(i)?;
        let seq = r.seq().or_broken("running request without KV")?;
        // Hashes are the caller's claims about content; a refusal (another block already
        // holds the hash) only means this block is not indexed.
        if to > from {
            let list = r.hashes;
            // Only the window `from..to`: walking a long prompt's list from its head on every
            // chunk made chunked prefill quadratic in the prompt's blocks. A broken list ends
            // the window early, as a missing hash does.
            let (hashes, kv) = (&self.hashes, &mut self.kv);
            let _ = hashes.for_each_in(&list, from, to, |b, h| {
                let _ = kv.set_block_hash(seq, b, h);
                Ok(())
            });
        }
        if let Some(h) = filled_block_hash {
            let b = to.saturating_sub(1);
            let _ = self.kv.set_block_hash(seq, b, h);
            let r = self
                .reqs
                .get_mut(i as usize)
                .or_broken("request index out of range")?;
            // Stored only contiguously: once one is dropped for lack of room, the later ones
            // of this request cannot be stored either, and count as dropped too.
            let list = &mut r.hashes;
            let stored = match list.len().cmp(&b) {
                core::cmp::Ordering::Equal => self.hashes.push(list, h)?,
                core::cmp::Ordering::Less => false,
                core::cmp::Ordering::Greater => true, // a prompt hash already covers it
            };
            if !stored {
                self.stats.hashes_dropped = self.stats.hashes_dropped.saturating_add(1);
            }
        }
        Ok(())
    }

    /// Charges running request `i`'s tenant for this step's work (fair share only): its
    /// computed tokens at the input weight and `produced` output tokens at the output
    /// weight, except that a decode's one input token (the last sampled one) is already
    /// charged as output.
    fn charge_tenant(&mut self, i: u32, produced: u32) -> Result<(), InternalError> {
        let (w_in, w_out) = (self.cfg.vtc_input_weight, self.cfg.vtc_output_weight);
        let r = self.req(i)?;
        // `generated` does not include this step's tokens yet.
        let was_decode = r.sched_tokens == 1
            && r.generated > 0
            && r.sched_from.saturating_add(1) == r.num_tokens();
        let charge = if was_decode {
            w_out * f64::from(produced)
        } else {
            w_in * f64::from(r.sched_tokens) + w_out * f64::from(produced)
        };
        let t = r.tenant;
        if charge > 0.0 {
            self.queue.charge(self.tenants, t, charge)?;
        }
        Ok(())
    }

    /// Takes running request `i` out for an external call and decides what happens to its KV.
    fn pause(&mut self, i: u32, p: PauseRequest) -> Result<(), InternalError> {
        self.remove_running(i)?;
        let r = self.req(i)?;
        let blocks = r
            .seq()
            .and_then(|s| self.kv.seq_info(s).ok())
            .map_or(0, |x| x.num_blocks);
        let swap_possible = blocks <= self.kv.available_host() && self.cfg.host_blocks > 0;
        let action = match self.cfg.pause {
            PauseMode::Preserve => PauseAction::Preserve,
            PauseMode::Discard => PauseAction::Discard,
            PauseMode::Swap => PauseAction::Swap,
            PauseMode::Auto => {
                // Memory-time each option wastes (block·µs), as InferCept and LAMPS compare them.
                let c = self.cfg.costs;
                let in_use = f64::from(self.kv.counters().device.in_use);
                let preserve = f64::from(blocks) * p.predicted_duration_us as f64;
                let discard = f64::from(r.computed) * c.recompute_us_per_token * in_use;
                let swap = 2.0 * f64::from(blocks) * c.swap_us_per_block * in_use;
                if swap_possible && swap < discard && swap < preserve {
                    PauseAction::Swap
                } else if discard < preserve {
                    PauseAction::Discard
                } else {
                    PauseAction::Preserve
                }
            }
        };
        let action = match action {
            PauseAction::Swap => {
                // The swap-out list now collects the next plan's pauses: the last plan's
                // copies were carried out before these results were reported.
                let pl = &mut self.plan;
                if !pl.swap_out_pending {
                    pl.swap_out.clear();
                    pl.swap_out_pending = true;
                    pl.swapped_in = false;
                }
                if self.try_swap_out(i)? {
                    PauseAction::Swap
                } else {
                    PauseAction::Discard
                }
            }
            other => other,
        };
        match action {
            PauseAction::Preserve => {
                self.idle_push(i)?;
                self.stats.pauses_preserved = self.stats.pauses_preserved.saturating_add(1);
            }
            PauseAction::Discard => {
                self.discard_kv(i)?;
                self.stats.pauses_discarded = self.stats.pauses_discarded.saturating_add(1);
            }
            PauseAction::Swap => {
                self.stats.pauses_swapped = self.stats.pauses_swapped.saturating_add(1);
            }
        }
        self.set_state(i, SlotState::Paused)
    }
}

/// 1 if a running request that stays running owes exactly a decode after a result of
/// `tokens` tokens, as one token says cheaply: a valid result of one token is a sampling
/// entry's, whose request had every known token computed and now owes the one it sampled.
/// Other results count 0, which undercounts at worst (a recompute chunk that stops one token
/// short of the end): `decode_ready` must never overcount.
#[inline(always)]
fn decodes_after(tokens: u32) -> u32 {
    u32::from(tokens == 1)
}

/// The part of result `res` that only touches the request's own slot `r`: the tokens it
/// generated, its first token's time, this step's schedule cleared. Returns why the request
/// finishes, if it does: its stop, its output cap, or the token limit `limit`.
#[inline(always)]
fn record_tokens(
    r: &mut RequestSlot,
    res: &StepResult,
    now: Instant,
    limit: u32,
) -> Option<FinishReason> {
    let reason = finish_reason_after(r, res, limit);
    record_slot(r, res, now);
    reason
}

/// [`record_tokens`] without the finish test: the slot's changes alone.
#[inline(always)]
fn record_slot(r: &mut RequestSlot, res: &StepResult, now: Instant) {
    if res.tokens >= 1 {
        r.sampled_since_admit = true;
        // Validated against the output cap and the token limit: a request reaching either
        // finishes just below. Accepted draft tokens beyond the first are known but not
        // computed, so the next step computes their KV.
        r.generated = r.generated.saturating_add(res.tokens);
        if r.first_token_us == u64::MAX {
            r.first_token_us = now.as_micros();
        }
    }
    r.sched_tokens = 0;
    r.sched_blocks = 0;
    r.sched_chunks = 0;
}

/// Why request `r` finishes once result `res` is recorded (its stop, its output cap, or the
/// token limit `limit`), if it does; read before the result changes the slot.
#[inline(always)]
fn finish_reason_after(r: &RequestSlot, res: &StepResult, limit: u32) -> Option<FinishReason> {
    // Validated: the result's tokens keep the request below the token limit (< 2^31).
    let generated = r.generated.wrapping_add(res.tokens);
    if res.finished {
        Some(FinishReason::Stop)
    } else if generated >= r.max_output {
        Some(FinishReason::MaxOutput)
    } else if r.num_tokens().wrapping_add(res.tokens) >= limit {
        Some(FinishReason::Length)
    } else {
        None
    }
}

/// What the plain results of one `complete` call add up to ([`PlainResults::apply`]), for
/// [`Engine::commit_plain`] to move the engine's counters by once.
#[derive(Clone, Copy, Default)]
struct PlainResults {
    /// Results applied (at most a plan's entries).
    applied: u32,
    /// Of them, those that leave their request owing a decode ([`decodes_after`]).
    decoding: u32,
    /// Backlog they took off their requests' parts. Each part is below 2^32, so a plan's sum
    /// cannot wrap; a part that grew (impossible) would wrap it and fail the commit.
    released: u64,
}

impl PlainResults {
    /// Applies validated plain result `res` ([`plain_default`]) of awaiting request `r` on
    /// the slot alone, adding its share of the engine's counters to the sums.
    #[inline(always)]
    fn apply(
        &mut self,
        r: &mut RequestSlot,
        res: &StepResult,
        now: Instant,
    ) -> Result<(), InternalError> {
        r.reported = true;
        record_slot(r, res, now);
        // Still below its stable total (`plain_default`).
        let (old, part) =
            advance_backlog_part(r).or_broken("a plain result needs a backlog refresh")?;
        self.released = self.released.wrapping_add(old.wrapping_sub(part));
        self.applied = self.applied.wrapping_add(1);
        self.decoding = self.decoding.wrapping_add(decodes_after(res.tokens));
        Ok(())
    }
}

/// Whether validated result `res` of request `r` is plain: it carries nothing beyond its
/// tokens and a stop (no refined prediction, pause or hash) and [`plain_default`] holds
/// (which a stop fails).
#[inline(always)]
fn plain_result(r: &RequestSlot, res: &StepResult, block_size: u32) -> bool {
    res.predicted_remaining.is_none()
        && res.pause.is_none()
        && res.filled_block_hash.is_none()
        && plain_default(r, res, block_size)
}

/// How many positions [`Engine::apply_plain_defaults`] notes for the second pass; with more
/// other entries, the second pass looks at every entry.
const REST: usize = 64;

/// Whether result `res` of running request `r` — a default result, or a validated one that
/// carries nothing but its tokens and a stop ([`plain_result`]) — changes nothing but `r` and
/// the backlog gauge when applied ([`Engine::apply_result`]): it fills no block of the
/// request's hash list, finishes nothing, and leaves the backlog's integer update valid (the
/// request stays below its stable total). Fair share (a tenant charge per result) is the
/// caller's test.
#[inline(always)]
fn plain_default(r: &RequestSlot, res: &StepResult, block_size: u32) -> bool {
    // Most requests have no prompt hashes (prefix caching off, or none sent): one test.
    let indexes = r.hashes.len() > 0 && {
        let (from, to) = (
            div_block(r.sched_from, block_size),
            div_block(r.computed, block_size),
        );
        to > from && r.hashes.len() > from
    };
    // `quiet_until` folds the output cap, the token limit and the backlog bound into one
    // compare: below it, `finish_reason_after` finds no reason but a stop, and the backlog
    // part stays on its integer update.
    !indexes && !res.finished && r.generated.wrapping_add(res.tokens) < r.quiet_until
}
