//! Property tests of the scheduling engine: random sequences of calls on small random
//! configurations, checked after every call against a plain `std` reference model
//! (DESIGN.md section 3 invariants).
//!
//! The model keeps which requests are live and whether each is paused (from the calls and the
//! plans), the tokens each has generated and been given, the entries of the current plan that
//! still await a result, and each request's block table mirrored from the plan deltas
//! (`engine_support::check_plan`). After every call:
//! - `Engine::audit` passes (block conservation per tier, ref counts = tables holding blocks,
//!   every request in exactly one state, counters);
//! - counts, states, prompt and generated tokens of every live request match the model, and
//!   every retired handle is stale;
//! - every plan respects the budget, `max_running`, no request twice, entries only for live
//!   requests that are not paused, block pairs in range, mirrored tables covering
//!   `computed_before + tokens`, preempted and dropped requests absent from the entries,
//!   `samples` exactly when the entry reaches the last known token;
//! - progress: a step with any live request that is not paused schedules something (or drops
//!   a request that can never fit) — a running request always owes at least one token and the
//!   budget is at least 1, and with nothing running the whole device is free for the head of
//!   the queue (see `Model::schedule`);
//! - finishes (stop, output cap, length) are exactly the model's, whether the results came
//!   keyed (`complete`, whole or partial batches) or sparse (`complete_except` with only the
//!   non-default results, shuffled, for a whole plan);
//! - bad calls (stale and forged handles, results for unscheduled requests, duplicates, wrong
//!   token counts, NaN and negative predictions, zero-length prompts, time going backwards,
//!   `schedule` with results pending, ...) return the specific error and change nothing
//!   (`stats()`, `live_requests()`, every live request's view and the current plan compared
//!   before and after).
//!
//! After the random calls, liveness: no more arrivals, paused requests resume, every entry is
//! completed (finishing at a target length), and everything must finish or be dropped within a
//! bound of steps. Determinism: each sequence runs on two engines, and every plan (entries with
//! their block deltas, preemptions, drops, swap and copy pairs) and every finish list must be
//! identical.
//!
//! The KV content oracle (`engine_support::kv_oracle`) runs on the first engine of every case:
//! after every `schedule` it carries the plan out on a model of what each device and host
//! block contains and checks every entry's reads, every live request's table (read back with
//! `Engine::block_table`) and content in every tier, copy hazards and namespaces. Every plan's
//! preemption records must also equal the preemption counters' increase.
//!
//! A second property test runs the same model and checks on corner workloads (`Corner`):
//! tables of many chunks (block size 1–2, prompts of 30–200 tokens), 30–40 requests sharing a
//! 50–100-block prefix in up to three namespaces with identical hash chains (table chunks run
//! out before blocks), host pools of 1–6 blocks with swap preemption, `Swap`/`Auto` pauses and
//! aborts of paused requests whose swap-out is still pending, one preemption per step, and huge
//! blocks with u32-scale token counts (prompts at and around `TOKEN_LIMIT`). A deterministic
//! sample of each corner checks that the workloads do reach their corners (shared blocks,
//! exhausted table chunks, host-tier content, 2^28+ tokens in one request).
//!
//! A deterministic test checks that aging prevents starvation under SJF and SPRPT.
//!
//! The default case counts (512 and 1,024) keep this file at a few seconds in the test
//! profile; `AUGUR_SOAK=1` multiplies them by 100 for a long soak.

mod engine_support;

use std::collections::{BTreeMap, HashMap, HashSet};

use augur::core::engine::{
    AddError, AdmissionMode, CompleteError, CostWeights, Engine, EngineConfig, EngineStats,
    FinishReason, Finished, PauseMode, PauseRequest, PreemptionKind, PreemptionMode, RequestDesc,
    RequestError, RequestHandle, RequestState, RequestView, ResultErrorKind, ScheduleError,
    ScheduledEntry, StepResult,
};
use augur::core::policy::{MlfqParams, OverrunRule, Policy, PolicyKind, TimeCosts};
use augur::core::time::Instant;
use augur::storage::EngineBuffers;
use engine_support::kv_oracle::{KvOracle, OracleStats};
use engine_support::rng::Rng;
use engine_support::{
    Driver, PlanRecord, check_plan, check_preemptions_reported, exceptions_of, req,
};
use proptest::prelude::*;

const MAX_REQUESTS: u32 = 32;

// ----- random configurations and operations -----

fn policy_kind() -> impl Strategy<Value = PolicyKind> {
    prop_oneof![
        Just(PolicyKind::Fcfs),
        Just(PolicyKind::Priority),
        Just(PolicyKind::Sjf),
        Just(PolicyKind::Pspjf),
        Just(PolicyKind::Sprpt),
        (0.0..2.0f64).prop_map(|cutoff| PolicyKind::Trail { cutoff }),
        Just(PolicyKind::Las),
        (1.0..8.0f64, 1.0..3.0f64, 1u32..6, 0.0..0.2f64).prop_map(|(b, g, l, w)| {
            PolicyKind::Mlfq(MlfqParams {
                base_quantum: b,
                growth: g,
                levels: l,
                prefill_weight: w,
            })
        }),
        (0.0..30.0f64, any::<bool>()).prop_map(|(threshold, preemptive)| PolicyKind::OneBit {
            threshold,
            preemptive
        }),
        Just(PolicyKind::MemoryTime),
        (0.0..2000.0f64, 0.0..500.0f64).prop_map(|(d, p)| PolicyKind::Slack {
            decode_us_per_token: d,
            prefill_us_per_token: p,
        }),
        Just(PolicyKind::Edf),
        time_costs().prop_map(PolicyKind::SprptTime),
        (0.0..2.0f64, time_costs())
            .prop_map(|(cutoff, costs)| PolicyKind::TrailTime { cutoff, costs }),
    ]
}

/// Per-token costs for the time-keyed ranks; zero coefficients included (they tie ranks).
fn time_costs() -> impl Strategy<Value = TimeCosts> {
    (
        prop_oneof![Just(0.0), 0.0..200.0f64],
        prop_oneof![Just(0.0), 0.0..2000.0f64],
        prop_oneof![Just(0.0), 0.0..5.0f64],
    )
        .prop_map(|(p, d, c)| TimeCosts {
            prefill_us_per_token: p,
            decode_us_per_token: d,
            context_us_per_token: c,
        })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        policy_kind(),
        prop_oneof![Just(0.0), 0.0..200.0f64],
        prop_oneof![
            Just(OverrunRule::Negative),
            Just(OverrunRule::Clamp),
            (1.1..3.0f64).prop_map(|factor| OverrunRule::Rescale { factor }),
        ],
        any::<bool>(),
        1.0..100.0f64,
        prop::option::of(0.0..2e6f64),
    )
        .prop_map(|(kind, aging, overrun, fair, fallback, dl)| Policy {
            kind,
            aging_per_s: aging,
            overrun,
            fair_share: fair,
            fallback_prediction: fallback,
            default_deadline_us: dl,
        })
}

fn config() -> impl Strategy<Value = EngineConfig> {
    (
        (
            1u32..=8,
            4u32..=64,
            0u32..=32,
            1u32..=8,
            1u32..=64,
            0u32..=16,
        ),
        (
            prop_oneof![Just(0.0), 0.0..0.2f64],
            policy(),
            prop_oneof![
                Just(PreemptionMode::Recompute),
                Just(PreemptionMode::Swap),
                Just(PreemptionMode::Auto)
            ],
            prop_oneof![
                Just(AdmissionMode::Eager),
                Just(AdmissionMode::FullPrompt),
                (0.0..3.0f64).prop_map(|headroom| AdmissionMode::Predicted { headroom }),
                Just(AdmissionMode::WorstCase),
            ],
            prop_oneof![Just(0.0), 0.0..50.0f64],
            1u32..=4,
        ),
        (
            any::<bool>(),
            prop_oneof![3 => Just(0u32), 1 => 2u32..300],
            (0.0..50.0f64, 0.0..100.0f64),
            prop_oneof![
                Just(PauseMode::Preserve),
                Just(PauseMode::Discard),
                Just(PauseMode::Swap),
                Just(PauseMode::Auto)
            ],
            1u32..=3,
            (0.0..3.0f64, 0.0..3.0f64),
        ),
    )
        .prop_map(
            |(
                (bs, dev, host, run, budget, chunk),
                (watermark, policy, preemption, admission, margin, max_pre),
                (prefix, max_seq, (rc, sc), pause, tenants, (vi, vo)),
            )| {
                let mut c = EngineConfig::new(bs, dev, MAX_REQUESTS);
                c.host_blocks = host;
                c.max_running = run;
                c.token_budget = budget;
                c.prefill_chunk = chunk;
                c.watermark = watermark;
                c.policy = policy;
                c.preemption = preemption;
                c.admission = admission;
                c.priority_margin = margin;
                c.max_preemptions_per_step = max_pre;
                c.prefix_caching = prefix;
                c.max_sequence_tokens = max_seq;
                c.costs = CostWeights {
                    recompute_us_per_token: rc,
                    swap_us_per_block: sc,
                };
                c.pause = pause;
                c.max_tenants = tenants;
                c.vtc_input_weight = vi;
                c.vtc_output_weight = vo;
                // Enough for every request's prompt and filled-block hashes (up to one per
                // device token each), so `OutOfHashStorage` never depends on history.
                c.hash_capacity = 40_000;
                c
            },
        )
}

