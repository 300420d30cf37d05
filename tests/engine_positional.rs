//! Positional results (`Engine::complete_entries`, `EntryResult`) and speculative decoding
//! (`EngineConfig::max_draft_tokens`):
//! - positional, handle-keyed and sparse completion are one engine: three engines driven by
//!   the same seeded workload, completing with `complete`, `complete_entries` (or
//!   `complete_entries_except`) and `complete_except` (only the non-default results, in random
//!   order), make
//!   identical plans, finishes and counters at every step, across policies, preemption and
//!   pause modes, host tiers and draft settings (every plan checked by `check_plan`, the KV
//!   content oracle and `Engine::audit` on both engines);
//! - every error of `complete_entries` names the offending position and changes nothing (the
//!   engine then takes the valid results and ends where an engine that never saw the bad calls
//!   ends);
//! - accepted draft tokens count as generated, are computed by the request's next entry (a
//!   short sampling prefill of exactly the tokens reported), and never pass the output cap or
//!   the token limit; `max_draft_tokens` above `MAX_DRAFT_TOKENS` is refused;
//! - speculative workloads with swaps, pauses and preemptions keep the plan contract (the KV
//!   content oracle).

mod engine_support;

use std::collections::{BTreeMap, HashMap};

use augur::core::engine::{
    CompleteError, Engine, EngineConfig, EngineConfigError, EngineStats, EntryException, EntryKind,
    EntryResult, FinishReason, Finished, MAX_DRAFT_TOKENS, PauseMode, PauseRequest, PreemptionMode,
    RequestDesc, RequestHandle, RequestView, ResultErrorKind, ScheduleError, ScheduledEntry,
    StepResult,
};
use augur::core::policy::{MlfqParams, Policy, PolicyKind};
use augur::core::time::Instant;
use augur::storage::EngineBuffers;
use engine_support::kv_oracle::{KvOracle, OracleStats};
use engine_support::rng::Rng;
use engine_support::{PlanRecord, check_plan, check_preemptions_reported, exceptions_of};

// ----- one engine with the executor-side checks -----

/// An engine and what checks its plans: mirrored tables (`check_plan`), the KV content oracle
/// and the audit.
struct Side<'a> {
    e: Engine<'a>,
    cfg: EngineConfig,
    oracle: KvOracle,
    tables: HashMap<u64, Vec<u32>>,
    scratch: Vec<u32>,
}

/// A plan copied out: the record (entries with their deltas, pairs, preempted, dropped) and
/// the plan's one block-id array.
type Copied = (PlanRecord, Vec<u32>);

impl<'a> Side<'a> {
    fn new(e: Engine<'a>) -> Self {
        let cfg = *e.config();
        Side {
            e,
            cfg,
            oracle: KvOracle::new(&cfg),
            tables: HashMap::new(),
            scratch: vec![0; (cfg.device_blocks + cfg.host_blocks) as usize],
        }
    }

    fn add(&mut self, desc: &RequestDesc<'_>, now: u64) -> Result<RequestHandle, String> {
        match self.e.add_request(desc, Instant(now)) {
            Ok(h) => {
                self.oracle.on_add(desc, h);
                Ok(h)
            }
            Err(x) => Err(format!("{x:?}")),
        }
    }

    fn abort(&mut self, id: u64, h: RequestHandle, now: u64) {
        self.e.abort(h, Instant(now)).expect("abort");
        self.oracle.on_abort(id);
        self.tables.remove(&id);
    }

    /// Schedules and checks the plan; returns a copy.
    fn schedule(&mut self, now: u64) -> Copied {
        let before = self.e.stats();
        self.e.schedule(Instant(now)).expect("schedule");
        let plan = self.e.plan();
        check_preemptions_reported(&before, &self.e.stats(), &plan);
        check_plan(&self.cfg, &plan, &mut self.tables);
        self.oracle.apply_plan(&plan, &self.e);
        self.oracle.check(&self.e);
        (PlanRecord::of(&plan), plan.blocks.to_vec())
    }

    /// After a successful complete (`results` as handle-keyed results).
    fn completed(&mut self, results: &[StepResult]) {
        self.oracle.on_complete(results, &self.e);
        for f in self.e.last_finished() {
            self.tables.remove(&f.external_id);
        }
        self.e.audit(&mut self.scratch).expect("audit");
    }
}

// ----- the workload -----

/// What the workload knows of a live request.
#[derive(Clone, Debug)]
struct WReq {
    h: RequestHandle,
    cap: Option<u32>,
    /// Output length at which the executor reports `FINISHED`.
    target: u32,
    /// Prompt blocks covered by hashes (claims are made only past them).
    hashes: u32,
    paused: bool,
    /// Output tokens reported for it (the sum of its results' `tokens`).
    generated: u32,
}

/// What a run did, summed for the "reached its corners" checks.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    steps: u64,
    sampled: u64,
    /// Accepted draft tokens reported (tokens − 1 of sampling entries reporting ≥ 1).
    drafts: u64,
    /// Entries that compute accepted drafts: a sampling prefill after the first output token.
    draft_prefills: u64,
    claims: u64,
    predictions: u64,
    preemptions: u64,
    swap_out: u64,
    swap_in: u64,
    pauses: u64,
    finished: u64,
    dropped: u64,
    aborted: u64,
    oracle_blocks_read: u64,
    oracle_host_checked: u64,
    prefix_hit_tokens: u64,
    /// Entries the sparse side (`complete_except`) left to their default result.
    defaults: u64,
    /// Steps the engines planned by the steady one-pass path.
    steady_steps: u64,
}

fn claim_for(id: u64, b: u32) -> u64 {
    1 << 63 | id << 20 | b as u64
}

/// Prompt-block hashes of request `id`: the first `shared` from family `f`'s chain, the rest
/// its own.
fn hashes_of(f: u64, id: u64, shared: u32, blocks: u32) -> Vec<u64> {
    (0..blocks as u64)
        .map(|k| {
            if k < shared as u64 {
                (f + 1) << 40 | k
            } else {
                (f + 1) << 40 | (id + 1) << 20 | k
            }
        })
        .collect()
}

/// The most tokens a sampling entry of request `v` may report: its sampled token plus
/// `max_draft_tokens`, within the output cap and the token limit.
fn max_report(cfg: &EngineConfig, v: &RequestView, cap: Option<u32>) -> u32 {
    let left_output = cap.unwrap_or(u32::MAX) - v.generated_tokens;
    let left_tokens = cfg.token_limit() - (v.prompt_tokens + v.generated_tokens);
    (1 + cfg.max_draft_tokens).min(left_output).min(left_tokens)
}

struct Work {
    cfg: EngineConfig,
    rng: Rng,
    live: BTreeMap<u64, WReq>,
    next_id: u64,
    /// Requests to add in all.
    total: u64,
    now: u64,
    tally: Tally,
}

impl Work {
    fn new(cfg: EngineConfig, seed: u64, total: u64) -> Self {
        Work {
            cfg,
            rng: Rng(seed),
            live: BTreeMap::new(),
            next_id: 1,
            total,
            now: 0,
            tally: Tally::default(),
        }
    }

