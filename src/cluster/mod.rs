//! The N-replica cluster simulator: a trace replayed over N replicas, each a real
//! `augur-core` engine, behind a [`Router`].
//!
//! Why: a production trace such as Mooncake's was recorded on a fleet; replayed on one
//! engine it queues for hours and says nothing about scheduling. And in a fleet, routing
//! decides as much as the per-replica policy: which replica holds a prompt's prefix, which
//! has the least work ahead. This module lets the routers deployed today (round-robin, least
//! outstanding, least KV, power of two, Dynamo's KV router, llm-d's weighted scorers) and
//! augur's predicted-work router be compared on real traces with the real scheduler.
//!
//! How:
//! - Each replica is a [`crate::sim`] replica: the same turn (admit, resume, schedule, price
//!   with the cost model, complete) that `simulate` runs. The event loop
//!   ([`crate::sim`]'s `run_replicas`) takes the earliest of the next arrival and the replica
//!   whose turn is due; `simulate` is this loop with one replica, and its results are those of
//!   [`simulate_cluster`] with `--replicas 1` bit for bit.
//! - The router sees only what a deployed router sees (see [`router`]): the replicas'
//!   published loads, its own bookkeeping of what it routed, and a [`PrefixIndex`] built from
//!   the KV events the replicas publish. A replica's report (load, requests done, KV events)
//!   produced by an iteration that ends at `t` reaches the router at `t`, not before: an
//!   arrival routed in the middle of an iteration sees the report of the iteration before.
//! - Deterministic for a seed: ties go to the lowest replica index and the only randomness
//!   (power of two choices) is seeded.
//!
//! Load imbalance is `max / mean` over replicas of the tokens routed to each (prompt +
//! output tokens of its requests; 1 is perfect balance, N is everything on one replica), and
//! of the requests routed to each. The cluster prefix hit rate is Σ prefix-hit tokens /
//! Σ prompt tokens scheduled over all replicas.

use std::time::Instant as WallClock;

use anyhow::{Result, bail};
use augur_core::engine::{EngineConfig, EngineStats};
use serde::{Deserialize, Serialize};

use crate::metrics::{RequestRecord, RunCounters, Summary, summarize};
use crate::sim::replica::{Replica, Shared, Turn};
use crate::sim::{ReplicaLoad, SimConfig, run_replicas};
use crate::storage::EngineBuffers;
use crate::timeline::Timeline;
use crate::trace::Trace;

pub mod index;
pub mod report;
pub mod router;

pub use index::{KvEvent, MAX_REPLICAS, PrefixIndex};
pub use router::{ReplicaView, RouteContext, RouteRequest, Router, RouterSpec, WorkModel};

/// A cluster run's configuration: the per-replica simulation configuration (every replica is
/// configured alike), the number of replicas and the router.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Each replica's engine, cost model, predictor, SLO.
    pub sim: SimConfig,
    /// Replicas, 1..=[`MAX_REPLICAS`].
    pub replicas: usize,
    /// The router.
    pub router: RouterSpec,
    /// Seed of the router's randomness (power of two choices).
    pub seed: u64,
}

/// Events each replica's ring holds between drains (a step of an 8,192-token budget fills
/// at most 512 blocks of 16 tokens, plus their evictions).
pub const KV_EVENT_CAPACITY: u32 = 4096;

/// One replica's part of a cluster run.
#[derive(Clone, Debug)]
pub struct ReplicaOutcome {
    /// The replica's index.
    pub replica: usize,
    /// Its summary, over the requests routed to it (`simulated_s` is the cluster's).
    pub summary: Summary,
    /// Its counters.
    pub counters: RunCounters,
    /// Its engine's final counters.
    pub engine_stats: EngineStats,
    /// Model iterations it ran.
    pub iterations: u64,
    /// Requests routed to it.
    pub requests_routed: u64,
    /// Prompt + output tokens of the requests routed to it.
    pub tokens_routed: u64,
}

