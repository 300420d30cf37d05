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
    /// MLP width (`intermediate_size`) of the gated (SwiGLU) MLP. 0 (a config file that does
    /// not say) makes the per-operator model derive it from [`ModelSpec::parameters`].
    #[serde(default)]
    pub intermediate_size: u32,
    /// Vocabulary size (`vocab_size`): rows of the embedding table and of the LM head. 0 means
    /// unknown (the per-operator model then prices no embedding or LM head).
    #[serde(default)]
    pub vocab_size: u32,
    /// Whether the LM head shares the embedding table (`tie_word_embeddings`).
    #[serde(default)]
    pub tied_embeddings: bool,
}

/// Number format of weights and KV cache, as `augur cost --dtype` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// bf16 weights, activations and KV cache.
    Bf16,
    /// fp8 (e4m3) weights and KV cache. On GPUs with fp8 tensor cores (Hopper, Ada) the GEMMs
    /// run at the fp8 peak (vLLM's W8A8 fp8 path quantises activations on the fly); on A100,
    /// which has none, they run at the bf16 peak (vLLM's weight-only fp8 Marlin kernels).
    Fp8,
}

impl Dtype {
    /// Parses `bf16` or `fp8` (case-insensitive).
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "bf16" => Ok(Self::Bf16),
            "fp8" => Ok(Self::Fp8),
            other => bail!("unknown dtype `{other}`; valid dtypes: bf16, fp8"),
        }
    }

    /// Bytes per weight and per KV element.
    pub fn bytes(self) -> u32 {
        match self {
            Self::Bf16 => 2,
            Self::Fp8 => 1,
        }
    }
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

    /// The same model with weights and KV cache stored as `dtype`.
    pub fn with_dtype(mut self, dtype: Dtype) -> Self {
        self.bytes_per_weight = f64::from(dtype.bytes());
        self.bytes_per_kv_element = dtype.bytes();
        self
    }

    /// Parameters of the embedding table and of the LM head (once if they are tied).
    pub fn embedding_parameters(&self) -> u64 {
        let table = u64::from(self.vocab_size) * u64::from(self.hidden_size);
        if self.tied_embeddings {
            table
        } else {
            2 * table
        }
    }

    /// The MLP width: [`ModelSpec::intermediate_size`], or, when that is 0, what the parameter
    /// count leaves for a gated MLP (`3 · hidden · I` per layer) after attention and embeddings.
    pub fn mlp_width(&self) -> u32 {
        if self.intermediate_size > 0 {
            return self.intermediate_size;
        }
        let h = f64::from(self.hidden_size);
        let attn = h * f64::from(self.attention_heads * self.head_dim) * 2.0
            + h * f64::from(self.kv_heads * self.head_dim) * 2.0;
        let per_layer = (self.parameters as f64 - self.embedding_parameters() as f64)
            / f64::from(self.layers.max(1));
        let width = ((per_layer - attn) / (3.0 * h)).max(1.0);
        width.min(f64::from(u32::MAX)) as u32
    }

    /// The names [`ModelSpec::preset`] accepts (any of them may also take a `-tpN` suffix).
    pub const PRESETS: &'static [&'static str] = &[
        "llama-3.1-8b",
        "llama-3.1-70b",
        "llama-3.1-70b-tp4",
        "llama-3.1-70b-tp8",
        "qwen2.5-7b",
        "llama-2-7b",
        "llama-2-70b",
        "mistral-7b",
        "qwen2.5-72b",
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
                intermediate_size: 14_336,
                vocab_size: 128_256,
                tied_embeddings: false,
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
                intermediate_size: 28_672,
                vocab_size: 128_256,
                tied_embeddings: false,
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
                intermediate_size: 18_944,
                vocab_size: 152_064,
                tied_embeddings: false,
            },
            // Source: meta-llama/Llama-2-7b-hf config.json on its Hugging Face model card:
            // hidden_size 4096, intermediate_size 11008, num_hidden_layers 32,
            // num_attention_heads 32, num_key_value_heads 32 (no GQA), vocab_size 32000,
            // max_position_embeddings 4096, torch_dtype float16, untied. Parameter count
            // 6,738,415,616 (computed from those shapes; the card says 7B).
            "llama-2-7b" => Self {
                name: String::new(),
                parameters: 6_738_415_616,
                layers: 32,
                hidden_size: 4096,
                attention_heads: 32,
                kv_heads: 32,
                head_dim: 128,
                bytes_per_weight: 2.0,
                bytes_per_kv_element: 2,
                tensor_parallel: 1,
                max_context_tokens: 4096,
                intermediate_size: 11_008,
                vocab_size: 32_000,
                tied_embeddings: false,
            },
            // Source: meta-llama/Llama-2-70b-hf config.json: hidden_size 8192,
            // intermediate_size 28672, num_hidden_layers 80, num_attention_heads 64,
            // num_key_value_heads 8, vocab_size 32000, max_position_embeddings 4096, untied.
            // Parameter count 68,976,648,192 (computed from those shapes; the card says 70B).
            // Served with tensor parallelism 4 unless a suffix says otherwise.
            "llama-2-70b" => Self {
                name: String::new(),
                parameters: 68_976_648_192,
                layers: 80,
                hidden_size: 8192,
                attention_heads: 64,
                kv_heads: 8,
                head_dim: 128,
                bytes_per_weight: 2.0,
                bytes_per_kv_element: 2,
                tensor_parallel: 4,
                max_context_tokens: 4096,
                intermediate_size: 28_672,
                vocab_size: 32_000,
                tied_embeddings: false,
            },
            // Source: mistralai/Mistral-7B-v0.1 config.json: hidden_size 4096,
            // intermediate_size 14336, num_hidden_layers 32, num_attention_heads 32,
            // num_key_value_heads 8, vocab_size 32000, max_position_embeddings 32768, untied.
            // Parameter count 7,241,732,096 (computed from those shapes; the card says 7.3B
            // counting differently). Sliding-window attention (4096) is not modelled: attention
            // is priced over the whole context, an overestimate past 4096 tokens.
            "mistral-7b" => Self {
                name: String::new(),
                parameters: 7_241_732_096,
                layers: 32,
                hidden_size: 4096,
                attention_heads: 32,
                kv_heads: 8,
                head_dim: 128,
                bytes_per_weight: 2.0,
                bytes_per_kv_element: 2,
                tensor_parallel: 1,
                max_context_tokens: 32_768,
                intermediate_size: 14_336,
                vocab_size: 32_000,
                tied_embeddings: false,
            },
            // Source: Qwen/Qwen2.5-72B config.json: hidden_size 8192, intermediate_size 29568,
            // num_hidden_layers 80, num_attention_heads 64, num_key_value_heads 8 (head_dim
            // 128), vocab_size 152064, tie_word_embeddings false, QKV biases,
            // max_position_embeddings 131072. Parameter count 72,706,203,648 (computed from
            // those shapes; the card says 72.7B). Served with tensor parallelism 4 by default.
            "qwen2.5-72b" => Self {
                name: String::new(),
                parameters: 72_706_203_648,
                layers: 80,
                hidden_size: 8192,
                attention_heads: 64,
                kv_heads: 8,
                head_dim: 128,
                bytes_per_weight: 2.0,
                bytes_per_kv_element: 2,
                tensor_parallel: 4,
                max_context_tokens: 131_072,
                intermediate_size: 29_568,
                vocab_size: 152_064,
                tied_embeddings: false,
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
    /// Dense fp8 tensor-core peak, FLOP/s; 0 for a GPU without fp8 tensor cores (A100).
    #[serde(default)]
    pub peak_fp8_flops: f64,
    /// Streaming multiprocessors: the unit of GEMM wave quantisation. 0 (a config file that
    /// does not say) disables wave quantisation.
    #[serde(default)]
    pub sm_count: u32,
    /// Whether the GPUs of a tensor-parallel group are all connected by NVLink (what vLLM's
    /// custom all-reduce needs beyond two GPUs).
    #[serde(default)]
    pub nvlink: bool,
}

