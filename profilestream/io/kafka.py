"""Kafka helpers shared by every command: client config, topic creation, producing, reading.

Consumers here use `assign` with explicit offsets, never group subscription: a one-off read has
no use for group coordination, and Tansu takes seconds to join a group.

End offsets are found by reading, not by asking: Tansu 0.6.0 answers ListOffsets(latest) (what
`get_watermark_offsets` sends) with the base offset of the partition's last record *batch* plus
one, so a partition whose last batch held 10 records reports an end 9 too early. `end_offsets`
fetches from that point to the end of the partition and takes the offset where the fetch reports
end-of-partition, which is exact on Tansu and on Kafka alike.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Iterable, Iterator, NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from profilestream.config import TOPIC_ROLES
from profilestream.io import avro

KEY_FIELDS = {  # the record field that is the message key, per CONTRACT.md
    "clickstream": "device_id",
    "crm_changes": "customer_id",
    "profiles": "profile_id",
    "merges": "into_profile_id",
    "triggers": "profile_id",
    "crm_feed": "customer_id",
    "dead_letters": None,
}
COMPACTED = ("profiles", "crm_feed")  # the latest record of a key is the state: keep it forever


class BrokerError(RuntimeError):
    """A Kafka problem a user can act on (no broker, missing topic, failed delivery)."""


class Message(NamedTuple):
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp: int  # ms


def client_config(config) -> dict[str, str]:
    """`bootstrap.servers` plus every other `[kafka]` key, as librdkafka wants them."""
    return config.kafka.client_config()


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


def _metadata(client, timeout: float, topic: str | None = None):
    try:
        return client.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"no Kafka broker answered within {timeout:.0f}s: {exc.args[0].str()}") from None


def _partitions(client, topic: str, timeout: float) -> list[int]:
    """The topic's partitions; a missing topic or a silent broker is a `BrokerError`."""
    found = _metadata(client, timeout, topic).topics.get(topic)
    if found is None or found.error is not None:
        raise BrokerError(f'topic "{topic}" does not exist (create it with `profilestream topics create`)')
    return sorted(found.partitions)


def new_topic(name: str, role: str | None, partitions: int) -> NewTopic:
    """A topic as profilestream creates it: compacted where the latest record of a key is the state."""
    return NewTopic(name, partitions, 1, config={"cleanup.policy": "compact"} if role in COMPACTED else {})


def create_missing(admin: AdminClient, topics: list[NewTopic], timeout: float) -> list[str]:
    """Create `topics`; one created meanwhile by someone else counts as done. Returns the names
    this call created."""
    if not topics:
        return []
    created = []
    for name, future in admin.create_topics(topics, operation_timeout=timeout, request_timeout=timeout).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f'cannot create topic "{name}": {exc.args[0].str()}') from None
    return created


def create_topics(config) -> list[str]:
    """Create every configured topic that is missing (compacted where the state lives); returns the
    names created. Tansu accepts `cleanup.policy=compact` but, in memory, never compacts."""
    admin = AdminClient(client_config(config))
    existing = _metadata(admin, _timeout(config)).topics
    wanted = [new_topic(config.topics.name(role), role, config.topics.partitions)
              for role in TOPIC_ROLES if config.topics.name(role) not in existing]
    return create_missing(admin, wanted, _timeout(config))


def produce_records(config, role: str, records: Iterable[tuple[str | bytes | None, dict | None]]) -> int:
    """Avro-encode and produce `(key, record)` pairs (None = tombstone) to the role's topic, wait
    for every delivery and return the count; any delivery error raises `BrokerError`. The topic
    must exist: brokers that auto-create topics (Tansu does, with 4 partitions) would otherwise
    silently make one with the wrong partition count."""
    topic = config.topics.name(role)
    producer = Producer({"allow.auto.create.topics": False, **client_config(config)})
    _partitions(producer, topic, _timeout(config))
    errors: list[KafkaError] = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(err)

    sent = 0
    for key, record in records:
        value = None if record is None else avro.encode(role, record)
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
    return Consumer({
        **client_config(config),
        "group.id": f"profilestream-read-{uuid.uuid4().hex}",  # never joined: assign only
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 100,
    })


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


def end_offsets(config, topic: str) -> dict[int, tuple[int, int]]:
    """`{partition: (first offset, end offset)}`, exact even on Tansu (see the module doc)."""
    consumer = _consumer(config)
    try:
        timeout = _timeout(config)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                for p in _partitions(consumer, topic, timeout)}
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
