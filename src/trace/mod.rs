//! Request traces: the workloads the simulator replays.
//!
//! Every scheduling result is only as good as the arrivals and lengths fed into it, so this
//! module turns the three public traces described in `shared/traces/README.md` (Azure LLM
//! inference 2023, Mooncake FAST'25, Vidur's lengths-only arXiv summarization) and synthetic
//! workloads into one common form, [`Trace`]: a list of [`TraceRequest`]s sorted by arrival,
//! with arrivals in microseconds relative to the first request.
//!
//! Loading is strict on purpose. A malformed row is an error naming the file and the 1-based
//! line ([`TraceError`]); it is never dropped silently, because a silently shortened trace
//! changes the offered load and therefore every latency number computed from it.
//!
//! Prefix identity (which requests share leading prompt tokens) only exists in the Mooncake
//! trace. It is kept as the trace's own block ids ([`PrefixIds`]) and mapped onto whatever block
//! size the engine uses with [`PrefixIds::block_hashes`]. Traces without prefix ids get none;
//! no sharing is invented for them.
//!
//! Entry point: [`load`], which dispatches on the spec string (a file path or
//! `synthetic:KEY=VALUE,...`).

pub mod azure;
pub mod lengths;
pub mod mooncake;
pub mod synthetic;

use hashbrown::HashSet;
use std::fmt;
use std::path::Path;

pub use synthetic::{SyntheticSpec, default_workload};

/// Token count of one Mooncake prefix block (`hash_ids` granularity).
pub const MOONCAKE_BLOCK_TOKENS: u32 = 512;

/// One request of a trace.
///
/// A request's id is its position in [`Trace::requests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRequest {
    /// Arrival time in microseconds relative to the first request of the trace.
    pub arrival_us: u64,
    /// Prompt (prefill) length in tokens; always at least 1.
    pub prompt_tokens: u32,
    /// Number of tokens the request generates in total (across all tool-call segments).
    pub output_tokens: u32,
    /// The trace's own prefix-block identity, where the trace has one (Mooncake only).
    pub prefix: Option<PrefixIds>,
    /// External calls made while generating, in increasing `after_output_tokens` order.
    pub tool_calls: Vec<ToolCall>,
    /// The request's tenant, an index into [`Trace::tenants`] (0 when the trace has none).
    pub tenant: u32,
}

/// A trace's own prefix block ids for one prompt.
///
/// Source block `i` covers prompt tokens `[i * source_block_tokens, (i + 1) * source_block_tokens)`;
/// two prompts with the same id at position `i` (and equal ids before it) share those tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixIds {
    /// Tokens per source block (512 for Mooncake).
    pub source_block_tokens: u32,
    /// One id per source block, in prompt order. The last block may be partial.
    pub ids: Vec<u64>,
}

/// An external call (tool use) made by an augmented LLM request.
///
/// After generating `after_output_tokens` tokens the request pauses for `duration_us`; the
/// call's response (`response_tokens` tokens) is then appended to the context and generation
/// resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolCall {
    /// Output tokens generated before the call is made.
    pub after_output_tokens: u32,
    /// How long the external call takes, in microseconds.
    pub duration_us: u64,
    /// Tokens the call's response appends to the context.
    pub response_tokens: u32,
}

/// A workload: requests sorted by arrival, the first arriving at 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Human-readable name (file name or synthetic spec).
    pub name: String,
    /// Requests sorted by non-decreasing `arrival_us`, the first at 0.
    pub requests: Vec<TraceRequest>,
    /// Tenant names, indexed by [`TraceRequest::tenant`]: read from the trace's tenant column
    /// (in order of first appearance) or set by [`Trace::assign_tenants`]; empty when the
    /// trace has no tenants (every request is tenant 0).
    pub tenants: Vec<String>,
}

/// The most tenants a trace may have (column values or `--tenants` K).
pub const MAX_TENANTS: u32 = 4096;

/// Numbers a trace's tenant labels in order of first appearance.
#[derive(Debug, Default)]
pub(crate) struct TenantLabels {
    names: Vec<String>,
    ids: hashbrown::HashMap<String, u32>,
}

