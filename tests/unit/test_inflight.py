"""The counters by which the reading processes of a cluster wait for the engine's process."""

from __future__ import annotations

from profilestream.kafka.inflight import InFlight


def test_readers_pause_while_too_many_events_are_on_their_way(tmp_path):
    path = tmp_path / "inflight"
    InFlight.create(path, 3)
    engine = InFlight(path, 3, slot=1, engine=1, limit=100)
    readers = [InFlight(path, 3, slot=i, engine=1, limit=100) for i in (0, 2)]  # as other processes would
    assert all(r.may_read() for r in readers) and engine.ahead() == 0
    readers[0].sent(60)
    readers[1].sent(40)
    assert engine.ahead() == 100 and not any(r.may_read() for r in readers)
    engine.taken(1)  # the engine took one in
    assert readers[1].ahead() == 99 and all(r.may_read() for r in readers)
    readers[0].sent(0)
    assert readers[0].ahead() == 99


def test_counts_survive_large_numbers(tmp_path):
    path = tmp_path / "inflight"
    InFlight.create(path, 2)
    reader, engine = InFlight(path, 2, 0, 1, limit=10), InFlight(path, 2, 1, 1, limit=10)
    for _ in range(3):
        reader.sent(2**40)
        engine.taken(2**40 - 5)
    assert engine.ahead() == 15 and not reader.may_read()


def test_the_engine_counts_in_its_slot_from_any_process(tmp_path):
    """Were the engine's step in a reading process after all, its count still lands in the
    engine's slot, so readers are never paused for good."""
    path = tmp_path / "inflight"
    InFlight.create(path, 2)
    reader = InFlight(path, 2, slot=0, engine=1, limit=10)
    reader.sent(50)
    assert not reader.may_read()
    reader.taken(45)  # the engine's step, running in the reading process
    assert reader.ahead() == 5 and reader.may_read()
