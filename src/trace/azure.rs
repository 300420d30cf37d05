//! Azure LLM inference trace (Splitwise, ISCA 2024): CSV with columns
//! `TIMESTAMP,ContextTokens,GeneratedTokens`, optionally followed by a `tenant` column (not in
//! the published files; any non-empty label, numbered in order of first appearance).
//!
//! Timestamps are absolute wall-clock strings such as `2023-11-16 18:15:46.6805900` with any
//! number (0 to 9) of fraction digits. They are parsed exactly here (proleptic Gregorian
//! days-from-civil arithmetic, integer nanoseconds; no time-zone handling, none is given) rather
//! than through a date library, so that no precision is lost before arrivals are made relative
//! to the first request and rounded to microseconds.
//!
//! The published file is sorted by time. A file that is not is **sorted stably by timestamp**
//! (not rejected); request ids are positions after that sort.

use super::{Trace, TraceError, TraceRequest};

/// Parses an Azure trace from the bytes of a CSV file. `file` names it in errors.
///
/// Each row must have exactly three fields: a timestamp (see [`parse_timestamp_ns`]), a prompt
/// length of at least 1 and a generated length (0 is allowed: a prefill-only request). The
/// trace is named after the file name.
pub fn parse(file: &str, data: &[u8]) -> Result<Trace, TraceError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(data);
    let mut record = csv::StringRecord::new();
    let mut rows: Vec<(i128, TraceRequest)> = Vec::new();
    let mut header_seen = false;
    let mut width = 3;
    let mut tenants = super::TenantLabels::default();
    let mut next_line = 1;
    loop {
        let more = rdr
            .read_record(&mut record)
            .map_err(|e| csv_error(file, &e, next_line))?;
        if !more {
            break;
        }
        let line = record.position().map_or(next_line, |p| p.line());
        next_line = line + 1;
        if !header_seen {
            header_seen = true;
            let header: Vec<&str> = record
                .iter()
                .map(|f| f.trim_start_matches('\u{feff}'))
                .collect();
            let columns = ["TIMESTAMP", "ContextTokens", "GeneratedTokens", "tenant"];
            if header.len() == 4 && header[..] == columns {
                width = 4;
            } else if header[..] != columns[..3] {
                return Err(TraceError::parse(
                    file,
                    line,
                    format!(
                        "expected header `{}`, found `{}`",
                        super::AZURE_HEADER,
                        header.join(",")
                    ),
                ));
            }
            continue;
        }
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
        let tenant = if width == 4 {
            tenants.id(file, line, &record[3])?
        } else {
            0
        };
        let ts = parse_timestamp_ns(&record[0]).map_err(|why| {
            TraceError::parse(file, line, format!("TIMESTAMP `{}` {why}", &record[0]))
        })?;
        let prompt = parse_u32(file, line, "ContextTokens", &record[1])?;
        let prompt = nonzero_prompt(file, line, "ContextTokens", prompt)?;
        let output = parse_u32(file, line, "GeneratedTokens", &record[2])?;
        rows.push((
            ts,
            TraceRequest {
                arrival_us: 0,
                prompt_tokens: prompt,
                output_tokens: output,
                prefix: None,
                tool_calls: Vec::new(),
                tenant,
            },
        ));
    }
    if !header_seen {
        return Err(TraceError::parse(
            file,
            1,
            format!("empty file (expected header `{}`)", super::AZURE_HEADER),
        ));
    }
    if rows.is_empty() {
        return Err(TraceError::parse(file, 2, "no requests after the header"));
    }
    // Stable: equal timestamps keep file order.
    rows.sort_by_key(|&(ts, _)| ts);
    let t0 = rows[0].0;
    let requests = rows
        .into_iter()
        .map(|(ts, mut r)| {
            // Non-negative after the sort, and below 10^4 years (the four-digit year): fits
            // u64 microseconds. Round half up to whole microseconds.
            let rel_ns = (ts - t0) as u128;
            r.arrival_us = u64::try_from((rel_ns + 500) / 1000).unwrap_or(u64::MAX);
            r
        })
        .collect();
    let mut trace = Trace::new(super::file_name(file), requests);
    trace.tenants = tenants.into_names();
    Ok(trace)
}

/// A `csv` crate error as a [`TraceError`] with the record's line, or `fallback` (the line
/// after the last good record) when the error carries no position.
pub(crate) fn csv_error(file: &str, e: &csv::Error, fallback: u64) -> TraceError {
    let line = match e.kind() {
        csv::ErrorKind::Utf8 { pos: Some(p), .. } => p.line(),
        csv::ErrorKind::UnequalLengths { pos: Some(p), .. } => p.line(),
        csv::ErrorKind::Deserialize { pos: Some(p), .. } => p.line(),
        _ => fallback,
    };
    TraceError::parse(file, line, format!("CSV error: {e}"))
}

/// Parses a non-negative integer field that must fit in `u32`.
pub(crate) fn parse_u32(
    file: &str,
    line: u64,
    column: &str,
    value: &str,
) -> Result<u32, TraceError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TraceError::parse(
            file,
            line,
            format!("{column} `{value}` is not a non-negative integer"),
        ));
    }
    value.parse::<u32>().map_err(|_| {
        TraceError::parse(
            file,
            line,
            format!("{column} `{value}` is too large (max {})", u32::MAX),
        )
    })
}

/// `prompt` if it is not 0; every loader rejects zero-length prompts with the same message.
pub(crate) fn nonzero_prompt(
    file: &str,
    line: u64,
    column: &str,
    prompt: u32,
) -> Result<u32, TraceError> {
    if prompt == 0 {
        return Err(TraceError::parse(
            file,
            line,
            format!("{column} is 0 (zero-length prompts are not allowed)"),
        ));
    }
    Ok(prompt)
}

/// Parses `YYYY-MM-DD HH:MM:SS[.F]` (a `T` may replace the space; `F` is 1 to 9 digits) into
/// nanoseconds since 1970-01-01 00:00:00 (no time zone). Any four-digit year (0000–9999) is
/// in range: the result is an `i128`, since `i64` nanoseconds end in 1677 and 2262. Errors
/// describe the problem as a phrase to follow the quoted value ("is not ...").
pub fn parse_timestamp_ns(s: &str) -> Result<i128, String> {
    const FORMAT: &str = "is not a timestamp of the form `YYYY-MM-DD HH:MM:SS[.fraction]`";
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(FORMAT.to_owned());
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = &s[range];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            Ok(part.parse::<i64>().map_err(|_| FORMAT.to_owned())?)
        } else {
            Err(FORMAT.to_owned())
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut nanos = 0i64;
    if b.len() > 19 {
        let frac = &s[19..];
        let digits = frac.strip_prefix('.').ok_or_else(|| FORMAT.to_owned())?;
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err("has a fraction of seconds that is not 1 to 9 digits".to_owned());
        }
        nanos = digits.parse::<i64>().map_err(|_| FORMAT.to_owned())?
            * 10i64.pow(9 - digits.len() as u32);
    }
    if !(1..=12).contains(&month) {
        return Err(format!("has month {month}, not 1..=12"));
    }
    let dim = days_in_month(year, month);
    if !(1..=dim).contains(&day) {
        return Err(format!(
            "has day {day}, not 1..={dim} for {year:04}-{month:02}"
        ));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!(
            "has time {hour:02}:{minute:02}:{second:02} out of range"
        ));
    }
    let days = i128::from(days_from_civil(year, month, day));
    let secs = ((days * 24 + i128::from(hour)) * 60 + i128::from(minute)) * 60 + i128::from(second);
    Ok(secs * 1_000_000_000 + i128::from(nanos))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}
