"""Identity: every decision about who an event belongs to, in one place.

`Identity` is what the engine asks, event by event: which identifiers of an event are usable
(`usable`: blocked values count as absent; `customer_key_of`: an explicit key before a clear
e-mail's hash), which profile a click or a CRM upsert lands in and why (`link_click`: `login` or
`customer_key`; `link_customer`: `crm_link`), which device an order number brings to which
customer whichever side comes first (`web_order`, `crm_order`: `order_match`), when a shared
device moves instead of merging (`IdentityGraph.bring_device`), and what an erase forgets and
keeps for late data (`erase`, `suppressed`; the suppression list is `erasure.Erased`). The engine
only sequences: it feeds the events in order, and turns the changes returned here into outputs,
visits and triggers.

The rules are those of docs/semantics.md "Identity". The graph is kept as three indexes from identifier
to profile id, so every lookup is one dict access and a profile is always found by any of its
identifiers. Linking merges only anonymous profiles (and, when the CRM links a key, a profile
known only by that key); anything else that would join two customers moves the device instead, so
two customers are never merged.

The functions here only change the graph and say what happened (`Merged`, `Moved`, `Rekeyed`);
the engine turns that into outputs and keeps visits in step.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from .erasure import Erased
from .events import Click, CrmChange, Event, order_key
from .person import Person
from .rules import Rules


@dataclass(frozen=True, slots=True)
class Merged:
    """`source` was merged into `into` and no longer exists."""

    source: Person
    into: Person
    reason: str


@dataclass(frozen=True, slots=True)
class Moved:
    """A device left `source` (which keeps its history) for `into`."""

    device_id: str
    source: Person
    into: Person


@dataclass(frozen=True, slots=True)
class Rekeyed:
    """`source` lost its customer key to another CRM customer (no merge)."""

    source: Person


Change = Merged | Moved | Rekeyed


# --- which identifiers count ------------------------------------------------------------------


def hash_email(addr: str) -> str:
    """SHA-256 hex of the trimmed, lower-cased address (docs/semantics.md "E-mail addresses"): the customer key a
    clear address stands for. Raises UnicodeEncodeError on a lone surrogate."""
    return hashlib.sha256(addr.strip().lower().encode("utf-8")).hexdigest()


def customer_key_of(customer_key: str | None, email: object, rules: Rules | None = None) -> str | None:
    """The customer key an input record stands for: its `customer_key`, else the hash of its clear
    `email`. An explicit key wins, but only a usable one: a key that is blocked (`rules`) counts as
    absent, so an address beside it still links. A blank or blocked address (`none`, `unknown`,
    ...) is absent too: its hash would tie every visitor who sent it into one customer.
    Raises TypeError for an `email` that is not a string (and is needed), UnicodeEncodeError for
    one that is not valid UTF-8; the codec turns both into a dead letter."""
    if customer_key is not None and (rules is None or rules.usable(customer_key) is not None):
        return customer_key
    if email is None:
        return customer_key
    if not isinstance(email, str):
        raise TypeError(f"expected a string, got {type(email).__name__}")
    if not email.strip() or (rules is not None and rules.usable(email) is None):
        return customer_key
    return hash_email(email)


def click_reason(click: Click) -> str:
    """The merge reason of a link made by a click: `login` for a login event, `customer_key` for
    any other event that carries a key (a newsletter link, a checkout with an account)."""
    return "login" if click.type == "login" else "customer_key"


def profile_id(kind: str, value: str, event_key: str) -> str:
    """A deterministic id: the identifier that created the profile and the event that did, so the
    same input gives the same ids on any number of workers, and a device that starts afresh
    after an erase gets a new one."""
    digest = hashlib.blake2b(f"{kind}\x1f{value}\x1f{event_key}".encode(), digest_size=10).hexdigest()
    return f"p-{digest}"


@dataclass
class IdentityGraph:
    gap: int  # runs of activity less than this apart are joined when persons merge (person.py)
    profiles: dict[str, Person] = field(default_factory=dict)
    by_device: dict[str, str] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    by_customer: dict[str, str] = field(default_factory=dict)
    # the profiles whose identifiers changed since the caller last took them (`take_changed`):
    # their shards get the new identifiers (resolve.py)
    changed: set[str] = field(default_factory=set)

    def take_changed(self) -> set[str]:
        changed, self.changed = self.changed, set()
        return changed

    # --- lookups ------------------------------------------------------------------------------

    def of_device(self, device_id: str) -> Person | None:
        pid = self.by_device.get(device_id)
        return None if pid is None else self.profiles[pid]

    def of_key(self, key: str) -> Person | None:
        pid = self.by_key.get(key)
        return None if pid is None else self.profiles[pid]

    def of_customer(self, customer_id: str) -> Person | None:
        pid = self.by_customer.get(customer_id)
        return None if pid is None else self.profiles[pid]

    # --- building blocks ----------------------------------------------------------------------

    def create(self, kind: str, value: str, event_key: str) -> Person:
        person = Person(profile_id(kind, value, event_key))
        self.profiles[person.profile_id] = person
        self.changed.add(person.profile_id)
        return person

    def attach_device(self, person: Person, device_id: str) -> None:
        person.device_ids.add(device_id)
        self.by_device[device_id] = person.profile_id
        self.changed.add(person.profile_id)

    def set_key(self, person: Person, key: str) -> None:
        """A person holds one key: a new one replaces (and unlinks) the old."""
        if person.customer_key is not None and self.by_key.get(person.customer_key) == person.profile_id:
            del self.by_key[person.customer_key]
        person.customer_key = key
        self.by_key[key] = person.profile_id
        self.changed.add(person.profile_id)

    def merge(self, source: Person, into: Person, reason: str) -> Merged:
        for device_id in source.device_ids:
            self.by_device[device_id] = into.profile_id
        if source.customer_key is not None:
            del self.by_key[source.customer_key]
            key, source.customer_key = source.customer_key, None
            self.set_key(into, key)
        into.absorb(source, self.gap)
        del self.profiles[source.profile_id]
        self.changed.discard(source.profile_id)
        self.changed.add(into.profile_id)
        return Merged(source, into, reason)

    def move_device(self, device_id: str, source: Person, into: Person) -> Moved:
        source.device_ids.discard(device_id)
        self.changed.add(source.profile_id)
        self.attach_device(into, device_id)
        return Moved(device_id, source, into)

    def bring_device(self, device_id: str, target: Person, reason: str) -> Change | None:
        """Link a device to a target profile: an anonymous profile of the device is merged into the
        target; a device of another person (a shared device) moves to the target alone."""
        current = self.of_device(device_id)
        if current is None:
            self.attach_device(target, device_id)
            return None
        if current is target:
            return None
        if current.anonymous:
            return self.merge(current, target, reason)
        return self.move_device(device_id, current, target)

    # --- the rules ----------------------------------------------------------------------------

    def click(self, device_id: str, key: str | None, reason: str, event_key: str) -> tuple[Person, list[Change]]:
        """Link a click's device (and its customer key, if any); return the profile it counts in."""
        changes: list[Change] = []
        current = self.of_device(device_id)
        if key is None:
            if current is None:
                current = self.create("device", device_id, event_key)
                self.attach_device(current, device_id)
            return current, changes
        keyed = self.of_key(key)
        if keyed is None:
            if current is not None and current.anonymous:
                self.set_key(current, key)
                return current, changes
            keyed = self.create("key", key, event_key)
            self.set_key(keyed, key)
        change = self.bring_device(device_id, keyed, reason)
        if change is not None:
            changes.append(change)
        return keyed, changes

    def upsert_customer(self, customer_id: str, key: str | None, event_key: str) -> tuple[Person, list[Change]]:
        """A CRM upsert: creates the customer's profile if needed and ties the key to it."""
        changes: list[Change] = []
        customer = self.of_customer(customer_id)
        if customer is None:
            customer = self.create("customer", customer_id, event_key)
            customer.customer_id = customer_id  # `create` marked it changed
            self.by_customer[customer_id] = customer.profile_id
        if key is None or customer.customer_key == key:
            return customer, changes
        holder = self.of_key(key)
        if holder is None:
            self.set_key(customer, key)
        elif holder.customer_id is None:
            changes.append(self.merge(holder, customer, "crm_link"))
        else:  # the key moves from another CRM customer to this one; the two are not merged
            del self.by_key[key]
            holder.customer_key = None
            self.changed.add(holder.profile_id)
            self.set_key(customer, key)
            changes.append(Rekeyed(holder))
        return customer, changes

    def erase(self, customer_id: str) -> Person | None:
        """Forget a customer: the profile and every link to it."""
        profile = self.of_customer(customer_id)
        if profile is None:
            return None
        del self.by_customer[customer_id]
        if profile.customer_key is not None:
            self.by_key.pop(profile.customer_key, None)
        for device_id in profile.device_ids:
            if self.by_device.get(device_id) == profile.profile_id:
                del self.by_device[device_id]
        del self.profiles[profile.profile_id]
        self.changed.discard(profile.profile_id)
        return profile


