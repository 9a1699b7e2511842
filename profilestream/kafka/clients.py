"""Kafka helpers shared by every command: client config, topic creation, producing, reading.

Consumers here use `assign` with explicit offsets, never group subscription: a one-off read has
no use for group coordination, and Tansu takes seconds to join a group.

End offsets are found by reading, not by asking: Tansu 0.6.0 answers ListOffsets(latest) (what
`get_watermark_offsets` sends) with the base offset of the partition's last record *batch* plus
one, so a partition whose last batch held 10 records reports an end 9 too early. `end_offsets`
fetches from that point to the end of the partition and takes the offset where the fetch reports
end-of-partition, which is exact on Tansu and on Kafka alike.

No broker: every client here logs through a quiet logger (`quiet`), because librdkafka's
own connection errors would print a screenful (59 to 176 lines measured) while it retries; the
command says it in one line instead (`BrokerUnreachable`), with the last thing librdkafka said.

Topics that change under a run (`TopicState`, `TopicWatch`): a topic is known by its id (Kafka
2.8+ and Tansu give one) and its partition count. A run notes them at start and looks again
every few seconds; a topic that vanished, was created again (a new id: deleted and recreated, or
a broker that came back empty) or has another partition count stops the run (`TopicChanged`):
its offsets, partitioning and outputs would otherwise silently refer to another topic.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from profilestream.codec import avro, registry
from profilestream.domain.roles import (
    CLICKSTREAM,
    CRM_CHANGES,
    CRM_FEED,
    DEAD_LETTERS,
    MERGES,
    PROFILES,
    TOPIC_ROLES,
    TRIGGERS,
)
from profilestream.ops import metrics

KEY_FIELDS = {  # the record field that is the message key, per docs/topics.md "Overview"
    CLICKSTREAM: "device_id",
    CRM_CHANGES: "customer_id",
    PROFILES: "profile_id",
    MERGES: "into_profile_id",
    TRIGGERS: "profile_id",
    CRM_FEED: "customer_id",
    DEAD_LETTERS: None,
}
COMPACTED = (PROFILES, CRM_FEED)  # the latest record of a key is the state: keep it forever


class BrokerError(RuntimeError):
    """A Kafka problem a user can act on (no broker, missing topic, failed delivery)."""


class BrokerUnreachable(BrokerError):
    """No broker answered the first request within `run.connect_timeout`."""


class MissingTopics(BrokerError):
    """Topics a command needs do not exist (`profilestream topics create` makes them)."""


class TopicChanged(BrokerError):
    """A topic vanished, was created again or changed its partition count while in use."""


class Message(NamedTuple):
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp: int  # ms


def client_config(config) -> dict[str, str]:
    """`bootstrap.servers` plus every other `[kafka]` key, as librdkafka wants them."""
    return config.kafka.client_config()


class _Last(logging.Handler):
    """Keeps librdkafka's last log line, for the one-line error that replaces them all."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()


_QUIET = logging.getLogger("profilestream.kafka.connect")
_QUIET.propagate = False
_LAST = _Last()
_QUIET.addHandler(_LAST)


def quiet(conf: dict[str, Any]) -> dict[str, Any]:
    """A client configuration with the quiet logger, for clients made while the broker may be
    absent: it prints nothing (see the module doc) and keeps the last line for `unreachable`."""
    return {"logger": _QUIET, **conf}


def unreachable(config, exc: BaseException | None = None) -> BrokerUnreachable:
    """The one line that says no broker answered: where it was asked, how long, and why."""
    why = None
    if exc is not None:
        why = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
    said = _LAST.message
    if said and (why is None or said not in why):
        said = said.split(": ", 2)[-1] if said.count(": ") >= 2 else said  # drop librdkafka's thread prefix
        why = f"{why}; last: {said}" if why else said
    return BrokerUnreachable(
        f"no Kafka broker answered at kafka.brokers = {config.kafka.brokers} within run.connect_timeout = "
        f"{_timeout(config):g}s"
        + (f" ({why})" if why else "")
        + "; check kafka.brokers, or start one with `profilestream broker`"
    )


def admin_client(config) -> AdminClient:
    return AdminClient(quiet(client_config(config)))


def _timeout(config) -> float:
    return config.run.connect_timeout / 1000


