"""docs/semantics.md "Erase": an erased customer never comes back from late data.

An event that arrives after the erase but whose `ts` is before it, and that carries the erased
customer's `customer_id` or `customer_key` (or an order number of theirs), is dropped and counted
(`dropped_erased`). Scenarios run on the engine alone and through the whole dataflow; recovery is
the engine pickled whole, so the rule must survive a pickle round trip, and an engine pickled by an
earlier build (no suppression list yet) must still load and work.
"""

from __future__ import annotations

import pickle

import pytest

from profilestream.domain.engine import Engine
from profilestream.domain.rules import Rules
from support import flowkit, scenario
from support.scenario import DAY, HOUR, MINUTE, T0, Result, click, crm, run

both = pytest.mark.usefixtures("scenario_level")  # engine and dataflow level

N = 33
ERASED_AT = T0 + 2 * DAY


def key(i: int) -> str:
    return f"{i:02d}" + "ab" * 31  # a hashed customer key (64 hex digits)


def history(n: int = N) -> list:
    """n customers, each known to the CRM with a key and an order, logged in on their own device,
    with a web purchase; all erased at ERASED_AT."""
    events = []
    for i in range(n):
        events += [
            crm(0, f"C{i}", customer_key=key(i), order_id=f"CRM-O{i}"),
            click(10 + i, f"D{i}", "login", customer_key=key(i)),
            click(11 + i, f"D{i}", "purchase", order_id=f"WEB-O{i}", revenue=10.0),
        ]
    return events + [crm(0, f"C{i}", op="erase", ts=ERASED_AT) for i in range(n)]


def later_traffic(days: float = 3) -> list:
    """Clicks and CRM changes on many devices and customers a few days after the erase: every
    partition of both topics moves past it, so the erase is applied and what follows is late."""
    ts = T0 + int(days * DAY)
    return [click(0, f"X{j}", ts=ts + j * 1000) for j in range(90)] + [
        crm(0, f"Z{j}", lead_status="lead", ts=ts + j * 1000) for j in range(90)
    ]


def arrive_late(in_time: list, late: list) -> Result:
    """In-time events first, then the late ones, one per batch: at both levels the watermark has
    passed the erase when the late events are read."""
    return run(in_time + late, batch=1)


def assert_dropped(res: Result, n: int) -> None:
    """The late events were dropped and counted: exactly `n` on the engine and on one worker. On
    three workers, whether each of them reaches resolution after the erase was applied depends on
    when the workers run (seen once, on a loaded machine: 31 of 33); the rule itself, that none of
    them brings a customer back, is `assert_gone` at every level."""
    dropped = res.engine.stats["dropped_erased"]
    if scenario.RUNNER is flowkit.run_scenario_on_3_workers:
        assert 0 < dropped <= n
    else:
        assert dropped == n


def assert_gone(res: Result, n: int = N) -> None:
    for i in range(n):
        assert not res.has(key(i)) and not res.has(f"C{i}"), i


@both
def test_late_events_with_the_erased_keys_ids_and_orders_are_dropped_and_counted():
    late = []
    for i in range(N):
        before = T0 + DAY + i * MINUTE  # after the history, before the erase
        late += [
            click(0, f"N{i}", "login", customer_key=key(i), ts=before),  # a new device logs in as them
            crm(0, f"C{i}", lead_status="sale", ts=before),  # the CRM's own late change
        ]
    late += [
        click(0, "N-web", "purchase", order_id="WEB-O3", ts=T0 + DAY),  # a web order of theirs
        crm(0, "C-other", order_id="CRM-O4", ts=T0 + DAY),  # another customer with their CRM order
        click(0, "N-page", "page_view", customer_key=key(5), ts=T0 + DAY),  # any click carrying the key
    ]
    res = arrive_late(history() + later_traffic(), late)
    assert res.engine.stats["late"] >= len(late)
    assert_dropped(res, len(late))
    assert_gone(res)
    for device in [f"N{i}" for i in range(N)] + ["N-web", "N-page"]:
        assert not res.has(device)
    assert not res.has("C-other")
    assert res.merges == [m for m in res.merges if m["ts"] < ERASED_AT]


@both
def test_late_events_of_erased_customers_without_the_fix_would_bring_them_back():
    """The premise (issue 11, finding 4): the same late logins, had the customers not been erased
    in between, link their keys; after the erase they must not."""
    late = [click(0, f"N{i}", "login", customer_key=key(i), ts=T0 + DAY) for i in range(N)]
    kept = arrive_late(history()[:-N] + later_traffic(), late)
    assert all(kept.has(key(i)) for i in range(N))
    res = arrive_late(history() + later_traffic(), late)
    assert_gone(res)
    assert_dropped(res, N)


@both
def test_an_event_after_the_erase_is_new_data_even_when_late():
    """Only what lies before the erase in event time is dropped: a late event after it (and one at
    the erase's own `ts`, which comes after a CRM change of that `ts`) starts afresh."""
    late = [
        click(0, "N1", "login", customer_key=key(1), ts=ERASED_AT + HOUR),
        click(0, "N2", "login", customer_key=key(2), ts=ERASED_AT),
        crm(0, "C3", lead_status="lead", ts=ERASED_AT + HOUR),
    ]
    res = arrive_late(history(4) + later_traffic(), late)
    assert res.engine.stats["late"] >= 3 and res.engine.stats["dropped_erased"] == 0
    assert res.of("N1")["customer_key"] == key(1) and res.of("N2")["customer_key"] == key(2)
    assert res.of("C3")["lead_status"] == "lead" and res.of("C3")["orders"] == 0
    assert not res.has(key(0)) and not res.has("C0")


