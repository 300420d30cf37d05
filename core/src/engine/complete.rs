//! `complete`: applying what the executor reports for the scheduled entries.

use super::plan::{
    CompleteError, FinishReason, Finished, PauseRequest, ResultErrorKind, StepResult,
};
use super::request::{STATE_PAUSED, STATE_RUNNING};
use super::{Engine, PauseMode, RequestHandle};
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
        if now.as_micros() < self.last_now {
            return Err(CompleteError::TimeWentBackwards);
        }
        self.complete_stamp += 1;
        let stamp = self.complete_stamp;
        for (index, res) in results.iter().enumerate() {
            self.validate_result(res, stamp)
                .map_err(|kind| CompleteError::Result { index, kind })?;
        }
        self.check_time(now);
        self.finished_len = 0;
        for res in results {
            let i = res.handle.index();
            self.apply_result(i, res, now);
        }
        Ok(())
    }

    fn validate_result(&mut self, res: &StepResult, stamp: u64) -> Result<(), ResultErrorKind> {
        let i = self
            .slot_of(res.handle)
            .ok_or(ResultErrorKind::StaleHandle)?;
        let bs = self.cfg.block_size;
        let r = &mut self.reqs[i as usize];
        if self.step == 0 || r.scheduled_step != self.step || r.state != STATE_RUNNING {
            return Err(ResultErrorKind::NotScheduled);
        }
        if r.reported || r.validated_stamp == stamp {
            return Err(ResultErrorKind::Duplicate);
        }
        r.validated_stamp = stamp;
        let samples = r.computed == r.num_tokens();
        let expected = samples as u32;
        let tokens_ok = if res.finished {
            res.tokens <= expected
        } else {
            res.tokens == expected
        };
        if !tokens_ok {
            return Err(ResultErrorKind::WrongTokenCount {
                expected,
                got: res.tokens,
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

    fn apply_result(&mut self, i: u32, res: &StepResult, now: Instant) {
        let bs = self.cfg.block_size;
        self.awaiting -= 1;
        let r = &mut self.reqs[i as usize];
        r.reported = true;
        let seq = r.seq().expect("running requests hold KV");
        let (from, to) = (div_block(r.sched_from, bs), div_block(r.computed, bs));
        let was_decode =
            r.sched_tokens == 1 && r.generated > 0 && r.sched_from + 1 == r.num_tokens();
        // Prompt blocks that filled in this step become findable for prefix reuse.
        if to > from {
            let list = r.hashes;
            for (b, h) in self
                .hashes
                .iter(&list)
                .map_while(Result::ok)
                .enumerate()
                .skip(from as usize)
                .take((to - from) as usize)
            {
                let _ = self.kv.set_block_hash(seq, b as u32, h);
            }
        }
        if let Some(h) = res.filled_block_hash {
            let b = to - 1;
            let _ = self.kv.set_block_hash(seq, b, h);
            let list = &mut self.reqs[i as usize].hashes;
            if list.len() == b && !matches!(self.hashes.push(list, h), Ok(true)) {
                self.stats.hashes_dropped += 1;
            }
        }
        let r = &mut self.reqs[i as usize];
        let charge = if was_decode {
            self.cfg.vtc_output_weight * res.tokens as f64
        } else {
            self.cfg.vtc_input_weight * r.sched_tokens as f64
                + self.cfg.vtc_output_weight * res.tokens as f64
        };
        if res.tokens == 1 {
            r.sampled_since_admit = true;
            r.generated += 1;
            if r.first_token_us == u64::MAX {
                r.first_token_us = now.as_micros();
            }
        }
        r.sched_tokens = 0;
        r.sched_blocks = 0;
        let t = r.tenant;
        if charge > 0.0 {
            self.queue.charge(self.tenants, t, charge);
        }
        if let Some(p) = res.predicted_remaining {
            self.set_prediction(i, p);
        }
        let r = &self.reqs[i as usize];
        let max_seq = self.cfg.max_sequence_tokens;
        let reason = if res.finished {
            Some(FinishReason::Stop)
        } else if r.generated >= r.max_output {
            Some(FinishReason::MaxOutput)
        } else if max_seq != 0 && r.num_tokens() >= max_seq {
            Some(FinishReason::Length)
        } else {
            None
        };
        if let Some(reason) = reason {
            if self.finished_len < self.finished.len() {
                self.finished[self.finished_len] = Finished {
                    handle: RequestHandle::new(i, r.generation),
                    external_id: r.external_id,
                    generated_tokens: r.generated,
                    reason,
                };
                self.finished_len += 1;
            }
            self.release(i);
            self.stats.finished += 1;
            return;
        }
        if let Some(p) = res.pause {
            self.pause(i, p);
        }
        self.refresh_backlog(i);
    }

    /// Takes running request `i` out for an external call and decides what happens to its KV.
    fn pause(&mut self, i: u32, p: PauseRequest) {
        self.remove_running(i);
        let r = &self.reqs[i as usize];
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
                let in_use = self.kv.counters().device.in_use as f64;
                let preserve = blocks as f64 * p.predicted_duration_us as f64;
                let discard = r.computed as f64 * c.recompute_us_per_token * in_use;
                let swap = 2.0 * blocks as f64 * c.swap_us_per_block * in_use;
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
                let pl = &mut self.plan;
                if !pl.swap_out_pending {
                    pl.swap_out_len = 0;
                    pl.swap_out_pending = true;
                }
                if self.try_swap_out(i) {
                    PauseAction::Swap
                } else {
                    PauseAction::Discard
                }
            }
            other => other,
        };
        match action {
            PauseAction::Preserve => {
                self.idle_push(i);
                self.stats.pauses_preserved += 1;
            }
            PauseAction::Discard => {
                self.discard_kv(i);
                self.stats.pauses_discarded += 1;
            }
            PauseAction::Swap => self.stats.pauses_swapped += 1,
        }
        self.set_state(i, STATE_PAUSED);
    }
}
