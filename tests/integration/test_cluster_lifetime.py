"""A local cluster's processes die with the `run` that started them (`ops.lifetime`): after a
SIGKILL of the parent nothing of the cluster goes on reading and writing beside the cluster that
a restart starts with the same recovery directory."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from profilestream import cli
from support.runkit import Run, clean_env

pytestmark = pytest.mark.broker


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie is dead, waiting to be reaped by init


def test_the_processes_of_a_local_cluster_die_when_its_parent_is_killed(config_path):
    assert cli.main(["topics", "create", "--config", str(config_path)]) == 0
    run = Run("--config", str(config_path), "--processes", "2", "--no-recovery", env=clean_env())
    children: set[int] = set()
    try:
        run.wait_for(lambda line: True, limit=120, what="the cluster's first progress line")
        children = _children(run.proc.pid)
        assert len(children) == 2 and all(_alive(c) for c in children)
        run.kill(signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(c) for c in children), "a process of the cluster outlived its parent"
    finally:  # whatever happened, nothing of this test's cluster is left running
        if run.proc.poll() is None:
            children |= _children(run.proc.pid)
            run.kill(signal.SIGKILL)
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
