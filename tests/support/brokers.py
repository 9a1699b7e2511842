"""The brokers the integration tests run on: the embedded Tansu, and Apache Kafka where a JDK and
Maven are present (the Kafka tier; `-m "not kafka"` leaves it out, `-m kafka` runs it alone).

`KINDS` parametrises the session `broker` fixture (tests/conftest.py) and `broker_kind`, for
the tests that start brokers of their own (`start(kind, port)`)."""

from __future__ import annotations

import functools
import shutil

import pytest

from profilestream.devtools import apache_kafka
from profilestream.devtools.broker import BrokerProcess
from profilestream.devtools.brokers import make_broker

KINDS = [pytest.param("tansu", id="tansu"), pytest.param("kafka", id="kafka", marks=pytest.mark.kafka)]


def need(kind: str) -> None:
    """Skip the test, saying why, where this kind of broker cannot run. Where it can, the first
    Kafka test of a session fetches and prepares it (`apache_kafka.prepare`; at once when
    `make kafka` did): a failure there is the test's error, not a skip."""
    if kind != "kafka":
        return
    why = apache_kafka.java_and_maven() if not apache_kafka.fetched() else None
    if why is None and shutil.which("java") is None:
        why = "java not on PATH (Apache Kafka needs a JDK)"
    if why is not None:
        pytest.skip(f"Apache Kafka tier: {why}")
    _prepared()


@functools.cache
def _prepared() -> None:
    apache_kafka.prepare()


def broker(kind: str, port: int | None = None, host: str = "127.0.0.1") -> BrokerProcess:
    """A broker of `kind`, not started (skips the test where it cannot run); Kafka's JVM set to
    start fast (`make_broker(quick=True)`)."""
    need(kind)
    return make_broker(kind, port, quick=True, host=host)


def start(kind: str, port: int | None = None) -> BrokerProcess:
    return broker(kind, port).start()


def alter_topics(config, roles, settings: dict[str, str]) -> None:
    """Set topic configurations (`settings`) on the topics of `roles`, as a user of a Kafka
    cluster would for data that its defaults refuse (see the callers). Kafka only: Tansu takes
    such records as they come and keeps no topic configurations to change."""
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in settings.items()]
    resources = [ConfigResource(ResourceType.TOPIC, config.topics.name(r), incremental_configs=entries) for r in roles]
    admin = AdminClient({"bootstrap.servers": config.kafka.brokers})
    for future in admin.incremental_alter_configs(resources).values():
        future.result(timeout=30)


def allow_large_values(config, roles, max_bytes: int = 4 << 20) -> None:
    """A default Kafka refuses a record batch over 1 MiB (`message.max.bytes`) unless the topic
    allows more (`max.message.bytes`)."""
    alter_topics(config, roles, {"max.message.bytes": str(max_bytes)})


def allow_future_timestamps(config, roles) -> None:
    """Kafka 4 refuses a record whose timestamp is more than an hour ahead of its clock
    (`log.message.timestamp.after.max.ms`) unless the topic allows it."""
    alter_topics(config, roles, {"message.timestamp.after.max.ms": str(2**63 - 1)})
