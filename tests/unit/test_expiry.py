"""De-duplication and the order book forget by time alone (docs/semantics.md "Duplicates": ids
are forgotten once the watermark is more than the window past them), whatever order entries
arrived in: what is kept is then a function of the entries and the watermark, which is what lets
a snapshot of what changed restore it (flows/changelog.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from profilestream.domain.dedup import Dedup
from profilestream.domain.identity import OrderBook

WINDOW = 100


def test_an_id_behind_a_newer_one_is_forgotten_on_time():
    dedup = Dedup(WINDOW)
    assert not dedup.repeat("late-arriving-new", 1_000)
    assert not dedup.repeat("old", 10)  # arrives second, is older
    dedup.expire(10 + WINDOW + 1)  # the watermark is more than the window past "old" only
    assert "old" not in dedup.seen and "late-arriving-new" in dedup.seen
    assert not dedup.repeat("old", 10)  # forgotten: counts again


def test_an_order_behind_a_newer_one_is_forgotten_on_time():
    book = OrderBook(WINDOW)
    book.web_purchase("o-new", "d-1", 1_000)
    book.crm_order("o-old", "C1", 10)
    book.expire(10 + WINDOW + 1)
    assert "o-old" not in book.crm and "o-new" in book.web


entries = st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 1_000)), max_size=40)


@given(entries, st.integers(0, 1_200))
def test_what_dedup_keeps_depends_on_the_entries_and_the_watermark_only(events, watermark):
    live = Dedup(WINDOW)
    for key, ts in events:
        live.repeat(key, ts)
    restored = Dedup(WINDOW)
    restored.restore(dict(live.seen))
    live.expire(watermark)
    restored.expire(watermark)
    assert restored.seen == live.seen
    assert all(ts >= watermark - WINDOW for ts in live.seen.values())


@given(entries, st.integers(0, 1_200))
def test_dedup_names_every_id_it_remembered_or_forgot(events, watermark):
    dedup = Dedup(WINDOW, changed=set())
    before = dict(dedup.seen)
    for key, ts in events:
        dedup.repeat(key, ts)
    dedup.expire(watermark)
    changed = {k for k in set(before) | set(dedup.seen) if before.get(k) != dedup.seen.get(k)}
    assert changed <= dedup.changed
