"""The codec: schemas carry the CONTRACT fields, JSON <-> record <-> Avro round trips, e-mail
addresses never survive arrival, and every contract breach is a `Rejected` naming the field."""

from __future__ import annotations

import base64
import copy
import io
import json
import pickle

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profilestream.codec.avro import (
    DEAD_LETTER_VALUE_BYTES,
    MAX_VALUE_BYTES,
    ROLES,
    Rejected,
    dead_letter,
    decode,
    decode_input,
    encode,
    format_time,
    from_json,
    hash_email,
    parse_time,
    schema_for,
    to_event,
    to_json,
)
from profilestream.codec.validation import MAX_ID_LENGTH, MAX_QUANTITY, MIN_QUANTITY
from profilestream.config import TOPIC_ROLES
from profilestream.domain.events import CLICK_TYPES, Campaign, Click, CrmChange
from profilestream.domain.rules import Rules
from support.schemas import avsc, avsc_files

RULES = Rules()
NO_CLOCK = Rules(max_future=None)  # for times anywhere in the sanity range, ahead of the wall clock too
FOO_HASH = "321ba197033e81286fedb719d60d4ed5cecaed170733cb4a92013811afc0e3b6"  # sha256("foo@example.com")
T0 = "2026-11-20T10:15:00.123Z"
T0_MS = 1_795_169_700_123

# One full sample per topic, in canonical JSON form (every field, times as ms + "Z").
CAMPAIGN_SEEN = {
    "source": "newsletter",
    "medium": "email",
    "name": None,
    "first_ts": "2026-11-01T08:00:00.000Z",
    "last_ts": T0,
}
RFM = {
    "days_since_last_order": 0.0,
    "orders": 1,
    "revenue": 39.98,
    "recency": 3,
    "frequency": 1,
    "monetary": 1,
    "code": "311",
}
RFE = {
    "days_since_last_visit": 1.5,
    "visits": 3,
    "page_views": 10,
    "recency": 3,
    "frequency": 2,
    "engagement": 2,
    "code": "322",
}
SAMPLES = {
    "clickstream": {
        "event_id": "e-1",
        "ts": T0,
        "device_id": "dev-1",
        "type": "purchase",
        "customer_key": "ck-1",
        "url": "https://shop.example/checkout",
        "referrer": "https://mail.example/",
        "page_category": "shoes",
        "product_id": "p-1",
        "price": 19.99,
        "quantity": 2,
        "order_id": "o-1",
        "revenue": 39.98,
        "campaign": {"source": "newsletter", "medium": "email", "name": "black-friday"},
    },
    "crm_changes": {
        "change_id": "c-1",
        "ts": T0,
        "customer_id": "cust-1",
        "op": "upsert",
        "customer_key": "ck-1",
        "attributes": {"segment": "gold", "lifetime_value": 1200.5},
        "lead_status": "sale",
        "marketing_consent": True,
        "order_id": "o-1",
    },
    "profiles": {
        "profile_id": "pr-1",
        "customer_id": "cust-1",
        "customer_key": "ck-1",
        "device_ids": ["dev-1", "dev-2"],
        "first_seen": "2026-11-01T08:00:00.000Z",
        "last_seen": T0,
        "visits": 3,
        "page_views": 10,
        "product_views": 4,
        "orders": 1,
        "revenue": 39.98,
        "last_order_ts": T0,
        "first_order_ts": T0,
        "viewed_products": ["p-2", "p-1"],
        "cart": [
            {"product_id": "p-3", "quantity": 1, "price": 5.0},
            {"product_id": "p-4", "quantity": 2, "price": None},
        ],
        "campaigns": [CAMPAIGN_SEEN],
        "attributes": {"segment": "gold", "ltv": 1.5},
        "lead_status": "sale",
        "marketing_consent": False,
        "updated_at": T0,
        "rfm": RFM,
        "rfe": RFE,
        "p_alive": 0.75,
        "expected_purchases_30d": 0.125,
    },
    "merges": {"from_profile_id": "pr-2", "into_profile_id": "pr-1", "reason": "order_match", "ts": T0},
    "triggers": {
        "trigger_id": "t-1",
        "type": "cart_abandoned",
        "profile_id": "pr-1",
        "customer_id": "cust-1",
        "customer_key": "ck-1",
        "device_id": "dev-1",
        "ts": T0,
        "emitted_at": "2026-11-20T10:16:00.000Z",
        "cart": [{"product_id": "p-3", "quantity": 1, "price": 5.0}],
        "days_away": None,
    },
    "crm_feed": {
        "customer_id": "cust-1",
        "customer_key": "ck-1",
        "viewed_products": ["p-1"],
        "campaigns": [CAMPAIGN_SEEN],
        "last_visit": T0,
        "visits": 3,
        "page_views": 10,
        "orders": 1,
        "revenue": 39.98,
        "updated_at": T0,
        "rfm": RFM,
        "rfe": RFE,
        "p_alive": None,
        "expected_purchases_30d": None,
    },
    "dead_letters": {
        "topic": "clickstream",
        "partition": 2,
        "offset": 12345678901,
        "key": "dev-1",
        "value": base64.b64encode(b"\x00garbage").decode(),
        "error": "field 'ts': missing",
        "ts": T0,
    },
}

