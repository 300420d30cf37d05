//! Output-length predictors with known error models.
//!
//! Prediction-aware policies (SJF/SPJF, SPRPT, TRAIL) are only as good as their predictions, and
//! the interesting question for a deployment is how good a predictor has to be before a policy
//! pays off. Real predictors (a small model, a proxy classifier, the LLM's own hidden states)
//! have messy, unknown errors; the simulator instead uses synthetic predictors whose error model
//! is known and has one knob, so that a sweep over the knob (σ, α, accuracy) answers the
//! question and the results can be compared with queueing theory, which uses the same models:
//!
//! | spec | prediction of the total output `x` |
//! | --- | --- |
//! | `oracle` | `x` |
//! | `none` | no prediction |
//! | `lognormal:SIGMA` | `x · exp(N(0, σ²))`: multiplicative, median-unbiased |
//! | `exp` | `Exp(mean = x)`: the "exponential predictions" model of the theory |
//! | `uniform:A` | `U[(1 − A) x, (1 + A) x]`, `0 ≤ A ≤ 1` |
//! | `onebit:T:ACC` | a short/long class (long iff `x > T`), right with probability `ACC`, reported as `T/2` (short) or `2T` (long) |
//! | `refining:SIGMA` | like `lognormal:SIGMA` at arrival; refreshed while the request runs with error `σ · sqrt(remaining / total)`, never below `generated + 1` |
//!
//! Every prediction is finite and at least 1.
//!
//! Randomness is counter-based: the draw for a request comes from a generator seeded by
//! (predictor seed, request index, refinement number), the refinement number being the tokens
//! generated so far (0 at arrival). Results therefore do not depend on the order in which
//! requests are predicted, on how many other requests exist, or on whether a refinement was
//! asked for before; two runs with different policies see exactly the same predictions.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, StandardNormal};

/// Which predictor to use and its error parameter; parsed from and displayed as the strings in
/// the [module table](self).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PredictorSpec {
    /// The true output length.
    Oracle,
    /// No prediction at all (policies that need one must fall back).
    None,
    /// The true length times `exp(N(0, sigma²))`.
    LogNormal {
        /// Standard deviation of the log of the ratio prediction / truth (≥ 0).
        sigma: f64,
    },
    /// A draw from the exponential distribution whose mean is the true length.
    Exponential,
    /// A draw from `U[(1 − alpha) x, (1 + alpha) x]`.
    Uniform {
        /// Relative half-width of the interval, in `[0, 1]`.
        alpha: f64,
    },
    /// A two-class (short/long) classifier with the given accuracy.
    OneBit {
        /// Length (tokens) that separates short (`≤ threshold`) from long (`> threshold`).
        threshold: f64,
        /// Probability that the predicted class is the true one, in `[0, 1]`.
        accuracy: f64,
    },
    /// Log-normal at arrival, refreshed with a shrinking error as the request generates.
    Refining {
        /// Log-space standard deviation at arrival (≥ 0).
        sigma: f64,
    },
}

/// Why a predictor spec string was rejected; the message names the offending part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsePredictorError(String);

impl fmt::Display for ParsePredictorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParsePredictorError {}

const SPEC_FORMS: &str =
    "oracle, none, lognormal:SIGMA, exp, uniform:A, onebit:THRESHOLD:ACCURACY, refining:SIGMA";

fn parse_number(
    spec: &str,
    what: &str,
    text: Option<&str>,
    valid: impl Fn(f64) -> bool,
    rule: &str,
) -> Result<f64, ParsePredictorError> {
    let text = text.ok_or_else(|| {
        ParsePredictorError(format!("predictor `{spec}`: missing {what} ({rule})"))
    })?;
    let value: f64 = text.trim().parse().map_err(|_| {
        ParsePredictorError(format!(
            "predictor `{spec}`: {what} `{text}` is not a number ({rule})"
        ))
    })?;
    if !value.is_finite() || !valid(value) {
        return Err(ParsePredictorError(format!(
            "predictor `{spec}`: {what} `{text}` is out of range ({rule})"
        )));
    }
    Ok(value)
}

impl FromStr for PredictorSpec {
    type Err = ParsePredictorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let spec = s.trim();
        let mut parts = spec.split(':');
        let kind = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let (a, b) = (parts.next(), parts.next());
        let arity = match kind.as_str() {
            "oracle" | "none" | "exp" => 0,
            "lognormal" | "uniform" | "refining" => 1,
            "onebit" => 2,
            _ => {
                return Err(ParsePredictorError(format!(
                    "unknown predictor `{kind}` in `{spec}`; expected one of: {SPEC_FORMS}"
                )));
            }
        };
        let given = usize::from(a.is_some()) + usize::from(b.is_some()) + parts.count();
        if given > arity {
            return Err(ParsePredictorError(format!(
                "predictor `{spec}`: `{kind}` takes {arity} parameter(s), got {given}"
            )));
        }
        let sigma_rule = "a finite number ≥ 0";
        Ok(match kind.as_str() {
            "oracle" => Self::Oracle,
            "none" => Self::None,
            "exp" => Self::Exponential,
            "lognormal" => Self::LogNormal {
                sigma: parse_number(spec, "SIGMA", a, |v| v >= 0.0, sigma_rule)?,
            },
            "refining" => Self::Refining {
                sigma: parse_number(spec, "SIGMA", a, |v| v >= 0.0, sigma_rule)?,
            },
            "uniform" => Self::Uniform {
                alpha: parse_number(spec, "A", a, |v| (0.0..=1.0).contains(&v), "0 ≤ A ≤ 1")?,
            },
            "onebit" => Self::OneBit {
                threshold: parse_number(spec, "THRESHOLD", a, |v| v > 0.0, "tokens, > 0")?,
                accuracy: parse_number(
                    spec,
                    "ACCURACY",
                    b,
                    |v| (0.0..=1.0).contains(&v),
                    "0 ≤ ACCURACY ≤ 1",
                )?,
            },
            _ => unreachable!("kinds checked above"),
        })
    }
}

