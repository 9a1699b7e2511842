"""The snapshot formats: what Bytewax recovery keeps of the two stateful steps.

- `resolve` (one key): the pickled dictionary `{"format": 3, "resolver": bytes, "changelog":
  id, "seq": int, "finished": bool, "sent": [int]}`: identity resolution's state without its
  persons and devices (timeline, de-duplication window, order book, calendar of deadlines,
  erasures: bounded by time, not by the run's size), whether a bounded run has reached the end of
  its input, and the merges sent to each transfer partition so far. The persons and devices are in
  resolution's changelog (`changelog.py`), written as what changed; `seq` is this snapshot's
  version there, `changelog` the file's id. The identity graph's indexes (device, key and customer
  id to profile) are built again from the persons when a run resumes.
- `profiles` (a key per profile): the pickled `ProfileShard`, written only in the epochs in which
  the profile changed (Bytewax snapshots the keys an epoch woke), so what a snapshot writes grows
  with what changed, not with the state.

Snapshots of builds before the shards (one `apply` step holding everything) are refused with
`Refused`: their state cannot be split after the fact. Kept apart from the steps so each format
has one reader and one writer.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

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
PERSON, DEVICE = 0, 1  # the kinds of rows in resolution's changelog
RESOLVE_STATE = (
    "Resolver (timeline, dedup, order book, deadline calendar, erasure list; persons and devices' "
    "visits in resolution's changelog, resolution-changelog.db in the recovery directory, written as what changed)"
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
    """The key's snapshot, after the changed persons and devices are in the changelog; and the
    bytes written in all."""
    touched = resolver.take_touched()
    profiles, devices = resolver.graph.profiles, resolver.devices
    rows: list[Row] = [(PERSON, pid, _fields(profiles.get(pid))) for pid in touched.persons]
    rows += [(DEVICE, device_id, _fields(devices.get(device_id))) for device_id in touched.devices]
    seq, written = changelog.write(rows)
    with _without_tables(resolver):
        core = pickle.dumps(resolver, protocol=pickle.HIGHEST_PROTOCOL)
    state = {"format": FORMAT, "resolver": core, "changelog": changelog.id, "seq": seq}
    data = pickle.dumps({**state, "finished": finished, "sent": list(sent)}, protocol=pickle.HIGHEST_PROTOCOL)
    return data, written + len(data)


def load_resolver(data: bytes, changelog: Changelog) -> tuple[Resolver, bool, list[int]]:
    """The resolver, `finished` and the per-partition transfer counts of a snapshot."""
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
    for pid, value in rows.get(PERSON, {}).items():
        person = graph.profiles[pid] = Person(*pickle.loads(value))
        for device_id in person.device_ids:
            graph.by_device[device_id] = pid
        if person.customer_key is not None:
            graph.by_key[person.customer_key] = pid
        if person.customer_id is not None:
            graph.by_customer[person.customer_id] = pid
    devices = rows.get(DEVICE, {})
    resolver.devices = {device_id: DeviceVisit(*pickle.loads(value)) for device_id, value in devices.items()}
    resolver.track()
    return resolver, bool(state["finished"]), list(state["sent"])


def seq_of(data: bytes) -> int:
    """The changelog version a resolution snapshot names."""
    return int(pickle.loads(data)["seq"])


def _fields(record: Person | DeviceVisit | None) -> bytes | None:
    """A person's or a device's fields, pickled as a tuple (their classes are known by kind)."""
    return None if record is None else pickle.dumps(record.__reduce__()[1], protocol=pickle.HIGHEST_PROTOCOL)


@contextmanager
def _without_tables(resolver: Resolver) -> Iterator[None]:
    """The resolver with its per-person and per-device tables emptied for as long as it is
    pickled (the changelog has them), and what changed since taken left out."""
    graph = resolver.graph
    saved = graph.profiles, graph.by_device, graph.by_key, graph.by_customer, resolver.devices, resolver.touched
    graph.profiles, graph.by_device, graph.by_key, graph.by_customer, resolver.devices = {}, {}, {}, {}, {}
    resolver.touched = None
    try:
        yield
    finally:
        graph.profiles, graph.by_device, graph.by_key, graph.by_customer, resolver.devices, resolver.touched = saved


def dump_shard(shard: ProfileShard) -> bytes:
    return pickle.dumps(shard, protocol=pickle.HIGHEST_PROTOCOL)


def load_shard(data: bytes) -> ProfileShard:
    shard = pickle.loads(data)
    if not isinstance(shard, ProfileShard):
        raise Refused("a profile snapshot of another build: start with a new --recovery-dir")
    return shard
