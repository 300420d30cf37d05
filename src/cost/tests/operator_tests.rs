//! Physical invariants of the per-operator model, a self-check table and a comparison with a
//! published number.

use super::super::*;

fn op(model: &str, gpu: &str) -> CostModel {
    CostModel::preset(model, gpu).unwrap()
}

fn decode(n: u32, ctx: u32) -> BatchShape {
    BatchShape::uniform_decode(n, ctx)
}

fn prefill(tokens: u32) -> BatchShape {
    let mut s = BatchShape::new();
    s.add(tokens, 0);
    s
}

#[test]
fn per_operator_is_the_default() {
    assert_eq!(op("llama-3.1-8b", "h100-sxm").kind, CostKind::PerOperator);
}

#[test]
fn monotone_in_batch_and_context_for_every_preset() {
    for model in ModelSpec::PRESETS {
        for gpu in ["a100-80g", "h100-sxm", "h200"] {
            let cost = op(model, gpu);
            let mut last = 0.0;
            for batch in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] {
                let t = cost.iteration_time_us(&decode(batch, 1024));
                assert!(t >= last, "{model}/{gpu} batch {batch}: {t} < {last}");
                last = t;
            }
            let mut last = 0.0;
            for ctx in [1, 128, 1024, 4096, 16_384, 65_536] {
                let t = cost.iteration_time_us(&decode(32, ctx));
                assert!(t >= last, "{model}/{gpu} context {ctx}: {t} < {last}");
                last = t;
            }
            let mut last = 0.0;
            for tokens in [1, 64, 512, 2048, 8192] {
                let t = cost.iteration_time_us(&prefill(tokens));
                assert!(t >= last, "{model}/{gpu} prefill {tokens}: {t} < {last}");
                last = t;
            }
        }
    }
}

#[test]
fn small_batch_decode_is_memory_bound_near_weight_bytes_over_bandwidth() {
    for (model, gpu) in [("llama-3.1-8b", "h100-sxm"), ("llama-2-7b", "a100-80g")] {
        let cost = op(model, gpu);
        let c = cost.iteration_cost(&decode(1, 128));
        assert!(c.is_bandwidth_bound(), "{model}/{gpu}: {c:?}");
        let weights_us = cost.model.weight_bytes()
            / (cost.gpu.hbm_bandwidth_bytes_per_s * cost.bandwidth_efficiency)
            * 1e6;
        let gpu_us = c.operators.gpu_us;
        // Weights once, plus the small kernels' floors: within 20% above.
        assert!(
            gpu_us >= 0.97 * weights_us && gpu_us <= 1.2 * weights_us,
            "{model}/{gpu}: {gpu_us} vs {weights_us}"
        );
    }
}

#[test]
fn large_prefill_is_compute_bound_near_nonembedding_flops_over_peak() {
    let cost = op("llama-3.1-8b", "h100-sxm");
    let tokens = 8192.0;
    let c = cost.iteration_cost(&prefill(8192));
    assert!(!c.is_bandwidth_bound(), "{c:?}");
    let m = &cost.model;
    let dense = (m.parameters - m.embedding_parameters()) as f64;
    let expect_us = 2.0 * dense * tokens / (cost.gpu.peak_bf16_flops * cost.gemm_efficiency) * 1e6;
    let gemm_us = c.operators.qkv_us + c.operators.o_proj_us + c.operators.mlp_us;
    // GEMM groups within 15% above (wave quantisation, norms, rotary, SiLU); attention on top.
    assert!(
        gemm_us >= expect_us && gemm_us <= 1.15 * expect_us,
        "{gemm_us} vs {expect_us}"
    );
    assert!(c.operators.attention_prefill_us > 0.0);
    // The LM head is one row: its weight read, not 8192 rows of FLOPs.
    let head_flops_us = 2.0 * f64::from(m.vocab_size) * f64::from(m.hidden_size) * tokens
        / (cost.gpu.peak_bf16_flops * cost.gemm_efficiency)
        * 1e6;
    assert!(c.operators.lm_head_us < head_flops_us / 4.0);
}

#[test]
fn prefill_attention_is_quadratic_in_the_chunk() {
    let cost = op("llama-3.1-8b", "h100-sxm");
    let a = cost.operator_times(&prefill(8192)).attention_prefill_us;
    let b = cost.operator_times(&prefill(16_384)).attention_prefill_us;
    assert!(b > 3.5 * a && b < 4.5 * a, "{a} {b}");
    // A chunk after cached context attends it too.
    let mut s = BatchShape::new();
    s.add(2048, 8192);
    let with_ctx = cost.operator_times(&s).attention_prefill_us;
    let alone = cost.operator_times(&prefill(2048)).attention_prefill_us;
    assert!(with_ctx > 3.0 * alone, "{with_ctx} {alone}");
}

