#!/usr/bin/env python3
"""An independent decoder of augur's KV-event batches, written from vLLM's struct definitions
(vllm/distributed/kv_events.py), not from augur's encoder.

Reads frames (4-byte big-endian length, then one msgpack KVEventBatch) from the file named on
the command line or, with `--zmq PUB REPLAY TOPIC COUNT`, subscribes with libzmq (pyzmq) as
vLLM's subscriber example does: a SUB socket on PUB filtered by TOPIC and a DEALER on REPLAY,
filling every gap in the sequence numbers (including the batches sent before it connected)
from the replay socket until it holds batches 0..COUNT-1. Either way it decodes every batch with msgspec under the three BlockStored declarations
vLLM has shipped (5 fields; + medium; + lora_name, required), checks that all three agree,
replays the events as a router does (keyed by medium and block hash; AllBlocksCleared
forgets everything), and prints the cached multiset as JSON on stdout.
"""

import json
import struct
import sys
from typing import Any, Optional

import msgspec


class EventBatch(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    ts: float
    events: list[Any]
    data_parallel_rank: Optional[int] = None


def declarations():
    """vLLM's event classes in each of its releases' shapes, as msgspec tagged array structs."""
    eras = {}
    for era, extra in (("v5", ()), ("medium", ("medium",)), ("lora_name", ("medium", "lora_name"))):

        class KVCacheEvent(msgspec.Struct, array_like=True, omit_defaults=True, gc=False, tag=True):
            pass

        fields = {
            "block_hashes": list[int],
            "parent_block_hash": Optional[int],
            "token_ids": list[int],
            "block_size": int,
            "lora_id": Optional[int],
        }
        fields.update({f: Optional[str] for f in extra})
        stored = type("BlockStored", (KVCacheEvent,), {"__annotations__": fields})
        removed_fields = {"block_hashes": list[int]}
        if extra:
            removed_fields["medium"] = Optional[str]
        removed = type("BlockRemoved", (KVCacheEvent,), {"__annotations__": removed_fields})
        cleared = type("AllBlocksCleared", (KVCacheEvent,), {"__annotations__": {}})
        eras[era] = msgspec.msgpack.Decoder(stored | removed | cleared)
    return eras


def read_frames(path):
    """The payloads of a file of length-prefixed frames."""
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        pos += 4
        yield data[pos : pos + n]
        pos += n


END_SEQ = (-1).to_bytes(8, "big", signed=True)


def subscribe(pub, replay, topic, count, timeout_s=60.0):
    """Payloads 0..count-1 received as a vLLM subscriber receives them, in sequence order.

    Prints `ready` on stdout once both sockets are connected, so that the publisher can send
    the rest of its stream. Also returns how many batches came live and how many by replay.
    """
    import time

    import zmq

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect(pub)
    sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(replay)
    print("ready", flush=True)
    got = {}
    live = replayed = 0
    deadline = time.monotonic() + timeout_s

    def fill_from(start):
        nonlocal replayed
        dealer.send_multipart([b"", start.to_bytes(8, "big")])
        while True:
            if not dealer.poll(int(max(0.0, deadline - time.monotonic()) * 1000)):
                raise SystemExit(f"replay from {start}: no end marker before the deadline")
            frames = dealer.recv_multipart()
            assert len(frames) == 3 and frames[0] == b"", frames
            if frames[1] == END_SEQ:
                assert frames[2] == b""
                return
            seq = int.from_bytes(frames[1], "big")
            assert start <= seq < count, (start, seq)
            if seq not in got:
                got[seq] = frames[2]
                replayed += 1

    while len(got) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out holding {len(got)} of {count} batches")
        missing = next(s for s in range(count) if s not in got)
        if sub.poll(200):
            frames = sub.recv_multipart()
            assert len(frames) == 3 and frames[0].startswith(topic.encode()), frames
            seq = int.from_bytes(frames[1], "big")
            if seq > missing:
                fill_from(missing)
            if seq not in got:
                got[seq] = frames[2]
                live += 1
        else:
            # Nothing live for a while: what is missing was sent before we joined.
            fill_from(missing)
    sub.close(0)
    dealer.close(0)
    ctx.term()
    return [got[s] for s in range(count)], live, replayed


def main():
    eras = declarations()
    batch_decoder = msgspec.msgpack.Decoder(EventBatch)
    raw_event = msgspec.msgpack.Encoder()
    cached = {}
    batches = events = 0
    transport = {}
    if sys.argv[1] == "--zmq":
        pub, replay, topic, count = sys.argv[2:6]
        payloads, live, replayed = subscribe(pub, replay, topic, int(count))
        transport = {"live": live, "replayed": replayed}
    else:
        payloads = read_frames(sys.argv[1])
    for payload in payloads:
        batch = batch_decoder.decode(payload)
        batches += 1
        for ev in batch.events:
            events += 1
            blob = raw_event.encode(ev)
            decoded = {era: d.decode(blob) for era, d in eras.items()}
            new = decoded["lora_name"]
            kind = type(new).__name__
            for era, old in decoded.items():
                assert type(old).__name__ == kind, (era, old, new)
                if kind != "AllBlocksCleared":
                    assert old.block_hashes == new.block_hashes, (era, old, new)
            if kind == "AllBlocksCleared":
                cached.clear()
                continue
            assert len(new.block_hashes) == 1
            if kind == "BlockStored":
                assert new.lora_name is None and new.token_ids == []
                assert decoded["v5"].lora_id == new.lora_id
            # BlockRemoved carries no lora_id, so the view is keyed by (medium, hash), as a
            # router that ignores namespaces keys it.
            for h in new.block_hashes:
                key = (new.medium, h)
                if kind == "BlockStored":
                    cached[key] = cached.get(key, 0) + 1
                else:
                    assert cached.get(key, 0) > 0, ("removed a block never stored", new)
                    cached[key] -= 1
                    if cached[key] == 0:
                        del cached[key]
    out = {
        **transport,
        "batches": batches,
        "events": events,
        "cached": sorted([m, h, c] for (m, h), c in cached.items()),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