def role_of(config, topic: str) -> str:
    """The role of a topic given by its configured name or by its role (`crm-changes`, `crm_changes`)."""
    names = config.topics.names()
    for role, name in names.items():
        if topic == name:
            return role
    if topic.replace("-", "_") in TOPIC_ROLES:
        return topic.replace("-", "_")
    raise BrokerError(f'unknown topic "{topic}"; the configured topics are: {", ".join(names.values())}')


def key_of(role: str, record: dict[str, Any]) -> str | None:
    field = KEY_FIELDS[role]
    return None if field is None else record[field]


def metadata(config, client, topic: str | None = None):
    """The cluster's metadata (one topic's, or all); no answer is `BrokerUnreachable`."""
    _LAST.message = None  # what librdkafka says from now on is about this request
    try:
        return client.list_topics(topic, timeout=_timeout(config))
    except KafkaException as exc:
        if isinstance(client, (AdminClient, Producer)):
            client.poll(0)  # serve librdkafka's log lines to the quiet logger: the last one says why
        raise unreachable(config, exc) from None


def _partitions(config, client, topic: str) -> list[int]:
    """The topic's partitions; a missing topic or a silent broker is a `BrokerError`."""
    found = metadata(config, client, topic).topics.get(topic)
    if found is None or found.error is not None:
        raise MissingTopics(f'topic "{topic}" does not exist (create it with `profilestream topics create`)')
    return sorted(found.partitions)


def new_topic(name: str, role: str | None, partitions: int, replication_factor: int = 1) -> NewTopic:
    """A topic as profilestream creates it: compacted where the latest record of a key is the state."""
    return NewTopic(
        name, partitions, replication_factor, config={"cleanup.policy": "compact"} if role in COMPACTED else {}
    )


_NOT_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}