/// A request to add (its id is assigned by the model).
#[derive(Clone, Debug)]
struct AddOp {
    prompt: u32,
    cap: Option<u32>,
    pred: Option<f64>,
    priority: i32,
    tenant: u32,
    deadline_in: Option<u64>,
    ttft: Option<u64>,
    /// Prompt block hashes: a chain shared within a family, then per variant.
    family: Option<Family>,
    /// The prefix-cache namespace (`cache_salt`): equal chains in different namespaces must
    /// never share KV.
    salt: u64,
    /// Output length at which the driver finishes it.
    target: u32,
}

/// Prompt block hashes: `n` blocks (at most the prompt's full blocks), the first `shared` of
/// them the family's chain, the rest the variant's.
#[derive(Clone, Copy, Debug)]
struct Family {
    f: u64,
    v: u64,
    n: u32,
    shared: u32,
}

#[derive(Clone, Debug)]
enum Op {
    Add(AddOp),
    Schedule,
    /// Report results for (some of) the pending entries, driven by a seed.
    Complete(u64),
    Resume {
        pick: usize,
        appended: u32,
    },
    Update {
        pick: usize,
        pred: f64,
    },
    Abort {
        pick: usize,
    },
    /// Aborts a paused request (right after a `complete`, one whose pause swap-out is still
    /// pending for the next plan).
    AbortPaused {
        pick: usize,
    },
    /// A deliberately bad call (kind, pick, seed).
    Bad(u8, usize, u64),
    Wait(u64),
}

