"""One simulated visitor: a CRM customer (`cid` set) or an anonymous visitor, with what the
simulation needs of it (identity, devices, CRM state and the cart it carries between visits)."""

from __future__ import annotations

from typing import Any


class Actor:
    """A customer (cid set) or an anonymous visitor."""

    __slots__ = (
        "attrs",
        "cart",
        "cart_since",
        "cid",
        "consent",
        "created",
        "dev_cum",
        "devices",
        "email",
        "erased",
        "key",
        "key_change",
        "lead",
        "shared",
    )

    def __init__(self) -> None:
        self.cid: str | None = None
        self.key: str | None = None
        self.email: str | None = None  # as the customer types it (case may vary)
        self.key_change: tuple[str, str] | None = None  # (new e-mail, new key), applied by the CRM
        self.devices: list[tuple[str, str]] = []  # (device id, "phone" | "laptop")
        self.dev_cum: list[float] = []
        self.shared: frozenset[str] = frozenset()  # devices on which this customer always logs in
        self.consent: bool | None = None
        self.lead: str | None = None
        self.attrs: dict[str, Any] = {}
        self.created = 0
        self.erased = False
        self.cart: dict[str, list[Any]] = {}  # product id -> [quantity, unit price], in order added
        self.cart_since = 0


__all__ = ["Actor"]
