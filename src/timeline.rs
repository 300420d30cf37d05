//! A timeline of a simulated run in the Chrome trace-event format (open it in
//! [Perfetto](https://ui.perfetto.dev) or `chrome://tracing`).
//!
//! [`Timeline`] is fed by [`crate::sim::simulate_with_timeline`] as the run goes and streams
//! every event to its writer at once: it holds a few words per request and nothing per step,
//! so a long run does not build a long vector of events. Timestamps (`ts`, `dur`) are
//! microseconds of *simulated* time, the simulator's own clock.
//!
//! # What is in the file
//!
//! One JSON object `{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}`.
//! Events are written when they are known, so they are not in time order (a decode span is
//! written when it ends); viewers sort them.
//!
//! Process 1, `engine`, has one counter event (`"ph": "C"`) of each of these per model
//! iteration, at the iteration's start, and a zero sample when the engine goes idle:
//!
//! | counter | series |
//! | --- | --- |
//! | `requests` | `running` (requests in the iteration's batch), `waiting`, `swapped`, `paused` |
//! | `tokens` | `prefill`, `decode` (tokens the iteration computes) |
//! | `kv blocks` | `device`, `host` (blocks in use after scheduling) |
//! | `done` | `finished`, `rejected` (running totals; written when they change) |
//!
//! Process 2, `requests`, has one thread (track) per request, `tid` = the request's id (its
//! index in the trace), named `request N`. Its complete events (`"ph": "X"`) tile the
//! request's life from arrival to its end without overlapping, in this order of kinds:
//!
//! | span | when | args |
//! | --- | --- | --- |
//! | `queued` | waiting for the scheduler | `after`: `arrival`, `preemption`, `tool call` or `skipped` (left out of a batch while running) |
//! | `prefill` | one prefill chunk (one iteration) | `tokens`, `computed_before`, `samples` |
//! | `decode` | consecutive decode iterations, merged | `tokens`, `iterations` |
//! | `paused` | waiting on a tool call | `duration_us` (the call's length) |
//!
//! and instant events (`"ph": "i"`, thread scope): `preempted` (`kind`: recompute, swap or
//! keep; `cause`: memory or rank), `pause` (a tool call starts), `finished` (`output_tokens`,
//! `preemptions`) and `rejected` (`reason`). Every request of the trace ends with exactly one
//! `finished` or `rejected` instant, unless the run was cut off.

use std::io::{self, Write};

use augur_core::engine::{
    EngineStats, EntryKind, Plan, PreemptionCause, PreemptionKind, ScheduledEntry,
};
use serde::Serialize;

/// The process id of the engine's counters.
pub const ENGINE_PID: u32 = 1;
/// The process id of the per-request tracks.
pub const REQUESTS_PID: u32 = 2;

/// What the timeline's `otherData` says about the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TimelineMeta {
    /// The policy's label.
    pub policy: String,
    /// The predictor spec.
    pub predictor: String,
    /// The rate scale applied to the trace.
    pub rate_scale: f64,
    /// The trace's name.
    pub trace: String,
    /// Requests in the trace.
    pub requests: u64,
}

/// Why a request is in the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum QueuedAfter {
    #[default]
    Arrival,
    Preemption,
    ToolCall,
    Skipped,
}

impl QueuedAfter {
    fn as_str(self) -> &'static str {
        match self {
            QueuedAfter::Arrival => "arrival",
            QueuedAfter::Preemption => "preemption",
            QueuedAfter::ToolCall => "tool call",
            QueuedAfter::Skipped => "skipped",
        }
    }
}

/// An open run of decode iterations.
#[derive(Clone, Copy, Debug, Default)]
struct DecodeRun {
    start: u64,
    end: u64,
    tokens: u32,
}

/// Where one request's track stands.
#[derive(Clone, Copy, Debug, Default)]
struct Track {
    /// Events of this request are written up to here (µs).
    cursor: u64,
    /// Why the request waits from `cursor` on, if it does.
    after: QueuedAfter,
    /// The decode run not yet written.
    decode: Option<DecodeRun>,
    /// When its tool call started, while paused.
    paused_since: Option<u64>,
    /// The tool call's length, while paused.
    pause_us: u64,
    /// Preemptions so far.
    preemptions: u32,
}

/// One trace event.
#[derive(Serialize)]
struct Event<'a, A: Serialize> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cat: Option<&'a str>,
    ph: &'a str,
    ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<u64>,
    pid: u32,
    tid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<&'a str>,
    args: A,
}