/// What the cluster as a whole did, beyond a [`Summary`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStats {
    /// The router's name.
    pub router: String,
    /// Replicas.
    pub replicas: u64,
    /// max / mean over replicas of the requests routed to each (1 = balanced).
    pub load_imbalance_requests: f64,
    /// max / mean over replicas of the prompt + output tokens routed to each (1 = balanced).
    pub load_imbalance_tokens: f64,
    /// Σ prefix-hit tokens / Σ prompt tokens scheduled, over all replicas.
    pub cluster_prefix_hit_rate: f64,
    /// KV events the replicas published (all delivered to the router when it uses them).
    pub kv_events: u64,
}

/// What a cluster run produced.
#[derive(Clone, Debug)]
pub struct ClusterOutcome {
    /// One record per trace request, in trace order.
    pub records: Vec<RequestRecord>,
    /// The replica each request was routed to, in trace order.
    pub assignment: Vec<u32>,
    /// The cluster's summary (all records; counters summed, `simulated_s` the latest clock).
    pub summary: Summary,
    /// The cluster's own statistics.
    pub stats: ClusterStats,
    /// Per replica, in index order.
    pub replicas: Vec<ReplicaOutcome>,
    /// The engine configuration of every replica.
    pub engine_config: EngineConfig,
    /// Model iterations over all replicas.
    pub iterations: u64,
}

/// `max / mean` of `xs` (1 when all are 0 or there are none).
pub fn imbalance(xs: &[u64]) -> f64 {
    let max = xs.iter().copied().max().unwrap_or(0);
    let sum: u64 = xs.iter().sum();
    if sum == 0 {
        return 1.0;
    }
    max as f64 * xs.len() as f64 / sum as f64
}

/// A report of one replica turn, delivered to the router at `at_us`.
#[derive(Debug, Default)]
struct Report {
    load: ReplicaLoad,
    done: Vec<u64>,
    events: Vec<KvEvent>,
}

/// The router side of the event loop: the router, what it knows of each replica, the prefix
/// index, and the reports not yet due.
pub(crate) struct Frontend {
    router: Box<dyn Router>,
    /// `false` for one replica: nothing to choose, so nothing is tracked.
    tracking: bool,
    uses_index: bool,
    views: Vec<ReplicaView>,
    index: PrefixIndex,
    overlaps: Vec<u32>,
    work: Option<WorkModel>,
    block_size: u32,
    /// Per replica, the report of its last turn, due at its `load.at_us`.
    future: Vec<Option<Report>>,
    spare: Vec<Report>,
    /// The replica of each request (`u32::MAX` until routed).
    pub(crate) assignment: Vec<u32>,
    /// Prompt blocks of each routed request, for the active-block bookkeeping.
    blocks: Vec<u32>,
    pub(crate) kv_events: u64,
}

impl Frontend {
    /// The front end of a one-replica run: every request goes to replica 0.
    pub(crate) fn single() -> Self {
        Frontend {
            router: Box::new(router::RoundRobin::default()),
            tracking: false,
            uses_index: false,
            views: Vec::new(),
            index: PrefixIndex::new(),
            overlaps: Vec::new(),
            work: None,
            block_size: 1,
            future: Vec::new(),
            spare: Vec::new(),
            assignment: Vec::new(),
            blocks: Vec::new(),
            kv_events: 0,
        }
    }

    fn new(router: Box<dyn Router>, replicas: usize, requests: usize, work: WorkModel) -> Self {
        Frontend {
            uses_index: router.uses_prefix_index(),
            router,
            tracking: true,
            views: vec![ReplicaView::default(); replicas],
            index: PrefixIndex::new(),
            overlaps: vec![0; replicas],
            block_size: work.block_size,
            work: Some(work),
            future: (0..replicas).map(|_| None).collect(),
            spare: Vec::new(),
            assignment: vec![u32::MAX; requests],
            blocks: vec![0; requests],
            kv_events: 0,
        }
    }

