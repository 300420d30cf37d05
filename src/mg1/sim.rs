//! An event-driven simulation of the M/G/1 queue with predictions, driven by the core's rank
//! functions and waiting queue.
//!
//! # Why the simulator reuses the core
//!
//! The point of `augur mg1` is to show that augur's policies *are* the theory's policies. A
//! second, simulator-only implementation of SPRPT or Trail would only show that someone can
//! write SPRPT twice. So this module contains no rank logic at all: every job is described by a
//! [`RankInput`], ranked by [`Policy::key`], and waits in the same [`IndexedHeap`] the engine
//! uses; whether an arrival may displace the running job is decided by
//! [`Policy::preempts_for_rank`] and [`Policy::preemptible`] (Trail's cutoff). When the
//! simulated means match the SOAP closed forms of [`crate::mg1::analytic`], the match is
//! evidence about the code the engine runs.
//!
//! # The model
//!
//! One server, Poisson arrivals at rate λ = `load` (the service has mean 1, so ρ = λ), job sizes
//! x from a [`ServiceDist`] and predictions y from a [`PredictionModel`]. `sjf` and `srpt` rank
//! by the true size (y = x); the other size-based policies rank by the model's prediction.
//! Service is preempt-resume: a preempted job keeps its attained service.
//!
//! # The events
//!
//! * **Arrival.** An idle server starts the job. Otherwise, if the policy preempts for rank, the
//!   arrival's key is compared with the running job's key computed now (with its attained
//!   service); the arrival takes the server if its key is lower and the running job is
//!   preemptible, and the running job goes back into the heap with its current key.
//! * **Completion.** The job leaves; the server takes the heap's minimum.
//! * **Rank step** (MLFQ only). The running job used up its level's quantum; if a waiting job now
//!   ranks better, it takes the server.
//!
//! Waiting jobs attain no service, so their keys never change and the heap is never re-keyed.
//! For every policy here except MLFQ the running job's rank never increases with its attained
//! service (FCFS, SJF, PSPJF and one-bit ranks are constant; SPRPT's y − a and memory-time's
//! (y² − a²)/2 decrease), so the only moments a waiting job can come to outrank it are arrivals,
//! and preempting only at arrivals is exact. MLFQ's rank rises in steps at quantum boundaries,
//! which are simulated as events. Least attained service (`las`) is not offered: its running
//! rank rises continuously, and tied jobs must share the server (processor sharing), which a
//! one-job-at-a-time simulation cannot express.
//!
//! # Measurement
//!
//! Jobs are numbered in arrival order. The first `warmup_jobs` are not measured; jobs
//! `warmup_jobs..jobs` are, each exactly once, and arrivals continue (unmeasured) until every
//! measured job has completed, so that no slow job is censored at the end of the run. The 95%
//! confidence half-width comes from 30 batch means over the measured jobs in arrival order.
//!
//! The random stream is `ChaCha8Rng::seed_from_u64(seed)`, drawn per arrival as (interarrival
//! time, size, prediction): the same seed gives every policy the same jobs (common random
//! numbers), and the same configuration always gives the same result.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use augur_core::policy::{MlfqParams, OverrunRule, Policy, PolicyKind, RankInput, mlfq_level};
use augur_core::queue::{HeapEntry, IndexedHeap, RankKey};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::analytic::{AnalyticPolicy, mean_response_time};
use super::dist::{PredictionModel, ServiceDist};

/// The policy names [`Mg1Policy::from_str`] accepts, for error messages and help text.
pub const POLICY_NAMES: &str = "fcfs, sjf, spjf, pspjf, srpt, sprpt, trail[:C], onebit:T, \
                                onebit-np:T, memory-time, mlfq[:QUANTUM:GROWTH:LEVELS]";

/// Trail's preemption limit when `trail` is given without one.
pub const DEFAULT_TRAIL_CUTOFF: f64 = 0.8;

/// MLFQ parameters when `mlfq` is given without them: quantum 1 (the mean job size), growth 2,
/// 8 levels.
pub const DEFAULT_MLFQ: (f64, f64, u32) = (1.0, 2.0, 8);

/// A policy of the M/G/1 simulator, as named on the command line. Each maps onto one core
/// [`Policy`] ([`Mg1Policy::core_policy`]); the names that differ only in the predictions they
/// rank by (`sjf`/`spjf`, `srpt`/`sprpt`) map onto the same rank function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mg1Policy {
    /// `fcfs`: first come, first served.
    Fcfs,
    /// `sjf`: non-preemptive shortest job first on true sizes (core `Sjf`, y = x).
    Sjf,
    /// `spjf`: non-preemptive shortest predicted job first (core `Sjf`).
    Spjf,
    /// `pspjf`: preemptive shortest predicted job first, rank y (core `Pspjf`).
    Pspjf,
    /// `srpt`: shortest remaining processing time on true sizes (core `Sprpt`, y = x).
    Srpt,
    /// `sprpt`: shortest predicted remaining processing time, rank y − a (core `Sprpt`).
    Sprpt,
    /// `trail:C`: SPRPT that stops preempting a job once its attained service reaches C·y.
    Trail {
        /// The preemption limit C as a fraction of the prediction (≥ 0).
        cutoff: f64,
    },
    /// `onebit:T` (preemptive) or `onebit-np:T`: predicted-short (y ≤ T) before
    /// predicted-long, FCFS within each class.
    OneBit {
        /// The short/long threshold T on the prediction.
        threshold: f64,
        /// Whether a predicted-short arrival preempts a predicted-long job.
        preemptive: bool,
    },
    /// `memory-time`: LAMPS's predicted remaining memory-time; with no prompt this is
    /// (y² − a²)/2 while a < y.
    MemoryTime,
    /// `mlfq:Q:G:L`: multi-level feedback queue on attained service, FCFS within a level.
    Mlfq {
        /// The quantum of the first level, in units of service (≥ 1, the core's bound).
        base_quantum: f64,
        /// Each level's quantum is this times the previous one's (≥ 1).
        growth: f64,
        /// Number of levels (1..=64).
        levels: u32,
    },
}