impl TenantLabels {
    /// The id of `label` (a new one for a label not seen before). Errors, naming the line,
    /// on an empty label or on more than [`MAX_TENANTS`] distinct ones.
    pub(crate) fn id(&mut self, file: &str, line: u64, label: &str) -> Result<u32, TraceError> {
        let label = label.trim();
        if label.is_empty() {
            return Err(TraceError::parse(file, line, "tenant is empty"));
        }
        if let Some(&id) = self.ids.get(label) {
            return Ok(id);
        }
        let id = self.names.len() as u32;
        if id >= MAX_TENANTS {
            return Err(TraceError::parse(
                file,
                line,
                format!(
                    "tenant `{label}` is the trace's {}th; at most {MAX_TENANTS} tenants",
                    id + 1
                ),
            ));
        }
        self.names.push(label.to_owned());
        self.ids.insert(label.to_owned(), id);
        Ok(id)
    }

    /// The names, indexed by id.
    pub(crate) fn into_names(self) -> Vec<String> {
        self.names
    }
}

/// Summary statistics of a [`Trace`] (see [`Trace::summary`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    /// Number of requests.
    pub requests: usize,
    /// Arrival of the last request, in seconds.
    pub duration_s: f64,
    /// Mean arrival rate, `(requests - 1) / duration_s`, in requests per second.
    pub rate_per_s: f64,
    /// Mean prompt length in tokens.
    pub mean_prompt_tokens: f64,
    /// Mean output length in tokens.
    pub mean_output_tokens: f64,
    /// Total number of tool calls.
    pub tool_calls: usize,
}

impl fmt::Display for TraceSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests over {:.1} s ({:.2} req/s), mean prompt {:.1} tokens, mean output {:.1} tokens, {} tool calls",
            self.requests,
            self.duration_s,
            self.rate_per_s,
            self.mean_prompt_tokens,
            self.mean_output_tokens,
            self.tool_calls
        )
    }
}

