"""`profilestream record` and `profilestream replay`: topics to Avro container files and back."""

from __future__ import annotations

import argparse
import sys

from profilestream.config import Config


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def record(config: Config, args: argparse.Namespace) -> int:
    from profilestream.kafka import recording

    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    try:
        counts = recording.record(config, topics, args.out)
    except recording.RecordingError as exc:
        print(f"profilestream: {exc}", file=sys.stderr)
        return 1
    for count in counts:
        print(count.summary())
    total = sum(c.records for c in counts)
    print(f"recorded {_plural(total, 'record')} from {_plural(len(counts), 'topic')} to {args.out}")
    return 0


def replay(config: Config, args: argparse.Namespace) -> int:
    from profilestream.kafka import recording

    try:
        counts = recording.replay(config, args.dir)
    except recording.RecordingError as exc:
        print(f"profilestream: {exc}", file=sys.stderr)
        return 1
    for count in counts:
        print(count.summary() + (" (created)" if count.created else ""))
    total = sum(c.records for c in counts)
    print(f"replayed {_plural(total, 'record')} into {_plural(len(counts), 'topic')}")
    return 0


__all__ = ["record", "replay"]
