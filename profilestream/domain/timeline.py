"""Event time over both inputs: the watermark, and the order in which events are applied.

docs/semantics.md "Watermark": the watermark is the least, over the input partitions, of the latest `ts`
read, minus `allowed_lateness`; an event is applied once the watermark has passed it, in the total
order of `events.order_key`. Holding events back until then is what makes a replay that loads one
topic long before the other give the same results as live traffic: whichever partition is read
ahead simply waits in the buffer.

Two things move the watermark besides reading: in an always-on run a partition silent for
`idle_after` (wall clock) stops holding it back, and when every partition is silent it follows the
clock; in a bounded run a partition that has reached its end no longer holds it back, and the end
of all input is the end of time.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .compact import pickled_as_fields
from .events import Event, order_key

BEGINNING = -(2**62)
END_OF_TIME = 2**62


@pickled_as_fields
@dataclass(slots=True)
class SourceClock:
    latest: int | None = None  # latest event time read from this partition
    heard_at: int = 0  # wall clock of the last record (or of the start)
    ended: bool = False


@dataclass
class Timeline:
    lateness: int
    idle_after: int
    always_on: bool = False
    sources: dict[str, SourceClock] = field(default_factory=dict)
    watermark: int = BEGINNING
    # Events waiting for the watermark, one queue per partition, each in the contract's order.
    # Why not one heap of everything: a partition's events arrive in time order (nearly always),
    # so a queue takes them at the cost of an append, and taking the next due event is a merge of
    # a few queue heads rather than a sift through every pending event.
    _queues: dict[str, deque[tuple[int, int, str, int, Event]]] = field(default_factory=dict)
    _seq: int = 0

    def expect(self, sources: Iterable[str], now: int) -> None:
        """Name the partitions up front, so that one that has sent nothing yet holds the
        watermark back (until it is idle or has ended)."""
        for source in sources:
            self.sources.setdefault(source, SourceClock(heard_at=now))

    def arrive(self, source: str, event: Event, now: int) -> bool:
        """Take an event in; True when it is late (older than the watermark), in which case the
        caller applies it at once instead of it being buffered."""
        clock = self.sources.get(source)
        if clock is None:
            clock = self.sources[source] = SourceClock()
        clock.heard_at = now
        if clock.latest is None or event.ts > clock.latest:
            clock.latest = event.ts
        if event.ts < self.watermark:
            return True
        self._seq += 1
        # one flat tuple: comparing entries mostly stops at the first int (`ts`); `seq` makes
        # every entry distinct, so a comparison never reaches the event itself
        entry = (*order_key(event), self._seq, event)
        queue = self._queues.get(source)
        if queue is None:
            queue = self._queues[source] = deque()
        if not queue or entry >= queue[-1]:
            queue.append(entry)
        else:  # out of order within its partition (allowed up to the lateness): into its place
            queue.insert(bisect.bisect_right(queue, entry), entry)
        return False

    def end_source(self, source: str) -> None:
        self.sources.setdefault(source, SourceClock()).ended = True

    def advance(self, now: int) -> int:
        """Recompute the watermark (it never goes back) and return it."""
        if not self.sources:
            return self.watermark
        bounds = []
        for clock in self.sources.values():
            if clock.ended:
                continue
            if self.always_on and now - clock.heard_at >= self.idle_after:
                continue
            bounds.append(BEGINNING if clock.latest is None else clock.latest - self.lateness)
        if bounds:
            candidate = min(bounds)
        elif self.always_on:
            candidate = now - self.lateness
        else:
            candidate = END_OF_TIME
        if candidate > self.watermark:
            self.watermark = candidate
        return self.watermark

    def end(self) -> None:
        """The end of input is the end of time: everything buffered becomes due."""
        self.watermark = END_OF_TIME

    def due(self) -> Iterator[Event]:
        """Yield buffered events the watermark has passed, in the contract's order: a merge of the
        partitions' queues by their heads."""
        watermark = self.watermark
        heads = [(queue[0], queue) for queue in self._queues.values() if queue and queue[0][0] < watermark]
        heapq.heapify(heads)
        while heads:
            entry, queue = heads[0]
            queue.popleft()
            if queue and queue[0][0] < watermark:
                heapq.heapreplace(heads, (queue[0], queue))
            else:
                heapq.heappop(heads)
            yield entry[-1]

    @property
    def pending(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Snapshots of earlier builds buffered every event in one heap, of `(key, seq, event)`
        or, later, of flat entries; they become one queue of their own here."""
        buffer = state.pop("_buffer", None)
        self.__dict__.update(state)
        if buffer is not None:
            entries = (
                sorted((*key, seq, event) for key, seq, event in buffer)
                if buffer and isinstance(buffer[0][0], tuple)
                else sorted(buffer)
            )
            self._queues = {"": deque(entries)} if entries else {}


__all__ = ["BEGINNING", "END_OF_TIME", "SourceClock", "Timeline"]