fn add_op() -> impl Strategy<Value = AddOp> {
    (
        1u32..=80,
        prop::option::of(1u32..=40),
        prop::option::of(0.0..60.0f64),
        -2i32..=2,
        prop_oneof![8 => 0u32..3, 1 => Just(3u32)],
        prop::option::of(0u64..5_000_000),
        prop::option::of(0u64..5_000_000),
        prop::option::of((0u64..3, 0u64..3, 0u32..=10)),
        prop_oneof![3 => Just(0u64), 1 => 1u64..3],
        1u32..=24,
    )
        .prop_map(
            |(prompt, cap, pred, priority, tenant, deadline_in, ttft, family, salt, target)| {
                AddOp {
                    prompt,
                    cap,
                    pred,
                    priority,
                    tenant,
                    deadline_in,
                    ttft,
                    family: family.map(|(f, v, n)| Family { f, v, n, shared: 3 }),
                    salt,
                    target,
                }
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => add_op().prop_map(Op::Add),
        5 => Just(Op::Schedule),
        6 => any::<u64>().prop_map(Op::Complete),
        2 => (any::<usize>(), prop_oneof![Just(0u32), 0u32..10]).prop_map(|(pick, appended)| Op::Resume { pick, appended }),
        1 => (any::<usize>(), 0.0..80.0f64).prop_map(|(pick, pred)| Op::Update { pick, pred }),
        1 => any::<usize>().prop_map(|pick| Op::Abort { pick }),
        3 => (0u8..13, any::<usize>(), any::<u64>()).prop_map(|(k, p, s)| Op::Bad(k, p, s)),
        1 => (0u64..3_000_000).prop_map(Op::Wait),
    ]
}

// ----- the reference model -----

#[derive(Clone, Debug)]
struct MReq {
    h: RequestHandle,
    /// Prompt tokens including appended tool output.
    prompt: u32,
    generated: u32,
    cap: Option<u32>,
    target: u32,
    paused: bool,
    /// Prompt block hashes it was given (claims are only made for blocks past them).
    hashes: u32,
}

/// Everything a run records for the determinism comparison.
#[derive(Clone, Debug, PartialEq)]
enum Rec {
    Plan(PlanRecord),
    Finished(Vec<Finished>),
}

struct Model {
    cfg: EngineConfig,
    reqs: BTreeMap<u64, MReq>,
    dead: Vec<RequestHandle>,
    next_id: u64,
    now: u64,
    /// Time of the last successful call (the engine's clock).
    last: u64,
    /// Entries of the current plan still awaiting a result.
    pending: Vec<ScheduledEntry>,
    /// A `complete` call accepted results for the current plan (then `complete_except`, which
    /// covers a whole plan, is refused).
    accepted: bool,
    /// External ids scheduled in the current plan.
    plan_ids: HashSet<u64>,
    /// External ids reported for the current plan that are still running (not paused).
    reported: HashSet<u64>,
    tables: HashMap<u64, Vec<u32>>,
    added: u64,
    finished: u64,
    aborted: u64,
    dropped: u64,
    trace: Vec<Rec>,
    scratch: Vec<u32>,
    /// The KV content oracle (run on one of the two engines of a case).
    oracle: Option<KvOracle>,
    /// Percent of sampling results that pause, and that finish early.
    pause_pct: u64,
    finish_pct: u64,
}

fn blocks_for(tokens: u64, bs: u32) -> u64 {
    tokens.div_ceil(bs as u64)
}

/// The chained hashes of a family's prompt blocks: block `k` of family `f` is
/// `(f + 1) << 32 | k` while shared, then `(f + 1) << 32 | (v + 1) << 24 | k` for variant `v`
/// (the block index is in every hash, so equal hashes always sit at equal positions, as with
/// real chained hashes).
fn hashes_of(family: Option<Family>, prompt: u32, bs: u32) -> Vec<u64> {
    let Some(Family { f, v, n, shared }) = family else {
        return vec![];
    };
    let n = n.min(prompt / bs);
    (0..n as u64)
        .map(|k| {
            if k < shared as u64 {
                ((f + 1) << 32) | k
            } else {
                ((f + 1) << 32) | ((v + 1) << 24) | k
            }
        })
        .collect()
}

/// The hash the driver claims (`filled_block_hash`) for block `b` of request `id` — the same
/// every time that block fills, so claims never contradict each other: half the time a family
/// hash of the same position (which may collide with cached family blocks), else its own.
fn claim_for(id: u64, b: u32) -> u64 {
    let mut r = Rng(id.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ b as u64);
    if r.chance(50) {
        ((r.below(3) + 1) << 32) | b as u64
    } else {
        (1 << 60) | (id << 16) | b as u64
    }
}

/// Compared before and after a bad call: it must change nothing.
type Snapshot = (EngineStats, u32, Vec<(u64, RequestView)>, PlanRecord);

impl Model {
    fn new(cfg: EngineConfig) -> Self {
        Model {
            cfg,
            reqs: BTreeMap::new(),
            dead: vec![],
            next_id: 1,
            now: 0,
            last: 0,
            pending: vec![],
            accepted: false,
            plan_ids: HashSet::new(),
            reported: HashSet::new(),
            tables: HashMap::new(),
            added: 0,
            finished: 0,
            aborted: 0,
            dropped: 0,
            trace: vec![],
            scratch: vec![0; (cfg.device_blocks + cfg.host_blocks) as usize],
            oracle: None,
            pause_pct: 12,
            finish_pct: 4,
        }
    }

    fn pick(&self, k: usize, filter: impl Fn(&MReq) -> bool) -> Option<u64> {
        let ids: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, r)| filter(r))
            .map(|(&id, _)| id)
            .collect();
        (!ids.is_empty()).then(|| ids[k % ids.len()])
    }

    fn id_of(&self, h: RequestHandle) -> Option<u64> {
        self.reqs.iter().find(|(_, r)| r.h == h).map(|(&id, _)| id)
    }

    fn retire(&mut self, id: u64) {
        if let Some(o) = &mut self.oracle {
            o.on_abort(id);
        }
        let r = self.reqs.remove(&id).expect("live in the model");
        self.dead.push(r.h);
        self.pending.retain(|e| e.external_id != id);
        self.tables.remove(&id);
    }

    /// The stale or forged handle number `k`.
    fn bad_handle(&self, k: usize) -> RequestHandle {
        if !self.dead.is_empty() && !k.is_multiple_of(3) {
            return self.dead[k % self.dead.len()];
        }
        match k % 2 {
            0 => RequestHandle::from_raw(0),
            _ => RequestHandle::from_raw(
                ((k as u64 % 7 + 1) << 32) | (self.cfg.max_requests as u64 + 5),
            ),
        }
    }

    /// What `add_request` must answer, in the engine's documented order of checks.
    fn expect_add(&self, d: &RequestDesc<'_>, now: u64) -> Result<(), AddError> {
        let c = &self.cfg;
        let bs = c.block_size;
        if d.prompt_tokens == 0 {
            return Err(AddError::InvalidField("prompt_tokens"));
        }
        if d.max_output_tokens == Some(0) {
            return Err(AddError::InvalidField("max_output_tokens"));
        }
        if let Some(p) = d.predicted_output_tokens
            && !(p.is_finite() && p >= 0.0)
        {
            return Err(AddError::InvalidField("predicted_output_tokens"));
        }
        if d.tenant >= c.max_tenants {
            return Err(AddError::InvalidField("tenant"));
        }
        if d.prompt_block_hashes.len() as u64 > (d.prompt_tokens / bs) as u64 {
            return Err(AddError::InvalidField("prompt_block_hashes"));
        }
        if d.prompt_tokens >= c.token_limit() {
            return Err(AddError::InvalidField("prompt_tokens"));
        }
        if now < self.last {
            return Err(AddError::TimeWentBackwards);
        }
        let mut need = blocks_for(d.prompt_tokens as u64 + 1, bs);
        if c.admission == AdmissionMode::WorstCase {
            let cap = d
                .max_output_tokens
                .map(|m| d.prompt_tokens as u64 + m as u64);
            let total = match (cap, c.max_sequence_tokens) {
                (Some(x), 0) => Some(x),
                (Some(x), m) => Some(x.min(m as u64)),
                (None, 0) => None,
                (None, m) => Some(m as u64),
            };
            // Neither can exceed the token limit (a request finishes when it reaches it).
            if let Some(t) = total.map(|t| t.min(c.token_limit() as u64)) {
                need = need.max(blocks_for(t, bs));
            }
        }
        if need > c.device_blocks as u64 {
            return Err(AddError::CannotFit {
                need_blocks: need,
                device_blocks: c.device_blocks,
            });
        }
        if self.reqs.contains_key(&d.external_id) {
            return Err(AddError::DuplicateExternalId);
        }
        if self.reqs.len() >= c.max_requests as usize {
            return Err(AddError::QueueFull);
        }
        Ok(())
    }

    /// What `resume_with_tokens` must answer.
    fn expect_resume(&self, h: RequestHandle, appended: u32, now: u64) -> Result<(), RequestError> {
        let Some(id) = self.id_of(h) else {
            return Err(RequestError::StaleHandle);
        };
        let r = &self.reqs[&id];
        if !r.paused {
            return Err(RequestError::WrongState);
        }
        let total = r.prompt as u64 + r.generated as u64 + appended as u64;
        let c = &self.cfg;
        if total >= u32::MAX as u64 / 2
            || (c.max_sequence_tokens != 0 && total >= c.max_sequence_tokens as u64)
            || blocks_for(total + 1, c.block_size) > c.device_blocks as u64
        {
            return Err(RequestError::TooManyTokens);
        }
        if now < self.last {
            return Err(RequestError::TimeWentBackwards);
        }
        Ok(())
    }

    /// What a result for `h` must fail with when `h` is not a pending entry.
    fn expect_unscheduled(&self, h: RequestHandle) -> ResultErrorKind {
        match self.id_of(h) {
            None => ResultErrorKind::StaleHandle,
            Some(id) => {
                if self.plan_ids.contains(&id) && self.reported.contains(&id) {
                    ResultErrorKind::Duplicate
                } else {
                    ResultErrorKind::NotScheduled
                }
            }
        }
    }

    fn snapshot(&self, e: &Engine<'_>) -> Snapshot {
        let views = self
            .reqs
            .iter()
            .map(|(&id, r)| (id, e.request(r.h).expect("live")))
            .collect();
        (
            e.stats(),
            e.live_requests(),
            views,
            PlanRecord::of(&e.plan()),
        )
    }

    /// Everything that must hold after every call.
    fn check(&mut self, e: &Engine<'_>) {
        e.audit(&mut self.scratch).expect("audit");
        let s = e.stats();
        assert_eq!(e.live_requests() as usize, self.reqs.len(), "live requests");
        let paused = self.reqs.values().filter(|r| r.paused).count();
        assert_eq!(s.paused as usize, paused, "paused count");
        assert_eq!(
            (s.added, s.finished, s.aborted, s.dropped),
            (self.added, self.finished, self.aborted, self.dropped),
            "added / finished / aborted / dropped"
        );
        for (&id, r) in &self.reqs {
            let v = e.request(r.h).expect("live request has a valid handle");
            assert_eq!(v.external_id, id);
            assert_eq!(e.find(id), Some(r.h));
            assert_eq!(v.generated_tokens, r.generated, "generated tokens of {id}");
            assert_eq!(v.prompt_tokens, r.prompt, "prompt tokens of {id}");
            assert_eq!(
                v.state == RequestState::Paused,
                r.paused,
                "paused state of {id}: {v:?}"
            );
            assert!(v.computed_tokens <= r.prompt + r.generated);
            if v.state == RequestState::Running {
                assert!(v.kv_tier.is_some());
            }
        }
        for h in &self.dead {
            assert_eq!(e.request(*h), Err(RequestError::StaleHandle));
        }
    }

    fn unchanged(&self, e: &Engine<'_>, before: &Snapshot, what: &str) {
        assert_eq!(
            &self.snapshot(e),
            before,
            "a failed {what} changed the engine"
        );
    }

    // ----- the calls -----

    fn add(&mut self, e: &mut Engine<'_>, op: &AddOp) {
        let id = self.next_id;
        self.next_id += 1;
        let hashes = hashes_of(op.family, op.prompt, self.cfg.block_size);
        let desc = RequestDesc {
            external_id: id,
            prompt_tokens: op.prompt,
            max_output_tokens: op.cap,
            predicted_output_tokens: op.pred,
            priority: op.priority,
            deadline: op.deadline_in.map(|d| Instant(self.now + d)),
            ttft_target_us: op.ttft,
            tenant: op.tenant,
            prompt_block_hashes: &hashes,
            cache_salt: op.salt,
        };
        let expect = self.expect_add(&desc, self.now);
        let before = self.snapshot(e);
        match e.add_request(&desc, Instant(self.now)) {
            Ok(h) => {
                assert_eq!(expect, Ok(()), "accepted {desc:?}");
                if let Some(o) = &mut self.oracle {
                    o.on_add(&desc, h);
                }
                self.last = self.now;
                self.added += 1;
                self.reqs.insert(
                    id,
                    MReq {
                        h,
                        prompt: op.prompt,
                        generated: 0,
                        cap: op.cap,
                        target: op.target,
                        paused: false,
                        hashes: hashes.len() as u32,
                    },
                );
            }
            Err(err) => {
                assert_eq!(Err(err), expect, "{desc:?}");
                self.unchanged(e, &before, "add");
            }
        }
    }

    fn schedule(&mut self, e: &mut Engine<'_>) {
        if !self.pending.is_empty() {
            let before = self.snapshot(e);
            let err = e.schedule(Instant(self.now)).unwrap_err();
            assert_eq!(
                err,
                ScheduleError::ResultsPending {
                    missing: self.pending.len() as u32
                }
            );
            self.unchanged(e, &before, "schedule");
            return;
        }
        let runnable = self.reqs.values().filter(|r| !r.paused).count();
        let views_before: Vec<RequestView> = self
            .reqs
            .values()
            .map(|r| e.request(r.h).unwrap())
            .collect();

        let stats_before = e.stats();
        e.schedule(Instant(self.now)).expect("schedule");
        let plan = e.plan();
        check_preemptions_reported(&stats_before, &e.stats(), &plan);
        check_plan(&self.cfg, &plan, &mut self.tables);
        if let Some(o) = &mut self.oracle {
            o.apply_plan(&plan, e);
            o.check(e);
        }
        let rec = PlanRecord::of(&plan);
        self.last = self.now;
        // Progress, required whenever a request is not paused. Device KV is held only by
        // running requests and by evictable kept KV (paused, or resumed and not yet running).
        // With nothing running, the whole device is free but for that evictable KV, and the
        // head of the queue, which fits the device or is dropped, is admitted (watermark and
        // reservations do not apply to the first admission). With requests running, each
        // owes at least one token and the budget is at least 1; memory preemption evicts kept
        // KV first, stops once the rest fits and always keeps one request, whose blocks fit
        // the device (or it is dropped); budget a preemption frees goes to running requests
        // that got none.
        // A request whose KV this very plan swaps out (a pause's swap-out held for it, or an
        // eviction) cannot run in it: the swap-in would read host blocks the plan's swap-outs
        // write (plan contract). It runs from the next plan on.
        let outgoing: HashSet<u32> = rec.swap_out.iter().map(|p| p.dst).collect();
        let in_transit = self
            .reqs
            .values()
            .filter(|r| !r.paused)
            .filter(|r| {
                let Ok(v) = e.request(r.h) else { return false };
                if v.kv_tier != Some(augur::core::kv::Tier::Host) {
                    return false;
                }
                let mut table = vec![0u32; v.kv_blocks as usize];
                let n = e.block_table(r.h, 0, &mut table).unwrap();
                table[..n].iter().any(|b| outgoing.contains(b))
            })
            .count();
        let runnable = runnable - in_transit;
        if runnable > 0 {
            assert!(
                !rec.entries.is_empty() || !rec.dropped.is_empty(),
                "no progress with {runnable} runnable requests: {:?}\n{views_before:#?}",
                e.stats()
            );
        }
        for d in &rec.dropped {
            let r = &self.reqs[&d.external_id];
            assert!(!r.paused, "a paused request was dropped");
            assert_eq!(r.h, d.handle);
            self.retire(d.external_id);
            self.dropped += 1;
        }
        for p in &rec.preempted {
            let r = self
                .reqs
                .get(&p.external_id)
                .expect("preempted a live request");
            assert!(!r.paused, "a paused request was preempted");
            let v = e.request(r.h).expect("live");
            let want = match p.kind {
                PreemptionKind::Swap => RequestState::Swapped,
                PreemptionKind::Recompute => RequestState::Waiting,
                // Kept on the device; the same step may still evict it for memory (swap).
                PreemptionKind::Keep if v.state == RequestState::Swapped => RequestState::Swapped,
                PreemptionKind::Keep => RequestState::Waiting,
            };
            assert_eq!(v.state, want, "state after preemption {p:?}");
        }
        self.plan_ids.clear();
        self.reported.clear();
        for (en, _) in &rec.entries {
            let r = self
                .reqs
                .get(&en.external_id)
                .expect("entry for a live request");
            assert!(!r.paused, "entry for a paused request");
            assert_eq!(r.h, en.handle);
            let v = e.request(r.h).expect("live");
            assert_eq!(v.state, RequestState::Running);
            assert_eq!(en.computed_before + en.tokens, v.computed_tokens);
            assert_eq!(
                en.samples,
                en.computed_before + en.tokens == r.prompt + r.generated,
                "samples flag of {en:?}"
            );
            self.plan_ids.insert(en.external_id);
            self.pending.push(*en);
        }
        self.accepted = false;
        self.trace.push(Rec::Plan(rec));
    }

    /// A valid result for pending entry `en`, random unless `drain` (then it only finishes
    /// at the target length).
    fn result_for(&self, en: &ScheduledEntry, rng: &mut Rng, drain: bool) -> StepResult {
        let r = &self.reqs[&en.external_id];
        let mut res = StepResult::new(en.handle, en.samples as u32);
        let bs = self.cfg.block_size;
        if en.samples {
            if r.generated + 1 >= r.target || (!drain && rng.chance(self.finish_pct)) {
                res.finished = true;
                if !drain && rng.chance(20) {
                    res.tokens = 0;
                }
            } else if !drain && rng.chance(self.pause_pct) {
                res.pause = Some(PauseRequest {
                    predicted_duration_us: rng.below(2_000_000),
                });
            }
        }
        if !drain && rng.chance(20) {
            res.predicted_remaining = Some(rng.unit() * 40.0);
        }
        let filled = (en.computed_before + en.tokens) / bs > en.computed_before / bs;
        if filled && !drain && rng.chance(30) {
            // An honest executor claims a hash only for a block past the prompt's hashed
            // blocks, and always the same one for the same block (see `claim_for`).
            let b = (en.computed_before + en.tokens) / bs - 1;
            if b >= r.hashes {
                res.filled_block_hash = Some(claim_for(en.external_id, b));
            }
        }
        res
    }

    /// Applies valid `results` to the model and checks the engine's finishes.
    fn apply(&mut self, e: &Engine<'_>, results: &[StepResult]) {
        if let Some(o) = &mut self.oracle {
            o.on_complete(results, e);
        }
        let mut expect = vec![];
        for res in results {
            let id = self.id_of(res.handle).expect("pending entry");
            let limit = self.cfg.token_limit();
            let r = self.reqs.get_mut(&id).unwrap();
            r.generated += res.tokens;
            let reason = if res.finished {
                Some(FinishReason::Stop)
            } else if r.cap.is_some_and(|c| r.generated >= c) {
                Some(FinishReason::MaxOutput)
            } else if r.prompt + r.generated >= limit {
                Some(FinishReason::Length)
            } else {
                None
            };
            self.pending.retain(|x| x.external_id != id);
            if res.pause.is_none() {
                self.reported.insert(id);
            }
            match reason {
                Some(reason) => {
                    expect.push(Finished {
                        handle: r.h,
                        external_id: id,
                        generated_tokens: r.generated,
                        reason,
                    });
                    self.retire(id);
                    self.finished += 1;
                }
                None if res.pause.is_some() => r.paused = true,
                None => {}
            }
        }
        assert_eq!(e.last_finished(), &expect[..], "finished requests");
        self.trace.push(Rec::Finished(expect));
    }

    fn complete(&mut self, e: &mut Engine<'_>, seed: u64) {
        let mut rng = Rng(seed);
        if self.pending.is_empty() {
            // Nothing is expected: any result is for an unscheduled request.
            let h = match self.pick(rng.next() as usize, |_| true) {
                Some(id) if rng.chance(70) => self.reqs[&id].h,
                _ => self.bad_handle(rng.next() as usize),
            };
            let kind = self.expect_unscheduled(h);
            let before = self.snapshot(e);
            assert_eq!(
                e.complete(&[StepResult::new(h, 1)], Instant(self.now)),
                Err(CompleteError::Result { index: 0, kind })
            );
            self.unchanged(e, &before, "complete");
            // An empty batch is fine.
            e.complete(&[], Instant(self.now)).expect("empty complete");
            self.last = self.now;
            assert!(e.last_finished().is_empty());
            self.trace.push(Rec::Finished(vec![]));
            return;
        }
        if rng.chance(8) {
            // The caller aborts a scheduled request: no result is expected for it any more.
            let k = rng.below(self.pending.len() as u64) as usize;
            let id = self.pending[k].external_id;
            e.abort(self.reqs[&id].h, Instant(self.now)).expect("abort");
            self.last = self.now;
            self.retire(id);
            self.aborted += 1;
            self.check(e);
            if self.pending.is_empty() {
                return;
            }
        }
        let mut batch: Vec<ScheduledEntry> = self.pending.clone();
        if rng.chance(30) {
            let keep = 1 + rng.below(batch.len() as u64) as usize;
            batch.truncate(keep);
        }
        let results: Vec<StepResult> = batch
            .iter()
            .map(|en| self.result_for(en, &mut rng, false))
            .collect();
        if rng.chance(30) {
            self.bad_complete(e, &batch, &mut rng);
        }
        if !self.accepted && batch.len() == self.pending.len() && rng.chance(40) {
            // The whole rest of the plan in one sparse call: only the results that are not
            // the entry's default, shuffled (they are applied in plan order all the same).
            let mut exceptions = exceptions_of(&batch, &results);
            rng.shuffle(&mut exceptions);
            e.complete_except(&exceptions, Instant(self.now))
                .expect("valid sparse results");
        } else {
            e.complete(&results, Instant(self.now))
                .expect("valid results");
        }
        self.accepted = true;
        self.last = self.now;
        self.apply(e, &results);
    }

    /// A batch of results with one bad result: the specific error, and no change.
    fn bad_complete(&mut self, e: &mut Engine<'_>, batch: &[ScheduledEntry], rng: &mut Rng) {
        let bs = self.cfg.block_size;
        let mut results: Vec<StepResult> = batch
            .iter()
            .map(|en| StepResult::new(en.handle, en.samples as u32))
            .collect();
        let k = rng.below(results.len() as u64) as usize;
        let en = batch[k];
        let expected_tokens = en.samples as u32;
        let mut now = self.now;
        let err = match rng.below(9) {
            0 => {
                results[k].tokens = expected_tokens + 1 + rng.below(3) as u32;
                let got = results[k].tokens;
                CompleteError::Result {
                    index: k,
                    kind: if en.samples {
                        ResultErrorKind::TooManyTokens { max: 1, got }
                    } else {
                        ResultErrorKind::WrongTokenCount { expected: 0, got }
                    },
                }
            }
            1 => {
                results[k].predicted_remaining =
                    Some([f64::NAN, -1.0, f64::INFINITY][rng.below(3) as usize]);
                CompleteError::Result {
                    index: k,
                    kind: ResultErrorKind::InvalidPrediction,
                }
            }
            2 => {
                results[k].finished = true;
                results[k].pause = Some(PauseRequest {
                    predicted_duration_us: 1,
                });
                CompleteError::Result {
                    index: k,
                    kind: ResultErrorKind::PauseWhenFinished,
                }
            }
            3 if !en.samples => {
                if rng.chance(50) {
                    results[k].finished = true;
                } else {
                    results[k].pause = Some(PauseRequest {
                        predicted_duration_us: 1,
                    });
                }
                CompleteError::Result {
                    index: k,
                    kind: ResultErrorKind::NotAtSamplingPoint,
                }
            }
            4 if (en.computed_before + en.tokens) / bs <= en.computed_before / bs => {
                results[k].filled_block_hash = Some(7);
                CompleteError::Result {
                    index: k,
                    kind: ResultErrorKind::NoBlockFilled,
                }
            }
            5 => {
                results.push(results[k]);
                CompleteError::Result {
                    index: results.len() - 1,
                    kind: ResultErrorKind::Duplicate,
                }
            }
            6 => {
                let h = self.bad_handle(rng.next() as usize);
                results.insert(k, StepResult::new(h, 1));
                CompleteError::Result {
                    index: k,
                    kind: ResultErrorKind::StaleHandle,
                }
            }
            7 => {
                let pending: HashSet<u64> = self.pending.iter().map(|x| x.external_id).collect();
                match self.pick(rng.next() as usize, |r| {
                    !pending.contains(&self.id_of(r.h).unwrap())
                }) {
                    Some(id) => {
                        let h = self.reqs[&id].h;
                        results.insert(k, StepResult::new(h, 1));
                        CompleteError::Result {
                            index: k,
                            kind: self.expect_unscheduled(h),
                        }
                    }
                    None => return,
                }
            }
            _ if self.last > 0 => {
                now = self.last - 1;
                CompleteError::TimeWentBackwards
            }
            _ => return,
        };
        let before = self.snapshot(e);
        assert_eq!(e.complete(&results, Instant(now)), Err(err), "{results:?}");
        self.unchanged(e, &before, "complete");
    }

    fn resume(&mut self, e: &mut Engine<'_>, pick: usize, appended: u32) {
        let Some(id) = self.pick(pick, |r| r.paused) else {
            return;
        };
        let h = self.reqs[&id].h;
        let expect = self.expect_resume(h, appended, self.now);
        let before = self.snapshot(e);
        let got = e.resume_with_tokens(h, appended, Instant(self.now));
        assert_eq!(got, expect);
        if got.is_ok() {
            self.last = self.now;
            let r = self.reqs.get_mut(&id).unwrap();
            r.paused = false;
            r.prompt += appended;
        } else {
            self.unchanged(e, &before, "resume");
        }
    }

    fn bad(&mut self, e: &mut Engine<'_>, kind: u8, pick: usize, seed: u64) {
        let mut rng = Rng(seed);
        let before = self.snapshot(e);
        let now = Instant(self.now);
        let live = self.pick(pick, |_| true).map(|id| (id, self.reqs[&id].h));
        match kind {
            0..=5 => {
                let mut desc = RequestDesc::new(self.next_id + 1_000_000, 1 + rng.below(8) as u32);
                let too_many: Vec<u64> = (0..=(desc.prompt_tokens / self.cfg.block_size) as u64)
                    .map(|k| 99 << 40 | k)
                    .collect();
                match kind {
                    0 => desc.prompt_tokens = 0,
                    1 => {
                        desc.predicted_output_tokens =
                            Some([f64::NAN, -0.5, f64::INFINITY][rng.below(3) as usize])
                    }
                    2 => match live {
                        Some((id, _)) => desc.external_id = id,
                        None => return,
                    },
                    3 => desc.max_output_tokens = Some(0),
                    4 => desc.prompt_block_hashes = &too_many,
                    _ => desc.tenant = self.cfg.max_tenants + rng.below(3) as u32,
                }
                let expect = self.expect_add(&desc, self.now);
                if expect.is_ok() {
                    return;
                }
                assert_eq!(e.add_request(&desc, now).map(|_| ()), expect);
            }
            6 => {
                let h = self.bad_handle(rng.next() as usize);
                match rng.below(4) {
                    0 => assert_eq!(
                        e.update_prediction(h, 1.0, now),
                        Err(RequestError::StaleHandle)
                    ),
                    1 => assert_eq!(e.abort(h, now), Err(RequestError::StaleHandle)),
                    2 => assert_eq!(e.resume(h, now), Err(RequestError::StaleHandle)),
                    _ => assert_eq!(e.request(h), Err(RequestError::StaleHandle)),
                }
            }
            7 => {
                let Some((_, h)) = live else { return };
                let p = [f64::NAN, -1.0, f64::NEG_INFINITY, f64::INFINITY][rng.below(4) as usize];
                assert_eq!(
                    e.update_prediction(h, p, now),
                    Err(RequestError::InvalidPrediction)
                );
            }
            8 => {
                let Some(id) = self.pick(pick, |r| !r.paused) else {
                    return;
                };
                let h = self.reqs[&id].h;
                assert_eq!(
                    e.resume_with_tokens(h, rng.below(4) as u32, now),
                    Err(RequestError::WrongState)
                );
            }
            9 => {
                let Some(id) = self.pick(pick, |r| r.paused) else {
                    return;
                };
                let h = self.reqs[&id].h;
                let appended = [u32::MAX, u32::MAX / 2, 100_000][rng.below(3) as usize];
                if self.expect_resume(h, appended, self.now) != Err(RequestError::TooManyTokens) {
                    return; // fits (huge blocks)
                }
                assert_eq!(
                    e.resume_with_tokens(h, appended, now),
                    Err(RequestError::TooManyTokens)
                );
            }
            10 => {
                if self.last == 0 {
                    return;
                }
                let back = Instant(self.last - 1);
                match rng.below(5) {
                    0 => {
                        let d = RequestDesc::new(self.next_id + 2_000_000, 1);
                        if self.expect_add(&d, self.last - 1) != Err(AddError::TimeWentBackwards) {
                            return;
                        }
                        assert_eq!(
                            e.add_request(&d, back).map(|_| ()),
                            Err(AddError::TimeWentBackwards)
                        );
                    }
                    1 => {
                        let Some((_, h)) = live else { return };
                        assert_eq!(
                            e.update_prediction(h, 3.0, back),
                            Err(RequestError::TimeWentBackwards)
                        );
                    }
                    2 => {
                        let Some((_, h)) = live else { return };
                        assert_eq!(e.abort(h, back), Err(RequestError::TimeWentBackwards));
                    }
                    3 => {
                        let expect = if self.pending.is_empty() {
                            ScheduleError::TimeWentBackwards
                        } else {
                            ScheduleError::ResultsPending {
                                missing: self.pending.len() as u32,
                            }
                        };
                        assert_eq!(e.schedule(back).unwrap_err(), expect);
                    }
                    _ => {
                        let Some(id) = self.pick(pick, |r| r.paused) else {
                            return;
                        };
                        let h = self.reqs[&id].h;
                        if self.expect_resume(h, 0, self.last - 1)
                            != Err(RequestError::TimeWentBackwards)
                        {
                            return;
                        }
                        assert_eq!(e.resume(h, back), Err(RequestError::TimeWentBackwards));
                    }
                }
            }
            11 => {
                // A forged handle: a live slot with the wrong generation.
                let Some((_, h)) = live else { return };
                let forged = RequestHandle::from_raw(h.to_raw() ^ (1 << (32 + rng.below(8))));
                assert_eq!(
                    e.update_prediction(forged, 1.0, now),
                    Err(RequestError::StaleHandle)
                );
                assert_eq!(e.abort(forged, now), Err(RequestError::StaleHandle));
            }
            _ => {
                // A result for a request not awaiting one.
                let pending: HashSet<u64> = self.pending.iter().map(|x| x.external_id).collect();
                let Some(id) = self.pick(pick, |r| !pending.contains(&self.id_of(r.h).unwrap()))
                else {
                    return;
                };
                let h = self.reqs[&id].h;
                let kind = self.expect_unscheduled(h);
                assert_eq!(
                    e.complete(&[StepResult::new(h, rng.below(2) as u32)], now),
                    Err(CompleteError::Result { index: 0, kind })
                );
            }
        }
        self.unchanged(e, &before, "bad call");
    }

    fn run(&mut self, e: &mut Engine<'_>, op: &Op) {
        self.now += 50;
        match op {
            Op::Add(a) => self.add(e, a),
            Op::Schedule => self.schedule(e),
            Op::Complete(seed) => self.complete(e, *seed),
            Op::Resume { pick, appended } => self.resume(e, *pick, *appended),
            Op::Update { pick, pred } => {
                if let Some(id) = self.pick(*pick, |_| true) {
                    e.update_prediction(self.reqs[&id].h, *pred, Instant(self.now))
                        .expect("update");
                    self.last = self.now;
                }
            }
            Op::Abort { pick } => {
                if let Some(id) = self.pick(*pick, |_| true) {
                    e.abort(self.reqs[&id].h, Instant(self.now)).expect("abort");
                    self.last = self.now;
                    self.retire(id);
                    self.aborted += 1;
                }
            }
            Op::AbortPaused { pick } => {
                if let Some(id) = self.pick(*pick, |r| r.paused) {
                    e.abort(self.reqs[&id].h, Instant(self.now)).expect("abort");
                    self.last = self.now;
                    self.retire(id);
                    self.aborted += 1;
                }
            }
            Op::Bad(kind, pick, seed) => self.bad(e, *kind, *pick, *seed),
            Op::Wait(us) => self.now += us,
        }
        self.check(e);
    }

    /// Liveness: no more arrivals; resume paused requests, complete every entry (finishing at
    /// the target length) and schedule until nothing is live, within a bound of steps.
    fn drain(&mut self, e: &mut Engine<'_>) -> usize {
        // Each request needs at most `len = context + target` tokens computed per run; a
        // preemption by recompute costs one more run, and ranks that move (LAS, MLFQ,
        // slack...) can preempt once per generated token. Each step computes ≥ 1 token.
        let bound: u64 = 1000
            + self
                .reqs
                .values()
                .map(|r| {
                    let len = (r.prompt + r.target.max(r.generated)) as u64;
                    4 * len * (r.target.saturating_sub(r.generated) as u64 + 2)
                })
                .sum::<u64>();
        let mut rng = Rng(0);
        let mut steps = 0u64;
        loop {
            self.now += 1000;
            let paused: Vec<u64> = self.pick_all(|r| r.paused);
            for id in paused {
                let h = self.reqs[&id].h;
                if self.expect_resume(h, 0, self.now) == Err(RequestError::TooManyTokens) {
                    // Its next token can never fit: the caller can only abort it.
                    assert_eq!(
                        e.resume(h, Instant(self.now)),
                        Err(RequestError::TooManyTokens)
                    );
                    e.abort(h, Instant(self.now)).expect("abort");
                    self.retire(id);
                    self.aborted += 1;
                    continue;
                }
                e.resume(h, Instant(self.now)).expect("resume");
                self.reqs.get_mut(&id).unwrap().paused = false;
            }
            if !self.pending.is_empty() {
                let batch = self.pending.clone();
                let results: Vec<StepResult> = batch
                    .iter()
                    .map(|en| self.result_for(en, &mut rng, true))
                    .collect();
                e.complete(&results, Instant(self.now)).expect("complete");
                self.apply(e, &results);
            }
            self.last = self.now;
            self.check(e);
            if self.reqs.is_empty() {
                return steps as usize;
            }
            assert!(
                steps < bound,
                "not drained within {bound} steps: {:?}\n{:?}",
                e.stats(),
                self.reqs
            );
            self.schedule(e);
            self.check(e);
            steps += 1;
        }
    }

    fn pick_all(&self, filter: impl Fn(&MReq) -> bool) -> Vec<u64> {
        self.reqs
            .iter()
            .filter(|(_, r)| filter(r))
            .map(|(&id, _)| id)
            .collect()
    }
}

