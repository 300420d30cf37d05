//! KV events on the wire: drained [`KvEvent`]s encoded in vLLM's KV-event msgpack layout.
//!
//! A prefix-aware router (NVIDIA Dynamo's KV router, llm-d) subscribes to vLLM's
//! `ZmqEventPublisher` and decodes each message as a `KVEventBatch`. This module produces the
//! same bytes from augur's events so such a router can follow an augur replica unchanged.
//!
//! # Layout
//! vLLM declares its events in `vllm/distributed/kv_events.py` as msgspec structs with
//! `array_like=True, omit_defaults=True, tag=True`, so each event is a msgpack array whose
//! first element is the tag (the class name) followed by the fields in declaration order, and a
//! batch is the array `[ts, [events...], data_parallel_rank]`. [`encode_batch`] writes:
//!
//! - batch: `[ts: float64, [event...], dp_rank: uint]`
//! - `["BlockStored", [hash], parent_hash | nil, token_ids, block_size, lora_id | nil, medium, lora_name]`
//!   (`lora_name` always nil)
//! - `["BlockRemoved", [hash], medium]`
//! - `["AllBlocksCleared"]`
//!
//! Mapping: augur's `u64` block hash is a msgpack unsigned int (vLLM's `ExternalBlockHash`
//! admits `bytes | int`); one augur event names one block, so `block_hashes` always has one
//! element; `parent` → `parent_block_hash`; the namespace → `lora_id` (namespace 0, the
//! default namespace, → nil); the tier → `medium` (`Tier::Device` → `"GPU"`, `Tier::Host` →
//! `"CPU"`). **Token ids**: the core knows only how many tokens a block holds, never their
//! ids (the serving stack hashes the tokens; augur receives the hashes), so `token_ids` is
//! always the empty list. A router that keys on block hashes (Dynamo does) is unaffected; one
//! that recomputes hashes from token ids cannot use augur's events.
//!
//! # Which vLLM release
//! `BlockStored` grew over vLLM's releases, always at the end: five fields (`block_hashes` to
//! `lora_id`, the form of the subscriber example that early Dynamo/llm-d copies declare), then
//! `medium`, then `lora_name` as a *required* field (vllm-project/vllm
//! `vllm/distributed/kv_events.py` at commit `0181ea3173e53eea8cf04a86891488e3dc89bb34`, which
//! also has optional `extra_keys`, `group_idx`, `kv_cache_spec_*`, omitted when default, and an
//! optional `group_idx` on `BlockRemoved`). A msgspec `array_like` decoder ignores trailing
//! elements it does not declare but rejects an array shorter than its required fields, so
//! augur writes the eight-element form, up to `lora_name`: the one layout that decodes under
//! all three declarations. `tests/interop/kv_events_decode.py` declares the three forms with
//! msgspec exactly as vLLM does and decodes augur's bytes with each (`tests/kv_events_interop.rs`).

//! Encoding uses the `rmp` crate's low-level writers (no hand-written msgpack markers).
//!
//! # Transport
//! [`zmq::Publisher`] (feature `zmq`, on by default) sends the batches as vLLM's
//! `ZmqEventPublisher` does: multipart `[topic, 8-byte big-endian sequence number, payload]`
//! on a PUB socket, and a replay ROUTER socket for missed sequence numbers.

#[cfg(feature = "zmq")]
pub mod zmq;

use augur_core::kv::{KvEvent, KvEventKind, Tier};
use rmp::encode::{self, ValueWriteError};

/// The `medium` string vLLM uses for a tier.
pub fn medium(tier: Tier) -> &'static str {
    match tier {
        Tier::Device => "GPU",
        Tier::Host => "CPU",
    }
}

fn nil(out: &mut Vec<u8>) -> Result<(), ValueWriteError<std::io::Error>> {
    encode::write_nil(out).map_err(ValueWriteError::InvalidMarkerWrite)
}

fn event(out: &mut Vec<u8>, ev: &KvEvent) -> Result<(), ValueWriteError<std::io::Error>> {
    match ev.kind {
        KvEventKind::Stored {
            hash,
            parent,
            tokens: _,
            block_size,
            tier,
            block: _,
            namespace,
        } => {
            encode::write_array_len(out, 8)?;
            encode::write_str(out, "BlockStored")?;
            encode::write_array_len(out, 1)?;
            encode::write_uint(out, hash)?;
            match parent {
                Some(p) => {
                    encode::write_uint(out, p)?;
                }
                None => nil(out)?,
            }
            encode::write_array_len(out, 0)?;
            encode::write_uint(out, u64::from(block_size))?;
            if namespace == 0 {
                nil(out)?;
            } else {
                encode::write_uint(out, namespace)?;
            }
            encode::write_str(out, medium(tier))?;
            nil(out)?; // lora_name
        }
        KvEventKind::Removed { hash, tier, .. } => {
            encode::write_array_len(out, 3)?;
            encode::write_str(out, "BlockRemoved")?;
            encode::write_array_len(out, 1)?;
            encode::write_uint(out, hash)?;
            encode::write_str(out, medium(tier))?;
        }
        KvEventKind::AllCleared => {
            encode::write_array_len(out, 1)?;
            encode::write_str(out, "AllBlocksCleared")?;
        }
    }
    Ok(())
}