impl fmt::Display for PredictorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Oracle => f.write_str("oracle"),
            Self::None => f.write_str("none"),
            Self::LogNormal { sigma } => write!(f, "lognormal:{sigma}"),
            Self::Exponential => f.write_str("exp"),
            Self::Uniform { alpha } => write!(f, "uniform:{alpha}"),
            Self::OneBit {
                threshold,
                accuracy,
            } => write!(f, "onebit:{threshold}:{accuracy}"),
            Self::Refining { sigma } => write!(f, "refining:{sigma}"),
        }
    }
}

/// splitmix64's finaliser: a bijective 64-bit mix.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A generator private to (seed, request, refinement): the triple is folded through splitmix64
/// steps so that nearby triples give unrelated streams.
fn stream(seed: u64, request_index: u64, refinement: u64) -> ChaCha8Rng {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = mix64(seed.wrapping_add(GAMMA));
    h = mix64(h ^ request_index.wrapping_add(GAMMA.wrapping_mul(2)));
    h = mix64(h ^ refinement.wrapping_add(GAMMA.wrapping_mul(3)));
    ChaCha8Rng::seed_from_u64(h)
}

/// Finite and at least 1 (a request produces at least one token).
fn sane(prediction: f64) -> f64 {
    if prediction.is_finite() {
        prediction.max(1.0)
    } else if prediction > 0.0 {
        f64::MAX
    } else {
        1.0
    }
}

/// A seeded predictor: the same (spec, seed) always predicts the same values for a request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Predictor {
    /// The error model.
    pub spec: PredictorSpec,
    /// Seed of the counter-based random streams.
    pub seed: u64,
}

impl Predictor {
    /// A predictor with the given error model and seed.
    pub fn new(spec: PredictorSpec, seed: u64) -> Self {
        Self { spec, seed }
    }

    /// Whether [`Predictor::refine`] ever returns a value.
    pub fn refines(&self) -> bool {
        matches!(self.spec, PredictorSpec::Refining { .. })
    }

    /// The prediction of the total output length of request `request_index` at arrival, given
    /// its true output length; `None` for [`PredictorSpec::None`]. Finite and ≥ 1.
    pub fn initial(&self, request_index: u64, true_output: u32) -> Option<f64> {
        let x = f64::from(true_output);
        let mut rng = stream(self.seed, request_index, 0);
        let prediction = match self.spec {
            PredictorSpec::Oracle => x,
            PredictorSpec::None => return None,
            PredictorSpec::LogNormal { sigma } | PredictorSpec::Refining { sigma } => {
                let z: f64 = rng.sample(StandardNormal);
                x * (sigma * z).exp()
            }
            PredictorSpec::Exponential => {
                let e: f64 = rng.sample(Exp1);
                x * e
            }
            PredictorSpec::Uniform { alpha } => {
                let u: f64 = rng.random();
                x * (1.0 + alpha * (2.0 * u - 1.0))
            }
            PredictorSpec::OneBit {
                threshold,
                accuracy,
            } => {
                let long = x > threshold;
                let right = rng.random::<f64>() < accuracy;
                if long == right {
                    2.0 * threshold
                } else {
                    threshold / 2.0
                }
            }
        };
        Some(sane(prediction))
    }

    /// A refreshed prediction of the *total* output length after `generated` tokens, for
    /// [`PredictorSpec::Refining`] only (`None` for the others, which do not refine).
    ///
    /// The prediction is `x · exp(σ · sqrt(remaining / x) · z)` with `remaining = x − generated`
    /// and `z ~ N(0, 1)` drawn from the stream for refinement number `generated`, so the error
    /// shrinks to nothing as the request nears its end; it is never below `generated + 1` (the
    /// request has not finished, so it will produce at least one more token). At
    /// `generated = 0` it equals [`Predictor::initial`].
    pub fn refine(&self, request_index: u64, true_output: u32, generated: u32) -> Option<f64> {
        let PredictorSpec::Refining { sigma } = self.spec else {
            return None;
        };
        let x = f64::from(true_output);
        let floor = f64::from(generated) + 1.0;
        if true_output == 0 {
            return Some(floor);
        }
        let remaining = f64::from(true_output.saturating_sub(generated));
        let sigma_now = sigma * (remaining / x).sqrt();
        let mut rng = stream(self.seed, request_index, u64::from(generated));
        let z: f64 = rng.sample(StandardNormal);
        Some(sane((x * (sigma_now * z).exp()).max(floor)))
    }
}

#[cfg(test)]
mod tests;