    /// A random request (`hashes` receives its prompt-block hashes).
    fn desc(&mut self, hashes: &mut Vec<u64>) -> RequestDesc<'static> {
        let bs = self.cfg.block_size;
        let id = self.next_id;
        let r = &mut self.rng;
        let prompt = 1 + r.below(40) as u32;
        let full = prompt / bs;
        hashes.clear();
        if r.chance(50) {
            let f = r.below(3);
            let shared = r.below(full as u64 + 1) as u32;
            hashes.extend(hashes_of(f, id, shared, full));
        }
        RequestDesc {
            external_id: id,
            prompt_tokens: prompt,
            max_output_tokens: r.chance(50).then(|| 1 + r.below(24) as u32),
            predicted_output_tokens: r.chance(80).then(|| r.unit() * 30.0),
            priority: r.below(3) as i32,
            deadline: r.chance(30).then(|| Instant(self.now + r.below(2_000_000))),
            ttft_target_us: r.chance(20).then(|| r.below(500_000)),
            tenant: r.below(self.cfg.max_tenants as u64) as u32,
            ..RequestDesc::new(id, prompt)
        }
    }

    /// Valid results for `entries` (positional), with a refined prediction for some, and what
    /// they report in all. `drain`: only finishes at the target, no pauses, no finishes
    /// chosen at random.
    fn results(
        &mut self,
        e: &Engine<'_>,
        entries: &[ScheduledEntry],
        drain: bool,
    ) -> (Vec<EntryResult>, Vec<Option<f64>>) {
        let bs = self.cfg.block_size;
        let mut out = vec![];
        let mut preds = vec![];
        for en in entries {
            let w = self.live[&en.external_id].clone();
            let v = e.request(en.handle).expect("scheduled request is live");
            let r = &mut self.rng;
            let mut res = EntryResult::new(0);
            if en.samples {
                let max = max_report(&self.cfg, &v, w.cap);
                assert!(max >= 1, "a sampling entry may report nothing: {v:?}");
                res.tokens = if r.chance(40) {
                    1
                } else {
                    1 + r.below(max as u64) as u32
                };
                self.tally.sampled += 1;
                self.tally.drafts += u64::from(res.tokens - 1);
                if en.kind == EntryKind::Prefill && en.computed_before > 0 && v.generated_tokens > 0
                {
                    self.tally.draft_prefills += 1;
                }
                if v.generated_tokens + res.tokens >= w.target || (!drain && r.chance(4)) {
                    res.flags |= EntryResult::FINISHED;
                    if !drain && r.chance(20) {
                        res.tokens = 0;
                    }
                } else if !drain && r.chance(6) {
                    res.flags |= EntryResult::PAUSE;
                    res.pause_duration_us = r.below(2_000_000);
                    self.tally.pauses += 1;
                }
            }
            let end = en.computed_before + en.tokens;
            if end / bs > en.computed_before / bs && !drain && r.chance(30) {
                let b = end / bs - 1;
                if b >= w.hashes {
                    res.flags |= EntryResult::FILLED_BLOCK_HASH;
                    res.filled_block_hash = claim_for(en.external_id, b);
                    self.tally.claims += 1;
                }
            }
            let pred = (!drain && r.chance(20)).then(|| r.unit() * 40.0);
            out.push(res);
            preds.push(pred);
        }
        (out, preds)
    }
}

/// The handle-keyed form of positional results, with the refined predictions: built field
/// by field from the documented meaning of the flags (not through
/// `EntryResult::to_step_result`, which the positional path itself uses), and checked against
/// `to_step_result`.
fn keyed(
    entries: &[ScheduledEntry],
    pos: &[EntryResult],
    preds: &[Option<f64>],
) -> Vec<StepResult> {
    entries
        .iter()
        .zip(pos)
        .zip(preds)
        .map(|((en, r), p)| {
            let s = StepResult {
                handle: en.handle,
                tokens: r.tokens,
                finished: r.flags & EntryResult::FINISHED != 0,
                predicted_remaining: *p,
                filled_block_hash: (r.flags & EntryResult::FILLED_BLOCK_HASH != 0)
                    .then_some(r.filled_block_hash),
                pause: (r.flags & EntryResult::PAUSE != 0).then_some(PauseRequest {
                    predicted_duration_us: r.pause_duration_us,
                }),
            };
            let via = r.to_step_result(en.handle).expect("defined flags");
            assert_eq!(
                via,
                StepResult {
                    predicted_remaining: None,
                    ..s
                },
                "to_step_result of {r:?}"
            );
            s
        })
        .collect()
}

// ----- positional and keyed completion are the same engine -----