#[test]
fn lm_head_runs_only_for_sampled_positions() {
    let cost = op("llama-3.1-8b", "h100-sxm");
    let mut chunk = BatchShape::new();
    chunk.add_sampled(2048, 0, false);
    assert_eq!(cost.operator_times(&chunk).lm_head_us, 0.0);
    let mut last = BatchShape::new();
    last.add_sampled(2048, 0, true);
    let one = cost.operator_times(&last).lm_head_us;
    assert!(one > 0.0);
    // The same for 1 and for 2048 prompt tokens: one sampled row each.
    assert!((cost.operator_times(&prefill(1)).lm_head_us - one).abs() < 1e-9);
}

#[test]
fn tensor_parallel_halves_gemm_work_and_adds_allreduce() {
    let one = op("llama-3.1-8b", "h100-sxm");
    let two = CostModel::new(one.model.clone().with_tensor_parallel(2), one.gpu.clone());
    for shape in [prefill(8192), decode(1, 1024)] {
        let (a, b) = (one.operator_times(&shape), two.operator_times(&shape));
        let ga = a.qkv_us + a.o_proj_us + a.mlp_us;
        let gb = b.qkv_us + b.o_proj_us + b.mlp_us;
        assert!(gb < 0.6 * ga && gb > 0.4 * ga, "{ga} {gb}");
        assert_eq!(a.allreduce_us, 0.0);
        assert!(b.allreduce_us > 0.0);
    }
    // 65 all-reduces (two per layer, one for the embedding) of a decode step, each over 8 µs.
    let b = two.operator_times(&decode(1, 1024));
    assert!(
        b.allreduce_us > 65.0 * 8.0 && b.allreduce_us < 65.0 * 30.0,
        "{b:?}"
    );
}

#[test]
fn allreduce_implementations() {
    let mut cost = op("llama-3.1-70b-tp8", "h100-sxm");
    // The published table itself at its points (TP 8).
    assert!((cost.allreduce_us(512.0) - 10.1).abs() < 1e-9);
    assert!((cost.allreduce_us(1_048_576.0) - 45.0).abs() < 1e-9);
    let small = cost.allreduce_us(16.0 * 8192.0 * 2.0);
    cost.allreduce = AllReduceImpl::Ring;
    // A ring takes 14 steps: slower than one custom all-reduce for small messages.
    assert!(cost.allreduce_us(16.0 * 8192.0 * 2.0) > small);
    // Ring bandwidth term: 2 (tp − 1) / tp of the bytes over the link.
    let big = 256e6;
    let expected = 2.0 * 7.0 / 8.0 * big / (450e9 * cost.bandwidth_efficiency) * 1e6;
    assert!((cost.allreduce_us(big) - 14.0 * cost.ring_step_latency_us - expected).abs() < 1e-6);
    // Auto picks the ring beyond 8 MiB.
    cost.allreduce = AllReduceImpl::Auto;
    assert!((cost.allreduce_us(big) - 14.0 * cost.ring_step_latency_us - expected).abs() < 1e-6);
}

#[test]
fn fp8_is_faster_where_memory_bound() {
    let bf16 = op("llama-3.1-8b", "h100-sxm");
    let fp8 = CostModel::new(bf16.model.clone().with_dtype(Dtype::Fp8), bf16.gpu.clone());
    for shape in [decode(1, 1024), decode(64, 4096)] {
        let (a, b) = (
            bf16.iteration_time_us(&shape),
            fp8.iteration_time_us(&shape),
        );
        assert!(b < 0.7 * a, "{a} {b}");
    }
    // Compute-bound prefill: fp8 tensor cores on H100, none on A100.
    assert!(fp8.iteration_time_us(&prefill(8192)) < 0.7 * bf16.iteration_time_us(&prefill(8192)));
    let a100 = GpuSpec::preset("a100-80g").unwrap();
    let a_bf16 = CostModel::new(bf16.model.clone(), a100.clone());
    let a_fp8 = CostModel::new(fp8.model.clone(), a100);
    let (x, y) = (
        a_bf16.operator_times(&prefill(8192)),
        a_fp8.operator_times(&prefill(8192)),
    );
    assert!(y.mlp_us > 0.95 * x.mlp_us, "{x:?} {y:?}");
}

#[test]
fn the_floor_dominates_tiny_batches() {
    // A tiny model shape: every kernel is below the floor.
    let mut cost = op("llama-3.1-8b", "h100-sxm");
    cost.model.hidden_size = 256;
    cost.model.attention_heads = 2;
    cost.model.kv_heads = 1;
    cost.model.intermediate_size = 512;
    cost.model.vocab_size = 1000;
    cost.model.parameters = 30_000_000;
    let o = cost.operator_times(&decode(1, 16));
    let layers = f64::from(cost.model.layers);
    // qkv: 4 kernels, attention: 2, o: 1, mlp: 4, each at the floor.
    assert!(
        (o.qkv_us - layers * 4.0 * cost.kernel_floor_us).abs() < 1e-6,
        "{o:?}"
    );
    assert!((o.attention_decode_us - layers * 2.0 * cost.kernel_floor_us).abs() < 1e-6);
    assert!((o.mlp_us - layers * 4.0 * cost.kernel_floor_us).abs() < 1e-6);
    assert!(o.memory_us < 0.1 * o.gpu_us);
}

