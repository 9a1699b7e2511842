"""The bench's child processes: a job pickled to a fresh Python process
(`python -m profilestream.devtools.bench KIND JOB OUT`), its result back as JSON, its peak RSS."""

from __future__ import annotations

import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _peak_rss_kb() -> int:
    """This process's peak RSS since it started its program. (`getrusage(RUSAGE_SELF)` would not
    do for a child of the bench: Linux carries the maximum across exec, so it would report the
    bench's own RSS, which holds the whole workload.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class ProcessWatch(threading.Thread):
    """Every process this one started (and theirs), read from /proc every `every` seconds: peak
    RSS (`VmHWM`, which only grows) and CPU seconds (utime + stime) as last seen before each
    exited. Why polling: `getrusage(RUSAGE_CHILDREN)` gives only the largest child's peak and the
    sum of their CPU, and the bench needs them per process (the busiest process's share)."""

    def __init__(self, every: float = 0.2):
        super().__init__(daemon=True)
        self.every = every
        self.stop = threading.Event()
        self.seen: dict[int, dict[str, Any]] = {}  # pid -> {"rss_kb", "cpu_seconds", "args"}

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.poll()
        self.poll()

    def poll(self) -> None:
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                    parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
                except (OSError, ValueError, IndexError):  # gone meanwhile
                    continue
        mine, frontier = set(), {os.getpid()}
        while frontier:
            frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in mine}
            mine |= frontier
        for pid in mine:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                status = Path(f"/proc/{pid}/status").read_text()
                args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                fields = stat[stat.rindex(")") + 2 :].split()
                cpu = (int(fields[11]) + int(fields[12])) / _TICKS
            except (OSError, ValueError, IndexError):  # gone meanwhile (an exiting process reads empty)
                continue
            hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
            if hwm:  # a zombie has no memory left to report: keep what was seen while it ran
                self.seen[pid] = {"rss_kb": hwm, "cpu_seconds": cpu, "args": args.strip()}


def _in_child(kind: str, job: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run `_child_<kind>(job)` in a fresh Python process; its result comes back as JSON."""
    with tempfile.TemporaryDirectory(prefix="profilestream-bench-") as tmp:
        job_path, out_path = Path(tmp) / "job.pickle", Path(tmp) / "result.json"
        job_path.write_bytes(pickle.dumps(job))
        proc = subprocess.run(
            [sys.executable, "-m", "profilestream.devtools.bench", kind, str(job_path), str(out_path)], timeout=timeout
        )
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"bench child {kind} failed with exit code {proc.returncode}")
        result: dict[str, Any] = json.loads(out_path.read_text())
        return result


__all__ = ["ProcessWatch"]  # used by the other bench modules only
