//! Random call sequences through the C ABI, as a C host makes them: the harness in
//! `ffi/src/call_sequences.rs` (shared with augur-ffi's proptest) decodes the input into a
//! configuration, an engine (allocated or in a caller region) and calls with good and bad
//! arguments, and checks the ABI's contract after every one (statuses, untouched
//! out-parameters, no panic caught by the guard, mirrors of the block tables equal to the
//! engine's). augur-ffi builds only a staticlib and a cdylib, so its source is compiled in
//! here with `#[path]`: the fuzzer calls the very `extern "C"` functions C links.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, missing_docs, unreachable_pub)]
#[path = "../../ffi/src/lib.rs"]
mod capi;

use capi::status::*;
use capi::types::*;
use capi::*;

#[path = "../../ffi/src/call_sequences.rs"]
mod call_sequences;

const LIMITS: call_sequences::Limits = call_sequences::Limits {
    max_ops: 2000,
    max_region_bytes: 16 << 20,
};

fuzz_target!(|data: &[u8]| {
    if let Err(msg) = call_sequences::run(data, &LIMITS) {
        panic!("C ABI contract broken: {msg}");
    }
});
