//! Model and GPU descriptions, with presets taken from published configs and datasheets.

use anyhow::{Result, bail, ensure};
use serde::{Deserialize, Serialize};

/// The largest tensor-parallel degree a `-tpN` preset suffix takes.
pub const MAX_TENSOR_PARALLEL: u32 = 1024;

/// The shape of a decoder-only transformer, as far as the cost model needs it.
///
/// Counts are for the whole model; [`ModelSpec::tensor_parallel`] says over how many GPUs it is
/// split (weights, KV heads and FLOPs are divided evenly between them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Display name (the preset name, or whatever a config file says).
    pub name: String,
    /// Total parameter count, embeddings and LM head included.
    pub parameters: u64,
    /// Number of transformer layers (`num_hidden_layers`).
    pub layers: u32,
    /// Hidden size (`hidden_size`); the width of the activations all-reduced under tensor
    /// parallelism.
    pub hidden_size: u32,
    /// Number of query heads (`num_attention_heads`).
    pub attention_heads: u32,
    /// Number of key/value heads (`num_key_value_heads`; fewer than the query heads under GQA).
    pub kv_heads: u32,
    /// Dimension of one head (`head_dim`, or `hidden_size / num_attention_heads`).
    pub head_dim: u32,
    /// Bytes per weight: 2 for bf16, 1 for fp8, 0.5 for 4-bit quantisation.
    pub bytes_per_weight: f64,
    /// Bytes per KV cache element: 2 for bf16, 1 for an fp8 KV cache.
    pub bytes_per_kv_element: u32,
    /// Tensor-parallel degree: the number of GPUs the model is split over.
    pub tensor_parallel: u32,
    /// The model's context window in tokens (`max_position_embeddings`): prompt and output
    /// together may not exceed it. 0 means no limit (a config file that does not say).
    #[serde(default)]
    pub max_context_tokens: u32,
}

impl ModelSpec {
    /// KV cache bytes per token for the whole model (all layers, all GPUs):
    /// `2 (K and V) · layers · kv_heads · head_dim · bytes_per_kv_element`.
    pub fn kv_bytes_per_token(&self) -> u64 {
        2 * u64::from(self.layers)
            * u64::from(self.kv_heads)
            * u64::from(self.head_dim)
            * u64::from(self.bytes_per_kv_element)
    }

    /// KV cache bytes per token held by one GPU (the whole-model figure divided by the
    /// tensor-parallel degree).
    pub fn kv_bytes_per_token_per_gpu(&self) -> f64 {
        self.kv_bytes_per_token() as f64 / f64::from(self.tensor_parallel.max(1))
    }

    /// Bytes of weights for the whole model: `parameters · bytes_per_weight`.
    pub fn weight_bytes(&self) -> f64 {
        self.parameters as f64 * self.bytes_per_weight
    }

    /// The same model split over `tp` GPUs.
    pub fn with_tensor_parallel(mut self, tp: u32) -> Self {
        self.tensor_parallel = tp;
        self
    }

