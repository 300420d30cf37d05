//! `augur simulate --timeline`: the Chrome trace-event file, checked against the run's own
//! per-request CSV and summary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
mod cli_support;
use cli_support::{augur, ok};

use serde_json::Value;

/// A small workload that queues, preempts (160 KV blocks) and pauses on tool calls.
const TRACE: &str = "synthetic:n=200,rate=20,prompt=lognormal:256:0.8,output=lognormal:64:1,\
                     tools=0.3,tool_duration=exp:0.5,seed=3";
const N: usize = 200;
const MAX_RUNNING: u64 = 16;
const KV_BLOCKS: u64 = 160;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("augur-timeline-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "simulate",
        "--trace",
        TRACE,
        "--policy",
        "sprpt",
        "--max-running",
        "16",
        "--kv-blocks",
        "160",
        "--format",
        "json",
    ];
    v.extend_from_slice(extra);
    v
}

/// The summary JSON without its wall-clock time.
fn summary(stdout: &str) -> serde_json::Map<String, Value> {
    let Value::Object(mut m) = serde_json::from_str(stdout.trim()).expect("summary JSON") else {
        panic!("not an object: {stdout}");
    };
    m.remove("wall_s");
    m
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer `{key}` in {v}"))
}

/// One row of `--requests-csv`.
#[derive(Debug, serde::Deserialize)]
struct Row {
    id: u64,
    arrival_s: f64,
    output_tokens: u32,
    first_token_s: Option<f64>,
    finish_s: Option<f64>,
    rejected: Option<String>,
    preemptions: u32,
}