# CONTRACT.md's fields per topic: the schemas must carry all of them.
CONTRACT_FIELDS = {
    "clickstream": "event_id ts device_id type customer_key email url referrer page_category product_id "
    "price quantity order_id revenue campaign",
    "crm_changes": "change_id ts customer_id op customer_key email attributes lead_status marketing_consent order_id",
    "profiles": "profile_id customer_id customer_key device_ids first_seen last_seen visits page_views "
    "product_views orders revenue last_order_ts viewed_products cart campaigns attributes "
    "lead_status marketing_consent updated_at",
    "merges": "from_profile_id into_profile_id reason ts",
    "triggers": "trigger_id type profile_id customer_id customer_key device_id ts emitted_at cart days_away",
    "crm_feed": "customer_id customer_key viewed_products campaigns last_visit visits page_views orders "
    "revenue updated_at",
    "dead_letters": "topic partition offset key value error ts",
}
TIME_FIELDS = {
    "clickstream": {"ts"},
    "crm_changes": {"ts"},
    "merges": {"ts"},
    "dead_letters": {"ts"},
    "profiles": {"first_seen", "last_seen", "last_order_ts", "first_order_ts", "updated_at"},
    "triggers": {"ts", "emitted_at"},
    "crm_feed": {"last_visit", "updated_at"},
}


def raw_schema(role: str) -> dict:
    files = {
        "crm_changes": "crm-changes",
        "merges": "profile-merges",
        "crm_feed": "crm-feed",
        "dead_letters": "dead-letters",
    }
    return avsc(f"{files.get(role, role)}.avsc")


