//! Synthetic workloads from a spec string.
//!
//! Real traces fix one load level and one length mix; sweeping the scheduler over load, length
//! skew and tool use needs workloads that can be dialled. A spec is a comma-separated list of
//! `KEY=VALUE` (after the `synthetic:` prefix that [`super::load`] strips), for example
//!
//! ```text
//! synthetic:n=2000,rate=8,prompt=lognormal:1024:0.8,output=lognormal:200:1.0,seed=7
//! synthetic:n=500,rate=2,tools=0.3,tool_duration=exp:2.0,tool_response=64
//! ```
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `n` | number of requests (≥ 1) | 1000 |
//! | `rate` | Poisson arrival rate, requests per second | 1 |
//! | `seed` | RNG seed | [`super::LoadOptions::seed`] |
//! | `prompt` | prompt length distribution | `lognormal:1024:0.8` |
//! | `output` | output length distribution | `lognormal:200:1` |
//! | `max_prompt` | prompt lengths are clamped to `[1, max_prompt]` | 8192 |
//! | `max_output` | output lengths are clamped to `[1, max_output]` | 2048 |
//! | `tools` | fraction of requests making one external call (0..=1) | 0 |
//! | `tool_duration` | call duration in seconds | `exp:2` |
//! | `tool_response` | tokens the call appends to the context, clamped to `[1, max_prompt]` | `const:64` |
//!
//! Length distributions ([`LengthDist`]): `const:N`, `uniform:A:B` (integers, inclusive),
//! `lognormal:MEDIAN:SIGMA`, `exp:MEAN`, or a bare integer meaning `const:N`; samples are rounded
//! to the nearest integer and clamped. Duration distributions ([`DurationDist`]): `exp:MEAN`,
//! `const:X`, `uniform:A:B`, or a bare number meaning `const:X`, all in seconds.
//!
//! A tool-using request calls out after a uniformly chosen number of output tokens in
//! `[1, output - 1]`, so that generation resumes after the call; requests with a single output
//! token make no call.
//!
//! Reproducibility: arrivals, lengths and tool calls come from three separate ChaCha8 streams of
//! the same seed, so changing e.g. `tools` does not change arrivals or lengths, and the same spec
//! and seed always give the same trace.

use std::fmt;

use crate::report::compact;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal};

use super::lengths::poisson_arrivals_us;
use super::{ToolCall, Trace, TraceError, TraceRequest};

/// Keys accepted in a synthetic spec.
pub const KEYS: [&str; 10] = [
    "n",
    "rate",
    "seed",
    "prompt",
    "output",
    "max_prompt",
    "max_output",
    "tools",
    "tool_duration",
    "tool_response",
];

/// A distribution of token counts (sampled, rounded, then clamped to `[1, cap]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LengthDist {
    /// Always `N`.
    Const(u32),
    /// Uniform integer in `[A, B]`.
    Uniform(u32, u32),
    /// Log-normal with the given median and sigma (of the underlying normal).
    LogNormal {
        /// Median, `exp(mu)`.
        median: f64,
        /// Standard deviation of `ln(X)`.
        sigma: f64,
    },
    /// Exponential with the given mean.
    Exp {
        /// Mean.
        mean: f64,
    },
}

/// A distribution of durations in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DurationDist {
    /// Always `X` seconds.
    Const(f64),
    /// Uniform in `[A, B]` seconds.
    Uniform(f64, f64),
    /// Exponential with the given mean in seconds.
    Exp {
        /// Mean, seconds.
        mean: f64,
    },
}

/// A parsed synthetic workload spec (see the [module docs](self) for keys and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// Number of requests.
    pub n: usize,
    /// Poisson arrival rate, requests per second.
    pub rate: f64,
    /// Seed; `None` uses the seed passed to [`SyntheticSpec::generate`].
    pub seed: Option<u64>,
    /// Prompt length distribution.
    pub prompt: LengthDist,
    /// Output length distribution.
    pub output: LengthDist,
    /// Cap on prompt lengths (and tool responses).
    pub max_prompt: u32,
    /// Cap on output lengths.
    pub max_output: u32,
    /// Fraction of requests that make one external call.
    pub tools: f64,
    /// Duration of an external call.
    pub tool_duration: DurationDist,
    /// Tokens an external call appends to the context.
    pub tool_response: LengthDist,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        SyntheticSpec {
            n: 1000,
            rate: 1.0,
            seed: None,
            prompt: LengthDist::LogNormal {
                median: 1024.0,
                sigma: 0.8,
            },
            output: LengthDist::LogNormal {
                median: 200.0,
                sigma: 1.0,
            },
            max_prompt: 8192,
            max_output: 2048,
            tools: 0.0,
            tool_duration: DurationDist::Exp { mean: 2.0 },
            tool_response: LengthDist::Const(64),
        }
    }
}

