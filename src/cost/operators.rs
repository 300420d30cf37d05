//! The per-operator cost model: one decoder step as the sequence of kernels an engine such as
//! vLLM launches, each priced `max(compute, memory, floor)`, plus a CPU/framework term.
//!
//! Per layer, on each of the `tp` GPUs (`T` new tokens this step, `S` sampled positions):
//!
//! | group | kernels | work |
//! |---|---|---|
//! | `qkv` | RMSNorm, QKV GEMM `T × (q + 2 kv) / tp × h`, rotary, KV-cache write | GEMM FLOPs and weight bytes; activation and KV bytes |
//! | `attention_prefill` | one FlashAttention varlen kernel | `4 · heads/tp · head_dim · Σ new × context` FLOPs (quadratic in the chunk); KV of the context read |
//! | `attention_decode` | split-KV decode kernel + merge | `4 · heads/tp · head_dim · Σ (context + 1)` FLOPs; the whole KV of each sequence read |
//! | `o_proj` | O GEMM `T × h × q / tp` | |
//! | `mlp` | RMSNorm, gate+up GEMM `T × 2I/tp × h`, SiLU·mul, down GEMM `T × h × I/tp` | SwiGLU |
//! | `allreduce` | two all-reduces of `T × h` bf16 activations (after O, after the MLP) | see [`CostModel::allreduce_us`] |
//!
//! Once per step: the embedding lookup (`T` rows read: bytes only, no FLOPs; one more
//! all-reduce under tensor parallelism, as vLLM's vocabulary-parallel embedding does), and the
//! LM head on the `S` sampled positions only (`S × V/tp × h`, its weights read once), the
//! logits gathered to the first GPU, and the sampler.
//!
//! GEMM compute is derated by wave quantisation: output tiles of `tile_m × 128` (`tile_m` 64 for
//! up to 64 rows, else 128) are spread over the SMs in waves, and a partial last wave idles the
//! rest: efficiency `m · n / (ceil(tiles / SMs) · SMs · tile_m · 128)`, with split-K for
//! grids narrower than the GPU (see [`CostModel::wave_efficiency`]; NVIDIA, "Matrix
//! Multiplication Background User's Guide", sections on tile and wave quantisation:
//! <https://docs.nvidia.com/deeplearning/performance/dl-performance-matrix-multiplication/>).
//!
//! The GPU time is the sum of the kernels (they run one after another on one stream; nothing
//! overlaps GEMMs with attention). The CPU/framework term is
//! `cpu_base_us + cpu_per_request_us · requests + cpu_per_worker_us · (tp − 1)`; in
//! [`EngineMode::Sync`] it adds to the GPU time, in [`EngineMode::Async`] (an engine that
//! schedules step n+1 while step n runs) the step takes the larger of the two.

use serde::{Deserialize, Serialize};

use super::model::{BatchShape, CostModel};

/// Bytes per activation element (bf16, whatever the weights: fp8 engines keep bf16
/// activations between kernels and in the all-reduces).
const ACT: f64 = 2.0;
/// Bytes per logit (fp32, as vLLM's sampler computes them).
const LOGIT: f64 = 4.0;
/// Largest message vLLM's custom all-reduce takes; larger ones go to NCCL. Source: vLLM
/// `vllm/distributed/device_communicators/custom_all_reduce.py`, `max_size=8192 * 1024`.
const CUSTOM_ALLREDUCE_MAX_BYTES: f64 = 8.0 * 1024.0 * 1024.0;
/// NVLink bandwidth per direction (bytes/s) of the H100 SXM on which the custom all-reduce
/// latencies below were measured: 900 GB/s bidirectional (H100 datasheet).
const H100_LINK: f64 = 450e9;
/// Message sizes (bytes) of the published custom all-reduce measurements.
const AR_SIZES: [f64; 6] = [512.0, 4096.0, 32768.0, 262_144.0, 524_288.0, 1_048_576.0];
/// vLLM's custom all-reduce on H100 SXM, µs, for TP 2, 4 and 8 at [`AR_SIZES`]: the table
/// "unit test performance in H100 (without cuda graph)", rows "vllm", in sglang pull request
/// 2904 (<https://github.com/sgl-project/sglang/pull/2904>). Without CUDA graphs these include
/// the launch, so they are an upper bound for graph-captured decode.
const AR_US: [[f64; 6]; 3] = [
    [9.5, 8.8, 8.7, 12.9, 17.7, 26.6],
    [9.1, 8.5, 9.2, 20.6, 26.9, 40.2],
    [10.1, 9.3, 11.8, 24.1, 30.4, 45.0],
];

