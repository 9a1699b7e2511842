"""The cart of a profile and its abandonment episode (docs/semantics.md "Cart", "Triggers").

The cart belongs to the profile across all its devices, so a cart filled on the phone and bought on
the laptop of the same customer closes one episode. An episode opens with an add, every add or remove
moves the deadline, a purchase or an empty cart closes it; when profiles merge, carts add up, the
later deadline holds and the episode is open if either was.

A line's quantity is an Avro int on the way out: sums saturate at `bounds.INT_MAX` (see bounds.py);
`add`, `remove` and `absorb` say how many lines they had to hold there, for the engine to count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .bounds import INT_MAX
from .compact import pickled_as_fields


@pickled_as_fields
@dataclass(slots=True)
class Line:
    quantity: int
    price: float | None


@pickled_as_fields
@dataclass(slots=True)
class Cart:
    lines: dict[str, Line] = field(default_factory=dict)
    episode_open: bool = False
    deadline: int | None = None
    device_id: str | None = None  # the device of the last add or remove

    def add(self, product_id: str, quantity: int, price: float | None) -> bool:
        """Add to a line (True when its quantity had to be held at INT_MAX)."""
        line = self.lines.get(product_id)
        if line is None:
            line = self.lines[product_id] = Line(0, price)
        elif price is not None:
            line.price = price
        return self._set(product_id, line, line.quantity + quantity)

    def remove(self, product_id: str, quantity: int) -> bool:
        line = self.lines.get(product_id)
        if line is None:
            return False
        return self._set(product_id, line, line.quantity - quantity)

    def _set(self, product_id: str, line: Line, quantity: int) -> bool:
        """A line at 0 or below leaves the cart; above INT_MAX it stays at INT_MAX (True)."""
        if quantity <= 0:
            del self.lines[product_id]
            return False
        if quantity > INT_MAX:
            line.quantity = INT_MAX
            return True
        line.quantity = quantity
        return False

    def touch(self, ts: int, device_id: str, abandon_after: int, opens: bool) -> None:
        """An add (`opens`) or a remove moves the deadline; an empty cart closes the episode."""
        if opens:
            self.episode_open = True
        self.deadline = ts + abandon_after
        self.device_id = device_id
        if not self.lines:
            self.episode_open = False

    def purchase(self) -> None:
        self.lines.clear()
        self.episode_open = False

    def absorb(self, other: Cart) -> int:
        """Merge another profile's cart into this one; the number of lines held at INT_MAX."""
        clamped = 0
        for product_id, line in other.lines.items():
            mine = self.lines.get(product_id)
            if mine is None:
                self.lines[product_id] = Line(line.quantity, line.price)
            else:
                clamped += self._set(product_id, mine, mine.quantity + line.quantity)
                if mine.price is None:
                    mine.price = line.price
        if other.deadline is not None and (self.deadline is None or other.deadline > self.deadline):
            self.deadline = other.deadline
            self.device_id = other.device_id
        self.episode_open = self.episode_open or other.episode_open
        if not self.lines:
            self.episode_open = False
        return clamped

    def due(self) -> bool:
        """At its deadline, does the episode fire? It closes either way."""
        fires = self.episode_open and bool(self.lines)
        self.episode_open = False
        return fires

    def snapshot(self) -> list[dict[str, Any]]:
        return [
            {"product_id": p, "quantity": line.quantity, "price": line.price} for p, line in sorted(self.lines.items())
        ]


__all__ = ["Cart", "Line"]