impl Mg1Policy {
    /// Whether the policy ranks by the prediction model's y, so that it cannot run with
    /// [`PredictionModel::None`]. `sjf` and `srpt` rank by the true size and do not.
    pub fn uses_predictions(&self) -> bool {
        matches!(
            self,
            Mg1Policy::Spjf
                | Mg1Policy::Pspjf
                | Mg1Policy::Sprpt
                | Mg1Policy::Trail { .. }
                | Mg1Policy::OneBit { .. }
                | Mg1Policy::MemoryTime
        )
    }

    /// Whether the policy ranks by the true size (y = x) whatever the prediction model.
    pub fn uses_true_sizes(&self) -> bool {
        matches!(self, Mg1Policy::Sjf | Mg1Policy::Srpt)
    }

    /// The core policy the simulation ranks with. The SPRPT family uses
    /// [`OverrunRule::Negative`], the theory's rank y − a that goes negative once a job outlives
    /// its prediction (such a job is never preempted: nothing arriving can beat it).
    pub fn core_policy(&self) -> Policy {
        let kind = match *self {
            Mg1Policy::Fcfs => PolicyKind::Fcfs,
            Mg1Policy::Sjf | Mg1Policy::Spjf => PolicyKind::Sjf,
            Mg1Policy::Pspjf => PolicyKind::Pspjf,
            Mg1Policy::Srpt | Mg1Policy::Sprpt => PolicyKind::Sprpt,
            Mg1Policy::Trail { cutoff } => PolicyKind::Trail { cutoff },
            Mg1Policy::OneBit {
                threshold,
                preemptive,
            } => PolicyKind::OneBit {
                threshold,
                preemptive,
            },
            Mg1Policy::MemoryTime => PolicyKind::MemoryTime,
            Mg1Policy::Mlfq {
                base_quantum,
                growth,
                levels,
            } => PolicyKind::Mlfq(MlfqParams {
                base_quantum,
                growth,
                levels,
                prefill_weight: 0.0,
            }),
        };
        Policy {
            overrun: OverrunRule::Negative,
            ..Policy::new(kind)
        }
    }

    /// The closed form that models this policy, if [`crate::mg1::analytic`] has one.
    pub fn analytic(&self) -> Option<AnalyticPolicy> {
        match *self {
            Mg1Policy::Fcfs => Some(AnalyticPolicy::Fcfs),
            Mg1Policy::Sjf => Some(AnalyticPolicy::Sjf),
            Mg1Policy::Spjf => Some(AnalyticPolicy::Spjf),
            Mg1Policy::Pspjf => Some(AnalyticPolicy::Pspjf),
            Mg1Policy::Srpt => Some(AnalyticPolicy::Srpt),
            Mg1Policy::Sprpt => Some(AnalyticPolicy::Sprpt),
            Mg1Policy::Trail { cutoff } => Some(AnalyticPolicy::Trail { c: cutoff }),
            Mg1Policy::OneBit { .. } | Mg1Policy::MemoryTime | Mg1Policy::Mlfq { .. } => None,
        }
    }
}

impl fmt::Display for Mg1Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Mg1Policy::Fcfs => f.write_str("fcfs"),
            Mg1Policy::Sjf => f.write_str("sjf"),
            Mg1Policy::Spjf => f.write_str("spjf"),
            Mg1Policy::Pspjf => f.write_str("pspjf"),
            Mg1Policy::Srpt => f.write_str("srpt"),
            Mg1Policy::Sprpt => f.write_str("sprpt"),
            Mg1Policy::Trail { cutoff } => write!(f, "trail:{cutoff}"),
            Mg1Policy::OneBit {
                threshold,
                preemptive: true,
            } => write!(f, "onebit:{threshold}"),
            Mg1Policy::OneBit {
                threshold,
                preemptive: false,
            } => write!(f, "onebit-np:{threshold}"),
            Mg1Policy::MemoryTime => f.write_str("memory-time"),
            Mg1Policy::Mlfq {
                base_quantum,
                growth,
                levels,
            } => write!(f, "mlfq:{base_quantum}:{growth}:{levels}"),
        }
    }
}

fn parse_param<T: FromStr>(name: &str, s: &str, what: &str) -> Result<T, Mg1Error> {
    s.parse().map_err(|_| Mg1Error::InvalidPolicyParameter {
        policy: name.to_string(),
        reason: format!("`{s}` is not a valid {what}"),
    })
}

impl FromStr for Mg1Policy {
    type Err = Mg1Error;