#[test]
fn wave_quantisation() {
    let cost = op("llama-3.1-8b", "h100-sxm");
    // 132 tiles of 128 × 128: one full wave.
    assert!((cost.wave_efficiency(128.0 * 12.0, 128.0 * 11.0, 4096.0) - 1.0).abs() < 1e-12);
    // 133 tiles: two waves, the second nearly idle.
    let e = cost.wave_efficiency(128.0 * 7.0, 128.0 * 19.0, 4096.0);
    assert!((e - 133.0 / 264.0).abs() < 1e-12, "{e}");
}

#[test]
fn cpu_term_inputs_are_explicit() {
    let mut cost = op("llama-3.1-70b-tp4", "h100-sxm");
    let base = cost.cpu_us(0);
    assert!((cost.cpu_us(10) - base - 10.0 * cost.cpu_per_request_us).abs() < 1e-9);
    let tp8 = CostModel::new(cost.model.clone().with_tensor_parallel(8), cost.gpu.clone());
    assert!((tp8.cpu_us(0) - base - 4.0 * cost.cpu_per_worker_us).abs() < 1e-9);
    let shape = decode(8, 512);
    let sync = cost.operator_times(&shape);
    assert!((sync.total_us - sync.gpu_us - sync.cpu_us).abs() < 1e-9);
    cost.engine_mode = EngineMode::Async;
    let asy = cost.operator_times(&shape);
    assert!((asy.total_us - asy.gpu_us.max(asy.cpu_us)).abs() < 1e-9);
}

#[test]
fn batch_specs() {
    let s = parse_batch_spec("prefill:512+decode:64x1024").unwrap();
    assert_eq!((s.requests(), s.tokens(), s.decode_tokens()), (65, 576, 64));
    assert_eq!(s.decode_context_tokens(), 64 * 1024);
    let s = parse_batch_spec("prefill:2x256@1000").unwrap();
    assert_eq!(
        (s.prefill_tokens(), s.prefill_context_tokens()),
        (512, 2000)
    );
    for (bad, part) in [
        ("decode:0x5", "decode:0x5"),
        ("prefill:10+decod:3", "decod:3"),
        ("decode:8xfoo", "foo"),
        ("prefill:", "prefill:"),
        ("", "empty"),
    ] {
        let e = format!("{:#}", parse_batch_spec(bad).unwrap_err());
        assert!(e.contains(part), "{bad}: {e}");
    }
}

/// The self-check grid (printed with `--nocapture`) and one published end-to-end number.
#[test]
fn self_check_table() {
    println!("model            gpu        tp  dtype  batch              per-op ms  simple ms");
    for (model, tp) in [
        ("llama-3.1-8b", 1),
        ("llama-3.1-70b", 4),
        ("llama-3.1-70b", 8),
    ] {
        for gpu in ["a100-80g", "h100-sxm", "h200"] {
            for dtype in [Dtype::Bf16, Dtype::Fp8] {
                let spec = ModelSpec::preset(model)
                    .unwrap()
                    .with_tensor_parallel(tp)
                    .with_dtype(dtype);
                let cost = CostModel::new(spec, GpuSpec::preset(gpu).unwrap());
                let simple = cost.clone().with_kind(CostKind::RooflineSimple);
                for batch in [
                    "decode:1x1024",
                    "decode:32x2048",
                    "decode:256x1024",
                    "prefill:2048",
                ] {
                    let s = parse_batch_spec(batch).unwrap();
                    let (a, b) = (cost.iteration_time_us(&s), simple.iteration_time_us(&s));
                    println!(
                        "{model:<16} {gpu:<10} {tp:>2}  {:<5}  {batch:<17} {:>10.2} {:>10.2}",
                        format!("{dtype:?}").to_lowercase(),
                        a / 1e3,
                        b / 1e3
                    );
                    assert!(a.is_finite() && a > 0.0);
                }
            }
        }
    }

    // PUBLISHED (not held back): vLLM pull request 2192 ("Custom all reduce kernels",
    // https://github.com/vllm-project/vllm/pull/2192), benchmark_latency.py with Llama 70B on
    // A100-80G, TP 4, batch 64, input 256, output 256: 14.57 s per batch with the custom
    // all-reduce. Predicted: one prefill of 64 × 256 tokens, then 255 decode steps of 64
    // sequences at contexts 256..510 (Llama-2-70B shapes).
    let cost = op("llama-2-70b-tp4", "a100-80g");
    let mut total = cost.iteration_time_us(&parse_batch_spec("prefill:64x256").unwrap());
    for step in 0..255 {
        total += cost.iteration_time_us(&decode(64, 256 + step));
    }
    let published = 14.57e6;
    println!(
        "PUBLISHED vLLM #2192, llama-70b a100 tp4 bs64 256/256: {:.2} s; predicted {:.2} s ({:+.0}%)",
        published / 1e6,
        total / 1e6,
        100.0 * (total - published) / published
    );
    assert!(total > 0.5 * published && total < 2.0 * published);
}
