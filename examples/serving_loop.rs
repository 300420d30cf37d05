//! The Rust twin of `tests/c/test_serving_loop.c`: the same seeded serving loop (arrivals with
//! random prompt and output lengths, shared prefixes, output caps, finishes, pauses and
//! resumes, aborts, a host pool and a small device pool) on augur-core's `Engine` directly,
//! with positional results (`Engine::complete_entries`, `EntryResult`) as the C ABI has them.
//! It prints the same line per step as the C program; `tests/c/run` runs both with the same
//! seeds and fails on any difference.
//!
//! ```text
//! cargo run --example serving_loop -- SEED
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use augur::core::engine::{EngineConfig, EntryResult, PauseMode, PreemptionMode, RequestDesc};
use augur::core::kv::{BlockPair, KvEvent, KvEventKind, Tier};
use augur::core::time::Instant;
use augur::storage::EngineBuffers;

// The workload's shape; the C file has the same constants.
const N_REQ: usize = 240;
const MAX_LIVE: u32 = 24;
const MAX_STEPS: u64 = 6000;
const BLOCK: u32 = 4;
const DEVICE_BLOCKS: u32 = 40;
const HOST_BLOCKS: u32 = 24;
const EVENT_RING: u32 = 10;
const EVENT_CHUNK: usize = 8;

/// 64-bit LCG (Knuth's MMIX constants); the high bits are used. The same as the C file's.
struct Lcg(u64);

impl Lcg {
    fn rnd(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as u32) % n
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    Unborn,
    Live,
    Paused,
    Done,
}

fn pairs(line: &mut String, name: &str, p: &[BlockPair]) {
    let _ = write!(line, " {name}=[");
    for (i, x) in p.iter().enumerate() {
        let _ = write!(line, "{}{}>{}", if i > 0 { "," } else { "" }, x.src, x.dst);
    }
    line.push(']');
}

/// The KV-event subscriber's view, replayed from the drained events alone: the hash each
/// (tier, block) caches. The C file keeps the same view with the same checks.
struct Replay {
    device: Vec<Option<u64>>,
    host: Vec<Option<u64>>,
    next_seq: u64,
}

impl Replay {
    fn pool(&mut self, tier: Tier) -> &mut [Option<u64>] {
        match tier {
            Tier::Device => &mut self.device,
            Tier::Host => &mut self.host,
        }
    }

