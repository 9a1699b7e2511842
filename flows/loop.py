"""The transfer loop: how a merged profile's contents reach the survivor's shard.

A Bytewax dataflow has no cycles, so a shard cannot hand anything to another shard directly. The
loop is a sink and a source that meet outside the dataflow: the shard step writes each `Transfer`
to the loop, and the loop's source reads it back into the shard step, keyed by the survivor's
profile id, so Bytewax routes it to the survivor's worker (wherever that is). In a run the loop is
an internal Kafka topic (`kafka.transfers`, as Kafka Streams' repartition topics); in the
dataflow tests it is this module's `MemoryLoop`, in the process's memory.

Why the loop needs an end (bounded runs): the shard step's end of input comes when both its
inputs have ended, and the loop's source cannot know by itself that no transfer is still on its
way. Identity resolution does: it counts the merges it decided per loop partition and, at the end
of input, sends each partition a `LoopEnd` with that count. A partition ends once it has read its
`LoopEnd` and as many distinct transfers as it counts (`LoopProgress`); a transfer written again
after a recovery is one transfer, not two.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from profilestream.domain.commands import Transfer
from profilestream.domain.compact import pickled_as_fields
from profilestream.kafka.source import STOP

__all__ = ["LoopEnd", "LoopItem", "LoopProgress", "MemoryLoop", "loop_partition"]

IDLE_POLL = timedelta(milliseconds=5)


@pickled_as_fields
@dataclass(slots=True)
class LoopEnd:
    """Resolution reached the end of input; it sent `transfers` merges to this partition in all."""

    partition: int
    transfers: int


LoopItem = Transfer | LoopEnd


def loop_partition(profile_id: str, partitions: int) -> int:
    """The loop partition of transfers to this profile: the same in every process (a stable hash,
    not Python's salted `hash`), so resolution counts them where the shards write them."""
    return zlib.crc32(profile_id.encode()) % partitions


@dataclass
class LoopProgress:
    """One loop partition's progress in a bounded run; its snapshot (with the partition's offset)
    is what recovery keeps of it. Always-on runs never end by it."""

    bounded: bool
    seen: set[int] = field(default_factory=set)  # the merges (`seq`) whose transfer was read
    expected: int | None = None

    def take(self, item: LoopItem) -> Transfer | None:
        """The transfer to pass on (None for an end marker, and in a bounded run for a copy of a
        transfer already passed on: a shard whose merge a recovery replayed writes it again, and
        the survivor may be gone by the time the copy comes, which would leave an orphan shard
        holding it; always-on runs keep no `seen` and leave copies to the shard, which drops
        them by `seq`)."""
        if isinstance(item, LoopEnd):
            self.expected = item.transfers
            return None
        if self.bounded:
            if item.seq in self.seen:
                return None
            self.seen.add(item.seq)
        return item

    @property
    def done(self) -> bool:
        return self.bounded and self.expected is not None and len(self.seen) >= self.expected


class MemoryLoop:
    """The loop in this process's memory (dataflow tests, several workers of one process):
    `partitions` queues, written by `sink()` and read by `source()`. Recovery cannot resume
    from it (what was in flight is gone with the process); runs use `kafka.transfers`."""

    def __init__(self, partitions: int = 2, bounded: bool = True):
        self.partitions = partitions
        self.bounded = bounded
        self._queues: list[list[LoopItem]] = [[] for _ in range(partitions)]
        self._lock = threading.Lock()

    def put(self, items: list[LoopItem]) -> None:
        with self._lock:
            for item in items:
                partition = item.partition if isinstance(item, LoopEnd) else loop_partition(item.into, self.partitions)
                self._queues[partition].append(item)

    def read(self, partition: int, start: int) -> list[LoopItem]:
        with self._lock:
            return self._queues[partition][start:]

    def source(self) -> FixedPartitionedSource[Transfer, tuple[int, LoopProgress]]:
        return _MemorySource(self)

    def sink(self) -> DynamicSink[LoopItem]:
        return _MemorySink(self)


class _MemoryPartition(StatefulSourcePartition[Transfer, tuple[int, LoopProgress]]):
    def __init__(self, loop: MemoryLoop, partition: int, resume: tuple[int, LoopProgress] | None):
        self._loop, self._partition = loop, partition
        self._at, self._progress = resume if resume is not None else (0, LoopProgress(loop.bounded))
        self._awake: datetime | None = None

    def next_batch(self) -> list[Transfer]:
        if self._progress.done or STOP.is_set():
            raise StopIteration()
        items = self._loop.read(self._partition, self._at)
        self._at += len(items)
        batch = [t for t in map(self._progress.take, items) if t is not None]
        self._awake = None if items else datetime.now(UTC) + IDLE_POLL
        return batch

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> tuple[int, LoopProgress]:
        return self._at, LoopProgress(self._progress.bounded, set(self._progress.seen), self._progress.expected)


class _MemorySource(FixedPartitionedSource[Transfer, tuple[int, LoopProgress]]):
    def __init__(self, loop: MemoryLoop):
        self._loop = loop

    def list_parts(self) -> list[str]:
        return [str(p) for p in range(self._loop.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple[int, LoopProgress] | None
    ) -> _MemoryPartition:
        return _MemoryPartition(self._loop, int(for_part), resume_state)


class _MemorySinkPartition(StatelessSinkPartition[LoopItem]):
    def __init__(self, loop: MemoryLoop):
        self._loop = loop

    def write_batch(self, items: list[LoopItem]) -> None:
        self._loop.put(items)


class _MemorySink(DynamicSink[LoopItem]):
    def __init__(self, loop: MemoryLoop):
        self._loop = loop

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MemorySinkPartition:
        return _MemorySinkPartition(self._loop)
