"""Small helpers of the benchmark: progress lines, the load average, what the figures were measured
on, medians and percentiles, and the bench's configuration (broker, topic names)."""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from profilestream.domain.roles import OUTPUT_ROLES

if TYPE_CHECKING:
    from profilestream.config import Config, TopicsConfig


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": ram_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "bytewax": version("bytewax"),
        "confluent_kafka": version("confluent-kafka"),
        "librdkafka": __import__("confluent_kafka").libversion()[0],
        "fastavro": version("fastavro"),
        "broker": "Tansu 0.6.0 (embedded, in memory)",  # the default; `run_bench` says which it ran on
    }


def broker_name(broker: Any) -> str:
    """What the figures were measured on, for the report's machine line."""
    if getattr(broker, "kind", "tansu") == "kafka":
        from profilestream.devtools.apache_kafka import HEAP

        where = tempfile.gettempdir()
        return f"Apache Kafka {broker.version} (single-node KRaft on loopback, java {HEAP}, log in {where})"
    return "Tansu 0.6.0 (embedded, in memory)"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _with(config: Config, brokers: str, names: dict[str, str], **time_settings: Any) -> Config:
    """The configuration with the bench's broker and topic names (and `[time]` overrides)."""
    return dataclasses.replace(
        config,
        kafka=dataclasses.replace(config.kafka, brokers=brokers),
        topics=dataclasses.replace(_renamed(config.topics, names), partitions=3),
        time=dataclasses.replace(config.time, **time_settings),
    )


def _renamed(topics: TopicsConfig, names: dict[str, str]) -> TopicsConfig:
    """`topics` with the topic names in `names` (role -> name) replaced."""
    # the keys are roles, i.e. str fields of TopicsConfig only: mypy cannot tell that from a dict
    return dataclasses.replace(topics, **cast("dict[str, Any]", names))


def _names(prefix: str, roles: Iterable[str] = OUTPUT_ROLES) -> dict[str, str]:
    return {role: f"{prefix}{role.replace('_', '-')}" for role in roles}


__all__ = ["broker_name", "machine"]