    /// Parses one of [`POLICY_NAMES`]. Parameters are checked by [`Mg1Config::validate`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (head, arg) = match s.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (s, None),
        };
        let policy = match (head, arg) {
            ("fcfs", None) => Mg1Policy::Fcfs,
            ("sjf", None) => Mg1Policy::Sjf,
            ("spjf", None) => Mg1Policy::Spjf,
            ("pspjf", None) => Mg1Policy::Pspjf,
            ("srpt", None) => Mg1Policy::Srpt,
            ("sprpt", None) => Mg1Policy::Sprpt,
            ("memory-time", None) => Mg1Policy::MemoryTime,
            ("trail", None) => Mg1Policy::Trail {
                cutoff: DEFAULT_TRAIL_CUTOFF,
            },
            ("trail", Some(c)) => Mg1Policy::Trail {
                cutoff: parse_param(s, c, "cutoff (a number)")?,
            },
            ("onebit" | "onebit-np", Some(t)) => Mg1Policy::OneBit {
                threshold: parse_param(s, t, "threshold (a number)")?,
                preemptive: head == "onebit",
            },
            ("onebit" | "onebit-np", None) => {
                return Err(Mg1Error::InvalidPolicyParameter {
                    policy: s.to_string(),
                    reason: "a threshold is required: onebit:T or onebit-np:T".to_string(),
                });
            }
            ("mlfq", None) => Mg1Policy::Mlfq {
                base_quantum: DEFAULT_MLFQ.0,
                growth: DEFAULT_MLFQ.1,
                levels: DEFAULT_MLFQ.2,
            },
            ("mlfq", Some(a)) => {
                let parts: Vec<&str> = a.split(':').collect();
                let [q, g, l] = parts[..] else {
                    return Err(Mg1Error::InvalidPolicyParameter {
                        policy: s.to_string(),
                        reason: "expected mlfq:QUANTUM:GROWTH:LEVELS".to_string(),
                    });
                };
                Mg1Policy::Mlfq {
                    base_quantum: parse_param(s, q, "quantum (a number)")?,
                    growth: parse_param(s, g, "growth (a number)")?,
                    levels: parse_param(s, l, "number of levels (an integer)")?,
                }
            }
            _ => return Err(Mg1Error::UnknownPolicy(s.to_string())),
        };
        Ok(policy)
    }
}

/// An invalid simulation configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum Mg1Error {
    /// The policy name is not one of [`POLICY_NAMES`].
    UnknownPolicy(String),
    /// A policy parameter is malformed or out of range.
    InvalidPolicyParameter {
        /// The policy as given.
        policy: String,
        /// What is wrong.
        reason: String,
    },
    /// The policy ranks by predictions and the prediction model is `none`.
    NeedsPredictions(String),
    /// The load is not in (0, 1).
    InvalidLoad(f64),
    /// `jobs` is 0.
    NoJobs,
    /// `warmup_jobs` is not below `jobs`, leaving nothing to measure.
    WarmupTooLong {
        /// The warm-up jobs asked for.
        warmup_jobs: u64,
        /// The jobs asked for.
        jobs: u64,
    },
    /// The service distribution's parameters are invalid.
    InvalidService(String),
    /// The prediction model's parameters are invalid.
    InvalidPrediction(String),
}

impl fmt::Display for Mg1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mg1Error::UnknownPolicy(p) => {
                write!(f, "unknown policy `{p}`: expected one of {POLICY_NAMES}")?;
                if p == "las" {
                    f.write_str(
                        " (las is not simulated: tied jobs would have to share the server)",
                    )?;
                }
                Ok(())
            }
            Mg1Error::InvalidPolicyParameter { policy, reason } => {
                write!(f, "invalid policy `{policy}`: {reason}")
            }
            Mg1Error::NeedsPredictions(p) => write!(
                f,
                "policy `{p}` ranks jobs by their predicted sizes and cannot run with prediction \
                 model `none`: choose perfect, exp or uniform:ALPHA"
            ),
            Mg1Error::InvalidLoad(l) => write!(f, "invalid load {l}: it must lie in (0, 1)"),
            Mg1Error::NoJobs => f.write_str("jobs must be at least 1"),
            Mg1Error::WarmupTooLong { warmup_jobs, jobs } => write!(
                f,
                "warmup_jobs ({warmup_jobs}) must be below jobs ({jobs}), or nothing is measured"
            ),
            Mg1Error::InvalidService(s) => write!(f, "invalid service distribution `{s}`"),
            Mg1Error::InvalidPrediction(p) => write!(f, "invalid prediction model `{p}`"),
        }
    }
}

impl std::error::Error for Mg1Error {}

/// One simulation run.
#[derive(Debug, Clone, PartialEq)]
pub struct Mg1Config {
    /// The scheduling policy.
    pub policy: Mg1Policy,
    /// The load ρ = λ, in (0, 1).
    pub load: f64,
    /// The job-size distribution (mean 1).
    pub service: ServiceDist,
    /// How predictions relate to true sizes (ignored by `sjf`, `srpt` and the size-blind
    /// policies, but still drawn so that every policy sees the same jobs).
    pub prediction: PredictionModel,
    /// Jobs whose response time counts, warm-up included (≥ 1).
    pub jobs: u64,
    /// The seed of the random stream.
    pub seed: u64,
    /// The first jobs, in arrival order, that are simulated but not measured (< `jobs`).
    pub warmup_jobs: u64,
}

impl Mg1Config {
    /// A configuration with 10⁶ jobs, 10⁴ of them warm-up, and seed 1.
    pub fn new(
        policy: Mg1Policy,
        load: f64,
        service: ServiceDist,
        prediction: PredictionModel,
    ) -> Self {
        Mg1Config {
            policy,
            load,
            service,
            prediction,
            jobs: 1_000_000,
            seed: 1,
            warmup_jobs: 10_000,
        }
    }

    /// Checks every field; [`simulate`] calls this first.
    pub fn validate(&self) -> Result<(), Mg1Error> {
        if let Err(e) = self.policy.core_policy().validate() {
            return Err(Mg1Error::InvalidPolicyParameter {
                policy: self.policy.to_string(),
                reason: e.to_string(),
            });
        }
        if self.policy.uses_predictions() && self.prediction == PredictionModel::None {
            return Err(Mg1Error::NeedsPredictions(self.policy.to_string()));
        }
        if !(self.load > 0.0 && self.load < 1.0) {
            return Err(Mg1Error::InvalidLoad(self.load));
        }
        if self.jobs == 0 {
            return Err(Mg1Error::NoJobs);
        }
        if self.warmup_jobs >= self.jobs {
            return Err(Mg1Error::WarmupTooLong {
                warmup_jobs: self.warmup_jobs,
                jobs: self.jobs,
            });
        }
        if !self.service.is_valid() {
            return Err(Mg1Error::InvalidService(self.service.to_string()));
        }
        if !self.prediction.is_valid() {
            return Err(Mg1Error::InvalidPrediction(self.prediction.to_string()));
        }
        Ok(())
    }
}

