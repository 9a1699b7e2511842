"""5. State per profile: the engine alone (decode + `Engine.feed`) in a child process, and the
pickled size of its state per profile."""

from __future__ import annotations

import pickle
import time
from typing import TYPE_CHECKING, Any

from profilestream.devtools.bench.children import _in_child, _peak_rss_kb
from profilestream.domain.roles import INPUT_ROLES

if TYPE_CHECKING:
    from profilestream.config import Config


def _child_state(job: dict[str, Any]) -> dict[str, Any]:
    from profilestream.codec import avro
    from profilestream.devtools.sample import ShopSpec, generate
    from profilestream.domain.engine import Engine
    from profilestream.flows.runner import tune_gc

    tune_gc()  # as the dataflow runs it
    config = job["config"]
    rules = config.rules()
    engine = Engine(rules, always_on=False, emit_every=config.run.emit_interval)
    engine.expect(INPUT_ROLES, 0)
    batch: list[Any] = []
    feeding = 0.0
    decoding = 0.0
    n = 0

    def feed() -> None:
        nonlocal feeding
        started = time.perf_counter()
        engine.feed(batch, int(time.time() * 1000))  # the wall clock, for `emit_every`
        feeding += time.perf_counter() - started
        batch.clear()

    now_ms = int(time.time() * 1000)  # the shop lies in the past: one clock for the max_future check
    for role, record in generate(ShopSpec(events=job["events"], seed=job["seed"])):
        value = avro.encode(role, avro.from_json(role, record))
        started = time.perf_counter()
        event = avro.decode_input(role, value, rules, now_ms)
        decoding += time.perf_counter() - started
        batch.append((role, event))
        n += 1
        if len(batch) >= 1000:
            feed()
    feed()
    resolver = engine.resolver
    parts = {  # the serial step's (identity resolution) and the profiles' shards
        "persons_and_indexes": resolver.graph,
        "devices": resolver.devices,
        "dedup": resolver.dedup,
        "orders": resolver.orders,
        "deadlines": resolver.deadlines,
        "timeline": resolver.timeline,
        "shards": engine.shards,
    }
    started = time.perf_counter()
    state = len(pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL))
    pickle_seconds = time.perf_counter() - started  # what one recovery snapshot costs the run
    profiles = len(engine.profiles())
    return {
        "events": n,
        "profiles": profiles,
        "devices": len(resolver.devices),
        "state_bytes": state,
        "bytes_per_profile": round(state / max(1, profiles), 1),
        "events_per_profile": round(n / max(1, profiles), 1),
        "parts_bytes": {k: len(pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)) for k, v in parts.items()},
        "dedup_ids": len(resolver.dedup.seen),
        "pickle_seconds": round(pickle_seconds, 2),
        "engine_eps": round(n / feeding) if feeding else None,
        "decode_eps": round(n / decoding) if decoding else None,
        "peak_rss_mb": round(_peak_rss_kb() / 1024, 1),
    }


def state(config: Config, events: int, seed: int) -> dict[str, Any]:
    return _in_child("state", {"config": config, "events": events, "seed": seed})


__all__ = ["state"]