impl GpuSpec {
    /// The names [`GpuSpec::preset`] accepts.
    pub const PRESETS: &'static [&'static str] = &["a100-80g", "h100-sxm", "h200", "l40s"];

    /// A GPU by preset name (case-insensitive); unknown names are an error that lists the valid
    /// ones.
    pub fn preset(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        // (memory GB, bf16 TFLOPS, fp8 TFLOPS, HBM GB/s, PCIe GB/s, link GB/s, SMs, NVLink)
        let (memory_gb, bf16, fp8, hbm_gb_s, pcie_gb_s, link_gb_s, sms, nvlink) =
            match lower.as_str() {
                // Source: NVIDIA A100 Tensor Core GPU datasheet, "A100 80GB SXM" column:
                // 80 GB HBM2e, 2,039 GB/s, BF16 tensor core 312 TFLOPS (624 with sparsity), no FP8,
                // NVLink 600 GB/s (bidirectional), PCIe Gen4 64 GB/s (bidirectional). 108 SMs:
                // NVIDIA A100 Tensor Core GPU Architecture whitepaper (GA100 as shipped in A100).
                "a100-80g" => (80.0, 312.0, 0.0, 2039.0, 32.0, 300.0, 108, true),
                // Source: NVIDIA H100 Tensor Core GPU datasheet, "H100 SXM" column:
                // 80 GB HBM3, 3.35 TB/s, BF16 tensor core 1,979 TFLOPS with sparsity (989.5 dense),
                // FP8 3,958 TFLOPS with sparsity (1,979 dense), NVLink 900 GB/s (bidirectional),
                // PCIe Gen5 128 GB/s (bidirectional). 132 SMs: NVIDIA H100 Tensor Core GPU
                // Architecture whitepaper (H100 SXM5).
                "h100-sxm" => (80.0, 989.5, 1979.0, 3350.0, 64.0, 450.0, 132, true),
                // Source: NVIDIA H200 Tensor Core GPU datasheet, "H200 SXM" column:
                // 141 GB HBM3e, 4.8 TB/s, BF16 tensor core 1,979 TFLOPS with sparsity (989.5
                // dense), FP8 3,958 TFLOPS with sparsity (1,979 dense), NVLink 900 GB/s
                // (bidirectional), PCIe Gen5 128 GB/s (bidirectional). Same GH100 chip as the
                // H100 SXM: 132 SMs.
                "h200" => (141.0, 989.5, 1979.0, 4800.0, 64.0, 450.0, 132, true),
                // Source: NVIDIA L40S GPU datasheet: 48 GB GDDR6 with ECC, 864 GB/s, BF16 tensor
                // core 362.05 TFLOPS (733 with sparsity), FP8 733 TFLOPS (1,466 with sparsity),
                // PCIe Gen4 x16 64 GB/s (bidirectional), no NVLink: tensor-parallel traffic goes
                // peer-to-peer over PCIe. 18,176 CUDA cores at 128 per Ada SM = 142 SMs.
                "l40s" => (48.0, 362.05, 733.0, 864.0, 32.0, 32.0, 142, false),
                _ => bail!(
                    "unknown GPU preset `{name}`; valid presets: {}",
                    Self::PRESETS.join(", ")
                ),
            };
        Ok(Self {
            name: lower,
            memory_bytes: memory_gb * 1e9,
            peak_bf16_flops: bf16 * 1e12,
            hbm_bandwidth_bytes_per_s: hbm_gb_s * 1e9,
            host_link_bandwidth_bytes_per_s: pcie_gb_s * 1e9,
            interconnect_bandwidth_bytes_per_s: link_gb_s * 1e9,
            peak_fp8_flops: fp8 * 1e12,
            sm_count: sms,
            nvlink,
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
        ensure!(
            self.peak_fp8_flops.is_finite() && self.peak_fp8_flops >= 0.0,
            "GPU `{}`: peak_fp8_flops must be finite and non-negative (got {})",
            self.name,
            self.peak_fp8_flops
        );
        Ok(())
    }
}
