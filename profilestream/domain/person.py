"""A person as identity resolution sees one: identifiers and times, no profile contents.

Why apart from `profile.Profile`: identity resolution is the one serial part of the dataflow
(every identifier of every event must be looked up in one graph, README "Design"), so what it
holds per person is kept to what its decisions need: the identifiers (merge protection reads
them), the order numbers (an erase suppresses them), the runs of activity (return visits are
decided here, where a device's visit meets its profile) and the cart's deadline (the calendar of
deadlines is kept here, where the watermark is). Counters, carts, campaigns and CRM attributes
live in the profile's shard (`shard.ProfileShard`), spread over every worker.

The lookback of return visits. "The last activity before a visit's start" is answered from the
person's runs of activity (`spans`): clicks, on any of its devices, less than the
`[triggers] return_visit_after` setting apart are one run, so a person holds at most one run per
`return_visit_after` of its active life, plus one (a customer active over three years: at most
157 runs of two integers; most hold one or two). Why that join is exact, and not just a bound:
for a visit starting at `s`, the latest click strictly before `s` is the end of the newest run
that begins before `s` when that run ends before `s`; when the run reaches `s` or beyond, the
click before `s` and the next one are less than `return_visit_after` apart, so `s` is less than
that after the click before it and the visit is no return visit: the exact time is not needed,
only that it is too recent (`last_activity_before` answers `s - 1`).
`tests/flow/test_return_merge.py` checks the lookback against a reference that keeps every click.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .compact import pickled_as_fields


@pickled_as_fields
@dataclass(slots=True)
class Person:
    profile_id: str
    customer_id: str | None = None
    customer_key: str | None = None
    device_ids: set[str] = field(default_factory=set)
    # Runs of activity across all devices, oldest first (see the module's docstring).
    spans: list[list[int]] = field(default_factory=list)
    # Every order number of this person (web orders, CRM orders of the customer): what an erase
    # suppresses besides the ids (`erasure.py`). None until the first (most never have one).
    order_ids: set[str] | None = None
    deadline: int | None = None  # the cart's deadline, as the profile's cart has it (cart.py)

    @property
    def anonymous(self) -> bool:
        """Only an anonymous person may be merged into another (merge protection)."""
        return self.customer_id is None and self.customer_key is None

    def record_activity(self, ts: int, join: int) -> None:
        """A click at `ts`; `join` is the distance below which runs of activity are one
        (`rules.return_visit_after`, see the module's docstring)."""
        _add_to_spans(self.spans, ts, join)

    def last_activity_before(self, start: int) -> int | None:
        """The latest click strictly before `start`, or None. Inside a run that began before
        `start` the exact click is not kept; it lies less than the join distance before `start`,
        so `start - 1` is returned, which is never far enough back to make a return visit."""
        for span_start, span_end in reversed(self.spans):
            if span_start >= start:
                continue
            return span_end if span_end < start else start - 1
        return None

    def add_order(self, order_id: str) -> None:
        """An order number of this person (only usable ones: a blocked value is none)."""
        if self.order_ids is None:
            self.order_ids = {order_id}
        else:
            self.order_ids.add(order_id)

    def touch_cart(self, deadline: int) -> None:
        """An in-time add or remove moved the cart's deadline (`Cart.touch`)."""
        self.deadline = deadline

    def absorb(self, other: Person, join: int) -> None:
        """What identity keeps of `other` belongs to this person from now on (the indexes are
        `identity`'s): devices, runs of activity, order numbers, the later deadline (as
        `Cart.absorb` keeps it)."""
        self.device_ids |= other.device_ids
        for span_start, span_end in other.spans:
            _add_to_spans(self.spans, span_start, join, span_end)
        if other.order_ids:
            if self.order_ids is None:
                self.order_ids = set(other.order_ids)
            else:
                self.order_ids |= other.order_ids
        if other.deadline is not None and (self.deadline is None or other.deadline > self.deadline):
            self.deadline = other.deadline


def _add_to_spans(spans: list[list[int]], start: int, join: int, end: int | None = None) -> None:
    """Insert the activity [start, end] and join runs less than `join` apart (see the module's
    docstring for why that is exact for return visits; nothing is dropped)."""
    end = start if end is None else end
    if spans and start >= spans[-1][0]:  # the common case: activity in time order
        last = spans[-1]
        if start - last[1] < join:
            if end > last[1]:
                last[1] = end
        else:
            spans.append([start, end])
        return
    spans.append([start, end])
    spans.sort()
    merged: list[list[int]] = []
    for span in spans:
        if merged and span[0] - merged[-1][1] < join:
            if span[1] > merged[-1][1]:
                merged[-1][1] = span[1]
        else:
            merged.append(span)
    spans[:] = merged


__all__ = ["Person"]
