//! augur's own router: send the request where it is predicted to finish soonest.
//!
//! No deployed router knows how much work a replica has *predicted* to go; augur's engine
//! publishes it (`EngineStats::predicted_backlog_tokens`, the sum of its live requests'
//! predicted remaining output). For each replica the router estimates the request's finish
//! as
//!
//! ```text
//! wait(r)                             until its prefill starts (WorkModel::wait_s): the
//!                                     prefill queued ahead × prefill cost, plus, when the
//!                                     batch (or the KV cache) is full, the predicted time
//!                                     until running requests finish and make room
//! + (prompt − overlap(r) × block) × prefill cost     the request's own new prefill there,
//!                                     given the blocks the replica caches (prefix index)
//! + predicted output × decode iteration time at r's batch + 1     its own decode there
//! ```
//!
//! and takes the smallest (ties to the lowest index). Counting prefix overlap in time, not in
//! blocks, is what lets it trade a cache hit against a queue: a 50k-token prompt whose prefix
//! sits on a busy replica goes there only if the prefill it saves outweighs the wait.

use super::{RouteContext, RouteRequest, Router, argmin_by};

/// Predicted finish time, lowest wins.
#[derive(Clone, Debug)]
pub struct PredictedWork {
    scratch: Vec<f64>,
}

impl PredictedWork {
    /// A router for `replicas` replicas.
    pub fn new(replicas: usize) -> Self {
        PredictedWork {
            scratch: vec![0.0; replicas],
        }
    }
}

impl Router for PredictedWork {
    fn route(&mut self, req: &RouteRequest<'_>, ctx: &RouteContext<'_>) -> usize {
        let w = ctx.work;
        let bs = u64::from(w.block_size);
        let n = ctx.views.len();
        self.scratch.resize(n, 0.0);
        for r in 0..n {
            let v = &ctx.views[r];
            let cached = (u64::from(ctx.overlaps[r]) * bs).min(u64::from(req.prompt_tokens));
            let prefill_s =
                (u64::from(req.prompt_tokens) - cached) as f64 * w.prefill_us_per_token * 1e-6;
            let batch = v.load.running + v.pending_requests + 1;
            let context = v.load.mean_context_tokens.max(req.prompt_tokens);
            let decode_s = req.predicted_output_tokens * w.decode_step_us(batch, context) * 1e-6;
            self.scratch[r] = w.wait_s(v) + prefill_s + decode_s;
        }
        argmin_by(n, |r| self.scratch[r])
    }

    fn uses_prefix_index(&self) -> bool {
        true
    }
}