/// What a simulation measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Mg1Outcome {
    /// Mean response time (completion − arrival) of the measured jobs.
    pub mean_response_time: f64,
    /// Measured jobs: `jobs − warmup_jobs`.
    pub jobs_measured: u64,
    /// Half-width of the 95% confidence interval of the mean, from 30 batch means in arrival
    /// order (Student t, 29 degrees of freedom); `None` below 300 measured jobs.
    pub ci95_half_width: Option<f64>,
    /// Jobs that arrived in all, including those after the last measured one that kept the
    /// queue stationary until every measured job completed.
    pub arrivals: u64,
    /// Times an arrival displaced the running job.
    pub preemptions: u64,
    /// Times a better-ranked arrival was refused because the running job was not preemptible
    /// (Trail's cutoff).
    pub preemptions_refused: u64,
    /// Times a running job gave way to a waiting one at a rank step (MLFQ demotions).
    pub demotion_preemptions: u64,
    /// The most jobs in the system at once.
    pub max_in_system: usize,
}

/// A simulation beside its closed form, as `augur mg1` prints it (JSON field names are read by
/// other tools and must not change).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mg1Report {
    /// The policy name ([`Mg1Policy`]'s `Display`).
    pub policy: String,
    /// The load ρ.
    pub load: f64,
    /// The prediction model (`Display` of [`PredictionModel`]).
    pub prediction: String,
    /// The service distribution (`Display` of [`ServiceDist`]).
    pub service: String,
    /// Jobs simulated and measured, warm-up included.
    pub jobs: u64,
    /// The simulated mean response time.
    pub mean_response_time: f64,
    /// The closed-form mean response time, `null` where there is none.
    pub analytic_mean_response_time: Option<f64>,
    /// The 95% confidence half-width of the simulated mean.
    pub ci95_half_width: Option<f64>,
    /// (simulated − closed form) / closed form, `null` without a closed form.
    pub relative_error: Option<f64>,
}

/// Runs the simulation of `cfg` and puts its mean beside the closed form, if there is one.
pub fn report(cfg: &Mg1Config) -> Result<Mg1Report, Mg1Error> {
    report_with_progress(cfg, None)
}

/// [`report`], storing the number of measured jobs done so far in `progress` as it runs
/// (every [`PROGRESS_EVERY`] jobs and at the end), for a progress bar.
pub fn report_with_progress(
    cfg: &Mg1Config,
    progress: Option<&AtomicU64>,
) -> Result<Mg1Report, Mg1Error> {
    let outcome = simulate_with_capacity(cfg, INITIAL_CAPACITY, progress)?;
    let analytic = cfg
        .policy
        .analytic()
        .and_then(|p| mean_response_time(p, cfg.load, cfg.service, cfg.prediction));
    Ok(Mg1Report {
        policy: cfg.policy.to_string(),
        load: cfg.load,
        prediction: cfg.prediction.to_string(),
        service: cfg.service.to_string(),
        jobs: cfg.jobs,
        mean_response_time: outcome.mean_response_time,
        analytic_mean_response_time: analytic,
        ci95_half_width: outcome.ci95_half_width,
        relative_error: analytic.map(|a| (outcome.mean_response_time - a) / a),
    })
}

/// Batches of the confidence interval.
const BATCHES: usize = 30;
/// Student t quantile 0.975 with `BATCHES − 1` = 29 degrees of freedom.
const T_975_29: f64 = 2.045_229_642_132_703;
/// Initial capacity of the waiting heap; it doubles when full.
const INITIAL_CAPACITY: usize = 1024;

/// One job in the system.
#[derive(Clone, Copy, Debug)]
struct Job {
    /// Arrival order, 0-based; also the tiebreak of its key.
    seq: u64,
    arrival: f64,
    size: f64,
    prediction: Option<f64>,
    /// Service received up to the start of the current run (if running) or in all (if waiting).
    attained: f64,
}

impl Job {
    fn rank_input(&self) -> RankInput {
        RankInput {
            arrival_s: self.arrival,
            attained: self.attained,
            predicted_total: self.prediction,
            initial_prediction: self.prediction,
            ..RankInput::default()
        }
    }
}

/// Why [`Sim::run`] returned.
enum Stop {
    /// Every measured job completed.
    Done,
    /// The next arrival would overflow the heap; nothing was changed.
    Full,
}

/// Everything but the heap, which borrows storage that must be able to grow.
struct Sim {
    policy: Policy,
    mlfq: Option<MlfqParams>,
    lambda: f64,
    service: ServiceDist,
    prediction: PredictionModel,
    true_sizes: bool,
    rng: ChaCha8Rng,
    jobs_total: u64,
    warmup: u64,
    measured_total: u64,

    now: f64,
    next: Job,
    slots: Vec<Job>,
    free: Vec<u32>,
    in_system: usize,
    running: Option<u32>,
    run_start: f64,

    measured_done: u64,
    sum: f64,
    batch_sum: Vec<f64>,
    batch_count: Vec<u64>,
    out: Mg1Outcome,
}

