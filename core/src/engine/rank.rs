//! Ranks: what each request competes with, in the queue and against running requests, and
//! the predicted-backlog gauge that routers read.

use super::Engine;
use super::request::RequestSlot;
use crate::internal::{InternalError, OrBroken};
use crate::policy::RankInput;
use crate::queue::RankKey;

/// What the rank functions see of a request.
fn rank_input(r: &RequestSlot) -> RankInput {
    RankInput {
        arrival_s: r.arrival_us as f64 * 1e-6,
        prompt: f64::from(r.prompt_tokens) + f64::from(r.extra_prompt),
        attained: f64::from(r.generated),
        prefill_left: f64::from(r.num_tokens().saturating_sub(r.computed).saturating_sub(1)),
        predicted_total: r.has_prediction.then_some(r.predicted_total),
        initial_prediction: r.has_prediction.then_some(r.initial_prediction),
        max_output: (r.max_output != u32::MAX).then_some(f64::from(r.max_output)),
        priority: f64::from(r.priority),
        deadline_s: (r.deadline_us != u64::MAX).then_some(r.deadline_us as f64 * 1e-6),
    }
}

impl Engine<'_> {
    pub(super) fn rank_input(&self, i: u32) -> Result<RankInput, InternalError> {
        Ok(rank_input(self.req(i)?))
    }

    /// The key ordering `i` inside the waiting queue.
    pub(super) fn queue_key(&self, i: u32) -> Result<RankKey, InternalError> {
        let r = self.req(i)?;
        Ok(self.cfg.policy.key(&rank_input(r), r.arrival_seq))
    }

    /// The key `i` competes with by rank against other running/waiting requests (its queue key,
    /// or under fair share its tenant's counter), and whether it may be preempted now — from
    /// one rank input. `policy` is the engine's policy, or a copy of it whose kind the caller
    /// has made a constant so that the rank's dispatch on the kind folds away in its loop
    /// (see `Engine::worst_preemptible`).
    #[inline(always)]
    pub(super) fn compete_under(
        &self,
        policy: &crate::policy::Policy,
        i: u32,
    ) -> Result<(RankKey, bool), InternalError> {
        let r = self.req(i)?;
        let ri = rank_input(r);
        let key = if policy.fair_share {
            let tenant = self
                .tenants
                .get(r.tenant as usize)
                .or_broken("tenant out of range")?;
            RankKey::new(tenant.counter, r.arrival_seq)
        } else {
            policy.key(&ri, r.arrival_seq)
        };
        // A request that has not sampled since it was (re)admitted is not a victim: ranks that
        // worsen with the request's own prefill (fair share charging prompt tokens, slack
        // counting prefill work) would otherwise let two requests preempt each other forever
        // without either producing a token. The step's deadlock breaker still overrides this.
        Ok((key, r.sampled_since_admit && policy.preemptible(&ri)))
    }

    /// Predicted remaining output, rounded up, for the backlog gauge; and the ceiling of the
    /// stable effective total (see [`crate::policy::Policy::stable_total`]) when it is below
    /// `u32::MAX`, else 0. While the request has generated `g` < that ceiling, its part of the
    /// backlog is exactly `ceiling − g`: the total does not depend on `g` there, `total − g` is
    /// exact in `f64` for totals below 2^32, and for an integer `g`, `g < total` exactly when
    /// `g < ceil(total)`. [`Engine::advance_backlog`] relies on this.
    pub(super) fn backlog_of(&self, i: u32) -> Result<(u64, u32), InternalError> {
        let r = self.req(i)?;
        let attained = f64::from(r.generated);
        let predicted = r.has_prediction.then_some(r.predicted_total);
        let max_output = (r.max_output != u32::MAX).then_some(f64::from(r.max_output));
        let policy = &self.cfg.policy;
        let total = policy.effective_total(predicted, max_output, attained);
        let stable = policy.stable_total(predicted, max_output);
        let stable_ceil = if stable > 0.0 && stable < f64::from(u32::MAX) {
            // In (0, u32::MAX): the ceiling fits.
            ceil_u64(stable) as u32
        } else {
            0
        };
        let rem = total - attained;
        // No request can produce more than u32::MAX tokens: capping keeps the sum exact and
        // far from overflow whatever predictions the caller sends.
        let contrib = if rem > 0.0 {
            ceil_u64(rem.min(f64::from(u32::MAX)))
        } else {
            0
        };
        Ok((contrib, stable_ceil))
    }

    /// Recomputes `i`'s part of the predicted backlog (after a prediction changed, or when the
    /// integer update of [`Engine::advance_backlog`] does not apply). Out of line, so that
    /// the per-token update that calls it stays small enough to inline.
    #[inline(never)]
    pub(super) fn refresh_backlog(&mut self, i: u32) -> Result<(), InternalError> {
        let (new, stable_ceil) = self.backlog_of(i)?;
        let limit = self.token_limit;
        let r = self.req_mut(i)?;
        r.backlog_ceil = stable_ceil;
        r.set_quiet_until(limit);
        let old = core::mem::replace(&mut r.backlog_contrib, new);
        self.replace_backlog(old, new)
    }

    /// Updates `i`'s part of the predicted backlog after it generated tokens: with integer
    /// arithmetic while it is below its stable total (every token of a request that has not
    /// outgrown its prediction), otherwise by [`Engine::refresh_backlog`]. Both give the same
    /// value (see [`Engine::backlog_of`]); this runs for every request every step.
    #[inline(always)]
    pub(super) fn advance_backlog(&mut self, i: u32) -> Result<(), InternalError> {
        let r = self
            .reqs
            .get_mut(i as usize)
            .or_broken("request index out of range")?;
        if advance_backlog_in(r, &mut self.stats.predicted_backlog_tokens)? {
            return self.refresh_backlog(i);
        }
        Ok(())
    }

    /// Replaces one request's part `old` of the backlog gauge by `new`.
    #[inline]
    fn replace_backlog(&mut self, old: u64, new: u64) -> Result<(), InternalError> {
        replace_backlog_in(&mut self.stats.predicted_backlog_tokens, old, new)
    }
}

