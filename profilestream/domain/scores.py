"""Customer value on the profile: RFM and RFE scores and BG/NBD predictions.

* **RFM** (profiles with at least one web order): days since the last order, number of orders,
  revenue. **RFE** (profiles with at least one click): days since the last activity, visits, page
  views. Each dimension is scored 1 (poor), 2 (medium) or 3 (good) against a band `(low, high)`:
  for the counts and the revenue a value below `low` scores 1, above `high` 3, and from `low` to
  `high` inclusive 2; for the days it is the other way round (fewer days is better).
* The bands come from the configuration (`mode = "static"`), or (`mode = "auto"`) are the
  tertiles of the current profile population: `low` the 1/3 quantile and `high` the 2/3 quantile
  of the values that the live profiles' latest records carry. A value tied with a tertile
  therefore scores 2, which keeps skewed counts sensible (when most customers have one order, one
  order is "medium" and more is "good").
* **Predictions** (profiles with orders, when a BG/NBD model is configured): P(alive) and the
  expected number of purchases in the next 30 days, with x = orders - 1, t_x = last - first order.

Reference time. "Days since" and the model's T are measured at the profile's `updated_at`: the
event time of the profile's last update, never the wall clock. Every value is therefore "as of
the profile's last update", and the same input gives the same scores however it is batched,
partitioned or replayed (in static mode; see below). A profile whose last update was a click has
0 days since its last activity. Records are not re-emitted as time passes or the population moves:
a consumer that needs today's recency recomputes it from `last_seen` / `last_order_ts`.

Auto mode keeps one KLL quantile sketch (Apache DataSketches) per dimension, updated with each
profile's values when the profile is emitted, and a second sketch of retracted values: a profile's
previous values are retracted when it is emitted again, merged away or erased, so the tertiles are
those of the live profiles, not of every record ever emitted. The estimated count of values <= v
is `n_in * F_in(v) - n_out * F_out(v)`; its rank error is the sketch's (about 1.3% at k = 200,
99% confidence) times `(n_in + n_out) / n`, and the sketches are rebuilt from the live values
whenever the retracted weight passes half the live count, which bounds that factor by 2 at an
amortised cost of a few sketch updates per emission. The tertiles themselves are recomputed once
the population has changed by 1% of its size since they were last computed (a bisection over
the sketches' rank functions), so they trail it by at most that much in rank. The sketches'
compaction is randomised, so in auto mode scores near a tertile can differ between runs.

Nothing here knows Kafka, Bytewax or any library outside the standard one: the sketch is injected
(`ScoreSettings.sketch`; the shell's is `profilestream.scoring.kll.KllSketch`, which wraps
`datasketches.kll_doubles_sketch`), and without one auto mode keeps the values exactly
(`ExactSketch`). The purchase model is reached through `PurchaseModel`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from .units import DAY as DAY_MS

HORIZON_DAYS = 30.0
TERTILES = (1 / 3, 2 / 3)
MODES = ("static", "auto")

# Dimensions: (name in the config and the population, higher is better?)
RFM_DIMENSIONS = (("rfm_recency_days", False), ("rfm_frequency", True), ("rfm_monetary", True))
RFE_DIMENSIONS = (("rfe_recency_days", False), ("rfe_frequency", True), ("rfe_engagement", True))


@dataclass(frozen=True, slots=True)
class Band:
    """Scores 1 below `low`, 2 from `low` to `high` inclusive, 3 above `high` (reversed for days)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low < 0 or self.low > self.high:
            raise ValueError(f"need 0 <= low <= high, got [{self.low}, {self.high}]")

    def score(self, value: float, higher_is_better: bool) -> int:
        if value < self.low:
            return 1 if higher_is_better else 3
        if value > self.high:
            return 3 if higher_is_better else 1
        return 2


class PurchaseModel(Protocol):
    """What the scorer asks of a fitted purchase model (the shell's BG/NBD, `profilestream.bgnbd`):
    (P(alive), expected purchases within `horizon_days`) of a customer with `x` repeat purchases,
    the last `t_x_days` after the first, observed for `T_days`; None where it cannot be computed."""

    def score_days(
        self, x: int, t_x_days: float, T_days: float, horizon_days: float = ...
    ) -> tuple[float | None, float | None]: ...


