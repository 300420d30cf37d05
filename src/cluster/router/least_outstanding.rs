//! Least outstanding requests: the replica with the fewest requests routed to it and not yet
//! done (Envoy's and most gateways' "least request"). It counts requests, not their size:
//! a replica with one 100k-token prompt looks as free as one with a 1k-token prompt.

use super::{RouteContext, RouteRequest, Router, argmin_by};

/// Fewest outstanding requests; ties to the lowest index.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeastOutstanding;

impl Router for LeastOutstanding {
    fn route(&mut self, _req: &RouteRequest<'_>, ctx: &RouteContext<'_>) -> usize {
        argmin_by(ctx.views.len(), |r| ctx.views[r].outstanding)
    }
}
