//! Service-time distributions and prediction models of the M/G/1-with-predictions model.
//!
//! Every [`ServiceDist`] has mean 1, so that the arrival rate λ of the queue equals its load
//! ρ = λ·E\[S\]. A [`PredictionModel`] describes the predicted size y of a job given its true
//! size x, that is the conditional density g(y | x) of Mitzenmacher, "Scheduling with
//! predictions and the price of misprediction" (ITCS 2020). All the models with a prediction are
//! *multiplicative*: y = x·U with U independent of x (U = 1, U ~ Exp(1) or U ~ U\[1−α, 1+α\]);
//! [`crate::mg1::analytic`] relies on that structure.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// Error returned by the [`FromStr`] impls of [`ServiceDist`] and [`PredictionModel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// The largest log-normal σ accepted (as `augur simulate` caps its predictors): past it
/// E\[S²\] = e^{σ²} passes 10^10 and a simulation of any feasible length measures nothing
/// like the mean (at σ = 10 the closed form is 10^43; at σ = 1000 it is infinite).
pub const MAX_SIGMA: f64 = 5.0;

/// A job-size (service-time) distribution with mean 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ServiceDist {
    /// Exponential with mean 1: F(x) = 1 − e^{−x}, E\[S²\] = 2.
    Exponential,
    /// The heavy-tailed Weibull of the predictions literature (Mitzenmacher, ITCS 2020):
    /// F(x) = 1 − exp(−√(2x)), shape 1/2, mean 1, E\[S²\] = 6. Equivalently S = E²/2 with
    /// E ~ Exp(1).
    Weibull,
    /// Every job has size exactly 1 (E\[S²\] = 1). It has no density: [`ServiceDist::pdf`] is 0.
    Deterministic,
    /// Log-normal ln S ~ N(μ, σ²) with μ = −σ²/2, so that E\[S\] = 1 and E\[S²\] = e^{σ²}.
    LogNormal {
        /// The standard deviation σ > 0 of ln S.
        sigma: f64,
    },
}

impl ServiceDist {
    /// The mean, always 1.
    pub fn mean(&self) -> f64 {
        1.0
    }

    /// The density f(x) (0 for x ≤ 0; 0 everywhere for [`ServiceDist::Deterministic`]).
    pub fn pdf(&self, x: f64) -> f64 {
        if x <= 0.0 || x.is_nan() {
            return 0.0;
        }
        match *self {
            ServiceDist::Exponential => (-x).exp(),
            ServiceDist::Weibull => {
                let s = (2.0 * x).sqrt();
                (-s).exp() / s
            }
            ServiceDist::Deterministic => 0.0,
            ServiceDist::LogNormal { sigma } => {
                let z = (x.ln() + 0.5 * sigma * sigma) / sigma;
                (-0.5 * z * z).exp() / (x * sigma * (2.0 * PI).sqrt())
            }
        }
    }

    /// The distribution function F(x) = P(S ≤ x).
    pub fn cdf(&self, x: f64) -> f64 {
        if x <= 0.0 || x.is_nan() {
            return 0.0;
        }
        match *self {
            ServiceDist::Exponential => -(-x).exp_m1(),
            ServiceDist::Weibull => -(-(2.0 * x).sqrt()).exp_m1(),
            ServiceDist::Deterministic => {
                if x >= 1.0 {
                    1.0
                } else {
                    0.0
                }
            }
            ServiceDist::LogNormal { sigma } => {
                std_normal_cdf((x.ln() + 0.5 * sigma * sigma) / sigma)
            }
        }
    }

    /// The second moment E\[S²\].
    pub fn second_moment(&self) -> f64 {
        match *self {
            ServiceDist::Exponential => 2.0,
            ServiceDist::Weibull => 6.0,
            ServiceDist::Deterministic => 1.0,
            ServiceDist::LogNormal { sigma } => (sigma * sigma).exp(),
        }
    }