    /// The names [`ModelSpec::preset`] accepts (any of them may also take a `-tpN` suffix).
    pub const PRESETS: &'static [&'static str] = &[
        "llama-3.1-8b",
        "llama-3.1-70b",
        "llama-3.1-70b-tp4",
        "llama-3.1-70b-tp8",
        "qwen2.5-7b",
    ];

    /// A model by preset name (case-insensitive).
    ///
    /// A `-tpN` suffix sets the tensor-parallel degree (`llama-3.1-8b-tp2`); `llama-3.1-70b`
    /// without a suffix means tensor parallelism 4. Unknown names are an error that lists the
    /// valid ones.
    pub fn preset(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let (base, tp) = match lower.rsplit_once("-tp") {
            Some((base, digits))
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let tp: u32 = digits
                    .parse()
                    .map_err(|_| anyhow::anyhow!("bad tensor-parallel degree in `{name}`"))?;
                ensure!(
                    (1..=MAX_TENSOR_PARALLEL).contains(&tp),
                    "tensor-parallel degree in `{name}` must be in 1..={MAX_TENSOR_PARALLEL}"
                );
                (base, Some(tp))
            }
            _ => (lower.as_str(), None),
        };
        let mut spec = match base {
            // Source: meta-llama/Llama-3.1-8B config.json on its Hugging Face model card:
            // hidden_size 4096, intermediate_size 14336, num_hidden_layers 32,
            // num_attention_heads 32, num_key_value_heads 8, head_dim 128, vocab_size 128256,
            // torch_dtype bfloat16, untied embeddings. Parameter count 8,030,261,248 (computed
            // from those shapes; the card says 8B).
            "llama-3.1-8b" => Self {
                name: String::new(),
                parameters: 8_030_261_248,
                layers: 32,
                hidden_size: 4096,
                attention_heads: 32,
                kv_heads: 8,
                head_dim: 128,
                bytes_per_weight: 2.0,
                bytes_per_kv_element: 2,
                tensor_parallel: 1,
                // max_position_embeddings 131072 in the same config.json (the card's "128k").
                max_context_tokens: 131_072,
            },
            // Source: meta-llama/Llama-3.1-70B config.json on its Hugging Face model card:
            // hidden_size 8192, intermediate_size 28672, num_hidden_layers 80,
            // num_attention_heads 64, num_key_value_heads 8, head_dim 128, vocab_size 128256,
            // torch_dtype bfloat16. Parameter count 70,553,706,496 (computed from those shapes;
            // the card says 70B). 141 GB of bf16 weights: served with tensor parallelism 4 or 8.
            "llama-3.1-70b" => Self {
                name: String::new(),
                parameters: 70_553_706_496,
                layers: 80,
                hidden_size: 8192,
                attention_heads: 64,
                kv_heads: 8,
                head_dim: 128,
                bytes_per_weight: 2.0,
                bytes_per_kv_element: 2,
                tensor_parallel: 4,
                // max_position_embeddings 131072 in the same config.json (the card's "128k").
                max_context_tokens: 131_072,
            },
            // Source: Qwen/Qwen2.5-7B config.json on its Hugging Face model card:
            // hidden_size 3584, intermediate_size 18944, num_hidden_layers 28,
            // num_attention_heads 28, num_key_value_heads 4 (head_dim 3584 / 28 = 128),
            // vocab_size 152064, torch_dtype bfloat16, tie_word_embeddings false. Parameter
            // count 7,615,616,512 (computed from those shapes with the QKV biases; the card says
            // 7.61B).
            "qwen2.5-7b" => Self {
                name: String::new(),
                parameters: 7_615_616_512,
                layers: 28,
                hidden_size: 3584,
                attention_heads: 28,
                kv_heads: 4,
                head_dim: 128,
                bytes_per_weight: 2.0,
                bytes_per_kv_element: 2,
                tensor_parallel: 1,
                // max_position_embeddings 131072 in the same config.json; the card gives the
                // context length as 131,072 tokens.
                max_context_tokens: 131_072,
            },
            _ => bail!(
                "unknown model preset `{name}`; valid presets: {} (any of them may take a \
                 `-tpN` suffix to set the tensor-parallel degree)",
                Self::PRESETS.join(", ")
            ),
        };
        if let Some(tp) = tp {
            spec.tensor_parallel = tp;
        }
        spec.name = if tp.is_some() {
            lower
        } else {
            base.to_string()
        };
        Ok(spec)
    }

    /// Checks that every number is positive and consistent (KV heads divide the query heads).
    pub fn validate(&self) -> Result<()> {
        let m = &self.name;
        ensure!(
            self.parameters > 0,
            "model `{m}`: parameters must be positive"
        );
        ensure!(self.layers > 0, "model `{m}`: layers must be positive");
        ensure!(
            self.hidden_size > 0,
            "model `{m}`: hidden_size must be positive"
        );
        ensure!(
            self.attention_heads > 0,
            "model `{m}`: attention_heads must be positive"
        );
        ensure!(self.kv_heads > 0, "model `{m}`: kv_heads must be positive");
        ensure!(
            self.attention_heads.is_multiple_of(self.kv_heads),
            "model `{m}`: attention_heads ({}) must be a multiple of kv_heads ({})",
            self.attention_heads,
            self.kv_heads
        );
        ensure!(self.head_dim > 0, "model `{m}`: head_dim must be positive");
        ensure!(
            self.bytes_per_weight.is_finite() && self.bytes_per_weight > 0.0,
            "model `{m}`: bytes_per_weight must be positive and finite"
        );
        ensure!(
            self.bytes_per_kv_element > 0,
            "model `{m}`: bytes_per_kv_element must be positive"
        );
        ensure!(
            self.tensor_parallel > 0,
            "model `{m}`: tensor_parallel must be at least 1"
        );
        Ok(())
    }
}

