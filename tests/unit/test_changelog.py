"""Resolution's changelog (`flows/changelog.py`, `flows/snapshot.py` format 3): a resolver resumed
from any snapshot is the resolver of that moment, though each snapshot wrote only what changed."""

from __future__ import annotations

import copy
import pickle
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profilestream.config import Config
from profilestream.devtools.bench.serial import decoded_batches, sources
from profilestream.domain.resolve import Resolver
from profilestream.flows import snapshot
from profilestream.flows.changelog import Changelog

BATCH_EVENTS = 3000
BEHIND = 3  # how many snapshots Bytewax's commit lags the newest, in these tests


@cache
def _batches(seed: int) -> list[list[Any]]:
    """A generated shop (merges, shared devices, orders, erasures) in the step's batches of 1,000."""
    return decoded_batches(Config(), BATCH_EVENTS, seed)


def _resolver() -> Resolver:
    resolver = Resolver(Config().rules(), always_on=False)
    resolver.expect(sources(), 0)
    resolver.track()
    return resolver


def _state(resolver: Resolver) -> tuple[Any, ...]:
    """Everything a resolver decides from, compared by value (sets pickle in any order), copied
    (the live resolver goes on changing its sets and lists)."""
    graph = resolver.graph
    return copy.deepcopy(
        (
            {pid: person.__reduce__()[1] for pid, person in graph.profiles.items()},
            dict(graph.by_device),
            dict(graph.by_key),
            dict(graph.by_customer),
            {device: visit.__reduce__()[1] for device, visit in resolver.devices.items()},
            dict(resolver.dedup.seen),
            dict(resolver.orders.web),
            dict(resolver.orders.crm),
            _pending(resolver),
            resolver.watermark,
            resolver.timeline.pending,
            resolver.merges,
            dict(resolver.stats),
        )
    )


def _pending(resolver: Resolver) -> set[tuple[int, str]]:
    """The deadlines that will still be sent: stale entries (the cart's deadline moved, the
    profile merged away) and repeats are skipped when due."""
    profiles = resolver.graph.profiles
    return {(at, pid) for at, pid in resolver.deadlines if pid in profiles and profiles[pid].deadline == at}


def _small(batches: list[list[Any]]) -> list[list[Any]]:
    """The batches cut in five, so that a snapshot lands every few hundred events."""
    return [batch[i : i + 200] for batch in batches for i in range(0, len(batch), 200)]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 3), every=st.integers(1, 4), resume_at=st.integers(0, 30))
def test_a_resolver_resumed_from_any_snapshot_is_the_resolver_of_that_moment(tmp_path_factory, seed, every, resume_at):
    path = tmp_path_factory.mktemp("changelog") / "c.db"
    log = Changelog(path, committed=lambda: log.next_seq - BEHIND)
    log.reset()
    live = _resolver()
    taken: list[tuple[bytes, tuple[Any, ...]]] = []
    for i, batch in enumerate(_small(_batches(seed))):
        live.feed(batch, 0)
        if i % every == 0:
            blob, _ = snapshot.dump_resolver(live, False, [i], log)
            taken.append((blob, _state(live)))
    assert len(taken) > BEHIND
    # the newest, and one Bytewax has committed (a resume after a crash: the newer snapshots'
    # rows are undone)
    for blob, expected in (taken[-1], taken[-1 - resume_at % BEHIND]):
        resumed, finished, sent = snapshot.load_resolver(blob, Changelog(path))
        assert _state(resumed) == expected
        assert not finished and sent == [pickle.loads(blob)["sent"][0]]