/// [`Engine::advance_backlog`] on the slot `r` in hand: the integer update of its part of
/// the gauge `backlog`. Returns `true`, changing nothing, when that update does not apply (it
/// has reached its stable total) and [`Engine::refresh_backlog`] must run instead.
#[inline(always)]
pub(super) fn advance_backlog_in(
    r: &mut RequestSlot,
    backlog: &mut u64,
) -> Result<bool, InternalError> {
    let Some((old, new)) = advance_backlog_part(r) else {
        return Ok(true);
    };
    replace_backlog_in(backlog, old, new)?;
    Ok(false)
}

/// The integer update of slot `r`'s own part of the backlog gauge: while it is below its
/// stable total its part is `ceiling − generated` ([`Engine::backlog_of`]). Returns the old
/// and new part, or `None`, changing nothing, when it has reached that total (then
/// [`Engine::refresh_backlog`] must run). The caller updates the gauge by the difference.
#[inline(always)]
pub(super) fn advance_backlog_part(r: &mut RequestSlot) -> Option<(u64, u64)> {
    if r.generated >= r.backlog_ceil {
        return None;
    }
    // generated < backlog_ceil: no wrap.
    let new = u64::from(r.backlog_ceil.wrapping_sub(r.generated));
    let old = core::mem::replace(&mut r.backlog_contrib, new);
    Some((old, new))
}

/// Replaces one request's part `old` of the backlog gauge `backlog` by `new`.
#[inline(always)]
fn replace_backlog_in(backlog: &mut u64, old: u64, new: u64) -> Result<(), InternalError> {
    // Each request's part is below 2^32 and there are fewer than 2^31 requests.
    *backlog = backlog
        .checked_sub(old)
        .and_then(|b| b.checked_add(new))
        .or_broken("predicted backlog out of range")?;
    Ok(())
}

/// `ceil(x)` for `x` in `(0, 2^53)` without libm's software rounding (this runs for every
/// request every step): `as` truncates toward zero (saturating), and one compare rounds up.
#[inline]
fn ceil_u64(x: f64) -> u64 {
    let whole = x as u64;
    whole.saturating_add(u64::from((whole as f64) < x))
}
