"""Smoke test of `profilestream bench`: it runs end to end on a tiny shop and writes every figure.

No timing is asserted here (timing lives in the benchmark only); only that the figures exist.
"""

from __future__ import annotations

import json

import pytest

from profilestream.cli import main


@pytest.mark.broker
def test_bench_writes_every_figure(tmp_path, monkeypatch, capsys):
    for name in [n for n in __import__("os").environ if n.startswith("PROFILESTREAM_")]:
        monkeypatch.delenv(name)
    out = tmp_path / "bench.json"
    args = ["bench", "--events", "2000", "--skip-latency", "--skip-four", "--serial-repeat", "1", "--out", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    for key in (
        "date",
        "machine",
        "workload",
        "ceiling",
        "dataflow_1p",
        "dataflow_2p",
        "ratio_1p_to_ceiling",
        "scale_2p_over_1p",
        "same_trigger_ids_1p_2p",
        "same_profiles_1p_2p",
        "idle",
        "serial",
        "latency",
        "memory",
        "targets",
    ):
        assert key in result, key
    assert result["workload"]["events"] == 2000
    assert result["same_trigger_ids_1p_2p"] is True
    assert result["same_profiles_1p_2p"] is True
    assert result["same_trigger_ids_1p_4p"] is None  # skipped
    for key in ("eps", "read_only_eps"):
        assert result["ceiling"][key] > 0
    for run, processes in (("dataflow_1p", 1), ("dataflow_2p", 2)):
        assert result[run]["eps"] > 0 and result[run]["peak_rss_mb"] > 0 and result[run]["triggers"] > 0
        assert result[run]["profiles"] > 0
        # one figure per process of the run, each a real process's
        assert len(result[run]["peak_rss_mb_per_process"]) == processes
        assert all(mb > 0 for mb in result[run]["peak_rss_mb_per_process"])
        assert 1 / processes <= result[run]["busiest_cpu_share"] <= 1
    busy = result["dataflow_1p"]["resolve_step"]  # the serial stage's share of the one-process run
    assert busy["us_per_event"] > 0 and 0 < busy["share_of_wall"] < 1
    assert result["idle"]["peak_rss_mb"] > 0
    serial = result["serial"]
    assert serial["events"] == 2000 and serial["us_per_event"] > 0 and serial["ceiling_eps"] > 0
    assert serial["items_out_per_event"] >= 1  # every event is at least one command to its shard
    assert result["latency"] is None  # skipped
    sizes = result["memory"]["state"]
    assert len(sizes) == 2 and all(s["profiles"] > 0 and s["bytes_per_profile"] > 0 for s in sizes)
    targets = result["targets"]
    assert set(targets) == {
        "2p_at_least_1.6x_1p",
        "1p_at_least_31,228_eps",
        "serial_ceiling_at_least_250k_eps",
        "state_2p_at_most_60%",
        "busiest_of_4p_at_most_35%_cpu",
        "snapshot_at_most_10%_of_full",
        "same_outputs_1p_2p_4p",
        "p99_under_100ms",
    }
    assert targets["same_outputs_1p_2p_4p"] is True
    assert targets["busiest_of_4p_at_most_35%_cpu"] is None and targets["p99_under_100ms"] is None  # skipped
    printed = capsys.readouterr().out
    assert "ratio to ceiling" in printed and "serial stage alone" in printed


def test_latency_rates_are_parsed_and_checked():
    import argparse

    from profilestream.devtools.bench import _rates

    assert _rates("5000, 10000") == [5000.0, 10000.0]
    for bad in ("fast", "0", "-5", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            _rates(bad)


def test_snapshot_watch_sums_each_epoch_and_the_full_state(tmp_path):
    import sqlite3

    from profilestream.devtools.bench.snapshots import SnapshotWatch, seconds_per_epoch

    db = sqlite3.connect(tmp_path / "part-0.sqlite3")
    db.execute("create table snaps (step_id text, state_key text, snap_epoch integer, ser_change blob)")
    rows = [
        ("resolve", "identity", 1, b"x" * 100),  # the first epoch: everything the backlog built
        ("profiles", "p-1", 1, b"x" * 50),
        ("profiles", "p-2", 1, b"x" * 50),
        ("resolve", "identity", 2, b"x" * 120),  # later epochs: what changed
        ("profiles", "p-1", 2, b"x" * 60),
        ("profiles", "p-2", 3, None),  # discarded
        ("resolve", "identity", 3, b"x" * 130),
    ]
    db.executemany("insert into snaps values (?, ?, ?, ?)", rows)
    db.commit()
    watch = SnapshotWatch(tmp_path)
    watch.poll()
    db.execute("delete from snaps where snap_epoch = 1")  # Bytewax drops superseded rows
    db.commit()
    watch.poll()
    summary = watch.summary()
    assert summary["bytes_per_epoch"] == [200, 180, 130]
    assert summary["rows_per_epoch"] == [3, 2, 2]
    assert summary["bytes_per_epoch_by_step"] == {"profiles": [100, 60, 0], "resolve": [100, 120, 130]}
    assert summary["full_state_bytes"] == 130 + 60  # the latest of each key; p-2 was discarded
    assert summary["median_bytes_per_epoch"] == 180  # of the epochs after the first
    assert summary["median_share_of_full"] == round(180 / 190, 4)
    metrics = {
        "profilestream_snapshots_total": 4.0,
        "profilestream_snapshot_pickle_seconds_total": 1.0,
        "profilestream_profile_snapshot_seconds_total": 1.0,
    }
    assert seconds_per_epoch(metrics) == 0.5
    assert seconds_per_epoch({}) is None


def test_snapshot_watch_counts_resolutions_changelog_in_the_epoch_its_snapshot_names(tmp_path):
    import pickle
    import sqlite3

    from profilestream.devtools.bench.snapshots import CHANGELOG_STEP, SnapshotWatch
    from profilestream.flows.changelog import NAME, Changelog

    log = Changelog(tmp_path / NAME, committed=lambda: None)
    changelog_id = log.reset()
    log.write([(0, "p-1", b"x" * 40), (0, "p-2", b"x" * 40)])  # seq 0
    log.write([(0, "p-1", b"x" * 10), (0, "p-2", None)])  # seq 1: p-1 changed, p-2 merged away
    log.write([(1, "d-1", b"x" * 20)])  # seq 2: never named by a committed snapshot
    db = sqlite3.connect(tmp_path / "part-0.sqlite3")
    db.execute("create table snaps (step_id text, state_key text, snap_epoch integer, ser_change blob)")
    blob = lambda seq: pickle.dumps(pickle.dumps({"format": 3, "changelog": changelog_id, "seq": seq}))  # noqa: E731
    db.executemany(
        "insert into snaps values (?, ?, ?, ?)",
        [("flow.resolve", "identity", 5, blob(0)), ("flow.resolve", "identity", 6, blob(1))],
    )
    db.commit()
    watch = SnapshotWatch(tmp_path)
    watch.poll()
    summary = watch.summary()
    sizes = summary["bytes_per_epoch_by_step"][CHANGELOG_STEP]
    assert sizes == [(3 + 40) * 2, (3 + 10) + 3]  # epochs 5 and 6: key and value bytes
    # the full state: the newest version of each key that still has one (p-1's, d-1's)
    assert summary["full_state_bytes"] == len(blob(1)) + 10 + 20  # and resolution's newest snapshot
