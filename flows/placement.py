"""Cluster placement: which worker runs the resolution step (`engine_worker`).

Resolution (`resolve`, one key) cannot spread over workers, so in a cluster the process that runs
it is spared the reading and decoding (`build_flow(read=False)`); the others do it for it. The
profiles' shards run on every worker, that process's included.
"""

from __future__ import annotations

import threading
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main

from profilestream.flows.resolve_step import RESOLVE_KEY

__all__ = ["engine_worker"]


def engine_worker(worker_count: int) -> int:
    """The index of the worker, among `worker_count`, that Bytewax gives resolution's key to.

    Bytewax routes a key by a hash of its own; rather than copy that rule, ask Bytewax: a dataflow
    of one item on `worker_count` threads of this process tells which worker builds the key's state.

    >>> engine_worker(1)
    0
    """
    if worker_count < 2:
        return 0
    index_of: dict[int, int] = {}  # thread -> worker index, from the sink's `build`
    engine_threads: list[int] = []

    class Probe(StatefulBatchLogic[str, Any, None]):
        def on_batch(self, values: list[str]) -> tuple[list[Any], bool]:
            return [], StatefulBatchLogic.DISCARD

        def snapshot(self) -> None:
            return None

    class Note(StatelessSinkPartition[Any]):
        def write_batch(self, items: list[Any]) -> None:
            pass

    class Workers(DynamicSink[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Note:
            index_of[threading.get_ident()] = worker_index
            return Note()

    def build(_resume: None) -> Probe:
        engine_threads.append(threading.get_ident())
        return Probe()

    flow = Dataflow("profilestream_probe")
    keyed = op.key_on("key", op.input("one", flow, TestingSource([RESOLVE_KEY])), lambda key: key)
    op.output("workers", op.stateful_batch("engine", keyed, build), Workers())
    cluster_main(flow, [], 0, worker_count_per_proc=worker_count)
    return index_of[engine_threads[0]]