    /// The partial first moment E\[S·1{S ≤ x}\] = ∫_0^x t f(t) dt, in closed form.
    ///
    /// Times λ this is the load ρ_x of jobs smaller than x.
    pub fn partial_mean(&self, x: f64) -> f64 {
        if x <= 0.0 || x.is_nan() {
            return 0.0;
        }
        match *self {
            ServiceDist::Exponential => 1.0 - (-x).exp() * (1.0 + x),
            ServiceDist::Weibull => {
                // S = E²/2 with E ~ Exp(1): E[E²/2; E < s] = γ(3, s)/2.
                let s = (2.0 * x).sqrt();
                1.0 - (-s).exp() * (1.0 + s + 0.5 * s * s)
            }
            ServiceDist::Deterministic => {
                if x >= 1.0 {
                    1.0
                } else {
                    0.0
                }
            }
            ServiceDist::LogNormal { sigma } => {
                std_normal_cdf((x.ln() - 0.5 * sigma * sigma) / sigma)
            }
        }
    }

    /// The partial second moment E\[S²·1{S ≤ x}\] = ∫_0^x t² f(t) dt, in closed form.
    pub fn partial_second_moment(&self, x: f64) -> f64 {
        if x <= 0.0 || x.is_nan() {
            return 0.0;
        }
        match *self {
            ServiceDist::Exponential => 2.0 - (-x).exp() * (x * x + 2.0 * x + 2.0),
            ServiceDist::Weibull => {
                // E[E⁴/4; E < s] = γ(5, s)/4 = 6 (1 − e^{−s} Σ_{k≤4} s^k/k!).
                let s = (2.0 * x).sqrt();
                let poly = 1.0 + s * (1.0 + s * (0.5 + s * (1.0 / 6.0 + s / 24.0)));
                6.0 * (1.0 - (-s).exp() * poly)
            }
            ServiceDist::Deterministic => {
                if x >= 1.0 {
                    1.0
                } else {
                    0.0
                }
            }
            ServiceDist::LogNormal { sigma } => {
                let s2 = sigma * sigma;
                s2.exp() * std_normal_cdf((x.ln() - 1.5 * s2) / sigma)
            }
        }
    }

    /// Draws one job size.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match *self {
            ServiceDist::Exponential => -(-rng.random::<f64>()).ln_1p(),
            ServiceDist::Weibull => {
                let e = -(-rng.random::<f64>()).ln_1p();
                0.5 * e * e
            }
            ServiceDist::Deterministic => 1.0,
            ServiceDist::LogNormal { sigma } => {
                let z: f64 = StandardNormal.sample(rng);
                (sigma * z - 0.5 * sigma * sigma).exp()
            }
        }
    }

    /// Whether the parameters are valid (σ finite and positive for the log-normal).
    pub fn is_valid(&self) -> bool {
        match *self {
            ServiceDist::LogNormal { sigma } => sigma.is_finite() && sigma > 0.0,
            _ => true,
        }
    }
}

impl fmt::Display for ServiceDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceDist::Exponential => f.write_str("exp"),
            ServiceDist::Weibull => f.write_str("weibull"),
            ServiceDist::Deterministic => f.write_str("det"),
            ServiceDist::LogNormal { sigma } => write!(f, "lognormal:{sigma}"),
        }
    }
}

impl FromStr for ServiceDist {
    type Err = ParseError;

    /// Parses `exp`, `weibull`, `det` or `lognormal:SIGMA` (0 < σ ≤ [`MAX_SIGMA`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exp" => Ok(ServiceDist::Exponential),
            "weibull" => Ok(ServiceDist::Weibull),
            "det" => Ok(ServiceDist::Deterministic),
            _ => {
                if let Some(rest) = s.strip_prefix("lognormal:") {
                    match rest.parse::<f64>() {
                        Ok(sigma) if sigma.is_finite() && sigma > 0.0 && sigma <= MAX_SIGMA => {
                            Ok(ServiceDist::LogNormal { sigma })
                        }
                        _ => Err(ParseError(format!(
                            "invalid log-normal sigma `{rest}` in `{s}`: expected a number in \
                             (0, {MAX_SIGMA}]"
                        ))),
                    }
                } else {
                    Err(ParseError(format!(
                        "unknown service distribution `{s}`: expected exp, weibull, det or lognormal:SIGMA"
                    )))
                }
            }
        }
    }
}