impl Sim {
    fn new(cfg: &Mg1Config) -> Self {
        let policy = cfg.policy.core_policy();
        let mlfq = match policy.kind {
            PolicyKind::Mlfq(p) => Some(p),
            _ => None,
        };
        let measured_total = cfg.jobs - cfg.warmup_jobs;
        let mut sim = Sim {
            policy,
            mlfq,
            lambda: cfg.load,
            service: cfg.service,
            prediction: cfg.prediction,
            true_sizes: cfg.policy.uses_true_sizes(),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            jobs_total: cfg.jobs,
            warmup: cfg.warmup_jobs,
            measured_total,
            now: 0.0,
            next: Job {
                seq: 0,
                arrival: 0.0,
                size: 0.0,
                prediction: None,
                attained: 0.0,
            },
            slots: Vec::new(),
            free: Vec::new(),
            in_system: 0,
            running: None,
            run_start: 0.0,
            measured_done: 0,
            sum: 0.0,
            batch_sum: vec![0.0; BATCHES],
            batch_count: vec![0; BATCHES],
            out: Mg1Outcome {
                mean_response_time: f64::NAN,
                jobs_measured: measured_total,
                ci95_half_width: None,
                arrivals: 0,
                preemptions: 0,
                preemptions_refused: 0,
                demotion_preemptions: 0,
                max_in_system: 0,
            },
        };
        sim.next = sim.draw(0, 0.0);
        sim
    }

    /// Draws job `seq`, arriving an exponential time after `after`: interarrival, size,
    /// prediction, always in that order.
    fn draw(&mut self, seq: u64, after: f64) -> Job {
        let u: f64 = self.rng.random();
        let arrival = after - (-u).ln_1p() / self.lambda;
        let size = self.service.sample(&mut self.rng);
        let drawn = self.prediction.sample_prediction(size, &mut self.rng);
        let prediction = if self.true_sizes { Some(size) } else { drawn };
        Job {
            seq,
            arrival,
            size,
            prediction,
            attained: 0.0,
        }
    }

    fn key(&self, slot: u32) -> RankKey {
        let j = &self.slots[slot as usize];
        self.policy.key(&j.rank_input(), j.seq)
    }

    /// Credits the running job with the service since `run_start`.
    fn advance_running(&mut self, r: u32) {
        self.slots[r as usize].attained += self.now - self.run_start;
        self.run_start = self.now;
    }

    fn start(&mut self, slot: u32) {
        self.running = Some(slot);
        self.run_start = self.now;
    }

    /// The attained service at which MLFQ's running job next changes level.
    fn next_rank_step(&self, job: &Job) -> Option<f64> {
        let p = self.mlfq.as_ref()?;
        let level = mlfq_level(p, 0.0, job.attained);
        if level + 1 >= p.levels {
            return None;
        }
        let mut boundary = 0.0;
        let mut quantum = p.base_quantum;
        for _ in 0..=level {
            boundary += quantum;
            quantum *= p.growth;
        }
        Some(boundary)
    }

    fn record(&mut self, job: &Job) {
        if job.seq < self.warmup || job.seq >= self.jobs_total {
            return;
        }
        let t = self.now - job.arrival;
        let i = job.seq - self.warmup;
        let b = (i as u128 * BATCHES as u128 / self.measured_total as u128) as usize;
        self.batch_sum[b] += t;
        self.batch_count[b] += 1;
        self.sum += t;
        self.measured_done += 1;
    }

    fn run(&mut self, heap: &mut IndexedHeap<'_>, progress: Option<&AtomicU64>) -> Stop {
        while self.measured_done < self.measured_total {
            if let Some(p) = progress
                && self.measured_done.is_multiple_of(PROGRESS_EVERY)
            {
                p.store(self.measured_done, Ordering::Relaxed);
            }
            let running = self.running.map(|r| (r, self.slots[r as usize]));
            let completion = running.map_or(f64::INFINITY, |(_, j)| {
                self.run_start + (j.size - j.attained)
            });
            let step = running
                .and_then(|(_, j)| self.next_rank_step(&j).map(|b| (b, j)))
                .map_or((f64::INFINITY, 0.0), |(b, j)| {
                    (self.run_start + (b - j.attained).max(0.0), b)
                });
            if self.next.arrival < completion && self.next.arrival < step.0 {
                if self.in_system >= heap.capacity() {
                    return Stop::Full;
                }
                self.arrive(heap);
            } else if let Some((r, job)) = running {
                if completion <= step.0 {
                    self.now = completion;
                    self.record(&job);
                    self.free.push(r);
                    self.in_system -= 1;
                    self.running = None;
                    if let Some((next, _)) = heap.pop().expect("heap intact") {
                        self.start(next);
                    }
                } else {
                    self.now = step.0;
                    self.rank_step(heap, r, step.1);
                }
            }
        }
        Stop::Done
    }

    fn arrive(&mut self, heap: &mut IndexedHeap<'_>) {
        let job = self.next;
        self.now = job.arrival;
        self.next = self.draw(job.seq + 1, job.arrival);
        self.out.arrivals += 1;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = job;
                s
            }
            None => {
                self.slots.push(job);
                (self.slots.len() - 1) as u32
            }
        };
        self.in_system += 1;
        self.out.max_in_system = self.out.max_in_system.max(self.in_system);
        let Some(r) = self.running else {
            self.start(slot);
            return;
        };
        let key = self.key(slot);
        if self.policy.preempts_for_rank() {
            self.advance_running(r);
            let running_key = self.key(r);
            if key < running_key {
                if self
                    .policy
                    .preemptible(&self.slots[r as usize].rank_input())
                {
                    heap.push(r, running_key).expect("heap capacity checked");
                    self.start(slot);
                    self.out.preemptions += 1;
                    return;
                }
                self.out.preemptions_refused += 1;
            }
        }
        heap.push(slot, key).expect("heap capacity checked");
    }

    /// The running job `r` reached attained service `boundary`, where its rank steps up.
    fn rank_step(&mut self, heap: &mut IndexedHeap<'_>, r: u32, boundary: f64) {
        let p = self.mlfq.expect("rank steps are MLFQ's");
        let before = mlfq_level(&p, 0.0, self.slots[r as usize].attained);
        let job = &mut self.slots[r as usize];
        job.attained = job.attained.max(boundary);
        // The boundary is a sum of quanta; make sure rounding cannot leave the job one ulp short
        // of the next level (which would make this event repeat forever).
        while mlfq_level(&p, 0.0, job.attained) == before {
            job.attained = job.attained.next_up();
        }
        self.run_start = self.now;
        let running_key = self.key(r);
        if let Some((_, best)) = heap.peek()
            && best < running_key
            && self
                .policy
                .preemptible(&self.slots[r as usize].rank_input())
        {
            let (next, _) = heap.pop().expect("heap intact").expect("peeked");
            heap.push(r, running_key).expect("a slot was just freed");
            self.start(next);
            self.out.demotion_preemptions += 1;
        }
    }

    fn finish(mut self) -> Mg1Outcome {
        let n = self.measured_total as f64;
        let mean = self.sum / n;
        self.out.mean_response_time = mean;
        if self.measured_total >= 10 * BATCHES as u64 {
            let means: Vec<f64> = self
                .batch_sum
                .iter()
                .zip(&self.batch_count)
                .map(|(s, &c)| s / c as f64)
                .collect();
            let grand = means.iter().sum::<f64>() / BATCHES as f64;
            let var =
                means.iter().map(|m| (m - grand) * (m - grand)).sum::<f64>() / (BATCHES - 1) as f64;
            self.out.ci95_half_width = Some(T_975_29 * (var / BATCHES as f64).sqrt());
        }
        self.out
    }
}

