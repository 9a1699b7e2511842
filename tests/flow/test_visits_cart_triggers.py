"""The contract's "Sessions, counters and triggers" (docs/semantics.md "Visits" to "Triggers"),
sentence by sentence, against the domain core."""

from __future__ import annotations

import pytest

from profilestream.domain.rules import Rules
from support.scenario import DAY, HOUR, MINUTE, T0, Campaign, click, crm, run

pytestmark = pytest.mark.usefixtures("scenario_level")  # engine and dataflow level

GAP = Rules().session_gap
ABANDON = Rules().cart_abandon_after
RETURN = Rules().return_visit_after


def of_type(res, kind: str) -> list[dict]:
    return [t for t in res.triggers if t["type"] == kind]


def at(ms: int) -> dict:
    """Absolute event time for click()/crm()."""
    return {"ts": T0 + ms}


# --- visits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gap, visits", [(GAP, 1), (GAP + 1, 2), (GAP - 1, 1)])
def test_gap_of_exactly_session_gap_continues_visit_longer_starts_new(gap, visits):
    res = run([click(0, "D1", **at(0)), click(0, "D1", **at(gap))])
    assert res.of("D1")["visits"] == visits


def test_visit_gap_is_measured_from_the_last_click_not_the_first():
    res = run([click(0, "D1"), click(25, "D1"), click(50, "D1"), click(75, "D1")])
    assert res.of("D1")["visits"] == 1


def test_visits_are_per_device():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D2", "login", customer_key="K1"),
            click(2, "D1"),
            click(3, "D2"),
        ]
    )
    assert res.of("C1")["visits"] == 2


def test_visits_counted_per_device_visit_across_merges():
    res = run(
        [
            crm(-1000, "C1", customer_key="K1"),
            click(-900, "D0", "login", customer_key="K1"),  # C1: one visit on D0
            click(0, "D1"),  # D1 anonymous: visit 1
            click(60, "D1"),  # visit 2
            click(61, "D1", "login", customer_key="K1"),  # same visit 2: merged, not counted again
            click(62, "D1"),
            click(200, "D1"),  # visit 3, in C1 now
        ]
    )
    assert res.of("C1")["visits"] == 4


def test_visit_that_belonged_to_two_profiles_counts_once_in_each():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            crm(-10, "C2", customer_key="K2"),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "login", customer_key="K2"),
            click(2, "D1"),
        ]
    )
    assert res.of("C1")["visits"] == 1 and res.of("C2")["visits"] == 1


def test_visit_is_not_counted_twice_when_its_profiles_merge_later():
    # D1's visit belongs to the key-only profile K9 and, after D1 moves, to C1 too; when the CRM
    # then links K9 to C1 the merged profile has had that one device visit, not two.
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D1", customer_key="K9"),
            click(1, "D1", "login", customer_key="K1"),
            click(2, "D1"),
            crm(3, "C1", customer_key="K9"),
            click(4, "D1"),
        ]
    )
    assert res.merges[-1]["reason"] == "crm_link"
    assert res.of("C1")["visits"] == 1
    assert res.of("C1")["page_views"] == 3


def test_visit_counted_once_when_device_returns_to_a_customer_after_an_erase():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            crm(-10, "C2", customer_key="K2"),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "login", customer_key="K2"),
            crm(2, "C2", op="erase"),
            click(3, "D1"),  # new anonymous profile, same device visit
            click(4, "D1", "login", customer_key="K1"),  # merged back into C1
        ]
    )
    assert res.of("C1")["visits"] == 1


# --- activity ---------------------------------------------------------------------------------


def test_first_seen_and_last_seen_come_from_clicks_only():
    res = run(
        [
            crm(-100, "C1", customer_key="K1"),
            click(0, "D1", "login", customer_key="K1"),
            click(5, "D1", "page_view"),
            crm(100, "C1", lead_status="sale"),
        ]
    )
    p = res.of("C1")
    assert p["first_seen"] == T0 and p["last_seen"] == T0 + 5 * MINUTE
    assert res.feed["C1"]["last_visit"] == T0 + 5 * MINUTE
    assert p["updated_at"] == T0 + 100 * MINUTE


