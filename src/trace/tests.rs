//! Tests of the trace loaders, the prefix-hash mapping and synthetic workloads.
//!
//! Real-trace tests read `../shared/traces/`: ignored ("needs ../shared/traces") when the folder
//! is absent, failing when it is absent and `AUGUR_REQUIRE_TRACES=1` (see `build.rs`).

use std::path::PathBuf;
use std::time::Instant;

use super::*;

/// The path of a trace in `../shared/traces/`. The tests that call this are ignored when the
/// folder is absent (see `build.rs`); when they run without the file (`AUGUR_REQUIRE_TRACES=1`
/// or a partial folder) they fail with this message, never pass silently.
fn shared(name: &str) -> String {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/traces/")).join(name);
    assert!(
        p.is_file(),
        "{} is absent: the real-trace tests need ../shared/traces (without the folder they are \
         ignored, unless AUGUR_REQUIRE_TRACES=1)",
        p.display()
    );
    p.to_str().expect("UTF-8 path").to_owned()
}

fn close(actual: f64, expected: f64, rel: f64) -> bool {
    (actual - expected).abs() <= rel * expected.abs()
}

fn load_timed(path: &str) -> Trace {
    let t = Instant::now();
    let trace = load(path, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "loaded {} in {:.1} ms: {}",
        trace.name,
        t.elapsed().as_secs_f64() * 1e3,
        trace.summary()
    );
    trace
}

fn check_sorted_from_zero(t: &Trace) {
    assert_eq!(t.requests[0].arrival_us, 0);
    assert!(
        t.requests
            .windows(2)
            .all(|w| w[0].arrival_us <= w[1].arrival_us)
    );
    assert!(t.requests.iter().all(|r| r.prompt_tokens >= 1));
}

#[test]
#[cfg_attr(
    not(any(augur_traces, augur_require_traces)),
    ignore = "needs ../shared/traces"
)]
fn trace_azure_real() {
    let path = shared("azure_llm_2023_conv.csv");
    let t = load_timed(&path);
    assert_eq!(t.len(), 19_366);
    assert_eq!(t.name, "azure_llm_2023_conv.csv");
    check_sorted_from_zero(&t);
    assert!(
        close(t.mean_prompt_tokens(), 1154.7, 1e-3),
        "{}",
        t.mean_prompt_tokens()
    );
    assert!(
        close(t.mean_output_tokens(), 211.1, 1e-3),
        "{}",
        t.mean_output_tokens()
    );
    // 18:15:46.6805900 to 19:14:08.40...: 3,501.7 s.
    let d = t.duration_us() as f64 * 1e-6;
    assert!((d - 3501.7).abs() < 0.1, "{d}");
    assert!(close(t.rate_per_s(), 5.53, 2e-3), "{}", t.rate_per_s());
    // Second row: 18:15:50.9951690 - 18:15:46.6805900 = 4.3145790 s.
    assert_eq!(t.requests[1].arrival_us, 4_314_579);
    assert!(
        t.requests
            .iter()
            .all(|r| r.prefix.is_none() && r.tool_calls.is_empty())
    );
    assert_eq!(t.prefix_reuse_bound(16), 0.0);
}

