"""The contract's "Identity rules" (docs/semantics.md "Identity"),
sentence by sentence, against the pure domain core."""

from __future__ import annotations

import hashlib

import pytest

from profilestream.domain.rules import DEFAULT_BLOCKED, Rules
from support.scenario import DAY, MINUTE, T0, click, crm, erase, run

pytestmark = pytest.mark.usefixtures("scenario_level")  # engine and dataflow level


def sha(addr: str) -> str:
    """What the I/O layer does to a clear `email` before the domain sees it (docs/semantics.md "E-mail addresses")."""
    return hashlib.sha256(addr.strip().lower().encode()).hexdigest()


def reasons(res) -> list[str]:
    return [m["reason"] for m in res.merges]


# --- identifiers, blocked values ----------------------------------------------------------------


def _variants(value: str) -> list[str]:
    return sorted({value, value.upper(), value.title(), f"  {value}  ", f"\t{value.upper()} \n"})


BLOCKED = [v for b in DEFAULT_BLOCKED for v in _variants(b)]


@pytest.mark.parametrize("value", BLOCKED)
def test_blocked_customer_key_links_nothing(value):
    res = run(
        [
            crm(-10, "C1", customer_key=value),
            click(0, "D1", "login", customer_key=value),
            click(1, "D2", "page_view", customer_key=value),
        ]
    )
    assert res.merges == []
    d1, d2 = res.of("D1"), res.of("D2")
    assert d1["profile_id"] != d2["profile_id"]
    assert d1["customer_key"] is None and d2["customer_key"] is None
    assert res.of("C1")["device_ids"] == [] and res.of("C1")["customer_key"] is None


@pytest.mark.parametrize("value", BLOCKED)
def test_blocked_order_id_links_nothing(value, scenario_level):
    res = run(
        [
            crm(-10, "C1", order_id=value),
            click(0, "D1", "purchase", order_id=value, revenue=5.0),
            click(1, "D2", "purchase", order_id=value.upper(), revenue=5.0),
            crm(2, "C2", order_id=value),
        ]
    )
    assert res.merges == []
    if scenario_level == "dataflow" and not value.strip():
        # a blank order_id is a missing one: the codec dead-letters the purchases (required field)
        assert len(res.dead_letters) == 2 and not res.has("D1") and not res.has("D2")
        return
    assert res.of("D1")["customer_id"] is None and res.of("D2")["customer_id"] is None
    assert res.of("D1")["orders"] == 1


@pytest.mark.parametrize("value", BLOCKED)
def test_blocked_device_id_links_nothing(value):
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, value, "login", customer_key="K1"),
            click(1, value, "page_view"),
        ]
    )
    assert res.merges == []
    assert res.of("C1")["device_ids"] == [] and res.of("C1")["page_views"] == 0
    assert len(res.profiles) == 1
    # the engine ignores them; in the dataflow the codec has already dead-lettered them
    assert res.engine.stats["blocked_device"] + len(res.dead_letters) == 2


@pytest.mark.parametrize("value", BLOCKED)
def test_blocked_customer_id_links_nothing(value):
    res = run(
        [
            crm(-10, value, customer_key="K1", marketing_consent=False),
            crm(-9, value.upper(), customer_key="K2", order_id="O1"),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D2", "login", customer_key="K2"),
            click(2, "D2", "purchase", order_id="O1"),
        ]
    )
    assert all(p["customer_id"] is None for p in res.profiles.values())
    assert res.merges == []
    assert res.of("K1")["profile_id"] != res.of("K2")["profile_id"]
    assert res.feed == {}


def test_identifiers_are_not_trimmed_only_compared_trimmed_for_blocking():
    res = run([click(0, "D1", customer_key="K1"), click(1, "D2", customer_key=" K1 ")])
    assert res.of("D1")["customer_key"] == "K1"
    assert res.of("D2")["customer_key"] == " K1 "


# --- an event links first, then counts ------------------------------------------------------------


def test_event_links_first_then_counts_in_the_profile_it_leads_to():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            crm(-10, "C2", customer_key="K2"),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "page_view", customer_key="K2"),  # shared device: counts in C2, not C1
        ]
    )
    assert res.of("C1")["page_views"] == 0
    assert res.of("C2")["page_views"] == 1
    assert res.of("D1")["customer_id"] == "C2"


# --- clicks with a customer key -------------------------------------------------------------------


def test_newsletter_click_links_device_to_key():
    res = run(
        [
            click(0, "D1", "page_view"),
            click(1, "D1", "page_view", customer_key="K1", url="https://shop/?nl=1"),
        ]
    )
    p = res.of("D1")
    assert p["customer_key"] == "K1" and p["customer_id"] is None
    assert p["page_views"] == 2
    assert res.merges == []  # the device's own anonymous profile simply gets the key


