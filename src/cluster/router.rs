//! Routers: which replica gets the next request.
//!
//! A [`Router`] sees what a deployed router can see, and nothing else:
//! - the request (its prompt length, its block hashes, the prediction a predictor gives it);
//! - per replica, a [`ReplicaView`]: the replica's last published [`ReplicaLoad`] (the
//!   metrics an engine exports after each iteration, as vLLM's `/metrics` or a KV-event
//!   stream would), plus the router's own bookkeeping of what it sent since (requests
//!   routed and not yet done, their blocks and predicted work), the way Dynamo tracks active
//!   sequences router-side;
//! - the [`PrefixIndex`], built only from the KV events the replicas publish.
//!
//! The bookkeeping matters on traces with bursts: the Mooncake trace delivers dozens of
//! requests at one timestamp, and a router that only read published gauges would send the
//! whole burst to the replica that looked idlest before it.
//!
//! One module per router; [`RouterSpec`] names them on the command line.

use std::fmt;
use std::str::FromStr;

use crate::cost::{BatchShape, CostModel};
use crate::sim::ReplicaLoad;

use super::index::PrefixIndex;

mod kv_prefix;
mod least_kv;
mod least_outstanding;
mod power_of_two;
mod predicted_work;
mod round_robin;
mod weighted;

pub use kv_prefix::KvPrefix;
pub use least_kv::LeastKv;
pub use least_outstanding::LeastOutstanding;
pub use power_of_two::PowerOfTwo;
pub use predicted_work::PredictedWork;
pub use round_robin::RoundRobin;
pub use weighted::{Weighted, Weights};

/// The request being routed.
#[derive(Clone, Copy, Debug)]
pub struct RouteRequest<'a> {
    /// Its index in the trace.
    pub index: u64,
    /// Arrival time, µs.
    pub arrival_us: u64,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Predicted output tokens (the prediction the engine will be given; the true length when
    /// the predictor gives none, since a router without predictions has to assume something).
    pub predicted_output_tokens: f64,
    /// The prompt's full-block hashes at the engines' block size (empty without prefix
    /// information, or when the router does not use them).
    pub block_hashes: &'a [u64],
}

/// What the router knows of one replica.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReplicaView {
    /// The replica's last published load.
    pub load: ReplicaLoad,
    /// Requests routed to it and not yet done (finished or rejected): router bookkeeping.
    pub outstanding: u32,
    /// KV blocks of the prompts of those requests (Dynamo's active blocks).
    pub active_blocks: u64,
    /// Requests routed since its last report.
    pub pending_requests: u32,
    /// Prompt blocks routed since its last report (not yet in `load.kv_used_blocks`).
    pub pending_blocks: u64,
    /// Prompt tokens routed since its last report, less their predicted prefix hits.
    pub pending_prefill_tokens: u64,
    /// Predicted output tokens routed since its last report.
    pub pending_decode_tokens: f64,
}

impl ReplicaView {
    /// KV utilisation as the router estimates it: (used + pending) / total, in [0, 1].
    pub fn kv_utilization(&self) -> f64 {
        let total = f64::from(self.load.kv_total_blocks.max(1));
        ((f64::from(self.load.kv_used_blocks) + self.pending_blocks as f64) / total).min(1.0)
    }

    /// Waiting requests as the router estimates them: last reported queue plus routed since.
    pub fn queue_depth(&self) -> u32 {
        self.load.waiting.saturating_add(self.pending_requests)
    }
}

/// Cost-model conversions from tokens to time that the work-aware routers use.
#[derive(Clone, Debug)]
pub struct WorkModel {
    cost: CostModel,
    /// µs per prompt token of a 2,048-token prefill chunk.
    pub prefill_us_per_token: f64,
    /// Tokens per KV block.
    pub block_size: u32,
    /// The engines' batch limit.
    pub max_running: u32,
}

impl WorkModel {
    /// Conversions for engines of block size `block_size` and batch limit `max_running`.
    pub fn new(cost: &CostModel, block_size: u32, max_running: u32) -> Self {
        let mut prefill = BatchShape::new();
        prefill.add(2048, 0);
        WorkModel {
            prefill_us_per_token: cost.iteration_time_us(&prefill) / 2048.0,
            cost: cost.clone(),
            block_size: block_size.max(1),
            max_running: max_running.max(1),
        }
    }

