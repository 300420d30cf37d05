//! Round-robin: replica 0, 1, …, N−1, 0, … regardless of load. The baseline every router
//! comparison needs, and what a plain Kubernetes Service does.

use super::{RouteContext, RouteRequest, Router};

/// Round-robin over the replicas.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

impl Router for RoundRobin {
    fn route(&mut self, _req: &RouteRequest<'_>, ctx: &RouteContext<'_>) -> usize {
        let n = ctx.views.len().max(1);
        let r = self.next % n;
        self.next = (r + 1) % n;
        r
    }
}