def _await_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Wait until every partition of `names` has a leader. Apache Kafka answers CreateTopics once
    its controller has the topic; the broker learns the leaders a moment later, and a request in
    between (ListOffsets, Produce) is refused with NOT_LEADER_FOR_PARTITION (measured on a
    single-node KRaft broker). Tansu has them at once."""
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        found = admin.list_topics(timeout=max(0.1, deadline - time.monotonic())).topics
        for name in list(pending):
            topic = found.get(name)
            partitions = topic.partitions.values() if topic is not None and topic.error is None else ()
            if partitions and all(p.error is None and p.leader >= 0 for p in partitions):
                pending.discard(name)
        if pending:
            if time.monotonic() > deadline:
                raise BrokerError(f"topics {', '.join(sorted(pending))} have no partition leader after {timeout:g}s")
            time.sleep(0.02)


def create_missing(admin: AdminClient, topics: list[NewTopic], timeout: float) -> list[str]:
    """Create `topics`; one created meanwhile by someone else counts as done. Returns the names
    this call created, once their partitions have leaders (`_await_leaders`)."""
    if not topics:
        return []
    created = []
    factors = {t.topic: t.replication_factor for t in topics}
    refused: list[tuple[str, str]] = []
    for name, future in admin.create_topics(topics, operation_timeout=timeout, request_timeout=timeout).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if error.code() == KafkaError.INVALID_REPLICATION_FACTOR:
                refused.append((name, error.str()))
                continue
            raise BrokerError(f'cannot create topic "{name}": {error.str()}') from None
    if refused:
        names = ", ".join(name for name, _ in refused)
        factor = factors[refused[0][0]]
        raise BrokerError(
            f"the cluster refused topics.replication_factor = {factor} ({refused[0][1]}); set it to at most "
            f"the number of brokers (1 for a single local broker); topics not created: {names}"
            + (f"; created: {', '.join(created)}" if created else "")
        )
    _await_leaders(admin, [t.topic for t in topics], timeout)
    return created


def create_topics(config) -> list[str]:
    """Create every configured topic that is missing (compacted where the state lives); returns the
    names created. Tansu accepts `cleanup.policy=compact` but, in memory, never compacts."""
    admin = admin_client(config)
    existing = metadata(config, admin).topics
    wanted = [
        new_topic(config.topics.name(role), role, config.topics.partitions, config.topics.replication_factor)
        for role in TOPIC_ROLES
        if config.topics.name(role) not in existing
    ]
    return create_missing(admin, wanted, _timeout(config))


def produce_records(config, role: str, records: Iterable[tuple[str | bytes | None, dict | None]]) -> int:
    """Avro-encode and produce `(key, record)` pairs (None = tombstone) to the role's topic, wait
    for every delivery and return the count; any delivery error raises `BrokerError`. The topic
    must exist: brokers that auto-create topics (Tansu does, with 4 partitions) would otherwise
    silently make one with the wrong partition count. With `schema_registry.url` set the values
    are in the Confluent wire format (`codec.registry`)."""
    topic = config.topics.name(role)
    wire = registry.wire_for(config)
    encode = avro.encode if wire is None else wire.encode
    producer = Producer(quiet({"allow.auto.create.topics": False, **client_config(config)}))
    _partitions(config, producer, topic)
    errors: list[KafkaError] = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(err)

    sent = 0
    for key, record in records:
        value = None if record is None else encode(role, record)
        key = key.encode("utf-8") if isinstance(key, str) else key
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        producer.poll(0)
        sent += 1
    left = producer.flush(_timeout(config) + 30)
    if errors or left:
        why = errors[0].str() if errors else f"{left} not acknowledged in time"
        raise BrokerError(f"{len(errors) + left} of {sent} records to {topic} were not delivered: {why}")
    return sent


def _consumer(config) -> Consumer:
    return Consumer(
        quiet(
            {
                **client_config(config),
                "group.id": f"profilestream-read-{uuid.uuid4().hex}",  # never joined: assign only
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 100,
            }
        )
    )


_TRANSIENT = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT}


def _eof(message) -> bool:
    return message.error() is not None  # `_consume` lets no other error through


def _consume(consumer: Consumer, stall: float | None) -> Iterator:
    """Messages and end-of-partition events, forever. Connection errors are left to librdkafka's
    retries, up to `stall` seconds without progress (None: wait forever, for tailing); any other
    error raises `BrokerError`."""
    quiet_since = time.monotonic()
    while True:
        progress = False
        for m in consumer.consume(1000, 0.1):
            error = m.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                if error.code() in _TRANSIENT and not error.fatal():
                    continue
                raise BrokerError(f"reading {m.topic()}: {error.str()}")
            progress = True
            yield m
        if progress:
            quiet_since = time.monotonic()
        elif stall is not None and time.monotonic() - quiet_since > stall:
            raise BrokerError(f"the broker sent nothing for {stall:.0f}s while records were expected")


def _watermarks(config, consumer: Consumer, partition: TopicPartition, timeout: float) -> tuple[int, int]:
    """(low, high) as the broker tells them. A partition whose leader the broker does not know yet
    (a topic just created on Apache Kafka: `_await_leaders`) is asked again until `timeout`; no
    answer at all is `BrokerUnreachable`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=max(0.1, deadline - time.monotonic()))
            return low, high
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() in _NOT_YET and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            if error.code() in _NOT_YET:
                raise BrokerError(f"reading {partition.topic}/{partition.partition}: {error.str()}") from None
            raise unreachable(config, exc) from None  # the broker went away between the two requests


def end_offsets(config, topic: str) -> dict[int, tuple[int, int]]:
    """`{partition: (first offset, end offset)}`, exact even on Tansu (see the module doc)."""
    consumer = _consumer(config)
    try:
        timeout = _timeout(config)
        partitions = _partitions(config, consumer, topic)
        ends = {p: _watermarks(config, consumer, TopicPartition(topic, p), timeout) for p in partitions}
        pending = {p for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(topic, p, ends[p][1] - 1) for p in pending])
        for m in _consume(consumer, timeout) if pending else ():
            if _eof(m) and m.partition() in pending:
                ends[m.partition()] = (ends[m.partition()][0], m.offset())
                pending.discard(m.partition())
                if not pending:
                    break
        return ends
    finally:
        consumer.close()


def read_topic(config, topic: str, until_idle: bool = True, timeout: float | None = None) -> Iterator[Message]:
    """Every record of `topic` from the beginning, all partitions. With `until_idle` it stops at
    the end each partition had when the read began (`BrokerError` if the broker then stays silent
    for `timeout` seconds, default `run.connect_timeout`); otherwise it tails until interrupted."""
    ends = end_offsets(config, topic)
    pending = {p for p, (low, end) in ends.items() if end > low}
    if until_idle and not pending:
        return
    consumer = _consumer(config)
    try:
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
        stall = (_timeout(config) if timeout is None else timeout) if until_idle else None
        for m in _consume(consumer, stall):
            partition, end = m.partition(), ends[m.partition()][1]
            if _eof(m):
                offset = m.offset() - 1
            else:
                offset = m.offset()
                if until_idle and offset >= end:
                    continue
                yield Message(m.key(), m.value(), partition, offset, m.timestamp()[1])
            if offset + 1 >= end:
                pending.discard(partition)
                if until_idle and not pending:
                    return
    finally:
        consumer.close()


