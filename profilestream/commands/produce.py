"""`profilestream produce`: validate JSON lines, encode them as Avro and produce them.

With `schema_registry.url` set, the topic's schema is registered first (a registry that does not
answer is a configuration error naming the key, exit 2, before a line is read) and every value is
in the Confluent wire format (`profilestream.codec.registry`)."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
from collections.abc import Iterator
from typing import Any

from profilestream.config import Config


def numbered_lines(path: str) -> Iterator[tuple[int, str]]:
    """Numbered lines; invalid UTF-8 is kept as surrogates so the codec rejects just that line."""
    if path == "-":
        binary = getattr(sys.stdin, "buffer", None)
        stream = sys.stdin if binary is None else io.TextIOWrapper(binary, "utf-8", "surrogateescape")
        yield from enumerate(stream, 1)
        return
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        yield from enumerate(fh, 1)


def main(config: Config, args: argparse.Namespace) -> int:
    from profilestream.codec import avro, registry
    from profilestream.kafka.clients import key_of, produce_records, role_of

    role = role_of(config, args.topic)
    wire = registry.wire_for(config)
    if wire is not None:
        wire.register((role,))
    # `time.max_future` is the run's guard, applied when the dataflow reads a record (its wall
    # clock then): a line ahead of the clock is sent, and the run dead-letters it with the reason
    rules = dataclasses.replace(config.rules(), max_future=None)
    rejected: list[str] = []

    def valid() -> Iterator[tuple[str | None, dict[str, Any]]]:  # None: dead-letters have no key
        for number, line in numbered_lines(args.file):
            if not line.strip():
                continue
            try:
                record = avro.from_json(role, json.loads(line), rules)
            except json.JSONDecodeError as exc:
                rejected.append(f"line {number}: not valid JSON: {exc.msg} (column {exc.colno})")
            except avro.Rejected as exc:
                rejected.append(f"line {number}: {exc}")
            else:
                yield key_of(role, record), record

    sent = produce_records(config, role, valid())
    print(
        f"sent {sent} record{'s' * (sent != 1)} to {config.topics.name(role)}"
        + (f"; rejected {len(rejected)}" if rejected else "")
    )
    for reason in rejected:
        print(reason, file=sys.stderr)
    return 1 if rejected else 0


__all__ = ["main", "numbered_lines"]
