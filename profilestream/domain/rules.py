"""The tunable rules of the domain, in milliseconds, free of any configuration file format."""

from __future__ import annotations

from dataclasses import dataclass, field

from .scores import ScoreSettings
from .units import DAY, HOUR, MINUTE, SECOND

DEFAULT_BLOCKED = ("", "0", "-", "null", "none", "undefined", "anonymous", "unknown", "test")


@dataclass(frozen=True, slots=True)
class Rules:
    """What the [sessions], [triggers], [identity] and [time] tables (and the
    `[scores]` addition) mean to the core."""

    session_gap: int = 30 * MINUTE
    cart_abandon_after: int = 60 * MINUTE
    return_visit_after: int = 7 * DAY
    order_match_window: int = 30 * DAY
    allowed_lateness: int = 30 * SECOND
    idle_after: int = 10 * SECOND
    dedup_window: int = DAY
    # an input more than this far ahead of the wall clock when read is dead-lettered (docs/semantics.md
    # "Time"): one device with a wrong clock must not drag the watermark; None: no bound
    max_future: int | None = HOUR
    blocked_values: frozenset[str] = field(default_factory=lambda: frozenset(DEFAULT_BLOCKED))
    scores: ScoreSettings = field(default_factory=ScoreSettings)

    def usable(self, value: str | None) -> str | None:
        """The identifier itself, or None where it is absent or blocked (compared trimmed and
        lower-cased, so "  NULL " links nothing)."""
        if value is None:
            return None
        if value.strip().lower() in self.blocked_values:
            return None
        return value


__all__ = ["DAY", "DEFAULT_BLOCKED", "HOUR", "MINUTE", "Rules"]
