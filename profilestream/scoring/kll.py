"""The KLL quantile sketch of auto mode (Apache DataSketches), as the domain's `QuantileSketch`.

Injected by the shell: `config.ScoresConfig.settings()` puts the class in `ScoreSettings.sketch`
(the domain calls it with `sketch_k`). `datasketches` is imported only when a sketch is made or
unpickled, so importing this module costs nothing in static mode.

Compatibility: engine snapshots of builds before issue 15 pickled the class as
`profilestream.domain.scores.KllSketch`. Importing this module puts the class back under that
name, so those snapshots load once the configuration has been read (which imports this module).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from profilestream.domain import scores as _scores

__all__ = ["KllSketch"]


class KllSketch:
    """A thin wrapper of `datasketches.kll_doubles_sketch` that pickles (engine snapshots)."""

    __slots__ = ("_sketch", "k")

    def __init__(self, k: int = 200):
        from datasketches import kll_doubles_sketch

        self.k = k
        self._sketch: Any = kll_doubles_sketch(k)

    def update(self, value: float) -> None:
        self._sketch.update(value)

    def weighted_items(self) -> Iterable[tuple[float, int]]:
        items: Iterable[tuple[float, int]] = iter(self._sketch)
        return items

    @property
    def n(self) -> int:
        return int(self._sketch.n)

    def quantile(self, rank: float) -> float:
        """The least retained value whose (inclusive) normalised rank is at least `rank`."""
        return float(self._sketch.get_quantile(rank, True))

    def rank(self, value: float) -> float:
        """The estimated fraction of the values that are <= `value`."""
        return float(self._sketch.get_rank(value, True))

    def rank_error(self) -> float:
        """The sketch's normalised rank error for single rank queries (99% confidence)."""
        return float(self._sketch.normalized_rank_error(False))

    def __getstate__(self) -> tuple[int, bytes]:
        return self.k, self._sketch.serialize()

    def __setstate__(self, state: tuple[int, bytes]) -> None:
        from datasketches import kll_doubles_sketch

        self.k = state[0]
        self._sketch = kll_doubles_sketch.deserialize(state[1])


# snapshots of earlier builds name the class where it used to live (see the module docstring)
setattr(_scores, "KllSketch", KllSketch)  # noqa: B010
