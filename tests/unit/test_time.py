"""docs/semantics.md "Time": event-time order over both inputs, the watermark, lateness and idleness."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profilestream.domain.engine import Engine
from profilestream.domain.events import Click, CrmChange, order_key
from profilestream.domain.rules import Rules
from profilestream.domain.timeline import Timeline
from support.scenario import (
    DAY,
    MINUTE,
    T0,
    Campaign,
    Result,
    click,
    crm,
    erase,
    run,
    snapshot,
)

RULES = Rules()
LATE = RULES.allowed_lateness
ABANDON = RULES.cart_abandon_after


def drive(batches, rules: Rules = RULES, sources=("p0",)) -> Result:
    """Feed `[(source, event), ...]` batches one by one (wall clock = 0), then finish."""
    engine = Engine(rules)
    engine.expect(sources, 0)
    out = []
    for batch in batches:
        out += engine.feed(batch, now=0)
    out += engine.finish(now=0)
    return Result(out, engine)


def jitter(events, bound: int, rng: random.Random):
    """Reorder events so that none arrives after one more than `bound` later than itself: the
    out-of-order input that `allowed_lateness` promises to absorb."""
    keyed = [(e.ts + rng.randint(0, bound), rng.random(), i) for i, e in enumerate(events)]
    return [events[i] for _, _, i in sorted(keyed)]


def shop(seed: int = 7, n: int = 160) -> list:
    """A busy little shop over a few days: every click type, CRM upserts, an erase, order
    matches both ways, shared devices, consent changes, returning visitors and equal timestamps."""
    rng = random.Random(seed)
    devices = [f"D{i}" for i in range(6)]
    keys = ["K1", "K2", "K3", "K4"]
    events: list = [
        crm(-600, "C1", customer_key="K1", marketing_consent=True),
        crm(-600, "C2", customer_key="K2", attributes={"tier": "gold"}),
        crm(-500, "C3", order_id="O5", lead_status="lead"),
    ]
    t = 0.0
    for _i in range(n):
        t += rng.choice([0, 0, 0.1, 1, 5, 20, 31, 70, 600, 3 * 24 * 60])
        d = rng.choice(devices)
        kind = rng.choice(
            [
                "page_view",
                "page_view",
                "product_view",
                "add_to_cart",
                "add_to_cart",
                "remove_from_cart",
                "checkout",
                "purchase",
                "login",
                "logout",
            ]
        )
        fields = {}
        if kind in ("product_view", "add_to_cart", "remove_from_cart"):
            fields["product_id"] = rng.choice(["P1", "P2", "P3"])
        if kind == "purchase":
            fields["order_id"] = f"O{rng.randint(1, 8)}"
            if rng.random() < 0.7:
                fields["revenue"] = float(rng.randint(1, 99))
        if kind == "login" or rng.random() < 0.05:
            fields["customer_key"] = rng.choice(keys)
        if rng.random() < 0.1:
            fields["campaign"] = Campaign("nl", "email", rng.choice(["a", "b"]))
        events.append(click(t, d, kind, **fields))
        r = rng.random()
        if r < 0.05:
            events.append(crm(t, rng.choice(["C1", "C2", "C3", "C4"]), marketing_consent=rng.random() < 0.5))
        elif r < 0.08:
            events.append(
                crm(
                    t + rng.choice([0, 1, 100]),
                    rng.choice(["C3", "C4"]),
                    order_id=f"O{rng.randint(1, 8)}",
                    customer_key=rng.choice([*keys, None]),
                )
            )
        elif r < 0.085:
            events.append(erase(t, rng.choice(["C2", "C4"])))
    return sorted(events, key=order_key)


# --- order: by ts, CRM before clicks, then by id ------------------------------------------------


def test_results_follow_ts_not_arrival_order_within_lateness():
    events = [
        click(0, "D1", "add_to_cart", product_id="P1"),
        click(0.1, "D1", "add_to_cart", product_id="P2"),
        click(0.2, "D1", "purchase", order_id="O1"),
    ]
    assert snapshot(run(events[::-1])) == snapshot(run(events))
    assert run(events[::-1]).triggers == []


def test_at_equal_ts_crm_changes_come_before_clicks():
    ts = T0 + 5 * MINUTE
    events = [
        click(0, "D1", "page_view"),
        click(0, "D1", "login", customer_key="K1", ts=ts, event_id="A"),
        crm(0, "C1", customer_key="K1", ts=ts, change_id="Z"),
    ]
    res = run(events)  # the click arrives first
    assert [m["reason"] for m in res.merges] == ["login"]  # not crm_link: the CRM went first
    assert res.of("D1")["customer_id"] == "C1"


@pytest.mark.parametrize("remove_id, add_id, in_cart", [("a", "b", True), ("b", "a", False)])
def test_at_equal_ts_clicks_are_ordered_by_event_id(remove_id, add_id, in_cart):
    ts = T0 + MINUTE
    events = [
        click(0, "D1", "add_to_cart", product_id="P1", ts=ts, event_id=add_id),
        click(0, "D1", "remove_from_cart", product_id="P1", ts=ts, event_id=remove_id),
    ]
    for order in (events, events[::-1]):
        res = run(order)
        assert (res.of("D1")["cart"] != []) is in_cart
        assert (len(res.triggers) == 1) is in_cart


@pytest.mark.parametrize("first, second, value", [("a", "b", "2"), ("b", "a", "1")])
def test_at_equal_ts_crm_changes_are_ordered_by_change_id(first, second, value):
    ts = T0
    events = [
        crm(0, "C1", ts=ts, change_id=first, lead_status="1"),
        crm(0, "C1", ts=ts, change_id=second, lead_status="2"),
    ]
    for order in (events, events[::-1]):
        assert run(order).of("C1")["lead_status"] == value


# --- deadlines ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, offset, fires",
    [
        ("purchase", 0, False),
        ("purchase", 1, True),
        ("remove_from_cart", 0, False),
        ("remove_from_cart", 1, True),
    ],
)
def test_event_at_exactly_the_deadline_still_comes_before_it(kind, offset, fires):
    deadline = T0 + ABANDON
    events = [
        click(0, "D1", "add_to_cart", product_id="P1"),
        click(0, "D1", kind, product_id="P1", order_id="O1", ts=deadline + offset),
    ]
    for sources, batch in ((1, 0), (2, 1)):
        assert (len(run(events, sources=sources, batch=batch).triggers) == 1) is fires


def test_event_at_the_watermark_waits_for_it_to_pass():
    rules = Rules(allowed_lateness=0)
    ts = T0 + 5 * MINUTE
    res = drive(
        [
            [("p0", click(0, "D1"))],
            [("p0", click(0, "D1", "login", customer_key="K1", ts=ts))],  # the watermark is now at ts
            [("p0", crm(0, "C1", customer_key="K1", ts=ts))],  # not late, and still applied first
        ],
        rules=rules,
    )
    assert res.engine.stats["late"] == 0
    assert [m["reason"] for m in res.merges] == ["login"]


def test_add_at_exactly_the_deadline_moves_it():
    deadline = T0 + ABANDON
    res = run(
        [click(0, "D1", "add_to_cart", product_id="P1"), click(0, "D1", "add_to_cart", product_id="P2", ts=deadline)],
        batch=1,
    )
    assert [t["ts"] for t in res.triggers] == [deadline + ABANDON]


def test_deadline_passes_once_a_later_event_is_applied():
    rules = Rules(allowed_lateness=0)
    engine = Engine(rules)
    engine.expect(["p0"], 0)
    engine.feed([("p0", click(0, "D1", "add_to_cart", product_id="P1"))], now=0)
    out = engine.feed([("p0", click(0, "D2", ts=T0 + ABANDON))], now=0)
    assert not [o for o in out if o.topic == "triggers"]  # the event at T is not yet applied
    out = engine.feed([("p0", click(0, "D2", ts=T0 + ABANDON + 1))], now=0)
    [t] = [o.value for o in out if o.topic == "triggers"]
    assert t["ts"] == T0 + ABANDON


def test_deadline_passes_when_the_watermark_is_beyond_it():
    engine = Engine(RULES)
    engine.expect(["p0"], 0)
    engine.feed([("p0", click(0, "D1", "add_to_cart", product_id="P1"))], now=0)
    out = engine.feed([("p0", click(0, "D2", ts=T0 + ABANDON + LATE))], now=0)
    assert engine.watermark == T0 + ABANDON
    assert not [o for o in out if o.topic == "triggers"]
    out = engine.feed([("p0", click(0, "D2", ts=T0 + ABANDON + LATE + 1))], now=0)
    assert engine.watermark == T0 + ABANDON + 1
    assert len([o for o in out if o.topic == "triggers"]) == 1


def test_end_of_input_is_the_end_of_time():
    engine = Engine(RULES)
    engine.expect(["p0"], 0)
    out = engine.feed([("p0", click(0, "D1", "add_to_cart", product_id="P1"))], now=0)
    assert not [o for o in out if o.topic == "triggers"]
    out = engine.finish(now=0)
    assert len([o for o in out if o.topic == "triggers"]) == 1
    assert engine.timeline.pending == 0


# --- lateness -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_out_of_order_within_allowed_lateness_gives_identical_results(seed):
    events = shop(seed)
    expected = snapshot(run(events))
    assert expected["triggers"] and expected["merges"]
    rng = random.Random(seed)
    for sources, batch in ((1, 1), (3, 2), (2, 7), (5, 3)):
        res = run(jitter(events, LATE, rng), sources=sources, batch=batch)
        assert res.engine.stats["late"] == 0
        assert snapshot(res) == expected


def test_one_more_ms_out_of_order_is_late():
    res = drive([[("p0", click(0, "D1", ts=T0 + LATE + 1))], [("p0", click(0, "D1", ts=T0))]])
    assert res.engine.stats["late"] == 1
    res = drive([[("p0", click(0, "D1", ts=T0 + LATE))], [("p0", click(0, "D1", ts=T0))]])
    assert res.engine.stats["late"] == 0


def _late(events_in_time, late_event):
    """Feed the in-time events (the watermark passes them), then the late one, then finish."""
    batches = [[("p0", e)] for e in events_in_time] + [[("p0", late_event)]]
    return drive(batches)


def test_late_event_counts_in_profile_and_is_counted():
    nl = Campaign("nl", "email", "x")
    res = _late(
        [click(0, "D1"), click(100, "D1", campaign=nl), click(200, "D2")],
        click(50, "D1", "product_view", product_id="P7", campaign=nl),
    )
    p = res.of("D1")
    assert res.engine.stats["late"] == 1
    assert p["page_views"] == 2 and p["product_views"] == 1 and p["viewed_products"] == ["P7"]
    assert p["campaigns"][0]["first_ts"] == T0 + 50 * MINUTE and p["campaigns"][0]["last_ts"] == T0 + 100 * MINUTE
    # a late click never rewrites the device's visits: 50 min joins the visit of 100 min
    assert p["visits"] == 2 and p["first_seen"] == T0 and p["last_seen"] == T0 + 100 * MINUTE


def test_late_add_does_not_re_fire_a_fired_cart_trigger():
    res = _late(
        [click(0, "D1", "add_to_cart", product_id="P1"), click(200, "D2")],
        click(30, "D1", "add_to_cart", product_id="P2"),
    )
    assert res.engine.stats["late"] == 1
    assert [t["ts"] for t in res.triggers] == [T0 + ABANDON]  # in time order it would be at 90 min
    assert len(res.of("D1")["cart"]) == 2  # but the cart counts it


def test_late_add_opens_no_episode():
    res = _late([click(0, "D1"), click(200, "D2")], click(30, "D1", "add_to_cart", product_id="P2"))
    assert res.engine.stats["late"] == 1
    assert res.triggers == []
    assert res.of("D1")["cart"] == [{"product_id": "P2", "quantity": 1, "price": None}]


def test_late_purchase_does_not_unfire_a_fired_cart_trigger():
    res = _late(
        [click(0, "D1", "add_to_cart", product_id="P1"), click(200, "D2")],
        click(30, "D1", "purchase", order_id="O1", revenue=3.0),
    )
    assert res.engine.stats["late"] == 1
    assert len(res.triggers) == 1
    assert res.of("D1")["orders"] == 1


def test_late_click_does_not_fire_a_return_visit():
    # in time order the visit at day 8 would return after 8 days; the click at day 0 comes late
    res = _late([click(0, "D1", ts=T0 + 8 * DAY), click(0, "D2", ts=T0 + 8 * DAY + MINUTE)], click(0, "D1", ts=T0))
    assert res.engine.stats["late"] == 1
    res2 = drive(
        [[("p0", e)] for e in [click(0, "D1", ts=T0 + 8 * DAY), click(0, "D2", ts=T0 + 8 * DAY + MINUTE)]]
        + [[("p0", click(0, "D1", ts=T0))], [("p0", click(0, "D1", ts=T0 + 8 * DAY + 2 * MINUTE))]]
    )
    assert res2.engine.stats["late"] == 1
    assert res.triggers == [] and res2.triggers == []  # not even at the visit's next in-time click
    assert res2.of("D1")["first_seen"] == T0


def test_late_crm_link_links_but_fires_no_return_visit():
    # C1 was active at day 0; the visit of K9's device starts at day 10. In time order the CRM
    # would link K9 to C1 before the visit (no trigger: the visit's first click would fire one).
    # Arriving late, the link is made but may not fire a return visit for a past moment.
    res = _late(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D0", "login", customer_key="K1"),
            click(0, "D1", "login", customer_key="K9", ts=T0 + 10 * DAY),
            click(0, "D2", ts=T0 + 10 * DAY + 5 * MINUTE),
        ],
        crm(0, "C1", customer_key="K9", ts=T0 + 10 * DAY - 60 * MINUTE),
    )
    assert res.engine.stats["late"] == 1
    assert res.of("D1")["customer_id"] == "C1"
    assert [m["reason"] for m in res.merges] == ["crm_link"]  # K9's profile into C1's
    assert res.triggers == []


def test_late_login_still_links():
    res = _late(
        [crm(-10, "C1", customer_key="K1"), click(0, "D1"), click(100, "D2")],
        click(1, "D1", "login", customer_key="K1"),
    )
    assert res.of("D1")["customer_id"] == "C1"
    assert [m["reason"] for m in res.merges] == ["login"]


def test_late_duplicate_counts_once():
    e = click(0, "D1", event_id="E1")
    res = _late([e, click(100, "D2")], e)
    assert res.engine.stats["late"] == 1 and res.engine.stats["duplicates"] == 1
    assert res.of("D1")["page_views"] == 1


def test_profiles_are_emitted_at_most_every_emit_every_of_the_callers_clock():
    engine = Engine(Rules(allowed_lateness=0), emit_every=1000)
    engine.expect(["p0"], 0)

    def kinds(out):
        return [(o.topic, o.value is None) for o in out]

    assert kinds(engine.feed([("p0", click(0, "D1"))], now=0)) == []  # not yet applied (watermark)
    first = engine.feed([("p0", click(1, "D1"))], now=10)  # the first emission is at once
    assert kinds(first) == [("profiles", False)]
    assert engine.feed([("p0", click(2, "D1"))], now=500) == []  # within 1 s: held back
    assert engine.feed([("p0", click(3, "D2"))], now=900) == []
    later = engine.feed([("p0", click(4, "D2"))], now=1010)  # D1's two clicks and D2's first: one record each
    assert sorted(o.value["page_views"] for o in later) == [1, 3]
    # merges and tombstones do not wait; each profile has its own clock: C1's, never emitted, goes at once
    merged = engine.feed(
        [
            ("p0", crm(5, "C1", customer_key="K")),
            ("p0", click(6, "D2", "login", customer_key="K")),
            ("p0", click(7, "D2")),
        ],
        now=1100,
    )
    assert sorted(kinds(merged)) == [("crm_feed", False), ("merges", False), ("profiles", False), ("profiles", True)]
    assert engine.feed([("p0", click(8, "D1"))], now=1400) == []  # D2's click at 7: C1 emitted at 1100, held
    held = engine.tick(1500, emit_all=True)  # a stopping run emits what is held
    assert kinds(held) == [("profiles", False), ("crm_feed", False)]
    assert held[0].value["page_views"] == 3 and held[0].value["customer_id"] == "C1"
    assert engine.tick(1600, emit_all=True) == []
    last = engine.finish(1700)  # the end of input emits everything: D1's click at 8
    assert [(o.key, o.value["page_views"]) for o in last] == [(first[0].key, 4)]


# --- sources, partitions, replay --------------------------------------------------------------------


def _split(events):
    crm_ = [e for e in events if isinstance(e, CrmChange)]
    clicks = [e for e in events if isinstance(e, Click)]
    return crm_, clicks


def _one_topic_then_the_other(first, second, names, batch: int = 5, finish_only: bool = False) -> Result:
    engine = Engine(RULES)
    engine.expect(names, 0)
    out = []
    for name, events in zip(names, (first, second), strict=False):
        for i in range(0, len(events), batch):
            out += engine.feed([(name, e) for e in events[i : i + batch]], now=0)
        if not finish_only or name == names[0]:
            engine.end_source(name)
            out += engine.tick(now=0)
    out += engine.finish(now=0)
    return Result(out, engine)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("finish_only", [False, True])
def test_whole_crm_stream_first_then_clickstream_equals_time_order(seed, finish_only):
    events = shop(seed)
    expected = snapshot(run(events))
    crm_, clicks = _split(events)
    res = _one_topic_then_the_other(crm_, clicks, ["crm-changes/0", "clickstream/0"], finish_only=finish_only)
    assert res.engine.stats["late"] == 0
    assert snapshot(res) == expected
    res = _one_topic_then_the_other(clicks, crm_, ["clickstream/0", "crm-changes/0"], finish_only=finish_only)
    assert res.engine.stats["late"] == 0
    assert snapshot(res) == expected


def test_number_of_sources_and_batches_does_not_matter():
    events = shop(11)
    expected = snapshot(run(events))
    for sources, batch in ((2, 1), (3, 0), (7, 4)):
        assert snapshot(run(events, sources=sources, batch=batch)) == expected


def test_replay_gives_same_output():
    events = shop(3)
    a, b = run(events), run(events)
    assert snapshot(a) == snapshot(b)
    assert [t["trigger_id"] for t in a.triggers] == [t["trigger_id"] for t in b.triggers]


def test_duplicate_delivery_from_two_partitions_counts_once():
    events = shop(5)
    expected = snapshot(run(events))
    res = run([e for e in events for _ in (0, 1)], sources=2)
    assert snapshot(res) == expected
    assert res.engine.stats["duplicates"] == len(events)


# --- always-on, idleness ----------------------------------------------------------------------------


def test_always_on_idle_source_lets_watermark_follow_clock_and_deadline_fires():
    rules = Rules()
    engine = Engine(rules, always_on=True)
    start = T0  # wall clock in step with event time
    engine.expect(["p0"], start)
    out = engine.feed([("p0", click(0, "D1", "add_to_cart", product_id="P1", ts=start))], now=start)
    assert engine.watermark == start - LATE
    assert engine.tick(now=start + rules.idle_after - 1) == [] and engine.watermark == start - LATE
    engine.tick(now=start + rules.idle_after)
    assert engine.watermark == start + rules.idle_after - LATE
    deadline = start + ABANDON
    out = engine.tick(now=deadline + LATE)
    assert not [o for o in out if o.topic == "triggers"]  # watermark at T, not beyond
    out = engine.tick(now=deadline + LATE + 1)
    [t] = [o.value for o in out if o.topic == "triggers"]
    assert t["ts"] == deadline and t["device_id"] == "D1"
    assert engine.timeline.pending == 0


def test_always_on_idle_partition_stops_holding_the_watermark_back():
    rules = Rules()
    engine = Engine(rules, always_on=True)
    engine.expect(["busy", "quiet"], T0)
    engine.feed([("busy", click(0, "D1", "add_to_cart", product_id="P1", ts=T0))], now=T0)
    assert engine.watermark < T0 - LATE or engine.watermark == T0 - LATE
    now = T0 + rules.idle_after  # the quiet partition has said nothing since the start
    out = engine.feed([("busy", click(0, "D2", ts=T0 + ABANDON + LATE + 1))], now=now)
    assert engine.watermark == T0 + ABANDON + 1
    assert len([o for o in out if o.topic == "triggers"]) == 1


def test_bounded_run_silent_partition_holds_the_watermark():
    engine = Engine(RULES)  # not always-on: idleness does not count
    engine.expect(["busy", "quiet"], 0)
    out = engine.feed(
        [("busy", click(0, "D1", "add_to_cart", product_id="P1")), ("busy", click(0, "D2", ts=T0 + 10 * DAY))],
        now=10**12,
    )
    assert out == [] and engine.timeline.pending == 2
    engine.end_source("quiet")
    out = engine.tick(now=10**12)
    assert len([o for o in out if o.topic == "triggers"]) == 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50), st.booleans()), max_size=60),
    st.lists(st.integers(0, 59), max_size=8),
)
def test_timeline_gives_every_buffered_event_in_the_contract_order(arrivals, cuts):
    """Whatever the partitions and the arrival order within them, the events that were buffered
    come out of `due` in `order_key` order, each batch below the watermark of its moment."""
    timeline = Timeline(lateness=10, idle_after=10_000)
    timeline.expect([f"p{i}" for i in range(4)], 0)
    buffered, out = [], []
    for i, (source, ts, is_crm) in enumerate(arrivals):
        event = (
            CrmChange(f"c{i:03d}", T0 + ts, "C", "upsert") if is_crm else Click(f"e{i:03d}", T0 + ts, "D", "page_view")
        )
        if not timeline.arrive(f"p{source}", event, 0):
            buffered.append(event)
        if i in cuts:
            watermark = timeline.advance(0)
            batch = list(timeline.due())
            assert all(e.ts < watermark for e in batch) and batch == sorted(batch, key=order_key)
            out += batch
    timeline.end()
    out += list(timeline.due())
    assert out == sorted(buffered, key=order_key) and timeline.pending == 0