/// Runs `ops` then drains; returns the trace of plans and finishes, and with `oracle` what
/// the KV content oracle checked.
/// Runs `ops` on a fresh engine under the model's checks (and the KV content oracle with
/// `oracle`); the second run of each case goes without the oracle and plans every step by
/// the engine's general path (`Engine::set_general_path_only`), so comparing the two traces
/// checks determinism and that the steady one-pass path plans as the general one does.
fn run_case(
    cfg: EngineConfig,
    ops: &[Op],
    pause_pct: u64,
    oracle: bool,
) -> (Vec<Rec>, Option<OracleStats>) {
    let mut buf = EngineBuffers::new(&cfg).expect("valid config");
    let mut e = buf.engine(cfg).expect("engine");
    e.set_general_path_only(!oracle);
    let mut m = Model::new(cfg);
    m.pause_pct = pause_pct;
    if oracle {
        m.oracle = Some(KvOracle::new(&cfg));
    }
    m.check(&e);
    for op in ops {
        m.run(&mut e, op);
    }
    m.drain(&mut e);
    assert_eq!(e.live_requests(), 0);
    (m.trace, m.oracle.map(|o| o.stats))
}

fn soak() -> bool {
    std::env::var_os("AUGUR_SOAK").is_some()
}

fn cases() -> u32 {
    if soak() { 51_200 } else { 512 }
}

