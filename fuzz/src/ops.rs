//! The engine no-panic harness, shared by the cargo-fuzz target (`fuzz/fuzz_targets/
//! engine_api.rs`) and the proptest (`tests/engine_no_panic.rs`), which both include this file
//! with `#[path]`: the generator is written once.
//!
//! [`run`] decodes a byte [`Source`] into an [`EngineConfig`] (every field, extreme values
//! reachable) and then into a sequence of engine calls (`add_request`, `update_prediction`,
//! `abort`, `schedule`, `complete`, `resume`, `resume_with_tokens`, queries; time going
//! forward and sometimes backwards), and runs them. Configurations whose storage would exceed
//! [`Limits::max_storage_bytes`] are skipped. After every call it checks:
//! - the engine is not poisoned (no internal error: the value a would-be panic becomes);
//! - `Engine::audit` passes;
//! - `live_requests()` equals the live requests the harness knows of (added, minus finished,
//!   dropped and aborted), and an abort is only accepted for a handle the harness knows live;
//! - after `schedule`: entries within `max_running` and the token budget, each request at most
//!   once, live and not paused, every entry ≥ 1 token and a decode exactly 1; block ids of the
//!   entries' deltas, swap-out, swap-in and copy pairs inside their tiers; destinations
//!   distinct within each pair list; no preempted or dropped request among the entries;
//! - `schedule` refuses with `ResultsPending` exactly while results are outstanding, with the
//!   right count, and `complete` accepts a batch of well-formed results for the plan's
//!   entries;
//! - and, implicitly, that nothing panics (a panic fails the fuzz target and the proptest).
//!
//! Any failed check returns `Err` with the call that broke it. With [`Limits::trace`] every
//! call is printed to stderr as Rust, to turn a reproducer into a plain test.

use augur::core::engine::{
    AdmissionMode, CostWeights, Engine, EngineConfig, EntryKind, PauseMode, PauseRequest, Plan,
    PreemptionMode, RequestDesc, RequestHandle, ScheduleError, ScheduledEntry, StepResult,
};
use augur::core::policy::{MlfqParams, OverrunRule, Policy, PolicyKind};
use augur::core::time::Instant;
use augur::storage::EngineBuffers;

/// Bytes to decode. Reading past the end gives zeros.
pub trait Source {
    /// The next byte (0 once the input is used up).
    fn byte(&mut self) -> u8;
    /// Whether the input is used up.
    fn exhausted(&self) -> bool;

    /// A bit.
    fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }
    /// True with probability `k / 256`.
    fn chance(&mut self, k: u8) -> bool {
        self.byte() < k
    }
    /// Two bytes, little endian.
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    /// Four bytes, little endian.
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    /// Eight bytes, little endian.
    fn u64(&mut self) -> u64 {
        (self.u32() as u64) | ((self.u32() as u64) << 32)
    }
    /// A value in `lo..=hi`, reading as few bytes as the span needs.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        let r = if span < 256 {
            self.byte() as u64
        } else if span < 65_536 {
            self.u16() as u64
        } else if span <= u32::MAX as u64 {
            self.u32() as u64
        } else {
            self.u64()
        };
        if span == u64::MAX {
            r
        } else {
            lo + r % (span + 1)
        }
    }
    /// A value in `lo..=hi` (u32).
    fn range32(&mut self, lo: u32, hi: u32) -> u32 {
        self.range(lo as u64, hi as u64) as u32
    }
    /// A value in `0..n` (`n ≥ 1`).
    fn below(&mut self, n: u32) -> u32 {
        self.range(0, n.max(1) as u64 - 1) as u32
    }
    /// Puts `v` in an order the input chooses (Fisher–Yates).
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for k in (1..v.len()).rev() {
            let j = self.below(k as u32 + 1) as usize;
            v.swap(k, j);
        }
    }
    /// One of `xs` (not empty).
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u32) as usize]
    }
}

/// A plain byte slice as a [`Source`].
#[derive(Debug)]
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    /// Reads `data` from the start.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }
}

impl Source for Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }
    fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// Bounds of one run.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Engine calls at most (macro operations count once per call they make).
    pub max_ops: usize,
    /// Configurations whose `layout().bytes()` exceed this are skipped.
    pub max_storage_bytes: usize,
    /// Print every call to stderr as Rust.
    pub trace: bool,
    /// Raise `OverrunRule::Rescale` factors below 1.01 to 1.01 (same bytes read, so inputs
    /// decode alike otherwise): a knob to fuzz past the known hang of factors just above 1
    /// until it is fixed.
    pub avoid_tiny_rescale: bool,
}

/// What a run did (for statistics; a failure is the `Err` of [`run`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The configuration was valid and small enough to build.
    pub built: bool,
    /// Engine calls made.
    pub calls: usize,
    /// `schedule` calls that returned a plan.
    pub plans: usize,
}

// ----- value generators (extremes reachable, mostly sane) -----

const EPS_ABOVE_ONE: [f64; 4] = [
    1.0 + f64::EPSILON,
    1.0 + 2.0 * f64::EPSILON,
    1.000_000_1,
    1.000_1,
];

/// A token count: mostly in `1..=typical`, sometimes a boundary of `u32`.
fn tokens<S: Source>(s: &mut S, typical: u32) -> u32 {
    match s.byte() % 16 {
        0..=8 => s.range32(1, typical.max(1)),
        9 => 0,
        10 => 1,
        11 => u32::MAX,
        12 => u32::MAX - s.below(4),
        13 => (u32::MAX / 2).wrapping_add(s.below(5)).wrapping_sub(2),
        14 => s.u32(),
        _ => 1u32 << s.below(32),
    }
}