@both
def test_a_late_crm_change_at_the_erase_ts_but_before_it_in_order_is_dropped():
    """At equal `ts` CRM changes are ordered by `change_id`: one that in time order would have
    been erased is dropped, one after the erase applies."""
    events = [crm(0, "C1", customer_key=key(1)), crm(0, "C1", op="erase", ts=ERASED_AT, change_id="m")]
    late = [crm(0, "C1", lead_status="early", ts=ERASED_AT, change_id="a")]
    res = arrive_late(events + later_traffic(), late)
    assert res.engine.stats["dropped_erased"] == 1 and not res.has("C1")
    late = [crm(0, "C1", lead_status="after", ts=ERASED_AT, change_id="z")]
    res = arrive_late(events + later_traffic(), late)
    assert res.engine.stats["dropped_erased"] == 0 and res.of("C1")["lead_status"] == "after"


@both
def test_a_late_click_of_an_erased_device_without_their_identifiers_starts_afresh():
    """The rule names the customer's id, key and orders: a device's own late page view is an
    anonymous visitor's, as every later event of an erased customer's device is."""
    res = arrive_late(history(2) + later_traffic(), [click(0, "D0", "page_view", ts=T0 + DAY)])
    assert res.engine.stats["dropped_erased"] == 0
    p = res.of("D0")
    assert p["customer_id"] is None and p["customer_key"] is None and p["orders"] == 0
    assert_gone(res, 2)


@both
def test_the_latest_erase_decides_and_a_customer_recreated_after_it_keeps_its_new_data():
    events = [
        crm(0, "C1", customer_key=key(1)),
        crm(0, "C1", op="erase", ts=T0 + DAY),
        crm(0, "C1", customer_key=key(1), ts=T0 + DAY + HOUR, lead_status="again"),  # back, in time
        crm(0, "C1", op="erase", ts=ERASED_AT),
        crm(0, "C1", customer_key=key(1), ts=ERASED_AT + HOUR, lead_status="third"),
    ]
    late = [
        crm(0, "C1", lead_status="between", ts=T0 + DAY + 2 * HOUR),  # before the second erase
        click(0, "N1", "login", customer_key=key(1), ts=T0 + DAY + 3 * HOUR),
    ]
    res = arrive_late(events + later_traffic(), late)
    assert res.engine.stats["dropped_erased"] == 2
    p = res.of("C1")
    assert p["lead_status"] == "third" and p["device_ids"] == [] and p["customer_key"] == key(1)


@both
def test_the_erase_itself_names_a_key_and_an_order_that_are_suppressed_too():
    """An erase of a customer the engine has not seen yet (its data is late, every bit of it):
    its id, and the key and order number the erase carries, are dropped when they come."""
    events = [crm(0, "C1", op="erase", ts=ERASED_AT, customer_key=key(1), order_id="O1")]
    late = [
        crm(0, "C1", customer_key=key(1), ts=T0),
        click(0, "N1", "login", customer_key=key(1), ts=T0 + MINUTE),
        click(0, "N2", "purchase", order_id="O1", ts=T0 + 2 * MINUTE),
    ]
    res = arrive_late(events + later_traffic(), late)
    assert res.engine.stats["dropped_erased"] == 3
    assert not res.has("C1") and not res.has(key(1)) and not res.has("N2")


@both
def test_orders_of_the_erased_customer_older_than_the_match_window_are_theirs_too():
    rules = Rules()
    old = T0 - 2 * rules.order_match_window
    events = [
        crm(0, "C1", customer_key=key(1), ts=old - HOUR),
        click(0, "D1", "login", customer_key=key(1), ts=old),
        click(0, "D1", "purchase", order_id="OLD-1", ts=old + MINUTE),
        crm(0, "C1", order_id="OLD-CRM", ts=old + HOUR),
        crm(0, "C1", op="erase", ts=ERASED_AT),
    ]
    late = [
        click(0, "N1", "purchase", order_id="OLD-1", ts=old + 2 * MINUTE),
        crm(0, "C2", order_id="OLD-CRM", ts=old + 2 * HOUR),
    ]
    res = arrive_late(events + later_traffic(), late)
    assert res.engine.stats["dropped_erased"] == 2
    assert not res.has("N1") and not res.has("C2")


@both
def test_an_erase_forgets_the_web_orders_of_the_customers_devices():
    """Order numbers are links too: a CRM change after the erase that names an order the
    customer placed on the web does not reach back to that device."""
    events = [
        *history(1),
        crm(0, "C9", order_id="WEB-O0", ts=ERASED_AT + HOUR),
        click(0, "D0", ts=ERASED_AT + 2 * HOUR),
    ]
    res = run(events)
    assert res.of("C9")["device_ids"] == [] and res.of("D0")["customer_id"] is None


# --- recovery: the engine is pickled whole ------------------------------------------------------


def _engine_after_erase() -> Engine:
    engine = Engine(Rules())
    engine.expect(["p0"], 0)
    for event in history(3) + later_traffic():
        engine.feed([("p0", event)], now=0)
    return engine


def _late_logins(engine: Engine) -> Result:
    out = []
    for i in range(3):
        out += engine.feed([("p0", click(0, f"N{i}", "login", customer_key=key(i), ts=T0 + DAY))], now=0)
    out += engine.finish(now=0)
    return Result(out, engine)


def test_the_suppression_survives_a_restart_from_a_snapshot():
    engine = pickle.loads(pickle.dumps(_engine_after_erase(), protocol=pickle.HIGHEST_PROTOCOL))
    res = _late_logins(engine)
    assert res.engine.stats["dropped_erased"] == 3
    assert_gone(res, 3)
