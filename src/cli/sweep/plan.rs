//! The runs of a sweep: every combination of the flags' axes, with its label, rate-scaled
//! trace and configuration; and running them.

use anyhow::anyhow;
use augur::cluster::{ClusterConfig, ClusterStats, RouterSpec, simulate_cluster};
use augur::metrics::{RequestRecord, Summary};
use augur::report::{RunLabel, compact};
use augur::sim::{SimConfig, simulate};
use augur::trace::Trace;

use super::SweepArgs;
use crate::cli::runner::run_each;
use crate::cli::setup::{Setup, policy_label, scaled};
use crate::cli::{CliResult, usage};

/// How a run is simulated.
pub enum Engines {
    /// One engine, through `simulate`.
    One(SimConfig),
    /// A cluster, through `simulate_cluster`.
    Cluster {
        /// The cluster.
        cfg: ClusterConfig,
        /// The run's line in the vs-replicas plots.
        line: String,
    },
}

/// One run of the sweep.
pub struct Run {
    /// Its label in the CSV and the table.
    pub label: RunLabel,
    /// Its name in the vs-load plots and the CDFs: `policy / predictor`, then
    /// `/ N × router` for a cluster.
    pub name: String,
    /// What runs it.
    pub engines: Engines,
    /// Its trace: `[row][point]` of [`Plan::traces`].
    trace: (usize, usize),
}

impl Run {
    /// A cluster run's configuration and line in the vs-replicas plots.
    pub fn cluster(&self) -> Option<(&ClusterConfig, &str)> {
        match &self.engines {
            Engines::One(_) => None,
            Engines::Cluster { cfg, line } => Some((cfg, line)),
        }
    }
}

/// What a run produced.
pub struct Outcome {
    /// Its summary (the cluster's for a cluster run).
    pub summary: Summary,
    /// One record per request.
    pub records: Vec<RequestRecord>,
    /// A cluster run's own statistics.
    pub stats: Option<ClusterStats>,
}

/// Every run of a sweep, in the order of the CSV rows and the table: rate scale (or load),
/// then replicas, router, policy, predictor.
pub struct Plan {
    /// The trace as read, the model and the engine settings.
    pub setup: Setup,
    /// Whether the runs are cluster runs (`--replicas`).
    pub clustered: bool,
    /// The runs.
    pub runs: Vec<Run>,
    /// The rate-scaled traces, `[row][point]` as the rate scales of [`rate_grid`].
    traces: Vec<Vec<Trace>>,
}

impl Plan {
    /// The runs that `a` asks for, `threads` at a time (for the memory estimate).
    pub fn new(a: &SweepArgs, threads: usize) -> CliResult<Plan> {
        let fleets = fleets(a)?;
        let points = if a.loads.is_empty() {
            a.rate_scales.len()
        } else {
            a.loads.len()
        };
        let (counts, routers): (Vec<usize>, Vec<Option<RouterSpec>>) = match &fleets {
            None => (vec![1], vec![None]),
            Some((counts, routers)) => {
                (counts.clone(), routers.iter().copied().map(Some).collect())
            }
        };
        let total = a.policies.len() * points * a.predictors.len() * counts.len() * routers.len();
        let concurrent = threads.min(total.max(1));
        // Each run holds one engine per replica.
        let engines = concurrent * counts.iter().copied().max().unwrap_or(1);
        let copies = if a.loads.is_empty() {
            points
        } else {
            points * counts.len()
        };
        let setup = Setup::new(&a.common, copies, engines)?;
        let rates = rate_grid(a, &setup, &counts)?;
        if let (Some(&name), Some(&predictor)) = (a.policies.first(), a.predictors.first()) {
            let probe = setup.sim_config(setup.policy(name), predictor, &setup.trace)?;
            setup.check_memory(&probe, copies, engines)?;
        }
        let traces = rates
            .iter()
            .map(|row| {
                row.iter()
                    .map(|&x| scaled(&setup.trace, x))
                    .collect::<CliResult<Vec<Trace>>>()
            })
            .collect::<CliResult<Vec<_>>>()?;
        let mut runs = Vec::with_capacity(total);
        for point in 0..points {
            for (c, &replicas) in counts.iter().enumerate() {
                let row = if a.loads.is_empty() { 0 } else { c };
                for &router in &routers {
                    for &policy in &a.policies {
                        for &predictor in &a.predictors {
                            let label = RunLabel {
                                policy: policy_label(policy, &setup.policy),
                                predictor: predictor.to_string(),
                                rate_scale: rates[row][point],
                                trace: setup.trace.name.clone(),
                            };
                            let sim = setup.sim_config(
                                setup.policy(policy),
                                predictor,
                                &traces[row][point],
                            )?;
                            let mut name = format!("{} / {}", label.policy, label.predictor);
                            let engines = match router {
                                None => Engines::One(sim),
                                Some(router) => {
                                    name.push_str(&format!(" / {replicas} × {router}"));
                                    Engines::Cluster {
                                        line: replicas_line(a, &label, point, router),
                                        cfg: ClusterConfig {
                                            sim,
                                            replicas,
                                            router,
                                            seed: setup.seed,
                                        },
                                    }
                                }
                            };
                            runs.push(Run {
                                label,
                                name,
                                engines,
                                trace: (row, point),
                            });
                        }
                    }
                }
            }
        }
        Ok(Plan {
            setup,
            clustered: fleets.is_some(),
            runs,
            traces,
        })
    }

