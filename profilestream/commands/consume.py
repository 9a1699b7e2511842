"""`profilestream consume`: a topic's records from the beginning as JSON lines.

With `schema_registry.url` set, values in the Confluent wire format are read with their writer's
schema from the registry, and raw values as before (`profilestream.codec.registry`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from profilestream.config import Config


def main(config: Config, args: argparse.Namespace) -> int:
    from profilestream.codec import avro, registry
    from profilestream.kafka.clients import read_topic, role_of

    role = role_of(config, args.topic)
    if not args.until_idle:
        stop_on_ctrl_c()
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


def stop_on_ctrl_c() -> None:
    """Ctrl-C (SIGINT) stops the tail even when the process inherited SIGINT ignored, as a job a
    shell starts in the background does (Python then leaves it ignored): seen as a `consume` that
    went on reading 60 s after SIGINT, every thread's stack showing the read loop."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


__all__ = ["main", "stop_on_ctrl_c"]
