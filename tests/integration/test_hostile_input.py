"""Hostile input through the real broker: over a thousand records that break the contract, of every
kind the issue names, produced raw with confluent-kafka (no `produce` validation in the way) in
among a generated shop's good traffic.

Every bad one must land in `dead-letters` with its topic, partition, offset, original bytes and a
reason; every good one must be processed exactly as without them (the final profiles, merges and
triggers equal those of a run of the good traffic alone); the run goes on to the end and exits 0.

Values over 1 MiB: Tansu (the embedded broker) accepts them when the producer's
`message.max.bytes` allows, and Apache Kafka when the topic's `max.message.bytes` does, so they
reach the dataflow, which rejects them (tested at the dataflow level below, and through the
broker in a test of their own). Their dead letter keeps only the
first 64 KiB of the value: the whole of it in base64 (~1.4 MB) would exceed what a producer may
send (librdkafka's `message.max.bytes`, 1,000,000 by default, and a Kafka broker's default limit).
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter

import pytest

from profilestream import cli
from profilestream.codec import avro
from profilestream.codec.avro import DEAD_LETTER_VALUE_BYTES
from profilestream.kafka.clients import create_topics
from profilestream.kafka.source import Raw
from support import brokers
from support.e2e import latest, records
from support.flowkit import run_flow
from support.hostile_input import (
    UTF8_FIELDS,
    _broken_utf8,
    _extra_symbol,
    _without,
    _write,
    good_traffic,
    produce_raw,
    run_alone,
)

BAD = 1050


KINDS = (
    "garbage bytes",
    "wrong schema",
    "missing required field",
    "unknown type",
    "time before 1990",
    "time after 2100",
    "invalid UTF-8",
)


def bad_traffic(
    good: list[tuple[str, bytes, bytes]], rng: random.Random, rules, n: int = BAD, oversized: int = 0
) -> list[tuple[str, str, bytes | None, bytes]]:
    """`(kind, role, key, value)` of `n` contract-breaking records of KINDS and `oversized` values
    over 1 MiB. Keys are mostly those of real devices and customers (the partitions of their good
    traffic)."""
    keys = {
        "clickstream": [k for r, k, _ in good if r == "clickstream"],
        "crm_changes": [k for r, k, _ in good if r == "crm_changes"],
    }
    ts = 1_794_000_000_000  # 2026-11

    def click(i, **f):
        return {"event_id": f"e-bad-{i}", "ts": ts + i, "device_id": f"d-bad-{i % 50}", "type": "page_view", **f}

    def change(i, **f):
        return {"change_id": f"c-bad-{i}", "ts": ts + i, "customer_id": f"C-bad-{i % 50}", "op": "upsert", **f}

    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        variant = (i // len(KINDS)) % 4
        role = "clickstream" if variant % 2 == 0 or kind == "garbage bytes" else "crm_changes"
        if kind == "garbage bytes":
            value = rng.randbytes(rng.randrange(0, 80))
        elif kind == "wrong schema":  # bytes of another topic's schema
            value = (
                avro.encode("crm_changes", change(i, customer_key="k", order_id="O-1"))
                if role == "clickstream"
                else avro.encode("clickstream", click(i, url="https://shop.example/"))
            )
            if variant == 2:
                value = avro.encode(
                    "merges", {"from_profile_id": "p-a", "into_profile_id": "p-b", "reason": "login", "ts": ts}
                )
        elif kind == "missing required field":
            if role == "crm_changes":
                value = _write(_without("crm_changes", "customer_id"), change(i))
            elif variant == 0:
                value = _write(_without("clickstream", "event_id"), click(i))
            else:  # required by the contract for these types, absent from the record
                value = avro.encode("clickstream", click(i, type="product_view", price=9.5))
        elif kind == "unknown type":
            value = (
                _write(_extra_symbol("clickstream", "type", "hover"), click(i, type="hover"))
                if role == "clickstream"
                else _write(_extra_symbol("crm_changes", "op", "delete"), change(i, op="delete"))
            )
        elif kind in ("time before 1990", "time after 2100"):
            at = (
                [0, 631_151_999_999, -86_400_000, ts // 1000][variant]
                if kind == "time before 1990"
                else [4_102_444_800_000, ts * 1000, 5_000_000_000_000, 4_102_444_800_001][variant]
            )
            value = avro.encode(role, (click if role == "clickstream" else change)(i, ts=at))
        else:  # invalid UTF-8
            role, field = UTF8_FIELDS[(i // len(KINDS)) % len(UTF8_FIELDS)]
            rec = (
                click(i, type="product_view", url="u", customer_key="k", product_id="sku")
                if role == "clickstream"
                else change(i, lead_status="lead")
            )
            value = _broken_utf8(role, rec, field)
        key = rng.choice(keys[role]) if rng.random() < 0.7 else None if kind == "garbage bytes" else f"bad-{i}".encode()
        out.append((kind, role, key, value))
    for i in range(oversized):
        url = "https://shop.example/?" + "x" * (avro.MAX_VALUE_BYTES + i)
        value = avro.encode("clickstream", click(n + i, url=url))
        out.append(("value over 1 MiB", "clickstream", rng.choice(keys["clickstream"]), value))
    for _kind, role, _, value in out:  # the premise: the codec refuses every one of them
        with pytest.raises(avro.Rejected):
            avro.decode_input(role, value, rules)
    return out


@pytest.mark.broker
def test_bad_records_are_dead_lettered_and_the_good_ones_processed(broker, config, config_path, tmp_path):
    good = good_traffic(1500, seed=3)
    rng = random.Random(5)
    bad = bad_traffic(good, rng, config.rules())
    assert len(bad) >= 1000 and {kind for kind, *_ in bad} == set(KINDS)

    # the hostile run: bad records at random places among the good ones
    mixed = [(False, g) for g in good]
    for b in bad:
        mixed.insert(rng.randrange(len(mixed) + 1), (True, b))
    create_topics(config)
    placed = produce_raw(config, [(m[1], m[2], m[3]) if is_bad else m for is_bad, m in mixed])
    assert cli.main(["run", "--config", str(config_path), "--until-idle"]) == 0  # it never stops

    letters = {}
    for d in records(config, "dead_letters"):
        letters[(d["topic"], d["partition"], d["offset"])] = d
    assert len(letters) == len(bad)  # nothing good was dead-lettered, nothing bad twice
    reasons = Counter()
    for (is_bad, m), (partition, offset) in zip(mixed, placed, strict=True):
        if not is_bad:
            continue
        kind, role, key, value = m
        letter = letters[(config.topics.name(role), partition, offset)]
        assert base64.b64decode(letter["value"]) == value
        assert letter["key"] == (None if key is None else key.decode())
        assert letter["error"].startswith("field ")  # names the field and the reason
        reasons[kind, letter["error"].split(":")[0]] += 1
    words = {kind: {field for (k, field) in reasons if k == kind} for kind in KINDS}
    assert words["time before 1990"] == words["time after 2100"] == {"field 'ts'"}
    assert words["invalid UTF-8"] == {f"field '{name}'" for _, name in UTF8_FIELDS}
    assert {f for (k, f) in reasons if k == "unknown type"} <= {"field 'value'", "field 'type'", "field 'op'"}

    # the good traffic alone, on topics of its own: the same profiles, merges and triggers
    config_b = run_alone(good, tmp_path, broker.bootstrap, "good-")
    assert latest(config, "profiles") == latest(config_b, "profiles")

    def same(role, c):
        return sorted(
            json.dumps({k: v for k, v in r.items() if k != "emitted_at"}, sort_keys=True) for r in records(c, role)
        )  # emitted_at: the clock when it fired

    for role in ("merges", "triggers"):
        assert same(role, config) == same(role, config_b)


def test_a_value_over_1_mib_is_dead_lettered_in_the_dataflow():
    click = {"event_id": "e-1", "ts": 1_794_000_000_000, "device_id": "d1", "type": "page_view"}
    values = [
        avro.encode("clickstream", click),
        avro.encode("clickstream", dict(click, event_id="e-2", url="x" * avro.MAX_VALUE_BYTES)),
        avro.encode("clickstream", dict(click, event_id="e-3", ts=click["ts"] + 1000)),
    ]
    raws = [Raw("clickstream", "clickstream", 0, i, b"d1", v, click["ts"]) for i, v in enumerate(values)]
    result = run_flow([], extra=raws)
    [letter] = result.dead_letters
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("clickstream", 0, 1)
    # the dead letter keeps the first 64 KiB: a 1 MiB value's base64 would not fit a Kafka record
    assert base64.b64decode(letter["value"]) == values[1][:DEAD_LETTER_VALUE_BYTES]
    assert "1 MiB" in letter["error"] and "cut to its first" in letter["error"]
    assert result.of("d1")["page_views"] == 2  # the flow went on


@pytest.mark.broker
def test_a_value_over_1_mib_is_dead_lettered_through_the_broker(broker, config, config_path):
    good = good_traffic(200, seed=4)
    rng = random.Random(6)
    bad = bad_traffic(good, rng, config.rules(), n=0, oversized=2)
    mixed = good[:100] + [(role, key, value) for _, role, key, value in bad] + good[100:]
    create_topics(config)
    if broker.kind == "kafka":  # a default Kafka refuses them; a topic can be told to take them
        brokers.allow_large_values(config, ("clickstream", "crm_changes"))
    placed = produce_raw(config, mixed)  # Tansu takes them (see the module doc)
    assert cli.main(["run", "--config", str(config_path), "--until-idle"]) == 0
    letters = {(d["partition"], d["offset"]): d for d in records(config, "dead_letters")}
    assert len(letters) == 2
    for (_, _, value), at in zip(mixed[100:102], placed[100:102], strict=True):
        assert base64.b64decode(letters[at]["value"]) == value[:DEAD_LETTER_VALUE_BYTES]
        assert "1 MiB" in letters[at]["error"]
