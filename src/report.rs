//! Reporting a run's [`Summary`]: text tables, JSON, CSV and SVG plots.
//!
//! - [`write_summary`] writes one run as a [`Format::Table`] (an aligned block for people),
//!   [`Format::Json`] (one object per line, the [`RunLabel`] fields and the [`Summary`] fields
//!   side by side, see [`LabeledSummary`]) or [`Format::Csv`] (a header and one row, same
//!   names).
//! - [`write_comparison_table`] writes several runs as one aligned table, the output of
//!   `augur demo` ([`write_comparison_table_with`]: with label columns of the caller's first).
//! - [`write_requests_csv`] and [`write_sweep_csv`] write per-request and per-run CSV files.
//! - [`plot_latency_vs_load`], [`plot_latency_vs_replicas`] and [`plot_latency_cdfs`] draw SVG
//!   line charts.
//!
//! The column names of JSON and CSV output are [`RunLabel::FIELDS`] followed by
//! [`SUMMARY_FIELDS`]; they are a stable interface.
//!
//! Plots use plotters' SVG backend without its `ttf` feature: the text is written as SVG
//! `<text>` elements that the viewer renders with its own fonts, and plotters lays it out with
//! a crude width estimate, so long legend entries may fit their box loosely.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::metrics::{RequestRecord, Summary};

/// The field names of a [`Summary`], in order: its JSON keys and CSV columns.
pub const SUMMARY_FIELDS: [&str; 34] = [
    "requests_total",
    "requests_completed",
    "requests_rejected",
    "mean_e2e_s",
    "p50_e2e_s",
    "p90_e2e_s",
    "p99_e2e_s",
    "mean_ttft_s",
    "p99_ttft_s",
    "mean_tpot_s",
    "p99_tpot_s",
    "throughput_output_tokens_per_s",
    "preemptions_recompute",
    "preemptions_swap",
    "preemptions_keep",
    "recomputed_tokens",
    "prefix_hit_rate",
    "kv_utilization_mean",
    "simulated_s",
    "wall_s",
    "goodput_req_per_s",
    "slo_attainment",
    "mfu_busy",
    "mfu",
    "hbm_bw_util_busy",
    "hbm_bw_util",
    "busy_fraction",
    "compute_bound_steps",
    "memory_bound_steps",
    "overhead_bound_steps",
    "compute_bound_time",
    "memory_bound_time",
    "overhead_bound_time",
    "requests_rejected_by_reason",
];

/// The column names of [`write_requests_csv`]: the fields of a [`RequestRecord`], in order.
pub const REQUEST_FIELDS: [&str; 8] = [
    "id",
    "arrival_s",
    "prompt_tokens",
    "output_tokens",
    "first_token_s",
    "finish_s",
    "rejected",
    "preemptions",
];

/// What a run was: the configuration that tells runs apart in reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunLabel {
    /// The scheduling policy.
    pub policy: String,
    /// The output-length predictor.
    pub predictor: String,
    /// The factor applied to the trace's arrival rate (1 = as recorded).
    pub rate_scale: f64,
    /// The trace (a file name or a synthetic workload spec).
    pub trace: String,
}

impl RunLabel {
    /// The field names of a `RunLabel`, in order: its JSON keys and CSV columns.
    pub const FIELDS: [&'static str; 4] = ["policy", "predictor", "rate_scale", "trace"];
}

/// A run's label and summary in one flat record, as [`write_summary`] writes it in JSON: the
/// [`RunLabel::FIELDS`] and the [`SUMMARY_FIELDS`] at the same level. Deserialize JSON output
/// into this type to read it back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabeledSummary {
    /// The run's label.
    #[serde(flatten)]
    pub label: RunLabel,
    /// The run's summary.
    #[serde(flatten)]
    pub summary: Summary,
    /// [`Summary::requests_rejected_by_reason`], written here (the summary does not serialize
    /// it itself, so that CSV rows stay flat): an object from reason to count.
    #[serde(default)]
    pub requests_rejected_by_reason: BTreeMap<String, u64>,
}

impl LabeledSummary {
    /// The record of one run.
    pub fn new(label: &RunLabel, s: &Summary) -> Self {
        LabeledSummary {
            label: label.clone(),
            summary: s.clone(),
            requests_rejected_by_reason: s.requests_rejected_by_reason.clone(),
        }
    }

    /// The summary, with the rejection reasons put back in.
    pub fn into_summary(self) -> Summary {
        let mut s = self.summary;
        s.requests_rejected_by_reason = self.requests_rejected_by_reason;
        s
    }
}

/// The rejection reasons as one CSV cell: a JSON object (`{}` when none).
pub(crate) fn reasons_cell(s: &Summary) -> String {
    serde_json::to_string(&s.requests_rejected_by_reason).unwrap_or_default()
}

/// A string that is none of the accepted choices for a setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseChoiceError {
    what: &'static str,
    input: String,
    choices: &'static [&'static str],
}

impl fmt::Display for ParseChoiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}`; expected one of: {}",
            self.what,
            self.input,
            self.choices.join(", ")
        )
    }
}

impl std::error::Error for ParseChoiceError {}

/// Picks the choice equal (ignoring ASCII case) to `s` among `choices`.
fn parse_choice<T: Copy>(
    what: &'static str,
    s: &str,
    choices: &'static [&'static str],
    values: &[T],
) -> Result<T, ParseChoiceError> {
    let s = s.trim();
    choices
        .iter()
        .position(|c| c.eq_ignore_ascii_case(s))
        .map(|i| values[i])
        .ok_or_else(|| ParseChoiceError {
            what,
            input: s.to_owned(),
            choices,
        })
}

/// An output format for [`write_summary`]; parsed from `table`, `json` or `csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An aligned block of text for people.
    Table,
    /// One JSON object on one line.
    Json,
    /// A CSV header and one row.
    Csv,
}

impl Format {
    /// The accepted names, in the order of [`Format::ALL`].
    pub const NAMES: [&'static str; 3] = ["table", "json", "csv"];
    /// Every format.
    pub const ALL: [Format; 3] = [Format::Table, Format::Json, Format::Csv];
}

impl FromStr for Format {
    type Err = ParseChoiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_choice("output format", s, &Self::NAMES, &Self::ALL)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = Self::ALL.iter().position(|x| x == self).unwrap_or(0);
        f.write_str(Self::NAMES[i])
    }
}

/// The latency [`plot_latency_vs_load`] plots; parsed from `mean-e2e` or `p99-e2e`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// [`Summary::mean_e2e_s`].
    MeanE2e,
    /// [`Summary::p99_e2e_s`].
    P99E2e,
}

