"""The BG/NBD model: likelihood, P(alive) and expected purchases against hand-computed values and
numerical integration, the fit against Fader, Hardie & Lee (2005) on CDNOW through the dataflow,
model files, and predictions on the profiles of a running engine."""

from __future__ import annotations

import json
import math

import pytest

from profilestream import bgnbd
from profilestream.bgnbd import PAPER_CDNOW, BgNbd
from profilestream.codec import avro
from profilestream.config import ConfigError, load_config
from profilestream.domain.rules import DAY, Rules
from profilestream.domain.scores import ScoreSettings
from support import cdnow, flowkit
from support.scenario import T0, click, crm, run_engine

CDNOW_MODEL = BgNbd(0.243, 4.414, 0.793, 2.426)


# --- the likelihood, by hand ------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, x, t_x, T, expected",
    [
        # x = 0: A1 = α^r, A2 = 1, A3 = (α+T)^-r, so L = (α/(α+T))^r
        ((2.0, 3.0, 0.7, 1.9), 0, 0.0, 5.0, 2 * math.log(3 / 8)),
        # r=α=a=b=1, x=1, t_x=1, T=3: A1 = 1, A2 = Γ(2)Γ(2)/(Γ(1)Γ(3)) = 1/2, A3 = 1/16, A4 = 1/4
        ((1.0, 1.0, 1.0, 1.0), 1, 1.0, 3.0, math.log(0.5 * (1 / 16 + 1 / 4))),
        # r=α=a=b=1, x=2, t_x=2, T=4: A1 = Γ(3) = 2, A2 = Γ(2)Γ(3)/(Γ(1)Γ(4)) = 1/3, A3 = 5^-3, A4 = 1/2 * 3^-3
        ((1.0, 1.0, 1.0, 1.0), 2, 2.0, 4.0, math.log(2 / 3 * (1 / 125 + 1 / 54))),
    ],
)
def test_log_likelihood_equals_the_hand_computed_value(params, x, t_x, T, expected):
    assert bgnbd.log_likelihood(params, [x], [t_x], [T])[0] == pytest.approx(expected, rel=1e-12)


def test_log_likelihood_sums_over_customers_and_peaks_at_the_papers_estimates():
    data = bgnbd.calibration(_cdnow_profiles(), as_of=cdnow.midnight_ms(cdnow.CALIBRATION_END))
    total = float(sum(bgnbd.log_likelihood(tuple(PAPER_CDNOW.values()), data.x, data.t_x, data.T)))
    assert total == pytest.approx(-9582.4, abs=0.1)  # the paper's maximised log-likelihood
    for nudge in (0.97, 1.03):
        moved = (PAPER_CDNOW["r"] * nudge, PAPER_CDNOW["alpha"], PAPER_CDNOW["a"] / nudge, PAPER_CDNOW["b"])
        assert float(sum(bgnbd.log_likelihood(moved, data.x, data.t_x, data.T))) < total


# --- P(alive) and expected purchases ----------------------------------------------------------


def test_p_alive_by_hand():
    model = BgNbd(1.0, 1.0, 1.0, 1.0)
    # 1 / (1 + a/(b+x-1) ((α+T)/(α+t_x))^(r+x)) = 1 / (1 + 1 * (4/2)^2)
    assert model.p_alive(1, 1.0, 3.0) == pytest.approx(1 / 5, rel=1e-12)
    assert model.p_alive(0, 0.0, 50.0) == 1.0  # no repeat purchase: the model cannot have lost them
    # right after a purchase (t_x = T) only the chance of dropping out at that purchase remains
    assert model.p_alive(3, 7.0, 7.0) == pytest.approx(1 / (1 + 1 / 3), rel=1e-12)
    # longer silence, lower P(alive)
    assert CDNOW_MODEL.p_alive(2, 30.0, 38.0) > CDNOW_MODEL.p_alive(2, 10.0, 38.0)


def _posterior(model: BgNbd, x: int, t_x: float, T: float, t: float) -> tuple[float, float]:
    """P(alive) and E[Y(t)] by integrating the individual-level model over the posterior of
    (λ, p): alive at T with weight (1-p)^x λ^x e^(-λT), and while alive E[Y(t) | λ, p] =
    (1 - e^(-λpt)) / p (FHL 2005, section 3). The priors' singular factors λ^(r-1) and p^(a-1)
    are integrated away by substituting λ = v^(1/r) and p = u^(1/a)."""
    from scipy import integrate
    from scipy.special import betaln, gammaln

    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    constant = math.exp(r * math.log(alpha) - gammaln(r) - betaln(a, b)) / (r * a)

    def alive(lam, p):
        return (1 - p) ** x * lam**x * math.exp(-lam * T)

    def likelihood(lam, p):
        return alive(lam, p) + (p * (1 - p) ** (x - 1) * lam**x * math.exp(-lam * t_x) if x > 0 else 0.0)

    def integral(fn):
        def inner(u):
            p = u ** (1 / a)
            return integrate.quad(
                lambda v: fn(v ** (1 / r), p) * math.exp(-alpha * v ** (1 / r)) * (1 - p) ** (b - 1),
                0,
                math.inf,
                limit=200,
                epsabs=0,
                epsrel=1e-11,
            )[0]

        return constant * integrate.quad(inner, 0, 1, limit=200, epsabs=0, epsrel=1e-10)[0]

    z = integral(likelihood)
    return integral(alive) / z, integral(lambda lam, p: alive(lam, p) * -math.expm1(-lam * p * t) / p) / z


