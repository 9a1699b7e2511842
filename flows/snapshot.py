"""The snapshot formats: what Bytewax recovery keeps of the two stateful steps.

- `resolve` (one key): the pickled dictionary `{"format": 3, "resolver": bytes, "changelog":
  id, "seq": int, "finished": bool, "sent": [int]}`: identity resolution's state without the
  tables of `_LEFT_OUT` (the timeline's buffer, bounded by `allowed_lateness`; the input
  partitions' clocks; the erasure list; counters), whether a bounded run has reached the end of
  its input, and the merges sent to each transfer partition so far. The persons, the devices'
  visits, the remembered event ids and the order book are in resolution's changelog
  (`changelog.py`), written as what changed; `seq` is this snapshot's version there,
  `changelog` the file's id. The identity graph's indexes, the calendar of deadlines and the
  expiry heaps are built again from those when a run resumes (`load_resolver`).
- `profiles` (a key per profile): the pickled `ProfileShard`, written only in the epochs in which
  the profile changed (Bytewax snapshots the keys an epoch woke), so what a snapshot writes grows
  with what changed, not with the state.

Snapshots of builds before the shards (one `apply` step holding everything) are refused with
`Refused`: their state cannot be split after the fact. Kept apart from the steps so each format
has one reader and one writer.
"""

from __future__ import annotations

import heapq
import pickle
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from profilestream.domain.person import Person
from profilestream.domain.resolve import Resolver
from profilestream.domain.shard import ProfileShard
from profilestream.domain.visits import DeviceVisit

__all__ = [
    "DEVICE",
    "FEED_STATE",
    "FORMAT",
    "PERSON",
    "PROFILE_STATE",
    "RESOLVE_STATE",
    "Changelog",
    "Refused",
    "Row",
    "dump_resolver",
    "dump_shard",
    "load_resolver",
    "load_shard",
    "seq_of",
]

FORMAT = 3
PERSON, DEVICE, EVENT_ID, ORDER = 0, 1, 2, 3  # the kinds of rows in resolution's changelog
RESOLVE_STATE = (
    "Resolver (timeline, erasure list; persons, devices' visits, event ids and order numbers in "
    "resolution's changelog, resolution-changelog.db in the recovery directory, written as what changed)"
)
FEED_STATE = "the stamp of the newest profile that wrote the customer's CRM feed (an erased one's writes come late)"
PROFILE_STATE = "ProfileShard (the profile: counters, cart, campaigns, CRM attributes; merges waiting for a transfer)"
"""What each snapshot holds, as `profilestream describe` names it."""

Row = tuple[int, str, bytes | None]  # kind (`PERSON`, `DEVICE`), key, pickled value (None: gone)


class Changelog(Protocol):
    """What a snapshot of resolution needs of its changelog (`changelog.Changelog`)."""

    @property
    def id(self) -> str: ...

    def write(self, rows: Iterable[Row]) -> tuple[int, int]: ...

    def load(self, changelog_id: str, seq: int) -> dict[int, dict[str, bytes]]: ...


class Refused(ValueError):
    """A recovery directory this build cannot resume from; the message says why."""


def dump_resolver(resolver: Resolver, finished: bool, sent: list[int], changelog: Changelog) -> tuple[bytes, int]:
    """The key's snapshot, after what changed of the persons, devices, remembered event ids and
    order numbers is in the changelog; and the bytes written in all."""
    touched = resolver.take_touched()
    profiles, devices = resolver.graph.profiles, resolver.devices
    seen, books = resolver.dedup.seen, {"web": resolver.orders.web, "crm": resolver.orders.crm}
    rows: list[Row] = [(PERSON, pid, _fields(profiles.get(pid))) for pid in touched.persons]
    rows += [(DEVICE, device_id, _fields(devices.get(device_id))) for device_id in touched.devices]
    rows += [(EVENT_ID, key, _pickled(seen.get(key))) for key in touched.event_ids]
    rows += [(ORDER, f"{side}|{order_id}", _pickled(books[side].get(order_id))) for side, order_id in touched.orders]
    seq, written = changelog.write(rows)
    with _without_tables(resolver):
        core = pickle.dumps(resolver, protocol=pickle.HIGHEST_PROTOCOL)
    state = {"format": FORMAT, "resolver": core, "changelog": changelog.id, "seq": seq}
    data = pickle.dumps({**state, "finished": finished, "sent": list(sent)}, protocol=pickle.HIGHEST_PROTOCOL)
    return data, written + len(data)