/// Drives three engines of `cfg` with one seeded workload: `a` completes with `complete`
/// (handle-keyed, refined predictions in the results), `b` with `complete_entries` or, in a
/// random half of the steps, `complete_entries_except` (then `update_prediction` for the same
/// predictions), `c` with `complete_except` (only the results that differ from an entry's
/// default, shuffled; the positional sparse exceptions are shuffled too). Every step all plans, finish lists
/// and counters must be identical; all are checked and audited. Ends by draining.
fn run_twins(cfg: EngineConfig, seed: u64, steps: usize, total: u64) -> (Tally, OracleStats) {
    let mut buf_a = EngineBuffers::new(&cfg).unwrap();
    let mut buf_b = EngineBuffers::new(&cfg).unwrap();
    let mut buf_c = EngineBuffers::new(&cfg).unwrap();
    let mut a = Side::new(buf_a.engine(cfg).unwrap());
    let mut b = Side::new(buf_b.engine(cfg).unwrap());
    let mut c = Side::new(buf_c.engine(cfg).unwrap());
    // `d` is `a` planned by the general path only: the steady one-pass path must not change
    // any plan.
    let mut buf_d = EngineBuffers::new(&cfg).unwrap();
    let mut d = Side::new(buf_d.engine(cfg).unwrap());
    d.e.set_general_path_only(true);
    let mut w = Work::new(cfg, seed, total);
    let mut hashes = vec![];
    let ctx = |step: usize| format!("seed {seed}, step {step}, {cfg:?}");
    let mut step = 0usize;
    loop {
        let drain = step >= steps;
        if drain && a.e.live_requests() == 0 {
            break;
        }
        assert!(step < steps + 3000, "not drained: {:?}", a.e.stats());
        step += 1;
        w.now += 1000;
        let now = w.now;
        // Arrivals.
        if !drain && w.next_id <= w.total && w.rng.chance(45) {
            for _ in 0..1 + w.rng.below(3) {
                if w.next_id > w.total {
                    break;
                }
                let desc = w.desc(&mut hashes);
                let desc = RequestDesc {
                    prompt_block_hashes: &hashes,
                    ..desc
                };
                let target = 1 + w.rng.below(40) as u32;
                let (ra, rb) = (a.add(&desc, now), b.add(&desc, now));
                assert_eq!(ra, rb, "add, {}", ctx(step));
                assert_eq!(ra, c.add(&desc, now), "add, {}", ctx(step));
                assert_eq!(ra, d.add(&desc, now), "add, {}", ctx(step));
                w.next_id += 1;
                if let Ok(h) = ra {
                    w.live.insert(
                        desc.external_id,
                        WReq {
                            h,
                            cap: desc.max_output_tokens,
                            target,
                            hashes: hashes.len() as u32,
                            paused: false,
                            generated: 0,
                        },
                    );
                }
            }
        }
        // Resumes (some with appended tool output) and aborts.
        let ids: Vec<u64> = w.live.keys().copied().collect();
        for id in ids {
            let r = w.live[&id].clone();
            if r.paused && (drain || w.rng.chance(30)) {
                let extra = if drain { 0 } else { w.rng.below(6) as u32 };
                let ra = a.e.resume_with_tokens(r.h, extra, Instant(now));
                let rb = b.e.resume_with_tokens(r.h, extra, Instant(now));
                assert_eq!(ra, rb, "resume, {}", ctx(step));
                let rc = c.e.resume_with_tokens(r.h, extra, Instant(now));
                assert_eq!(ra, rc, "resume, {}", ctx(step));
                let rd = d.e.resume_with_tokens(r.h, extra, Instant(now));
                assert_eq!(ra, rd, "resume, {}", ctx(step));
                let resumed = ra.is_ok() || {
                    let ra = a.e.resume(r.h, Instant(now));
                    assert_eq!(ra, b.e.resume(r.h, Instant(now)), "resume, {}", ctx(step));
                    assert_eq!(ra, c.e.resume(r.h, Instant(now)), "resume, {}", ctx(step));
                    assert_eq!(ra, d.e.resume(r.h, Instant(now)), "resume, {}", ctx(step));
                    ra.is_ok()
                };
                if resumed {
                    w.live.get_mut(&id).unwrap().paused = false;
                } else {
                    // Grown past what the device can ever hold: it can only be aborted.
                    a.abort(id, r.h, now);
                    b.abort(id, r.h, now);
                    c.abort(id, r.h, now);
                    d.abort(id, r.h, now);
                    w.live.remove(&id);
                    w.tally.aborted += 1;
                }
            } else if !drain && w.rng.below(400) == 0 {
                a.abort(id, r.h, now);
                b.abort(id, r.h, now);
                c.abort(id, r.h, now);
                d.abort(id, r.h, now);
                w.live.remove(&id);
                w.tally.aborted += 1;
            }
        }
        // Schedule.
        let pa = a.schedule(now);
        let pb = b.schedule(now);
        assert_eq!(pa, pb, "plans differ, {}", ctx(step));
        assert_eq!(
            pa,
            c.schedule(now),
            "sparse side's plan differs, {}",
            ctx(step)
        );
        let steady = a.e.stats().steady_steps > w.tally.steady_steps;
        w.tally.steady_steps = a.e.stats().steady_steps;
        assert_eq!(
            pa,
            d.schedule(now),
            "the general path plans otherwise (steady path taken: {steady}), {}",
            ctx(step)
        );
        let (rec, _) = pa;
        for d in &rec.dropped {
            w.live.remove(&d.external_id);
            w.tally.dropped += 1;
        }
        let entries: Vec<ScheduledEntry> = rec.entries.iter().map(|x| x.0).collect();
        // Complete.
        let (pos, preds) = w.results(&a.e, &entries, drain);
        let key = keyed(&entries, &pos, &preds);
        a.e.complete(&key, Instant(now)).expect("keyed results");
        d.e.complete(&key, Instant(now)).expect("keyed results");
        if w.rng.chance(50) {
            b.e.complete_entries(&pos, Instant(now))
                .expect("positional results");
        } else {
            // Sparse by position: only the entries whose result is not the default.
            let mut exceptions: Vec<EntryException> = entries
                .iter()
                .zip(&pos)
                .enumerate()
                .filter(|(_, (en, r))| **r != EntryResult::new(u32::from(en.samples)))
                .map(|(k, (_, r))| EntryException::new(k as u32, *r))
                .collect();
            w.rng.shuffle(&mut exceptions);
            b.e.complete_entries_except(&exceptions, Instant(now))
                .expect("sparse positional results");
        }
        // `c` lists only the results that are not the default one, in a random order.
        let mut exceptions = exceptions_of(&entries, &key);
        w.rng.shuffle(&mut exceptions);
        w.tally.defaults += (entries.len() - exceptions.len()) as u64;
        c.e.complete_except(&exceptions, Instant(now))
            .expect("sparse results");
        for (en, p) in entries.iter().zip(&preds) {
            let Some(p) = *p else { continue };
            w.tally.predictions += 1;
            match b.e.update_prediction(en.handle, p, Instant(now)) {
                Ok(()) => {}
                Err(augur::core::engine::RequestError::StaleHandle) => {
                    assert!(
                        a.e.last_finished().iter().any(|f| f.handle == en.handle),
                        "prediction for a request that did not finish, {}",
                        ctx(step)
                    );
                }
                Err(x) => panic!("update_prediction: {x:?}, {}", ctx(step)),
            }
        }
        assert_eq!(
            a.e.last_finished(),
            b.e.last_finished(),
            "finishes differ, {}",
            ctx(step)
        );
        assert_eq!(
            a.e.last_finished(),
            c.e.last_finished(),
            "sparse side's finishes differ, {}",
            ctx(step)
        );
        assert_eq!(
            a.e.last_finished(),
            d.e.last_finished(),
            "general-path side's finishes differ, {}",
            ctx(step)
        );
        let positional_keyed: Vec<StepResult> = keyed(&entries, &pos, &vec![None; pos.len()]);
        a.completed(&key);
        b.completed(&positional_keyed);
        c.completed(&key);
        d.completed(&key);
        assert_eq!(a.e.stats(), b.e.stats(), "stats differ, {}", ctx(step));
        let general = EngineStats {
            steady_steps: 0,
            ..a.e.stats()
        };
        assert_eq!(general, d.e.stats(), "general-path stats, {}", ctx(step));
        assert_eq!(
            a.e.stats(),
            c.e.stats(),
            "sparse side's stats differ, {}",
            ctx(step)
        );
        // Generated tokens are the sum of the tokens reported, accepted drafts included.
        for (en, r) in entries.iter().zip(&pos) {
            w.live.get_mut(&en.external_id).unwrap().generated += r.tokens;
        }
        for f in a.e.last_finished() {
            let r = w
                .live
                .remove(&f.external_id)
                .expect("finished a live request");
            assert_eq!(f.generated_tokens, r.generated, "{f:?}, {}", ctx(step));
            w.tally.finished += 1;
        }
        for (en, r) in entries.iter().zip(&pos) {
            // A pause reported with the token that reached the cap or the limit finishes.
            if r.flags & EntryResult::PAUSE != 0
                && let Some(x) = w.live.get_mut(&en.external_id)
            {
                x.paused = true;
            }
        }
        for (&id, r) in &w.live {
            let (va, vb) = (a.e.request(r.h), b.e.request(r.h));
            assert_eq!(va, vb, "views of {id} differ, {}", ctx(step));
            assert_eq!(va, c.e.request(r.h), "sparse view of {id}, {}", ctx(step));
            assert_eq!(va, d.e.request(r.h), "general view of {id}, {}", ctx(step));
            let v = va.expect("live");
            assert_eq!(
                v.generated_tokens,
                r.generated,
                "generated of {id}, {}",
                ctx(step)
            );
        }
    }
    assert_eq!(b.e.live_requests(), 0);
    assert_eq!(a.e.stats(), b.e.stats());
    assert_eq!(a.e.stats(), c.e.stats());
    let s = a.e.stats();
    w.tally.steps = step as u64;
    w.tally.preemptions = s.preemptions_recompute + s.preemptions_swap + s.preemptions_keep;
    w.tally.swap_out = a.oracle.stats.swap_out_pairs;
    w.tally.swap_in = a.oracle.stats.swap_in_pairs;
    w.tally.oracle_blocks_read = a.oracle.stats.blocks_read;
    w.tally.oracle_host_checked = a.oracle.stats.host_blocks_checked;
    w.tally.prefix_hit_tokens = s.prefix_hit_tokens;
    assert_eq!(
        s.finished + s.aborted + s.dropped,
        s.added,
        "every request ends"
    );
    (w.tally, a.oracle.stats)
}

/// A small engine under memory pressure: 4-token blocks, `device` blocks for prompts of up to
/// 40 tokens and outputs of up to 40, 8 running, budget 48, chunks of 12.
fn pressured(device: u32, host: u32) -> EngineConfig {
    let mut cfg = EngineConfig::new(4, device, 48);
    cfg.host_blocks = host;
    cfg.max_running = 8;
    cfg.token_budget = 48;
    cfg.prefill_chunk = 12;
    cfg.watermark = 0.0;
    cfg
}

fn sum(a: Tally, b: Tally) -> Tally {
    Tally {
        steps: a.steps + b.steps,
        sampled: a.sampled + b.sampled,
        drafts: a.drafts + b.drafts,
        draft_prefills: a.draft_prefills + b.draft_prefills,
        claims: a.claims + b.claims,
        predictions: a.predictions + b.predictions,
        preemptions: a.preemptions + b.preemptions,
        swap_out: a.swap_out + b.swap_out,
        swap_in: a.swap_in + b.swap_in,
        pauses: a.pauses + b.pauses,
        finished: a.finished + b.finished,
        dropped: a.dropped + b.dropped,
        aborted: a.aborted + b.aborted,
        oracle_blocks_read: a.oracle_blocks_read + b.oracle_blocks_read,
        oracle_host_checked: a.oracle_host_checked + b.oracle_host_checked,
        prefix_hit_tokens: a.prefix_hit_tokens + b.prefix_hit_tokens,
        defaults: a.defaults + b.defaults,
        steady_steps: a.steady_steps + b.steady_steps,
    }
}

