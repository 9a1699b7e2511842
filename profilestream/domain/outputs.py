"""What the core emits: records for the output topics, as plain dicts in the fields of
docs/topics.md "Outputs".

Times in these dicts are epoch milliseconds (the Avro codec writes them as `timestamp-millis`).
`topic` names the role of the output topic (a key of the `[topics]` configuration table), not its
configured name, so the core stays free of configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .compact import pickled_as_fields
from .roles import CRM_FEED, DEAD_LETTERS, MERGES, PROFILES, TRIGGERS


@pickled_as_fields
@dataclass(slots=True)
class Output:
    """One record for an output topic; `value` None is a tombstone. Never changed once built
    (not `frozen`: see `events.Click`).

    `stamp` (CRM feed records only): which of the profiles that ever held the customer id wrote
    it. A customer erased and created again is held by a new profile, in another shard, and the
    two shards' writes to the one feed key are not ordered; the stamp is the place of the last
    erase of that customer before the profile got it (`FEED_FIRST` if none), so the newest
    holder's records win wherever they meet (`newer_feed`)."""

    topic: str
    key: str
    value: dict[str, Any] | None
    stamp: tuple[int, int, str] | None = None


FEED_FIRST = (-(2**63), -1, "")
"""The stamp of a customer's first holder (never erased before): below every erase's place."""


def newer_feed(newest: tuple[int, int, str] | None, output: Output) -> bool:
    """Whether a feed record (or tombstone) with `output.stamp` is to be written, given the newest
    stamp already written for its key: records of one holder come in order, and an older
    holder's (an erased profile's, late) are dropped.

    >>> first = Output(CRM_FEED, "C1", None, FEED_FIRST)
    >>> again = Output(CRM_FEED, "C1", {"customer_id": "C1"}, (1000, 0, "erase-1"))
    >>> newer_feed(None, first), newer_feed(again.stamp, first), newer_feed(FEED_FIRST, again)
    (True, False, True)
    """
    stamp = output.stamp if output.stamp is not None else FEED_FIRST
    return newest is None or stamp >= newest


__all__ = ["CRM_FEED", "DEAD_LETTERS", "FEED_FIRST", "MERGES", "PROFILES", "TRIGGERS", "Output", "newer_feed"]
