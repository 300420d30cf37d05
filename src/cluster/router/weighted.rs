//! llm-d-style weighted scorers (the Gateway API Inference Extension's endpoint picker):
//! each scorer gives every replica a score in [0, 1], higher is better; the picker takes the
//! replica with the highest weighted sum (ties to the lowest index, as its max-score picker
//! with a stable order would).
//!
//! | scorer | score |
//! | --- | --- |
//! | queue | min-max normalised waiting queue: 1 for the shortest, 0 for the longest (all 1 when equal) |
//! | kv | 1 − KV utilisation |
//! | prefix | leading prompt blocks the replica caches / the prompt's blocks (0 without hashes) |
//!
//! The sample configuration of llm-d weighs the prefix scorer 3× against queue and KV, which
//! are the defaults here (`--weights queue=1,kv=1,prefix=3`).

use std::fmt;
use std::str::FromStr;

use super::{RouteContext, RouteRequest, Router, argmin_by};

/// The scorers' weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    /// Queue-depth scorer.
    pub queue: f64,
    /// KV-utilisation scorer.
    pub kv: f64,
    /// Prefix-cache scorer.
    pub prefix: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            queue: 1.0,
            kv: 1.0,
            prefix: 3.0,
        }
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "queue={},kv={},prefix={}",
            self.queue, self.kv, self.prefix
        )
    }
}

impl FromStr for Weights {
    type Err = String;

    /// `queue=W,kv=W,prefix=W`, any subset, in any order; unnamed scorers keep their
    /// default; each weight finite and ≥ 0, and not all zero.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut w = Weights::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!(
                    "`{part}`: expected SCORER=WEIGHT with SCORER one of queue, kv, prefix"
                ));
            };
            let x: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("`{part}`: the weight must be a finite number ≥ 0"))?;
            match k.trim() {
                "queue" => w.queue = x,
                "kv" => w.kv = x,
                "prefix" => w.prefix = x,
                other => {
                    return Err(format!(
                        "`{part}`: unknown scorer `{other}`; expected queue, kv or prefix"
                    ));
                }
            }
        }
        if w.queue + w.kv + w.prefix == 0.0 {
            return Err(format!("`{s}`: at least one weight must be > 0"));
        }
        Ok(w)
    }
}

/// Weighted sum of the queue, KV and prefix scorers, highest wins.
#[derive(Clone, Copy, Debug)]
pub struct Weighted {
    /// The weights.
    pub weights: Weights,
}

impl Router for Weighted {
    fn route(&mut self, req: &RouteRequest<'_>, ctx: &RouteContext<'_>) -> usize {
        let n = ctx.views.len();
        let q = |r: usize| f64::from(ctx.views[r].queue_depth());
        let (lo, hi) = (0..n).fold((f64::MAX, f64::MIN), |(lo, hi), r| {
            (lo.min(q(r)), hi.max(q(r)))
        });
        let blocks = req.block_hashes.len();
        let w = self.weights;
        argmin_by(n, |r| {
            let queue = if hi > lo {
                (hi - q(r)) / (hi - lo)
            } else {
                1.0
            };
            let kv = 1.0 - ctx.views[r].kv_utilization();
            let prefix = if blocks == 0 {
                0.0
            } else {
                f64::from(ctx.overlaps[r]) / blocks as f64
            };
            -(w.queue * queue + w.kv * kv + w.prefix * prefix)
        })
    }

    fn uses_prefix_index(&self) -> bool {
        self.weights.prefix > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse() {
        assert_eq!("".parse::<Weights>(), Ok(Weights::default()));
        let w: Weights = "prefix=0, queue=2".parse().unwrap();
        assert_eq!((w.queue, w.kv, w.prefix), (2.0, 1.0, 0.0));
        for bad in [
            "queue",
            "queue=-1",
            "queue=nan",
            "lora=1",
            "queue=0,kv=0,prefix=0",
        ] {
            assert!(bad.parse::<Weights>().is_err(), "{bad}");
        }
    }
}
