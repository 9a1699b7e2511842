"""The profile store: a local, materialised view of the `profiles` topic, found by any identifier.

`profiles` is keyed by profile id and its latest record per key is the profile, so a store that
applies the topic in order (records replace, tombstones delete) holds exactly the live profiles.
Lookup by device id, customer key or customer id goes through an index kept in the same RocksDB
(rocksdict) database and updated in the same write batch as the profile, so the two never
disagree. The consumed offsets live there too: catching up is incremental.

Two ways to keep it current: `profilestream serve-store` follows the topic continuously, and
`profilestream profile get` first catches up to the end of the topic (unless a `serve-store`
holds the store, in which case it reads what that process has written).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from rocksdict import AccessType, Rdict, WriteBatch

from profilestream.io import avro
from profilestream.io.kafka import end_offsets

INDEXES = (("device", "device_ids"), ("key", "customer_key"), ("customer", "customer_id"))


def _identifiers(profile: dict) -> list[str]:
    """Index entries `ix:<kind>:<identifier>\x00<profile id>`. The profile id is part of the key
    because the topic's partitions are applied in no particular order relative to each other: a
    device may briefly appear in two records (its old profile's, not yet tombstoned, and its new
    one), and neither must erase the other's entry."""
    pid = profile["profile_id"]
    ids = [f"ix:profile:{pid}\x00{pid}"]
    for kind, name in INDEXES:
        value = profile.get(name)
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                ids.append(f"ix:{kind}:{v}\x00{pid}")
    return ids


class ProfileStore:
    def __init__(self, path: str | Path, read_only: bool = False):
        Path(path).mkdir(parents=True, exist_ok=True)
        access = AccessType.read_only() if read_only else AccessType.read_write()
        self._db = Rdict(str(path), access_type=access)

    @classmethod
    def open(cls, path: str | Path) -> tuple["ProfileStore", bool]:
        """Open for writing, or read-only when a `serve-store` process holds the lock."""
        try:
            return cls(path), True
        except Exception as exc:  # rocksdict raises a plain Exception on a held lock
            if "lock" not in str(exc).lower():
                raise
            return cls(path, read_only=True), False

    def close(self) -> None:
        self._db.close()

    # --- applying the topic -------------------------------------------------------------------

    def apply(self, key: str, profile: dict | None, partition: int, offset: int) -> None:
        """One record of `profiles`: replace (or delete) the profile and move its index entries."""
        batch = WriteBatch()
        old_raw = self._db.get(f"p:{key}")
        old = set(_identifiers(json.loads(old_raw))) if old_raw is not None else set()
        new = set(_identifiers(profile)) if profile is not None else set()
        for entry in old - new:
            batch.delete(entry)
        for entry in new:
            batch.put(entry, "")
        if profile is None:
            batch.delete(f"p:{key}")
        else:
            batch.put(f"p:{key}", json.dumps(profile, sort_keys=True))
        batch.put(f"o:{partition}", str(offset + 1))
        self._db.write(batch)

    def offset(self, partition: int) -> int | None:
        value = self._db.get(f"o:{partition}")
        return None if value is None else int(value)

    # --- reading ------------------------------------------------------------------------------

    def find(self, identifier: str) -> dict | None:
        """The profile a device id, customer key, customer id or profile id belongs to; should
        two records hold it (partitions caught up unevenly), the more recently updated one."""
        for kind in ("device", "key", "customer", "profile"):
            prefix = f"ix:{kind}:{identifier}\x00"
            found = []
            for entry in self._db.keys(from_key=prefix):
                if not entry.startswith(prefix):
                    break
                raw = self._db.get(f"p:{entry[len(prefix):]}")
                if raw is not None:
                    found.append(json.loads(raw))
            if found:
                return max(found, key=lambda p: (p["updated_at"] or "", p["profile_id"]))
        return None

    def profiles(self) -> Iterator[dict]:
        """Every live profile, in profile id order."""
        for key, raw in self._db.items(from_key="p:"):
            if not key.startswith("p:"):
                break
            yield json.loads(raw)

    def count(self) -> int:
        return sum(1 for k in self._db.keys() if k.startswith("p:"))


def _records(config, store: ProfileStore, follow: bool, poll: float = 0.2) -> Iterator[tuple]:
    """Records of the profiles topic after the store's offsets; to the current end, or forever."""
    topic = config.topics.name("profiles")
    consumer = Consumer({**config.kafka.client_config(), "group.id": "profilestream-store",
                         "enable.auto.commit": False})
    try:
        ends = {}
        assignment = []
        for p, (low, end) in sorted(end_offsets(config, topic).items()):
            start = store.offset(p)
            start = low if start is None or start < low else start
            ends[p] = end
            assignment.append(TopicPartition(topic, p, start))
        pending = {tp.partition for tp in assignment if tp.offset < ends[tp.partition]}
        consumer.assign(assignment)
        while follow or pending:
            for m in consumer.consume(1000, poll):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(m.error())
                yield m
                if m.offset() + 1 >= ends[m.partition()]:
                    pending.discard(m.partition())
    finally:
        consumer.close()


def sync(config, store: ProfileStore, follow: bool = False) -> int:
    """Apply the profiles topic to the store; returns how many records were applied."""
    applied = 0
    for m in _records(config, store, follow):
        value = m.value()
        profile = None if value is None else avro.to_json("profiles", avro.decode("profiles", value))
        store.apply(m.key().decode(), profile, m.partition(), m.offset())
        applied += 1
    return applied


@contextmanager
def current(config) -> Iterator[ProfileStore]:
    """The store at `store.path`, caught up with the profiles topic first unless a `serve-store`
    process holds it (then it is as current as that process keeps it)."""
    store, writable = ProfileStore.open(config.store.path)
    try:
        if writable:
            sync(config, store)
        yield store
    finally:
        store.close()


def get(config, identifier: str) -> dict | None:
    with current(config) as store:
        return store.find(identifier)


def all_profiles(config) -> list[dict]:
    with current(config) as store:
        return list(store.profiles())


def serve(config) -> None:
    """Follow the profiles topic into the store until interrupted."""
    store = ProfileStore(config.store.path)
    try:
        sync(config, store, follow=True)
    finally:
        store.close()
