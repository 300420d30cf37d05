//! Lengths-only traces (Vidur's processed traces): CSV whose first two columns are
//! `num_prefill_tokens,num_decode_tokens` (further columns such as `num_total_tokens` and
//! `pd_ratio` are ignored, except a column named `tenant`: any non-empty label, numbered in
//! order of first appearance).
//!
//! Such files carry no timestamps, so arrivals come from a seeded Poisson process: exponential
//! inter-arrival gaps at a given rate, the first request at 0. The generator is
//! `ChaCha8Rng::seed_from_u64(seed)`, so the same file, rate and seed give the same trace on
//! every platform. The file order of the rows is kept (request `i` is row `i`). No prefix
//! identity is invented.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

use super::azure::{csv_error, parse_u32};
use super::{LENGTHS_HEADER_PREFIX, Trace, TraceError, TraceRequest};

/// Parses a lengths-only trace from the bytes of a CSV file and gives it Poisson arrivals at
/// `rate` requests per second from `seed`. `file` names it in errors.
///
/// Each row must have as many fields as the header; `num_prefill_tokens` must be at least 1.
/// Errors when `rate` is not finite and positive.
pub fn parse(file: &str, data: &[u8], rate: f64, seed: u64) -> Result<Trace, TraceError> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(TraceError::invalid(format!(
            "{file}: arrival rate for a lengths-only trace must be finite and > 0, got {rate}"
        )));
    }
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(data);
    let mut record = csv::StringRecord::new();
    let mut width = None;
    let mut tenant_column = None;
    let mut tenants = super::TenantLabels::default();
    let mut lengths = Vec::new();
    let mut next_line = 1;
    while rdr
        .read_record(&mut record)
        .map_err(|e| csv_error(file, &e, next_line))?
    {
        let line = record.position().map_or(next_line, |p| p.line());
        next_line = line + 1;
        let Some(width) = width else {
            let header: Vec<&str> = record
                .iter()
                .map(|f| f.trim_start_matches('\u{feff}'))
                .collect();
            if header.len() < 2
                || header[0] != "num_prefill_tokens"
                || header[1] != "num_decode_tokens"
            {
                return Err(TraceError::parse(
                    file,
                    line,
                    format!(
                        "expected a header starting with `{LENGTHS_HEADER_PREFIX}`, found `{}`",
                        header.join(",")
                    ),
                ));
            }
            width = Some(header.len());
            tenant_column = header.iter().position(|&c| c == "tenant");
            continue;
        };
        if record.len() != width {
            return Err(TraceError::parse(
                file,
                line,
                format!(
                    "expected {width} fields as in the header, found {}",
                    record.len()
                ),
            ));
        }
        let prompt = parse_u32(file, line, "num_prefill_tokens", &record[0])?;
        let prompt = super::azure::nonzero_prompt(file, line, "num_prefill_tokens", prompt)?;
        let output = parse_u32(file, line, "num_decode_tokens", &record[1])?;
        let tenant = match tenant_column {
            Some(c) => tenants.id(file, line, &record[c])?,
            None => 0,
        };
        lengths.push((prompt, output, tenant));
    }
    if width.is_none() {
        return Err(TraceError::parse(
            file,
            1,
            format!("empty file (expected a header starting with `{LENGTHS_HEADER_PREFIX}`)"),
        ));
    }
    if lengths.is_empty() {
        return Err(TraceError::parse(file, 2, "no requests after the header"));
    }
    let arrivals = poisson_arrivals_us(lengths.len(), rate, seed);
    let requests = lengths
        .into_iter()
        .zip(arrivals)
        .map(
            |((prompt_tokens, output_tokens, tenant), arrival_us)| TraceRequest {
                arrival_us,
                prompt_tokens,
                output_tokens,
                prefix: None,
                tool_calls: Vec::new(),
                tenant,
            },
        )
        .collect();
    let mut trace = Trace::new(super::file_name(file), requests);
    trace.tenants = tenants.into_names();
    Ok(trace)
}

/// `n` arrival times (µs, non-decreasing, the first 0) of a Poisson process at `rate` requests
/// per second, from `ChaCha8Rng::seed_from_u64(seed)`. Times are accumulated in seconds as
/// `f64` and each rounded to microseconds, so rounding does not drift.
///
/// # Panics
/// If `rate` is not finite and positive.
pub fn poisson_arrivals_us(n: usize, rate: f64, seed: u64) -> Vec<u64> {
    assert!(
        rate.is_finite() && rate > 0.0,
        "rate must be finite and positive, got {rate}"
    );
    let exp = Exp::new(rate).expect("rate is finite and positive");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t = 0.0f64;
    (0..n)
        .map(|i| {
            if i > 0 {
                t += exp.sample(&mut rng);
            }
            (t * 1e6).round() as u64
        })
        .collect()
}
