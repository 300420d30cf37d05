//! Tests of the cost model against hand-computed roofline numbers.

use super::*;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The original roofline (most tests below check its formulas; the per-operator model's
/// tests are in `operator_tests`).
fn h100_8b() -> CostModel {
    CostModel::preset("llama-3.1-8b", "h100-sxm")
        .unwrap()
        .with_kind(CostKind::RooflineSimple)
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12)
}

#[test]
fn kv_bytes_per_token_llama_8b() {
    let m = ModelSpec::preset("llama-3.1-8b").unwrap();
    assert_eq!(m.kv_bytes_per_token(), 131_072);
    assert_eq!(m.kv_bytes_per_token(), 32 * 8 * 128 * 2 * 2);
    let m2 = m.clone().with_tensor_parallel(2);
    assert_eq!(m2.kv_bytes_per_token(), 131_072);
    assert_eq!(m2.kv_bytes_per_token_per_gpu(), 65_536.0);
    assert_eq!(m.weight_bytes(), 2.0 * 8_030_261_248.0);
}

#[test]
fn kv_capacity_8b_on_h100_in_expected_range() {
    let cost = h100_8b();
    let kv = cost.kv_memory_bytes().unwrap();
    assert!((40.0 * GIB..=55.0 * GIB).contains(&kv), "{} GiB", kv / GIB);
    let blocks = cost.kv_capacity_blocks(16).unwrap();
    let expected = (kv / (131_072.0 * 16.0)).floor() as u32;
    assert_eq!(blocks, expected);
    // About 427k tokens of KV.
    assert!(
        (380_000..480_000).contains(&(blocks as u64 * 16)),
        "{blocks}"
    );
    assert!(cost.kv_capacity_blocks(0).is_err());
}

#[test]
fn weights_that_do_not_fit_are_an_error() {
    let cost = CostModel::new(
        ModelSpec::preset("llama-3.1-70b-tp1").unwrap(),
        GpuSpec::preset("h100-sxm").unwrap(),
    );
    let err = cost.kv_capacity_blocks(16).unwrap_err().to_string();
    assert!(err.contains("does not fit"), "{err}");
    assert!(cost.validate().is_err());
}

#[test]
fn decode_of_one_is_bandwidth_bound() {
    let cost = h100_8b();
    let shape = BatchShape::uniform_decode(1, 1000);
    let c = cost.iteration_cost(&shape);
    assert!(c.is_bandwidth_bound());
    let weights_us =
        cost.model.weight_bytes() / cost.gpu.hbm_bandwidth_bytes_per_s / cost.bandwidth_efficiency
            * 1e6;
    let expected = weights_us + cost.fixed_overhead_us;
    let t = cost.iteration_time_us(&shape);
    // The KV read of 1000 tokens adds under 1%.
    assert!(
        t >= expected && close(t, expected, 0.02),
        "{t} vs {expected}"
    );
    // 16 GB at 0.8 × 3.35 TB/s ≈ 6 ms.
    assert!((5_500.0..7_500.0).contains(&t), "{t}");
}

#[test]
fn large_prefill_is_compute_bound() {
    let cost = h100_8b();
    let mut shape = BatchShape::new();
    shape.add(2048, 0);
    assert_eq!(shape.prefill_tokens(), 2048);
    assert_eq!(shape.decode_tokens(), 0);
    assert_eq!(shape.attention_pairs(), 2048 * 2049 / 2);
    let c = cost.iteration_cost(&shape);
    assert!(!c.is_bandwidth_bound(), "{c:?}");
    let dense_us = 2.0 * cost.model.parameters as f64 * 2048.0
        / (cost.gpu.peak_bf16_flops * cost.compute_efficiency)
        * 1e6;
    assert!(c.compute_us > dense_us && close(c.compute_us, dense_us, 0.05));
    assert!(close(
        c.total_us,
        c.compute_us + cost.fixed_overhead_us,
        1e-12
    ));
}

