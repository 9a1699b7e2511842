"""The profile dataflow: clickstream and CRM changes in, unified profiles and triggers out.

    read ──> decode ──┬──> (bad records) ─────────────────────────────┐
                      └──> key "engine" ──> apply (event time, rules) ─┴──> encode ──> write

`profile_stream` is the composable middle (input and output streams of plain Python objects), so
tests can drive it with Bytewax's testing source and sink; `build_flow` adds the Kafka ends.

Why one keyed step: identity links cross every key a stream could be partitioned by (a login ties
a device to a customer key, an order number ties a device to a CRM customer), and Bytewax
dataflows have no cycles to send a merge back to another shard. So the stateful `apply` step owns
the whole identity graph under a single key, and event time is ordered there, where every input
partition's progress is visible. Reading, decoding and validation (the per-record cost) run on
every worker in parallel; see the README's "Design" section for the limits of this shape.
"""

from __future__ import annotations

import pickle
import time
from datetime import datetime, timedelta, timezone
from typing import Iterable

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import StatefulBatchLogic

from profilestream.domain.engine import Engine
from profilestream.domain.outputs import DEAD_LETTERS, Output
from profilestream.domain.rules import Rules
from profilestream.io import avro
from profilestream.io.source import InputSource, PartitionEnd, Raw

INPUT_ROLES = ("clickstream", "crm_changes")
OUTPUT_ROLES = ("profiles", "merges", "triggers", "crm_feed", "dead_letters")
TICK = timedelta(milliseconds=200)
ENGINE_KEY = "engine"


def _now_ms() -> int:
    return int(time.time() * 1000)


def decode_batch(rules: Rules, batch: list[Raw | PartitionEnd]) -> list:
    """Raw records to `(source, event)`; bad ones to dead-letter `Output`s. Never raises on input."""
    out: list = []
    for raw in batch:
        if isinstance(raw, PartitionEnd):
            out.append(raw)
            continue
        try:
            if raw.value is None:
                raise avro.Rejected("value", "null value (tombstone) on an input topic")
            event = avro.decode_input(raw.role, raw.value, rules)
        except avro.Rejected as rejected:
            out.append(Output(DEAD_LETTERS, "", avro.dead_letter(
                raw.topic, raw.partition, raw.offset, raw.key, raw.value, str(rejected), raw.timestamp)))
        else:
            out.append((raw.source, event))
    return out


class EngineLogic(StatefulBatchLogic):
    """Bytewax's handle on the one `Engine`: batches in, outputs out, a clock tick when always-on.

    The clock tick is what lets an always-on run fire deadlines when traffic stops: the engine's
    watermark then moves with idle partitions and the wall clock, not with arriving events.
    """

    def __init__(self, engine: Engine, bounded: bool):
        self.engine = engine
        self.bounded = bounded

    def on_batch(self, values: list) -> tuple[Iterable[Output], bool]:
        events = []
        for value in values:
            if isinstance(value, PartitionEnd):
                self.engine.end_source(value.source)
            else:
                events.append(value)
        return self.engine.feed(events, _now_ms()), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Output], bool]:
        return self.engine.tick(_now_ms()), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Output], bool]:
        if self.bounded:  # the end of input is the end of time
            return self.engine.finish(_now_ms()), StatefulBatchLogic.RETAIN
        return self.engine.tick(_now_ms()), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return None if self.bounded else datetime.now(timezone.utc) + TICK

    def snapshot(self) -> bytes:
        return pickle.dumps(self.engine, protocol=pickle.HIGHEST_PROTOCOL)


def profile_stream(raw: Stream, rules: Rules, sources: list[str], bounded: bool) -> Stream:
    """Decoded, validated, ordered by event time and applied: a stream of `Output`s."""
    decoded = op.flat_map_batch("decode", raw, lambda batch: decode_batch(rules, batch))
    split = op.branch("split_dead_letters", decoded, lambda item: isinstance(item, Output))
    keyed = op.key_on("key_engine", split.falses, lambda _: ENGINE_KEY)

    def build(resume: bytes | None) -> EngineLogic:
        if resume is not None:
            return EngineLogic(pickle.loads(resume), bounded)
        engine = Engine(rules, always_on=not bounded)
        engine.expect(sources, _now_ms())
        return EngineLogic(engine, bounded)

    applied = op.stateful_batch("apply", keyed, build)
    results = op.key_rm("unkey", applied)
    return op.merge("outputs", results, split.trues)


def to_message(topic_names: dict[str, str], output: Output) -> KafkaSinkMessage:
    value = None if output.value is None else avro.encode(output.topic, output.value)
    key = output.key.encode() if output.key else None
    return KafkaSinkMessage(key, value, topic=topic_names[output.topic])


def build_flow(config, partitions: dict[str, int],
               spans: dict[str, dict[int, tuple[int, int]]] | None = None) -> Dataflow:
    """The whole dataflow on Kafka. `partitions` maps each input role to its partition count;
    `spans` (the offsets each input partition starts and ends at) makes the run bounded."""
    bounded = spans is not None
    topics = {role: (config.topics.name(role), partitions[role]) for role in INPUT_ROLES}
    source = InputSource(config.kafka.client_config(), topics, spans)
    flow = Dataflow("profilestream")
    raw = op.input("read", flow, source)
    outputs = profile_stream(raw, config.rules(), source.sources(), bounded)
    names = {role: config.topics.name(role) for role in OUTPUT_ROLES}
    messages = op.map("encode", outputs, lambda output: to_message(names, output))
    op.output("write", messages, KafkaSink([config.kafka.brokers], None, add_config=dict(config.kafka.extra)))
    return flow
