//! The `augur` command under hostile input (issue 9): absurd sizes, out-of-range values,
//! negative numbers, huge and tiny magnitudes, empty results. Every case must end in a clear
//! message that names the flag, file or line and the valid range, never a panic, an abort or
//! a silent wrong answer, and every refusal must come quickly, before anything big is
//! allocated.
//!
//! `AUGUR_BIN` runs the tests against another build of the binary (how they were checked to
//! fail before the fixes).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    std::env::var_os("AUGUR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_augur")))
}

fn augur(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the augur binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and asserts success; returns stdout.
fn ok(args: &[&str]) -> String {
    let o = augur(args);
    assert!(
        o.status.success(),
        "augur {args:?} failed ({:?}):\n{}",
        o.status,
        stderr(&o)
    );
    stdout(&o)
}

/// Runs and asserts a clean usage failure (exit code 2, no panic, no abort) whose stderr
/// mentions every needle; returns stderr.
fn refused(args: &[&str], needles: &[&str]) -> String {
    let o = augur(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "augur {args:?}: expected a usage error (exit 2), got {:?}\nstdout:\n{}\nstderr:\n{err}",
        o.status,
        stdout(&o)
    );
    assert!(!err.contains("panicked"), "augur {args:?} panicked:\n{err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "augur {args:?}: stderr does not mention `{needle}`:\n{err}"
        );
    }
    err
}

/// Like [`refused`], and the refusal must come within `limit`.
fn refused_quickly(args: &[&str], needles: &[&str], limit: Duration) -> String {
    let start = Instant::now();
    let err = refused(args, needles);
    let took = start.elapsed();
    assert!(took < limit, "augur {args:?} took {took:?} to refuse");
    err
}

fn json(line: &str) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(line.trim()) {
        Ok(serde_json::Value::Object(m)) => m,
        other => panic!("not a JSON object: {other:?}\n{line}"),
    }
}

/// A tiny synthetic workload.
const TINY: &str = "synthetic:n=20,rate=20,prompt=lognormal:128:0.5,output=lognormal:16:0.5,seed=1";

// ---------------------------------------------------------------------------------------------
// Item 13: out-of-range engine and policy values name the flag and the valid range.

#[test]
fn out_of_range_engine_values_name_the_flag_and_the_range() {
    let cases: [(&[&str], &[&str]); 6] = [
        (&["--watermark", "5"], &["--watermark", "[0, 1)"]),
        (&["--max-running", "0"], &["--max-running", "≥ 1"]),
        (&["--token-budget", "0"], &["--token-budget", "≥ 1"]),
        (&["--max-preemptions", "0"], &["--max-preemptions", "≥ 1"]),
        (
            &["--policy", "mlfq", "--mlfq-quantum", "0"],
            &["--mlfq-quantum", "≥ 1"],
        ),
        (
            &["--policy", "mlfq", "--mlfq-levels", "65"],
            &["--mlfq-levels", "1..=64"],
        ),
    ];
    for (flags, needles) in cases {
        let mut args = vec!["simulate", "--trace", TINY];
        args.extend_from_slice(flags);
        refused(&args, needles);
    }
}

