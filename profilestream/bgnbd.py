"""The BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): fitting
its four parameters by maximum likelihood, and scoring one customer with them.

A customer's history is summarised as in the paper:

* `x`: repeat purchases (purchases after the first one);
* `t_x`: time from the first purchase to the last one ("recency");
* `T`: time from the first purchase to the end of observation.

Times are in the model's time unit (`BgNbd.unit_days` days; weeks, as in the paper, by default).
While alive a customer buys at rate λ (gamma(r, α) across customers) and after each purchase dies
with probability p (beta(a, b) across customers). The rate scale α is in the model's time unit; the
other three parameters have no unit, and a fit in days gives the same predictions as one in weeks.

Plain Python with numpy/scipy imported on use, so that the domain can score with a fitted model
without paying for scipy unless a model is configured. `fit_profiles` reads profile records as
they sit in the `profiles` topic or the profile store (JSON or record form).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profilestream.codec.times import parse_time
from profilestream.domain.units import DAY

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray

DAY_MS = DAY
PAPER_CDNOW = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # FHL 2005, table of estimates
A_STEP = 1e-6  # either side of a = 1, where eq. 10 divides by zero (see `BgNbd.expected`)
MIN_CUSTOMERS = 10  # customers with orders below which `fit` refuses: four parameters need more
PARAM_MAX = 1e6  # a fitted parameter above: the optimiser ran off a ridge (`fit` refuses)
PARAM_WARN_BELOW = 1e-6  # below: a boundary solution the data barely pin down (`Fit.warnings`)


class FitError(ValueError):
    """The data cannot be fitted (too few customers, no repeat purchases) or the optimiser did not
    converge to sane parameters; `str()` says which, in words for the user."""


def _logistic(z: float) -> float:
    """1 / (1 + e^-z) without overflow for any z (NaN stays NaN)."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _probability(value: float) -> float | None:
    return value if 0.0 <= value <= 1.0 else None  # False for NaN


def _count(value: float) -> float | None:
    """An expected number of purchases, or None: not finite, or negative beyond rounding (what is
    left when the two terms of eq. 10 cancel in floating point)."""
    if not math.isfinite(value):
        return None
    if value < 0.0:
        return 0.0 if value > -1e-9 else None
    return value + 0.0  # -0.0 is 0