/// Why a trace could not be loaded or transformed.
#[derive(Debug)]
pub enum TraceError {
    /// The file could not be read.
    Io {
        /// The path as given.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of a trace file is malformed (or the file as a whole is, e.g. empty).
    Parse {
        /// The file, as given to the loader.
        file: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A spec string (`synthetic:...` or an unsupported path) is invalid.
    Spec {
        /// What is wrong.
        message: String,
    },
    /// An argument (rate, scale factor, ...) is out of range.
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
}

impl TraceError {
    pub(crate) fn parse(file: &str, line: u64, message: impl Into<String>) -> Self {
        TraceError::Parse {
            file: file.to_owned(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn spec(message: impl Into<String>) -> Self {
        TraceError::Spec {
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        TraceError::InvalidArgument {
            message: message.into(),
        }
    }
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Io { path, source } => write!(f, "{path}: {source}"),
            TraceError::Parse {
                file,
                line,
                message,
            } => write!(f, "{file}:{line}: {message}"),
            TraceError::Spec { message } => write!(f, "{message}"),
            TraceError::InvalidArgument { message } => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for TraceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TraceError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Options for [`load`].
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Seed for generated randomness: Poisson arrivals of lengths-only traces, and synthetic
    /// specs that do not set `seed=` themselves. Default 0.
    pub seed: u64,
    /// Arrival rate (requests per second) of the Poisson process paired with lengths-only
    /// traces. Default 4.0 (in the range of the Azure trace's 5.5 req/s).
    pub lengths_rate: f64,
    /// Keep only the first `limit` requests (by arrival) when set. Default: all.
    pub limit: Option<usize>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            seed: 0,
            lengths_rate: 4.0,
            limit: None,
        }
    }
}

/// Header of the Azure LLM inference trace.
pub(crate) const AZURE_HEADER: &str = "TIMESTAMP,ContextTokens,GeneratedTokens";
/// Prefix of the header of a lengths-only trace.
pub(crate) const LENGTHS_HEADER_PREFIX: &str = "num_prefill_tokens,num_decode_tokens";

/// Loads a trace from a spec.
///
/// * `synthetic:KEY=VALUE,...`: a generated workload (see [`SyntheticSpec`]); `opts.seed` is
///   used unless the spec sets `seed=`.
/// * `PATH.jsonl`: a Mooncake trace ([`mooncake`]).
/// * `PATH.csv` with header `TIMESTAMP,ContextTokens,GeneratedTokens`: an Azure trace ([`azure`]).
/// * `PATH.csv` whose header starts with `num_prefill_tokens,num_decode_tokens`: a lengths-only
///   trace with seeded Poisson arrivals at `opts.lengths_rate` ([`lengths`]).
///
/// `opts.limit` keeps the first requests by arrival. Errors name the file and line.
pub fn load(spec: &str, opts: &LoadOptions) -> Result<Trace, TraceError> {
    let mut trace = if let Some(rest) = spec.strip_prefix("synthetic:") {
        SyntheticSpec::parse(rest)?.generate(opts.seed)
    } else {
        let path = Path::new(spec);
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("jsonl") => {
                let data = read(spec)?;
                mooncake::parse(spec, &data)?
            }
            Some("csv") => {
                let data = read(spec)?;
                let header = first_line(&data);
                if header.is_empty() {
                    return Err(TraceError::parse(
                        spec,
                        1,
                        format!(
                            "empty file or missing header (expected `{AZURE_HEADER}` or `{LENGTHS_HEADER_PREFIX},...`)"
                        ),
                    ));
                }
                if header == AZURE_HEADER || header == format!("{AZURE_HEADER},tenant") {
                    azure::parse(spec, &data)?
                } else if header.starts_with(LENGTHS_HEADER_PREFIX) {
                    lengths::parse(spec, &data, opts.lengths_rate, opts.seed)?
                } else {
                    return Err(TraceError::parse(
                        spec,
                        1,
                        format!(
                            "unrecognized CSV header `{header}` (expected `{AZURE_HEADER}`, `{AZURE_HEADER},tenant` or `{LENGTHS_HEADER_PREFIX},...`)"
                        ),
                    ));
                }
            }
            _ => {
                return Err(TraceError::spec(format!(
                    "trace spec `{spec}`: expected a `.csv` or `.jsonl` path or `synthetic:KEY=VALUE,...`"
                )));
            }
        }
    };
    if let Some(n) = opts.limit {
        trace.truncate(n);
    }
    check_clock_range(&trace)?;
    Ok(trace)
}

/// The latest arrival the simulator's clock takes: 2^60 µs, about 36,500 years (room for the
/// simulation to run on past it in 64-bit microseconds; any span of Azure timestamps, whose
/// years have four digits, fits).
pub const MAX_ARRIVAL_US: u64 = 1 << 60;

/// Refuses a trace whose arrivals reach past [`MAX_ARRIVAL_US`].
fn check_clock_range(trace: &Trace) -> Result<(), TraceError> {
    let last = trace.duration_us();
    if last > MAX_ARRIVAL_US {
        return Err(TraceError::invalid(format!(
            "the arrivals of `{}` reach {:.3e} s, past the simulator's clock range of {:.3e} s \
             (2^60 µs, about 36,500 years): raise the arrival rate (`rate` of a synthetic \
             trace, --lengths-rate of a lengths-only one)",
            trace.name,
            last as f64 * 1e-6,
            MAX_ARRIVAL_US as f64 * 1e-6
        )));
    }
    Ok(())
}

fn read(path: &str) -> Result<Vec<u8>, TraceError> {
    std::fs::read(path).map_err(|source| TraceError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The first line of `data`, without a UTF-8 byte-order mark, line terminator or surrounding
/// whitespace ("" when it is not UTF-8).
fn first_line(data: &[u8]) -> &str {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    std::str::from_utf8(&data[..end]).unwrap_or("").trim()
}

/// Trace name: the file name of a path (without directories).
pub(crate) fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
        .to_owned()
}

impl Trace {
    /// Builds a trace from requests in any order: sorts them stably by arrival and shifts
    /// arrivals so that the first is 0.
    pub fn new(name: impl Into<String>, mut requests: Vec<TraceRequest>) -> Self {
        requests.sort_by_key(|r| r.arrival_us);
        if let Some(first) = requests.first().map(|r| r.arrival_us) {
            for r in &mut requests {
                r.arrival_us -= first;
            }
        }
        Trace {
            name: name.into(),
            requests,
            tenants: Vec::new(),
        }
    }

    /// The number of tenants (at least 1: a trace without tenants is one tenant, 0).
    pub fn tenant_count(&self) -> u32 {
        (self.tenants.len() as u32).max(1)
    }

    /// Sets every request's tenant to `tenant_of(request index)` and names the tenants
    /// `0`..`count - 1`; replaces any tenants the trace had. Errors when `count` is 0 or above
    /// [`MAX_TENANTS`], or when `tenant_of` gives a tenant ≥ `count`.
    pub fn assign_tenants(
        &mut self,
        count: u32,
        tenant_of: impl Fn(u64) -> u32,
    ) -> Result<(), TraceError> {
        if count == 0 || count > MAX_TENANTS {
            return Err(TraceError::invalid(format!(
                "the number of tenants must be in 1..={MAX_TENANTS}, got {count}"
            )));
        }
        // Checked in full before anything changes: an error leaves the trace as it was.
        let ids: Vec<u32> = (0..self.requests.len() as u64).map(&tenant_of).collect();
        if let Some((i, t)) = ids.iter().enumerate().find(|&(_, &t)| t >= count) {
            return Err(TraceError::invalid(format!(
                "request {i}: tenant {t} is not below {count}"
            )));
        }
        for (r, t) in self.requests.iter_mut().zip(ids) {
            r.tenant = t;
        }
        self.tenants = (0..count).map(|k| k.to_string()).collect();
        Ok(())
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether the trace has no requests.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Speeds the trace up by `factor`: every inter-arrival gap is divided by `factor`
    /// (`factor` 2 doubles the request rate). Arrivals are rounded to whole microseconds, which
    /// keeps them sorted. Tool-call durations are not changed.
    ///
    /// Errors when `factor` is not finite and positive, or when the last arrival would pass
    /// [`MAX_ARRIVAL_US`].
    pub fn scale_rate(&mut self, factor: f64) -> Result<(), TraceError> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(TraceError::invalid(format!(
                "rate scale factor must be finite and > 0, got {}",
                crate::report::compact(factor)
            )));
        }
        let last = self.duration_us() as f64 / factor;
        if last.round() > MAX_ARRIVAL_US as f64 {
            return Err(TraceError::invalid(format!(
                "rate scale factor {factor:e} makes the last arrival {:.3e} s, past the \
                 simulator's clock range of {:.3e} s (2^60 µs): use a larger rate scale",
                last * 1e-6,
                MAX_ARRIVAL_US as f64 * 1e-6
            )));
        }
        for r in &mut self.requests {
            r.arrival_us = (r.arrival_us as f64 / factor).round() as u64;
        }
        Ok(())
    }

    /// Keeps only the first `n` requests (by arrival).
    pub fn truncate(&mut self, n: usize) {
        self.requests.truncate(n);
    }

    /// Arrival time of the last request in microseconds (the first arrives at 0); 0 if empty.
    pub fn duration_us(&self) -> u64 {
        self.requests.last().map_or(0, |r| r.arrival_us)
    }

    /// Mean prompt length in tokens (0 if empty).
    pub fn mean_prompt_tokens(&self) -> f64 {
        mean(self.requests.iter().map(|r| r.prompt_tokens), self.len())
    }

    /// Mean output length in tokens (0 if empty).
    pub fn mean_output_tokens(&self) -> f64 {
        mean(self.requests.iter().map(|r| r.output_tokens), self.len())
    }

    /// Mean arrival rate in requests per second, `(len - 1) / duration` (the README's
    /// definition); 0 when there are fewer than two requests or they all arrive at once.
    pub fn rate_per_s(&self) -> f64 {
        let d = self.duration_us();
        if self.len() < 2 || d == 0 {
            0.0
        } else {
            (self.len() - 1) as f64 / (d as f64 * 1e-6)
        }
    }

    /// Summary statistics.
    pub fn summary(&self) -> TraceSummary {
        TraceSummary {
            requests: self.len(),
            duration_s: self.duration_us() as f64 * 1e-6,
            rate_per_s: self.rate_per_s(),
            mean_prompt_tokens: self.mean_prompt_tokens(),
            mean_output_tokens: self.mean_output_tokens(),
            tool_calls: self.requests.iter().map(|r| r.tool_calls.len()).sum(),
        }
    }

    /// Upper bound on prefix-cache reuse at `block_size` tokens per block: the fraction of full
    /// prompt blocks (over all requests, in arrival order) whose hash
    /// ([`PrefixIds::block_hashes`]) was already seen earlier in the trace, i.e. the block hit
    /// rate of an infinite cache. Requests without prefix ids count all their full blocks as
    /// misses. Returns 0 when the trace has no full blocks.
    ///
    /// Only *full* blocks count, as an engine can only share full blocks. For the Mooncake
    /// trace at 512 this gives 0.382; the README's 36.6% counts every source id, including the
    /// partial last block of each prompt.
    ///
    /// Cost: one hash-set insert per block (about 0.7 s for Mooncake at block size 16, ~9M blocks).
    ///
    /// # Panics
    /// If `block_size` is 0.
    pub fn prefix_reuse_bound(&self, block_size: u32) -> f64 {
        assert!(block_size >= 1, "block size must be at least 1");
        // Reserving up front avoids rehashing millions of entries (Mooncake at 16: ~9M blocks).
        let upper: u64 = self
            .requests
            .iter()
            .filter(|r| r.prefix.is_some())
            .map(|r| u64::from(r.prompt_tokens / block_size))
            .sum();
        let mut seen = HashSet::with_capacity(usize::try_from(upper).unwrap_or(usize::MAX));
        let (mut total, mut hits) = (0u64, 0u64);
        for r in &self.requests {
            match &r.prefix {
                Some(p) => {
                    for h in p.block_hashes(r.prompt_tokens, block_size) {
                        total += 1;
                        if !seen.insert(h) {
                            hits += 1;
                        }
                    }
                }
                None => total += u64::from(r.prompt_tokens / block_size),
            }
        }
        if total == 0 {
            0.0
        } else {
            hits as f64 / total as f64
        }
    }
}

fn mean(values: impl Iterator<Item = u32>, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        values.map(f64::from).sum::<f64>() / n as f64
    }
}

/// Weyl-sequence increment of splitmix64 (2^64 / golden ratio).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 output function (Steele, Lea & Flood, 2014): adds the golden-ratio increment
/// and applies the variant-13 xor-shift-multiply finalizer. It is a bijection on `u64` with full
/// avalanche, so distinct inputs always give distinct outputs.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Folds `x` into the running hash `h`: `splitmix64(rotl(h, 27) * K ^ splitmix64(x))`.
///
/// For a fixed `h` this is a bijection in `x`, and for a fixed `x` a bijection in `h`
/// (compositions of bijections: rotation, multiplication by an odd constant, xor with a value
/// not depending on the other argument, splitmix64). So two chains that agree up to some point
/// and then fold different values are guaranteed to differ right there, and stay different
/// while they fold equal values; order matters because `h` is rotated and multiplied first.
fn fold(h: u64, x: u64) -> u64 {
    splitmix64(h.rotate_left(27).wrapping_mul(0xFF51_AFD7_ED55_8CCD) ^ splitmix64(x))
}

impl PrefixIds {
    /// Chained hashes of the full engine blocks of a prompt, for an engine with `block_size`
    /// tokens per block.
    ///
    /// Returns one hash per full block inside the prompt, `floor(prompt_tokens / block_size)`
    /// of them (fewer only if `ids` does not cover that many tokens). Engine block `j` covers
    /// tokens `[j * bs, (j + 1) * bs)`; its hash is
    /// `fold(... fold(fold(h[j-1], first source id), next source id) ..., offset)` over the
    /// source ids whose blocks overlap those tokens, where `offset = j * bs mod
    /// source_block_tokens` is where the engine block starts inside its first source block, and
    /// `h[-1]` is a seed derived from both block sizes. The mixer is splitmix64 ([`splitmix64`]).
    ///
    /// Properties: requests whose first `k` source ids agree get identical hashes for every
    /// engine block lying inside those `k` source blocks (the hash only depends on the ids it
    /// covers and on the chain before it); the first engine block touching a differing id gets
    /// a different hash (the fold is a bijection in the id), and so, up to 64-bit collisions,
    /// does every later block. Any `block_size >= 1` works, including sizes that do not divide
    /// the source block size.
    ///
    /// Returns nothing when `source_block_tokens` is 0.
    ///
    /// # Panics
    /// If `block_size` is 0.
    pub fn block_hashes(&self, prompt_tokens: u32, block_size: u32) -> Vec<u64> {
        assert!(block_size >= 1, "block size must be at least 1");
        let src = u64::from(self.source_block_tokens);
        if src == 0 {
            return Vec::new();
        }
        let bs = u64::from(block_size);
        let covered = self.ids.len() as u64 * src;
        let n = u64::from(prompt_tokens).min(covered) / bs;
        let mut h = fold(splitmix64(src), bs);
        let mut out = Vec::with_capacity(n as usize);
        for j in 0..n {
            let start = j * bs;
            let end = start + bs; // exclusive
            let first = start / src;
            let last = (end - 1) / src;
            for i in first..=last {
                h = fold(h, self.ids[i as usize]);
            }
            h = fold(h, start % src);
            out.push(h);
        }
        out
    }
}

#[cfg(test)]
mod tests;
