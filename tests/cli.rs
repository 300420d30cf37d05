//! The `augur` binary end to end: every subcommand's output and the errors of bad input.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
mod cli_support;
use cli_support::{augur, ok, stderr, stdout};

/// A small synthetic workload that still queues (fast in the test profile).
const SMALL: &str = "synthetic:n=200,rate=20,prompt=lognormal:256:0.8,output=lognormal:64:1,seed=3";

/// The keys `simulate --format json` must print: the run label, then `Summary`'s fields.
const JSON_KEYS: [&str; 38] = [
    "policy",
    "predictor",
    "rate_scale",
    "trace",
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

/// Runs and asserts a clean failure naming `needle` on stderr; returns the exit code.
fn fails(args: &[&str], needle: &str) -> i32 {
    let o = augur(args);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "augur {args:?} succeeded:\n{}",
        stdout(&o)
    );
    assert!(!err.contains("panicked"), "augur {args:?} panicked:\n{err}");
    assert!(
        err.contains(needle),
        "augur {args:?}: stderr does not mention `{needle}`:\n{err}"
    );
    o.status.code().expect("exited, not killed")
}

/// A fresh temporary directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("augur-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn json(line: &str) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str::<serde_json::Value>(line.trim()) {
        Ok(serde_json::Value::Object(m)) => m,
        other => panic!("not a JSON object: {other:?}\n{line}"),
    }
}

fn keys(m: &serde_json::Map<String, serde_json::Value>) -> BTreeSet<String> {
    m.keys().cloned().collect()
}

fn demo_policies_present(out: &str) {
    for p in ["fcfs", "las", "sjf", "sprpt", "trail", "memory-time"] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("{p} "))),
            "no row for {p}:\n{out}"
        );
    }
    assert!(out.contains("lognormal:1"), "{out}");
    assert!(out.contains("augur simulate --help"), "{out}");
}

#[test]
fn demo_prints_every_policy() {
    let out = ok(&["demo", "--requests", "300"]);
    demo_policies_present(&out);
    assert!(
        out.lines().next().unwrap().starts_with("augur demo:"),
        "{out}"
    );
}

#[test]
fn no_arguments_runs_the_demo() {
    // The full demo: 3,000 requests × 10 runs, well under a second in release.
    let out = ok(&[]);
    demo_policies_present(&out);
    assert!(out.contains("3000/3000"), "{out}");
}

#[test]
fn simulate_json_has_exactly_the_summary_keys() {
    let out = ok(&[
        "simulate",
        "--trace",
        SMALL,
        "--policy",
        "sprpt",
        "--predictor",
        "lognormal:1",
        "--kv-blocks",
        "512",
        "--format",
        "json",
    ]);
    let m = json(&out);
    let expected: BTreeSet<String> = JSON_KEYS.iter().map(|s| s.to_string()).collect();
    assert_eq!(keys(&m), expected);
    assert_eq!(m["policy"], "sprpt");
    assert_eq!(m["predictor"], "lognormal:1");
    assert_eq!(m["requests_total"], 200);
    assert_eq!(m["requests_completed"], 200);
    // The library's constants agree.
    let lib: BTreeSet<String> = augur::report::RunLabel::FIELDS
        .iter()
        .chain(augur::report::SUMMARY_FIELDS.iter())
        .map(|s| s.to_string())
        .collect();
    assert_eq!(lib, expected);
}

#[test]
fn simulate_slo_fills_goodput() {
    let out = ok(&[
        "simulate",
        "--trace",
        SMALL,
        "--format",
        "json",
        "--slo-ttft",
        "1",
        "--slo-tpot",
        "0.1",
    ]);
    let m = json(&out);
    assert!(m["goodput_req_per_s"].is_number(), "{out}");
    assert!(m["slo_attainment"].is_number(), "{out}");
}

