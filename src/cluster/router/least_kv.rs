//! Least KV utilisation: the replica whose KV cache is least full (published blocks in use
//! plus the prompt blocks routed to it since its last report), ties to fewer outstanding
//! requests. What llm-d's kv-cache-utilization scorer alone would pick.

use super::{RouteContext, RouteRequest, Router, argmin_by};

/// Lowest estimated KV utilisation.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeastKv;

impl Router for LeastKv {
    fn route(&mut self, _req: &RouteRequest<'_>, ctx: &RouteContext<'_>) -> usize {
        argmin_by(ctx.views.len(), |r| {
            let v = &ctx.views[r];
            (v.kv_utilization(), v.outstanding)
        })
    }
}
