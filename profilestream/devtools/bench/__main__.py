"""`python -m profilestream.devtools.bench KIND JOB OUT`: one of the bench's child processes
(`children._in_child`): the pickled job in, the result out as JSON."""

import json
import pickle
import sys
from pathlib import Path

from profilestream.devtools.bench.dataflow import _child_run
from profilestream.devtools.bench.serial import _child_serial
from profilestream.devtools.bench.state import _child_state


def _child(kind: str, job_path: str, out_path: str) -> None:
    job = pickle.loads(Path(job_path).read_bytes())
    result = {"run": _child_run, "serial": _child_serial, "state": _child_state}[kind](job)
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")


_child(*sys.argv[1:])
