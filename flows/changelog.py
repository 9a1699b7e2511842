"""Resolution's changelog: the persons and devices of identity resolution, written as what changed.

Why a file of our own beside Bytewax's recovery partitions: resolution is one key (`resolve`),
and Bytewax snapshots a key whole, so its state (every person and device of the run) was pickled
at every epoch, growing with the run. Here each snapshot writes only the persons and devices that
changed since the one before, as rows `(kind, key, seq, value)`, `seq` being the snapshot's number;
the key's own Bytewax snapshot keeps the rest (timeline, windows, calendar: bounded by time) and
the `seq` it belongs to. Like a Kafka Streams changelog topic, but with the version of every row:
a crash can leave rows of snapshots that Bytewax never committed (the run resumes from an earlier
epoch), and those are undone (`load` drops every row after the resumed `seq`).

Compaction: a row superseded by a version at or before the snapshot Bytewax has committed can
never be read again (a resume starts from that snapshot or a later one), so it is deleted when the
next snapshot is written, and so is a tombstone there. The committed snapshot is read from the
recovery partitions beside this file (`commits.py`) by a small child process every few seconds
(`CommitWatch`), never by the run's own process (`commits.py` says why).
Across machines a process holds only its own partition and cannot see what the cluster has
committed: there, rows are kept until `FAR` snapshots have superseded them (an hour at the default
interval of 10 s). The horizon is kept in the file, and a resume from before it is refused
(`Refused`) rather than answered with state that is not the snapshot's.

One SQLite file (`NAME`) in the recovery directory, WAL and `synchronous=FULL`: a snapshot's
rows are on disk before Bytewax is handed the key's snapshot that names them.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from profilestream.flows.snapshot import Refused, Row

__all__ = ["FAR", "NAME", "Changelog", "CommitWatch", "committed_seq"]

NAME = "resolution-changelog.db"
FAR = 360  # without a view of what the cluster committed: snapshots a superseded row is kept


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    kind INTEGER NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, value BLOB,
    PRIMARY KEY (kind, key, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_seq ON entries (seq);
"""


class Changelog:
    """The changelog file of one recovery directory, opened by the worker that resolves."""

    def __init__(self, path: Path, committed: Callable[[], int | None] | None = None):
        """`committed`: the seq of the snapshot Bytewax has committed (default: `committed_seq`
        of the file's directory)."""
        self.path = path
        self.committed = committed if committed is not None else CommitWatch(path.parent).latest
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.next_seq = 0

    # --- identity of the file -------------------------------------------------------------------

    def _meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def id(self) -> str:
        found = self._meta("id")
        return found if found is not None else self.reset()

    def reset(self) -> str:
        """A new run: nothing of an earlier one (a first run killed before its first committed
        epoch leaves rows no snapshot names) is ever read; a new id tells the files apart."""
        new = uuid.uuid4().hex
        with self._transaction():
            for table in ("entries", "meta"):
                self._db.execute(f"DELETE FROM {table}")
            self._db.executemany("INSERT INTO meta VALUES (?, ?)", [("id", new), ("horizon", "-1")])
        self.next_seq = 0
        return new

    # --- writing --------------------------------------------------------------------------------

    def write(self, rows: Iterable[Row]) -> tuple[int, int]:
        """Write one snapshot's rows and compact; its (seq, bytes written)."""
        seq = self.next_seq
        rows = list(rows)
        size = sum(len(key) + (0 if value is None else len(value)) for _, key, value in rows)
        committed = self.committed()
        horizon = seq - FAR if committed is None else min(committed, seq - 1)
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", [(k, key, seq, v) for k, key, v in rows]
            )
            if horizon >= 0:
                self._compact(horizon)
        self.next_seq = seq + 1
        return seq, size

    def _compact(self, horizon: int) -> None:
        """Rows superseded by a version written since the last horizon, at or before the new
        one, go; so do tombstones there (a key gone is a key absent)."""
        db = self._db
        last = int(self._meta("horizon") or -1)
        if horizon <= last:
            return
        db.execute(
            "DELETE FROM entries WHERE (kind, key, seq) IN (SELECT o.kind, o.key, o.seq FROM entries n "
            "JOIN entries o ON o.kind = n.kind AND o.key = n.key AND o.seq < n.seq WHERE n.seq > ?1 AND n.seq <= ?2)",
            (last, horizon),
        )
        db.execute("DELETE FROM entries WHERE seq > ? AND seq <= ? AND value IS NULL", (last, horizon))
        db.execute("UPDATE meta SET value = ? WHERE name = 'horizon'", (str(horizon),))

    # --- reading --------------------------------------------------------------------------------

    def load(self, changelog_id: str, seq: int) -> dict[int, dict[str, bytes]]:
        """The rows as of snapshot `seq` (each key's newest version at or before it), by kind;
        rows written after it are dropped (their epoch was never committed)."""
        if self._meta("id") != changelog_id:
            raise Refused(
                f"{self.path.name} in the recovery directory is not the one its snapshots were "
                "written with (missing, replaced or from another run): start with a new --recovery-dir"
            )
        horizon = int(self._meta("horizon") or -1)
        if seq < horizon:
            raise Refused(
                f"{self.path.name}: the snapshot resumed from ({seq}) is older than what the "
                f"changelog keeps (from {horizon} on): start with a new --recovery-dir"
            )
        found: dict[int, dict[str, bytes]] = {}
        for kind, key, value in self._db.execute(
            "SELECT kind, key, value FROM entries WHERE seq <= ? ORDER BY seq", (seq,)
        ):
            table = found.setdefault(kind, {})
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        with self._transaction():
            self._db.execute("DELETE FROM entries WHERE seq > ?", (seq,))
        self.next_seq = seq + 1
        return found

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN ... COMMIT (ROLLBACK on an error) on a connection in autocommit mode."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def committed_seq(directory: Path) -> int | None:
    """`commits.resolution_seq` of `directory`, asked of a child process (`commits` says why)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "profilestream.flows.commits", str(directory)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = done.stdout.strip()
    return int(answer) if done.returncode == 0 and answer.isdigit() else None


class CommitWatch:
    """`committed_seq` asked in the background every `every` seconds; `latest` answers at once
    with the newest answer (an older committed snapshot is a safe horizon too: commits only move
    forward)."""

    def __init__(self, directory: Path, every: float = 5.0):
        self.directory, self.every = directory, every
        self._latest: int | None = None
        self._thread: threading.Thread | None = None

    def latest(self) -> int | None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="changelog-commits", daemon=True)
            self._thread.start()
        return self._latest

    def _watch(self) -> None:
        while True:
            found = committed_seq(self.directory)
            if found is not None and (self._latest is None or found > self._latest):
                self._latest = found
            time.sleep(self.every)
