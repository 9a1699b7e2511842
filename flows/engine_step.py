"""The engine step (`apply`): Bytewax's handle on the one `Engine` that holds all the state.

Why one keyed step: identity links cross every key a stream could be partitioned by (a login ties
a device to a customer key, an order number ties a device to a CRM customer), and Bytewax
dataflows have no cycles to send a merge back to another shard. So the stateful step owns the
whole identity graph under a single key (`ENGINE_KEY`), and event time is ordered there, where
every input partition's progress is visible.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulBatchLogic

from profilestream.domain.engine import Engine
from profilestream.domain.outputs import Output
from profilestream.domain.rules import Rules
from profilestream.flows import snapshot
from profilestream.flows.clock import now_ms
from profilestream.kafka.source import STOP, PartitionEnd
from profilestream.ops import metrics

__all__ = ["ENGINE_KEY", "TICK", "EngineLogic", "resume_engine"]

TICK = timedelta(milliseconds=200)
ENGINE_KEY = "engine"


class EngineLogic(StatefulBatchLogic[list[Any], Output, bytes]):
    """Batches in, outputs out, a clock tick when always-on.

    The clock tick is what lets an always-on run fire deadlines when traffic stops: the engine's
    watermark then moves with idle partitions and the wall clock, not with arriving events.
    The snapshot is `profilestream.flows.snapshot`'s format.
    """

    def __init__(
        self,
        engine: Engine,
        bounded: bool,
        finished: bool = False,
        snapshots: bool = True,
        received: Callable[[int], None] | None = None,
    ):
        self.engine = engine
        self.bounded = bounded
        self.finished = finished
        self.snapshots = snapshots
        self.received = received  # in a cluster: counts what reached the engine (`kafka.inflight`)
        self._publish()

    def _publish(self) -> None:
        engine = self.engine
        metrics.COUNTERS.engine_state(engine.stats, engine.watermark, engine.timeline.pending)

    def on_batch(self, values: list[list[Any]]) -> tuple[Iterable[Output], bool]:
        events = []
        for batch in values:  # `decode_batch`'s lists, in the order each worker read them
            for value in batch:
                if isinstance(value, PartitionEnd):
                    self.engine.end_source(value.source)
                else:
                    events.append(value)
        if self.received is not None:
            self.received(len(events))
        out = self.engine.feed(events, now_ms())
        self._publish()
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Output], bool]:
        out = self.engine.tick(now_ms())
        self._publish()
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Output], bool]:
        if self.bounded and not STOP.is_set():  # the end of input is the end of time (not a stop)
            out = self.engine.finish(now_ms())
            self.finished = True
        else:  # a stop: what has been applied is written out before the run ends
            out = self.engine.tick(now_ms(), emit_all=True)
        self._publish()
        return out, StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return None if self.bounded else datetime.now(UTC) + TICK

    def snapshot(self) -> bytes:
        if not self.snapshots:  # Bytewax asks every epoch even without recovery: skip the pickling
            return b""
        started = time.perf_counter()
        data = snapshot.dump(self.engine, self.finished)
        metrics.COUNTERS.snapshot(len(data), time.perf_counter() - started)
        return data


def resume_engine(
    resume: bytes,
    bounded: bool,
    now: int,
    rules: Rules | None = None,
    emit_every: int | None = None,
    received: Callable[[int], None] | None = None,
) -> EngineLogic:
    """The engine step as of the snapshot Bytewax resumes from. The engine keeps the rules it
    was started with, except the scoring settings: those follow the configuration (`rules`), so
    that a refitted model or new bands apply from the restart on (unchanged settings: untouched);
    so does the emission interval (`emit_every`, when given)."""
    engine, finished = snapshot.load(resume)
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
        metrics.log(
            "resume_mode_changed",
            logging.WARNING,
            snapshot="always-on" if engine.always_on else "bounded",
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
        watermark=metrics.iso_ms(engine.watermark),
        pending=engine.timeline.pending,
        profiles=len(engine.graph.profiles),
        snapshot_bytes=len(resume),
    )
    return EngineLogic(engine, bounded, finished, received=received)