fn corner_cases() -> u32 {
    if soak() { 102_400 } else { 1024 }
}

// ----- corner workloads -----

/// The corner a generated case aims at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Corner {
    /// Block size 1–2 and prompts of 30–200 tokens: tables of many chunks (14 entries each),
    /// long shared family prefixes.
    LongTables,
    /// 30–40 requests added at once sharing one 50–100-block prefix chain, in 1–3 namespaces
    /// with identical chains; table chunks, not blocks, run out first.
    SharedCrowd,
    /// A host pool of 1–6 blocks, swap preemption and `Swap`/`Auto` pauses costed to swap,
    /// many pauses and aborts of paused requests (pending swap-outs), one preemption per step.
    TinyHost,
    /// Huge blocks (2^12–2^26 tokens) and few of them: u32-scale token counts, prompts at and
    /// around `TOKEN_LIMIT`, budgets up to `u32::MAX`.
    HugeBlocks,
}

#[derive(Clone, Debug)]
struct CornerCase {
    corner: Corner,
    cfg: EngineConfig,
    ops: Vec<Op>,
    pause_pct: u64,
}

fn any_pause() -> impl Strategy<Value = PauseMode> {
    prop_oneof![
        1 => Just(PauseMode::Preserve),
        1 => Just(PauseMode::Discard),
        2 => Just(PauseMode::Swap),
        2 => Just(PauseMode::Auto)
    ]
}