/// How the predicted size y of a job relates to its true size x.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PredictionModel {
    /// y = x.
    Perfect,
    /// y ~ Exp(mean x): g(y | x) = e^{−y/x}/x (Mitzenmacher, ITCS 2020). A deliberately weak
    /// predictor.
    Exponential,
    /// y ~ U\[(1−α)x, (1+α)x\]: g(y | x) = 1/(2αx) on that interval, 0 ≤ α ≤ 1.
    Uniform {
        /// The relative half-width α ∈ \[0, 1\].
        alpha: f64,
    },
    /// No prediction at all.
    None,
}

impl PredictionModel {
    /// Draws a prediction for a job of true size `x` (`None` for [`PredictionModel::None`]).
    pub fn sample_prediction<R: Rng + ?Sized>(&self, x: f64, rng: &mut R) -> Option<f64> {
        match *self {
            PredictionModel::Perfect => Some(x),
            PredictionModel::Exponential => Some(-x * (-rng.random::<f64>()).ln_1p()),
            PredictionModel::Uniform { alpha } => {
                Some(x * (1.0 - alpha + 2.0 * alpha * rng.random::<f64>()))
            }
            PredictionModel::None => None,
        }
    }

    /// The conditional density g(y | x) of the prediction y given the true size x > 0.
    ///
    /// `None` where there is no density: [`PredictionModel::Perfect`] (a point mass at y = x),
    /// [`PredictionModel::Uniform`] with α = 0, and [`PredictionModel::None`].
    pub fn conditional_density(&self, x: f64, y: f64) -> Option<f64> {
        match *self {
            PredictionModel::Perfect | PredictionModel::None => None,
            PredictionModel::Exponential => Some(if y < 0.0 { 0.0 } else { (-y / x).exp() / x }),
            PredictionModel::Uniform { alpha } => {
                if alpha <= 0.0 {
                    None
                } else if y >= (1.0 - alpha) * x && y <= (1.0 + alpha) * x {
                    Some(1.0 / (2.0 * alpha * x))
                } else {
                    Some(0.0)
                }
            }
        }
    }

    /// Whether the parameters are valid (α ∈ \[0, 1\] for the uniform model).
    pub fn is_valid(&self) -> bool {
        match *self {
            PredictionModel::Uniform { alpha } => (0.0..=1.0).contains(&alpha),
            _ => true,
        }
    }
}

impl fmt::Display for PredictionModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PredictionModel::Perfect => f.write_str("perfect"),
            PredictionModel::Exponential => f.write_str("exp"),
            PredictionModel::Uniform { alpha } => write!(f, "uniform:{alpha}"),
            PredictionModel::None => f.write_str("none"),
        }
    }
}

impl FromStr for PredictionModel {
    type Err = ParseError;

    /// Parses `perfect`, `exp`, `uniform:ALPHA` (0 ≤ α ≤ 1) or `none`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "perfect" => Ok(PredictionModel::Perfect),
            "exp" => Ok(PredictionModel::Exponential),
            "none" => Ok(PredictionModel::None),
            _ => {
                if let Some(rest) = s.strip_prefix("uniform:") {
                    match rest.parse::<f64>() {
                        Ok(alpha) if (0.0..=1.0).contains(&alpha) => {
                            Ok(PredictionModel::Uniform { alpha })
                        }
                        _ => Err(ParseError(format!(
                            "invalid uniform prediction alpha `{rest}` in `{s}`: expected a number in [0, 1]"
                        ))),
                    }
                } else {
                    Err(ParseError(format!(
                        "unknown prediction model `{s}`: expected perfect, exp, uniform:ALPHA or none"
                    )))
                }
            }
        }
    }
}

