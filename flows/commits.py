"""What Bytewax has committed in a recovery directory, read from its SQLite partitions.

Standard library only, and runnable as `python -m profilestream.flows.commits DIR` (it prints the
`seq` of the committed resolution snapshot, or `none`): a running dataflow must ask through a child
process, never open the partitions itself. Bytewax's SQLite holds POSIX locks on those files, and
any other open and close of them in the same process (Python's sqlite3 is another copy of the
library) releases them (`man fcntl`), which corrupts the partitions or, with their shared memory,
kills the process (SIGBUS, seen in the bench). Before Bytewax starts (`runner`) reading in-process
is safe.
"""

from __future__ import annotations

import pickle
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

__all__ = ["committed_epoch", "resolution_seq"]


def committed_epoch(parts: list[Path]) -> int | None:
    """The latest epoch whose snapshot is complete in every partition (None if unreadable)."""
    try:
        epochs = []
        for part in parts:
            with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=1)) as db:
                epochs.append(db.execute("SELECT MAX(commit_epoch) FROM commits").fetchone()[0])
        return None if not epochs or None in epochs else min(epochs)
    except sqlite3.Error:
        return None


def resolution_seq(directory: Path) -> int | None:
    """The changelog `seq` that the committed snapshot of resolution names (`snapshot.seq_of`);
    None when the partitions are not all there (a process of a cluster across machines), hold no
    committed snapshot of resolution yet, or cannot be read."""
    parts = sorted(directory.glob("part-*.sqlite3"))
    committed = committed_epoch(parts)
    try:
        counts = set()
        found = None
        for part in parts:
            with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=1)) as db:
                counts.add(db.execute("SELECT MAX(part_count) FROM parts").fetchone()[0])
                if committed is None:
                    continue
                row = db.execute(
                    "SELECT snap_epoch, ser_change FROM snaps WHERE step_id LIKE '%.resolve' "
                    "AND snap_epoch <= ? AND ser_change IS NOT NULL ORDER BY snap_epoch DESC LIMIT 1",
                    (committed,),
                ).fetchone()
            if row is not None and (found is None or row[0] > found[0]):
                found = row
        if committed is None or counts != {len(parts)} or found is None:
            return None
        return int(pickle.loads(pickle.loads(found[1]))["seq"])  # the outer dict: bytes, str, int
    except (sqlite3.Error, pickle.UnpicklingError, KeyError, TypeError, ValueError):
        return None


if __name__ == "__main__":
    seq = resolution_seq(Path(sys.argv[1]))
    print("none" if seq is None else seq)
