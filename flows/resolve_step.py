"""The resolution step (`resolve`): Bytewax's handle on the one `Resolver`, the serial part.

Why one key: identity links cross every key a stream could be partitioned by (a login ties a
device to a customer key, an order number ties a device to a CRM customer), and event time is
ordered where every input partition's progress is visible. So this step holds, under the single
key `RESOLVE_KEY`, identifiers and times only (`domain.resolve`), and sends everything else to the
profiles' shards as commands. Its items out are `(profile id, (profile id, command))` (keyed for
the shard step, the id repeated so the shard knows whose it is), `Output`s it writes itself
(merges) and, at the end of a bounded run, one `LoopEnd` per loop partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulBatchLogic

from profilestream.domain.commands import MergeOut
from profilestream.domain.resolve import Decisions, Resolver
from profilestream.flows import snapshot
from profilestream.flows.changelog import Changelog
from profilestream.flows.clock import now_ms
from profilestream.flows.loop import LoopEnd, loop_partition
from profilestream.kafka.source import STOP, PartitionEnd
from profilestream.ops import metrics

__all__ = ["BUSY", "RESOLVE_KEY", "TICK", "Busy", "ResolveLogic", "resume_resolver"]

TICK = timedelta(milliseconds=200)
RESOLVE_KEY = "identity"


@dataclass
class Busy:
    """Time spent inside the resolution step in this process (wall and the worker thread's CPU)
    and the events it took in: the serial stage's share of a live run, which `bench` reads after
    a one-process run. Two clock readings per batch, not per event."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    events: int = 0
    calls: int = 0

    def add(self, wall: float, cpu: float, events: int) -> None:
        self.seconds += time.perf_counter() - wall
        self.cpu_seconds += time.thread_time() - cpu
        self.events += events
        self.calls += 1


BUSY = Busy()


class ResolveLogic(StatefulBatchLogic[list[Any], Any, bytes]):
    """Batches in, commands out, a clock tick when always-on.

    The clock tick is what lets an always-on run fire deadlines when traffic stops: the watermark
    then moves with idle partitions and the wall clock, not with arriving events. `sent` counts
    the merges sent to each loop partition (the `LoopEnd` of a bounded run says how many).
    """

    def __init__(
        self,
        resolver: Resolver,
        bounded: bool,
        loop_partitions: int,
        finished: bool = False,
        changelog: Changelog | None = None,
        received: Callable[[int], None] | None = None,
        sent: list[int] | None = None,
    ):
        self.resolver = resolver
        self.bounded = bounded
        self.finished = finished
        self.changelog = changelog  # None: a run without recovery (no snapshot to take)
        if changelog is not None and resolver.touched is None:
            resolver.track()
        self.received = received  # in a cluster: counts what reached resolution (`kafka.inflight`)
        self.loop_partitions = loop_partitions
        self.sent = sent if sent is not None else [0] * loop_partitions
        self._merges = resolver.merges  # the resolver's merges already counted in `sent`
        self._publish()

    def _publish(self) -> None:
        resolver = self.resolver
        metrics.COUNTERS.engine_state(resolver.stats, resolver.watermark, resolver.timeline.pending)

    def _items(self, decided: Decisions) -> list[Any]:
        items: list[Any] = decided.outputs
        commands = decided.commands
        # every command crosses here on the one worker that resolves: the merge count says
        # whether any `MergeOut` is among them (one per merge), most batches have none
        if self.resolver.merges != self._merges:
            self._merges = self.resolver.merges
            partitions, sent = self.loop_partitions, self.sent
            for _, command in commands:
                if type(command) is MergeOut:
                    sent[loop_partition(command.into, partitions)] += 1
        items += [(routed[0], routed) for routed in commands]
        self._publish()
        return items

    def on_batch(self, values: list[list[Any]]) -> tuple[Iterable[Any], bool]:
        wall, cpu = time.perf_counter(), time.thread_time()
        events = []
        for batch in values:  # `decode`'s lists, in the order each worker read them
            for value in batch:
                if type(value) is PartitionEnd:
                    self.resolver.end_source(value.source)
                else:
                    events.append(value)
        if self.received is not None:
            self.received(len(events))
        items = self._items(self.resolver.feed(events, now_ms()))
        BUSY.add(wall, cpu, len(events))
        return items, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        wall, cpu = time.perf_counter(), time.thread_time()
        items = self._items(self.resolver.tick(now_ms()))
        BUSY.add(wall, cpu, 0)
        return items, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        wall, cpu = time.perf_counter(), time.thread_time()
        if self.bounded and not STOP.is_set():  # the end of input is the end of time (not a stop)
            items = self._items(self.resolver.finish(now_ms()))
            items += [LoopEnd(p, n) for p, n in enumerate(self.sent)]
            self.finished = True
        else:
            items = self._items(self.resolver.tick(now_ms()))
        BUSY.add(wall, cpu, 0)
        return items, StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return None if self.bounded else datetime.now(UTC) + TICK

    def snapshot(self) -> bytes:
        if self.changelog is None:  # Bytewax asks every epoch even without recovery: skip the work
            return b""
        started = time.perf_counter()
        data, written = snapshot.dump_resolver(self.resolver, self.finished, self.sent, self.changelog)
        metrics.COUNTERS.snapshot(written, time.perf_counter() - started)
        return data


def resume_resolver(
    resume: bytes,
    bounded: bool,
    now: int,
    loop_partitions: int,
    changelog: Changelog,
    received: Callable[[int], None] | None = None,
) -> ResolveLogic:
    """The resolution step as of the snapshot Bytewax resumes from (its persons and devices from
    `changelog`). A snapshot whose loop had another number of partitions cannot go on (its counts
    are per partition): `snapshot.Refused`."""
    resolver, finished, sent = snapshot.load_resolver(resume, changelog)
    if len(sent) != loop_partitions:
        raise snapshot.Refused(
            f"the recovery directory's run had {len(sent)} transfer partitions and the transfers "
            f"topic now has {loop_partitions}: resume with the same topic, or start afresh"
        )
    if resolver.always_on:
        # The time the run was down was our absence, not the partitions' silence: without this, a
        # restart after more than `idle_after` would find every partition idle, let the watermark
        # jump to the clock and make the whole backlog late.
        for clock in resolver.timeline.sources.values():
            clock.heard_at = max(clock.heard_at, now)
    if resolver.always_on == bounded:
        metrics.log(
            "resume_mode_changed",
            logging.WARNING,
            snapshot="always-on" if resolver.always_on else "bounded",
            run="bounded" if bounded else "always-on",
        )
    if finished:
        metrics.log(
            "resume_after_end",
            logging.WARNING,
            detail="this recovery directory holds a bounded run that already reached the end of its "
            "input (the end of time): records added since are applied as late events and fire "
            "no triggers; use a fresh --recovery-dir for a new bounded run",
        )
    metrics.log(
        "resumed",
        watermark=metrics.iso_ms(resolver.watermark),
        pending=resolver.timeline.pending,
        profiles=len(resolver.graph.profiles),
        snapshot_bytes=len(resume),
    )
    return ResolveLogic(resolver, bounded, loop_partitions, finished, changelog, received=received, sent=sent)