fn err(message: impl fmt::Display) -> TraceError {
    TraceError::spec(format!("synthetic spec: {message}"))
}

fn parse_f64(key: &str, v: &str) -> Result<f64, TraceError> {
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| err(format!("`{key}`: `{v}` is not a finite number")))
}

fn parse_uint<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, TraceError> {
    v.parse::<T>()
        .map_err(|_| err(format!("`{key}`: `{v}` is not a non-negative integer")))
}

impl LengthDist {
    /// Parses `const:N`, `uniform:A:B`, `lognormal:MEDIAN:SIGMA`, `exp:MEAN` or a bare `N`.
    /// `key` names the spec key in errors.
    pub fn parse(key: &str, v: &str) -> Result<Self, TraceError> {
        let parts: Vec<&str> = v.split(':').collect();
        let bad = || {
            err(format!(
                "`{key}={v}`: expected const:N, uniform:A:B, lognormal:MEDIAN:SIGMA, exp:MEAN or N"
            ))
        };
        let d = match parts.as_slice() {
            [n] if n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() => {
                LengthDist::Const(parse_uint(key, n)?)
            }
            ["const", n] => LengthDist::Const(parse_uint(key, n)?),
            ["uniform", a, b] => {
                let (a, b) = (parse_uint(key, a)?, parse_uint(key, b)?);
                if a > b {
                    return Err(err(format!("`{key}={v}`: uniform needs A <= B")));
                }
                LengthDist::Uniform(a, b)
            }
            ["lognormal", m, s] => {
                let (median, sigma) = (parse_f64(key, m)?, parse_f64(key, s)?);
                if median <= 0.0 || sigma < 0.0 {
                    return Err(err(format!(
                        "`{key}={v}`: lognormal needs MEDIAN > 0 and SIGMA >= 0"
                    )));
                }
                LengthDist::LogNormal { median, sigma }
            }
            ["exp", m] => {
                let mean = parse_f64(key, m)?;
                if mean <= 0.0 {
                    return Err(err(format!("`{key}={v}`: exp needs MEAN > 0")));
                }
                LengthDist::Exp { mean }
            }
            _ => return Err(bad()),
        };
        Ok(d)
    }

    /// Draws one length, rounded to the nearest integer and clamped to `[1, cap]`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, cap: u32) -> u32 {
        let cap = cap.max(1);
        let x = match *self {
            LengthDist::Const(n) => f64::from(n),
            LengthDist::Uniform(a, b) => f64::from(rng.random_range(a..=b)),
            LengthDist::LogNormal { median, sigma } => LogNormal::new(median.ln(), sigma)
                .expect("validated lognormal parameters")
                .sample(rng),
            LengthDist::Exp { mean } => Exp::new(1.0 / mean)
                .expect("validated exp mean")
                .sample(rng),
        };
        // `as` saturates (NaN to 0), then the clamp applies.
        (x.round() as u32).clamp(1, cap)
    }
}

impl fmt::Display for LengthDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LengthDist::Const(n) => write!(f, "const:{n}"),
            LengthDist::Uniform(a, b) => write!(f, "uniform:{a}:{b}"),
            LengthDist::LogNormal { median, sigma } => {
                write!(f, "lognormal:{}:{}", compact(*median), compact(*sigma))
            }
            LengthDist::Exp { mean } => write!(f, "exp:{}", compact(*mean)),
        }
    }
}

/// The longest tool-call duration (or exponential mean) accepted, in seconds: 10^9 s, about
/// 31 years, so that every sampled duration fits the simulator's microsecond clock.
pub const MAX_DURATION_S: f64 = 1e9;