/// Which cost model prices an iteration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CostKind {
    /// The per-operator model of this module.
    #[default]
    PerOperator,
    /// The original single roofline: `max(total FLOPs / rate, total bytes / bandwidth)` plus
    /// all-reduces plus a fixed overhead (kept for comparison).
    RooflineSimple,
}

impl CostKind {
    /// Parses `per-operator` or `roofline-simple`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "per-operator" => Ok(Self::PerOperator),
            "roofline-simple" => Ok(Self::RooflineSimple),
            other => {
                anyhow::bail!("unknown cost model `{other}`; valid: per-operator, roofline-simple")
            }
        }
    }
}

/// How the serving engine's CPU work relates to the GPU's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineMode {
    /// Schedule, prepare inputs, run, then process outputs, one after another (vLLM without
    /// async scheduling): CPU time adds to GPU time.
    #[default]
    Sync,
    /// The next step is scheduled while this one runs (vLLM `--async-scheduling`, SGLang's
    /// overlap scheduler): the step takes the longer of the two.
    Async,
}

/// Which all-reduce implementation tensor parallelism uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllReduceImpl {
    /// vLLM's choice: the custom all-reduce on fully NVLink-connected GPUs for messages up to
    /// 8 MiB, NCCL's ring otherwise.
    #[default]
    Auto,
    /// Always the custom (one-shot / two-shot over NVLink peer memory) all-reduce.
    Custom,
    /// Always a ring all-reduce: `2 (tp − 1)` steps, each a latency plus `bytes / tp` over
    /// the link.
    Ring,
}

/// One iteration under the per-operator model, µs per group (summed over layers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct OperatorTimes {
    /// Embedding lookup.
    pub embedding_us: f64,
    /// RMSNorm, QKV projection, rotary, KV-cache write.
    pub qkv_us: f64,
    /// Prefill (and chunked-prefill) attention.
    pub attention_prefill_us: f64,
    /// Decode attention.
    pub attention_decode_us: f64,
    /// Output projection.
    pub o_proj_us: f64,
    /// RMSNorm, gate/up GEMM, SiLU·mul, down GEMM.
    pub mlp_us: f64,
    /// LM head on the sampled positions, logits gather, sampler.
    pub lm_head_us: f64,
    /// Tensor-parallel all-reduces (two per layer plus the embedding's).
    pub allreduce_us: f64,
    /// CPU/framework time (scheduling, input preparation, worker sync, output processing).
    pub cpu_us: f64,
    /// Sum of the GPU groups.
    pub gpu_us: f64,
    /// The step: `gpu + cpu` (sync) or `max(gpu, cpu)` (async).
    pub total_us: f64,
    /// Sum over kernels of their compute time alone (no floor).
    pub compute_us: f64,
    /// Sum over kernels of their memory time alone (no floor).
    pub memory_us: f64,
    /// FLOPs of the step over all `tp` GPUs (GEMMs and attention; elementwise kernels count
    /// none). Not serialized.
    #[serde(skip)]
    pub flops: f64,
    /// HBM bytes the step's kernels move over all `tp` GPUs (weights, activations, KV).
    /// Not serialized.
    #[serde(skip)]
    pub hbm_bytes: f64,
    /// Time of the kernels whose compute term set their duration (`compute ≥ memory` and
    /// `compute ≥ floor`). Not serialized.
    #[serde(skip)]
    pub compute_bound_us: f64,
    /// Time of the kernels whose memory term set their duration. Not serialized.
    #[serde(skip)]
    pub memory_bound_us: f64,
}

