//! The roofline itself: iteration time, KV capacity, swap and recompute costs.

use anyhow::{Result, ensure};
use serde::{Deserialize, Serialize};

use super::operators::{AllReduceImpl, CostKind, EngineMode, OperatorTimes};
use super::spec::{GpuSpec, ModelSpec};

/// Bytes per activation element in the tensor-parallel all-reduces (bf16, whatever the weight
/// format: quantised models still all-reduce bf16 activations).
const ACTIVATION_BYTES: f64 = 2.0;

/// What one iteration computes, accumulated request by request as the scheduler's plan is read.
///
/// [`BatchShape::add`] is O(1) and never allocates: the simulator calls it for every scheduled
/// request of every iteration, then hands the shape to [`CostModel::iteration_time_us`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchShape {
    requests: u32,
    tokens: u64,
    prefill_tokens: u64,
    decode_tokens: u64,
    context_tokens: u64,
    attention_pairs: u128,
    sampled: u32,
    decode_context_tokens: u64,
    prefill_context_tokens: u64,
    prefill_attention_pairs: u128,
}

impl BatchShape {
    /// An empty batch.
    pub const fn new() -> Self {
        Self {
            requests: 0,
            tokens: 0,
            prefill_tokens: 0,
            decode_tokens: 0,
            context_tokens: 0,
            attention_pairs: 0,
            sampled: 0,
            decode_context_tokens: 0,
            prefill_context_tokens: 0,
            prefill_attention_pairs: 0,
        }
    }

    /// `requests` decode steps, each one new token over `context` tokens already in the cache.
    pub fn uniform_decode(requests: u32, context: u32) -> Self {
        let mut shape = Self::new();
        for _ in 0..requests {
            shape.add(1, context);
        }
        shape
    }

    /// One request computing `new_tokens` tokens after `context_before` tokens already in its
    /// KV cache (0 for a fresh prompt; the cached prefix for a later prefill chunk; the
    /// sequence length so far for a decode step).
    ///
    /// A request with one new token and a non-empty context counts as a decode token, anything
    /// else as prefill (a one-token final prefill chunk therefore counts as decode; the cost is
    /// the same either way). A request with no new tokens computes nothing and is ignored.
    ///
    /// Every request added this way is taken to sample one token (the LM head runs on one
    /// position for it); [`BatchShape::add_sampled`] says so explicitly.
    pub fn add(&mut self, new_tokens: u32, context_before: u32) {
        self.add_sampled(new_tokens, context_before, true);
    }

    /// [`BatchShape::add`], saying whether the request samples a token this iteration (a
    /// non-final prefill chunk does not: engines compute logits only for sampled positions).
    pub fn add_sampled(&mut self, new_tokens: u32, context_before: u32, samples: bool) {
        if new_tokens == 0 {
            return;
        }
        if samples {
            self.sampled = self.sampled.saturating_add(1);
        }
        let n = u64::from(new_tokens);
        let c = u64::from(context_before);
        self.requests = self.requests.saturating_add(1);
        self.tokens += n;
        let decode = new_tokens == 1 && context_before > 0;
        if decode {
            self.decode_tokens += 1;
            self.decode_context_tokens += c;
        } else {
            self.prefill_tokens += n;
            self.prefill_context_tokens += c;
        }
        self.context_tokens += c;
        // Causal attention: new token i (1-based) attends the c cached tokens and the i new
        // tokens up to and including itself.
        let n = u128::from(n);
        let pairs = n * u128::from(c) + n * (n + 1) / 2;
        self.attention_pairs += pairs;
        if !decode {
            self.prefill_attention_pairs += pairs;
        }
    }

    /// Requests that sample a token this iteration (the LM head's rows).
    pub fn sampled(&self) -> u32 {
        self.sampled
    }

    /// Σ over decode requests of their cached context.
    pub fn decode_context_tokens(&self) -> u64 {
        self.decode_context_tokens
    }

    /// Σ over prefill requests of their cached context (earlier chunks, cached prefix).
    pub fn prefill_context_tokens(&self) -> u64 {
        self.prefill_context_tokens
    }

    /// The query-key pairs of the prefill requests alone.
    pub fn prefill_attention_pairs(&self) -> u128 {
        self.prefill_attention_pairs
    }