def test_every_click_type_is_activity():
    types = ["page_view", "product_view", "add_to_cart", "remove_from_cart", "checkout", "purchase", "login", "logout"]
    events = [
        click(i, "D1", t, product_id="P1", order_id="O1", customer_key="K1" if t == "login" else None)
        for i, t in enumerate(types)
    ]
    p = run(events).of("D1")
    assert p["first_seen"] == T0 and p["last_seen"] == T0 + (len(types) - 1) * MINUTE


# --- counters ---------------------------------------------------------------------------------


def test_page_views_and_product_views_count_their_own_types_only():
    res = run(
        [
            click(0, "D1", "page_view"),
            click(1, "D1", "page_view"),
            click(2, "D1", "product_view", product_id="P1"),
            click(3, "D1", "add_to_cart", product_id="P1"),
            click(4, "D1", "checkout"),
            click(5, "D1", "login", customer_key="K1"),
            click(6, "D1", "logout"),
            click(7, "D1", "remove_from_cart", product_id="P1"),
        ]
    )
    p = res.of("D1")
    assert p["page_views"] == 2 and p["product_views"] == 1 and p["orders"] == 0


def test_orders_and_revenue_count_web_purchases_missing_revenue_counts_zero():
    res = run(
        [
            click(0, "D1", "purchase", order_id="O1", revenue=12.5),
            click(1, "D1", "purchase", order_id="O2"),
            click(2, "D1", "purchase", order_id="O3", revenue=0.25),
        ]
    )
    p = res.of("D1")
    assert p["orders"] == 3 and p["revenue"] == 12.75 and p["last_order_ts"] == T0 + 2 * MINUTE


def test_crm_order_ids_only_link_not_count():
    res = run(
        [
            click(0, "D1", "purchase", order_id="O1", revenue=10.0),
            crm(5, "C1", order_id="O1"),
            crm(6, "C1", order_id="O2"),
        ]
    )
    p = res.of("C1")
    assert p["orders"] == 1 and p["revenue"] == 10.0
    assert res.feed["C1"]["orders"] == 1


def test_viewed_products_most_recent_first_at_most_20():
    events = [click(i, "D1", "product_view", product_id=f"P{i:02d}") for i in range(25)]
    events.append(click(30, "D1", "product_view", product_id="P10"))
    p = run(events).of("D1")
    expected = ["P10", *[f"P{i:02d}" for i in range(24, 4, -1) if i != 10][:19]]
    assert p["viewed_products"] == expected
    assert len(p["viewed_products"]) == 20
    assert p["product_views"] == 26


def test_viewed_products_after_merge_most_recent_first_at_most_20():
    events = [crm(-100, "C1", customer_key="K1")]
    events += [click(i, "D0", "product_view", product_id=f"A{i:02d}", customer_key="K1") for i in range(0, 30, 2)]
    events += [click(i, "D1", "product_view", product_id=f"B{i:02d}") for i in range(1, 30, 2)]
    events.append(click(31, "D1", "login", customer_key="K1"))
    p = run(events).of("C1")
    want = [f"{'A' if i % 2 == 0 else 'B'}{i:02d}" for i in range(29, 9, -1)]
    assert p["viewed_products"] == want


def test_campaigns_first_and_last_touch():
    spring = Campaign("newsletter", "email", "spring")
    res = run(
        [
            click(0, "D1", campaign=spring),
            click(10, "D1", campaign=Campaign(source="google")),
            click(100, "D1", campaign=spring),
        ]
    )
    assert res.of("D1")["campaigns"] == [
        {"source": "newsletter", "medium": "email", "name": "spring", "first_ts": T0, "last_ts": T0 + 100 * MINUTE},
        {"source": "google", "medium": None, "name": None, "first_ts": T0 + 10 * MINUTE, "last_ts": T0 + 10 * MINUTE},
    ]


