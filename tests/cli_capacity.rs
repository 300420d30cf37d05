//! `augur capacity`: the bisection over the arrival-rate scale, checked against `simulate` at
//! the scales it reports, and its bounds and flag errors.

mod cli_support;
use cli_support::{augur, ok};

use serde_json::Value;

/// A small workload that queues (fast in the test profile).
const TRACE: &str = "synthetic:n=200,rate=20,prompt=lognormal:256:0.8,output=lognormal:64:1,seed=3";
const SLO: [&str; 4] = ["--slo-ttft", "0.5", "--slo-tpot", "0.05"];

/// Runs and asserts a usage failure (exit code 2) whose stderr contains every needle.
fn fails(args: &[&str], needles: &[&str]) {
    let o = augur(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "augur {args:?}:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "augur {args:?}: no `{n}` in\n{err}");
    }
}

fn capacity(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["capacity", "--trace", TRACE, "--kv-blocks", "512"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn capacity_json(extra: &[&str]) -> Value {
    let mut args = capacity(extra);
    args.extend(["--format".into(), "json".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    serde_json::from_str(ok(&args).trim()).expect("one JSON object")
}

/// The fraction of all requests meeting [`SLO`] in `simulate` at `scale`.
fn simulated_fraction(policy: &str, scale: &str) -> f64 {
    let mut args = vec![
        "simulate",
        "--trace",
        TRACE,
        "--kv-blocks",
        "512",
        "--policy",
        policy,
        "--rate-scale",
        scale,
        "--format",
        "json",
    ];
    args.extend(SLO);
    let s: Value = serde_json::from_str(ok(&args).trim()).unwrap();
    // slo_attainment is over completed requests; capacity counts all of them.
    let completed = s["requests_completed"].as_f64().unwrap();
    let total = s["requests_total"].as_f64().unwrap();
    s["slo_attainment"].as_f64().unwrap() * completed / total
}

#[test]
fn meeting_fraction_falls_with_load_and_capacity_sits_on_the_boundary() {
    let grid = ["0.25", "0.5", "1", "1.5", "2", "4", "8"];
    let fractions: Vec<f64> = grid.iter().map(|x| simulated_fraction("fcfs", x)).collect();
    assert!(
        fractions.windows(2).all(|w| w[1] <= w[0] + 1e-12),
        "meeting fraction not falling with load: {fractions:?}"
    );
    assert!(
        fractions[0] >= 0.9 && fractions[grid.len() - 1] < 0.9,
        "{fractions:?}"
    );
    let tol = 0.01;
    let out = capacity_json(&[
        "--policies",
        "fcfs",
        "--slo-ttft",
        "0.5",
        "--slo-tpot",
        "0.05",
        "--tolerance",
        "0.01",
    ]);
    assert_eq!(out["slo_fraction"], 0.9);
    assert!(out["load"].as_str().unwrap().contains("arrival rate"));
    let r = &out["results"][0];
    assert_eq!(r["policy"], "fcfs");
    assert!(r["note"].is_null(), "{r}");
    let max = r["max_rate_scale"].as_f64().expect("a capacity");
    let fail = r["fails_at_rate_scale"].as_f64().expect("a failing scale");
    assert!(
        max < fail && fail <= max * (1.0 + tol) * (1.0 + 1e-12),
        "{r}"
    );
    // The grid brackets it the same way.
    for (x, f) in grid.iter().zip(&fractions) {
        let x: f64 = x.parse().unwrap();
        if *f >= 0.9 {
            assert!(x < fail, "{x} meets but capacity says {fail} fails: {r}");
        } else {
            assert!(x > max, "{x} fails but capacity says {max} meets: {r}");
        }
    }
    // What it reports at both ends is what simulate measures there.
    let at_max = simulated_fraction("fcfs", &max.to_string());
    assert_eq!(r["slo_fraction_met"].as_f64().unwrap(), at_max);
    assert!(at_max >= 0.9);
    let at_fail = simulated_fraction("fcfs", &fail.to_string());
    assert_eq!(r["slo_fraction_at_fail"].as_f64().unwrap(), at_fail);
    assert!(at_fail < 0.9);
    // Offered load: 200 requests over the scaled arrival span (~20 req/s at scale 1).
    let offered = r["offered_req_per_s"].as_f64().unwrap();
    assert!((offered / max - 20.0).abs() < 3.0, "{offered} at {max}");
    assert!(r["achieved_req_per_s"].as_f64().unwrap() > 0.0);
    // A stricter fraction can only lower the capacity.
    let strict = capacity_json(&[
        "--policies",
        "fcfs",
        "--slo-ttft",
        "0.5",
        "--slo-tpot",
        "0.05",
        "--slo-fraction",
        "0.99",
    ]);
    let strict_max = strict["results"][0]["max_rate_scale"].as_f64();
    assert!(strict_max.is_none_or(|s| s <= max), "{strict}");
}

#[test]
fn a_policy_that_always_meets_reports_the_upper_bound_with_a_note() {
    let out = capacity_json(&[
        "--policies",
        "fcfs,sprpt",
        "--slo-ttft",
        "1000",
        "--max-scale",
        "4",
    ]);
    for r in out["results"].as_array().unwrap() {
        assert_eq!(r["max_rate_scale"], 4.0, "{r}");
        assert_eq!(r["slo_fraction_met"], 1.0, "{r}");
        assert!(r["fails_at_rate_scale"].is_null(), "{r}");
        assert_eq!(r["runs"], 1, "{r}");
        let note = r["note"].as_str().expect("a note");
        assert!(note.contains("--max-scale 4"), "{note}");
    }
    let args = capacity(&["--slo-ttft", "1000", "--max-scale", "4"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let table = ok(&args);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("fcfs ") && l.contains("4x*")),
        "{table}"
    );
    assert!(
        table.contains("* sprpt: meets the SLO at --max-scale 4"),
        "{table}"
    );
}

#[test]
fn a_policy_that_never_meets_reports_none() {
    let out = capacity_json(&["--policies", "sprpt", "--slo-ttft", "0.000001"]);
    let r = &out["results"][0];
    assert!(r["max_rate_scale"].is_null(), "{r}");
    assert!(r["slo_fraction_met"].is_null(), "{r}");
    assert!(r["offered_req_per_s"].is_null(), "{r}");
    assert_eq!(r["fails_at_rate_scale"], 0.1, "{r}");
    assert_eq!(r["slo_fraction_at_fail"], 0.0, "{r}");
    assert_eq!(r["runs"], 2, "the upper bound, then the lower one: {r}");
    assert!(
        r["note"].as_str().unwrap().contains("--min-scale 0.1"),
        "{r}"
    );
    let args = capacity(&["--policies", "sprpt", "--slo-ttft", "0.000001"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let table = ok(&args);
    let row = table.lines().find(|l| l.starts_with("sprpt ")).unwrap();
    assert!(row.contains("none*"), "{table}");
    // CSV: one row per policy, empty cells for none.
    let args = capacity(&[
        "--policies",
        "sprpt",
        "--slo-ttft",
        "0.000001",
        "--format",
        "csv",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let csv = ok(&args);
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("policy,predictor,max_rate_scale,"),
        "{csv}"
    );
    assert!(lines.next().unwrap().starts_with("sprpt,oracle,,"), "{csv}");
}

#[test]
fn bad_flags_give_range_messages() {
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v = capacity(&SLO);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: [(&[&str], &[&str]); 10] = [
        (&["--slo-fraction", "0"], &["--slo-fraction", "(0, 1]"]),
        (&["--slo-fraction", "1.5"], &["--slo-fraction", "(0, 1]"]),
        (
            &["--slo-fraction", "x"],
            &["--slo-fraction", "not a number"],
        ),
        (&["--min-scale", "0"], &["--min-scale", "[1e-6, 1e6]"]),
        (&["--max-scale", "1e7"], &["--max-scale", "[1e-6, 1e6]"]),
        (&["--tolerance", "0"], &["--tolerance", "[1e-6, 1]"]),
        (&["--tolerance", "2"], &["--tolerance", "[1e-6, 1]"]),
        (
            &["--min-scale", "4", "--max-scale", "2"],
            &["--min-scale 4 must be below --max-scale 2"],
        ),
        (&["--policies", "nope"], &["--policies", "nope"]),
        (&["--slo-ttft", "-1"], &["--slo-ttft"]),
    ];
    for (extra, needles) in cases {
        let args = with(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(&args, needles);
    }
    let args = capacity(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(
        &args,
        &["capacity needs an SLO", "--slo-ttft", "--slo-tpot"],
    );
}
