//! The engine never allocates after construction: 10,000 steps of a busy engine (arrivals,
//! schedules, completions — keyed, and every third step sparse with `complete_except` — with
//! finishes, refined predictions, filled-block hashes, pauses and resumes, aborts, preemptions
//! under memory pressure, swaps, prefix-cache hits) run under a counting global allocator that must see zero allocations. All the driver's own state lives
//! in fixed arrays built before the counter is armed.

#[path = "common/alloc_counter.rs"]
mod alloc_counter;

use alloc_counter::{CountingAllocator, count_allocations};
use augur::core::engine::{
    EngineConfig, PauseMode, PauseRequest, PreemptionMode, RequestDesc, RequestHandle, StepResult,
};
use augur::core::policy::{Policy, PolicyKind};
use augur::core::time::Instant;
use augur::storage::EngineBuffers;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const SLOTS: usize = 48;
const MAX_RUNNING: usize = 8;

/// The driver's view of one live request.
#[derive(Clone, Copy)]
struct Live {
    h: RequestHandle,
    target: u32,
    generated: u32,
    /// Step at which a paused request resumes (0: not paused).
    resume_at: u64,
}

/// Prompt block hashes of three families; requests take a prefix of one, so they share blocks.
static FAMILIES: [[u64; 8]; 3] = [
    [11, 12, 13, 14, 15, 16, 17, 18],
    [21, 22, 23, 24, 25, 26, 27, 28],
    [31, 32, 33, 34, 35, 36, 37, 38],
];

#[test]
fn a_busy_engine_allocates_nothing() {
    let mut cfg = EngineConfig::new(4, 64, 64);
    cfg.host_blocks = 32;
    cfg.max_running = MAX_RUNNING as u32;
    cfg.token_budget = 64;
    cfg.prefill_chunk = 16;
    cfg.watermark = 0.0;
    cfg.policy = Policy::new(PolicyKind::Sprpt);
    cfg.policy.aging_per_s = 5.0;
    cfg.preemption = PreemptionMode::Swap;
    cfg.pause = PauseMode::Swap;
    cfg.max_preemptions_per_step = 2;
    let mut buf = EngineBuffers::new(&cfg).unwrap();
    let mut e = buf.engine(cfg).unwrap();
    let mut live: [Option<Live>; SLOTS] = [None; SLOTS];
    let mut results = [StepResult::new(RequestHandle::from_raw(0), 0); MAX_RUNNING];
    // Each entry's default result (`complete_except` leaves those out).
    let mut defaults = [StepResult::new(RequestHandle::from_raw(0), 0); MAX_RUNNING];
    let mut scratch = vec![0u32; (cfg.device_blocks + cfg.host_blocks) as usize];

    let (steps, allocations) = count_allocations(|| {
        let mut now = 0u64;
        let mut next_id = 1u64;
        let mut steps = 0u64;
        for step in 1..=10_000u64 {
            now += 1_000;
            let t = Instant(now);
            // Arrivals: one per step while there is room.
            if let Some(k) = live.iter().position(|x| x.is_none())
                && !step.is_multiple_of(3)
            {
                let id = next_id;
                next_id += 1;
                let prompt = 8 + (id * 37 % 56) as u32;
                let fam = &FAMILIES[(id % 3) as usize];
                let n = ((prompt / 4) as usize).min(fam.len());
                let desc = RequestDesc {
                    predicted_output_tokens: Some((id * 7 % 50) as f64),
                    prompt_block_hashes: &fam[..n],
                    ..RequestDesc::new(id, prompt)
                };
                let h = e.add_request(&desc, t).expect("accepted");
                live[k] = Some(Live {
                    h,
                    target: 1 + (id * 13 % 48) as u32,
                    generated: 0,
                    resume_at: 0,
                });
            }
            // Resumes, prediction updates and the odd abort.
            for (k, slot) in live.iter_mut().enumerate() {
                let Some(r) = slot else { continue };
                if r.resume_at != 0 && r.resume_at <= step {
                    e.resume_with_tokens(r.h, (step % 3) as u32, t)
                        .expect("resume");
                    r.resume_at = 0;
                } else if (step + k as u64).is_multiple_of(41) {
                    e.update_prediction(r.h, (step % 30) as f64, t)
                        .expect("update");
                } else if (step + k as u64).is_multiple_of(997) && r.resume_at == 0 {
                    e.abort(r.h, t).expect("abort");
                    *slot = None;
                }
            }
            // One step.
            let plan = e.schedule(t).expect("schedule");
            for d in plan.dropped {
                if let Some(s) = live.iter_mut().find(|x| x.is_some_and(|r| r.h == d.handle)) {
                    *s = None;
                }
            }
            let mut n = 0;
            for en in plan.entries {
                let r = live
                    .iter_mut()
                    .flatten()
                    .find(|r| r.h == en.handle)
                    .expect("entry for a live request");
                let mut res = StepResult::new(en.handle, en.samples as u32);
                if en.samples {
                    r.generated += 1;
                    if r.generated >= r.target {
                        res.finished = true;
                    } else if (step + r.generated as u64).is_multiple_of(23) {
                        res.pause = Some(PauseRequest {
                            predicted_duration_us: 5_000,
                        });
                        r.resume_at = step + 3;
                    }
                }
                if step.is_multiple_of(5) {
                    res.predicted_remaining = Some((r.target - r.generated.min(r.target)) as f64);
                }
                let filled = (en.computed_before + en.tokens) / 4 > en.computed_before / 4;
                if filled && step.is_multiple_of(2) {
                    res.filled_block_hash = Some((1 << 40) | (step << 8) | n as u64);
                }
                results[n] = res;
                defaults[n] = en.default_result();
                n += 1;
            }
            if step.is_multiple_of(3) {
                // Sparse: only the results that are not the entry's default, compacted in
                // place.
                let mut m = 0;
                for k in 0..n {
                    let r = results[k];
                    if r != defaults[k] {
                        results[m] = r;
                        m += 1;
                    }
                }
                e.complete_except(&results[..m], t)
                    .expect("complete_except");
            } else {
                e.complete(&results[..n], t).expect("complete");
            }
            for f in e.last_finished() {
                if let Some(s) = live.iter_mut().find(|x| x.is_some_and(|r| r.h == f.handle)) {
                    *s = None;
                }
            }
            if step.is_multiple_of(1000) {
                e.audit(&mut scratch).expect("audit");
            }
            steps += 1;
        }
        steps
    });
    assert_eq!(steps, 10_000);
    let s = e.stats();
    assert_eq!(
        allocations, 0,
        "the engine allocated after construction: {s:?}"
    );
    // The run was busy in every way it claims.
    assert!(s.finished > 500, "{s:?}");
    assert!(s.preemptions_swap + s.preemptions_recompute > 10, "{s:?}");
    assert!(
        s.kv.swapped_out_blocks > 0 && s.kv.swapped_in_blocks > 0,
        "{s:?}"
    );
    assert!(
        s.pauses_swapped + s.pauses_preserved + s.pauses_discarded > 10,
        "{s:?}"
    );
    assert!(s.prefix_hit_tokens > 0, "{s:?}");
    assert!(s.aborted > 0, "{s:?}");
    // The counter itself works: a Vec allocates.
    let (_, n) = count_allocations(|| std::hint::black_box(vec![1u8; 64]));
    assert!(n >= 1);
}