/// A prediction: mostly a small finite value, sometimes tiny, huge, NaN, ±∞ or negative.
fn prediction<S: Source>(s: &mut S) -> f64 {
    match s.byte() % 24 {
        0..=9 => s.below(1000) as f64,
        10 => s.below(100) as f64 + s.byte() as f64 / 256.0,
        11 => 0.0,
        12 => -0.0,
        13 => 5e-324,
        14 => 0.5,
        15 => 1e300,
        16 => f64::MAX,
        17 => u32::MAX as f64,
        18 => f64::NAN,
        19 => f64::INFINITY,
        20 => f64::NEG_INFINITY,
        21 => -1.0,
        22 => f64::from_bits(s.u64()),
        _ => 1.0,
    }
}

/// A non-negative parameter: mostly `typical` or small, sometimes extreme; invalid (NaN, ∞,
/// negative, any bits) only when `bad`.
fn param<S: Source>(s: &mut S, typical: f64, bad: bool) -> f64 {
    let x = match s.byte() % 32 {
        0..=13 => typical,
        14..=19 => s.below(100) as f64,
        20 => 0.0,
        21 => 5e-324,
        22 => 1e-9,
        23 => 1e6,
        24 => 1e300,
        25 => f64::MAX,
        26 => s.byte() as f64 / 256.0,
        27 => 1.0,
        28 => f64::NAN,
        29 => f64::INFINITY,
        30 => -1.0,
        _ => f64::from_bits(s.u64()),
    };
    if bad || (x.is_finite() && x >= 0.0) {
        x
    } else {
        typical
    }
}

/// `invalid` when the configuration may be invalid, else `valid`.
fn or_valid<T>(bad: bool, invalid: T, valid: T) -> T {
    if bad { invalid } else { valid }
}

fn policy_kind<S: Source>(s: &mut S, bad: bool) -> PolicyKind {
    match s.byte() % 12 {
        0 => PolicyKind::Fcfs,
        1 => PolicyKind::Priority,
        2 => PolicyKind::Sjf,
        3 => PolicyKind::Pspjf,
        4 => PolicyKind::Sprpt,
        5 => PolicyKind::Trail {
            cutoff: param(s, 0.8, bad),
        },
        6 => PolicyKind::Las,
        7 => PolicyKind::Mlfq(MlfqParams {
            base_quantum: match s.byte() % 6 {
                0 => 1.0,
                1 => 1e300,
                2 => param(s, 16.0, bad).max(1.0),
                _ => 16.0,
            },
            growth: match s.byte() % 6 {
                0 => 1.0,
                1 => s.pick(&EPS_ABOVE_ONE),
                2 => f64::MAX,
                3 => 1.0 + param(s, 1.0, bad),
                4 if bad => param(s, 2.0, bad),
                _ => 2.0,
            },
            levels: match s.byte() % 6 {
                0 => 1,
                1 => 64,
                2 => s.range32(1, 64),
                3 => or_valid(bad, s.pick(&[0, 65, u32::MAX]), 8),
                _ => 8,
            },
            prefill_weight: param(s, 0.05, bad),
        }),
        8 => PolicyKind::OneBit {
            threshold: param(s, 64.0, bad),
            preemptive: s.bool(),
        },
        9 => PolicyKind::MemoryTime,
        10 => PolicyKind::Slack {
            decode_us_per_token: param(s, 20_000.0, bad),
            prefill_us_per_token: param(s, 100.0, bad),
        },
        _ => PolicyKind::Edf,
    }
}

fn policy<S: Source>(s: &mut S, bad: bool) -> Policy {
    let kind = policy_kind(s, bad);
    let aging_per_s = if s.chance(192) {
        0.0
    } else {
        param(s, 1.0, bad)
    };
    let overrun = match s.byte() % 4 {
        0 => OverrunRule::Negative,
        1 => OverrunRule::Clamp,
        _ => OverrunRule::Rescale {
            factor: match s.byte() % 10 {
                0..=3 => s.pick(&EPS_ABOVE_ONE),
                4 => 1.5,
                5 => 2.0,
                6 => 1e300,
                7 => f64::MAX,
                8 => or_valid(bad, s.pick(&[1.0, 0.5, f64::INFINITY, f64::NAN]), 3.0),
                _ => 1.0 + param(s, 1.0, bad),
            },
        },
    };
    let fair_share = s.chance(64);
    let fallback_prediction = match s.byte() % 8 {
        0 => match param(s, 256.0, bad) {
            x if x == 0.0 && !bad => 256.0,
            x => x,
        },
        1 => s.pick(&[1.0, 5e-324, 1e300, f64::MAX, or_valid(bad, 0.0, 2.0)]),
        _ => 256.0,
    };
    let default_deadline_us = if s.chance(200) {
        None
    } else {
        Some(param(s, 1e6, bad))
    };
    Policy {
        kind,
        aging_per_s,
        overrun,
        fair_share,
        fallback_prediction,
        default_deadline_us,
    }
}

