"""The profile dataflow: clickstream and CRM changes in, unified profiles and triggers out.

    read ──> decode ──┬──> (bad records) ─────────────────────────────┐
                      └──> key "engine" ──> apply (event time, rules) ─┴──> encode ──> write
                                                                 (unwritable records) ──┘ dead-letters

Neither end can be stopped by one record: `decode` dead-letters every input it cannot use (the
bounds are in `io.validation`, a `ts` too far ahead of the wall clock included), `encode` every
output it cannot write (`to_message`).

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

import logging
import pickle
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main

from profilestream.codec import avro
from profilestream.domain.engine import Engine
from profilestream.domain.events import Click
from profilestream.domain.outputs import DEAD_LETTERS, Output
from profilestream.domain.rules import Rules
from profilestream.kafka.inflight import InFlight
from profilestream.kafka.sink import OutputSink
from profilestream.kafka.source import STOP, InputSource, PartitionEnd, Raw
from profilestream.ops import metrics

INPUT_ROLES = ("clickstream", "crm_changes")
OUTPUT_ROLES = ("profiles", "merges", "triggers", "crm_feed", "dead_letters")
TICK = timedelta(milliseconds=200)
ENGINE_KEY = "engine"


def _now_ms() -> int:
    return int(time.time() * 1000)


def decode_batch(rules: Rules, batch: list[Raw | PartitionEnd], now_ms: int | None = None) -> list:
    """A batch of raw records to dead-letter `Output`s for the bad ones, followed by one list of
    `(source, event)` (and `PartitionEnd` markers) for the rest. Never raises on input.

    `now_ms` (default: the wall clock now) is when the batch is read: an event more than
    `rules.max_future` ahead of it is dead-lettered here, so it never reaches the engine and never
    moves the watermark (one device with a wrong clock would otherwise make every later event late).

    Why one list for the whole batch: every item costs a Python call in each step it passes (and
    a pickle when it crosses to the engine's process), so the events travel to the engine as one
    item per batch read."""
    if now_ms is None:
        now_ms = _now_ms()
    out: list = []
    events: list = []
    records_in: Counter = Counter()
    events_in: Counter = Counter()
    dead: Counter = Counter()
    for raw in batch:
        if isinstance(raw, PartitionEnd):
            events.append(raw)
            continue
        records_in[raw.role] += 1
        try:
            if raw.value is None:
                raise avro.Rejected("value", "null value (tombstone) on an input topic")
            event = avro.decode_input(raw.role, raw.value, rules, now_ms)
        except avro.Rejected as rejected:
            dead[raw.role, metrics.dead_letter_reason(rejected.field, rejected.reason)] += 1
            out.append(Output(DEAD_LETTERS, "", avro.dead_letter(
                raw.topic, raw.partition, raw.offset, raw.key, raw.value, str(rejected), raw.timestamp,
                role=raw.role)))
        else:
            events_in[raw.role, event.type if isinstance(event, Click) else event.op] += 1
            events.append((raw.source, event))
    if records_in:
        metrics.COUNTERS.decoded(records_in, events_in, dead)
    if events:
        out.append(events)
    return out


class EngineLogic(StatefulBatchLogic):
    """Bytewax's handle on the one `Engine`: batches in, outputs out, a clock tick when always-on.

    The clock tick is what lets an always-on run fire deadlines when traffic stops: the engine's
    watermark then moves with idle partitions and the wall clock, not with arriving events.

    The snapshot (Bytewax recovery, once per epoch = `run.snapshot_interval`) is the pickled
    Engine plus whether a bounded run has already reached its end (`finished`).
    """

    def __init__(self, engine: Engine, bounded: bool, finished: bool = False, snapshots: bool = True,
                 received: Callable[[int], None] | None = None):
        self.engine = engine
        self.bounded = bounded
        self.finished = finished
        self.snapshots = snapshots
        self.received = received  # in a cluster: counts what reached the engine (`io.inflight`)
        self._publish()

    def _publish(self) -> None:
        engine = self.engine
        metrics.COUNTERS.engine_state(engine.stats, engine.watermark, engine.timeline.pending)

    def on_batch(self, values: list[list]) -> tuple[Iterable[Output], bool]:
        events = []
        for batch in values:  # `decode_batch`'s lists, in the order each worker read them
            for value in batch:
                if isinstance(value, PartitionEnd):
                    self.engine.end_source(value.source)
                else:
                    events.append(value)
        if self.received is not None:
            self.received(len(events))
        out = self.engine.feed(events, _now_ms())
        self._publish()
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Output], bool]:
        out = self.engine.tick(_now_ms())
        self._publish()
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Output], bool]:
        if self.bounded and not STOP.is_set():  # the end of input is the end of time (not a stop)
            out = self.engine.finish(_now_ms())
            self.finished = True
        else:  # a stop: what has been applied is written out before the run ends
            out = self.engine.tick(_now_ms(), emit_all=True)
        self._publish()
        return out, StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return None if self.bounded else datetime.now(timezone.utc) + TICK

    def snapshot(self) -> bytes:
        if not self.snapshots:  # Bytewax asks every epoch even without recovery: skip the pickling
            return b""
        started = time.perf_counter()
        data = pickle.dumps({"engine": self.engine, "finished": self.finished}, protocol=pickle.HIGHEST_PROTOCOL)
        metrics.COUNTERS.snapshot(len(data), time.perf_counter() - started)
        return data


def resume_engine(resume: bytes, bounded: bool, now: int, rules: Rules | None = None,
                  emit_every: int | None = None, received: Callable[[int], None] | None = None) -> EngineLogic:
    """The engine step as of the snapshot Bytewax resumes from. The engine keeps the rules it
    was started with, except the scoring settings: those follow the configuration (`rules`), so
    that a refitted model or new bands apply from the restart on (unchanged settings: untouched);
    so does the emission interval (`emit_every`, when given)."""
    state = pickle.loads(resume)
    if isinstance(state, Engine):  # a snapshot of an earlier build: the bare engine
        state = {"engine": state, "finished": False}
    engine: Engine = state["engine"]
    if emit_every is not None:
        engine.emit_every = emit_every
    current = None if rules is None else getattr(rules, "scores", None)
    if current is not None and getattr(getattr(engine, "scorer", None), "settings", None) != current:
        engine.use_scores(current)
        metrics.log("scores_settings_applied", mode=current.mode)
    if engine.always_on:
        # The time the run was down was our absence, not the partitions' silence: without this, a
        # restart after more than `idle_after` would find every partition idle, let the watermark
        # jump to the clock and make the whole backlog late.
        for clock in engine.timeline.sources.values():
            clock.heard_at = max(clock.heard_at, now)
    if engine.always_on == bounded:
        metrics.log("resume_mode_changed", logging.WARNING,
                    snapshot="always-on" if engine.always_on else "bounded",
                    run="bounded" if bounded else "always-on")
    if state["finished"]:
        metrics.log("resume_after_end", logging.WARNING,
                    detail="this recovery directory holds a bounded run that already reached the end of its "
                           "input (the end of time): records added since are applied as late events and fire "
                           "no triggers; use a fresh --recovery-dir for a new bounded run")
    metrics.log("resumed", watermark=metrics.iso_ms(engine.watermark), pending=engine.timeline.pending,
                profiles=len(engine.graph.profiles), snapshot_bytes=len(resume))
    return EngineLogic(engine, bounded, state["finished"], received=received)


def profile_stream(raw: Stream, rules: Rules, sources: list[str], bounded: bool, snapshots: bool = True,
                   emit_every: int = 0, sent: Callable[[int], None] | None = None,
                   received: Callable[[int], None] | None = None) -> Stream:
    """Decoded, validated, ordered by event time and applied: a stream of `Output`s. `snapshots`
    False (a run without recovery) spares the engine's pickling at every epoch; `emit_every` (ms,
    `run.emit_interval`) coalesces each changed profile's records over that much wall time;
    `sent` / `received` count the events decoded for, and taken in by, the engine (`io.inflight`)."""

    def decode(batch: list) -> list:
        out = decode_batch(rules, batch)
        if sent is not None and out and isinstance(out[-1], list):
            sent(sum(1 for item in out[-1] if not isinstance(item, PartitionEnd)))
        return out

    decoded = op.flat_map_batch("decode", raw, decode)
    split = op.branch("split_dead_letters", decoded, lambda item: isinstance(item, Output))
    keyed = op.key_on("key_engine", split.falses, lambda _: ENGINE_KEY)

    def build(resume: bytes | None) -> EngineLogic:
        if resume is not None:
            return resume_engine(resume, bounded, _now_ms(), rules, emit_every, received)
        engine = Engine(rules, always_on=not bounded, emit_every=emit_every)
        engine.expect(sources, _now_ms())
        return EngineLogic(engine, bounded, snapshots=snapshots, received=received)

    applied = op.stateful_batch("apply", keyed, build)
    results = op.flat_map_batch("unkey", applied, lambda batch: [output for _, output in batch])
    return op.merge("outputs", results, split.trues)


def engine_worker(worker_count: int) -> int:
    """The index of the worker, among `worker_count`, that Bytewax gives the engine's key to.

    Why: the engine step cannot spread over workers, so in a cluster the process that runs it is
    spared the reading and decoding (`build_flow(read=False)`); the others do it for it. Bytewax
    routes a key by a hash of its own; rather than copy that rule, ask Bytewax: a dataflow of one
    item on `worker_count` threads of this process tells which worker builds the key's state."""
    if worker_count < 2:
        return 0
    index_of: dict[int, int] = {}  # thread -> worker index, from the sink's `build`
    engine_threads: list[int] = []

    class Probe(StatefulBatchLogic):
        def on_batch(self, values):
            return [], StatefulBatchLogic.DISCARD

        def snapshot(self):
            return None

    class Note(StatelessSinkPartition):
        def write_batch(self, items) -> None:
            pass

    class Workers(DynamicSink):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Note:
            index_of[threading.get_ident()] = worker_index
            return Note()

    def build(_resume) -> Probe:
        engine_threads.append(threading.get_ident())
        return Probe()

    flow = Dataflow("profilestream_probe")
    keyed = op.key_on("key", op.input("one", flow, TestingSource([ENGINE_KEY])), lambda key: key)
    op.output("workers", op.stateful_batch("engine", keyed, build), Workers())
    cluster_main(flow, [], 0, worker_count_per_proc=worker_count)
    return index_of[engine_threads[0]]