    /// µs of one decode iteration of `batch` requests at `context` tokens each.
    pub fn decode_step_us(&self, batch: u32, context: u32) -> f64 {
        let b = batch.clamp(1, self.max_running);
        self.cost
            .iteration_time_us(&BatchShape::uniform_decode(b, context.max(1)))
    }

    /// How long a request routed to `v` now is predicted to wait before its own prefill,
    /// in seconds: the prefill work queued ahead of it (chunked prefill serves prompts
    /// through the token budget, one after another), plus, when the replica's batch is
    /// full, the time until enough running requests finish to make room.
    ///
    /// Not the time to drain the whole backlog: under continuous batching a request joins
    /// the running batch as soon as there is a slot, so decode work ahead of it delays it
    /// only through a full batch (here) and through a slower iteration (the caller's
    /// decode term). A first version charged the whole decode backlog at the current
    /// batch's cost per token; at a small batch that cost is high (an iteration of one
    /// request costs nearly as much as one of 32), so idle replicas looked busy and the
    /// router piled requests onto two of four replicas (Vidur, ρ 0.7: 2.1× imbalance,
    /// mean e2e 9.8 s against least-outstanding's 4.5 s).
    pub fn wait_s(&self, v: &ReplicaView) -> f64 {
        let l = &v.load;
        let prefill = (l.prefill_backlog_tokens + v.pending_prefill_tokens) as f64;
        let prefill_s = prefill * self.prefill_us_per_token * 1e-6;
        // Slots: the batch limit, or fewer when KV memory binds first (the live requests'
        // share of the cache, scaled to the whole cache).
        let in_batch = f64::from(l.running) + f64::from(v.pending_requests);
        let util = v.kv_utilization();
        let kv_slots = if util > 0.0 && in_batch > 0.0 {
            in_batch / util
        } else {
            f64::INFINITY
        };
        let slots = f64::from(self.max_running).min(kv_slots).max(1.0);
        let live = in_batch + f64::from(l.waiting);
        let excess = (live + 1.0 - slots).max(0.0);
        if excess == 0.0 {
            return prefill_s;
        }
        // Slots free as running requests finish: each has on average `remaining` decode
        // iterations left, so `slots` of them free one slot every `remaining × step / slots`.
        let decode = l.predicted_backlog_tokens as f64 + v.pending_decode_tokens;
        let remaining = decode / live.max(1.0);
        let batch = (slots as u32).clamp(1, self.max_running);
        let step_s = self.decode_step_us(batch, l.mean_context_tokens) * 1e-6;
        prefill_s + excess * remaining * step_s / slots
    }
}

/// What a router reads when it routes.
#[derive(Clone, Copy, Debug)]
pub struct RouteContext<'a> {
    /// One view per replica.
    pub views: &'a [ReplicaView],
    /// The prefix index (empty unless the router [`Router::uses_prefix_index`]).
    pub index: &'a PrefixIndex,
    /// Per replica, the request's leading blocks it holds (zeros unless the router
    /// [`Router::uses_prefix_index`]).
    pub overlaps: &'a [u32],
    /// Token-to-time conversions.
    pub work: &'a WorkModel,
}

/// A routing policy.
pub trait Router: Send {
    /// Picks the replica (an index below `ctx.views.len()`) for `req`.
    fn route(&mut self, req: &RouteRequest<'_>, ctx: &RouteContext<'_>) -> usize;

    /// Whether the router reads the prefix index (the cluster then feeds it the replicas' KV
    /// events and computes overlaps for each request).
    fn uses_prefix_index(&self) -> bool {
        false
    }
}

/// The index of the smallest key, the first on ties (routers are deterministic).
pub(crate) fn argmin_by<K: PartialOrd>(n: usize, mut key: impl FnMut(usize) -> K) -> usize {
    let mut best = 0;
    let mut best_key = key(0);
    for r in 1..n {
        let k = key(r);
        if k < best_key {
            best = r;
            best_key = k;
        }
    }
    best
}

