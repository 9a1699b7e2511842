"""The number of workers does not change the outputs (issue 16, acceptance: a hypothesis property).

For random small shops (a few devices, customer keys, CRM customers, orders and products; logins,
newsletter clicks that carry a key, carts, purchases, CRM upserts that link keys and orders,
erases), the dataflow gives the same final profiles and CRM feed, tombstones, merges and triggers
on 1, 2 and 3 workers, and the engine's.

How the input is read, and why: the shop's events are in event-time order in every partition
(clicks keyed by device, CRM changes by customer, three partitions each, as a producer writes
them), so no event can be late however the partitions' reading interleaves: the watermark is the
minimum over the partitions, and the partition an event sits in has not read past it yet. So here
every partition is its own reader and Bytewax spreads them over the workers: the interleaving
differs from run to run and between worker counts, and the outputs must not. (Late events depend
on the arrival order by the contract; the scenario tests keep that order with one reader.)

The transfer loop is either Bytewax-quick (in memory) or `HeldLoop`, which holds every transfer
until the end of input, so survivors hold their later commands for the whole run.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profilestream.domain.events import Click, CrmChange, order_key
from profilestream.domain.rules import DAY, MINUTE, Rules
from profilestream.flows.loop import MemoryLoop
from support.flowkit import HeldLoop, run_flow
from support.scenario import T0, crm, erase, run_engine, snapshot

RULES = Rules()
DEVICES = ["d0", "d1", "d2", "d3", "d4"]
KEYS = [hashlib.sha256(f"shopper{i}@example.com".encode()).hexdigest() for i in range(3)]
CUSTOMERS = ["c0", "c1", "c2"]
ORDERS = ["o0", "o1", "o2"]
PRODUCTS = ["p0", "p1"]
# steps between events that land on the rules' edges: the same ms, the session gap, the cart
# deadline, a return visit
GAPS = [0, 1, 1000, 5 * MINUTE, RULES.session_gap + 1, RULES.cart_abandon_after, RULES.cart_abandon_after + 1, 8 * DAY]
KINDS = ["page_view", "page_view", "login", "newsletter", "add_to_cart", "add_to_cart", "remove_from_cart", "purchase"]


@st.composite
def a_click(draw, n: int, ts: int) -> Click:
    kind = draw(st.sampled_from(KINDS))
    product = draw(st.sampled_from(PRODUCTS)) if kind.endswith("_cart") else None
    return Click(
        event_id=f"k{n}",
        ts=ts,
        device_id=draw(st.sampled_from(DEVICES)),
        type="page_view" if kind == "newsletter" else kind,
        customer_key=draw(st.sampled_from(KEYS)) if kind in ("login", "newsletter") else None,
        product_id=product,
        price=2.0 if product is not None else None,
        quantity=draw(st.integers(1, 2)) if product is not None else None,
        order_id=draw(st.sampled_from(ORDERS)) if kind == "purchase" else None,
        revenue=10.0 if kind == "purchase" else None,
    )


@st.composite
def a_change(draw, n: int, ts: int) -> CrmChange:
    op = draw(st.sampled_from(["upsert", "upsert", "upsert", "erase"]))
    upsert = op == "upsert"
    return CrmChange(
        change_id=f"c{n}",
        ts=ts,
        customer_id=draw(st.sampled_from(CUSTOMERS)),
        op=op,
        customer_key=draw(st.one_of(st.none(), st.sampled_from(KEYS))) if upsert else None,
        order_id=draw(st.one_of(st.none(), st.sampled_from(ORDERS))) if upsert else None,
        marketing_consent=draw(st.one_of(st.none(), st.booleans())) if upsert else None,
    )


@st.composite
def small_shops(draw) -> list:
    """Up to 30 events in event-time order; now and then an at-least-once repeat."""
    ts, events = T0, []
    for n in range(draw(st.integers(1, 30))):
        ts += draw(st.sampled_from(GAPS))
        events.append(draw(a_change(n, ts) if draw(st.integers(0, 3)) == 0 else a_click(n, ts)))
        if draw(st.integers(0, 9)) == 0:
            events.append(draw(st.sampled_from(events)))
    return sorted(events, key=order_key)


def outputs_of(res) -> dict:
    """`scenario.snapshot`, triggers in trigger-id order (workers emit them in any order)."""
    got = snapshot(res)
    got["triggers"] = sorted(got["triggers"], key=lambda t: t["trigger_id"])
    return got


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_shops(), st.booleans(), st.sampled_from([1, 3, 50]))
def test_one_two_and_three_workers_give_the_engines_outputs(events, held, batch):
    expected = outputs_of(run_engine(events))
    for workers in (1, 2, 3):
        loop = HeldLoop() if held else MemoryLoop()
        res = run_flow(events, workers=workers, batch=batch, loop=loop)
        assert res.engine.stats["late"] == 0
        assert outputs_of(res) == expected, f"{workers} worker(s)"


@pytest.mark.parametrize("workers", [1, 3])
def test_feed_of_a_customer_created_again_after_an_erase_is_the_new_profiles(workers):
    """C0 erased and created again twice (three profiles, so three shards): the CRM feed's last
    record for C0 must be the newest profile's. The tombstones come from the erased profiles'
    shards and the records from the new ones', which nothing else orders (on one worker Bytewax
    runs the keys of a batch in any order; on several, the workers write when they do): the
    `newest_holder` step keeps the newest holder's (`outputs.newer_feed`)."""
    events = [
        crm(0, "c0", lead_status="lead", change_id="f0-1"),
        erase(1, "c0", change_id="f-2"),
        crm(2, "c0", lead_status="offer_created", change_id="f0-3"),
        erase(3, "c0", change_id="f-4"),
        crm(4, "c0", lead_status="sale", change_id="f0-5"),
    ]
    direct = run_engine(events)
    assert set(direct.feed) == {"c0"} and direct.feed["c0"]["updated_at"] == events[-1].ts  # the newest holder
    for batch in (1, 50):
        assert run_flow(events, workers=workers, batch=batch).feed == direct.feed
