//! Writing a cluster run: the cluster row and one row per replica, with `simulate`'s field
//! names ([`crate::report::SUMMARY_FIELDS`]) plus the cluster's own.
//!
//! - JSON: one object: the [`RunLabel`] fields, `router`, `replicas`, `replica` (`null` for
//!   the cluster), the summary fields, [`CLUSTER_FIELDS`], and `per_replica`: an array of
//!   objects with `replica`, `requests_routed`, `tokens_routed` and the summary fields.
//! - CSV: the header [`csv_header`], a cluster row (`replica` = `all`) and one row per
//!   replica; the cluster-only columns are empty on replica rows.
//! - Table: the per-replica and cluster rows as `augur demo`'s comparison table, then the
//!   cluster's imbalance and prefix hit rate.
//! - [`write_sweep_csv`]: `augur sweep --replicas`'s sweep.csv, one cluster row per run
//!   (header [`sweep_csv_header`]).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::{ClusterOutcome, ClusterStats};
use crate::metrics::Summary;
use crate::report::{self, Format, LabeledSummary, RunLabel, SUMMARY_FIELDS, reasons_cell};
use crate::sim::tenants::TenantReport;

/// The cluster-wide statistics, the last columns of a cluster row and of a sweep row.
pub const STATS_FIELDS: [&str; 3] = [
    "load_imbalance_requests",
    "load_imbalance_tokens",
    "cluster_prefix_hit_rate",
];

/// The cluster-only columns, after the summary fields: what was routed, then
/// [`STATS_FIELDS`].
pub const CLUSTER_FIELDS: [&str; 5] = [
    "requests_routed",
    "tokens_routed",
    STATS_FIELDS[0],
    STATS_FIELDS[1],
    STATS_FIELDS[2],
];

/// The cells of [`STATS_FIELDS`].
fn stats_cells(st: &ClusterStats) -> (f64, f64, f64) {
    (
        st.load_imbalance_requests,
        st.load_imbalance_tokens,
        st.cluster_prefix_hit_rate,
    )
}

/// The CSV header: label fields, `router`, `replicas`, `replica`, summary fields, cluster
/// fields.
pub fn csv_header() -> Vec<&'static str> {
    let mut h: Vec<&str> = RunLabel::FIELDS.to_vec();
    h.extend(["router", "replicas", "replica"]);
    h.extend(SUMMARY_FIELDS);
    h.extend(CLUSTER_FIELDS);
    h
}

/// The header of [`write_sweep_csv`]: label fields, `router`, `replicas`, summary fields,
/// [`STATS_FIELDS`] (the cluster rows of [`csv_header`] without `replica` and the routed
/// totals, which are the trace's).
pub fn sweep_csv_header() -> Vec<&'static str> {
    let mut h: Vec<&str> = RunLabel::FIELDS.to_vec();
    h.extend(["router", "replicas"]);
    h.extend(SUMMARY_FIELDS);
    h.extend(STATS_FIELDS);
    h
}

/// Writes one CSV row per cluster run (header [`sweep_csv_header`], written even when `rows`
/// is empty; empty cells for `None`).
pub fn write_sweep_csv(
    path: impl AsRef<Path>,
    rows: &[(RunLabel, Summary, ClusterStats)],
) -> anyhow::Result<()> {
    let path = path.as_ref();
    let write = || -> anyhow::Result<()> {
        let mut wtr = csv::WriterBuilder::new()
            .has_headers(false)
            .from_path(path)?;
        wtr.write_record(sweep_csv_header())?;
        for (label, s, st) in rows {
            wtr.serialize((
                label,
                &st.router,
                st.replicas,
                s,
                reasons_cell(s),
                stats_cells(st),
            ))?;
        }
        wtr.flush()?;
        Ok(())
    };
    write().with_context(|| format!("writing the sweep summary to {}", path.display()))
}

#[derive(Serialize)]
struct ReplicaJson {
    replica: usize,
    requests_routed: u64,
    tokens_routed: u64,
    #[serde(flatten)]
    summary: LabeledSummaryNoLabel,
}

