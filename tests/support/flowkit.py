"""Running the profile dataflow in-process with Bytewax's testing machinery.

Events are encoded to Avro exactly as they would sit in Kafka and spread over partitions the way a
producer keys them (clicks by device, CRM changes by customer), so the dataflow under test decodes,
orders and applies them as it would in production; only the Kafka ends are swapped for lists.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterable
from unittest import mock

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink, cluster_main, run_main

import profilestream.flows.profiles
from profilestream.codec import avro
from profilestream.domain.engine import Engine
from profilestream.domain.events import Click, Event
from profilestream.domain.rules import Rules
from profilestream.flows.profiles import profile_stream
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


class ListSource(FixedPartitionedSource):
    """A testing source with several partitions (Bytewax's TestingSource has one)."""

    def __init__(self, parts: dict[str, list], batch: int = 7):
        self._parts, self._batch = parts, batch

    def list_parts(self):
        return list(self._parts)

    def build_part(self, step_id, for_part, resume_state):
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


_BUILT: list[Engine] = []


class RecordedEngine(Engine):
    """The engine the dataflow builds, remembered so a test can read its counters."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _BUILT.append(self)


def run_flow(
    events: Iterable[Event],
    rules: Rules | None = None,
    partitions: int = 3,
    workers: int = 1,
    extra: Iterable[Raw] = (),
    batch: int = 7,
    emit_every: int = 0,
) -> Result:
    """Run the dataflow to the end of its input and collect every output record in order. The
    engine the dataflow built is handed back too (`Result.engine`), for its counters."""
    parts = raw_partitions(events, partitions, extra)
    flow = Dataflow("test_profiles")
    raw = op.input("read", flow, ListSource(parts, batch))
    outputs = profile_stream(raw, rules or Rules(), list(parts), bounded=True, emit_every=emit_every)
    collected: list = []
    op.output("collect", outputs, TestingSink(collected))
    built = _BUILT
    built.clear()
    with mock.patch.object(profilestream.flows.profiles, "Engine", RecordedEngine):
        if workers == 1:
            run_main(flow)
        else:
            cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return Result(collected, engine=built[-1] if built else None)


def run_scenario(events, rules=None, sources: int = 1, batch: int = 0) -> Result:
    """`scenario.run`'s signature at the dataflow level: events spread by key over 3 partitions
    per topic, read in small batches."""
    return run_flow(events, rules, batch=batch or 7)