/// Positional and keyed completion drive identical engines: same plans (entries, block
/// deltas and the plan's block array, swap and copy pairs, preempted, dropped), same finish
/// lists, same counters and request views after every step, over eight configurations
/// (policies FCFS, SJF, SPRPT, priority, LAS, MLFQ, memory-time, fair-share EDF; recompute,
/// swap and auto preemption; all pause modes; no host tier and a host tier; no drafts and up
/// to 7) and three seeds each, 60 requests a run under memory pressure.
#[test]
fn positional_and_keyed_completion_drive_identical_engines() {
    let mlfq = PolicyKind::Mlfq(MlfqParams {
        base_quantum: 2.0,
        growth: 2.0,
        levels: 4,
        prefill_weight: 0.1,
    });
    let cases: [(PolicyKind, PreemptionMode, PauseMode, u32, u32, u32, bool); 8] = [
        (
            PolicyKind::Fcfs,
            PreemptionMode::Recompute,
            PauseMode::Preserve,
            0,
            0,
            24,
            false,
        ),
        (
            PolicyKind::Sjf,
            PreemptionMode::Swap,
            PauseMode::Swap,
            24,
            3,
            24,
            false,
        ),
        (
            PolicyKind::Sprpt,
            PreemptionMode::Auto,
            PauseMode::Auto,
            16,
            3,
            28,
            false,
        ),
        (
            PolicyKind::Priority,
            PreemptionMode::Auto,
            PauseMode::Discard,
            8,
            1,
            20,
            false,
        ),
        (
            PolicyKind::Las,
            PreemptionMode::Recompute,
            PauseMode::Auto,
            0,
            7,
            24,
            false,
        ),
        (
            mlfq,
            PreemptionMode::Swap,
            PauseMode::Preserve,
            32,
            2,
            24,
            false,
        ),
        (
            PolicyKind::MemoryTime,
            PreemptionMode::Auto,
            PauseMode::Swap,
            12,
            3,
            22,
            false,
        ),
        (
            PolicyKind::Edf,
            PreemptionMode::Auto,
            PauseMode::Auto,
            16,
            4,
            26,
            true,
        ),
    ];
    let mut total = Tally::default();
    for (k, &(kind, preemption, pause, host, draft, device, fair)) in cases.iter().enumerate() {
        let mut cfg = pressured(device, host);
        cfg.policy = Policy::new(kind);
        cfg.policy.fair_share = fair;
        cfg.policy.aging_per_s = if k % 2 == 0 { 0.0 } else { 50.0 };
        cfg.max_tenants = if fair { 3 } else { 1 };
        cfg.preemption = preemption;
        cfg.pause = pause;
        cfg.max_draft_tokens = draft;
        cfg.max_preemptions_per_step = 1 + k as u32 % 3;
        cfg.rank_preemption_may_recompute = k % 3 == 0;
        // A margin in some runs: the steady path's rank test must use it as the general does.
        cfg.priority_margin = if k % 4 == 2 { 4.0 } else { 0.0 };
        // A budget below the batch in one (a steady step's decodes then never exceed it: all
        // of them got tokens the step before).
        cfg.token_budget = if k == 4 { 6 } else { 48 };
        cfg.max_sequence_tokens = if k == 3 { 48 } else { 0 };
        cfg.costs.swap_us_per_block = 1.0;
        for seed in 0..6u64 {
            let (t, _) = run_twins(cfg, 1000 * k as u64 + seed, 300, 80);
            total = sum(total, t);
        }
    }
    // The workloads reached what they are meant to exercise.
    assert!(total.preemptions > 50, "{total:?}");
    assert!(total.swap_out > 50 && total.swap_in > 50, "{total:?}");
    assert!(
        total.drafts > 500 && total.draft_prefills > 200,
        "{total:?}"
    );
    assert!(total.pauses > 50 && total.claims > 100, "{total:?}");
    assert!(total.predictions > 100 && total.aborted > 5, "{total:?}");
    assert!(
        total.finished > 1000 && total.prefix_hit_tokens > 1000,
        "{total:?}"
    );
    assert!(total.defaults > 1000, "{total:?}");
    // Both planning paths ran often.
    assert!(
        total.steady_steps > 1000 && total.steps - total.steady_steps > 1000,
        "{total:?}"
    );
}

// ----- the errors of complete_entries -----

/// Everything observable about an engine, for "nothing changed".
#[derive(Debug, PartialEq)]
struct Snapshot {
    stats: EngineStats,
    live: u32,
    views: Vec<RequestView>,
    plan: PlanRecord,
    blocks: Vec<u32>,
    finished: Vec<Finished>,
}

fn snapshot(e: &Engine<'_>, handles: &[RequestHandle]) -> Snapshot {
    let plan = e.plan();
    Snapshot {
        stats: e.stats(),
        live: e.live_requests(),
        views: handles
            .iter()
            .map(|&h| e.request(h).expect("live"))
            .collect(),
        plan: PlanRecord::of(&plan),
        blocks: plan.blocks.to_vec(),
        finished: e.last_finished().to_vec(),
    }
}