@pytest.mark.parametrize("x, t_x, T, t", [(2, 30.43, 38.86, 39.0), (5, 20.0, 30.0, 30 / 7), (0, 0.0, 38.86, 10.0)])
def test_conditional_expectation_and_p_alive_agree_with_numerical_integration(x, t_x, T, t):
    p_alive, expected = _posterior(CDNOW_MODEL, x, t_x, T, t)
    assert CDNOW_MODEL.p_alive(x, t_x, T) == pytest.approx(p_alive, rel=1e-7)
    assert CDNOW_MODEL.expected(t, x, t_x, T) == pytest.approx(expected, rel=1e-7)


def test_expectation_grows_with_the_horizon_and_frequency_and_is_unit_free():
    m = CDNOW_MODEL
    assert m.expected(0, 2, 30.0, 38.0) == 0.0
    assert 0 < m.expected(4, 2, 30.0, 38.0) < m.expected(8, 2, 30.0, 38.0)
    assert m.expected(4, 1, 30.0, 38.0) < m.expected(4, 6, 30.0, 38.0)
    # the same model in days (α scaled by 7) gives the same predictions for the same history
    in_days = BgNbd(m.r, m.alpha * 7, m.a, m.b, unit_days=1.0)
    assert in_days.score_days(2, 210.0, 266.0) == pytest.approx(m.score_days(2, 210.0, 266.0), rel=1e-12)


# --- the fit on CDNOW, through the dataflow ---------------------------------------------------


_PROFILES: list[dict] = []


def _cdnow_profiles() -> list[dict]:
    """The profiles the dataflow makes of the calibration period's purchases (cached)."""
    if not _PROFILES:
        result = flowkit.run_flow(cdnow.purchase_clicks())
        _PROFILES.extend(result.profiles.values())
    return _PROFILES


def test_cdnow_calibration_comes_from_the_profiles():
    profiles = _cdnow_profiles()
    data = bgnbd.calibration(profiles, as_of=cdnow.midnight_ms(cdnow.CALIBRATION_END))
    assert len(profiles) == len(data.x) == 2357 and sum(data.skipped.values()) == 0
    assert sum(data.x) == 2457 and max(data.T) == pytest.approx(272 / 7)  # the paper's 2,457 repeat purchases
    first = next(p for p in profiles if p["device_ids"] == ["cdnow-0001"])
    i = profiles.index(first)
    assert (data.x[i], round(data.t_x[i], 2), round(data.T[i], 2)) == (2, 30.43, 38.86)  # customer 1, paper


def test_fit_on_cdnow_through_the_dataflow_matches_the_paper():
    fit, _data = bgnbd.fit_profiles(_cdnow_profiles(), as_of=cdnow.midnight_ms(cdnow.CALIBRATION_END))
    got = {"r": fit.model.r, "alpha": fit.model.alpha, "a": fit.model.a, "b": fit.model.b}
    for name, paper in PAPER_CDNOW.items():
        assert got[name] == pytest.approx(paper, rel=0.01), (name, got[name], paper)
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.1)
    assert fit.customers == 2357 and fit.model.unit_days == 7.0


def test_calibration_reads_store_json_and_skips_what_it_cannot_use():
    as_of = T0 + 10 * DAY
    records = [
        {"orders": 3, "first_order_ts": T0, "last_order_ts": T0 + 7 * DAY, "updated_at": T0 + 7 * DAY},
        {"orders": 1, "first_order_ts": T0 + DAY, "last_order_ts": T0 + DAY, "updated_at": T0 + 2 * DAY},
        {"orders": 0, "first_order_ts": None, "last_order_ts": None, "updated_at": T0},
        {"orders": 2, "last_order_ts": T0, "updated_at": T0},  # written before first_order_ts existed
        {"orders": 2, "first_order_ts": T0, "last_order_ts": T0 + 11 * DAY, "updated_at": T0 + 11 * DAY},
    ]
    as_json = [
        {k: avro.format_time(v) if k != "orders" and v is not None else v for k, v in r.items()} for r in records
    ]
    for rows in (records, as_json):
        data = bgnbd.calibration(rows, as_of=as_of, unit_days=1.0)
        assert (data.x, data.t_x, data.T) == ([2, 0], [7.0, 0.0], [10.0, 9.0])
        assert data.skipped == {"no_orders": 1, "no_first_order_ts": 1, "after_as_of": 1}
    assert bgnbd.calibration(records, unit_days=1.0).as_of == T0 + 11 * DAY  # default: the latest update


