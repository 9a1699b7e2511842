"""The unified profile: the single customer view of one person, and how events change it.

A profile is what its shard holds (`shard.ProfileShard`): counters, cart, campaigns, viewed
products and CRM attributes, built up from the events identity resolution gives it. Its
identifiers (`customer_id`, `customer_key`, `device_ids`) are a copy of what identity decided
(`person.Person` holds the originals; merge protection lives in `identity`): they are written into
the record, never decided here. This module only knows how a click or a CRM change updates the
record and how two records add up when one is merged into another.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .bounds import add_double
from .cart import Cart
from .compact import pickled_as_fields
from .events import Campaign, Click, CrmChange
from .scores import DEFAULT_SCORER

RECENT_PRODUCTS = 20


@pickled_as_fields
@dataclass(slots=True)
class CampaignTouch:
    first_ts: int
    last_ts: int


@pickled_as_fields
@dataclass(slots=True)
class Profile:
    profile_id: str
    customer_id: str | None = None
    customer_key: str | None = None
    device_ids: set[str] = field(default_factory=set)
    first_seen: int | None = None
    last_seen: int | None = None
    visits: int = 0
    page_views: int = 0
    product_views: int = 0
    orders: int = 0
    revenue: float = 0.0
    last_order_ts: int | None = None
    first_order_ts: int | None = None  # for the BG/NBD model's recency and age (scores.py)
    viewed: dict[str, int] = field(default_factory=dict)  # product_id -> last view ts
    cart: Cart = field(default_factory=Cart)
    campaigns: dict[tuple[str | None, ...], CampaignTouch] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    lead_status: str | None = None
    marketing_consent: bool | None = None
    updated_at: int = 0

    # --- identifiers (identity's decisions, copied) --------------------------------------------

    def set_ids(self, customer_id: str | None, customer_key: str | None, device_ids: Iterable[str]) -> None:
        self.customer_id = customer_id
        self.customer_key = customer_key
        self.device_ids = set(device_ids)

    # --- clicks -------------------------------------------------------------------------------

    def seen(self, ts: int) -> None:
        """A click at `ts`: the first and last time the person was seen."""
        self.first_seen = ts if self.first_seen is None else min(self.first_seen, ts)
        self.last_seen = ts if self.last_seen is None else max(self.last_seen, ts)

    def count_click(self, click: Click) -> bool:
        """The counters a click moves (not the cart: that carries trigger state, see engine).
        True when the revenue sum had to saturate (bounds.py)."""
        clamped = False
        kind = click.type
        if kind == "page_view":
            self.page_views += 1
        elif kind == "product_view":
            self.product_views += 1
            if click.product_id is not None:
                self.view(click.product_id, click.ts)
        elif kind == "purchase":
            self.orders += 1
            if click.revenue:
                self.revenue, clamped = add_double(self.revenue, click.revenue)
            if self.last_order_ts is None or click.ts > self.last_order_ts:
                self.last_order_ts = click.ts
            if self.first_order_ts is None or click.ts < self.first_order_ts:
                self.first_order_ts = click.ts
        if click.campaign is not None:
            self.touch_campaign(click.campaign, click.ts)
        self.updated_at = max(self.updated_at, click.ts)
        return clamped

    def view(self, product_id: str, ts: int) -> None:
        previous = self.viewed.get(product_id)
        if previous is None or ts >= previous:
            self.viewed[product_id] = ts
        if len(self.viewed) > RECENT_PRODUCTS:
            oldest = min(self.viewed, key=lambda p: (self.viewed[p], p))
            del self.viewed[oldest]

    def touch_campaign(self, campaign: Campaign, ts: int) -> None:
        key = (campaign.source, campaign.medium, campaign.name)
        touch = self.campaigns.get(key)
        if touch is None:
            self.campaigns[key] = CampaignTouch(ts, ts)
        else:
            touch.first_ts = min(touch.first_ts, ts)
            touch.last_ts = max(touch.last_ts, ts)

    # --- CRM ----------------------------------------------------------------------------------

    def apply_crm(self, change: CrmChange) -> None:
        """An upsert sets the attributes it names, lead status and consent where given."""
        if change.attributes:
            self.attributes.update(change.attributes)
        if change.lead_status is not None:
            self.lead_status = change.lead_status
        if change.marketing_consent is not None:
            self.marketing_consent = change.marketing_consent
        self.updated_at = max(self.updated_at, change.ts)

    # --- merging ------------------------------------------------------------------------------

    def absorb(self, other: Profile) -> tuple[str, ...]:
        """Everything `other` has belongs to this profile from now on (identifiers are decided by
        `identity`, which sends them after the merge). Returns the names of the sums that had to
        saturate (bounds.py): "revenue", "quantity" (once per cart line)."""
        self.device_ids |= other.device_ids
        if other.first_seen is not None:
            self.first_seen = other.first_seen if self.first_seen is None else min(self.first_seen, other.first_seen)
        if other.last_seen is not None:
            self.last_seen = other.last_seen if self.last_seen is None else max(self.last_seen, other.last_seen)
        self.visits += other.visits
        self.page_views += other.page_views
        self.product_views += other.product_views
        self.orders += other.orders
        self.revenue, revenue_clamped = add_double(self.revenue, other.revenue)
        if other.last_order_ts is not None and (self.last_order_ts is None or other.last_order_ts > self.last_order_ts):
            self.last_order_ts = other.last_order_ts
        if other.first_order_ts is not None and (
            self.first_order_ts is None or other.first_order_ts < self.first_order_ts
        ):
            self.first_order_ts = other.first_order_ts
        for product_id, ts in other.viewed.items():
            self.view(product_id, ts)
        for key, touch in other.campaigns.items():
            mine = self.campaigns.get(key)
            if mine is None:
                self.campaigns[key] = CampaignTouch(touch.first_ts, touch.last_ts)
            else:
                mine.first_ts = min(mine.first_ts, touch.first_ts)
                mine.last_ts = max(mine.last_ts, touch.last_ts)
        for name, value in other.attributes.items():
            self.attributes.setdefault(name, value)
        if self.lead_status is None:
            self.lead_status = other.lead_status
        if self.marketing_consent is None:
            self.marketing_consent = other.marketing_consent
        lines_clamped = self.cart.absorb(other.cart)
        self.updated_at = max(self.updated_at, other.updated_at)
        return ("revenue",) * revenue_clamped + ("quantity",) * lines_clamped

    # --- output -------------------------------------------------------------------------------

    def viewed_products(self) -> list[str]:
        viewed = self.viewed
        if len(viewed) < 2:  # most profiles (built for every record: spare the sort)
            return list(viewed)
        return [p for p, _ in sorted(viewed.items(), key=_newest_first)]

    def campaign_list(self) -> list[dict[str, Any]]:
        touches = list(self.campaigns.items())
        if len(touches) > 1:
            touches.sort(key=_first_touch)
        return [
            {"source": k[0], "medium": k[1], "name": k[2], "first_ts": t.first_ts, "last_ts": t.last_ts}
            for k, t in touches
        ]

    def record(self, scores: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `profiles` topic value (docs/topics.md "profiles"), with the score fields of
        `scores.Scorer.score` (computed with the default settings when not given)."""
        if scores is None:
            scores = DEFAULT_SCORER.score(self)
        return {
            "profile_id": self.profile_id,
            "customer_id": self.customer_id,
            "customer_key": self.customer_key,
            "device_ids": sorted(self.device_ids),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "visits": self.visits,
            "page_views": self.page_views,
            "product_views": self.product_views,
            "orders": self.orders,
            "revenue": self.revenue,
            "last_order_ts": self.last_order_ts,
            "first_order_ts": self.first_order_ts,
            "viewed_products": self.viewed_products(),
            "cart": self.cart.snapshot(),
            "campaigns": self.campaign_list(),
            "attributes": dict(sorted(self.attributes.items())),
            "lead_status": self.lead_status,
            "marketing_consent": self.marketing_consent,
            "updated_at": self.updated_at,
            **scores,
        }

    def crm_feed_record(self, scores: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `crm-feed` value (see `crm_feed_of`), scores as in `record`."""
        return crm_feed_of(self.record(scores))


CRM_FEED_FIELDS = (
    "customer_id",
    "customer_key",
    "viewed_products",
    "campaigns",
    "visits",
    "page_views",
    "orders",
    "revenue",
    "updated_at",
    "rfm",
    "rfe",
    "p_alive",
    "expected_purchases_30d",
)


def crm_feed_of(record: dict[str, Any]) -> dict[str, Any]:
    """The `crm-feed` value of a profile record: what the person did on the site, for the CRM.
    `last_visit` is the time of the person's last click. Taken from the profile's record, so the
    two are built once and always agree."""
    feed = {name: record[name] for name in CRM_FEED_FIELDS}
    feed["last_visit"] = record["last_seen"]
    return feed


def _newest_first(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _first_touch(item: tuple[tuple[str | None, ...], CampaignTouch]) -> tuple[Any, ...]:
    """Campaigns by their first touch, then by (source, medium, name) with a missing part first."""
    (source, medium, name), touch = item
    return touch.first_ts, source or "", medium or "", name or ""


__all__ = ["CRM_FEED_FIELDS", "RECENT_PRODUCTS", "CampaignTouch", "Profile", "crm_feed_of"]
