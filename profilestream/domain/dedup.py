"""Duplicate events: a repeated `event_id` / `change_id` within `time.dedup_window` counts once.

Ids are remembered for the window only and forgotten as the watermark moves on, so memory is
bounded by the traffic of one window rather than by every id ever seen.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class Dedup:
    window: int
    seen: dict[str, int] = field(default_factory=dict)
    _expiry: deque[tuple[int, str]] = field(default_factory=deque)

    def repeat(self, event_key: str, ts: int) -> bool:
        """True if this id was seen within the window of `ts`; otherwise remember it."""
        previous = self.seen.get(event_key)
        if previous is not None and abs(ts - previous) <= self.window:
            return True
        self.seen[event_key] = ts
        self._expiry.append((ts, event_key))
        return False

    def expire(self, watermark: int) -> None:
        horizon = watermark - self.window
        expiry = self._expiry
        while expiry and expiry[0][0] < horizon:
            ts, event_key = expiry.popleft()
            if self.seen.get(event_key) == ts:
                del self.seen[event_key]


__all__ = ["Dedup"]