def test_fit_refuses_nothing_to_fit():
    with pytest.raises(ValueError, match="no customers"):
        bgnbd.fit([], [], [])


def test_fit_refuses_one_customer_instead_of_writing_alpha_1e17():
    with pytest.raises(bgnbd.FitError, match=f"1 customer with orders; the model needs at least {bgnbd.MIN_CUSTOMERS}"):
        bgnbd.fit([2], [3.0], [10.0])
    n = bgnbd.MIN_CUSTOMERS - 1
    with pytest.raises(bgnbd.FitError, match=f"{n} customers with orders"):
        bgnbd.fit([1] * n, [2.0] * n, [5.0] * n)


def test_fit_refuses_data_without_repeat_purchases():
    with pytest.raises(bgnbd.FitError, match="no repeat purchases among 30 customers"):
        bgnbd.fit([0] * 30, [0.0] * 30, [float(t) for t in range(1, 31)])
    with pytest.raises(bgnbd.FitError, match="no time between purchases"):
        bgnbd.fit([1] * 10, [0.0] * 10, [0.0] * 10)


def test_fit_refuses_a_fit_that_did_not_converge():
    data = bgnbd.calibration(_cdnow_profiles()[:12], as_of=cdnow.midnight_ms(cdnow.CALIBRATION_END))
    with pytest.raises(bgnbd.FitError, match="the optimiser did not converge: Maximum number of function evaluations"):
        bgnbd.fit(data.x, data.t_x, data.T)


def test_fit_refuses_parameters_that_ran_off(monkeypatch):
    import numpy as np
    import scipy.optimize
    from scipy.optimize import OptimizeResult

    def ran_off(fun, x0, **_):
        x = np.log([0.5, 1.58e17, 0.8, 2.0])
        return OptimizeResult(x=x, fun=fun(x), success=True, message="Optimization terminated successfully.")

    monkeypatch.setattr(scipy.optimize, "minimize", ran_off)
    with pytest.raises(bgnbd.FitError, match=r"ran off to alpha = 1\.58e\+17"):
        bgnbd.fit([1, 0] * 10, [2.0, 0.0] * 10, [5.0] * 20)


def test_fit_on_a_small_cdnow_sample_warns_of_a_boundary_solution():
    data = bgnbd.calibration(_cdnow_profiles()[:100], as_of=cdnow.midnight_ms(cdnow.CALIBRATION_END))
    fit = bgnbd.fit(data.x, data.t_x, data.T)
    assert fit.warnings and fit.warnings[0].startswith("a = ") and "edge of the model" in fit.warnings[0]
    full = bgnbd.fit_profiles(_cdnow_profiles(), as_of=cdnow.midnight_ms(cdnow.CALIBRATION_END))[0]
    assert full.warnings == ()


# --- model files and the running dataflow -----------------------------------------------------


def test_model_file_round_trips_and_config_loads_it(tmp_path):
    path = tmp_path / "model.json"
    CDNOW_MODEL.save(path, customers=2357)
    doc = json.loads(path.read_text())
    assert doc["model"] == "BG/NBD" and doc["customers"] == 2357 and doc["unit_days"] == 7.0
    assert BgNbd.load(path) == CDNOW_MODEL
    rules = load_config(env={"PROFILESTREAM_SCORES_MODEL": str(path)}).rules()
    assert rules.scores.model == CDNOW_MODEL


@pytest.mark.parametrize(
    "content, why",
    [
        ("not json", "not a JSON model file"),
        ('{"model": "Pareto/NBD"}', "not a BG/NBD model file"),
        ('{"model": "BG/NBD", "r": 1, "alpha": 1, "a": 1}', "lacks 'b'"),
        ('{"model": "BG/NBD", "r": -1, "alpha": 1, "a": 1, "b": 1}', "r must be a positive number"),
    ],
)
def test_a_bad_model_file_is_a_configuration_error(tmp_path, content, why):
    path = tmp_path / "model.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=why) as err:
        load_config(env={"PROFILESTREAM_SCORES_MODEL": str(path)}).rules()
    assert err.value.key == "scores.model"


