"""What the CRM says about a customer: the initial import, the updates that follow (lead status,
consent, attributes, now and then a new e-mail and so a new key), and how an identity is sent
(the customer_key, or now and then the clear e-mail it is the hash of)."""

from __future__ import annotations

import random
from typing import Any

from profilestream.devtools.sample.actor import Actor
from profilestream.devtools.sample.knobs import (
    CITIES,
    EMAIL_SHARE,
    KEY_CHANGE,
    LEAD_STATUSES,
    SEGMENT_WEIGHTS,
    SEGMENTS,
)


class Crm:
    """Record bodies (without id and ts) for a customer; `emails=False` never sends a clear e-mail."""

    def __init__(self, rng: random.Random, emails: bool) -> None:
        self.rng = rng
        self.emails = emails

    def identity(self, a: Actor, body: dict[str, Any]) -> None:
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

    def initial_upsert(self, a: Actor) -> dict[str, Any]:
        body: dict[str, Any] = {"customer_id": a.cid, "op": "upsert"}
        if a.key is not None:
            self.identity(a, body)
        body["attributes"] = dict(a.attrs)
        body["lead_status"] = a.lead
        if a.consent is not None:
            body["marketing_consent"] = a.consent
        return body

    def update(self, a: Actor) -> dict[str, Any]:
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
            a.lead = LEAD_STATUSES[LEAD_STATUSES.index(a.lead or "") + 1]
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
            self.identity(a, body)
        return body


__all__ = ["Crm"]
