//! `augur cost`: one iteration's predicted time, with its per-operator breakdown.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use augur::cost::{
    CostKind, CostModel, Dtype, EngineMode, GpuSpec, MAX_TENSOR_PARALLEL, ModelSpec,
    parse_batch_spec,
};
use clap::{Args, ValueEnum};

use super::config_file::FileConfig;
use super::{CliResult, usage};

/// Output format of `augur cost`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum CostFormat {
    /// Aligned text.
    #[default]
    Table,
    /// One JSON object: `iteration_ms`, one `*_ms` field per operator group, and the inputs.
    Json,
}

/// Predict one iteration's time for a batch, split by operator.
///
/// Batch specs (`--batch`), parts joined by `+`: `decode:NxCONTEXT` (N sequences decoding one
/// token each after CONTEXT cached tokens), `prefill:[Nx]TOKENS[@CONTEXT]` (N prompts or
/// chunks of TOKENS tokens after CONTEXT cached ones). Examples: `decode:128x4096`,
/// `prefill:2048`, `prefill:512+decode:64x1024`.
///
/// JSON fields (`--format json`): model, gpu, tp, dtype, cost_model, batch, iteration_ms,
/// gpu_ms, cpu_ms, embedding_ms, qkv_ms, attention_prefill_ms, attention_decode_ms, o_proj_ms,
/// mlp_ms, lm_head_ms, allreduce_ms (the operator fields are 0 under roofline-simple, whose
/// terms are compute_ms, memory_ms, allreduce_ms and overhead_ms).
#[derive(Args, Debug)]
pub struct CostArgs {
    /// Model preset (see `augur policies`).
    #[arg(long, default_value = "llama-3.1-8b")]
    pub model: String,
    /// GPU preset.
    #[arg(long, default_value = "h100-sxm")]
    pub gpu: String,
    /// Tensor-parallel degree (default: the preset's).
    #[arg(long)]
    pub tp: Option<u32>,
    /// Weight and KV-cache format: bf16 or fp8.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// The batch (see above).
    #[arg(long)]
    pub batch: String,
    /// Cost model: per-operator or roofline-simple.
    #[arg(long = "cost", default_value = "per-operator")]
    pub cost_kind: String,
    /// Engine mode of the CPU term: sync (CPU time adds) or async (overlaps the GPU).
    #[arg(long, value_enum)]
    pub engine_mode: Option<EngineModeArg>,
    /// A TOML file whose `[model]`, `[gpu]` and `[cost]` tables override the presets.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CostFormat::Table)]
    pub format: CostFormat,
}

/// `--engine-mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineModeArg {
    /// CPU time adds to GPU time.
    Sync,
    /// CPU time overlaps GPU time.
    Async,
}

fn build(a: &CostArgs) -> CliResult<(CostModel, Dtype)> {
    let dtype = Dtype::parse(&a.dtype).map_err(|e| usage(e.context("--dtype")))?;
    let kind = CostKind::parse(&a.cost_kind).map_err(|e| usage(e.context("--cost")))?;
    let mut model = ModelSpec::preset(&a.model).map_err(|e| usage(e.context("--model")))?;
    if let Some(tp) = a.tp {
        if !(1..=MAX_TENSOR_PARALLEL).contains(&tp) {
            return Err(usage(anyhow::anyhow!(
                "--tp must be in 1..={MAX_TENSOR_PARALLEL} (got {tp})"
            )));
        }
        model = model.with_tensor_parallel(tp);
    }
    model = model.with_dtype(dtype);
    let gpu = GpuSpec::preset(&a.gpu).map_err(|e| usage(e.context("--gpu")))?;
    let mut cost = CostModel::new(model, gpu).with_kind(kind);
    if let Some(path) = &a.config {
        let file = FileConfig::load(path).map_err(usage)?;
        let mut cfg = file.cost_config();
        // The flags name the model and GPU; the file only overrides fields.
        cfg.model.preset = None;
        cfg.gpu.preset = None;
        cost = cfg.apply(&cost).map_err(usage)?;
    }
    if let Some(m) = a.engine_mode {
        cost.engine_mode = match m {
            EngineModeArg::Sync => EngineMode::Sync,
            EngineModeArg::Async => EngineMode::Async,
        };
    }
    cost.validate()
        .map_err(|e| usage(e.context("invalid cost model")))?;
    Ok((cost, dtype))
}

