"""One visit of an actor: a burst of clicks seconds to minutes apart (landing, maybe from a
newsletter or a campaign, logging in, browsing with the cart filling and emptying, checkout and
purchase, whose order the CRM imports minutes later or, now and then, earlier), and the gap of
hours, days or weeks until the next one."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from typing import Any

from profilestream.devtools.sample.actor import Actor
from profilestream.devtools.sample.catalog import Catalog
from profilestream.devtools.sample.crm import Crm
from profilestream.devtools.sample.knobs import (
    BLOCKED_KEY,
    BLOCKED_VALUES,
    CAMPAIGN,
    CAMPAIGNS,
    CATEGORIES,
    CRM_FIRST,
    HOSTS,
    LOGIN,
    NEWSLETTER,
    NEWSLETTERS,
)
from profilestream.devtools.sample.queue import CLICK, CLICK_ORDER, CRM, CRM_ORDER, Timeline
from profilestream.domain.units import DAY, HOUR, MINUTE

WEEK = 7 * DAY


class Visits:
    """Plans visits: pushes their clicks (and CRM order imports) on the timeline."""

    def __init__(self, rng: random.Random, start: int, catalog: Catalog, crm: Crm, timeline: Timeline) -> None:
        self.rng = rng
        self.start = start
        self.catalog = catalog
        self.crm = crm
        self.timeline = timeline
        self.orders = itertools.count(1)

    def visit(self, a: Actor, t0: int) -> int:
        """Plan one visit starting at `t0`: push its clicks (and a CRM order import if it buys);
        returns its last click's time."""
        rng = self.rng
        r = rng.random
        lognorm = rng.lognormvariate
        clicks: list[tuple[int, dict[str, Any]]] = []
        dev, kind = (
            a.devices[bisect.bisect_right(a.dev_cum, r() * a.dev_cum[-1])] if len(a.devices) > 1 else a.devices[0]
        )
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
            campaign = {
                "source": "newsletter",
                "medium": "email",
                "name": f"{NEWSLETTERS[week % len(NEWSLETTERS)]}-{week + 1:02d}",
            }
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
                self.crm.identity(a, land)
            if r() < 0.5:
                land["url"] = f"{host}/{utm}"
                land["page_category"] = "home"
            else:
                land["url"] = f"{host}/c/{CATEGORIES[cat][0]}{utm}"
                land["page_category"] = CATEGORIES[cat][0]
        else:
            p = self.catalog.product(cat)
            pid, pcat, price = self.catalog.products[p]
            land.update(
                type="product_view", url=f"{host}/p/{pid}{utm}", page_category=pcat, product_id=pid, price=price
            )
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
            body: dict[str, Any] = {"device_id": dev, "type": "login"}
            self.crm.identity(a, body)
            body["url"] = f"{host}/account/login"
            clicks.append((t, body))
            logged_in = True

        # browsing, with the cart filling (and now and then emptying)
        cart = a.cart
        buyer = a.cid is not None
        p_add = 0.09 if buyer else 0.05
        carried = bool(cart)
        came_back = carried and r() < 0.45  # came back for the cart: few views
        n_views = int(r() * 3) if came_back else min(1 + int(rng.expovariate(1 / 3.2)), 30)
        for _ in range(n_views):
            t += step()
            x = r()
            if x < 0.74:
                p = self.catalog.product(cat if r() < 0.75 else None)
                pid, pcat, price = self.catalog.products[p]
                cat = self.catalog.cat_index[pcat]
                body = {
                    "device_id": dev,
                    "type": "product_view",
                    "url": f"{host}/p/{pid}",
                    "page_category": pcat,
                    "product_id": pid,
                    "price": price,
                }
                if r() < BLOCKED_KEY * 2:
                    body["customer_key"] = BLOCKED_VALUES[int(r() * len(BLOCKED_VALUES))]
                clicks.append((t, body))
                if r() < p_add:
                    t += step()
                    qty = 2 if r() < 0.1 else 1
                    body = {
                        "device_id": dev,
                        "type": "add_to_cart",
                        "url": f"{host}/p/{pid}",
                        "page_category": pcat,
                        "product_id": pid,
                        "price": price,
                    }
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
                body = {
                    "device_id": dev,
                    "type": "remove_from_cart",
                    "url": f"{host}/cart",
                    "page_category": "cart",
                    "product_id": pid,
                }
                if qty != 1:
                    body["quantity"] = qty
                clicks.append((t, body))
            else:
                if r() < 0.3:
                    cat = rng.randrange(len(CATEGORIES))
                body = {
                    "device_id": dev,
                    "type": "page_view",
                    "url": f"{host}/c/{CATEGORIES[cat][0]}",
                    "page_category": CATEGORIES[cat][0],
                }
                if r() < BLOCKED_KEY * 4:
                    body["customer_key"] = BLOCKED_VALUES[int(r() * len(BLOCKED_VALUES))]
                clicks.append((t, body))

        if login and not logged_in:
            t += step()
            body = {"device_id": dev, "type": "login"}
            self.crm.identity(a, body)
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
                    self.crm.identity(a, body)
                clicks.append((t, body))
                t += int(rng.uniform(30, 300) * 1000)
                order_id = f"O{next(self.orders):07d}"
                revenue = round(sum(q * p for q, p in cart.values()), 2)
                cart.clear()
                clicks.append(
                    (
                        t,
                        {
                            "device_id": dev,
                            "type": "purchase",
                            "url": f"{host}/checkout/done",
                            "page_category": "checkout",
                            "order_id": order_id,
                            "revenue": revenue,
                        },
                    )
                )
                if a.cid is not None and not a.erased:
                    if r() < CRM_FIRST:  # (never before the shop opens)
                        crm_ts = max(t - int(rng.uniform(1, 59) * MINUTE), self.start)
                    else:
                        crm_ts = t + int(min(max(lognorm(math.log(45 * MINUTE), 1.2), 2 * MINUTE), DAY))
                    body = {"customer_id": a.cid, "op": "upsert", "order_id": order_id}
                    if a.lead != "sale":
                        a.lead = "sale"
                        body["lead_status"] = "sale"
                    self.timeline.push(crm_ts, CRM_ORDER, CRM, a, body)
        if logged_in and r() < 0.12:
            t += step()
            clicks.append((t, {"device_id": dev, "type": "logout", "url": f"{host}/account/logout"}))

        push = self.timeline.push
        for ts, click in clicks:
            push(ts, CLICK_ORDER, CLICK, None, click)
        return t

    def next_gap(self, a: Actor) -> int:
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


__all__ = ["WEEK", "Visits"]