    /// Applies a report to the router's knowledge.
    fn apply(&mut self, k: usize, mut rep: Report) {
        let v = &mut self.views[k];
        v.load = rep.load;
        v.pending_requests = 0;
        v.pending_blocks = 0;
        v.pending_prefill_tokens = 0;
        v.pending_decode_tokens = 0.0;
        for &i in &rep.done {
            v.outstanding -= 1;
            v.active_blocks -= u64::from(self.blocks[i as usize]);
        }
        if self.uses_index {
            for &e in &rep.events {
                self.index.apply(k, e);
            }
        }
        rep.done.clear();
        rep.events.clear();
        self.spare.push(rep);
    }

    /// Routes request `i` (its arrival is now); returns the replica.
    pub(crate) fn route(&mut self, sh: &Shared<'_>, i: usize, replicas: usize) -> usize {
        if !self.tracking {
            return 0;
        }
        let r = &sh.trace.requests[i];
        let now = r.arrival_us;
        for k in 0..replicas {
            if self.future[k]
                .as_ref()
                .is_some_and(|rep| rep.load.at_us <= now)
            {
                let rep = self.future[k].take().expect("checked");
                self.apply(k, rep);
            }
        }
        let bs = self.block_size;
        let hashes = match (&r.prefix, self.uses_index) {
            (Some(p), true) => p.block_hashes(r.prompt_tokens, bs),
            _ => Vec::new(),
        };
        if self.uses_index {
            self.index.overlaps(&hashes, &mut self.overlaps);
        }
        let predicted = sh
            .cfg
            .predictor
            .initial(i as u64, sh.live[i].true_output)
            .unwrap_or(0.0);
        let req = RouteRequest {
            index: i as u64,
            arrival_us: now,
            prompt_tokens: r.prompt_tokens,
            predicted_output_tokens: predicted,
            block_hashes: &hashes,
        };
        let work = self
            .work
            .as_ref()
            .expect("a tracking front end has a work model");
        let ctx = RouteContext {
            views: &self.views,
            index: &self.index,
            overlaps: &self.overlaps,
            work,
        };
        let k = self.router.route(&req, &ctx).min(replicas - 1);
        let blocks = r.prompt_tokens.div_ceil(bs);
        let overlap = self.overlaps.get(k).copied().unwrap_or(0).min(blocks);
        let v = &mut self.views[k];
        v.outstanding += 1;
        v.active_blocks += u64::from(blocks);
        v.pending_requests += 1;
        v.pending_blocks += u64::from(blocks - overlap);
        v.pending_prefill_tokens += u64::from(r.prompt_tokens.saturating_sub(overlap * bs));
        v.pending_decode_tokens += predicted;
        self.assignment[i] = k as u32;
        self.blocks[i] = blocks;
        k
    }

    /// Takes replica `k`'s report of the turn it just ran (due at the replica's clock); the
    /// report of its turn before is due now.
    pub(crate) fn after_turn(&mut self, k: usize, replica: &mut Replica<'_>, _turn: Turn) {
        if !self.tracking {
            replica.done.clear();
            return;
        }
        if let Some(prev) = self.future[k].take() {
            self.apply(k, prev);
        }
        let mut rep = self.spare.pop().unwrap_or_default();
        rep.load = replica.load();
        rep.done.append(&mut replica.done);
        let before = rep.events.len();
        replica.drain_kv_events(&mut rep.events);
        self.kv_events += (rep.events.len() - before) as u64;
        self.future[k] = Some(rep);
    }
}

