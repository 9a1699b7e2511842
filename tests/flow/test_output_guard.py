"""Issue 11, finding 2 on the output side: no output record can stop the dataflow.

An output that cannot be encoded (a count overflowing its Avro int, NaN or a string where an int
belongs, anything the writer refuses) or that would be too large for a Kafka record becomes a
dead letter naming its topic, key and why, with no value (it may hold personal data); it is
counted per topic (`profilestream_encode_failures_total`) and logged with its key; everything
else is written as before.
"""

from __future__ import annotations

import base64
import copy
import logging
from typing import ClassVar
from unittest import mock

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, cluster_main, run_main

import profilestream.flows.shard_step
from profilestream.codec import avro
from profilestream.domain.outputs import Output
from profilestream.domain.rules import Rules
from profilestream.domain.shard import ProfileShard
from profilestream.flows import encode
from profilestream.flows.encode import encode_batch, max_record_bytes, to_message
from profilestream.flows.profiles import profile_stream
from profilestream.ops import metrics
from support.flowkit import ListSource, raw_partitions
from support.scenario import click, crm

NAMES = {role: f"t-{role.replace('_', '-')}" for role in ("profiles", "merges", "triggers", "crm_feed", "dead_letters")}
ROLE_OF = {name: role for role, name in NAMES.items()}
RULES = Rules(max_future=None)  # the scenario's dates are synthetic: no wall clock in these tests


def a_profile(**changes) -> dict:
    record = avro.from_json(
        "profiles",
        {
            "profile_id": "p-1",
            "customer_id": "C1",
            "customer_key": "k-1",
            "device_ids": ["d-1"],
            "first_seen": "2026-11-20T10:00:00Z",
            "last_seen": "2026-11-20T10:05:00Z",
            "visits": 1,
            "page_views": 2,
            "product_views": 1,
            "orders": 0,
            "revenue": 0.0,
            "last_order_ts": None,
            "viewed_products": ["sku-1"],
            "cart": [{"product_id": "sku-1", "quantity": 200_000, "price": 5.0}],
            "campaigns": [],
            "attributes": {"name": "Jane Doe", "note": "write to jane.doe@example.com"},
            "lead_status": "lead",
            "marketing_consent": True,
            "updated_at": "2026-11-20T10:05:00Z",
        },
    )
    record.update(changes)
    return record


@pytest.fixture
def counters():
    metrics.COUNTERS.reset()
    yield metrics.COUNTERS
    metrics.COUNTERS.reset()


@pytest.fixture
def log_lines():
    lines: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record)

    handler = Keep()
    metrics.LOG.addHandler(handler)
    yield lines
    metrics.LOG.removeHandler(handler)


def letter_of(message) -> dict:
    assert message.topic == NAMES["dead_letters"] and message.key is None
    return avro.decode("dead_letters", message.value)


@pytest.mark.parametrize(
    "changes, field, why",
    [
        (
            {"cart": [{"product_id": "sku-1", "quantity": 2 * (2**31 - 1), "price": 5.0}]},
            "cart[0].quantity",
            "4294967294 is out of range for an Avro int",
        ),
        ({"visits": float("nan")}, "visits", "expected an integer"),
        ({"page_views": "2"}, "page_views", "expected an integer"),
        ({"device_ids": ["d-1", None]}, "device_ids[1]", "null"),
        ({"marketing_consent": "yes"}, "marketing_consent", "expected"),
    ],
)
def test_an_output_that_cannot_be_encoded_becomes_a_dead_letter(counters, log_lines, changes, field, why):
    bad = Output("profiles", "p-1", a_profile(**changes))
    with pytest.raises(Exception):  # noqa: B017 (any error the writer raises: that is the premise)
        avro.encode("profiles", bad.value)  # the premise: this one stopped the flow in the encode step
    letter = letter_of(to_message(NAMES, bad))
    assert (letter["topic"], letter["key"], letter["partition"], letter["offset"]) == ("t-profiles", "p-1", -1, -1)
    assert letter["value"] == ""
    assert letter["error"].startswith(f"field {field!r}: ") and why in letter["error"]
    assert "Jane" not in letter["error"] and "example.com" not in letter["error"]
    assert counters.encode_failures == {"t-profiles": 1}
    [line] = [r for r in log_lines if r.getMessage() == "encode_failed"]
    assert line.levelno == logging.ERROR and line.fields["key"] == "p-1" and line.fields["topic"] == "t-profiles"


