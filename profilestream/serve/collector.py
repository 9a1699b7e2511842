"""The collector's rules: a request (a JSON body or a pixel's query) to clickstream records.

Why it is separate from the ASGI app: every decision the contract makes about collected events
lives here, as plain functions of the request's parts, so that unit tests can hold each sentence
of CONTRACT.md "HTTP" without a server, and the app stays routing and headers only.

The events go through the very path `produce` uses (`avro.from_json` with the run's rules):
the same schema check, the same bounds (`codec.validation`), the same hashing of a clear
`email` into `customer_key` on arrival. What the edge adds comes first, and only fills gaps:

- `event_id` (a new UUID) and `ts` (the time received) when left out;
- `device_id` from the device cookie, or a new id (set as the cookie by the app) when there is
  neither;
- from the landing `url`: a `page_view` without `campaign` gets one from `utm_source`,
  `utm_medium`, `utm_campaign`; an event with neither `customer_key` nor `email` gets the key
  from `serve.url_key_param` (the newsletter link of shared/seeds/003).

Unlike `produce`, the collector applies `time.max_future` itself: it has the wall clock at hand
when the event arrives, and a sender is better told at once (400) than dead-lettered later.

Reasons are counted by the same short labels as the run's dead letters
(`metrics.dead_letter_reason`), so one dashboard reads both.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from profilestream.codec import avro
from profilestream.codec.times import format_time
from profilestream.domain.roles import CLICKSTREAM
from profilestream.domain.rules import Rules
from profilestream.ops.metrics import dead_letter_reason

MAX_EVENTS = 500  # per request (CONTRACT.md "HTTP")
UTM = (("utm_source", "source"), ("utm_medium", "medium"), ("utm_campaign", "name"))

# pixel query parameters: the clickstream fields a URL can carry, by how their text is read
PIXEL_TEXT = (
    "event_id",
    "ts",
    "device_id",
    "type",
    "customer_key",
    "email",
    "url",
    "referrer",
    "page_category",
    "product_id",
    "order_id",
)
PIXEL_NUMBERS = {"price": float, "revenue": float, "quantity": int}


def event_id(bits: int | None = None) -> str:
    """A new random (version 4) UUID for an event that came without an id.

    Why not `uuid.uuid4()`: it reads `os.urandom` (a system call) for each event, a twelfth of the
    collector's time in a profile of batches of 10. An event id needs to be unique, not secret
    (122 random bits, as uuid4), so the Mersenne Twister's bits do. Device ids, which stand for a
    visitor and travel as a cookie, stay `uuid4`: they must not be guessable.

    >>> event_id(0), event_id((1 << 128) - 1)
    ('00000000-0000-4000-8000-000000000000', 'ffffffff-ffff-4fff-bfff-ffffffffffff')
    """
    n = random.getrandbits(128) if bits is None else bits
    n = (n & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class BadRequest(ValueError):
    """The request as a whole is unusable (not JSON, not UTF-8, too many events): 400 with
    `str()` as the reason; `label` is the metric's reason."""

    def __init__(self, reason: str, label: str) -> None:
        super().__init__(reason)
        self.label = label


@dataclass
class Outcome:
    """What became of one request: the records to produce (key, record), the rejected events
    (`{"index", "error"}`), their metric labels, and the device id made for it (None: none)."""

    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    new_device: str | None = None

    def reject(self, index: int, exc: avro.Rejected) -> None:
        self.rejected.append({"index": index, "error": str(exc)})
        self.labels.append(dead_letter_reason(exc.field, exc.reason))


def landing(url: Any, key_param: str) -> tuple[dict[str, str] | None, str | None]:
    """The campaign (UTM parameters) and the customer key that a landing URL carries."""
    if not isinstance(url, str) or "?" not in url:
        return None, None
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:  # e.g. a malformed IPv6 host: the URL carries nothing we can read
        return None, None
    campaign = {name: query[param][0] for param, name in UTM if query.get(param)}
    key = query.get(key_param, [None])[0] if key_param else None
    return campaign or None, key or None