# --- topics that change under a run ------------------------------------------------------------


class TopicState(NamedTuple):
    """What identifies a topic to a run: its partition count and, where the broker gives one,
    its id (a topic deleted and created again under the same name gets a new id)."""

    partitions: int
    topic_id: str | None


_GONE = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC}
_NO_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # the zero Uuid: a broker that keeps no topic ids


def _state(description) -> TopicState:
    topic_id = getattr(description, "topic_id", None)
    topic_id = None if topic_id is None or str(topic_id) == _NO_ID else str(topic_id)
    return TopicState(len(description.partitions), topic_id)


def _describe(admin: AdminClient, names: list[str], timeout: float) -> dict:
    return admin.describe_topics(TopicCollection(list(names)), request_timeout=timeout)


def topic_states(config, names: Iterable[str]) -> dict[str, TopicState | None]:
    """`{name: TopicState, or None when the topic does not exist}`, asked once (blocking).
    A broker that cannot describe topics (no ids) is asked for the partition counts only."""
    names = list(dict.fromkeys(names))
    admin = admin_client(config)
    listed = metadata(config, admin).topics  # also the reachability check, with its clear message
    found: dict[str, TopicState | None] = {}
    try:
        futures = _describe(admin, [n for n in names if n in listed], _timeout(config))
    except KafkaException:  # a broker that cannot describe topics
        futures = {}
    for name in names:
        if name not in listed:
            found[name] = None
            continue
        state = None
        if name in futures:
            with contextlib.suppress(KafkaException):  # no description (deleted meanwhile, an old broker): counts only
                state = _state(futures[name].result())
        found[name] = state or TopicState(len(listed[name].partitions), None)
    return found


def require_topics(config, names: Iterable[str]) -> dict[str, TopicState]:
    """The states of topics a command needs; any missing is one `MissingTopics` naming them all.
    A run never creates topics: a broker that auto-creates them (Tansu does, with 4 partitions)
    would otherwise hide a wrong address or a lost broker behind topics of the wrong layout."""
    states = topic_states(config, names)
    missing = [name for name, state in states.items() if state is None]
    if missing:
        raise MissingTopics(
            f"topic{'s' * (len(missing) > 1)} {', '.join(missing)} {'do' if len(missing) > 1 else 'does'} "
            f"not exist at kafka.brokers = {config.kafka.brokers}; `profilestream topics create` creates "
            "every configured topic"
        )
    return states  # type: ignore[return-value]


CHECK_EVERY = 5.0  # seconds between looks at the topics while a run goes on
LOOK_TIMEOUT = 10.0  # a look not answered by then is dropped (the broker is away: librdkafka waits)


def changed(name: str, was: TopicState, now: TopicState | None) -> str | None:
    """Why topic `name` is no longer the one the run started with, or None if it still is."""
    if now is None:
        return f'topic "{name}" no longer exists (deleted, or the broker came back empty)'
    if was.topic_id is not None and now.topic_id is not None and was.topic_id != now.topic_id:
        counts = (
            ""
            if was.partitions == now.partitions
            else f", with {now.partitions} partitions instead of {was.partitions}"
        )
        return f'topic "{name}" was deleted and created again (its topic id changed{counts})'
    if was.partitions != now.partitions:
        return f'topic "{name}" had {was.partitions} partitions when the run started and has {now.partitions} now'
    return None


def topic_changed(brokers: str, problem: str) -> TopicChanged:
    return TopicChanged(
        f"{problem} at kafka.brokers = {brokers}; the run stopped rather than read or write a topic "
        "it did not start with. Check the topics (`profilestream topics create` makes missing ones) "
        "and start the run again (with a new --recovery-dir if an input topic was recreated)"
    )


