"""`profilestream consume`: a topic's records from the beginning as JSON lines.

With `schema_registry.url` set, values in the Confluent wire format are read with their writer's
schema from the registry, and raw values as before (`profilestream.codec.registry`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from profilestream.config import Config


def main(config: Config, args: argparse.Namespace) -> int:
    from profilestream.codec import avro, registry
    from profilestream.kafka.clients import read_topic, role_of

    role = role_of(config, args.topic)
    wire = registry.wire_for(config)
    decode = avro.decode if wire is None else wire.decode
    unreadable = 0
    for m in read_topic(config, config.topics.name(role), until_idle=args.until_idle):
        out: dict[str, Any]
        if m.value is None:
            out = {"key": None if m.key is None else m.key.decode("utf-8", "replace"), "tombstone": True}
        else:
            try:
                out = avro.to_json(role, decode(role, m.value))
            except avro.Rejected as exc:
                if wire is None:  # a framed value and no registry: say so
                    exc = avro.framed_hint(exc, m.value)
                unreadable += 1
                print(f"partition {m.partition} offset {m.offset}: {exc}", file=sys.stderr)
                continue
        print(json.dumps(out, ensure_ascii=False), flush=not args.until_idle)
    return 1 if unreadable else 0


__all__ = ["main"]