def test_campaign_touches_join_on_merge():
    spring = Campaign("newsletter", "email", "spring")
    res = run(
        [
            crm(-100, "C1", customer_key="K1"),
            click(0, "D0", "login", customer_key="K1", campaign=spring),
            click(50, "D1", campaign=spring),
            click(20, "D1", campaign=spring),
            click(60, "D1", "login", customer_key="K1"),
        ]
    )
    assert res.of("C1")["campaigns"] == [
        {"source": "newsletter", "medium": "email", "name": "spring", "first_ts": T0, "last_ts": T0 + 50 * MINUTE},
    ]


def test_attributes_text_and_number_upsert_sets_the_keys_it_names():
    res = run(
        [
            crm(0, "C1", attributes={"tier": "gold", "score": 3.5}),
            crm(1, "C1", attributes={"score": 4.0, "city": "Köln"}),
            crm(2, "C1", lead_status="lead"),
        ]
    )
    assert res.of("C1")["attributes"] == {"tier": "gold", "score": 4.0, "city": "Köln"}


def test_lead_status_follows_the_latest_upsert_that_names_it():
    res = run(
        [
            crm(0, "C1", lead_status="lead"),
            crm(1, "C1", lead_status="offer_created"),
            crm(2, "C1", attributes={"x": "y"}),
        ]
    )
    assert res.of("C1")["lead_status"] == "offer_created"
    res = run([crm(0, "C1", lead_status="offer_created"), crm(1, "C1", lead_status="sale")])
    assert res.of("C1")["lead_status"] == "sale"


@pytest.mark.parametrize(
    "values, final",
    [
        ([None], None),
        ([True], True),
        ([False], False),
        ([True, None], True),
        ([True, False], False),
        ([False, True], True),
    ],
)
def test_marketing_consent_is_the_latest_given(values, final):
    res = run([crm(i, "C1", marketing_consent=v) for i, v in enumerate(values)])
    assert res.of("C1")["marketing_consent"] is final


# --- cart -------------------------------------------------------------------------------------


def test_cart_is_adds_minus_removes_quantity_defaults_to_one():
    res = run(
        [
            click(0, "D1", "add_to_cart", product_id="P1", price=2.0),
            click(1, "D1", "add_to_cart", product_id="P1", quantity=3),
            click(2, "D1", "add_to_cart", product_id="P2", price=5.0, quantity=2),
            click(3, "D1", "remove_from_cart", product_id="P1"),
            click(4, "D1", "remove_from_cart", product_id="P2", quantity=5),
            click(5, "D1", "remove_from_cart", product_id="P3"),
            click(6, "D1", "add_to_cart", product_id="P4", quantity=0),
        ]
    )
    assert res.of("D1")["cart"] == [{"product_id": "P1", "quantity": 3, "price": 2.0}]


def test_purchase_empties_the_whole_cart():
    res = run(
        [
            click(0, "D1", "add_to_cart", product_id="P1"),
            click(1, "D1", "add_to_cart", product_id="P2"),
            click(2, "D1", "purchase", order_id="O1", product_id="P1"),
        ]
    )
    assert res.of("D1")["cart"] == []
    assert res.triggers == []


def test_carts_add_up_when_profiles_merge():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D0", "login", customer_key="K1"),
            click(1, "D0", "add_to_cart", product_id="P1", quantity=2, price=1.0),
            click(2, "D1", "add_to_cart", product_id="P1", price=1.0),
            click(3, "D1", "add_to_cart", product_id="P2", price=9.0),
            click(4, "D1", "login", customer_key="K1"),
        ]
    )
    assert res.of("C1")["cart"] == [
        {"product_id": "P1", "quantity": 3, "price": 1.0},
        {"product_id": "P2", "quantity": 1, "price": 9.0},
    ]


# --- cart_abandoned ----------------------------------------------------------------------------


