"""docs/semantics.md "return_visit" (the contract's version 2 sentence): a
visit still open is checked again whenever its profile changes, whichever side of a merge it is
on; and the lookback ("the last activity before the visit's start") is exact however much activity
the profile has had.

Scenarios run on the engine alone and through the whole dataflow; the lookback is also checked as
a property of `Person` against a reference that keeps every click.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profilestream.domain import triggers
from profilestream.domain.person import Person
from profilestream.domain.rules import Rules
from support.scenario import DAY, HOUR, MINUTE, T0, click, crm, run

RULES = Rules()
RETURN = RULES.return_visit_after
GAP = RULES.session_gap
AWAY = int(7.05 * DAY)

both = pytest.mark.usefixtures("scenario_level")  # engine and dataflow level


def returns(res) -> list[dict]:
    return [t for t in res.triggers if t["type"] == "return_visit"]


# --- a merge into the open visit's profile ------------------------------------------------------


@both
def test_a_profile_with_older_activity_merged_into_the_visits_profile_fires_it():
    """Issue 11, finding 5: A logs in with K and starts a visit; B, anonymous and last active
    7.05 days before, logs in with K 28 minutes later and is merged into K's profile."""
    start = T0 + 10 * DAY
    res = run(
        [
            click(0, "B", "page_view", ts=start - AWAY),
            click(0, "A", "login", customer_key="K", ts=start),
            click(0, "A", "page_view", ts=start + 20 * MINUTE),
            click(0, "B", "login", customer_key="K", ts=start + 28 * MINUTE),
            click(0, "A", "page_view", ts=start + 40 * MINUTE),
        ]
    )
    assert [m["reason"] for m in res.merges] == ["login"]
    [t] = returns(res)
    assert t["device_id"] == "A" and t["ts"] == start + 28 * MINUTE
    assert t["days_away"] == 7.05 and t["customer_key"] == "K"
    assert t["profile_id"] == res.of("K")["profile_id"]


@both
def test_a_crm_link_that_merges_a_key_profile_with_older_activity_into_the_customer_fires():
    """C1's only activity is the open visit of D1; the CRM then links K9, whose profile was last
    active 9 days before that visit: C1 now was away 9 days when the visit began."""
    start = T0 + 10 * DAY
    res = run(
        [
            click(0, "D9", "login", customer_key="K9", ts=start - 9 * DAY),
            crm(0, "C1", customer_key="K1", ts=start - HOUR),
            click(0, "D1", "login", customer_key="K1", ts=start),
            crm(0, "C1", customer_key="K9", ts=start + 10 * MINUTE),
        ]
    )
    assert [m["reason"] for m in res.merges] == ["crm_link"]
    [t] = returns(res)
    assert t["device_id"] == "D1" and t["ts"] == start + 10 * MINUTE and t["days_away"] == 9.0
    assert t["customer_id"] == "C1"


@both
def test_an_order_match_that_merges_an_anonymous_profile_with_older_activity_fires():
    start = T0 + 10 * DAY
    res = run(
        [
            click(0, "D9", "purchase", order_id="O9", ts=start - 8 * DAY),
            crm(0, "C1", customer_key="K1", ts=start - HOUR),
            click(0, "D1", "login", customer_key="K1", ts=start),
            crm(0, "C1", order_id="O9", ts=start + 5 * MINUTE),  # within the match window of the order
        ]
    )
    assert "order_match" in [m["reason"] for m in res.merges]
    [t] = returns(res)
    assert t["device_id"] == "D1" and t["ts"] == start + 5 * MINUTE and t["days_away"] == 8.0


@both
def test_recent_activity_merged_in_or_a_closed_visit_fires_nothing():
    start = T0 + 10 * DAY
    recent = run(
        [
            click(0, "B", "page_view", ts=start - 6 * DAY),
            click(0, "A", "login", customer_key="K", ts=start),
            click(0, "B", "login", customer_key="K", ts=start + 28 * MINUTE),
        ]
    )
    assert returns(recent) == []
    closed = run(
        [
            click(0, "B", "page_view", ts=start - 8 * DAY),
            click(0, "A", "login", customer_key="K", ts=start),
            click(0, "B", "login", customer_key="K", ts=start + GAP + MINUTE),  # A's visit is over by then
        ]
    )
    assert returns(closed) == []