#[derive(Serialize)]
struct LabeledSummaryNoLabel {
    #[serde(flatten)]
    summary: crate::metrics::Summary,
    requests_rejected_by_reason: std::collections::BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct ClusterJson<'a> {
    #[serde(flatten)]
    run: LabeledSummary,
    router: &'a str,
    replicas: u64,
    replica: Option<usize>,
    load_imbalance_requests: f64,
    load_imbalance_tokens: f64,
    cluster_prefix_hit_rate: f64,
    kv_events: u64,
    per_replica: Vec<ReplicaJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenants: Option<&'a TenantReport>,
}

/// Writes a cluster run in `format`, with the cluster's per-tenant service when given (JSON:
/// a `tenants` key; table: lines after it; CSV: left out).
pub fn write_cluster(
    w: &mut impl Write,
    label: &RunLabel,
    o: &ClusterOutcome,
    tenants: Option<&TenantReport>,
    format: Format,
) -> anyhow::Result<()> {
    let st = &o.stats;
    match format {
        Format::Json => {
            let record = ClusterJson {
                run: LabeledSummary::new(label, &o.summary),
                router: &st.router,
                replicas: st.replicas,
                replica: None,
                load_imbalance_requests: st.load_imbalance_requests,
                load_imbalance_tokens: st.load_imbalance_tokens,
                cluster_prefix_hit_rate: st.cluster_prefix_hit_rate,
                kv_events: st.kv_events,
                per_replica: o
                    .replicas
                    .iter()
                    .map(|r| ReplicaJson {
                        replica: r.replica,
                        requests_routed: r.requests_routed,
                        tokens_routed: r.tokens_routed,
                        summary: LabeledSummaryNoLabel {
                            summary: r.summary.clone(),
                            requests_rejected_by_reason: r
                                .summary
                                .requests_rejected_by_reason
                                .clone(),
                        },
                    })
                    .collect(),
                tenants,
            };
            serde_json::to_writer(&mut *w, &record)?;
            writeln!(w)?;
        }
        Format::Csv => {
            let mut wtr = csv::WriterBuilder::new().has_headers(false).from_writer(w);
            wtr.write_record(csv_header())?;
            let routed: u64 = o.replicas.iter().map(|r| r.requests_routed).sum();
            let tokens: u64 = o.replicas.iter().map(|r| r.tokens_routed).sum();
            wtr.serialize((
                label,
                &st.router,
                st.replicas,
                "all",
                &o.summary,
                reasons_cell(&o.summary),
                routed,
                tokens,
                stats_cells(st),
            ))?;
            for r in &o.replicas {
                wtr.serialize((
                    label,
                    &st.router,
                    st.replicas,
                    r.replica.to_string(),
                    &r.summary,
                    reasons_cell(&r.summary),
                    r.requests_routed,
                    r.tokens_routed,
                    None::<f64>,
                    None::<f64>,
                    None::<f64>,
                ))?;
            }
            wtr.flush()?;
        }
        Format::Table => {
            let mut rows: Vec<(RunLabel, crate::metrics::Summary)> = o
                .replicas
                .iter()
                .map(|r| {
                    let mut l = label.clone();
                    l.policy = format!("replica {}", r.replica);
                    (l, r.summary.clone())
                })
                .collect();
            let mut l = label.clone();
            l.policy = "cluster".into();
            rows.push((l, o.summary.clone()));
            writeln!(
                w,
                "{} on {} replicas ({} / {}), trace {}",
                st.router, st.replicas, label.policy, label.predictor, label.trace
            )?;
            report::write_comparison_table(w, &rows)?;
            writeln!(
                w,
                "load imbalance (max/mean routed): {:.3} by tokens, {:.3} by requests; \
                 cluster prefix hit rate {:.1}%; {} KV events delivered to the router",
                st.load_imbalance_tokens,
                st.load_imbalance_requests,
                st.cluster_prefix_hit_rate * 100.0,
                st.kv_events
            )?;
            if let Some(t) = tenants {
                t.write_table(w)?;
            }
        }
    }
    Ok(())
}
