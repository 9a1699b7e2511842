"""What to generate (`ShopSpec`), the two roles it generates, and the ground truth about a
customer that tests compare the dataflow's profiles with (`Customer`, `hash_email`)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from profilestream.codec.times import parse_time
from profilestream.devtools.sample.knobs import RECORDS_PER_CUSTOMER, RECORDS_PER_CUSTOMER_DAY
from profilestream.domain.roles import CLICKSTREAM, CRM_CHANGES, INPUT_ROLES

ROLES = INPUT_ROLES


def start_ms(value: str) -> int:
    """A spec's `start` (any ISO-8601 time with a zone) -> epoch ms."""
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ValueError(f"start: {exc}") from None


@dataclass(frozen=True)
class ShopSpec:
    """What to generate. `events` is the exact number of records (clicks + CRM changes, duplicates
    included); `customers` and `days` are derived from it when None; `emails` lets a small share
    of records carry a clear e-mail instead of the key; `bad` malformed records are mixed into the
    files by `write_jsonl` (never by `generate`)."""

    events: int = 2000
    customers: int | None = None
    seed: int = 7
    # in the past, whole shop included (60 days at most): events ahead of the wall clock by more
    # than `time.max_future` are dead-lettered, so a sample must never reach into the future
    start: str = "2026-08-30T08:00:00Z"
    days: float | None = None
    emails: bool = True
    bad: int = 0

    def __post_init__(self) -> None:
        if self.events < 0:
            raise ValueError(f"events must be >= 0, got {self.events}")
        if self.customers is not None and self.customers < 0:
            raise ValueError(f"customers must be >= 0, got {self.customers}")
        if self.days is not None and not self.days > 0:
            raise ValueError(f"days must be > 0, got {self.days}")
        if self.bad < 0:
            raise ValueError(f"bad must be >= 0, got {self.bad}")
        start_ms(self.start)

    @property
    def period_days(self) -> float:
        """The simulated period: given, or growing slowly with the size (14 to 60 days)."""
        if self.days is not None:
            return float(self.days)
        return min(60.0, max(14.0, 21.0 + 9.0 * math.log10(max(self.events, 1) / 1000)))

    @property
    def customer_count(self) -> int:
        """Customers in the CRM: given, or what fills `period_days` with `events` records."""
        if self.customers is not None:
            return self.customers
        per_customer = RECORDS_PER_CUSTOMER_DAY * self.period_days + RECORDS_PER_CUSTOMER
        return max(3, round(self.events / per_customer))

    @property
    def start_ms(self) -> int:
        return start_ms(self.start)


def hash_email(addr: str) -> str:
    """SHA-256 hex of the trimmed, lower-cased address: what the site uses as customer_key."""
    return hashlib.sha256(addr.strip().lower().encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Customer:
    """The ground truth about one CRM customer (for tests): `keys`/`emails` in the order used
    (a second entry after an e-mail change), `devices` its own and shared device ids."""

    customer_id: str
    keys: tuple[str, ...]
    emails: tuple[str, ...]
    devices: tuple[str, ...]
    erased: bool


__all__ = ["CLICKSTREAM", "CRM_CHANGES", "ROLES", "Customer", "ShopSpec", "hash_email", "start_ms"]
