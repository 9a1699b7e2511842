"""The engine step's snapshot format: what Bytewax recovery keeps of the `apply` step.

A snapshot (once per epoch = `run.snapshot_interval`) is the pickled dictionary
`{"engine": Engine, "finished": bool}`: the whole engine, and whether a bounded run has already
reached the end of its input. A snapshot of an earlier build is the bare pickled `Engine`
(`finished` False). Kept apart from the step so the format has one reader and one writer.
"""

from __future__ import annotations

import pickle

from profilestream.domain.engine import Engine

__all__ = ["STATE", "dump", "load"]

STATE = "Engine (timeline, identity graph, profiles, visits, deadlines, dedup, erasure list)"
"""What the snapshot holds, as `profilestream describe` names it."""


def dump(engine: Engine, finished: bool) -> bytes:
    """The snapshot of the engine (and whether a bounded run has reached its end)."""
    return pickle.dumps({"engine": engine, "finished": finished}, protocol=pickle.HIGHEST_PROTOCOL)


def load(data: bytes) -> tuple[Engine, bool]:
    """The engine and `finished` of a snapshot, this build's format or an earlier one's."""
    state = pickle.loads(data)
    if isinstance(state, Engine):  # a snapshot of an earlier build: the bare engine
        return state, False
    return state["engine"], bool(state["finished"])