fn max_preemptions() -> impl Strategy<Value = u32> {
    prop_oneof![3 => Just(1u32), 1 => 2u32..=4]
}

/// An `AddOp` with the given prompt lengths, hashes and namespaces.
fn corner_add(
    prompt: impl Strategy<Value = u32>,
    family: impl Strategy<Value = Option<Family>>,
    salts: u64,
    target: impl Strategy<Value = u32>,
) -> impl Strategy<Value = AddOp> {
    (
        prompt,
        prop::option::of(1u32..=40),
        prop::option::of(0.0..60.0f64),
        -1i32..=1,
        prop::option::of(0u64..5_000_000),
        family,
        0..salts,
        target,
    )
        .prop_map(
            |(prompt, cap, pred, priority, deadline_in, family, salt, target)| AddOp {
                prompt,
                cap,
                pred,
                priority,
                tenant: 0,
                deadline_in,
                ttft: None,
                family,
                salt,
                target,
            },
        )
}

/// The operations of a corner case: mostly steps and results, adds from `add`, pauses resumed
/// and aborted, few bad calls.
fn corner_op(add: impl Strategy<Value = AddOp>) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => add.prop_map(Op::Add),
        7 => Just(Op::Schedule),
        8 => any::<u64>().prop_map(Op::Complete),
        2 => (any::<usize>(), prop_oneof![Just(0u32), 0u32..10]).prop_map(|(pick, appended)| Op::Resume { pick, appended }),
        1 => (any::<usize>(), 0.0..80.0f64).prop_map(|(pick, pred)| Op::Update { pick, pred }),
        1 => any::<usize>().prop_map(|pick| Op::Abort { pick }),
        3 => any::<usize>().prop_map(|pick| Op::AbortPaused { pick }),
        1 => (0u8..13, any::<usize>(), any::<u64>()).prop_map(|(k, p, s)| Op::Bad(k, p, s)),
        1 => (0u64..3_000_000).prop_map(Op::Wait),
    ]
}