def test_newsletter_click_of_known_key_merges_with_reason_customer_key():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D1", "page_view"),
            click(1, "D1", "page_view", customer_key="K1"),
        ]
    )
    assert reasons(res) == ["customer_key"]
    assert res.of("D1")["customer_id"] == "C1"


def test_login_merges_anonymous_history_into_customer():
    res = run(
        [
            crm(-100, "C1", customer_key="K1"),
            click(-90, "D0", "login", customer_key="K1"),
            click(-89, "D0", "page_view"),
            click(-88, "D0", "purchase", order_id="O0", revenue=10.0),
            click(0, "D1", "page_view"),
            click(1, "D1", "product_view", product_id="P1"),
            click(2, "D1", "add_to_cart", product_id="P1", price=3.0),
            click(3, "D1", "login", customer_key="K1"),
        ]
    )
    anon = [m for m in res.merges if m["reason"] == "login" and m["ts"] == T0 + 3 * MINUTE]
    assert len(anon) == 1
    merge = anon[0]
    customer = res.of("C1")
    assert merge["into_profile_id"] == customer["profile_id"]
    assert merge["from_profile_id"] in res.tombstones
    assert merge["from_profile_id"] not in res.profiles
    assert customer["device_ids"] == ["D0", "D1"]
    assert customer["page_views"] == 2
    assert customer["product_views"] == 1
    assert customer["orders"] == 1 and customer["revenue"] == 10.0
    assert customer["visits"] == 2
    assert customer["cart"] == [{"product_id": "P1", "quantity": 1, "price": 3.0}]
    assert customer["first_seen"] == T0 - 90 * MINUTE and customer["last_seen"] == T0 + 3 * MINUTE
    assert len(res.profiles) == 1


def test_email_derived_keys_behave_as_keys():
    key_web, key_crm = sha("Ann@Example.COM"), sha("  ann@example.com ")
    assert key_web == key_crm
    res = run(
        [
            crm(-10, "C1", customer_key=key_crm),
            click(0, "D1", "page_view"),
            click(1, "D1", "login", customer_key=key_web),
        ]
    )
    assert reasons(res) == ["login"]
    assert res.of("D1")["customer_id"] == "C1"
    assert res.of("C1")["customer_key"] == key_web
    assert "@" not in repr(res.outputs)


def test_only_the_crm_ties_a_key_to_a_customer_id():
    res = run([click(0, "D1", "login", customer_key="K1"), click(1, "D2", "login", customer_key="K1")])
    p = res.of("K1")
    assert p["customer_id"] is None and p["device_ids"] == ["D1", "D2"]
    assert res.feed == {}  # no customer_id, no crm-feed record


# --- CRM links --------------------------------------------------------------------------------------


def test_crm_upsert_creates_profile_before_web_activity():
    res = run([crm(0, "C1", attributes={"tier": "gold"}, lead_status="lead")])
    p = res.of("C1")
    assert p["customer_id"] == "C1" and p["device_ids"] == []
    assert p["visits"] == 0 and p["first_seen"] is None and p["last_seen"] is None
    assert p["attributes"] == {"tier": "gold"} and p["lead_status"] == "lead"
    assert res.feed["C1"]["customer_id"] == "C1"


def test_key_only_profile_is_merged_into_customer_on_crm_link():
    res = run(
        [
            click(0, "D1", "page_view", customer_key="K1"),
            click(1, "D1", "page_view"),
            crm(5, "C1", customer_key="K1"),
        ]
    )
    assert reasons(res) == ["crm_link"]
    p = res.of("C1")
    assert p["customer_key"] == "K1" and p["device_ids"] == ["D1"] and p["page_views"] == 2
    assert res.merges[0]["into_profile_id"] == p["profile_id"]
    assert res.merges[0]["from_profile_id"] in res.tombstones
    assert len(res.profiles) == 1


def test_crm_upsert_with_key_links_key_to_customer():
    res = run([crm(0, "C1", customer_key="K1"), click(1, "D1", "page_view", customer_key="K1")])
    assert res.of("K1")["customer_id"] == "C1"
    assert res.of("D1")["customer_id"] == "C1"


def test_new_key_for_same_customer_replaces_the_old():
    res = run(
        [
            crm(0, "C1", customer_key="K1"),
            crm(1, "C1", customer_key="K2"),
            click(2, "D1", "login", customer_key="K1"),
        ]
    )
    assert res.of("C1")["customer_key"] == "K2"
    assert res.of("D1")["customer_id"] is None  # the old key no longer leads to the customer
    assert res.of("K1")["customer_id"] is None
    assert res.engine.graph.by_key["K2"] == res.of("C1")["profile_id"]


