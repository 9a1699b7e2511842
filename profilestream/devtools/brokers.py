"""The kinds of broker `broker`, the tests and the bench can start: the embedded Tansu (the
default: nothing to install) and Apache Kafka (`apache_kafka`: needs a JDK, and Maven once)."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import NoReturn

from profilestream.devtools.apache_kafka import ApacheKafka
from profilestream.devtools.broker import BrokerProcess, EmbeddedBroker

BROKER_KINDS = ("tansu", "kafka")


def make_broker(
    kind: str = "tansu", port: int | None = None, quick: bool = False, host: str = "127.0.0.1"
) -> BrokerProcess:
    """A broker of `kind` ("tansu": embedded, the default; "kafka": Apache Kafka, which needs a
    JDK and Maven, see `apache_kafka`), not started. `quick`: a Kafka JVM tuned to start rather
    than for throughput (the tests; `ApacheKafka`)."""
    if kind == "tansu":
        return EmbeddedBroker(port, host)
    if kind == "kafka":
        return ApacheKafka(port, host, quick=quick)
    raise ValueError(f"unknown broker kind {kind!r}; expected one of {', '.join(BROKER_KINDS)}")


def serve(port: int | None = None, kind: str = "tansu") -> int:
    """`profilestream broker`: run in the foreground until Ctrl-C, SIGTERM or SIGHUP. SIGINT is
    handled explicitly too: a shell starts background jobs with SIGINT ignored, and Python then
    leaves it ignored."""

    def interrupt(signum: int, frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    broker = make_broker(kind, port)
    try:
        with broker:
            print(f"broker listening on {broker.bootstrap} ({broker.describe()}; Ctrl-C stops it)", flush=True)
            print(f"use it with: PROFILESTREAM_KAFKA_BROKERS={broker.bootstrap}", flush=True)
            code = broker.wait()
            print(f"profilestream: the broker exited with code {code}\n{broker.log_tail()}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("broker stopped", flush=True)
        return 0


__all__ = ["BROKER_KINDS", "make_broker", "serve"]
