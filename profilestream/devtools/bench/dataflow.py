"""3. The dataflow: `runner.run(until_idle=True)` in a child process, with fresh output topics.

Per process (`children.ProcessWatch`): peak RSS and CPU seconds of each process of the run (one
process: the child itself; a cluster: each `flows.runner` process it starts). With one process
the resolution step runs in the child, which reads the time spent inside it (`resolve_step.BUSY`):
the serial stage's share of a live run. What the run wrote is read back: the trigger ids and a
digest of the final profiles (latest record per key, tombstones applied), so runs on different
numbers of processes can be compared for equality.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import resource
import time
from typing import TYPE_CHECKING, Any

from profilestream.devtools.bench.children import ProcessWatch, _in_child, _peak_rss_kb
from profilestream.devtools.bench.support import _load, _names, _renamed

if TYPE_CHECKING:
    from profilestream.config import Config


def _child_run(job: dict[str, Any]) -> dict[str, Any]:
    from profilestream.flows import runner
    from profilestream.flows.resolve_step import BUSY

    watch = ProcessWatch()
    watch.start()
    started = time.perf_counter()
    code = runner.run(job["config"], until_idle=True, processes=job["processes"])
    elapsed = time.perf_counter() - started
    watch.stop.set()
    watch.join(5)
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cluster = [p for p in watch.seen.values() if "profilestream.flows.runner" in p["args"]]
    if job["processes"] == 1:
        per_process = [{"rss_kb": _peak_rss_kb(), "cpu_seconds": me.ru_utime + me.ru_stime}]
    else:
        per_process = [{"rss_kb": p["rss_kb"], "cpu_seconds": p["cpu_seconds"]} for p in cluster]
    return {
        "code": code,
        "seconds": elapsed,
        "rss_self_kb": _peak_rss_kb(),
        "rss_children_kb": children.ru_maxrss,
        "cpu_seconds": me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime,
        "per_process": per_process,
        "resolve_busy": dataclasses.asdict(BUSY) if BUSY.calls else None,
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
    profiles, digest = _profiles_digest(run_config)
    # two processes: the largest cluster process (they are forked from the small run child, so
    # the maximum carried across their exec is that child's, well below theirs)
    rss_kb = result["rss_self_kb"] if processes == 1 else result["rss_children_kb"]
    per_process = result["per_process"]
    cpu_all = sum(p["cpu_seconds"] for p in per_process)
    busy = result["resolve_busy"]
    return {
        "processes": processes,
        "seconds": round(result["seconds"], 3),
        "eps": round(total / result["seconds"]),
        "cpu_seconds": round(result["cpu_seconds"], 1),
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "peak_rss_mb_per_process": [round(p["rss_kb"] / 1024, 1) for p in per_process],
        "cpu_seconds_per_process": [round(p["cpu_seconds"], 1) for p in per_process],
        "busiest_cpu_share": round(max(p["cpu_seconds"] for p in per_process) / cpu_all, 3) if cpu_all else None,
        "resolve_step": None
        if busy is None or not busy["events"]
        else {
            "us_per_event": round(busy["seconds"] / busy["events"] * 1e6, 2),
            "cpu_us_per_event": round(busy["cpu_seconds"] / busy["events"] * 1e6, 2),
            "share_of_wall": round(busy["seconds"] / result["seconds"], 3),
            "share_of_cpu": round(busy["cpu_seconds"] / result["cpu_seconds"], 3) if result["cpu_seconds"] else None,
        },
        "triggers": len(triggers),
        "trigger_ids": triggers,
        "profiles": profiles,
        "profiles_digest": digest,
        "load_before": load_before,
    }


def idle_rss(config: Config) -> dict[str, Any]:
    """An idle process's baseline: a one-process run over empty input topics (the interpreter,
    the libraries, Bytewax and the Kafka clients, no state): its peak RSS and CPU."""
    from profilestream.domain.roles import INPUT_ROLES, OUTPUT_ROLES
    from profilestream.kafka.clients import create_topics

    names = _names("bench-idle-", (*INPUT_ROLES, *OUTPUT_ROLES))
    empty = dataclasses.replace(config, topics=_renamed(config.topics, names))
    create_topics(empty)
    result = _in_child("run", {"config": empty, "processes": 1})
    if result["code"] != 0:
        raise RuntimeError(f"the idle run exited with {result['code']}")
    return {"peak_rss_mb": round(result["rss_self_kb"] / 1024, 1), "cpu_seconds": round(result["cpu_seconds"], 1)}


def _profiles_digest(config: Config) -> tuple[int, str]:
    """The final profiles (latest record per key, tombstones applied): how many, and a digest."""
    from profilestream.codec import avro
    from profilestream.kafka.clients import read_topic

    state: dict[str, Any] = {}
    for m in read_topic(config, config.topics.name("profiles")):
        key = m.key.decode() if m.key is not None else ""
        if m.value is None:
            state.pop(key, None)
        else:
            state[key] = avro.to_json("profiles", avro.decode("profiles", m.value))
    text = json.dumps(state, sort_keys=True, separators=(",", ":"))
    return len(state), hashlib.sha256(text.encode()).hexdigest()[:16]


def _trigger_ids(config: Config) -> list[str]:
    from profilestream.codec import avro
    from profilestream.kafka.clients import read_topic

    ids = []
    for m in read_topic(config, config.topics.name("triggers")):
        if m.value is not None:
            ids.append(avro.decode("triggers", m.value)["trigger_id"])
    return sorted(ids)


__all__ = ["dataflow", "idle_rss"]