def test_cart_abandoned_fires_at_deadline_with_device_of_last_add_or_remove_and_cart():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "add_to_cart", product_id="P1", price=4.0),
            click(2, "D1", "add_to_cart", product_id="P2"),
            click(3, "D2", "login", customer_key="K1"),
            click(5, "D2", "remove_from_cart", product_id="P2"),
            click(6, "D1", "page_view"),
        ]
    )
    [t] = res.triggers
    p = res.of("C1")
    assert t["type"] == "cart_abandoned"
    assert t["ts"] == T0 + 5 * MINUTE + ABANDON
    assert t["device_id"] == "D2"
    assert t["cart"] == [{"product_id": "P1", "quantity": 1, "price": 4.0}]
    assert t["profile_id"] == p["profile_id"] and t["customer_id"] == "C1" and t["customer_key"] == "K1"
    assert t["days_away"] is None
    assert t["trigger_id"]


def test_an_add_opens_an_episode_only_add_or_remove_move_the_deadline():
    res = run(
        [
            click(0, "D1", "add_to_cart", product_id="P1"),
            click(30, "D1", "page_view"),
            click(40, "D1", "checkout"),
        ]
    )
    [t] = res.triggers
    assert t["ts"] == T0 + ABANDON


def test_remove_without_open_episode_opens_nothing():
    res = run([click(0, "D1", "remove_from_cart", product_id="P1")])
    assert res.triggers == []


def test_purchase_within_window_prevents_abandonment():
    res = run([click(0, "D1", "add_to_cart", product_id="P1"), click(59, "D1", "purchase", order_id="O1")])
    assert res.triggers == []


def test_remove_to_empty_prevents_abandonment():
    res = run(
        [
            click(0, "D1", "add_to_cart", product_id="P1", quantity=2),
            click(1, "D1", "remove_from_cart", product_id="P1", quantity=2),
            click(2, "D1", "page_view"),
        ]
    )
    assert res.triggers == []


def test_cross_device_purchase_by_same_customer_prevents_abandonment():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "PHONE", "login", customer_key="K1"),
            click(1, "PHONE", "add_to_cart", product_id="P1"),
            click(30, "LAPTOP", "login", customer_key="K1"),
            click(31, "LAPTOP", "purchase", order_id="O1"),
        ]
    )
    assert res.triggers == []
    assert res.of("C1")["cart"] == []


def test_purchase_after_deadline_does_not_unfire():
    res = run([click(0, "D1", "add_to_cart", product_id="P1"), click(61, "D1", "purchase", order_id="O1")])
    [t] = res.triggers
    assert t["ts"] == T0 + ABANDON and t["cart"] == [{"product_id": "P1", "quantity": 1, "price": None}]
    assert res.of("D1")["cart"] == []


def test_one_trigger_per_episode_and_second_add_after_firing_opens_a_new_episode():
    res = run(
        [
            click(0, "D1", "add_to_cart", product_id="P1"),
            click(70, "D1", "page_view"),
            click(80, "D1", "remove_from_cart", product_id="P9"),  # moves nothing open: no new episode
            click(200, "D1", "add_to_cart", product_id="P2"),
        ]
    )
    ts = [t["ts"] for t in res.triggers]
    assert ts == [T0 + ABANDON, T0 + 200 * MINUTE + ABANDON]
    assert res.triggers[1]["cart"] == [
        {"product_id": "P1", "quantity": 1, "price": None},
        {"product_id": "P2", "quantity": 1, "price": None},
    ]
    assert len({t["trigger_id"] for t in res.triggers}) == 2


@pytest.mark.parametrize("anon_later", [True, False])
def test_merge_later_deadline_holds_and_carts_add_up(anon_later):
    anon_at, cust_at = (10, 0) if anon_later else (0, 10)
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(-5, "D0", "login", customer_key="K1"),
            click(cust_at, "D0", "add_to_cart", product_id="P1"),
            click(anon_at, "D1", "add_to_cart", product_id="P2"),
            click(20, "D1", "login", customer_key="K1"),
        ]
    )
    [t] = res.triggers
    assert t["ts"] == T0 + 10 * MINUTE + ABANDON
    assert t["device_id"] == ("D1" if anon_later else "D0")
    assert [line["product_id"] for line in t["cart"]] == ["P1", "P2"]
    assert t["profile_id"] == res.of("C1")["profile_id"]