/// A router by name, with its parameters: what `--router` accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RouterSpec {
    /// `round-robin`.
    RoundRobin,
    /// `least-outstanding`: fewest requests routed and not yet done.
    LeastOutstanding,
    /// `least-kv`: lowest KV utilisation.
    LeastKv,
    /// `power-of-two`: two replicas drawn at random (seeded), the one with fewer outstanding.
    PowerOfTwo,
    /// `kv-prefix`: Dynamo's KV router cost, `overlap_weight × new prefill blocks + active
    /// blocks`, lowest wins.
    KvPrefix {
        /// Dynamo's `overlap_score_weight`.
        overlap_weight: f64,
    },
    /// `weighted`: llm-d-style weighted scorers (queue, KV utilisation, prefix).
    Weighted(Weights),
    /// `predicted-work`: the replica where the request is predicted to finish soonest.
    PredictedWork,
}

impl RouterSpec {
    /// The router names `--router` accepts.
    pub const NAMES: [&'static str; 7] = [
        "round-robin",
        "least-outstanding",
        "least-kv",
        "power-of-two",
        "kv-prefix",
        "weighted",
        "predicted-work",
    ];

    /// The name, without parameters.
    pub fn name(&self) -> &'static str {
        match self {
            RouterSpec::RoundRobin => Self::NAMES[0],
            RouterSpec::LeastOutstanding => Self::NAMES[1],
            RouterSpec::LeastKv => Self::NAMES[2],
            RouterSpec::PowerOfTwo => Self::NAMES[3],
            RouterSpec::KvPrefix { .. } => Self::NAMES[4],
            RouterSpec::Weighted(_) => Self::NAMES[5],
            RouterSpec::PredictedWork => Self::NAMES[6],
        }
    }

    /// Builds the router for `replicas` replicas; `seed` seeds the random ones.
    pub fn build(&self, replicas: usize, seed: u64) -> Box<dyn Router> {
        match *self {
            RouterSpec::RoundRobin => Box::new(RoundRobin::default()),
            RouterSpec::LeastOutstanding => Box::new(LeastOutstanding),
            RouterSpec::LeastKv => Box::new(LeastKv),
            RouterSpec::PowerOfTwo => Box::new(PowerOfTwo::new(seed)),
            RouterSpec::KvPrefix { overlap_weight } => Box::new(KvPrefix { overlap_weight }),
            RouterSpec::Weighted(w) => Box::new(Weighted { weights: w }),
            RouterSpec::PredictedWork => Box::new(PredictedWork::new(replicas)),
        }
    }

    /// Sets the parameters given by flags: the overlap weight of `kv-prefix`, the weights of
    /// `weighted` (each `None` keeps the router's default).
    pub fn with_params(self, overlap_weight: Option<f64>, weights: Option<Weights>) -> Self {
        match self {
            RouterSpec::KvPrefix { overlap_weight: w } => RouterSpec::KvPrefix {
                overlap_weight: overlap_weight.unwrap_or(w),
            },
            RouterSpec::Weighted(w) => RouterSpec::Weighted(weights.unwrap_or(w)),
            other => other,
        }
    }
}

impl fmt::Display for RouterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RouterSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        Ok(match s {
            "round-robin" => RouterSpec::RoundRobin,
            "least-outstanding" => RouterSpec::LeastOutstanding,
            "least-kv" => RouterSpec::LeastKv,
            "power-of-two" => RouterSpec::PowerOfTwo,
            "kv-prefix" => RouterSpec::KvPrefix {
                overlap_weight: kv_prefix::DEFAULT_OVERLAP_WEIGHT,
            },
            "weighted" => RouterSpec::Weighted(Weights::default()),
            "predicted-work" => RouterSpec::PredictedWork,
            _ => {
                return Err(format!(
                    "unknown router `{s}`; expected one of: {}",
                    Self::NAMES.join(", ")
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        for name in RouterSpec::NAMES {
            let spec: RouterSpec = name.parse().unwrap();
            assert_eq!(spec.to_string(), name);
        }
        let err = "random".parse::<RouterSpec>().unwrap_err();
        assert!(err.contains("unknown router `random`"), "{err}");
        assert!(err.contains("predicted-work"), "{err}");
    }

    #[test]
    fn argmin_takes_the_first_of_ties() {
        assert_eq!(argmin_by(4, |r| [3, 1, 1, 2][r]), 1);
        assert_eq!(argmin_by(1, |_| 0), 0);
    }
}
