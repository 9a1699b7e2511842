"""Reading the two input topics as a Bytewax source that knows where each partition ends.

Bytewax's own KafkaSource stops a bounded run silently at the end of each partition. Event time
needs to be told: a partition that has been read to its end must stop holding the watermark back,
or a replay of one topic long before the other would wait for data that never comes. So each
partition here emits a `PartitionEnd` marker after its last record in a bounded run, and its
snapshot is the next offset to read (Bytewax recovery resumes from it).

Consumers use `assign` with explicit offsets, never group subscription: no rebalancing, and Tansu
is slow to join groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

IDLE_POLL = timedelta(milliseconds=5)


@dataclass(frozen=True, slots=True)
class Raw:
    """A record as read from an input topic, before decoding."""

    role: str  # "clickstream" or "crm_changes"
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int  # the Kafka record's timestamp, ms

    @property
    def source(self) -> str:
        return f"{self.topic}/{self.partition}"


@dataclass(frozen=True, slots=True)
class PartitionEnd:
    """A bounded run has read this partition to the end it had when the run started."""

    source: str


class _Partition(StatefulSourcePartition):
    def __init__(self, conf: dict, role: str, topic: str, partition: int, offset: int | None,
                 span: tuple[int, int] | None, batch_size: int):
        self._consumer = Consumer(conf)
        self._role, self._topic, self._partition = role, topic, partition
        self._source = f"{topic}/{partition}"
        self._batch_size = batch_size
        self._next = OFFSET_BEGINNING if offset is None else offset
        self._end: int | None = None
        if span is not None:  # bounded: read [first, end) as measured when the run started
            low, self._end = span
            if self._next == OFFSET_BEGINNING:
                self._next = low
        self._consumer.assign([TopicPartition(topic, partition, self._next)])
        self._done = False
        self._awake: Optional[datetime] = None

    def next_batch(self):
        if self._done:
            raise StopIteration()
        if self._end is not None and self._next >= self._end:
            self._done = True
            return [PartitionEnd(self._source)]
        messages = self._consumer.consume(self._batch_size, 0.001)
        batch = []
        for m in messages:
            error = m.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            offset = m.offset()
            if self._end is not None and offset >= self._end:
                continue
            batch.append(Raw(self._role, self._topic, self._partition, offset, m.key(), m.value(), m.timestamp()[1]))
            self._next = offset + 1
        self._awake = None if batch else datetime.now(timezone.utc) + IDLE_POLL
        return batch

    def next_awake(self):
        return self._awake

    def snapshot(self) -> int:
        return self._next

    def close(self) -> None:
        self._consumer.close()


class InputSource(FixedPartitionedSource):
    """Every partition of the input topics; `topics` maps role to topic name and partition count.

    A bounded run passes `spans`: per role, `{partition: (first offset, end offset)}` measured once
    before the run (`kafka.end_offsets`, exact even where a broker's high watermark is not), so
    every worker and process agrees where the input ends."""

    def __init__(self, conf: dict, topics: dict[str, tuple[str, int]],
                 spans: dict[str, dict[int, tuple[int, int]]] | None, batch_size: int = 1000):
        self._conf = {
            **conf,
            "group.id": "profilestream",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
        self._topics = topics
        self._spans = spans
        self._batch_size = batch_size

    def list_parts(self) -> list[str]:
        return [f"{role}/{p}" for role, (_, count) in self._topics.items() for p in range(count)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        role, partition = for_part.rsplit("/", 1)
        topic = self._topics[role][0]
        span = None if self._spans is None else self._spans[role].get(int(partition), (0, 0))
        return _Partition(self._conf, role, topic, int(partition), resume_state, span, self._batch_size)

    def sources(self) -> list[str]:
        """The names the engine knows partitions by (`Raw.source`)."""
        return [f"{topic}/{p}" for topic, count in self._topics.values() for p in range(count)]
