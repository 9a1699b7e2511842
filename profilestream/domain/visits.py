"""Visits: per device, in event time.

A visit is a run of one device's clicks with no gap longer than `sessions.gap` (a gap of exactly
`gap` continues it). Visits are the device's, not the profile's: when a device changes hands (a
merge, a shared device, an erase) its visit in progress goes on, and the profile it now belongs
to counts it too, because a profile's `visits` counts every device visit that has belonged to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .compact import pickled_as_fields


@pickled_as_fields
@dataclass(slots=True)
class DeviceVisit:
    """The one piece of per-device state: where its current visit stands."""

    start: int = 0
    last: int | None = None
    number: int = 0
    counted_in: set[str] = field(default_factory=set)
    return_done: bool = False

    def in_progress(self, now: int, gap: int) -> bool:
        return self.last is not None and now - self.last <= gap

    def click(self, ts: int, gap: int) -> bool:
        """Record a click; True when it starts a new visit. A click older than the device's last
        (a late event) joins the visit in progress rather than rewriting history."""
        if self.last is not None and ts - self.last <= gap:
            if ts > self.last:
                self.last = ts
            return False
        if self.last is not None and ts < self.last:
            return False
        self.start = ts
        self.last = ts
        self.number += 1
        self.counted_in = set()
        self.return_done = False
        return True

    def count_in(self, profile_id: str) -> bool:
        """Mark the current visit as counted in a profile; True the first time only."""
        if profile_id in self.counted_in:
            return False
        self.counted_in.add(profile_id)
        return True

    def renamed(self, old: str, new: str) -> bool:
        """The profile `old` was merged into `new`: its visits are already summed into `new`.
        True when this visit had been counted in both (the device moved from one to the other
        during it), so the sum counted it twice and `new` must take one back."""
        if old not in self.counted_in:
            return False
        self.counted_in.discard(old)
        if new in self.counted_in:
            return True
        self.counted_in.add(new)
        return False


__all__ = ["DeviceVisit"]
