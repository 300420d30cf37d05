//! Power of two choices (Mitzenmacher): draw two distinct replicas at random and send the
//! request to the one with fewer outstanding requests. Nearly as good as least-outstanding
//! with a fraction of the state a router must read; seeded, so a run is reproducible.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{RouteContext, RouteRequest, Router};

/// Two random choices, the less loaded wins (the first drawn on ties).
#[derive(Clone, Debug)]
pub struct PowerOfTwo {
    rng: ChaCha8Rng,
}

impl PowerOfTwo {
    /// A router drawing from a generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        PowerOfTwo {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
        }
    }
}

impl Router for PowerOfTwo {
    fn route(&mut self, _req: &RouteRequest<'_>, ctx: &RouteContext<'_>) -> usize {
        let n = ctx.views.len();
        if n < 2 {
            return 0;
        }
        let a = self.rng.random_range(0..n);
        let mut b = self.rng.random_range(0..n - 1);
        if b >= a {
            b += 1;
        }
        if ctx.views[b].outstanding < ctx.views[a].outstanding {
            b
        } else {
            a
        }
    }
}