def test_engine_scores_profiles_with_purchases_as_of_their_last_update():
    rules = Rules(scores=ScoreSettings(model=CDNOW_MODEL))
    res = run_engine(
        [
            click(0, "d1", "purchase", order_id="o1", revenue=10.0),
            click(3 * 24 * 60, "d1", "purchase", order_id="o2", revenue=10.0),
            click(10 * 24 * 60, "d1", "purchase", order_id="o3", revenue=10.0),
            click(24 * 24 * 60, "d1"),  # two weeks later, a page view: the record is as of now
            click(0, "d2"),  # no purchase: no prediction
            crm(5, "C1", lead_status="lead"),  # known only to the CRM: nothing either
        ],
        rules,
    )
    buyer = res.of("d1")
    p_alive, expected = CDNOW_MODEL.p_alive(2, 10 / 7, 24 / 7), CDNOW_MODEL.expected(30 / 7, 2, 10 / 7, 24 / 7)
    assert buyer["p_alive"] == pytest.approx(p_alive, rel=1e-12)
    assert buyer["expected_purchases_30d"] == pytest.approx(expected, rel=1e-12)
    assert buyer["first_order_ts"] == T0 and buyer["last_order_ts"] == T0 + 10 * DAY
    for other in (res.of("d2"), res.of("C1")):
        assert other["p_alive"] is None and other["expected_purchases_30d"] is None
    assert res.feed["C1"]["p_alive"] is None and res.feed["C1"]["rfm"] is None
    # without a model there are no predictions
    assert run_engine([click(0, "d1", "purchase", order_id="o1")]).of("d1")["p_alive"] is None


def test_dataflow_scores_with_the_fitted_model():
    events = cdnow.purchase_clicks()[:600]
    flowed = flowkit.run_flow(events, Rules(scores=ScoreSettings(model=CDNOW_MODEL)))
    direct = run_engine(events, Rules(scores=ScoreSettings(model=CDNOW_MODEL)))
    assert flowed.profiles == direct.profiles
    assert all(p["p_alive"] is not None and p["expected_purchases_30d"] > 0 for p in flowed.profiles.values())


# --- `profilestream fit-model`, from the profile store ----------------------------------------


@pytest.mark.broker
def test_fit_model_command_fits_cdnow_from_the_profile_store(config_path, tmp_path, capsys):
    from profilestream import cli
    from support.e2e import produce, run

    clicks = [avro.to_json("clickstream", flowkit.record(c)) for c in cdnow.purchase_clicks()]
    produce(config_path, "clickstream", clicks, tmp_path)
    run(config_path)
    out = tmp_path / "model.json"
    capsys.readouterr()
    assert cli.main(["fit-model", "--config", str(config_path), "--out", str(out), "--as-of", "1997-09-30"]) == 0
    printed = capsys.readouterr().out
    assert "fitted BG/NBD on 2,357 customers (2,457 repeat purchases) as of 1997-09-30T00:00:00.000Z" in printed
    doc = json.loads(out.read_text())
    for name, paper in PAPER_CDNOW.items():
        assert doc[name] == pytest.approx(paper, rel=0.01)
    assert doc["customers"] == 2357 and doc["as_of"] == "1997-09-30T00:00:00.000Z"
    # the fitted file is what the running dataflow scores with
    config_path.write_text(config_path.read_text() + f'\n[scores]\nmodel = "{out}"\n')
    assert cli.main(["profile", "get", "cdnow-0001", "--config", str(config_path)]) == 0  # config loads the model
    assert json.loads(capsys.readouterr().out)["orders"] == 3


@pytest.mark.broker
def test_fit_model_command_without_customers_says_so(config_path, capsys):
    from profilestream import cli

    assert cli.main(["topics", "create", "--config", str(config_path)]) == 0
    assert cli.main(["fit-model", "--config", str(config_path)]) == 1
    assert "no profiles with orders" in capsys.readouterr().err
    assert cli.main(["fit-model", "--config", str(config_path), "--as-of", "soon"]) == 2


@pytest.mark.broker
def test_fit_model_on_one_customer_refuses_and_writes_nothing(config_path, tmp_path, capsys):
    from profilestream import cli
    from support.e2e import produce, run

    clicks = [
        avro.to_json("clickstream", flowkit.record(c)) for c in cdnow.purchase_clicks() if c.device_id == "cdnow-0001"
    ]
    produce(config_path, "clickstream", clicks, tmp_path)
    run(config_path)
    out = tmp_path / "model.json"
    capsys.readouterr()
    assert cli.main(["fit-model", "--config", str(config_path), "--out", str(out)]) == 1
    out_text, err = capsys.readouterr()
    assert not out.exists() and out_text == ""
    assert err.splitlines() == [
        "profilestream: cannot fit the BG/NBD model to the profile store: 1 customer with orders; the model needs "
        f"at least {bgnbd.MIN_CUSTOMERS} (and a few hundred for estimates worth scoring with); no model written"
    ]