/// Replays `trace` over `cfg.replicas` replicas behind `cfg.router`. Fails only on invalid
/// configuration; requests a replica cannot serve are reported as rejected, with the reason.
pub fn simulate_cluster(trace: &Trace, cfg: &ClusterConfig) -> Result<ClusterOutcome> {
    let n = cfg.replicas;
    if n == 0 || n > MAX_REPLICAS {
        bail!("the number of replicas must be in 1..={MAX_REPLICAS}, got {n}");
    }
    let wall = WallClock::now();
    let mut ecfg = cfg.sim.resolved_engine(trace)?;
    let router = cfg.router.build(n, cfg.seed);
    if router.uses_prefix_index() {
        // The replicas publish KV events; the ring is drained after every step, and an
        // overflow is made good by the core's resync (AllCleared + a snapshot).
        ecfg.kv_event_capacity = KV_EVENT_CAPACITY;
    }
    let mut buffers = (0..n)
        .map(|_| EngineBuffers::new(&ecfg).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<Result<Vec<_>>>()?;
    let mut replicas = buffers
        .iter_mut()
        .map(|b| {
            b.engine(ecfg)
                .map(Replica::new)
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    for r in &mut replicas {
        r.set_peaks(&cfg.sim.cost);
    }
    let mut shared = Shared::new(trace, &cfg.sim);
    let work = WorkModel::new(&cfg.sim.cost, ecfg.block_size, ecfg.max_running);
    let mut frontend = Frontend::new(router, n, trace.len(), work);
    run_replicas(
        &mut shared,
        &mut replicas,
        &mut frontend,
        &mut None::<&mut Timeline<std::io::Sink>>,
    )?;
    let wall_s = wall.elapsed().as_secs_f64();
    let end_s = replicas.iter().map(|r| r.t).max().unwrap_or(0) as f64 * 1e-6;
    let mut total = RunCounters::default();
    let mut routed_requests = vec![0u64; n];
    let mut routed_tokens = vec![0u64; n];
    for (i, &k) in frontend.assignment.iter().enumerate() {
        let k = k as usize;
        if k < n {
            routed_requests[k] += 1;
            let rec = &shared.records[i];
            routed_tokens[k] += u64::from(rec.prompt_tokens) + u64::from(rec.output_tokens);
        }
    }
    let mut per_replica = Vec::with_capacity(n);
    for (k, r) in replicas.iter().enumerate() {
        let mut c = r.final_counters(wall_s);
        c.simulated_s = end_s;
        add_counters(&mut total, &c);
        let records: Vec<RequestRecord> = shared
            .records
            .iter()
            .zip(&frontend.assignment)
            .filter(|(_, a)| **a as usize == k)
            .map(|(rec, _)| rec.clone())
            .collect();
        per_replica.push(ReplicaOutcome {
            replica: k,
            summary: summarize(&records, &c, &cfg.sim.slo),
            counters: c,
            engine_stats: r.stats(),
            iterations: r.iterations,
            requests_routed: routed_requests[k],
            tokens_routed: routed_tokens[k],
        });
    }
    total.simulated_s = end_s;
    total.wall_s = wall_s;
    let summary = summarize(&shared.records, &total, &cfg.sim.slo);
    let stats = ClusterStats {
        router: cfg.router.to_string(),
        replicas: n as u64,
        load_imbalance_requests: imbalance(&routed_requests),
        load_imbalance_tokens: imbalance(&routed_tokens),
        cluster_prefix_hit_rate: summary.prefix_hit_rate,
        kv_events: frontend.kv_events,
    };
    Ok(ClusterOutcome {
        records: shared.records,
        assignment: frontend.assignment,
        summary,
        stats,
        iterations: per_replica.iter().map(|r| r.iterations).sum(),
        replicas: per_replica,
        engine_config: ecfg,
    })
}

/// Adds `c`'s counters into `total` (`simulated_s` and `wall_s` are left to the caller).
fn add_counters(total: &mut RunCounters, c: &RunCounters) {
    total.preemptions_recompute += c.preemptions_recompute;
    total.preemptions_swap += c.preemptions_swap;
    total.preemptions_keep += c.preemptions_keep;
    total.recomputed_tokens += c.recomputed_tokens;
    total.prefix_hit_tokens += c.prefix_hit_tokens;
    total.prompt_tokens_scheduled += c.prompt_tokens_scheduled;
    total.kv_utilization_sum += c.kv_utilization_sum;
    total.kv_utilization_samples += c.kv_utilization_samples;
    total.swapped_blocks += c.swapped_blocks;
    total.add_utilisation(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imbalance_is_max_over_mean() {
        assert_eq!(imbalance(&[5, 5, 5, 5]), 1.0);
        assert_eq!(imbalance(&[8, 0, 0, 0]), 4.0);
        assert_eq!(imbalance(&[3, 1]), 1.5);
        assert_eq!(imbalance(&[0, 0]), 1.0);
        assert_eq!(imbalance(&[]), 1.0);
    }
}