# librdkafka refuses to produce a record over `message.max.bytes` (1,000,000 by default): the sink
# would stop the run on it, and again at every restart. Room is left for the key and the framing.
RECORD_OVERHEAD = 512


def max_record_bytes(client_config: dict[str, str]) -> int:
    """The largest value (plus key) the sink can produce with this `[kafka]` configuration."""
    return int(client_config.get("message.max.bytes", 1_000_000)) - RECORD_OVERHEAD


def to_message(topic_names: dict[str, str], output: Output, max_bytes: int | None = None) -> KafkaSinkMessage:
    """The Kafka record of an output. Never raises: an output that cannot be encoded (a count
    overflowing its Avro int, a value of the wrong type, anything the writer refuses) or that is
    over `max_bytes` becomes a dead letter instead (`unwritable`), and every other record goes on.
    Why: one bad record must not stop the dataflow for everyone, as a poison pill that a restart
    from recovery would only meet again."""
    try:
        value = None if output.value is None else avro.encode(output.topic, output.value)
        key = output.key.encode() if output.key else None
    except Exception as exc:  # noqa: BLE001 (whatever the writer raises: dead-lettered, named)
        return unwritable(topic_names, output, avro.encode_fault(output.topic, output.value, exc))
    if max_bytes is not None and value is not None and len(value) + len(key or b"") > max_bytes:
        return unwritable(topic_names, output, f"{len(value)} bytes encoded, over the {max_bytes}-byte "
                                               f"limit of a Kafka record (message.max.bytes)")
    return KafkaSinkMessage(key, value, topic=topic_names[output.topic])


