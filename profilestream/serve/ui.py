"""The single-customer-view pages (`/ui/`, `/ui/profiles/{identifier}`), rendered on the server.

Why plain functions and no template engine or front-end build: the page is one read of one
profile, and a marketer or a service agent should see it the moment it loads, with no script
and nothing to build (shared/seeds/004: identifiers and devices, behaviour, campaigns, CRM data
and scores on one screen). Every value from a profile passes through `_e` (HTML escaping): the
profile holds what websites sent, and a URL or attribute must never become markup.

Fields the profile record does not have yet (a schema older than contract v2: no
`purchased_products`, `segments`, ...) are shown as absent, not as an error.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d232b}
header{background:#1d3557;color:#fff;padding:14px 28px;display:flex;gap:24px;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
header form{margin-left:auto}
input[type=search]{padding:6px 10px;border-radius:4px;border:0;width:320px}
main{padding:20px 28px;display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:16px}
section{background:#fff;border-radius:8px;padding:14px 18px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
section.wide{grid-column:1/-1}
h1{font-size:22px;margin:0}
h2{font-size:14px;text-transform:uppercase;letter-spacing:.06em;color:#5a6572;margin:0 0 10px}
table{border-collapse:collapse;width:100%} td,th{text-align:left;padding:4px 8px 4px 0;border-bottom:1px solid #eef0f3;
vertical-align:top} th{color:#5a6572;font-weight:600}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:8px} .kpi{background:#f4f5f7;border-radius:6px;padding:8px}
.kpi b{display:block;font-size:20px} .kpi span{color:#5a6572;font-size:12px}
.tag{display:inline-block;background:#e7eefc;color:#1d3557;border-radius:10px;padding:1px 9px;margin:2px;font-size:13px}
.ok{color:#1a7f37;font-weight:600} .no{color:#b42318;font-weight:600} .muted{color:#8a94a0}
code{font-size:13px;word-break:break-all} .bars{display:flex;gap:2px;align-items:flex-end;height:48px}
.bars div{background:#457b9d;width:10px;min-height:1px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _page(title: str, body: str, query: str = "") -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{_e(title)}</title>'
        f'<style>{_CSS}</style></head><body><header><a href="/ui/">profilestream</a>'
        f"<span>single customer view</span>"
        '<form action="/ui/" method="get"><input type="search" name="q" '
        f'placeholder="device id, customer id or key, profile id" value="{_e(query)}" aria-label="identifier">'
        f"</form></header>{body}</body></html>"
    )


def search_page(query: str = "", message: str = "") -> str:
    note = f'<p class="no">{_e(message)}</p>' if message else ""
    body = (
        '<main><section class="wide"><h1>Find a customer</h1>'
        "<p>Enter a device id, a customer id, a customer key or a profile id in the box above.</p>"
        f"{note}</section></main>"
    )
    return _page("profilestream: find a customer", body, query)


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in pairs)


def _table(head: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _money(value: Any) -> str:
    return "" if value is None else f"{float(value):,.2f}"


def _consent(value: Any) -> str:
    if value is True:
        return '<span class="ok">opted in</span>'
    if value is False:
        return '<span class="no">opted out</span>'
    return '<span class="muted">unknown (triggers allowed)</span>'


def _scores(name: str, scores: Any) -> str:
    if not isinstance(scores, dict):
        return f'<p class="muted">no {_e(name)} yet</p>'
    raw = [(k, v) for k, v in scores.items() if not k.endswith("score")]
    marks = [(k, v) for k, v in scores.items() if k.endswith("score")]
    cells = "".join(f'<div class="kpi"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for k, v in marks)
    detail = _rows([(k, _e(round(v, 2) if isinstance(v, float) else v)) for k, v in raw])
    return f'<h2>{_e(name)}</h2><div class="kpis">{cells}</div><table>{detail}</table>'


def _bars(counts: Any, labels: str) -> str:
    if not isinstance(counts, list) or not any(counts):
        return ""
    top = max(counts) or 1
    bars = "".join(f'<div title="{i}: {c}" style="height:{48 * c // top}px"></div>' for i, c in enumerate(counts))
    return f'<p class="muted">{_e(labels)}</p><div class="bars">{bars}</div>'


def profile_page(profile: dict[str, Any], triggers: list[dict[str, Any]], asked: str) -> str:
    p = profile
    who = p.get("customer_id") or p.get("customer_key") or "anonymous visitor"
    merged_note = ""
    if asked not in (p.get("profile_id"), p.get("customer_id"), p.get("customer_key"), *p.get("device_ids", ())):
        merged_note = f'<p class="muted">{_e(asked)} was merged into this profile</p>'
    ids = _rows(
        [
            ("customer id", _e(p.get("customer_id")) or '<span class="muted">none (not in the CRM)</span>'),
            ("customer key", f"<code>{_e(p.get('customer_key'))}</code>" if p.get("customer_key") else "none"),
            ("profile id", f"<code>{_e(p['profile_id'])}</code>"),
            ("devices", "".join(f'<span class="tag">{_e(d)}</span>' for d in p.get("device_ids", ()))),
            ("first seen", _e(p.get("first_seen"))),
            ("last seen", _e(p.get("last_seen"))),
            ("updated", _e(p.get("updated_at"))),
        ]
    )
    kpis = "".join(
        f'<div class="kpi"><b>{v}</b><span>{_e(k)}</span></div>'
        for k, v in (
            ("visits", _e(p.get("visits"))),
            ("page views", _e(p.get("page_views"))),
            ("product views", _e(p.get("product_views"))),
            ("orders", _e(p.get("orders"))),
            ("revenue", _money(p.get("revenue"))),
            ("last order", _e((p.get("last_order_ts") or "none")[:10])),
            ("p(alive)", _e("" if p.get("p_alive") is None else f"{p['p_alive']:.2f}")),
            (
                "exp. purchases 30d",
                _e("" if p.get("expected_purchases_30d") is None else f"{p['expected_purchases_30d']:.2f}"),
            ),
        )
    )
    cart = _table(
        ["product", "quantity", "price"],
        [[line["product_id"], line["quantity"], _money(line.get("price"))] for line in p.get("cart", ())],
        "the cart is empty",
    )
    campaigns = _table(
        ["source", "medium", "campaign", "first touch", "last touch"],
        [
            [c.get("source"), c.get("medium"), c.get("name"), c.get("first_ts"), c.get("last_ts")]
            for c in p.get("campaigns", ())
        ],
        "no campaign brought this customer yet",
    )
    viewed = "".join(f'<span class="tag">{_e(v)}</span>' for v in p.get("viewed_products", ())) or (
        '<p class="muted">none</p>'
    )
    purchased = _table(
        ["product", "order", "when"],
        [[x.get("product_id"), x.get("order_id"), x.get("ts")] for x in p.get("purchased_products") or ()],
        "no purchase recorded",
    )
    attributes = _table(
        ["attribute", "value"], [[k, v] for k, v in sorted((p.get("attributes") or {}).items())], "no CRM attributes"
    )
    crm = _rows(
        [
            ("lead status", _e(p.get("lead_status") or "none")),
            ("marketing consent", _consent(p.get("marketing_consent"))),
        ]
    )
    segments = "".join(f'<span class="tag">{_e(s)}</span>' for s in p.get("segments") or ()) or (
        '<p class="muted">in no segment</p>'
    )
    fired = _table(
        ["when", "trigger", "device", "detail"],
        [
            [
                t.get("ts"),
                t.get("type"),
                t.get("device_id"),
                t.get("segment")
                or ("" if t.get("days_away") is None else f"{t['days_away']:.1f} days away")
                or ", ".join(f"{line['product_id']} x{line['quantity']}" for line in t.get("cart") or ()),
            ]
            for t in triggers
        ],
        "no trigger fired for this profile",
    )
    activity = _bars(p.get("activity_hours"), "clicks by hour of day (UTC)") + _bars(
        p.get("activity_weekdays"), "clicks by weekday (Monday first)"
    )
    body = (
        f'<main><section class="wide"><h1>{_e(who)}</h1>{merged_note}</section>'
        f"<section><h2>Identifiers and devices</h2><table>{ids}</table></section>"
        f'<section><h2>Behaviour</h2><div class="kpis">{kpis}</div>{activity}</section>'
        f"<section><h2>Cart</h2>{cart}</section>"
        f'<section class="wide"><h2>Campaigns</h2>{campaigns}</section>'
        f"<section><h2>Viewed products</h2>{viewed}</section>"
        f"<section><h2>Purchased products</h2>{purchased}</section>"
        f"<section><h2>CRM</h2><table>{crm}</table>{attributes}</section>"
        f"<section>{_scores('RFM', p.get('rfm'))}</section>"
        f"<section>{_scores('RFE', p.get('rfe'))}</section>"
        f"<section><h2>Segments</h2>{segments}</section>"
        f'<section class="wide"><h2>Latest triggers</h2>{fired}</section></main>'
    )
    return _page(f"profilestream: {who}", body, asked)


def profile_link(identifier: str) -> str:
    return "/ui/profiles/" + quote(identifier, safe="")


__all__ = ["profile_link", "profile_page", "search_page"]
