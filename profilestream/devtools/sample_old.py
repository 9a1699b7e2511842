"""A deterministic sample shop: clickstream and CRM changes in CONTRACT.md's JSON input form.

`generate(ShopSpec(...))` streams `(role, record)` pairs, role `"clickstream"` or `"crm_changes"`,
in the contract's order of application (by `ts`; at equal `ts` CRM changes first, then by id), so
the same spec always gives the same records. `profilestream demo`, the tests and the benchmark
feed it to `produce` (`write_jsonl`) or straight to a producer (`records`).

The shop it simulates:

* Customers known to the CRM (`C000123`): most have a website account whose `customer_key` is the
  SHA-256 of their trimmed, lower-cased e-mail; a few have an account key without a known e-mail and
  a few no account at all (only their order numbers tie them to the web). Attributes like
  `{"segment": "gold", "age": 41.0, "city": "Hamburg"}`, `lead_status` lead/offer_created/sale,
  `marketing_consent` mostly true, some false, a few unknown. Each has 1-3 devices (phone, laptop:
  `d-<hex>`); a couple of laptops are shared by two customers who both log in on them. Beside
  them, anonymous visitors (one device each) who never identify, arriving all the time.
* Visits are bursts of clicks seconds to minutes apart (landing page, category pages, product
  views, add/remove to cart, checkout, purchase with `order_id` and `revenue`), separated by gaps of
  hours, days or weeks (so there are returns after 7+ days); carts are often left and bought on a
  later visit, sometimes on another device, or abandoned for good.
* Identity: some visits land from a newsletter link (a `page_view` carrying the `customer_key` and a
  newsletter/email campaign; only opted-in customers get newsletters), some log in, some buy
  without logging in: the CRM then imports the order (an upsert with that `order_id`) minutes to a
  day later, or for about one order in five up to an hour *before* the web purchase arrives.
  Customers who join the CRM later may log in before the CRM knows their key.
* CRM stream: an initial import of every existing customer in the first two hours, sign-ups of new
  customers through the period, occasional updates (lead status, consent, attributes, rarely a new
  e-mail and so a new key), order imports, and the rare erase (right to be forgotten); an erased
  customer's devices go on visiting anonymously and the CRM says nothing more about them.
* Noise: a small share of clicks and CRM upserts carry a clear `email` instead of `customer_key`
  (in varied case, sometimes padded with blanks), a few clicks carry blocked keys (`undefined`,
  `null`, ...), a few events and changes are sent twice (same id, at once or seconds later),
  campaigns on some first clicks (google/cpc, facebook/social, instagram/social, partner/affiliate),
  sometimes with parts missing.

About 97% of the records are clicks and 3% CRM changes. Ids are zero-padded (`e-00000042`,
`c-00000007`, `O0000012`) so that their text order is their order of generation. Everything comes
from one `random.Random(seed)`; nothing depends on the clock or on set/dict iteration order.
`bad_records` makes contract-breaking records for hostile-input tests; `generate` never does.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import heapq
import itertools
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

CLICKSTREAM = "clickstream"
CRM_CHANGES = "crm_changes"
ROLES = (CLICKSTREAM, CRM_CHANGES)

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# --- knobs of the simulation (shares are per visit / per record unless said otherwise) --------

ANON_PER_CUSTOMER = 5.5  # anonymous visitors arriving over the period, per customer
LATE_CUSTOMERS = 0.15  # customers who join the CRM during the period, not in the initial import
KEYED = 0.90  # customers with a website account (a customer_key)
KEY_FROM_EMAIL = 0.92  # of those, the key is the hash of their e-mail
EMAIL_SHARE = 0.06  # key-carrying clicks / CRM upserts that send the clear e-mail instead
NEWSLETTER = 0.12  # visits of an opted-in customer that land from a newsletter link
LOGIN = 0.26  # visits of a customer with an account that log in
CAMPAIGN = 0.22  # other visits that land from a paid/social campaign
BLOCKED_KEY = 0.003  # clicks carrying a blocked customer_key value
DUPLICATE_CLICK = 0.002  # clicks sent twice
DUPLICATE_CHANGE = 0.004  # CRM changes sent twice
CRM_FIRST = 0.2  # order imports that reach the CRM stream before the web purchase
ANON_RETURN = 0.45  # chance an anonymous visitor comes back after a visit
UPDATE_MEAN_GAP = 75 * DAY  # mean time between CRM updates of one customer
MOVING = 0.03  # customers with an e-mail who will change it (and so their key) one day
KEY_CHANGE = 0.25  # chance that such a customer's next CRM update is the change
ERASE_PER_CUSTOMER = 1 / 400
LOOKAHEAD = HOUR  # a visit is planned this long before it starts (room for CRM-first orders)
# calibration: records per customer per day of the period, all actors and the CRM included
# (measured with the knobs above; `days` then comes out about right)
_RECORDS_PER_CUSTOMER_DAY = 1.09
_RECORDS_PER_CUSTOMER = 39.4  # ... plus this much per customer whatever the period

BLOCKED_VALUES = ("undefined", "null", "", "None", "anonymous", "0", " undefined ", "NULL", "-", "test")

CATEGORIES = (  # (name, lowest price, highest price)
    ("shoes", 39.0, 180.0),
    ("dresses", 29.0, 160.0),
    ("jackets", 59.0, 320.0),
    ("shirts", 15.0, 70.0),
    ("bags", 25.0, 260.0),
    ("electronics", 19.0, 900.0),
    ("home", 9.0, 240.0),
    ("beauty", 5.0, 80.0),
    ("sports", 12.0, 200.0),
    ("toys", 8.0, 90.0),
)
SEGMENTS = ("new", "bronze", "silver", "gold", "platinum")
SEGMENT_WEIGHTS = (0.25, 0.3, 0.25, 0.15, 0.05)
CITIES = ("Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt", "Stuttgart", "Leipzig", "Vienna", "Zurich")
LEAD_STATUSES = ("lead", "offer_created", "sale")
FIRST_NAMES = (
    "anna", "ben", "clara", "david", "emma", "felix", "greta", "hannah", "jonas", "lena", "lukas",
    "maria", "max", "mia", "noah", "paul", "sophie", "tim", "julia", "leon", "sara", "elias",
)
LAST_NAMES = (
    "mueller", "schmidt", "schneider", "fischer", "weber", "meyer", "wagner", "becker", "schulz",
    "hoffmann", "koch", "richter", "klein", "wolf", "neumann", "braun", "zimmermann", "krueger",
)
DOMAINS = ("example.com", "mail.example", "post.example.org", "web.example.net")
NEWSLETTERS = ("weekly-picks", "new-in", "black-week", "winter-sale", "gift-guide", "last-chance")
CAMPAIGNS = (  # (source, medium, names, referrer)
    ("google", "cpc", ("brand-search", "generic-shoes", "generic-electronics", "black-week-sea"), "https://www.google.com/"),
    ("facebook", "social", ("black-week-carousel", "retargeting", "winter-lookbook"), "https://www.facebook.com/"),
    ("instagram", "social", ("influencer-nov", "stories-sale"), "https://www.instagram.com/"),
    ("partner", "affiliate", ("cashback", "deals-blog"), "https://deals.example.org/"),
)
HOSTS = {"phone": "https://m.shop.example", "laptop": "https://www.shop.example"}


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
        parse_start(self.start)

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
        per_customer = _RECORDS_PER_CUSTOMER_DAY * self.period_days + _RECORDS_PER_CUSTOMER
        return max(3, round(self.events / per_customer))

    @property
    def start_ms(self) -> int:
        return parse_start(self.start)


def parse_start(value: str) -> int:
    """`2026-11-01T08:00:00Z` (any ISO-8601 time with a zone) -> epoch ms."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    if moment.tzinfo is None:
        raise ValueError(f"start {value!r} needs a zone (Z or +hh:mm)")
    return (moment - _EPOCH) // timedelta(milliseconds=1)


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