    /// Forgets everything, for reuse in the next iteration.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.tokens == 0
    }

    /// Number of requests added (with at least one new token).
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// Total new tokens computed this iteration.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// New tokens that are prompt (prefill) tokens.
    pub fn prefill_tokens(&self) -> u64 {
        self.prefill_tokens
    }

    /// New tokens that are decode steps.
    pub fn decode_tokens(&self) -> u64 {
        self.decode_tokens
    }

    /// Σ over requests of the context already cached before this iteration: the KV tokens
    /// attention reads from memory.
    pub fn context_tokens(&self) -> u64 {
        self.context_tokens
    }

    /// Σ over requests of new tokens × context attended (query-key pairs of causal
    /// attention), which drives the attention FLOPs.
    pub fn attention_pairs(&self) -> u128 {
        self.attention_pairs
    }
}

/// An iteration's time, split by where it goes (all in µs).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IterationCost {
    /// Time the FLOPs take at the achieved compute rate.
    pub compute_us: f64,
    /// Time the bytes (weights, KV read, KV written) take at the achieved memory bandwidth.
    pub memory_us: f64,
    /// Tensor-parallel all-reduce time (0 without tensor parallelism).
    pub allreduce_us: f64,
    /// Fixed per-iteration overhead.
    pub overhead_us: f64,
    /// The iteration: `max(compute_us, memory_us) + allreduce_us + overhead_us` under
    /// [`CostKind::RooflineSimple`]; the per-operator total otherwise.
    pub total_us: f64,
    /// The per-operator breakdown ([`CostKind::PerOperator`] only; zero otherwise).
    pub operators: OperatorTimes,
    /// FLOPs of the iteration over all `tp` GPUs: GEMMs and attention (per-operator), or the
    /// dense and attention terms (roofline-simple).
    pub flops: f64,
    /// HBM bytes of the iteration over all `tp` GPUs: what every kernel reads and writes
    /// (per-operator), or weights plus KV read and written (roofline-simple).
    pub hbm_bytes: f64,
    /// Part of `total_us` spent in compute-bound kernels (per-operator: kernels whose compute
    /// term exceeds both their memory term and the kernel floor; roofline-simple: the
    /// roofline term when `compute_us ≥ memory_us`, else 0).
    pub compute_bound_us: f64,
    /// Part of `total_us` spent in memory-bound kernels (as `compute_bound_us`, the other way
    /// round).
    pub memory_bound_us: f64,
}

/// What set an iteration's time: see [`IterationCost::bound`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// Compute-bound kernels took the largest part of the step.
    Compute,
    /// Memory-bound kernels took the largest part.
    Memory,
    /// Everything else took the largest part: kernels at the launch floor, all-reduces, the
    /// CPU/framework time or fixed overhead.
    Overhead,
}

impl IterationCost {
    /// Whether the memory side of the roofline dominates.
    pub fn is_bandwidth_bound(&self) -> bool {
        self.memory_us >= self.compute_us
    }

    /// The part of `total_us` neither compute- nor memory-bound: floor-bound kernels,
    /// all-reduces, CPU/framework time and fixed overhead.
    pub fn overhead_bound_us(&self) -> f64 {
        (self.total_us - self.compute_bound_us - self.memory_bound_us).max(0.0)
    }

    /// Which of [`IterationCost::compute_bound_us`], [`IterationCost::memory_bound_us`] and
    /// [`IterationCost::overhead_bound_us`] is the largest (ties to compute, then memory).
    pub fn bound(&self) -> Bound {
        let (c, m, o) = (
            self.compute_bound_us,
            self.memory_bound_us,
            self.overhead_bound_us(),
        );
        if c >= m && c >= o {
            Bound::Compute
        } else if m >= o {
            Bound::Memory
        } else {
            Bound::Overhead
        }
    }
}

