"""`profilestream broker`: the embedded Kafka-compatible broker (or, with `--kafka`, Apache Kafka)
in the foreground."""

from __future__ import annotations

import argparse
import sys

from profilestream.config import Config


def local_port(brokers: str) -> int | None:
    """The port of the first of `kafka.brokers` when it is on this machine, so that `broker` and
    the other commands meet with no setting at all (default 127.0.0.1:9092); else None (a free port)."""
    host, _, port = brokers.split(",")[0].strip().rpartition(":")
    if host in ("127.0.0.1", "localhost") and port.isdigit():
        return int(port)
    return None


def main(config: Config, args: argparse.Namespace) -> int:
    from profilestream.devtools.broker import BrokerStartError
    from profilestream.devtools.brokers import serve

    port = args.port if args.port is not None else local_port(config.kafka.brokers)
    try:
        return serve(port, "kafka" if getattr(args, "kafka", False) else "tansu")
    except BrokerStartError as exc:
        hint = "" if args.port is not None else " (the port of kafka.brokers; choose another with --port)"
        print(f"profilestream: {exc}{hint}", file=sys.stderr)
        return 1


__all__ = ["local_port", "main"]
