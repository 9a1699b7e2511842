"""6. The serial stage alone: resolution (`flows.resolve_step.ResolveLogic` around
`domain.resolve.Resolver`), driven in-process over the decoded workload, in a child process.

Why alone: in the dataflow every event crosses this one step on one worker, so its cost per event
bounds the throughput of a cluster of any size (the ceiling is 1 / cost). In a live run its time is
mixed with reading, decoding, the shards and the broker on the same two cores; measured alone it is
a figure that a loaded machine disturbs little (best of N).

How: the reference shop is generated, Avro-encoded and decoded exactly as the dataflow decodes it
(`avro.decode_input`), then cut into batches of 1,000 `(source, event)` pairs in arrival order
(generation order, each record's source its topic partition by key as `produce` places it). The
timed part is only resolution: `on_batch` for every batch, then `on_eof` (the end of input is the
end of time: every buffered event and pending deadline), with the dataflow's GC setting. Wall
(`perf_counter`) and CPU (`process_time`) per event, best of `repeat`; the same for the domain's
`Resolver.feed` / `finish` without the step's shell, to tell the two apart.
"""

from __future__ import annotations

import gc
import time
import zlib
from typing import TYPE_CHECKING, Any

from profilestream.devtools.bench.children import _in_child, _peak_rss_kb
from profilestream.domain.roles import INPUT_ROLES

if TYPE_CHECKING:
    from profilestream.config import Config

BATCH = 1000
PARTITIONS = 3  # as the bench's topics


def decoded_batches(config: Config, events: int, seed: int) -> list[list[Any]]:
    """The workload as the resolution step receives it: `decode`'s lists of `(source, event)`."""
    from profilestream.codec import avro
    from profilestream.codec.validation import Rejected
    from profilestream.devtools.sample import ShopSpec, generate
    from profilestream.kafka.clients import key_of

    rules = config.rules()
    now_ms = int(time.time() * 1000)  # the shop lies in the past: one clock for the max_future check
    batches: list[list[Any]] = []
    batch: list[Any] = []
    for role, record in generate(ShopSpec(events=events, seed=seed)):
        checked = avro.from_json(role, record)
        key = key_of(role, checked) or ""
        try:
            event = avro.decode_input(role, avro.encode(role, checked), rules, now_ms)
        except Rejected:
            continue  # a dead letter: never reaches resolution
        batch.append((f"{role}/{zlib.crc32(key.encode()) % PARTITIONS}", event))
        if len(batch) == BATCH:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


def sources() -> list[str]:
    return [f"{role}/{p}" for role in INPUT_ROLES for p in range(PARTITIONS)]


def _time_step(config: Config, batches: list[list[Any]]) -> tuple[float, float, int]:
    """One pass of the resolution step over the workload: (wall s, CPU s, items out)."""
    from profilestream.domain.resolve import Resolver
    from profilestream.flows.resolve_step import ResolveLogic
    from profilestream.kafka.source import PartitionEnd

    resolver = Resolver(config.rules(), always_on=False)
    resolver.expect(sources(), 0)
    logic = ResolveLogic(resolver, bounded=True, loop_partitions=PARTITIONS)
    ends = [PartitionEnd(s) for s in sources()]
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    out = 0
    for batch in batches:
        out += len(list(logic.on_batch([batch])[0]))  # the step returns its list: `list` is a copy of pointers
    out += len(list(logic.on_batch([ends])[0]))
    out += len(list(logic.on_eof()[0]))
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _time_resolver(config: Config, batches: list[list[Any]]) -> tuple[float, float]:
    """One pass of the domain's `Resolver` alone (no step shell): (wall s, CPU s)."""
    from profilestream.domain.resolve import Resolver

    resolver = Resolver(config.rules(), always_on=False)
    resolver.expect(sources(), 0)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        resolver.feed(batch, 0)
    for source in sources():
        resolver.end_source(source)
    resolver.finish(0)
    return time.perf_counter() - wall, time.process_time() - cpu


def calibration() -> float:
    """CPU seconds of a fixed pure-Python loop (10 million additions), best of 3: beside the
    figures, it says how much slower than usual this machine ran them (a shared or throttled
    core), so figures taken under load can be compared with a quiet machine's."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.process_time() - started)
    return round(best, 3)


def _child_serial(job: dict[str, Any]) -> dict[str, Any]:
    from profilestream.flows.runner import tune_gc

    tune_gc()  # as the dataflow runs it
    config = job["config"]
    batches = decoded_batches(config, job["events"], job["seed"])
    n = sum(len(b) for b in batches)
    steps = [_time_step(config, batches) for _ in range(job["repeat"])]
    domain = [_time_resolver(config, batches) for _ in range(job["repeat"])]
    best_wall = min(s[0] for s in steps)
    best_cpu = min(s[1] for s in steps)
    return {
        "events": n,
        "repeat": job["repeat"],
        "us_per_event": round(best_wall / n * 1e6, 2),
        "cpu_us_per_event": round(best_cpu / n * 1e6, 2),
        "ceiling_eps": round(n / best_wall),
        "samples_us_per_event": [round(s[0] / n * 1e6, 2) for s in steps],
        "items_out_per_event": round(steps[0][2] / n, 3),
        "resolver_us_per_event": round(min(d[0] for d in domain) / n * 1e6, 2),
        "resolver_cpu_us_per_event": round(min(d[1] for d in domain) / n * 1e6, 2),
        "peak_rss_mb": round(_peak_rss_kb() / 1024, 1),
        "calibration_s": calibration(),
    }


def serial(config: Config, events: int, seed: int = 7, repeat: int = 5) -> dict[str, Any]:
    """The serial stage's cost per event and the ceiling it implies (module doc)."""
    from profilestream.devtools.bench.support import _load

    load_before = _load()
    result = _in_child("serial", {"config": config, "events": events, "seed": seed, "repeat": repeat})
    result["load_before"] = load_before
    result["load_after"] = _load()
    return result


__all__ = ["decoded_batches", "serial"]
