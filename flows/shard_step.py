"""The profile step (`profiles`): one `ProfileShard` per profile id, on whichever worker Bytewax
routes that id to.

Values in are the commands resolution sent this profile, as `(profile id, command)`, and the
transfers the loop brings (`Transfer`, keyed by the survivor). Values out are `Output`s and the
`Transfer`s this profile sends when it is merged away. Each profile's record goes out at the end
of a batch once `run.emit_interval` has passed since its last one; a profile held back asks
Bytewax for a notification at the time it will be due, and the end of input (or a stop) emits
every changed profile.

What the shards of a worker share (`ShardContext`: rules, scorer, counters) is made once per
worker thread and is not part of any snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from bytewax.operators import StatefulBatchLogic

from profilestream.domain.commands import Transfer
from profilestream.domain.outputs import Output
from profilestream.domain.rules import Rules
from profilestream.domain.scores import Scorer
from profilestream.domain.shard import ProfileShard, ShardContext
from profilestream.flows import snapshot
from profilestream.flows.clock import now_ms
from profilestream.ops import metrics

__all__ = ["ShardLogic", "shard_builder"]


class ShardLogic(StatefulBatchLogic[Any, Output | Transfer, bytes | None]):
    def __init__(self, shard: ProfileShard | None, ctx: ShardContext, emit_every: int, snapshots: bool):
        self.shard = shard
        self.ctx = ctx
        self.emit_every = emit_every
        self.snapshots = snapshots

    def on_batch(self, values: list[Any]) -> tuple[Iterable[Output | Transfer], bool]:
        ctx, now = self.ctx, now_ms()
        out: list[Any] = []
        sent: list[Transfer] = []
        shard = self.shard
        for value in values:
            if type(value) is Transfer:
                if shard is None:
                    shard = self.shard = ProfileShard(value.into)
                shard.receive(value, ctx, now, out, sent)
            else:
                if shard is None:
                    shard = self.shard = ProfileShard(value[0])
                shard.take(value[1], ctx, now, out, sent)
        assert shard is not None
        if shard.gone:
            out += sent
            return out, StatefulBatchLogic.DISCARD
        if shard.due(now, self.emit_every):
            self._emit(shard, now, out)
        out += sent
        return out, StatefulBatchLogic.RETAIN

    def _emit(self, shard: ProfileShard, now: int, out: list[Any]) -> None:
        if shard.profile is not None:
            self.ctx.scorer.observe((shard.profile,))
        shard.emit(self.ctx, now, out)

    def on_notify(self) -> tuple[Iterable[Output | Transfer], bool]:
        out: list[Any] = []
        shard = self.shard
        now = now_ms()
        if shard is not None and shard.due(now, self.emit_every):
            self._emit(shard, now, out)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Output | Transfer], bool]:
        """The end of input, or a stop: what has changed is written out."""
        out: list[Any] = []
        shard = self.shard
        if shard is not None and shard.dirty:
            self._emit(shard, now_ms(), out)
        return out, StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        shard = self.shard
        at = None if shard is None else shard.next_emission(self.emit_every)
        return None if at is None else datetime.fromtimestamp(at / 1000, UTC)

    def snapshot(self) -> bytes | None:
        if not self.snapshots or self.shard is None:
            return None
        started = time.perf_counter()
        data = snapshot.dump_shard(self.shard)
        metrics.COUNTERS.profile_snapshot(len(data), time.perf_counter() - started)
        return data


def shard_builder(rules: Rules, emit_every: int, snapshots: bool) -> Callable[[bytes | None], ShardLogic]:
    """The shard step's builder: one `ShardContext` per worker thread, shared by its shards."""
    local = threading.local()

    def context() -> ShardContext:
        ctx = getattr(local, "ctx", None)
        if ctx is None:
            ctx = local.ctx = ShardContext(rules, Scorer(rules.scores))
            metrics.COUNTERS.shard_stats(ctx.stats)
        return ctx

    def build(resume: bytes | None) -> ShardLogic:
        shard = snapshot.load_shard(resume) if resume else None
        return ShardLogic(shard, context(), emit_every, snapshots)

    return build
