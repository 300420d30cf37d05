//! No-panic fuzz target over the engine API: random configurations (extreme values included)
//! and random call sequences, with `Engine::audit` and plan checks after every call. The
//! decoding and the checks live in `../src/ops.rs`, shared with `tests/engine_no_panic.rs`.
//!
//! `AUGUR_FUZZ_TRACE=1` prints every call as Rust (to turn a reproducer into a test);
//! `AUGUR_FUZZ_AVOID_TINY_RESCALE=1` steers around the known `Rescale` hang (see TESTING.md).

#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../src/ops.rs"]
mod ops;

impl ops::Source for Unstructured<'_> {
    fn byte(&mut self) -> u8 {
        // Pads with zeros once the data is used up.
        <u8 as arbitrary::Arbitrary>::arbitrary(self).unwrap_or(0)
    }
    fn exhausted(&self) -> bool {
        self.is_empty()
    }
}

fn limits() -> &'static ops::Limits {
    static LIMITS: OnceLock<ops::Limits> = OnceLock::new();
    LIMITS.get_or_init(|| ops::Limits {
        max_ops: 4096,
        max_storage_bytes: 64 << 20,
        trace: std::env::var_os("AUGUR_FUZZ_TRACE").is_some_and(|v| v != "0"),
        avoid_tiny_rescale: std::env::var_os("AUGUR_FUZZ_AVOID_TINY_RESCALE")
            .is_some_and(|v| v != "0"),
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Err(msg) = ops::run(&mut u, limits()) {
        panic!("engine check failed: {msg}");
    }
});