class TopicWatch:
    """Looks every `every` seconds whether the topics are still those of `expected`; shared by
    every reader and writer of a process, so one request per interval whatever their number.

    `check()` never blocks the worker: it sends the request (`describe_topics`, answered on
    librdkafka's background thread) and looks at the answer at a later call. An unanswered or
    failed look (the broker away: the run waits for it as before) is dropped and tried again;
    only an answer that shows a change raises `TopicChanged`, then at every call."""

    def __init__(self, conf: dict[str, Any], expected: dict[str, TopicState], every: float = CHECK_EVERY):
        self._conf = dict(conf)
        self._brokers = conf.get("bootstrap.servers", "?")
        self.expected = dict(expected)
        self._every = every
        self._admin: AdminClient | None = None
        self._lock = threading.Lock()
        self._pending: dict | None = None
        self._asked = 0.0
        self._due = time.monotonic() + every
        self.problem: str | None = None

    def check(self) -> None:
        if self.problem is None and time.monotonic() >= self._due and self._lock.acquire(blocking=False):
            try:
                self._step(time.monotonic())
            finally:
                self._lock.release()
        self.raise_problem()

    def raise_problem(self) -> None:
        """`TopicChanged` if a look has found a change (the runner asks once Bytewax is done)."""
        if self.problem is not None:
            raise topic_changed(self._brokers, self.problem)

    def verify(self, timeout: float = LOOK_TIMEOUT) -> None:
        """A look now, waited for up to `timeout` (a writer before it says it is done)."""
        with self._lock:
            if self.problem is None:
                self._ask(time.monotonic())
                deadline = time.monotonic() + timeout
                while not self._answered() and time.monotonic() < deadline:
                    time.sleep(0.01)
                self._step(time.monotonic())
        self.raise_problem()

    def _answered(self) -> bool:
        return self._pending is not None and all(f.done() for f in self._pending.values())

    def _ask(self, now: float) -> None:
        if self._admin is None:
            self._admin = AdminClient(quiet(self._conf))
        self._admin.poll(0)  # serve its log queue: the quiet logger, nothing piles up
        try:
            self._pending = _describe(self._admin, list(self.expected), LOOK_TIMEOUT)
        except KafkaException:
            self._pending = None
        self._asked = now

    def _step(self, now: float) -> None:
        if self._pending is None:
            self._ask(now)
            return
        if not self._answered():
            if now - self._asked > LOOK_TIMEOUT + 1:  # not answered: the broker is away
                metrics.COUNTERS.broker_trouble(f"no answer to a look at the topics within {LOOK_TIMEOUT:g} s")
                self._pending = None
                self._due = now + self._every
            return
        pending, self._pending = self._pending, None
        self._due = now + self._every
        for name, future in pending.items():
            try:
                state = _state(future.result())
                metrics.COUNTERS.broker_answered()  # readiness: an idle run's broker is back (`/readyz`)
            except KafkaException as exc:
                if exc.args[0].code() not in _GONE:
                    continue  # transport trouble and the like: look again later
                state = None
            problem = changed(name, self.expected[name], state)
            if problem is not None:
                self.problem = problem
                return


_WATCH: TopicWatch | None = None


def watch_topics(conf: dict[str, Any] | None, expected: dict[str, TopicState] | None) -> TopicWatch | None:
    """Set (or, with None, clear) this process's watch: the runner sets it from the states it
    noted at start, before the dataflow's readers and writers are built; they find it with
    `topic_watch()`. A flow built without the runner (tests) has none and checks nothing."""
    global _WATCH
    _WATCH = None if conf is None or not expected else TopicWatch(conf, expected)
    return _WATCH


def topic_watch() -> TopicWatch | None:
    return _WATCH


__all__ = [
    "CHECK_EVERY",
    "COMPACTED",
    "KEY_FIELDS",
    "LOOK_TIMEOUT",
    "BrokerError",
    "BrokerUnreachable",
    "Message",
    "MissingTopics",
    "TopicChanged",
    "TopicState",
    "TopicWatch",
    "admin_client",
    "changed",
    "client_config",
    "create_missing",
    "create_topics",
    "end_offsets",
    "key_of",
    "metadata",
    "new_topic",
    "produce_records",
    "quiet",
    "read_topic",
    "require_topics",
    "role_of",
    "topic_changed",
    "topic_states",
    "topic_watch",
    "unreachable",
    "watch_topics",
]