fn batch(
    out: &mut Vec<u8>,
    events: &[KvEvent],
    ts: f64,
    dp_rank: u32,
) -> Result<(), ValueWriteError<std::io::Error>> {
    encode::write_array_len(out, 3)?;
    encode::write_f64(out, ts)?;
    encode::write_array_len(out, u32::try_from(events.len()).unwrap_or(u32::MAX))?;
    for ev in events {
        event(out, ev)?;
    }
    encode::write_uint(out, u64::from(dp_rank))?;
    Ok(())
}

/// Encodes one batch `[ts, [events], dp_rank]` (see the [module docs](self)); `ts` is seconds.
pub fn encode_batch(events: &[KvEvent], ts: f64, dp_rank: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + events.len() * 32);
    // Writing into a Vec cannot fail; an error here would be an rmp bug.
    let r = batch(&mut out, events, ts, dp_rank);
    debug_assert!(r.is_ok());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: KvEventKind) -> KvEvent {
        KvEvent { seq: 0, kind }
    }

    // Expected bytes written by hand from the msgpack spec.
    #[test]
    fn all_cleared_batch_bytes() {
        let got = encode_batch(&[ev(KvEventKind::AllCleared)], 0.0, 0);
        let mut want = vec![0x93, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x91, 0x91, 0xb0];
        want.extend_from_slice(b"AllBlocksCleared");
        want.push(0x00);
        assert_eq!(got, want);
    }

    #[test]
    fn stored_bytes() {
        let e = ev(KvEventKind::Stored {
            hash: 0x1_0000_0000,
            parent: None,
            tokens: 16,
            block_size: 16,
            tier: Tier::Device,
            block: 3,
            namespace: 0,
        });
        let got = encode_batch(&[e], 1.5, 2);
        // 1.5 as f64 = 0x3FF8000000000000
        let mut want = vec![0x93, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x91, 0x98, 0xab];
        want.extend_from_slice(b"BlockStored");
        want.extend_from_slice(&[0x91, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0]); // [uint64]
        want.push(0xc0); // parent nil
        want.push(0x90); // token_ids []
        want.push(0x10); // block_size 16
        want.push(0xc0); // lora_id nil
        want.extend_from_slice(&[0xa3, b'G', b'P', b'U']);
        want.push(0xc0); // lora_name nil
        want.push(0x02); // dp_rank
        assert_eq!(got, want);
    }

    #[test]
    fn removed_bytes() {
        let e = ev(KvEventKind::Removed {
            hash: 200,
            tier: Tier::Host,
            block: 1,
            namespace: 7,
        });
        let got = encode_batch(&[e], 0.0, 0);
        let mut want = vec![0x93, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x91, 0x93, 0xac];
        want.extend_from_slice(b"BlockRemoved");
        want.extend_from_slice(&[0x91, 0xcc, 200]);
        want.extend_from_slice(&[0xa3, b'C', b'P', b'U']);
        want.push(0x00);
        assert_eq!(got, want);
    }

    // Round trip: decode with rmp's generic readers, field by field, as a router would.
    #[test]
    fn stored_round_trip() {
        use rmp::decode;
        let e = ev(KvEventKind::Stored {
            hash: u64::MAX,
            parent: Some(41),
            tokens: 32,
            block_size: 32,
            tier: Tier::Host,
            block: 9,
            namespace: 5,
        });
        let bytes = encode_batch(&[e], 2.25, 1);
        let mut r = &bytes[..];
        assert_eq!(decode::read_array_len(&mut r).ok(), Some(3));
        assert_eq!(decode::read_f64(&mut r).ok(), Some(2.25));
        assert_eq!(decode::read_array_len(&mut r).ok(), Some(1));
        assert_eq!(decode::read_array_len(&mut r).ok(), Some(8));
        let mut buf = [0u8; 32];
        assert_eq!(decode::read_str(&mut r, &mut buf).ok(), Some("BlockStored"));
        assert_eq!(decode::read_array_len(&mut r).ok(), Some(1));
        assert_eq!(decode::read_int::<u64, _>(&mut r).ok(), Some(u64::MAX));
        assert_eq!(decode::read_int::<u64, _>(&mut r).ok(), Some(41));
        assert_eq!(decode::read_array_len(&mut r).ok(), Some(0));
        assert_eq!(decode::read_int::<u32, _>(&mut r).ok(), Some(32));
        assert_eq!(decode::read_int::<u64, _>(&mut r).ok(), Some(5));
        assert_eq!(decode::read_str(&mut r, &mut buf).ok(), Some("CPU"));
        assert!(decode::read_nil(&mut r).is_ok());
        assert_eq!(decode::read_int::<u32, _>(&mut r).ok(), Some(1));
        assert!(r.is_empty());
    }
}