impl Metric {
    /// The accepted names, in the order of [`Metric::ALL`].
    pub const NAMES: [&'static str; 2] = ["mean-e2e", "p99-e2e"];
    /// Every metric.
    pub const ALL: [Metric; 2] = [Metric::MeanE2e, Metric::P99E2e];

    /// The metric's value in a summary, in seconds (`None` when no request completed).
    pub fn value(self, s: &Summary) -> Option<f64> {
        match self {
            Metric::MeanE2e => s.mean_e2e_s,
            Metric::P99E2e => s.p99_e2e_s,
        }
    }

    /// A human-readable name, such as "mean end-to-end latency".
    pub fn description(self) -> &'static str {
        match self {
            Metric::MeanE2e => "mean end-to-end latency",
            Metric::P99E2e => "p99 end-to-end latency",
        }
    }
}

impl FromStr for Metric {
    type Err = ParseChoiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_choice("latency metric", s, &Self::NAMES, &Self::ALL)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = Self::ALL.iter().position(|x| x == self).unwrap_or(0);
        f.write_str(Self::NAMES[i])
    }
}

// ---------------------------------------------------------------------------------------------
// Number formatting

/// A number in its shortest exact form when of everyday size (`0.5`, `2.25`, `1`), else in
/// scientific notation (`1e300`, `1e-14`), so that no value prints as hundreds of digits.
pub fn compact(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || (1e-4..1e6).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// A duration in seconds with a unit suited to its size: `850.00 ms`, `1.234 s`; `-` for none.
fn fmt_duration(s: Option<f64>) -> String {
    let Some(s) = s else {
        return "-".to_owned();
    };
    if s.abs() < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.3} s")
    }
}

/// A fraction as a percentage with one decimal: `12.3%`.
fn fmt_percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The fewest decimals (1 to 3) that show every value exactly, or 3.
fn decimals_needed(values: impl IntoIterator<Item = f64>) -> usize {
    let values: Vec<f64> = values.into_iter().collect();
    (1..=3)
        .find(|&d| {
            let p = 10f64.powi(d as i32);
            values
                .iter()
                .all(|v| ((v * p).round() / p - v).abs() < 1e-9)
        })
        .unwrap_or(3)
}

/// A unit and cell strings for a column of durations (`None` = no value): milliseconds when
/// every value is below one second, seconds otherwise, with decimals chosen from the largest
/// value so that it shows about four significant digits.
fn duration_column(values: &[Option<f64>]) -> (&'static str, Vec<String>) {
    let max = values.iter().flatten().fold(0.0_f64, |m, v| m.max(v.abs()));
    let (unit, scale) = if max < 1.0 { ("ms", 1e3) } else { ("s", 1.0) };
    let m = max * scale;
    let decimals = if m >= 1000.0 {
        0
    } else if m >= 100.0 {
        1
    } else if m >= 1.0 || m == 0.0 {
        2
    } else {
        3
    };
    let cells = values
        .iter()
        .map(|v| match v {
            Some(v) => format!("{:.*}", decimals, v * scale),
            None => "-".to_owned(),
        })
        .collect();
    (unit, cells)
}

// ---------------------------------------------------------------------------------------------
// Text tables

/// How a column's cells are aligned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// One column of a text table.
struct Column {
    header: String,
    /// Shown under the header (for example `(ms)`); empty for none.
    unit: String,
    align: Align,
    cells: Vec<String>,
}

impl Column {
    fn new(header: &str, unit: &str, align: Align, cells: Vec<String>) -> Self {
        Column {
            header: header.to_owned(),
            unit: if unit.is_empty() {
                String::new()
            } else {
                format!("({unit})")
            },
            align,
            cells,
        }
    }
}

/// Writes columns as a table: a header line, a line of units when any column has one, a rule,
/// then one line per row; columns two spaces apart, each as wide as its widest entry; no
/// trailing spaces.
fn write_columns(w: &mut impl Write, columns: &[Column]) -> std::io::Result<()> {
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            c.cells
                .iter()
                .chain([&c.header, &c.unit])
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cell: &dyn Fn(&Column) -> &str| {
        let mut out = String::new();
        for (i, (c, &width)) in columns.iter().zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let text = cell(c);
            let fill = " ".repeat(width.saturating_sub(text.chars().count()));
            let (left, right) = match c.align {
                Align::Left => (text, fill.as_str()),
                Align::Right => (fill.as_str(), text),
            };
            out.push_str(left);
            out.push_str(right);
        }
        out.trim_end().to_owned()
    };
    writeln!(w, "{}", line(&|c| &c.header))?;
    if columns.iter().any(|c| !c.unit.is_empty()) {
        writeln!(w, "{}", line(&|c| &c.unit))?;
    }
    let rule: Vec<String> = widths.iter().map(|&n| "-".repeat(n)).collect();
    writeln!(w, "{}", rule.join("  "))?;
    let rows = columns.iter().map(|c| c.cells.len()).max().unwrap_or(0);
    for r in 0..rows {
        writeln!(
            w,
            "{}",
            line(&|c| c.cells.get(r).map_or("", String::as_str))
        )?;
    }
    Ok(())
}