@pytest.mark.parametrize("open_side", ["anonymous", "customer"])
def test_merge_episode_is_open_if_either_was(open_side):
    # one side's episode is closed (fired already), the other's is open
    closed, opened = ("D0", "D1") if open_side == "anonymous" else ("D1", "D0")
    res = run(
        [
            crm(-200, "C1", customer_key="K1"),
            click(-190, "D0", "login", customer_key="K1"),
            click(-180, closed, "add_to_cart", product_id="PC"),  # fires at -120
            click(0, opened, "add_to_cart", product_id="PO"),
            click(10, "D1", "login", customer_key="K1"),
        ]
    )
    assert [t["ts"] for t in res.triggers] == [T0 - 120 * MINUTE, T0 + ABANDON]
    assert [line["product_id"] for line in res.triggers[1]["cart"]] == ["PC", "PO"]


@pytest.mark.parametrize("close", ["purchase", "remove_from_cart"])
def test_merge_of_two_closed_episodes_fires_nothing(close):
    # the customer's episode fired (its cart still holds P1); the anonymous one was closed by a
    # purchase or by emptying the cart: the merged episode is closed, whatever the carts hold
    res = run(
        [
            crm(-300, "C1", customer_key="K1"),
            click(-200, "D0", "login", customer_key="K1"),
            click(-200, "D0", "add_to_cart", product_id="P1"),
            click(0, "D1", "add_to_cart", product_id="P2"),
            click(1, "D1", close, product_id="P2", order_id="O1"),
            click(2, "D1", "login", customer_key="K1"),
        ]
    )
    assert [t["ts"] for t in res.triggers] == [T0 - 200 * MINUTE + ABANDON]
    assert res.of("C1")["cart"] == [{"product_id": "P1", "quantity": 1, "price": None}]


def test_cart_abandoned_of_a_merged_away_profile_fires_once_for_the_survivor():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D1", "add_to_cart", product_id="P1"),
            click(5, "D1", "login", customer_key="K1"),
        ]
    )
    [t] = res.triggers
    assert t["profile_id"] == res.of("C1")["profile_id"] and t["customer_id"] == "C1"


def test_shared_device_cart_stays_with_the_first_customer():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            crm(-10, "C2", customer_key="K2"),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "add_to_cart", product_id="P1"),
            click(2, "D1", "login", customer_key="K2"),
            click(3, "D1", "purchase", order_id="O1"),  # C2's purchase does not empty C1's cart
        ]
    )
    [t] = res.triggers
    assert t["customer_id"] == "C1" and t["device_id"] == "D1"


# --- return_visit -----------------------------------------------------------------------------