#[test]
fn batch_shape_counters() {
    let mut s = BatchShape::new();
    assert!(s.is_empty());
    s.add(1, 100);
    s.add(1, 50);
    s.add(512, 1024);
    s.add(0, 10_000); // nothing computed: ignored
    assert_eq!(s.requests(), 3);
    assert_eq!(s.tokens(), 514);
    assert_eq!(s.decode_tokens(), 2);
    assert_eq!(s.prefill_tokens(), 512);
    assert_eq!(s.context_tokens(), 1174);
    assert_eq!(s.attention_pairs(), 101 + 51 + 512 * 1024 + 512 * 513 / 2);
    s.clear();
    assert_eq!(s, BatchShape::default());
    assert_eq!(h100_8b().iteration_time_us(&s), 0.0);
}

#[test]
fn time_is_monotone_in_tokens_and_context() {
    for (model, gpu) in [
        ("llama-3.1-8b", "h100-sxm"),
        ("llama-3.1-70b-tp4", "a100-80g"),
        ("qwen2.5-7b", "l40s"),
    ] {
        for kind in [CostKind::RooflineSimple, CostKind::PerOperator] {
            let cost = CostModel::preset(model, gpu).unwrap().with_kind(kind);
            let mut last = 0.0;
            for batch in [1, 2, 8, 32, 128, 256, 512] {
                let t = cost.iteration_time_us(&BatchShape::uniform_decode(batch, 1000));
                assert!(t > last, "{model}/{gpu}: batch {batch}: {t} <= {last}");
                last = t;
            }
            let mut last = 0.0;
            for context in [0, 100, 1000, 4000, 16_000, 64_000] {
                let t = cost.iteration_time_us(&BatchShape::uniform_decode(64, context));
                assert!(t > last, "{model}/{gpu}: context {context}: {t} <= {last}");
                last = t;
            }
            let mut last = 0.0;
            for tokens in [1, 16, 256, 1024, 4096, 16_384] {
                let mut s = BatchShape::new();
                s.add(tokens, 0);
                let t = cost.iteration_time_us(&s);
                assert!(t > last, "{model}/{gpu}: prefill {tokens}: {t} <= {last}");
                last = t;
            }
        }
    }
}

#[test]
fn tensor_parallel_halves_weight_time() {
    let one = CostModel::new(
        ModelSpec::preset("llama-3.1-8b").unwrap(),
        GpuSpec::preset("h100-sxm").unwrap(),
    )
    .with_kind(CostKind::RooflineSimple);
    let mut two = one.clone();
    two.model.tensor_parallel = 2;
    let shape = BatchShape::uniform_decode(1, 0);
    let (a, b) = (one.iteration_cost(&shape), two.iteration_cost(&shape));
    assert!(close(b.memory_us, a.memory_us / 2.0, 1e-9), "{a:?} {b:?}");
    assert!(close(b.compute_us, a.compute_us / 2.0, 1e-9));
    assert_eq!(a.allreduce_us, 0.0);
    assert!(b.allreduce_us > 0.0);
    // 64 all-reduces of 8 KiB: latency dominates.
    assert!(b.allreduce_us < 1_000.0, "{b:?}");
    // KV capacity: twice the memory, the same weights.
    let extra = two.kv_memory_bytes().unwrap() - one.kv_memory_bytes().unwrap();
    assert!(close(
        extra,
        one.gpu.memory_bytes * one.gpu_memory_utilization,
        1e-9
    ));
}