/// Simulates `cfg` (after [`Mg1Config::validate`]) and returns what it measured.
///
/// Memory is proportional to the most jobs in the system at once, not to `jobs`: the heap's
/// storage starts small and doubles when full.
pub fn simulate(cfg: &Mg1Config) -> Result<Mg1Outcome, Mg1Error> {
    simulate_with_capacity(cfg, INITIAL_CAPACITY, None)
}

/// How often (in measured jobs) the progress counter of [`report_with_progress`] is updated.
pub const PROGRESS_EVERY: u64 = 1 << 16;

/// [`simulate`] with the heap's initial capacity given (≥ 1), so tests can force it to grow,
/// and an optional progress counter.
fn simulate_with_capacity(
    cfg: &Mg1Config,
    initial_capacity: usize,
    progress: Option<&AtomicU64>,
) -> Result<Mg1Outcome, Mg1Error> {
    cfg.validate()?;
    let mut sim = Sim::new(cfg);
    let mut capacity = initial_capacity.max(1);
    let mut entries = vec![HeapEntry::default(); capacity];
    let mut positions = vec![0u32; capacity];
    let mut waiting: Vec<(u32, RankKey)> = Vec::new();
    loop {
        let mut heap = IndexedHeap::new(&mut entries, &mut positions);
        for (item, key) in waiting.drain(..) {
            heap.push(item, key).expect("the heap only grows");
        }
        match sim.run(&mut heap, progress) {
            Stop::Done => break,
            Stop::Full => heap.for_each(|item, key| waiting.push((item, key))),
        }
        capacity *= 2;
        entries.resize(capacity, HeapEntry::default());
        positions.resize(capacity, 0);
    }
    if let Some(p) = progress {
        p.store(sim.measured_done, Ordering::Relaxed);
    }
    Ok(sim.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn cfg(policy: &str, load: f64, service: &str, prediction: &str, jobs: u64) -> Mg1Config {
        Mg1Config {
            jobs,
            warmup_jobs: jobs / 100,
            seed: 7,
            ..Mg1Config::new(
                policy.parse().unwrap(),
                load,
                service.parse().unwrap(),
                prediction.parse().unwrap(),
            )
        }
    }

    /// Runs `configs` over two threads, in order of the input.
    fn run_all(configs: &[Mg1Config]) -> Vec<Mg1Report> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut out: Vec<Option<Mg1Report>> = vec![None; configs.len()];
        let results = std::sync::Mutex::new(&mut out);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(c) = configs.get(i) else { break };
                        let r = report(c).unwrap();
                        results.lock().unwrap()[i] = Some(r);
                    }
                });
            }
        });
        out.into_iter().map(Option::unwrap).collect()
    }

    /// Jobs per configuration of the acceptance test: enough that the 95% confidence
    /// half-width is well under 1% of the mean. FCFS with Weibull service has by far the largest
    /// variance (its waiting time depends on E[S³] = 90) and gets twice the jobs.
    fn acceptance_jobs(policy: &str, service: &str, load: f64) -> u64 {
        let jobs = match (service, load > 0.6) {
            ("exp", false) => 2_000_000,
            ("exp", true) => 4_000_000,
            (_, false) => 4_000_000,
            (_, true) => 16_000_000,
        };
        if policy == "fcfs" && service == "weibull" {
            2 * jobs
        } else {
            jobs
        }
    }

    /// The acceptance test: the simulated means of the policies with a closed form lie
    /// within 2% of it, with a 95% confidence half-width below 1.5% (so that passing is not
    /// luck). Each configuration has its own seed, so the checks are independent.
    #[test]
    fn test_simulation_matches_closed_forms() {
        let started = Instant::now();
        let mut specs: Vec<(&str, f64, &str, &str)> = vec![];
        for service in ["exp", "weibull"] {
            for load in [0.5, 0.8] {
                for policy in ["fcfs", "sjf", "srpt"] {
                    // Their ranks ignore the prediction model (which is drawn anyway), so `exp`
                    // and `uniform:0.5` would be the same run twice.
                    specs.push((policy, load, service, "exp"));
                }
                for prediction in ["exp", "uniform:0.5"] {
                    for policy in ["spjf", "pspjf", "sprpt"] {
                        specs.push((policy, load, service, prediction));
                    }
                }
            }
        }
        for load in [0.5, 0.8] {
            for policy in ["trail:0.5", "trail:0.8"] {
                specs.push((policy, load, "exp", "exp"));
            }
        }
        let configs: Vec<Mg1Config> = specs
            .iter()
            .enumerate()
            .map(|(i, &(policy, load, service, prediction))| Mg1Config {
                seed: 1000 + i as u64,
                ..cfg(
                    policy,
                    load,
                    service,
                    prediction,
                    acceptance_jobs(policy, service, load),
                )
            })
            .collect();
        let reports = run_all(&configs);
        let mut failures = vec![];
        println!(
            "| policy | load | service | prediction | jobs | simulated | closed form | rel. error | CI95/closed |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for r in &reports {
            let a = r.analytic_mean_response_time.unwrap();
            let rel = r.relative_error.unwrap();
            let ci = r.ci95_half_width.unwrap() / a;
            println!(
                "| {} | {} | {} | {} | {} | {:.4} | {:.4} | {:+.3}% | {:.3}% |",
                r.policy,
                r.load,
                r.service,
                r.prediction,
                r.jobs,
                r.mean_response_time,
                a,
                100.0 * rel,
                100.0 * ci
            );
            if rel.abs() > 0.02 || ci > 0.015 {
                failures.push(format!("{r:?}"));
            }
        }
        println!(
            "{} configurations in {:.1?}",
            reports.len(),
            started.elapsed()
        );
        assert!(failures.is_empty(), "{failures:#?}");
    }

    /// M/D/1 at load 0.5: E[T] = 1 + ρ/(2(1−ρ)) = 1.5 exactly.
    #[test]
    fn test_fcfs_with_deterministic_service_is_md1() {
        let out = simulate(&cfg("fcfs", 0.5, "det", "none", 1_000_000)).unwrap();
        let ci = out.ci95_half_width.unwrap();
        assert!(ci < 0.005, "{out:?}");
        assert!((out.mean_response_time - 1.5).abs() < 0.01, "{out:?}");
        assert_eq!(out.jobs_measured, 990_000);
        assert_eq!(out.preemptions, 0);
    }

    #[test]
    fn test_same_seed_same_result_and_common_random_numbers() {
        let c = cfg("sprpt", 0.8, "weibull", "exp", 100_000);
        let a = simulate(&c).unwrap();
        assert_eq!(a, simulate(&c).unwrap());
        let other = simulate(&Mg1Config {
            seed: 8,
            ..c.clone()
        })
        .unwrap();
        assert_ne!(a.mean_response_time, other.mean_response_time);
        // The same seed gives every policy the same jobs: with one level, MLFQ is FCFS, and a
        // threshold below every prediction puts every job in one-bit's long class (FCFS too).
        let fcfs = simulate(&cfg("fcfs", 0.8, "weibull", "exp", 100_000)).unwrap();
        for same in ["mlfq:1:2:1", "onebit:0", "onebit-np:0"] {
            let o = simulate(&cfg(same, 0.8, "weibull", "exp", 100_000)).unwrap();
            assert_eq!(o.mean_response_time, fcfs.mean_response_time, "{same}");
            assert_eq!(o.preemptions + o.demotion_preemptions, 0, "{same}");
        }
        // Trail with cutoff 0 never preempts and ranks waiting jobs by y: SPJF. With cutoff 1
        // it stops preempting a job exactly when SPRPT's rank y − a reaches 0, where no arrival
        // can beat it anyway: SPRPT.
        let trail0 = simulate(&cfg("trail:0", 0.8, "weibull", "exp", 100_000)).unwrap();
        let spjf = simulate(&cfg("spjf", 0.8, "weibull", "exp", 100_000)).unwrap();
        assert_eq!(trail0.mean_response_time, spjf.mean_response_time);
        assert_eq!(trail0.preemptions, 0);
        let trail1 = simulate(&cfg("trail:1", 0.8, "weibull", "exp", 100_000)).unwrap();
        assert_eq!(trail1.mean_response_time, a.mean_response_time);
        assert_eq!(trail1.preemptions, a.preemptions);
    }

    #[test]
    fn test_preemption_counters() {
        let run = |p: &str| simulate(&cfg(p, 0.8, "exp", "exp", 200_000)).unwrap();
        for p in ["fcfs", "sjf", "spjf", "onebit-np:1"] {
            let o = run(p);
            assert_eq!(o.preemptions + o.preemptions_refused, 0, "{p}: {o:?}");
        }
        for p in [
            "sprpt",
            "srpt",
            "pspjf",
            "onebit:1",
            "memory-time",
            "trail:0.5",
        ] {
            assert!(run(p).preemptions > 1000, "{p}");
        }
        let trail = run("trail:0.5");
        assert!(trail.preemptions_refused > 1000, "{trail:?}");
        assert_eq!(run("sprpt").preemptions_refused, 0);
        let mlfq = run("mlfq");
        assert!(
            mlfq.preemptions > 0 && mlfq.demotion_preemptions > 0,
            "{mlfq:?}"
        );
    }

    /// The extra policies run and land where theory puts them.
    #[test]
    fn test_policies_without_closed_forms() {
        let run = |p: &str, service: &str| {
            let r = report(&cfg(p, 0.8, service, "uniform:0.5", 1_000_000)).unwrap();
            assert_eq!(r.analytic_mean_response_time, None, "{p}");
            assert_eq!(r.relative_error, None, "{p}");
            r.mean_response_time
        };
        // One-bit at about the median and memory-time use the predictions: between SRPT (2.35)
        // and FCFS (5) at load 0.8 with exponential service.
        for p in ["onebit:0.7", "onebit-np:0.7", "memory-time"] {
            let t = run(p, "exp");
            assert!(t > 2.35 && t < 4.5, "{p}: {t}");
        }
        // MLFQ is size-blind: with exponential (memoryless) service every blind work-conserving
        // policy has FCFS's mean, 5. With the Weibull's decreasing hazard rate it favours young
        // jobs and beats FCFS (13) by far.
        let t = run("mlfq", "exp");
        assert!((t - 5.0).abs() < 0.2, "mlfq exp: {t}");
        let t = run("mlfq", "weibull");
        assert!(t < 6.0, "mlfq weibull: {t}");
    }

    #[test]
    fn test_heap_growth_does_not_change_the_run() {
        // FCFS at load 0.99 with heavy-tailed sizes queues hundreds of jobs: from capacity 1
        // the heap doubles ten times.
        let c = cfg("fcfs", 0.99, "weibull", "exp", 200_000);
        let small = simulate_with_capacity(&c, 1, None).unwrap();
        assert!(small.max_in_system > 512, "{small:?}");
        assert_eq!(small, simulate(&c).unwrap());
        assert_eq!(small, simulate_with_capacity(&c, 1 << 20, None).unwrap());
    }

    #[test]
    fn test_report_json_field_names() {
        let r = report(&cfg("mlfq", 0.5, "exp", "none", 1000)).unwrap();
        let v = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "analytic_mean_response_time",
                "ci95_half_width",
                "jobs",
                "load",
                "mean_response_time",
                "policy",
                "prediction",
                "relative_error",
                "service",
            ]
        );
        assert!(v["analytic_mean_response_time"].is_null());
        assert_eq!(v["policy"], "mlfq:1:2:8");
        assert_eq!(v["prediction"], "none");
        let t = report(&cfg("trail:0.8", 0.5, "exp", "exp", 1000)).unwrap();
        assert!((t.analytic_mean_response_time.unwrap() - 1.6616).abs() < 1e-3);
    }

    #[test]
    fn test_one_million_jobs_is_fast() {
        let c = cfg("sprpt", 0.8, "exp", "exp", 1_000_000);
        let t = Instant::now();
        simulate(&c).unwrap();
        let dt = t.elapsed();
        println!("10^6 jobs of sprpt at load 0.8: {dt:.2?}");
        // Generous: about 0.2 s in release; this guards against accidental quadratic work.
        assert!(dt.as_secs_f64() < 5.0, "{dt:?}");
    }

    #[test]
    fn test_validation_errors() {
        let ok = cfg("sprpt", 0.5, "exp", "exp", 1000);
        assert_eq!(ok.validate(), Ok(()));
        let err = |c: Mg1Config| simulate(&c).unwrap_err();
        assert_eq!(
            err(Mg1Config {
                load: 1.0,
                ..ok.clone()
            }),
            Mg1Error::InvalidLoad(1.0)
        );
        assert_eq!(
            err(Mg1Config {
                load: 0.0,
                ..ok.clone()
            }),
            Mg1Error::InvalidLoad(0.0)
        );
        assert!(matches!(
            err(Mg1Config {
                load: f64::NAN,
                ..ok.clone()
            }),
            Mg1Error::InvalidLoad(_)
        ));
        assert_eq!(
            err(Mg1Config {
                jobs: 0,
                warmup_jobs: 0,
                ..ok.clone()
            }),
            Mg1Error::NoJobs
        );
        assert_eq!(
            err(Mg1Config {
                warmup_jobs: 1000,
                ..ok.clone()
            }),
            Mg1Error::WarmupTooLong {
                warmup_jobs: 1000,
                jobs: 1000
            }
        );
        let none = Mg1Config {
            prediction: PredictionModel::None,
            ..ok.clone()
        };
        let e = err(none.clone());
        assert_eq!(e, Mg1Error::NeedsPredictions("sprpt".into()));
        assert!(e.to_string().contains("prediction model `none`"), "{e}");
        // Policies that rank by true sizes, or not by size at all, run without predictions.
        for p in ["fcfs", "sjf", "srpt", "mlfq"] {
            assert!(
                simulate(&Mg1Config {
                    policy: p.parse().unwrap(),
                    ..none.clone()
                })
                .is_ok()
            );
        }
        let e = "lifo".parse::<Mg1Policy>().unwrap_err();
        assert_eq!(e, Mg1Error::UnknownPolicy("lifo".into()));
        assert!(e.to_string().contains(POLICY_NAMES), "{e}");
        assert!(
            "las"
                .parse::<Mg1Policy>()
                .unwrap_err()
                .to_string()
                .contains("share the server")
        );
        for bad in ["trail:x", "onebit", "mlfq:1:2", "mlfq:1:2:x", "fcfs:1"] {
            assert!(bad.parse::<Mg1Policy>().is_err(), "{bad}");
        }
        let bad_params = [
            "trail:-0.5",
            "trail:nan",
            "onebit:-1",
            "onebit:inf",
            "mlfq:0.5:2:4",
            "mlfq:1:2:0",
        ];
        for bad in bad_params {
            let c = Mg1Config {
                policy: bad.parse().unwrap(),
                ..ok.clone()
            };
            assert!(
                matches!(err(c), Mg1Error::InvalidPolicyParameter { .. }),
                "{bad}"
            );
        }
        let c = Mg1Config {
            service: ServiceDist::LogNormal { sigma: -1.0 },
            ..ok.clone()
        };
        assert!(matches!(err(c), Mg1Error::InvalidService(_)));
        let c = Mg1Config {
            prediction: PredictionModel::Uniform { alpha: 2.0 },
            ..ok.clone()
        };
        assert!(matches!(err(c), Mg1Error::InvalidPrediction(_)));
        // Parsing round-trips through Display.
        for p in [
            "fcfs",
            "sjf",
            "spjf",
            "pspjf",
            "srpt",
            "sprpt",
            "trail:0.5",
            "onebit:2",
            "onebit-np:2",
            "memory-time",
            "mlfq:2:3:4",
        ] {
            assert_eq!(p.parse::<Mg1Policy>().unwrap().to_string(), p);
        }
        assert_eq!(
            "trail".parse::<Mg1Policy>().unwrap(),
            Mg1Policy::Trail { cutoff: 0.8 }
        );
    }
}
