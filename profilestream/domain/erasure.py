"""Erased customers, remembered so that late data cannot bring them back.

docs/semantics.md "Erase": an event that arrives after an `erase` but whose `ts` is
before it, and that carries the erased customer's `customer_id` or `customer_key` (or an order
number of theirs), is dropped and counted. Without this, a late login with the customer's key
(or the CRM's own late upsert) recreated the customer the erase had just removed.

What is kept, per identifier, is the position of the latest erase that named it, in the
contract's order of events (`events.order_key`: its `ts`, CRM before clicks, its `change_id`):

* the customer id;
* the customer key the profile held (already a hash: the clear e-mail is never seen here), and
  one the erase itself carries;
* every order number of the customer: web orders counted in the profile (from any of its
  devices, merged history included) and CRM orders of the customer (`Profile.order_ids`), and
  one the erase itself carries.

"Before the erase" is decided in that same order, not by `ts` alone: a late CRM change with the
erase's own `ts` but a smaller `change_id` would, in time order, have been applied first and
erased; it is dropped too. A click at the erase's `ts` comes after it (CRM changes first) and is
new data, as is anything later than the erase, late or not: a customer may come back from what
they do after the erase. Only the latest erase of an identifier counts (a customer erased, back,
and erased again: everything before the second erase is gone).

How long: for ever (a suppression list, as the right to be forgotten needs). Late events have no
bound in the contract (one older than the watermark is applied at once, however old), so any
time limit would let some late event bring a customer back; this is the one thing an erase
keeps, and it holds no personal data beyond identifiers the CRM and the site already use (the
key is a hash). Memory grows with the number of erased customers only: one entry per id, key and
order number (a dict entry and the string: some 100 to 200 bytes), the erase's position
shared by all of them.

A device id is not kept: the contract names the customer's identifiers, and a device of an erased
customer starts a new anonymous profile with every later event anyway ("later events of its
devices ... start new anonymous profiles"), a late one included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .events import Click, Event, order_key

Position = tuple[int, int, str]  # events.order_key of the erase: (ts, 0, change_id)


@dataclass
class Erased:
    customers: dict[str, Position] = field(default_factory=dict)
    keys: dict[str, Position] = field(default_factory=dict)
    orders: dict[str, Position] = field(default_factory=dict)

    def add(self, at: Position, customer_id: str, keys: Iterable[str], orders: Iterable[str]) -> None:
        """Remember an erase at `at` of the customer, its keys and its order numbers."""
        _later(self.customers, customer_id, at)
        for key in keys:
            _later(self.keys, key, at)
        for order_id in orders:
            _later(self.orders, order_id, at)

    def covers(self, event: Event) -> bool:
        """True when the event carries an erased identifier and comes before that erase."""
        found = []
        if isinstance(event, Click):
            if event.customer_key is not None:
                found.append(self.keys.get(event.customer_key))
        else:
            found.append(self.customers.get(event.customer_id))
            if event.customer_key is not None:
                found.append(self.keys.get(event.customer_key))
        if event.order_id is not None:
            found.append(self.orders.get(event.order_id))
        known = [at for at in found if at is not None]
        return bool(known) and order_key(event) < max(known)


def _later(table: dict[str, Position], identifier: str, at: Position) -> None:
    known = table.get(identifier)
    if known is None or at > known:
        table[identifier] = at


__all__ = ["Erased", "Position"]
