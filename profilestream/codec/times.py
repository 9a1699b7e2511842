"""Times between the wire and people: epoch milliseconds <-> the contract's ISO-8601 strings.

Every JSON time (inputs read by `produce`, records printed by `consume`, log lines, dead-letter
reasons, sample files) goes through these two functions, so there is one format:
`2026-11-20T10:15:00.123Z` out, any ISO-8601 time with a zone in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from profilestream.domain.units import DAY

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_SENTINEL = 2**61  # beyond it: the engine's BEGINNING / END_OF_TIME, not a time


def parse_time(value: Any) -> int:
    """ISO-8601 with a zone (`2026-11-20T10:15:00.123Z`, `...+01:00`) or int epoch ms -> epoch ms."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValueError("not an ISO-8601 time with a zone")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 time with a zone") from None
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} is not an ISO-8601 time with a zone (add Z or +hh:mm)")
    return (moment - EPOCH) // _MS


_DAYS: dict[int, str] = {}  # day number -> "YYYY-MM-DDT": formatting is on the sample and consume paths


def format_time(ms: int) -> str:
    """Epoch ms -> `2026-11-20T10:15:00.123Z` (the date part cached per day: it is the slow part).
    Years before 1000 keep four digits (`0999-...`: `strftime("%Y")` would drop the zero); a
    number that is not an int (a float) is rounded to the microsecond, then cut to the ms."""
    if ms.__class__ is not int and not isinstance(ms, int):
        return (EPOCH + ms * _MS).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    day, rest = divmod(ms, DAY)
    prefix = _DAYS.get(day)
    if prefix is None:
        date = EPOCH + timedelta(days=day)
        prefix = _DAYS[day] = f"{date.year:04d}-{date.month:02d}-{date.day:02d}T"
    sec, milli = divmod(rest, 1000)
    minute, sec = divmod(sec, 60)
    hour, minute = divmod(minute, 60)
    return f"{prefix}{hour:02d}:{minute:02d}:{sec:02d}.{milli:03d}Z"


def iso_or_none(ms: int | None) -> str | None:
    """`format_time`, with None (and the engine's sentinels for before and after all time) as None."""
    if ms is None or not -_SENTINEL < ms < _SENTINEL:
        return None
    return format_time(ms)


__all__ = ["EPOCH", "format_time", "iso_or_none", "parse_time"]