@both
def test_each_visit_fires_at_most_once_over_several_merges():
    start = T0 + 10 * DAY
    res = run(
        [
            click(0, "B", "page_view", ts=start - 8 * DAY),
            click(0, "E", "page_view", ts=start - 20 * DAY),
            click(0, "A", "login", customer_key="K", ts=start),
            click(0, "B", "login", customer_key="K", ts=start + 5 * MINUTE),
            click(0, "E", "login", customer_key="K", ts=start + 10 * MINUTE),
        ]
    )
    [t] = returns(res)
    assert t["device_id"] == "A" and t["days_away"] == 8.0 and t["ts"] == start + 5 * MINUTE


# --- the lookback is exact however much activity came in between ----------------------------------


@both
def test_a_device_moving_in_after_many_bursts_of_its_new_profile_still_sees_the_older_activity():
    """The lookback used to keep the profile's newest eight runs of activity. D1's visit (in C2's
    profile) lasts all evening; meanwhile C1's phone is used ten times, more than a session gap
    apart; then D1 logs in as C1 and moves. C1's last activity before D1's visit began is 8 days
    before it: the visit returns, whatever happened after its start."""
    start = T0 + 10 * DAY
    events = [
        crm(0, "C1", customer_key="K1", ts=T0),
        crm(0, "C2", customer_key="K2", ts=T0),
        click(0, "P1", "login", customer_key="K1", ts=start - 8 * DAY),
        click(0, "P2", "login", customer_key="K2", ts=start - HOUR),
        click(0, "D1", "login", customer_key="K2", ts=start),
    ]
    events += [click(0, "D1", "page_view", ts=start + i * 20 * MINUTE) for i in range(1, 31)]
    events += [click(0, "P1", "page_view", ts=start + HOUR * i + 7 * MINUTE) for i in range(10)]
    events.append(click(0, "D1", "login", customer_key="K1", ts=start + 10 * HOUR + 10 * MINUTE))
    res = run(sorted(events, key=lambda e: e.ts))
    assert [(t["device_id"], t["days_away"]) for t in returns(res) if t["device_id"] == "P1"] == [("P1", 8 + 7 / 1440)]
    [t] = [t for t in returns(res) if t["device_id"] == "D1"]
    assert t["device_id"] == "D1" and t["customer_id"] == "C1" and t["days_away"] == 8.0
    assert t["ts"] == start + 10 * HOUR + 10 * MINUTE


# --- the lookback as a property of the profile ----------------------------------------------------

STEPS = [0, 1, 2, GAP - 1, GAP, GAP + 1, RETURN - 1, RETURN, RETURN + 1, HOUR, DAY, 3 * DAY]


def reference_gap(clicks: list[int], start: int, after: int) -> int | None:
    """The rule itself: the latest click strictly before `start`, if `after` or more before it."""
    earlier = [c for c in clicks if c < start]
    if not earlier:
        return None
    away = start - max(earlier)
    return away if away >= after else None


@st.composite
def histories(draw):
    """Click times (in any order) of a few profiles, some of which are merged into others."""
    n = draw(st.integers(1, 4))
    base = T0
    profiles = []
    for _ in range(n):
        ts, clicks = base, []
        for _ in range(draw(st.integers(0, 25))):
            ts += draw(st.sampled_from(STEPS))
            clicks.append(ts)
        profiles.append(draw(st.permutations(clicks)))
    merges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3))
    return profiles, merges


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.sampled_from([RETURN, GAP, 2, 1, HOUR]), st.lists(st.integers(-DAY, 40 * DAY), max_size=20))
def test_return_gap_equals_the_rule_over_every_click(history, after, offsets):
    clicks_of, merges = history
    rules = Rules(return_visit_after=after)
    profiles = [Person(f"p{i}") for i in range(len(clicks_of))]
    every: list[list[int]] = [[] for _ in profiles]
    live = list(range(len(profiles)))
    for i, clicks in enumerate(clicks_of):
        for ts in clicks:
            profiles[i].record_activity(ts, rules.return_visit_after)
            every[i].append(ts)
    for source, into in merges:
        if source == into or source not in live or into not in live:
            continue
        profiles[into].absorb(profiles[source], rules.return_visit_after)
        every[into] += every[source]
        live.remove(source)
    for i in live:
        queries = sorted(
            {T0 + o for o in offsets} | set(every[i]) | {c + 1 for c in every[i]} | {c + after for c in every[i]}
        )
        for start in queries:
            assert triggers.return_gap(profiles[i], start, after) == reference_gap(every[i], start, after)
        # memory: runs closer than `after` are one, so a profile holds at most one run per `after`
        # of its active time (plus one)
        spans = profiles[i].spans
        if every[i]:
            assert len(spans) <= 1 + (max(every[i]) - min(every[i])) // after
        assert all(b[0] - a[1] >= after for a, b in itertools.pairwise(spans))
