"""Identity, profiles and triggers end to end: JSON lines -> `produce` -> the embedded broker ->
`run --until-idle` -> output topics -> `consume` / `profile get`. A representative set of the
scenarios the domain and dataflow tests cover in full."""

from __future__ import annotations

import hashlib
import json

import pytest

from profilestream import cli
from support.e2e import holding, latest, produce, raw_bytes, records, run, tombstones

pytestmark = pytest.mark.broker


def ts(minute: float, day: int = 20) -> str:
    total = int(minute * 60_000)
    h, rem = divmod(total, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"2026-11-{day:02d}T{h:02d}:{m:02d}:{s:02d}.{ms:03d}Z"


def click(n: int, minute: float, device: str, type: str = "page_view", day: int = 20, **fields) -> dict:
    return {"event_id": f"e{n}", "ts": ts(minute, day), "device_id": device, "type": type, **fields}


def change(n: int, minute: float, customer: str, day: int = 20, **fields) -> dict:
    return {"change_id": f"c{n}", "ts": ts(minute, day), "customer_id": customer, "op": "upsert", **fields}


def test_newsletter_login_and_crm_link_build_one_profile(config, config_path, tmp_path):
    produce(
        config_path,
        "clickstream",
        [
            click(
                1,
                0,
                "phone",
                "page_view",
                customer_key="k1",
                campaign={"source": "newsletter", "medium": "email", "name": "nov"},
            ),
            click(2, 5, "laptop", "product_view", product_id="sku1"),
            click(3, 6, "laptop", "login", customer_key="k1"),
        ],
        tmp_path,
    )
    produce(
        config_path,
        "crm-changes",
        [change(1, 10, "C1", customer_key="k1", lead_status="lead", attributes={"segment": "gold", "age": 41})],
        tmp_path,
    )
    run(config_path)
    profiles = latest(config, "profiles")
    person = holding(profiles, "C1")
    assert sorted(person["device_ids"]) == ["laptop", "phone"]
    assert person["customer_key"] == "k1" and person["lead_status"] == "lead"
    assert person["attributes"] == {"segment": "gold", "age": 41.0}
    assert person["product_views"] == 1 and person["viewed_products"] == ["sku1"]
    assert person["campaigns"][0]["name"] == "nov"
    assert len(profiles) == 1
    reasons = sorted(m["reason"] for m in records(config, "merges"))
    assert reasons == ["crm_link", "login"]
    assert len(tombstones(config, "profiles")) == 2  # both merged-away profiles
    feed = latest(config, "crm_feed")
    assert feed["C1"]["visits"] == person["visits"] and feed["C1"]["customer_key"] == "k1"


@pytest.mark.parametrize("crm_first", [True, False])
def test_order_match_links_in_either_arrival_order(config, config_path, tmp_path, crm_first):
    minute = 0 if crm_first else 30
    produce(
        config_path,
        "clickstream",
        [
            click(1, 10, "d1", "add_to_cart", product_id="sku1"),
            click(2, 12, "d1", "purchase", order_id="O-1", revenue=19.5),
        ],
        tmp_path,
    )
    produce(config_path, "crm-changes", [change(1, minute, "C7", order_id="O-1")], tmp_path)
    run(config_path)
    person = holding(latest(config, "profiles"), "d1")
    assert person["customer_id"] == "C7" and person["orders"] == 1 and person["revenue"] == 19.5
    assert [m["reason"] for m in records(config, "merges")] == ["order_match"]  # anonymous d1 merged
    assert records(config, "triggers") == []  # the purchase closed the cart


def test_shared_device_never_merges_two_customers(config, config_path, tmp_path):
    produce(
        config_path,
        "crm-changes",
        [change(1, 0, "A", customer_key="ka"), change(2, 0, "B", customer_key="kb")],
        tmp_path,
    )
    produce(
        config_path,
        "clickstream",
        [
            click(1, 1, "tablet", "login", customer_key="ka"),
            click(2, 2, "tablet", "page_view"),
            click(3, 3, "tablet", "login", customer_key="kb"),
            click(4, 4, "tablet", "page_view"),
        ],
        tmp_path,
    )
    run(config_path)
    profiles = latest(config, "profiles")
    a, b = holding(profiles, "A"), holding(profiles, "B")
    assert a["profile_id"] != b["profile_id"]
    assert "tablet" in b["device_ids"] and "tablet" not in a["device_ids"]
    assert a["page_views"] == 1 and b["page_views"] == 1


def test_erase_leaves_a_tombstone_and_no_links(config, config_path, tmp_path):
    produce(
        config_path,
        "crm-changes",
        [
            change(1, 0, "C1", customer_key="k1"),
            {"change_id": "c2", "ts": ts(30), "customer_id": "C1", "op": "erase"},
        ],
        tmp_path,
    )
    produce(
        config_path,
        "clickstream",
        [
            click(1, 1, "d1", "login", customer_key="k1"),
            click(2, 2, "d1", "add_to_cart", product_id="sku1"),
            click(3, 31, "d1", "page_view"),
        ],
        tmp_path,
    )
    run(config_path)
    profiles = latest(config, "profiles")
    assert all(p["customer_id"] is None and p["customer_key"] is None for p in profiles.values())
    fresh = holding(profiles, "d1")  # a new anonymous profile for the device's later events
    assert fresh["page_views"] == 1
    assert records(config, "triggers") == []  # the erased customer's cart deadline is gone
    assert "C1" in tombstones(config, "crm_feed")
    assert cli.main(["profile", "get", "--config", str(config_path), "C1"]) == 1


def test_duplicates_and_blocked_values(config, config_path, tmp_path, capsys):
    first = click(1, 0, "d1", "page_view", customer_key="undefined")
    produce(
        config_path,
        "clickstream",
        [
            first,
            dict(first),
            click(2, 1, "d2", "page_view", customer_key=" NULL "),
        ],
        tmp_path,
    )
    run(config_path)
    profiles = latest(config, "profiles")
    assert holding(profiles, "d1")["page_views"] == 1  # the repeated event_id counted once
    assert holding(profiles, "d1")["profile_id"] != holding(profiles, "d2")["profile_id"]
    assert all(p["customer_key"] is None for p in profiles.values())
    # A blocked device id is refused at `produce` (the dataflow dead-letters it if it gets in).
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(click(3, 2, "d3")) + "\n" + json.dumps(click(4, 2, "Unknown")) + "\n")
    capsys.readouterr()
    assert cli.main(["produce", "--config", str(config_path), "--topic", "clickstream", str(bad)]) == 1
    assert "line 2:" in capsys.readouterr().err