#[test]
fn simulate_csv_has_the_header_and_one_row() {
    let out = ok(&[
        "simulate", "--trace", SMALL, "--policy", "fcfs", "--format", "csv",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], JSON_KEYS.join(","));
    assert!(lines[1].starts_with("fcfs,oracle,1"), "{}", lines[1]);
}

#[test]
fn simulate_table_is_readable() {
    let out = ok(&["simulate", "--trace", SMALL, "--policy", "trail"]);
    assert!(out.contains("trail"), "{out}");
    assert!(out.to_lowercase().contains("e2e"), "{out}");
}

#[test]
fn simulate_writes_one_request_row_per_request() {
    let dir = temp_dir("requests");
    let path = dir.join("requests.csv");
    ok(&[
        "simulate",
        "--trace",
        SMALL,
        "--policy",
        "sjf",
        "--requests-csv",
        path.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("id,arrival_s,prompt_tokens"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 1 + 200);
}

#[test]
fn simulate_runs_every_policy() {
    for p in [
        "fcfs",
        "priority",
        "sjf",
        "pspjf",
        "sprpt",
        "trail",
        "las",
        "mlfq",
        "onebit",
        "memory-time",
        "slack",
        "edf",
        "fair",
        "sprpt-time",
        "trail-time",
    ] {
        let out = ok(&[
            "simulate",
            "--trace",
            "synthetic:n=60,rate=20,prompt=lognormal:256:0.5,output=lognormal:64:0.5,seed=1",
            "--policy",
            p,
            "--kv-blocks",
            "256",
            "--format",
            "json",
        ]);
        let m = json(&out);
        assert_eq!(m["policy"], p);
        assert_eq!(m["requests_completed"], 60, "{p}: {out}");
    }
}

#[test]
fn simulate_accepts_engine_and_policy_flags() {
    let out = ok(&[
        "simulate",
        "--trace",
        "synthetic:n=80,rate=20,tools=0.3,tool_duration=0.5,seed=2",
        "--policy",
        "mlfq",
        "--predictor",
        "refining:0.5",
        "--block-size",
        "32",
        "--max-running",
        "16",
        "--token-budget",
        "2048",
        "--prefill-chunk",
        "512",
        "--watermark",
        "0.02",
        "--preemption",
        "swap",
        "--host-blocks",
        "512",
        "--admission",
        "predicted:1.2",
        "--margin",
        "5",
        "--max-preemptions",
        "2",
        "--no-prefix-caching",
        "--pause",
        "auto",
        "--max-output",
        "512",
        "--aging",
        "1",
        "--overrun",
        "rescale:2",
        "--fair-share",
        "--mlfq-quantum",
        "8",
        "--mlfq-growth",
        "3",
        "--mlfq-levels",
        "5",
        "--mlfq-prefill-weight",
        "0.1",
        "--kv-blocks",
        "400",
        "--rate-scale",
        "1.5",
        "--seed",
        "9",
        "--format",
        "json",
    ]);
    let m = json(&out);
    assert_eq!(m["policy"], "mlfq+fair+aging");
    assert_eq!(m["rate_scale"], 1.5);
    assert_eq!(m["requests_completed"], 80);
}

#[test]
fn simulate_loads_the_example_config_and_flags_override_it() {
    let out = ok(&[
        "simulate",
        "--config",
        "examples/augur.toml",
        "--trace",
        SMALL,
        "--format",
        "json",
    ]);
    let from_file = json(&out);
    assert_eq!(
        from_file["policy"], "trail",
        "the file's [policy] name is used"
    );
    let out = ok(&[
        "simulate",
        "--config",
        "examples/augur.toml",
        "--trace",
        SMALL,
        "--format",
        "json",
        "--policy",
        "fcfs",
        "--kv-blocks",
        "100",
    ]);
    let overridden = json(&out);
    assert_eq!(overridden["policy"], "fcfs", "--policy overrides the file");
    // 100 blocks instead of the file's 2,048: much more KV pressure.
    assert!(
        overridden["kv_utilization_mean"].as_f64().unwrap()
            > from_file["kv_utilization_mean"].as_f64().unwrap(),
        "{overridden:?} vs {from_file:?}"
    );
}

#[test]
fn sweep_writes_csv_and_plots() {
    let dir = temp_dir("sweep");
    let out_dir = dir.join("out");
    let out = ok(&[
        "sweep",
        "--trace",
        SMALL,
        "--policies",
        "fcfs,sprpt",
        "--rate-scales",
        "0.5,1",
        "--predictors",
        "oracle,lognormal:1",
        "--kv-blocks",
        "512",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let csv = std::fs::read_to_string(out_dir.join("sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], JSON_KEYS.join(","));
    assert_eq!(lines.len(), 1 + 2 * 2 * 2, "{csv}");
    for f in [
        "latency_mean.svg",
        "latency_p99.svg",
        "cdf_0.5.svg",
        "cdf_1.svg",
    ] {
        let svg = std::fs::read_to_string(out_dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(svg.contains("<svg"), "{f}");
    }
    assert!(out.contains("sprpt"), "{out}");
    assert!(out.contains("0.5x"), "{out}");
}

#[test]
fn mg1_json_has_the_report_keys() {
    let out = ok(&[
        "mg1",
        "--policy",
        "sprpt",
        "--load",
        "0.7",
        "--prediction",
        "exp",
        "--jobs",
        "20000",
        "--format",
        "json",
    ]);
    let m = json(&out);
    let expected: BTreeSet<String> = [
        "policy",
        "load",
        "prediction",
        "service",
        "jobs",
        "mean_response_time",
        "analytic_mean_response_time",
        "ci95_half_width",
        "relative_error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(keys(&m), expected);
    assert_eq!(m["policy"], "sprpt");
    assert!(m["analytic_mean_response_time"].is_number());
}

#[test]
fn mg1_all_prints_a_table() {
    let out = ok(&[
        "mg1",
        "--policy",
        "all",
        "--load",
        "0.8",
        "--prediction",
        "uniform:0.5",
        "--service",
        "weibull",
        "--jobs",
        "20000",
    ]);
    for p in ["fcfs", "sjf", "spjf", "pspjf", "srpt", "sprpt", "trail:0.8"] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("{p} "))),
            "no row for {p}:\n{out}"
        );
    }
    assert!(out.contains("closed form"), "{out}");
}

#[test]
fn policies_lists_everything() {
    let out = ok(&["policies"]);
    for p in augur::core::policy::POLICIES {
        assert!(out.contains(p.name), "{} missing:\n{out}", p.name);
    }
    for name in augur::cost::ModelSpec::PRESETS
        .iter()
        .chain(augur::cost::GpuSpec::PRESETS)
    {
        assert!(out.contains(name), "{name} missing");
    }
    for spec in ["oracle", "lognormal:SIGMA", "refining:SIGMA", "fair"] {
        assert!(out.contains(spec), "{spec} missing");
    }
}

#[test]
fn help_works_for_every_command() {
    for cmd in ["demo", "simulate", "sweep", "mg1", "policies"] {
        let out = ok(&[cmd, "--help"]);
        assert!(out.contains("Usage: augur"), "{cmd}: {out}");
    }
    assert!(ok(&["simulate", "--help"]).contains("--no-prefix-caching"));
}

#[test]
fn unknown_policy_is_a_usage_error() {
    assert_eq!(fails(&["simulate", "--policy", "lottery"], "--policy"), 2);
    assert_eq!(
        fails(&["mg1", "--policy", "lottery", "--load", "0.5"], "lottery"),
        2
    );
}

#[test]
fn bad_predictor_is_a_usage_error() {
    assert_eq!(
        fails(&["simulate", "--predictor", "lognormal:x"], "--predictor"),
        2
    );
    assert_eq!(fails(&["simulate", "--predictor", "psychic"], "psychic"), 2);
    assert_eq!(
        fails(&["simulate", "--predictor", "lognormal:1e308"], "SIGMA"),
        2
    );
    assert_eq!(
        fails(
            &[
                "sweep",
                "--policies",
                "fcfs",
                "--predictors",
                "oracle,exp:2",
                "--out",
                "x"
            ],
            "--predictors"
        ),
        2
    );
}

#[test]
fn unknown_model_and_gpu_are_usage_errors() {
    assert_eq!(fails(&["simulate", "--model", "gpt-5"], "--model"), 2);
    assert_eq!(fails(&["simulate", "--gpu", "tpu-v5"], "--gpu"), 2);
}

#[test]
fn missing_trace_file_fails() {
    let code = fails(
        &["simulate", "--trace", "/nonexistent/trace.csv"],
        "/nonexistent/trace.csv",
    );
    assert_eq!(code, 1);
}

#[test]
fn malformed_trace_names_file_and_line() {
    let dir = temp_dir("badtrace");
    let path = dir.join("bad.csv");
    std::fs::write(
        &path,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n\
         2023-11-16 18:15:46.1,100,20\n\
         2023-11-16 18:15:47.1,oops,20\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let code = fails(&["simulate", "--trace", p], &format!("{p}:3"));
    assert_eq!(code, 1);
}

#[test]
fn bad_synthetic_spec_names_the_key() {
    fails(
        &["simulate", "--trace", "synthetic:n=10,colour=red"],
        "colour",
    );
}

#[test]
fn unknown_config_key_is_named() {
    let dir = temp_dir("badconfig");
    let path = dir.join("augur.toml");
    std::fs::write(&path, "[engine]\nblock_size = 16\nkv_blokcs = 100\n").unwrap();
    let code = fails(
        &["simulate", "--config", path.to_str().unwrap()],
        "kv_blokcs",
    );
    assert_eq!(code, 2);
    std::fs::write(&path, "[scheduler]\n").unwrap();
    fails(
        &["simulate", "--config", path.to_str().unwrap()],
        "scheduler",
    );
    fails(
        &[
            "simulate",
            "--config",
            dir.join("absent.toml").to_str().unwrap(),
        ],
        "absent.toml",
    );
}

#[test]
fn zero_rate_scale_is_rejected() {
    assert_eq!(fails(&["simulate", "--rate-scale", "0"], "--rate-scale"), 2);
    assert_eq!(
        fails(
            &[
                "sweep",
                "--policies",
                "fcfs",
                "--rate-scales",
                "1,-2",
                "--out",
                "x"
            ],
            "--rate-scales"
        ),
        2
    );
}

#[test]
fn invalid_engine_values_name_the_field() {
    fails(
        &["simulate", "--trace", SMALL, "--watermark", "1.5"],
        "watermark",
    );
    fails(
        &[
            "simulate",
            "--trace",
            SMALL,
            "--policy",
            "mlfq",
            "--mlfq-levels",
            "0",
        ],
        "levels",
    );
    fails(
        &["simulate", "--trace", SMALL, "--overrun", "rescale:0.5"],
        "--overrun",
    );
    fails(
        &["simulate", "--trace", SMALL, "--admission", "lazy"],
        "--admission",
    );
    fails(&["mg1", "--policy", "fcfs", "--load", "1.5"], "load");
    fails(
        &["simulate", "--trace", SMALL, "--max-running", "0"],
        "--max-running",
    );
    // Storage too large to allocate is refused, not an allocation abort.
    fails(
        &["simulate", "--trace", SMALL, "--kv-blocks", "4000000000"],
        "--kv-blocks",
    );
}

#[test]
fn example_config_exists() {
    assert!(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/augur.toml")).exists());
}

fn load_rate_scale(trace: &str, load: &str) -> f64 {
    let o = augur(&[
        "simulate",
        "--trace",
        trace,
        "--policy",
        "sprpt-time",
        "--load",
        load,
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("-> rate scale"), "{}", stderr(&o));
    json(&stdout(&o))["rate_scale"].as_f64().unwrap()
}

#[test]
fn a_cluster_load_is_per_replica() {
    let trace = "synthetic:n=60,rate=20,seed=1";
    let one = load_rate_scale(trace, "0.5");
    let o = augur(&[
        "cluster",
        "--trace",
        trace,
        "--replicas",
        "4",
        "--load",
        "0.5",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("per replica on 4 replicas"),
        "{}",
        stderr(&o)
    );
    let four = json(&stdout(&o))["rate_scale"].as_f64().unwrap();
    assert!((four / one - 4.0).abs() < 1e-12, "{one} {four}");
}

#[test]
fn load_is_linear_and_the_same_on_a_faster_trace() {
    let slow = "synthetic:n=60,rate=20,seed=1";
    let fast = "synthetic:n=60,rate=40,seed=1";
    let a = load_rate_scale(slow, "0.5");
    let b = load_rate_scale(slow, "1");
    assert!((b / a - 2.0).abs() < 1e-12, "{a} {b}");
    // The same requests arriving twice as fast need half the rate scale for the same load
    // (arrivals are rounded to whole µs, hence the tolerance).
    let c = load_rate_scale(fast, "1");
    assert!((b / c - 2.0).abs() < 1e-3, "{b} {c}");
}

#[test]
fn load_rejects_bad_values_and_rate_flags() {
    for bad in ["0", "-1", "inf", "nan", "x"] {
        fails(&["simulate", "--load", bad], "--load");
        fails(&["cluster", "--load", bad], "--load");
    }
    fails(
        &["simulate", "--load", "1", "--rate-scale", "2"],
        "cannot be used with",
    );
    fails(
        &["cluster", "--load", "1", "--rate-scale", "2"],
        "cannot be used with",
    );
    fails(
        &[
            "sweep",
            "--policies",
            "fcfs",
            "--out",
            "/nonexistent-augur",
            "--loads",
            "1",
            "--rate-scales",
            "2",
        ],
        "cannot be used with",
    );
    fails(
        &["simulate", "--trace", "synthetic:n=1,rate=1", "--load", "1"],
        "span no time",
    );
}

/// The utilisation fields of a summary object.
const UTILISATION: [&str; 11] = [
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
];

fn field(m: &serde_json::Map<String, serde_json::Value>, k: &str) -> f64 {
    m[k].as_f64()
        .unwrap_or_else(|| panic!("`{k}` is not a number: {}", m[k]))
}

/// Every utilisation figure is in [0, 1], the bound shares add up to 1, and the busy figures
/// are the makespan ones over the busy fraction.
fn check_utilisation(m: &serde_json::Map<String, serde_json::Value>) {
    for k in UTILISATION {
        let v = field(m, k);
        assert!((0.0..=1.0 + 1e-9).contains(&v), "{k} = {v} outside [0, 1]");
    }
    for suffix in ["steps", "time"] {
        let sum: f64 = ["compute", "memory", "overhead"]
            .iter()
            .map(|b| field(m, &format!("{b}_bound_{suffix}")))
            .sum();
        assert!(
            (sum - 1.0).abs() < 1e-9,
            "bound shares of {suffix} sum to {sum}"
        );
    }
    let busy = field(m, "busy_fraction");
    for (all, b) in [("mfu", "mfu_busy"), ("hbm_bw_util", "hbm_bw_util_busy")] {
        let (all, b) = (field(m, all), field(m, b));
        assert!(
            (all - b * busy).abs() <= 1e-6 * b.max(1e-12),
            "{all} vs {b} × {busy}"
        );
    }
}

/// The model and GPU of the utilisation checks (given explicitly, whatever the defaults).
const UTIL_MODEL: &str = "llama-3.1-8b";
const UTIL_GPU: &str = "h100-sxm";

fn sim_json(trace: &str, cost: &str) -> serde_json::Map<String, serde_json::Value> {
    json(&ok(&[
        "simulate", "--trace", trace, "--cost", cost, "--model", UTIL_MODEL, "--gpu", UTIL_GPU,
        "--format", "json",
    ]))
}

/// Twenty 8,192-token prompts that each emit one token, all arriving at once: prefill only.
const PREFILLS: &str = "synthetic:n=20,rate=1000,prompt=const:8192,output=const:1,seed=1";
/// Four 16-token prompts decoding 512 tokens each: a small decode batch.
const DECODES: &str = "synthetic:n=4,rate=1000,prompt=const:16,output=const:512,seed=1";

#[test]
fn large_prefills_are_compute_bound_near_the_compute_efficiency() {
    use augur::cost::{CostModel, GpuSpec, ModelSpec};
    let model = ModelSpec::preset(UTIL_MODEL).unwrap();
    let gpu = GpuSpec::preset(UTIL_GPU).unwrap();
    // roofline-simple: the FLOPs are known in closed form, so MFU over the makespan can be
    // recomputed from the model's shapes, the GPU's bf16 peak and the simulated time alone.
    let m = sim_json(PREFILLS, "roofline-simple");
    check_utilisation(&m);
    let (n, x) = (20.0, 8192.0);
    let flops = n
        * (2.0 * model.parameters as f64 * x
            + 4.0
                * f64::from(model.layers)
                * f64::from(model.attention_heads)
                * f64::from(model.head_dim)
                * x
                * (x + 1.0)
                / 2.0);
    let tp = f64::from(model.tensor_parallel.max(1));
    let expected = flops / (gpu.peak_bf16_flops * tp * field(&m, "simulated_s"));
    let mfu = field(&m, "mfu");
    assert!(
        (mfu - expected).abs() < 1e-3 * expected,
        "mfu {mfu}, expected {expected}"
    );
    let eff = CostModel::DEFAULT_COMPUTE_EFFICIENCY;
    let busy = field(&m, "mfu_busy");
    assert!(
        busy <= eff + 1e-9 && busy > 0.95 * eff,
        "mfu_busy {busy} vs efficiency {eff}"
    );
    assert_eq!(field(&m, "compute_bound_steps"), 1.0);
    assert!(field(&m, "hbm_bw_util_busy") < 0.2);

    // Per-operator: every FLOP runs at most at gemm (or attention) efficiency × peak, and
    // 8k-token GEMMs fill the GPU, so MFU sits just under the GEMM efficiency.
    let m = sim_json(PREFILLS, "per-operator");
    check_utilisation(&m);
    let eff = CostModel::DEFAULT_GEMM_EFFICIENCY.max(CostModel::DEFAULT_ATTENTION_EFFICIENCY);
    let busy = field(&m, "mfu_busy");
    assert!(
        busy <= eff + 1e-9 && busy > 0.8 * eff,
        "mfu_busy {busy} vs efficiency {eff}"
    );
    assert_eq!(field(&m, "compute_bound_steps"), 1.0);
    assert_eq!(field(&m, "compute_bound_time"), 1.0);
}

#[test]
fn small_decode_batches_are_memory_bound() {
    use augur::cost::{CostModel, GpuSpec, ModelSpec};
    let model = ModelSpec::preset(UTIL_MODEL).unwrap();
    let gpu = GpuSpec::preset(UTIL_GPU).unwrap();
    let eff = CostModel::DEFAULT_BANDWIDTH_EFFICIENCY;
    // A decode step of B requests does ~2·parameters·B FLOPs while reading all the weights:
    // its MFU is at most (2·P·B / peak) / (weight bytes / bandwidth).
    let weights = model.weight_bytes();
    let b = 4.0;
    let mfu_bound = (2.0 * model.parameters as f64 * b / gpu.peak_bf16_flops)
        / (weights / gpu.hbm_bandwidth_bytes_per_s);
    for cost in ["per-operator", "roofline-simple"] {
        let m = sim_json(DECODES, cost);
        check_utilisation(&m);
        let hbm = field(&m, "hbm_bw_util_busy");
        assert!(
            hbm <= eff + 1e-9 && hbm > 0.6 * eff,
            "{cost}: hbm {hbm} vs {eff}"
        );
        let mfu = field(&m, "mfu_busy");
        assert!(
            mfu < mfu_bound * 1.05,
            "{cost}: mfu {mfu} above {mfu_bound}"
        );
        assert!(field(&m, "memory_bound_steps") > 0.99, "{cost}: {m:?}");
        assert!(field(&m, "memory_bound_time") > 0.99, "{cost}: {m:?}");
    }
}

#[test]
fn utilisation_is_a_fraction_in_every_summary() {
    for cost in ["per-operator", "roofline-simple"] {
        check_utilisation(&sim_json(SMALL, cost));
    }
    let out = ok(&[
        "cluster",
        "--trace",
        SMALL,
        "--replicas",
        "3",
        "--format",
        "json",
    ]);
    let m = json(&out);
    check_utilisation(&m);
    let reps = m["per_replica"].as_array().expect("per_replica");
    assert_eq!(reps.len(), 3);
    for r in reps {
        check_utilisation(r.as_object().unwrap());
    }
    // The table shows them.
    let table = ok(&["simulate", "--trace", SMALL]);
    assert!(
        table.contains("GPU utilization") && table.contains("MFU"),
        "{table}"
    );
    assert!(table.contains("steps bound by"), "{table}");
}

#[test]
fn uniform_tenants_with_identical_workloads_are_served_fairly() {
    let trace = "synthetic:n=400,rate=40,prompt=const:256,output=const:64,seed=2";
    let run = |seed: &str| {
        json(&ok(&[
            "simulate",
            "--trace",
            trace,
            "--tenants",
            "uniform:4",
            "--fair-share",
            "--seed",
            seed,
            "--format",
            "json",
        ]))
    };
    let m = run("5");
    // The summary keys are all there, plus `tenants`.
    let mut want: BTreeSet<String> = JSON_KEYS.iter().map(|s| s.to_string()).collect();
    want.insert("tenants".into());
    assert_eq!(keys(&m), want);
    let t = m["tenants"].as_object().unwrap();
    let per = t["per_tenant"].as_array().unwrap();
    assert_eq!(per.len(), 4);
    let requests: u64 = per.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(requests, 400);
    // Identical requests spread evenly: equal shares give an index of 1, and the binomial
    // spread of 400 requests over 4 tenants (sd ≈ 8.7 of 100) keeps it above 0.98.
    for k in [
        "jain_index_tokens",
        "jain_index_normalized",
        "jain_index_latency",
    ] {
        let j = t[k].as_f64().unwrap();
        assert!(j > 0.98 && j <= 1.0 + 1e-12, "{k} = {j}");
    }
    // Deterministic for the seed.
    assert_eq!(run("5")["tenants"], m["tenants"]);
}

#[test]
fn bad_tenant_specs_are_usage_errors() {
    for spec in [
        "zipf:x",
        "uniform:0",
        "zipf:4:-1",
        "pareto:3",
        "uniform:99999",
    ] {
        fails(
            &["simulate", "--trace", SMALL, "--tenants", spec],
            "--tenants",
        );
    }
}

/// A lengths-only trace in which tenant `heavy` sends 9 of every 10 requests.
fn two_tenant_trace(dir: &Path) -> PathBuf {
    let path = dir.join("two_tenants.csv");
    let mut csv = String::from("num_prefill_tokens,num_decode_tokens,tenant\n");
    for i in 0..400 {
        let tenant = if i % 10 == 3 { "light" } else { "heavy" };
        csv.push_str(&format!("256,64,{tenant}\n"));
    }
    std::fs::write(&path, csv).unwrap();
    path
}

/// The tenants object of a run of `simulate` (or `cluster`) with `args` appended.
fn tenants_of(args: &[&str]) -> serde_json::Map<String, serde_json::Value> {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let m = json(&ok(&all));
    m["tenants"].as_object().expect("a tenants object").clone()
}

fn tenant_mean_e2e(t: &serde_json::Map<String, serde_json::Value>, name: &str) -> f64 {
    let per = t["per_tenant"].as_array().unwrap();
    let one = per.iter().find(|p| p["name"] == name).expect(name);
    one["mean_e2e_s"].as_f64().unwrap()
}

#[test]
fn a_tenant_column_is_reported_and_fair_share_protects_the_light_tenant() {
    let dir = temp_dir("tenant-column");
    let trace = two_tenant_trace(&dir);
    let trace = trace.to_str().unwrap();
    // Overloaded (40 req/s of 256 + 64 tokens on 4 running slots): a queue builds, and FCFS
    // makes the light tenant wait behind the heavy one's backlog; VTC serves the tenant with
    // fewer tokens served first, so the light tenant's requests skip it.
    let base = [
        "simulate",
        "--trace",
        trace,
        "--lengths-rate",
        "40",
        "--max-running",
        "4",
        "--policy",
        "fcfs",
    ];
    let fcfs = tenants_of(&base);
    assert_eq!(fcfs["spec"], "column");
    let per = fcfs["per_tenant"].as_array().unwrap();
    let names: Vec<&str> = per.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["heavy", "light"], "numbered by first appearance");
    let counts: Vec<u64> = per
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [360, 40]);
    let mut fair_args = base.to_vec();
    fair_args.push("--fair-share");
    let fair = tenants_of(&fair_args);
    let (light_fcfs, light_fair) = (
        tenant_mean_e2e(&fcfs, "light"),
        tenant_mean_e2e(&fair, "light"),
    );
    assert!(
        light_fair < 0.5 * light_fcfs,
        "fair share should cut the light tenant's latency: {light_fair} vs {light_fcfs} s"
    );
    // Under FCFS both tenants wait alike (the index over latency is near 1); fair share puts
    // the wait on the heavy tenant, so it is the index over latency that falls. The table
    // shows the tenants by name.
    let jain =
        |t: &serde_json::Map<String, serde_json::Value>| t["jain_index_latency"].as_f64().unwrap();
    assert!(jain(&fcfs) > 0.95, "{fcfs:?}");
    assert!(jain(&fair) < 0.8, "{fair:?}");
    let table = ok(&[&base[..], &["--fair-share"]].concat());
    assert!(table.contains("tenant 1 (light)"), "{table}");
}

#[test]
fn tenants_flag_works_for_cluster_and_overrides_a_column() {
    let dir = temp_dir("tenant-cluster");
    let trace = two_tenant_trace(&dir);
    let trace = trace.to_str().unwrap();
    let t = tenants_of(&[
        "cluster",
        "--trace",
        trace,
        "--replicas",
        "2",
        "--tenants",
        "uniform:3",
    ]);
    assert_eq!(t["spec"], "uniform:3");
    let per = t["per_tenant"].as_array().unwrap();
    assert_eq!(per.len(), 3, "the flag replaces the column's two tenants");
    let total: u64 = per.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(total, 400);
    // Without tenants, no tenants key.
    let m = json(&ok(&[
        "cluster",
        "--trace",
        SMALL,
        "--replicas",
        "2",
        "--format",
        "json",
    ]));
    assert!(!m.contains_key("tenants"));
    fails(
        &["cluster", "--trace", SMALL, "--tenants", "zipf:3"],
        "--tenants",
    );
}