fn long_tables() -> impl Strategy<Value = CornerCase> {
    (
        config(),
        (1u32..=2, 100u32..=600, 0u32..=16, 40u32..=48, 4u32..=40),
        (
            8u32..=512,
            prop_oneof![Just(0u32), 4u32..=64],
            max_preemptions(),
        ),
        any_pause(),
    )
        .prop_flat_map(
            |(base, (bs, dev, host, reqs, run), (budget, chunk, pre), pause)| {
                let mut c = base;
                c.block_size = bs;
                c.device_blocks = dev;
                c.host_blocks = host;
                c.max_requests = reqs;
                c.max_running = run.min(reqs);
                c.token_budget = budget;
                c.prefill_chunk = chunk;
                c.max_preemptions_per_step = pre;
                c.pause = pause;
                c.max_tenants = 1;
                c.policy.fair_share = false;
                c.max_sequence_tokens = 0;
                c.prefix_caching = true;
                let family = prop::option::weighted(
                    0.8,
                    (0u64..3, 0u64..4, 30u32..=200, 10u32..=100)
                        .prop_map(|(f, v, n, shared)| Family { f, v, n, shared }),
                );
                let add = corner_add(30u32..=200, family, 2, 1u32..=20);
                (Just(c), prop::collection::vec(corner_op(add), 20..120)).prop_map(|(cfg, ops)| {
                    CornerCase {
                        corner: Corner::LongTables,
                        cfg,
                        ops,
                        pause_pct: 15,
                    }
                })
            },
        )
}

fn shared_crowd() -> impl Strategy<Value = CornerCase> {
    (
        config(),
        (
            prop_oneof![Just(1u32), Just(2), Just(4), Just(16)],
            50u32..=100,
            1u64..=3,
        ),
        (10u32..=300, 0u32..=32, 8u32..=64),
        (
            64u32..=4096,
            prop_oneof![Just(0u32), 16u32..=512],
            max_preemptions(),
        ),
        (30usize..=40, any_pause()),
    )
        .prop_flat_map(
            |(base, (bs, shared, salts), (extra, host, run), (budget, chunk, pre), (n, pause))| {
                let mut c = base;
                c.block_size = bs;
                c.device_blocks = shared * salts as u32 + extra;
                c.host_blocks = host;
                c.max_requests = 64;
                c.max_running = run;
                c.token_budget = budget;
                c.prefill_chunk = chunk;
                c.max_preemptions_per_step = pre;
                c.pause = pause;
                c.prefix_caching = true;
                c.max_tenants = 1;
                c.policy.fair_share = false;
                c.max_sequence_tokens = 0;
                // Every crowd prompt: the shared chain, then a tail of its own (variant).
                let crowd = corner_add(
                    (shared * bs + 1)..=(shared * bs + 2 * bs),
                    (0u64..200).prop_map(move |v| {
                        Some(Family {
                            f: 0,
                            v,
                            n: u32::MAX,
                            shared,
                        })
                    }),
                    salts,
                    1u32..=12,
                );
                let later = corner_add(
                    1u32..=(shared * bs + 2 * bs),
                    (0u64..200).prop_map(move |v| {
                        Some(Family {
                            f: 0,
                            v,
                            n: u32::MAX,
                            shared,
                        })
                    }),
                    salts,
                    1u32..=12,
                );
                (
                    Just(c),
                    prop::collection::vec(crowd, n..=n),
                    prop::collection::vec(corner_op(later), 20..100),
                )
                    .prop_map(|(cfg, adds, rest)| CornerCase {
                        corner: Corner::SharedCrowd,
                        cfg,
                        ops: adds.into_iter().map(Op::Add).chain(rest).collect(),
                        pause_pct: 10,
                    })
            },
        )
}

fn tiny_host() -> impl Strategy<Value = CornerCase> {
    (
        config(),
        (1u32..=4, 12u32..=48, 1u32..=6, 1u32..=8),
        (
            prop_oneof![Just(PauseMode::Swap), Just(PauseMode::Auto)],
            prop_oneof![Just(PreemptionMode::Swap), Just(PreemptionMode::Auto)],
            (20.0..100.0f64, 0.0..2.0f64),
        ),
        (4u32..=64, prop_oneof![Just(0u32), 1u32..=16]),
    )
        .prop_flat_map(
            |(base, (bs, dev, host, run), (pause, pre, (rc, sc)), (budget, chunk))| {
                let mut c = base;
                c.block_size = bs;
                c.device_blocks = dev;
                c.host_blocks = host;
                c.max_running = run;
                c.token_budget = budget;
                c.prefill_chunk = chunk;
                c.max_preemptions_per_step = 1;
                c.pause = pause;
                c.preemption = pre;
                c.costs = CostWeights {
                    recompute_us_per_token: rc,
                    swap_us_per_block: sc,
                };
                let family =
                    prop::option::of(
                        (0u64..2, 0u64..3, 0u32..=10, 0u32..=4)
                            .prop_map(|(f, v, n, shared)| Family { f, v, n, shared }),
                    );
                let add = corner_add(1u32..=12, family, 2, 1u32..=20);
                (Just(c), prop::collection::vec(corner_op(add), 40..200)).prop_map(|(cfg, ops)| {
                    CornerCase {
                        corner: Corner::TinyHost,
                        cfg,
                        ops,
                        pause_pct: 35,
                    }
                })
            },
        )
}

