//! `augur reproduce`: every row of the quick run has its numbers and a verdict that follows
//! from them, the M/G/1 rows agree with the published closed forms, the published directions
//! hold, and a missing trace is an error that names it.
//!
//! The runs read the Azure trace in `../shared/traces/`: without the folder these tests are
//! ignored ("needs ../shared/traces"), and with `AUGUR_REQUIRE_TRACES=1` they fail (see
//! build.rs). The quick run takes a few seconds and is shared by the tests.

mod cli_support;
use cli_support::{augur, ok, stderr};

use std::sync::OnceLock;

use serde_json::Value;

/// The rows, in order.
const ROWS: [&str; 11] = [
    "trail",
    "trail-ttft",
    "trail-time",
    "lamps",
    "lamps-ttft",
    "fastserve-mlfq",
    "fastserve-capacity",
    "mg1-fcfs",
    "mg1-srpt",
    "mg1-sprpt",
    "mg1-trail",
];

/// `augur reproduce --quick --format json`, run once for all tests.
fn quick() -> &'static Value {
    static QUICK: OnceLock<Value> = OnceLock::new();
    QUICK.get_or_init(|| {
        let out = ok(&["reproduce", "--quick", "--format", "json"]);
        serde_json::from_str(out.trim()).expect("one JSON object")
    })
}

fn rows() -> &'static [Value] {
    quick()["rows"].as_array().expect("rows")
}

fn row(name: &str) -> &'static Value {
    rows()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name}"))
}

fn augur_value(name: &str) -> f64 {
    row(name)["augur"].as_f64().expect("a number")
}

#[test]
#[cfg_attr(
    not(any(augur_traces, augur_require_traces)),
    ignore = "needs ../shared/traces"
)]
fn quick_run_reports_every_row_with_numbers_and_verdicts() {
    assert_eq!(quick()["quick"], true);
    let names: Vec<&str> = rows().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ROWS);
    for r in rows() {
        let name = &r["name"];
        for key in ["source", "compares", "workload", "paper", "unit", "note"] {
            let v = r[key]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no {key}"));
            assert!(!v.is_empty(), "{name}: empty {key}");
        }
        let (augur, lo, hi) = (
            r["augur"].as_f64().unwrap(),
            r["paper_low"].as_f64().unwrap(),
            r["paper_high"].as_f64().unwrap(),
        );
        assert!(augur.is_finite() && lo <= hi, "{name}: {r}");
        // The magnitude is the position of augur's number against the paper's range.
        let expected = if augur < lo {
            "below"
        } else if augur > hi {
            "above"
        } else {
            "within"
        };
        if r["unit"] != "E[T]" {
            assert_eq!(r["magnitude"], expected, "{name}");
        }
        // The verdict follows from augur's number: a ratio above 1, a reduction above 0.
        let holds = match r["unit"].as_str().unwrap() {
            "x" => augur > 1.0,
            "%" => augur > 0.0,
            "E[T]" => ((augur - lo) / lo).abs() <= 0.02,
            u => panic!("{name}: unit {u}"),
        };
        assert_eq!(
            r["verdict"],
            if holds { "holds" } else { "differs" },
            "{name}"
        );
        // Every row names a workload the output describes.
        let workloads = quick()["workloads"].as_array().unwrap();
        assert!(
            workloads.iter().any(|w| w["name"] == r["workload"]),
            "{name}: workload {} not described",
            r["workload"]
        );
    }
}

#[test]
#[cfg_attr(
    not(any(augur_traces, augur_require_traces)),
    ignore = "needs ../shared/traces"
)]
fn mg1_rows_agree_with_the_published_closed_forms() {
    // The paper's column: Pollaczek-Khinchine's 1 / (1 - 0.8) for FCFS, and the SOAP values
    // of the design notes (exponential sizes and predictions at 0.8) for SPRPT and Trail.
    let published = [
        ("mg1-fcfs", 5.0),
        ("mg1-sprpt", 3.1375),
        ("mg1-trail", 3.1429),
    ];
    for (name, value) in published {
        let paper = row(name)["paper_low"].as_f64().unwrap();
        assert!(
            (paper - value).abs() < 2e-4,
            "{name}: closed form {paper}, published {value}"
        );
    }
    for name in ["mg1-fcfs", "mg1-srpt", "mg1-sprpt", "mg1-trail"] {
        let r = row(name);
        let (sim, closed) = (
            r["augur"].as_f64().unwrap(),
            r["paper_low"].as_f64().unwrap(),
        );
        assert!(
            ((sim - closed) / closed).abs() < 0.02,
            "{name}: simulated {sim}, closed form {closed}"
        );
        assert_eq!(r["verdict"], "holds", "{name}");
    }
    // SRPT (true sizes) beats SPRPT (exponential predictions), which beats FCFS.
    assert!(augur_value("mg1-srpt") < augur_value("mg1-sprpt"));
    assert!(augur_value("mg1-sprpt") < augur_value("mg1-fcfs"));
}

#[test]
#[cfg_attr(
    not(any(augur_traces, augur_require_traces)),
    ignore = "needs ../shared/traces"
)]
fn the_published_directions_hold() {
    for name in [
        "trail",
        "trail-ttft",
        "trail-time",
        "fastserve-mlfq",
        "fastserve-capacity",
    ] {
        let x = augur_value(name);
        assert!(x > 1.0, "{name}: {x}x");
    }
    for name in ["lamps", "lamps-ttft"] {
        let x = augur_value(name);
        assert!(x > 0.0, "{name}: {x}%");
    }
    // Ordering acts on the wait for a batch slot, so TTFT gains more than e2e latency, and
    // ranking by service time (prefill included) gains more than by output tokens on the
    // Azure trace's long prompts: what the notes say.
    assert!(augur_value("trail-ttft") > augur_value("trail"));
    assert!(augur_value("trail-time") > augur_value("trail"));
    assert!(augur_value("lamps-ttft") > augur_value("lamps"));
}

#[test]
#[cfg_attr(
    not(any(augur_traces, augur_require_traces)),
    ignore = "needs ../shared/traces"
)]
fn the_table_prints_the_json_numbers_notes_and_workloads() {
    let table = ok(&["reproduce", "--quick"]);
    for name in ROWS {
        let r = row(name);
        let value = r["augur"].as_f64().unwrap();
        let shown = match r["unit"].as_str().unwrap() {
            "x" => format!("{value:.2}x"),
            "%" => format!("{value:.1}%"),
            _ => format!("{value:.4}"),
        };
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name} in\n{table}"));
        assert!(line.contains(&shown), "{name}: {shown} not in `{line}`");
        assert!(line.contains(r["paper"].as_str().unwrap()), "{line}");
    }
    for needle in [
        "Why augur's numbers differ:",
        "Workloads:",
        "azure_llm_2023_conv.csv",
    ] {
        assert!(table.contains(needle), "no `{needle}` in\n{table}");
    }
}

#[test]
fn a_missing_trace_is_an_error_that_names_it() {
    let o = augur(&["reproduce", "--quick", "--traces", "no-such-folder"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in [
        "no-such-folder/azure_llm_2023_conv.csv",
        "does not exist",
        "--traces",
    ] {
        assert!(err.contains(needle), "no `{needle}` in\n{err}");
    }
    assert!(o.stdout.is_empty(), "nothing is reported as passed");
}