#[test]
fn derived_kv_capacity_errors_name_the_flag_that_was_set() {
    let err = refused(
        &["simulate", "--trace", TINY, "--block-size", "4294967295"],
        &["--block-size", "--kv-blocks"],
    );
    assert!(!err.contains("device_blocks"), "{err}");
    let err = refused(
        &[
            "simulate",
            "--trace",
            TINY,
            "--model",
            "llama-3.1-8b-tp1000000",
        ],
        &["--model", "tensor-parallel degree", "1..=1024"],
    );
    assert!(!err.contains("device_blocks"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Item 12: negative numbers without `=` reach the value parser.

#[test]
fn negative_values_get_a_range_message_not_unexpected_argument() {
    let cases: [(&[&str], &str); 5] = [
        (&["simulate", "--trace", TINY, "--rate-scale", "-1"], "> 0"),
        (&["simulate", "--trace", TINY, "--margin", "-1"], "≥ 0"),
        (&["simulate", "--trace", TINY, "--aging", "-0.5"], "≥ 0"),
        (
            &["simulate", "--trace", TINY, "--max-running", "-1"],
            "0..=",
        ),
        (
            &["mg1", "--policy", "fcfs", "--load", "-1", "--jobs", "100"],
            "[1e-6, 1)",
        ),
    ];
    for (args, range) in cases {
        let err = refused(args, &[range]);
        assert!(!err.contains("unexpected argument"), "{args:?}:\n{err}");
    }
    let err = refused(
        &[
            "sweep",
            "--trace",
            TINY,
            "--policies",
            "fcfs",
            "--rate-scales",
            "-1",
            "--out",
            "x",
        ],
        &["> 0"],
    );
    assert!(!err.contains("unexpected argument"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Item 10: nothing completed → no latency, not 0.00 ms.

/// Every request needs more KV blocks than the device has.
const NOTHING_FITS: &[&str] = &[
    "simulate",
    "--trace",
    "synthetic:n=5,prompt=const:5000,seed=1",
    "--kv-blocks",
    "10",
];

#[test]
fn latencies_of_a_run_where_nothing_completes_are_null_empty_and_dash() {
    let mut args = NOTHING_FITS.to_vec();
    args.extend(["--format", "json"]);
    let m = json(&ok(&args));
    assert_eq!(m["requests_completed"], 0);
    for k in [
        "mean_e2e_s",
        "p50_e2e_s",
        "p90_e2e_s",
        "p99_e2e_s",
        "mean_ttft_s",
        "p99_ttft_s",
        "mean_tpot_s",
        "p99_tpot_s",
    ] {
        assert!(m[k].is_null(), "{k} = {}", m[k]);
    }
    let mut args = NOTHING_FITS.to_vec();
    args.extend(["--format", "csv"]);
    let csv = ok(&args);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row = lines.next().unwrap();
    let mut rdr = csv_row(row);
    let i = header.iter().position(|h| *h == "mean_e2e_s").unwrap();
    assert_eq!(rdr.remove(i), "", "mean_e2e_s in {row}");
    let table = ok(NOTHING_FITS);
    let e2e = table
        .lines()
        .find(|l| l.starts_with("e2e latency"))
        .unwrap();
    assert!(!e2e.contains("0.00 ms") && e2e.contains('-'), "{e2e}");
}

/// Splits one CSV line into cells, quotes honoured.
fn csv_row(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

// ---------------------------------------------------------------------------------------------
// Item 11: rejection counts by reason in JSON and in the table.

#[test]
fn rejections_are_counted_by_reason_in_json_and_the_table() {
    let mut args = NOTHING_FITS.to_vec();
    args.extend(["--format", "json"]);
    let m = json(&ok(&args));
    let reasons = m["requests_rejected_by_reason"]
        .as_object()
        .expect("requests_rejected_by_reason is an object");
    let total: u64 = reasons.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 5, "{reasons:?}");
    // One reason for all five, without the per-request detail (the block count).
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons.keys().all(|k| k.contains("can never fit")),
        "{reasons:?}"
    );
    let table = ok(NOTHING_FITS);
    let line = table
        .lines()
        .find(|l| l.starts_with("rejected by reason"))
        .unwrap_or_else(|| panic!("no reasons in the table:\n{table}"));
    assert!(
        line.contains("5 ") && line.contains("can never fit"),
        "{line}"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 1: runs too big for memory are refused up front, with the estimate and the flag.

#[test]
fn runs_too_big_for_memory_are_refused_before_allocating() {
    let quick = Duration::from_secs(5);
    for trace in ["synthetic:n=1099511627776", "synthetic:n=100000000"] {
        refused_quickly(
            &["simulate", "--trace", trace],
            &["GiB", "--max-memory"],
            quick,
        );
    }
    refused_quickly(
        &[
            "simulate",
            "--trace",
            "synthetic:n=20000000",
            "--kv-blocks",
            "1",
        ],
        &["GiB", "--max-memory"],
        quick,
    );
    refused_quickly(
        &[
            "sweep",
            "--trace",
            "synthetic:n=100000000",
            "--policies",
            "fcfs",
            "--out",
            "target/never-written",
        ],
        &["GiB", "--max-memory"],
        quick,
    );
    // The limit is the flag's: a small trace passes under the default and fails under a tiny
    // limit.
    ok(&["simulate", "--trace", TINY]);
    refused(
        &["simulate", "--trace", TINY, "--max-memory", "0.0001"],
        &["--max-memory"],
    );
}

/// A fresh temporary directory for this test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("augur-cli-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes an Azure trace of `rows` (`TIMESTAMP,ContextTokens,GeneratedTokens` lines).
fn azure_file(name: &str, rows: &[&str]) -> String {
    let path = temp_dir(name).join(format!("{name}.csv"));
    let mut text = String::from("TIMESTAMP,ContextTokens,GeneratedTokens\n");
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Item 3: absurd job counts are refused with the range.

#[test]
fn absurd_mg1_job_counts_are_refused_with_the_range() {
    refused_quickly(
        &[
            "mg1",
            "--policy",
            "fcfs",
            "--load",
            "0.5",
            "--jobs",
            "18446744073709551615",
        ],
        &["--jobs", "1..=1000000000"],
        Duration::from_secs(5),
    );
    refused(
        &["mg1", "--policy", "fcfs", "--load", "0.5", "--jobs", "0"],
        &["--jobs", "1..="],
    );
}

// ---------------------------------------------------------------------------------------------
// Item 4: Azure timestamps past 2262 keep their distance.

#[test]
fn azure_rows_dated_2300_are_simulated_at_their_true_time() {
    let path = azure_file(
        "far-future",
        &["2023-01-01 00:00:00,100,2", "2300-01-01 00:00:00,100,2"],
    );
    let m = json(&ok(&["simulate", "--trace", &path, "--format", "json"]));
    let simulated = m["simulated_s"].as_f64().unwrap();
    // 277 years with 67 leap days: 8.741e9 s (i64 nanoseconds wrapped it to 9.705e9).
    assert!(
        (simulated - 8.7413e9).abs() < 1e6,
        "simulated_s = {simulated}"
    );
    assert_eq!(m["requests_completed"], 2);
}

// ---------------------------------------------------------------------------------------------
// Item 5: tool durations too long for the clock are refused, not wrapped to zero.

#[test]
fn huge_tool_durations_are_refused_with_the_key_and_range() {
    refused(
        &[
            "simulate",
            "--trace",
            "synthetic:n=10,tools=1,tool_duration=1e14",
        ],
        &["tool_duration", "at most"],
    );
    // A long but representable duration is simulated: the run lasts at least that long.
    let m = json(&ok(&[
        "simulate",
        "--trace",
        "synthetic:n=3,tools=1,tool_duration=1e6,output=const:8",
        "--format",
        "json",
    ]));
    assert!(m["simulated_s"].as_f64().unwrap() >= 1e6, "{m:?}");
}

// ---------------------------------------------------------------------------------------------
// Item 6: mg1's σ and load are range-checked like simulate's.

#[test]
fn mg1_sigma_and_load_out_of_range_are_refused() {
    for sigma in ["1000", "10", "5.5"] {
        let service = format!("lognormal:{sigma}");
        refused(
            &[
                "mg1",
                "--policy",
                "fcfs",
                "--load",
                "0.5",
                "--service",
                &service,
                "--jobs",
                "100",
            ],
            &["--service", "(0, 5]"],
        );
    }
    let err = refused(
        &[
            "mg1", "--policy", "fcfs", "--load", "1e-300", "--jobs", "100",
        ],
        &["--load", "[1e-6, 1)", "1e-300"],
    );
    assert!(err.len() < 400, "the value is printed compactly:\n{err}");
    refused(
        &["mg1", "--policy", "fcfs", "--load", "1", "--jobs", "100"],
        &["[1e-6, 1)"],
    );
    let out = ok(&[
        "mg1",
        "--policy",
        "fcfs",
        "--load",
        "0.5",
        "--service",
        "lognormal:1",
        "--jobs",
        "20000",
        "--format",
        "json",
    ]);
    let m = json(&out);
    assert!(m["mean_response_time"].as_f64().unwrap() > 0.5, "{out}");
}

// ---------------------------------------------------------------------------------------------
// Item 7: a request with 0 output tokens counts 0 tokens in throughput.

#[test]
fn zero_output_requests_count_zero_output_tokens() {
    let path = azure_file(
        "zero-output",
        &["2023-01-01 00:00:00,100,0", "2023-01-01 00:00:01,100,0"],
    );
    let m = json(&ok(&["simulate", "--trace", &path, "--format", "json"]));
    assert_eq!(m["requests_completed"], 2);
    assert_eq!(m["throughput_output_tokens_per_s"], 0.0, "{m:?}");
    // They still run their prefill: TTFT is its time.
    assert!(m["mean_ttft_s"].as_f64().unwrap() > 0.0);
    let dir = temp_dir("zero-output-records");
    let csv = dir.join("requests.csv");
    ok(&[
        "simulate",
        "--trace",
        &path,
        "--requests-csv",
        csv.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&csv).unwrap();
    let row = csv_row(text.lines().nth(1).unwrap());
    assert_eq!(row[3], "0", "output_tokens in {text}");
}

// ---------------------------------------------------------------------------------------------
// Item 8: requests longer than the model's context window are rejected with that reason.

#[test]
fn requests_past_the_context_window_are_rejected_with_the_reason() {
    let path = azure_file(
        "long-context",
        &[
            "2023-01-01 00:00:00,200000,10",
            "2023-01-01 00:00:01,1000,10",
        ],
    );
    let m = json(&ok(&[
        "simulate",
        "--trace",
        &path,
        "--format",
        "json",
        "--kv-blocks",
        "20000",
    ]));
    assert_eq!(m["requests_completed"], 1, "{m:?}");
    assert_eq!(m["requests_rejected"], 1, "{m:?}");
    let reasons = m["requests_rejected_by_reason"].as_object().unwrap();
    assert!(
        reasons
            .keys()
            .any(|k| k.contains("context window of 131072 tokens")),
        "{reasons:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 9: a rate so low that arrivals leave the clock is a clear error.

#[test]
fn a_rate_too_low_for_the_clock_is_a_clear_error() {
    let err = refused(
        &["simulate", "--trace", "synthetic:n=10,rate=1e-14"],
        &["`rate`", "clock range"],
    );
    assert!(!err.contains("went backwards"), "{err}");
    assert!(
        err.contains("rate=1e-14"),
        "the spec is printed compactly:\n{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 14: huge and tiny numbers print compactly, and output names are checked first.

#[test]
fn huge_rate_scales_print_compactly_and_name_files_that_fit() {
    let table = ok(&["simulate", "--trace", TINY, "--rate-scale", "1e300"]);
    assert!(table.lines().all(|l| l.len() < 400), "{table}");
    assert!(table.contains("1e300x"), "{table}");
    let out = temp_dir("huge-rate-sweep");
    let text = ok(&[
        "sweep",
        "--trace",
        TINY,
        "--policies",
        "fcfs",
        "--rate-scales",
        "1e300,1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(text.lines().all(|l| l.len() < 400), "{text}");
    assert!(out.join("cdf_1e300.svg").is_file());
    // A name the file system refuses fails before any run.
    let deep = out.join("x".repeat(300));
    let start = Instant::now();
    let o = augur(&[
        "sweep",
        "--trace",
        TINY,
        "--policies",
        "fcfs",
        "--out",
        deep.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(start.elapsed() < Duration::from_secs(10));
    let err = refused(
        &["simulate", "--trace", TINY, "--rate-scale", "-1e300"],
        &["> 0"],
    );
    assert!(err.contains("-1e300") && err.len() < 400, "{err}");
}