/// The complementary error function erfc(x), to about 1e-14 relative.
///
/// A positive-term series for erf below 2.5 and the classical continued fraction above.
pub(crate) fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 2.5 {
        // erf(x) = 2/√π · e^{−x²} · Σ_{n≥0} 2^n x^{2n+1} / (1·3·…·(2n+1))
        let x2 = x * x;
        let mut term = x;
        let mut sum = x;
        let mut n = 0u32;
        while term > 1e-17 * sum {
            n += 1;
            term *= 2.0 * x2 / f64::from(2 * n + 1);
            sum += term;
        }
        1.0 - 2.0 / PI.sqrt() * (-x2).exp() * sum
    } else {
        // erfc(x) = e^{−x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))), evaluated backwards.
        let mut f = x;
        for k in (1..=80u32).rev() {
            f = x + 0.5 * f64::from(k) / f;
        }
        (-x * x).exp() / (PI.sqrt() * f)
    }
}

/// The standard normal distribution function Φ(z).
pub(crate) fn std_normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn erfc_known_values() {
        let cases = [
            (0.0, 1.0),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_1),
            (2.0, 4.677_734_981_047_266e-3),
            (2.5, 4.069_520_174_449_59e-4),
            (3.0, 2.209_049_699_858_544e-5),
            (5.0, 1.537_459_794_428_035e-12),
            (-1.0, 1.842_700_792_949_715),
        ];
        for (x, want) in cases {
            assert!(
                rel(erfc(x), want) < 1e-12,
                "erfc({x}) = {} want {want}",
                erfc(x)
            );
        }
        // No jump where the method switches.
        assert!((erfc(2.5 - 1e-12) - erfc(2.5)).abs() < 1e-14);
    }

    /// ∫_0^∞ φ(x) dx by Simpson's rule on x = e^r, r ∈ \[-60, 20\].
    fn integral(phi: impl Fn(f64) -> f64) -> f64 {
        let (a, b, n) = (-60.0f64, 20.0f64, 160_000usize);
        let h = (b - a) / n as f64;
        let mut s = 0.0;
        for i in 0..=n {
            let r = a + i as f64 * h;
            let w = if i == 0 || i == n {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            };
            let x = r.exp();
            s += w * phi(x) * x;
        }
        s * h / 3.0
    }

    #[test]
    fn moments_match_densities() {
        for d in [
            ServiceDist::Exponential,
            ServiceDist::Weibull,
            ServiceDist::LogNormal { sigma: 0.7 },
            ServiceDist::LogNormal { sigma: 1.5 },
        ] {
            let m0 = integral(|x| d.pdf(x));
            let m1 = integral(|x| x * d.pdf(x));
            let m2 = integral(|x| x * x * d.pdf(x));
            assert!(rel(m0, 1.0) < 1e-8, "{d}: mass {m0}");
            assert!(rel(m1, 1.0) < 1e-8, "{d}: mean {m1}");
            assert!(rel(m2, d.second_moment()) < 1e-7, "{d}: second moment {m2}");
            for x in [0.1, 0.5, 1.0, 3.0] {
                let c = integral(|t| if t <= x { d.pdf(t) } else { 0.0 });
                let pm = integral(|t| if t <= x { t * d.pdf(t) } else { 0.0 });
                let pm2 = integral(|t| if t <= x { t * t * d.pdf(t) } else { 0.0 });
                // The step at x makes Simpson first order: compare loosely.
                assert!((c - d.cdf(x)).abs() < 1e-3, "{d}: cdf({x})");
                assert!(
                    (pm - d.partial_mean(x)).abs() < 1e-3,
                    "{d}: partial mean({x})"
                );
                assert!(
                    (pm2 - d.partial_second_moment(x)).abs() < 3e-3,
                    "{d}: partial second moment({x})"
                );
            }
            assert!(rel(d.partial_mean(1e9), 1.0) < 1e-12);
            assert!(rel(d.partial_second_moment(1e12), d.second_moment()) < 1e-9);
        }
    }

    #[test]
    fn sampling_means() {
        let mut rng = StdRng::seed_from_u64(7);
        let n = 200_000;
        for d in [
            ServiceDist::Exponential,
            ServiceDist::Weibull,
            ServiceDist::Deterministic,
            ServiceDist::LogNormal { sigma: 0.5 },
        ] {
            let mean = (0..n).map(|_| d.sample(&mut rng)).sum::<f64>() / n as f64;
            assert!(rel(mean, 1.0) < 0.02, "{d}: sample mean {mean}");
        }
        for p in [
            PredictionModel::Perfect,
            PredictionModel::Exponential,
            PredictionModel::Uniform { alpha: 0.5 },
        ] {
            let mean = (0..n)
                .map(|_| p.sample_prediction(2.0, &mut rng).unwrap())
                .sum::<f64>()
                / n as f64;
            assert!(rel(mean, 2.0) < 0.01, "{p}: mean prediction {mean}");
        }
        let p = PredictionModel::Uniform { alpha: 0.5 };
        assert!((0..1000).all(|_| {
            let y = p.sample_prediction(2.0, &mut rng).unwrap();
            (1.0..=3.0).contains(&y)
        }));
        assert_eq!(PredictionModel::None.sample_prediction(2.0, &mut rng), None);
    }

    #[test]
    fn conditional_densities() {
        let e = PredictionModel::Exponential;
        assert!(
            rel(
                e.conditional_density(2.0, 1.0).unwrap(),
                (-0.5f64).exp() / 2.0
            ) < 1e-15
        );
        assert_eq!(e.conditional_density(2.0, -1.0), Some(0.0));
        let u = PredictionModel::Uniform { alpha: 0.5 };
        assert_eq!(u.conditional_density(2.0, 2.5), Some(0.5));
        assert_eq!(u.conditional_density(2.0, 3.5), Some(0.0));
        assert_eq!(PredictionModel::Perfect.conditional_density(2.0, 2.0), None);
        assert_eq!(PredictionModel::None.conditional_density(2.0, 2.0), None);
        // ∫ g(y | x) dy = 1 for the exponential model.
        let mass = integral(|y| e.conditional_density(3.0, y).unwrap());
        assert!(rel(mass, 1.0) < 1e-8);
    }

    #[test]
    fn parse_round_trips() {
        for s in ["exp", "weibull", "det", "lognormal:1.5", "lognormal:0.25"] {
            let d: ServiceDist = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
            assert_eq!(d.to_string().parse::<ServiceDist>().unwrap(), d);
        }
        assert_eq!(
            "lognormal:2".parse::<ServiceDist>().unwrap(),
            ServiceDist::LogNormal { sigma: 2.0 }
        );
        for s in [
            "perfect",
            "exp",
            "uniform:0.5",
            "uniform:1",
            "uniform:0",
            "none",
        ] {
            let p: PredictionModel = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
            assert_eq!(p.to_string().parse::<PredictionModel>().unwrap(), p);
        }
        assert_eq!(
            "uniform:0.25".parse::<PredictionModel>().unwrap(),
            PredictionModel::Uniform { alpha: 0.25 }
        );
    }

    #[test]
    fn parse_errors() {
        let err = "foo".parse::<ServiceDist>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown service distribution `foo`: expected exp, weibull, det or lognormal:SIGMA"
        );
        for bad in [
            "lognormal:",
            "lognormal:x",
            "lognormal:-1",
            "lognormal:0",
            "lognormal:inf",
        ] {
            let err = bad.parse::<ServiceDist>().unwrap_err().to_string();
            assert!(err.contains("invalid log-normal sigma"), "{bad}: {err}");
        }
        let err = "bar".parse::<PredictionModel>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown prediction model `bar`: expected perfect, exp, uniform:ALPHA or none"
        );
        for bad in [
            "uniform:",
            "uniform:1.5",
            "uniform:-0.1",
            "uniform:abc",
            "uniform:NaN",
        ] {
            let err = bad.parse::<PredictionModel>().unwrap_err().to_string();
            assert!(
                err.contains("invalid uniform prediction alpha"),
                "{bad}: {err}"
            );
        }
        assert!("EXP".parse::<ServiceDist>().is_err());
        assert!("".parse::<PredictionModel>().is_err());
    }
}
