"""Trigger events for campaign systems: `cart_abandoned` and `return_visit`.

Ids are a hash of what makes a trigger unique (the profile and deadline of an abandoned cart, the
device and start of a returning visit), never of when or where it was computed, so a replay, a
recovery or a run on more workers produces the same ids and consumers can drop repeats.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .person import Person
from .profile import Profile
from .units import DAY

CART_ABANDONED = "cart_abandoned"
RETURN_VISIT = "return_visit"


def trigger_id(kind: str, *parts: str | int) -> str:
    text = "\x1f".join([kind, *map(str, parts)])
    return "t-" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def allowed(profile: Profile) -> bool:
    """Consent is read when a trigger fires; unknown consent allows triggers."""
    return profile.marketing_consent is not False


def return_gap(person: Person, visit_start: int, after: int) -> int | None:
    """The time away before a visit, if it makes the visit a return visit."""
    last = person.last_activity_before(visit_start)
    if last is None:
        return None
    away = visit_start - last
    return away if away >= after else None


def _record(kind: str, tid: str, profile: Profile, device_id: str | None, ts: int, now: int) -> dict[str, Any]:
    return {
        "trigger_id": tid,
        "type": kind,
        "profile_id": profile.profile_id,
        "customer_id": profile.customer_id,
        "customer_key": profile.customer_key,
        "device_id": device_id,
        "ts": ts,
        "emitted_at": now,
        "cart": None,
        "days_away": None,
    }


def cart_abandoned(profile: Profile, deadline: int, now: int) -> dict[str, Any]:
    record = _record(
        CART_ABANDONED,
        trigger_id(CART_ABANDONED, profile.profile_id, deadline),
        profile,
        profile.cart.device_id,
        deadline,
        now,
    )
    record["cart"] = profile.cart.snapshot()
    return record


def return_visit(profile: Profile, device_id: str, visit_start: int, away: int, ts: int, now: int) -> dict[str, Any]:
    record = _record(RETURN_VISIT, trigger_id(RETURN_VISIT, device_id, visit_start), profile, device_id, ts, now)
    record["days_away"] = away / DAY
    return record


__all__ = ["CART_ABANDONED", "RETURN_VISIT", "allowed", "cart_abandoned", "return_gap", "return_visit", "trigger_id"]