/// Every error of `complete_entries` — a short, long or empty slice, unknown flag bits, too
/// many tokens at a sampling entry, tokens at a non-sampling prefill chunk, none at a sampling
/// entry, `PAUSE | FINISHED`, `FINISHED` or `PAUSE` on a non-sampling entry, a filled-block
/// hash where no block filled, time going backwards — is the documented error naming the right
/// position (the first bad one), and changes nothing: stats, views, the plan and the finish
/// list are as before, `schedule` still waits for every entry, and the valid results then
/// apply and leave the engine exactly where a twin that never saw the bad calls ends.
#[test]
fn every_positional_error_names_its_index_and_changes_nothing() {
    let mut cfg = EngineConfig::new(4, 64, 8);
    cfg.max_running = 8;
    cfg.token_budget = 64;
    cfg.prefill_chunk = 8;
    cfg.watermark = 0.0;
    cfg.max_draft_tokens = 3;
    cfg.policy = Policy::new(PolicyKind::Fcfs);
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut buf_twin = EngineBuffers::new(&cfg).unwrap();
    let mut twin = buf_twin.engine(cfg).unwrap();
    // A: 3 prompt tokens (samples, fills no block); B: 40 (an 8-token chunk, fills 2 blocks,
    // does not sample); C: 6 tokens, output cap 2 (samples; at most 2 tokens).
    let descs = [
        RequestDesc::new(1, 3),
        RequestDesc::new(2, 40),
        RequestDesc {
            max_output_tokens: Some(2),
            ..RequestDesc::new(3, 6)
        },
    ];
    let mut handles = vec![];
    for d in &descs {
        handles.push(e.add_request(d, Instant(0)).unwrap());
        assert_eq!(
            twin.add_request(d, Instant(0)),
            Ok(*handles.last().unwrap())
        );
    }
    let entries = e.schedule(Instant(10)).unwrap().entries.to_vec();
    assert_eq!(twin.schedule(Instant(10)).unwrap().entries, &entries[..]);
    assert_eq!(entries.len(), 3);
    let at = |id: u64| entries.iter().position(|x| x.external_id == id).unwrap();
    let (a, b, c) = (at(1), at(2), at(3));
    assert!(entries[a].samples && entries[c].samples && !entries[b].samples);
    assert_eq!((entries[a].tokens, entries[b].tokens), (3, 8));
    // The valid results: A accepts 2 drafts, B claims the block it filled, C reports 2.
    let mut valid = vec![EntryResult::new(0); 3];
    valid[a] = EntryResult::new(3);
    valid[b] = EntryResult {
        flags: EntryResult::FILLED_BLOCK_HASH,
        filled_block_hash: 0xb10c,
        ..EntryResult::new(0)
    };
    valid[c] = EntryResult::new(2);
    let before = snapshot(&e, &handles);
    let err = |index: usize, kind: ResultErrorKind| Err(CompleteError::Result { index, kind });
    let count = |got: usize| Err(CompleteError::ResultCount { expected: 3, got });
    let with = |k: usize, f: &dyn Fn(&mut EntryResult)| {
        let mut r = valid.clone();
        f(&mut r[k]);
        r
    };
    let mut long = valid.clone();
    long.push(EntryResult::new(1));
    let mut bad_short = valid[..2].to_vec();
    bad_short[0].flags = 8;
    let two_bad = {
        let mut r = valid.clone();
        r[a].flags = 16;
        r[b].tokens = 1;
        r
    };
    let first_bad = a.min(b);
    let cases: Vec<(&str, Vec<EntryResult>, Result<(), CompleteError>)> = vec![
        ("short", valid[..2].to_vec(), count(2)),
        ("one", valid[..1].to_vec(), count(1)),
        ("long", long, count(4)),
        ("empty", vec![], count(0)),
        (
            "short with bad flags (the count first)",
            bad_short,
            count(2),
        ),
        (
            "unknown flag 8",
            with(a, &|r| r.flags |= 8),
            err(a, ResultErrorKind::UnknownFlags { flags: 8 }),
        ),
        (
            "unknown high bit with FINISHED",
            with(c, &|r| r.flags = EntryResult::FINISHED | 1 << 31),
            err(c, ResultErrorKind::UnknownFlags { flags: 1 << 31 }),
        ),
        (
            "unknown flags on a non-sampling entry",
            with(b, &|r| r.flags |= 0xf0),
            err(b, ResultErrorKind::UnknownFlags { flags: 0xf0 }),
        ),
        (
            "too many tokens: above 1 + max_draft_tokens",
            with(a, &|r| r.tokens = 5),
            err(a, ResultErrorKind::TooManyTokens { max: 4, got: 5 }),
        ),
        (
            "too many tokens: past the output cap",
            with(c, &|r| r.tokens = 3),
            err(c, ResultErrorKind::TooManyTokens { max: 2, got: 3 }),
        ),
        (
            "too many tokens: u32::MAX",
            with(a, &|r| r.tokens = u32::MAX),
            err(
                a,
                ResultErrorKind::TooManyTokens {
                    max: 4,
                    got: u32::MAX,
                },
            ),
        ),
        (
            "tokens at a non-sampling prefill chunk",
            with(b, &|r| r.tokens = 1),
            err(
                b,
                ResultErrorKind::WrongTokenCount {
                    expected: 0,
                    got: 1,
                },
            ),
        ),
        (
            "no token at a sampling entry",
            with(a, &|r| r.tokens = 0),
            err(
                a,
                ResultErrorKind::WrongTokenCount {
                    expected: 1,
                    got: 0,
                },
            ),
        ),
        (
            "PAUSE with FINISHED",
            with(a, &|r| {
                r.flags = EntryResult::PAUSE | EntryResult::FINISHED;
                r.pause_duration_us = 5;
            }),
            err(a, ResultErrorKind::PauseWhenFinished),
        ),
        (
            "FINISHED on a non-sampling entry",
            with(b, &|r| r.flags = EntryResult::FINISHED),
            err(b, ResultErrorKind::NotAtSamplingPoint),
        ),
        (
            "PAUSE on a non-sampling entry",
            with(b, &|r| r.flags = EntryResult::PAUSE),
            err(b, ResultErrorKind::NotAtSamplingPoint),
        ),
        (
            "a filled-block hash where no block filled",
            with(a, &|r| {
                r.flags |= EntryResult::FILLED_BLOCK_HASH;
                r.filled_block_hash = 9;
            }),
            err(a, ResultErrorKind::NoBlockFilled),
        ),
        (
            "two bad results: the first is named",
            two_bad,
            err(
                first_bad,
                if first_bad == a {
                    ResultErrorKind::UnknownFlags { flags: 16 }
                } else {
                    ResultErrorKind::WrongTokenCount {
                        expected: 0,
                        got: 1,
                    }
                },
            ),
        ),
    ];
    for (what, results, want) in &cases {
        assert_eq!(&e.complete_entries(results, Instant(20)), want, "{what}");
        assert_eq!(snapshot(&e, &handles), before, "{what} changed the engine");
    }
    assert_eq!(
        e.complete_entries(&valid, Instant(9)),
        Err(CompleteError::TimeWentBackwards)
    );
    assert_eq!(snapshot(&e, &handles), before, "time backwards changed it");
    assert_eq!(
        e.schedule(Instant(20)).map(|p| p.step),
        Err(ScheduleError::ResultsPending { missing: 3 }),
        "a refused complete applied some results"
    );
    assert_eq!(snapshot(&e, &handles), before);
    // The valid results apply, and the engine is where the twin is.
    e.complete_entries(&valid, Instant(20)).unwrap();
    twin.complete_entries(&valid, Instant(20)).unwrap();
    assert_eq!(e.stats(), twin.stats());
    assert_eq!(e.last_finished(), twin.last_finished());
    assert_eq!(e.last_finished().len(), 1);
    assert_eq!(
        (
            e.last_finished()[0].external_id,
            e.last_finished()[0].generated_tokens,
            e.last_finished()[0].reason
        ),
        (3, 2, FinishReason::MaxOutput)
    );
    assert_eq!(e.request(handles[0]).unwrap().generated_tokens, 3);
    assert_eq!(e.request(handles[0]), twin.request(handles[0]));
    assert_eq!(e.request(handles[1]), twin.request(handles[1]));
    let mut scratch = vec![0; 64];
    e.audit(&mut scratch).unwrap();
    let p = PlanRecord::of(&e.schedule(Instant(30)).unwrap());
    assert_eq!(p, PlanRecord::of(&twin.schedule(Instant(30)).unwrap()));
    // A's next entry computes its 3 reported tokens and samples.
    let ea = p.entries.iter().find(|x| x.0.external_id == 1).unwrap().0;
    assert_eq!(
        (ea.kind, ea.computed_before, ea.tokens, ea.samples),
        (EntryKind::Prefill, 3, 3, true)
    );
    // Refused counts on the second plan (A's draft prefill, B's next chunk), then the right
    // results.
    let n = p.entries.len();
    let valid: Vec<EntryResult> = p
        .entries
        .iter()
        .map(|x| EntryResult::new(x.0.samples as u32))
        .collect();
    let before = snapshot(&e, &handles[..2]);
    for got in [0, n - 1, n + 1] {
        let r: Vec<EntryResult> = (0..got).map(|_| EntryResult::new(1)).collect();
        assert_eq!(
            e.complete_entries(&r, Instant(40)),
            Err(CompleteError::ResultCount { expected: n, got })
        );
        assert_eq!(snapshot(&e, &handles[..2]), before);
    }
    e.complete_entries(&valid, Instant(40)).unwrap();
    twin.complete_entries(&valid, Instant(40)).unwrap();
    assert_eq!(e.stats(), twin.stats());
    e.audit(&mut scratch).unwrap();
}

/// An empty plan takes an empty slice, and only that.
#[test]
fn an_empty_plan_takes_exactly_no_results() {
    let mut cfg = EngineConfig::new(4, 16, 4);
    cfg.max_running = 4;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    assert!(e.schedule(Instant(1)).unwrap().entries.is_empty());
    assert_eq!(
        e.complete_entries(&[EntryResult::new(1)], Instant(2)),
        Err(CompleteError::ResultCount {
            expected: 0,
            got: 1
        })
    );
    e.complete_entries(&[], Instant(2)).unwrap();
    assert_eq!(e.stats().finished, 0);
}

