//! `augur policies`: what can be named on the command line.

use std::io::Write;

use augur::core::policy::POLICIES;
use augur::cost::{GpuSpec, ModelSpec};
use augur::mg1::sim::POLICY_NAMES;

use super::CliResult;

/// The predictor specs and what they predict.
pub const PREDICTORS: [(&str, &str); 7] = [
    ("oracle", "the true output length"),
    (
        "none",
        "no prediction (policies fall back to the output cap or 256 tokens)",
    ),
    (
        "lognormal:SIGMA",
        "truth × exp(N(0, σ²)): multiplicative, median-unbiased",
    ),
    (
        "exp",
        "Exp(mean = truth): the theory's exponential predictions",
    ),
    ("uniform:A", "U[(1 − A)·truth, (1 + A)·truth], 0 ≤ A ≤ 1"),
    (
        "onebit:T:ACC",
        "short/long class (long iff truth > T), right with probability ACC",
    ),
    (
        "refining:SIGMA",
        "lognormal:SIGMA at arrival, error shrinking as the request generates",
    ),
];

/// Runs `augur policies`.
pub fn run() -> CliResult {
    let mut out = std::io::stdout().lock();
    writeln!(out, "Policies (--policy, --policies):")?;
    let w = POLICIES.iter().map(|p| p.name.len()).max().unwrap_or(8);
    for p in POLICIES {
        writeln!(out, "  {:<w$}  rank: {}", p.name, p.rank)?;
        writeln!(out, "  {:<w$}  preempts: {}", "", p.preemption)?;
        writeln!(out, "  {:<w$}  parameters: {}", "", p.parameters)?;
    }
    writeln!(
        out,
        "  {:<w$}  fcfs with fair share (the same as --policy fcfs --fair-share)",
        "fair"
    )?;
    writeln!(
        out,
        "  (+aging is --aging BETA and +fair is --fair-share, on top of any policy)"
    )?;
    writeln!(out)?;
    writeln!(out, "Model presets (--model; any may take a -tpN suffix):")?;
    for name in ModelSpec::PRESETS {
        match ModelSpec::preset(name) {
            Ok(m) => writeln!(
                out,
                "  {:<20} {:>6.1} B parameters, {} layers, {} KV heads, TP {}",
                name,
                m.parameters as f64 / 1e9,
                m.layers,
                m.kv_heads,
                m.tensor_parallel
            )?,
            Err(_) => writeln!(out, "  {name}")?,
        }
    }
    writeln!(out)?;
    writeln!(out, "GPU presets (--gpu):")?;
    for name in GpuSpec::PRESETS {
        match GpuSpec::preset(name) {
            Ok(g) => writeln!(
                out,
                "  {:<20} {:>5.0} GB, {:>5.0} TFLOP/s bf16, {:>5.0} GB/s HBM",
                name,
                g.memory_bytes / 1e9,
                g.peak_bf16_flops / 1e12,
                g.hbm_bandwidth_bytes_per_s / 1e9
            )?,
            Err(_) => writeln!(out, "  {name}")?,
        }
    }
    writeln!(out)?;
    writeln!(out, "Predictors (--predictor, --predictors):")?;
    for (spec, what) in PREDICTORS {
        writeln!(out, "  {spec:<20} {what}")?;
    }
    writeln!(out)?;
    writeln!(out, "Traces (--trace):")?;
    writeln!(
        out,
        "  FILE.csv             Azure LLM inference trace, or lengths-only CSV"
    )?;
    writeln!(
        out,
        "  FILE.jsonl           Mooncake trace (with prefix block hashes)"
    )?;
    writeln!(
        out,
        "  synthetic:K=V,...    n, rate, seed, prompt, output, max_prompt, max_output, tools, tool_duration, tool_response"
    )?;
    writeln!(out, "  default              the built-in demo workload")?;
    writeln!(out)?;
    writeln!(
        out,
        "M/G/1 policies (augur mg1 --policy): {POLICY_NAMES}, or all"
    )?;
    out.flush()?;
    Ok(())
}
