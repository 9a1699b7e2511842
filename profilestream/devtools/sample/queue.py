"""The simulation's time line: one heap of what happens next, in the contract's order of
application (by `ts`, then CRM changes before clicks, then by the order they were planned)."""

from __future__ import annotations

import heapq
import itertools
import random
from typing import Any

from profilestream.codec.times import format_time

# entry kinds
PLAN, ARRIVAL, UPDATE, CRM, CLICK, DUP = range(6)
# entry orders at equal ts: planning first, then CRM changes, then clicks
PLANNING, CRM_ORDER, CLICK_ORDER = 0, 1, 2

Entry = tuple[int, int, int, int, Any, Any]  # (ts, order, seq, kind, actor, body)


class Timeline:
    """A heap of `(ts, order, seq, kind, actor, body)`; `seq` keeps equal entries in push order."""

    def __init__(self) -> None:
        self.heap: list[Entry] = []
        self.seq = itertools.count()

    def push(self, ts: int, order: int, kind: int, actor: Any, body: Any) -> None:
        heapq.heappush(self.heap, (ts, order, next(self.seq), kind, actor, body))

    def pop(self) -> Entry:
        return heapq.heappop(self.heap)

    def __bool__(self) -> bool:
        return bool(self.heap)

    def duplicate(self, ts: int, order: int, rec: dict[str, Any], rng: random.Random) -> None:
        """The same record again (same id): at once, or re-sent seconds later. Its id is older
        than any other id given out at its ts from now on, so it goes first among them (negative
        seq), which keeps the stream in contract order (at equal ts, by id)."""
        dup = dict(rec)
        if rng.random() >= 0.3:
            ts += int(rng.uniform(0.5, 20) * 1000)
            dup["ts"] = format_time(ts)
        heapq.heappush(self.heap, (ts, order, next(self.seq) - (1 << 62), DUP, None, dup))


__all__ = [
    "ARRIVAL",
    "CLICK",
    "CLICK_ORDER",
    "CRM",
    "CRM_ORDER",
    "DUP",
    "PLAN",
    "PLANNING",
    "UPDATE",
    "Entry",
    "Timeline",
]