/// One GPU's capabilities. All figures are per GPU; bandwidths are per direction.
///
/// Datasheets quote link bandwidths as bidirectional totals (PCIe Gen5 x16 "128 GB/s", NVLink 4
/// "900 GB/s"); the presets store half of that, because a swap or a ring all-reduce step moves
/// data one way per link at a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Display name.
    pub name: String,
    /// Device memory in bytes (datasheet gigabytes taken as 10⁹ bytes).
    pub memory_bytes: f64,
    /// Dense (no sparsity) bf16 tensor-core peak, FLOP/s.
    pub peak_bf16_flops: f64,
    /// Device memory (HBM or GDDR) bandwidth, bytes/s.
    pub hbm_bandwidth_bytes_per_s: f64,
    /// Host link (PCIe) bandwidth per direction, bytes/s: what swapping KV to host memory uses.
    pub host_link_bandwidth_bytes_per_s: f64,
    /// GPU-to-GPU interconnect bandwidth per direction, bytes/s (NVLink; PCIe peer-to-peer on
    /// GPUs without NVLink): what tensor-parallel all-reduces use.
    pub interconnect_bandwidth_bytes_per_s: f64,
}

impl GpuSpec {
    /// The names [`GpuSpec::preset`] accepts.
    pub const PRESETS: &'static [&'static str] = &["a100-80g", "h100-sxm", "h200", "l40s"];

    /// A GPU by preset name (case-insensitive); unknown names are an error that lists the valid
    /// ones.
    pub fn preset(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let (memory_gb, peak_tflops, hbm_gb_s, pcie_gb_s, link_gb_s) = match lower.as_str() {
            // Source: NVIDIA A100 Tensor Core GPU datasheet, "A100 80GB SXM" column:
            // 80 GB HBM2e, 2,039 GB/s, BF16 tensor core 312 TFLOPS (624 with sparsity),
            // NVLink 600 GB/s (bidirectional), PCIe Gen4 64 GB/s (bidirectional).
            "a100-80g" => (80.0, 312.0, 2039.0, 32.0, 300.0),
            // Source: NVIDIA H100 Tensor Core GPU datasheet, "H100 SXM" column:
            // 80 GB HBM3, 3.35 TB/s, BF16 tensor core 1,979 TFLOPS with sparsity (989.5 dense),
            // NVLink 900 GB/s (bidirectional), PCIe Gen5 128 GB/s (bidirectional).
            "h100-sxm" => (80.0, 989.5, 3350.0, 64.0, 450.0),
            // Source: NVIDIA H200 Tensor Core GPU datasheet, "H200 SXM" column:
            // 141 GB HBM3e, 4.8 TB/s, BF16 tensor core 1,979 TFLOPS with sparsity (989.5
            // dense), NVLink 900 GB/s (bidirectional), PCIe Gen5 128 GB/s (bidirectional).
            "h200" => (141.0, 989.5, 4800.0, 64.0, 450.0),
            // Source: NVIDIA L40S GPU datasheet: 48 GB GDDR6 with ECC, 864 GB/s, BF16 tensor
            // core 362.05 TFLOPS (733 with sparsity), PCIe Gen4 x16 64 GB/s (bidirectional), no
            // NVLink: tensor-parallel traffic goes peer-to-peer over PCIe.
            "l40s" => (48.0, 362.05, 864.0, 32.0, 32.0),
            _ => bail!(
                "unknown GPU preset `{name}`; valid presets: {}",
                Self::PRESETS.join(", ")
            ),
        };
        Ok(Self {
            name: lower,
            memory_bytes: memory_gb * 1e9,
            peak_bf16_flops: peak_tflops * 1e12,
            hbm_bandwidth_bytes_per_s: hbm_gb_s * 1e9,
            host_link_bandwidth_bytes_per_s: pcie_gb_s * 1e9,
            interconnect_bandwidth_bytes_per_s: link_gb_s * 1e9,
        })
    }

    /// Checks that every number is positive and finite.
    pub fn validate(&self) -> Result<()> {
        let fields = [
            ("memory_bytes", self.memory_bytes),
            ("peak_bf16_flops", self.peak_bf16_flops),
            ("hbm_bandwidth_bytes_per_s", self.hbm_bandwidth_bytes_per_s),
            (
                "host_link_bandwidth_bytes_per_s",
                self.host_link_bandwidth_bytes_per_s,
            ),
            (
                "interconnect_bandwidth_bytes_per_s",
                self.interconnect_bandwidth_bytes_per_s,
            ),
        ];
        for (field, value) in fields {
            ensure!(
                value.is_finite() && value > 0.0,
                "GPU `{}`: {field} must be positive and finite (got {value})",
                self.name
            );
        }
        Ok(())
    }
}