/// Accumulates kernels into groups.
struct Pricer<'a> {
    cost: &'a CostModel,
    /// How many times each kernel priced now runs in the step (the layer count inside a
    /// layer, 1 outside); scales the compute and memory totals only.
    repeat: f64,
    compute_us: f64,
    memory_us: f64,
    /// FLOPs and HBM bytes per GPU, and the time of compute- and memory-bound kernels
    /// (all scaled by `repeat`).
    flops: f64,
    bytes: f64,
    compute_bound_us: f64,
    memory_bound_us: f64,
}

impl Pricer<'_> {
    fn bandwidth(&self) -> f64 {
        self.cost.gpu.hbm_bandwidth_bytes_per_s * self.cost.bandwidth_efficiency
    }

    /// One kernel: `max(compute, memory, floor)` in µs at `rate` FLOP/s.
    fn kernel(&mut self, flops: f64, bytes: f64, rate: f64) -> f64 {
        let c = if flops > 0.0 { flops / rate * 1e6 } else { 0.0 };
        let m = bytes / self.bandwidth() * 1e6;
        self.compute_us += c * self.repeat;
        self.memory_us += m * self.repeat;
        self.flops += flops.max(0.0) * self.repeat;
        self.bytes += bytes * self.repeat;
        let floor = self.cost.kernel_floor_us;
        if c >= m && c >= floor {
            self.compute_bound_us += c * self.repeat;
        } else if m > c && m >= floor {
            self.memory_bound_us += m * self.repeat;
        }
        c.max(m).max(floor)
    }

    /// A GEMM `m × n × k` with weights `n × k`.
    fn gemm(&mut self, m: f64, n: f64, k: f64) -> f64 {
        if m <= 0.0 {
            return 0.0;
        }
        let c = self.cost;
        let flops = 2.0 * m * n * k;
        let bytes = n * k * c.model.bytes_per_weight + m * k * ACT + m * n * ACT;
        let rate = c.gemm_peak_flops() * c.gemm_efficiency * c.wave_efficiency(m, n, k);
        self.kernel(flops, bytes, rate)
    }

    /// An elementwise kernel moving `bytes`.
    fn elementwise(&mut self, bytes: f64) -> f64 {
        self.kernel(0.0, bytes, 1.0)
    }
}

impl CostModel {
    /// The GEMM peak: fp8 when the weights are 1 byte or less and the GPU has fp8 tensor
    /// cores, else bf16.
    pub fn gemm_peak_flops(&self) -> f64 {
        if self.model.bytes_per_weight <= 1.0 && self.gpu.peak_fp8_flops > 0.0 {
            self.gpu.peak_fp8_flops
        } else {
            self.gpu.peak_bf16_flops
        }
    }

    /// Tile- and wave-quantisation efficiency of an `m × n × k` GEMM (1 with no SM count).
    ///
    /// Output tiles are `tile_m × 128` (`tile_m` 64 up to 64 rows, else 128). When there are
    /// fewer tiles than SMs the reduction dimension is split (split-K, as cuBLAS and CUTLASS
    /// do for narrow GEMMs) into up to `SMs / tiles` slices of at least 256, so that the
    /// work units are `tiles · splits`; efficiency is the useful work over what
    /// `ceil(units / SMs)` full waves of padded tiles would do.
    pub fn wave_efficiency(&self, m: f64, n: f64, k: f64) -> f64 {
        let sms = f64::from(self.gpu.sm_count);
        if sms <= 0.0 || m <= 0.0 || n <= 0.0 {
            return 1.0;
        }
        let tile_m = if m <= 64.0 { 64.0 } else { 128.0 };
        let tile_n = 128.0;
        let tiles = (m / tile_m).ceil() * (n / tile_n).ceil();
        let splits = (sms / tiles)
            .floor()
            .clamp(1.0, (k / 256.0).floor().max(1.0));
        let units = tiles * splits;
        let waves = (units / sms).ceil();
        (m * n * splits / (waves * sms * tile_m * tile_n)).min(1.0)
    }