#[test]
fn swap_and_recompute_costs() {
    let cost = h100_8b();
    // One 16-token block: 2 MiB over 0.8 × 64 GB/s ≈ 41 µs.
    let per_block = cost.swap_cost_us_per_block(16);
    let expected = 16.0 * 131_072.0 / (64e9 * 0.8) * 1e6;
    assert!(close(per_block, expected, 1e-9), "{per_block}");
    assert!(close(cost.swap_time_us(10, 16), 10.0 * per_block, 1e-9));
    assert_eq!(cost.swap_time_us(0, 16), 0.0);
    // 2 · 8e9 FLOPs at 0.6 × 989.5 TFLOP/s ≈ 27 µs per token.
    let per_token = cost.recompute_cost_us_per_token();
    assert!((20.0..35.0).contains(&per_token), "{per_token}");
    // The per-token cost matches the compute side of a large prefill's roofline.
    let mut s = BatchShape::new();
    s.add(1024, 0);
    let dense_part = cost.iteration_cost(&s).compute_us / 1024.0;
    assert!(close(per_token, dense_part, 0.05));
}

#[test]
fn every_preset_is_valid_and_fits() {
    for model in ModelSpec::PRESETS {
        let m = ModelSpec::preset(model).unwrap();
        m.validate().unwrap();
        assert!(m.parameters > 1_000_000_000 && m.kv_bytes_per_token() > 0);
        assert_eq!(m.attention_heads * m.head_dim, m.hidden_size, "{model}");
        // The preset's parameter count is what its shapes give.
        let h = u64::from(m.hidden_size);
        let q = u64::from(m.attention_heads * m.head_dim);
        let kv = u64::from(m.kv_heads * m.head_dim);
        let bias = if model.starts_with("qwen") {
            q + 2 * kv
        } else {
            0
        };
        let layer = 2 * h * q + 2 * h * kv + bias + 3 * h * u64::from(m.intermediate_size) + 2 * h;
        assert_eq!(
            m.embedding_parameters() + u64::from(m.layers) * layer + h,
            m.parameters,
            "{model}"
        );
        assert_eq!(m.mlp_width(), m.intermediate_size);
        for gpu in GpuSpec::PRESETS {
            let g = GpuSpec::preset(gpu).unwrap();
            g.validate().unwrap();
            let cost = CostModel::new(m.clone(), g);
            cost.validate()
                .unwrap_or_else(|e| panic!("{model} on {gpu}: {e:#}"));
            // Room for at least 32k tokens of KV.
            let blocks = cost.kv_capacity_blocks(16).unwrap();
            assert!(blocks >= 2048, "{model} on {gpu}: {blocks} blocks");
            let t = cost.iteration_time_us(&BatchShape::uniform_decode(8, 512));
            assert!(t.is_finite() && t > 0.0);
        }
    }
}

#[test]
fn preset_names() {
    assert_eq!(
        ModelSpec::preset("llama-3.1-70b-tp8")
            .unwrap()
            .tensor_parallel,
        8
    );
    assert_eq!(
        ModelSpec::preset("llama-3.1-70b-tp4")
            .unwrap()
            .tensor_parallel,
        4
    );
    assert_eq!(
        ModelSpec::preset("llama-3.1-70b").unwrap().tensor_parallel,
        4
    );
    let m = ModelSpec::preset("Llama-3.1-8B-tp2").unwrap();
    assert_eq!(
        (m.tensor_parallel, m.name.as_str()),
        (2, "llama-3.1-8b-tp2")
    );
    assert!(ModelSpec::preset("llama-3.1-8b-tp0").is_err());

    let err = ModelSpec::preset("gpt-5").unwrap_err().to_string();
    assert!(err.contains("gpt-5") && err.contains("llama-3.1-8b") && err.contains("qwen2.5-7b"));
    let err = GpuSpec::preset("tpu-v5").unwrap_err().to_string();
    assert!(err.contains("tpu-v5") && err.contains("h100-sxm") && err.contains("l40s"));
}

