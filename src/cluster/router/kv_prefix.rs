//! Prefix-aware routing as NVIDIA Dynamo's KV router does it.
//!
//! Dynamo prices each worker as `overlap_score_weight × potential prefill blocks + potential
//! decode blocks` and picks the lowest (with temperature 0; its docs, `router_design.md`):
//! - prefill blocks = the request's blocks minus those the worker already caches (the
//!   overlap, from the router's index of the workers' KV events);
//! - decode blocks = the blocks of the worker's active requests, tracked by the router
//!   itself (added when it routes, removed when the request completes), plus the new
//!   request's.
//!
//! Here the overlap comes from the [`super::PrefixIndex`], built only from the KV events the
//! replicas publish, and the active blocks from the router's [`super::ReplicaView`]
//! bookkeeping. Ties go to the lowest index (Dynamo breaks them at random).

use super::{RouteContext, RouteRequest, Router, argmin_by};

/// Dynamo's default `overlap_score_weight`.
pub const DEFAULT_OVERLAP_WEIGHT: f64 = 1.0;

/// Dynamo's KV-router cost, lowest wins.
#[derive(Clone, Copy, Debug)]
pub struct KvPrefix {
    /// Weight of the new prefill blocks against the active (decode) blocks.
    pub overlap_weight: f64,
}

impl Router for KvPrefix {
    fn route(&mut self, req: &RouteRequest<'_>, ctx: &RouteContext<'_>) -> usize {
        let bs = u64::from(ctx.work.block_size);
        let blocks = u64::from(req.prompt_tokens).div_ceil(bs);
        argmin_by(ctx.views.len(), |r| {
            let prefill = blocks.saturating_sub(u64::from(ctx.overlaps[r]));
            let decode = ctx.views[r].active_blocks + blocks;
            self.overlap_weight * prefill as f64 + decode as f64
        })
    }

    fn uses_prefix_index(&self) -> bool {
        true
    }
}
