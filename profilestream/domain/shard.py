"""One profile's shard: its contents, built from the commands identity resolution sends it.

The dataflow keeps one `ProfileShard` per profile id, so Bytewax spreads profiles over every
worker of every process and a recovery snapshot writes only the profiles that changed. Everything
per profile happens here: counters, visits counted, cart and abandonment episode, campaigns, CRM
attributes, consent, scores, the triggers' records and the profile's own records.

What a shard does not decide: who an event belongs to, whether a visit is a return visit, when a
deadline has passed (all in `resolve.Resolver`, which sees every event in order). A shard applies
its commands in the order they were sent; a merge holds the survivor's later commands until the
merged profile's contents (`commands.Transfer`) have arrived, so the result does not depend on
how long a transfer takes or on which worker either profile lives.

Per worker, the shards share a `ShardContext` (rules, scorer, counters): it is not their state and
is never snapshotted. Its `shard.*` counters say how often the cross-shard path had to wait
(`shard.held`: commands held behind a merge; `shard.transfers_early`: transfers that came before
their merge; `shard.transfers_repeated`: a transfer read again, e.g. after a recovery), so tests
can check the holding really happened and a run can show it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import outputs, triggers
from .commands import AddVisit, Apply, Command, Deadline, Erase, Ids, MergeIn, MergeOut, ReturnVisit, Transfer
from .events import Click
from .outputs import Output
from .profile import Profile, crm_feed_of
from .rules import Rules
from .scores import Scorer


@dataclass
class ShardContext:
    """What the shards of one worker share: the rules, the scorer (scores are computed when a
    record is built) and the counters."""

    rules: Rules
    scorer: Scorer
    stats: Counter[str] = field(default_factory=Counter)


@dataclass
class ProfileShard:
    profile_id: str
    profile: Profile | None = None
    waiting: MergeIn | None = None  # a merge whose transfer has not arrived: later commands wait
    held: list[Command] = field(default_factory=list)
    arrived: dict[int, Profile] = field(default_factory=dict)  # transfers ahead of their merge
    last_seq: int = -1  # the newest merge absorbed: a transfer up to it arriving again is a repeat
    dirty: bool = False
    emitted_at: int | None = None
    gone: bool = False  # merged away or erased: the shard can be forgotten
    since: tuple[int, int, str] | None = None  # `Ids.since`: the stamp of its CRM feed records

    # --- input ------------------------------------------------------------------------------

    def take(self, command: Command, ctx: ShardContext, now: int, out: list[Output], sent: list[Transfer]) -> None:
        """Apply a command now, or hold it behind a merge that waits for its transfer."""
        if self.waiting is not None:
            self.held.append(command)
            ctx.stats["shard.held"] += 1
            return
        self._apply(command, ctx, now, out, sent)

    def receive(self, transfer: Transfer, ctx: ShardContext, now: int, out: list[Output], sent: list[Transfer]) -> None:
        """A merged profile's contents arrived: absorb them if their merge is waiting (and apply
        what it held), keep them for their merge otherwise; a repeat is dropped."""
        if transfer.seq <= self.last_seq or self.gone:
            ctx.stats["shard.transfers_repeated"] += 1
            return
        waiting = self.waiting
        if waiting is None or waiting.seq != transfer.seq:
            self.arrived[transfer.seq] = transfer.profile
            ctx.stats["shard.transfers_early"] += 1
            return
        self.waiting = None
        self._absorb(transfer.profile, waiting, ctx)
        held, self.held = self.held, []
        for index, command in enumerate(held):
            if self.waiting is not None:  # another merge waits: the rest stays held, in order
                self.held = held[index:]
                return
            self._apply(command, ctx, now, out, sent)

    # --- output -----------------------------------------------------------------------------

    def due(self, now: int, emit_every: int) -> bool:
        """Should the profile's record go out now? Changed, and `emit_every` ms of the caller's
        clock since the last one (0: always; never emitted: at once)."""
        if not self.dirty or self.profile is None:
            return False
        return not emit_every or self.emitted_at is None or now - self.emitted_at >= emit_every

    def next_emission(self, emit_every: int) -> int | None:
        """When a changed profile not yet due will be (the caller's clock), or None."""
        if not self.dirty or self.profile is None or not emit_every or self.emitted_at is None:
            return None
        return self.emitted_at + emit_every

    def emit(self, ctx: ShardContext, now: int, out: list[Output]) -> None:
        """The profile's record and, for a CRM customer, its feed record (scores as of now:
        the caller has let the scorer observe this profile, see `Scorer.observe`)."""
        profile = self.profile
        if profile is None:
            return
        self.emitted_at = now
        self.dirty = False
        record = profile.record(ctx.scorer.score(profile))
        out.append(Output(outputs.PROFILES, self.profile_id, record))
        if profile.customer_id is not None:
            out.append(Output(outputs.CRM_FEED, profile.customer_id, crm_feed_of(record), self._stamp()))

    def _stamp(self) -> tuple[int, int, str]:
        # getattr: a shard snapshotted before `since` existed (its class default is None too)
        since = getattr(self, "since", None)
        return outputs.FEED_FIRST if since is None else since

    # --- the commands -----------------------------------------------------------------------

    def _own(self) -> Profile:
        profile = self.profile
        if profile is None:
            profile = self.profile = Profile(self.profile_id)
        return profile

    def _apply(self, command: Command, ctx: ShardContext, now: int, out: list[Output], sent: list[Transfer]) -> None:
        if isinstance(command, Apply):
            self._event(command, ctx)
        elif isinstance(command, Ids):
            self._own().set_ids(command.customer_id, command.customer_key, command.device_ids)
            self.since = command.since
            self.dirty = True
        elif isinstance(command, ReturnVisit):
            record = triggers.return_visit(
                self._own(), command.device_id, command.visit_start, command.away, command.ts, now
            )
            self._trigger(record, ctx, out)
        elif isinstance(command, Deadline):
            current = self.profile
            if current is not None and current.cart.deadline == command.at and current.cart.due():
                self._trigger(triggers.cart_abandoned(current, command.at, now), ctx, out)
        elif isinstance(command, AddVisit):
            self._own().visits += command.count
            self.dirty = True
        elif isinstance(command, MergeIn):
            contents = self.arrived.pop(command.seq, None)
            if contents is None:
                self.waiting = command
            else:
                self._absorb(contents, command, ctx)
        elif isinstance(command, MergeOut):
            sent.append(Transfer(command.into, command.seq, self._own()))
            self._end(ctx, out)
        else:
            assert isinstance(command, Erase)
            self._end(ctx, out)
            out.append(Output(outputs.CRM_FEED, command.customer_id, None, self._stamp()))

    def _event(self, command: Apply, ctx: ShardContext) -> None:
        profile = self._own()
        event = command.event
        self.dirty = True
        if not isinstance(event, Click):
            profile.apply_crm(event)
            return
        if command.counts_visit:
            profile.visits += 1
        profile.seen(event.ts)
        if profile.count_click(event):
            ctx.stats["clamped.revenue"] += 1
        self._cart(profile, event, command.late, ctx)

    def _cart(self, profile: Profile, click: Click, late: bool, ctx: ShardContext) -> None:
        """Cart contents follow every event; the abandonment episode only in-time events, so that
        a late event never re-fires or un-fires a trigger (the deadline is the one identity
        resolution keeps in its calendar: `Person.touch_cart`)."""
        cart = profile.cart
        kind = click.type
        if kind == "add_to_cart" and click.product_id is not None:
            clamped = cart.add(click.product_id, 1 if click.quantity is None else click.quantity, click.price)
        elif kind == "remove_from_cart" and click.product_id is not None:
            clamped = cart.remove(click.product_id, 1 if click.quantity is None else click.quantity)
        elif kind == "purchase":
            if late:
                cart.lines.clear()
            else:
                cart.purchase()
            return
        else:
            return
        if clamped:
            ctx.stats["clamped.quantity"] += 1
        if not late:
            cart.touch(click.ts, click.device_id, ctx.rules.cart_abandon_after, opens=kind == "add_to_cart")

    def _absorb(self, contents: Profile, merge: MergeIn, ctx: ShardContext) -> None:
        profile = self._own()
        for name in profile.absorb(contents):
            ctx.stats["clamped." + name] += 1
        profile.visits -= merge.visits_back
        self.last_seq = merge.seq
        self.dirty = True

    def _end(self, ctx: ShardContext, out: list[Output]) -> None:
        """Merged away or erased: a tombstone, and the profile leaves the score population."""
        out.append(Output(outputs.PROFILES, self.profile_id, None))
        ctx.scorer.observe((), (self.profile_id,))
        self.profile = None
        self.dirty = False
        self.gone = True

    def _trigger(self, record: dict[str, Any], ctx: ShardContext, out: list[Output]) -> None:
        """Consent is read when a trigger fires (`triggers.allowed`)."""
        if self.profile is None or not triggers.allowed(self.profile):
            ctx.stats["triggers_suppressed." + record["type"]] += 1
            return
        ctx.stats["triggers." + record["type"]] += 1
        out.append(Output(outputs.TRIGGERS, self.profile_id, record))


__all__ = ["ProfileShard", "ShardContext"]