/// Runs `augur cost`.
pub fn run(a: &CostArgs) -> CliResult {
    let (cost, dtype) = build(a)?;
    let shape = parse_batch_spec(&a.batch).map_err(|e| usage(e.context("--batch")))?;
    let c = cost.iteration_cost(&shape);
    let o = c.operators;
    let kind = match cost.kind {
        CostKind::PerOperator => "per-operator",
        CostKind::RooflineSimple => "roofline-simple",
    };
    let dtype = match dtype {
        Dtype::Bf16 => "bf16",
        Dtype::Fp8 => "fp8",
    };
    let ms = |us: f64| us / 1000.0;
    let mut out = std::io::stdout().lock();
    match a.format {
        CostFormat::Json => {
            let v = serde_json::json!({
                "model": cost.model.name,
                "gpu": cost.gpu.name,
                "tp": cost.model.tensor_parallel,
                "dtype": dtype,
                "cost_model": kind,
                "batch": a.batch,
                "requests": shape.requests(),
                "tokens": shape.tokens(),
                "iteration_ms": ms(c.total_us),
                "gpu_ms": ms(o.gpu_us),
                "cpu_ms": ms(o.cpu_us),
                "embedding_ms": ms(o.embedding_us),
                "qkv_ms": ms(o.qkv_us),
                "attention_prefill_ms": ms(o.attention_prefill_us),
                "attention_decode_ms": ms(o.attention_decode_us),
                "o_proj_ms": ms(o.o_proj_us),
                "mlp_ms": ms(o.mlp_us),
                "lm_head_ms": ms(o.lm_head_us),
                "allreduce_ms": ms(c.allreduce_us),
                "compute_ms": ms(c.compute_us),
                "memory_ms": ms(c.memory_us),
                "overhead_ms": ms(c.overhead_us),
            });
            let text = serde_json::to_string_pretty(&v).context("encoding JSON")?;
            writeln!(out, "{text}")?;
        }
        CostFormat::Table => {
            writeln!(
                out,
                "{} on {} × {} ({dtype}), {kind}: batch {} ({} requests, {} tokens)",
                cost.model.name,
                cost.model.tensor_parallel,
                cost.gpu.name,
                a.batch,
                shape.requests(),
                shape.tokens()
            )?;
            writeln!(out, "iteration          {:>10.3} ms", ms(c.total_us))?;
            let rows: Vec<(&str, f64)> = match cost.kind {
                CostKind::PerOperator => vec![
                    ("embedding", o.embedding_us),
                    ("qkv", o.qkv_us),
                    ("attention_prefill", o.attention_prefill_us),
                    ("attention_decode", o.attention_decode_us),
                    ("o_proj", o.o_proj_us),
                    ("mlp", o.mlp_us),
                    ("lm_head", o.lm_head_us),
                    ("allreduce", o.allreduce_us),
                    ("gpu (sum)", o.gpu_us),
                    ("cpu/framework", o.cpu_us),
                ],
                CostKind::RooflineSimple => vec![
                    ("compute", c.compute_us),
                    ("memory", c.memory_us),
                    ("allreduce", c.allreduce_us),
                    ("overhead", c.overhead_us),
                ],
            };
            for (name, us) in rows {
                let share = if c.total_us > 0.0 {
                    100.0 * us / c.total_us
                } else {
                    0.0
                };
                writeln!(out, "  {name:<17}{:>10.3} ms  {share:>5.1}%", ms(us))?;
            }
        }
    }
    Ok(())
}
