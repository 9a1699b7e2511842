"""Shared test helpers, moved here from tests/integration/test_hostile_input.py
(no test module imports another test module)."""

from __future__ import annotations

import copy
import io

from confluent_kafka import Producer
from fastavro import parse_schema, schemaless_writer

from profilestream import cli
from profilestream.codec import avro
from profilestream.devtools import sample
from profilestream.kafka.clients import create_topics, key_of
from support.e2e import records
from support.record_replay import other_config
from support.schemas import avsc


def _raw_schema(role: str) -> dict:
    return avsc(avro.SCHEMA_FILES[role])


def _write(schema: dict, record: dict) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


def _without(role: str, field: str) -> dict:
    """The topic's schema less one required field: a producer that forgot it."""
    schema = _raw_schema(role)
    schema["fields"] = [f for f in schema["fields"] if f["name"] != field]
    return schema


def _extra_symbol(role: str, field: str, symbol: str) -> dict:
    """The topic's schema with one more enum symbol: a producer ahead of the contract."""
    schema = copy.deepcopy(_raw_schema(role))
    for f in schema["fields"]:
        if f["name"] == field:
            f["type"]["symbols"].append(symbol)
    return schema


def _broken_utf8(role: str, record: dict, field: str) -> bytes:
    """`record` with invalid UTF-8 in `field`: a two-byte character whose second byte is not a
    continuation byte (same length, so the Avro framing stays intact)."""
    record = dict(record, **{field: record[field] + "\u00e9"})
    good = avro.encode(role, record)
    at = good.rindex("\u00e9".encode())
    return good[:at] + b"\xc3\x28" + good[at + 2 :]


UTF8_FIELDS = (
    ("clickstream", "device_id"),
    ("clickstream", "url"),
    ("clickstream", "customer_key"),
    ("clickstream", "product_id"),
    ("crm_changes", "customer_id"),
    ("crm_changes", "lead_status"),
)


def good_traffic(events: int, seed: int) -> list[tuple[str, bytes, bytes]]:
    """`(role, key, value)` of a generated shop, encoded as `produce` would."""
    good = []
    for role, rec in sample.generate(sample.ShopSpec(events=events, seed=seed)):
        rec = avro.from_json(role, rec)
        good.append((role, key_of(role, rec).encode(), avro.encode(role, rec)))
    return good


def produce_raw(config, messages: list[tuple[str, bytes | None, bytes]]) -> list[tuple[int, int]]:
    """Produce `(role, key, value)` in order with a plain producer; returns each one's (partition, offset)."""
    producer = Producer(
        {"bootstrap.servers": config.kafka.brokers, "enable.idempotence": True, "message.max.bytes": 4 << 20}
    )
    placed: list = [None] * len(messages)

    def delivered(i):
        def report(err, msg):
            assert err is None, err
            placed[i] = (msg.partition(), msg.offset())

        return report

    for i, (role, key, value) in enumerate(messages):
        while True:
            try:
                producer.produce(config.topics.name(role), value, key, on_delivery=delivered(i))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0
    return placed


def run_alone(good: list[tuple[str, bytes, bytes]], tmp_path, bootstrap: str, prefix: str):
    """`run --until-idle` of the good traffic alone, on topics of its own; returns their config."""
    path_b, config_b = other_config(tmp_path, bootstrap, prefix)
    create_topics(config_b)
    produce_raw(config_b, good)
    assert cli.main(["run", "--config", str(path_b), "--until-idle"]) == 0
    assert records(config_b, "dead_letters") == []
    return config_b
