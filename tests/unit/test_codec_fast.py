"""The compiled input reader (`avro._fast_reader`) is a speed-up only: wherever it reads a value it
gives exactly what fastavro gives, and whatever it does not read plainly goes to fastavro."""

from __future__ import annotations

import random
from datetime import UTC

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profilestream.codec import avro
from profilestream.codec.avro import Rejected, decode_input, encode, from_json, to_event
from profilestream.codec.validation import END_TS, MAX_ID_LENGTH, MAX_QUANTITY, MIN_TS
from profilestream.devtools.sample import ShopSpec, generate
from profilestream.domain.events import CLICK_TYPES, CRM_OPS
from profilestream.domain.rules import Rules

RULES = Rules()
NOW = 1_795_169_700_123 + 600_000  # the wall clock the decoders are given (a valid record's ts: 10 min before)


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


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """`data` with one to three random bytes changed, deleted or inserted."""
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
    return bytes(mutated)


def test_mutated_bytes_read_the_same_or_fall_back(shop):
    rng = random.Random(3)
    read = 0
    for _ in range(20_000):
        role, data = shop[rng.randrange(len(shop))]
        mutated = _mutate(rng, data)
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


# --- the direct decoders (bytes straight to an event) -------------------------------------------
#
# `decode_input` tries `avro._DIRECT[role]` first and takes the general path on any exception. The
# tests compare with the pipeline as it was before the direct decoders: fastavro's reader, then
# `to_event` (the event, its types included via repr, or the `Rejected` field and reason), both
# given the same wall clock (`NOW`, or none) for `time.max_future`.


def _old_pipeline(role: str, data: bytes, now: int | None = NOW):
    try:
        return to_event(role, avro._read_fastavro(role, data, "surrogateescape", RULES), RULES, now)
    except Exception as exc:  # Rejected, as a rule
        return exc


def _outcome(result) -> tuple:
    if isinstance(result, Rejected):
        return ("rejected", result.field, result.reason)
    if isinstance(result, Exception):
        return (type(result).__name__, str(result))
    return (type(result).__name__, repr(result))


def _decode_input(role: str, data: bytes, now: int | None = NOW):
    try:
        return decode_input(role, data, RULES, now)
    except Exception as exc:
        return exc


def _direct_or_none(role: str, data: bytes, now: int | None = NOW):
    try:
        return avro._DIRECT[role](data, RULES, now)
    except Exception:
        return None  # left to the general path


def test_direct_decoders_match_the_schemas():
    """Both input schemas still have the layout their direct decoder was written for."""
    assert set(avro._DIRECT) == set(avro.INPUT_ROLES)


def test_direct_decoders_read_the_sample_shop_themselves(shop):
    for role, data in shop:
        event = avro._DIRECT[role](data, RULES, NOW)  # raises if it would leave the record to the general path
        assert _outcome(event) == _outcome(_old_pipeline(role, data))


def test_decode_input_on_mutated_bytes_is_the_old_pipeline_s(shop):
    rng = random.Random(5)
    by_role = {role: [data for r, data in shop if r == role] for role in avro.INPUT_ROLES}
    direct = rejected = 0
    for _ in range(20_000):
        role = rng.choice(avro.INPUT_ROLES)  # evenly: CRM changes are few in the shop
        data = rng.choice(by_role[role])
        mutated = _mutate(rng, data)
        old = _outcome(_old_pipeline(role, mutated))
        assert _outcome(_decode_input(role, mutated)) == old
        fast = _direct_or_none(role, mutated)
        if fast is not None:
            direct += 1
            assert _outcome(fast) == old
        rejected += old[0] == "rejected"
    assert direct > 1000 and rejected > 1000


