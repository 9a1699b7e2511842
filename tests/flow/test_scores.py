"""RFM and RFE on the profile: raw values, static bands, and auto mode's sketch-based tertiles."""

from __future__ import annotations

import bisect
import pickle
import random

import pytest

from profilestream.config import ConfigError, load_config
from profilestream.domain.engine import Engine
from profilestream.domain.profile import Profile
from profilestream.domain.rules import DAY, Rules
from profilestream.domain.scores import (
    DEFAULT_SCORER,
    Band,
    Distribution,
    Population,
    Scorer,
    ScoreSettings,
    rfe_values,
    rfm_values,
)
from profilestream.scoring.kll import KllSketch
from support import flowkit
from support.scenario import T0, click, crm, erase, run_engine

AUTO = Rules(scores=ScoreSettings(mode="auto"))


# --- bands ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, up, down", [(0, 1, 3), (1.99, 1, 3), (2, 2, 2), (3, 2, 2), (4, 2, 2), (4.01, 3, 1)])
def test_band_scores_below_between_inclusive_and_above(value, up, down):
    band = Band(2, 4)
    assert band.score(value, higher_is_better=True) == up
    assert band.score(value, higher_is_better=False) == down


def test_band_needs_ordered_non_negative_ends():
    for low, high in ((3, 2), (-1, 2), (0, float("inf"))):
        with pytest.raises(ValueError):
            Band(low, high)


# --- values and scores on the profile ---------------------------------------------------------


def test_rfm_and_rfe_on_the_profile_as_of_its_last_update():
    res = run_engine(
        [
            click(0, "d1", "page_view"),
            click(1, "d1", "purchase", order_id="o1", revenue=40.0),
            click(2 * 24 * 60, "d1", "purchase", order_id="o2", revenue=30.0),  # day 2
            click(40 * 24 * 60, "d1", "page_view"),  # day 40: a third visit, no order for 38 days
            click(40 * 24 * 60, "d1", "page_view"),
        ]
    )
    p = res.of("d1")
    assert p["rfm"] == {
        "days_since_last_order": 38.0,
        "orders": 2,
        "revenue": 70.0,
        "recency": 2,
        "frequency": 2,
        "monetary": 2,
        "code": "222",
    }
    assert p["rfe"] == {
        "days_since_last_visit": 0.0,
        "visits": 3,
        "page_views": 3,
        "recency": 3,
        "frequency": 2,
        "engagement": 1,
        "code": "321",
    }
    assert p["first_order_ts"] == T0 + 60_000 and p["last_order_ts"] == T0 + 2 * DAY


def test_no_orders_no_rfm_and_no_clicks_no_rfe():
    res = run_engine([click(0, "d1"), crm(0, "C1", lead_status="lead")])
    assert res.of("d1")["rfm"] is None and res.of("d1")["rfe"]["visits"] == 1
    assert res.of("C1")["rfm"] is None and res.of("C1")["rfe"] is None
    assert res.feed["C1"]["rfm"] is None and res.feed["C1"]["rfe"] is None


def test_crm_change_after_the_last_click_moves_the_reference_time():
    """A CRM update is not activity, but it is an update: days since the last visit grow."""
    res = run_engine(
        [click(0, "d1", customer_key="k1"), crm(10 * 24 * 60, "C1", customer_key="k1", lead_status="sale")]
    )
    p = res.of("C1")
    assert p["rfe"]["days_since_last_visit"] == 10.0 and p["rfe"]["recency"] == 2
    assert res.feed["C1"]["rfe"] == p["rfe"] and res.feed["C1"]["rfm"] is None


def test_configured_bands_change_the_scores():
    rules = load_config(
        env={
            "PROFILESTREAM_SCORES_RFM_FREQUENCY": "1,1",
            "PROFILESTREAM_SCORES_RFE_ENGAGEMENT": "[0, 0]",
            "PROFILESTREAM_SCORES_RFM_MONETARY": "0,5",
        }
    ).rules()
    p = run_engine([click(0, "d1"), click(1, "d1", "purchase", order_id="o1", revenue=9.5)], rules).of("d1")
    assert (p["rfm"]["frequency"], p["rfm"]["monetary"], p["rfe"]["engagement"]) == (2, 3, 3)