class Scored(Protocol):
    """The profile fields the scores read (`profile.Profile` has them); a Protocol, so that
    scores.py does not import profile.py, which scores its records with `DEFAULT_SCORER`."""

    @property
    def profile_id(self) -> str: ...
    @property
    def orders(self) -> int: ...
    @property
    def revenue(self) -> float: ...
    @property
    def first_order_ts(self) -> int | None: ...
    @property
    def last_order_ts(self) -> int | None: ...
    @property
    def last_seen(self) -> int | None: ...
    @property
    def updated_at(self) -> int: ...
    @property
    def visits(self) -> int: ...
    @property
    def page_views(self) -> int: ...


class QuantileSketch(Protocol):
    """A mergeable quantile summary (`Distribution` reads it through `weighted_items`, or through
    `quantile` and `rank` where the sketch has them)."""

    def update(self, value: float) -> None: ...

    def weighted_items(self) -> Iterable[tuple[float, int]]: ...


SketchFactory = Callable[[int], QuantileSketch]  # called with `sketch_k`


@dataclass(frozen=True, slots=True)
class ScoreSettings:
    """The `[scores]` configuration as the domain sees it (defaults documented in README.md)."""

    mode: str = "static"
    rfm_recency_days: Band = Band(30, 90)  # ordered within 30 days: good; more than 90 days ago: poor
    rfm_frequency: Band = Band(2, 4)  # 1 order: poor; 2-4: medium; 5 or more: good
    rfm_monetary: Band = Band(50, 250)  # revenue under 50: poor; over 250: good
    rfe_recency_days: Band = Band(7, 30)  # active within a week: good; more than 30 days ago: poor
    rfe_frequency: Band = Band(2, 5)  # 1 visit: poor; 2-5: medium; 6 or more: good
    rfe_engagement: Band = Band(5, 20)  # page views under 5: poor; over 20: good
    sketch_k: int = 200
    model: PurchaseModel | None = None
    # auto mode's sketch, injected by the shell (`profilestream.scoring.kll.KllSketch`); None: the
    # exact pure-Python fallback. Not compared: settings that differ only by it score alike.
    sketch: SketchFactory | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        """Settings pickled by an earlier build (an engine snapshot) lack the later fields: those
        take their defaults."""
        names = [f.name for f in fields(self)]
        values = dict(zip(names, state, strict=False))
        for f in fields(self):
            object.__setattr__(self, f.name, values.get(f.name, f.default))

    def band(self, dimension: str) -> Band:
        band: Band = getattr(self, dimension)
        return band


# --- raw values -------------------------------------------------------------------------------


def rfm_values(profile: Scored) -> tuple[float, float, float] | None:
    """(days since the last order, orders, revenue) at the profile's `updated_at`, or None."""
    if profile.orders < 1 or profile.last_order_ts is None:
        return None
    return (max(0, profile.updated_at - profile.last_order_ts) / DAY_MS, profile.orders, profile.revenue)


def rfe_values(profile: Scored) -> tuple[float, float, float] | None:
    """(days since the last activity, visits, page views) at the profile's `updated_at`, or None."""
    if profile.last_seen is None:
        return None
    return (max(0, profile.updated_at - profile.last_seen) / DAY_MS, profile.visits, profile.page_views)


# --- the population in auto mode --------------------------------------------------------------


class ExactSketch:
    """The pure-Python fallback of auto mode when the shell injects no sketch: every value kept
    with its count, so quantiles are exact and memory follows the number of distinct values (the
    population rebuilds it once the retracted weight passes half the live count). The product
    injects the KLL sketch (`profilestream.scoring.kll`, through `ScoreSettings.sketch`)."""

    __slots__ = ("counts",)

    def __init__(self, k: int = 200) -> None:  # k: the factory's signature; an exact sketch needs none
        self.counts: dict[float, int] = {}

    def update(self, value: float) -> None:
        self.counts[value] = self.counts.get(value, 0) + 1

    def weighted_items(self) -> Iterable[tuple[float, int]]:
        return iter(self.counts.items())


