"""The shop's population: CRM customers with their accounts, e-mails, attributes and devices,
the family laptops two customers share, the customers who will be erased, and the ground truth
about them (`Customer`) that tests compare the dataflow's profiles with."""

from __future__ import annotations

import hashlib
import itertools
import random

from profilestream.devtools.sample.actor import Actor
from profilestream.devtools.sample.knobs import (
    CITIES,
    DOMAINS,
    ERASE_PER_CUSTOMER,
    FIRST_NAMES,
    KEY_FROM_EMAIL,
    KEYED,
    LAST_NAMES,
    LATE_CUSTOMERS,
    MOVING,
    SEGMENT_WEIGHTS,
    SEGMENTS,
)
from profilestream.devtools.sample.queue import CRM, CRM_ORDER, Timeline
from profilestream.devtools.sample.spec import Customer, hash_email
from profilestream.domain.units import HOUR


class Devices:
    """Device ids (`d-<48 random bits>`), unique across the shop, and which device an actor uses."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._ids: set[str] = set()  # only asked for membership, never iterated

    def new(self, a: Actor, kind: str) -> str:
        """A new device of `kind` ("phone" | "laptop") for `a`."""
        rng = self.rng
        while True:
            dev = f"d-{rng.getrandbits(48):012x}"
            if dev not in self._ids:
                self._ids.add(dev)
                a.devices.append((dev, kind))
                return dev

    @staticmethod
    def weigh(a: Actor) -> None:
        """The first device is used most (60%), the others share the rest."""
        n = len(a.devices)
        weights = [0.6] + [0.4 / (n - 1)] * (n - 1) if n > 1 else [1.0]
        a.dev_cum = list(itertools.accumulate(weights))


class Population:
    """The CRM customers of a shop opening at `start` for `period` ms."""

    def __init__(self, rng: random.Random, start: int, period: int, devices: Devices) -> None:
        self.rng = rng
        self.start = start
        self.period = period
        self.devices = devices
        self.customers: list[Actor] = []
        self.to_erase: list[str] = []

    def populate(self, count: int, timeline: Timeline) -> list[Actor]:
        """`count` customers, two of them (or more) sharing a laptop, a few planned for erasure."""
        self.customers = [self.make_customer(i) for i in range(1, count + 1)]
        self.share_devices()
        self.plan_erasures(timeline)
        return self.customers

    def make_customer(self, i: int) -> Actor:
        rng = self.rng
        r = rng.random
        a = Actor()
        a.cid = f"C{i:06d}"
        if r() < KEYED:
            if r() < KEY_FROM_EMAIL:
                a.email = self.email(i)
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
        other = "laptop" if first == "phone" else "phone"
        for j in range(n):
            self.devices.new(a, first if j == 0 else other if j == 1 else "phone")
        self.devices.weigh(a)
        if a.email is not None and r() < MOVING:
            new = self.email(i, moved=True)
            a.key_change = (new, hash_email(new))
        return a

    def email(self, i: int, moved: bool = False) -> str:
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        domain = rng.choice(DOMAINS)
        local = f"{first}.{last}{i}" if not moved else f"{first[0]}{last}.{i}"
        if rng.random() < 0.3:  # as typed: capitals, which the hash ignores
            local = ".".join(part.capitalize() for part in local.split("."))
        return f"{local}@{domain}"

    def share_devices(self) -> None:
        """A couple of family laptops: the second customer uses the first one's laptop too (as
        the device both use most), and both log in whenever they use it."""
        rng = self.rng
        keyed = [a for a in self.customers if a.key is not None and a.created < self.start + 2 * HOUR]
        pairs = 2 if len(keyed) >= 6 else 1 if len(keyed) >= 2 else 0
        pairs = max(pairs, len(self.customers) // 2000)
        picked = rng.sample(keyed, 2 * pairs) if pairs else []
        for owner, guest in zip(picked[::2], picked[1::2], strict=True):
            laptops = [d for d, kind in owner.devices if kind == "laptop"]
            dev = laptops[0] if laptops else self.devices.new(owner, "laptop")
            owner.devices.remove((dev, "laptop"))
            owner.devices.insert(0, (dev, "laptop"))  # the family laptop is what both use most
            self.devices.weigh(owner)
            guest.devices.insert(0, (dev, "laptop"))
            self.devices.weigh(guest)
            owner.shared = owner.shared | {dev}
            guest.shared = guest.shared | {dev}

    def plan_erasures(self, timeline: Timeline) -> None:
        rng = self.rng
        customers = self.customers
        candidates = [a for a in customers if not a.shared and a.created < self.start + 2 * HOUR]
        n = 0
        if len(customers) >= 5:
            n = min(len(candidates), max(1, round(len(customers) * ERASE_PER_CUSTOMER)))
        for a in rng.sample(candidates, n):
            assert a.cid is not None
            self.to_erase.append(a.cid)
            ts = self.start + int(rng.uniform(0.3, 0.7) * self.period)
            timeline.push(ts, CRM_ORDER, CRM, a, {"customer_id": a.cid, "op": "erase"})

    def ground_truth(self) -> list[Customer]:
        out = []
        for a in self.customers:
            assert a.cid is not None
            keys = tuple(k for k in (a.key, a.key_change and a.key_change[1]) if k)
            emails = tuple(e for e in (a.email, a.key_change and a.key_change[0]) if e)
            out.append(Customer(a.cid, keys, emails, tuple(d for d, _ in a.devices), a.cid in self.to_erase))
        return out


__all__ = ["Devices", "Population"]