def test_key_held_by_another_crm_customer_moves_without_merge():
    res = run(
        [
            crm(0, "C1", customer_key="K1"),
            click(1, "D1", "login", customer_key="K1"),
            click(2, "D1", "page_view"),
            crm(5, "C2", customer_key="K1"),
            click(6, "D2", "login", customer_key="K1"),
        ]
    )
    assert res.merges == []
    c1, c2 = res.of("C1"), res.of("C2")
    assert c1["profile_id"] != c2["profile_id"]
    assert c1["customer_key"] is None and c2["customer_key"] == "K1"
    assert c1["device_ids"] == ["D1"] and c1["page_views"] == 1
    assert c2["device_ids"] == ["D2"]
    assert res.feed["C1"]["customer_key"] is None


# --- order matching ---------------------------------------------------------------------------------


@pytest.mark.parametrize("web_first", [True, False])
def test_order_match_links_device_to_customer_in_either_arrival_order(web_first):
    web = [click(0, "D1", "page_view"), click(1, "D1", "purchase", order_id="O1", revenue=20.0)]
    change = crm(10 if web_first else -10, "C1", order_id="O1")
    res = run([*web, change] if web_first else [change, *web])
    assert reasons(res) == ["order_match"]
    p = res.of("C1")
    assert p["device_ids"] == ["D1"] and p["orders"] == 1 and p["revenue"] == 20.0 and p["page_views"] == 1
    assert res.merges[0]["ts"] == (change.ts if web_first else T0 + MINUTE)


@pytest.mark.parametrize("web_first", [True, False])
@pytest.mark.parametrize("extra, links", [(0, True), (1, False)])
def test_order_match_window_is_inclusive(web_first, extra, links):
    window = Rules().order_match_window
    w = T0 if web_first else T0 + window + extra
    c = T0 + window + extra if web_first else T0
    res = run(
        [
            click(0, "D1", "purchase", order_id="O1", ts=w),
            crm(0, "C1", order_id="O1", ts=c),
        ]
    )
    assert (res.of("D1")["customer_id"] == "C1") is links
    assert (reasons(res) == ["order_match"]) is links


def test_crm_order_ids_only_link_and_do_not_count():
    res = run([crm(0, "C1", order_id="O1"), crm(1, "C1", order_id="O2")])
    assert res.of("C1")["orders"] == 0 and res.of("C1")["revenue"] == 0.0


def test_order_match_moves_a_device_of_another_customer_without_merging():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            crm(-10, "C2", order_id="O9"),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "purchase", order_id="O9", revenue=1.0),
        ]
    )
    assert "order_match" not in reasons(res)
    assert res.of("D1")["customer_id"] == "C2"
    assert res.of("C1")["profile_id"] != res.of("C2")["profile_id"]


# --- merge protection ---------------------------------------------------------------------------------


def test_shared_device_moves_to_newer_customer_history_stays_no_customer_merge():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            crm(-10, "C2", customer_key="K2"),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "product_view", product_id="P1"),
            click(2, "D1", "add_to_cart", product_id="P1"),
            click(3, "D1", "login", customer_key="K2"),
            click(4, "D1", "page_view"),
        ]
    )
    c1, c2 = res.of("C1"), res.of("C2")
    assert c1["profile_id"] != c2["profile_id"]
    assert c1["device_ids"] == [] and c2["device_ids"] == ["D1"]
    assert c1["product_views"] == 1 and c1["viewed_products"] == ["P1"]
    assert c1["cart"] == [{"product_id": "P1", "quantity": 1, "price": None}]
    assert c1["visits"] == 1
    assert c1["last_seen"] == T0 + 2 * MINUTE
    assert c2["product_views"] == 0 and c2["cart"] == [] and c2["page_views"] == 1
    assert c2["visits"] == 1  # the visit in progress has belonged to C2 too
    assert c2["first_seen"] == T0 + 3 * MINUTE
    ids = {c1["profile_id"], c2["profile_id"]}
    assert not any({m["from_profile_id"], m["into_profile_id"]} == ids for m in res.merges)
    assert res.tombstones.isdisjoint(ids)


def test_linking_merges_only_anonymous_profiles_key_only_profile_keeps_its_history():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D1", "page_view", customer_key="K9"),  # key-only profile K9
            click(1, "D1", "login", customer_key="K1"),
        ]
    )
    assert res.merges == []
    assert res.of("K9")["profile_id"] != res.of("C1")["profile_id"]
    assert res.of("K9")["page_views"] == 1 and res.of("K9")["device_ids"] == []
    assert res.of("D1")["customer_id"] == "C1"


def test_logout_unlinks_nothing():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "logout"),
            click(2, "D1", "page_view"),
            click(40, "D1", "page_view"),
        ]
    )
    p = res.of("D1")
    assert p["customer_id"] == "C1" and p["customer_key"] == "K1" and p["page_views"] == 2
    assert len(res.profiles) == 1


