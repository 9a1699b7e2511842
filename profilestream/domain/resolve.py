"""Identity resolution: the serial part of the engine, kept to identifiers and times.

One `Resolver` sees every event of a run, in event time: the timeline that orders events by the
watermark, de-duplication, the identity state (`identity.Identity`: the graph of persons, order
numbers waiting for their match, the erased customers' identifiers), per-device visits and the
calendar of cart deadlines. For each event it decides who the event belongs to and what that
changes, and says so as small commands, each for one profile (`commands`); the profile's shard
(`shard.ProfileShard`, on any worker) builds the records and triggers from them. Merges go out
as records at once (`profile-merges`: who merged into whom is identity's knowledge).

Why visits, return visits and deadlines are decided here and not in the shards: a visit is a
device's, and a device changes profiles; a return visit reads the activity of every device of the
person before the visit (`Person.spans`); a deadline fires when the run's watermark passes it,
even if that profile receives nothing more. All three need what only this serial step sees, and
each costs a few integers per person. The shards then need no broadcast of the watermark: the
`Deadline` command reaches the one profile whose deadline passed.

The shell feeds batches of `(source, event)` and takes `Decisions` back; it knows nothing of
Kafka or Bytewax here.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import outputs, triggers
from .commands import AddVisit, Apply, Command, Deadline, Erase, Ids, MergeIn, MergeOut, ReturnVisit
from .dedup import Dedup
from .erasure import Erased
from .events import CLICK_TYPES, Click, CrmChange, Event
from .identity import Change, Identity, IdentityGraph, Merged, Moved, OrderBook, Rekeyed
from .outputs import Output
from .person import Person
from .rules import Rules
from .timeline import Timeline
from .visits import DeviceVisit

Routed = tuple[str, Command]
"""A command and the profile id it is for (the key the dataflow routes it by)."""

_CLICK_STATS = {kind: "clicks." + kind for kind in CLICK_TYPES}  # one string built per event less
_CART_CLICKS = frozenset({"add_to_cart", "remove_from_cart"})


@dataclass
class Decisions:
    """What resolution decided since it was last asked: commands for the profiles' shards, in the
    order each shard must apply them, and records it writes itself (merges)."""

    commands: list[Routed] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)


@dataclass
class Touched:
    """What may have changed since the shell last took it: the persons (by profile id), devices,
    remembered event ids and order numbers that an incremental snapshot writes
    (`flows/changelog.py`). Why persons come from the commands: every change to a person goes
    with a command for it (its event's `Apply`, the `Ids` of an identifier change,
    `MergeIn`/`MergeOut`, `Erase`), so the commands name them all at the cost of one set update
    per batch; a person no longer in the graph was merged away or erased. Devices are named where
    their visit changes; `Dedup` and `OrderBook` name their own."""

    persons: set[str] = field(default_factory=set)
    devices: set[str] = field(default_factory=set)
    event_ids: set[str] = field(default_factory=set)
    orders: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class Resolver:
    rules: Rules
    always_on: bool = False
    stats: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        r = self.rules
        self.timeline = Timeline(r.allowed_lateness, r.idle_after, self.always_on)
        self.graph = IdentityGraph(r.return_visit_after)  # joins runs of activity (person.py)
        self.orders = OrderBook(r.order_match_window)
        self.erased = Erased()
        self.identity = Identity(r, self.graph, self.orders, self.erased)  # decides on these three
        self.dedup = Dedup(r.dedup_window)
        self.devices: dict[str, DeviceVisit] = {}
        self.deadlines: list[tuple[int, str]] = []
        self.merges = 0  # merges so far: each one's `seq`, so transfers are told apart
        self.touched: Touched | None = None  # kept only for a shell that snapshots (`track`)
        self._decided = Decisions()

    def track(self) -> None:
        """From now on, remember what changed (`take_touched`): a run with recovery asks."""
        self.touched = Touched()
        self.dedup.changed = set()
        self.orders.changed = set()

    def take_touched(self) -> Touched:
        """What changed since the last call (or `track`), and start again."""
        touched = self.touched or Touched()
        touched.event_ids = self.dedup.changed or set()
        touched.orders = self.orders.changed or set()
        self.track()
        return touched

    # --- the shell's interface ------------------------------------------------------------------

    def expect(self, sources: Iterable[str], now: int) -> None:
        """Name every input partition up front (see `Timeline.expect`)."""
        self.timeline.expect(sources, now)

    def feed(self, batch: Iterable[tuple[str, Event]], now: int) -> Decisions:
        """Take a batch read from the inputs; decide on what the watermark lets through."""
        timeline = self.timeline
        for source, event in batch:
            if timeline.arrive(source, event, now):
                self.stats["late"] += 1
                self._apply(event, late=True)
        return self.tick(now)

    def end_source(self, source: str) -> None:
        """A bounded run has read a partition to its end: it no longer holds the watermark."""
        self.timeline.end_source(source)

    def tick(self, now: int) -> Decisions:
        """Move the watermark (input read, partitions idle or ended) and decide what is due."""
        watermark = self.timeline.advance(now)
        for event in self.timeline.due():
            self._apply(event, late=False)
        self._fire_due(watermark)
        self.dedup.expire(watermark)
        self.identity.expire(watermark)
        decided, self._decided = self._decided, Decisions()
        if self.touched is not None:
            self.touched.persons.update([profile_id for profile_id, _ in decided.commands])
        return decided

    def finish(self, now: int) -> Decisions:
        """End of input is the end of time: every buffered event and pending deadline is due."""
        self.timeline.end()
        return self.tick(now)

    @property
    def watermark(self) -> int:
        return self.timeline.watermark

    # --- one event ------------------------------------------------------------------------------

    def _send(self, profile_id: str, command: Command) -> None:
        self._decided.commands.append((profile_id, command))

    def _sync_ids(self) -> None:
        """Send the identifiers of every person whose identifiers changed to its shard."""
        graph = self.graph
        if not graph.changed:
            return
        for profile_id in sorted(graph.take_changed()):
            person = graph.profiles.get(profile_id)
            if person is not None:
                since = None if person.customer_id is None else self.erased.customers.get(person.customer_id)
                ids = Ids(person.customer_id, person.customer_key, tuple(sorted(person.device_ids)), since)
                self._send(profile_id, ids)

    def _apply(self, event: Event, late: bool) -> None:
        # Every event crosses this method on the one worker that resolves: the checks of
        # `Identity.suppressed`, `Dedup` keys and `_fire_due` are written out here (a call each
        # saved per event); `_click` has a fast path for the commonest click.
        ts = event.ts
        if isinstance(event, Click):
            if self.dedup.repeat("k|" + event.event_id, ts):
                self.stats["duplicates"] += 1
                return
        elif self.dedup.repeat("c|" + event.change_id, ts):
            self.stats["duplicates"] += 1
            return
        erased = self.erased
        # an erased customer never comes back from late data (`Identity.suppressed`); a click
        # with neither key nor order number carries no identifier an erase covers
        if (
            erased.customers
            and (type(event) is not Click or event.customer_key is not None or event.order_id is not None)
            and erased.covers(event)
        ):
            self.stats["dropped_erased"] += 1
            return
        if not late:
            deadlines = self.deadlines
            if deadlines and deadlines[0][0] < ts:
                self._fire_due(ts)  # a deadline at T has passed once an event later than T applies
        if isinstance(event, Click):
            kind = event.type
            self.stats[_CLICK_STATS.get(kind) or "clicks." + kind] += 1
            self._click(event, late)
        else:
            self.stats["crm." + event.op] += 1
            self._crm(event, late)

    def _click(self, click: Click, late: bool) -> None:
        rules = self.rules
        device_id = click.device_id
        visit = self.devices.get(device_id)
        if visit is None:
            # Only a usable device ever gets a visit, and the rules travel with the resolver in a
            # snapshot: a device with a visit is usable, no need to ask again.
            if self.identity.usable(device_id) is None:  # the codec dead-letters these; never link through one
                self.stats["blocked_device"] += 1
                return
            visit = self.devices[device_id] = DeviceVisit()
        if self.touched is not None:
            self.touched.devices.add(device_id)
        ts = click.ts
        starts_visit = visit.click(ts, rules.session_gap)

        graph = self.graph
        kind = click.type
        profile_id = graph.by_device.get(device_id) if click.customer_key is None and kind != "purchase" else None
        if profile_id is not None:
            # The commonest click: a known device, no key, no order number: it links nothing
            # (`IdentityGraph.click` returns the device's person, `Identity.web_order` nothing).
            person = graph.profiles[profile_id]
        else:
            person, changes = self.identity.link_click(click, device_id)
            self._changed(changes, ts, late)
            order_id, target, changes = self.identity.web_order(click, device_id)
            if target is not None:
                self._changed(changes, ts, late)
                person = target
            if order_id is not None:
                person.add_order(order_id)
            profile_id = person.profile_id
        if graph.changed:
            self._sync_ids()

        counts_visit = visit.count_in(profile_id)
        # A visit becomes a return visit at its first click, or later when an identity change
        # gives it to another person (`_changed`); its other clicks change nothing about it, so
        # checking them again could only let a late event's activity fire a trigger.
        if starts_visit and not late:
            self._check_return(device_id, visit, person, ts)
        person.record_activity(ts, rules.return_visit_after)
        if not late and click.product_id is not None and kind in _CART_CLICKS:
            person.touch_cart(ts + rules.cart_abandon_after)  # as `Cart.touch` in the shard
            heapq.heappush(self.deadlines, (ts + rules.cart_abandon_after, profile_id))
        self._decided.commands.append((profile_id, Apply(click, late, counts_visit)))

    def _crm(self, change: CrmChange, late: bool) -> None:
        identity = self.identity
        if identity.usable(change.customer_id) is None:  # a blocked customer id is absent: links nothing
            self.stats["blocked_customer"] += 1
            return
        if change.op == "erase":
            self._erase(change)
            return
        person, changes = identity.link_customer(change)
        self._changed(changes, change.ts, late)
        order_id, changes = identity.crm_order(change, person)
        self._changed(changes, change.ts, late)
        if order_id is not None:
            person.add_order(order_id)
        self._sync_ids()
        self._send(person.profile_id, Apply(change, late, False))

    def _erase(self, change: CrmChange) -> None:
        """What the erase forgets is identity's (`Identity.erase`); the profile's shard writes the
        tombstones."""
        person = self.identity.erase(change)
        if person is not None:
            self._send(person.profile_id, Erase(change.customer_id))

    # --- consequences of identity changes -------------------------------------------------------

    def _changed(self, changes: list[Change], ts: int, late: bool) -> None:
        """Write merges, send the merged profile's contents on their way, keep visits and
        deadlines in step with the graph, and check again every open visit whose person's
        activity changed: on a merge every open visit of the merged person (either side: the
        older activity may be on the other one), on a move the device's own (docs/semantics.md
        "return_visit")."""
        gap = self.rules.session_gap
        for change in changes:
            if isinstance(change, Rekeyed):
                continue  # the graph marked its identifiers changed (`_sync_ids`)
            into = change.into
            if isinstance(change, Merged):
                source_id = change.source.profile_id
                self.stats["merges." + change.reason] += 1
                seq = self.merges
                self.merges += 1
                self._decided.outputs.append(
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
                visits_back = 0
                for device_id in into.device_ids:
                    visit = self.devices.get(device_id)
                    if visit is not None:
                        self._touch_device(device_id)
                        if visit.renamed(source_id, into.profile_id):
                            visits_back += 1
                self._send(source_id, MergeOut(into.profile_id, seq))
                self._send(into.profile_id, MergeIn(source_id, seq, visits_back))
                if into.deadline is not None:
                    heapq.heappush(self.deadlines, (into.deadline, into.profile_id))
                devices = into.device_ids
            else:
                assert isinstance(change, Moved)
                devices = {change.device_id}  # its new person's activity did not change
                visit = self.devices.get(change.device_id)
                self._touch_device(change.device_id)
                if visit is not None and visit.in_progress(ts, gap) and visit.count_in(into.profile_id):
                    self._send(into.profile_id, AddVisit(1))
            self._sync_ids()
            if not late:
                for device_id in sorted(devices):
                    visit = self.devices.get(device_id)
                    if visit is not None and visit.in_progress(ts, gap):
                        self._check_return(device_id, visit, into, ts)

    def _touch_device(self, device_id: str) -> None:
        if self.touched is not None:
            self.touched.devices.add(device_id)

    # --- triggers -------------------------------------------------------------------------------

    def _check_return(self, device_id: str, visit: DeviceVisit, person: Person, ts: int) -> None:
        if visit.return_done:
            return
        away = triggers.return_gap(person, visit.start, self.rules.return_visit_after)
        if away is None:
            return
        visit.return_done = True
        self._touch_device(device_id)
        self._send(person.profile_id, ReturnVisit(device_id, visit.start, away, ts))

    def _fire_due(self, limit: int) -> None:
        """Every cart deadline strictly before `limit` (an event at exactly T comes first) goes
        to its profile's shard, which fires it if the episode is still open."""
        deadlines = self.deadlines
        profiles = self.graph.profiles
        while deadlines and deadlines[0][0] < limit:
            deadline, profile_id = heapq.heappop(deadlines)
            person = profiles.get(profile_id)
            if person is None or person.deadline != deadline:
                continue  # merged away, erased, or the deadline moved since
            self._send(profile_id, Deadline(deadline))


__all__ = ["Decisions", "Resolver", "Routed", "Touched"]