#[test]
#[cfg_attr(
    not(any(augur_traces, augur_require_traces)),
    ignore = "needs ../shared/traces"
)]
fn trace_mooncake_real() {
    let path = shared("mooncake_fast25_conversation_trace.jsonl");
    let t = load_timed(&path);
    assert_eq!(t.len(), 12_031);
    check_sorted_from_zero(&t);
    assert!(
        close(t.mean_prompt_tokens(), 12_035.1, 1e-3),
        "{}",
        t.mean_prompt_tokens()
    );
    assert!(
        close(t.mean_output_tokens(), 342.6, 1e-3),
        "{}",
        t.mean_output_tokens()
    );
    let d = t.duration_us() as f64 * 1e-6;
    assert!((d - 3537.0).abs() < 0.1, "{d}");
    let ids: usize = t
        .requests
        .iter()
        .map(|r| r.prefix.as_ref().unwrap().ids.len())
        .sum();
    assert_eq!(ids, 288_500);

    // The README's 36.6% counts every source id (partial last blocks included).
    let mut seen = HashSet::new();
    let raw_hits = t
        .requests
        .iter()
        .flat_map(|r| r.prefix.as_ref().unwrap().ids.iter())
        .filter(|&&id| !seen.insert(id))
        .count();
    assert_eq!(seen.len(), 182_790);
    let raw = raw_hits as f64 / ids as f64;
    assert!((raw - 0.366).abs() < 5e-4, "{raw}");

    // Full 512-token blocks only: 105,592 hits of 276,491 (checked independently in Python).
    let b512 = t.prefix_reuse_bound(512);
    assert!((b512 - 105_592.0 / 276_491.0).abs() < 1e-9, "{b512}");
    assert!(b512 >= raw && b512 < raw + 0.02, "{b512} vs {raw}");
    let started = Instant::now();
    let b16 = t.prefix_reuse_bound(16);
    eprintln!(
        "prefix_reuse_bound(16) took {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    // Smaller blocks also count the full blocks inside each prompt's (mostly unique) partial
    // last source block, so the bound drops a little, but stays above the raw-id figure.
    assert!(b16 >= b512 - 0.01 && b16 >= raw, "{b16} vs {b512}");
    let b100 = t.prefix_reuse_bound(100);
    assert!(b100 >= b512 - 0.01 && b100 <= b16 + 0.01, "{b100}");
    eprintln!(
        "mooncake prefix reuse bound: 512 {b512:.4}, 100 {b100:.4}, 16 {b16:.4}, raw ids {raw:.4}"
    );
}

#[test]
#[cfg_attr(
    not(any(augur_traces, augur_require_traces)),
    ignore = "needs ../shared/traces"
)]
fn trace_vidur_lengths_real() {
    let path = shared("vidur_arxiv_summarization_lengths_llama2.csv");
    let t = load_timed(&path);
    assert_eq!(t.len(), 28_257);
    check_sorted_from_zero(&t);
    assert!(
        close(t.mean_prompt_tokens(), 2588.1, 1e-3),
        "{}",
        t.mean_prompt_tokens()
    );
    assert!(
        close(t.mean_output_tokens(), 291.4, 1e-3),
        "{}",
        t.mean_output_tokens()
    );
    // Poisson arrivals at the default 4 req/s: 28,256 gaps, relative sd of the mean ~0.6%.
    assert!(close(t.rate_per_s(), 4.0, 0.03), "{}", t.rate_per_s());
    // Row order is kept and arrivals depend only on the seed.
    assert_eq!(
        (t.requests[0].prompt_tokens, t.requests[0].output_tokens),
        (3772, 54)
    );
    let again = load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(again, t);
    let other = load(
        &path,
        &LoadOptions {
            seed: 1,
            lengths_rate: 8.0,
            limit: Some(100),
        },
    )
    .unwrap();
    assert_eq!(other.len(), 100);
    assert_ne!(other.requests[1].arrival_us, t.requests[1].arrival_us);
    assert!(close(other.rate_per_s(), 8.0, 0.35));
}

/// A temp file that removes itself.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("augur-trace-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, contents).unwrap();
        TempFile(p)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Loads `contents` as file `name` and returns the error message, which must name the file and
/// `:line:` and contain `needle`.
fn load_err(name: &str, contents: &str, line: u64, needle: &str) -> String {
    let f = TempFile::new(name, contents);
    let e = load(f.path(), &LoadOptions::default()).expect_err("must fail");
    let msg = e.to_string();
    assert!(msg.contains(&format!("{name}:{line}: ")), "{msg}");
    assert!(msg.contains(needle), "{msg}");
    match e {
        TraceError::Parse { line: l, .. } => assert_eq!(l, line),
        other => panic!("not a parse error: {other:?}"),
    }
    msg
}

const AZ: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\n";