@dataclass
class Distribution:
    """A multiset of numbers with inserts and retractions, answering quantiles from two sketches."""

    make: Callable[[], QuantileSketch]
    added: Any = None
    removed: Any = None
    n_added: int = 0
    n_removed: int = 0

    def __post_init__(self) -> None:
        self.added = self.make() if self.added is None else self.added
        self.removed = self.make() if self.removed is None else self.removed

    @property
    def n(self) -> int:
        return self.n_added - self.n_removed

    def add(self, value: float) -> None:
        self.added.update(value)
        self.n_added += 1

    def retract(self, value: float) -> None:
        self.removed.update(value)
        self.n_removed += 1

    def reset(self, values: Iterable[float]) -> None:
        self.added, self.removed, self.n_added, self.n_removed = self.make(), self.make(), 0, 0
        for value in values:
            self.add(value)

    def quantiles(self, ps: Iterable[float]) -> list[float] | None:
        """For each p, the least value v with estimated count(<= v) >= p * n (None if empty)."""
        n = self.n
        if n <= 0:
            return None
        if hasattr(self.added, "quantile") and hasattr(self.added, "rank"):
            return [self._search(p * n) for p in ps]
        weights: dict[float, int] = {}
        for value, weight in self.added.weighted_items():
            weights[value] = weights.get(value, 0) + weight
        if self.n_removed:
            for value, weight in self.removed.weighted_items():
                weights[value] = weights.get(value, 0) - weight
        values = sorted(weights)
        out = []
        at, count = 0, weights[values[0]] if values else 0
        for p in ps:
            target = p * n
            while count < target and at + 1 < len(values):
                at += 1
                count += weights[values[at]]
            out.append(values[at])
        return out

    def _search(self, target: float) -> float:
        """`quantiles` with the sketch's own rank and quantile functions (no pass over its items):
        a bisection over the rank in the inserted values, down to less than one value's weight.
        Invariant: the estimate reaches `target` at `quantile(hi)` and not at `quantile(lo)`."""
        added, removed = self.added, self.removed
        n_added, n_removed = self.n_added, self.n_removed

        def estimate(value: float) -> float:
            count = float(n_added * added.rank(value))
            return count - float(n_removed * removed.rank(value)) if n_removed else count

        lo, hi = 0.0, 1.0
        best = float(added.quantile(0.0))
        if estimate(best) >= target:
            return best
        best = float(added.quantile(1.0))
        resolution = 0.5 / n_added
        while hi - lo > resolution:
            mid = (lo + hi) / 2
            value = float(added.quantile(mid))
            if estimate(value) >= target:
                hi, best = mid, value
            else:
                lo = mid
        return best


class Population:
    """The live profiles' RFM/RFE values, as distributions per dimension (auto mode).

    Tertiles are recomputed (two searches per dimension) once the group's values
    have changed `REFRESH` times the group's size since they were last computed, so they trail
    the population by at most that much in rank, on top of the sketch's error."""

    REFRESH = 0.01
    GROUPS = (RFM_DIMENSIONS, RFE_DIMENSIONS)

    def __init__(self, sketch_factory: Callable[[], QuantileSketch]):
        dims = [name for name, _ in RFM_DIMENSIONS + RFE_DIMENSIONS]
        self.dists = {name: Distribution(sketch_factory) for name in dims}
        self.values: dict[str, tuple[tuple[float, ...] | None, tuple[float, ...] | None]] = {}
        self._bands: dict[str, Band] = {}
        self._changes = [0, 0]  # per group, since its tertiles were last computed

    def observe(self, profile_id: str, rfm: tuple[float, ...] | None, rfe: tuple[float, ...] | None) -> None:
        old = self.values.get(profile_id, (None, None))
        new = (rfm, rfe)
        if old == new:
            return
        self.values[profile_id] = new
        self._move(old, new)

    def forget(self, profile_id: str) -> None:
        old = self.values.pop(profile_id, None)
        if old is not None:
            self._move(old, (None, None))

    def _move(self, old: tuple[tuple[float, ...] | None, ...], new: tuple[tuple[float, ...] | None, ...]) -> None:
        """Retract a profile's previous values and add its new ones (`self.values` is current)."""
        for i, dims in enumerate(self.GROUPS):
            before, after = old[i], new[i]
            if before == after:
                continue
            self._changes[i] += 1
            for j, (name, _) in enumerate(dims):
                dist = self.dists[name]
                if before is not None:
                    dist.retract(float(before[j]))
                if after is not None:
                    dist.add(float(after[j]))
            first = self.dists[dims[0][0]]
            if first.n_removed * 2 > max(first.n, 1):  # much churn: rebuild from the live values
                live = [v for v in (values[i] for values in self.values.values()) if v is not None]
                for j, (name, _) in enumerate(dims):
                    self.dists[name].reset(float(v[j]) for v in live)

    def bands(self) -> dict[str, Band]:
        """Tertile bands of the dimensions that have values; a new dict only when they change."""
        bands = None
        for i, dims in enumerate(self.GROUPS):
            pending = self._changes[i]
            if pending == 0 or pending < self.REFRESH * self.dists[dims[0][0]].n:
                continue
            self._changes[i] = 0
            bands = dict(self._bands) if bands is None else bands
            for name, _ in dims:
                q = self.dists[name].quantiles(TERTILES)
                if q is None:
                    bands.pop(name, None)
                else:
                    bands[name] = Band(max(0.0, q[0]), max(0.0, q[0], q[1]))
        if bands is not None:
            self._bands = bands
        return self._bands


