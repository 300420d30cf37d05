//! `audit`: every engine invariant checked from scratch (for tests and debugging).

use super::Engine;
use super::request::SlotState;
use crate::kv::Tier;

impl Engine<'_> {
    /// Checks the engine's invariants and the block manager's (O(everything); for tests),
    /// with `scratch` at least `device_blocks + host_blocks` long. Returns the first violation.
    pub fn audit(&self, scratch: &mut [u32]) -> Result<(), &'static str> {
        if let Some(e) = self.poisoned {
            return Err(e.what());
        }
        self.kv.audit(scratch)?;
        let (mut w, mut r, mut s, mut p, mut live) = (0u32, 0u32, 0u32, 0u32, 0u32);
        let limit = self.cfg.token_limit();
        for (i, slot) in (0u32..).zip(self.reqs.iter()) {
            let gauge = match slot.state {
                SlotState::Free => continue,
                SlotState::Waiting => &mut w,
                SlotState::Running => &mut r,
                SlotState::Swapped => &mut s,
                SlotState::Paused => &mut p,
            };
            *gauge = gauge.saturating_add(1);
            live = live.saturating_add(1);
            let info = slot.seq().map(|q| self.kv.seq_info(q));
            match (slot.state, info) {
                (SlotState::Running, Some(Ok(x)))
                    if x.tier == Tier::Device && x.num_tokens == slot.computed => {}
                (SlotState::Running, _) => {
                    return Err("running request without matching device KV");
                }
                (SlotState::Swapped, Some(Ok(x)))
                    if x.tier == Tier::Host && x.num_tokens == slot.computed => {}
                (SlotState::Swapped, _) => return Err("swapped request without host KV"),
                (_, Some(Ok(x))) if x.num_tokens != slot.computed => {
                    return Err("computed tokens differ from the KV table");
                }
                (_, Some(Err(_))) => return Err("request holds a stale sequence"),
                _ => {}
            }
            if slot.state == SlotState::Running
                && self.running.get(slot.running_pos as usize) != Some(&i)
            {
                return Err("running set position is off");
            }
            if slot.computed > slot.num_tokens() {
                return Err("more tokens computed than known");
            }
            if slot.num_tokens() > limit
                || u64::from(slot.prompt_tokens)
                    .saturating_add(u64::from(slot.extra_prompt))
                    .saturating_add(u64::from(slot.generated))
                    > u64::from(limit)
            {
                return Err("a request holds more tokens than the token limit");
            }
            if slot.quiet_until != slot.quiet_until_for(self.token_limit) {
                return Err("a request's quiet-until threshold is stale");
            }
            if slot.idle_listed && slot.state == SlotState::Running {
                return Err("a running request is on the idle-KV list");
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
        if self.queue.len() as u64 != u64::from(w).saturating_add(u64::from(s)) {
            return Err("queue length differs from waiting + swapped");
        }
        if live != self.ids.len() {
            return Err("external-id index size differs from live requests");
        }
        let running = self
            .running
            .get(..self.running_len as usize)
            .ok_or("running set longer than its storage")?;
        // The running requests' reservations, and how many owe exactly a decode.
        let (reserve, decoding) =
            running
                .iter()
                .try_fold((0u64, 0u32), |(reserve, decoding), &i| {
                    let slot = self
                        .reqs
                        .get(i as usize)
                        .ok_or("running index out of range")?;
                    Ok::<(u64, u32), &'static str>((
                        reserve.saturating_add(u64::from(slot.reserve_left)),
                        decoding.saturating_add(u32::from(slot.owes_decode())),
                    ))
                })?;
        if reserve != self.outstanding_reserve {
            return Err("outstanding reservation is off");
        }
        // Counted by `complete` from below: the steady step trusts it when it equals the
        // running set's size, so it must never overcount.
        if self.decode_ready > decoding {
            return Err("more running requests counted as decoding than decode");
        }
        // Each live request's part as the float formula gives it now (the integer update made
        // on every token, `advance_backlog`, must agree with it exactly), and their sum.
        let mut backlog = 0u64;
        for (i, r) in (0u32..).zip(self.reqs.iter()).filter(|(_, r)| r.live()) {
            let (expected, _) = self
                .backlog_of(i)
                .map_err(|_| "request slot out of range")?;
            if expected != r.backlog_contrib {
                return Err("a request's part of the predicted backlog is off");
            }
            backlog = backlog.saturating_add(r.backlog_contrib);
        }
        if backlog != self.stats.predicted_backlog_tokens {
            return Err("predicted backlog is off");
        }
        Ok(())
    }
}