/// Decodes a configuration (not necessarily valid).
pub fn config<S: Source>(s: &mut S) -> EngineConfig {
    // One configuration in ~10 may have invalid fields (it must be rejected, without a panic).
    let bad = s.chance(24);
    let block_size = match s.byte() % 16 {
        0..=5 => s.pick(&[1, 2, 4, 8, 16, 32]),
        6..=8 => 16,
        9 => s.range32(1, 64),
        10 => 1 << s.below(21),
        11 => s.range32(1, 1 << 20),
        12 => 3,
        13 => 1 << 20,
        14 => s.pick(&[or_valid(bad, 0, 5), u32::MAX, 1 << 21]),
        _ => 1,
    };
    let device_blocks = match s.byte() % 16 {
        0..=7 => s.range32(1, 64),
        8..=10 => s.range32(1, 1024),
        11 => 1,
        12 => s.range32(1, 1 << 16),
        13 => 1 << s.below(21),
        14 => or_valid(bad, s.pick(&[0, u32::MAX, 1 << 31, (1 << 31) + 1]), 3),
        _ => 2,
    };
    let max_requests = match s.byte() % 16 {
        0..=9 => s.range32(1, 16),
        10..=12 => s.range32(1, 256),
        13 => s.range32(1, 1 << 16),
        14 => or_valid(
            bad,
            s.pick(&[0, u32::MAX / 2, u32::MAX / 2 - 1, u32::MAX]),
            4,
        ),
        _ => 1,
    };
    let mut c = EngineConfig::new(block_size, device_blocks, max_requests);
    c.host_blocks = match s.byte() % 16 {
        0..=5 => 0,
        6..=11 => s.range32(1, 64),
        12 | 13 => s.range32(1, 4096),
        14 => or_valid(
            bad,
            s.pick(&[u32::MAX, u32::MAX - 2 - device_blocks.min(u32::MAX - 2)]),
            4096,
        ),
        _ => 1,
    };
    c.max_running = match s.byte() % 16 {
        0..=7 => s.range32(1, max_requests.max(1)),
        8..=11 => max_requests,
        12 => 1,
        13 => 256.min(max_requests),
        14 => or_valid(
            bad,
            s.pick(&[0, max_requests.wrapping_add(1), u32::MAX]),
            max_requests,
        ),
        _ => c.max_running.min(max_requests),
    };
    c.token_budget = match s.byte() % 16 {
        0..=5 => s.range32(1, 64),
        6..=8 => s.range32(1, 4096),
        9 => 1,
        10 => 8192,
        11 => u32::MAX,
        12 => u32::MAX - s.byte() as u32,
        13 => s.u32().max(1),
        14 => or_valid(bad, 0, 3),
        _ => 2,
    };
    c.prefill_chunk = match s.byte() % 16 {
        0..=4 => s.range32(1, 64),
        5..=7 => 0,
        8 => 1,
        9 => u32::MAX,
        10 => 2048,
        11 => s.u32(),
        _ => s.range32(1, 16),
    };
    c.watermark = match s.byte() % 16 {
        0..=5 => 0.0,
        6..=9 => 0.01,
        10 => 0.5,
        11 => 0.999_999,
        12 => 1.0 - f64::EPSILON,
        13 => s.byte() as f64 / 256.0,
        14 => or_valid(bad, s.pick(&[1.0, f64::NAN, -1e-300]), -0.0),
        _ => 0.1,
    };
    c.policy = policy(s, bad);
    c.preemption = s.pick(&[
        PreemptionMode::Recompute,
        PreemptionMode::Swap,
        PreemptionMode::Auto,
    ]);
    c.admission = match s.byte() % 4 {
        0 => AdmissionMode::Eager,
        1 => AdmissionMode::FullPrompt,
        2 => AdmissionMode::Predicted {
            headroom: param(s, 1.5, bad),
        },
        _ => AdmissionMode::WorstCase,
    };
    c.priority_margin = if s.chance(160) {
        0.0
    } else {
        param(s, 0.5, bad)
    };
    c.max_preemptions_per_step = match s.byte() % 8 {
        0 | 1 => 1,
        2 => 2,
        3 => s.range32(1, 16),
        4 => 1 << 16,
        5 => s.pick(&[u32::MAX, or_valid(bad, 0, 3), 1 << 20]),
        _ => 8,
    };
    c.rank_preemption_may_recompute = s.bool();
    c.prefix_caching = !s.chance(32);
    c.max_sequence_tokens = match s.byte() % 16 {
        0..=8 => 0,
        9 => 2,
        10 => 3,
        11 => s.range32(2, 64),
        12 => s.range32(2, 4096),
        13 => s.pick(&[u32::MAX, u32::MAX - 1, u32::MAX / 2]),
        14 => or_valid(bad, 1, 4),
        _ => match s.u32() {
            1 if !bad => 5,
            x => x,
        },
    };
    c.costs = CostWeights {
        recompute_us_per_token: param(s, 25.0, bad),
        swap_us_per_block: param(s, 40.0, bad),
    };
    c.pause = s.pick(&[
        PauseMode::Preserve,
        PauseMode::Discard,
        PauseMode::Swap,
        PauseMode::Auto,
    ]);
    c.max_tenants = match s.byte() % 16 {
        0..=8 => 1,
        9 => 2,
        10 => 4,
        11 => s.range32(1, 64),
        12 => s.range32(1, 1 << 16),
        13 => s.pick(&[
            or_valid(bad, 0, 1),
            u32::MAX / 2 - 1,
            or_valid(bad, u32::MAX / 2, 5),
            or_valid(bad, u32::MAX, 6),
        ]),
        _ => 3,
    };
    c.vtc_input_weight = param(s, 1.0, bad);
    c.vtc_output_weight = param(s, 2.0, bad);
    c.hash_capacity = match s.byte() % 16 {
        0..=8 => 0,
        9 => 1,
        10 => s.pick(&[7, 8, 14, 15]),
        11 => s.range32(1, 64),
        12 => s.range32(1, 4096),
        13 => s.pick(&[u32::MAX, u32::MAX / 2, 1 << 20]),
        _ => 40_000,
    };
    c
}

// ----- the harness -----

/// Shared hash families (1..=FAMILIES); family 0 is "no sharing".
const FAMILIES: u64 = 4;
/// Prompt block hashes per request at most (keeps huge prompts cheap).
const MAX_HASHES: u32 = 2048;
/// Calls × (blocks + requests) per run at most (the cost of auditing after every call).
const AUDIT_WORK: u64 = 1 << 24;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn block_hash(seed: u64, k: u64) -> u64 {
    mix(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ k)
}