/// Writes one run's summary as an aligned block of `name  value` lines.
fn write_summary_table(w: &mut impl Write, label: &RunLabel, s: &Summary) -> std::io::Result<()> {
    let unfinished = s
        .requests_total
        .saturating_sub(s.requests_completed + s.requests_rejected);
    let mut lines: Vec<(&str, String)> = vec![
        ("policy", label.policy.clone()),
        ("predictor", label.predictor.clone()),
        ("rate scale", format!("{}x", compact(label.rate_scale))),
        ("trace", label.trace.clone()),
        (
            "requests",
            format!(
                "{} total, {} completed, {} rejected, {} unfinished",
                s.requests_total, s.requests_completed, s.requests_rejected, unfinished
            ),
        ),
        (
            "e2e latency",
            format!(
                "mean {}, p50 {}, p90 {}, p99 {}",
                fmt_duration(s.mean_e2e_s),
                fmt_duration(s.p50_e2e_s),
                fmt_duration(s.p90_e2e_s),
                fmt_duration(s.p99_e2e_s)
            ),
        ),
        (
            "time to first token",
            format!(
                "mean {}, p99 {}",
                fmt_duration(s.mean_ttft_s),
                fmt_duration(s.p99_ttft_s)
            ),
        ),
        (
            "time per output token",
            format!(
                "mean {}, p99 {}",
                fmt_duration(s.mean_tpot_s),
                fmt_duration(s.p99_tpot_s)
            ),
        ),
        (
            "throughput",
            format!("{:.1} output tokens/s", s.throughput_output_tokens_per_s),
        ),
    ];
    if !s.requests_rejected_by_reason.is_empty() {
        let reasons: Vec<String> = s
            .requests_rejected_by_reason
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect();
        lines.insert(5, ("rejected by reason", reasons.join("; ")));
    }
    if let (Some(goodput), Some(attainment)) = (s.goodput_req_per_s, s.slo_attainment) {
        lines.push((
            "goodput",
            format!(
                "{goodput:.3} req/s ({} of completed requests meet the SLO)",
                fmt_percent(attainment)
            ),
        ));
    }
    lines.extend([
        (
            "preemptions",
            format!(
                "{} recompute ({} tokens recomputed), {} swap, {} keep",
                s.preemptions_recompute,
                s.recomputed_tokens,
                s.preemptions_swap,
                s.preemptions_keep
            ),
        ),
        ("prefix cache hit rate", fmt_percent(s.prefix_hit_rate)),
        (
            "KV cache utilization",
            format!("{} mean", fmt_percent(s.kv_utilization_mean)),
        ),
        (
            "GPU utilization",
            format!(
                "MFU {} busy / {} overall, HBM bandwidth {} busy / {} overall, busy {}",
                fmt_percent(s.mfu_busy),
                fmt_percent(s.mfu),
                fmt_percent(s.hbm_bw_util_busy),
                fmt_percent(s.hbm_bw_util),
                fmt_percent(s.busy_fraction)
            ),
        ),
        (
            "steps bound by",
            format!(
                "compute {} / memory {} / overhead {} of steps \
                 ({} / {} / {} of busy time)",
                fmt_percent(s.compute_bound_steps),
                fmt_percent(s.memory_bound_steps),
                fmt_percent(s.overhead_bound_steps),
                fmt_percent(s.compute_bound_time),
                fmt_percent(s.memory_bound_time),
                fmt_percent(s.overhead_bound_time)
            ),
        ),
        (
            "simulated time",
            format!("{:.3} s (wall clock {:.3} s)", s.simulated_s, s.wall_s),
        ),
    ]);
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in lines {
        writeln!(w, "{k:<width$}  {v}")?;
    }
    Ok(())
}

/// Writes one run's summary in the given format.
///
/// - [`Format::Table`]: an aligned block of `name  value` lines with units, for people.
/// - [`Format::Json`]: one JSON object on one line (so that runs can be appended as JSON
///   Lines), with the [`RunLabel::FIELDS`] and [`SUMMARY_FIELDS`] as keys (see
///   [`LabeledSummary`]); the SLO fields are `null` without an SLO.
/// - [`Format::Csv`]: a header line and one row, same columns; empty cells for `None`.
pub fn write_summary(
    w: &mut impl Write,
    label: &RunLabel,
    s: &Summary,
    format: Format,
) -> anyhow::Result<()> {
    match format {
        Format::Table => write_summary_table(w, label, s)?,
        Format::Json => {
            let record = LabeledSummary::new(label, s);
            serde_json::to_writer(&mut *w, &record)?;
            writeln!(w)?;
        }
        Format::Csv => {
            let mut wtr = csv::WriterBuilder::new().has_headers(false).from_writer(w);
            write_label_summary_header(&mut wtr)?;
            wtr.serialize((label, s, reasons_cell(s)))?;
            wtr.flush()?;
        }
    }
    Ok(())
}

/// Writes the CSV header [`RunLabel::FIELDS`] followed by [`SUMMARY_FIELDS`].
fn write_label_summary_header<W: Write>(wtr: &mut csv::Writer<W>) -> csv::Result<()> {
    wtr.write_record(RunLabel::FIELDS.iter().chain(SUMMARY_FIELDS.iter()))
}

/// Writes several runs as one aligned text table, one row per run in the given order.
///
/// Columns: policy, predictor, rate scale, completed/total requests, mean and p99 end-to-end
/// latency, mean and p99 TTFT, mean TPOT, output throughput, preemptions, prefix cache hit
/// rate, and goodput and SLO attainment when any run has an SLO. The units are on a second
/// header line. Each latency column is in milliseconds when all its values are below a second
/// and in seconds otherwise; a run
/// with no completed request shows `-` for its latencies. Preemptions are shown as
/// `recompute+swap` when any run swapped.
pub fn write_comparison_table(
    w: &mut impl Write,
    rows: &[(RunLabel, Summary)],
) -> anyhow::Result<()> {
    write_comparison_table_with(w, &[], rows)
}