def test_clear_email_is_hashed_and_never_reaches_an_output(config, config_path, tmp_path, capsys):
    address = "Jane.Doe@Example.com"
    key = hashlib.sha256(address.strip().lower().encode()).hexdigest()
    produce(config_path, "clickstream", [click(1, 0, "d1", "login", email=address)], tmp_path)
    produce(config_path, "crm-changes", [change(1, 1, "C1", email=f"  {address.upper()} ")], tmp_path)
    run(config_path)
    person = holding(latest(config, "profiles"), "C1")
    assert person["customer_key"] == key and "d1" in person["device_ids"]
    raw = raw_bytes(config)
    assert address.lower().encode() not in raw.lower() and b"@" not in raw
    capsys.readouterr()
    assert cli.main(["profile", "get", "--config", str(config_path), "d1"]) == 0
    shown = capsys.readouterr().out
    assert json.loads(shown)["customer_id"] == "C1" and "@" not in shown


def test_cart_abandoned_and_cross_device_purchase(config, config_path, tmp_path):
    produce(config_path, "crm-changes", [change(1, 0, "C1", customer_key="k1", marketing_consent=True)], tmp_path)
    produce(
        config_path,
        "clickstream",
        [
            # abandoned: added on the phone, nothing more
            click(1, 1, "phone", "login", customer_key="k1"),
            click(2, 2, "phone", "add_to_cart", product_id="sku1", price=9.99),
            # next day: added on the phone, bought on the laptop of the same customer within the hour
            click(3, 0, "phone", "add_to_cart", day=21, product_id="sku2"),
            click(4, 20, "laptop", "login", day=21, customer_key="k1"),
            click(5, 30, "laptop", "purchase", day=21, order_id="O-9", revenue=5.0),
        ],
        tmp_path,
    )
    run(config_path)
    [trigger] = records(config, "triggers")
    assert trigger["type"] == "cart_abandoned" and trigger["customer_id"] == "C1"
    assert trigger["ts"] == ts(62) and trigger["device_id"] == "phone"
    assert [line["product_id"] for line in trigger["cart"]] == ["sku1"]


def test_return_visit_fires_once_with_days_away(config, config_path, tmp_path):
    produce(
        config_path,
        "clickstream",
        [
            click(1, 0, "d1", "page_view", day=1),
            click(2, 0, "d1", "page_view", day=9),
            click(3, 1, "d1", "page_view", day=9),
        ],
        tmp_path,
    )
    run(config_path)
    [trigger] = records(config, "triggers")
    assert trigger["type"] == "return_visit" and trigger["days_away"] == 8.0
    assert trigger["ts"] == ts(0, day=9)


def test_a_click_ahead_of_the_clock_is_sent_by_produce_and_dead_lettered_by_run(config, config_path, tmp_path):
    """`time.max_future` is the run's guard, applied when the dataflow reads a record: `produce`
    sends the line (it is valid Avro), `run` dead-letters it naming `ts`, and the watermark never
    sees it (the click after it in the same partition is on time, not late)."""
    produce(
        config_path,
        "clickstream",
        [
            click(1, 0, "d-ahead"),
            {"event_id": "e-2099", "ts": "2099-06-01T00:00:00.000Z", "device_id": "d-ahead", "type": "page_view"},
            click(3, 5, "d-ahead"),
        ],
        tmp_path,
    )
    run(config_path)
    [letter] = records(config, "dead_letters")
    assert letter["error"].startswith("field 'ts'") and "time.max_future" in letter["error"]
    [profile] = latest(config, "profiles").values()
    assert profile["page_views"] == 2 and profile["last_seen"] == ts(5)