def test_merge_adds_up_the_values_and_keeps_the_first_order():
    res = run_engine(
        [
            click(0, "phone", "purchase", order_id="o1", revenue=100.0),
            click(60, "laptop", "purchase", order_id="o2", revenue=200.0),
            click(120, "laptop", "login", customer_key="k1"),
            click(121, "phone", "login", customer_key="k1"),
        ]
    )
    p = res.of("k1")
    assert p["first_order_ts"] == T0 and p["rfm"]["orders"] == 2 and p["rfm"]["revenue"] == 300.0
    assert p["rfm"]["monetary"] == 3


def test_profile_record_scores_with_the_defaults_when_not_given():
    profile = Profile(
        "p1",
        orders=1,
        revenue=10.0,
        last_order_ts=T0,
        first_order_ts=T0,
        last_seen=T0,
        first_seen=T0,
        visits=1,
        updated_at=T0 + DAY,
    )
    record = profile.record()
    assert record["rfm"] == DEFAULT_SCORER.score(profile)["rfm"] and record["rfm"]["days_since_last_order"] == 1.0
    assert profile.crm_feed_record()["rfe"] == record["rfe"]


@pytest.mark.parametrize(
    "env, key",
    [
        ({"PROFILESTREAM_SCORES_MODE": "fancy"}, "scores.mode"),
        ({"PROFILESTREAM_SCORES_RFM_MONETARY": "100,50"}, "scores.rfm_monetary"),
        ({"PROFILESTREAM_SCORES_RFE_FREQUENCY": "a,b"}, "scores.rfe_frequency"),
        ({"PROFILESTREAM_SCORES_SKETCH_K": "4"}, "scores.sketch_k"),
        ({"PROFILESTREAM_SCORES_MODEL": "/nonexistent/model.json"}, "scores.model"),
    ],
)
def test_bad_scores_configuration_names_the_key(env, key):
    with pytest.raises(ConfigError) as err:
        load_config(env=env).rules()
    assert err.value.key == key


def test_scores_section_from_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[scores]\nmode = "auto"\nrfm_recency_days = [14, 60.5]\nsketch_k = 400\n')
    scores = load_config(str(path), env={}).rules().scores
    assert (scores.mode, scores.rfm_recency_days, scores.sketch_k) == ("auto", Band(14, 60.5), 400)


# --- auto mode: the sketch against exact tertiles ---------------------------------------------


def _exact_rank(sorted_values: list[float], v: float) -> tuple[float, float]:
    """(fraction < v, fraction <= v) of the population."""
    n = len(sorted_values)
    return bisect.bisect_left(sorted_values, v) / n, bisect.bisect_right(sorted_values, v) / n


def _within(dist: Distribution, live: list[float], error: float) -> None:
    exact = sorted(live)
    for p, q in zip((1 / 3, 2 / 3), dist.quantiles((1 / 3, 2 / 3)), strict=False):
        below, upto = _exact_rank(exact, q)
        assert below <= p + error and upto >= p - error, (p, q, below, upto, error)


def test_tertiles_of_a_known_population_within_the_sketchs_error():
    rng = random.Random(7)
    dist = Distribution(lambda: KllSketch(200))
    values = [rng.lognormvariate(3, 1.2) for _ in range(60_000)]
    for v in values:
        dist.add(v)
    error = dist.added.rank_error()
    assert dist.added._sketch.is_estimation_mode() and 0.01 < error < 0.02
    _within(dist, values, error)


