//! Cost models for the simulator's executor.
//!
//! Two models share the presets: the per-operator model ([`CostKind::PerOperator`], the
//! default; see [`OperatorTimes`] for its kernels and sources) and the original single
//! roofline ([`CostKind::RooflineSimple`], `[cost] kind = "roofline-simple"`), described
//! below.
//!
//! The simulator drives the real scheduling core but has no GPU, so it needs to know how long
//! each iteration the core plans would take, how many KV blocks fit in memory, and what swapping
//! or recomputing a preempted request costs. We derive all of that from first principles (a
//! roofline) instead of fitting curves to one machine, so that a capacity planner can ask "what
//! if" about models and GPUs nobody has measured yet, and so that every number is explainable:
//!
//! * an iteration takes `max(FLOPs / achieved FLOP/s, bytes / achieved bandwidth)` plus the
//!   tensor-parallel all-reduces plus a fixed per-iteration overhead (kernel launches, sampling,
//!   the serving stack's own bookkeeping);
//! * FLOPs are `2 · parameters · tokens` for the dense layers plus the attention term
//!   `4 · layers · (heads · head_dim) · Σ new tokens × context attended`;
//! * bytes are the weights (read once per iteration whatever the batch size), the KV cache read by
//!   attention and the KV written for the new tokens;
//! * the KV capacity is what is left of the GPUs' memory after the weights;
//! * swapping moves KV bytes over the host link (PCIe).
//!
//! Model and GPU numbers come from presets ([`ModelSpec::preset`], [`GpuSpec::preset`]) whose
//! sources are cited next to each one; every number can be overridden from a TOML file
//! ([`CostConfig`], [`CostModel::from_toml_str`]). The efficiencies and the fixed overhead are
//! assumptions, not measurements: calibrate them against a real server before trusting absolute
//! times (relative comparisons between policies are much less sensitive to them).

mod batch_spec;
mod config;
mod model;
mod operators;
mod spec;

pub use batch_spec::parse_batch_spec;
pub use config::{CostConfig, CostOverrides, GpuOverrides, ModelOverrides};
pub use model::{BatchShape, Bound, CostModel, IterationCost};
pub use operators::{AllReduceImpl, CostKind, EngineMode, OperatorTimes};
pub use spec::{Dtype, GpuSpec, MAX_TENSOR_PARALLEL, ModelSpec};

#[cfg(test)]
mod tests;