impl DurationDist {
    /// Parses `exp:MEAN`, `const:X`, `uniform:A:B` or a bare `X` (seconds). `key` names the spec
    /// key in errors.
    pub fn parse(key: &str, v: &str) -> Result<Self, TraceError> {
        let parts: Vec<&str> = v.split(':').collect();
        let d = match parts.as_slice() {
            [x] if x.parse::<f64>().is_ok() => DurationDist::Const(parse_f64(key, x)?),
            ["const", x] => DurationDist::Const(parse_f64(key, x)?),
            ["uniform", a, b] => DurationDist::Uniform(parse_f64(key, a)?, parse_f64(key, b)?),
            ["exp", m] => {
                let mean = parse_f64(key, m)?;
                if mean <= 0.0 {
                    return Err(err(format!("`{key}={v}`: exp needs MEAN > 0")));
                }
                DurationDist::Exp { mean }
            }
            _ => {
                return Err(err(format!(
                    "`{key}={v}`: expected exp:MEAN, const:X, uniform:A:B or X (seconds)"
                )));
            }
        };
        let ok = match d {
            DurationDist::Const(x) => x >= 0.0,
            DurationDist::Uniform(a, b) => a >= 0.0 && a <= b,
            DurationDist::Exp { .. } => true,
        };
        if !ok {
            return Err(err(format!(
                "`{key}={v}`: durations must be >= 0 (and A <= B)"
            )));
        }
        let largest = match d {
            DurationDist::Const(x) => x,
            DurationDist::Uniform(_, b) => b,
            DurationDist::Exp { mean } => mean,
        };
        if largest > MAX_DURATION_S {
            return Err(err(format!(
                "`{key}={v}`: durations must be at most {MAX_DURATION_S:e} s (about 31 years)"
            )));
        }
        Ok(d)
    }

    /// Draws one duration, in whole microseconds.
    pub fn sample_us<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let s = match *self {
            DurationDist::Const(x) => x,
            DurationDist::Uniform(a, b) => a + (b - a) * rng.random::<f64>(),
            DurationDist::Exp { mean } => Exp::new(1.0 / mean)
                .expect("validated exp mean")
                .sample(rng),
        };
        (s * 1e6).round() as u64
    }
}

impl fmt::Display for DurationDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationDist::Const(x) => write!(f, "const:{}", compact(*x)),
            DurationDist::Uniform(a, b) => write!(f, "uniform:{}:{}", compact(*a), compact(*b)),
            DurationDist::Exp { mean } => write!(f, "exp:{}", compact(*mean)),
        }
    }
}

impl SyntheticSpec {
    /// Parses the part of a spec after `synthetic:` (an empty string gives the defaults).
    /// Errors name the bad key or value.
    pub fn parse(spec: &str) -> Result<Self, TraceError> {
        let mut s = SyntheticSpec::default();
        let mut seen: Vec<&str> = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((key, v)) = item.split_once('=') else {
                return Err(err(format!("`{item}` is not KEY=VALUE")));
            };
            let (key, v) = (key.trim(), v.trim());
            if !KEYS.contains(&key) {
                return Err(err(format!(
                    "unknown key `{key}` (expected one of {})",
                    KEYS.join(", ")
                )));
            }
            if seen.contains(&key) {
                return Err(err(format!("key `{key}` given twice")));
            }
            seen.push(key);
            match key {
                "n" => {
                    s.n = parse_uint(key, v)?;
                    if s.n == 0 {
                        return Err(err("`n` must be at least 1"));
                    }
                }
                "rate" => {
                    s.rate = parse_f64(key, v)?;
                    if s.rate <= 0.0 {
                        return Err(err(format!("`rate`: `{v}` must be > 0")));
                    }
                }
                "seed" => s.seed = Some(parse_uint(key, v)?),
                "prompt" => s.prompt = LengthDist::parse(key, v)?,
                "output" => s.output = LengthDist::parse(key, v)?,
                "max_prompt" | "max_output" => {
                    let cap: u32 = parse_uint(key, v)?;
                    if cap == 0 {
                        return Err(err(format!("`{key}` must be at least 1")));
                    }
                    if key == "max_prompt" {
                        s.max_prompt = cap;
                    } else {
                        s.max_output = cap;
                    }
                }
                "tools" => {
                    s.tools = parse_f64(key, v)?;
                    if !(0.0..=1.0).contains(&s.tools) {
                        return Err(err(format!("`tools`: `{v}` is not a fraction in [0, 1]")));
                    }
                }
                "tool_duration" => s.tool_duration = DurationDist::parse(key, v)?,
                "tool_response" => s.tool_response = LengthDist::parse(key, v)?,
                _ => unreachable!("key checked against KEYS"),
            }
        }
        Ok(s)
    }

    /// Generates the workload, seeded by the spec's `seed` or else by `default_seed`. The trace
    /// is named `synthetic:` followed by the spec in canonical form, including the seed used.
    pub fn generate(&self, default_seed: u64) -> Trace {
        let seed = self.seed.unwrap_or(default_seed);
        let canonical = SyntheticSpec {
            seed: Some(seed),
            ..self.clone()
        };
        generate_mix(
            format!("synthetic:{canonical}"),
            self.n,
            self.rate,
            seed,
            &[(1.0, self)],
        )
    }
}