def test_tertiles_follow_retractions_within_the_stated_error_bound():
    """Values that change (a profile emitted again) or leave (merged, erased): the estimate is
    n_in F_in - n_out F_out, with rank error at most e_in n_in / n + e_out n_out / n."""
    rng = random.Random(11)
    dist = Distribution(lambda: KllSketch(200))
    live = {i: rng.expovariate(1 / 50) for i in range(20_000)}
    for v in live.values():
        dist.add(v)
    for _ in range(10_000):  # half the population moves up, away from where it started
        i = rng.randrange(20_000)
        dist.retract(live[i])
        live[i] = live[i] * 3 + 100
        dist.add(live[i])
    for i in rng.sample(sorted(live), 2_000):
        dist.retract(live.pop(i))
    n = dist.n
    assert n == len(live)
    error = (dist.added.rank_error() * dist.n_added + dist.removed.rank_error() * dist.n_removed) / n
    _within(dist, list(live.values()), error)
    naive = sorted(live.values())  # the sketch must do better than ignoring the retractions
    assert abs(_exact_rank(naive, dist.quantiles([0.5])[0])[0] - 0.5) <= error


class ItemsOnly:
    """A sketch with only the protocol's two methods: `Distribution` walks its items."""

    def __init__(self):
        self.inner = KllSketch(2000)

    def update(self, value):
        self.inner.update(value)

    def weighted_items(self):
        return self.inner.weighted_items()


def test_rank_search_and_item_walk_agree_with_exact_quantiles():
    rng = random.Random(3)
    fast, walk = Distribution(lambda: KllSketch(2000)), Distribution(ItemsOnly)
    live = {i: float(rng.randint(0, 60)) for i in range(900)}  # ties, in exact mode
    for dist in (fast, walk):
        for v in live.values():
            dist.add(v)
    for i in range(0, 900, 3):
        for dist in (fast, walk):
            dist.retract(live[i])
        live[i] = live[i] + 30
        for dist in (fast, walk):
            dist.add(live[i])
    exact = sorted(live.values())
    ps = (0.001, 1 / 3, 0.5, 2 / 3, 1.0)
    expected = [next(v for v in exact if bisect.bisect_right(exact, v) >= p * len(exact)) for p in ps]
    assert fast.quantiles(ps) == walk.quantiles(ps) == expected


def test_small_population_is_exact_and_ties_score_medium():
    dist = Distribution(lambda: KllSketch(200))
    for v in (1, 1, 2, 3, 5, 8):
        dist.add(v)
    assert dist.quantiles((1 / 3, 2 / 3)) == [1, 3]
    for v in range(1, 10):
        dist.add(v)
    dist.reset(range(1, 10))
    assert dist.quantiles((1 / 3, 2 / 3)) == [3, 6]
    assert Distribution(lambda: KllSketch(200)).quantiles([0.5]) is None


def test_population_rebuilds_when_retractions_pile_up():
    population = Population(lambda: KllSketch(200))  # exact at this size
    for i in range(100):
        population.observe(f"p{i}", (1.0, float(i), 10.0), None)
    for round_ in range(20):  # every profile emitted again and again
        for i in range(100):
            population.observe(f"p{i}", (1.0, float(i + round_), 10.0), None)
    orders = population.dists["rfm_frequency"]
    assert orders.n == 100 and orders.n_removed * 2 <= orders.n
    assert population.dists["rfe_frequency"].n == 0
    assert population.bands()["rfm_frequency"] == Band(19 + 33, 19 + 66)


def test_tertiles_are_recomputed_once_one_percent_of_the_population_moved():
    population = Population(lambda: KllSketch(2000))  # exact at this size
    for i in range(1000):
        population.observe(f"p{i}", None, (0.0, 1.0, float(i)))
    first = population.bands()
    assert first["rfe_engagement"] == Band(333, 666)
    for i in range(9):  # 9 changes of 1,000: the tertiles stand
        population.observe(f"p{i}", None, (0.0, 1.0, 5000.0))
    assert population.bands() is first
    population.observe("p9", None, (0.0, 1.0, 5000.0))  # the 10th: recomputed
    assert population.bands() is not first and population.bands()["rfe_engagement"] == Band(343, 676)