#[test]
fn trace_azure_malformed() {
    let ok = "2023-11-16 18:15:46.6805900,374,44\n";
    let msg = load_err(
        "az_bad_number.csv",
        &format!("{AZ}{ok}2023-11-16 18:15:47.1,12,abc\n"),
        3,
        "GeneratedTokens `abc` is not a non-negative integer",
    );
    assert!(
        msg.ends_with("az_bad_number.csv:3: GeneratedTokens `abc` is not a non-negative integer")
    );
    load_err(
        "az_neg.csv",
        &format!("{AZ}{ok}{ok}2023-11-16 18:15:47,-5,3\n"),
        4,
        "ContextTokens `-5`",
    );
    load_err(
        "az_missing.csv",
        &format!("{AZ}{ok}2023-11-16 18:15:47.1,12\n"),
        3,
        "expected 3 fields",
    );
    load_err(
        "az_extra.csv",
        &format!("{AZ}2023-11-16 18:15:47.1,12,3,4\n"),
        2,
        "found 4",
    );
    load_err(
        "az_zero.csv",
        &format!("{AZ}{ok}2023-11-16 18:15:47.1,0,3\n"),
        3,
        "zero-length prompt",
    );
    load_err(
        "az_ts.csv",
        &format!("{AZ}{ok}2023-11-16 18:15:4x.1,1,3\n"),
        3,
        "TIMESTAMP `2023-11-16 18:15:4x.1`",
    );
    load_err(
        "az_ts2.csv",
        &format!("{AZ}2023-02-29 00:00:00,1,3\n"),
        2,
        "has day 29",
    );
    load_err(
        "az_ts3.csv",
        &format!("{AZ}2023-11-16 24:00:00,1,3\n"),
        2,
        "out of range",
    );
    load_err(
        "az_ts4.csv",
        &format!("{AZ}2023-11-16 18:15:46.1234567890,1,3\n"),
        2,
        "1 to 9 digits",
    );
    load_err(
        "az_ts5.csv",
        &format!("{AZ}2023-11-16 18:15:46+01:00,1,3\n"),
        2,
        "is not a timestamp",
    );
    load_err("az_empty.csv", "", 1, "empty file");
    let f = TempFile::new("az_utf8.csv", "");
    std::fs::write(
        &f.0,
        [
            AZ.as_bytes(),
            b"2023-11-16 18:15:46,1,3\n2023-11-16 18:15:4\xff,1,3\n",
        ]
        .concat(),
    )
    .unwrap();
    let msg = load(f.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("az_utf8.csv:3: "), "{msg}");
    load_err("az_header_only.csv", AZ, 2, "no requests");
    load_err(
        "az_header.csv",
        "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,3\n",
        1,
        "unrecognized CSV header",
    );
    load_err(
        "az_noheader.csv",
        &format!("{ok}{ok}"),
        1,
        "unrecognized CSV header",
    );
}