    /// Time in µs of one tensor-parallel all-reduce of `bytes` per GPU (0 without tensor
    /// parallelism), under [`CostModel::allreduce`].
    ///
    /// Custom: interpolated (linearly in bytes; beyond 1 MiB along the last segment) in the
    /// published H100 measurements of vLLM's custom all-reduce (see `AR_US`), for the nearest
    /// measured TP degree at or above `tp` (2, 4, 8); the part above the smallest message's
    /// latency is scaled by `450 GB/s / link bandwidth` for other GPUs. Ring:
    /// `2 (tp − 1) · (ring_step_latency_us + bytes / tp / (link · bandwidth_efficiency))`.
    pub fn allreduce_us(&self, bytes: f64) -> f64 {
        let tp = self.model.tensor_parallel.max(1);
        if tp == 1 || bytes <= 0.0 {
            return 0.0;
        }
        let custom = match self.allreduce {
            AllReduceImpl::Custom => true,
            AllReduceImpl::Ring => false,
            AllReduceImpl::Auto => self.gpu.nvlink && bytes <= CUSTOM_ALLREDUCE_MAX_BYTES,
        };
        let link = self.gpu.interconnect_bandwidth_bytes_per_s;
        if custom {
            let row = &AR_US[match tp {
                2 => 0,
                3 | 4 => 1,
                _ => 2,
            }];
            let base = row[0];
            let measured = interpolate(&AR_SIZES, row, bytes);
            base + (measured - base).max(0.0) * (H100_LINK / link)
        } else {
            let t = f64::from(tp);
            2.0 * (t - 1.0)
                * (self.ring_step_latency_us + bytes / t / (link * self.bandwidth_efficiency) * 1e6)
        }
    }

    /// The CPU/framework time of a step with `requests` requests.
    pub fn cpu_us(&self, requests: u32) -> f64 {
        self.cpu_base_us
            + self.cpu_per_request_us * f64::from(requests)
            + self.cpu_per_worker_us * f64::from(self.model.tensor_parallel.max(1) - 1)
    }