@dataclass
class OrderBook:
    """Order numbers seen on each side, kept for `order_match_window` of event time, so that a
    web purchase and a CRM change with the same `order_id` meet whichever comes first. Expiry is a
    heap by time (as `Dedup`'s): what is kept depends on times and the watermark only, so the two
    books are the whole state and `changed` names what a snapshot must write."""

    window: int
    web: dict[str, tuple[str, int]] = field(default_factory=dict)  # order -> (device, ts)
    crm: dict[str, tuple[str, int]] = field(default_factory=dict)  # order -> (customer, ts)
    _expiry: list[tuple[int, str, str]] = field(default_factory=list)  # a heap of (ts, side, order)
    # (side, order) written or dropped since the caller last took them (None: nobody asks)
    changed: set[tuple[str, str]] | None = None

    def web_purchase(self, order_id: str, device_id: str, ts: int) -> str | None:
        """Record a web order; the matching CRM customer, if any."""
        self._put("web", order_id, device_id, ts)
        return self._match(self.crm.get(order_id), ts)

    def crm_order(self, order_id: str, customer_id: str, ts: int) -> str | None:
        """Record a CRM order; the matching web device, if any."""
        self._put("crm", order_id, customer_id, ts)
        return self._match(self.web.get(order_id), ts)

    def _put(self, side: str, order_id: str, holder: str, ts: int) -> None:
        self._book(side)[order_id] = (holder, ts)
        heapq.heappush(self._expiry, (ts, side, order_id))
        self._changed(side, order_id)

    def _book(self, side: str) -> dict[str, tuple[str, int]]:
        return self.web if side == "web" else self.crm

    def _changed(self, side: str, order_id: str) -> None:
        if self.changed is not None:
            self.changed.add((side, order_id))

    def _match(self, other: tuple[str, int] | None, ts: int) -> str | None:
        if other is None or abs(ts - other[1]) > self.window:
            return None
        return other[0]

    def forget_customer(self, customer_id: str, order_ids: Iterable[str] = ()) -> None:
        """An erase: the customer's CRM orders, and its order numbers on the web side too (an
        order number is a link: a CRM change after the erase naming one of them must not reach
        back to the device that placed it)."""
        for order_id in [o for o, (c, _) in self.crm.items() if c == customer_id]:
            del self.crm[order_id]
            self._changed("crm", order_id)
        for order_id in order_ids:
            if self.web.pop(order_id, None) is not None:
                self._changed("web", order_id)

    def expire(self, watermark: int) -> None:
        """Drop orders no future event within the window can match: memory follows the window."""
        horizon = watermark - self.window
        expiry = self._expiry
        while expiry and expiry[0][0] < horizon:
            ts, side, order_id = heapq.heappop(expiry)
            book = self._book(side)
            entry = book.get(order_id)
            if entry is not None and entry[1] == ts:
                del book[order_id]
                self._changed(side, order_id)

    def restore(self, web: dict[str, tuple[str, int]], crm: dict[str, tuple[str, int]]) -> None:
        """The two books, as a snapshot kept them: the heap follows from them."""
        self.web, self.crm = web, crm
        self._expiry = [(ts, "web", o) for o, (_, ts) in web.items()] + [(ts, "crm", o) for o, (_, ts) in crm.items()]
        heapq.heapify(self._expiry)