def test_auto_mode_scores_by_the_tertiles_of_the_live_profiles():
    """Nine shoppers with 1..9 orders, flushed together: tertiles 3 and 6."""
    scorer = Scorer(ScoreSettings(mode="auto"))
    shoppers = [
        Profile(f"p{n}", orders=n, revenue=10.0 * n, last_order_ts=T0, first_order_ts=T0, updated_at=T0)
        for n in range(1, 10)
    ]
    scorer.observe(shoppers)
    assert scorer.bands()["rfm_frequency"] == Band(3, 6) and scorer.bands()["rfm_monetary"] == Band(30, 60)
    assert [scorer.score(p)["rfm"]["frequency"] for p in shoppers] == [1, 1, 2, 2, 2, 2, 3, 3, 3]
    assert "rfe_frequency" not in scorer.population.bands()  # nobody clicked: the configured band stays
    scorer.observe([], gone=["p1", "p2", "p3"])  # merged away or erased: they leave the population
    assert scorer.bands()["rfm_frequency"] == Band(5, 7)


def test_engine_population_follows_merges_and_erasures():
    res = run_engine(
        [
            click(0, "d1", "purchase", order_id="o1", revenue=10.0),
            click(1, "d2", "purchase", order_id="o2", revenue=20.0),
            click(2, "d3", "purchase", order_id="o3", revenue=30.0),
            crm(3, "C1", customer_key="k1"),
            click(4, "d1", "login", customer_key="k1"),  # d1's profile merges into C1's
            click(5, "d2", "login", customer_key="k2"),
            crm(6, "C2", customer_key="k2"),  # k2's profile merges into C2's
            erase(7, "C2"),
        ],
        AUTO,
    )
    population = res.engine.scorer.population
    assert set(population.values) == set(res.profiles)
    live_buyers = sum(1 for p in res.profiles.values() if p["orders"])
    assert population.dists["rfm_frequency"].n == live_buyers == 2
    assert population.dists["rfe_frequency"].n == sum(1 for p in res.profiles.values() if p["last_seen"] is not None)


def test_auto_mode_engine_pickles_for_snapshots_and_goes_on():
    engine = Engine(AUTO)
    engine.expect(["p0"], 0)
    engine.feed([("p0", click(i, f"d{i % 5}", "purchase", order_id=f"o{i}", revenue=float(i))) for i in range(50)], 0)
    restored = pickle.loads(pickle.dumps(engine))
    assert restored.scorer.bands() == engine.scorer.bands()
    out = restored.finish(0)
    assert out and all(o.value["rfm"] is not None for o in out if o.topic == "profiles")


def test_a_resumed_engine_takes_new_score_settings_and_keeps_its_population():
    from profilestream.bgnbd import BgNbd

    engine = Engine(AUTO)
    engine.expect(["p0"], 0)
    engine.feed([("p0", click(i, f"d{i % 5}", "purchase", order_id=f"o{i}", revenue=float(i))) for i in range(50)], 0)
    restored = pickle.loads(pickle.dumps(engine))
    population = restored.scorer.population
    model = BgNbd(0.243, 4.414, 0.793, 2.426)
    restored.use_scores(ScoreSettings(mode="auto", model=model))
    assert restored.scorer.population is population and restored.scorer.settings.model == model
    out = [o.value for o in restored.finish(0) if o.topic == "profiles"]
    assert out and all(v["p_alive"] is not None for v in out)
    restored.use_scores(ScoreSettings())  # back to static bands: no population
    assert restored.scorer.population is None


def test_auto_mode_through_the_dataflow():
    events = [
        click(i * 7, f"d{i % 12}", "purchase", order_id=f"o{i}", revenue=5.0 * i)
        if i % 3 == 0
        else click(i * 7, f"d{i % 12}")
        for i in range(120)
    ]
    res = flowkit.run_flow(events, AUTO)
    assert len(res.profiles) == 12
    assert {p["rfm"]["frequency"] for p in res.profiles.values() if p["rfm"]} <= {1, 2, 3}
    assert all(p["rfe"] is not None for p in res.profiles.values())


def test_values_helpers_handle_missing_activity():
    assert rfm_values(Profile("p")) is None and rfe_values(Profile("p")) is None
