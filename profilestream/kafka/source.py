"""Reading the two input topics as a Bytewax source that knows where each partition ends.

Bytewax's own KafkaSource stops a bounded run silently at the end of each partition. Event time
needs to be told: a partition that has been read to its end must stop holding the watermark back,
or a replay of one topic long before the other would wait for data that never comes. So each
partition here emits a `PartitionEnd` marker after its last record in a bounded run, and its
snapshot is the next offset to read (Bytewax recovery resumes from it).

Consumers use `assign` with explicit offsets, never group subscription: no rebalancing, and Tansu
is slow to join groups.

Broker trouble: a broker that stops answering is librdkafka's to wait out (it reconnects and
retries by itself); the transient errors it reports meanwhile (transport failure, all brokers
down, timed out) are logged, rate-limited, and reading goes on where it was. Any other error
stops the run. Every consumer gets the `[kafka]` table's settings (SASL/SSL, ...) as they are.

Topics that change under the run (issue 11): a partition whose offsets go back (the topic was
recreated, or the broker lost its data and came back empty) stops the run at once, and every
read asks the process's `TopicWatch` (set by the runner), which looks at the topics' ids and
partition counts every few seconds without blocking: reading on would mix two topics' offsets
in one snapshot, or silently read nothing from a topic that no longer exists.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from profilestream.domain.compact import pickled_as_fields
from profilestream.kafka.clients import topic_changed, topic_watch
from profilestream.ops import metrics

IDLE_POLL = timedelta(milliseconds=5)
TRANSIENT = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NETWORK_EXCEPTION,
    }
)
WARN_EVERY = 10.0
STOP = threading.Event()  # set on SIGINT/SIGTERM (`runner`): every partition ends its read


def consumer_config(conf: dict[str, str]) -> dict[str, Any]:
    """An input consumer's librdkafka configuration: the `[kafka]` settings (`conf`) plus what
    explicit assignment needs. Offsets live in Bytewax snapshots, never in a consumer group."""
    return {
        # Latency: an idle partition's fetch is answered after this wait (Tansu answers only then,
        # Kafka as soon as data arrives); the default 500 ms would put half a second on a trigger.
        # Before `**conf`, so `[kafka] fetch.wait.max.ms` still overrides it.
        "fetch.wait.max.ms": 10,
        # librdkafka prefetches up to 64 MB per consumer by default, and there is one consumer per
        # partition: 8 MB is ample for a 1000-record batch and takes ~25 MB off a run's peak RSS
        "queued.max.messages.kbytes": 8192,
        **conf,
        "group.id": "profilestream",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        # a snapshot offset that retention has deleted since: read from the oldest record left
        # (the default, "latest", would skip everything in between without a word)
        "auto.offset.reset": "earliest",
    }


def transient(error: KafkaError) -> bool:
    return not error.fatal() and (error.code() in TRANSIENT or error.retriable())


@pickled_as_fields
@dataclass(slots=True)
class Raw:
    """A record as read from an input topic, before decoding. Never changed once built (not
    `frozen`: see `events.Click`)."""

    role: str  # an input role (`domain.roles.INPUT_ROLES`)
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int  # the Kafka record's timestamp, ms

    @property
    def source(self) -> str:
        return f"{self.topic}/{self.partition}"


@pickled_as_fields
@dataclass(slots=True)
class PartitionEnd:
    """A bounded run has read this partition to the end it had when the run started."""

    source: str


class _Partition(StatefulSourcePartition):
    def __init__(
        self,
        conf: dict,
        role: str,
        topic: str,
        partition: int,
        offset: int | None,
        span: tuple[int, int] | None,
        batch_size: int,
        gate: Callable[[], bool] | None = None,
    ):
        self._warn = metrics.Every(WARN_EVERY)
        self._consumer = Consumer(
            {**conf, "error_cb": self._client_error, "logger": logging.getLogger("profilestream.kafka.consumer")}
        )
        self._role, self._topic, self._partition = role, topic, partition
        self._source = f"{topic}/{partition}"
        self._batch_size = batch_size
        self._gate = gate
        self._watch = topic_watch()
        self._brokers = conf.get("bootstrap.servers", "?")
        self._next = OFFSET_BEGINNING if offset is None else offset
        self._end: int | None = None
        if span is not None:  # bounded: read [first, end) as measured when this run started
            low, self._end = span
            if self._next == OFFSET_BEGINNING:
                self._next = low
            elif self._next < low:  # resumed, but retention deleted records since the snapshot
                metrics.log(
                    "offset_gone",
                    logging.WARNING,
                    partition=self._source,
                    snapshot_offset=self._next,
                    first_offset=low,
                    lost=low - self._next,
                )
                self._next = low
        metrics.log(
            "partition",
            partition=self._source,
            start="beginning" if self._next == OFFSET_BEGINNING else self._next,
            resumed=offset is not None,
            end=self._end,
        )
        self._consumer.assign([TopicPartition(topic, partition, self._next)])
        self._done = False
        self._awake: datetime | None = None
        self._publish()

    def _client_error(self, error: KafkaError) -> None:
        """librdkafka's own errors (broker down, ...): it retries by itself; say so, now and then
        (readiness hears of each at once: `/readyz`)."""
        metrics.COUNTERS.broker_trouble(error.str())
        if self._warn.ready():
            metrics.log(
                "kafka_trouble",
                logging.WARNING,
                client="consumer",
                partition=self._source,
                error=error.str(),
                fatal=error.fatal(),
            )

    def _publish(self) -> None:
        if self._end is not None:
            high = self._end
        else:
            try:
                high = self._consumer.get_watermark_offsets(TopicPartition(self._topic, self._partition), cached=True)[
                    1
                ]
            except KafkaException:
                high = None
        metrics.COUNTERS.partition(self._source, max(self._next, 0), high)

    def next_batch(self):
        if self._done or STOP.is_set():
            raise StopIteration()
        if self._watch is not None:
            self._watch.check()
        if self._end is not None and self._next >= self._end:
            self._done = True
            return [PartitionEnd(self._source)]
        if self._gate is not None and not self._gate():  # the engine is behind: wait for it
            self._awake = datetime.now(UTC) + IDLE_POLL
            return []
        messages = self._consumer.consume(self._batch_size, 0)  # never block the worker: librdkafka prefetches
        batch = []
        for m in messages:
            error = m.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                if transient(error):  # librdkafka reconnects and fetches again by itself
                    self._client_error(error)
                    continue
                raise KafkaException(error)
            offset = m.offset()
            if offset < self._next:
                raise topic_changed(
                    self._brokers,
                    f"partition {self._source} went back from offset {self._next} "
                    f"to {offset} (the topic was recreated, or the broker lost its data)",
                )
            if self._end is not None and offset >= self._end:
                continue
            batch.append(Raw(self._role, self._topic, self._partition, offset, m.key(), m.value(), m.timestamp()[1]))
            self._next = offset + 1
        if batch:
            self._awake = None
            self._publish()
        else:
            self._awake = datetime.now(UTC) + IDLE_POLL
        return batch

    def next_awake(self):
        return self._awake

    def snapshot(self) -> int:
        return self._next

    def close(self) -> None:
        self._consumer.close()


class InputSource(FixedPartitionedSource):
    """Every partition of the input topics; `topics` maps role to topic name and partition count.

    A process of a cluster that is better off not reading (the engine's) passes `local=False`; one
    that reads for it passes `gate`, asked before each read (False: pause, see `io.inflight`).
    A bounded run passes `spans`: per role, `{partition: (first offset, end offset)}` measured once
    before the run (`kafka.end_offsets`, exact even where a broker's high watermark is not), so
    every worker and process agrees where the input ends."""

    def __init__(
        self,
        conf: dict,
        topics: dict[str, tuple[str, int]],
        spans: dict[str, dict[int, tuple[int, int]]] | None,
        batch_size: int = 1000,
        local: bool = True,
        gate: Callable[[], bool] | None = None,
    ):
        self._conf = consumer_config(conf)
        self._topics = topics
        self._spans = spans
        self._batch_size = batch_size
        self._local = local
        self._gate = gate

    def list_parts(self) -> list[str]:
        """Every partition, where this process may read (`local`); none where it may not, so that
        Bytewax gives them all to the other processes of the cluster."""
        if not self._local:
            return []
        return [f"{role}/{p}" for role, (_, count) in self._topics.items() for p in range(count)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        role, partition = for_part.rsplit("/", 1)
        topic = self._topics[role][0]
        span = None if self._spans is None else self._spans[role].get(int(partition), (0, 0))
        return _Partition(self._conf, role, topic, int(partition), resume_state, span, self._batch_size, self._gate)

    def sources(self) -> list[str]:
        """The names the engine knows partitions by (`Raw.source`)."""
        return [f"{topic}/{p}" for topic, count in self._topics.values() for p in range(count)]


__all__ = [
    "IDLE_POLL",
    "STOP",
    "TRANSIENT",
    "WARN_EVERY",
    "InputSource",
    "PartitionEnd",
    "Raw",
    "consumer_config",
    "transient",
]