fn rows(path: &Path) -> Vec<Row> {
    csv::Reader::from_path(path)
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn us(s: f64) -> u64 {
    (s * 1e6).round() as u64
}

/// Runs the workload with a timeline; returns the events, the summary and the CSV rows.
fn timeline_run(name: &str) -> (Vec<Value>, serde_json::Map<String, Value>, Vec<Row>) {
    let dir = temp_dir(name);
    let tl = dir.join("run.json");
    let csv = dir.join("requests.csv");
    let out = ok(&run_args(&[
        "--timeline",
        tl.to_str().unwrap(),
        "--requests-csv",
        csv.to_str().unwrap(),
    ]));
    let text = std::fs::read_to_string(&tl).unwrap();
    let doc: Value = serde_json::from_str(&text).expect("the timeline is JSON");
    assert_eq!(doc["displayTimeUnit"], "ms");
    assert_eq!(doc["otherData"]["policy"], "sprpt");
    assert_eq!(u(&doc["otherData"], "requests"), N as u64);
    let events = doc["traceEvents"]
        .as_array()
        .expect("a traceEvents array")
        .clone();
    (events, summary(&out), rows(&csv))
}

#[test]
fn every_request_has_a_track_of_ordered_spans_matching_its_record() {
    let (events, _, rows) = timeline_run("tracks");
    assert_eq!(rows.len(), N);
    let mut per: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    let mut named = 0;
    for e in &events {
        for k in ["name", "ph", "pid", "tid", "ts"] {
            assert!(e.get(k).is_some(), "event without `{k}`: {e}");
        }
        if e["pid"] == 2 {
            if e["ph"] == "M" {
                named += usize::from(e["name"] == "thread_name");
            } else {
                per.entry(u(e, "tid")).or_default().push(e);
            }
        }
    }
    assert_eq!(named, N, "one named track per request");
    assert_eq!(per.len(), N, "every request has events");
    let (mut pauses, mut preempted) = (0, 0);
    for row in &rows {
        assert!(row.rejected.is_none(), "{row:?}");
        let evs = &per[&row.id];
        let mut spans: Vec<&Value> = evs.iter().copied().filter(|e| e["ph"] == "X").collect();
        spans.sort_by_key(|e| u(e, "ts"));
        let instants: Vec<&Value> = evs.iter().copied().filter(|e| e["ph"] == "i").collect();
        // Spans tile the request's life: from its arrival, no gap, no overlap, to its finish.
        let mut cursor = us(row.arrival_s);
        for s in &spans {
            assert_eq!(
                u(s, "ts"),
                cursor,
                "request {}: gap or overlap at {s}",
                row.id
            );
            cursor = u(s, "ts") + u(s, "dur");
        }
        let finish = us(row.finish_s.expect("completed"));
        assert_eq!(
            cursor, finish,
            "request {}: spans end at its finish",
            row.id
        );
        // queued -> prefill -> decode: the first work is a prefill chunk, and the first
        // prefill that samples ends at the first token.
        let kinds: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
        let first_work = kinds.iter().position(|k| *k != "queued").unwrap();
        assert_eq!(
            kinds[first_work], "prefill",
            "request {}: {kinds:?}",
            row.id
        );
        assert!(kinds[..first_work].iter().all(|k| *k == "queued"));
        let first_sample = spans
            .iter()
            .find(|s| s["name"] == "prefill" && s["args"]["samples"] == true)
            .unwrap();
        assert_eq!(
            u(first_sample, "ts") + u(first_sample, "dur"),
            us(row.first_token_s.unwrap()),
            "request {}: first token",
            row.id
        );
        // Decode tokens + sampling prefills = the output (at least 1: the engine samples once).
        let sampled: u64 = spans
            .iter()
            .map(|s| match s["name"].as_str().unwrap() {
                "decode" => u(&s["args"], "tokens"),
                "prefill" => u64::from(s["args"]["samples"] == true),
                _ => 0,
            })
            .sum();
        assert_eq!(
            sampled,
            u64::from(row.output_tokens.max(1)),
            "request {}",
            row.id
        );
        // Exactly one finish, at the end; every other instant sits on a span boundary and is
        // followed by the span it explains.
        let finished: Vec<_> = instants
            .iter()
            .filter(|e| e["name"] == "finished")
            .collect();
        assert_eq!(finished.len(), 1, "request {}", row.id);
        assert_eq!(u(finished[0], "ts"), finish);
        assert_eq!(
            u(&finished[0]["args"], "preemptions"),
            u64::from(row.preemptions)
        );
        for i in &instants {
            let ts = u(i, "ts");
            let next = spans.iter().find(|s| u(s, "ts") == ts);
            match i["name"].as_str().unwrap() {
                "preempted" => {
                    preempted += 1;
                    let next = next.expect("a span after a preemption");
                    assert_eq!(next["name"], "queued");
                    assert_eq!(next["args"]["after"], "preemption");
                    assert!(ts > us(row.arrival_s) && ts < finish);
                }
                "pause" => {
                    pauses += 1;
                    let next = next.expect("a span after a pause");
                    assert_eq!(next["name"], "paused", "request {}", row.id);
                }
                "finished" => {}
                other => panic!("unexpected instant {other}"),
            }
        }
        assert_eq!(
            instants.iter().filter(|e| e["name"] == "preempted").count(),
            row.preemptions as usize
        );
    }
    assert!(preempted > 0, "the workload preempts");
    assert!(pauses > 0, "the workload pauses on tool calls");
}

#[test]
fn counters_agree_with_the_summary() {
    let (events, summary, _) = timeline_run("counters");
    let counters = |name: &str| -> Vec<&Value> {
        let mut v: Vec<&Value> = events
            .iter()
            .filter(|e| e["ph"] == "C" && e["name"] == name)
            .collect();
        v.sort_by_key(|e| u(e, "ts"));
        v
    };
    let requests = counters("requests");
    assert!(!requests.is_empty());
    let max_running = requests
        .iter()
        .map(|e| u(&e["args"], "running"))
        .max()
        .unwrap();
    assert!(max_running <= MAX_RUNNING, "{max_running}");
    assert!(max_running > 1, "batches of more than one request");
    // The run ends idle.
    assert_eq!(u(&requests.last().unwrap()["args"], "running"), 0);
    let kv = counters("kv blocks");
    assert_eq!(kv.len(), requests.len());
    assert!(kv.iter().all(|e| u(&e["args"], "device") <= KV_BLOCKS));
    assert!(kv.iter().any(|e| u(&e["args"], "device") > KV_BLOCKS / 2));
    // Prefill tokens per iteration = the prefill spans' tokens; decode tokens = decode spans'.
    let sum = |series: &str| -> u64 {
        counters("tokens")
            .iter()
            .map(|e| u(&e["args"], series))
            .sum()
    };
    let span_tokens = |name: &str| -> u64 {
        events
            .iter()
            .filter(|e| e["ph"] == "X" && e["name"] == name)
            .map(|e| u(&e["args"], "tokens"))
            .sum()
    };
    assert_eq!(sum("prefill"), span_tokens("prefill"));
    assert_eq!(sum("decode"), span_tokens("decode"));
    let done = counters("done");
    let last = &done.last().expect("a done counter")["args"];
    assert_eq!(
        u(last, "finished"),
        u(&Value::Object(summary.clone()), "requests_completed")
    );
    assert_eq!(
        u(last, "rejected"),
        u(&Value::Object(summary.clone()), "requests_rejected")
    );
    let finished: Vec<u64> = done.iter().map(|e| u(&e["args"], "finished")).collect();
    assert!(finished.windows(2).all(|w| w[0] <= w[1]), "running totals");
    let preemptions: u64 = [
        "preemptions_recompute",
        "preemptions_swap",
        "preemptions_keep",
    ]
    .iter()
    .map(|k| summary[*k].as_u64().unwrap())
    .sum();
    let instants = events
        .iter()
        .filter(|e| e["ph"] == "i" && e["name"] == "preempted")
        .count() as u64;
    assert_eq!(instants, preemptions);
    // The last event ends at the simulated end of the run.
    let end = events
        .iter()
        .map(|e| u(e, "ts") + e.get("dur").and_then(Value::as_u64).unwrap_or(0))
        .max()
        .unwrap();
    assert_eq!(end, us(summary["simulated_s"].as_f64().unwrap()));
}

#[test]
fn the_run_is_the_same_with_and_without_a_timeline() {
    let dir = temp_dir("same");
    let (a, b, tl) = (dir.join("a.csv"), dir.join("b.csv"), dir.join("run.json"));
    let plain = ok(&run_args(&["--requests-csv", a.to_str().unwrap()]));
    let with = ok(&run_args(&[
        "--requests-csv",
        b.to_str().unwrap(),
        "--timeline",
        tl.to_str().unwrap(),
    ]));
    assert_eq!(summary(&plain), summary(&with));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn a_bad_timeline_path_fails_before_the_run_naming_the_flag() {
    let dir = temp_dir("badpath");
    let csv = dir.join("requests.csv");
    let bad = dir.join("no-such-dir").join("run.json");
    let o = augur(&run_args(&[
        "--timeline",
        bad.to_str().unwrap(),
        "--requests-csv",
        csv.to_str().unwrap(),
    ]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--timeline"), "{err}");
    assert!(err.contains("no-such-dir"), "{err}");
    assert!(o.stdout.is_empty(), "no summary: the run did not happen");
    assert!(!csv.exists(), "nothing written after the run");
}

#[test]
fn too_many_requests_for_a_timeline_are_refused() {
    let dir = temp_dir("cap");
    let tl = dir.join("run.json");
    let o = augur(&run_args(&[
        "--timeline",
        tl.to_str().unwrap(),
        "--timeline-max-requests",
        "100",
    ]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--timeline-max-requests 100"), "{err}");
    assert!(err.contains("200 requests"), "{err}");
    assert!(!tl.exists(), "no file for a refused run");
    for bad in ["0", "-3", "x", "100000001"] {
        let o = augur(&run_args(&["--timeline-max-requests", bad]));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--timeline-max-requests"), "{err}");
        assert!(err.contains("1..=100000000"), "{bad}: {err}");
    }
}
