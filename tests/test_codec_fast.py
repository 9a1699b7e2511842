"""The compiled input reader (`avro._fast_reader`) is a speed-up only: wherever it reads a value it
gives exactly what fastavro gives, and whatever it does not read plainly goes to fastavro."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profilestream.io import avro
from profilestream.io.avro import Rejected, decode_input, encode, from_json
from profilestream.domain.rules import Rules
from profilestream.sample import ShopSpec, generate

RULES = Rules()


@pytest.fixture(scope="module")
def shop() -> list[tuple[str, bytes]]:
    return [(role, encode(role, from_json(role, record))) for role, record in generate(ShopSpec(events=3000))]


def _fastavro(role: str, data: bytes, errors: str = "surrogateescape"):
    try:
        return avro._read_fastavro(role, data, errors)
    except Rejected as exc:
        return exc


def _fast(role: str, data: bytes, errors: str = "surrogateescape"):
    record = avro._fast_reader(role)(data, errors)
    avro.absorb_email(record)
    return record


def test_same_records_as_fastavro_on_the_sample_shop(shop):
    for role, data in shop:
        assert _fast(role, data) == _fastavro(role, data)


def test_mutated_bytes_read_the_same_or_fall_back(shop):
    rng = random.Random(3)
    read = 0
    for _ in range(20_000):
        role, data = shop[rng.randrange(len(shop))]
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(mutated) + 1)
            choice = rng.random()
            if choice < 0.5 and at < len(mutated):
                mutated[at] = rng.randrange(256)
            elif choice < 0.75 and at < len(mutated):
                del mutated[at]
            else:
                mutated.insert(at, rng.randrange(256))
        mutated = bytes(mutated)
        try:
            fast = _fast(role, mutated)
        except Exception:
            continue  # not plainly well-formed: `_read` hands it to fastavro
        read += 1
        assert repr(fast) == repr(_fastavro(role, mutated))
    assert read > 1000


@settings(max_examples=300)
@given(st.sampled_from(avro.INPUT_ROLES), st.binary(max_size=120))
def test_random_bytes_read_the_same_or_fall_back(role, data):
    try:
        fast = _fast(role, data)
    except Exception:
        return
    assert repr(fast) == repr(_fastavro(role, data))


@pytest.mark.parametrize("role", avro.INPUT_ROLES)
def test_decode_input_errors_are_fastavro_s(role):
    """Malformed input still gets fastavro's explanation, since the fast reader defers to it."""
    data = b"\x02a\xff\xff\xff"
    with pytest.raises(Rejected) as info:
        decode_input(role, data, RULES)
    assert info.value.field == "value" and f"not a {role} Avro record" in info.value.reason


# --- the compiled writer ----------------------------------------------------------------------


def _fastavro_bytes(role: str, record: dict) -> bytes:
    import io

    import fastavro

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, avro.schema_for(role), record)
    return buf.getvalue()


def test_engine_outputs_encode_to_fastavro_s_bytes(shop):
    from collections import Counter

    from profilestream.domain.engine import Engine

    engine = Engine(RULES)
    engine.expect(avro.INPUT_ROLES, 0)
    outputs = []
    for at in range(0, len(shop), 500):
        outputs += engine.feed([(role, decode_input(role, data, RULES)) for role, data in shop[at:at + 500]], 0)
    outputs += engine.finish(0)
    written = Counter()
    for output in outputs:
        if output.value is None:
            continue
        fast = avro._fast_writer(output.topic)(output.value)  # raises if it would fall back
        assert fast == _fastavro_bytes(output.topic, output.value) == avro.encode(output.topic, output.value)
        written[output.topic] += 1
    assert {"profiles", "crm_feed", "merges", "triggers"} <= set(written)


def test_input_records_encode_to_fastavro_s_bytes(shop):
    for role, data in shop[:500]:
        record = avro.decode(role, data)
        assert avro.encode(role, record) == _fastavro_bytes(role, record) == data


def test_unusual_values_are_left_to_fastavro():
    from datetime import datetime, timezone

    from profilestream.io.avro import from_json

    merge = from_json("merges", {"from_profile_id": "p-1", "into_profile_id": "p-2", "reason": "login",
                                 "ts": "2026-11-20T10:15:00.123Z"})
    as_datetime = {**merge, "ts": datetime(2026, 11, 20, 10, 15, 0, 123000, tzinfo=timezone.utc)}
    assert avro.encode("merges", as_datetime) == avro.encode("merges", merge) == _fastavro_bytes("merges", merge)
    with pytest.raises(Exception):
        avro._fast_writer("merges")(as_datetime)
    with pytest.raises(Exception):  # not a symbol: fastavro's error, as before
        avro.encode("merges", {**merge, "reason": "no such reason"})
