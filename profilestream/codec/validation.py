"""Is an input record usable? The contract checks between decoded Avro and the domain.

The dataflow dead-letters what these functions reject, so every rejection is a `Rejected`
naming the field and the reason in words a producer's developer can act on. This runs once per
input event (the hot path): plain attribute checks, no schema walking, no copying.

Why bounds at all: one record must never be able to break the product for everyone. A click
from a device whose clock says 2099 would drag the watermark and make every later event late
(`time.max_future`); a quantity of 2**31 would overflow the cart's Avro int at the output and
stop the dataflow; a 100,000-character id would be kept in state and in every output of its
profile. So, beyond the schema, an input is rejected when (docs/topics.md "Input validation", README "Dead
letters"):

- `ts` is outside [1990-01-01, 2100-01-01) (a unit mix-up), or more than `rules.max_future`
  ahead of the wall clock when it is read (`now_ms`, by default the time of the call; a caller
  that reads a batch passes one clock for all of it; `Rules(max_future=None)`: no bound);
- `quantity` is outside 1..100,000, `price` is negative or not finite, `revenue` (any number)
  is not finite or too large for a double;
- an id (`ID_FIELDS`) is longer than `MAX_ID_LENGTH` characters. Other strings (url, referrer,
  page_category, campaign, lead_status, attributes) have no limit of their own: the 1 MiB limit
  on a whole input value (`avro.MAX_VALUE_BYTES`) bounds them, and none of them is an identifier
  that the identity graph keeps an index of.

The Kafka key is never read here: the value's fields alone decide what an event is and which
profile it counts in (a wrong or null key only moves the record to another partition, which the
contract says cannot change the result).

Privacy: a clear e-mail address is hashed (`hash_email`) and dropped as soon as a record is read;
nothing downstream of this module ever sees one.
"""

from __future__ import annotations

import math
import time
from typing import Any

from profilestream.codec.times import format_time
from profilestream.domain import identity
from profilestream.domain.events import CLICK_TYPES, CRM_OPS, Campaign, Click, CrmChange
from profilestream.domain.identity import hash_email  # the domain decides; here for the codec's users
from profilestream.domain.roles import CLICKSTREAM, CRM_CHANGES, INPUT_ROLES
from profilestream.domain.rules import Rules
from profilestream.domain.units import DAY, HOUR, MINUTE, SECOND

MIN_TS = 631_152_000_000  # 1990-01-01T00:00:00Z: anything earlier is a broken clock or a unit mix-up
END_TS = 4_102_444_800_000  # 2100-01-01T00:00:00Z (exclusive): likewise (e.g. microseconds sent)
MAX_ID_LENGTH = 1024  # characters, for every id field (README "Dead letters")
ID_FIELDS = ("event_id", "change_id", "device_id", "customer_key", "customer_id", "product_id", "order_id")
MIN_QUANTITY, MAX_QUANTITY = 1, 100_000  # docs/topics.md "clickstream" `quantity`

_CLICK_TYPES = frozenset(CLICK_TYPES)
_CRM_OPS = frozenset(CRM_OPS)
NEEDS_PRODUCT = frozenset({"product_view", "add_to_cart", "remove_from_cart"})


class Rejected(ValueError):
    """An input that breaks the contract: `.field` (dotted path) and `.reason`.

    `str()` reads `field 'ts': not an ISO-8601 time with a zone`. The arguments are kept in
    `args` so the exception pickles (Bytewax may move it between processes)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"field {self.field!r}: {self.reason}"


def now() -> int:
    """The wall clock in epoch ms: what an input's `ts` is compared with (`time.max_future`)."""
    return int(time.time() * 1000)


def customer_key_of(customer_key: str | None, email: Any, rules: Rules | None = None) -> str | None:
    """The customer key an input record stands for, as the domain decides it
    (`identity.customer_key_of`); a non-string or non-UTF-8 `email` it needs is rejected."""
    try:
        return identity.customer_key_of(customer_key, email, rules)
    except TypeError as exc:
        raise Rejected("email", str(exc)) from None
    except UnicodeEncodeError:
        raise Rejected("email", "not valid UTF-8 (invalid bytes or a lone surrogate)") from None


def absorb_email(record: dict[str, Any], rules: Rules | None = None) -> dict[str, Any]:
    """Remove `email` from `record` (in place), hashing it into `customer_key` where
    `customer_key_of` says so. Returns `record`."""
    email = record.pop("email", None)
    if email is not None:
        key = customer_key_of(record.get("customer_key"), email, rules)
        if key is not None:
            record["customer_key"] = key
    return record


def _utf8(value: str, path: str) -> str:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Rejected(path, "not valid UTF-8 (invalid bytes or a lone surrogate)") from None
    return value