fn huge_blocks() -> impl Strategy<Value = CornerCase> {
    const LIMIT: u32 = augur::core::engine::TOKEN_LIMIT;
    (
        config(),
        (
            prop_oneof![
                Just(1u32 << 12),
                Just(1 << 16),
                Just(1 << 20),
                Just(1 << 24),
                Just(1 << 26)
            ],
            2u32..=64,
            0u32..=8,
        ),
        (
            prop_oneof![Just(u32::MAX), Just(1u32 << 30), (1u32 << 20)..=u32::MAX],
            prop_oneof![Just(0u32), (1u32 << 16)..=(1 << 30)],
            prop_oneof![3 => Just(0u32), 1 => Just(LIMIT), 1 => 2u32..=LIMIT],
            max_preemptions(),
        ),
        any_pause(),
    )
        .prop_flat_map(
            |(base, (bs, dev, host), (budget, chunk, max_seq, pre), pause)| {
                let mut c = base;
                c.block_size = bs;
                c.device_blocks = dev;
                c.host_blocks = host;
                c.token_budget = budget;
                c.prefill_chunk = chunk;
                c.max_sequence_tokens = max_seq;
                c.max_preemptions_per_step = pre;
                c.pause = pause;
                let capacity = (dev as u64 * bs as u64).min(u32::MAX as u64) as u32;
                let prompt = prop_oneof![
                    2 => 1u32..=1000,
                    2 => 1u32..=bs.saturating_mul(3),
                    3 => 1u32..=capacity,
                    1 => Just(LIMIT - 2),
                    1 => Just(LIMIT - 1),
                    1 => Just(LIMIT),
                    1 => Just(capacity.saturating_sub(1).max(1)),
                    1 => (1u32 << 20)..=u32::MAX,
                ];
                let family =
                    prop::option::of(
                        (0u64..2, 0u64..3, 0u32..=64, 0u32..=8)
                            .prop_map(|(f, v, n, shared)| Family { f, v, n, shared }),
                    );
                let add = corner_add(prompt, family, 2, 1u32..=8);
                (Just(c), prop::collection::vec(corner_op(add), 10..80)).prop_map(|(cfg, ops)| {
                    CornerCase {
                        corner: Corner::HugeBlocks,
                        cfg,
                        ops,
                        pause_pct: 20,
                    }
                })
            },
        )
}

fn corner_case() -> impl Strategy<Value = CornerCase> {
    prop_oneof![long_tables(), shared_crowd(), tiny_host(), huge_blocks()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model_makes_progress_drains_and_is_deterministic(
        cfg in config(),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        let (a, _) = run_case(cfg, &ops, 12, true);
        let (b, _) = run_case(cfg, &ops, 12, false);
        prop_assert!(
            a == b,
            "two engines given the same calls planned differently (the second by the general path only)"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: corner_cases(), ..ProptestConfig::default() })]

    /// The same model and checks, with the KV content oracle, on the corner workloads.
    #[test]
    fn corner_workloads_keep_the_plan_contract(case in corner_case()) {
        let (a, _) = run_case(case.cfg, &case.ops, case.pause_pct, true);
        let (b, _) = run_case(case.cfg, &case.ops, case.pause_pct, false);
        prop_assert!(
            a == b,
            "two engines given the same calls planned differently (the second by the general path only)"
        );
    }
}

/// The corner workloads reach their corners: a fixed sample of each (deterministic seeds),
/// with what the oracle checked summed per corner and required to be non-trivial.
#[test]
fn corner_workloads_reach_the_corners() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let per_corner = if soak() { 500 } else { 24 };
    let mut runner = TestRunner::deterministic();
    let mut sums: BTreeMap<Corner, (u32, OracleStats)> = BTreeMap::new();
    let strategies: [BoxedStrategy<CornerCase>; 4] = [
        long_tables().boxed(),
        shared_crowd().boxed(),
        tiny_host().boxed(),
        huge_blocks().boxed(),
    ];
    for strategy in &strategies {
        for _ in 0..per_corner {
            let case = strategy.new_tree(&mut runner).unwrap().current();
            let (_, stats) = run_case(case.cfg, &case.ops, case.pause_pct, true);
            let st = stats.unwrap();
            let e = sums.entry(case.corner).or_insert((
                0,
                OracleStats {
                    min_free_chunks: u32::MAX,
                    ..Default::default()
                },
            ));
            e.0 += 1;
            let t = &mut e.1;
            t.plans += st.plans;
            t.entries += st.entries;
            t.blocks_read += st.blocks_read;
            t.blocks_held_checked += st.blocks_held_checked;
            t.host_blocks_checked += st.host_blocks_checked;
            t.swap_out_pairs += st.swap_out_pairs;
            t.swap_in_pairs += st.swap_in_pairs;
            t.copy_pairs += st.copy_pairs;
            t.shared_blocks += st.shared_blocks;
            t.foreign_reads += st.foreign_reads;
            t.claims += st.claims;
            t.roundtrips += st.roundtrips;
            t.wasted_swap_outs += st.wasted_swap_outs;
            t.max_table = t.max_table.max(st.max_table);
            t.max_computed = t.max_computed.max(st.max_computed);
            t.min_free_chunks = t.min_free_chunks.min(st.min_free_chunks);
        }
    }
    for (corner, (n, st)) in &sums {
        eprintln!("{corner:?}: {n} cases, {st:?}");
    }
    let get = |c: Corner| sums[&c].1;
    let long = get(Corner::LongTables);
    assert!(
        long.max_table >= 100 && long.foreign_reads > 0,
        "long tables: {long:?}"
    );
    let crowd = get(Corner::SharedCrowd);
    assert!(
        crowd.shared_blocks > 0 && crowd.foreign_reads > 0 && crowd.min_free_chunks <= 2,
        "shared crowd: {crowd:?}"
    );
    let tiny = get(Corner::TinyHost);
    assert!(
        tiny.host_blocks_checked > 0 && tiny.swap_in_pairs > 0 && tiny.swap_out_pairs > 0,
        "tiny host: {tiny:?}"
    );
    let huge = get(Corner::HugeBlocks);
    assert!(huge.max_computed >= 1 << 28, "huge blocks: {huge:?}");
    assert!(get(Corner::HugeBlocks).plans > 0);
}

/// Aging bounds the wait of a long request under a continuous stream of short ones. One slot,
/// one short arrival per step, each short done in its one step: the load equals the service
/// rate, so without aging the long request (predicted 100 tokens against 1) never starts under
/// SJF or SPRPT. With aging β (rank units per second) its key `100 + β·a` is below the key
/// `1 + β·t` of every short arriving after `t − a > 99 / β` seconds, so it waits at most
/// `99 / β` seconds plus the shorts already queued ahead of it (the backlog stays at the
/// initial three, as arrivals equal departures) and a step of slack.
#[test]
fn aging_bounds_waiting_under_sjf_and_sprpt() {
    for kind in [PolicyKind::Sjf, PolicyKind::Sprpt] {
        for aging in [0.0, 20.0, 100.0] {
            let mut cfg = EngineConfig::new(4, 256, 1024);
            cfg.policy = Policy::new(kind);
            cfg.policy.aging_per_s = aging;
            cfg.max_running = 1;
            cfg.token_budget = 64;
            cfg.prefill_chunk = 64;
            cfg.watermark = 0.0;
            cfg.preemption = PreemptionMode::Recompute;
            let mut buf = EngineBuffers::new(&cfg).unwrap();
            let mut e = buf.engine(cfg).unwrap();
            let mut d = Driver::new(cfg);
            d.tick = 10_000; // 10 ms per step
            let tick_s = d.tick as f64 * 1e-6;
            let backlog = 3;
            for id in 0..backlog {
                d.add(&mut e, req(id, 4, 1.0), 1);
            }
            let long_arrival = d.now;
            d.add(&mut e, req(7, 4, 100.0), 100);
            let gap = 100.0 - 1.0;
            let mut started = None;
            for k in 0..800u64 {
                d.add(&mut e, req(1000 + k, 4, 1.0), 1);
                let s = d.step(&mut e);
                if started.is_none() && s.entries.iter().any(|x| x.0 == 7) {
                    started = Some(d.now - long_arrival);
                }
            }
            if aging == 0.0 {
                assert_eq!(
                    started, None,
                    "{kind:?}: without aging the long job starves"
                );
            } else {
                let bound_s = gap / aging + (backlog + 2) as f64 * tick_s;
                let waited = started.unwrap_or_else(|| panic!("{kind:?} β={aging}: starved"));
                assert!(
                    waited as f64 * 1e-6 <= bound_s,
                    "{kind:?} β={aging}: waited {waited} µs, bound {bound_s} s"
                );
            }
            d.drain(&mut e, 10_000);
        }
    }
}