@pytest.mark.parametrize("away, fires", [(RETURN, True), (RETURN - 1, False), (RETURN + DAY // 2, True)])
def test_return_visit_at_exactly_return_visit_after(away, fires):
    res = run([click(0, "D1", **at(0)), click(0, "D1", **at(away)), click(0, "D1", **at(away + MINUTE))])
    rv = of_type(res, "return_visit")
    if not fires:
        assert rv == []
        return
    [t] = rv
    assert t["days_away"] == away / DAY
    assert t["ts"] == T0 + away and t["device_id"] == "D1"
    assert t["profile_id"] == res.of("D1")["profile_id"] and t["cart"] is None


def test_days_away_is_fractional_days_from_last_activity_before_the_visit():
    res = run(
        [
            click(0, "D1", **at(0)),
            click(0, "D1", **at(20 * MINUTE)),  # the last activity before the visit
            click(0, "D1", **at(20 * MINUTE + 7 * DAY + 6 * HOUR)),
        ]
    )
    [t] = of_type(res, "return_visit")
    assert t["days_away"] == 7.25


def test_last_activity_counts_across_the_profiles_devices():
    events = [
        crm(-10, "C1", customer_key="K1"),
        click(0, "D0", "login", customer_key="K1", **at(0)),
        click(0, "D1", "login", customer_key="K1", **at(MINUTE)),
        click(0, "D1", "page_view", **at(8 * DAY - HOUR)),
        click(0, "D0", "page_view", **at(8 * DAY)),
    ]
    # D1 returns after 8 days of silence on both devices; D0 an hour after D1 was active
    [t] = of_type(run(events), "return_visit")
    assert t["device_id"] == "D1" and t["ts"] == T0 + 8 * DAY - HOUR


def test_return_visit_fires_later_at_a_login_that_merges_the_visit_into_a_customer():
    login_ts = T0 + 10 * DAY + 5 * MINUTE
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D0", "login", customer_key="K1", **at(0)),
            click(0, "D1", "page_view", **at(10 * DAY)),  # anonymous device: no earlier activity
            click(0, "D1", "login", customer_key="K1", ts=login_ts),
            click(0, "D1", "page_view", ts=login_ts + MINUTE),
        ]
    )
    [t] = of_type(res, "return_visit")
    assert t["ts"] == login_ts and t["device_id"] == "D1"
    assert t["days_away"] == 10.0
    assert t["customer_id"] == "C1" and t["profile_id"] == res.of("C1")["profile_id"]


def test_return_visit_fires_when_crm_links_the_visit_key_to_a_customer_with_old_activity():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D0", "login", customer_key="K1", **at(0)),
            click(0, "D1", "page_view", customer_key="K9", **at(9 * DAY)),
            crm(0, "C1", customer_key="K9", ts=T0 + 9 * DAY + MINUTE),
        ]
    )
    [t] = of_type(res, "return_visit")
    assert t["ts"] == T0 + 9 * DAY + MINUTE and t["device_id"] == "D1" and t["days_away"] == 9.0


def test_return_visit_fires_when_a_shared_device_moves_to_a_customer_with_old_activity():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            crm(-10, "C2", customer_key="K2"),
            click(0, "D2", "login", customer_key="K2", **at(0)),
            click(0, "D1", "login", customer_key="K1", **at(9 * DAY - HOUR)),
            click(0, "D1", "page_view", **at(9 * DAY)),  # a new visit; C1 was active an hour ago: no return
            click(0, "D1", "login", customer_key="K2", **at(9 * DAY + MINUTE)),  # the visit moves to C2
        ]
    )
    [t] = of_type(res, "return_visit")
    assert t["customer_id"] == "C2" and t["device_id"] == "D1" and t["ts"] == T0 + 9 * DAY + MINUTE
    assert t["days_away"] == 9.0  # C2's last activity before the visit's start


def test_return_visit_at_most_once_per_visit():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            crm(-10, "C2", customer_key="K2"),
            click(0, "D0", "login", customer_key="K1", **at(0)),
            click(0, "D9", "login", customer_key="K2", **at(0)),
            click(0, "D0", "page_view", **at(8 * DAY)),
            click(0, "D0", "page_view", **at(8 * DAY + MINUTE)),
            click(0, "D0", "login", customer_key="K2", **at(8 * DAY + 2 * MINUTE)),  # moves to C2: same visit
            click(0, "D0", "page_view", **at(16 * DAY + 2 * MINUTE)),  # a new visit returns again
        ]
    )
    rv = sorted(of_type(res, "return_visit"), key=lambda t: t["ts"])  # two profiles: no order between them
    assert [t["ts"] for t in rv] == [T0 + 8 * DAY, T0 + 16 * DAY + 2 * MINUTE]
    assert rv[0]["customer_id"] == "C1" and rv[1]["customer_id"] == "C2"


def test_no_earlier_activity_no_return_visit():
    res = run([click(0, "D1", **at(30 * DAY)), click(0, "D2", **at(0))])
    assert of_type(res, "return_visit") == []


