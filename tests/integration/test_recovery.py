"""Crash safety: `run --until-idle --processes 2 --recovery-dir D` killed with SIGKILL three times
and restarted with the same D ends with the outputs of an uninterrupted run (issues 5 and 16,
acceptance). Two processes, so the profiles' shards are on both and merged contents cross
between them through the transfers topic; every kill is of the whole cluster at once (each of its
processes), as a crash of the machine would be.

The shop is 100k generated events. The kill points are positions in the input, not times: the
run logs its progress (engine totals, which a resumed run takes over from the snapshot) every
0.1 s, and the test kills it once it has applied 25%, 50% and 75% of the events (the first run
also only once it has taken two snapshots, so that one is surely committed): every restart
resumes from a snapshot, the kill points do not depend on the machine's speed, and the kills
land wherever the run happens to be (reading, applying, writing, snapshotting).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from pathlib import Path

import pytest

from profilestream.devtools.sample import ShopSpec
from profilestream.flows import runner
from profilestream.kafka.clients import create_topics
from support.runkit import Run, clean_env, load_shop, outputs, write_config

EVENTS = 100_000
KILL_AT = (0.25, 0.50, 0.75)
PROCESSES = 2  # the profiles' shards on both, merged contents crossing between them (issue 16)


def _key(record: dict) -> str:
    return json.dumps(record, sort_keys=True)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a local cluster's processes, /proc/<pid>/stat)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running, or about to be: not gone and not a zombie waiting to be reaped."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _crash(run: Run) -> None:
    """The whole cluster dies at once, as on a crash of its machine: SIGKILL to every process of
    the run (killing the parent alone would leave its cluster running on), then wait until they
    are gone."""
    cluster = _children(run.proc.pid)
    assert len(cluster) == PROCESSES, cluster
    for pid in cluster:
        os.kill(pid, signal.SIGKILL)
    run.kill(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in cluster):
        assert time.monotonic() < deadline, "the cluster's processes outlived SIGKILL"
        time.sleep(0.05)


@pytest.mark.broker
@pytest.mark.slow
def test_killed_three_times_and_resumed_gives_the_outputs_of_an_uninterrupted_run(broker, tmp_path):
    prefix = f"crash{tmp_path.name[-12:]}"
    extra = '[run]\nsnapshot_interval = "1s"\n'
    _, reference = write_config(tmp_path / "reference.toml", broker.bootstrap, prefix, "ref", extra)
    crash_toml, crashed = write_config(tmp_path / "crash.toml", broker.bootstrap, prefix, "crash", extra)
    began = time.monotonic()
    assert load_shop(reference, ShopSpec(events=EVENTS, seed=23)) == EVENTS
    create_topics(crashed)  # its own outputs: `run` creates no topics
    loaded = time.monotonic()
    assert runner.run(reference, until_idle=True) == 0
    uninterrupted = time.monotonic() - loaded
    expected = outputs(reference)
    crash_start = time.monotonic()

    recovery = tmp_path / "recovery"
    env = clean_env(PROFILESTREAM_RUN_PROGRESS_INTERVAL="100ms")
    args = ("--config", str(crash_toml), "--until-idle", "--processes", str(PROCESSES), "--recovery-dir", str(recovery))
    resumed_from = []
    for n, fraction in enumerate(KILL_AT):
        run = Run(*args, env=env)
        snapshots = 2 if n == 0 else 0  # the first run: let it commit a snapshot of its own
        at = run.wait_for(
            lambda line, fraction=fraction, snapshots=snapshots: (
                line["applied"] >= fraction * EVENTS and line.get("snapshots", 0) >= snapshots
            ),
            limit=300,  # a bound, not a measurement: two processes on a loaded 2-core machine
            what=f"{fraction:.0%} of the events applied",
        )
        _crash(run)
        assert run.proc.returncode == -signal.SIGKILL
        if n:
            resumed = run.events("resumed")
            assert len(resumed) == 1, "\n".join(
                [json.dumps(line) for line in run.lines if line.get("event") != "progress"] + run.other
            )
            resumed_from.append(resumed[0])
        print(
            f"kill {n + 1}: applied {at['applied']}, {at.get('snapshots', 0)} snapshot(s) taken, last "
            f"{at.get('snapshot_bytes')} bytes in {at.get('snapshot_ms')} ms"
        )
    final = Run(*args, env=env)
    assert final.wait(400) == 0, final.log_tail()
    crashing = time.monotonic() - crash_start
    [resumed] = final.events("resumed")
    resumed_from.append(resumed)
    assert not final.other, final.other  # nothing but JSON log lines on stderr
    assert [line["reason"] for line in final.events("end")] == ["done"] * PROCESSES  # one line per process
    # every restart went on from a snapshot (not from the beginning)
    assert all(r["profiles"] > 0 for r in resumed_from)

    got = outputs(crashed)
    print(
        f"load {loaded - began:.1f}s, uninterrupted run {uninterrupted:.1f}s, four crashed/resumed runs "
        f"{crashing:.1f}s, resume load {final.events('resumed')[0]['snapshot_bytes']} bytes"
    )
    assert len(expected["profiles"]) > 5000 and len(expected["triggers"]) > 1000
    assert got["profiles"] == expected["profiles"]
    assert got["crm_feed"] == expected["crm_feed"]

    reference_triggers = {t["trigger_id"]: t for t in expected["triggers"]}
    assert len(reference_triggers) == len(expected["triggers"])  # the uninterrupted run has no repeats
    assert {t["trigger_id"] for t in got["triggers"]} == set(reference_triggers)
    for trigger in got["triggers"]:  # at-least-once: a repeat is the same trigger, same id
        assert trigger == reference_triggers[trigger["trigger_id"]]
    assert {_key(m) for m in got["merges"]} == {_key(m) for m in expected["merges"]}
    assert got["dead_letters"] == expected["dead_letters"] == []


@pytest.mark.broker
@pytest.mark.slow
def test_sigterm_stops_in_order_and_a_restart_goes_on_without_repeats(broker, tmp_path):
    """`docker stop` (SIGTERM): the run stops reading, flushes, snapshots and exits 130; the
    restart resumes from that last snapshot, so nothing is written twice."""
    prefix = f"stop{tmp_path.name[-12:]}"
    extra = '[run]\nsnapshot_interval = "1s"\n'
    _, reference = write_config(tmp_path / "reference.toml", broker.bootstrap, prefix, "ref", extra)
    toml, stopped = write_config(tmp_path / "stop.toml", broker.bootstrap, prefix, "stop", extra)
    events = 30_000
    assert load_shop(reference, ShopSpec(events=events, seed=29)) == events
    create_topics(stopped)  # its own outputs: `run` creates no topics
    assert runner.run(reference, until_idle=True) == 0
    expected = outputs(reference)

    args = ("--config", str(toml), "--until-idle", "--recovery-dir", str(tmp_path / "recovery"))
    env = clean_env(PROFILESTREAM_RUN_PROGRESS_INTERVAL="100ms")
    run = Run(*args, env=env)
    run.wait_for(lambda line: line["applied"] >= events // 3, limit=120, what="a third of the events applied")
    run.kill(signal.SIGTERM)
    assert run.proc.returncode == 130, run.log_tail()
    [end] = run.events("end")
    assert end["reason"] == "stopped" and end["applied"] < events
    again = Run(*args, env=env)
    assert again.wait(120) == 0, again.log_tail()
    assert again.events("resumed")

    got = outputs(stopped)
    assert got["profiles"] == expected["profiles"]
    key = lambda t: t["trigger_id"]  # noqa: E731
    assert sorted(got["triggers"], key=key) == sorted(expected["triggers"], key=key)  # no repeats
    _assert_changelog_compacted(tmp_path / "recovery")


def _assert_changelog_compacted(recovery: Path) -> None:
    """What Bytewax committed is read from a real recovery directory (`committed_seq`, in a child
    process), and the changelog's compaction never went past it: one version of each key up to
    its horizon."""
    import sqlite3
    from contextlib import closing

    from profilestream.flows.changelog import NAME, committed_seq

    committed = committed_seq(recovery)
    assert committed is not None and committed > 0
    with closing(sqlite3.connect(recovery / NAME)) as db:
        (horizon,) = db.execute("SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'horizon'").fetchone()
        (superseded,) = db.execute(
            "SELECT count(*) FROM entries e WHERE EXISTS "
            "(SELECT 1 FROM entries n WHERE n.kind = e.kind AND n.key = e.key AND n.seq > e.seq AND n.seq <= ?)",
            (horizon,),
        ).fetchone()
        (rows,) = db.execute("SELECT count(*) FROM entries").fetchone()
    # the horizon is what the child process last saw committed (-1 if the runs ended before it
    # first answered: these runs are seconds long); the compaction itself is tests/unit/test_changelog.py's
    assert horizon <= committed
    assert rows > 0 and superseded == 0


def test_a_recovery_dir_that_is_something_else_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(runner.RecoveryDirError, match="not empty"):
        runner.prepare_recovery(str(tmp_path))
    with pytest.raises(runner.RecoveryDirError, match="not a directory"):
        runner.prepare_recovery(str(tmp_path / "notes.txt"))
    fresh = tmp_path / "new" / "recovery"
    assert runner.prepare_recovery(str(fresh)) == fresh
    assert sorted(p.name for p in fresh.iterdir()) == ["part-0.sqlite3", runner.LOCK_NAME]
    runner.release_recovery(fresh)
    assert runner.prepare_recovery(str(fresh)) == fresh  # an existing one is resumed from
    runner.release_recovery(fresh)
    with open(fresh / runner.LOCK_NAME, "a+") as other:  # another run holds it
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(runner.RecoveryDirError, match="in use by another run"):
            runner.prepare_recovery(str(fresh))


def test_a_resumed_resolution_is_not_held_by_the_downtime_and_foreign_snapshots_are_refused(tmp_path):
    import pickle

    import pytest

    from profilestream.domain.engine import Engine
    from profilestream.domain.resolve import Resolver
    from profilestream.domain.rules import Rules
    from profilestream.flows import snapshot as snapshots
    from profilestream.flows.changelog import Changelog
    from profilestream.flows.resolve_step import ResolveLogic, resume_resolver

    log = Changelog(tmp_path / "changelog.db")
    log.reset()
    resolver = Resolver(Rules(), always_on=True)
    resolver.expect(["clicks/0", "clicks/1"], now=1_000)
    snapshot = ResolveLogic(resolver, bounded=False, loop_partitions=3, changelog=log).snapshot()

    same = resume_resolver(snapshot, bounded=False, now=3_600_000, loop_partitions=3, changelog=log).resolver
    # an hour down is not an hour of silence: the partitions count as heard from at the restart,
    # so the watermark does not jump to the clock before the backlog is read
    assert {clock.heard_at for clock in same.timeline.sources.values()} == {3_600_000}
    with pytest.raises(snapshots.Refused, match="transfer partitions"):  # counts are per loop partition
        resume_resolver(snapshot, bounded=False, now=0, loop_partitions=4, changelog=log)
    earlier = pickle.dumps({"engine": Engine(Rules()), "finished": False})  # the one-step build's format
    with pytest.raises(snapshots.Refused, match="earlier build"):
        resume_resolver(earlier, bounded=False, now=0, loop_partitions=3, changelog=log)
    other = Changelog(tmp_path / "other.db")
    other.reset()
    with pytest.raises(snapshots.Refused, match="not the one its snapshots were written with"):
        resume_resolver(snapshot, bounded=False, now=0, loop_partitions=3, changelog=other)
