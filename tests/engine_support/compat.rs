//! The few engine API calls the test support uses that changed between engine versions, in one
//! place: to run these tests against an older engine, only this file is replaced.

#![allow(dead_code)]

use augur::core::engine::{Engine, RequestDesc, RequestError, RequestHandle, RequestView};

/// Whether the engine can read a request's block table back (`Engine::block_table`).
pub const READBACK: bool = true;

/// Tokens one request may hold at most.
pub const TOKEN_LIMIT: u32 = augur::core::engine::TOKEN_LIMIT;

/// The prefix-cache namespace of a request description.
pub fn salt_of(d: &RequestDesc<'_>) -> u64 {
    d.cache_salt
}

/// Sets the prefix-cache namespace of a request description.
pub fn set_salt(d: &mut RequestDesc<'_>, salt: u64) {
    d.cache_salt = salt;
}

/// Request `h`'s whole block table (in the tier `v.kv_tier` names), read back from the engine.
pub fn read_table(e: &Engine<'_>, h: RequestHandle, v: &RequestView) -> Vec<u32> {
    let mut out = vec![0u32; v.kv_blocks as usize];
    let n = e
        .block_table(h, 0, &mut out)
        .expect("block_table of a live request");
    assert_eq!(
        n,
        out.len(),
        "block_table wrote fewer entries than kv_blocks"
    );
    out
}

/// `block_table` into a buffer of `len` entries from `start` (for the truncation checks): the
/// entries written, or `Err(need)` for `BufferTooSmall { need }`.
pub fn block_table_into(
    e: &Engine<'_>,
    h: RequestHandle,
    start: u32,
    len: usize,
) -> Result<Vec<u32>, u32> {
    let mut out = vec![u32::MAX; len];
    match e.block_table(h, start, &mut out) {
        Ok(n) => {
            out.truncate(n);
            Ok(out)
        }
        Err(RequestError::BufferTooSmall { need }) => {
            assert!(out.iter().all(|&b| b == u32::MAX), "written on failure");
            Err(need)
        }
        Err(x) => panic!("block_table: {x:?}"),
    }
}
