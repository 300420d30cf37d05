//! The engine must never panic on caller input (a C++ server embeds it; errors are values).
//!
//! The proptest version of the cargo-fuzz target `fuzz/fuzz_targets/engine_api.rs`: both run
//! the generator and checks of `fuzz/src/ops.rs` (included below), which decode bytes into a
//! configuration — every field, extreme values reachable: block size 1 to 2^20, token counts
//! near `u32::MAX`, NaN / infinite / negative / huge predictions, `Rescale` factors just above
//! 1 — and a call sequence (`add_request` with shared-prefix hash families, `schedule`,
//! `complete` with mostly well-formed and sometimes wrong results, `update_prediction`,
//! `abort` of live / stale / forged handles, `resume`, `resume_with_tokens`, queries, time
//! going forward and backwards). After every call `Engine::audit` must pass and the plan must
//! be sane; see the module docs of `ops.rs` for the list.
//!
//! - `engine_calls_never_panic`: 256 random inputs (`AUGUR_SOAK=1`: 100 times as many). A
//!   panic or a failed check fails the case; the message has the input in hex
//!   (`echo HEX | xxd -r -p > fuzz/regressions/NAME` makes it a regression file).
//! - `fuzz_regressions_replay`: every file in `fuzz/regressions/` (minimized fuzzer findings)
//!   must pass. `AUGUR_REPLAY=path` replays just that file and prints each call as Rust.
//! - `AUGUR_FUZZ_AVOID_TINY_RESCALE=1` raises `Rescale` factors below 1.01 to 1.01, to test
//!   around the known hang of factors just above 1 while it is open (TESTING.md).
//! - A case running longer than 30 s (`AUGUR_NO_PANIC_CASE_TIMEOUT_S`) is a hang: the input is
//!   written to `target/tmp/` and the test binary aborts.

#[path = "../fuzz/src/ops.rs"]
mod ops;

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// Short sequences and small storage keep the default run at a few seconds.
const LIMITS: ops::Limits = ops::Limits {
    max_ops: 1000,
    max_storage_bytes: 4 << 20,
    trace: false,
    avoid_tiny_rescale: false,
};

/// `LIMITS`, steering around the known `Rescale` hang if `AUGUR_FUZZ_AVOID_TINY_RESCALE=1`
/// (as the fuzz target does; see TESTING.md).
fn limits() -> ops::Limits {
    ops::Limits {
        avoid_tiny_rescale: avoid_tiny_rescale(),
        ..LIMITS
    }
}

fn avoid_tiny_rescale() -> bool {
    std::env::var("AUGUR_FUZZ_AVOID_TINY_RESCALE").is_ok_and(|v| v == "1")
}

fn cases() -> u32 {
    let soak = std::env::var("AUGUR_SOAK").is_ok_and(|v| v == "1");
    if soak { 256 * 100 } else { 256 }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ----- panics become errors with their location -----

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                let msg = match info.location() {
                    Some(l) => format!(
                        "{} at {}:{}",
                        payload_text(info.payload()),
                        l.file(),
                        l.line()
                    ),
                    None => payload_text(info.payload()),
                };
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
            } else {
                default(info);
            }
        }));
    });
}

fn payload_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

// ----- hangs abort the binary, leaving the input behind -----

type Watched = Vec<(ThreadId, Instant, Vec<u8>)>;
static RUNNING: Mutex<Watched> = Mutex::new(Vec::new());

fn case_timeout() -> Duration {
    let s = std::env::var("AUGUR_NO_PANIC_CASE_TIMEOUT_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(s)
}

fn start_watchdog() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let limit = case_timeout();
        thread::spawn(move || {
            loop {
                thread::sleep(Duration::from_millis(200));
                let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, t, bytes)) = running.iter().find(|(_, t, _)| t.elapsed() > limit) {
                    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("engine_no_panic-hang");
                    let saved = std::fs::write(&path, bytes).is_ok();
                    // Straight to stderr: `eprintln!` from a test's thread may be captured, and
                    // the abort would lose it.
                    let msg = format!(
                        "\nengine_no_panic: a case ran for {:?} (> {limit:?}): the engine hangs.\n\
                         input{}: {}\n",
                        t.elapsed(),
                        if saved {
                            format!(" (saved to {})", path.display())
                        } else {
                            String::new()
                        },
                        hex(bytes)
                    );
                    let _ = std::io::stderr().write_all(msg.as_bytes());
                    std::process::abort();
                }
            }
        });
    });
}

/// Runs `f` on `bytes` under the watchdog, turning a panic into `Err` with its location.
fn guarded(
    bytes: &[u8],
    f: impl FnOnce() -> Result<ops::Outcome, String>,
) -> Result<ops::Outcome, String> {
    install_panic_hook();
    start_watchdog();
    let me = thread::current().id();
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((me, Instant::now(), bytes.to_vec()));
    CAPTURING.with(|c| c.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    CAPTURING.with(|c| c.set(false));
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(id, _, _)| *id != me);
    match r {
        Ok(r) => r,
        Err(payload) => {
            let msg = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| payload_text(&*payload));
            Err(format!("panic: {msg}"))
        }
    }
}

fn run_case(bytes: &[u8], lim: &ops::Limits) -> Result<ops::Outcome, String> {
    guarded(bytes, || ops::run(&mut ops::Bytes::new(bytes), lim))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_calls_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Err(msg) = run_case(&bytes, &limits()) {
            prop_assert!(false, "{}\ninput (hex): {}", msg, hex(&bytes));
        }
    }
}

fn regression_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|d| d.path())
                .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "md"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn fuzz_regressions_replay() {
    let (files, trace) = match std::env::var_os("AUGUR_REPLAY") {
        Some(p) => (vec![PathBuf::from(p)], true),
        None => (regression_files(), false),
    };
    // The fuzz target's limits: the decoding depends on them.
    let lim = ops::Limits {
        max_ops: 4096,
        max_storage_bytes: 64 << 20,
        trace,
        avoid_tiny_rescale: avoid_tiny_rescale(),
    };
    let mut failures = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        if let Err(msg) = run_case(&bytes, &lim) {
            failures.push(format!("{}: {msg}", f.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fuzz regressions fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// The generator is not degenerate: on plain random bytes most inputs build an engine and
/// many reach `schedule` plans (whatever the engine does with them).
#[test]
fn generator_reaches_engine_states() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let (mut built, mut planned, mut calls) = (0, 0, 0);
    let n = 200;
    for _ in 0..n {
        let bytes: Vec<u8> = (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        match run_case(&bytes, &limits()) {
            Ok(o) => {
                built += o.built as u32;
                planned += (o.plans > 0) as u32;
                calls += o.calls;
            }
            // A failure (an engine finding) still means the engine was built and driven.
            Err(_) => built += 1,
        }
    }
    assert!(built * 3 >= n, "only {built} of {n} inputs built an engine");
    assert!(
        planned * 5 >= n,
        "only {planned} of {n} inputs reached a plan"
    );
    assert!(calls >= 20 * n as usize, "only {calls} calls in {n} inputs");
}

/// A panic inside a case is reported as a failure, not lost.
#[test]
fn panics_fail_the_case() {
    let r = guarded(&[], || panic!("boom"));
    let msg = r.expect_err("a panic must fail the case");
    assert!(
        msg.contains("boom") && msg.contains("engine_no_panic.rs"),
        "{msg}"
    );
}
