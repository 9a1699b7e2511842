"""Decode speed by wire format: raw schemaless Avro, framed (Confluent wire format) with the topic's
own schema id, and framed with a newer writer schema (an added optional field).

Why its own script: the fast decoders (`codec/compiled.py`) must keep their speed on framed
values written with our schema (the 5-byte header stripped, the same decoder), and the cost of
the other framed case (Avro schema resolution in fastavro) is worth knowing before a producer
upgrades its schema. Runs on the client's in-memory `mock://` registry: no broker, no network
(the writer schema is fetched once per id and kept, so a real registry adds nothing per record).

    python -m profilestream.devtools.bench.wire [--records 100000] [--repeat 5]

Prints microseconds per record (best of `--repeat`) of `decode_batch`, the dataflow's decode step
(`*_us`), and of the codec alone, `decode_input` record by record (`codec_*_us`).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from profilestream.codec import avro, registry
from profilestream.devtools.sample import ShopSpec, generate
from profilestream.domain.outputs import Output
from profilestream.domain.roles import CLICKSTREAM, INPUT_ROLES
from profilestream.domain.rules import Rules
from profilestream.flows.decode import decode_batch
from profilestream.kafka.source import Raw

__all__ = ["main", "measure"]

_NOW = 2_000_000_000_000  # after every sample record: none is in the future


def _newer_schema(role: str) -> str:
    schema = json.loads(avro.schema_text(role))
    schema["fields"].append({"name": "added_later", "type": ["null", "string"], "default": None})
    return json.dumps(schema)


def _step(batch: list[Raw], wire: registry.Wire | None) -> float:
    started = time.perf_counter()
    out = decode_batch(Rules(), batch, _NOW, wire)  # type: ignore[arg-type]
    took = time.perf_counter() - started
    letters = [o for o in out if isinstance(o, Output)]
    if letters:  # every sample record is valid: a dead letter here is a bug, not a figure
        raise RuntimeError(f"{len(letters)} records dead-lettered, e.g. {(letters[0].value or {}).get('error')}")
    return took


def _codec(batch: list[Raw], wire: registry.Wire | None) -> float:
    """The codec alone (`decode_input` record by record), without the step's counting and batching."""
    rules = Rules()
    read = avro.decode_input if wire is None else wire.decode_input
    started = time.perf_counter()
    for r in batch:
        read(r.role, r.value, rules, _NOW)
    return time.perf_counter() - started


def measure(records: int = 100_000, repeat: int = 5) -> dict[str, float]:
    """us/record for each wire format, over the sample shop's first `records`: best of `repeat`,
    the variants taken in turn within each round (on a shared machine a burst of load then hits
    one round of all of them, not all rounds of one)."""
    from confluent_kafka.schema_registry import Schema

    url = f"mock://bench-{uuid.uuid4().hex}"
    wire = registry.Wire(url, {role: role for role in INPUT_ROLES})
    ids = wire.register(INPUT_ROLES)
    newer = {
        role: registry.client(url).register_schema(f"{role}-value", Schema(_newer_schema(role), "AVRO"))
        for role in INPUT_ROLES
    }
    raw, own, other = [], [], []
    for i, (role, rec) in enumerate(generate(ShopSpec(events=records))):
        value = avro.encode(role, avro.from_json(role, rec))
        raw.append(Raw(role, role, 0, i, None, value, 0))
        own.append(Raw(role, role, 0, i, None, registry.frame(ids[role], value), 0))
        # a newer writer's bytes: ours with the added field's null branch (0) at the end
        other.append(Raw(role, role, 0, i, None, registry.frame(newer[role], value + b"\x00"), 0))
    variants = {
        "raw_us": (_step, raw, None),
        "raw_with_registry_us": (_step, raw, wire),
        "framed_own_schema_us": (_step, own, wire),
        "framed_newer_schema_us": (_step, other, wire),
        "codec_raw_us": (_codec, raw, None),
        "codec_framed_own_schema_us": (_codec, own, wire),
        "codec_framed_newer_schema_us": (_codec, other, wire),
    }
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeat):
        for name, (run, batch, with_wire) in variants.items():
            best[name] = min(best[name], run(batch, with_wire))
    figures: dict[str, float] = {"records": len(raw), "clicks": sum(1 for r in raw if r.role == CLICKSTREAM)}
    figures.update({name: took / len(raw) * 1e6 for name, took in best.items()})
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m profilestream.devtools.bench.wire", description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    figures = measure(args.records, args.repeat)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