# Records written with fastavro (so they may break the input contract): a valid record where each
# field is, now and then, a value at the edge of some check: blank, blocked and over-long ids (the
# limit is in characters: 1,024 three-byte ones are fine), times around the limits (2100, and an
# hour ahead of the clock) and of other varint sizes, negative and non-finite numbers, quantities
# around 1..100,000, e-mails with and without a key, non-ASCII, long (two-byte length) strings,
# invalid UTF-8. product_id and order_id (needed by some types) and the e-mail are drawn evenly;
# the clock is `NOW` or, now and then, the wall clock (None).
_INVALID_UTF8 = "\u00a7\u00a7"  # written as 4 bytes, then replaced by 4 bytes of invalid UTF-8
_TEXTS = [
    "",
    " ",
    "x",
    "null",
    " NULL ",
    "Test",
    "p-1",
    "o-1",
    "\u00fcber",
    "\u65e5\u672c",
    "a" * 70,
    " \t",
    _INVALID_UTF8,
    "i" * MAX_ID_LENGTH,
    "i" * (MAX_ID_LENGTH + 1),
    "\u65e5" * MAX_ID_LENGTH,
    "\u65e5" * (MAX_ID_LENGTH + 1),
    " " * MAX_ID_LENGTH + "null",
]
_OPTIONAL_TEXTS = [None, *_TEXTS]
_TIMES = [
    0,
    -1,
    1,
    MIN_TS - 1,
    MIN_TS,
    END_TS - 1,
    END_TS,
    1 << 41,
    (1 << 41) - 1,
    1 << 62,
    -(1 << 63),
    NOW + 3_600_000,
    NOW + 3_600_001,
]
_NUMBERS = [None, 0.0, -0.0, -1.5, 5e-324, -5e-324, 1e308, -1e308, float("nan"), float("inf"), float("-inf")]
_QUANTITIES = [0, 1, -1, 64, MAX_QUANTITY, MAX_QUANTITY + 1, (1 << 31) - 1, -(1 << 31)]
_EMAILS = [None, "", "  ", "Foo@Example.com ", "\u00fc@example.com", _INVALID_UTF8]


def _usually(valid, edges):
    """`valid` nine times in ten, else one of `edges`."""
    return st.integers(0, 9).flatmap(lambda i: st.sampled_from(edges) if i == 0 else st.just(valid))


def _written(role: str, record: dict) -> bytes:
    import io

    import fastavro

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, avro.schema_for(role), record)
    return buf.getvalue().replace(_INVALID_UTF8.encode("utf-8"), b"\xff\xfe\xc3\x28")


_clicks = st.fixed_dictionaries(
    {
        "event_id": _usually("e-1", _TEXTS),
        "ts": _usually(1_795_169_700_123, _TIMES),
        "device_id": _usually("d-1", _TEXTS),
        "type": st.sampled_from(CLICK_TYPES),
        "customer_key": _usually(None, _TEXTS),
        "email": st.sampled_from(_EMAILS),
        "url": _usually("https://shop.example/p/1", _OPTIONAL_TEXTS),
        "referrer": _usually(None, _TEXTS),
        "page_category": _usually("toys", _OPTIONAL_TEXTS),
        "product_id": st.sampled_from(_OPTIONAL_TEXTS),
        "price": _usually(19.99, _NUMBERS),
        "quantity": _usually(None, _QUANTITIES),
        "order_id": st.sampled_from(_OPTIONAL_TEXTS),
        "revenue": _usually(None, _NUMBERS[1:]),
        "campaign": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "source": _usually("newsletter", _OPTIONAL_TEXTS),
                    "medium": _usually(None, _TEXTS),
                    "name": _usually("bf", _OPTIONAL_TEXTS),
                }
            ),
        ),
    }
)
_crm_changes = st.fixed_dictionaries(
    {
        "change_id": _usually("c-1", _TEXTS),
        "ts": _usually(1_795_169_700_123, _TIMES),
        "customer_id": _usually("C1", _TEXTS),
        "op": st.sampled_from(CRM_OPS),
        "customer_key": _usually(None, _TEXTS),
        "email": st.sampled_from(_EMAILS),
        "attributes": st.one_of(
            st.none(),
            st.dictionaries(
                _usually("segment", _TEXTS) | st.text(st.characters(blacklist_categories=("Cs",)), max_size=3),
                st.sampled_from(_TEXTS + _NUMBERS[1:]) | st.floats(),
                max_size=3,
            ),
            st.just({f"k{i}": float(i) for i in range(70)}),  # 70 entries: a two-byte block count
        ),
        "lead_status": _usually("sale", _OPTIONAL_TEXTS),
        "marketing_consent": st.sampled_from([None, True, False]),
        "order_id": _usually(None, _TEXTS),
    }
)


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(st.tuples(st.just("clickstream"), _clicks), st.tuples(st.just("crm_changes"), _crm_changes)),
    st.sampled_from([NOW, NOW, None]),
)
def test_decode_input_on_edge_records_is_the_old_pipeline_s(role_record, now):
    role, record = role_record
    data = _written(role, record)
    old = _outcome(_old_pipeline(role, data, now))
    assert _outcome(_decode_input(role, data, now)) == old
    fast = _direct_or_none(role, data, now)
    if fast is not None:
        assert _outcome(fast) == old