/// Review finding (helper report, 2026-12-03): a request aborted after the plan was made
/// left its entry in the plan, and `complete_entries` then refused every slice: the full one
/// with `StaleHandle` at that position, a shorter one with `ResultCount`, so a C executor
/// (positional only) could never finish the step. Now the result at an aborted request's
/// position is ignored, and the others apply. Fails on 41e9b90 with `Result { index: 0,
/// kind: UnknownFlags }` (the old code validated the aborted position's result; with a valid
/// one there it said `StaleHandle`).
#[test]
fn a_request_aborted_after_the_plan_does_not_block_positional_results() {
    let mut cfg = EngineConfig::new(4, 16, 4);
    cfg.max_running = 4;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let a = e.add_request(&RequestDesc::new(1, 4), Instant(0)).unwrap();
    let b = e.add_request(&RequestDesc::new(2, 4), Instant(0)).unwrap();
    let plan = e.schedule(Instant(1)).unwrap();
    assert_eq!(plan.entries.len(), 2);
    assert_eq!(plan.entries[0].handle, a);
    e.abort(a, Instant(2)).unwrap();
    // Whatever sits at the aborted position is ignored, even an invalid result.
    let results = [
        EntryResult {
            flags: 1 << 30,
            ..EntryResult::new(7)
        },
        EntryResult::new(1),
    ];
    e.complete_entries(&results, Instant(3)).unwrap();
    assert_eq!(e.request(b).unwrap().generated_tokens, 1);
    assert!(e.request(a).is_err());
    // The step is complete: the next plan is made.
    let next = e.schedule(Instant(4)).unwrap();
    assert_eq!(next.entries.len(), 1);
    assert_eq!(next.entries[0].handle, b);
    e.audit(&mut [0u32; 256]).unwrap();
}

/// Found by the C ABI fuzz harness (`ffi/src/call_sequences.rs`): once every request of a
/// plan had finished, a second `complete_entries` for the same plan was accepted (each
/// position belonged to a request no longer live, so each was ignored, as for an abort) and
/// it cleared `last_finished`: the executor lost the list of finished requests, and a plan
/// was completed twice. Now a plan takes positional results once. Fails on dde0139: the
/// second call returns `Ok(())` and `last_finished` is then empty.
#[test]
fn a_plan_takes_positional_results_once() {
    let mut cfg = EngineConfig::new(4, 16, 4);
    cfg.max_running = 4;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let a = e.add_request(&RequestDesc::new(1, 4), Instant(0)).unwrap();
    let b = e.add_request(&RequestDesc::new(2, 4), Instant(0)).unwrap();
    assert_eq!(e.schedule(Instant(1)).unwrap().entries.len(), 2);
    let finish = EntryResult {
        flags: EntryResult::FINISHED,
        ..EntryResult::new(1)
    };
    e.complete_entries(&[finish, finish], Instant(2)).unwrap();
    let finished = |e: &Engine<'_>| {
        e.last_finished()
            .iter()
            .map(|f| f.handle)
            .collect::<Vec<_>>()
    };
    assert_eq!(finished(&e), [a, b]);
    let stats = e.stats();
    assert_eq!(
        e.complete_entries(&[finish, finish], Instant(3)),
        Err(CompleteError::AlreadyCompleted)
    );
    assert_eq!(
        e.complete_entries(&[EntryResult::new(1), EntryResult::new(1)], Instant(3)),
        Err(CompleteError::AlreadyCompleted)
    );
    assert_eq!(
        finished(&e),
        [a, b],
        "the refused calls kept the finished list"
    );
    assert_eq!(e.stats(), stats);
    // The next plan takes its results as usual (here: none).
    assert!(e.schedule(Instant(4)).unwrap().entries.is_empty());
    e.complete_entries(&[], Instant(5)).unwrap();
    e.audit(&mut [0u32; 256]).unwrap();
}

// ----- speculative decoding -----

/// Accepted drafts: random accepted counts (1 to 1 + `max_draft_tokens` = 4 tokens a sampling
/// entry, often the most allowed) on requests with room enough that each runs every step.
/// (a) every request's generated count (its view, then its finish record) is the sum of the
/// tokens reported for it; (b) after reporting `n` tokens at a sampling entry, its next entry
/// computes exactly those `n` tokens from where the last one ended and samples again — a
/// prefill when `n > 1`, a decode when `n == 1`.
#[test]
fn accepted_drafts_are_generated_and_computed_by_the_next_sampling_entry() {
    let mut cfg = EngineConfig::new(4, 512, 16);
    cfg.max_running = 16;
    cfg.token_budget = 1024;
    cfg.prefill_chunk = 64;
    cfg.watermark = 0.0;
    cfg.max_draft_tokens = 3;
    cfg.policy = Policy::new(PolicyKind::Fcfs);
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut rng = Rng(7);
    let mut reported: HashMap<u64, u32> = HashMap::new();
    let mut handles: HashMap<u64, RequestHandle> = HashMap::new();
    let mut targets: HashMap<u64, u32> = HashMap::new();
    for id in 1..=12u64 {
        let h = e
            .add_request(&RequestDesc::new(id, 1 + rng.below(30) as u32), Instant(0))
            .unwrap();
        handles.insert(id, h);
        reported.insert(id, 0);
        targets.insert(id, 20 + rng.below(40) as u32);
    }
    // What each request's next entry must be: (computed_before, tokens, kind).
    let mut next: HashMap<u64, (u32, u32, EntryKind)> = HashMap::new();
    let (mut drafts, mut draft_entries, mut finished) = (0u32, 0u32, 0u32);
    let mut scratch = vec![0; 512];
    for step in 1..200u64 {
        if e.live_requests() == 0 {
            break;
        }
        let entries = e.schedule(Instant(step * 10)).unwrap().entries.to_vec();
        assert_eq!(
            entries.len(),
            e.live_requests() as usize,
            "every live request runs every step"
        );
        let mut results = vec![];
        for en in &entries {
            let id = en.external_id;
            match next.remove(&id) {
                Some((cb, tokens, kind)) => {
                    assert_eq!(
                        (en.computed_before, en.tokens, en.kind, en.samples),
                        (cb, tokens, kind, true),
                        "step {step}: entry of {id} after reporting {tokens} tokens"
                    );
                    if tokens > 1 {
                        draft_entries += 1;
                    }
                }
                None => assert_eq!(en.computed_before, 0, "step {step}: {en:?}"),
            }
            let v = e.request(en.handle).unwrap();
            assert_eq!(v.generated_tokens, reported[&id], "generated of {id}");
            assert_eq!(v.computed_tokens, en.computed_before + en.tokens);
            let mut r = EntryResult::new(0);
            if en.samples {
                let max = 4.min(targets[&id] - reported[&id]);
                r.tokens = if rng.chance(50) {
                    max
                } else {
                    1 + rng.below(max as u64) as u32
                };
                drafts += r.tokens - 1;
                *reported.get_mut(&id).unwrap() += r.tokens;
                if reported[&id] >= targets[&id] {
                    r.flags = EntryResult::FINISHED;
                } else {
                    let kind = if r.tokens == 1 {
                        EntryKind::Decode
                    } else {
                        EntryKind::Prefill
                    };
                    next.insert(id, (en.computed_before + en.tokens, r.tokens, kind));
                }
            }
            results.push(r);
        }
        e.complete_entries(&results, Instant(step * 10 + 5))
            .unwrap();
        e.audit(&mut scratch).unwrap();
        for f in e.last_finished() {
            assert_eq!(f.reason, FinishReason::Stop);
            assert_eq!(f.generated_tokens, reported[&f.external_id]);
            assert_eq!(f.generated_tokens, targets[&f.external_id]);
            finished += 1;
        }
        for (&id, &h) in &handles {
            if let Ok(v) = e.request(h) {
                assert_eq!(v.generated_tokens, reported[&id], "generated of {id}");
            }
        }
    }
    assert_eq!(finished, 12);
    assert!(next.is_empty());
    assert!(
        drafts > 100 && draft_entries > 50,
        "{drafts} {draft_entries}"
    );
}

