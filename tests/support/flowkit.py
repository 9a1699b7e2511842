"""Running the profile dataflow in-process with Bytewax's testing machinery.

Events are encoded to Avro exactly as they would sit in Kafka and spread over partitions the way a
producer keys them (clicks by device, CRM changes by customer), so the dataflow under test decodes,
orders and applies them as it would in production; only the Kafka ends are swapped for lists.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections import Counter
from collections.abc import Iterable
from unittest import mock

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink, cluster_main, run_main

import profilestream.flows.profiles
import profilestream.flows.shard_step
from profilestream.codec import avro
from profilestream.domain.events import Click, Event
from profilestream.domain.resolve import Resolver
from profilestream.domain.rules import Rules
from profilestream.domain.shard import ShardContext
from profilestream.flows.loop import LoopEnd, LoopItem, MemoryLoop, loop_partition
from profilestream.flows.profiles import profile_stream
from profilestream.flows.shard_step import ShardLogic
from profilestream.kafka.source import PartitionEnd, Raw
from support.scenario import Result


class _ListPartition(StatefulSourcePartition):
    def __init__(self, items: list, start: int, batch: int):
        self._items, self._at, self._batch = items, start, batch

    def next_batch(self):
        if self._at >= len(self._items):
            raise StopIteration()
        chunk = self._items[self._at : self._at + self._batch]
        self._at += len(chunk)
        return chunk

    def snapshot(self):
        return self._at


class _RoundRobinPartition(StatefulSourcePartition):
    """Every list in turn, `batch` items at a time: one reader of all partitions."""

    def __init__(self, lists: list[list], batch: int):
        self._parts = [_ListPartition(items, 0, batch) for items in lists]

    def next_batch(self):
        while self._parts:
            part = self._parts.pop(0)
            try:
                chunk = part.next_batch()
            except StopIteration:
                continue
            self._parts.append(part)
            return chunk
        raise StopIteration()

    def snapshot(self):
        return None


class ListSource(FixedPartitionedSource):
    """A testing source with several partitions (Bytewax's TestingSource has one). `one_reader`:
    all of them read in turn by one Bytewax partition, so the arrival order is that of one
    worker's reading even when the flow runs on several (the stateful steps still spread)."""

    def __init__(self, parts: dict[str, list], batch: int = 7, one_reader: bool = False):
        self._parts, self._batch, self._one_reader = parts, batch, one_reader

    def list_parts(self):
        return ["all"] if self._one_reader else list(self._parts)

    def build_part(self, step_id, for_part, resume_state):
        if self._one_reader:
            return _RoundRobinPartition(list(self._parts.values()), self._batch)
        return _ListPartition(self._parts[for_part], resume_state or 0, self._batch)


def record(event: Event) -> dict:
    """The Avro record of a domain event (the inverse of the codec's decoding)."""
    fields = dataclasses.asdict(event)
    return {k: v for k, v in fields.items() if v is not None}


def raw_partitions(events: Iterable[Event], partitions: int = 3, extra: Iterable[Raw] = ()) -> dict[str, list]:
    parts: dict[str, list] = {}
    for topic in ("clickstream", "crm-changes"):
        for p in range(partitions):
            parts[f"{topic}/{p}"] = []
    for event in events:
        role, topic, key = (
            ("clickstream", "clickstream", event.device_id)
            if isinstance(event, Click)
            else ("crm_changes", "crm-changes", event.customer_id)
        )
        p = zlib.crc32(key.encode()) % partitions
        items = parts[f"{topic}/{p}"]
        items.append(Raw(role, topic, p, len(items), key.encode(), avro.encode(role, record(event)), event.ts))
    for raw in extra:
        parts[raw.source].append(raw)
    for source, items in parts.items():
        items.append(PartitionEnd(source))
    return parts


_RESOLVERS: list[Resolver] = []
_CONTEXTS: list[ShardContext] = []


class RecordedResolver(Resolver):
    """The resolver the dataflow builds, remembered so a test can read its counters."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _RESOLVERS.append(self)


class RecordedContext(ShardContext):
    """A worker's shard context, remembered for its counters and scorer."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _CONTEXTS.append(self)


class RecordedShardLogic(ShardLogic):
    """A profile's shard step, remembering which worker (its `ShardContext`) holds the profile,
    so a test can check that two profiles really live on different workers."""

    def on_batch(self, values):
        result = super().on_batch(values)
        if self.shard is not None:
            _PLACES.setdefault(self.shard.profile_id, set()).add(id(self.ctx))
        return result


_PLACES: dict[str, set[int]] = {}


class HeldLoop(MemoryLoop):
    """The in-memory loop, but slow: each partition's transfers are held back until resolution's
    end marker for that partition has been written (the end of input), then let through in
    reverse order (`reverse`) or in order; later transfers pass at once. So a surviving shard
    holds its later commands (and deadlines) for the whole run, the longest a transfer can take,
    and transfers of a chain arrive in the worst order. `copies`: each transfer is written that
    many times, as a shard that sends it again after a recovery does."""

    def __init__(self, partitions: int = 2, reverse: bool = True, copies: int = 1):
        super().__init__(partitions, bounded=True)
        self.reverse = reverse
        self.copies = copies
        self._held: list[list[LoopItem]] = [[] for _ in range(partitions)]
        self._open = [False] * partitions
        self.delayed = 0  # transfers that were held back

    def put(self, items: list[LoopItem]) -> None:
        passing: list[LoopItem] = []
        with self._lock:
            for item in items:
                if isinstance(item, LoopEnd):
                    held, self._held[item.partition] = self._held[item.partition], []
                    passing += reversed(held) if self.reverse else held
                    self._open[item.partition] = True
                    passing.append(item)
                    continue
                partition = loop_partition(item.into, self.partitions)
                if self._open[partition]:
                    passing += [item] * self.copies
                else:
                    self._held[partition] += [item] * self.copies
                    self.delayed += 1
        super().put(passing)


@dataclasses.dataclass
class FlowState:
    """What a test reads of a dataflow run: the resolver's state and every worker's counters
    added up (`stats`), as `Engine` offers them in one process."""

    resolver: Resolver
    contexts: list[ShardContext]
    places: dict[str, set[int]] = dataclasses.field(default_factory=dict)

    def worker_of(self, profile_id: str) -> int:
        """The worker (index of its context) that held this profile's shard; one only."""
        [place] = self.places[profile_id]
        return [id(ctx) for ctx in self.contexts].index(place)

    @property
    def stats(self) -> Counter:
        total = Counter(self.resolver.stats)
        for ctx in self.contexts:
            total.update(ctx.stats)
        return total

    @property
    def graph(self):
        return self.resolver.graph

    @property
    def timeline(self):
        return self.resolver.timeline

    @property
    def watermark(self) -> int:
        return self.resolver.watermark

    @property
    def scorer(self):
        assert len(self.contexts) == 1, "one worker's scorer"
        return self.contexts[0].scorer


def run_flow(
    events: Iterable[Event],
    rules: Rules | None = None,
    partitions: int = 3,
    workers: int = 1,
    extra: Iterable[Raw] = (),
    batch: int = 7,
    emit_every: int = 0,
    one_reader: bool = False,
    loop: MemoryLoop | None = None,
) -> Result:
    """Run the dataflow to the end of its input and collect every output record in order. What
    the dataflow built is handed back too (`Result.engine`: `FlowState`), for its counters."""
    parts = raw_partitions(events, partitions, extra)
    flow = Dataflow("test_profiles")
    raw = op.input("read", flow, ListSource(parts, batch, one_reader))
    outputs = profile_stream(raw, rules or Rules(), list(parts), bounded=True, emit_every=emit_every, loop=loop)
    collected: list = []
    op.output("collect", outputs, TestingSink(collected))
    _RESOLVERS.clear()
    _CONTEXTS.clear()
    _PLACES.clear()
    with (
        mock.patch.object(profilestream.flows.profiles, "Resolver", RecordedResolver),
        mock.patch.object(profilestream.flows.shard_step, "ShardContext", RecordedContext),
        mock.patch.object(profilestream.flows.shard_step, "ShardLogic", RecordedShardLogic),
    ):
        if workers == 1:
            run_main(flow)
        else:
            cluster_main(flow, [], 0, worker_count_per_proc=workers)
    state = FlowState(_RESOLVERS[-1], list(_CONTEXTS), dict(_PLACES)) if _RESOLVERS else None
    return Result(collected, engine=state)


def run_scenario(events, rules=None, sources: int = 1, batch: int = 0) -> Result:
    """`scenario.run`'s signature at the dataflow level: events spread by key over 3 partitions
    per topic, read in small batches."""
    return run_flow(events, rules, batch=batch or 7)


def run_scenario_on_3_workers(events, rules=None, sources: int = 1, batch: int = 0) -> Result:
    """`run_scenario` on three workers of one process: the shards spread over them (the input is
    read by one of them, so the scenarios' arrival order, late events included, is kept)."""
    return run_flow(events, rules, batch=batch or 7, workers=3, one_reader=True)
