"""Issue 11, finding 2 (the arithmetic side): whatever valid input comes in, every record the
engine builds fits its output schema and carries no NaN or infinity.

Valid means what the codec lets through (docs/topics.md "Input validation"): `quantity` 1 to 100,000, `price`
finite and not negative, `revenue` finite. Sums of such values can still leave their types: two
revenues of 1e308 add up to infinity, 21,475 adds of 100,000 to more than an Avro int. The engine
saturates those sums at the type's limit (and counts it); BG/NBD predictions that cannot be
computed in floating point are null.
"""

from __future__ import annotations

import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profilestream.bgnbd import PAPER_CDNOW, BgNbd
from profilestream.codec import avro
from profilestream.domain.cart import Cart
from profilestream.domain.engine import Engine
from profilestream.domain.events import Click, CrmChange, order_key
from profilestream.domain.profile import Profile
from profilestream.domain.rules import Rules
from profilestream.domain.scores import Scorer, ScoreSettings
from support.scenario import DAY, MINUTE, T0, Result, click, crm, run

INT_MAX = 2**31 - 1
DOUBLE_MAX = sys.float_info.max
MODEL = BgNbd(**PAPER_CDNOW)


def non_finite(value, path="") -> list[str]:
    """Paths of every float in a record that is NaN or infinite."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in non_finite(v, f"{path}.{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in non_finite(v, f"{path}[{i}]")]
    return []


def assert_encodable(res: Result) -> None:
    for out in res.outputs:
        if out.value is None:
            continue
        avro.encode(out.topic, out.value)  # raises when a value does not fit its type
        assert non_finite(out.value) == [], (out.topic, out.value)


# --- revenue ------------------------------------------------------------------------------------


def test_revenue_sums_saturate_at_the_largest_double_and_are_counted():
    res = run(
        [
            click(0, "D1", "purchase", order_id="O1", revenue=1e308),
            click(1, "D1", "purchase", order_id="O2", revenue=1e308),
            click(2, "D2", "purchase", order_id="O3", revenue=-1e308),
            click(3, "D2", "purchase", order_id="O4", revenue=-1e308),
        ]
    )
    assert res.of("D1")["revenue"] == DOUBLE_MAX and res.of("D1")["rfm"]["revenue"] == DOUBLE_MAX
    assert res.of("D2")["revenue"] == -DOUBLE_MAX
    assert res.engine.stats["clamped.revenue"] == 2
    assert_encodable(res)


def test_revenues_saturate_when_profiles_merge():
    res = run(
        [
            crm(-10, "C1", customer_key="K1"),
            click(0, "D1", "login", customer_key="K1"),
            click(1, "D1", "purchase", order_id="O1", revenue=1.5e308),
            click(2, "D2", "purchase", order_id="O2", revenue=1.5e308),
            click(3, "D2", "login", customer_key="K1"),
        ]
    )
    p = res.of("C1")
    assert p["revenue"] == DOUBLE_MAX and p["orders"] == 2 and p["device_ids"] == ["D1", "D2"]
    assert res.engine.stats["clamped.revenue"] == 1
    assert_encodable(res)


def test_a_saturated_revenue_still_moves_back_with_a_refund():
    res = run(
        [
            click(0, "D1", "purchase", order_id="O1", revenue=1e308),
            click(1, "D1", "purchase", order_id="O2", revenue=1e308),
            click(2, "D1", "purchase", order_id="O3", revenue=-1e308),
        ]
    )
    assert res.of("D1")["revenue"] == DOUBLE_MAX - 1e308


# --- cart quantities ----------------------------------------------------------------------------


def test_the_poison_pill_two_adds_of_the_largest_int_clamp_the_line():
    """Issue 11, finding 2: two adds of 2147483647 made 4294967294, which no Avro int holds."""
    res = run(
        [
            click(0, "D1", "add_to_cart", product_id="P1", quantity=INT_MAX),
            click(1, "D1", "add_to_cart", product_id="P1", quantity=INT_MAX),
        ]
    )
    assert res.of("D1")["cart"] == [{"product_id": "P1", "quantity": INT_MAX, "price": None}]
    [t] = res.triggers
    assert t["cart"][0]["quantity"] == INT_MAX
    assert res.engine.stats["clamped.quantity"] == 1
    assert_encodable(res)


def test_many_valid_adds_of_one_product_clamp_at_the_largest_int_and_removes_count_down_from_it():
    adds = [click(i * 0.01, "D1", "add_to_cart", product_id="P1", quantity=100_000, price=1e308) for i in range(21_475)]
    res = run([*adds, click(300, "D1", "remove_from_cart", product_id="P1", quantity=100000)])
    line = res.of("D1")["cart"][0]
    assert line["quantity"] == INT_MAX - 100_000 and line["price"] == 1e308
    assert res.engine.stats["clamped.quantity"] == 1
    assert_encodable(res)


def test_through_the_dataflow_many_valid_adds_encode():
    """The dataflow wrote nothing for anyone when one record did not encode: now it fits."""
    from support import flowkit

    adds = [click(i * 0.01, "D1", "add_to_cart", product_id="P1", quantity=100_000) for i in range(21_475)]
    res = flowkit.run_flow([*adds, click(0, "D2", "page_view")], batch=1000)
    assert res.of("D1")["cart"][0]["quantity"] == INT_MAX and res.has("D2")
    assert [t["cart"][0]["quantity"] for t in res.triggers] == [INT_MAX]
    assert res.dead_letters == []


def test_carts_that_add_up_on_a_merge_clamp():
    cart, other = Cart(), Cart()
    cart.add("P1", INT_MAX - 5, None)
    other.add("P1", 10, 2.0)
    assert cart.absorb(other) == 1
    assert cart.lines["P1"].quantity == INT_MAX and cart.lines["P1"].price == 2.0


@pytest.mark.parametrize(
    "x, t_x, T",
    [
        (10**9, 1.0, 2.0),
        (10**9, 0.0, 1e7),
        (10**6, 1e5, 1e6),
        (2**62, 1e6, 1e7),
        (10**9, 1e7, 1e7),
        (0, 0.0, 1e12),
        (1, 0.0, 1e12),
        (5, 1.0, 1.0),
        (0, 0.0, 0.0),
        (3, 0.0, 0.0),
    ],
)
@pytest.mark.parametrize(
    "model",
    [
        MODEL,
        BgNbd(r=1e300, alpha=1e-300, a=1.0, b=1e-300),
        BgNbd(r=1e-300, alpha=1e300, a=1e300, b=1e300),
        BgNbd(r=0.24, alpha=4.4, a=1.0, b=2.4),
        BgNbd(r=0.24, alpha=4.4, a=1e-300, b=1e300),
        BgNbd(r=50, alpha=1e-9, a=0.5, b=0.5),
    ],
    ids=["cdnow", "huge-r", "huge-alpha", "a-is-one", "tiny-a", "tiny-alpha"],
)
def test_bgnbd_predictions_are_finite_and_in_range_or_null(model, x, t_x, T):
    p_alive, expected = model.score_days(x, t_x, T, 30.0)
    assert p_alive is None or (math.isfinite(p_alive) and 0.0 <= p_alive <= 1.0)
    assert expected is None or (math.isfinite(expected) and expected >= 0.0)


def test_bgnbd_with_a_equal_to_one_gives_the_limit_of_its_neighbours():
    """a = 1 divides by zero in eq. 10; the expectation is continuous there."""
    at_one = BgNbd(r=0.24, alpha=4.4, a=1.0, b=2.4).score_days(3, 20.0, 40.0, 30.0)[1]
    below = BgNbd(r=0.24, alpha=4.4, a=1.0 - 1e-4, b=2.4).score_days(3, 20.0, 40.0, 30.0)[1]
    above = BgNbd(r=0.24, alpha=4.4, a=1.0 + 1e-4, b=2.4).score_days(3, 20.0, 40.0, 30.0)[1]
    assert at_one is not None and min(below, above) <= at_one <= max(below, above)


def test_bgnbd_ordinary_predictions_are_unchanged():
    p, e = MODEL.score_days(4, 60.0, 200.0, 30.0)
    assert p == pytest.approx(MODEL.p_alive(4, 60 / 7, 200 / 7), rel=1e-12)
    assert e == pytest.approx(MODEL.expected(30 / 7, 4, 60 / 7, 200 / 7), rel=1e-12)


def test_scores_of_extreme_profiles_are_finite():
    scorer = Scorer(ScoreSettings(model=MODEL))
    for revenue in (DOUBLE_MAX, -DOUBLE_MAX, 0.0):
        p = Profile(
            "p",
            orders=10**9,
            revenue=revenue,
            first_order_ts=0,
            last_order_ts=T0,
            first_seen=0,
            last_seen=T0,
            updated_at=T0 + 100 * 365 * DAY,
            visits=10**12,
            page_views=10**15,
        )
        assert non_finite(scorer.score(p)) == []
        avro.encode("profiles", p.record(scorer.score(p)))


# --- the property: adversarial but valid events, every output encodes -----------------------------

PRICES = st.one_of(
    st.none(), st.sampled_from([0.0, 1e-308, 5e-324, 1.0, 1e300, 1e308, DOUBLE_MAX]), st.floats(0, DOUBLE_MAX)
)
REVENUES = st.one_of(
    st.none(),
    st.sampled_from([0.0, 1e308, -1e308, DOUBLE_MAX, -DOUBLE_MAX, 5e-324]),
    st.floats(-DOUBLE_MAX, DOUBLE_MAX),
)
QUANTITIES = st.one_of(st.none(), st.sampled_from([1, 100_000]), st.integers(1, 100_000))
STEPS = st.sampled_from([0, 1, MINUTE, 31 * MINUTE, 2 * 60 * MINUTE, 8 * DAY, 400 * DAY, 30 * 365 * DAY])
KINDS = ["add_to_cart"] * 6 + ["remove_from_cart", "purchase", "purchase", "login", "page_view", "checkout"]


@st.composite
def hostile_shops(draw) -> list:
    """A few devices and customers; every click type that does arithmetic, with the extreme valid
    values; and perhaps one burst of adds of 100,000 of one product (enough for more than an
    Avro int), spread over two devices whose carts may add up when they log in as one customer."""
    ts = T0
    events: list = []
    for i in range(draw(st.integers(1, 60))):
        ts += draw(STEPS)
        if draw(st.integers(0, 9)) == 0:
            events.append(
                CrmChange(
                    f"c{i}",
                    ts,
                    draw(st.sampled_from(["C0", "C1"])),
                    "upsert",
                    customer_key=draw(st.sampled_from(["K0", "K1", None])),
                    order_id=draw(st.sampled_from(["O0", "O1", None])),
                )
            )
            continue
        kind = draw(st.sampled_from(KINDS))
        events.append(
            Click(
                f"e{i}",
                ts,
                draw(st.sampled_from(["D0", "D1", "D2"])),
                kind,
                customer_key=draw(st.sampled_from(["K0", "K1"])) if kind == "login" else None,
                product_id="P0" if kind in ("add_to_cart", "remove_from_cart") else None,
                price=draw(PRICES),
                quantity=draw(QUANTITIES),
                order_id=f"O{i % 3}" if kind == "purchase" else None,
                revenue=draw(REVENUES) if kind == "purchase" else None,
            )
        )
    burst = draw(st.sampled_from([0, 0, 21_475, 30_000]))
    start = T0 + draw(st.integers(0, 3)) * DAY
    events += [
        Click(f"b{j}", start + j, f"D{j % 2}", "add_to_cart", product_id="P0", quantity=100_000, price=DOUBLE_MAX)
        for j in range(burst)
    ]
    return sorted(events, key=order_key)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile_shops(), st.sampled_from(["static", "auto"]))
def test_every_output_of_adversarial_but_valid_input_encodes_and_is_finite(events, mode):
    rules = Rules(scores=ScoreSettings(mode=mode, model=MODEL))
    engine = Engine(rules)
    engine.expect(["p0"], 0)
    out = []
    for start in range(0, len(events), 5000):
        out += engine.feed([("p0", e) for e in events[start : start + 5000]], now=0)
    out += engine.finish(now=0)
    res = Result(out, engine)
    assert_encodable(res)
    for p in res.profiles.values():
        assert all(1 <= line["quantity"] <= INT_MAX for line in p["cart"])
