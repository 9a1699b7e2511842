"""`profilestream bench`: its arguments and its `main(config, args)`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from profilestream.devtools.bench.report import table
from profilestream.devtools.bench.run import DEFAULT_EVENTS, run_bench

if TYPE_CHECKING:
    from profilestream.config import Config


def main(config: Config, args: argparse.Namespace) -> int:
    result = run_bench(
        config,
        events=args.events,
        repeat=args.repeat,
        skip_latency=args.skip_latency,
        skip_two=args.skip_two,
        skip_memory=args.skip_memory,
        latency_seconds=args.latency_seconds,
        default_lateness=args.default_lateness,
        latency_rates=tuple(args.latency_rates),
        config_path=getattr(args, "config", None) or os.environ.get("PROFILESTREAM_CONFIG"),
        broker_kind=args.broker,
        skip_four=args.skip_four,
        serial_repeat=args.serial_repeat,
    )
    for key in ("dataflow_1p", "dataflow_2p", "dataflow_4p"):
        if key in result:
            result[key].pop("trigger_ids", None)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    return 0


def add_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--events", type=int, default=DEFAULT_EVENTS, help="records in the reference shop (default 1,000,000)"
    )
    sub.add_argument("--out", metavar="FILE.json", help="write the figures as JSON")
    sub.add_argument(
        "--broker",
        choices=["tansu", "kafka"],
        default="tansu",
        help="the broker to measure on: the embedded Tansu (default) or Apache Kafka (needs java, and mvn once)",
    )
    sub.add_argument("--repeat", type=int, default=1, help="repeat the ceiling and dataflow runs; medians are reported")
    sub.add_argument("--skip-latency", action="store_true", help="leave out the live latency run")
    sub.add_argument("--skip-two", action="store_true", help="leave out the two-process run")
    sub.add_argument(
        "--skip-four", action="store_true", help="leave out the four-process run (correctness, CPU spread)"
    )
    sub.add_argument(
        "--serial-repeat", type=int, default=3, help="passes of the serial stage alone; the best is reported"
    )
    sub.add_argument("--skip-memory", action="store_true", help="leave out the state-per-profile replay")
    sub.add_argument("--latency-seconds", type=float, default=20.0, help="measured window of the live run")
    sub.add_argument(
        "--default-lateness",
        action="store_true",
        help="also measure latency with the default time.allowed_lateness (30s)",
    )
    sub.add_argument(
        "--latency-rates",
        type=_rates,
        default=[],
        metavar="EPS,EPS",
        help="also measure latency (lateness 0s) at these paced rates, events/s",
    )


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected rates in events/s, e.g. 5000,10000") from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive rates in events/s, e.g. 5000,10000")
    return rates


__all__ = ["_rates", "add_arguments", "main"]