def load_resolver(data: bytes, changelog: Changelog) -> tuple[Resolver, bool, list[int]]:
    """The resolver, `finished` and the per-partition transfer counts of a snapshot. What is not
    written is built again: the identity graph's indexes from the persons, the calendar of
    deadlines from their carts' deadlines (every one before the watermark has been sent: a
    snapshot follows a tick), the expiry heaps from the ids and orders kept."""
    state = pickle.loads(data)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise Refused(
            "the recovery directory was written by an earlier build (resolution's state pickled "
            "whole, or one engine step holding every profile); this build cannot read it: start "
            "with a new --recovery-dir (the outputs are rebuilt from the input topics)"
        )
    resolver: Resolver = pickle.loads(state["resolver"])
    rows = changelog.load(state["changelog"], state["seq"])
    graph = resolver.graph
    watermark = resolver.watermark
    for pid, value in rows.get(PERSON, {}).items():
        person = graph.profiles[pid] = Person(*pickle.loads(value))
        for device_id in person.device_ids:
            graph.by_device[device_id] = pid
        if person.customer_key is not None:
            graph.by_key[person.customer_key] = pid
        if person.customer_id is not None:
            graph.by_customer[person.customer_id] = pid
        if person.deadline is not None and person.deadline >= watermark:
            resolver.deadlines.append((person.deadline, pid))
    heapq.heapify(resolver.deadlines)
    devices = rows.get(DEVICE, {})
    resolver.devices = {device_id: DeviceVisit(*pickle.loads(value)) for device_id, value in devices.items()}
    resolver.dedup.restore({key: pickle.loads(value) for key, value in rows.get(EVENT_ID, {}).items()})
    books: dict[str, dict[str, tuple[str, int]]] = {"web": {}, "crm": {}}
    for key, value in rows.get(ORDER, {}).items():
        side, _, order_id = key.partition("|")
        books[side][order_id] = pickle.loads(value)
    resolver.orders.restore(books["web"], books["crm"])
    resolver.track()
    return resolver, bool(state["finished"]), list(state["sent"])


def seq_of(data: bytes) -> int:
    """The changelog version a resolution snapshot names."""
    return int(pickle.loads(data)["seq"])


def _fields(record: Person | DeviceVisit | None) -> bytes | None:
    """A person's or a device's fields, pickled as a tuple (their classes are known by kind)."""
    return None if record is None else _pickled(record.__reduce__()[1])


def _pickled(value: Any) -> bytes | None:
    return None if value is None else pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


_LEFT_OUT: list[tuple[str, str, Callable[[], Any]]] = [
    ("graph", "profiles", dict),
    ("graph", "by_device", dict),
    ("graph", "by_key", dict),
    ("graph", "by_customer", dict),
    ("", "devices", dict),
    ("", "deadlines", list),
    ("", "touched", lambda: None),
    ("dedup", "seen", dict),
    ("dedup", "_expiry", list),
    ("dedup", "changed", lambda: None),
    ("orders", "web", dict),
    ("orders", "crm", dict),
    ("orders", "_expiry", list),
    ("orders", "changed", lambda: None),
]
"""What the key's snapshot leaves out of the resolver (owner attribute, table, its empty value):
the changelog has it, or it is built again on load, or it is what changed since taken."""


@contextmanager
def _without_tables(resolver: Resolver) -> Iterator[None]:
    """The resolver with the tables of `_LEFT_OUT` emptied for as long as it is pickled."""
    saved = []
    for owner, name, empty in _LEFT_OUT:
        holder = getattr(resolver, owner) if owner else resolver
        saved.append((holder, name, getattr(holder, name)))
        setattr(holder, name, empty())
    try:
        yield
    finally:
        for holder, name, value in saved:
            setattr(holder, name, value)


def dump_shard(shard: ProfileShard) -> bytes:
    return pickle.dumps(shard, protocol=pickle.HIGHEST_PROTOCOL)


def load_shard(data: bytes) -> ProfileShard:
    shard = pickle.loads(data)
    if not isinstance(shard, ProfileShard):
        raise Refused("a profile snapshot of another build: start with a new --recovery-dir")
    return shard