def _text(record: dict[str, Any], name: str, path: str | None = None, required: bool = False) -> str | None:
    value = record.get(name)
    if value is None:
        if required:
            raise Rejected(path or name, "required field is missing")
        return None
    if value.__class__ is str and value.isascii():  # the usual case, without a call
        return value
    if not isinstance(value, str):
        raise Rejected(path or name, f"expected a string, got {type(value).__name__}")
    return _utf8(value, path or name)


def _bounded_id(value: str | None, name: str) -> str | None:
    if value is not None and len(value) > MAX_ID_LENGTH:
        raise Rejected(name, f"{len(value)} characters, over the {MAX_ID_LENGTH}-character limit for ids")
    return value


def _id_text(record: dict[str, Any], name: str, required: bool = False) -> str | None:
    """`_text` for an id field: at most `MAX_ID_LENGTH` characters."""
    return _bounded_id(_text(record, name, required=required), name)


def finite(value: Any, path: str) -> float:
    """A number as a finite float, or `Rejected`: also for an int too large for a double, which
    `math.isfinite` and `float` would raise `OverflowError` on (JSON may carry one)."""
    try:
        if math.isfinite(value):
            return float(value)
    except OverflowError:
        raise Rejected(path, "too large for a double") from None
    raise Rejected(path, f"not a finite number: {value!r}")


def _number(record: dict[str, Any], name: str) -> float | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Rejected(name, f"expected a number, got {type(value).__name__}")
    return finite(value, name)


def _price(record: dict[str, Any]) -> float | None:
    price = _number(record, "price")
    if price is not None and price < 0:
        raise Rejected("price", f"{price!r} is negative (a unit price is 0 or more)")
    return price


def _quantity(record: dict[str, Any]) -> int | None:
    quantity = record.get("quantity")
    if quantity is None:
        return None
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise Rejected("quantity", f"expected an integer, got {type(quantity).__name__}")
    if not MIN_QUANTITY <= quantity <= MAX_QUANTITY:
        raise Rejected("quantity", f"{quantity} is outside {MIN_QUANTITY} .. {MAX_QUANTITY}")
    return quantity