# --- erase ----------------------------------------------------------------------------------------


def _customer_with_cart():
    return [
        crm(-10, "C1", customer_key="K1", order_id="O1"),
        click(0, "D1", "login", customer_key="K1"),
        click(1, "D2", "login", customer_key="K1"),
        click(2, "D1", "add_to_cart", product_id="P1"),
    ]


def test_erase_tombstones_profile_and_crm_feed():
    events = _customer_with_cart()
    pid = run(events).of("C1")["profile_id"]
    res = run([*events, erase(5, "C1")])
    assert pid in res.tombstones and pid not in res.profiles
    assert "C1" not in res.feed
    assert any(o.topic == "crm_feed" and o.key == "C1" and o.value is None for o in res.outputs)


def test_erase_leaves_no_links():
    res = run([*_customer_with_cart(), erase(5, "C1")])
    g = res.engine.graph
    assert g.profiles == {} and g.by_device == {} and g.by_key == {} and g.by_customer == {}
    assert not res.has("D1") and not res.has("K1") and not res.has("C1")


def test_erase_removes_pending_cart_deadline_and_no_trigger_afterwards():
    res = run([*_customer_with_cart(), erase(5, "C1"), click(30, "D1", "page_view")])
    assert res.triggers == []
    assert res.of("D1")["cart"] == []


def test_after_erase_devices_start_new_anonymous_profiles_visit_in_progress_included():
    events = _customer_with_cart()
    before = run(events).of("C1")["profile_id"]
    res = run(
        [
            *events,
            erase(5, "C1"),
            click(6, "D1", "page_view"),  # same visit as before the erase
            click(7, "D2", "page_view"),
        ]
    )
    d1, d2 = res.of("D1"), res.of("D2")
    assert d1["profile_id"] != d2["profile_id"]
    for p in (d1, d2):
        assert p["profile_id"] != before
        assert p["customer_id"] is None and p["customer_key"] is None
        assert p["visits"] == 1 and p["page_views"] == 1 and p["cart"] == []
        assert p["first_seen"] == p["last_seen"]


def test_erase_forgets_crm_orders_of_the_customer():
    res = run(
        [
            crm(0, "C1", order_id="O1"),
            erase(1, "C1"),
            crm(2, "C1", lead_status="lead"),  # the CRM number comes back as a new customer
            click(3, "D1", "purchase", order_id="O1"),
        ]
    )
    assert res.of("D1")["customer_id"] is None and res.merges == []
    assert res.of("C1")["device_ids"] == []


def test_erase_no_return_visit_afterwards():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D1", "login", customer_key="K1", ts=T0),
            crm(0, "C1", op="erase", ts=T0 + DAY),
            click(0, "D1", "page_view", ts=T0 + 9 * DAY),
        ]
    )
    assert res.triggers == []
    assert res.of("D1")["first_seen"] == T0 + 9 * DAY


def test_erase_then_old_key_does_not_lead_back():
    res = run([*_customer_with_cart(), erase(5, "C1"), click(6, "D3", "login", customer_key="K1")])
    assert res.of("D3")["customer_id"] is None
    assert res.merges == [m for m in res.merges if m["ts"] < T0 + 5 * MINUTE]


def test_erase_of_unknown_customer_is_harmless():
    res = run([click(0, "D1"), erase(1, "C9")])
    assert res.of("D1")["page_views"] == 1 and res.tombstones == set()


# --- duplicates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("offset, counted", [(0, 1), (DAY, 1), (DAY + 1, 2)])
def test_duplicate_event_id_counts_once_within_dedup_window(offset, counted):
    res = run(
        [
            click(0, "D1", "page_view", event_id="E1"),
            click(0, "D1", "page_view", event_id="E1", ts=T0 + offset),
        ]
    )
    assert res.of("D1")["page_views"] == counted
    assert res.engine.stats["duplicates"] == 2 - counted


@pytest.mark.parametrize("offset, applied", [(0, False), (DAY, False), (DAY + 1, True)])
def test_duplicate_change_id_counts_once_within_dedup_window(offset, applied):
    res = run(
        [
            crm(0, "C1", change_id="X1", attributes={"a": "first"}),
            crm(0, "C1", change_id="X1", attributes={"a": "second"}, ts=T0 + offset),
        ]
    )
    assert res.of("C1")["attributes"] == {"a": "second" if applied else "first"}


def test_event_ids_and_change_ids_are_separate():
    res = run([click(0, "D1", event_id="S1"), crm(0, "C1", change_id="S1", lead_status="lead")])
    assert res.of("D1")["page_views"] == 1 and res.of("C1")["lead_status"] == "lead"
