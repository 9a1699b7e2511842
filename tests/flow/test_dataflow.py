"""Dataflow scenarios: the whole profile flow on Bytewax's testing machinery (no broker)."""

from __future__ import annotations

import base64

from profilestream.codec import avro
from profilestream.kafka.source import Raw
from support.flowkit import run_flow
from support.scenario import MINUTE, click, crm, erase, run


def shop():
    """A small shop exercising links, merges, carts and both triggers."""
    return [
        crm(0, "C1", customer_key="k1", lead_status="lead", marketing_consent=True),
        click(1, "d1", "page_view"),
        click(2, "d1", "product_view", product_id="p1", price=5.0),
        click(3, "d1", "add_to_cart", product_id="p1", price=5.0),
        click(4, "d1", "login", customer_key="k1"),
        click(5, "d2", "page_view", customer_key="k2"),
        click(6, "d2", "add_to_cart", product_id="p2"),
        click(7, "d2", "purchase", order_id="o-1", revenue=20.0),
        crm(30, "C2", order_id="o-1"),
        click(8 * 24 * 60, "d1", "page_view"),
        erase(9 * 24 * 60, "C2"),
        click(9 * 24 * 60 + 1, "d2", "page_view"),
    ]


def test_newsletter_click_links_device_through_the_dataflow():
    result = run_flow([click(0, "d1", "page_view", customer_key="k1"), crm(1, "C1", customer_key="k1")])
    profile = result.of("d1")
    assert profile["customer_id"] == "C1" and profile["customer_key"] == "k1"
    assert [m["reason"] for m in result.merges] == ["crm_link"]


def test_dataflow_gives_what_the_engine_gives():
    """The dataflow adds ordering across partitions and batches, never different results."""
    events = shop()
    direct = run(events)
    flowed = run_flow(events, batch=2)
    assert flowed.profiles == direct.profiles

    def strip(ts):
        return [{k: v for k, v in t.items() if k != "emitted_at"} for t in ts]

    assert strip(flowed.triggers) == strip(direct.triggers)
    assert flowed.merges == direct.merges
    assert flowed.tombstones == direct.tombstones


def test_coalesced_emission_ends_in_the_same_records_with_fewer_of_them():
    """`run.emit_interval`: profiles are emitted at most that often (here: once at the start,
    then at the end of input); merges, tombstones and triggers at once; the final state is the same."""
    events = shop()
    every = run_flow(events, batch=1)
    coalesced = run_flow(events, batch=1, emit_every=10**9)
    assert coalesced.profiles == every.profiles and coalesced.feed == every.feed
    assert coalesced.tombstones == every.tombstones and coalesced.merges == every.merges
    assert sorted(t["trigger_id"] for t in coalesced.triggers) == sorted(t["trigger_id"] for t in every.triggers)

    def count(res):
        return sum(1 for o in res.outputs if o.topic == "profiles" and o.value is not None)

    assert count(coalesced) < count(every)


def test_two_workers_give_the_same_profiles_as_one():
    events = shop()
    one = run_flow(events, workers=1)
    two = run_flow(events, workers=2, batch=1)
    assert two.profiles == one.profiles
    assert sorted(t["trigger_id"] for t in two.triggers) == sorted(t["trigger_id"] for t in one.triggers)


def test_crm_topic_read_long_before_the_clickstream_gives_the_same_profiles():
    events = shop()
    # One huge batch per partition: the CRM partitions are read to their end before any click.
    ahead = run_flow(events, batch=10_000)
    in_order = run_flow(events, batch=1)
    assert ahead.profiles == in_order.profiles