    /// The per-operator breakdown of one iteration (all zero for an empty batch).
    pub fn operator_times(&self, shape: &BatchShape) -> OperatorTimes {
        if shape.is_empty() {
            return OperatorTimes::default();
        }
        let m = &self.model;
        let t = f64::from(m.tensor_parallel.max(1));
        let layers = f64::from(m.layers);
        let h = f64::from(m.hidden_size);
        let hd = f64::from(m.head_dim);
        let q_heads = f64::from(m.attention_heads) / t;
        // KV heads are replicated when there are fewer of them than GPUs.
        let kv_heads = (f64::from(m.kv_heads) / t).max(1.0);
        let q_width = q_heads * hd;
        let kv_width = kv_heads * hd;
        let inter = f64::from(m.mlp_width()) / t;
        let vocab = f64::from(m.vocab_size);
        let kvb = f64::from(m.bytes_per_kv_element);
        let tokens = shape.tokens() as f64;
        let sampled = f64::from(shape.sampled());
        let attn_rate = self.gpu.peak_bf16_flops * self.attention_efficiency;

        let mut p = Pricer {
            cost: self,
            repeat: 1.0,
            compute_us: 0.0,
            memory_us: 0.0,
            flops: 0.0,
            bytes: 0.0,
            compute_bound_us: 0.0,
            memory_bound_us: 0.0,
        };
        let mut o = OperatorTimes::default();

        // Embedding: a lookup of `tokens` rows, written out as activations.
        if vocab > 0.0 {
            o.embedding_us = p.elementwise(tokens * h * m.bytes_per_weight + tokens * h * ACT);
        }

        // Per layer.
        p.repeat = layers;
        let norm = p.elementwise(2.0 * tokens * h * ACT);
        let qkv_gemm = p.gemm(tokens, q_width + 2.0 * kv_width, h);
        let rotary = p.elementwise(2.0 * tokens * (q_width + kv_width) * ACT);
        let cache_write = p.elementwise(tokens * 2.0 * kv_width * (ACT + kvb));
        o.qkv_us = layers * (norm + qkv_gemm + rotary + cache_write);

        let prefill_tokens = shape.prefill_tokens() as f64;
        if prefill_tokens > 0.0 {
            let pairs = shape.prefill_attention_pairs() as f64;
            let kv_tokens = shape.prefill_context_tokens() as f64 + prefill_tokens;
            let flops = 4.0 * q_width * pairs;
            let bytes = kv_tokens * 2.0 * kv_width * kvb + 2.0 * prefill_tokens * q_width * ACT;
            o.attention_prefill_us = layers * p.kernel(flops, bytes, attn_rate);
        }
        let decode_tokens = shape.decode_tokens() as f64;
        if decode_tokens > 0.0 {
            let attended = shape.decode_context_tokens() as f64 + decode_tokens;
            let flops = 4.0 * q_width * attended;
            let bytes = attended * 2.0 * kv_width * kvb + 2.0 * decode_tokens * q_width * ACT;
            let split = p.kernel(flops, bytes, attn_rate);
            let merge = p.elementwise(decode_tokens * q_width * ACT * 2.0);
            o.attention_decode_us = layers * (split + merge);
        }

        o.o_proj_us = layers * p.gemm(tokens, h, q_width);

        let norm = p.elementwise(2.0 * tokens * h * ACT);
        let gate_up = p.gemm(tokens, 2.0 * inter, h);
        let act = p.elementwise(3.0 * tokens * inter * ACT);
        let down = p.gemm(tokens, h, inter);
        o.mlp_us = layers * (norm + gate_up + act + down);

        p.repeat = 1.0;
        let activations = tokens * h * ACT;
        o.allreduce_us = 2.0 * layers * self.allreduce_us(activations);
        if vocab > 0.0 {
            o.allreduce_us += self.allreduce_us(activations);
        }

        if vocab > 0.0 && sampled > 0.0 {
            let final_norm = p.elementwise(2.0 * sampled * h * ACT);
            let head = p.gemm(sampled, vocab / t, h);
            let gather = self.allreduce_us(sampled * vocab / t * LOGIT);
            // Softmax and sampling over the logits: read them twice, write probabilities.
            let sampler = p.elementwise(3.0 * sampled * vocab * LOGIT);
            o.lm_head_us = final_norm + head + gather + sampler;
        }

        o.gpu_us = o.embedding_us
            + o.qkv_us
            + o.attention_prefill_us
            + o.attention_decode_us
            + o.o_proj_us
            + o.mlp_us
            + o.lm_head_us
            + o.allreduce_us;
        o.cpu_us = self.cpu_us(shape.requests());
        o.total_us = match self.engine_mode {
            EngineMode::Sync => o.gpu_us + o.cpu_us,
            EngineMode::Async => o.gpu_us.max(o.cpu_us),
        };
        o.compute_us = p.compute_us;
        o.memory_us = p.memory_us;
        o.flops = p.flops * t;
        o.hbm_bytes = p.bytes * t;
        o.compute_bound_us = p.compute_bound_us;
        o.memory_bound_us = p.memory_bound_us;
        o
    }
}

/// Piecewise-linear interpolation of `ys` over increasing `xs`, clamped below the first point
/// and extrapolated along the last segment.
fn interpolate(xs: &[f64; 6], ys: &[f64; 6], x: f64) -> f64 {
    let x = x.max(xs[0]);
    let mut i = 0;
    while i + 2 < xs.len() && x > xs[i + 1] {
        i += 1;
    }
    let (x0, x1, y0, y1) = (xs[i], xs[i + 1], ys[i], ys[i + 1]);
    y0 + (y1 - y0) * (x - x0) / (x1 - x0)
}