/// A model on a GPU type, with the assumptions that turn peak numbers into achieved ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostModel {
    /// The model (with its tensor-parallel degree).
    pub model: ModelSpec,
    /// The GPU type (each of the `tensor_parallel` GPUs is one of these).
    pub gpu: GpuSpec,
    /// Fraction of peak FLOP/s actually reached by the dense and attention kernels.
    pub compute_efficiency: f64,
    /// Fraction of peak bandwidth actually reached (HBM, host link and interconnect alike).
    pub bandwidth_efficiency: f64,
    /// Fixed time per iteration, µs: kernel launches, sampling, scheduler and framework work.
    pub fixed_overhead_us: f64,
    /// Fraction of GPU memory the server may use for weights and KV cache (vLLM's
    /// `gpu_memory_utilization`).
    pub gpu_memory_utilization: f64,
    /// Latency of one all-reduce, µs, on top of its bandwidth term (two per layer under tensor
    /// parallelism). [`CostKind::RooflineSimple`] only.
    pub allreduce_latency_us: f64,
    /// Which model prices iterations.
    #[serde(default)]
    pub kind: CostKind,
    /// Fraction of the tensor-core peak large GEMMs reach (per-operator model).
    #[serde(default = "defaults::gemm_efficiency")]
    pub gemm_efficiency: f64,
    /// Fraction of the bf16 tensor-core peak attention kernels reach (per-operator model).
    #[serde(default = "defaults::attention_efficiency")]
    pub attention_efficiency: f64,
    /// Minimum duration of any kernel, µs: launch, ramp-up and tail (per-operator model).
    #[serde(default = "defaults::kernel_floor_us")]
    pub kernel_floor_us: f64,
    /// The all-reduce implementation (per-operator model).
    #[serde(default)]
    pub allreduce: AllReduceImpl,
    /// Latency of one step of a ring all-reduce, µs (per-operator model).
    #[serde(default = "defaults::ring_step_latency_us")]
    pub ring_step_latency_us: f64,
    /// Whether CPU work adds to or overlaps the GPU's (per-operator model).
    #[serde(default)]
    pub engine_mode: EngineMode,
    /// CPU/framework time per step, µs, whatever the batch (per-operator model).
    #[serde(default = "defaults::cpu_base_us")]
    pub cpu_base_us: f64,
    /// CPU/framework time per scheduled request, µs (per-operator model).
    #[serde(default = "defaults::cpu_per_request_us")]
    pub cpu_per_request_us: f64,
    /// CPU time per tensor-parallel worker beyond the first, µs: broadcasting the step's
    /// inputs and gathering the workers (per-operator model).
    #[serde(default = "defaults::cpu_per_worker_us")]
    pub cpu_per_worker_us: f64,
}

/// Serde defaults of the per-operator fields (the `CostModel::DEFAULT_*` constants).
mod defaults {
    use super::CostModel;
    pub fn gemm_efficiency() -> f64 {
        CostModel::DEFAULT_GEMM_EFFICIENCY
    }
    pub fn attention_efficiency() -> f64 {
        CostModel::DEFAULT_ATTENTION_EFFICIENCY
    }
    pub fn kernel_floor_us() -> f64 {
        CostModel::DEFAULT_KERNEL_FLOOR_US
    }
    pub fn ring_step_latency_us() -> f64 {
        CostModel::DEFAULT_RING_STEP_LATENCY_US
    }
    pub fn cpu_base_us() -> f64 {
        CostModel::DEFAULT_CPU_BASE_US
    }
    pub fn cpu_per_request_us() -> f64 {
        CostModel::DEFAULT_CPU_PER_REQUEST_US
    }
    pub fn cpu_per_worker_us() -> f64 {
        CostModel::DEFAULT_CPU_PER_WORKER_US
    }
}