def test_crm_changes_are_not_activity_for_return_visits():
    res = run(
        [
            crm(0, "C1", customer_key="K1", **at(0)),
            crm(0, "C1", lead_status="lead", **at(DAY)),
            click(0, "D1", "login", customer_key="K1", **at(10 * DAY)),
        ]
    )
    assert of_type(res, "return_visit") == []


def test_recent_activity_on_another_device_is_no_return():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D0", "login", customer_key="K1", **at(0)),
            click(0, "D0", "page_view", **at(9 * DAY)),
            click(0, "D1", "login", customer_key="K1", **at(9 * DAY + HOUR)),
        ]
    )
    assert [t["device_id"] for t in of_type(res, "return_visit")] == ["D0"]  # D1 comes back after 1 h


# --- consent ------------------------------------------------------------------------------------


def test_consent_false_no_cart_trigger_and_episode_still_closes():
    res = run(
        [
            crm(-10, "C1", customer_key="K1", marketing_consent=False),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "add_to_cart", product_id="P1"),
            crm(100, "C1", marketing_consent=True),  # the closed episode does not fire later
            click(200, "D1", "page_view"),
        ]
    )
    assert res.triggers == []
    assert res.engine.stats["triggers_suppressed.cart_abandoned"] == 1


def test_consent_false_no_return_visit():
    res = run(
        [
            crm(-10, "C1", customer_key="K1", marketing_consent=False),
            click(0, "D1", "login", customer_key="K1", **at(0)),
            click(0, "D1", **at(8 * DAY)),
            crm(0, "C1", marketing_consent=True, ts=T0 + 8 * DAY + MINUTE),
            click(0, "D1", ts=T0 + 8 * DAY + 2 * MINUTE),  # same visit: at most once, and it was used
        ]
    )
    assert res.triggers == []


def test_unknown_consent_allows_triggers():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "add_to_cart", product_id="P1"),
        ]
    )
    assert res.of("C1")["marketing_consent"] is None
    assert len(res.triggers) == 1


def test_consent_is_read_when_the_trigger_fires():
    res = run(
        [
            crm(-10, "C1", customer_key="K1", marketing_consent=False),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "add_to_cart", product_id="P1"),
            crm(30, "C1", marketing_consent=True),
        ]
    )
    assert len(res.triggers) == 1


def test_consent_of_the_merged_profile_decides():
    res = run(
        [
            crm(-10, "C1", customer_key="K1", marketing_consent=False),
            click(0, "D1", "add_to_cart", product_id="P1"),
            click(1, "D1", "login", customer_key="K1"),
        ]
    )
    assert res.triggers == []


@pytest.mark.parametrize("offset, fires", [(0, False), (1, True)])
def test_consent_revoked_at_the_deadline_comes_before_it(offset, fires):
    deadline = T0 + MINUTE + ABANDON
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "add_to_cart", product_id="P1"),
            crm(0, "C1", marketing_consent=False, ts=deadline + offset),
        ]
    )
    assert (len(res.triggers) == 1) is fires


@pytest.mark.parametrize("offset, fires", [(0, True), (1, False)])
def test_consent_given_at_the_deadline_comes_before_it(offset, fires):
    deadline = T0 + MINUTE + ABANDON
    res = run(
        [
            crm(-10, "C1", customer_key="K1", marketing_consent=False),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "add_to_cart", product_id="P1"),
            crm(0, "C1", marketing_consent=True, ts=deadline + offset),
        ]
    )
    assert (len(res.triggers) == 1) is fires


def test_consent_revoked_at_the_same_ts_as_a_click_applies_first():
    ts = T0 + 8 * DAY
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D1", "login", customer_key="K1", **at(0)),
            click(0, "D1", "page_view", ts=ts, event_id="A-first-by-id"),  # would be a return visit
            crm(0, "C1", marketing_consent=False, ts=ts, change_id="Z-last-by-id"),  # CRM still first
        ]
    )
    assert res.triggers == []
