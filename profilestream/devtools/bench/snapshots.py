"""7. Recovery snapshots in a live run: bytes written per epoch, against a full-state snapshot.

Why read the recovery directory: what a snapshot costs is what Bytewax writes, and Bytewax writes
each epoch's snapshots as rows of its SQLite recovery partitions (`snaps`: step, state key, epoch,
pickled state; NULL for a key whose state was discarded). A poller reads them (read-only) while
the run goes on, because Bytewax deletes rows that a later epoch supersedes. Per epoch: the rows
and bytes written. The full-state figure is what one snapshot of everything would write: the
latest row of every (step, key) at the end, summed. The seconds come from the run's own metrics
(`profilestream_snapshot_pickle_seconds`, `profilestream_profile_snapshot_seconds`: time spent
pickling, resolution's and the profiles'), scraped from its metrics port before it stops.

Resolution's persons and devices are not in Bytewax's partitions but in its changelog
(`flows/changelog.py`), versioned by the snapshot's `seq`: the poller reads that file too, maps
each `seq` to its epoch through resolution's own snapshot row (which names its `seq`), and counts
its rows as the step `resolve.changelog`; its full state is the newest version of every key.
"""

from __future__ import annotations

import pickle
import re
import sqlite3
import threading
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

from profilestream.flows import changelog
from profilestream.flows.snapshot import seq_of

CHANGELOG_STEP = "resolve.changelog"


class SnapshotWatch(threading.Thread):
    """Polls the SQLite partitions under `directory` every `every` seconds."""

    def __init__(self, directory: Path, every: float = 0.5):
        super().__init__(daemon=True)
        self.directory = directory
        self.every = every
        self.stop = threading.Event()
        self.epochs: dict[tuple[str, int, str], tuple[int, int]] = {}  # (part, epoch, step) -> (rows, bytes)
        self.latest: dict[tuple[str, str], tuple[int, int]] = {}  # (step, key) -> (epoch, bytes)
        self.seq_epoch: dict[int, int] = {}  # resolution's changelog version -> its epoch
        self.changelog: dict[int, tuple[int, int]] = {}  # seq -> (rows, bytes), the most seen

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.poll()
        self.poll()

    def poll(self) -> None:
        for part in sorted(self.directory.glob("**/*.sqlite3")):
            found = _read(
                part,
                "select step_id, state_key, snap_epoch, coalesce(length(ser_change), 0) from snaps",
                "select snap_epoch, ser_change from snaps where step_id like '%.resolve' and ser_change is not null",
            )
            if found is None:
                continue  # being written, or not created yet: the next poll reads it
            rows, resolution = found
            for epoch, ser in resolution:
                try:
                    self.seq_epoch[seq_of(pickle.loads(ser))] = epoch
                except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError):
                    continue  # not a snapshot of this build's resolution
            per_epoch: dict[tuple[int, str], list[int]] = {}
            for step, key, epoch, size in rows:
                counts = per_epoch.setdefault((epoch, step), [0, 0])
                counts[0] += 1
                counts[1] += size
                seen = self.latest.get((step, key))
                if seen is None or epoch >= seen[0]:
                    self.latest[step, key] = (epoch, size)
            for (epoch, step), (n, size) in per_epoch.items():
                old = self.epochs.get((part.name, epoch, step), (0, 0))
                self.epochs[part.name, epoch, step] = (max(old[0], n), max(old[1], size))
        for path in sorted(self.directory.glob(f"**/{changelog.NAME}")):
            self._poll_changelog(path)

    def _poll_changelog(self, path: Path) -> None:
        found = _read(
            path,
            "select seq, count(*), sum(length(key) + coalesce(length(value), 0)) from entries group by seq",
            "select kind, key, max(seq), coalesce(length(value), 0) from entries group by kind, key",
        )
        if found is None:
            return
        written, newest = found
        for seq, n, size in written:
            old = self.changelog.get(seq, (0, 0))
            self.changelog[seq] = (max(old[0], n), max(old[1], size))
        for key in [k for k in self.latest if k[0] == CHANGELOG_STEP]:
            del self.latest[key]  # the newest versions are read whole each time
        for kind, key, seq, size in newest:
            if size:
                self.latest[CHANGELOG_STEP, f"{kind}/{key}"] = (seq, size)

    def summary(self) -> dict[str, Any]:
        """Bytes per epoch (all partitions summed, and per step) and the full state's bytes."""
        by_epoch: dict[int, list[int]] = {}
        by_step: dict[str, dict[int, int]] = {}
        for (_part, epoch, step), (n, size) in self.epochs.items():
            counts = by_epoch.setdefault(epoch, [0, 0])
            counts[0] += n
            counts[1] += size
            steps = by_step.setdefault(step, {})
            steps[epoch] = steps.get(epoch, 0) + size
        for seq, (n, size) in self.changelog.items():
            named = self.seq_epoch.get(seq)
            if named is None:
                continue  # a version no snapshot row named (yet): not committed
            epoch = named
            counts = by_epoch.setdefault(epoch, [0, 0])
            counts[0] += n
            counts[1] += size
            steps = by_step.setdefault(CHANGELOG_STEP, {})
            steps[epoch] = steps.get(epoch, 0) + size
        epochs = sorted(by_epoch)
        full = sum(size for _epoch, size in self.latest.values())
        # the first epoch with state holds everything the backlog built: steady state follows it
        steady = [by_epoch[e][1] for e in epochs[1:]] or [by_epoch[e][1] for e in epochs]
        steady.sort()
        median = steady[len(steady) // 2] if steady else 0
        return {
            "epochs": len(epochs),
            "bytes_per_epoch": [by_epoch[e][1] for e in epochs],
            "rows_per_epoch": [by_epoch[e][0] for e in epochs],
            "bytes_per_epoch_by_step": {
                step: [sizes.get(e, 0) for e in epochs] for step, sizes in sorted(by_step.items())
            },
            "median_bytes_per_epoch": median,  # after the first
            "max_bytes_per_epoch": steady[-1] if steady else 0,
            "full_state_bytes": full,
            "median_share_of_full": round(median / full, 4) if full else None,
        }


def _read(path: Path, *queries: str) -> list[list[Any]] | None:
    """The rows of each query, read-only; None while the file is busy or not there yet."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
            return [db.execute(query).fetchall() for query in queries]
    except sqlite3.Error:
        return None


def scrape(port: int) -> dict[str, float]:
    """The run's snapshot metrics (Prometheus text on /metrics); {} if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"(profilestream_[a-z_]*snapshot[a-z_]*)(?:\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if match:
            values[match.group(1)] = values.get(match.group(1), 0.0) + float(match.group(2))
    return values


def seconds_per_epoch(metrics: dict[str, float]) -> float | None:
    """Time spent pickling snapshots per epoch (resolution's and every profile's), from `scrape`."""
    epochs = metrics.get("profilestream_snapshots_total") or metrics.get("profilestream_snapshots")
    if not epochs:
        return None
    pickling = metrics.get("profilestream_snapshot_pickle_seconds_total", 0.0) + metrics.get(
        "profilestream_profile_snapshot_seconds_total", 0.0
    )
    return round(pickling / epochs, 4)


__all__ = ["SnapshotWatch", "scrape", "seconds_per_epoch"]
