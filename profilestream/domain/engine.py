"""The engine: every rule of the core applied to one stream of events in event time.

One `Engine` holds the whole state of a run: the timeline that orders events by the watermark,
the identity state (`identity.Identity`: the graph with its profiles, order numbers waiting for
their match, the erased customers' identifiers), per-device visits, pending cart deadlines and the
ids seen for de-duplication. The engine decides nothing about identity: it sequences each event
through the timeline, identity, the profile's visits and cart, the triggers and the outputs.
The stream shell feeds it batches of `(source, event)` and writes out what it
returns; it knows nothing of Kafka or Bytewax. A snapshot (recovery) is the engine pickled whole;
`__setstate__` brings one of an earlier build up to date.

Profiles and the CRM feed are coalesced: a call marks the profiles it changes and emits each one
once, at the end of the call, or (with `emit_every`) at the end of the first call at least that
much of the caller's clock after the last emission; so a burst of events on one profile gives one
record, and the latest record per key is always the truth. Merges, tombstones and triggers are
emitted as they happen. Why a clock: the shell's batches are small in a live run (a record per
profile per batch costs encoding and broker round trips) and vary in a replay; at the end of
input (`finish`) everything is emitted.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import outputs, triggers
from .bounds import INT_MAX, finite_double
from .dedup import Dedup
from .erasure import Erased
from .events import Click, CrmChange, Event
from .identity import Change, Identity, IdentityGraph, Merged, Moved, OrderBook, Rekeyed
from .outputs import Output
from .profile import Profile, crm_feed_of
from .rules import Rules
from .scores import DEFAULT_SCORER, Scorer, ScoreSettings
from .timeline import END_OF_TIME, Timeline
from .visits import DeviceVisit


@dataclass
class Engine:
    rules: Rules
    always_on: bool = False
    stats: Counter[str] = field(default_factory=Counter)
    emit_every: int = 0  # ms of the caller's clock between profile emissions; 0: every call
    # not a field: the instance's own is set in __post_init__; an engine unpickled from a snapshot
    # taken before scoring existed has none and scores with the defaults (see `use_scores`)
    scorer = DEFAULT_SCORER
    _emitted_at: int | None = None  # the caller's clock at the last emission (class default: also
    # what an engine unpickled from a snapshot taken before `emit_every` starts from)

    def __post_init__(self) -> None:
        r = self.rules
        self.timeline = Timeline(r.allowed_lateness, r.idle_after, self.always_on)
        self.graph = IdentityGraph(r.return_visit_after)  # joins runs of activity (profile.py)
        self.orders = OrderBook(r.order_match_window)
        self.erased = Erased()
        self.identity = Identity(r, self.graph, self.orders, self.erased)  # decides on these three
        self.dedup = Dedup(r.dedup_window)
        self.devices: dict[str, DeviceVisit] = {}
        self.deadlines: list[tuple[int, str]] = []
        self._dirty: set[str] = set()
        self.scorer = Scorer(r.scores)  # scores at emission, not per event (scores.py)
        self._out: list[Output] = []
        self._now = 0

    def __getstate__(self) -> dict[str, Any]:
        """The snapshot: the engine's attributes without `identity`, a view of three of them
        (`graph`, `orders`, `erased`), so the format is the one of earlier builds."""
        state = dict(self.__dict__)
        state.pop("identity", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A snapshot, possibly of an earlier build: what it lacks starts empty (no erased
        customers are remembered from before it, so late data of customers erased before such a
        snapshot is let in as it was then); its activity runs, joined at the session gap, were
        finer than needed and stay exact, new ones join at `return_visit_after`; sums that
        earlier builds let overflow (an infinite revenue, a cart line over an Avro int) are
        brought within their types once, so the profile encodes again."""
        self.__dict__.update(state)
        if "erased" not in state:
            self.erased = Erased()
            self.graph.gap = self.rules.return_visit_after
            for profile in self.graph.profiles.values():
                profile.revenue = finite_double(profile.revenue)
                for line in profile.cart.lines.values():
                    line.quantity = min(line.quantity, INT_MAX)
        self.identity = Identity(self.rules, self.graph, self.orders, self.erased)

    # --- the shell's interface ------------------------------------------------------------------

    def expect(self, sources: Iterable[str], now: int) -> None:
        """Name every input partition up front (see `Timeline.expect`)."""
        self.timeline.expect(sources, now)

    def feed(self, batch: Iterable[tuple[str, Event]], now: int) -> list[Output]:
        """Take a batch read from the inputs; apply what the watermark lets through."""
        self._now = now
        timeline = self.timeline
        for source, event in batch:
            if timeline.arrive(source, event, now):
                self.stats["late"] += 1
                self._apply(event, late=True)
        return self.tick(now)

    def end_source(self, source: str) -> None:
        """A bounded run has read a partition to its end: it no longer holds the watermark."""
        self.timeline.end_source(source)

    def tick(self, now: int, emit_all: bool = False) -> list[Output]:
        """Move the watermark (input read, partitions idle or ended) and apply what is due.
        `emit_all`: emit every changed profile now, whatever `emit_every` says (a stopping run)."""
        self._now = now
        watermark = self.timeline.advance(now)
        for event in self.timeline.due():
            self._apply(event, late=False)
        self._fire_due(watermark)
        self.dedup.expire(watermark)
        self.identity.expire(watermark)
        return self._flush(emit_all)

    def finish(self, now: int) -> list[Output]:
        """End of input is the end of time: every buffered event and pending deadline is due."""
        self.timeline.end()
        return self.tick(now, emit_all=True)

    def use_scores(self, settings: ScoreSettings) -> None:
        """Score with these settings from now on: a run resumed from a snapshot (which holds the
        rules it was started with) picks up a refitted model or new bands. The auto-mode
        population is kept when the mode and sketch size stay the same."""
        old = self.scorer
        scorer = Scorer(settings)
        if (
            old is not None
            and old.population is not None
            and scorer.population is not None
            and old.settings.sketch_k == settings.sketch_k
        ):
            scorer.population = old.population
        self.scorer = scorer

    @property
    def watermark(self) -> int:
        return self.timeline.watermark

    def profiles(self) -> dict[str, Profile]:
        return self.graph.profiles

    # --- applying one event ---------------------------------------------------------------------

    def _apply(self, event: Event, late: bool) -> None:
        if self.dedup.repeat(("k|" if isinstance(event, Click) else "c|") + event.event_key, event.ts):
            self.stats["duplicates"] += 1
            return
        if self.identity.suppressed(event):  # an erased customer never comes back from late data
            self.stats["dropped_erased"] += 1
            return
        if not late:
            self._fire_due(event.ts)  # a deadline at T has passed once an event later than T applies
        if isinstance(event, Click):
            self.stats["clicks." + event.type] += 1
            self._click(event, late)
        else:
            self.stats["crm." + event.op] += 1
            self._crm(event, late)

    def _click(self, click: Click, late: bool) -> None:
        rules, identity = self.rules, self.identity
        device_id = identity.usable(click.device_id)
        if device_id is None:  # the codec dead-letters these; never link through one
            self.stats["blocked_device"] += 1
            return
        ts = click.ts
        visit = self.devices.get(device_id)
        if visit is None:
            visit = self.devices[device_id] = DeviceVisit()
        starts_visit = visit.click(ts, rules.session_gap)

        profile, changes = identity.link_click(click, device_id)
        self._changed(changes, ts, late)
        order_id, target, changes = identity.web_order(click, device_id)
        if target is not None:
            self._changed(changes, ts, late)
            profile = target
        if order_id is not None:
            profile.add_order(order_id)

        if visit.count_in(profile.profile_id):
            profile.visits += 1
        # A visit becomes a return visit at its first click, or later when an identity change
        # gives it to another profile (`_changed`); its other clicks change nothing about it, so
        # checking them again could only let a late event's activity fire a trigger.
        if starts_visit and not late:
            self._check_return(device_id, visit, profile, ts)
        profile.record_activity(ts, rules.return_visit_after)
        if profile.count_click(click):
            self.stats["clamped.revenue"] += 1
        self._cart(profile, click, device_id, late)
        self._dirty.add(profile.profile_id)

    def _cart(self, profile: Profile, click: Click, device_id: str, late: bool) -> None:
        """Cart contents follow every event; the abandonment episode only in-time events, so that
        a late event never re-fires or un-fires a trigger."""
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
            self.stats["clamped.quantity"] += 1
        if not late:
            cart.touch(click.ts, device_id, self.rules.cart_abandon_after, opens=kind == "add_to_cart")
            self._schedule(profile)

    def _crm(self, change: CrmChange, late: bool) -> None:
        identity = self.identity
        if identity.usable(change.customer_id) is None:  # a blocked customer id is absent: links nothing
            self.stats["blocked_customer"] += 1
            return
        if change.op == "erase":
            self._erase(change)
            return
        profile, changes = identity.link_customer(change)
        self._changed(changes, change.ts, late)
        order_id, changes = identity.crm_order(change, profile)
        self._changed(changes, change.ts, late)
        if order_id is not None:
            profile.add_order(order_id)
        profile.apply_crm(change)
        self._dirty.add(profile.profile_id)

    def _erase(self, change: CrmChange) -> None:
        """What the erase forgets is identity's (`Identity.erase`); the engine drops the
        profile's pending output and writes the tombstones."""
        profile = self.identity.erase(change)
        if profile is None:
            return
        self._dirty.discard(profile.profile_id)
        self._out.append(Output(outputs.PROFILES, profile.profile_id, None))
        self._out.append(Output(outputs.CRM_FEED, change.customer_id, None))

    # --- consequences of identity changes -------------------------------------------------------

    def _changed(self, changes: list[Change], ts: int, late: bool) -> None:
        """Emit merges and tombstones, keep visits and deadlines in step with the graph, and check
        again every open visit whose profile's activity changed: on a merge every open visit of
        the merged profile (either side: the older activity may be on the other one), on a move
        the device's own (docs/semantics.md "return_visit")."""
        gap = self.rules.session_gap
        for change in changes:
            if isinstance(change, Rekeyed):
                self._dirty.add(change.source.profile_id)
                continue
            into = change.into
            self._dirty.add(into.profile_id)
            if isinstance(change, Merged):
                source_id = change.source.profile_id
                self.stats["merges." + change.reason] += 1
                for name in change.clamped:
                    self.stats["clamped." + name] += 1
                self._dirty.discard(source_id)
                self._out.append(Output(outputs.PROFILES, source_id, None))
                self._out.append(
                    Output(
                        outputs.MERGES,
                        into.profile_id,
                        {
                            "from_profile_id": source_id,
                            "into_profile_id": into.profile_id,
                            "reason": change.reason,
                            "ts": ts,
                        },
                    )
                )
                # `into` now holds the source's devices; one that moved from the source to `into`
                # during its current visit had that visit counted in both, and summed twice
                for device_id in into.device_ids:
                    visit = self.devices.get(device_id)
                    if visit is not None and visit.renamed(source_id, into.profile_id):
                        into.visits -= 1
                self._schedule(into)
                devices = into.device_ids
            else:
                assert isinstance(change, Moved)
                self._dirty.add(change.source.profile_id)
                devices = {change.device_id}  # its new profile's activity did not change
                visit = self.devices.get(change.device_id)
                if visit is not None and visit.in_progress(ts, gap) and visit.count_in(into.profile_id):
                    into.visits += 1
            if not late:
                for device_id in sorted(devices):
                    visit = self.devices.get(device_id)
                    if visit is not None and visit.in_progress(ts, gap):
                        self._check_return(device_id, visit, into, ts)

    # --- triggers -------------------------------------------------------------------------------

    def _check_return(self, device_id: str, visit: DeviceVisit, profile: Profile, ts: int) -> None:
        if visit.return_done:
            return
        away = triggers.return_gap(profile, visit.start, self.rules.return_visit_after)
        if away is None:
            return
        visit.return_done = True
        self._emit_trigger(profile, triggers.return_visit(profile, device_id, visit.start, away, ts, self._now))

    def _schedule(self, profile: Profile) -> None:
        cart = profile.cart
        if cart.episode_open and cart.deadline is not None:
            heapq.heappush(self.deadlines, (cart.deadline, profile.profile_id))

    def _fire_due(self, limit: int) -> None:
        """Fire every cart deadline strictly before `limit` (an event at exactly T comes first)."""
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] < limit:
            deadline, profile_id = heapq.heappop(deadlines)
            profile = self.graph.profiles.get(profile_id)
            if profile is None or profile.cart.deadline != deadline:
                continue  # merged away, erased, or the deadline moved since
            if profile.cart.due():
                self._emit_trigger(profile, triggers.cart_abandoned(profile, deadline, self._now))

    def _emit_trigger(self, profile: Profile, record: dict[str, Any]) -> None:
        if not triggers.allowed(profile):
            self.stats["triggers_suppressed." + record["type"]] += 1
            return
        self.stats["triggers." + record["type"]] += 1
        self._out.append(Output(outputs.TRIGGERS, profile.profile_id, record))

    # --- output ---------------------------------------------------------------------------------

    def _flush(self, emit_all: bool = False) -> list[Output]:
        out, self._out = self._out, []
        now = self._now
        due = self._dirty and (
            emit_all or not self.emit_every or self._emitted_at is None or now - self._emitted_at >= self.emit_every
        )
        profiles = self.graph.profiles
        dirty = [profiles[pid] for pid in sorted(self._dirty) if pid in profiles] if due else []
        scorer = self.scorer
        # the score population (auto mode) follows what is emitted: tombstoned profiles leave it
        scorer.observe(dirty, [o.key for o in out if o.topic == outputs.PROFILES and o.value is None])
        if not due:
            return out
        self._emitted_at = now
        for profile in dirty:
            scores = scorer.score(profile)
            record = profile.record(scores)
            out.append(Output(outputs.PROFILES, profile.profile_id, record))
            if profile.customer_id is not None:
                out.append(Output(outputs.CRM_FEED, profile.customer_id, crm_feed_of(record)))
        self._dirty.clear()
        return out


__all__ = ["END_OF_TIME", "Engine"]