# --- the decisions, event by event ------------------------------------------------------------


@dataclass
class Identity:
    """The identity state of a run (graph, order numbers, erased identifiers) and the decisions
    that change it. Each method takes one event and returns what changed; none emits anything."""

    rules: Rules
    graph: IdentityGraph
    orders: OrderBook
    erased: Erased = field(default_factory=Erased)

    @classmethod
    def start(cls, rules: Rules) -> Identity:
        """Empty identity state; profiles' activity runs join at `return_visit_after` (profile.py)."""
        return cls(rules, IdentityGraph(rules.return_visit_after), OrderBook(rules.order_match_window))

    def usable(self, value: str | None) -> str | None:
        """An identifier, or None where it is absent or blocked (`Rules.usable`): a blocked value
        links nothing."""
        return self.rules.usable(value)

    def suppressed(self, event: Event) -> bool:
        """An event before the erase of an identifier it carries: dropped (erasure.py)."""
        erased = self.erased
        return bool(erased.customers) and erased.covers(event)

    def link_click(self, click: Click, device_id: str) -> tuple[Person, list[Change]]:
        """The profile a click of a usable device counts in, linking its usable key (if any)."""
        return self.graph.click(device_id, self.usable(click.customer_key), click_reason(click), click.event_id)

    def web_order(self, click: Click, device_id: str) -> tuple[str | None, Person | None, list[Change]]:
        """A purchase's usable order number, and, when the CRM already named it for a customer
        with a profile (within `order_match_window`), that profile and the device's link to it:
        the device's anonymous profile merges into it, a device of another person moves alone."""
        order_id = self.usable(click.order_id) if click.type == "purchase" else None
        if order_id is None:
            return None, None, []
        customer_id = self.orders.web_purchase(order_id, device_id, click.ts)
        target = self.graph.of_customer(customer_id) if customer_id is not None else None
        if target is None:
            return order_id, None, []
        return order_id, target, self._bring(device_id, target)

    def link_customer(self, change: CrmChange) -> tuple[Person, list[Change]]:
        """A CRM upsert of a usable customer id: its profile, tied to its usable key."""
        return self.graph.upsert_customer(change.customer_id, self.usable(change.customer_key), change.change_id)

    def crm_order(self, change: CrmChange, profile: Person) -> tuple[str | None, list[Change]]:
        """A CRM change's usable order number, and, when a web purchase already carried it, the
        link of that purchase's device to the customer's profile (the other direction of
        `web_order`)."""
        order_id = self.usable(change.order_id)
        if order_id is None:
            return None, []
        device_id = self.orders.crm_order(order_id, change.customer_id, change.ts)
        return order_id, [] if device_id is None else self._bring(device_id, profile)

    def erase(self, change: CrmChange) -> Person | None:
        """Forget the customer (its profile and every link to it) and remember its identifiers for
        late data: the customer id, the key the profile held and one the erase carries, every
        order number of the profile and one the erase carries (erasure.py says why). Its order
        numbers leave the order book on both sides, so no later event reaches back through one.
        Returns the removed profile (None if the customer had none)."""
        customer_id = change.customer_id
        key, order_id = self.usable(change.customer_key), self.usable(change.order_id)
        keys = [] if key is None else [key]
        orders = [] if order_id is None else [order_id]
        profile = self.graph.erase(customer_id)
        if profile is not None:
            if profile.customer_key is not None:
                keys.append(profile.customer_key)
            orders += profile.order_ids or ()
        self.erased.add(order_key(change), customer_id, keys, orders)
        self.orders.forget_customer(customer_id, orders)
        return profile

    def expire(self, watermark: int) -> None:
        """Order numbers no future event can match within the window are dropped."""
        self.orders.expire(watermark)

    def _bring(self, device_id: str, target: Person) -> list[Change]:
        change = self.graph.bring_device(device_id, target, "order_match")
        return [] if change is None else [change]


__all__ = [
    "Change",
    "Identity",
    "IdentityGraph",
    "Merged",
    "Moved",
    "OrderBook",
    "Rekeyed",
    "click_reason",
    "customer_key_of",
    "hash_email",
    "profile_id",
]