#[derive(Serialize)]
struct NameArgs<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct SortArgs {
    sort_index: u64,
}

#[derive(Serialize)]
struct QueuedArgs<'a> {
    after: &'a str,
}

#[derive(Serialize)]
struct PrefillArgs {
    tokens: u32,
    computed_before: u32,
    samples: bool,
}

#[derive(Serialize)]
struct DecodeArgs {
    tokens: u32,
    iterations: u32,
}

#[derive(Serialize)]
struct PausedArgs {
    duration_us: u64,
}

#[derive(Serialize)]
struct PreemptedArgs<'a> {
    kind: &'a str,
    cause: &'a str,
}

#[derive(Serialize)]
struct FinishedArgs {
    output_tokens: u32,
    preemptions: u32,
}

#[derive(Serialize)]
struct RejectedArgs<'a> {
    reason: &'a str,
}

#[derive(Serialize)]
struct RequestsArgs {
    running: u32,
    waiting: u32,
    swapped: u32,
    paused: u32,
}

#[derive(Serialize)]
struct TokensArgs {
    prefill: u64,
    decode: u64,
}

#[derive(Serialize)]
struct KvArgs {
    device: u32,
    host: u32,
}

#[derive(Serialize)]
struct DoneArgs {
    finished: u64,
    rejected: u64,
}

/// A Chrome trace-event file being written (see the [module documentation](self)).
///
/// The event methods do not return errors: the first write error is kept, later writes are
/// skipped, and [`Timeline::finish`] returns it.
pub struct Timeline<W: Write> {
    out: W,
    meta: TimelineMeta,
    first: bool,
    error: Option<io::Error>,
    tracks: Vec<Track>,
    finished: u64,
    rejected: u64,
    done_dirty: bool,
    idle: bool,
    events: u64,
}

impl<W: Write> std::fmt::Debug for Timeline<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline")
            .field("requests", &self.tracks.len())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// The name of a preemption kind in the timeline.
fn kind_name(k: PreemptionKind) -> &'static str {
    match k {
        PreemptionKind::Recompute => "recompute",
        PreemptionKind::Swap => "swap",
        PreemptionKind::Keep => "keep",
    }
}

/// The name of a preemption cause in the timeline.
fn cause_name(c: PreemptionCause) -> &'static str {
    match c {
        PreemptionCause::Memory => "memory",
        PreemptionCause::Rank => "rank",
    }
}

impl<W: Write> Timeline<W> {
    /// Starts a timeline of a run of `meta.requests` requests on `out` (give it a buffered
    /// writer) and writes the header and the process names.
    pub fn new(out: W, meta: TimelineMeta) -> Self {
        let n = usize::try_from(meta.requests).unwrap_or(usize::MAX);
        let mut t = Timeline {
            out,
            meta,
            first: true,
            error: None,
            tracks: vec![Track::default(); n],
            finished: 0,
            rejected: 0,
            done_dirty: false,
            idle: true,
            events: 0,
        };
        t.raw(b"{\"traceEvents\":[\n");
        for (pid, name) in [(ENGINE_PID, "engine"), (REQUESTS_PID, "requests")] {
            t.meta_event("process_name", pid, 0, &NameArgs { name });
            t.meta_event(
                "process_sort_index",
                pid,
                0,
                &SortArgs {
                    sort_index: u64::from(pid),
                },
            );
        }
        t
    }

    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    fn raw(&mut self, bytes: &[u8]) {
        if self.error.is_none()
            && let Err(e) = self.out.write_all(bytes)
        {
            self.error = Some(e);
        }
    }

    fn emit<A: Serialize>(&mut self, ev: &Event<'_, A>) {
        if self.error.is_some() {
            return;
        }
        let sep: &[u8] = if self.first { b"" } else { b",\n" };
        self.first = false;
        self.raw(sep);
        if self.error.is_none()
            && let Err(e) = serde_json::to_writer(&mut self.out, ev)
        {
            self.error = Some(e.into());
        }
        self.events += 1;
    }

    fn meta_event<A: Serialize>(&mut self, name: &str, pid: u32, tid: u64, args: &A) {
        self.emit(&Event {
            name,
            cat: None,
            ph: "M",
            ts: 0,
            dur: None,
            pid,
            tid,
            s: None,
            args,
        });
    }

    fn span<A: Serialize>(&mut self, id: u64, name: &str, start: u64, end: u64, args: &A) {
        self.emit(&Event {
            name,
            cat: Some("request"),
            ph: "X",
            ts: start,
            dur: Some(end.saturating_sub(start)),
            pid: REQUESTS_PID,
            tid: id,
            s: None,
            args,
        });
    }

