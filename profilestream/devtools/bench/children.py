"""The bench's child processes: a job pickled to a fresh Python process
(`python -m profilestream.devtools.bench KIND JOB OUT`), its result back as JSON, its peak RSS."""

from __future__ import annotations

import json
import pickle
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def _peak_rss_kb() -> int:
    """This process's peak RSS since it started its program. (`getrusage(RUSAGE_SELF)` would not
    do for a child of the bench: Linux carries the maximum across exec, so it would report the
    bench's own RSS, which holds the whole workload.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


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


__all__: list[str] = []  # used by the other bench modules only
