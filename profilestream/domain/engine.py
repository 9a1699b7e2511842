"""The engine: identity resolution and every profile's shard, composed in one process.

`resolve.Resolver` decides, event by event in event time, who each event belongs to, and sends
commands to the profiles' shards (`shard.ProfileShard`), which build the records and triggers.
The dataflow runs the two as separate steps (resolution on one worker, the shards spread over
all of them, merged profiles' contents travelling between shards through a transfer loop: README
"Design"). `Engine` runs the same two in one object, shards in a dict and transfers handed over
at once: it is the reference the dataflow is tested against and what the domain tests drive.
Whatever the placement, a shard applies its commands in the order resolution sent them, so the
outputs are the same.

Profiles and the CRM feed are coalesced: a call marks the profiles it changes and emits each one
once, at the end of the call, or (with `emit_every`) at the end of the first call at least that
much of the caller's clock after that profile's last emission; so a burst of events on one
profile gives one record, and the latest record per key is always the truth. Merges, tombstones
and triggers are emitted as they happen. At the end of input (`finish`) everything is emitted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .commands import Transfer
from .events import Event
from .identity import IdentityGraph
from .outputs import Output
from .profile import Profile
from .resolve import Decisions, Resolver
from .rules import Rules
from .scores import Scorer, ScoreSettings
from .shard import ProfileShard, ShardContext
from .timeline import END_OF_TIME, Timeline


@dataclass
class Engine:
    rules: Rules
    always_on: bool = False
    stats: Counter[str] = field(default_factory=Counter)
    emit_every: int = 0  # ms of the caller's clock between a profile's emissions; 0: every call

    def __post_init__(self) -> None:
        self.resolver = Resolver(self.rules, self.always_on, self.stats)
        self.context = ShardContext(self.rules, Scorer(self.rules.scores), self.stats)
        self.shards: dict[str, ProfileShard] = {}
        self._dirty: set[str] = set()

    # --- the shell's interface ------------------------------------------------------------------

    def expect(self, sources: Iterable[str], now: int) -> None:
        """Name every input partition up front (see `Timeline.expect`)."""
        self.resolver.expect(sources, now)

    def feed(self, batch: Iterable[tuple[str, Event]], now: int) -> list[Output]:
        """Take a batch read from the inputs; apply what the watermark lets through."""
        return self._run(self.resolver.feed(batch, now), now)

    def end_source(self, source: str) -> None:
        """A bounded run has read a partition to its end: it no longer holds the watermark."""
        self.resolver.end_source(source)

    def tick(self, now: int, emit_all: bool = False) -> list[Output]:
        """Move the watermark (input read, partitions idle or ended) and apply what is due.
        `emit_all`: emit every changed profile now, whatever `emit_every` says (a stopping run)."""
        return self._run(self.resolver.tick(now), now, emit_all)

    def finish(self, now: int) -> list[Output]:
        """End of input is the end of time: every buffered event and pending deadline is due."""
        return self._run(self.resolver.finish(now), now, emit_all=True)

    def use_scores(self, settings: ScoreSettings) -> None:
        """Score with these settings from now on. The auto-mode population is kept when the mode
        and sketch size stay the same."""
        self.context.scorer = carry_population(self.context.scorer, Scorer(settings))

    @property
    def scorer(self) -> Scorer:
        return self.context.scorer

    @property
    def watermark(self) -> int:
        return self.resolver.watermark

    @property
    def timeline(self) -> Timeline:
        return self.resolver.timeline

    @property
    def graph(self) -> IdentityGraph:
        return self.resolver.graph

    def profiles(self) -> dict[str, Profile]:
        return {pid: shard.profile for pid, shard in self.shards.items() if shard.profile is not None}

    # --- the shards, in one process -------------------------------------------------------------

    def _run(self, decided: Decisions, now: int, emit_all: bool = False) -> list[Output]:
        out = decided.outputs
        sent: list[Transfer] = []
        shards, ctx, dirty = self.shards, self.context, self._dirty
        for profile_id, command in decided.commands:
            shard = shards.get(profile_id)
            if shard is None:
                shard = shards[profile_id] = ProfileShard(profile_id)
            shard.take(command, ctx, now, out, sent)
            while sent:  # in one process a transfer arrives at once
                transfer = sent.pop(0)
                target = shards.get(transfer.into)
                if target is None:
                    target = shards[transfer.into] = ProfileShard(transfer.into)
                target.receive(transfer, ctx, now, out, sent)
            if shard.gone:
                del shards[profile_id]
                dirty.discard(profile_id)
            else:
                dirty.add(profile_id)
        return self._flush(out, now, emit_all)

    def _flush(self, out: list[Output], now: int, emit_all: bool) -> list[Output]:
        shards = self.shards
        due = [
            shards[pid]
            for pid in sorted(self._dirty)
            if pid in shards and (emit_all or shards[pid].due(now, self.emit_every))
        ]
        scorer = self.context.scorer
        scorer.observe(shard.profile for shard in due if shard.profile is not None)
        for shard in due:
            shard.emit(self.context, now, out)
            self._dirty.discard(shard.profile_id)
        return out


def carry_population(old: Scorer | None, new: Scorer) -> Scorer:
    """`new`, with the auto-mode population of `old` when both keep one of the same sketch size
    (a run resumed with refitted bands keeps what it has learnt of its profiles)."""
    if (
        old is not None
        and old.population is not None
        and new.population is not None
        and old.settings.sketch_k == new.settings.sketch_k
    ):
        new.population = old.population
    return new


__all__ = ["END_OF_TIME", "Engine", "carry_population"]