/// The output cap bounds what a sampling entry may report: with `max_output_tokens = 5` and 3
/// drafts, the first sampling entry may report 4, and after that only 1 — more is
/// `TooManyTokens { max: remaining }` (positional and keyed alike) and changes nothing — and
/// the request finishes with `MaxOutput` at exactly 5. The token limit bounds it the same way
/// (`Length` at the limit), and without drafts a sampling entry may report only 1.
#[test]
fn the_output_cap_and_token_limit_bound_accepted_drafts() {
    let mut cfg = EngineConfig::new(4, 64, 4);
    cfg.max_running = 4;
    cfg.watermark = 0.0;
    cfg.max_draft_tokens = 3;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let h = e
        .add_request(
            &RequestDesc {
                max_output_tokens: Some(5),
                ..RequestDesc::new(1, 10)
            },
            Instant(0),
        )
        .unwrap();
    let too_many = |max, got| {
        Err(CompleteError::Result {
            index: 0,
            kind: ResultErrorKind::TooManyTokens { max, got },
        })
    };
    let en = e.schedule(Instant(1)).unwrap().entries[0];
    assert!(en.samples);
    assert_eq!(
        e.complete_entries(&[EntryResult::new(5)], Instant(2)),
        too_many(4, 5)
    );
    assert_eq!(
        e.complete(&[StepResult::new(h, 5)], Instant(2)),
        too_many(4, 5)
    );
    assert_eq!(e.request(h).unwrap().generated_tokens, 0);
    e.complete_entries(&[EntryResult::new(4)], Instant(2))
        .unwrap();
    assert!(e.last_finished().is_empty());
    assert_eq!(e.request(h).unwrap().generated_tokens, 4);
    let en = e.schedule(Instant(3)).unwrap().entries[0];
    assert_eq!(
        (en.kind, en.computed_before, en.tokens, en.samples),
        (EntryKind::Prefill, 10, 4, true)
    );
    let before = e.stats();
    for got in [2, 4] {
        assert_eq!(
            e.complete_entries(&[EntryResult::new(got)], Instant(4)),
            too_many(1, got)
        );
        assert_eq!(
            e.complete(&[StepResult::new(h, got)], Instant(4)),
            too_many(1, got)
        );
    }
    assert_eq!(e.stats(), before);
    assert_eq!(e.request(h).unwrap().generated_tokens, 4);
    e.complete_entries(&[EntryResult::new(1)], Instant(4))
        .unwrap();
    let f = e.last_finished();
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].external_id, f[0].generated_tokens, f[0].reason),
        (1, 5, FinishReason::MaxOutput)
    );

    // The token limit: 12 tokens at most, a 10-token prompt may report 2 at its first sample.
    let mut cfg = EngineConfig::new(4, 64, 4);
    cfg.max_running = 4;
    cfg.watermark = 0.0;
    cfg.max_draft_tokens = 3;
    cfg.max_sequence_tokens = 12;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    e.add_request(&RequestDesc::new(1, 10), Instant(0)).unwrap();
    e.schedule(Instant(1)).unwrap();
    assert_eq!(
        e.complete_entries(&[EntryResult::new(3)], Instant(2)),
        too_many(2, 3)
    );
    e.complete_entries(&[EntryResult::new(2)], Instant(2))
        .unwrap();
    let f = e.last_finished();
    assert_eq!(
        (f.len(), f[0].generated_tokens, f[0].reason),
        (1, 2, FinishReason::Length)
    );

    // No drafts: one token.
    let mut cfg = EngineConfig::new(4, 64, 4);
    cfg.max_running = 4;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    e.add_request(&RequestDesc::new(1, 10), Instant(0)).unwrap();
    e.schedule(Instant(1)).unwrap();
    assert_eq!(
        e.complete_entries(&[EntryResult::new(2)], Instant(2)),
        too_many(1, 2)
    );
    e.complete_entries(&[EntryResult::new(1)], Instant(2))
        .unwrap();
}

/// `max_draft_tokens` is bounded by `MAX_DRAFT_TOKENS` (256): 257 fails validation naming the
/// field, and no storage or engine is made for it; 256 is valid and may be reported in full.
#[test]
fn max_draft_tokens_above_the_bound_fails_validation() {
    assert_eq!(MAX_DRAFT_TOKENS, 256);
    let mut cfg = EngineConfig::new(4, 256, 4);
    cfg.max_running = 4;
    cfg.max_draft_tokens = 257;
    assert_eq!(
        cfg.validate(),
        Err(EngineConfigError::Field("max_draft_tokens"))
    );
    assert!(EngineBuffers::new(&cfg).is_err());
    cfg.max_draft_tokens = u32::MAX;
    assert_eq!(
        cfg.validate(),
        Err(EngineConfigError::Field("max_draft_tokens"))
    );
    cfg.max_draft_tokens = MAX_DRAFT_TOKENS;
    assert_eq!(cfg.validate(), Ok(()));
    cfg.watermark = 0.0;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    e.add_request(&RequestDesc::new(1, 8), Instant(0)).unwrap();
    e.schedule(Instant(1)).unwrap();
    e.complete_entries(&[EntryResult::new(257)], Instant(2))
        .unwrap();
    let en = e.schedule(Instant(3)).unwrap().entries[0];
    assert_eq!((en.computed_before, en.tokens, en.samples), (8, 257, true));
}

/// Speculative workloads keep the plan contract: the KV content oracle (and `check_plan`, and
/// the audit) on random accepted-draft counts with a host tier, `Auto` and `Swap` preemption
/// and `Auto` and `Swap` pauses, under memory pressure — each run also a positional/keyed twin
/// run — finds no violation; the runs swap out and in, preempt, and compute drafts, and the
/// oracle verified host-tier content.
#[test]
fn speculative_workloads_keep_the_plan_contract_under_swaps_and_preemption() {
    let mut total = Tally::default();
    let mut oracle = OracleStats::default();
    for (k, (preemption, pause, device, host)) in [
        (PreemptionMode::Auto, PauseMode::Auto, 22, 24),
        (PreemptionMode::Auto, PauseMode::Swap, 18, 12),
        (PreemptionMode::Swap, PauseMode::Auto, 26, 40),
        (PreemptionMode::Auto, PauseMode::Swap, 30, 6),
    ]
    .into_iter()
    .enumerate()
    {
        let mut cfg = pressured(device, host);
        cfg.policy = Policy::new(if k % 2 == 0 {
            PolicyKind::Sprpt
        } else {
            PolicyKind::Priority
        });
        cfg.preemption = preemption;
        cfg.pause = pause;
        cfg.max_draft_tokens = 3;
        cfg.costs.swap_us_per_block = 1.0;
        cfg.costs.recompute_us_per_token = 50.0;
        for seed in 0..4u64 {
            let (t, o) = run_twins(cfg, 77 + 100 * k as u64 + seed, 300, 70);
            total = sum(total, t);
            oracle.blocks_read += o.blocks_read;
            oracle.host_blocks_checked += o.host_blocks_checked;
            oracle.swap_in_pairs += o.swap_in_pairs;
            oracle.swap_out_pairs += o.swap_out_pairs;
            oracle.claims += o.claims;
            oracle.shared_blocks += o.shared_blocks;
            oracle.foreign_reads += o.foreign_reads;
        }
    }
    assert!(total.preemptions > 50, "{total:?}");
    assert!(
        oracle.swap_out_pairs > 100 && oracle.swap_in_pairs > 100,
        "{oracle:?}"
    );
    assert!(oracle.host_blocks_checked > 100, "{oracle:?}");
    assert!(
        oracle.blocks_read > 1000 && oracle.claims > 50,
        "{oracle:?}"
    );
    assert!(
        total.drafts > 500 && total.draft_prefills > 200,
        "{total:?}"
    );
    assert!(
        oracle.shared_blocks > 0 && oracle.foreign_reads > 0,
        "{oracle:?}"
    );
}