# --- the scorer -------------------------------------------------------------------------------


class Scorer:
    """Scores profiles at emission. In auto mode `observe` must see every emitted profile (and
    `forget` every removed one) before `score` is asked about them."""

    def __init__(
        self, settings: ScoreSettings | None = None, sketch_factory: Callable[[], QuantileSketch] | None = None
    ):
        self.settings = settings or ScoreSettings()
        self.population: Population | None = None
        if self.settings.mode == "auto":
            make = sketch_factory
            if make is None:
                injected = getattr(self.settings, "sketch", None) or ExactSketch
                make = functools.partial(injected, self.settings.sketch_k)
            self.population = Population(make)
        settings = self.settings
        self._static = {name: settings.band(name) for name, _ in RFM_DIMENSIONS + RFE_DIMENSIONS}
        self._tertiles: dict[str, Band] | None = None
        self._merged = self._static

    def observe(self, profiles: Iterable[Scored], gone: Iterable[str] = ()) -> None:
        population = self.population
        if population is None:
            return
        for profile_id in gone:
            population.forget(profile_id)
        for profile in profiles:
            population.observe(profile.profile_id, rfm_values(profile), rfe_values(profile))

    def bands(self) -> dict[str, Band]:
        """The band of every dimension: configured, or in auto mode the population's tertiles
        where the population has values."""
        if self.population is None:
            return self._static
        tertiles = self.population.bands()
        if tertiles is not self._tertiles:
            self._tertiles, self._merged = tertiles, {**self._static, **tertiles}
        return self._merged

    def score(self, profile: Scored) -> dict[str, Any]:
        """The score fields of the profile's record: `rfm`, `rfe`, `p_alive`, `expected_purchases_30d`."""
        bands = self.bands()
        rfm = rfm_values(profile)
        rfe = rfe_values(profile)
        out: dict[str, Any] = {"rfm": None, "rfe": None, "p_alive": None, "expected_purchases_30d": None}
        if rfm is not None:
            r, f, m = (bands[name].score(v, up) for (name, up), v in zip(RFM_DIMENSIONS, rfm, strict=False))
            out["rfm"] = {
                "days_since_last_order": rfm[0],
                "orders": profile.orders,
                "revenue": profile.revenue,
                "recency": r,
                "frequency": f,
                "monetary": m,
                "code": f"{r}{f}{m}",
            }
        if rfe is not None:
            r, f, e = (bands[name].score(v, up) for (name, up), v in zip(RFE_DIMENSIONS, rfe, strict=False))
            out["rfe"] = {
                "days_since_last_visit": rfe[0],
                "visits": profile.visits,
                "page_views": profile.page_views,
                "recency": r,
                "frequency": f,
                "engagement": e,
                "code": f"{r}{f}{e}",
            }
        model = self.settings.model
        if model is not None and rfm is not None and profile.first_order_ts is not None:
            first = profile.first_order_ts
            last = first if profile.last_order_ts is None else profile.last_order_ts  # set: rfm is
            x = profile.orders - 1
            p_alive, expected = model.score_days(
                x, (last - first) / DAY_MS if x else 0.0, max(0, profile.updated_at - first) / DAY_MS, HORIZON_DAYS
            )
            out["p_alive"] = p_alive
            out["expected_purchases_30d"] = expected
        return out


DEFAULT_SCORER = Scorer()

__all__ = [
    "DEFAULT_SCORER",
    "Band",
    "Distribution",
    "ExactSketch",
    "Population",
    "PurchaseModel",
    "QuantileSketch",
    "ScoreSettings",
    "Scored",
    "Scorer",
    "SketchFactory",
    "rfe_values",
    "rfm_values",
]