def test_a_resumed_run_goes_on_as_an_uninterrupted_one(tmp_path):
    """Resume from an older snapshot (its later rows undone), feed the rest, snapshot again and
    resume once more: the same state as a resolver that never stopped."""
    batches = _small(_batches(5))
    path = tmp_path / "c.db"
    log = Changelog(path, committed=lambda: log.next_seq - BEHIND)
    log.reset()
    first = _resolver()
    blobs = []
    for batch in batches[:12]:
        first.feed(batch, 0)
        blobs.append(snapshot.dump_resolver(first, False, [], log)[0])
    log = Changelog(path)  # the restart: the resume went back two snapshots
    second, _, _ = snapshot.load_resolver(blobs[9], log)
    for batch in batches[10:]:
        second.feed(batch, 0)
    blob, _ = snapshot.dump_resolver(second, False, [], log)
    third, _, _ = snapshot.load_resolver(blob, Changelog(path))
    uninterrupted = _resolver()
    for batch in batches:
        uninterrupted.feed(batch, 0)
    assert _state(third) == _state(second) == _state(uninterrupted)
    assert third.finish(0) == uninterrupted.finish(0)  # and it decides the same from here on


def _tables_bytes(resolver: Resolver) -> int:
    """The pickled size of the tables the changelog keeps, as one snapshot of them all would be."""
    graph = resolver.graph
    tables = [record.__reduce__()[1] for record in [*graph.profiles.values(), *resolver.devices.values()]]
    tables += [*resolver.dedup.seen.items(), *resolver.orders.web.items(), *resolver.orders.crm.items()]
    return sum(len(pickle.dumps(entry)) for entry in tables)


def test_each_snapshot_writes_what_changed_and_compaction_keeps_one_version(tmp_path):
    log = Changelog(tmp_path / "c.db", committed=lambda: log.next_seq - BEHIND)
    log.reset()
    live = _resolver()
    rows, whole = [], []
    for batch in _small(_batches(1)):
        live.feed(batch, 0)
        blob, size = snapshot.dump_resolver(live, False, [], log)
        rows.append(size - len(blob))  # what went to the changelog
        whole.append(_tables_bytes(live))  # what writing the tables whole would have cost
    persons = len(live.graph.profiles)
    assert persons > 100
    assert sum(rows) < sum(whole) / 2
    db = log._db
    (count,) = db.execute("SELECT count(*) FROM entries").fetchone()
    (keys,) = db.execute("SELECT count(DISTINCT kind || key) FROM entries").fetchone()
    # one version a key, but for those written after the committed snapshot (a resume may go back to it)
    (recent,) = db.execute("SELECT count(*) FROM entries WHERE seq > ?", (log.next_seq - 1 - BEHIND,)).fetchone()
    assert count <= keys + recent
    assert keys <= persons + len(live.devices) + recent  # merged-away and erased persons leave


def test_a_resume_from_before_what_the_changelog_keeps_is_refused(tmp_path):
    log = Changelog(tmp_path / "c.db", committed=lambda: log.next_seq - 1)
    log.reset()
    live = _resolver()
    blobs = []
    for batch in _small(_batches(2))[:5]:
        live.feed(batch, 0)
        blobs.append(snapshot.dump_resolver(live, False, [], log)[0])
    with pytest.raises(snapshot.Refused, match="older than what the changelog keeps"):
        snapshot.load_resolver(blobs[0], Changelog(tmp_path / "c.db"))


def test_a_new_run_forgets_what_an_earlier_one_left(tmp_path: Path):
    log = Changelog(tmp_path / "c.db")
    old = log.reset()
    live = _resolver()
    live.feed(_small(_batches(3))[0], 0)
    blob, _ = snapshot.dump_resolver(live, False, [], log)
    assert log.reset() != old
    assert log._db.execute("SELECT count(*) FROM entries").fetchone() == (0,)
    with pytest.raises(snapshot.Refused, match="not the one"):
        snapshot.load_resolver(blob, log)


def test_without_a_view_of_the_commits_superseded_rows_are_kept(tmp_path):
    """No recovery partitions beside the file (as on a process of a cluster across machines):
    nothing is compacted before `FAR` snapshots, so any snapshot can still be resumed from."""
    log = Changelog(tmp_path / "c.db")  # the default: Bytewax's partitions in its directory
    log.reset()
    live = _resolver()
    taken = []
    for batch in _small(_batches(4))[:8]:
        live.feed(batch, 0)
        taken.append((snapshot.dump_resolver(live, False, [], log)[0], _state(live)))
    oldest, expected = taken[0]
    assert _state(snapshot.load_resolver(oldest, Changelog(tmp_path / "c.db"))[0]) == expected
