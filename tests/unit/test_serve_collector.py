"""The collector's rules (CONTRACT.md "HTTP", `POST /v1/collect` and `GET /v1/pixel.gif`), without a server."""

from __future__ import annotations

import itertools
import json
import random
import uuid

import pytest

from profilestream.codec import avro
from profilestream.codec.validation import hash_email
from profilestream.config import Config
from profilestream.serve.collector import MAX_EVENTS, BadRequest, Collector, event_id, landing

NOW = 1_795_000_000_000  # 2026-11-18


@pytest.fixture
def collector():
    counter = itertools.count(1)
    made = lambda: f"id-{next(counter)}"  # noqa: E731
    return Collector(Config().rules(), "ps_ck", new_event_id=made, new_device_id=made)


def test_left_out_event_id_ts_and_device_are_made_and_the_new_device_is_reported(collector):
    out = collector.collect([{"type": "page_view"}, {"type": "page_view"}], None, NOW)
    (k1, r1), (k2, r2) = out.records
    assert r1["ts"] == r2["ts"] == NOW
    assert r1["event_id"] != r2["event_id"]
    assert k1 == k2 == r1["device_id"] == r2["device_id"] == out.new_device  # one new device a request


def test_the_cookie_gives_the_device_and_an_explicit_device_id_wins(collector):
    out = collector.collect([{"type": "page_view"}, {"type": "page_view", "device_id": "app-1"}], "cookie-dev", NOW)
    assert [k for k, _ in out.records] == ["cookie-dev", "app-1"]
    assert out.new_device is None


def test_a_page_view_gets_its_campaign_and_key_from_the_landing_url(collector):
    url = "https://shop.example/?utm_source=newsletter&utm_medium=email&utm_campaign=xmas&ps_ck=abc123"
    ((_, record),) = collector.collect([{"type": "page_view", "url": url}], "d", NOW).records
    assert record["campaign"] == {"source": "newsletter", "medium": "email", "name": "xmas"}
    assert record["customer_key"] == "abc123"


def test_the_landing_url_fills_gaps_only(collector):
    url = "https://shop.example/p?utm_source=nl&ps_ck=from-url"
    events = [
        {"type": "page_view", "url": url, "campaign": {"source": "own"}, "customer_key": "own-key"},
        {"type": "product_view", "url": url, "product_id": "sku"},  # not a page view: no campaign
        {"type": "page_view", "url": url, "email": "Ann@Example.com"},  # the address is the key
    ]
    (_, a), (_, b), (_, c) = collector.collect(events, "d", NOW).records
    assert (a["campaign"]["source"], a["customer_key"]) == ("own", "own-key")
    assert (b["campaign"], b["customer_key"]) == (None, "from-url")
    assert c["customer_key"] == hash_email("ann@example.com")
    assert "Ann@Example.com" not in json.dumps([a, b, c])


@pytest.mark.parametrize(
    "url",
    ["https://shop.example/", "no url at all", "http://[::1/?utm_source=x", "https://shop.example/?ps_ck="],
)
def test_a_url_that_carries_nothing_gives_nothing(url):
    assert landing(url, "ps_ck") == (None, None)


def test_each_bad_event_is_rejected_with_its_index_and_reason_the_rest_go(collector):
    events = [
        {"type": "page_view"},
        {"type": "jump"},
        {"device_id": "d"},
        {"type": "add_to_cart"},
        "not an object",
        {"type": "page_view", "device_id": "undefined"},
        {"type": "page_view", "price": "12"},
        {"type": "page_view", "ts": "2999-01-01T00:00:00Z"},
    ]
    out = collector.collect(events, "d", NOW)
    assert len(out.records) == 1
    reasons = {r["index"]: r["error"] for r in out.rejected}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7]
    assert "'type'" in reasons[1] and "'type'" in reasons[2]
    assert "product_id" in reasons[3]
    assert "object" in reasons[4]
    assert "blocked" in reasons[5]
    assert "'price'" in reasons[6]
    assert "'ts'" in reasons[7]
    assert out.labels == [
        "invalid_type",
        "invalid_type",
        "invalid_product_id",
        "invalid_event",
        "invalid_device_id",
        "invalid_price",
        "invalid_ts",
    ]


@pytest.mark.parametrize(
    ("body", "label", "words"),
    [
        (b"{not json", "not_json", "not valid JSON"),
        (b"\xff\xfe{}", "not_utf8", "UTF-8"),
        (b"[1, 2]", "not_object", "an array"),
        (b'{"events": {}}', "not_object", "expected an array"),
        (b'{"events": []}', "empty_batch", "empty"),
        (b'{"events": [], "type": "page_view"}', "not_object", "unexpected: type"),
        (json.dumps({"events": [{"type": "page_view"}] * (MAX_EVENTS + 100)}).encode(), "too_many", "600 events"),
        (b"[" * 100_000, "not_json", "JSON"),
    ],
)
def test_a_body_that_is_not_an_event_or_a_batch(collector, body, label, words):
    with pytest.raises(BadRequest) as caught:
        collector.parse_body(body)
    assert caught.value.label == label
    assert words in str(caught.value)


def test_a_batch_of_exactly_the_limit_is_taken(collector):
    assert len(collector.parse_body(json.dumps({"events": [{}] * MAX_EVENTS}).encode())) == MAX_EVENTS


def test_a_pixel_query_is_an_event_with_type_campaign_and_key():
    collector = Collector(Config().rules(), "nlkey")
    event = collector.pixel_event(
        {"utm_source": "crm", "utm_campaign": "winter", "nlkey": "hashed", "cb": "123", "price": "9.5"}
    )
    assert event == {
        "type": "page_view",
        "campaign": {"source": "crm", "name": "winter"},
        "customer_key": "hashed",
        "price": 9.5,
    }


def test_a_pixel_number_that_is_not_one_is_rejected_naming_it(collector):
    with pytest.raises(avro.Rejected, match="quantity"):
        collector.pixel_event({"quantity": "two"})


def test_made_event_ids_are_version_4_uuids_as_uuid_writes_them():
    for bits in [0, (1 << 128) - 1, *(random.getrandbits(128) for _ in range(200))]:
        made = uuid.UUID(event_id(bits))
        assert (made.version, made.variant) == (4, uuid.RFC_4122)
        assert event_id(bits) == str(made)
        assert made.int & ~(0xF000 << 64) & ~(0xC000 << 48) == bits & ~(0xF000 << 64) & ~(0xC000 << 48)
    assert len({event_id() for _ in range(10_000)}) == 10_000


def test_a_new_device_id_is_a_uuid4():
    made = Collector(Config().rules(), "ps_ck").collect([{"type": "page_view"}], None, NOW)
    assert uuid.UUID(made.new_device).version == 4