class _Formatter:
    """Epoch ms -> `2026-11-01T08:00:00.000Z`, fast: the date part is cached per day."""

    def __init__(self) -> None:
        self._days: dict[int, str] = {}

    def __call__(self, ms: int) -> str:
        day, rest = divmod(ms, DAY)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = self._days[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
        sec, milli = divmod(rest, 1000)
        minute, sec = divmod(sec, 60)
        hour, minute = divmod(minute, 60)
        return f"{prefix}{hour:02d}:{minute:02d}:{sec:02d}.{milli:03d}Z"


class _Actor:
    """A customer (cid set) or an anonymous visitor, with what the simulation needs of it."""

    __slots__ = (
        "cid", "key", "email", "key_change", "devices", "dev_cum", "shared", "consent", "lead",
        "attrs", "created", "erased", "cart", "cart_since",
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
        self.cart: dict[str, list] = {}  # product id -> [quantity, unit price], in order added
        self.cart_since = 0


# heap entry kinds
_PLAN, _ARRIVAL, _UPDATE, _CRM, _CLICK, _DUP = range(6)


class _Shop:
    def __init__(self, spec: ShopSpec) -> None:
        self.spec = spec
        self.rng = rng = random.Random(spec.seed)
        self.start = spec.start_ms
        self.period = int(spec.period_days * DAY)
        self.emails = spec.emails
        self.heap: list[tuple] = []
        self.seq = itertools.count()
        self.orders = itertools.count(1)
        self._device_ids: set[str] = set()  # only asked for membership, never iterated
        self.to_erase: list[str] = []
        self.fmt = _Formatter()
        self._make_catalog(rng, max(60, min(3000, spec.events // 300)))
        self.customers = [self._make_customer(i) for i in range(1, spec.customer_count + 1)]
        self._share_devices()
        self._plan_erasures()
        for a in self.customers:
            self._push(a.created, 1, _CRM, a, self._initial_upsert(a))
            self._push(a.created + int(rng.expovariate(1 / UPDATE_MEAN_GAP)), 1, _UPDATE, a, None)
            if a.created > self.start:  # a sign-up: it browsed before joining
                first = a.created - int(rng.random() * 2 * DAY)
            else:
                first = self.start + int(rng.random() * 0.4 * self.period)
            self._push(max(first, self.start) - LOOKAHEAD, 0, _PLAN, a, None)
        anon_total = ANON_PER_CUSTOMER * max(len(self.customers), 3)
        self.anon_gap = self.period / anon_total  # mean time between new anonymous visitors
        self._push(self.start - LOOKAHEAD + int(rng.expovariate(1 / self.anon_gap)), 0, _ARRIVAL, None, None)

    # --- population ---------------------------------------------------------------------------

    def _make_catalog(self, rng: random.Random, n: int) -> None:
        self.products: list[tuple[str, str, float]] = []
        self.cat_products: list[list[int]] = [[] for _ in CATEGORIES]
        weights = []
        for i in range(n):
            c = rng.randrange(len(CATEGORIES))
            name, lo, hi = CATEGORIES[c]
            price = round(math.exp(rng.uniform(math.log(lo), math.log(hi)))) - 0.01
            self.products.append((f"p-{i + 1:05d}", name, max(price, 0.99)))
            self.cat_products[c].append(i)
            weights.append(1.0 / (i + 8) ** 0.9)  # a long tail of popularity
        self.cum = list(itertools.accumulate(weights))
        self.cat_cum = [list(itertools.accumulate(weights[i] for i in ids)) for ids in self.cat_products]
        self.cat_index = {name: c for c, (name, _, _) in enumerate(CATEGORIES)}

    def _new_device(self, a: _Actor, kind: str) -> str:
        rng = self.rng
        while True:
            dev = f"d-{rng.getrandbits(48):012x}"
            if dev not in self._device_ids:
                self._device_ids.add(dev)
                a.devices.append((dev, kind))
                return dev

    def _set_device_weights(self, a: _Actor) -> None:
        n = len(a.devices)
        weights = [0.6] + [0.4 / (n - 1)] * (n - 1) if n > 1 else [1.0]
        a.dev_cum = list(itertools.accumulate(weights))

    def _make_customer(self, i: int) -> _Actor:
        rng = self.rng
        r = rng.random
        a = _Actor()
        a.cid = f"C{i:06d}"
        if r() < KEYED:
            if r() < KEY_FROM_EMAIL:
                a.email = self._email(i)
                a.key = hash_email(a.email)
            else:
                a.key = hashlib.sha256(f"account:{a.cid}".encode()).hexdigest()
        x = r()
        a.consent = True if x < 0.80 else False if x < 0.95 else None
        x = r()
        a.lead = "lead" if x < 0.35 else "offer_created" if x < 0.55 else "sale"
        seg = rng.choices(SEGMENTS, SEGMENT_WEIGHTS)[0]
        a.attrs = {"segment": seg, "age": float(rng.randint(18, 79)), "city": rng.choice(CITIES)}
        if r() < LATE_CUSTOMERS:
            a.created = self.start + int(rng.uniform(0.05, 0.9) * self.period)
        else:
            a.created = self.start + int(r() * 2 * HOUR)
        x = r()
        n = 1 if x < 0.5 else 2 if x < 0.85 else 3
        first = "phone" if r() < 0.55 else "laptop"
        for j in range(n):
            self._new_device(a, first if j == 0 else ("laptop" if first == "phone" else "phone") if j == 1 else "phone")
        self._set_device_weights(a)
        if a.email is not None and r() < MOVING:
            new = self._email(i, moved=True)
            a.key_change = (new, hash_email(new))
        return a

    def _email(self, i: int, moved: bool = False) -> str:
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        domain = rng.choice(DOMAINS)
        local = f"{first}.{last}{i}" if not moved else f"{first[0]}{last}.{i}"
        if rng.random() < 0.3:  # as typed: capitals, which the hash ignores
            local = ".".join(part.capitalize() for part in local.split("."))
        return f"{local}@{domain}"

    def _share_devices(self) -> None:
        """A couple of family laptops: the second customer uses the first one's laptop too (as
        the device both use most), and both log in whenever they use it."""
        rng = self.rng
        keyed = [a for a in self.customers if a.key is not None and a.created < self.start + 2 * HOUR]
        pairs = 2 if len(keyed) >= 6 else 1 if len(keyed) >= 2 else 0
        pairs = max(pairs, len(self.customers) // 2000)
        picked = rng.sample(keyed, 2 * pairs) if pairs else []
        for owner, guest in zip(picked[::2], picked[1::2]):
            laptops = [d for d, kind in owner.devices if kind == "laptop"]
            dev = laptops[0] if laptops else self._new_device(owner, "laptop")
            owner.devices.remove((dev, "laptop"))
            owner.devices.insert(0, (dev, "laptop"))  # the family laptop is what both use most
            self._set_device_weights(owner)
            guest.devices.insert(0, (dev, "laptop"))
            self._set_device_weights(guest)
            owner.shared = owner.shared | {dev}
            guest.shared = guest.shared | {dev}

    def _plan_erasures(self) -> None:
        rng = self.rng
        candidates = [a for a in self.customers if not a.shared and a.created < self.start + 2 * HOUR]
        n = min(len(candidates), max(1, round(len(self.customers) * ERASE_PER_CUSTOMER))) if len(self.customers) >= 5 else 0
        for a in rng.sample(candidates, n):
            self.to_erase.append(a.cid)
            ts = self.start + int(rng.uniform(0.3, 0.7) * self.period)
            self._push(ts, 1, _CRM, a, {"customer_id": a.cid, "op": "erase"})

    def population(self) -> list[Customer]:
        out = []
        for a in self.customers:
            keys = tuple(k for k in (a.key, a.key_change and a.key_change[1]) if k)
            emails = tuple(e for e in (a.email, a.key_change and a.key_change[0]) if e)
            out.append(Customer(a.cid, keys, emails, tuple(d for d, _ in a.devices), a.cid in self.to_erase))
        return out

    # --- CRM --------------------------------------------------------------------------------

    def _identity(self, a: _Actor, body: dict) -> None:
        """customer_key, or now and then the clear e-mail it is the hash of."""
        rng = self.rng
        if a.email is not None and rng.random() < EMAIL_SHARE:
            email = a.email
            x = rng.random()
            if x < 0.25:
                email = email.upper()
            elif x < 0.45:
                email = f"  {email} "
            if self.emails:
                body["email"] = email
                return
        body["customer_key"] = a.key

    def _initial_upsert(self, a: _Actor) -> dict:
        body: dict[str, Any] = {"customer_id": a.cid, "op": "upsert"}
        if a.key is not None:
            self._identity(a, body)
        body["attributes"] = dict(a.attrs)
        body["lead_status"] = a.lead
        if a.consent is not None:
            body["marketing_consent"] = a.consent
        return body

    def _update(self, a: _Actor) -> dict:
        """The next CRM change of a customer: lead status, consent, attributes or e-mail."""
        rng = self.rng
        r = rng.random
        body: dict[str, Any] = {"customer_id": a.cid, "op": "upsert"}
        x = r()
        if a.key_change is not None and x < KEY_CHANGE:
            a.email, a.key = a.key_change
            a.key_change = None
            body["customer_key"] = a.key
            body["attributes"] = {"email_domain": a.email.rsplit("@", 1)[1]}
            return body
        if x < 0.35 and a.lead != "sale":
            a.lead = LEAD_STATUSES[LEAD_STATUSES.index(a.lead) + 1]
            body["lead_status"] = a.lead
        elif x < 0.55:
            a.consent = not a.consent if a.consent is not None else r() < 0.7
            body["marketing_consent"] = a.consent
        else:
            y = r()
            if y < 0.4:
                seg = rng.choices(SEGMENTS, SEGMENT_WEIGHTS)[0]
                a.attrs["segment"] = seg
                body["attributes"] = {"segment": seg}
            elif y < 0.6:
                a.attrs["age"] += 1.0
                body["attributes"] = {"age": a.attrs["age"]}
            elif y < 0.8:
                a.attrs["city"] = rng.choice(CITIES)
                body["attributes"] = {"city": a.attrs["city"]}
            else:
                body["attributes"] = {"clv": round(rng.uniform(20, 4000), 2), "segment": a.attrs["segment"]}
        if a.key is not None and r() < 0.2:  # a full sync now and then repeats the key
            self._identity(a, body)
        return body

    # --- visits -----------------------------------------------------------------------------

    def _push(self, ts: int, order: int, kind: int, a: Any, body: Any) -> None:
        heapq.heappush(self.heap, (ts, order, next(self.seq), kind, a, body))

    def _product(self, cat: int | None) -> int:
        r = self.rng.random
        if cat is None:
            return bisect.bisect_right(self.cum, r() * self.cum[-1])
        cum = self.cat_cum[cat]
        if not cum:
            return bisect.bisect_right(self.cum, r() * self.cum[-1])
        return self.cat_products[cat][bisect.bisect_right(cum, r() * cum[-1])]

    def _visit(self, a: _Actor, t0: int) -> int:
        """Plan one visit starting at `t0`: push its clicks (and a CRM order import if it buys);
        returns its last click's time."""
        rng = self.rng
        r = rng.random
        lognorm = rng.lognormvariate
        clicks: list[tuple[int, dict]] = []
        dev, kind = a.devices[bisect.bisect_right(a.dev_cum, r() * a.dev_cum[-1])] if len(a.devices) > 1 else a.devices[0]
        host = HOSTS[kind]
        known = a.cid is not None and a.key is not None and not a.erased
        t = t0

        def step() -> int:  # seconds to minutes between clicks
            return int(min(max(lognorm(3.0, 0.9), 2.0), 900.0) * 1000) + int(r() * 1000)

        # landing
        land: dict[str, Any] = {"device_id": dev}
        cat = rng.randrange(len(CATEGORIES))
        newsletter = known and a.consent is True and t0 >= a.created and r() < NEWSLETTER
        campaign = None
        referrer = None
        if newsletter:
            week = (t0 - self.start) // WEEK
            campaign = {"source": "newsletter", "medium": "email", "name": f"{NEWSLETTERS[week % len(NEWSLETTERS)]}-{week + 1:02d}"}
        elif r() < CAMPAIGN:
            source, medium, names, referrer = CAMPAIGNS[int(r() * len(CAMPAIGNS))]
            campaign = {"source": source, "medium": medium}
            if r() < 0.92:
                campaign["name"] = names[int(r() * len(names))]
        elif r() < 0.4:
            referrer = "https://www.google.com/"
        utm = ""
        if campaign is not None:
            utm = f"?utm_source={campaign['source']}&utm_medium={campaign['medium']}"
            if "name" in campaign:
                utm += f"&utm_campaign={campaign['name']}"
        if r() < 0.7 or newsletter:
            land["type"] = "page_view"
            if newsletter:
                self._identity(a, land)
            if r() < 0.5:
                land["url"] = f"{host}/{utm}"
                land["page_category"] = "home"
            else:
                land["url"] = f"{host}/c/{CATEGORIES[cat][0]}{utm}"
                land["page_category"] = CATEGORIES[cat][0]
        else:
            p = self._product(cat)
            pid, pcat, price = self.products[p]
            land.update(type="product_view", url=f"{host}/p/{pid}{utm}", page_category=pcat, product_id=pid, price=price)
        if referrer is not None:
            land["referrer"] = referrer
        if campaign is not None:
            land["campaign"] = campaign
        clicks.append((t, land))

        must_login = dev in a.shared and known
        login = known and not newsletter and (must_login or r() < LOGIN)
        logged_in = False
        if login and (must_login or r() < 0.6):
            t += step()
            body = {"device_id": dev, "type": "login"}
            self._identity(a, body)
            body["url"] = f"{host}/account/login"
            clicks.append((t, body))
            logged_in = True

        # browsing, with the cart filling (and now and then emptying)
        cart = a.cart
        buyer = a.cid is not None
        p_add = 0.09 if buyer else 0.05
        carried = bool(cart)
        if carried and r() < 0.45:
            n_views = int(r() * 3)  # came back for the cart
        else:
            n_views = min(1 + int(rng.expovariate(1 / 3.2)), 30)
        for _ in range(n_views):
            t += step()
            x = r()
            if x < 0.74:
                p = self._product(cat if r() < 0.75 else None)
                pid, pcat, price = self.products[p]
                cat = self.cat_index[pcat]
                body = {"device_id": dev, "type": "product_view", "url": f"{host}/p/{pid}", "page_category": pcat, "product_id": pid, "price": price}
                if r() < BLOCKED_KEY * 2:
                    body["customer_key"] = BLOCKED_VALUES[int(r() * len(BLOCKED_VALUES))]
                clicks.append((t, body))
                if r() < p_add:
                    t += step()
                    qty = 2 if r() < 0.1 else 1
                    body = {"device_id": dev, "type": "add_to_cart", "url": f"{host}/p/{pid}", "page_category": pcat, "product_id": pid, "price": price}
                    if qty != 1:
                        body["quantity"] = qty
                    clicks.append((t, body))
                    if not cart:
                        a.cart_since = t
                    held = cart.get(pid)
                    if held is None:
                        cart[pid] = [qty, price]
                    else:
                        held[0] += qty
            elif x < 0.8 and cart:
                pid = next(iter(cart)) if r() < 0.5 else list(cart)[-1]  # insertion order: deterministic
                qty, price = cart.pop(pid)
                body = {"device_id": dev, "type": "remove_from_cart", "url": f"{host}/cart", "page_category": "cart", "product_id": pid}
                if qty != 1:
                    body["quantity"] = qty
                clicks.append((t, body))
            else:
                if r() < 0.3:
                    cat = rng.randrange(len(CATEGORIES))
                body = {"device_id": dev, "type": "page_view", "url": f"{host}/c/{CATEGORIES[cat][0]}", "page_category": CATEGORIES[cat][0]}
                if r() < BLOCKED_KEY * 4:
                    body["customer_key"] = BLOCKED_VALUES[int(r() * len(BLOCKED_VALUES))]
                clicks.append((t, body))

        if login and not logged_in:
            t += step()
            body = {"device_id": dev, "type": "login"}
            self._identity(a, body)
            body["url"] = f"{host}/account/login"
            clicks.append((t, body))
            logged_in = True

        # checkout: a cart carried over from an earlier visit (maybe another device) is more likely bought
        if cart:
            p_buy = (0.55 if carried else 0.4) if buyer else (0.3 if carried else 0.15)
            if r() < p_buy:
                t += step()
                body = {"device_id": dev, "type": "checkout", "url": f"{host}/checkout", "page_category": "checkout"}
                if logged_in:
                    self._identity(a, body)
                clicks.append((t, body))
                t += int(rng.uniform(30, 300) * 1000)
                order_id = f"O{next(self.orders):07d}"
                revenue = round(sum(q * p for q, p in cart.values()), 2)
                cart.clear()
                clicks.append((t, {"device_id": dev, "type": "purchase", "url": f"{host}/checkout/done", "page_category": "checkout", "order_id": order_id, "revenue": revenue}))
                if a.cid is not None and not a.erased:
                    if r() < CRM_FIRST:  # (never before the shop opens)
                        crm_ts = max(t - int(rng.uniform(1, 59) * MINUTE), self.start)
                    else:
                        crm_ts = t + int(min(max(lognorm(math.log(45 * MINUTE), 1.2), 2 * MINUTE), DAY))
                    body = {"customer_id": a.cid, "op": "upsert", "order_id": order_id}
                    if a.lead != "sale":
                        a.lead = "sale"
                        body["lead_status"] = "sale"
                    self._push(crm_ts, 1, _CRM, a, body)
        if logged_in and r() < 0.12:
            t += step()
            clicks.append((t, {"device_id": dev, "type": "logout", "url": f"{host}/account/logout"}))

        push = self._push
        for ts, body in clicks:
            push(ts, 2, _CLICK, None, body)
        return t

    def _next_gap(self, a: _Actor) -> int:
        """Hours, days or weeks until the actor's next visit."""
        rng = self.rng
        x = rng.random()
        if a.cart and x < 0.4:
            return int(min(max(rng.lognormvariate(math.log(5 * HOUR), 0.9), 40 * MINUTE), 2 * DAY))
        x = rng.random()
        if x < 0.22:
            return int(min(max(rng.lognormvariate(math.log(4 * HOUR), 0.8), 35 * MINUTE), 20 * HOUR))
        if x < 0.70:
            return int(rng.uniform(1, 6.8) * DAY)
        return int(rng.uniform(7, 24) * DAY)

    # --- the stream ---------------------------------------------------------------------------

    def run(self) -> Iterator[tuple[str, dict]]:
        total = self.spec.events
        if total <= 0:
            return
        heap = self.heap
        pop = heapq.heappop
        push = self._push
        fmt = self.fmt
        r = self.rng.random
        n_events = n_changes = emitted = 0
        while heap:
            ts, order, _, kind, a, body = pop(heap)
            if kind == _CLICK:
                n_events += 1
                rec = {"event_id": f"e-{n_events:08d}", "ts": fmt(ts)}
                rec.update(body)
                if r() < DUPLICATE_CLICK:
                    self._duplicate(ts, 2, rec)
                yield CLICKSTREAM, rec
            elif kind == _CRM or kind == _UPDATE:
                if a.erased:
                    continue  # the CRM forgot this customer
                if kind == _UPDATE:
                    body = self._update(a)
                    push(ts + int(self.rng.expovariate(1 / UPDATE_MEAN_GAP)) + MINUTE, 1, _UPDATE, a, None)
                elif body["op"] == "erase":
                    a.erased = True
                    a.cart = {}
                n_changes += 1
                rec = {"change_id": f"c-{n_changes:08d}", "ts": fmt(ts)}
                rec.update(body)
                if r() < DUPLICATE_CHANGE:
                    self._duplicate(ts, 1, rec)
                yield CRM_CHANGES, rec
            elif kind == _DUP:
                yield (CLICKSTREAM if order == 2 else CRM_CHANGES), body
            elif kind == _PLAN:
                start = ts + LOOKAHEAD
                end = self._visit(a, start)
                if a.cid is not None or r() < ANON_RETURN:
                    push(end + self._next_gap(a) - LOOKAHEAD, 0, _PLAN, a, None)
                continue
            else:  # _ARRIVAL: a new anonymous visitor
                v = _Actor()
                self._new_device(v, "phone" if r() < 0.6 else "laptop")
                v.dev_cum = [1.0]
                push(ts, 0, _PLAN, v, None)
                push(ts + int(self.rng.expovariate(1 / self.anon_gap)), 0, _ARRIVAL, None, None)
                continue
            emitted += 1
            if emitted >= total:
                return

    def _duplicate(self, ts: int, order: int, rec: dict) -> None:
        """The same record again (same id): at once, or re-sent seconds later. Its id is older
        than any other id given out at its ts from now on, so it goes first among them (negative
        seq), which keeps the stream in contract order (at equal ts, by id)."""
        rng = self.rng
        dup = dict(rec)
        if rng.random() >= 0.3:
            ts += int(rng.uniform(0.5, 20) * 1000)
            dup["ts"] = self.fmt(ts)
        heapq.heappush(self.heap, (ts, order, next(self.seq) - (1 << 62), _DUP, None, dup))


# --- public API -------------------------------------------------------------------------------


def generate(spec: ShopSpec = ShopSpec()) -> Iterator[tuple[str, dict]]:
    """Exactly `spec.events` `(role, record)` pairs in time order (contract order at equal ts),
    every record valid for its topic; streamed, deterministic for a given spec."""
    return _Shop(spec).run()


def records(spec: ShopSpec, role: str) -> Iterator[dict]:
    """The records of one role (`"clickstream"` or `"crm_changes"`), in order."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return (rec for rl, rec in generate(spec) if rl == role)


def population(spec: ShopSpec) -> list[Customer]:
    """The CRM customers behind `generate(spec)` (ground truth for tests)."""
    return _Shop(spec).population()


BAD_KINDS = (
    ("clickstream", "missing event_id"),
    ("clickstream", "missing ts"),
    ("clickstream", "missing device_id"),
    ("clickstream", "unknown type"),
    ("clickstream", "ts before 1990"),
    ("clickstream", "ts after 2100"),
    ("clickstream", "purchase without order_id"),
    ("clickstream", "product_view without product_id"),
    ("clickstream", "blocked device_id"),
    ("clickstream", "ts without a zone"),
    ("clickstream", "price as text"),
    ("clickstream", "fractional quantity"),
    ("clickstream", "unknown field"),
    ("clickstream", "ts in epoch seconds"),
    ("crm_changes", "missing customer_id"),
    ("crm_changes", "unknown op"),
    ("crm_changes", "consent as text"),
    ("crm_changes", "attribute value a list"),
    ("crm_changes", "missing change_id"),
    ("crm_changes", "ts after 2100"),
)


def bad_records(spec: ShopSpec, n: int) -> list[tuple[str, dict]]:
    """`n` records that break the contract, cycling through `BAD_KINDS` (record `i` is of kind
    `BAD_KINDS[i % len(BAD_KINDS)]`); ids `e-bad-<i>` / `c-bad-<i>`, otherwise plausible values."""
    rng = random.Random(f"bad:{spec.seed}")
    fmt = _Formatter()
    start = spec.start_ms
    period = int(spec.period_days * DAY)
    out: list[tuple[str, dict]] = []
    for i in range(n):
        role, what = BAD_KINDS[i % len(BAD_KINDS)]
        ts = fmt(start + int(rng.random() * period))
        if role == CLICKSTREAM:
            rec: dict[str, Any] = {"event_id": f"e-bad-{i}", "ts": ts, "device_id": f"d-{rng.getrandbits(48):012x}", "type": "page_view"}
            if what == "missing event_id":
                del rec["event_id"]
            elif what == "missing ts":
                del rec["ts"]
            elif what == "missing device_id":
                del rec["device_id"]
            elif what == "unknown type":
                rec["type"] = "hover"
            elif what == "ts before 1990":
                rec["ts"] = "1970-01-01T00:00:00.000Z"
            elif what == "ts after 2100":
                rec["ts"] = "2150-06-01T12:00:00.000Z"
            elif what == "purchase without order_id":
                rec.update(type="purchase", revenue=59.99)
            elif what == "product_view without product_id":
                rec.update(type="product_view", page_category="shoes", price=59.99)
            elif what == "blocked device_id":
                rec["device_id"] = "unknown"
            elif what == "ts without a zone":
                rec["ts"] = ts[:-1]
            elif what == "price as text":
                rec.update(type="product_view", product_id="p-00001", price="59.99")
            elif what == "fractional quantity":
                rec.update(type="add_to_cart", product_id="p-00001", quantity=1.5)
            elif what == "unknown field":
                rec["user_agent"] = "Mozilla/5.0"
            elif what == "ts in epoch seconds":
                rec["ts"] = start // 1000
        else:
            rec = {"change_id": f"c-bad-{i}", "ts": ts, "customer_id": f"C9{rng.randrange(100000):05d}", "op": "upsert"}
            if what == "missing customer_id":
                del rec["customer_id"]
            elif what == "unknown op":
                rec["op"] = "delete"
            elif what == "consent as text":
                rec["marketing_consent"] = "yes"
            elif what == "attribute value a list":
                rec["attributes"] = {"segment": ["gold", "silver"]}
            elif what == "missing change_id":
                del rec["change_id"]
            elif what == "ts after 2100":
                rec["ts"] = "2101-01-01T00:00:00.000Z"
        out.append((role, rec))
    return out


def _dumps(rec: dict) -> str:
    return json.dumps(rec, separators=(",", ":"), ensure_ascii=False)


def write_jsonl(spec: ShopSpec, clickstream_path: str | Path, crm_path: str | Path) -> dict[str, int]:
    """Write the shop as two JSONL files (what `profilestream produce` reads). With `spec.bad`,
    that many `bad_records` are spread evenly through the files. Returns the line counts:
    `{"clickstream": .., "crm_changes": .., "bad": ..}` (`bad` lines are included in the first two)."""
    bad = bad_records(spec, spec.bad)
    # bad record i goes in after the (i+1) * events / (bad+1)-th good record
    at = [((i + 1) * spec.events) // (len(bad) + 1) for i in range(len(bad))]
    counts = {CLICKSTREAM: 0, CRM_CHANGES: 0, "bad": len(bad)}
    with open(clickstream_path, "w", encoding="utf-8") as clicks, open(crm_path, "w", encoding="utf-8") as crm:
        files = {CLICKSTREAM: clicks, CRM_CHANGES: crm}
        j = 0
        n = 0
        while j < len(bad) and at[j] <= n:
            role, rec = bad[j]
            files[role].write(_dumps(rec) + "\n")
            counts[role] += 1
            j += 1
        for role, rec in generate(spec):
            files[role].write(_dumps(rec) + "\n")
            counts[role] += 1
            n += 1
            while j < len(bad) and at[j] <= n:
                role, rec = bad[j]
                files[role].write(_dumps(rec) + "\n")
                counts[role] += 1
                j += 1
        for role, rec in bad[j:]:
            files[role].write(_dumps(rec) + "\n")
            counts[role] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    """`python -m profilestream.devtools.sample [--events N] [--seed S] [--out DIR]`: write
    DIR/clickstream.jsonl and DIR/crm-changes.jsonl, or without --out just time the generator."""
    parser = argparse.ArgumentParser(prog="python -m profilestream.devtools.sample", description=main.__doc__)
    parser.add_argument("--events", type=int, default=ShopSpec.events)
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=ShopSpec.seed)
    parser.add_argument("--days", type=float, default=None)
    parser.add_argument("--no-emails", action="store_true")
    parser.add_argument("--bad", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    spec = ShopSpec(events=args.events, customers=args.customers, seed=args.seed, days=args.days, emails=not args.no_emails, bad=args.bad)
    began = time.perf_counter()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        counts = write_jsonl(spec, args.out / "clickstream.jsonl", args.out / "crm-changes.jsonl")
    else:
        counts = {CLICKSTREAM: 0, CRM_CHANGES: 0}
        for role, _ in generate(spec):
            counts[role] += 1
    took = time.perf_counter() - began
    print(json.dumps({**counts, "customers": spec.customer_count, "days": round(spec.period_days, 2), "seconds": round(took, 2), "events_per_second": round(spec.events / took) if took else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