def wire(role: str, record: dict) -> bytes:
    """Bytes as a third-party producer would write them (plain fastavro, no profilestream)."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(raw_schema(role)), record)
    return buf.getvalue()


def click(**changes) -> dict:
    record = from_json("clickstream", SAMPLES["clickstream"])
    record.update(changes)
    return record


def crm(**changes) -> dict:
    record = from_json("crm_changes", SAMPLES["crm_changes"])
    record.update(changes)
    return record


# --- schemas -------------------------------------------------------------------------------


def test_one_schema_per_topic_role():
    assert set(ROLES) == set(TOPIC_ROLES) == set(SAMPLES)
    assert len(avsc_files()) == 7


@pytest.mark.parametrize("role", ROLES)
def test_schema_carries_the_contract_fields(role):
    schema = raw_schema(role)
    assert schema["namespace"] == "profilestream" and "schemaless" in schema["doc"]
    fields = {f["name"]: f for f in schema["fields"]}
    assert set(CONTRACT_FIELDS[role].split()) <= set(fields)
    for name, f in fields.items():
        types = f["type"] if isinstance(f["type"], list) else [f["type"]]
        is_time = {"type": "long", "logicalType": "timestamp-millis"} in types
        assert is_time == (name in TIME_FIELDS[role]), name
        if "null" in types:
            assert types[0] == "null" and f["default"] is None, name
    assert schema_for(role) is schema_for(role)  # parsed once


def test_input_enums_and_optional_campaign():
    fields = {f["name"]: f["type"] for f in raw_schema("clickstream")["fields"]}
    assert fields["type"]["type"] == "enum" and tuple(fields["type"]["symbols"]) == CLICK_TYPES
    assert fields["campaign"][0] == "null" and fields["campaign"][1]["type"] == "record"
    ops = {f["name"]: f["type"] for f in raw_schema("crm_changes")["fields"]}["op"]
    assert ops["symbols"] == ["upsert", "erase"]


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_topic_round_trips(role):
    sample = SAMPLES[role]
    record = from_json(role, copy.deepcopy(sample))
    for name in TIME_FIELDS[role]:
        assert record[name] is None or isinstance(record[name], int)
    data = encode(role, record)
    assert decode(role, data) == record
    assert to_json(role, decode(role, data)) == sample
    assert json.loads(json.dumps(to_json(role, decode(role, data)))) == sample


def test_missing_optional_fields_become_null():
    record = from_json("clickstream", {"event_id": "e", "ts": T0, "device_id": "d", "type": "page_view"})
    assert record["url"] is None and record["campaign"] is None
    assert to_json("clickstream", decode("clickstream", encode("clickstream", record)))["campaign"] is None


@pytest.mark.parametrize(
    "text, ms",
    [
        (T0, T0_MS),
        ("2026-11-20T11:15:00.123+01:00", T0_MS),
        ("2026-11-20T10:15:00Z", T0_MS - 123),
        ("2026-11-20T10:15:00.123999Z", T0_MS),
        (T0_MS, T0_MS),
        ("1970-01-01T00:00:00.000Z", 0),
    ],
)
def test_times(text, ms):
    assert parse_time(text) == ms
    assert from_json("merges", {**SAMPLES["merges"], "ts": text})["ts"] == ms


def test_time_format_has_milliseconds_and_z():
    assert format_time(T0_MS) == T0 and format_time(T0_MS - 123) == "2026-11-20T10:15:00.000Z"


@given(st.integers(min_value=631_152_000_000, max_value=4_102_444_799_999))
def test_time_round_trip(ms):
    assert parse_time(format_time(ms)) == ms


ids = st.text(max_size=MAX_ID_LENGTH)  # (hypothesis draws them short: the limit is tested in test_input_bounds)
clicks = st.fixed_dictionaries(
    {
        "event_id": ids.filter(str.strip),
        "ts": st.integers(min_value=631_152_000_000, max_value=4_102_444_799_999),
        "device_id": ids.filter(lambda s: s and s.strip().lower() not in RULES.blocked_values),
        "type": st.sampled_from(["page_view", "checkout", "login", "logout"]),
    },
    optional={
        "customer_key": st.none() | ids,
        "url": st.none() | st.text(),
        "page_category": st.text(),
        "product_id": ids,
        "price": st.none() | st.floats(min_value=0, allow_nan=False, allow_infinity=False),
        "quantity": st.integers(min_value=MIN_QUANTITY, max_value=MAX_QUANTITY),
        "revenue": st.floats(allow_nan=False, allow_infinity=False),
        "campaign": st.none()
        | st.fixed_dictionaries({}, optional={"source": st.text(), "name": st.none() | st.text()}),
    },
)


@settings(max_examples=200)
@given(clicks)
def test_generated_clicks_round_trip(obj):
    record = from_json("clickstream", obj)
    data = encode("clickstream", record)
    event = decode_input("clickstream", data, NO_CLOCK)
    assert isinstance(event, Click)
    assert (event.event_id, event.ts, event.device_id, event.type) == (
        obj["event_id"],
        obj["ts"],
        obj["device_id"],
        obj["type"],
    )
    assert event.customer_key == obj.get("customer_key") and event.price == obj.get("price")
    assert event.quantity == obj.get("quantity")
    if obj.get("campaign") is not None:
        assert event.campaign == Campaign(obj["campaign"].get("source"), None, obj["campaign"].get("name"))
    back = to_json("clickstream", decode("clickstream", data))
    assert back == {
        **{k: None for k in back},
        **obj,
        "ts": format_time(obj["ts"]),
        **(
            {"campaign": {"source": None, "medium": None, "name": None, **obj["campaign"]}}
            if obj.get("campaign") is not None
            else {}
        ),
    }


# --- e-mail --------------------------------------------------------------------------------


def test_hash_email():
    assert hash_email("foo@example.com") == FOO_HASH
    assert hash_email("  Foo@Example.COM \n") == FOO_HASH


@pytest.mark.parametrize("role", ["clickstream", "crm_changes"])
def test_email_is_hashed_on_arrival_and_dropped(role):
    obj = {k: v for k, v in SAMPLES[role].items() if k != "customer_key"}
    record = from_json(role, {**obj, "email": " Foo@Example.com"})
    assert "email" not in record and record["customer_key"] == FOO_HASH
    data = encode(role, record)
    assert b"foo@" not in data.lower()
    decoded = decode(role, data)
    assert "email" not in decoded and decoded["customer_key"] == FOO_HASH
    assert "email" not in to_json(role, decoded)


@pytest.mark.parametrize("role", ["clickstream", "crm_changes"])
def test_present_customer_key_wins_over_email(role):
    record = from_json(role, {**SAMPLES[role], "email": "foo@example.com"})
    assert record["customer_key"] == "ck-1" and "email" not in record


@pytest.mark.parametrize("role", ["clickstream", "crm_changes"])
def test_email_on_the_wire_is_hashed_and_dropped(role):
    record = {**from_json(role, SAMPLES[role]), "customer_key": None, "email": "FOO@example.com"}
    data = wire(role, record)
    assert b"FOO@example.com" in data  # a third-party producer did send it
    decoded = decode(role, data)
    assert "email" not in decoded and decoded["customer_key"] == FOO_HASH
    assert decode_input(role, data, RULES).customer_key == FOO_HASH


def test_encode_never_writes_a_clear_email():
    record = {**click(customer_key=None), "email": "foo@example.com"}
    data = encode("clickstream", record)
    assert b"foo@" not in data and decode("clickstream", data)["customer_key"] == FOO_HASH
    assert record["email"] == "foo@example.com"  # the caller's dict is not changed


def test_blank_email_links_nothing():
    record = from_json("clickstream", {**SAMPLES["clickstream"], "customer_key": None, "email": "  "})
    assert record["customer_key"] is None and "email" not in record


@pytest.mark.parametrize("role", ["clickstream", "crm_changes"])
@pytest.mark.parametrize("key", ["unknown", " NULL ", ""])
def test_a_blocked_customer_key_does_not_hide_the_email(role, key):
    """A blocked key is absent (docs/semantics.md "Usable identifiers"), so the address beside it links."""
    assert (
        from_json(role, {**SAMPLES[role], "customer_key": key, "email": "foo@example.com"}, RULES)["customer_key"]
        == FOO_HASH
    )
    data = wire(role, {**from_json(role, SAMPLES[role]), "customer_key": key, "email": "Foo@example.com"})
    assert decode_input(role, data, RULES).customer_key == FOO_HASH


@pytest.mark.parametrize("role", ["clickstream", "crm_changes"])
@pytest.mark.parametrize("email", ["none", " Unknown ", "TEST", "null"])
def test_a_blocked_email_value_links_nothing(role, email):
    record = from_json(role, {**SAMPLES[role], "customer_key": None, "email": email}, RULES)
    assert record["customer_key"] is None and "email" not in record
    data = wire(role, {**from_json(role, SAMPLES[role]), "customer_key": None, "email": email})
    assert decode_input(role, data, RULES).customer_key is None
    # a blocked value configured by the user counts too
    custom = Rules(blocked_values=frozenset({"nobody@example.com"}))
    data = wire(role, {**from_json(role, SAMPLES[role]), "customer_key": None, "email": " Nobody@Example.com"})
    assert decode_input(role, data, custom).customer_key is None


# --- rejections: from_json -----------------------------------------------------------------


@pytest.mark.parametrize(
    "role, changes, field",
    [
        ("clickstream", {"ts": "2026-11-20T10:15:00"}, "ts"),
        ("clickstream", {"ts": "yesterday"}, "ts"),
        ("clickstream", {"ts": 1.5}, "ts"),
        ("clickstream", {"type": "jump"}, "type"),
        ("clickstream", {"event_id": None}, "event_id"),
        ("clickstream", {"device_id": 42}, "device_id"),
        ("clickstream", {"colour": "red"}, "colour"),
        ("clickstream", {"price": "12"}, "price"),
        ("clickstream", {"price": float("nan")}, "price"),
        ("clickstream", {"quantity": 1.5}, "quantity"),
        ("clickstream", {"quantity": True}, "quantity"),
        ("clickstream", {"quantity": 2**40}, "quantity"),
        ("clickstream", {"url": "bad \udc80 url"}, "url"),
        ("clickstream", {"campaign": "newsletter"}, "campaign"),
        ("clickstream", {"campaign": {"source": 5}}, "campaign.source"),
        ("clickstream", {"campaign": {"utm_term": "x"}}, "campaign.utm_term"),
        ("crm_changes", {"op": "delete"}, "op"),
        ("crm_changes", {"marketing_consent": "yes"}, "marketing_consent"),
        ("crm_changes", {"attributes": {"tags": ["a"]}}, "attributes.tags"),
        ("crm_changes", {"attributes": ["a"]}, "attributes"),
        ("profiles", {"cart": [{"product_id": "p", "quantity": "2", "price": None}]}, "cart[0].quantity"),
        ("profiles", {"visits": None}, "visits"),
        ("merges", {"reason": "because"}, "reason"),
        ("triggers", {"emitted_at": "2026-11-20"}, "emitted_at"),
        ("dead_letters", {"partition": 2**31}, "partition"),
    ],
)
def test_from_json_rejects_naming_the_field(role, changes, field):
    with pytest.raises(Rejected) as info:
        from_json(role, {**SAMPLES[role], **changes})
    assert info.value.field == field
    assert str(info.value).startswith(f"field {field!r}: ")


@pytest.mark.parametrize("missing", ["event_id", "ts", "device_id", "type"])
def test_from_json_rejects_a_missing_required_field(missing):
    obj = {k: v for k, v in SAMPLES["clickstream"].items() if k != missing}
    with pytest.raises(Rejected) as info:
        from_json("clickstream", obj)
    assert info.value.field == missing and "missing" in info.value.reason


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"device_id": "unknown"}, "device_id"),
        ({"ts": 0}, "ts"),
        ({"type": "add_to_cart", "product_id": None}, "product_id"),
    ],
)
def test_from_json_with_rules_applies_the_input_contract(changes, field):
    obj = {**SAMPLES["clickstream"], **changes}
    assert from_json("clickstream", obj)  # the schema alone allows it
    with pytest.raises(Rejected) as info:
        from_json("clickstream", obj, RULES)
    assert info.value.field == field
    assert from_json("clickstream", SAMPLES["clickstream"], RULES)["event_id"] == "e-1"


def test_from_json_rejects_a_non_object():
    with pytest.raises(Rejected) as info:
        from_json("clickstream", ["not", "an", "object"])
    assert info.value.field == "value"


def test_rejected_reads_well_and_pickles():
    err = Rejected("ts", "not an ISO-8601 time with a zone")
    assert str(err) == "field 'ts': not an ISO-8601 time with a zone"
    again = pickle.loads(pickle.dumps(err))
    assert (again.field, again.reason, str(again)) == (err.field, err.reason, str(err))
    assert isinstance(err, ValueError)


# --- rejections: the input contract (to_event / decode_input) ------------------------------


def test_valid_inputs_become_domain_events():
    assert to_event("clickstream", click(), RULES) == Click(
        event_id="e-1",
        ts=T0_MS,
        device_id="dev-1",
        type="purchase",
        customer_key="ck-1",
        url="https://shop.example/checkout",
        referrer="https://mail.example/",
        page_category="shoes",
        product_id="p-1",
        price=19.99,
        quantity=2,
        order_id="o-1",
        revenue=39.98,
        campaign=Campaign("newsletter", "email", "black-friday"),
    )
    assert decode_input("crm_changes", encode("crm_changes", crm()), RULES) == CrmChange(
        change_id="c-1",
        ts=T0_MS,
        customer_id="cust-1",
        op="upsert",
        customer_key="ck-1",
        attributes={"segment": "gold", "lifetime_value": 1200.5},
        lead_status="sale",
        marketing_consent=True,
        order_id="o-1",
    )


@pytest.mark.parametrize(
    "role, record, field",
    [
        ("clickstream", click(event_id=None), "event_id"),
        ("clickstream", click(event_id="  "), "event_id"),
        ("clickstream", click(ts=None), "ts"),
        ("clickstream", click(device_id=None), "device_id"),
        ("clickstream", click(type=None), "type"),
        ("clickstream", click(type="product_view", product_id=None), "product_id"),
        ("clickstream", click(type="add_to_cart", product_id=None), "product_id"),
        ("clickstream", click(type="remove_from_cart", product_id=""), "product_id"),
        ("clickstream", click(type="purchase", order_id=None), "order_id"),
        ("clickstream", click(ts=631_151_999_999), "ts"),
        ("clickstream", click(ts=4_102_444_800_000), "ts"),
        ("clickstream", click(ts=T0_MS * 1000), "ts"),
        ("clickstream", click(url="\udcff\udcfe"), "url"),
        ("clickstream", click(customer_key="ok\ud800"), "customer_key"),
        ("clickstream", click(campaign={"source": "\udc80", "medium": None, "name": None}), "campaign.source"),
        ("clickstream", click(price=float("inf")), "price"),
        ("clickstream", click(revenue=float("nan")), "revenue"),
        ("crm_changes", crm(change_id=None), "change_id"),
        ("crm_changes", crm(customer_id=None), "customer_id"),
        ("crm_changes", crm(op="delete"), "op"),
        ("crm_changes", crm(ts=0), "ts"),
        ("crm_changes", crm(lead_status="\udc80"), "lead_status"),
        ("crm_changes", crm(attributes={"x": float("nan")}), "attributes.x"),
        ("crm_changes", crm(attributes={"x\udc80": "y"}), "attributes"),
    ],
)
def test_to_event_rejects_naming_the_field(role, record, field):
    with pytest.raises(Rejected) as info:
        to_event(role, record, RULES)
    assert info.value.field == field


@pytest.mark.parametrize("device_id", ["unknown", " NULL ", "", "Anonymous", "0"])
def test_blocked_device_is_rejected(device_id):
    with pytest.raises(Rejected) as info:
        to_event("clickstream", click(device_id=device_id), RULES)
    assert info.value.field == "device_id" and info.value.reason == "device_id is blocked"
    assert to_event("clickstream", click(device_id=device_id), Rules(blocked_values=frozenset({"x"})))


@pytest.mark.parametrize("ts", [631_152_000_000, 4_102_444_799_999])
def test_time_bounds_are_inclusive_exclusive(ts):
    assert to_event("clickstream", click(ts=ts), NO_CLOCK).ts == ts


def test_type_specific_fields_only_where_needed():
    assert to_event("clickstream", click(type="page_view", product_id=None, order_id=None), RULES)
    assert to_event("clickstream", click(type="add_to_cart", order_id=None), RULES)


def test_invalid_utf8_on_the_wire_names_the_field():
    good = encode("clickstream", click(url="ZZ"))
    bad = good.replace(b"ZZ", b"\xff\xfe", 1)
    with pytest.raises(Rejected) as info:
        decode_input("clickstream", bad, RULES)
    assert info.value.field == "url" and "UTF-8" in info.value.reason
    with pytest.raises(Rejected) as info:
        decode("clickstream", bad)
    assert info.value.field == "value"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff" * 10,
        b"\x00\x01\x02",
        b"garbage that is not avro at all",
        encode("merges", from_json("merges", SAMPLES["merges"])),  # another topic's schema
        encode("clickstream", click()) + b"\x00",  # trailing bytes
        encode("clickstream", click())[:-3],  # truncated
        None,  # a tombstone on an input topic
    ],
)
def test_decode_input_rejects_bad_bytes(data):
    with pytest.raises(Rejected) as info:
        decode_input("clickstream", data, RULES)
    assert info.value.field == "value"


def test_decode_input_rejects_a_value_over_one_mib_unread():
    huge = encode("clickstream", click(url="u" * MAX_VALUE_BYTES))
    assert len(huge) > MAX_VALUE_BYTES == 1 << 20
    with pytest.raises(Rejected) as info:
        decode_input("clickstream", huge, RULES)
    assert info.value.field == "value" and "1 MiB" in info.value.reason
    fits = encode("clickstream", click(url="u" * (MAX_VALUE_BYTES - 300)))
    assert len(fits) <= MAX_VALUE_BYTES and decode_input("clickstream", fits, RULES).url


@given(st.binary(max_size=200))
def test_decode_input_on_random_bytes_is_an_event_or_rejected(data):
    try:
        event = decode_input("crm_changes", data, RULES)
    except Rejected as err:
        assert err.field
    else:
        assert isinstance(event, CrmChange)


# --- dead letters --------------------------------------------------------------------------


def test_dead_letter_record():
    value = b"\x00\xffnot avro"
    record = dead_letter("clickstream", 1, 42, b"dev-\xff", value, "field 'ts': bad \udc80", T0_MS)
    assert record["key"] == "dev-\ufffd"
    assert base64.b64decode(record["value"]) == value
    assert decode("dead_letters", encode("dead_letters", record)) == record
    assert to_json("dead_letters", record)["ts"] == T0
    empty = dead_letter("crm-changes", 0, 7, None, None, "tombstone", T0_MS)
    assert empty["key"] is None and empty["value"] == ""
    assert decode("dead_letters", encode("dead_letters", empty)) == empty


def test_dead_letter_overwrites_a_clear_email_and_keeps_the_framing():
    import base64
    import io

    from fastavro import parse_schema, schemaless_reader

    from profilestream.codec.avro import dead_letter, schema_for

    # encode() never writes an address, so build the wire bytes the way a third-party producer would
    wire = io.BytesIO()
    from fastavro import schemaless_writer

    schemaless_writer(
        wire,
        parse_schema(schema_for("clickstream")),
        {"event_id": "e1", "ts": 1, "device_id": "d1", "type": "page_view", "email": "Jane@Example.com"},
    )
    letter = dead_letter("clickstream", 0, 5, b"d1", wire.getvalue(), "field 'ts': too early", 1, role="clickstream")
    raw = base64.b64decode(letter["value"])
    assert b"Jane@Example.com" not in raw and len(raw) == len(wire.getvalue())
    back = schemaless_reader(io.BytesIO(raw), parse_schema(schema_for("clickstream")), None)
    assert back["email"] == "*" * len("Jane@Example.com") and back["event_id"] == "e1"


def test_dead_letter_cuts_an_oversized_value_and_says_so():
    import base64

    from profilestream.codec.avro import DEAD_LETTER_VALUE_BYTES, dead_letter

    letter = dead_letter(
        "clickstream", 0, 5, None, b"x" * (2 * 1024 * 1024), "field 'value': too large", 1, role="clickstream"
    )
    assert len(base64.b64decode(letter["value"])) == DEAD_LETTER_VALUE_BYTES
    assert "cut to its first" in letter["error"] and str(2 * 1024 * 1024) in letter["error"]


# --- no clear address in a dead letter, decodable or not (issue 11, finding 3) -----------------

ADDRESS = "Jane.Doe+shop@Example.co.uk"


def _click_with(**fields) -> bytes:
    return wire("clickstream", {"event_id": "e-1", "ts": T0_MS, "device_id": "d-1", "type": "page_view", **fields})


def _undecodable_layouts() -> dict[str, bytes]:
    with_email = _click_with(email=ADDRESS)
    end = with_email.index(ADDRESS.encode()) + len(ADDRESS)
    other = {
        "type": "record",
        "name": "Contact",
        "fields": [{"name": "id", "type": "long"}, {"name": "contact", "type": "string"}],
    }
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(other), {"id": 7, "contact": f"mailto:{ADDRESS}"})
    bad_utf8 = _click_with(email="\u00a7" + ADDRESS + "\u00a7").replace("\u00a7".encode(), b"\xff\xfe")
    return {
        "truncated just after the address": with_email[:end],
        "truncated in the address's TLD": with_email[: end - 1],
        "wrong schema": buf.getvalue(),
        "another topic's schema": wire(
            "crm_changes", {"change_id": "c", "ts": T0_MS, "customer_id": "C1", "op": "upsert", "email": ADDRESS}
        ),
        "plain JSON": json.dumps({"event_id": "e-1", "email": ADDRESS, "type": "login"}).encode(),
        "bad UTF-8 around the address": b"\xff\xfe\x00" + ADDRESS.encode() + b"\xc3\x28\xff",
        "bad UTF-8 around it, in an Avro click": bad_utf8[:-1],
        "address in a URL, percent-encoded, trailing bytes": _click_with(
            url=f"https://shop.example/?e={ADDRESS.replace('@', '%40')}"
        )
        + b"\x00\x01",
        "valid click, address in the url, rejected for its quantity": _click_with(
            type="add_to_cart", product_id="p", quantity=0, url=f"https://x.example/?to={ADDRESS}"
        ),
        "valid crm change, address in an attribute, rejected for its ts": wire(
            "crm_changes",
            {"change_id": "c", "ts": 0, "customer_id": "C1", "op": "upsert", "attributes": {"contact": ADDRESS}},
        ),
        "over 64 KiB, the address at the cut": b"x" * (DEAD_LETTER_VALUE_BYTES - 10) + ADDRESS.encode() + b"y" * 99,
        "over 1 MiB": ADDRESS.encode() + b"\x00" * MAX_VALUE_BYTES,
    }


def _no_address_in(letter: dict) -> None:
    local, domain = ADDRESS.lower().split("@")
    for where, text in (
        ("value", base64.b64decode(letter["value"])),
        ("key", (letter["key"] or "").encode()),
        ("error", letter["error"].encode()),
    ):
        text = text.lower().replace(b"%40", b"@")
        assert ADDRESS.lower().encode() not in text, where
        assert f"@{domain}".encode() not in text and f"{local}@".encode() not in text, (where, text[:200])


@pytest.mark.parametrize("layout", list(_undecodable_layouts()))
def test_no_clear_address_survives_in_a_dead_letter(layout):
    data = _undecodable_layouts()[layout]
    role = "clickstream" if "crm" not in layout else "crm_changes"
    with pytest.raises(Rejected) as info:
        decode_input(role, data, RULES)
    letter = dead_letter(
        "clickstream", 0, 9, f"  {ADDRESS} ".encode(), data, f"{info.value} (sent by {ADDRESS})", T0_MS, role=role
    )
    _no_address_in(letter)
    value = base64.b64decode(letter["value"])
    assert len(value) == min(len(data), DEAD_LETTER_VALUE_BYTES)  # same length: offsets stay
    assert letter["key"] == "  " + "*" * len(ADDRESS) + " "
    assert decode("dead_letters", encode("dead_letters", letter)) == letter


def test_masking_keeps_what_is_no_address():
    from profilestream.codec.avro import mask_addresses

    for text in (b"", b"no at sign", b"a@b", b"@example.com", b"x@localhost.", b"price 5@3.99", b"x@1.2.3.4"):
        assert mask_addresses(text) == text
    assert mask_addresses(b"to jane@example.com, bob@shop.example") == b"to " + b"*" * 16 + b", " + b"*" * 16
    assert mask_addresses(b"jane@exa") == b"*" * 8  # cut short by the end of the data
    assert mask_addresses("Jürgen@Bücher.de".encode()) == b"*" * 18


def test_masking_is_linear_on_hostile_bytes():
    """Linear by construction, checked without a clock (timing belongs in the bench): the domain
    regex is possessive (no backtracking into a label), the walk back over a local part stops
    after `_LOCAL_MAX` bytes and never crosses the last masked address, and on the worst layouts
    every byte is inspected a bounded number of times."""
    from profilestream.codec import avro

    assert ")*+" in avro._ADDRESS_AT.pattern.decode()  # possessive: each '@' scanned forward once

    class Counted(bytes):  # counts the walk's byte inspections (`data[i]`)
        reads = 0

        def __getitem__(self, index):
            Counted.reads += 1
            return bytes.__getitem__(self, index)

    for data in (
        b"a" * MAX_VALUE_BYTES,
        b"a@" * (MAX_VALUE_BYTES // 2),
        b"@" + b"a." * (MAX_VALUE_BYTES // 2),
        b"a" * MAX_VALUE_BYTES + b"@example.com",
    ):
        Counted.reads = 0
        masked = avro.mask_addresses(Counted(data))
        assert len(masked) == len(data)
        assert Counted.reads <= 3 * data.count(b"@") + avro._LOCAL_MAX + 8, (data[:8], Counted.reads)