#[test]
fn trace_azure_timestamps_and_sorting() {
    // Variable fraction digits; out of order rows are sorted stably; a leap day; rounding.
    let text = format!(
        "{AZ}2024-02-29 23:59:59.9999996,10,1\n2024-02-29 23:59:59,20,2\n2024-03-01 00:00:01.5,30,3\n2024-02-29 23:59:59.0,40,4\n"
    );
    let t = azure::parse("x.csv", text.as_bytes()).unwrap();
    let got: Vec<(u64, u32)> = t
        .requests
        .iter()
        .map(|r| (r.arrival_us, r.prompt_tokens))
        .collect();
    assert_eq!(
        got,
        vec![(0, 20), (0, 40), (1_000_000, 10), (2_500_000, 30)]
    );
    assert_eq!(azure::days_from_civil(1970, 1, 1), 0);
    assert_eq!(azure::days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(azure::days_from_civil(1969, 12, 31), -1);
    assert_eq!(
        azure::parse_timestamp_ns("2023-11-16T18:15:46.68059").unwrap(),
        1_700_158_546_680_590_000
    );
    assert!(azure::parse_timestamp_ns("2023-13-01 00:00:00").is_err());
    assert!(azure::parse_timestamp_ns("2023-11-16 18:15:46.").is_err());
}

#[test]
fn trace_mooncake_malformed() {
    let ok = r#"{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]}"#;
    load_err(
        "mc_count.jsonl",
        &format!(
            "{ok}\n{}\n",
            r#"{"timestamp": 3, "input_length": 1025, "output_length": 5, "hash_ids": [0, 1]}"#
        ),
        2,
        "hash_ids has 2 entries but input_length 1025 needs ceil(1025/512) = 3",
    );
    load_err(
        "mc_zero.jsonl",
        &format!(
            "{ok}\n{ok}\n{}\n",
            r#"{"timestamp": 3, "input_length": 0, "output_length": 5, "hash_ids": []}"#
        ),
        3,
        "zero-length prompt",
    );
    load_err(
        "mc_num.jsonl",
        &format!(
            "{}\n",
            r#"{"timestamp": 3, "input_length": "abc", "output_length": 5, "hash_ids": [1]}"#
        ),
        1,
        "invalid request",
    );
    load_err(
        "mc_missing.jsonl",
        &format!(
            "{ok}\n{}\n",
            r#"{"timestamp": 3, "output_length": 5, "hash_ids": [1]}"#
        ),
        2,
        "missing field `input_length`",
    );
    load_err(
        "mc_ts.jsonl",
        &format!(
            "{}\n",
            r#"{"timestamp": -3, "input_length": 5, "output_length": 5, "hash_ids": [1]}"#
        ),
        1,
        "timestamp -3",
    );
    load_err(
        "mc_blank.jsonl",
        &format!("{ok}\n\n{ok}\n"),
        2,
        "blank line",
    );
    load_err(
        "mc_trunc.jsonl",
        &format!("{ok}\n{{\"timestamp\": 3\n"),
        2,
        "invalid request",
    );
    load_err("mc_empty.jsonl", "", 1, "empty file");
    load_err("mc_empty2.jsonl", "\n\n", 1, "empty file");

    // Good file: milliseconds to µs, unsorted rows sorted stably, first at 0.
    let f = TempFile::new(
        "mc_ok.jsonl",
        "{\"timestamp\": 3000, \"input_length\": 512, \"output_length\": 1, \"hash_ids\": [7]}\n\
         {\"timestamp\": 1000, \"input_length\": 513, \"output_length\": 2, \"hash_ids\": [7, 8], \"extra\": 1}",
    );
    let t = load(f.path(), &LoadOptions::default()).unwrap();
    assert_eq!(t.requests[0].arrival_us, 0);
    assert_eq!(t.requests[0].prompt_tokens, 513);
    assert_eq!(t.requests[1].arrival_us, 2_000_000);
    assert_eq!(t.prefix_reuse_bound(512), 0.5); // [7] of the 2nd request hits, its 2nd block is partial
}

const VL: &str = "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n";

#[test]
fn trace_lengths_malformed() {
    load_err(
        "vl_num.csv",
        &format!("{VL}10,5,15,2\n10,x,15,2\n"),
        3,
        "num_decode_tokens `x`",
    );
    load_err(
        "vl_missing.csv",
        &format!("{VL}10,5,15,2\n10,5,15\n"),
        3,
        "expected 4 fields",
    );
    load_err(
        "vl_zero.csv",
        &format!("{VL}0,5,5,0\n"),
        2,
        "zero-length prompt",
    );
    load_err(
        "vl_float.csv",
        &format!("{VL}1.5,5,5,0\n"),
        2,
        "num_prefill_tokens `1.5`",
    );
    load_err(
        "vl_header.csv",
        "num_prefill_tokens\n5\n",
        1,
        "unrecognized CSV header",
    );
    load_err("vl_header_only.csv", VL, 2, "no requests");
    let f = TempFile::new("vl_ok.csv", &format!("{VL}10,5,15,2\n20,6,26,3.3\n"));
    let e = load(
        f.path(),
        &LoadOptions {
            lengths_rate: 0.0,
            ..LoadOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("vl_ok.csv") && e.to_string().contains("> 0"),
        "{e}"
    );
    let t = load(f.path(), &LoadOptions::default()).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(
        (t.requests[1].prompt_tokens, t.requests[1].output_tokens),
        (20, 6)
    );
}

#[test]
fn trace_load_spec_errors() {
    let e = load("trace.txt", &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, TraceError::Spec { .. }), "{e}");
    let e = load("/nonexistent/augur/x.csv", &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(e, TraceError::Io { .. }) && e.to_string().contains("/nonexistent/augur/x.csv")
    );
    assert!(std::error::Error::source(&e).is_some());
}

fn ids(v: &[u64]) -> PrefixIds {
    PrefixIds {
        source_block_tokens: 512,
        ids: v.to_vec(),
    }
}

#[test]
fn trace_block_hashes_properties() {
    let a = ids(&[0, 1, 2, 3, 4]);
    let b = ids(&[0, 1, 2, 9, 10]); // first 3 source ids agree
    let prompt = 5 * 512 - 7;
    for bs in [1u32, 16, 64, 100, 512, 1000, 2048] {
        let ha = a.block_hashes(prompt, bs);
        let hb = b.block_hashes(prompt, bs);
        assert_eq!(ha.len(), (prompt / bs) as usize, "bs {bs}");
        // Blocks inside the shared 3 * 512 tokens are identical; the rest differ.
        let shared = (3 * 512 / bs) as usize;
        assert_eq!(ha[..shared], hb[..shared], "bs {bs}");
        for j in shared..ha.len() {
            assert_ne!(ha[j], hb[j], "bs {bs} block {j}");
        }
        // Deterministic, and a shorter prompt gives a prefix of the hashes.
        assert_eq!(ha, a.block_hashes(prompt, bs));
        let short = a.block_hashes(1000, bs);
        assert_eq!(short[..], ha[..short.len()]);
        // All hashes of one prompt are distinct (positions are chained).
        let set: HashSet<u64> = ha.iter().copied().collect();
        assert_eq!(set.len(), ha.len(), "bs {bs}");
    }
    // Differing first id: every block differs.
    let c = ids(&[5, 1, 2, 3, 4]);
    for bs in [16u32, 64, 100, 512] {
        let (ha, hc) = (a.block_hashes(2560, bs), c.block_hashes(2560, bs));
        assert!(ha.iter().zip(&hc).all(|(x, y)| x != y), "bs {bs}");
    }
    // Only full blocks count, and never beyond the tokens the ids cover.
    assert_eq!(a.block_hashes(511, 512).len(), 0);
    assert_eq!(a.block_hashes(512, 512).len(), 1);
    assert_eq!(a.block_hashes(100, 16).len(), 6);
    assert_eq!(ids(&[1]).block_hashes(4096, 16).len(), 32);
    assert!(
        PrefixIds {
            source_block_tokens: 0,
            ids: vec![1]
        }
        .block_hashes(100, 16)
        .is_empty()
    );
    // Same ids at a different position give a different hash (chained).
    assert_ne!(
        ids(&[7]).block_hashes(512, 512),
        ids(&[3, 7]).block_hashes(1024, 512)[1..]
    );
    // bs=100: block 5 spans tokens 500..600, i.e. source ids 0 and 1.
    let x = ids(&[0, 1, 2]);
    let y = ids(&[0, 8, 2]);
    let (hx, hy) = (x.block_hashes(1536, 100), y.block_hashes(1536, 100));
    assert_eq!(hx[..5], hy[..5]);
    assert_ne!(hx[5], hy[5]);
}

#[test]
fn trace_synthetic_parse() {
    let s = SyntheticSpec::parse(
        "n=2000,rate=8,prompt=lognormal:1024:0.8,output=lognormal:200:1.0,seed=7,tools=0.3,tool_duration=exp:2.0,tool_response=64",
    )
    .unwrap();
    assert_eq!(s.n, 2000);
    assert_eq!(s.rate, 8.0);
    assert_eq!(s.seed, Some(7));
    assert_eq!(
        s.prompt,
        synthetic::LengthDist::LogNormal {
            median: 1024.0,
            sigma: 0.8
        }
    );
    assert_eq!(s.tool_response, synthetic::LengthDist::Const(64));
    assert_eq!(s.tool_duration, synthetic::DurationDist::Exp { mean: 2.0 });
    // Canonical form round-trips.
    assert_eq!(SyntheticSpec::parse(&s.to_string()).unwrap(), s);
    assert_eq!(SyntheticSpec::parse("").unwrap(), SyntheticSpec::default());
    let u = SyntheticSpec::parse(
        "prompt=uniform:10:20,output=exp:50,tool_duration=uniform:0.5:1.5,max_prompt=15",
    )
    .unwrap();
    assert_eq!(u.prompt, synthetic::LengthDist::Uniform(10, 20));
    assert_eq!(u.tool_duration, synthetic::DurationDist::Uniform(0.5, 1.5));

    let bad = |spec: &str, needle: &str| {
        let e = load(spec, &LoadOptions::default()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("synthetic spec: ") && msg.contains(needle),
            "{spec}: {msg}"
        );
    };
    bad(
        "synthetic:rte=8",
        "unknown key `rte` (expected one of n, rate, seed, prompt",
    );
    bad("synthetic:rate=abc", "`rate`: `abc` is not a finite number");
    bad("synthetic:rate=0", "`rate`");
    bad("synthetic:n=-3", "`n`: `-3` is not a non-negative integer");
    bad("synthetic:n=0", "`n` must be at least 1");
    bad(
        "synthetic:prompt=gauss:5",
        "`prompt=gauss:5`: expected const:N",
    );
    bad("synthetic:prompt=uniform:9:3", "A <= B");
    bad("synthetic:output=lognormal:0:1", "MEDIAN > 0");
    bad("synthetic:tools=1.5", "`tools`");
    bad("synthetic:tool_duration=exp:-1", "MEAN > 0");
    bad(
        "synthetic:tool_duration=uniform:3:1",
        "`tool_duration=uniform:3:1`",
    );
    bad("synthetic:n=5,n=6", "given twice");
    bad("synthetic:n", "`n` is not KEY=VALUE");
    bad("synthetic:max_output=0", "`max_output` must be at least 1");
}

#[test]
fn trace_synthetic_generate() {
    let spec = "synthetic:n=2000,rate=8,prompt=lognormal:1024:0.8,output=lognormal:200:1.0,seed=7,tools=0.3,tool_duration=exp:2.0,tool_response=64";
    let opts = LoadOptions::default();
    let t = load(spec, &opts).unwrap();
    assert_eq!(
        t,
        load(
            spec,
            &LoadOptions {
                seed: 99,
                ..opts.clone()
            }
        )
        .unwrap(),
        "spec seed wins"
    );
    assert!(
        t.name.starts_with("synthetic:n=2000,rate=8,") && t.name.ends_with(",seed=7"),
        "{}",
        t.name
    );
    assert_eq!(t.len(), 2000);
    check_sorted_from_zero(&t);
    assert!(close(t.rate_per_s(), 8.0, 0.08), "{}", t.rate_per_s());
    assert!(
        t.requests
            .iter()
            .all(|r| (1..=8192).contains(&r.prompt_tokens))
    );
    assert!(
        t.requests
            .iter()
            .all(|r| (1..=2048).contains(&r.output_tokens))
    );
    // Lognormal mean = median * exp(sigma^2 / 2): 1024 * e^0.32 = 1412 (clamping lowers it a bit).
    assert!(
        close(t.mean_prompt_tokens(), 1412.0, 0.06),
        "{}",
        t.mean_prompt_tokens()
    );
    let mut prompts: Vec<u32> = t.requests.iter().map(|r| r.prompt_tokens).collect();
    prompts.sort_unstable();
    assert!(
        close(f64::from(prompts[1000]), 1024.0, 0.08),
        "median {}",
        prompts[1000]
    );
    let with_tools = t
        .requests
        .iter()
        .filter(|r| !r.tool_calls.is_empty())
        .count();
    assert!(close(with_tools as f64, 600.0, 0.15), "{with_tools}");
    for r in &t.requests {
        for c in &r.tool_calls {
            assert!(c.after_output_tokens >= 1 && c.after_output_tokens < r.output_tokens);
            assert_eq!(c.response_tokens, 64);
        }
    }
    let mean_dur = t
        .requests
        .iter()
        .flat_map(|r| &r.tool_calls)
        .map(|c| c.duration_us as f64)
        .sum::<f64>()
        / with_tools as f64;
    assert!(close(mean_dur, 2e6, 0.15), "{mean_dur}");

    // A different seed changes the trace; changing `tools` keeps arrivals and lengths.
    let other = load(&spec.replace("seed=7", "seed=8"), &opts).unwrap();
    assert_ne!(other.requests, t.requests);
    let no_tools = load(&spec.replace("tools=0.3", "tools=0"), &opts).unwrap();
    assert!(no_tools.requests.iter().all(|r| r.tool_calls.is_empty()));
    for (a, b) in t.requests.iter().zip(&no_tools.requests) {
        assert_eq!(
            (a.arrival_us, a.prompt_tokens, a.output_tokens),
            (b.arrival_us, b.prompt_tokens, b.output_tokens)
        );
    }
    // Without `seed=` the options' seed is used; `limit` truncates.
    let a = load(
        "synthetic:n=50,prompt=const:3,output=uniform:1:1",
        &LoadOptions {
            seed: 5,
            limit: Some(10),
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(a.len(), 10);
    assert!(a.name.ends_with(",seed=5"));
    assert!(
        a.requests
            .iter()
            .all(|r| r.prompt_tokens == 3 && r.output_tokens == 1)
    );
    // Clamping: const above the cap, zero below 1.
    let c = load(
        "synthetic:n=5,prompt=const:10000,output=const:0,max_prompt=100",
        &opts,
    )
    .unwrap();
    assert!(
        c.requests
            .iter()
            .all(|r| r.prompt_tokens == 100 && r.output_tokens == 1)
    );
}

#[test]
fn trace_default_workload() {
    let t = default_workload();
    assert_eq!(t, default_workload());
    assert_eq!(t.len(), 3000);
    check_sorted_from_zero(&t);
    assert!(close(t.rate_per_s(), 5.0, 0.06), "{}", t.rate_per_s());
    let long = t.requests.iter().filter(|r| r.output_tokens >= 600).count();
    let short = t.requests.iter().filter(|r| r.output_tokens <= 256).count();
    assert!(
        short > 1900 && long > 300 && long < 700,
        "short {short} long {long}"
    );
    assert!(
        t.requests
            .iter()
            .all(|r| r.output_tokens <= 4096 && r.tool_calls.is_empty())
    );
    eprintln!("default workload: {}", t.summary());
}

#[test]
fn trace_scale_rate_and_truncate() {
    let mut t = Trace::new(
        "t",
        [10u64, 13, 13, 20, 1_000_011]
            .iter()
            .map(|&a| TraceRequest {
                arrival_us: a,
                prompt_tokens: 1,
                output_tokens: 1,
                prefix: None,
                tool_calls: vec![],
                tenant: 0,
            })
            .collect(),
    );
    assert_eq!(
        t.requests.iter().map(|r| r.arrival_us).collect::<Vec<_>>(),
        [0, 3, 3, 10, 1_000_001]
    );
    assert_eq!(t.duration_us(), 1_000_001);
    assert!(close(t.rate_per_s(), 4.0 / 1.000001, 1e-12));
    t.scale_rate(2.0).unwrap();
    assert_eq!(
        t.requests.iter().map(|r| r.arrival_us).collect::<Vec<_>>(),
        [0, 2, 2, 5, 500_001]
    );
    t.scale_rate(0.5).unwrap();
    assert_eq!(t.duration_us(), 1_000_002);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(t.scale_rate(bad), Err(TraceError::InvalidArgument { .. })),
            "{bad}"
        );
    }
    assert!(t.scale_rate(1e-300).is_err());
    assert_eq!(
        t.duration_us(),
        1_000_002,
        "failed scaling leaves the trace alone"
    );
    t.truncate(2);
    assert_eq!(t.len(), 2);
    assert_eq!(t.summary().requests, 2);
    let empty = Trace::new("e", vec![]);
    assert!(empty.is_empty());
    assert_eq!(
        (
            empty.duration_us(),
            empty.rate_per_s(),
            empty.mean_prompt_tokens()
        ),
        (0, 0.0, 0.0)
    );
    assert_eq!(empty.prefix_reuse_bound(16), 0.0);
}

/// Issue 9, item 4: timestamps outside 1677–2262 (the range of i64 nanoseconds) keep their
/// true distance instead of wrapping.
#[test]
fn azure_timestamps_far_from_1970_keep_their_distance() {
    let data = b"TIMESTAMP,ContextTokens,GeneratedTokens\n\
        2023-01-01 00:00:00,10,5\n\
        2300-01-01 00:00:00,10,5\n";
    let t = azure::parse("far.csv", data).unwrap();
    // 277 years with 67 leap days (2100 and 2200 are not leap years).
    let days = 277 * 365 + 67;
    assert_eq!(t.requests[1].arrival_us, days * 86_400 * 1_000_000);
    assert!((t.duration_us() as f64 * 1e-6 - 8.741e9).abs() < 1e6);
    let data = b"TIMESTAMP,ContextTokens,GeneratedTokens\n\
        1600-03-01 00:00:00,10,5\n\
        1600-03-02 00:00:00.5,10,5\n\
        9999-12-31 23:59:59,10,5\n";
    let t = azure::parse("far.csv", data).unwrap();
    assert_eq!(t.requests[1].arrival_us, 86_400_500_000);
    assert!(t.duration_us() > 8399 * 365 * 86_400 * 1_000_000);
    assert!(t.duration_us() <= MAX_ARRIVAL_US);
}

/// Issue 9, item 9: a rate so low that arrivals leave the clock's range is a clear error
/// naming `rate`, not an internal "time went backwards".
#[test]
fn synthetic_rate_too_low_for_the_clock_is_refused() {
    let err = load("synthetic:n=10,rate=1e-14", &LoadOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TraceError::InvalidArgument { .. }), "{msg}");
    assert!(msg.contains("`rate`") && msg.contains("2^60"), "{msg}");
    // Within range it loads.
    assert!(load("synthetic:n=10,rate=1e-6", &LoadOptions::default()).is_ok());
    // Scaling a trace past the range is refused the same way.
    let mut t = load("synthetic:n=10,rate=1e-6", &LoadOptions::default()).unwrap();
    assert!(t.scale_rate(1e-300).is_err());
}