@dataclass(frozen=True, slots=True)
class BgNbd:
    """Fitted parameters. `alpha` is in units of `unit_days` days."""

    r: float
    alpha: float
    a: float
    b: float
    unit_days: float = 7.0

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "a", "b", "unit_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    # --- scoring one customer -----------------------------------------------------------------

    def p_alive(self, x: int, t_x: float, T: float) -> float:
        """P(the customer is still active at T | x, t_x, T) (FHL 2005, eq. 13 of the note). A
        customer without repeat purchases (x = 0) is alive for sure in this model: it assumes
        dropping out can only happen right after a purchase. Computed as the logistic of the
        log-odds, which stays in [0, 1] where the odds themselves overflow (many purchases long
        ago: odds of e^1000 are P = 0, not an OverflowError)."""
        if x == 0:
            return 1.0
        return _logistic(-self._log_dead_odds(x, t_x, T))

    def expected(self, t: float, x: int, t_x: float, T: float) -> float:
        """E[purchases in (T, T + t] | x, t_x, T] (FHL 2005, eq. 10). The formula divides by
        a - 1, though the expectation is continuous at a = 1: there it is the mean of its values
        at 1 -/+ 1e-6 (relative error about 1e-10). Where floating point cannot hold a term
        (huge x, T or parameters) the result may be NaN or infinite: `score_days` turns that
        into None."""
        if t <= 0:
            return 0.0
        if self.a == 1.0:
            return (self._expected(t, x, t_x, T, 1.0 - A_STEP) + self._expected(t, x, t_x, T, 1.0 + A_STEP)) / 2
        return self._expected(t, x, t_x, T, self.a)

    def _expected(self, t: float, x: int, t_x: float, T: float, a: float) -> float:
        from scipy.special import hyp2f1

        r, alpha, b = self.r, self.alpha, self.b
        gauss = float(hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t)))  # float: no numpy warnings
        head = (a + b + x - 1) / (a - 1)
        # ((α+T)/(α+T+t))^(r+x) as the exp of a log that is never positive: no overflow
        body = 1.0 - math.exp((r + x) * (math.log(alpha + T) - math.log(alpha + T + t))) * gauss
        # eq. 10 divides by 1 + [x > 0] (dead odds): that is multiplying by P(alive)
        return float(head * body * (self.p_alive(x, t_x, T) if x > 0 else 1.0))

    def _log_dead_odds(self, x: int, t_x: float, T: float) -> float:
        """log of a/(b+x-1) * ((α+T)/(α+t_x))^(r+x): the odds of having dropped out after the
        last purchase against being alive."""
        return (
            math.log(self.a)
            - math.log(self.b + x - 1)
            + (self.r + x) * (math.log(self.alpha + T) - math.log(self.alpha + t_x))
        )

    def score_days(
        self, x: int, t_x_days: float, T_days: float, horizon_days: float = 30.0
    ) -> tuple[float | None, float | None]:
        """(P(alive), expected purchases in the next `horizon_days`), times given in days. Each is
        None (null in the profile) when it cannot be computed in floating point: profiles'
        numbers come from any valid input (a billion orders, a century of history) and from any
        fitted parameters, and a record must never carry NaN or infinity (issue 11)."""
        u = self.unit_days
        t_x, T = t_x_days / u, T_days / u
        try:
            p_alive = self.p_alive(x, t_x, T)
        except (ArithmeticError, ValueError):
            p_alive = math.nan
        try:
            expected = self.expected(horizon_days / u, x, t_x, T)
        except (ArithmeticError, ValueError):
            expected = math.nan
        return _probability(p_alive), _count(expected)

    # --- files --------------------------------------------------------------------------------

    def to_json(self, **about: Any) -> dict[str, Any]:
        return {"model": "BG/NBD", **asdict(self), **about}

    def save(self, path: str | Path, **about: Any) -> None:
        Path(path).write_text(json.dumps(self.to_json(**about), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BgNbd:
        """Read a file written by `save` (`profilestream fit-model`); ValueError if it is not one."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON model file: {exc}") from None
        if not isinstance(doc, dict) or doc.get("model") != "BG/NBD":
            raise ValueError('not a BG/NBD model file (expected {"model": "BG/NBD", "r": ..., ...})')
        try:
            return cls(doc["r"], doc["alpha"], doc["a"], doc["b"], doc.get("unit_days", 7.0))
        except KeyError as exc:
            raise ValueError(f"model file lacks {exc.args[0]!r}") from None


# --- the likelihood ---------------------------------------------------------------------------


def log_likelihood(
    params: tuple[float, float, float, float], x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> NDArray[np.float64]:
    """Per-customer log-likelihood (FHL 2005, eq. 6), numpy arrays in and out:

    L = A1 A2 (A3 + [x > 0] A4)
    A1 = Γ(r+x) α^r / Γ(r)           A2 = Γ(a+b) Γ(b+x) / (Γ(b) Γ(a+b+x))
    A3 = (α+T)^-(r+x)                A4 = a/(b+x-1) (α+t_x)^-(r+x)
    """
    import numpy as np
    from scipy.special import gammaln

    r, alpha, a, b = params
    xs = np.asarray(x, dtype=np.float64)
    t_xs = np.asarray(t_x, dtype=np.float64)
    Ts = np.asarray(T, dtype=np.float64)
    log_a1 = gammaln(r + xs) - gammaln(r) + r * np.log(alpha)
    log_a2 = gammaln(a + b) + gammaln(b + xs) - gammaln(b) - gammaln(a + b + xs)
    log_a3 = -(r + xs) * np.log(alpha + Ts)
    repeat = xs > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_a4 = np.where(
            repeat, np.log(a) - np.log(np.where(repeat, b + xs - 1, 1.0)) - (r + xs) * np.log(alpha + t_xs), -np.inf
        )
    total: NDArray[np.float64] = log_a1 + log_a2 + np.logaddexp(log_a3, log_a4)
    return total


@dataclass(frozen=True, slots=True)
class Fit:
    model: BgNbd
    log_likelihood: float
    customers: int
    warnings: tuple[str, ...] = ()


def _check_fittable(xs: NDArray[np.float64], t_xs: NDArray[np.float64], Ts: NDArray[np.float64]) -> None:
    """`FitError` for data that identifies no model: the likelihood then has no maximum, and the
    optimiser returns whatever it reached (`alpha = 1.58e17` for one customer)."""
    import numpy as np

    if len(xs) == 0:
        raise FitError("no customers with purchases to fit the model to")
    if len(xs) < MIN_CUSTOMERS:
        raise FitError(
            f"{len(xs)} customer{'s' * (len(xs) != 1)} with orders; the model needs at least {MIN_CUSTOMERS} "
            "(and a few hundred for estimates worth scoring with)"
        )
    if not np.any(xs > 0):
        raise FitError(
            f"no repeat purchases among {len(xs):,} customers (each ordered once): the purchase rate and "
            "the dropout cannot be told apart; fit again once customers have ordered twice"
        )
    if not np.any(t_xs > 0) or not np.any(Ts > 0):
        raise FitError("every purchase falls at one instant: no time between purchases to fit a rate to")


def _check_converged(result: Any, settled: bool) -> tuple[tuple[float, float, float, float], tuple[str, ...]]:
    """The fitted (r, α, a, b) and warnings, or `FitError` with the optimiser's message if it did
    not converge, or if a parameter is not finite or above `PARAM_MAX` (the data do not pin it
    down). A parameter below `PARAM_WARN_BELOW` (a boundary solution: e.g. a -> 0, almost nobody
    drops out, seen on 100 CDNOW customers) is a warning: its predictions are still sound."""
    import numpy as np

    if not result.success or not settled:
        why = result.message if not result.success else "the likelihood still improved after every restart"
        raise FitError(f"the optimiser did not converge: {why}")
    values = [float(v) for v in np.exp(result.x)]
    warnings: list[str] = []
    for name, value in zip(("r", "alpha", "a", "b"), values, strict=True):
        if not math.isfinite(value) or value > PARAM_MAX:
            raise FitError(
                f"the fit ran off to {name} = {value:.3g} (above {PARAM_MAX:g}): the data do not pin "
                "the model down; more customers, or a longer history, are needed"
            )
        if value < PARAM_WARN_BELOW:
            warnings.append(f"{name} = {value:.3g} is at the edge of the model (the data barely pin it down)")
    r, alpha, a, b = values
    return (r, alpha, a, b), tuple(warnings)


def fit(x: ArrayLike, t_x: ArrayLike, T: ArrayLike, unit_days: float = 7.0) -> Fit:
    """Maximum-likelihood estimates of (r, α, a, b) for customers (x, t_x, T) in the model's time
    unit. Optimises the log-parameters (so all four stay positive) with Nelder-Mead, restarted
    from its own answer until the likelihood stops improving.

    Refuses (`FitError`) data too small or degenerate to fit: fewer than `MIN_CUSTOMERS`
    customers, no repeat purchase at all, no time between purchases; and a fit that did not
    converge (scipy's `success` false, the likelihood still improving after 5 restarts) or whose
    parameters are not finite or above `PARAM_MAX`."""
    import numpy as np
    from scipy.optimize import minimize

    xs = np.asarray(x, dtype=np.float64)
    t_xs = np.asarray(t_x, dtype=np.float64)
    Ts = np.asarray(T, dtype=np.float64)
    if np.any(xs < 0) or np.any(t_xs < 0) or np.any(t_xs > Ts) or np.any((xs == 0) & (t_xs != 0)):
        raise ValueError("need x >= 0, 0 <= t_x <= T, and t_x = 0 when x = 0")
    _check_fittable(xs, t_xs, Ts)

    def negative(log_params: NDArray[np.float64]) -> float:
        r, alpha, a, b = (float(v) for v in np.exp(log_params))
        value = -float(np.sum(log_likelihood((r, alpha, a, b), xs, t_xs, Ts)))
        return value if math.isfinite(value) else 1e300

    start = np.zeros(4)
    best: Any = None  # scipy's OptimizeResult (scipy ships no types)
    settled = False
    for _ in range(5):
        result = minimize(
            negative,
            start,
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 20_000, "maxfev": 40_000},
        )
        if best is not None and best.fun - result.fun < 1e-9:
            best = result if result.fun < best.fun else best
            settled = True
            break
        best, start = result, result.x
    if best is None:
        raise RuntimeError("the optimiser ran no rounds")
    (r, alpha, a, b), warnings = _check_converged(best, settled)
    return Fit(BgNbd(r, alpha, a, b, unit_days), -float(best.fun), len(xs), warnings)


# --- from profiles ----------------------------------------------------------------------------


def _ms(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return parse_time(value)  # profile store JSON: ISO-8601 strings


@dataclass(frozen=True, slots=True)
class Calibration:
    """The (x, t_x, T) of every usable profile, in the model's time unit, and what was left out."""

    x: list[int]
    t_x: list[float]
    T: list[float]
    as_of: int
    skipped: dict[str, int]


def calibration(profiles: Iterable[dict[str, Any]], as_of: int | None = None, unit_days: float = 7.0) -> Calibration:
    """Per-profile (x, t_x, T) at `as_of` (epoch ms; default: the latest `updated_at`, i.e. the end
    of the data): x = orders - 1 (repeat purchases), t_x = last_order_ts - first_order_ts and
    T = as_of - first_order_ts. Profiles without orders are not customers yet and are left out;
    so are those whose last order is after `as_of` (their history at `as_of` is not in a profile
    record) and records without `first_order_ts` (written before that field existed)."""
    rows: list[tuple[int, int, int]] = []
    skipped = {"no_orders": 0, "no_first_order_ts": 0, "after_as_of": 0}
    latest = None
    for p in profiles:
        updated = _ms(p.get("updated_at"))
        if updated is not None:
            latest = updated if latest is None else max(latest, updated)
        orders = p.get("orders") or 0
        if orders < 1:
            skipped["no_orders"] += 1
            continue
        first, last = _ms(p.get("first_order_ts")), _ms(p.get("last_order_ts"))
        if first is None or last is None:
            skipped["no_first_order_ts"] += 1
            continue
        rows.append((orders - 1, first, last))
    as_of = latest if as_of is None else as_of
    unit = unit_days * DAY_MS
    x: list[int] = []
    t_x: list[float] = []
    T: list[float] = []
    for repeats, first, last in rows:
        if as_of is None or last > as_of:
            skipped["after_as_of"] += 1
            continue
        x.append(repeats)
        t_x.append((last - first) / unit if repeats else 0.0)
        T.append((as_of - first) / unit)
    return Calibration(x, t_x, T, as_of or 0, skipped)


def fit_profiles(
    profiles: Iterable[dict[str, Any]], as_of: int | None = None, unit_days: float = 7.0
) -> tuple[Fit, Calibration]:
    data = calibration(profiles, as_of, unit_days)
    return fit(data.x, data.t_x, data.T, unit_days), data


__all__ = [
    "MIN_CUSTOMERS",
    "PAPER_CDNOW",
    "PARAM_MAX",
    "PARAM_WARN_BELOW",
    "BgNbd",
    "Calibration",
    "Fit",
    "FitError",
    "calibration",
    "fit",
    "fit_profiles",
    "log_likelihood",
]