    fn apply(&mut self, line: &mut String, ev: &KvEvent) -> Result<(), String> {
        if ev.seq != self.next_seq {
            return Err(format!(
                "event seq {} where {} was due",
                ev.seq, self.next_seq
            ));
        }
        self.next_seq += 1;
        let tier_char = |t: Tier| if t == Tier::Device { 'd' } else { 'h' };
        match ev.kind {
            KvEventKind::AllCleared => {
                line.push_str(" C");
                self.device.fill(None);
                self.host.fill(None);
            }
            KvEventKind::Stored {
                hash,
                parent,
                tokens,
                block_size,
                tier,
                block,
                ..
            } => {
                let _ = write!(line, " S{}{block}:{hash}", tier_char(tier));
                if let Some(p) = parent {
                    let _ = write!(line, "<{p}");
                }
                match self.pool(tier).get_mut(block as usize) {
                    Some(s @ None) if tokens == BLOCK && block_size == BLOCK => *s = Some(hash),
                    _ => return Err(format!("bad Stored event {ev:?}")),
                }
            }
            KvEventKind::Removed {
                hash, tier, block, ..
            } => {
                let _ = write!(line, " R{}{block}:{hash}", tier_char(tier));
                match self.pool(tier).get_mut(block as usize) {
                    Some(s) if *s == Some(hash) => *s = None,
                    _ => return Err(format!("bad Removed event {ev:?}")),
                }
            }
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let Some(seed) = std::env::args().nth(1).and_then(|s| s.parse::<u64>().ok()) else {
        eprintln!("usage: serving_loop SEED");
        return ExitCode::from(2);
    };
    match run(seed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serving_loop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(seed: u64) -> Result<(), String> {
    let mut lcg = Lcg(seed);
    // `augur_config_default` is `EngineConfig::new`; the C file changes the same fields.
    let mut cfg = EngineConfig::new(BLOCK, DEVICE_BLOCKS, MAX_LIVE);
    cfg.host_blocks = HOST_BLOCKS;
    cfg.kv_event_capacity = EVENT_RING;
    cfg.max_running = 8;
    cfg.token_budget = 48;
    cfg.prefill_chunk = 16;
    cfg.preemption = PreemptionMode::Auto;
    cfg.pause = PauseMode::Auto;
    cfg.validate().map_err(|e| format!("invalid config: {e}"))?;
    let mut buffers = EngineBuffers::new(&cfg).map_err(|e| e.to_string())?;
    let mut e = buffers.engine(cfg).map_err(|e| e.to_string())?;

    let mut handle = vec![None; N_REQ + 1];
    let mut state = vec![St::Unborn; N_REQ + 1];
    let mut target = vec![0u32; N_REQ + 1];
    let mut generated = vec![0u32; N_REQ + 1];
    let mut pause_used = vec![false; N_REQ + 1];
    let mut resume_at = vec![0u64; N_REQ + 1];
    let (mut next_id, mut live, mut done) = (1usize, 0u32, 0usize);
    let (mut pauses, mut resumes, mut aborts) = (0u64, 0u64, 0u64);
    let mut results: Vec<EntryResult> = Vec::new();
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut line = String::new();
    let mut replay = Replay {
        device: vec![None; DEVICE_BLOCKS as usize],
        host: vec![None; HOST_BLOCKS as usize],
        next_seq: 0,
    };
    let mut events = [KvEvent::default(); EVENT_CHUNK];

    let mut t = 1u64;
    while t <= MAX_STEPS && done < N_REQ {
        let now = Instant(t * 1000);
        line.clear();
        let _ = write!(line, "t={t}");

        // Arrivals.
        let arrivals = lcg.rnd(3);
        for _ in 0..arrivals {
            if next_id > N_REQ || live >= MAX_LIVE {
                break;
            }
            let id = next_id;
            next_id += 1;
            let prompt = 1 + lcg.rnd(40);
            let out_len = 1 + lcg.rnd(48);
            let noise = lcg.rnd(9);
            let predicted = (f64::from(out_len) + f64::from(noise) - 4.0).max(0.0);
            let cap = (lcg.rnd(4) == 0).then(|| 1 + lcg.rnd(48));
            let mut hashes = Vec::new();
            if lcg.rnd(3) == 0 {
                // A shared prefix: every request of a group has the same block hashes.
                let group = u64::from(lcg.rnd(4));
                hashes.extend((0..u64::from(prompt / BLOCK)).map(|j| group * 1000 + j + 1));
            }
            let desc = RequestDesc {
                predicted_output_tokens: Some(predicted),
                max_output_tokens: cap,
                prompt_block_hashes: &hashes,
                ..RequestDesc::new(id as u64, prompt)
            };
            let h = e
                .add_request(&desc, now)
                .map_err(|err| format!("add {id}: {err}"))?;
            handle[id] = Some(h);
            state[id] = St::Live;
            target[id] = out_len;
            live += 1;
            let _ = write!(line, " +{id}/{prompt}/{out_len}");
            if let Some(c) = cap {
                let _ = write!(line, "/cap{c}");
            }
            if !hashes.is_empty() {
                let _ = write!(line, "/h{}", hashes.len());
            }
        }

        // Now and then an abort of a random live request (paused ones included).
        if live > 0 && lcg.rnd(100) < 4 {
            let mut k = lcg.rnd(live);
            for id in 1..next_id {
                if state[id] != St::Live && state[id] != St::Paused {
                    continue;
                }
                if k == 0 {
                    let h = handle[id].ok_or("no handle")?;
                    e.abort(h, now)
                        .map_err(|err| format!("abort {id}: {err}"))?;
                    state[id] = St::Done;
                    live -= 1;
                    done += 1;
                    aborts += 1;
                    let _ = write!(line, " x{id}");
                    break;
                }
                k -= 1;
            }
        }

        // Paused requests whose external call returned.
        for id in 1..next_id {
            if state[id] != St::Paused || resume_at[id] > t {
                continue;
            }
            let appended = lcg.rnd(6);
            let h = handle[id].ok_or("no handle")?;
            e.resume_with_tokens(h, appended, now)
                .map_err(|err| format!("resume {id}: {err}"))?;
            state[id] = St::Live;
            resumes += 1;
            let _ = write!(line, " r{id}/{appended}");
        }

        let plan = e.schedule(now).map_err(|err| format!("schedule: {err}"))?;
        if plan.step != t {
            return Err(format!("step {} != {t}", plan.step));
        }
        line.push_str(" |");
        for en in plan.entries {
            let _ = write!(
                line,
                " {}:{}{}:{}:{}:{}:[",
                en.external_id,
                if en.kind as u32 == 0 { 'P' } else { 'D' },
                if en.samples { "s" } else { "" },
                en.tokens,
                en.computed_before,
                en.table_start
            );
            for (b, id) in plan.blocks(en).iter().enumerate() {
                let _ = write!(line, "{}{id}", if b > 0 { "," } else { "" });
            }
            line.push(']');
        }
        pairs(&mut line, "out", plan.swap_out);
        pairs(&mut line, "in", plan.swap_in);
        pairs(&mut line, "cp", plan.copies);
        line.push_str(" pre=[");
        for (k, x) in plan.preempted.iter().enumerate() {
            let _ = write!(
                line,
                "{}{}:{}:{}",
                if k > 0 { "," } else { "" },
                x.external_id,
                x.kind as u32,
                x.cause as u32
            );
        }
        line.push_str("] drop=[");
        for (k, x) in plan.dropped.iter().enumerate() {
            let id = x.external_id as usize;
            let _ = write!(
                line,
                "{}{id}:{}",
                if k > 0 { "," } else { "" },
                x.reason as u32
            );
            if !(1..next_id).contains(&id) || state[id] != St::Live {
                return Err(format!("dropped {id} is not live"));
            }
            state[id] = St::Done;
            live -= 1;
            done += 1;
        }
        line.push(']');
        let entries: Vec<_> = plan.entries.to_vec();

        // Results, by position. The decisions use only this loop's own state and the LCG.
        results.clear();
        for en in &entries {
            let id = en.external_id as usize;
            let mut r = EntryResult::new(0);
            if en.samples {
                r.tokens = 1;
                generated[id] += 1;
                if generated[id] >= target[id] {
                    r.flags = EntryResult::FINISHED;
                } else if !pause_used[id] && lcg.rnd(100) < 6 {
                    r.flags = EntryResult::PAUSE;
                    r.pause_duration_us = 1000 * u64::from(1 + lcg.rnd(20));
                    pause_used[id] = true;
                    resume_at[id] = t + 1 + u64::from(lcg.rnd(8));
                    state[id] = St::Paused;
                    pauses += 1;
                }
            }
            results.push(r);
        }
        e.complete_entries(&results, now)
            .map_err(|err| format!("complete: {err}"))?;

        line.push_str(" fin=[");
        for (k, f) in e.last_finished().iter().enumerate() {
            let id = f.external_id as usize;
            let _ = write!(
                line,
                "{}{id}:{}:{}",
                if k > 0 { "," } else { "" },
                f.reason as u32,
                f.generated_tokens
            );
            if !(1..next_id).contains(&id) || matches!(state[id], St::Done | St::Unborn) {
                return Err(format!("finished {id} is not live"));
            }
            state[id] = St::Done;
            live -= 1;
            done += 1;
        }
        line.push(']');

        let s = e.stats();
        let (d, h) = (s.kv.device, s.kv.host);
        let _ = write!(
            line,
            " st={}/{}/{}/{} n={}/{}/{}/{}/{} pre={}/{}/{}/{} pause={}/{}/{}/{} tok={}/{}/{}/{}/{} \
             dev={}/{}/{}/{} host={}/{}/{}/{} kv={}/{}/{}/{}/{}",
            s.waiting,
            s.running,
            s.swapped,
            s.paused,
            s.steps,
            s.added,
            s.finished,
            s.aborted,
            s.dropped,
            s.preemptions_recompute,
            s.preemptions_swap,
            s.preemptions_keep,
            s.preemptions_for_rank,
            s.pauses_preserved,
            s.pauses_discarded,
            s.pauses_swapped,
            s.idle_evicted,
            s.recomputed_tokens,
            s.prefix_hit_tokens,
            s.prompt_tokens_admitted,
            s.predicted_backlog_tokens,
            s.hashes_dropped,
            d.total,
            d.free_uncached,
            d.free_cached,
            d.in_use,
            h.total,
            h.free_uncached,
            h.free_cached,
            h.in_use,
            s.kv.prefix_hit_blocks,
            s.kv.evictions,
            s.kv.cow_copies,
            s.kv.swapped_out_blocks,
            s.kv.swapped_in_blocks
        );
        // KV events, drained in small chunks until one comes back short.
        line.push_str(" ev=[");
        loop {
            let n = e.drain_kv_events(&mut events);
            for ev in &events[..n] {
                replay.apply(&mut line, ev)?;
            }
            if n < EVENT_CHUNK {
                break;
            }
        }
        line.push(']');
        writeln!(out, "{line}").map_err(|err| err.to_string())?;
        t += 1;
    }
    let s = e.stats();
    if done != N_REQ || live != 0 {
        return Err(format!("not drained after {MAX_STEPS} steps"));
    }
    if s.kv.device.in_use != 0 || s.kv.host.in_use != 0 {
        return Err("blocks still in use after the last request".into());
    }
    // With nothing in use, every cached block is a free cached one: the replayed view must
    // count exactly what the engine's gauges say.
    let es = e.kv_event_stats();
    let cached = |pool: &[Option<u64>]| pool.iter().filter(|h| h.is_some()).count() as u32;
    if es.pending != 0 || es.resyncing || es.delivered != replay.next_seq {
        return Err(format!("event stream not drained: {es:?}"));
    }
    if cached(&replay.device) != s.kv.device.free_cached
        || cached(&replay.host) != s.kv.host.free_cached
    {
        return Err("the replayed KV events disagree with the engine's cached-block gauges".into());
    }
    writeln!(
        out,
        "summary steps={} finished={} aborted={aborts} dropped={} preemptions={} \
         swapped_out_blocks={} swapped_in_blocks={} pauses={pauses} resumes={resumes} \
         cow_copies={} prefix_hit_tokens={}",
        t - 1,
        s.finished,
        s.dropped,
        s.preemptions_recompute + s.preemptions_swap + s.preemptions_keep,
        s.kv.swapped_out_blocks,
        s.kv.swapped_in_blocks,
        s.kv.cow_copies,
        s.prefix_hit_tokens
    )
    .map_err(|err| err.to_string())?;
    writeln!(
        out,
        "events delivered={} dropped={} resyncs={} cached_device={}",
        es.delivered,
        es.dropped,
        es.resyncs,
        cached(&replay.device)
    )
    .map_err(|err| err.to_string())?;
    out.flush().map_err(|err| err.to_string())
}
