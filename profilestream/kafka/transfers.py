"""The transfer loop on Kafka: the internal topic `<profiles topic>-transfers`.

Why a topic (README "Design", `flows.loop`): a merged profile's contents must reach the
survivor's shard, which may live in another process, and a dataflow has no edge back. Like Kafka
Streams' repartition topics, the topic is internal: the shard step writes `Transfer`s to it and
the loop's source reads them back into the shard step. Layout:

- name: the profiles topic's name plus `-transfers` (`transfers_topic`), created by
  `topics create` and, if missing, by `run` (`ensure_topic`);
- partitions: `topics.partitions`, like the other topics; a transfer goes to the partition of the
  survivor's id (`flows.loop.loop_partition`), the end marker of a bounded run to each;
- retention: `cleanup.policy = delete`, 7 days (`RETENTION_MS`): a transfer is read within
  moments of being written; a run resumed from a snapshot re-reads from its snapshot's offsets,
  so the retention must outlast the longest outage you would resume from;
- values: the pickled `Transfer` / `LoopEnd` (the topic is the run's own, like its recovery
  directory: give no one else write access to it); keys: the survivor's profile id.

A run that starts afresh reads each partition from the end it had when the run began (the runner
measures it, `ensure_topic`), so transfers of earlier runs are never read; a resumed run reads
from its snapshot's offsets. Records are written as the output topics are (`kafka.sink`): with
recovery, each batch waits for the broker's acknowledgement before the epoch can be snapshotted.
"""

from __future__ import annotations

import pickle
from typing import Any

from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from profilestream.domain.commands import Transfer
from profilestream.flows.loop import LoopEnd, LoopItem, LoopProgress, loop_partition
from profilestream.kafka import clients
from profilestream.kafka.sink import _SinkPartition
from profilestream.kafka.source import _Partition, consumer_config

__all__ = ["RETENTION_MS", "SUFFIX", "KafkaLoop", "ensure_topic", "transfers_topic"]

SUFFIX = "-transfers"
RETENTION_MS = 7 * 24 * 3600 * 1000
END_KEY = b"~end"


def transfers_topic(config: Any) -> str:
    """The internal topic's name: the profiles topic's, plus `-transfers`."""
    return config.topics.profiles + SUFFIX


def new_transfers_topic(config: Any) -> Any:
    """The topic as `topics create` and `run` create it."""
    topic = clients.new_topic(transfers_topic(config), None, config.topics.partitions, config.topics.replication_factor)
    topic.config = {"cleanup.policy": "delete", "retention.ms": str(RETENTION_MS)}
    return topic


def ensure_topic(config: Any) -> dict[int, int]:
    """Create the transfers topic if it is missing; the end offset of each of its partitions now
    (where a new run starts reading it)."""
    admin = clients.admin_client(config)
    name = transfers_topic(config)
    if name not in clients.metadata(config, admin).topics:
        clients.create_missing(admin, [new_transfers_topic(config)], clients._timeout(config))
    return {p: end for p, (_, end) in clients.end_offsets(config, name).items()}


class KafkaLoop:
    """`flows.loop`'s loop on the transfers topic: `source()` reads it, `sink()` writes it.
    `starts`: each partition's end offset when the run started (`ensure_topic`); None: measured
    when needed (`describe` builds the flow without a broker and never needs it)."""

    def __init__(self, config: Any, bounded: bool, wait: bool = True, starts: dict[int, int] | None = None):
        self._config = config
        self._conf = config.kafka.client_config()
        self.topic = transfers_topic(config)
        self.bounded = bounded
        self._wait = wait
        self._starts = starts

    def starts(self) -> dict[int, int]:
        if self._starts is None:
            self._starts = ensure_topic(self._config)
        return self._starts

    @property
    def partitions(self) -> int:
        return len(self.starts())

    def source(self) -> FixedPartitionedSource[Transfer, tuple[int, LoopProgress]]:
        return _LoopSource(self)

    def sink(self) -> DynamicSink[LoopItem]:
        return _LoopSink(self)

    def message(self, item: LoopItem) -> KafkaSinkMessage:
        if isinstance(item, LoopEnd):
            key, partition = END_KEY, item.partition
        else:
            key, partition = item.into.encode(), loop_partition(item.into, self.partitions)
        value = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        return KafkaSinkMessage(key, value, topic=self.topic, partition=partition)


class _LoopPartition(StatefulSourcePartition[Transfer, tuple[int, LoopProgress]]):
    def __init__(self, loop: KafkaLoop, partition: int, resume: tuple[int, LoopProgress] | None):
        offset, self._progress = (
            resume if resume is not None else (loop.starts()[partition], LoopProgress(loop.bounded))
        )
        conf = consumer_config(loop._conf)
        self._read = _Partition(conf, "transfers", loop.topic, partition, offset, None, 1000)

    def next_batch(self) -> list[Transfer]:
        if self._progress.done:
            raise StopIteration()
        batch = []
        for raw in self._read.next_batch():
            transfer = self._progress.take(pickle.loads(raw.value))
            if transfer is not None:
                batch.append(transfer)
        return batch

    def next_awake(self) -> Any:
        return self._read.next_awake()

    def snapshot(self) -> tuple[int, LoopProgress]:
        progress = self._progress
        return self._read.snapshot(), LoopProgress(progress.bounded, set(progress.seen), progress.expected)

    def close(self) -> None:
        self._read.close()


class _LoopSource(FixedPartitionedSource[Transfer, tuple[int, LoopProgress]]):
    def __init__(self, loop: KafkaLoop):
        self._loop = loop

    def list_parts(self) -> list[str]:
        return [str(p) for p in range(self._loop.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: tuple[int, LoopProgress] | None) -> _LoopPartition:
        return _LoopPartition(self._loop, int(for_part), resume_state)


class _LoopSinkPartition(StatelessSinkPartition[LoopItem]):
    def __init__(self, loop: KafkaLoop):
        self._loop = loop
        self._out = _SinkPartition(loop._conf, loop._wait)

    def write_batch(self, items: list[LoopItem]) -> None:
        self._out.write_batch([self._loop.message(item) for item in items])

    def close(self) -> None:
        self._out.close()


class _LoopSink(DynamicSink[LoopItem]):
    def __init__(self, loop: KafkaLoop):
        self._loop = loop

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LoopSinkPartition:
        return _LoopSinkPartition(self._loop)