def test_bad_records_go_to_dead_letters_and_the_flow_goes_on():
    bad = [
        Raw("clickstream", "clickstream", 0, 100, b"k", b"\xff\x00garbage", 1),
        Raw("crm_changes", "crm-changes", 1, 7, None, None, 2),
        Raw(
            "clickstream",
            "clickstream",
            2,
            5,
            b"d",
            avro.encode("clickstream", {"event_id": "x", "ts": 0, "device_id": "d9", "type": "page_view"}),
            3,
        ),
    ]
    result = run_flow([click(0, "d1"), click(1, "d1")], extra=bad)
    letters = [o.value for o in result.outputs if o.topic == "dead_letters"]
    assert len(letters) == 3
    assert {(d["topic"], d["partition"], d["offset"]) for d in letters} == {
        ("clickstream", 0, 100),
        ("crm-changes", 1, 7),
        ("clickstream", 2, 5),
    }
    assert all(d["error"] for d in letters)
    garbage = next(d for d in letters if d["offset"] == 100)
    assert base64.b64decode(garbage["value"]) == b"\xff\x00garbage"
    assert result.of("d1")["page_views"] == 2


def test_end_of_input_fires_every_pending_deadline():
    result = run_flow([click(0, "d1", "add_to_cart", product_id="p1")])
    [trigger] = result.triggers
    assert trigger["type"] == "cart_abandoned"
    assert trigger["ts"] == click(0, "d1").ts + 60 * MINUTE


def test_engine_worker_names_one_worker_and_always_the_same():
    from profilestream.flows.placement import engine_worker

    assert engine_worker(1) == 0
    for count in (2, 3, 4):
        index = engine_worker(count)
        assert 0 <= index < count and engine_worker(count) == index


def test_a_process_that_may_not_read_lists_no_input_partition():
    from profilestream.kafka.source import InputSource

    topics = {"clickstream": ("clicks", 3), "crm_changes": ("crm", 2)}
    assert len(InputSource({}, topics, None).list_parts()) == 5
    assert InputSource({}, topics, None, local=False).list_parts() == []


def test_the_poison_pill_of_issue_11_is_dead_lettered_at_the_input():
    """Two valid-looking add_to_cart clicks of quantity 2**31 - 1 on one product once overflowed the
    cart's Avro int at the output and stopped the flow for everyone: now the input refuses them."""
    pill = {
        "ts": click(2, "d9").ts,
        "device_id": "d9",
        "type": "add_to_cart",
        "product_id": "p1",
        "quantity": 2**31 - 1,
    }
    bad = [
        Raw(
            "clickstream",
            "clickstream",
            0,
            50 + i,
            b"d9",
            avro.encode("clickstream", {**pill, "event_id": f"pill-{i}"}),
            pill["ts"],
        )
        for i in range(2)
    ]
    result = run_flow([click(0, "d1"), click(1, "d1", "add_to_cart", product_id="p1", quantity=100_000)], extra=bad)
    letters = result.dead_letters
    assert len(letters) == 2 and all(d["error"].startswith("field 'quantity': 2147483647 is outside") for d in letters)
    assert result.of("d1")["cart"] == [{"product_id": "p1", "quantity": 100_000, "price": None}]
    assert not result.has("d9")


def test_dead_letters_of_the_dataflow_carry_no_clear_address():
    address = "Jane.Doe@Example.org"
    good = avro.encode(
        "clickstream",
        {"event_id": "x", "ts": click(0, "d9").ts, "device_id": "d9", "type": "login", "customer_key": "k"},
    )
    with_address = good[:-1] + b"\x02" + bytes([2 * len(address)]) + address.encode()  # cut after the address
    bad = [
        Raw("clickstream", "clickstream", 0, 100, address.encode(), with_address, 1),
        Raw("clickstream", "clickstream", 1, 101, None, b'{"email": "%s", "type": "login"}' % address.encode(), 2),
        Raw(
            "crm_changes",
            "crm-changes",
            2,
            102,
            b"\xff" + address.encode() + b"\xfe",
            b"\x00\xc3" + address.encode(),
            3,
        ),
    ]
    result = run_flow([click(0, "d1")], extra=bad)
    letters = result.dead_letters
    assert len(letters) == 3
    for letter in letters:
        for text in (base64.b64decode(letter["value"]), (letter["key"] or "").encode(), letter["error"].encode()):
            assert b"example.org" not in text.lower() and b"jane.doe" not in text.lower()
    assert result.of("d1")["page_views"] == 1
