//! Tests of the predictors: parsing, determinism and their statistical error models.

use super::*;

const N: u64 = 20_000;

fn parse(s: &str) -> PredictorSpec {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn parse_err(s: &str) -> String {
    s.parse::<PredictorSpec>().unwrap_err().to_string()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn parses_every_form_and_round_trips() {
    let cases = [
        ("oracle", PredictorSpec::Oracle),
        ("none", PredictorSpec::None),
        ("lognormal:0.5", PredictorSpec::LogNormal { sigma: 0.5 }),
        ("exp", PredictorSpec::Exponential),
        ("uniform:0.25", PredictorSpec::Uniform { alpha: 0.25 }),
        (
            "onebit:256:0.85",
            PredictorSpec::OneBit {
                threshold: 256.0,
                accuracy: 0.85,
            },
        ),
        ("refining:1", PredictorSpec::Refining { sigma: 1.0 }),
    ];
    for (text, spec) in cases {
        assert_eq!(parse(text), spec, "{text}");
        assert_eq!(spec.to_string(), text);
        assert_eq!(parse(&spec.to_string()), spec);
    }
    assert_eq!(
        parse(" LogNormal:0.1 "),
        PredictorSpec::LogNormal { sigma: 0.1 }
    );
    assert_eq!(
        parse("lognormal:0"),
        PredictorSpec::LogNormal { sigma: 0.0 }
    );
}

#[test]
fn parse_errors_name_the_bad_part() {
    let e = parse_err("gaussian:0.5");
    assert!(
        e.contains("gaussian") && e.contains("lognormal:SIGMA"),
        "{e}"
    );
    let e = parse_err("lognormal");
    assert!(e.contains("missing SIGMA"), "{e}");
    let e = parse_err("lognormal:abc");
    assert!(e.contains("SIGMA") && e.contains("`abc`"), "{e}");
    let e = parse_err("lognormal:-1");
    assert!(e.contains("SIGMA") && e.contains("out of range"), "{e}");
    let e = parse_err("refining:nan");
    assert!(e.contains("SIGMA") && e.contains("nan"), "{e}");
    let e = parse_err("uniform:1.5");
    assert!(e.contains("`1.5`") && e.contains("0 ≤ A ≤ 1"), "{e}");
    let e = parse_err("onebit:100");
    assert!(e.contains("missing ACCURACY"), "{e}");
    let e = parse_err("onebit:0:0.9");
    assert!(e.contains("THRESHOLD"), "{e}");
    let e = parse_err("onebit:100:2");
    assert!(e.contains("ACCURACY") && e.contains("`2`"), "{e}");
    let e = parse_err("onebit:100:0.9:1");
    assert!(e.contains("takes 2 parameter(s), got 3"), "{e}");
    let e = parse_err("oracle:1");
    assert!(e.contains("oracle") && e.contains("takes 0"), "{e}");
    assert!(parse_err("").contains("unknown predictor"));
}

#[test]
fn oracle_none_and_who_refines() {
    let oracle = Predictor::new(PredictorSpec::Oracle, 1);
    assert_eq!(oracle.initial(3, 417), Some(417.0));
    assert_eq!(oracle.initial(3, 0), Some(1.0));
    assert_eq!(oracle.refine(3, 417, 10), None);
    let none = Predictor::new(PredictorSpec::None, 1);
    assert_eq!(none.initial(3, 417), None);
    assert_eq!(none.refine(3, 417, 10), None);
    for s in ["lognormal:1", "exp", "uniform:0.5", "onebit:100:0.9"] {
        let p = Predictor::new(parse(s), 1);
        assert!(!p.refines());
        assert!(p.initial(0, 100).is_some());
        assert_eq!(p.refine(0, 100, 50), None, "{s}");
    }
    let refining = Predictor::new(parse("refining:1"), 1);
    assert!(refining.refines());
    assert_eq!(refining.initial(5, 300), refining.refine(5, 300, 0));
}

#[test]
fn deterministic_and_order_independent() {
    for s in [
        "lognormal:0.7",
        "exp",
        "uniform:0.5",
        "onebit:200:0.7",
        "refining:1",
    ] {
        let p = Predictor::new(parse(s), 42);
        let forward: Vec<_> = (0..500u64)
            .map(|i| {
                (
                    p.initial(i, 100 + i as u32),
                    p.refine(i, 500, i as u32 % 400),
                )
            })
            .collect();
        let mut backward: Vec<_> = (0..500u64)
            .rev()
            .map(|i| {
                (
                    p.initial(i, 100 + i as u32),
                    p.refine(i, 500, i as u32 % 400),
                )
            })
            .collect();
        backward.reverse();
        assert_eq!(forward, backward, "{s}");
        let again = Predictor::new(parse(s), 42);
        assert_eq!(again.initial(77, 1234), p.initial(77, 1234));
        // Another seed gives other predictions (for the continuous models).
        if s != "onebit:200:0.7" {
            let other = Predictor::new(parse(s), 43);
            let differ = (0..100u64).filter(|&i| other.initial(i, 1000) != p.initial(i, 1000));
            assert!(differ.count() > 90, "{s}");
        }
    }
}

#[test]
fn predictions_are_finite_and_at_least_one() {
    for s in [
        "oracle",
        "lognormal:0",
        "lognormal:30",
        "exp",
        "uniform:1",
        "onebit:1:0.5",
        "refining:30",
    ] {
        let p = Predictor::new(parse(s), 9);
        for i in 0..2000u64 {
            for x in [0u32, 1, 7, 1000, u32::MAX] {
                let v = p.initial(i, x).unwrap();
                assert!(v.is_finite() && v >= 1.0, "{s} {i} {x}: {v}");
                if let Some(r) = p.refine(i, x, (i % 5) as u32) {
                    assert!(r.is_finite() && r >= (i % 5) as f64 + 1.0, "{s}: {r}");
                }
            }
        }
    }
}

#[test]
fn lognormal_is_median_unbiased_with_the_right_spread() {
    let sigma = 0.8;
    let p = Predictor::new(PredictorSpec::LogNormal { sigma }, 7);
    let logs: Vec<f64> = (0..N)
        .map(|i| (p.initial(i, 1000).unwrap() / 1000.0).ln())
        .collect();
    let med = median(logs.iter().map(|l| l.exp()).collect());
    assert!((med - 1.0).abs() < 0.03, "median ratio {med}");
    let m = mean(&logs);
    let sd = (logs.iter().map(|l| (l - m).powi(2)).sum::<f64>() / N as f64).sqrt();
    assert!(m.abs() < 0.03 && (sd - sigma).abs() < 0.03, "{m} {sd}");
    let zero = Predictor::new(PredictorSpec::LogNormal { sigma: 0.0 }, 7);
    assert_eq!(zero.initial(1, 321), Some(321.0));
}

#[test]
fn exponential_and_uniform_are_mean_unbiased() {
    let p = Predictor::new(PredictorSpec::Exponential, 11);
    let ratios: Vec<f64> = (0..N)
        .map(|i| p.initial(i, 1000).unwrap() / 1000.0)
        .collect();
    let m = mean(&ratios);
    assert!((m - 1.0).abs() < 0.03, "exp mean ratio {m}");
    // Exp(1) median is ln 2.
    let med = median(ratios);
    assert!((med - 2f64.ln()).abs() < 0.03, "exp median {med}");

    let alpha = 0.4;
    let p = Predictor::new(PredictorSpec::Uniform { alpha }, 11);
    let ratios: Vec<f64> = (0..N)
        .map(|i| p.initial(i, 1000).unwrap() / 1000.0)
        .collect();
    let m = mean(&ratios);
    assert!((m - 1.0).abs() < 0.01, "uniform mean ratio {m}");
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    assert!(lo >= 1.0 - alpha && lo < 1.0 - alpha + 0.01, "{lo}");
    assert!(hi <= 1.0 + alpha && hi > 1.0 + alpha - 0.01, "{hi}");
}

#[test]
fn one_bit_accuracy_matches() {
    let (threshold, accuracy) = (200.0, 0.8);
    let p = Predictor::new(
        PredictorSpec::OneBit {
            threshold,
            accuracy,
        },
        3,
    );
    let mut right = 0u64;
    for i in 0..N {
        let x = if i % 3 == 0 { 800 } else { 50 };
        let v = p.initial(i, x).unwrap();
        assert!(v == threshold / 2.0 || v == 2.0 * threshold, "{v}");
        if (v > threshold) == (f64::from(x) > threshold) {
            right += 1;
        }
    }
    let acc = right as f64 / N as f64;
    assert!((acc - accuracy).abs() < 0.015, "accuracy {acc}");
    // Exactly at the threshold counts as short.
    let perfect = Predictor::new(
        PredictorSpec::OneBit {
            threshold,
            accuracy: 1.0,
        },
        3,
    );
    assert_eq!(perfect.initial(0, 200), Some(100.0));
    assert_eq!(perfect.initial(0, 201), Some(400.0));
}

#[test]
fn refining_error_shrinks_toward_the_end() {
    let sigma = 1.0;
    let p = Predictor::new(PredictorSpec::Refining { sigma }, 5);
    let x = 1000u32;
    let spread = |generated: u32| {
        let logs: Vec<f64> = (0..N / 4)
            .map(|i| {
                let r = p.refine(i, x, generated).unwrap();
                assert!(r >= f64::from(generated) + 1.0);
                (r / f64::from(x)).ln().abs()
            })
            .collect();
        mean(&logs)
    };
    let s0 = spread(0);
    let s50 = spread(500);
    let s90 = spread(900);
    let s99 = spread(990);
    // E|N(0, σ²)| = σ · sqrt(2/π) ≈ 0.80; then σ · sqrt(remaining / total).
    assert!((s0 - 0.80).abs() < 0.05, "{s0}");
    assert!(s0 > s50 && s50 > s90 && s90 > s99, "{s0} {s50} {s90} {s99}");
    assert!(s90 < 0.3 && s99 < 0.1, "{s90} {s99}");
    // At the end the prediction is the truth (or the floor generated + 1).
    assert_eq!(p.refine(1, x, x), Some(f64::from(x) + 1.0));
    for i in 0..100 {
        let r = p.refine(i, x, x - 1).unwrap();
        assert!(r >= f64::from(x) && r < 1.15 * f64::from(x), "{r}");
    }
    // The refreshed prediction of the total never drops below what is already generated.
    for i in 0..1000 {
        assert!(p.refine(i, x, 700).unwrap() >= 701.0);
    }
}
