"""Records that break the contract, one kind after another, for the hostile-input tests and for
`ShopSpec.bad` (mixed into the files by `write_jsonl`; `generate` never makes them)."""

from __future__ import annotations

import random
from typing import Any

from profilestream.codec.times import format_time
from profilestream.devtools.sample.spec import CLICKSTREAM, ShopSpec
from profilestream.domain.units import DAY

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


def bad_records(spec: ShopSpec, n: int) -> list[tuple[str, dict[str, Any]]]:
    """`n` records that break the contract, cycling through `BAD_KINDS` (record `i` is of kind
    `BAD_KINDS[i % len(BAD_KINDS)]`); ids `e-bad-<i>` / `c-bad-<i>`, otherwise plausible values."""
    rng = random.Random(f"bad:{spec.seed}")
    start = spec.start_ms
    period = int(spec.period_days * DAY)
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        role, what = BAD_KINDS[i % len(BAD_KINDS)]
        ts = format_time(start + int(rng.random() * period))
        if role == CLICKSTREAM:
            rec: dict[str, Any] = {
                "event_id": f"e-bad-{i}",
                "ts": ts,
                "device_id": f"d-{rng.getrandbits(48):012x}",
                "type": "page_view",
            }
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


__all__ = ["BAD_KINDS", "bad_records"]
