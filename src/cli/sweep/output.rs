//! What a sweep writes under `--out`, and the table it prints.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use augur::cluster::report as cluster_report;
use augur::metrics::{Summary, latency_cdf};
use augur::report::{self, LinePoint, Metric, RunLabel, compact};

use super::plan::{Outcome, Plan};
use crate::cli::{CliResult, Failure};

/// Each distinct rate scale of the runs (by its file-name part: `1`, `0.5`, `1e300`), with
/// that part, in order of first use.
fn rate_tags(plan: &Plan) -> Vec<(f64, String)> {
    let mut tags: Vec<(f64, String)> = Vec::new();
    for r in &plan.runs {
        let tag = compact(r.label.rate_scale);
        if tags.iter().all(|(_, t)| *t != tag) {
            tags.push((r.label.rate_scale, tag));
        }
    }
    tags
}

/// Creates the output directory and every output file (empty), so that a name the file
/// system refuses fails before the runs rather than after them.
pub fn create_files(out: &Path, plan: &Plan) -> CliResult {
    std::fs::create_dir_all(out)
        .with_context(|| format!("creating the output directory {}", out.display()))?;
    let mut names = vec![
        "sweep.csv".to_owned(),
        "latency_mean.svg".to_owned(),
        "latency_p99.svg".to_owned(),
    ];
    if plan.clustered {
        names.push("latency_vs_replicas.svg".to_owned());
        names.push("latency_p99_vs_replicas.svg".to_owned());
    }
    names.extend(rate_tags(plan).iter().map(|(_, t)| format!("cdf_{t}.svg")));
    for name in &names {
        let path = out.join(name);
        std::fs::File::create(&path)
            .with_context(|| format!("creating the output file {}", path.display()))
            .map_err(Failure::Usage)?;
    }
    Ok(())
}

/// Writes sweep.csv and the plots under `out` and prints the comparison table.
pub fn write(out: &Path, plan: &Plan, outcomes: &[Outcome]) -> CliResult {
    let rows: Vec<(RunLabel, Summary)> = plan
        .runs
        .iter()
        .zip(outcomes)
        .map(|(r, o)| (r.label.clone(), o.summary.clone()))
        .collect();
    let csv = out.join("sweep.csv");
    if plan.clustered {
        let stats: Vec<_> = rows
            .iter()
            .zip(outcomes)
            .filter_map(|((l, s), o)| Some((l.clone(), s.clone(), o.stats.clone()?)))
            .collect();
        cluster_report::write_sweep_csv(csv, &stats)?;
    } else {
        report::write_sweep_csv(csv, &rows)?;
    }
    let vs_load: Vec<LinePoint<'_>> = plan
        .runs
        .iter()
        .zip(&rows)
        .map(|(r, (l, s))| LinePoint {
            line: &r.name,
            x: l.rate_scale,
            summary: s,
        })
        .collect();
    report::plot_latency_vs_load(out.join("latency_mean.svg"), &vs_load, Metric::MeanE2e)?;
    report::plot_latency_vs_load(out.join("latency_p99.svg"), &vs_load, Metric::P99E2e)?;
    if plan.clustered {
        let vs_replicas: Vec<LinePoint<'_>> = plan
            .runs
            .iter()
            .zip(&rows)
            .filter_map(|(r, (_, s))| {
                let (cfg, line) = r.cluster()?;
                Some(LinePoint {
                    line,
                    x: cfg.replicas as f64,
                    summary: s,
                })
            })
            .collect();
        for (file, metric) in [
            ("latency_vs_replicas.svg", Metric::MeanE2e),
            ("latency_p99_vs_replicas.svg", Metric::P99E2e),
        ] {
            report::plot_latency_vs_replicas(out.join(file), &vs_replicas, metric)?;
        }
    }
    for (rate, tag) in rate_tags(plan) {
        let series: Vec<(String, Vec<(f64, f64)>)> = plan
            .runs
            .iter()
            .zip(outcomes)
            .filter(|(r, _)| r.label.rate_scale == rate)
            .map(|(r, o)| (r.name.clone(), latency_cdf(&o.records)))
            .collect();
        report::plot_latency_cdfs(out.join(format!("cdf_{tag}.svg")), &series)?;
    }
    let lead: Vec<(&str, Vec<String>)> = if plan.clustered {
        let clusters: Vec<_> = plan.runs.iter().filter_map(|r| r.cluster()).collect();
        vec![
            (
                "replicas",
                clusters
                    .iter()
                    .map(|(c, _)| c.replicas.to_string())
                    .collect(),
            ),
            (
                "router",
                clusters.iter().map(|(c, _)| c.router.to_string()).collect(),
            ),
        ]
    } else {
        Vec::new()
    };
    let mut w = std::io::stdout().lock();
    writeln!(
        w,
        "{} runs of {} ({} requests); results in {}",
        rows.len(),
        plan.setup.trace.name,
        plan.setup.trace.len(),
        out.display()
    )?;
    report::write_comparison_table_with(&mut w, &lead, &rows).map_err(Failure::Runtime)?;
    w.flush()?;
    Ok(())
}