/// [`write_comparison_table`] with `lead` columns first: left-aligned, each a header and one
/// cell per row (as `sweep --replicas` labels its rows with replicas and router).
pub fn write_comparison_table_with(
    w: &mut impl Write,
    lead: &[(&str, Vec<String>)],
    rows: &[(RunLabel, Summary)],
) -> anyhow::Result<()> {
    let text = |f: &dyn Fn(&RunLabel, &Summary) -> String| -> Vec<String> {
        rows.iter().map(|(l, s)| f(l, s)).collect()
    };
    let latency = |header: &str, f: fn(&Summary) -> Option<f64>| -> Column {
        let values: Vec<Option<f64>> = rows.iter().map(|(_, s)| f(s)).collect();
        let (unit, cells) = duration_column(&values);
        Column::new(header, unit, Align::Right, cells)
    };
    let rate_decimals = decimals_needed(rows.iter().map(|(l, _)| l.rate_scale));
    let any_swap = rows
        .iter()
        .any(|(_, s)| s.preemptions_swap > 0 || s.preemptions_keep > 0);

    let mut columns: Vec<Column> = lead
        .iter()
        .map(|(header, cells)| Column::new(header, "", Align::Left, cells.clone()))
        .collect();
    columns.extend([
        Column::new("policy", "", Align::Left, text(&|l, _| l.policy.clone())),
        Column::new(
            "predictor",
            "",
            Align::Left,
            text(&|l, _| l.predictor.clone()),
        ),
        Column::new(
            "rate",
            "",
            Align::Right,
            text(&|l, _| {
                if (1e-3..1e6).contains(&l.rate_scale) {
                    format!("{:.*}x", rate_decimals, l.rate_scale)
                } else {
                    format!("{}x", compact(l.rate_scale))
                }
            }),
        ),
        Column::new(
            "completed",
            "",
            Align::Right,
            text(&|_, s| format!("{}/{}", s.requests_completed, s.requests_total)),
        ),
        latency("mean e2e", |s| s.mean_e2e_s),
        latency("p99 e2e", |s| s.p99_e2e_s),
        latency("mean TTFT", |s| s.mean_ttft_s),
        latency("p99 TTFT", |s| s.p99_ttft_s),
        latency("mean TPOT", |s| s.mean_tpot_s),
        Column::new(
            "throughput",
            "tok/s",
            Align::Right,
            text(&|_, s| format!("{:.1}", s.throughput_output_tokens_per_s)),
        ),
        if any_swap {
            Column::new(
                "preempt",
                "rc+swap+keep",
                Align::Right,
                text(&|_, s| {
                    format!(
                        "{}+{}+{}",
                        s.preemptions_recompute, s.preemptions_swap, s.preemptions_keep
                    )
                }),
            )
        } else {
            Column::new(
                "preempt",
                "",
                Align::Right,
                text(&|_, s| s.preemptions_recompute.to_string()),
            )
        },
        Column::new(
            "prefix hit",
            "",
            Align::Right,
            text(&|_, s| fmt_percent(s.prefix_hit_rate)),
        ),
    ]);
    if rows.iter().any(|(_, s)| s.goodput_req_per_s.is_some()) {
        columns.push(Column::new(
            "goodput",
            "req/s, SLO met",
            Align::Right,
            text(&|_, s| match (s.goodput_req_per_s, s.slo_attainment) {
                (Some(g), Some(a)) => format!("{g:.2}, {}", fmt_percent(a)),
                _ => "-".to_owned(),
            }),
        ));
    }
    write_columns(w, &columns)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Capacity

/// One policy's result of `augur capacity`: the highest arrival-rate scale at which the
/// policy still meets the SLO for the asked fraction of requests. Its field names are the JSON
/// keys and CSV columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapacityRow {
    /// The policy's label.
    pub policy: String,
    /// The predictor spec.
    pub predictor: String,
    /// The highest rate scale found that meets the SLO; `None` when even the lower bound
    /// misses it.
    pub max_rate_scale: Option<f64>,
    /// Requests per second offered at `max_rate_scale`: the trace's requests over its arrival
    /// span (`None` with no `max_rate_scale`, or a trace whose requests all arrive at once).
    pub offered_req_per_s: Option<f64>,
    /// Completed requests per simulated second at `max_rate_scale`.
    pub achieved_req_per_s: Option<f64>,
    /// Fraction of all requests meeting the SLO at `max_rate_scale`.
    pub slo_fraction_met: Option<f64>,
    /// The lowest rate scale tried that misses the SLO (`None` when every scale tried met it).
    pub fails_at_rate_scale: Option<f64>,
    /// Fraction of all requests meeting the SLO at `fails_at_rate_scale`.
    pub slo_fraction_at_fail: Option<f64>,
    /// Simulations run for this policy.
    pub runs: u32,
    /// A remark on the result (the search hit a bound), if any.
    pub note: Option<String>,
}

/// A rate scale as a table cell: `2.25x`, `-` for none.
fn fmt_scale(x: Option<f64>) -> String {
    match x {
        Some(x) if (1e-3..1e6).contains(&x) => format!("{}x", trim_float(x, 3)),
        Some(x) => format!("{}x", compact(x)),
        None => "none".to_owned(),
    }
}