/// Issue 9, item 5: tool durations too long for the clock are refused with the key and the
/// range instead of saturating and wrapping to zero.
#[test]
fn tool_durations_past_the_clock_are_refused() {
    for v in ["1e14", "const:1e14", "uniform:0:1e14", "exp:1e14"] {
        let err = SyntheticSpec::parse(&format!("tools=1,tool_duration={v}")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("tool_duration") && msg.contains("at most"),
            "{msg}"
        );
    }
    let spec = SyntheticSpec::parse("n=3,tools=1,tool_duration=1e9").unwrap();
    let t = spec.generate(0);
    for r in &t.requests {
        for c in &r.tool_calls {
            assert_eq!(c.duration_us, 1_000_000_000_000_000);
        }
    }
}

/// Loads `contents` as file `name` (which must load) and returns each request's tenant name,
/// in arrival order.
fn tenant_names(name: &str, contents: &str) -> (Vec<String>, Trace) {
    let f = TempFile::new(name, contents);
    let t = load(f.path(), &LoadOptions::default()).expect("loads");
    let names = t
        .requests
        .iter()
        .map(|r| t.tenants[r.tenant as usize].clone())
        .collect();
    (names, t)
}

#[test]
fn trace_tenant_columns_are_read_in_every_format() {
    // Azure: a fourth `tenant` column; rows out of order, so the ids must follow the rows
    // through the sort by arrival.
    let (names, t) = tenant_names(
        "az_tenants.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens,tenant\n\
         2023-11-16 18:15:47.0,20,2,bob\n\
         2023-11-16 18:15:46.0,10,1,alice\n\
         2023-11-16 18:15:48.0,30,3,bob\n",
    );
    assert_eq!(names, ["alice", "bob", "bob"]);
    assert_eq!(
        t.requests
            .iter()
            .map(|r| r.prompt_tokens)
            .collect::<Vec<_>>(),
        [10, 20, 30]
    );
    assert_eq!(t.tenant_count(), 2);
    // Lengths: a column named `tenant` anywhere after the first two.
    let (names, t) = tenant_names(
        "vl_tenants.csv",
        "num_prefill_tokens,num_decode_tokens,tenant,pd_ratio\n5,1,x,1\n6,1,y,1\n7,1,x,1\n",
    );
    assert_eq!(names, ["x", "y", "x"]);
    assert_eq!(t.tenant_count(), 2);
    // Mooncake: strings and integers, numbered by first appearance.
    let (names, t) = tenant_names(
        "mc_tenants.jsonl",
        "{\"timestamp\":0,\"input_length\":5,\"output_length\":1,\"hash_ids\":[1],\"tenant\":7}\n\
         {\"timestamp\":1,\"input_length\":5,\"output_length\":1,\"hash_ids\":[1],\"tenant\":\"a\"}\n\
         {\"timestamp\":2,\"input_length\":5,\"output_length\":1,\"hash_ids\":[1],\"tenant\":7}\n",
    );
    assert_eq!(names, ["7", "a", "7"]);
    assert_eq!(t.tenants, ["7", "a"]);
    // Without the column: no tenants, every request tenant 0, count 1.
    let f = TempFile::new("az_plain.csv", &format!("{AZ}2023-11-16 18:15:46.0,10,1\n"));
    let t = load(f.path(), &LoadOptions::default()).unwrap();
    assert!(t.tenants.is_empty());
    assert_eq!((t.requests[0].tenant, t.tenant_count()), (0, 1));
}