_UNITS = (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", SECOND))


def _to_the_second(ms: int) -> str:
    """`format_time` without the milliseconds (`2026-11-20T10:15:00Z`): the form of the times in a
    `time.max_future` rejection."""
    return format_time(ms)[:-5] + "Z"


def _duration(ms: int) -> str:
    for unit, size in _UNITS:
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _too_far_ahead(ts: int, max_future: int, now_ms: int) -> Rejected:
    """The rejection of an input whose `ts` is more than `max_future` after `now_ms`."""
    return Rejected(
        "ts",
        f"{_to_the_second(ts)} is more than {_duration(max_future)} ahead of the wall clock "
        f"({_to_the_second(now_ms)}) when read (time.max_future): a device or system clock is wrong",
    )


def _ts(record: dict[str, Any], rules: Rules, now_ms: int) -> int:
    ts = record.get("ts")
    if ts is None:
        raise Rejected("ts", "required field is missing")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise Rejected("ts", f"expected epoch milliseconds, got {type(ts).__name__}")
    if not MIN_TS <= ts < END_TS:
        raise Rejected("ts", f"{ts} ms is outside 1990-01-01 .. 2100-01-01 (seconds or microseconds sent?)")
    if rules.max_future is not None and ts - now_ms > rules.max_future:
        raise _too_far_ahead(ts, rules.max_future, now_ms)
    return ts


def _id(record: dict[str, Any], name: str) -> str:
    value = _id_text(record, name, required=True)
    if not value.strip():  # type: ignore[union-attr]
        raise Rejected(name, "required field is empty")
    return value  # type: ignore[return-value]


def _customer_key(record: dict[str, Any], rules: Rules) -> str | None:
    """The key the record stands for (an address's hash where the key is absent or blocked),
    bounded like any id: the one kept is checked, not one that gave way to the address."""
    key = _text(record, "customer_key")
    if record.get("email") is not None:  # a record that skipped decode()
        key = customer_key_of(key, record["email"], rules)
    return _bounded_id(key, "customer_key")


def _campaign(record: dict[str, Any]) -> Campaign | None:
    c = record.get("campaign")
    if c is None:
        return None
    if not isinstance(c, dict):
        raise Rejected("campaign", f"expected a record, got {type(c).__name__}")
    return Campaign(
        _text(c, "source", "campaign.source"),
        _text(c, "medium", "campaign.medium"),
        _text(c, "name", "campaign.name"),
    )


def _attributes(record: dict[str, Any]) -> dict[str, str | float] | None:
    attrs = record.get("attributes")
    if attrs is None:
        return None
    if not isinstance(attrs, dict):
        raise Rejected("attributes", f"expected a map, got {type(attrs).__name__}")
    for key, value in attrs.items():
        if not isinstance(key, str):
            raise Rejected("attributes", f"keys must be strings, got {type(key).__name__}")
        path = f"attributes.{_utf8(key, 'attributes')}"
        if isinstance(value, str):
            _utf8(value, path)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Rejected(path, f"expected a string or a number, got {type(value).__name__}")
        elif isinstance(value, int):
            attrs[key] = finite(value, path)
        else:
            finite(value, path)
    return attrs


def _click(record: dict[str, Any], rules: Rules, now_ms: int) -> Click:
    event_id = _id(record, "event_id")
    ts = _ts(record, rules, now_ms)
    device_id = _id_text(record, "device_id", required=True)
    if rules.usable(device_id) is None:
        raise Rejected("device_id", "device_id is blocked")
    type_ = record.get("type")
    if type_ not in _CLICK_TYPES:
        raise Rejected("type", f"{type_!r} is not one of {', '.join(CLICK_TYPES)}")
    product_id = _id_text(record, "product_id")
    if type_ in NEEDS_PRODUCT and not (product_id and product_id.strip()):
        raise Rejected("product_id", f"required for {type_}")
    order_id = _id_text(record, "order_id")
    if type_ == "purchase" and not (order_id and order_id.strip()):
        raise Rejected("order_id", "required for purchase")
    return Click(
        event_id=event_id,
        ts=ts,
        device_id=device_id,  # type: ignore[arg-type]
        type=type_,
        customer_key=_customer_key(record, rules),
        url=_text(record, "url"),
        referrer=_text(record, "referrer"),
        page_category=_text(record, "page_category"),
        product_id=product_id,
        price=_price(record),
        quantity=_quantity(record),
        order_id=order_id,
        revenue=_number(record, "revenue"),
        campaign=_campaign(record),
    )


def _crm_change(record: dict[str, Any], rules: Rules, now_ms: int) -> CrmChange:
    change_id = _id(record, "change_id")
    ts = _ts(record, rules, now_ms)
    customer_id = _id_text(record, "customer_id", required=True)
    op = record.get("op")
    if op not in _CRM_OPS:
        raise Rejected("op", f"{op!r} is not one of {', '.join(CRM_OPS)}")
    consent = record.get("marketing_consent")
    if consent is not None and not isinstance(consent, bool):
        raise Rejected("marketing_consent", f"expected a boolean, got {type(consent).__name__}")
    return CrmChange(
        change_id=change_id,
        ts=ts,
        customer_id=customer_id,  # type: ignore[arg-type]
        op=op,
        customer_key=_customer_key(record, rules),
        attributes=_attributes(record),
        lead_status=_text(record, "lead_status"),
        marketing_consent=consent,
        order_id=_id_text(record, "order_id"),
    )


def to_event(role: str, record: dict[str, Any], rules: Rules, now_ms: int | None = None) -> Click | CrmChange:
    """The domain event for a decoded input record, or `Rejected` saying which field is wrong.

    Rejects: missing required fields (empty `event_id` / `change_id` too), `product_id` missing on
    product_view / add_to_cart / remove_from_cart, `order_id` missing on purchase, `ts` outside
    [1990-01-01, 2100-01-01) or more than `rules.max_future` after the wall clock when read
    (`now_ms`, epoch ms; None: now), a click whose `device_id` is blocked, an id over
    `MAX_ID_LENGTH` characters, `quantity` outside 1..100,000, a negative `price`, strings that
    are not valid UTF-8 (lone surrogates, e.g. invalid bytes read with surrogateescape), numbers
    that are not finite (or too large for a double).
    Whole-number CRM attribute values are made floats in place (the record is not copied)."""
    if now_ms is None:
        now_ms = now()
    if role == CLICKSTREAM:
        return _click(record, rules, now_ms)
    if role == CRM_CHANGES:
        return _crm_change(record, rules, now_ms)
    raise ValueError(f"{role!r} is not an input topic role ({', '.join(INPUT_ROLES)})")


__all__ = [
    "CLICKSTREAM",
    "CRM_CHANGES",
    "END_TS",
    "ID_FIELDS",
    "INPUT_ROLES",
    "MAX_ID_LENGTH",
    "MAX_QUANTITY",
    "MIN_QUANTITY",
    "MIN_TS",
    "NEEDS_PRODUCT",
    "Rejected",
    "absorb_email",
    "customer_key_of",
    "finite",
    "hash_email",
    "now",
    "to_event",
]
