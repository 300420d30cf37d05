//! The `--config augur.toml` file.
//!
//! Every table and key is optional; unknown tables and keys are errors that name them, so a
//! typo cannot silently leave a default in place. Flags given on the command line override the
//! file. `examples/augur.toml` is a complete example:
//!
//! ```toml
//! [model]                 # the cost model's model: a preset, then single-field overrides
//! preset = "llama-3.1-8b"
//! [gpu]                   # the GPU: a preset, then overrides (bytes, FLOP/s, bytes/s)
//! preset = "h100-sxm"
//! [cost]                  # efficiencies, fixed overhead (µs), memory utilisation
//! fixed_overhead_us = 500
//! [engine]                # the engine knobs, named as the flags with `_` for `-`
//! block_size = 16
//! kv_blocks = 4096
//! preemption = "auto"     # recompute | swap | auto
//! admission = "eager"     # eager | full-prompt | predicted[:HEADROOM] | worst-case
//! prefix_caching = true   # the flag is --no-prefix-caching
//! [policy]                # the policy and its parameters, named as the flags
//! name = "trail"
//! trail_cutoff = 0.8
//! overrun = "clamp"       # negative | clamp | rescale:FACTOR
//! ```
//!
//! The `[model]`, `[gpu]` and `[cost]` tables are [`augur::cost::CostConfig`]'s; `[engine]` is
//! [`EngineOpts`] and `[policy]` is [`PolicyOpts`].

use std::path::Path;

use anyhow::Context;
use augur::cost::{CostConfig, CostOverrides, GpuOverrides, ModelOverrides};
use serde::Deserialize;

use super::options::{EngineOpts, PolicyOpts};

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[model]`: model preset and overrides.
    #[serde(default)]
    pub model: ModelOverrides,
    /// `[gpu]`: GPU preset and overrides.
    #[serde(default)]
    pub gpu: GpuOverrides,
    /// `[cost]`: cost-model assumptions.
    #[serde(default)]
    pub cost: CostOverrides,
    /// `[engine]`: engine knobs.
    #[serde(default)]
    pub engine: EngineOpts,
    /// `[policy]`: the policy and its parameters.
    #[serde(default)]
    pub policy: PolicyOpts,
}

impl FileConfig {
    /// Parses a TOML document; errors give the line and the offending key.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Reads and parses a file; errors name it.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in configuration file {}", path.display()))
    }

    /// The cost-model part, as the library's [`CostConfig`].
    pub fn cost_config(&self) -> CostConfig {
        CostConfig {
            model: self.model.clone(),
            gpu: self.gpu.clone(),
            cost: self.cost.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_example_file_parses() {
        let text = include_str!("../../examples/augur.toml");
        let f = FileConfig::parse(text).unwrap();
        assert!(f.policy.name.is_some());
        assert!(f.engine.kv_blocks.is_some());
    }

    #[test]
    fn test_unknown_keys_are_named() {
        let e = FileConfig::parse("[engine]\nblock_sise = 16\n").unwrap_err();
        assert!(format!("{e:#}").contains("block_sise"), "{e:#}");
        let e = FileConfig::parse("[polcy]\n").unwrap_err();
        assert!(format!("{e:#}").contains("polcy"), "{e:#}");
        let e = FileConfig::parse("[engine]\nadmission = \"lazy\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("lazy"), "{e:#}");
    }
}