class Collector:
    """Turns requests into records. `rules` are the run's (`config.rules()`); `new_event_id` and
    `new_device_id` make the ids left out (parameters so tests can name them)."""

    def __init__(
        self,
        rules: Rules,
        key_param: str,
        new_event_id: Callable[[], str] = event_id,
        new_device_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ):
        self.rules = rules
        self.key_param = key_param
        self.new_event_id = new_event_id
        self.new_device_id = new_device_id

    # --- POST /v1/collect ----------------------------------------------------------------------

    def parse_body(self, body: bytes) -> list[Any]:
        """The events of a body: one event object, or `{"events": [...]}` with at most
        `MAX_EVENTS`. Raises `BadRequest` for a body that is no such thing."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"the body is not valid UTF-8 (byte {exc.start})", "not_utf8") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRequest(
                f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", "not_json"
            ) from None
        except RecursionError:
            raise BadRequest("the body is not valid JSON: nested too deeply", "not_json") from None
        if not isinstance(obj, dict):
            raise BadRequest(f'expected an event object or {{"events": [...]}}, got {_kind(obj)}', "not_object")
        if "events" not in obj:
            return [obj]
        events = obj["events"]
        if set(obj) != {"events"}:
            extra = ", ".join(sorted(k for k in obj if k != "events"))
            raise BadRequest(f'a batch is {{"events": [...]}} only; unexpected: {extra}', "not_object")
        if not isinstance(events, list):
            raise BadRequest(f"field 'events': expected an array, got {_kind(events)}", "not_object")
        if not events:
            raise BadRequest("field 'events': the batch is empty", "empty_batch")
        if len(events) > MAX_EVENTS:
            raise BadRequest(f"field 'events': {len(events)} events, over the limit of {MAX_EVENTS}", "too_many")
        return events

    def collect(self, events: list[Any], cookie_device: str | None, now_ms: int) -> Outcome:
        """Validate each event; the valid ones become `(device_id, record)`."""
        out = Outcome()
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                out.reject(index, avro.Rejected("event", f"expected an event object, got {_kind(event)}"))
                continue
            try:
                record = self.record(event, cookie_device, now_ms, out)
            except avro.Rejected as exc:
                out.reject(index, exc)
            else:
                out.records.append((record["device_id"], record))
        return out

    def record(self, event: dict[str, Any], cookie_device: str | None, now_ms: int, out: Outcome) -> dict[str, Any]:
        """One event with the edge's defaults filled in, validated as `produce` would."""
        event = dict(event)
        if event.get("event_id") is None:
            event["event_id"] = self.new_event_id()
        if event.get("ts") is None:
            event["ts"] = format_time(now_ms)
        if event.get("device_id") is None:
            if cookie_device is None:
                if out.new_device is None:
                    out.new_device = self.new_device_id()
                cookie_device = out.new_device
            event["device_id"] = cookie_device
        campaign, key = landing(event.get("url"), self.key_param)
        if campaign is not None and event.get("type") == "page_view" and event.get("campaign") is None:
            event["campaign"] = campaign
        if key is not None and event.get("customer_key") is None and event.get("email") is None:
            event["customer_key"] = key
        return avro.from_json(CLICKSTREAM, event, self.rules, now_ms)

    # --- GET /v1/pixel.gif ---------------------------------------------------------------------

    def pixel_event(self, query: Mapping[str, str]) -> dict[str, Any]:
        """A pixel's query parameters as an event (`type` defaults to `page_view`; `utm_*` are the
        campaign; `serve.url_key_param` the customer key). Parameters that are no clickstream
        field (cache busters, a mailer's own) are ignored: a link must never break for them."""
        event: dict[str, Any] = {name: query[name] for name in PIXEL_TEXT if name in query}
        event.setdefault("type", "page_view")
        for name, kind in PIXEL_NUMBERS.items():
            if name in query:
                try:
                    event[name] = kind(query[name])
                except ValueError:
                    raise avro.Rejected(name, f"{query[name]!r} is not a number") from None
        campaign = {name: query[param] for param, name in UTM if query.get(param)}
        if campaign:
            event["campaign"] = campaign
        if self.key_param and query.get(self.key_param) and "customer_key" not in event:
            event["customer_key"] = query[self.key_param]
        return event


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


__all__ = ["MAX_EVENTS", "BadRequest", "Collector", "Outcome", "event_id", "landing"]