#[test]
fn toml_overrides_change_what_they_name() {
    let base = h100_8b();
    let cost = CostModel::from_toml_str(
        "[gpu]\nhbm_bandwidth_bytes_per_s = 3.0e12\n[cost]\nfixed_overhead_us = 800\n",
        &base,
    )
    .unwrap();
    assert_eq!(cost.gpu.hbm_bandwidth_bytes_per_s, 3.0e12);
    assert_eq!(cost.fixed_overhead_us, 800.0);
    // Everything else is untouched.
    let mut expected = base.clone();
    expected.gpu.hbm_bandwidth_bytes_per_s = 3.0e12;
    expected.fixed_overhead_us = 800.0;
    assert_eq!(cost, expected);

    // Presets replace the base first, then fields override them.
    let cost = CostModel::from_toml_str(
        r#"
            [model]
            preset = "llama-3.1-70b"
            tensor_parallel = 8
            [gpu]
            preset = "h200"
            memory_bytes = 140_000_000_000
        "#,
        &base,
    )
    .unwrap();
    assert_eq!(cost.model.layers, 80);
    assert_eq!(cost.model.tensor_parallel, 8);
    assert_eq!(cost.gpu.hbm_bandwidth_bytes_per_s, 4.8e12);
    assert_eq!(cost.gpu.memory_bytes, 140e9);

    // An empty document changes nothing.
    assert_eq!(CostModel::from_toml_str("", &base).unwrap(), base);
}

#[test]
fn toml_unknown_keys_and_bad_values_fail() {
    let base = h100_8b();
    for (doc, key) in [
        ("[gpu]\nhbm_bandwith = 3e12\n", "hbm_bandwith"),
        ("[model]\nlayer = 3\n", "layer"),
        ("[cost]\nefficiency = 0.5\n", "efficiency"),
        ("[scheduler]\npolicy = 'fcfs'\n", "scheduler"),
    ] {
        let err = format!("{:#}", CostModel::from_toml_str(doc, &base).unwrap_err());
        assert!(err.contains(key), "{doc:?}: {err}");
    }
    let err = format!(
        "{:#}",
        CostModel::from_toml_str("[model]\npreset = 'nope'\n", &base).unwrap_err()
    );
    assert!(
        err.contains("nope") && err.contains("llama-3.1-8b"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        CostModel::from_toml_str("[cost]\ncompute_efficiency = 1.5\n", &base).unwrap_err()
    );
    assert!(err.contains("compute_efficiency"), "{err}");
    let err = format!(
        "{:#}",
        CostModel::from_toml_str("[model]\ntensor_parallel = 0\n", &base).unwrap_err()
    );
    assert!(err.contains("tensor_parallel"), "{err}");
}

#[test]
fn toml_file_round_trip() {
    let dir = std::env::temp_dir().join(format!("augur-cost-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cost.toml");
    std::fs::write(&path, "[gpu]\npreset = 'a100-80g'\n").unwrap();
    let cost = CostModel::from_toml_file(&path, &h100_8b()).unwrap();
    assert_eq!(cost.gpu, GpuSpec::preset("a100-80g").unwrap());
    std::fs::write(
        &path,
        "[cost]\nkind = 'per-operator'\nengine_mode = 'async'\n",
    )
    .unwrap();
    let cost = CostModel::from_toml_file(&path, &h100_8b()).unwrap();
    assert_eq!(
        (cost.kind, cost.engine_mode),
        (CostKind::PerOperator, EngineMode::Async)
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(CostModel::from_toml_file(dir.join("missing.toml"), &h100_8b()).is_err());
}

#[test]
fn reference_numbers_8b_h100() {
    // The numbers quoted in the design discussion; printed with --nocapture.
    let cost = h100_8b();
    let a = cost.iteration_time_us(&BatchShape::uniform_decode(1, 1000));
    let b = cost.iteration_time_us(&BatchShape::uniform_decode(256, 1000));
    let mut s = BatchShape::new();
    s.add(2048, 0);
    let c = cost.iteration_time_us(&s);
    println!("decode 1 @ 1000: {a:.0} µs; decode 256 @ 1000: {b:.0} µs; prefill 2048: {c:.0} µs");
    println!(
        "kv capacity: {} blocks of 16",
        cost.kv_capacity_blocks(16).unwrap()
    );
    assert!(a < b && b < c);
}

mod operator_tests;
