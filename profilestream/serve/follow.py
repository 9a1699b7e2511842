"""What `serve` answers from: the profile store and two small indexes, kept current by one thread.

The profile store (`profilestream.store`, the same RocksDB view `serve-store` and `profile get`
use) finds a profile by device id, customer key, customer id or profile id. It cannot answer a
profile id that was merged away: the merge tombstones that profile, and with it the index entry.
The contract wants the survivor, so this thread also reads `profile-merges` (key: the survivor,
value: `from_profile_id` -> `into_profile_id`) into an in-memory map, followed transitively
(A into B, later B into C: A answers C). It is rebuilt from the start of the topic at each start:
it holds two ids per merge, a few MB for a million merges, and needs no second on-disk format.
An erased customer's profile has a tombstone and no merge: it answers 404, as it should.

The latest triggers of each profile (for the single customer view) come from `triggers` the same
way, at most `TRIGGERS_KEPT` per profile and `PROFILES_WITH_TRIGGERS` profiles (the least recently
triggered are forgotten first), so memory stays bounded on a topic of any length.

Values are read raw or in the Confluent wire format (`registry.decoder`: a run with
`schema_registry.url` set frames every output), for the profiles as for the two indexes.

Readiness (CONTRACT.md `/readyz`): ready once the three topics have been read to the end they had
when this thread started (the store caught up) and while the broker answers a metadata request,
asked every `CHECK_EVERY` seconds. Until the topics exist, or while no broker answers, the thread
retries and `/readyz` says why.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from profilestream import store as profile_store
from profilestream.codec import avro, registry
from profilestream.domain.roles import MERGES, PROFILES, TRIGGERS
from profilestream.kafka.clients import BrokerError, client_config, end_offsets, quiet
from profilestream.ops.metrics import log

TRIGGERS_KEPT = 10
PROFILES_WITH_TRIGGERS = 200_000
CHECK_EVERY = 2.0  # seconds between the broker checks behind /readyz
MAX_HOPS = 64  # merge chains longer than this are a loop in corrupt data, not a real history


class Follower:
    """The store at `config.store.path` and the merge and trigger indexes, kept current by
    `start()` until `stop()`."""

    def __init__(self, config: Any, store: profile_store.ProfileStore) -> None:
        self.config = config
        self.store = store
        self.decode = registry.decoder(config)
        self.merged: dict[str, str] = {}  # from_profile_id -> into_profile_id
        self.absorbed: dict[str, list[str]] = {}  # into_profile_id -> from_profile_ids
        self.triggers: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self.caught_up = threading.Event()
        self.broker_ok = False
        self.problem: str | None = "starting: the profiles topic is not read yet"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serve-follow", daemon=True)
        self.failure: BaseException | None = None

    # --- answers -----------------------------------------------------------------------------

    def survivor(self, profile_id: str) -> str:
        """The profile a profile id lives on in (itself when it was never merged away)."""
        seen = 0
        while profile_id in self.merged and seen < MAX_HOPS:
            profile_id = self.merged[profile_id]
            seen += 1
        return profile_id

    def find(self, identifier: str) -> dict[str, Any] | None:
        """The profile an identifier belongs to; a merged-away profile id answers the survivor."""
        if identifier in self.merged:
            return self.store.find(self.survivor(identifier))
        return self.store.find(identifier)

    def merged_into(self, profile_id: str) -> list[str]:
        """Every profile id merged into this one, directly or through others."""
        out: list[str] = []
        todo = list(self.absorbed.get(profile_id, ()))
        while todo and len(out) < 1000:
            pid = todo.pop()
            out.append(pid)
            todo.extend(self.absorbed.get(pid, ()))
        return out

    def latest_triggers(self, profile_id: str, limit: int = TRIGGERS_KEPT) -> list[dict[str, Any]]:
        """The profile's latest triggers, its merged-away profiles' included, newest first."""
        found: list[dict[str, Any]] = []
        for pid in [profile_id, *self.merged_into(profile_id)]:
            found.extend(self.triggers.get(pid, ()))
        found.sort(key=lambda t: (t.get("ts") or "", t.get("trigger_id") or ""), reverse=True)
        return found[:limit]

    def readiness(self) -> tuple[bool, str | None]:
        if self.failure is not None:
            return False, f"the store follower stopped: {self.failure}"
        if not self.broker_ok:
            return False, self.problem or "the broker does not answer"
        if not self.caught_up.is_set():
            return False, "the profile store is catching up with the profiles topic"
        return True, None

    # --- the thread --------------------------------------------------------------------------

    def start(self) -> Follower:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._follow()
                    return
                except (BrokerError, KafkaException) as exc:
                    self.broker_ok = False
                    self.problem = str(exc).splitlines()[0]
                    log("serve_follow_retry", error=self.problem)
                    self._stop.wait(CHECK_EVERY)
        except BaseException as exc:  # a store that fails (full disk): /readyz says so
            self.failure = exc
            log("serve_follow_failed", error=str(exc))

    def _follow(self) -> None:
        names = {role: self.config.topics.name(role) for role in (PROFILES, MERGES, TRIGGERS)}
        role_of = {name: role for role, name in names.items()}
        assignment: list[TopicPartition] = []
        ends: dict[tuple[str, int], int] = {}
        for role, topic in names.items():
            for p, (low, end) in sorted(end_offsets(self.config, topic).items()):
                start = self.store.offset(p) if role == PROFILES else None
                start = low if start is None or start < low else start
                ends[(topic, p)] = end
                assignment.append(TopicPartition(topic, p, start))
        pending = {(tp.topic, tp.partition) for tp in assignment if tp.offset < ends[(tp.topic, tp.partition)]}
        self.broker_ok, self.problem = True, None
        if not pending:
            self.caught_up.set()
        consumer = Consumer(
            quiet({**client_config(self.config), "group.id": "profilestream-serve", "enable.auto.commit": False})
        )
        try:
            consumer.assign(assignment)
            checked = time.monotonic()
            while not self._stop.is_set():
                for m in consumer.consume(1000, 0.2):
                    error = m.error()
                    if error is not None:
                        if error.code() in (KafkaError._PARTITION_EOF, KafkaError._TRANSPORT):
                            continue
                        if error.code() == KafkaError._ALL_BROKERS_DOWN:
                            self.broker_ok, self.problem = False, f"the broker does not answer: {error.str()}"
                            continue
                        raise KafkaException(error)
                    topic, partition = m.topic() or "", m.partition() or 0
                    self._apply(role_of[topic], m)
                    if pending:
                        where = (topic, partition)
                        if (m.offset() or 0) + 1 >= ends.get(where, 0):
                            pending.discard(where)
                            if not pending:
                                self.caught_up.set()
                                log("serve_store_caught_up", profiles=names[PROFILES])
                if time.monotonic() - checked >= CHECK_EVERY:
                    checked = time.monotonic()
                    self._check(consumer, names[PROFILES])
        finally:
            consumer.close()

    def _check(self, consumer: Consumer, topic: str) -> None:
        try:
            consumer.list_topics(topic, timeout=CHECK_EVERY)
        except KafkaException as exc:
            self.broker_ok, self.problem = False, f"the broker does not answer: {exc.args[0].str()}"
        else:
            self.broker_ok, self.problem = True, None

    def _apply(self, role: str, m: Any) -> None:
        if role == PROFILES:
            profile_store.apply_message(self.store, m, self.decode)
            return
        value = m.value()
        if value is None:
            return
        record = avro.to_json(role, self.decode(role, value))
        if role == MERGES:
            source, into = record["from_profile_id"], record["into_profile_id"]
            if source != into and self.merged.get(source) != into:
                self.merged[source] = into
                self.absorbed.setdefault(into, []).append(source)
            return
        pid = record["profile_id"]
        kept = self.triggers.pop(pid, None) or deque(maxlen=TRIGGERS_KEPT)
        kept.append(record)
        self.triggers[pid] = kept
        if len(self.triggers) > PROFILES_WITH_TRIGGERS:
            self.triggers.popitem(last=False)


__all__ = ["Follower"]
