"""Duplicate events: a repeated `event_id` / `change_id` within `time.dedup_window` counts once.

Ids are remembered for the window only and forgotten once the watermark is more than the window
past them (docs/semantics.md "Duplicates"), so memory is bounded by the traffic of one window
rather than by every id ever seen. The expiry is a heap by time, not a queue by arrival: when an
id is forgotten then depends on its time and the watermark alone, not on the order ids arrived
in, so the ids remembered are the whole state (`seen`), and a snapshot of what changed
(`changed`) can restore it exactly.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass
class Dedup:
    window: int
    seen: dict[str, int] = field(default_factory=dict)
    _expiry: list[tuple[int, str]] = field(default_factory=list)  # a heap of (ts, id)
    # the ids remembered or forgotten since the caller last took them (None: nobody asks)
    changed: set[str] | None = None

    def repeat(self, event_key: str, ts: int) -> bool:
        """True if this id was seen within the window of `ts`; otherwise remember it."""
        previous = self.seen.get(event_key)
        if previous is not None and abs(ts - previous) <= self.window:
            return True
        self.seen[event_key] = ts
        heapq.heappush(self._expiry, (ts, event_key))
        if self.changed is not None:
            self.changed.add(event_key)
        return False

    def expire(self, watermark: int) -> None:
        horizon = watermark - self.window
        expiry, seen, changed = self._expiry, self.seen, self.changed
        while expiry and expiry[0][0] < horizon:
            ts, event_key = heapq.heappop(expiry)
            if seen.get(event_key) == ts:
                del seen[event_key]
                if changed is not None:
                    changed.add(event_key)

    def restore(self, seen: dict[str, int]) -> None:
        """The ids remembered, as a snapshot kept them: the heap follows from them."""
        self.seen = seen
        self._expiry = [(ts, event_key) for event_key, ts in seen.items()]
        heapq.heapify(self._expiry)


__all__ = ["Dedup"]