/// `x` with at most `decimals` decimals, trailing zeros removed: `2.25`, `16`.
fn trim_float(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Writes the results of `augur capacity` as an aligned text table, one row per policy, with
/// the notes below it.
pub fn write_capacity_table(w: &mut impl Write, rows: &[CapacityRow]) -> std::io::Result<()> {
    let cells =
        |f: &dyn Fn(&CapacityRow) -> String| -> Vec<String> { rows.iter().map(f).collect() };
    let opt = |x: Option<f64>, d: usize| x.map_or("-".to_owned(), |v| format!("{v:.d$}"));
    let columns = vec![
        Column::new("policy", "", Align::Left, cells(&|r| r.policy.clone())),
        Column::new(
            "predictor",
            "",
            Align::Left,
            cells(&|r| r.predictor.clone()),
        ),
        Column::new(
            "max rate scale",
            "",
            Align::Right,
            cells(&|r| {
                let mut s = fmt_scale(r.max_rate_scale);
                if r.note.is_some() {
                    s.push('*');
                }
                s
            }),
        ),
        Column::new(
            "offered",
            "req/s",
            Align::Right,
            cells(&|r| opt(r.offered_req_per_s, 2)),
        ),
        Column::new(
            "achieved",
            "req/s",
            Align::Right,
            cells(&|r| opt(r.achieved_req_per_s, 2)),
        ),
        Column::new(
            "SLO met",
            "",
            Align::Right,
            cells(&|r| r.slo_fraction_met.map_or("-".to_owned(), fmt_percent)),
        ),
        Column::new(
            "fails at",
            "",
            Align::Right,
            cells(&|r| match r.fails_at_rate_scale {
                Some(x) => format!(
                    "{} ({})",
                    fmt_scale(Some(x)),
                    r.slo_fraction_at_fail.map_or("-".to_owned(), fmt_percent)
                ),
                None => "-".to_owned(),
            }),
        ),
        Column::new("runs", "", Align::Right, cells(&|r| r.runs.to_string())),
    ];
    write_columns(w, &columns)?;
    for r in rows {
        if let Some(note) = &r.note {
            writeln!(w, "* {}: {note}", r.policy)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// CSV files

/// Writes one CSV row per request ([`REQUEST_FIELDS`] as the header, written even when
/// `records` is empty; empty cells for `None`).
pub fn write_requests_csv(path: impl AsRef<Path>, records: &[RequestRecord]) -> anyhow::Result<()> {
    let path = path.as_ref();
    let write = || -> anyhow::Result<()> {
        let mut wtr = csv::WriterBuilder::new()
            .has_headers(false)
            .from_path(path)?;
        wtr.write_record(REQUEST_FIELDS)?;
        for r in records {
            wtr.serialize(r)?;
        }
        wtr.flush()?;
        Ok(())
    };
    write().with_context(|| format!("writing request records to {}", path.display()))
}

/// Writes one CSV row per run: the [`RunLabel::FIELDS`] then the [`SUMMARY_FIELDS`] (the
/// header is written even when `rows` is empty; empty cells for `None`).
pub fn write_sweep_csv(path: impl AsRef<Path>, rows: &[(RunLabel, Summary)]) -> anyhow::Result<()> {
    let path = path.as_ref();
    let write = || -> anyhow::Result<()> {
        let mut wtr = csv::WriterBuilder::new()
            .has_headers(false)
            .from_path(path)?;
        write_label_summary_header(&mut wtr)?;
        for (label, s) in rows {
            wtr.serialize((label, s, reasons_cell(s)))?;
        }
        wtr.flush()?;
        Ok(())
    };
    write().with_context(|| format!("writing the sweep summary to {}", path.display()))
}

/// Reads a file written by [`write_sweep_csv`] (or by [`write_summary`] in [`Format::Csv`])
/// back into rows. The header must be exactly [`RunLabel::FIELDS`] then [`SUMMARY_FIELDS`].
pub fn read_sweep_csv(path: impl AsRef<Path>) -> anyhow::Result<Vec<(RunLabel, Summary)>> {
    let path = path.as_ref();
    let read = || -> anyhow::Result<Vec<(RunLabel, Summary)>> {
        let mut rdr = csv::Reader::from_path(path)?;
        let header = rdr.headers()?.clone();
        let expected = RunLabel::FIELDS.iter().chain(SUMMARY_FIELDS.iter());
        anyhow::ensure!(
            header.iter().eq(expected.copied()),
            "unexpected CSV header `{}`; expected `{},{}`",
            header.iter().collect::<Vec<_>>().join(","),
            RunLabel::FIELDS.join(","),
            SUMMARY_FIELDS.join(",")
        );
        // The csv crate cannot match a tuple of structs against header names, so the row is
        // read by position, which the header check above makes safe.
        rdr.records()
            .map(|record| {
                let (label, mut s, reasons): (RunLabel, Summary, String) =
                    record?.deserialize(None)?;
                s.requests_rejected_by_reason = serde_json::from_str(&reasons)
                    .context("the requests_rejected_by_reason cell is not a JSON object")?;
                Ok((label, s))
            })
            .collect()
    };
    read().with_context(|| format!("reading a sweep summary from {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Plots

/// Line colours (Tableau 10), cycled through by series.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A line chart's texts, ranges and legend placement.
struct ChartSpec<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    x_range: Range<f64>,
    y_range: Range<f64>,
    markers: bool,
    legend: SeriesLabelPosition,
}

/// Draws named point series as lines into an SVG file.
fn draw_line_chart(
    path: &Path,
    spec: ChartSpec<'_>,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(spec.title, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(spec.x_range, spec.y_range)?;
    chart
        .configure_mesh()
        .x_desc(spec.x_desc)
        .y_desc(spec.y_desc)
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
        if spec.markers {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .position(spec.legend)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.5))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// `lo..hi` widened by `pad` of its span on each side, or by 0.5 when it is a single point.
fn padded(lo: f64, hi: f64, pad: f64) -> Range<f64> {
    if hi > lo {
        let d = (hi - lo) * pad;
        (lo - d)..(hi + d)
    } else {
        (lo - 0.5)..(hi + 0.5)
    }
}

/// The largest value, or `default` when there is none or it is not positive.
fn max_or(values: impl Iterator<Item = f64>, default: f64) -> f64 {
    let m = values.filter(|v| v.is_finite()).fold(f64::MIN, f64::max);
    if m > 0.0 { m } else { default }
}

/// One point of a latency line chart: the line it belongs to, its x value and the run's
/// summary.
#[derive(Clone, Copy, Debug)]
pub struct LinePoint<'a> {
    /// The line's name, shown in the legend.
    pub line: &'a str,
    /// The rate scale or the replica count.
    pub x: f64,
    /// The run's summary, whose latency is the y value.
    pub summary: &'a Summary,
}

/// Plots a latency metric against load as an SVG line chart: one line (with markers) per
/// [`LinePoint::line`], in order of first appearance, x = rate scale, y = the metric in
/// seconds; with a title, axis labels and a legend.
///
/// Runs with no completed request have no latency and are left out; so are non-finite
/// values. With no points at all the chart is drawn empty.
pub fn plot_latency_vs_load(
    path: impl AsRef<Path>,
    points: &[LinePoint<'_>],
    metric: Metric,
) -> anyhow::Result<()> {
    let title = match metric {
        Metric::MeanE2e => "Mean end-to-end latency vs load",
        Metric::P99E2e => "p99 end-to-end latency vs load",
    };
    plot_latency_lines(
        path.as_ref(),
        points,
        metric,
        title,
        "rate scale (x trace arrival rate)",
    )
    .with_context(|| format!("plotting {} vs load to {}", metric, path.as_ref().display()))
}

/// Plots a latency metric against the number of replicas, as [`plot_latency_vs_load`] does
/// against load (x = [`LinePoint::x`], the replica count).
pub fn plot_latency_vs_replicas(
    path: impl AsRef<Path>,
    points: &[LinePoint<'_>],
    metric: Metric,
) -> anyhow::Result<()> {
    let title = match metric {
        Metric::MeanE2e => "Mean end-to-end latency vs replicas",
        Metric::P99E2e => "p99 end-to-end latency vs replicas",
    };
    plot_latency_lines(path.as_ref(), points, metric, title, "replicas").with_context(|| {
        format!(
            "plotting {} vs replicas to {}",
            metric,
            path.as_ref().display()
        )
    })
}

/// The line chart of [`plot_latency_vs_load`] and [`plot_latency_vs_replicas`].
fn plot_latency_lines(
    path: &Path,
    points: &[LinePoint<'_>],
    metric: Metric,
    title: &str,
    x_desc: &str,
) -> anyhow::Result<()> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for p in points {
        let Some(y) = metric.value(p.summary) else {
            continue;
        };
        if !p.x.is_finite() || !y.is_finite() {
            continue;
        }
        let i = series
            .iter()
            .position(|(name, _)| name == p.line)
            .unwrap_or_else(|| {
                series.push((p.line.to_owned(), Vec::new()));
                series.len() - 1
            });
        series[i].1.push((p.x, y));
    }
    for (_, points) in &mut series {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let points = || series.iter().flat_map(|(_, p)| p.iter());
    let (x_lo, x_hi) = points().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.0), hi.max(p.0))
    });
    let x_range = if x_lo <= x_hi {
        padded(x_lo, x_hi, 0.05)
    } else {
        0.0..2.0
    };
    let y_max = max_or(points().map(|p| p.1), 1.0);
    let spec = ChartSpec {
        title,
        x_desc,
        y_desc: "latency (s)",
        x_range,
        y_range: 0.0..y_max * 1.1,
        markers: true,
        legend: SeriesLabelPosition::UpperLeft,
    };
    draw_line_chart(path, spec, &series)
}

/// Plots end-to-end latency CDFs as an SVG line chart: one line per named series of
/// `(latency_s, cumulative_fraction)` points (as [`crate::metrics::latency_cdf`] returns), with
/// a title, axis labels and a legend. Non-finite points are left out.
pub fn plot_latency_cdfs(
    path: impl AsRef<Path>,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let path = path.as_ref();
    let series: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, points)| {
            let finite = points
                .iter()
                .copied()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            (name.clone(), finite)
        })
        .collect();
    let x_max = max_or(series.iter().flat_map(|(_, p)| p.iter().map(|p| p.0)), 1.0);
    let spec = ChartSpec {
        title: "End-to-end latency CDF",
        x_desc: "end-to-end latency (s)",
        y_desc: "fraction of completed requests",
        x_range: 0.0..x_max * 1.05,
        y_range: 0.0..1.02,
        markers: false,
        legend: SeriesLabelPosition::LowerRight,
    };
    draw_line_chart(path, spec, &series)
        .with_context(|| format!("plotting latency CDFs to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{RunCounters, Slo, latency_cdf, summarize};

    fn sample() -> (Vec<RequestRecord>, RunCounters) {
        let rec = |id: u64, arrival: f64, out: u32, first: Option<f64>, finish: Option<f64>| {
            RequestRecord {
                id,
                arrival_s: arrival,
                prompt_tokens: 10 + id as u32,
                output_tokens: out,
                first_token_s: first,
                finish_s: finish,
                rejected: None,
                preemptions: id as u32 % 2,
            }
        };
        let mut records = vec![
            rec(0, 0.0, 4, Some(0.5), Some(2.0)),
            rec(1, 1.0, 6, Some(2.0), Some(5.0)),
            rec(2, 2.0, 1, Some(3.0), Some(3.0)),
            rec(3, 3.0, 12, Some(3.25), Some(6.0)),
            rec(4, 4.0, 100, None, None),
            rec(5, 5.0, 50, Some(5.5), None),
        ];
        records[4].rejected = Some("too long, \"really\"".to_owned());
        let counters = RunCounters {
            preemptions_recompute: 3,
            preemptions_swap: 0,
            preemptions_keep: 0,
            recomputed_tokens: 40,
            prefix_hit_tokens: 25,
            prompt_tokens_scheduled: 100,
            kv_utilization_sum: 3.0,
            kv_utilization_samples: 4,
            simulated_s: 10.0,
            wall_s: 0.125,
            swapped_blocks: 0,
            ..RunCounters::default()
        };
        (records, counters)
    }

    fn label(policy: &str, predictor: &str, rate_scale: f64) -> RunLabel {
        RunLabel {
            policy: policy.to_owned(),
            predictor: predictor.to_owned(),
            rate_scale,
            trace: "synthetic:sharegpt".to_owned(),
        }
    }

    /// A small sweep: two (policy, predictor) series at three loads each, plus an empty run.
    fn sweep() -> Vec<(RunLabel, Summary)> {
        let (records, counters) = sample();
        let base = summarize(&records, &counters, &Slo::default());
        let mut rows = Vec::new();
        for (policy, predictor, k) in [("fcfs", "none", 1.0), ("sjf", "lognormal:0.5", 0.6)] {
            for rate in [0.5, 1.0, 1.5] {
                let mut s = base.clone();
                s.mean_e2e_s = s.mean_e2e_s.map(|x| x * k * rate);
                s.p99_e2e_s = s.p99_e2e_s.map(|x| x * k * rate * 2.0);
                rows.push((label(policy, predictor, rate), s));
            }
        }
        let empty = summarize(&records[4..], &counters, &Slo::default());
        rows.push((label("edf", "oracle", 2.0), empty));
        rows
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        std::env::temp_dir().join(format!(
            "augur-report-test-{}-{nanos}-{n}-{name}",
            std::process::id()
        ))
    }

    #[test]
    fn format_and_metric_parse() {
        assert_eq!("table".parse::<Format>(), Ok(Format::Table));
        assert_eq!("JSON".parse::<Format>(), Ok(Format::Json));
        assert_eq!(" csv ".parse::<Format>(), Ok(Format::Csv));
        let err = "yaml".parse::<Format>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown output format `yaml`; expected one of: table, json, csv"
        );
        for f in Format::ALL {
            assert_eq!(f.to_string().parse::<Format>(), Ok(f));
        }
        for m in Metric::ALL {
            assert_eq!(m.to_string().parse::<Metric>(), Ok(m));
        }
        assert!("p50".parse::<Metric>().is_err());
    }

    #[test]
    fn field_name_constants_match_serde() {
        let (records, counters) = sample();
        let s = summarize(&records, &counters, &Slo::default());
        let keys: Vec<String> =
            match serde_json::to_value(LabeledSummary::new(&label("a", "b", 1.0), &s)).unwrap() {
                serde_json::Value::Object(m) => m
                    .keys()
                    .filter(|k| !RunLabel::FIELDS.contains(&k.as_str()))
                    .cloned()
                    .collect(),
                _ => unreachable!(),
            };
        let mut expected: Vec<String> = SUMMARY_FIELDS.iter().map(|s| s.to_string()).collect();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort();
        expected.sort();
        assert_eq!(keys_sorted, expected);

        // Order: the CSV writer's own header for a struct follows declaration order.
        // The rejection reasons are the last column, written by hand after the struct.
        let mut wtr = csv::Writer::from_writer(Vec::new());
        #[derive(Serialize)]
        struct Reasons {
            requests_rejected_by_reason: String,
        }
        let reasons = Reasons {
            requests_rejected_by_reason: reasons_cell(&s),
        };
        wtr.serialize((&label("a", "b", 1.0), &s, &reasons))
            .unwrap();
        let text = String::from_utf8(wtr.into_inner().unwrap()).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let ours: Vec<&str> = RunLabel::FIELDS
            .iter()
            .chain(SUMMARY_FIELDS.iter())
            .copied()
            .collect();
        assert_eq!(header, ours);

        let mut wtr = csv::Writer::from_writer(Vec::new());
        wtr.serialize(&records[0]).unwrap();
        let text = String::from_utf8(wtr.into_inner().unwrap()).unwrap();
        assert_eq!(text.lines().next().unwrap(), REQUEST_FIELDS.join(","));
    }

    #[test]
    fn json_has_exactly_the_required_keys_and_no_nan() {
        let required = [
            "requests_total",
            "requests_completed",
            "requests_rejected",
            "mean_e2e_s",
            "p50_e2e_s",
            "p90_e2e_s",
            "p99_e2e_s",
            "mean_ttft_s",
            "p99_ttft_s",
            "mean_tpot_s",
            "p99_tpot_s",
            "throughput_output_tokens_per_s",
            "preemptions_recompute",
            "preemptions_swap",
            "preemptions_keep",
            "recomputed_tokens",
            "prefix_hit_rate",
            "kv_utilization_mean",
            "simulated_s",
            "wall_s",
            "goodput_req_per_s",
            "slo_attainment",
            "mfu_busy",
            "mfu",
            "hbm_bw_util_busy",
            "hbm_bw_util",
            "busy_fraction",
            "compute_bound_steps",
            "memory_bound_steps",
            "overhead_bound_steps",
            "compute_bound_time",
            "memory_bound_time",
            "overhead_bound_time",
            "requests_rejected_by_reason",
            "policy",
            "predictor",
            "rate_scale",
            "trace",
        ];
        let (records, counters) = sample();
        let slo = Slo {
            ttft_s: Some(0.5),
            tpot_s: None,
        };
        for (records, slo) in [
            (&records[..], Slo::default()),
            (&records[..], slo),
            (&[][..], slo),
            (&[][..], Slo::default()),
        ] {
            let s = summarize(records, &counters, &slo);
            let l = label("fcfs", "oracle", 1.0);
            let mut out = Vec::new();
            write_summary(&mut out, &l, &s, Format::Json).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.lines().count(), 1, "{text}");
            assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let obj = v.as_object().unwrap();
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            let mut want = required.to_vec();
            want.sort_unstable();
            assert_eq!(keys, want);
            for (k, v) in obj {
                let optional = k == "goodput_req_per_s" || k == "slo_attainment";
                // Latencies are null exactly over an empty population.
                let empty_latency =
                    k.ends_with("_e2e_s") || k.ends_with("_ttft_s") || k.ends_with("_tpot_s");
                let expect_null =
                    (optional && !slo.is_set()) || (empty_latency && s.requests_completed == 0);
                assert_eq!(v.is_null(), expect_null, "{k}: {v}");
            }
            assert!(obj["requests_rejected_by_reason"].is_object());
            let back: LabeledSummary = serde_json::from_str(&text).unwrap();
            assert_eq!(back.label, l);
            assert_eq!(back.into_summary(), s);
        }
    }

    #[test]
    fn summary_csv_round_trip() {
        let (records, counters) = sample();
        for slo in [
            Slo::default(),
            Slo {
                ttft_s: None,
                tpot_s: Some(0.55),
            },
        ] {
            let s = summarize(&records, &counters, &slo);
            let l = label("sjf", "lognormal:1", 1.25);
            let mut out = Vec::new();
            write_summary(&mut out, &l, &s, Format::Csv).unwrap();
            let mut rdr = csv::Reader::from_reader(out.as_slice());
            let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_owned).collect();
            assert_eq!(header.len(), 38);
            assert_eq!(&header[..4], &RunLabel::FIELDS);
            assert_eq!(&header[4..], &SUMMARY_FIELDS);
            let path = temp_path("summary.csv");
            std::fs::write(&path, &out).unwrap();
            assert_eq!(read_sweep_csv(&path).unwrap(), vec![(l, s)]);
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn sweep_and_requests_csv_round_trip() {
        let rows = sweep();
        let path = temp_path("sweep.csv");
        write_sweep_csv(&path, &rows).unwrap();
        assert_eq!(read_sweep_csv(&path).unwrap(), rows);
        write_sweep_csv(&path, &[]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.starts_with("policy,predictor,rate_scale,trace,requests_total,"));
        assert!(read_sweep_csv(&path).unwrap().is_empty());
        std::fs::write(&path, "policy,trace\nfcfs,x\n").unwrap();
        let err = read_sweep_csv(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains("unexpected CSV header"),
            "{err:#}"
        );
        std::fs::remove_file(&path).unwrap();

        let (records, _) = sample();
        let path = temp_path("requests.csv");
        write_requests_csv(&path, &records).unwrap();
        let mut rdr = csv::Reader::from_path(&path).unwrap();
        let back: Vec<RequestRecord> = rdr.deserialize().collect::<Result<_, _>>().unwrap();
        assert_eq!(back, records);
        std::fs::remove_file(&path).unwrap();

        let missing = std::env::temp_dir()
            .join("augur-no-such-dir-for-tests")
            .join("x.csv");
        let err = write_requests_csv(&missing, &records).unwrap_err();
        assert!(format!("{err:#}").contains("x.csv"), "{err:#}");
    }

    #[test]
    fn summary_table_is_aligned_and_complete() {
        let (records, counters) = sample();
        let slo = Slo {
            ttft_s: Some(0.5),
            tpot_s: None,
        };
        let s = summarize(&records, &counters, &slo);
        let mut out = Vec::new();
        write_summary(&mut out, &label("fcfs", "oracle", 1.0), &s, Format::Table).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("6 total, 4 completed, 1 rejected, 1 unfinished"),
            "{text}"
        );
        assert!(text.contains("mean 2.500 s, p50 2.500 s, p90 3.700 s, p99 3.970 s"));
        assert!(text.contains("2.3 output tokens/s"));
        assert!(text.contains("0.200 req/s (50.0% of completed"));
        assert!(text.contains("25.0%"));
        // Every value starts in the same column.
        let starts: Vec<usize> = text
            .lines()
            .map(|l| l.find("  ").unwrap() + l[l.find("  ").unwrap()..].find(|c| c != ' ').unwrap())
            .collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "{text}");
    }

    #[test]
    fn comparison_table_is_aligned() {
        let rows = sweep();
        let mut out = Vec::new();
        write_comparison_table(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3 + rows.len(), "{text}");
        assert!(lines[0].starts_with("policy  predictor"), "{text}");
        // Each right-aligned header has its unit right below it, ending in the same column.
        for (header, unit) in [
            ("rate", ""),
            ("completed", ""),
            ("mean e2e", "(s)"),
            ("p99 e2e", "(s)"),
            ("mean TTFT", "(ms)"),
            ("p99 TTFT", "(s)"),
            ("mean TPOT", "(ms)"),
            ("throughput", "(tok/s)"),
            ("preempt", ""),
            ("prefix hit", ""),
        ] {
            let end = lines[0].find(header).expect(header) + header.len();
            let below = lines[1].get(..end).unwrap_or(lines[1]);
            assert!(below.ends_with(unit), "{header} {unit}: {text}");
            if unit.is_empty() {
                assert!(
                    below.ends_with(' ') || below.len() < end,
                    "{header}: {text}"
                );
            }
        }
        assert!(!lines[0].contains("goodput"));
        // Right-aligned numeric columns end where the rule's dashes end.
        let rule = lines[2];
        assert!(rule.chars().all(|c| c == '-' || c == ' '));
        for line in &lines[3..] {
            assert!(line.ends_with('%'), "{text}");
            assert_eq!(line.len(), rule.len(), "{text}");
        }
        assert!(
            lines[3].starts_with("fcfs    none           0.5x        4/6  "),
            "{text}"
        );
        // The run without completed requests shows dashes for its latencies.
        assert!(lines.last().unwrap().contains("  -  "), "{text}");
        assert!(text.lines().all(|l| !l.ends_with(' ')));

        let mut out = Vec::new();
        write_comparison_table(&mut out, &[]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 3);
    }

    #[test]
    fn comparison_table_shows_swaps_and_goodput() {
        let (records, mut counters) = sample();
        counters.preemptions_swap = 2;
        let slo = Slo {
            ttft_s: Some(0.5),
            tpot_s: None,
        };
        let rows = vec![
            (
                label("fcfs", "none", 1.0),
                summarize(&records, &counters, &slo),
            ),
            (
                label("fcfs", "none", 1.25),
                summarize(&records, &counters, &Slo::default()),
            ),
        ];
        let mut out = Vec::new();
        write_comparison_table(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("goodput"), "{text}");
        assert!(lines[1].ends_with("(req/s, SLO met)"), "{text}");
        assert!(lines[1].contains("(rc+swap+keep)"), "{text}");
        assert!(lines[3].contains(" 1.00x "), "{text}");
        assert!(lines[3].ends_with("  0.20, 50.0%"), "{text}");
        assert!(lines[3].contains("  3+2+0  "), "{text}");
        assert!(lines[4].ends_with("  -"), "{text}");
    }

    #[test]
    fn plots_write_svg() {
        let rows = sweep();
        let names: Vec<String> = rows
            .iter()
            .map(|(l, _)| format!("{} / {}", l.policy, l.predictor))
            .collect();
        let points: Vec<LinePoint<'_>> = rows
            .iter()
            .zip(&names)
            .map(|((l, s), line)| LinePoint {
                line,
                x: l.rate_scale,
                summary: s,
            })
            .collect();
        for metric in Metric::ALL {
            let path = temp_path(&format!("{metric}.svg"));
            plot_latency_vs_load(&path, &points, metric).unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            assert!(svg.contains("<svg"), "{svg}");
            assert!(svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains("fcfs / none"));
            assert!(svg.contains("sjf / lognormal:0.5"));
            assert!(
                !svg.contains("edf"),
                "the run without completions has no point"
            );
            assert!(svg.contains("rate scale"));
            assert!(svg.contains(&metric.description()[1..]));
            std::fs::remove_file(&path).unwrap();
        }

        let (records, _) = sample();
        let series = vec![
            ("fcfs / none @1.0x".to_owned(), latency_cdf(&records)),
            ("sjf <oracle> & more".to_owned(), latency_cdf(&records[1..])),
        ];
        let path = temp_path("cdf.svg");
        plot_latency_cdfs(&path, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.contains("fcfs / none @1.0x"));
        assert!(
            svg.contains("sjf &lt;oracle&gt; &amp; more"),
            "labels are escaped"
        );
        assert!(svg.contains("End-to-end latency CDF"));
        std::fs::remove_file(&path).unwrap();

        // Empty inputs still give a (blank) chart.
        let path = temp_path("empty.svg");
        plot_latency_cdfs(&path, &[]).unwrap();
        plot_latency_vs_load(&path, &[], Metric::MeanE2e).unwrap();
        plot_latency_vs_replicas(&path, &[], Metric::P99E2e).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("<svg"));
        std::fs::remove_file(&path).unwrap();

        let err = plot_latency_cdfs(
            std::env::temp_dir().join("augur-no-such-dir-for-tests/x.svg"),
            &series,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("x.svg"));
    }

    #[test]
    fn replicas_plot_has_one_line_per_name_with_a_point_per_run() {
        let rows = sweep();
        let points: Vec<LinePoint<'_>> = rows[..6]
            .iter()
            .enumerate()
            .map(|(i, (_, s))| LinePoint {
                line: if i < 3 { "round-robin" } else { "kv-prefix" },
                x: [1.0, 2.0, 4.0][i % 3],
                summary: s,
            })
            .collect();
        let path = temp_path("replicas.svg");
        plot_latency_vs_replicas(&path, &points, Metric::MeanE2e).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("Mean end-to-end latency vs replicas"), "{svg}");
        let lines: Vec<&str> = svg.lines().map(str::trim).collect();
        for text in ["replicas", "round-robin", "kv-prefix"] {
            assert_eq!(
                lines.iter().filter(|l| **l == text).count(),
                1,
                "{text}: {svg}"
            );
        }
        // One line of three points per router, in the first two colours (the legend's
        // samples have two points).
        for color in ["#1F77B4", "#FF7F0E"] {
            let data = lines
                .iter()
                .filter(|l| l.starts_with("<polyline") && l.contains(color))
                .filter(|l| l.matches(',').count() == 3)
                .count();
            assert_eq!(data, 1, "{color}: {svg}");
        }
        assert_eq!(svg.matches("<circle").count(), 6, "a marker per run");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn comparison_table_lead_columns_come_first() {
        let rows = sweep();
        let lead = [
            ("replicas", rows.iter().map(|_| "16".to_owned()).collect()),
            (
                "router",
                rows.iter().map(|_| "kv-prefix".to_owned()).collect(),
            ),
        ];
        let mut out = Vec::new();
        write_comparison_table_with(&mut out, &lead, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("replicas  router     policy  predictor"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("16        kv-prefix  fcfs    none"),
            "{text}"
        );
        let mut plain = Vec::new();
        write_comparison_table(&mut plain, &rows).unwrap();
        let plain = String::from_utf8(plain).unwrap();
        // Behind the two lead columns (8 and 9 wide, two spaces after each) is the plain table.
        assert_eq!(lines.len(), plain.lines().count());
        for (a, b) in lines.iter().zip(plain.lines()) {
            assert_eq!(&a[21..], b, "{text}");
        }
    }
}