def test_direct_crm_change_leaves_an_unusual_boolean_to_fastavro():
    """fastavro reads a boolean byte other than 0/1 as true; the direct decoder leaves it to it."""
    data = _written(
        "crm_changes",
        {"change_id": "c-1", "ts": 1_795_169_700_123, "customer_id": "C1", "op": "upsert", "marketing_consent": True},
    )
    assert data.endswith(b"\x02\x01\x00")
    unusual = data[:-2] + b"\x05\x00"
    assert _direct_or_none("crm_changes", unusual) is None
    assert _outcome(_decode_input("crm_changes", unusual)) == _outcome(_old_pipeline("crm_changes", unusual))
    assert decode_input("crm_changes", unusual, RULES).marketing_consent is True


@pytest.mark.parametrize("rules", [Rules(), Rules(blocked_values=frozenset({"x", "p-1"}))])
def test_direct_click_asks_the_rules_about_the_device(rules):
    data = _written(
        "clickstream", {"event_id": "e-1", "ts": 1_795_169_700_123, "device_id": "P-1 ", "type": "page_view"}
    )
    try:
        expected = to_event("clickstream", avro._read_fastavro("clickstream", data, "surrogateescape"), rules)
    except Rejected as exc:
        expected = exc
    try:
        got = decode_input("clickstream", data, rules)
    except Rejected as exc:
        got = exc
    assert _outcome(got) == _outcome(expected)
    assert isinstance(got, Rejected) == ("p-1" in rules.blocked_values)


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
        outputs += engine.feed([(role, decode_input(role, data, RULES)) for role, data in shop[at : at + 500]], 0)
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
    from datetime import datetime

    from profilestream.codec.avro import from_json

    merge = from_json(
        "merges",
        {"from_profile_id": "p-1", "into_profile_id": "p-2", "reason": "login", "ts": "2026-11-20T10:15:00.123Z"},
    )
    as_datetime = {**merge, "ts": datetime(2026, 11, 20, 10, 15, 0, 123000, tzinfo=UTC)}
    assert avro.encode("merges", as_datetime) == avro.encode("merges", merge) == _fastavro_bytes("merges", merge)
    with pytest.raises(Exception):  # noqa: B017
        avro._fast_writer("merges")(as_datetime)
    with pytest.raises(Exception):  # noqa: B017 (not a symbol: fastavro's error, as before)
        avro.encode("merges", {**merge, "reason": "no such reason"})


# --- the bounds of issue 11, at their edges: the direct decoders accept exactly what `to_event` does

_CLICK = {
    "event_id": "e-1",
    "ts": NOW,
    "device_id": "d-1",
    "type": "add_to_cart",
    "product_id": "p-1",
    "price": 5.0,
    "quantity": 2,
}
_CHANGE = {"change_id": "c-1", "ts": NOW, "customer_id": "C1", "op": "upsert", "customer_key": "k-1"}
_LONG, _LONGER = "\u65e5" * MAX_ID_LENGTH, "\u65e5" * (MAX_ID_LENGTH + 1)  # 3 bytes a character


