"""The profile dataflow: clickstream and CRM changes in, unified profiles and triggers out.

`profile_stream` is the composable middle (input and output streams of plain Python objects), so
tests can drive it with Bytewax's testing source and sink; `build_flow` adds the Kafka ends. The
steps, their edges, the topics and the state are printed from the built flow by
`profilestream describe` (`profilestream.commands.describe`), never drawn by hand.

The shape (README "Design"): reading and decoding on every worker; `resolve`, one key, decides
who each event belongs to and sends each profile its commands; `profiles`, keyed by profile id,
is spread over every worker of every process and builds the records and triggers; a merged
profile's contents go from its shard to the survivor's through the transfer loop (`flows.loop`:
an internal topic in a run). Neither end can be stopped by one record: `decode` dead-letters
every input it cannot use and `encode` every output it cannot write.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import StatefulBatchLogic

from profilestream.codec import registry
from profilestream.domain.commands import Transfer
from profilestream.domain.outputs import CRM_FEED, Output, newer_feed
from profilestream.domain.resolve import Resolver
from profilestream.domain.roles import INPUT_ROLES, OUTPUT_ROLES
from profilestream.domain.rules import Rules
from profilestream.flows.changelog import Changelog
from profilestream.flows.clock import now_ms
from profilestream.flows.decode import decode
from profilestream.flows.encode import encode, max_record_bytes
from profilestream.flows.loop import LoopEnd, MemoryLoop
from profilestream.flows.resolve_step import RESOLVE_KEY, ResolveLogic, resume_resolver
from profilestream.flows.shard_step import shard_builder
from profilestream.flows.snapshot import Refused
from profilestream.kafka.inflight import InFlight
from profilestream.kafka.sink import OutputSink
from profilestream.kafka.source import InputSource
from profilestream.kafka.transfers import KafkaLoop

__all__ = ["build_flow", "profile_stream"]

Loop = MemoryLoop | KafkaLoop
Stamp = tuple[int, int, str]


def profile_stream(
    raw: Stream[Any],
    rules: Rules,
    sources: list[str],
    bounded: bool,
    snapshots: bool = True,
    emit_every: int = 0,
    sent: Callable[[int], None] | None = None,
    received: Callable[[int], None] | None = None,
    loop: Loop | None = None,
    wire: Any = None,
    changelog: Path | None = None,
) -> Stream[Output]:
    """Decoded, validated, ordered by event time, resolved and applied: a stream of `Output`s.
    `snapshots` False (a run without recovery) spares the pickling at every epoch; `emit_every`
    (ms, `run.emit_interval`) coalesces each changed profile's records over that much wall time;
    `sent` / `received` count the events decoded for, and taken in by, resolution
    (`kafka.inflight`); `loop` carries transfers between shards (default: in memory);
    `wire`: the Schema Registry's framing of inputs, if one is configured; `changelog`: the file
    of resolution's changelog in the recovery directory (`changelog.py`; None: resolution takes
    no snapshot)."""
    loop = loop if loop is not None else MemoryLoop(bounded=bounded)
    decoded = decode("decode", raw, rules, sent, wire=wire)
    keyed = op.key_on("key_identity", decoded.events, lambda _: RESOLVE_KEY)

    def build_resolver(resume: bytes | None) -> ResolveLogic:
        partitions = loop.partitions  # asked when the step is built: a run's topic, measured then
        # opened here, on the one worker that resolves, when Bytewax builds the step
        log = Changelog(changelog) if changelog is not None and snapshots else None
        if resume is not None:
            if log is None:
                raise Refused("a snapshot of resolution to resume from, and no changelog to read it with")
            return resume_resolver(resume, bounded, now_ms(), partitions, log, received)
        if log is not None:
            log.reset()  # a new run: rows a run killed before its first committed epoch left go
        resolver = Resolver(rules, always_on=not bounded)
        resolver.expect(sources, now_ms())
        return ResolveLogic(resolver, bounded, partitions, changelog=log, received=received)

    resolved = op.flat_map_batch("unkey_resolved", op.stateful_batch("resolve", keyed, build_resolver), _values)
    routed = op.branch("route", resolved, lambda item: type(item) is tuple)
    written = op.branch("written", routed.falses, lambda item: type(item) is LoopEnd)

    transfers_in = op.key_on("key_transfers", op.input("read_transfers", raw.flow(), loop.source()), _into)
    to_shards = op.merge("to_shards", routed.trues, transfers_in)
    shards = op.flat_map_batch(
        "unkey_profiles", op.stateful_batch("profiles", to_shards, shard_builder(rules, emit_every, snapshots)), _values
    )
    made = op.branch("made", shards, lambda item: type(item) is Transfer)
    op.output("write_transfers", op.merge("transfers_out", made.trues, written.trues), loop.sink())
    feed = op.branch("feed", made.falses, lambda item: item.topic == CRM_FEED)
    keyed_feed = op.key_on("key_customer", feed.trues, _key)
    kept = op.flat_map_batch("unkey_feed", op.stateful_batch("newest_holder", keyed_feed, NewestHolder.build), _values)
    return op.merge("outputs", written.falses, feed.falses, kept, decoded.dead_letters)


def _key(output: Output) -> str:
    return output.key


class NewestHolder(StatefulBatchLogic[Output, Output, Stamp | None]):
    """Per customer id, the newest stamp written to the CRM feed: a record (or tombstone) passes
    unless a newer holder of the customer has written already (`outputs.newer_feed`). A customer
    erased and created again lives in two shards, whose writes to the one feed key nothing else
    orders; one profile's records arrive in the order it wrote them."""

    def __init__(self, newest: Stamp | None):
        self.newest = newest

    @classmethod
    def build(cls, resume: Stamp | None) -> NewestHolder:
        return cls(resume)

    def on_batch(self, values: list[Output]) -> tuple[list[Output], bool]:
        kept = []
        for output in values:
            if newer_feed(self.newest, output):
                self.newest = output.stamp
                kept.append(output)
        return kept, StatefulBatchLogic.RETAIN

    def snapshot(self) -> Stamp | None:
        return self.newest


