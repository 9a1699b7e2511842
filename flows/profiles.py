"""The profile dataflow: clickstream and CRM changes in, unified profiles and triggers out.

`profile_stream` is the composable middle (input and output streams of plain Python objects), so
tests can drive it with Bytewax's testing source and sink; `build_flow` adds the Kafka ends. The
steps, their edges, the topics and the state are printed from the built flow by
`profilestream describe` (`profilestream.commands.describe`), never drawn by hand.

Neither end can be stopped by one record: `decode` dead-letters every input it cannot use and
`encode` every output it cannot write. The engine step is one keyed step (`engine_step`):
reading, decoding and validation (the per-record cost) run on every worker in parallel; see the
README's "Design" section for the limits of this shape.

Why `key_engine`, `apply` and `unkey` stay top-level steps rather than one composite: Bytewax
recovery keeps a stateful step's snapshots under its step id (`profilestream.apply`), so nesting
it would make every existing recovery directory start from empty state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from profilestream.domain.engine import Engine
from profilestream.domain.outputs import Output
from profilestream.domain.roles import INPUT_ROLES, OUTPUT_ROLES
from profilestream.domain.rules import Rules
from profilestream.flows.clock import now_ms
from profilestream.flows.decode import decode
from profilestream.flows.encode import encode, max_record_bytes
from profilestream.flows.engine_step import ENGINE_KEY, EngineLogic, resume_engine
from profilestream.kafka.inflight import InFlight
from profilestream.kafka.sink import OutputSink
from profilestream.kafka.source import InputSource

__all__ = ["build_flow", "profile_stream"]


def profile_stream(
    raw: Stream[Any],
    rules: Rules,
    sources: list[str],
    bounded: bool,
    snapshots: bool = True,
    emit_every: int = 0,
    sent: Callable[[int], None] | None = None,
    received: Callable[[int], None] | None = None,
) -> Stream[Output]:
    """Decoded, validated, ordered by event time and applied: a stream of `Output`s. `snapshots`
    False (a run without recovery) spares the engine's pickling at every epoch; `emit_every` (ms,
    `run.emit_interval`) coalesces each changed profile's records over that much wall time;
    `sent` / `received` count the events decoded for, and taken in by, the engine (`kafka.inflight`)."""
    decoded = decode("decode", raw, rules, sent)
    keyed = op.key_on("key_engine", decoded.events, lambda _: ENGINE_KEY)

    def build(resume: bytes | None) -> EngineLogic:
        if resume is not None:
            return resume_engine(resume, bounded, now_ms(), rules, emit_every, received)
        engine = Engine(rules, always_on=not bounded, emit_every=emit_every)
        engine.expect(sources, now_ms())
        return EngineLogic(engine, bounded, snapshots=snapshots, received=received)

    applied = op.stateful_batch("apply", keyed, build)
    results = op.flat_map_batch("unkey", applied, lambda batch: [output for _, output in batch])
    return op.merge("outputs", results, decoded.dead_letters)


def build_flow(
    config: Any,
    partitions: dict[str, int],
    spans: dict[str, dict[int, tuple[int, int]]] | None = None,
    recovery: bool = True,
    read: bool = True,
    inflight: InFlight | None = None,
) -> Dataflow:
    """The whole dataflow on Kafka. `partitions` maps each input role to its partition count;
    `spans` (the offsets each input partition starts and ends at) makes the run bounded;
    `recovery` False: no snapshot will be kept, so the engine step takes none; `read` False: this
    process reads no input partition (in a cluster, the engine's process: see `engine_worker`);
    `inflight` (a cluster): a reading process pauses while the engine is too far behind.
    Building connects to nothing: the source and the sink connect when Bytewax builds their
    partitions, so `describe` builds this very flow without a broker."""
    bounded = spans is not None
    topics = {role: (config.topics.name(role), partitions[role]) for role in INPUT_ROLES}
    reader = inflight if read else None
    source = InputSource(
        config.kafka.client_config(),
        topics,
        spans,
        local=read,
        gate=reader.may_read if reader is not None else None,
    )
    flow = Dataflow("profilestream")
    raw = op.input("read", flow, source)
    outputs = profile_stream(
        raw,
        config.rules(),
        source.sources(),
        bounded,
        snapshots=recovery,
        emit_every=config.run.emit_interval,
        sent=reader.sent if reader is not None else None,
        received=inflight.taken if inflight is not None else None,
    )
    names = {role: config.topics.name(role) for role in OUTPUT_ROLES}
    limit = max_record_bytes(config.kafka.client_config())
    messages = encode("encode", outputs, names, limit)
    op.output("write", messages, OutputSink(config.kafka.client_config(), wait=recovery))
    return flow