@pytest.mark.parametrize(
    "role, changes, direct",
    [
        ("clickstream", {"ts": NOW + RULES.max_future}, True),
        ("clickstream", {"ts": NOW + RULES.max_future + 1}, False),
        ("clickstream", {"quantity": MAX_QUANTITY}, True),
        ("clickstream", {"quantity": MAX_QUANTITY + 1}, False),
        ("clickstream", {"quantity": 0}, False),
        ("clickstream", {"price": -0.0}, True),
        ("clickstream", {"price": -5e-324}, False),
        ("clickstream", {"device_id": "d" * MAX_ID_LENGTH}, True),
        ("clickstream", {"device_id": "d" * (MAX_ID_LENGTH + 1)}, False),
        ("clickstream", {"product_id": _LONG}, True),
        ("clickstream", {"product_id": _LONGER}, False),
        ("clickstream", {"customer_key": _LONGER, "email": "jane@example.com"}, False),  # the key wins: too long
        ("clickstream", {"customer_key": " " * MAX_ID_LENGTH + "null", "email": "jane@example.com"}, True),  # the hash
        ("clickstream", {"customer_key": " " * MAX_ID_LENGTH + "null"}, False),
        ("crm_changes", {"ts": NOW + RULES.max_future + 1}, False),
        ("crm_changes", {"customer_id": _LONG}, True),
        ("crm_changes", {"customer_id": _LONGER}, False),
        ("crm_changes", {"order_id": "o" * (MAX_ID_LENGTH + 1)}, False),
    ],
)
def test_direct_decoders_take_the_bounds_as_the_general_path_does(role, changes, direct):
    data = _written(role, {**(_CLICK if role == "clickstream" else _CHANGE), **changes})
    old = _outcome(_old_pipeline(role, data))
    assert (_direct_or_none(role, data) is not None) == direct
    assert (old[0] != "rejected") == direct
    assert _outcome(_decode_input(role, data)) == old
    if direct:
        assert _outcome(_direct_or_none(role, data)) == old


# --- fallbacks are counted (ops.metrics: profilestream_codec_fallbacks{role,path}) ------------------


def test_a_record_the_direct_decoder_declines_is_counted_and_decided_as_before():
    from profilestream.ops.metrics import COUNTERS, registry

    valid = _written(
        "crm_changes",
        {"change_id": "c-1", "ts": 1_795_169_700_123, "customer_id": "C1", "op": "upsert", "marketing_consent": True},
    )
    unusual = valid[:-2] + b"\x05\x00"  # a boolean byte fastavro reads as true: valid, but not plain
    cut = valid[:-3]  # malformed: rejected
    COUNTERS.reset()
    assert decode_input("crm_changes", valid, RULES).marketing_consent is True
    assert COUNTERS.codec_fallbacks == {}  # the plain record: no fallback
    got = decode_input("crm_changes", unusual, RULES)
    assert _outcome(got) == _outcome(_old_pipeline("crm_changes", unusual)) and got.marketing_consent is True
    assert COUNTERS.codec_fallbacks == {("crm_changes", "direct"): 1, ("crm_changes", "reader"): 1}
    rejected = _outcome(_decode_input("crm_changes", cut))
    assert rejected == _outcome(_old_pipeline("crm_changes", cut)) and rejected[0] == "rejected"
    assert COUNTERS.codec_fallbacks == {("crm_changes", "direct"): 2, ("crm_changes", "reader"): 2}
    merge = from_json(
        "merges",
        {"from_profile_id": "p-1", "into_profile_id": "p-2", "reason": "login", "ts": "2026-11-20T10:15:00.123Z"},
    )
    from datetime import datetime

    as_datetime = {**merge, "ts": datetime(2026, 11, 20, 10, 15, 0, 123000, tzinfo=UTC)}
    assert avro.encode("merges", as_datetime) == _fastavro_bytes("merges", merge)
    assert COUNTERS.codec_fallbacks[("merges", "writer")] == 1
    scraped = registry(COUNTERS).get_sample_value(
        "profilestream_codec_fallbacks_total", {"role": "crm_changes", "path": "direct"}
    )
    assert scraped == 2
    COUNTERS.reset()


def test_a_fast_path_s_bug_is_not_hidden_by_a_fallback(monkeypatch):
    """Only the errors a fast path declines with fall back; any other (a bug) propagates."""

    def broken(data, rules, now_ms):
        raise TypeError("a bug")

    data = _written("crm_changes", {"change_id": "c-1", "ts": 1_795_169_700_123, "customer_id": "C1", "op": "upsert"})
    monkeypatch.setitem(avro._DIRECT, "crm_changes", broken)
    with pytest.raises(TypeError, match="a bug"):
        decode_input("crm_changes", data, RULES)