impl CostModel {
    /// Default [`CostModel::compute_efficiency`]: large prefills reach roughly 50–70% of peak.
    pub const DEFAULT_COMPUTE_EFFICIENCY: f64 = 0.6;
    /// Default [`CostModel::bandwidth_efficiency`]: streaming weights reaches roughly 80% of
    /// the datasheet bandwidth.
    pub const DEFAULT_BANDWIDTH_EFFICIENCY: f64 = 0.8;
    /// Default [`CostModel::fixed_overhead_us`] (an assumption for a CUDA-graph-enabled server).
    pub const DEFAULT_FIXED_OVERHEAD_US: f64 = 500.0;
    /// Default [`CostModel::gpu_memory_utilization`].
    pub const DEFAULT_GPU_MEMORY_UTILIZATION: f64 = 0.9;
    /// Default [`CostModel::allreduce_latency_us`].
    pub const DEFAULT_ALLREDUCE_LATENCY_US: f64 = 5.0;
    /// Default [`CostModel::gemm_efficiency`]. Sources: FlashAttention-3 (Shah et al. 2024,
    /// arXiv:2407.08608) reaches "up to 740 TFLOPs/s (75% utilization)" in bf16 and "close
    /// to 1.2 PFLOPs/s" (61%) in fp8 on H100 with tuned tensor-core kernels;
    /// FlashAttention-2 (Dao 2023, arXiv:2307.08691) 50–73% of the A100 peak. We take 0.7,
    /// the bf16 upper part of those ranges, for cuBLAS/CUTLASS GEMMs on full waves (wave
    /// quantisation is applied separately). Not fitted to iteration times.
    pub const DEFAULT_GEMM_EFFICIENCY: f64 = 0.7;
    /// Default [`CostModel::attention_efficiency`]: 0.6, the middle of FlashAttention-2's
    /// published 50–73% of peak on A100 (arXiv:2307.08691) and below FlashAttention-3's 75%
    /// on H100 (arXiv:2407.08608), which it reaches only at long sequences.
    pub const DEFAULT_ATTENTION_EFFICIENCY: f64 = 0.6;
    /// Default [`CostModel::kernel_floor_us`]: 3 µs. An ASSUMPTION in the range of NVIDIA's
    /// "Getting Started with CUDA Graphs" (<https://developer.nvidia.com/blog/cuda-graphs/>),
    /// whose short kernels take a few µs each with launch overhead of the same order; not a
    /// measurement of these kernels.
    pub const DEFAULT_KERNEL_FLOOR_US: f64 = 3.0;
    /// Default [`CostModel::ring_step_latency_us`]: 2 µs per ring step (an ASSUMPTION: the
    /// NVLink hop latency plus synchronisation; no published per-step figure was used).
    pub const DEFAULT_RING_STEP_LATENCY_US: f64 = 2.0;
    /// Default [`CostModel::cpu_base_us`]: 200 µs per step (an ASSUMPTION, not measured and
    /// not fitted: scheduler, input preparation and sampler launch in a Python engine).
    pub const DEFAULT_CPU_BASE_US: f64 = 200.0;
    /// Default [`CostModel::cpu_per_request_us`]: 5 µs per scheduled request (an ASSUMPTION:
    /// per-request bookkeeping, block tables, detokenisation).
    pub const DEFAULT_CPU_PER_REQUEST_US: f64 = 5.0;
    /// Default [`CostModel::cpu_per_worker_us`]: 15 µs per extra TP worker (an ASSUMPTION:
    /// broadcasting the step's inputs and waiting for the slowest worker).
    pub const DEFAULT_CPU_PER_WORKER_US: f64 = 15.0;

    /// `model` on `gpu` with the default efficiencies and overheads.
    pub fn new(model: ModelSpec, gpu: GpuSpec) -> Self {
        Self {
            model,
            gpu,
            compute_efficiency: Self::DEFAULT_COMPUTE_EFFICIENCY,
            bandwidth_efficiency: Self::DEFAULT_BANDWIDTH_EFFICIENCY,
            fixed_overhead_us: Self::DEFAULT_FIXED_OVERHEAD_US,
            gpu_memory_utilization: Self::DEFAULT_GPU_MEMORY_UTILIZATION,
            allreduce_latency_us: Self::DEFAULT_ALLREDUCE_LATENCY_US,
            kind: CostKind::default(),
            gemm_efficiency: Self::DEFAULT_GEMM_EFFICIENCY,
            attention_efficiency: Self::DEFAULT_ATTENTION_EFFICIENCY,
            kernel_floor_us: Self::DEFAULT_KERNEL_FLOOR_US,
            allreduce: AllReduceImpl::default(),
            ring_step_latency_us: Self::DEFAULT_RING_STEP_LATENCY_US,
            engine_mode: EngineMode::default(),
            cpu_base_us: Self::DEFAULT_CPU_BASE_US,
            cpu_per_request_us: Self::DEFAULT_CPU_PER_REQUEST_US,
            cpu_per_worker_us: Self::DEFAULT_CPU_PER_WORKER_US,
        }
    }

    /// The same cost model priced by `kind`.
    pub fn with_kind(mut self, kind: CostKind) -> Self {
        self.kind = kind;
        self
    }

    /// Preset model on preset GPU with the default assumptions, validated.
    pub fn preset(model: &str, gpu: &str) -> Result<Self> {
        let cost = Self::new(ModelSpec::preset(model)?, GpuSpec::preset(gpu)?);
        cost.validate()?;
        Ok(cost)
    }

