//! Mooncake FAST'25 traces: JSON Lines of
//! `{"timestamp": MS, "input_length": N, "output_length": M, "hash_ids": [...]}`.
//!
//! This is the only public trace with prefix identity: `hash_ids` are (remapped) hashes of the
//! prompt's 512-token blocks, one per block including a partial last one, so every row must
//! have `len(hash_ids) == ceil(input_length / 512)`. A row that does not is an error rather
//! than being trusted, because a wrong count would silently misalign every prefix block after
//! it. The ids become [`PrefixIds`] with 512-token source blocks.
//!
//! Timestamps are milliseconds from the start of the trace (on a coarse grid of about 3 s in
//! the conversation trace, so many requests share an arrival). Rows out of time order are
//! sorted stably.

use serde::Deserialize;

use super::{MOONCAKE_BLOCK_TOKENS, PrefixIds, Trace, TraceError, TraceRequest};

#[derive(Deserialize)]
struct Row {
    timestamp: f64,
    input_length: u32,
    output_length: u32,
    hash_ids: Vec<u64>,
    /// Optional: the request's tenant (a string or an integer), as a multi-tenant trace
    /// records it. Not in the published Mooncake files.
    #[serde(default)]
    tenant: Option<serde_json::Value>,
}

/// Parses a Mooncake trace from the bytes of a JSONL file. `file` names it in errors.
///
/// Every line must be one JSON object with the four fields (others are ignored); blank lines
/// are errors except after the last row. `timestamp` must be a finite, non-negative number of
/// milliseconds; `input_length` at least 1. An optional `tenant` field (a non-empty string or
/// a non-negative integer) assigns tenants, numbered in order of first appearance; it must be
/// on every line or on none. The trace is named after the file name.
pub fn parse(file: &str, data: &[u8]) -> Result<Trace, TraceError> {
    let mut requests = Vec::new();
    let mut tenants = super::TenantLabels::default();
    let mut with_tenant = None;
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    // Trailing newline(s) at end of file are fine.
    while lines
        .last()
        .is_some_and(|l| l.iter().all(u8::is_ascii_whitespace))
    {
        lines.pop();
    }
    if lines.is_empty() {
        return Err(TraceError::parse(
            file,
            1,
            "empty file (expected JSON lines of requests)",
        ));
    }
    for (i, raw) in lines.iter().enumerate() {
        let line = i as u64 + 1;
        let raw = if i == 0 {
            raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
        } else {
            raw
        };
        let text = std::str::from_utf8(raw)
            .map_err(|e| TraceError::parse(file, line, format!("not UTF-8: {e}")))?;
        if text.trim().is_empty() {
            return Err(TraceError::parse(file, line, "blank line"));
        }
        let row: Row = serde_json::from_str(text)
            .map_err(|e| TraceError::parse(file, line, format!("invalid request: {e}")))?;
        if !(row.timestamp.is_finite() && row.timestamp >= 0.0) {
            return Err(TraceError::parse(
                file,
                line,
                format!(
                    "timestamp {} is not a non-negative number of milliseconds",
                    row.timestamp
                ),
            ));
        }
        super::azure::nonzero_prompt(file, line, "input_length", row.input_length)?;
        let expected = row.input_length.div_ceil(MOONCAKE_BLOCK_TOKENS) as usize;
        if row.hash_ids.len() != expected {
            return Err(TraceError::parse(
                file,
                line,
                format!(
                    "hash_ids has {} entries but input_length {} needs ceil({}/{}) = {}",
                    row.hash_ids.len(),
                    row.input_length,
                    row.input_length,
                    MOONCAKE_BLOCK_TOKENS,
                    expected
                ),
            ));
        }
        let tenant = match (&row.tenant, with_tenant) {
            (None, None | Some(false)) => 0,
            (Some(v), None | Some(true)) => {
                let label = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) if n.is_u64() => n.to_string(),
                    other => {
                        return Err(TraceError::parse(
                            file,
                            line,
                            format!(
                                "tenant {other} is neither a string nor a non-negative integer"
                            ),
                        ));
                    }
                };
                tenants.id(file, line, &label)?
            }
            (t, Some(had)) => {
                return Err(TraceError::parse(
                    file,
                    line,
                    format!(
                        "{} a tenant but the lines before {}: the field must be on every line or on none",
                        if t.is_some() { "has" } else { "has no" },
                        if had { "have one" } else { "have none" }
                    ),
                ));
            }
        };
        with_tenant = Some(row.tenant.is_some());
        let arrival_us = (row.timestamp * 1000.0).round();
        if arrival_us >= u64::MAX as f64 {
            return Err(TraceError::parse(
                file,
                line,
                format!("timestamp {} ms is too large", row.timestamp),
            ));
        }
        requests.push(TraceRequest {
            arrival_us: arrival_us as u64,
            prompt_tokens: row.input_length,
            output_tokens: row.output_length,
            prefix: Some(PrefixIds {
                source_block_tokens: MOONCAKE_BLOCK_TOKENS,
                ids: row.hash_ids,
            }),
            tool_calls: Vec::new(),
            tenant,
        });
    }
    let mut trace = Trace::new(super::file_name(file), requests);
    trace.tenants = tenants.into_names();
    Ok(trace)
}