def test_good_outputs_and_tombstones_are_written_as_before(counters):
    good = Output("profiles", "p-1", a_profile())
    message = to_message(NAMES, good)
    assert (message.topic, message.key, message.value) == ("t-profiles", b"p-1", avro.encode("profiles", good.value))
    tombstone = to_message(NAMES, Output("profiles", "p-2", None))
    assert (tombstone.topic, tombstone.key, tombstone.value) == ("t-profiles", b"p-2", None)
    assert not counters.encode_failures


def test_an_output_too_large_for_a_kafka_record_becomes_a_dead_letter(counters):
    assert max_record_bytes({}) == 1_000_000 - encode.RECORD_OVERHEAD
    assert max_record_bytes({"message.max.bytes": "2000000"}) == 2_000_000 - encode.RECORD_OVERHEAD
    big = Output("profiles", "p-1", a_profile(device_ids=[f"d-{i}" for i in range(100)]))
    size = len(avro.encode("profiles", big.value))
    assert to_message(NAMES, big, max_bytes=size + 3).topic == "t-profiles"  # value + key fit
    letter = letter_of(to_message(NAMES, big, max_bytes=size))
    assert letter["key"] == "p-1" and f"{size} bytes" in letter["error"] and "message.max.bytes" in letter["error"]
    assert counters.encode_failures == {"t-profiles": 1}


def test_the_dead_letter_of_an_output_carries_no_address(counters):
    """Keys are ids (profile ids, CRM numbers, hashed keys); should one ever hold an address, the
    dead letter masks it, as for inputs."""
    bad = Output("crm_feed", "jane@example.com", {"customer_id": "jane@example.com"})
    letter = letter_of(to_message(NAMES, bad))
    assert letter["topic"] == "t-crm-feed" and letter["key"] == "*" * len("jane@example.com")
    assert "jane" not in letter["error"]


def test_the_failures_are_a_prometheus_counter_per_topic(counters):
    from prometheus_client import generate_latest

    for _ in range(2):
        to_message(
            NAMES, Output("profiles", "p-1", a_profile(cart=[{"product_id": "s", "quantity": -1 << 40, "price": None}]))
        )
    to_message(NAMES, Output("triggers", "p-9", {"trigger_id": 5}))
    text = generate_latest(metrics.registry(counters)).decode()
    assert 'profilestream_encode_failures_total{topic="t-profiles"} 2.0' in text
    assert 'profilestream_encode_failures_total{topic="t-triggers"} 1.0' in text
    assert counters.summary()["encode_failures"] == 3


# --- through the dataflow: the run finishes and writes everything else -------------------------


class PoisonedShard(ProfileShard):
    """A profile's shard, but the first profile record of the run (one with a cart) comes with a
    twin whose cart overflows an Avro int (what two clicks of quantity 2**31 - 1 once made); the
    shards' own records are untouched. `keys` collects the key of each poisoned record (which
    profile that is depends on how the workers batch the input)."""

    keys: ClassVar[list[str]] = []

    def emit(self, ctx, now, out):
        start = len(out)
        super().emit(ctx, now, out)
        for o in out[start:]:
            if not PoisonedShard.keys and o.topic == "profiles" and o.value and o.value["cart"]:
                twin = copy.deepcopy(o.value)
                twin["cart"][0]["quantity"] = 2**32
                out.append(Output("profiles", o.key, twin))
                PoisonedShard.keys.append(o.key)
                break