#[test]
fn trace_bad_tenants_name_the_line() {
    load_err(
        "az_tenant_empty.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens,tenant\n2023-11-16 18:15:46.0,10,1,a\n\
         2023-11-16 18:15:47.0,10,1, \n",
        3,
        "tenant is empty",
    );
    load_err(
        "az_tenant_short.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens,tenant\n2023-11-16 18:15:46.0,10,1\n",
        2,
        "expected 4 fields",
    );
    load_err(
        "az_tenant_header.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens,team\n2023-11-16 18:15:46.0,10,1,a\n",
        1,
        "",
    );
    let mc = |t: &str| {
        format!("{{\"timestamp\":0,\"input_length\":5,\"output_length\":1,\"hash_ids\":[1]{t}}}\n")
    };
    load_err(
        "mc_tenant_partial.jsonl",
        &format!("{}{}", mc(",\"tenant\":\"a\""), mc("")),
        2,
        "on every line or on none",
    );
    load_err(
        "mc_tenant_partial2.jsonl",
        &format!("{}{}", mc(""), mc(",\"tenant\":\"a\"")),
        2,
        "on every line or on none",
    );
    load_err(
        "mc_tenant_float.jsonl",
        &mc(",\"tenant\":1.5"),
        1,
        "neither a string nor a non-negative integer",
    );
    load_err(
        "mc_tenant_empty.jsonl",
        &mc(",\"tenant\":\"\""),
        1,
        "tenant is empty",
    );
    // More distinct labels than MAX_TENANTS.
    let mut many = String::from("num_prefill_tokens,num_decode_tokens,tenant\n");
    for i in 0..=MAX_TENANTS {
        many.push_str(&format!("5,1,t{i}\n"));
    }
    load_err(
        "vl_tenant_many.csv",
        &many,
        u64::from(MAX_TENANTS) + 2,
        "at most 4096 tenants",
    );
}

#[test]
fn assigning_tenants_is_all_or_nothing() {
    let mut t = synthetic::default_workload();
    t.truncate(10);
    t.assign_tenants(3, |i| (i % 3) as u32).unwrap();
    assert_eq!(t.tenants, ["0", "1", "2"]);
    assert_eq!(t.requests[4].tenant, 1);
    let before = t.clone();
    // A tenant past the count on the last request: nothing changes.
    assert!(t.assign_tenants(2, |i| if i == 9 { 5 } else { 0 }).is_err());
    assert_eq!(t, before);
    assert!(t.assign_tenants(0, |_| 0).is_err());
    assert!(t.assign_tenants(MAX_TENANTS + 1, |_| 0).is_err());
    assert_eq!(t, before);
}
