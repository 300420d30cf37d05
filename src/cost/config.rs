//! TOML overrides for the cost model.
//!
//! A file names presets and overrides single numbers, so that a what-if ("the same model with
//! 3 TB/s") is one line rather than a full description:
//!
//! ```toml
//! [model]
//! preset = "llama-3.1-70b"
//! tensor_parallel = 8
//!
//! [gpu]
//! preset = "h100-sxm"
//! hbm_bandwidth_bytes_per_s = 3.0e12
//!
//! [cost]
//! kind = "roofline-simple"   # or "per-operator" (the default)
//! fixed_overhead_us = 800
//! ```
//!
//! Every table and field is optional. A `preset` replaces the base's model (or GPU) first; the
//! other fields then override it one by one. Unknown keys are errors that name the key, so a
//! typo cannot silently leave a preset number in place.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::model::CostModel;
use super::operators::{AllReduceImpl, CostKind, EngineMode};
use super::spec::{GpuSpec, ModelSpec};

/// Overrides for the `[model]` table; field names are those of [`ModelSpec`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field overrides the `ModelSpec` field of the same name
pub struct ModelOverrides {
    /// A [`ModelSpec::preset`] name to start from instead of the base model.
    pub preset: Option<String>,
    pub name: Option<String>,
    pub parameters: Option<u64>,
    pub layers: Option<u32>,
    pub hidden_size: Option<u32>,
    pub attention_heads: Option<u32>,
    pub kv_heads: Option<u32>,
    pub head_dim: Option<u32>,
    pub bytes_per_weight: Option<f64>,
    pub bytes_per_kv_element: Option<u32>,
    pub tensor_parallel: Option<u32>,
    pub max_context_tokens: Option<u32>,
    pub intermediate_size: Option<u32>,
    pub vocab_size: Option<u32>,
    pub tied_embeddings: Option<bool>,
}

/// Overrides for the `[gpu]` table; field names are those of [`GpuSpec`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field overrides the `GpuSpec` field of the same name
pub struct GpuOverrides {
    /// A [`GpuSpec::preset`] name to start from instead of the base GPU.
    pub preset: Option<String>,
    pub name: Option<String>,
    pub memory_bytes: Option<f64>,
    pub peak_bf16_flops: Option<f64>,
    pub hbm_bandwidth_bytes_per_s: Option<f64>,
    pub host_link_bandwidth_bytes_per_s: Option<f64>,
    pub interconnect_bandwidth_bytes_per_s: Option<f64>,
    pub peak_fp8_flops: Option<f64>,
    pub sm_count: Option<u32>,
    pub nvlink: Option<bool>,
}

/// Overrides for the `[cost]` table; field names are those of [`CostModel`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field overrides the `CostModel` field of the same name
pub struct CostOverrides {
    pub compute_efficiency: Option<f64>,
    pub bandwidth_efficiency: Option<f64>,
    pub fixed_overhead_us: Option<f64>,
    pub gpu_memory_utilization: Option<f64>,
    pub allreduce_latency_us: Option<f64>,
    /// `per-operator` (the default) or `roofline-simple` (the original single roofline).
    pub kind: Option<CostKind>,
    pub gemm_efficiency: Option<f64>,
    pub attention_efficiency: Option<f64>,
    pub kernel_floor_us: Option<f64>,
    /// `auto`, `custom` or `ring`.
    pub allreduce: Option<AllReduceImpl>,
    pub ring_step_latency_us: Option<f64>,
    /// `sync` or `async`.
    pub engine_mode: Option<EngineMode>,
    pub cpu_base_us: Option<f64>,
    pub cpu_per_request_us: Option<f64>,
    pub cpu_per_worker_us: Option<f64>,
}

/// A cost-model configuration file: optional `[model]`, `[gpu]` and `[cost]` tables.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    /// Model preset and overrides.
    #[serde(default)]
    pub model: ModelOverrides,
    /// GPU preset and overrides.
    #[serde(default)]
    pub gpu: GpuOverrides,
    /// Efficiency, overhead and memory-utilisation overrides.
    #[serde(default)]
    pub cost: CostOverrides,
}

macro_rules! override_fields {
    ($target:expr, $source:expr, $($field:ident),+ $(,)?) => {
        $(if let Some(value) = $source.$field.clone() {
            $target.$field = value;
        })+
    };
}

impl CostConfig {
    /// Parses a TOML document (unknown keys are errors naming the key).
    pub fn from_toml_str(text: &str) -> Result<Self> {
        toml::from_str(text).context("invalid cost-model configuration")
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading cost-model configuration {}", path.display()))?;
        Self::from_toml_str(&text)
            .with_context(|| format!("in cost-model configuration {}", path.display()))
    }

    /// `base` with this configuration's presets and overrides applied, validated.
    pub fn apply(&self, base: &CostModel) -> Result<CostModel> {
        let mut cost = base.clone();

        if let Some(preset) = &self.model.preset {
            cost.model = ModelSpec::preset(preset)?;
        }
        override_fields!(
            cost.model,
            self.model,
            name,
            parameters,
            layers,
            hidden_size,
            attention_heads,
            kv_heads,
            head_dim,
            bytes_per_weight,
            bytes_per_kv_element,
            tensor_parallel,
            max_context_tokens,
            intermediate_size,
            vocab_size,
            tied_embeddings,
        );

        if let Some(preset) = &self.gpu.preset {
            cost.gpu = GpuSpec::preset(preset)?;
        }
        override_fields!(
            cost.gpu,
            self.gpu,
            name,
            memory_bytes,
            peak_bf16_flops,
            hbm_bandwidth_bytes_per_s,
            host_link_bandwidth_bytes_per_s,
            interconnect_bandwidth_bytes_per_s,
            peak_fp8_flops,
            sm_count,
            nvlink,
        );

        override_fields!(
            cost,
            self.cost,
            compute_efficiency,
            bandwidth_efficiency,
            fixed_overhead_us,
            gpu_memory_utilization,
            allreduce_latency_us,
            kind,
            gemm_efficiency,
            attention_efficiency,
            kernel_floor_us,
            allreduce,
            ring_step_latency_us,
            engine_mode,
            cpu_base_us,
            cpu_per_request_us,
            cpu_per_worker_us,
        );

        cost.validate()?;
        Ok(cost)
    }
}

impl CostModel {
    /// `base` with the presets and overrides of a TOML document applied (see [`CostConfig`]).
    pub fn from_toml_str(text: &str, base: &CostModel) -> Result<Self> {
        CostConfig::from_toml_str(text)?.apply(base)
    }

    /// `base` with the presets and overrides of a TOML file applied (see [`CostConfig`]).
    pub fn from_toml_file(path: impl AsRef<Path>, base: &CostModel) -> Result<Self> {
        CostConfig::from_file(path)?.apply(base)
    }
}
