//! The request API: adding requests, updating predictions, aborting, resuming pauses.
//!
//! Each public call checks everything about its input before it changes anything, so a
//! refused call leaves the engine exactly as it was; only a broken internal invariant (an
//! [`InternalError`]) can stop a call half-way, and it poisons the engine.

use super::config::AdmissionMode;
use super::request::SlotState;
use super::{
    AddError, Engine, HASH_CHUNK_LEN, RequestDesc, RequestError, RequestHandle, RequestSlot,
    blocks_for,
};
use crate::internal::{InternalError, OrBroken};
use crate::kv::{ChunkList, ChunkPool, Tier};
use crate::time::Instant;
use crate::util::{NIL, div_block};

impl Engine<'_> {
    /// Accepts a request. It waits until a step admits it.
    pub fn add_request(
        &mut self,
        desc: &RequestDesc<'_>,
        now: Instant,
    ) -> Result<RequestHandle, AddError> {
        self.check_poison()?;
        let i = self.check_new_request(desc, now)?;
        self.insert_request(i, desc, now)
            .map_err(|e| AddError::Internal(self.poison(e)))
    }

    /// Every reason to refuse `desc`; returns the free slot it will take.
    fn check_new_request(&self, desc: &RequestDesc<'_>, now: Instant) -> Result<u32, AddError> {
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
        if desc.prompt_block_hashes.len() as u64 > u64::from(div_block(desc.prompt_tokens, bs)) {
            return Err(AddError::InvalidField("prompt_block_hashes"));
        }
        if desc.prompt_tokens >= self.cfg.token_limit() {
            return Err(AddError::InvalidField("prompt_tokens"));
        }
        if now.as_micros() < self.last_now {
            return Err(AddError::TimeWentBackwards);
        }
        let need = self.min_blocks_to_finish(desc);
        if need > u64::from(self.cfg.device_blocks) {
            return Err(AddError::CannotFit {
                need_blocks: need,
                device_blocks: self.cfg.device_blocks,
            });
        }
        if self.ids.find(&*self.reqs, desc.external_id)?.is_some() {
            return Err(AddError::DuplicateExternalId);
        }
        let i = self.free_head;
        if i == NIL {
            return Err(AddError::QueueFull);
        }
        // The length is at most prompt_tokens / block_size < 2^32, checked above.
        let n_hashes = desc.prompt_block_hashes.len() as u32;
        if ChunkPool::<u64, HASH_CHUNK_LEN>::extra_chunks(&ChunkList::EMPTY, n_hashes)
            > self.hashes.free_chunks()
        {
            return Err(AddError::OutOfHashStorage);
        }
        Ok(i)
    }

    /// Puts the checked request `desc` into free slot `i` and queues it.
    fn insert_request(
        &mut self,
        i: u32,
        desc: &RequestDesc<'_>,
        now: Instant,
    ) -> Result<RequestHandle, InternalError> {
        self.check_time(now);
        let slot = self.req(i)?;
        let (next_free, generation) = (slot.next_free, slot.generation);
        self.free_head = next_free;
        let seq_no = self.next_arrival_seq;
        self.next_arrival_seq = seq_no.saturating_add(1);
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
        let mut list = ChunkList::EMPTY;
        for &h in desc.prompt_block_hashes {
            if !self.hashes.push(&mut list, h)? {
                return Err(InternalError::new("hash storage smaller than checked"));
            }
        }
        slot.hashes = list;
        *self.req_mut(i)? = slot;
        self.ids.insert(&mut *self.reqs, i)?;
        let t = desc.tenant;
        let live = self
            .tenants
            .get(t as usize)
            .or_broken("tenant out of range")?
            .live;
        if live == 0 {
            self.queue.lift_new_tenant(self.tenants, t)?;
        }
        let tenant = self
            .tenants
            .get_mut(t as usize)
            .or_broken("tenant out of range")?;
        tenant.live = tenant.live.saturating_add(1);
        self.enqueue(i, SlotState::Waiting)?;
        self.refresh_backlog(i)?;
        self.stats.added = self.stats.added.saturating_add(1);
        Ok(RequestHandle::new(i, generation))
    }

    /// Blocks the request needs at least to produce its first output tokens (and, under
    /// worst-case admission, to finish).
    fn min_blocks_to_finish(&self, desc: &RequestDesc<'_>) -> u64 {
        let bs = self.cfg.block_size;
        let prompt = u64::from(desc.prompt_tokens);
        let base = blocks_for(prompt.saturating_add(1), bs);
        if let AdmissionMode::WorstCase = self.cfg.admission {
            let limit = u64::from(self.cfg.token_limit());
            let total = desc
                .max_output_tokens
                .map_or(limit, |m| prompt.saturating_add(u64::from(m)).min(limit));
            if self.cfg.max_sequence_tokens != 0 || desc.max_output_tokens.is_some() {
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
        self.check_poison()?;
        let i = self.slot_of(h).ok_or(RequestError::StaleHandle)?;
        if !(predicted_remaining.is_finite() && predicted_remaining >= 0.0) {
            return Err(RequestError::InvalidPrediction);
        }
        if !self.check_time(now) {
            return Err(RequestError::TimeWentBackwards);
        }
        self.set_prediction(i, predicted_remaining)
            .map_err(|e| RequestError::Internal(self.poison(e)))
    }

    pub(super) fn set_prediction(
        &mut self,
        i: u32,
        predicted_remaining: f64,
    ) -> Result<(), InternalError> {
        let r = self.req_mut(i)?;
        r.predicted_total = f64::from(r.generated) + predicted_remaining;
        if !r.has_prediction {
            r.initial_prediction = r.predicted_total;
            r.has_prediction = true;
        }
        if r.queued {
            let key = self.queue_key(i)?;
            let r = self.req_mut(i)?;
            r.key = key;
            let t = r.tenant;
            self.queue.update(self.tenants, i, t, key)?;
        }
        self.refresh_backlog(i)
    }

    /// Supplies (or replaces) the prompt's block hashes after [`Engine::add_request`], for a
    /// server that hashes the prompt while the request already waits. Allowed until the
    /// request first runs: it must be waiting, hold no KV and have computed and generated
    /// nothing ([`RequestError::WrongState`] otherwise). At most `prompt_tokens /
    /// block_size` hashes ([`RequestError::TooManyTokens`]); a full hash store is
    /// [`RequestError::OutOfHashStorage`]. Nothing changes on an error.
    pub fn set_prompt_block_hashes(
        &mut self,
        h: RequestHandle,
        hashes: &[u64],
        now: Instant,
    ) -> Result<(), RequestError> {
        self.check_poison()?;
        let i = self.slot_of(h).ok_or(RequestError::StaleHandle)?;
        let r = self.req(i)?;
        if r.state != SlotState::Waiting
            || r.seq().is_some()
            || r.computed != 0
            || r.generated != 0
            || r.extra_prompt != 0
        {
            return Err(RequestError::WrongState);
        }
        if hashes.len() as u64 > u64::from(div_block(r.prompt_tokens, self.cfg.block_size)) {
            return Err(RequestError::TooManyTokens);
        }
        // Below 2^32: at most prompt_tokens / block_size, checked above.
        let n = hashes.len() as u32;
        let held =
            ChunkPool::<u64, HASH_CHUNK_LEN>::extra_chunks(&ChunkList::EMPTY, r.hashes.len());
        let need = ChunkPool::<u64, HASH_CHUNK_LEN>::extra_chunks(&ChunkList::EMPTY, n);
        if need > self.hashes.free_chunks().saturating_add(held) {
            return Err(RequestError::OutOfHashStorage);
        }
        if !self.check_time(now) {
            return Err(RequestError::TimeWentBackwards);
        }
        let replaced = (|| {
            let mut list = self.req(i)?.hashes;
            self.hashes.clear(&mut list)?;
            for &x in hashes {
                if !self.hashes.push(&mut list, x)? {
                    return Err(InternalError::new("hash storage smaller than checked"));
                }
            }
            self.req_mut(i)?.hashes = list;
            Ok(())
        })();
        replaced.map_err(|e| RequestError::Internal(self.poison(e)))
    }

    /// Removes `h` wherever it is and frees its KV. If it was scheduled in the current plan,
    /// no result is expected for it any more. If its KV was being swapped out for a pause and
    /// the next plan has not been made yet, those swap-out pairs are withdrawn.
    pub fn abort(&mut self, h: RequestHandle, now: Instant) -> Result<(), RequestError> {
        self.check_poison()?;
        let i = self.slot_of(h).ok_or(RequestError::StaleHandle)?;
        if !self.check_time(now) {
            return Err(RequestError::TimeWentBackwards);
        }
        if self.req(i).is_ok_and(|r| r.state == SlotState::Running) {
            // It may have been counted; an undercount only costs the next step its fast path.
            self.decode_ready = 0;
        }
        self.release(i)
            .map_err(|e| RequestError::Internal(self.poison(e)))?;
        self.stats.aborted = self.stats.aborted.saturating_add(1);
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
        self.check_poison()?;
        let i = self.slot_of(h).ok_or(RequestError::StaleHandle)?;
        let r = self.req(i)?;
        if r.state != SlotState::Paused {
            return Err(RequestError::WrongState);
        }
        let total = u64::from(r.num_tokens()).saturating_add(u64::from(appended_tokens));
        if total >= u64::from(self.cfg.token_limit()) || self.never_fits(total.saturating_add(1)) {
            return Err(RequestError::TooManyTokens);
        }
        let tier = r
            .seq()
            .and_then(|s| self.kv.seq_info(s).ok())
            .map(|x| x.tier);
        if !self.check_time(now) {
            return Err(RequestError::TimeWentBackwards);
        }
        let limit = self.token_limit;
        let resumed = (|| {
            let r = self.req_mut(i)?;
            // Below the token limit (2^31 − 1) in all, checked above.
            r.extra_prompt = r.extra_prompt.saturating_add(appended_tokens);
            r.set_quiet_until(limit);
            let state = if tier == Some(Tier::Host) {
                SlotState::Swapped
            } else {
                SlotState::Waiting
            };
            self.enqueue(i, state)
        })();
        resumed.map_err(|e| RequestError::Internal(self.poison(e)))
    }
}