    /// Runs every run, `threads` at a time, with a progress bar on a terminal; the outcomes
    /// in run order, or the first failure.
    pub fn run(&self, threads: usize) -> CliResult<Vec<Outcome>> {
        run_each(
            &self.runs,
            threads,
            true,
            |r| r.name.clone(),
            |r| {
                let trace = &self.traces[r.trace.0][r.trace.1];
                let outcome = match &r.engines {
                    Engines::One(cfg) => simulate(trace, cfg).map(|o| Outcome {
                        summary: o.summary,
                        records: o.records,
                        stats: None,
                    }),
                    Engines::Cluster { cfg, .. } => simulate_cluster(trace, cfg).map(|o| Outcome {
                        summary: o.summary,
                        records: o.records,
                        stats: Some(o.stats),
                    }),
                };
                outcome.map_err(|e| {
                    e.context(format!(
                        "simulating {} at rate x{}",
                        r.name, r.label.rate_scale
                    ))
                })
            },
        )
    }
}

/// `--replicas` and `--routers` (default round-robin; the router parameters applied), or
/// `None` without `--replicas`, where a router flag is a usage error.
fn fleets(a: &SweepArgs) -> CliResult<Option<(Vec<usize>, Vec<RouterSpec>)>> {
    if a.replicas.is_empty() {
        let given = [
            ("--routers", !a.routers.is_empty()),
            ("--overlap-weight", a.router_opts.overlap_weight.is_some()),
            ("--weights", a.router_opts.weights.is_some()),
        ];
        return match given.iter().find(|(_, g)| *g) {
            Some((flag, _)) => Err(usage(anyhow!(
                "{flag} needs --replicas: without it every run is one engine, with no router"
            ))),
            None => Ok(None),
        };
    }
    let routers = if a.routers.is_empty() {
        vec![RouterSpec::RoundRobin]
    } else {
        a.routers.clone()
    };
    let routers = routers
        .into_iter()
        .map(|r| a.router_opts.apply(r))
        .collect();
    Ok(Some((a.replicas.clone(), routers)))
}

/// The rate scales, `[row][point]`: --rate-scales as one row for every replica count, or one
/// row per replica count of `counts`, each point the rate scale at which every replica is
/// offered that point of --loads (the mapping printed on stderr).
fn rate_grid(a: &SweepArgs, setup: &Setup, counts: &[usize]) -> CliResult<Vec<Vec<f64>>> {
    if a.loads.is_empty() {
        return Ok(vec![a.rate_scales.clone()]);
    }
    counts
        .iter()
        .map(|&n| {
            a.loads
                .iter()
                .map(|&rho| {
                    let l = setup.load_scale_over(rho, n)?;
                    eprintln!("{l}");
                    Ok(l.rate_scale)
                })
                .collect()
        })
        .collect()
}

/// A cluster run's line in the vs-replicas plots: its router, then whichever of policy,
/// predictor and rate scale (or load: the rate scale differs with the replicas) the sweep has
/// several of.
fn replicas_line(a: &SweepArgs, label: &RunLabel, point: usize, router: RouterSpec) -> String {
    let mut parts = vec![router.to_string()];
    if a.policies.len() > 1 {
        parts.push(label.policy.clone());
    }
    if a.predictors.len() > 1 {
        parts.push(label.predictor.clone());
    }
    if a.loads.len() > 1 {
        parts.push(format!("load {}", compact(a.loads[point])));
    } else if a.rate_scales.len() > 1 && a.loads.is_empty() {
        parts.push(format!("x{}", compact(label.rate_scale)));
    }
    parts.join(" / ")
}