    /// Checks the model, the GPU and the assumptions, and that the weights fit in memory.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.gpu.validate()?;
        ensure!(
            self.compute_efficiency.is_finite()
                && self.compute_efficiency > 0.0
                && self.compute_efficiency <= 1.0,
            "compute_efficiency must be in (0, 1] (got {})",
            self.compute_efficiency
        );
        ensure!(
            self.bandwidth_efficiency.is_finite()
                && self.bandwidth_efficiency > 0.0
                && self.bandwidth_efficiency <= 1.0,
            "bandwidth_efficiency must be in (0, 1] (got {})",
            self.bandwidth_efficiency
        );
        ensure!(
            self.gpu_memory_utilization.is_finite()
                && self.gpu_memory_utilization > 0.0
                && self.gpu_memory_utilization <= 1.0,
            "gpu_memory_utilization must be in (0, 1] (got {})",
            self.gpu_memory_utilization
        );
        ensure!(
            self.fixed_overhead_us.is_finite() && self.fixed_overhead_us >= 0.0,
            "fixed_overhead_us must be finite and non-negative (got {})",
            self.fixed_overhead_us
        );
        for (field, value) in [
            ("gemm_efficiency", self.gemm_efficiency),
            ("attention_efficiency", self.attention_efficiency),
        ] {
            ensure!(
                value.is_finite() && value > 0.0 && value <= 1.0,
                "{field} must be in (0, 1] (got {value})"
            );
        }
        for (field, value) in [
            ("allreduce_latency_us", self.allreduce_latency_us),
            ("kernel_floor_us", self.kernel_floor_us),
            ("ring_step_latency_us", self.ring_step_latency_us),
            ("cpu_base_us", self.cpu_base_us),
            ("cpu_per_request_us", self.cpu_per_request_us),
            ("cpu_per_worker_us", self.cpu_per_worker_us),
        ] {
            ensure!(
                value.is_finite() && value >= 0.0,
                "{field} must be finite and non-negative (got {value})"
            );
        }
        self.kv_memory_bytes()?;
        Ok(())
    }

    fn tp(&self) -> f64 {
        f64::from(self.model.tensor_parallel.max(1))
    }

    /// Bytes left for the KV cache over all GPUs: `memory · tp · utilization − weights`;
    /// an error if the weights do not fit.
    pub fn kv_memory_bytes(&self) -> Result<f64> {
        let usable = self.gpu.memory_bytes * self.tp() * self.gpu_memory_utilization;
        let weights = self.model.weight_bytes();
        ensure!(
            usable > weights,
            "model `{}` ({:.1} GB of weights) does not fit on {} × `{}` at memory utilization \
             {} ({:.1} GB usable); raise the tensor-parallel degree or pick a bigger GPU",
            self.model.name,
            weights / 1e9,
            self.model.tensor_parallel,
            self.gpu.name,
            self.gpu_memory_utilization,
            usable / 1e9
        );
        Ok(usable - weights)
    }

    /// KV cache capacity in blocks of `block_size` tokens:
    /// `(memory · tp · utilization − weights) / (kv bytes per token · block_size)`, rounded
    /// down (saturating at `u32::MAX`). An error if the weights do not fit or `block_size` is 0.
    pub fn kv_capacity_blocks(&self, block_size: u32) -> Result<u32> {
        ensure!(block_size > 0, "block_size must be positive");
        let free = self.kv_memory_bytes()?;
        let per_block = self.model.kv_bytes_per_token() as f64 * f64::from(block_size);
        let blocks = (free / per_block).floor();
        Ok(if blocks >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            blocks as u32
        })
    }

    /// The terms of one iteration under [`CostModel::kind`] (see the module docs and
    /// [`OperatorTimes`] for the formulas).
    ///
    /// An empty batch runs no model and costs nothing.
    pub fn iteration_cost(&self, shape: &BatchShape) -> IterationCost {
        if shape.is_empty() {
            return IterationCost::default();
        }
        if self.kind == CostKind::PerOperator {
            let o = self.operator_times(shape);
            return IterationCost {
                compute_us: o.compute_us,
                memory_us: o.memory_us,
                allreduce_us: o.allreduce_us,
                overhead_us: o.cpu_us,
                total_us: o.total_us,
                operators: o,
                flops: o.flops,
                hbm_bytes: o.hbm_bytes,
                compute_bound_us: o.compute_bound_us,
                memory_bound_us: o.memory_bound_us,
            };
        }
        let m = &self.model;
        let tp = self.tp();
        let tokens = shape.tokens() as f64;

        let dense_flops = 2.0 * m.parameters as f64 * tokens;
        let attention_flops = 4.0
            * f64::from(m.layers)
            * f64::from(m.attention_heads)
            * f64::from(m.head_dim)
            * shape.attention_pairs() as f64;
        let compute_s = (dense_flops + attention_flops)
            / (self.gpu.peak_bf16_flops * tp * self.compute_efficiency);

        let kv = m.kv_bytes_per_token() as f64;
        let bytes = m.weight_bytes() + kv * (shape.context_tokens() as f64 + tokens);
        let memory_s =
            bytes / (self.gpu.hbm_bandwidth_bytes_per_s * tp * self.bandwidth_efficiency);

        let allreduce_us = if m.tensor_parallel > 1 {
            // Two all-reduces per layer (after attention, after the MLP) of the activations,
            // each a ring all-reduce moving 2 (tp − 1) / tp of the buffer over each link.
            let buffer = tokens * f64::from(m.hidden_size) * ACTIVATION_BYTES;
            let per_allreduce_s = 2.0 * (tp - 1.0) / tp * buffer
                / (self.gpu.interconnect_bandwidth_bytes_per_s * self.bandwidth_efficiency);
            2.0 * f64::from(m.layers) * (per_allreduce_s * 1e6 + self.allreduce_latency_us)
        } else {
            0.0
        };

        let compute_us = compute_s * 1e6;
        let memory_us = memory_s * 1e6;
        let compute_bound = compute_us >= memory_us;
        IterationCost {
            compute_us,
            memory_us,
            allreduce_us,
            overhead_us: self.fixed_overhead_us,
            total_us: compute_us.max(memory_us) + allreduce_us + self.fixed_overhead_us,
            operators: OperatorTimes::default(),
            flops: dense_flops + attention_flops,
            hbm_bytes: bytes,
            compute_bound_us: if compute_bound { compute_us } else { 0.0 },
            memory_bound_us: if compute_bound { 0.0 } else { memory_us },
        }
    }

    /// Time of one iteration in µs (0 for an empty batch). Under
    /// [`CostKind::RooflineSimple`]: `max(FLOPs / (peak · tp · eff), bytes / (bw · tp · eff))`
    /// plus the tensor-parallel all-reduce time plus the fixed overhead; under
    /// [`CostKind::PerOperator`] the sum of the operators plus the CPU term.
    pub fn iteration_time_us(&self, shape: &BatchShape) -> f64 {
        self.iteration_cost(shape).total_us
    }

    /// The FLOP/s peak utilisation figures are taken against, over all `tp` GPUs: the GEMM
    /// peak of the weights' dtype ([`CostModel::gemm_peak_flops`]: fp8 for fp8 weights on a
    /// GPU with fp8 tensor cores, else bf16) under the per-operator model, the bf16 peak
    /// (which it prices everything at) under roofline-simple.
    pub fn peak_flops(&self) -> f64 {
        let per_gpu = match self.kind {
            CostKind::PerOperator => self.gemm_peak_flops(),
            CostKind::RooflineSimple => self.gpu.peak_bf16_flops,
        };
        per_gpu * self.tp()
    }

    /// The datasheet HBM bandwidth over all `tp` GPUs, bytes/s.
    pub fn peak_hbm_bytes_per_s(&self) -> f64 {
        self.gpu.hbm_bandwidth_bytes_per_s * self.tp()
    }

    /// Time in µs to move `blocks` KV blocks of `block_size` tokens one way over the host link
    /// (each GPU moves its own shard over its own link, in parallel).
    pub fn swap_time_us(&self, blocks: u32, block_size: u32) -> f64 {
        let bytes =
            f64::from(blocks) * f64::from(block_size) * self.model.kv_bytes_per_token() as f64;
        bytes / (self.gpu.host_link_bandwidth_bytes_per_s * self.tp() * self.bandwidth_efficiency)
            * 1e6
    }

    /// Marginal cost in µs of recomputing one token of a preempted request's context, for the
    /// scheduler's `auto` preemption mode: the dense FLOPs of one token at the achieved compute
    /// rate, `2 · parameters / (peak · tp · eff)`.
    ///
    /// Recomputation runs as a prefill, which is compute-bound, so the weight reads are shared
    /// with the rest of the batch and not charged here. The attention term is left out too: it
    /// grows with the context (`4 · layers · heads · head_dim · context` per token) and only
    /// rivals the dense term beyond roughly 30k tokens for the presets.
    pub fn recompute_cost_us_per_token(&self) -> f64 {
        2.0 * self.model.parameters as f64
            / (self.gpu.peak_bf16_flops * self.tp() * self.compute_efficiency)
            * 1e6
    }

    /// Cost in µs of moving one KV block of `block_size` tokens one way over the host link, for
    /// the scheduler's `auto` preemption mode. A swap preemption pays it twice per block (out,
    /// then back in), recomputation pays [`CostModel::recompute_cost_us_per_token`] per token
    /// once.
    pub fn swap_cost_us_per_block(&self, block_size: u32) -> f64 {
        self.swap_time_us(1, block_size)
    }
}
