"""The shop as one simulation: the population, the catalog, the CRM and the visits on one
timeline, driven by one `random.Random(seed)`, streamed as `(role, record)` pairs in the
contract's order of application. `generate`, `records` and `population` are the public entry."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from profilestream.codec.times import format_time
from profilestream.devtools.sample.actor import Actor
from profilestream.devtools.sample.catalog import Catalog
from profilestream.devtools.sample.crm import Crm
from profilestream.devtools.sample.customers import Devices, Population
from profilestream.devtools.sample.knobs import (
    ANON_PER_CUSTOMER,
    ANON_RETURN,
    DUPLICATE_CHANGE,
    DUPLICATE_CLICK,
    LOOKAHEAD,
    UPDATE_MEAN_GAP,
)
from profilestream.devtools.sample.queue import (
    ARRIVAL,
    CLICK,
    CLICK_ORDER,
    CRM,
    CRM_ORDER,
    DUP,
    PLAN,
    PLANNING,
    UPDATE,
    Timeline,
)
from profilestream.devtools.sample.spec import CLICKSTREAM, CRM_CHANGES, ROLES, Customer, ShopSpec
from profilestream.devtools.sample.visits import Visits
from profilestream.domain.units import DAY, MINUTE


class Shop:
    """One simulated shop for a spec: `run()` streams its records, `population()` its customers."""

    def __init__(self, spec: ShopSpec) -> None:
        self.spec = spec
        self.rng = rng = random.Random(spec.seed)
        self.start = spec.start_ms
        self.period = int(spec.period_days * DAY)
        self.timeline = timeline = Timeline()
        self.devices = Devices(rng)
        self.catalog = Catalog(rng, max(60, min(3000, spec.events // 300)))
        self.crm = Crm(rng, spec.emails)
        self.visits = Visits(rng, self.start, self.catalog, self.crm, timeline)
        self.people = Population(rng, self.start, self.period, self.devices)
        customers = self.people.populate(spec.customer_count, timeline)
        for a in customers:
            timeline.push(a.created, CRM_ORDER, CRM, a, self.crm.initial_upsert(a))
            timeline.push(a.created + int(rng.expovariate(1 / UPDATE_MEAN_GAP)), CRM_ORDER, UPDATE, a, None)
            if a.created > self.start:  # a sign-up: it browsed before joining
                first = a.created - int(rng.random() * 2 * DAY)
            else:
                first = self.start + int(rng.random() * 0.4 * self.period)
            timeline.push(max(first, self.start) - LOOKAHEAD, PLANNING, PLAN, a, None)
        anon_total = ANON_PER_CUSTOMER * max(len(customers), 3)
        self.anon_gap = self.period / anon_total  # mean time between new anonymous visitors
        timeline.push(self.start - LOOKAHEAD + int(rng.expovariate(1 / self.anon_gap)), PLANNING, ARRIVAL, None, None)

    def population(self) -> list[Customer]:
        return self.people.ground_truth()

    def run(self) -> Iterator[tuple[str, dict[str, Any]]]:
        total = self.spec.events
        if total <= 0:
            return
        timeline = self.timeline
        push = timeline.push
        rng = self.rng
        r = rng.random
        n_events = n_changes = emitted = 0
        while timeline:
            ts, order, _, kind, a, body = timeline.pop()
            if kind == CLICK:
                n_events += 1
                rec = {"event_id": f"e-{n_events:08d}", "ts": format_time(ts)}
                rec.update(body)
                if r() < DUPLICATE_CLICK:
                    timeline.duplicate(ts, CLICK_ORDER, rec, rng)
                yield CLICKSTREAM, rec
            elif kind in (CRM, UPDATE):
                if a.erased:
                    continue  # the CRM forgot this customer
                if kind == UPDATE:
                    body = self.crm.update(a)
                    push(ts + int(rng.expovariate(1 / UPDATE_MEAN_GAP)) + MINUTE, CRM_ORDER, UPDATE, a, None)
                elif body["op"] == "erase":
                    a.erased = True
                    a.cart = {}
                n_changes += 1
                rec = {"change_id": f"c-{n_changes:08d}", "ts": format_time(ts)}
                rec.update(body)
                if r() < DUPLICATE_CHANGE:
                    timeline.duplicate(ts, CRM_ORDER, rec, rng)
                yield CRM_CHANGES, rec
            elif kind == DUP:
                yield (CLICKSTREAM if order == CLICK_ORDER else CRM_CHANGES), body
            elif kind == PLAN:
                end = self.visits.visit(a, ts + LOOKAHEAD)
                if a.cid is not None or r() < ANON_RETURN:
                    push(end + self.visits.next_gap(a) - LOOKAHEAD, PLANNING, PLAN, a, None)
                continue
            else:  # ARRIVAL: a new anonymous visitor
                v = Actor()
                self.devices.new(v, "phone" if r() < 0.6 else "laptop")
                v.dev_cum = [1.0]
                push(ts, PLANNING, PLAN, v, None)
                push(ts + int(rng.expovariate(1 / self.anon_gap)), PLANNING, ARRIVAL, None, None)
                continue
            emitted += 1
            if emitted >= total:
                return


def generate(spec: ShopSpec | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Exactly `spec.events` `(role, record)` pairs in time order (contract order at equal ts),
    every record valid for its topic; streamed, deterministic for a given spec."""
    return Shop(spec if spec is not None else ShopSpec()).run()


def records(spec: ShopSpec, role: str) -> Iterator[dict[str, Any]]:
    """The records of one role (`"clickstream"` or `"crm_changes"`), in order."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return (rec for rl, rec in generate(spec) if rl == role)


def population(spec: ShopSpec) -> list[Customer]:
    """The CRM customers behind `generate(spec)` (ground truth for tests)."""
    return Shop(spec).population()


__all__ = ["Shop", "generate", "population", "records"]