/// How a request's block hashes are made.
#[derive(Clone, Copy, Debug)]
enum HashMode {
    /// Block `k` hashes as `block_hash(family, k)` below `diverge`, then `block_hash(uniq, k)`.
    Chain {
        family: u64,
        diverge: u64,
        uniq: u64,
    },
    /// Every block has the same hash (adversarial).
    Constant(u64),
    /// Arbitrary hashes from the input (adversarial).
    Random,
}

impl HashMode {
    fn hash<S: Source>(&self, s: &mut S, k: u64) -> u64 {
        match *self {
            HashMode::Chain {
                family,
                diverge,
                uniq,
            } => {
                if k < diverge {
                    block_hash(family, k)
                } else {
                    block_hash(uniq, k)
                }
            }
            HashMode::Constant(h) => h,
            HashMode::Random => s.u64(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Live {
    h: RequestHandle,
    ext: u64,
    hashes: HashMode,
    name: u32,
}

/// A failed check, with where.
type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

struct Harness {
    cfg: EngineConfig,
    lim: Limits,
    live: Vec<Live>,
    stale: Vec<RequestHandle>,
    paused: Vec<RequestHandle>,
    pending: Vec<ScheduledEntry>,
    /// A `complete` call accepted results for the current plan (`complete_except`, which
    /// covers a whole plan, is then refused).
    accepted: bool,
    now: u64,
    next_ext: u64,
    adds: u32,
    calls: usize,
    plans: usize,
    scratch: Vec<u32>,
    hash_buf: Vec<u64>,
}

/// Runs one decoded configuration and call sequence. `Err` is a failed check; a panic is a
/// panic.
pub fn run<S: Source>(s: &mut S, lim: &Limits) -> Result<Outcome, String> {
    let mut cfg = config(s);
    if let OverrunRule::Rescale { factor } = &mut cfg.policy.overrun
        && lim.avoid_tiny_rescale
        && *factor > 1.0
        && *factor < 1.01
    {
        *factor = 1.01;
    }
    if lim.trace {
        eprintln!("let cfg = {cfg:?};");
    }
    let layout = match cfg.layout() {
        Ok(l) => l,
        Err(err) => {
            // Invalid: building must fail as well, without panicking.
            ensure!(
                EngineBuffers::new(&cfg).is_err(),
                "EngineBuffers::new accepted a config whose layout() failed: {err:?}"
            );
            if lim.trace {
                eprintln!("// layout() -> Err({err:?})");
            }
            return Ok(Outcome::default());
        }
    };
    if layout.bytes() > lim.max_storage_bytes {
        if lim.trace {
            eprintln!("// skipped: {} bytes of storage", layout.bytes());
        }
        return Ok(Outcome::default());
    }
    let mut buf = EngineBuffers::new(&cfg)
        .map_err(|err| format!("EngineBuffers::new failed after layout() was Ok: {err:?}"))?;
    let mut e = buf
        .engine(cfg)
        .map_err(|err| format!("Engine::new failed after layout() was Ok: {err:?}"))?;
    if lim.trace {
        eprintln!("let mut buf = EngineBuffers::new(&cfg).unwrap();");
        eprintln!("let mut e = buf.engine(cfg).unwrap();");
    }
    let mut h = Harness {
        cfg,
        lim: *lim,
        live: Vec::new(),
        stale: Vec::new(),
        paused: Vec::new(),
        pending: Vec::new(),
        accepted: false,
        now: 0,
        next_ext: 1,
        adds: 0,
        calls: 0,
        plans: 0,
        scratch: vec![0; cfg.device_blocks as usize + cfg.host_blocks as usize],
        hash_buf: Vec::new(),
    };
    h.after_call(&e, "Engine::new")?;
    // `audit` is O(blocks + requests) and runs after every call: fewer calls on big
    // configurations keep one input near a second at most (a hang is then a real hang).
    let size = cfg.device_blocks as u64 + cfg.host_blocks as u64 + cfg.max_requests as u64 + 1;
    h.lim.max_ops = lim.max_ops.min((AUDIT_WORK / size).max(16) as usize);
    while !s.exhausted() && h.calls < h.lim.max_ops {
        h.op(s, &mut e)?;
    }
    Ok(Outcome {
        built: true,
        calls: h.calls,
        plans: h.plans,
    })
}

impl Harness {
    fn name(&self, h: RequestHandle) -> String {
        match self.live.iter().find(|l| l.h == h) {
            Some(l) => format!("h{}", l.name),
            None => format!("RequestHandle::from_raw({:#x})", h.to_raw()),
        }
    }

    fn trace(&self, line: core::fmt::Arguments<'_>) {
        if self.lim.trace {
            eprintln!("{line}");
        }
    }

    /// The time of the next call: usually now, sometimes in the past.
    fn time<S: Source>(&mut self, s: &mut S) -> u64 {
        if s.chance(8) {
            self.now.saturating_sub(s.range(1, 1_000_000))
        } else {
            self.now
        }
    }

    /// A handle to act on: usually a live one, sometimes stale or forged.
    fn target<S: Source>(&mut self, s: &mut S) -> RequestHandle {
        match s.byte() % 16 {
            0..=10 if !self.live.is_empty() => {
                let i = s.below(self.live.len() as u32) as usize;
                self.live[i].h
            }
            11 | 12 if !self.paused.is_empty() => {
                let i = s.below(self.paused.len() as u32) as usize;
                self.paused[i]
            }
            13 if !self.stale.is_empty() => {
                let i = s.below(self.stale.len() as u32) as usize;
                self.stale[i]
            }
            14 => RequestHandle::from_raw(match s.byte() % 4 {
                0 => 0,
                1 => u64::MAX,
                // A small index with a small generation: often a live slot's handle.
                2 => {
                    ((s.below(3) as u64 + 1) << 32)
                        | s.below(self.cfg.max_requests.saturating_add(1)) as u64
                }
                _ => s.u64(),
            }),
            _ if !self.live.is_empty() => self.live[self.live.len() - 1].h,
            _ => RequestHandle::from_raw(s.u64()),
        }
    }

    fn remove_handle(&mut self, h: RequestHandle) -> bool {
        let Some(i) = self.live.iter().position(|l| l.h == h) else {
            return false;
        };
        self.live.swap_remove(i);
        self.paused.retain(|&p| p != h);
        self.pending.retain(|p| p.handle != h);
        self.stale.push(h);
        if self.stale.len() > 64 {
            self.stale.remove(0);
        }
        true
    }

    /// The checks after every call.
    fn after_call(&mut self, e: &Engine<'_>, call: &str) -> Check {
        self.calls += 1;
        // An internal error is a broken invariant turned into a value instead of a panic: still
        // a bug to report.
        if let Some(err) = e.poisoned() {
            return Err(format!("engine poisoned after {call}: {err:?}"));
        }
        if let Err(msg) = e.audit(&mut self.scratch) {
            return Err(format!("audit failed after {call}: {msg}"));
        }
        let live = e.live_requests() as usize;
        ensure!(
            live == self.live.len(),
            "after {call}: live_requests() = {live}, but {} requests were added and not \
             finished, dropped or aborted",
            self.live.len()
        );
        Ok(())
    }

    fn op<S: Source>(&mut self, s: &mut S, e: &mut Engine<'_>) -> Check {
        match s.byte() % 32 {
            0..=6 => self.add(s, e, None),
            7 => self.add_shared(s, e),
            8..=12 => self.schedule(s, e),
            13..=17 => self.complete(s, e),
            18..=20 => {
                self.schedule(s, e)?;
                self.complete_all(s, e)
            }
            21 => self.update_prediction(s, e),
            22 | 23 => self.abort(s, e),
            24 | 25 => self.resume(s, e),
            26..=28 => {
                self.advance(s);
                Ok(())
            }
            _ => self.query(s, e),
        }
    }

    fn advance<S: Source>(&mut self, s: &mut S) {
        let dt = match s.byte() % 8 {
            0..=3 => s.range(0, 1000),
            4 | 5 => s.range(0, 100_000),
            6 => s.range(0, 1_000_000_000),
            _ if s.chance(32) => (u64::MAX - s.range(0, 1000)).saturating_sub(self.now),
            _ => s.range(0, 1 << 40),
        };
        self.now = self.now.saturating_add(dt);
        self.trace(format_args!("// now = {}", self.now));
    }

    fn prompt<S: Source>(&mut self, s: &mut S) -> u32 {
        let bs = self.cfg.block_size;
        let dev = self.cfg.device_blocks;
        match s.byte() % 8 {
            0..=3 => s.range32(1, 64),
            4 => s.range32(1, bs.saturating_mul(dev).min(1 << 22)),
            5 => bs
                .saturating_mul(s.range32(1, dev.min(1 << 16)))
                .saturating_add(s.below(3))
                .saturating_sub(1)
                .max(1),
            6 => tokens(s, 4096),
            _ => s.range32(1, 4096),
        }
    }

    fn hash_mode<S: Source>(&mut self, s: &mut S, ext: u64, n: u64) -> HashMode {
        match s.byte() % 16 {
            0..=11 => HashMode::Chain {
                family: s.range(0, FAMILIES),
                diverge: match s.byte() % 4 {
                    0 | 1 => n,
                    _ => s.range(0, n),
                },
                uniq: mix(ext ^ 0xdead_beef).wrapping_add(self.adds as u64 + FAMILIES + 1),
            },
            12 => HashMode::Constant(s.pick(&[0, block_hash(1, 0), u64::MAX])),
            13 => HashMode::Random,
            _ => HashMode::Chain {
                family: 0,
                diverge: 0,
                uniq: mix(ext).wrapping_add(self.adds as u64 + FAMILIES + 1),
            },
        }
    }

    /// Adds one request; with `shared = Some((family, prompt))` a member of a shared-prefix
    /// burst.
    fn add<S: Source>(
        &mut self,
        s: &mut S,
        e: &mut Engine<'_>,
        shared: Option<(u64, u32)>,
    ) -> Check {
        let bs = self.cfg.block_size;
        let ext = match s.byte() % 16 {
            0..=12 => {
                self.next_ext += 1;
                self.next_ext
            }
            13 if !self.live.is_empty() => self.live[s.below(self.live.len() as u32) as usize].ext,
            14 => s.pick(&[0, u64::MAX]),
            _ => s.u64(),
        };
        let prompt = match shared {
            Some((_, p)) => p,
            None => self.prompt(s),
        };
        let full = (prompt / bs.max(1)).min(MAX_HASHES) as u64;
        let (n_hashes, mode) = match shared {
            Some((family, _)) => (
                full,
                HashMode::Chain {
                    family,
                    diverge: if s.chance(200) {
                        full
                    } else {
                        s.range(0, full)
                    },
                    uniq: mix(ext ^ 0x5eed).wrapping_add(self.adds as u64 + FAMILIES + 1),
                },
            ),
            None => {
                let n = match s.byte() % 8 {
                    0..=4 => full,
                    5 => 0,
                    6 => s.range(0, full),
                    _ => (full + 1).min(MAX_HASHES as u64 + 1),
                };
                (n, self.hash_mode(s, ext, n))
            }
        };
        let mut hashes = core::mem::take(&mut self.hash_buf);
        hashes.clear();
        for k in 0..n_hashes {
            hashes.push(mode.hash(s, k));
        }
        let max_output_tokens = match s.byte() % 8 {
            0..=2 => None,
            3 | 4 => Some(s.range32(1, 64)),
            5 => Some(1),
            _ => Some(tokens(s, 4096)),
        };
        let predicted_output_tokens = if s.chance(64) {
            None
        } else {
            Some(prediction(s))
        };
        let priority = match s.byte() % 8 {
            0..=3 => 0,
            4 | 5 => s.range(0, 6) as i32 - 3,
            6 => i32::MIN,
            _ => i32::MAX,
        };
        let deadline = match s.byte() % 8 {
            0..=4 => None,
            5 => Some(Instant(self.now.saturating_add(s.range(0, 10_000_000)))),
            6 => Some(Instant(s.pick(&[0, u64::MAX]))),
            _ => Some(Instant(s.u64())),
        };
        let ttft_target_us = match s.byte() % 8 {
            0..=4 => None,
            5 => Some(s.range(0, 1_000_000)),
            6 => Some(u64::MAX),
            _ => Some(s.u64()),
        };
        let tenant = match s.byte() % 16 {
            0..=13 => s.below(self.cfg.max_tenants.min(8)),
            14 => self.cfg.max_tenants,
            _ => u32::MAX,
        };
        let desc = RequestDesc {
            max_output_tokens,
            predicted_output_tokens,
            priority,
            deadline,
            ttft_target_us,
            tenant,
            prompt_block_hashes: &hashes,
            ..RequestDesc::new(ext, prompt)
        };
        let t = self.time(s);
        if self.lim.trace {
            eprintln!(
                "let hashes: Vec<u64> = {hashes:?};\nlet r = e.add_request(&RequestDesc {{ \
                 max_output_tokens: {max_output_tokens:?}, predicted_output_tokens: \
                 {predicted_output_tokens:?}, priority: {priority}, deadline: {deadline:?}, \
                 ttft_target_us: {ttft_target_us:?}, tenant: {tenant}, prompt_block_hashes: \
                 &hashes, ..RequestDesc::new({ext}, {prompt}) }}, Instant({t}));"
            );
        }
        let r = e.add_request(&desc, Instant(t));
        self.hash_buf = hashes;
        match r {
            Ok(h) => {
                self.adds += 1;
                self.trace(format_args!("let h{} = r.unwrap();", self.adds));
                ensure!(
                    self.live.iter().all(|l| l.h != h),
                    "add_request returned the handle of a live request"
                );
                self.live.push(Live {
                    h,
                    ext,
                    hashes: mode,
                    name: self.adds,
                });
            }
            Err(err) => self.trace(format_args!("// -> Err({err:?})")),
        }
        self.after_call(e, "add_request")
    }

    /// Several requests sharing a long prompt prefix of one family.
    fn add_shared<S: Source>(&mut self, s: &mut S, e: &mut Engine<'_>) -> Check {
        let bs = self.cfg.block_size;
        let family = s.range(1, FAMILIES);
        let blocks = s.range32(1, self.cfg.device_blocks.min(MAX_HASHES));
        let prompt = bs
            .saturating_mul(blocks)
            .saturating_add(s.below(bs.min(1 << 16)))
            .max(1);
        let count = s.range32(2, 16);
        for _ in 0..count {
            if self.calls >= self.lim.max_ops {
                break;
            }
            self.add(s, e, Some((family, prompt)))?;
        }
        Ok(())
    }

    fn check_plan(&self, plan: &Plan<'_>) -> Check {
        let c = &self.cfg;
        let (dev, host) = (c.device_blocks, c.host_blocks);
        ensure!(
            plan.entries.len() <= c.max_running as usize,
            "plan has {} entries, max_running is {}",
            plan.entries.len(),
            c.max_running
        );
        let total: u64 = plan.entries.iter().map(|x| x.tokens as u64).sum();
        ensure!(
            total <= c.token_budget as u64,
            "plan schedules {total} tokens, budget is {}",
            c.token_budget
        );
        for (k, en) in plan.entries.iter().enumerate() {
            ensure!(
                plan.entries[..k].iter().all(|o| o.handle != en.handle),
                "request {:?} scheduled twice in one plan",
                en.handle
            );
            ensure!(
                self.live.iter().any(|l| l.h == en.handle),
                "plan schedules a request that is not live: {en:?}"
            );
            ensure!(
                !self.paused.contains(&en.handle),
                "plan schedules a paused request: {en:?}"
            );
            ensure!(en.tokens >= 1, "empty entry: {en:?}");
            if en.kind == EntryKind::Decode {
                ensure!(
                    en.tokens == 1 && en.samples,
                    "decode entry with {} tokens / not sampling: {en:?}",
                    en.tokens
                );
            }
            for &b in plan.blocks(en) {
                ensure!(
                    b < dev,
                    "entry block {b} out of the device tier ({dev}): {en:?}"
                );
            }
        }
        let pairs = [
            ("swap_out", plan.swap_out, dev, host),
            ("swap_in", plan.swap_in, host, dev),
            ("copies", plan.copies, dev, dev),
        ];
        for (what, list, src_n, dst_n) in pairs {
            for (k, p) in list.iter().enumerate() {
                ensure!(
                    p.src < src_n && p.dst < dst_n,
                    "{what} pair {p:?} out of range (source tier {src_n}, destination {dst_n})"
                );
                ensure!(
                    list[..k].iter().all(|o| o.dst != p.dst),
                    "{what} destination {} appears twice",
                    p.dst
                );
            }
        }
        for p in plan.preempted {
            ensure!(
                plan.entries.iter().all(|en| en.handle != p.handle),
                "preempted request is also scheduled: {p:?}"
            );
        }
        for d in plan.dropped {
            ensure!(
                plan.entries.iter().all(|en| en.handle != d.handle),
                "dropped request is also scheduled: {d:?}"
            );
        }
        Ok(())
    }

    fn schedule<S: Source>(&mut self, s: &mut S, e: &mut Engine<'_>) -> Check {
        let t = self.time(s);
        self.trace(format_args!("let r = e.schedule(Instant({t}));"));
        let pending = self.pending.len();
        let checked = match e.schedule(Instant(t)) {
            Ok(plan) => {
                self.plans += 1;
                if self.lim.trace {
                    eprintln!(
                        "// -> plan {}: entries {:?}\n//    preempted {:?}\n//    dropped {:?}\n\
                         //    swap_out {:?} swap_in {:?} copies {:?}",
                        plan.step,
                        plan.entries,
                        plan.preempted,
                        plan.dropped,
                        plan.swap_out,
                        plan.swap_in,
                        plan.copies
                    );
                }
                let checked = self.check_plan(&plan).and_then(|()| {
                    ensure!(
                        pending == 0,
                        "schedule returned a plan while {pending} results were outstanding"
                    );
                    Ok(())
                });
                self.pending.clear();
                self.pending.extend_from_slice(plan.entries);
                self.accepted = false;
                let dropped: Vec<RequestHandle> = plan.dropped.iter().map(|d| d.handle).collect();
                for d in dropped {
                    if !self.remove_handle(d) {
                        return Err(format!("plan drops a request that is not live: {d:?}"));
                    }
                }
                checked
            }
            Err(ScheduleError::ResultsPending { missing }) => {
                self.trace(format_args!(
                    "// -> Err(ResultsPending {{ missing: {missing} }})"
                ));
                ensure!(
                    missing as usize == pending && pending > 0,
                    "schedule says {missing} results are missing, {pending} are outstanding"
                );
                Ok(())
            }
            Err(err) => {
                self.trace(format_args!("// -> Err({err:?})"));
                Ok(())
            }
        };
        checked.map_err(|m| format!("after schedule: {m}"))?;
        self.after_call(e, "schedule")
    }

    /// A well-formed result for `en`.
    fn result_for<S: Source>(&self, s: &mut S, en: &ScheduledEntry) -> StepResult {
        let mut r = StepResult::new(en.handle, en.samples as u32);
        if en.samples {
            match s.byte() % 16 {
                0 | 1 => {
                    r.finished = true;
                    r.tokens = s.below(2);
                }
                2 => {
                    r.pause = Some(PauseRequest {
                        predicted_duration_us: match s.byte() % 4 {
                            0 => 0,
                            1 => s.range(0, 1_000_000),
                            2 => u64::MAX,
                            _ => s.u64(),
                        },
                    })
                }
                _ => {}
            }
        }
        if s.chance(48) {
            let p = prediction(s);
            if p.is_finite() && p >= 0.0 {
                r.predicted_remaining = Some(p);
            }
        }
        let bs = self.cfg.block_size.max(1) as u64;
        let (from, to) = (
            en.computed_before as u64,
            en.computed_before as u64 + en.tokens as u64,
        );
        if to / bs > from / bs && s.bool() {
            let b = to / bs - 1;
            let mode = self
                .live
                .iter()
                .find(|l| l.h == en.handle)
                .map_or(HashMode::Random, |l| l.hashes);
            r.filled_block_hash = Some(mode.hash(s, b));
        }
        r
    }

    /// Spoils one result (or the batch) so that it should be rejected.
    fn spoil<S: Source>(&self, s: &mut S, results: &mut Vec<StepResult>) {
        let k = s.below(results.len().max(1) as u32) as usize;
        match s.byte() % 10 {
            0 if !results.is_empty() => results[k].tokens = results[k].tokens.wrapping_add(1),
            1 if !results.is_empty() => {
                results[k].predicted_remaining = Some(s.pick(&[f64::NAN, -1.0, f64::INFINITY]))
            }
            2 if !results.is_empty() => {
                results[k].finished = true;
                results[k].pause = Some(PauseRequest {
                    predicted_duration_us: 1,
                });
            }
            3 if !results.is_empty() => {
                results[k].finished = !results[k].finished;
            }
            4 if !results.is_empty() => results[k].filled_block_hash = Some(s.u64()),
            5 if !results.is_empty() => {
                let dup = results[k];
                results.push(dup);
            }
            6 if !self.stale.is_empty() => results.push(StepResult::new(
                self.stale[s.below(self.stale.len() as u32) as usize],
                s.below(2),
            )),
            7 if !self.live.is_empty() => results.push(StepResult::new(
                self.live[s.below(self.live.len() as u32) as usize].h,
                s.below(2),
            )),
            _ => results.push(StepResult::new(RequestHandle::from_raw(s.u64()), 1)),
        }
    }

    fn complete<S: Source>(&mut self, s: &mut S, e: &mut Engine<'_>) -> Check {
        let mut chosen: Vec<ScheduledEntry> = match s.byte() % 8 {
            0..=4 => self.pending.clone(),
            5 => Vec::new(),
            _ => self.pending.iter().filter(|_| s.bool()).copied().collect(),
        };
        if s.bool() {
            // Shuffle a little: results may come in any order.
            s.shuffle(&mut chosen);
        }
        let mut results: Vec<StepResult> = chosen.iter().map(|en| self.result_for(s, en)).collect();
        let spoiled = s.chance(24);
        if spoiled {
            self.spoil(s, &mut results);
        }
        self.apply(s, e, results, None, !spoiled)
    }

    /// Completes every outstanding entry with well-formed results: one result per entry
    /// (`complete`), or, for a plan no call has reported on yet, only the results that are
    /// not the entry's default, shuffled (`complete_except`).
    fn complete_all<S: Source>(&mut self, s: &mut S, e: &mut Engine<'_>) -> Check {
        let pending = self.pending.clone();
        let results: Vec<StepResult> = pending.iter().map(|en| self.result_for(s, en)).collect();
        let sparse = (!self.accepted && s.bool()).then(|| {
            let mut exceptions: Vec<StepResult> = pending
                .iter()
                .zip(&results)
                .filter(|(en, r)| **r != en.default_result())
                .map(|(_, r)| *r)
                .collect();
            s.shuffle(&mut exceptions);
            exceptions
        });
        self.apply(s, e, results, sparse, true)
    }

    /// Reports `results` with `complete`, or with `complete_except(exceptions)` when
    /// `exceptions` is given (then `results` is every entry's result, for the model).
    fn apply<S: Source>(
        &mut self,
        s: &mut S,
        e: &mut Engine<'_>,
        results: Vec<StepResult>,
        exceptions: Option<Vec<StepResult>>,
        well_formed: bool,
    ) -> Check {
        let t = self.time(s);
        if self.lim.trace {
            let list: Vec<String> = exceptions
                .as_ref()
                .unwrap_or(&results)
                .iter()
                .map(|r| {
                    format!(
                        "StepResult {{ handle: {}, tokens: {}, finished: {}, predicted_remaining: \
                         {:?}, filled_block_hash: {:?}, pause: {:?} }}",
                        self.name(r.handle),
                        r.tokens,
                        r.finished,
                        r.predicted_remaining,
                        r.filled_block_hash,
                        r.pause
                    )
                })
                .collect();
            let call = if exceptions.is_some() {
                "complete_except"
            } else {
                "complete"
            };
            eprintln!(
                "let r = e.{call}(&[{}], Instant({t}));",
                list.join(",\n    ")
            );
        }
        let r = match &exceptions {
            Some(x) => e.complete_except(x, Instant(t)),
            None => e.complete(&results, Instant(t)),
        };
        match r {
            Ok(()) => {
                self.accepted = true;
                let finished: Vec<RequestHandle> =
                    e.last_finished().iter().map(|f| f.handle).collect();
                self.trace(format_args!("// -> Ok, finished {:?}", e.last_finished()));
                for r in &results {
                    self.pending.retain(|p| p.handle != r.handle);
                    if r.pause.is_some() && !self.paused.contains(&r.handle) {
                        self.paused.push(r.handle);
                    }
                }
                for f in finished {
                    if !self.remove_handle(f) {
                        return Err(format!(
                            "complete finished a request that is not live: {f:?}"
                        ));
                    }
                }
            }
            Err(err) => {
                self.trace(format_args!("// -> Err({err:?})"));
                // Time going backwards is the only valid reason to refuse well-formed results.
                let backwards =
                    matches!(err, augur::core::engine::CompleteError::TimeWentBackwards);
                ensure!(
                    !well_formed || backwards,
                    "complete rejected well-formed results: {err:?} for {results:?}"
                );
            }
        }
        self.after_call(e, "complete")
    }

    fn update_prediction<S: Source>(&mut self, s: &mut S, e: &mut Engine<'_>) -> Check {
        let h = self.target(s);
        let p = prediction(s);
        let t = self.time(s);
        self.trace(format_args!(
            "let r = e.update_prediction({}, {p:?}, Instant({t}));",
            self.name(h)
        ));
        let r = e.update_prediction(h, p, Instant(t));
        self.trace(format_args!("// -> {r:?}"));
        self.after_call(e, "update_prediction")
    }

    fn abort<S: Source>(&mut self, s: &mut S, e: &mut Engine<'_>) -> Check {
        let h = self.target(s);
        let t = self.time(s);
        self.trace(format_args!(
            "let r = e.abort({}, Instant({t}));",
            self.name(h)
        ));
        let r = e.abort(h, Instant(t));
        self.trace(format_args!("// -> {r:?}"));
        if r.is_ok() && !self.remove_handle(h) {
            return Err(format!("abort accepted a handle that is not live: {h:?}"));
        }
        self.after_call(e, "abort")
    }

    fn resume<S: Source>(&mut self, s: &mut S, e: &mut Engine<'_>) -> Check {
        let h = if !self.paused.is_empty() && s.chance(200) {
            self.paused[s.below(self.paused.len() as u32) as usize]
        } else {
            self.target(s)
        };
        let t = self.time(s);
        let r = if s.bool() {
            self.trace(format_args!(
                "let r = e.resume({}, Instant({t}));",
                self.name(h)
            ));
            e.resume(h, Instant(t))
        } else {
            let n = match s.byte() % 8 {
                0..=3 => s.range32(0, 64),
                4 => self.cfg.block_size,
                5 => tokens(s, 4096),
                6 => u32::MAX,
                _ => u32::MAX / 2,
            };
            self.trace(format_args!(
                "let r = e.resume_with_tokens({}, {n}, Instant({t}));",
                self.name(h)
            ));
            e.resume_with_tokens(h, n, Instant(t))
        };
        self.trace(format_args!("// -> {r:?}"));
        if r.is_ok() {
            self.paused.retain(|&p| p != h);
        }
        self.after_call(e, "resume")
    }

    fn query<S: Source>(&mut self, s: &mut S, e: &mut Engine<'_>) -> Check {
        let h = self.target(s);
        let _ = e.request(h);
        if let Some(l) = self.live.iter().find(|l| l.h == h) {
            ensure!(
                e.request(h).is_ok(),
                "request() rejects the live handle {:?}",
                l.h
            );
        }
        if self.stale.contains(&h) {
            ensure!(
                e.request(h).is_err(),
                "request() accepts the stale handle {h:?}"
            );
        }
        let ext = if s.bool() && !self.live.is_empty() {
            self.live[s.below(self.live.len() as u32) as usize].ext
        } else {
            s.u64()
        };
        let _ = e.find(ext);
        let _ = e.stats();
        let _ = e.config();
        let _ = e.last_finished();
        let plan = e.plan();
        let _ = plan.total_tokens();
        for en in plan.entries {
            let _ = plan.blocks(en);
        }
        self.after_call(e, "queries")
    }
}
