//! `augur cluster`: one trace over N replicas behind a router.

use std::io::Write;
use std::path::PathBuf;

use augur::cluster::router::Weights;
use augur::cluster::{
    ClusterConfig, MAX_REPLICAS, RouterSpec, report as cluster_report, simulate_cluster,
};
use augur::predict::PredictorSpec;
use augur::report::{self, Format, RunLabel};
use augur::sim::tenants;
use clap::Args;

use super::options::{CommonOpts, PolicyName, parse_load, parse_predictor, parse_rate_scale};
use super::setup::{Setup, policy_label, scaled};
use super::{CliResult, Failure};

/// Parses `--replicas`: an integer in 1..=MAX_REPLICAS.
pub fn parse_replicas(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_REPLICAS).contains(&n) => Ok(n),
        _ => Err(format!("`{s}`: must be an integer in 1..={MAX_REPLICAS}")),
    }
}

/// Parses `--overlap-weight`: finite and ≥ 0.
pub fn parse_overlap_weight(s: &str) -> Result<f64, String> {
    super::options::parse_nonneg(s)
}

/// Router flags shared by `cluster` and `sweep`.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Router")]
pub struct RouterOpts {
    /// kv-prefix: weight of the new prefill blocks against the active blocks (Dynamo's
    /// overlap_score_weight) [default: 1].
    #[arg(long, value_name = "W", value_parser = parse_overlap_weight)]
    pub overlap_weight: Option<f64>,
    /// weighted: scorer weights, `queue=W,kv=W,prefix=W` (any subset; each ≥ 0, not all 0)
    /// [default: queue=1,kv=1,prefix=3].
    #[arg(long, value_name = "SPEC", value_parser = str::parse::<Weights>)]
    pub weights: Option<Weights>,
}

impl RouterOpts {
    /// `spec` with these parameters.
    pub fn apply(&self, spec: RouterSpec) -> RouterSpec {
        spec.with_params(self.overlap_weight, self.weights)
    }
}

/// Replay a trace over N replicas (each a real augur engine) behind a router
///
/// Routers: round-robin, least-outstanding, least-kv, power-of-two (seeded by --seed),
/// kv-prefix (Dynamo's KV router: overlap weight × new prefill blocks + active blocks, the
/// prefix index built only from the replicas' KV events), weighted (llm-d scorers: queue, KV
/// utilisation, prefix), predicted-work (augur: where the request is predicted to finish
/// soonest, from the replicas' predicted backlog and prefix overlap).
///
/// The JSON output has simulate's keys for the cluster plus router, replicas, replica (null),
/// load_imbalance_requests, load_imbalance_tokens (max/mean routed per replica),
/// cluster_prefix_hit_rate, kv_events, per_replica (one object per replica with replica,
/// requests_routed, tokens_routed and the summary keys) and, when the trace has tenants
/// (--tenants or a tenant column), tenants as in simulate. CSV: a cluster row (replica = all)
/// and one row per replica.
///
/// Example:
///   augur cluster --trace ../shared/traces/mooncake_fast25_conversation_trace.jsonl
///   --replicas 16 --router predicted-work --policy sprpt
#[derive(Args, Debug)]
#[command(verbatim_doc_comment, allow_negative_numbers = true)]
pub struct ClusterArgs {
    /// Replicas (1..=128).
    #[arg(long, value_name = "N", default_value = "4", value_parser = parse_replicas)]
    pub replicas: usize,
    /// The router (see above).
    #[arg(long, value_name = "ROUTER", default_value = "round-robin",
          value_parser = str::parse::<RouterSpec>)]
    pub router: RouterSpec,
    /// Router parameters.
    #[command(flatten)]
    pub router_opts: RouterOpts,
    /// Each replica's scheduling policy [default: the config file's, else sprpt].
    #[arg(long, value_enum)]
    pub policy: Option<PolicyName>,
    /// Output-length predictor (see `augur policies`).
    #[arg(long, value_name = "SPEC", default_value = "oracle", value_parser = parse_predictor)]
    pub predictor: PredictorSpec,
    /// Multiply the trace's arrival rate by X (> 0).
    #[arg(long, value_name = "X", default_value = "1", value_parser = parse_rate_scale)]
    pub rate_scale: f64,
    /// Scale arrivals so that each replica is offered RHO (> 0) of its capacity under the cost
    /// model: the cluster gets replicas × RHO of one replica's (see README, "Load"); prints the
    /// rate scale it used on stderr. Conflicts with --rate-scale.
    #[arg(long, value_name = "RHO", value_parser = parse_load, conflicts_with = "rate_scale")]
    pub load: Option<f64>,
    /// Output format: table, json or csv.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Also write one CSV row per request to FILE.
    #[arg(long, value_name = "FILE")]
    pub requests_csv: Option<PathBuf>,
    /// Trace, model and engine settings (per replica).
    #[command(flatten)]
    pub common: CommonOpts,
}

/// Runs `augur cluster`.
pub fn run(a: &ClusterArgs) -> CliResult {
    let copies = usize::from(a.rate_scale != 1.0 || a.load.is_some());
    let setup = Setup::new(&a.common, copies, a.replicas)?;
    let name = a.policy.or(setup.policy.name).unwrap_or(PolicyName::Sprpt);
    let probe = setup.sim_config(setup.policy(name), a.predictor, &setup.trace)?;
    setup.check_memory(&probe, copies, a.replicas)?;
    let rate_scale = match a.load {
        Some(rho) => {
            let l = setup.load_scale_over(rho, a.replicas)?;
            eprintln!("{l}");
            l.rate_scale
        }
        None => a.rate_scale,
    };
    let trace = scaled(&setup.trace, rate_scale)?;
    let sim = setup.sim_config(setup.policy(name), a.predictor, &trace)?;
    let cfg = ClusterConfig {
        sim,
        replicas: a.replicas,
        router: a.router_opts.apply(a.router),
        seed: setup.seed,
    };
    let label = RunLabel {
        policy: policy_label(name, &setup.policy),
        predictor: a.predictor.to_string(),
        rate_scale,
        trace: trace.name.clone(),
    };
    let outcome = simulate_cluster(&trace, &cfg).map_err(Failure::Runtime)?;
    if let Some(path) = &a.requests_csv {
        report::write_requests_csv(path, &outcome.records)?;
    }
    let mut out = std::io::stdout().lock();
    let tenants = setup
        .tenants
        .as_deref()
        .map(|source| tenants::service(&trace, &outcome.records, source));
    cluster_report::write_cluster(&mut out, &label, &outcome, tenants.as_ref(), a.format)
        .map_err(Failure::Runtime)?;
    out.flush()?;
    Ok(())
}
