"""Shared test helpers, moved here from tests/integration/test_cli_io.py
(no test module imports another test module)."""

from __future__ import annotations

T = "2026-11-20T10:15:00.123Z"
T2 = "2026-11-21T08:00:00.000Z"
CART = [{"product_id": "sku-1", "quantity": 2, "price": 19.9}]
CAMPAIGNS = [{"source": "newsletter", "medium": "email", "name": "winter", "first_ts": T, "last_ts": T2}]
RFM = {
    "days_since_last_order": 0.0,
    "orders": 1,
    "revenue": 39.8,
    "recency": 3,
    "frequency": 1,
    "monetary": 1,
    "code": "311",
}
RFE = {
    "days_since_last_visit": 0.0,
    "visits": 3,
    "page_views": 10,
    "recency": 3,
    "frequency": 2,
    "engagement": 2,
    "code": "322",
}


def sample(role: str, i: int) -> dict:
    """A record of `role` with every field set (so a lost field cannot hide behind a default)."""
    n = f"{i:03d}"
    return {
        "clickstream": {
            "event_id": f"e-{n}",
            "ts": T,
            "device_id": f"dev-{n}",
            "type": "purchase",
            "customer_key": f"key-{n}",
            "url": "https://shop.example/checkout/done",
            "referrer": "https://shop.example/cart",
            "page_category": "checkout",
            "product_id": "sku-1",
            "price": 19.9,
            "quantity": 2,
            "order_id": f"o-{n}",
            "revenue": 39.8,
            "campaign": {"source": "newsletter", "medium": "email", "name": "winter"},
        },
        "crm_changes": {
            "change_id": f"c-{n}",
            "ts": T,
            "customer_id": f"C{n}",
            "op": "upsert",
            "customer_key": f"key-{n}",
            "attributes": {"tier": "gold", "lifetime_value": 1234.5},
            "lead_status": "offer_created",
            "marketing_consent": True,
            "order_id": f"o-{n}",
        },
        "profiles": {
            "profile_id": f"p-{n}",
            "customer_id": f"C{n}",
            "customer_key": f"key-{n}",
            "device_ids": [f"dev-{n}", "dev-x"],
            "first_seen": T,
            "last_seen": T2,
            "visits": 3,
            "page_views": 10,
            "product_views": 4,
            "orders": 1,
            "revenue": 39.8,
            "last_order_ts": T2,
            "first_order_ts": T2,
            "viewed_products": ["sku-1", "sku-2"],
            "cart": CART,
            "campaigns": CAMPAIGNS,
            "attributes": {"tier": "gold", "lifetime_value": 1234.5},
            "lead_status": "sale",
            "marketing_consent": False,
            "updated_at": T2,
            "rfm": RFM,
            "rfe": RFE,
            "p_alive": 0.5,
            "expected_purchases_30d": 0.25,
        },
        "merges": {"from_profile_id": f"p-anon-{n}", "into_profile_id": f"p-{n}", "reason": "login", "ts": T},
        "triggers": {
            "trigger_id": f"tr-{n}",
            "type": "cart_abandoned",
            "profile_id": f"p-{n}",
            "customer_id": f"C{n}",
            "customer_key": f"key-{n}",
            "device_id": f"dev-{n}",
            "ts": T,
            "emitted_at": T2,
            "cart": CART,
            "days_away": 8.25,
        },
        "crm_feed": {
            "customer_id": f"C{n}",
            "customer_key": f"key-{n}",
            "viewed_products": ["sku-1"],
            "campaigns": CAMPAIGNS,
            "last_visit": T2,
            "visits": 3,
            "page_views": 10,
            "orders": 1,
            "revenue": 39.8,
            "updated_at": T2,
            "rfm": RFM,
            "rfe": RFE,
            "p_alive": None,
            "expected_purchases_30d": None,
        },
        "dead_letters": {
            "topic": "clickstream",
            "partition": 2,
            "offset": 41,
            "key": f"dev-{n}",
            "value": "/wBnYXJiYWdl",
            "error": "field 'value': not a clickstream Avro record",
            "ts": T,
        },
    }[role]