// ----- sparse results (complete_except) -----

/// `complete_except`'s errors name the offending exception and change nothing: an exception
/// for a request not in the plan, a stale handle, a duplicate, an invalid result (tokens at a
/// chunk that does not sample), time going backwards; and `complete_entries_except`'s: an
/// entry past the plan, unknown flag bits, one entry twice. Afterwards the valid call applies: the listed exception
/// (a finish) and the default result of every other entry (one token for the decode, none for
/// the prefill chunk before the prompt's last); an aborted request's entry is skipped; a
/// second call, or `complete_entries`, for the same plan is `AlreadyCompleted`, and a plan
/// completed by `complete` takes no `complete_except` either.
#[test]
fn sparse_results_name_the_bad_exception_change_nothing_and_apply_defaults() {
    let mut cfg = EngineConfig::new(4, 64, 8);
    cfg.max_running = 4;
    cfg.token_budget = 10;
    cfg.prefill_chunk = 8;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let dec = e.add_request(&RequestDesc::new(1, 4), Instant(0)).unwrap();
    let fin = e.add_request(&RequestDesc::new(2, 4), Instant(0)).unwrap();
    // Both prompts run whole in step 1 and sample.
    e.schedule(Instant(1)).unwrap();
    e.complete_except(&[], Instant(1)).unwrap();
    assert_eq!(e.request(dec).unwrap().generated_tokens, 1);
    assert_eq!(e.request(fin).unwrap().generated_tokens, 1);
    // Step 2: two decodes, a 16-token prompt's first chunk (8 of 16 tokens, no sample) and a
    // short prompt that is aborted after the plan.
    let long = e.add_request(&RequestDesc::new(3, 16), Instant(2)).unwrap();
    let gone = e.add_request(&RequestDesc::new(4, 2), Instant(2)).unwrap();
    let waiting = e.add_request(&RequestDesc::new(5, 4), Instant(2)).unwrap();
    let plan = e.schedule(Instant(3)).unwrap();
    let handles: Vec<_> = plan.entries.iter().map(|x| x.handle).collect();
    assert_eq!(
        handles,
        [dec, fin, long],
        "the budget leaves `gone` waiting"
    );
    let long_entry = plan.entries[2];
    assert!(
        !long_entry.samples && long_entry.tokens == 8,
        "{long_entry:?}"
    );
    let all = [dec, fin, long, gone, waiting];
    let before = snapshot(&e, &all);
    let finish = StepResult {
        finished: true,
        ..StepResult::new(fin, 1)
    };
    let cases: [(&str, Vec<StepResult>, CompleteError); 4] = [
        (
            "not in the plan",
            vec![finish, StepResult::new(waiting, 1)],
            CompleteError::Result {
                index: 1,
                kind: ResultErrorKind::NotScheduled,
            },
        ),
        (
            "stale handle",
            vec![StepResult::new(RequestHandle::from_raw(u64::MAX), 1)],
            CompleteError::Result {
                index: 0,
                kind: ResultErrorKind::StaleHandle,
            },
        ),
        (
            "duplicate",
            vec![finish, finish],
            CompleteError::Result {
                index: 1,
                kind: ResultErrorKind::Duplicate,
            },
        ),
        (
            "tokens at a non-sampling chunk",
            vec![finish, StepResult::new(long, 1)],
            CompleteError::Result {
                index: 1,
                kind: ResultErrorKind::WrongTokenCount {
                    expected: 0,
                    got: 1,
                },
            },
        ),
    ];
    for (what, results, want) in &cases {
        assert_eq!(e.complete_except(results, Instant(4)), Err(*want), "{what}");
        assert_eq!(snapshot(&e, &all), before, "{what} changed the engine");
    }
    // The positional sparse form: an entry past the plan, unknown flag bits, two exceptions
    // for one entry.
    let pos_cases: [(&str, Vec<EntryException>, CompleteError); 3] = [
        (
            "entry past the plan",
            vec![EntryException::new(3, EntryResult::new(1))],
            CompleteError::Result {
                index: 0,
                kind: ResultErrorKind::NotScheduled,
            },
        ),
        (
            "unknown flags",
            vec![EntryException::new(
                0,
                EntryResult {
                    flags: 1 << 9,
                    ..EntryResult::new(1)
                },
            )],
            CompleteError::Result {
                index: 0,
                kind: ResultErrorKind::UnknownFlags { flags: 1 << 9 },
            },
        ),
        (
            "one entry twice",
            vec![
                EntryException::new(1, EntryResult::new(1)),
                EntryException::new(1, EntryResult::new(1)),
            ],
            CompleteError::Result {
                index: 1,
                kind: ResultErrorKind::Duplicate,
            },
        ),
    ];
    for (what, results, want) in &pos_cases {
        assert_eq!(
            e.complete_entries_except(results, Instant(4)),
            Err(*want),
            "{what}"
        );
        assert_eq!(snapshot(&e, &all), before, "{what} changed the engine");
    }
    e.complete_except(&[finish], Instant(4)).unwrap();
    assert_eq!(
        e.complete_except(&[], Instant(4)),
        Err(CompleteError::AlreadyCompleted)
    );
    assert_eq!(
        e.complete_entries(&[EntryResult::new(1)], Instant(4)),
        Err(CompleteError::AlreadyCompleted)
    );
    assert_eq!(e.last_finished().len(), 1);
    assert_eq!(e.last_finished()[0].handle, fin);
    assert!(e.request(fin).is_err(), "finished and released");
    let v = e.request(dec).unwrap();
    assert_eq!((v.generated_tokens, v.computed_tokens), (2, 5));
    let v = e.request(long).unwrap();
    assert_eq!((v.generated_tokens, v.computed_tokens), (0, 8));
    e.audit(&mut [0u32; 512]).unwrap();

    // Step 3: `gone` is admitted, then aborted after the plan: its entry is skipped, and a
    // positional exception for it (even an invalid one) is ignored.
    let plan = e.schedule(Instant(5)).unwrap();
    let gone_at = plan
        .entries
        .iter()
        .position(|x| x.handle == gone)
        .expect("gone is admitted") as u32;
    e.abort(gone, Instant(5)).unwrap();
    assert_eq!(
        e.complete_except(&[], Instant(1)),
        Err(CompleteError::TimeWentBackwards)
    );
    let ignored = EntryException::new(
        gone_at,
        EntryResult {
            flags: 1 << 9,
            ..EntryResult::new(7)
        },
    );
    e.complete_entries_except(&[ignored], Instant(6)).unwrap();
    let v = e.request(long).unwrap();
    assert_eq!(
        (v.generated_tokens, v.computed_tokens),
        (1, 16),
        "the prompt's last chunk sampled its default token"
    );
    assert_eq!(e.request(dec).unwrap().generated_tokens, 3);
    e.audit(&mut [0u32; 512]).unwrap();

    // A plan completed by `complete` takes no sparse results.
    let plan = e.schedule(Instant(7)).unwrap();
    let results: Vec<_> = plan
        .entries
        .iter()
        .map(ScheduledEntry::default_result)
        .collect();
    e.complete(&results, Instant(8)).unwrap();
    assert_eq!(
        e.complete_except(&[], Instant(8)),
        Err(CompleteError::AlreadyCompleted)
    );
    e.audit(&mut [0u32; 512]).unwrap();
}