def unwritable(topic_names: dict[str, str], output: Output, error: str) -> KafkaSinkMessage:
    """The dead letter for an output record that cannot be written: its topic and key (profile ids,
    customer ids and hashed keys, never an address), the reason, no value (it may hold personal
    data); counted per topic (`profilestream_encode_failures`) and logged with the key, so the
    profile that produced it can be found."""
    topic = topic_names[output.topic]
    metrics.COUNTERS.encode_failed(topic)
    letter = avro.output_dead_letter(topic, output.key, error, _now_ms())
    metrics.log("encode_failed", logging.ERROR, topic=topic, key=letter["key"], error=letter["error"])
    return KafkaSinkMessage(None, avro.encode(DEAD_LETTERS, letter), topic=topic_names[DEAD_LETTERS])


def encode_batch(topic_names: dict[str, str], batch: list[Output], max_bytes: int | None = None) -> list:
    """The `encode` step: a batch of outputs to Kafka records (`to_message`)."""
    return [to_message(topic_names, output, max_bytes) for output in batch]


def build_flow(config, partitions: dict[str, int],
               spans: dict[str, dict[int, tuple[int, int]]] | None = None, recovery: bool = True,
               read: bool = True, inflight: InFlight | None = None) -> Dataflow:
    """The whole dataflow on Kafka. `partitions` maps each input role to its partition count;
    `spans` (the offsets each input partition starts and ends at) makes the run bounded;
    `recovery` False: no snapshot will be kept, so the engine step takes none; `read` False: this
    process reads no input partition (in a cluster, the engine's process: see `engine_worker`);
    `inflight` (a cluster): a reading process pauses while the engine is too far behind."""
    bounded = spans is not None
    topics = {role: (config.topics.name(role), partitions[role]) for role in INPUT_ROLES}
    reader = inflight is not None and read
    source = InputSource(config.kafka.client_config(), topics, spans, local=read,
                         gate=inflight.may_read if reader else None)
    flow = Dataflow("profilestream")
    raw = op.input("read", flow, source)
    outputs = profile_stream(raw, config.rules(), source.sources(), bounded, snapshots=recovery,
                             emit_every=config.run.emit_interval,
                             sent=inflight.sent if reader else None,
                             received=inflight.taken if inflight is not None else None)
    names = {role: config.topics.name(role) for role in OUTPUT_ROLES}
    limit = max_record_bytes(config.kafka.client_config())
    messages = op.flat_map_batch("encode", outputs, lambda batch: encode_batch(names, batch, limit))
    op.output("write", messages, OutputSink(config.kafka.client_config(), wait=recovery))
    return flow