    fn instant<A: Serialize>(&mut self, id: u64, name: &str, ts: u64, args: &A) {
        self.emit(&Event {
            name,
            cat: Some("request"),
            ph: "i",
            ts,
            dur: None,
            pid: REQUESTS_PID,
            tid: id,
            s: Some("t"),
            args,
        });
    }

    fn counter<A: Serialize>(&mut self, name: &str, ts: u64, args: &A) {
        self.emit(&Event {
            name,
            cat: None,
            ph: "C",
            ts,
            dur: None,
            pid: ENGINE_PID,
            tid: 0,
            s: None,
            args,
        });
    }

    fn track(&mut self, id: u64) -> Track {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.tracks.get(i))
            .copied()
            .unwrap_or_default()
    }

    fn set_track(&mut self, id: u64, t: Track) {
        if let Some(slot) = usize::try_from(id)
            .ok()
            .and_then(|i| self.tracks.get_mut(i))
        {
            *slot = t;
        }
    }

    /// Writes the request's open decode run, if any.
    fn close_decode(&mut self, id: u64, tr: &mut Track) {
        if let Some(d) = tr.decode.take() {
            self.span(
                id,
                "decode",
                d.start,
                d.end,
                &DecodeArgs {
                    tokens: d.tokens,
                    iterations: d.tokens,
                },
            );
            tr.cursor = d.end;
            tr.after = QueuedAfter::Skipped;
        }
    }

    /// Writes the request's wait from its cursor up to `t` (nothing when empty).
    fn queue_until(&mut self, id: u64, tr: &mut Track, t: u64) {
        self.close_decode(id, tr);
        if t > tr.cursor {
            let after = tr.after.as_str();
            self.span(id, "queued", tr.cursor, t, &QueuedArgs { after });
        }
        tr.cursor = tr.cursor.max(t);
    }

    /// Request `id` arrived at `arrival_us` and was accepted (or is about to be rejected):
    /// names its track.
    pub fn arrive(&mut self, id: u64, arrival_us: u64) {
        let name = format!("request {id}");
        self.meta_event("thread_name", REQUESTS_PID, id, &NameArgs { name: &name });
        self.meta_event(
            "thread_sort_index",
            REQUESTS_PID,
            id,
            &SortArgs { sort_index: id },
        );
        self.set_track(
            id,
            Track {
                cursor: arrival_us,
                ..Track::default()
            },
        );
    }

    /// Request `id` was rejected at `t` (at admission, or dropped by the engine).
    pub fn reject(&mut self, id: u64, t: u64, reason: &str) {
        let mut tr = self.track(id);
        self.queue_until(id, &mut tr, t);
        self.instant(id, "rejected", t, &RejectedArgs { reason });
        self.set_track(id, tr);
        self.rejected += 1;
        self.done_dirty = true;
    }

    /// The tool call of request `id` returned at `t`.
    pub fn resume(&mut self, id: u64, t: u64) {
        let mut tr = self.track(id);
        if let Some(since) = tr.paused_since.take() {
            let args = PausedArgs {
                duration_us: tr.pause_us,
            };
            self.span(id, "paused", since, t, &args);
            tr.cursor = t;
            tr.after = QueuedAfter::ToolCall;
        }
        self.set_track(id, tr);
    }

    /// An iteration starts at `t` with `plan`: writes the counters and the preemptions.
    /// `stats` are the engine's counters after scheduling.
    pub fn step(&mut self, t: u64, plan: &Plan<'_>, stats: &EngineStats) {
        self.flush_done(t);
        self.idle = false;
        let (mut prefill, mut decode) = (0u64, 0u64);
        for e in plan.entries {
            match e.kind {
                EntryKind::Prefill => prefill += u64::from(e.tokens),
                EntryKind::Decode => decode += u64::from(e.tokens),
            }
        }
        let running = u32::try_from(plan.entries.len()).unwrap_or(u32::MAX);
        self.counter(
            "requests",
            t,
            &RequestsArgs {
                running,
                waiting: stats.waiting,
                swapped: stats.swapped,
                paused: stats.paused,
            },
        );
        self.counter("tokens", t, &TokensArgs { prefill, decode });
        self.counter(
            "kv blocks",
            t,
            &KvArgs {
                device: stats.kv.device.in_use,
                host: stats.kv.host.in_use,
            },
        );
        for p in plan.preempted {
            let id = p.external_id;
            let mut tr = self.track(id);
            self.close_decode(id, &mut tr);
            // A preempted request was running: any gap since its last iteration was a skip.
            self.queue_until(id, &mut tr, t);
            tr.preemptions += 1;
            tr.after = QueuedAfter::Preemption;
            let args = PreemptedArgs {
                kind: kind_name(p.kind),
                cause: cause_name(p.cause),
            };
            self.instant(id, "preempted", t, &args);
            self.set_track(id, tr);
        }
    }

    /// The engine has nothing to run at `t`: writes a zero sample of the counters (once per
    /// idle period). `stats` are the engine's counters.
    pub fn idle(&mut self, t: u64, stats: &EngineStats) {
        self.flush_done(t);
        if self.idle {
            return;
        }
        self.idle = true;
        let args = RequestsArgs {
            running: 0,
            waiting: stats.waiting,
            swapped: stats.swapped,
            paused: stats.paused,
        };
        self.counter("requests", t, &args);
        self.counter(
            "tokens",
            t,
            &TokensArgs {
                prefill: 0,
                decode: 0,
            },
        );
        let kv = KvArgs {
            device: stats.kv.device.in_use,
            host: stats.kv.host.in_use,
        };
        self.counter("kv blocks", t, &kv);
    }

    /// Entry `e` runs in the iteration `[t, t_end]`.
    pub fn entry(&mut self, e: &ScheduledEntry, t: u64, t_end: u64) {
        let id = e.external_id;
        let mut tr = self.track(id);
        match e.kind {
            EntryKind::Prefill => {
                self.queue_until(id, &mut tr, t);
                let args = PrefillArgs {
                    tokens: e.tokens,
                    computed_before: e.computed_before,
                    samples: e.samples,
                };
                self.span(id, "prefill", t, t_end, &args);
                tr.cursor = t_end;
                tr.after = QueuedAfter::Skipped;
            }
            EntryKind::Decode => match &mut tr.decode {
                Some(d) if d.end == t => {
                    d.end = t_end;
                    d.tokens = d.tokens.saturating_add(1);
                }
                _ => {
                    self.queue_until(id, &mut tr, t);
                    tr.decode = Some(DecodeRun {
                        start: t,
                        end: t_end,
                        tokens: 1,
                    });
                }
            },
        }
        self.set_track(id, tr);
    }

    /// Request `id` starts a tool call of `duration_us` at `t` (the end of the iteration whose
    /// token asked for it).
    pub fn pause(&mut self, id: u64, t: u64, duration_us: u64) {
        let mut tr = self.track(id);
        self.close_decode(id, &mut tr);
        tr.cursor = tr.cursor.max(t);
        tr.paused_since = Some(tr.cursor);
        tr.pause_us = duration_us;
        self.instant(id, "pause", t, &PausedArgs { duration_us });
        self.set_track(id, tr);
    }

    /// Request `id` finished at `t` with `output_tokens` output tokens.
    pub fn finish(&mut self, id: u64, t: u64, output_tokens: u32) {
        let mut tr = self.track(id);
        self.close_decode(id, &mut tr);
        let args = FinishedArgs {
            output_tokens,
            preemptions: tr.preemptions,
        };
        self.instant(id, "finished", t, &args);
        tr.cursor = tr.cursor.max(t);
        self.set_track(id, tr);
        self.finished += 1;
        self.done_dirty = true;
    }

    /// Writes the `done` counter at `t` if it changed.
    pub fn flush_done(&mut self, t: u64) {
        if self.done_dirty {
            self.done_dirty = false;
            let args = DoneArgs {
                finished: self.finished,
                rejected: self.rejected,
            };
            self.counter("done", t, &args);
        }
    }

    /// Ends the run at `t`: writes what is still open (decode runs and waits of requests the
    /// run left unfinished), the `done` counter, closes the JSON and flushes. Returns the
    /// writer, or the first write error.
    pub fn finish_file(mut self, t: u64) -> io::Result<W> {
        self.flush_done(t);
        for i in 0..self.tracks.len() {
            let id = i as u64;
            let mut tr = self.tracks[i];
            self.close_decode(id, &mut tr);
            self.tracks[i] = tr;
        }
        self.raw(b"\n],\"displayTimeUnit\":\"ms\",\"otherData\":");
        if self.error.is_none()
            && let Err(e) = serde_json::to_writer(&mut self.out, &self.meta)
        {
            self.error = Some(e.into());
        }
        self.raw(b"}\n");
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(self.out)
    }
}
