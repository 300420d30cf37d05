#!/usr/bin/env python3
"""An independent decoder of augur's KV-event batches, written from vLLM's struct definitions
(vllm/distributed/kv_events.py), not from augur's encoder.

Reads frames (4-byte big-endian length, then one msgpack KVEventBatch) from the file named on
the command line, decodes every batch with msgspec under the three BlockStored declarations
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


def main():
    eras = declarations()
    batch_decoder = msgspec.msgpack.Decoder(EventBatch)
    raw_event = msgspec.msgpack.Encoder()
    cached = {}
    batches = events = 0
    data = open(sys.argv[1], "rb").read()
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        pos += 4
        batch = batch_decoder.decode(data[pos : pos + n])
        pos += n
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
        "batches": batches,
        "events": events,
        "cached": sorted([m, h, c] for (m, h), c in cached.items()),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
