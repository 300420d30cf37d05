//! `augur cost` on the built binary: text and JSON outputs, bad specs.

use std::process::Command;

fn augur(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_augur"))
        .args(args)
        .output()
        .expect("run augur");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn text_output_has_every_operator() {
    let (code, out, err) = augur(&["cost", "--batch", "prefill:512+decode:64x1024"]);
    assert_eq!(code, 0, "{err}");
    for name in [
        "iteration",
        "embedding",
        "qkv",
        "attention_prefill",
        "attention_decode",
        "o_proj",
        "mlp",
        "lm_head",
        "allreduce",
        "cpu/framework",
    ] {
        assert!(out.contains(name), "{name} missing:\n{out}");
    }
    assert!(out.contains("65 requests, 576 tokens"), "{out}");
}

#[test]
fn json_output_fields() {
    let (code, out, err) = augur(&[
        "cost",
        "--model",
        "llama-3.1-70b",
        "--gpu",
        "h200",
        "--tp",
        "8",
        "--dtype",
        "fp8",
        "--batch",
        "decode:128x4096",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let total = v["iteration_ms"].as_f64().unwrap();
    assert!(total > 0.0);
    let parts: f64 = [
        "embedding_ms",
        "qkv_ms",
        "attention_prefill_ms",
        "attention_decode_ms",
        "o_proj_ms",
        "mlp_ms",
        "lm_head_ms",
        "allreduce_ms",
    ]
    .iter()
    .map(|k| v[*k].as_f64().unwrap_or_else(|| panic!("{k}")))
    .sum();
    assert!((parts - v["gpu_ms"].as_f64().unwrap()).abs() < 1e-9 * total.max(1.0));
    assert!((parts + v["cpu_ms"].as_f64().unwrap() - total).abs() < 1e-9 * total.max(1.0));
    assert_eq!(v["tp"], 8);
    assert_eq!(v["dtype"], "fp8");
    assert_eq!(v["cost_model"], "per-operator");
}

#[test]
fn roofline_simple_is_selectable() {
    let (code, out, err) = augur(&[
        "cost",
        "--batch",
        "decode:1x1000",
        "--cost",
        "roofline-simple",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["cost_model"], "roofline-simple");
    assert_eq!(v["overhead_ms"], 0.5);
}

#[test]
fn fp8_decode_is_faster_than_bf16() {
    let t = |dtype: &str| {
        let (code, out, err) = augur(&[
            "cost",
            "--batch",
            "decode:8x2048",
            "--dtype",
            dtype,
            "--format",
            "json",
        ]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["iteration_ms"].as_f64().unwrap()
    };
    assert!(t("fp8") < t("bf16"));
}

#[test]
fn bad_specs_name_the_part() {
    for (spec, needle) in [
        ("decode:128y4096", "decode:128y4096"),
        ("prefill:512+decod:64x1024", "decod:64x1024"),
        ("prefill:abc", "abc"),
        ("decode:0x10", "at least 1"),
        ("decode:4x0", "context"),
        ("mixed", "expected"),
    ] {
        let (code, _, err) = augur(&["cost", "--batch", spec]);
        assert_eq!(code, 2, "{spec}: {err}");
        assert!(
            err.contains(needle) && err.contains("--batch"),
            "{spec}: {err}"
        );
    }
    for (args, needle) in [
        (&["--dtype", "int4"][..], "int4"),
        (&["--cost", "magic"][..], "magic"),
        (&["--model", "gpt-9"][..], "gpt-9"),
        (&["--tp", "0"][..], "--tp"),
    ] {
        let mut all = vec!["cost", "--batch", "decode:1x10"];
        all.extend_from_slice(args);
        let (code, _, err) = augur(&all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// `simulate --cost` selects the model the simulator prices steps with: the old roofline gives
/// another simulated duration than the per-operator default on the same run, and an unknown
/// name is refused naming the flag.
#[test]
fn simulate_takes_the_cost_model_from_the_flag() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "simulate",
            "--trace",
            "synthetic:n=200,seed=4",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = augur(&args);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        v["simulated_s"].as_f64().expect("simulated_s")
    };
    let default = run(&[]);
    assert_eq!(run(&["--cost", "per-operator"]), default);
    let simple = run(&["--cost", "roofline-simple"]);
    assert!(simple != default, "both models gave {default} s");
    let (code, _, err) = augur(&["simulate", "--trace", "synthetic:n=5", "--cost", "bogus"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--cost") && err.contains("roofline-simple"),
        "{err}"
    );
}