def _values(batch: list[tuple[str, Any]]) -> list[Any]:
    return [value for _, value in batch]


def _into(transfer: Transfer) -> str:
    return transfer.into


def build_flow(
    config: Any,
    partitions: dict[str, int],
    spans: dict[str, dict[int, tuple[int, int]]] | None = None,
    recovery: bool = True,
    read: bool = True,
    inflight: InFlight | None = None,
    transfers: dict[int, int] | None = None,
    changelog: Path | None = None,
) -> Dataflow:
    """The whole dataflow on Kafka. `partitions` maps each input role to its partition count;
    `spans` (the offsets each input partition starts and ends at) makes the run bounded;
    `recovery` False: no snapshot will be kept, so the stateful steps take none; `read` False:
    this process reads no input partition (in a cluster, resolution's process: see
    `resolve_worker`); `inflight` (a cluster): a reading process pauses while resolution is too
    far behind; `transfers`: the end offset of each partition of the transfers topic when the run
    started (where a new run starts reading it; None: measured when the partition is built);
    `changelog`: resolution's changelog file in the recovery directory (`changelog.py`).
    Building connects to nothing: the sources and sinks connect when Bytewax builds their
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
    wire = registry.wire_for(config)  # None without a Schema Registry: raw schemaless Avro
    flow = Dataflow("profilestream")
    raw = op.input("read", flow, source)
    loop = KafkaLoop(config, bounded=bounded, wait=recovery, starts=transfers)
    outputs = profile_stream(
        raw,
        config.rules(),
        source.sources(),
        bounded,
        snapshots=recovery,
        emit_every=config.run.emit_interval,
        sent=reader.sent if reader is not None else None,
        received=inflight.taken if inflight is not None else None,
        loop=loop,
        wire=wire,
        changelog=changelog,
    )
    names = {role: config.topics.name(role) for role in OUTPUT_ROLES}
    limit = max_record_bytes(config.kafka.client_config())
    messages = encode("encode", outputs, names, limit, wire)
    op.output("write", messages, OutputSink(config.kafka.client_config(), wait=recovery))
    return flow
