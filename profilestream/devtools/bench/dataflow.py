"""3. The dataflow: `runner.run(until_idle=True)` in a child process, with fresh output topics."""

from __future__ import annotations

import dataclasses
import resource
import time
from typing import TYPE_CHECKING, Any

from profilestream.devtools.bench.children import _in_child, _peak_rss_kb
from profilestream.devtools.bench.support import _load, _names, _renamed

if TYPE_CHECKING:
    from profilestream.config import Config


def _child_run(job: dict[str, Any]) -> dict[str, Any]:
    from profilestream.flows import runner

    started = time.perf_counter()
    code = runner.run(job["config"], until_idle=True, processes=job["processes"])
    elapsed = time.perf_counter() - started
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "code": code,
        "seconds": elapsed,
        "rss_self_kb": _peak_rss_kb(),
        "rss_children_kb": children.ru_maxrss,
        "cpu_seconds": me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime,
    }


def dataflow(config: Config, total: int, processes: int, run_id: str) -> dict[str, Any]:
    from profilestream.kafka.clients import create_topics

    run_config = dataclasses.replace(config, topics=_renamed(config.topics, _names(f"bench-{run_id}-")))
    create_topics(run_config)
    load_before = _load()
    result = _in_child("run", {"config": run_config, "processes": processes})
    if result["code"] != 0:
        raise RuntimeError(f"the dataflow ({processes} processes) exited with {result['code']}")
    triggers = _trigger_ids(run_config)
    # two processes: the largest cluster process (they are forked from the small run child, so
    # the maximum carried across their exec is that child's, well below theirs)
    rss_kb = result["rss_self_kb"] if processes == 1 else result["rss_children_kb"]
    return {
        "processes": processes,
        "seconds": round(result["seconds"], 3),
        "eps": round(total / result["seconds"]),
        "cpu_seconds": round(result["cpu_seconds"], 1),
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "triggers": len(triggers),
        "trigger_ids": triggers,
        "load_before": load_before,
    }


def _trigger_ids(config: Config) -> list[str]:
    from profilestream.codec import avro
    from profilestream.kafka.clients import read_topic

    ids = []
    for m in read_topic(config, config.topics.name("triggers")):
        if m.value is not None:
            ids.append(avro.decode("triggers", m.value)["trigger_id"])
    return sorted(ids)


__all__ = ["dataflow"]
