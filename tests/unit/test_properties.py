"""Properties of the domain core over random small shops (hypothesis).

A shop is a few devices, customer keys, CRM customers, orders and products; its events are every
click type and CRM upserts and erases, at times drawn from steps that hit the rules' edges (0,
1 ms, the lateness, the session gap, the cart deadline, the return-visit time, ...).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profilestream.domain.engine import Engine
from profilestream.domain.events import (
    CLICK_TYPES,
    Campaign,
    Click,
    CrmChange,
    order_key,
)
from profilestream.domain.rules import DAY, HOUR, MINUTE, Rules
from support.scenario import T0, Result, run, snapshot

RULES = Rules()
LATE = RULES.allowed_lateness

DEVICES = ["D0", "D1", "D2", "D3"]
KEYS = [hashlib.sha256(f"person{i}@example.com".encode()).hexdigest() for i in range(3)]
CUSTOMERS = ["C0", "C1", "C2"]
ORDERS = ["O0", "O1", "O2", "O3"]
PRODUCTS = ["P0", "P1", "P2"]
STEPS = [
    0,
    0,
    1,
    1000,
    LATE,
    LATE + 1,
    5 * MINUTE,
    RULES.session_gap,
    RULES.session_gap + 1,
    RULES.cart_abandon_after,
    RULES.cart_abandon_after + 1,
    3 * HOUR,
    RULES.return_visit_after,
    8 * DAY,
]

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

maybe = lambda s: st.one_of(st.none(), s)  # noqa: E731


@st.composite
def clicks(draw, i: int, ts: int) -> Click:
    kind = draw(st.sampled_from(CLICK_TYPES))
    key = draw(maybe(st.sampled_from([*KEYS, "null", " Unknown "]))) if kind != "login" else draw(st.sampled_from(KEYS))
    return Click(
        event_id=f"e{i}",
        ts=ts,
        device_id=draw(st.sampled_from(DEVICES)),
        type=kind,
        customer_key=key,
        product_id=draw(st.sampled_from(PRODUCTS))
        if kind in ("product_view", "add_to_cart", "remove_from_cart")
        else None,
        price=draw(maybe(st.sampled_from([1.0, 2.5]))),
        quantity=draw(maybe(st.integers(-1, 3))),
        order_id=draw(st.sampled_from(ORDERS)) if kind == "purchase" else None,
        revenue=draw(maybe(st.sampled_from([0.0, 10.0, 99.5]))) if kind == "purchase" else None,
        campaign=draw(maybe(st.sampled_from([Campaign("nl", "email", "a"), Campaign(source="ads")]))),
    )


@st.composite
def changes(draw, i: int, ts: int) -> CrmChange:
    op = draw(st.sampled_from(["upsert"] * 6 + ["erase"]))
    return CrmChange(
        change_id=f"c{i}",
        ts=ts,
        customer_id=draw(st.sampled_from(CUSTOMERS)),
        op=op,
        customer_key=draw(maybe(st.sampled_from([*KEYS, "NONE"]))),
        attributes=draw(
            maybe(
                st.dictionaries(
                    st.sampled_from(["tier", "score"]),
                    st.one_of(st.sampled_from(["a", "b"]), st.sampled_from([1.0, 2.0])),
                    max_size=2,
                )
            )
        ),
        lead_status=draw(maybe(st.sampled_from(["lead", "sale"]))),
        marketing_consent=draw(maybe(st.booleans())),
        order_id=draw(maybe(st.sampled_from(ORDERS))),
    )


@st.composite
def shops(draw) -> list:
    n = draw(st.integers(1, 40))
    ts = T0
    events = []
    for i in range(n):
        ts += draw(st.sampled_from(STEPS))
        if draw(st.integers(0, 4)) == 0:
            events.append(draw(changes(i, ts)))
        else:
            events.append(draw(clicks(i, ts)))
        if events and draw(st.integers(0, 9)) == 0:  # an at-least-once repeat of an earlier event
            events.append(draw(st.sampled_from(events)))
    return sorted(events, key=order_key)


def jitter(events, bound: int, rng: random.Random) -> list:
    """Out of order by at most `bound`: nothing arrives after an event `bound` later than itself."""
    keyed = [(e.ts + rng.randint(0, bound), rng.random(), i) for i, e in enumerate(events)]
    return [events[i] for _, _, i in sorted(keyed)]


def check_graph(engine: Engine) -> None:
    """Every device, key and customer id is in exactly one live profile, and the indexes agree."""
    g = engine.graph
    devices: Counter = Counter()
    for pid, p in g.profiles.items():
        assert p.profile_id == pid
        devices.update(p.device_ids)
        assert all(g.by_device[d] == pid for d in p.device_ids)
        if p.customer_key is not None:
            assert g.by_key[p.customer_key] == pid
        if p.customer_id is not None:
            assert g.by_customer[p.customer_id] == pid
        assert p.device_ids or p.customer_key is not None or p.customer_id is not None  # never unreachable
    assert all(n == 1 for n in devices.values()), devices
    assert set(g.by_device) == set(devices)
    assert g.by_key == {p.customer_key: pid for pid, p in g.profiles.items() if p.customer_key is not None}
    assert g.by_customer == {p.customer_id: pid for pid, p in g.profiles.items() if p.customer_id is not None}
    for identifier in [*DEVICES, *KEYS, *CUSTOMERS, "null", "NONE", " Unknown "]:
        holders = [
            p
            for p in g.profiles.values()
            if identifier in p.device_ids or identifier in (p.customer_key, p.customer_id)
        ]
        assert len(holders) <= 1


def stepwise(events, rng: random.Random) -> Result:
    """Feed in small batches over a few partitions, out of order by up to a day (so late events
    too), checking the graph after every batch."""
    events = jitter(events, rng.choice([0, LATE, HOUR, DAY]), rng)
    engine = Engine(RULES)
    names = [f"p{i}" for i in range(rng.randint(1, 3))]
    engine.expect(names, 0)
    out = []
    i = 0
    while i < len(events):
        size = rng.randint(1, 4)
        out += engine.feed([(rng.choice(names), e) for e in events[i : i + size]], now=0)
        check_graph(engine)
        i += size
    out += engine.finish(now=0)
    check_graph(engine)
    return Result(out, engine)


@SETTINGS
@given(shops(), st.randoms(use_true_random=False))
def test_identity_indexes_stay_consistent_and_customers_never_merge(events, rng):
    res = stepwise(events, rng)
    # the outputs agree with the state: latest record per key is the profile
    assert res.profiles == {pid: p.record() for pid, p in res.engine.profiles().items()}
    assert set(res.engine.profiles()) == set(res.engine.graph.profiles)  # a shard for every person, no other
    # one customer id per profile id, for the whole life of the profile; merges take anonymous or key-only profiles
    customer_of: dict[str, str] = {}
    for o in res.outputs:
        if o.topic == "profiles" and o.value is not None:
            cid = o.value["customer_id"]
            if cid is not None:
                assert customer_of.setdefault(o.key, cid) == cid
        if o.topic == "merges":
            assert o.value["from_profile_id"] not in customer_of
            assert o.value["reason"] in ("login", "customer_key", "order_match", "crm_link")
            assert o.key == o.value["into_profile_id"]
    for pid in res.tombstones:
        assert pid not in res.engine.graph.profiles


@SETTINGS
@given(shops(), st.randoms(use_true_random=False))
def test_results_do_not_depend_on_order_within_allowed_lateness(events, rng):
    expected = snapshot(run(events))
    shuffled = jitter(events, LATE, rng)
    res = run(shuffled, sources=rng.randint(1, 4), batch=rng.randint(0, 5))
    assert res.engine.stats["late"] == 0
    assert snapshot(res) == expected


@SETTINGS
@given(shops())
def test_replaying_the_same_input_gives_the_same_output(events):
    assert snapshot(run(events)) == snapshot(run(list(events)))


@SETTINGS
@given(shops())
def test_outputs_hold_only_given_identifiers_and_no_clear_email(events):
    res = run(events)
    given_keys = {e.customer_key for e in events if e.customer_key is not None}
    for o in res.outputs:
        assert "@" not in repr(o.value) and "@" not in o.key
        if o.topic in ("profiles", "triggers", "crm_feed") and o.value is not None:
            key = o.value["customer_key"]
            assert key is None or (key in given_keys and RULES.usable(key) is not None)
            assert o.value["customer_id"] is None or o.value["customer_id"] in CUSTOMERS
        if o.topic == "profiles" and o.value is not None:
            assert set(o.value["device_ids"]) <= set(DEVICES)


@SETTINGS
@given(shops())
def test_trigger_ids_are_unique_and_deterministic(events):
    res = run(events)
    ids = [t["trigger_id"] for t in res.triggers]
    assert len(ids) == len(set(ids))
    for t in res.triggers:
        assert t["profile_id"] in res.profiles or t["profile_id"] in res.tombstones
        assert (t["cart"] is None) == (t["type"] == "return_visit")
        assert (t["days_away"] is None) == (t["type"] == "cart_abandoned")
        if t["days_away"] is not None:
            assert t["days_away"] >= RULES.return_visit_after / DAY