impl fmt::Display for SyntheticSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={},rate={},prompt={},output={},max_prompt={},max_output={},tools={},tool_duration={},tool_response={}",
            self.n,
            compact(self.rate),
            self.prompt,
            self.output,
            self.max_prompt,
            self.max_output,
            compact(self.tools),
            self.tool_duration,
            self.tool_response
        )?;
        if let Some(seed) = self.seed {
            write!(f, ",seed={seed}")?;
        }
        Ok(())
    }
}

/// Generates `n` Poisson arrivals at `rate`; each request draws its class from `classes`
/// (weights need not sum to 1) and its lengths and tool call from that class's spec (`n`,
/// `rate` and `seed` of the class specs are ignored).
fn generate_mix(
    name: String,
    n: usize,
    rate: f64,
    seed: u64,
    classes: &[(f64, &SyntheticSpec)],
) -> Trace {
    let arrivals = poisson_arrivals_us(n, rate, seed);
    let mut len_rng = ChaCha8Rng::seed_from_u64(seed);
    len_rng.set_stream(1);
    let mut tool_rng = ChaCha8Rng::seed_from_u64(seed);
    tool_rng.set_stream(2);
    let total_weight: f64 = classes.iter().map(|c| c.0).sum();
    let requests = arrivals
        .into_iter()
        .map(|arrival_us| {
            let spec = if classes.len() == 1 {
                classes[0].1
            } else {
                let mut u = len_rng.random::<f64>() * total_weight;
                let mut chosen = classes[classes.len() - 1].1;
                for &(w, c) in classes {
                    if u < w {
                        chosen = c;
                        break;
                    }
                    u -= w;
                }
                chosen
            };
            let prompt_tokens = spec.prompt.sample(&mut len_rng, spec.max_prompt);
            let output_tokens = spec.output.sample(&mut len_rng, spec.max_output);
            let mut tool_calls = Vec::new();
            if tool_rng.random::<f64>() < spec.tools && output_tokens >= 2 {
                tool_calls.push(ToolCall {
                    after_output_tokens: tool_rng.random_range(1..output_tokens),
                    duration_us: spec.tool_duration.sample_us(&mut tool_rng),
                    response_tokens: spec.tool_response.sample(&mut tool_rng, spec.max_prompt),
                });
            }
            TraceRequest {
                arrival_us,
                prompt_tokens,
                output_tokens,
                prefix: None,
                tool_calls,
                tenant: 0,
            }
        })
        .collect();
    Trace::new(name, requests)
}

/// The built-in mixed workload used by `augur demo`; needs no files and is always the same.
///
/// 3,000 requests with Poisson arrivals at 5 req/s (about 600 s), seed 2024, no tool calls and
/// no prefix sharing. Each request is independently
///
/// * a short chat with probability 0.85: prompt `lognormal:512:1.0`, output `lognormal:128:0.8`
///   (caps 8192 / 2048), or
/// * a long generation with probability 0.15: prompt `lognormal:256:0.8`, output
///   `lognormal:1024:0.5` (caps 8192 / 4096).
///
/// Expected means are about 770 prompt and 325 output tokens (the generated trace: 772.5 and
/// 324.9 over 591 s), with a long output tail that stresses KV memory growth during decode.
pub fn default_workload() -> Trace {
    let chat = SyntheticSpec {
        prompt: LengthDist::LogNormal {
            median: 512.0,
            sigma: 1.0,
        },
        output: LengthDist::LogNormal {
            median: 128.0,
            sigma: 0.8,
        },
        ..SyntheticSpec::default()
    };
    let long = SyntheticSpec {
        prompt: LengthDist::LogNormal {
            median: 256.0,
            sigma: 0.8,
        },
        output: LengthDist::LogNormal {
            median: 1024.0,
            sigma: 0.5,
        },
        max_output: 4096,
        ..SyntheticSpec::default()
    };
    generate_mix(
        "default-workload".to_owned(),
        3000,
        5.0,
        2024,
        &[(0.85, &chat), (0.15, &long)],
    )
}