def run_encoded(events, workers: int = 1, shard: type[ProfileShard] = ProfileShard) -> list:
    """The dataflow from raw partitions to the Kafka messages of the encode step (the Kafka sink
    swapped for a list)."""
    flow = Dataflow("test_encode")
    parts = raw_partitions(events)
    outputs = profile_stream(
        op.input("read", flow, ListSource(parts, 3)), RULES, list(parts), bounded=True, snapshots=False
    )
    messages = op.flat_map_batch("encode", outputs, lambda batch: encode_batch(NAMES, batch, 1_000_000))
    collected: list = []
    op.output("collect", messages, TestingSink(collected))
    with mock.patch.object(profilestream.flows.shard_step, "ProfileShard", shard):
        if workers == 1:
            run_main(flow)
        else:
            cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return collected


def _readable(messages) -> dict:
    """What the messages leave on each topic: the latest record of each key of `profiles` and
    `crm-feed`, and every record of the others (without the wall-clock fields), sorted."""
    latest: dict = {}
    streams: list = []
    for m in messages:
        record = None if m.value is None else avro.decode(ROLE_OF[m.topic], m.value)
        if m.topic in (NAMES["profiles"], NAMES["crm_feed"]):
            latest[m.topic, m.key] = record
        else:
            for wall_clock in ("emitted_at", "ts") if m.topic == NAMES["dead_letters"] else ("emitted_at",):
                record.pop(wall_clock, None)
            streams.append((m.topic, m.key, repr(sorted(record.items()))))
    return {"latest": latest, "streams": sorted(streams)}


def shop():
    return [
        crm(0, "C1", customer_key="k1", marketing_consent=True),
        click(1, "d1", "add_to_cart", product_id="p1", price=5.0, quantity=100_000),
        click(2, "d1", "add_to_cart", product_id="p1", price=5.0, quantity=100_000),  # 200,000 in the cart: fits
        click(3, "d1", "login", customer_key="k1"),
        click(4, "d2", "add_to_cart", product_id="p2"),
        click(5, "d2", "purchase", order_id="o-1", revenue=20.0),
        click(90, "d3", "page_view"),
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_an_unencodable_engine_output_is_dead_lettered_and_the_rest_written(counters, workers):
    events = shop()
    PoisonedShard.keys.clear()
    clean = run_encoded(events, workers)
    poisoned = run_encoded(events, workers, PoisonedShard)  # it finishes: no exception from the encode step
    letters = [m for m in poisoned if m.topic == NAMES["dead_letters"]]
    [letter] = [letter_of(m) for m in letters]
    assert letter["topic"] == "t-profiles" and letter["error"].startswith("field 'cart[0].quantity': ")
    assert _readable([m for m in poisoned if m not in letters]) == _readable(clean)
    profiles = {m.key: avro.decode("profiles", m.value) for m in clean if m.topic == "t-profiles" and m.value}
    assert [letter["key"]] == PoisonedShard.keys
    [cart] = [p["cart"] for p in profiles.values() if "d1" in p["device_ids"]][-1:]
    assert cart == [{"product_id": "p1", "quantity": 200_000, "price": 5.0}]
    assert counters.encode_failures == {"t-profiles": 1}
    assert any(m.topic == NAMES["triggers"] for m in poisoned)
    assert base64.b64decode(letter["value"]) == b""


def test_engine_drops_and_clamps_are_prometheus_counters(counters):
    """The engine's counts of erased customers' late events dropped and of saturated sums reach
    the metrics endpoint and the progress line (domain/erasure.py, domain/bounds.py)."""
    from collections import Counter

    from prometheus_client import generate_latest

    counters.engine_state(Counter({"dropped_erased": 3, "clamped.revenue": 2, "clamped.quantity": 1}), 0, 0)
    text = generate_latest(metrics.registry(counters)).decode()
    assert "profilestream_dropped_erased_total 3.0" in text
    assert 'profilestream_clamped_total{field="revenue"} 2.0' in text
    assert 'profilestream_clamped_total{field="quantity"} 1.0' in text
    assert counters.summary()["dropped_erased"] == 3
