"""`profilestream demo`: the whole product on one machine, in one command.

Starts the embedded broker, creates the topics, produces a generated sample shop, runs the dataflow
until the input is drained, and prints what came out: a few unified profiles, the merges that
built them, the triggers for campaign systems, and a lookup by identifier from the profile store.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from profilestream import store
from profilestream.codec import avro
from profilestream.commands import report
from profilestream.devtools.broker import EmbeddedBroker
from profilestream.devtools.sample import ShopSpec, generate
from profilestream.flows import runner
from profilestream.kafka.clients import (
    create_topics,
    key_of,
    produce_records,
    read_topic,
)

if TYPE_CHECKING:
    from profilestream.config import Config


def _step(message: str) -> float:
    print(f"==> {message}", flush=True)
    return time.monotonic()


def _done(started: float, detail: str = "") -> None:
    print(f"    done in {time.monotonic() - started:.1f}s{'; ' + detail if detail else ''}", flush=True)


def _latest(config: Config, role: str) -> dict[str, dict[str, Any] | None]:
    latest: dict[str, dict[str, Any] | None] = {}
    for key, value, *_ in read_topic(config, config.topics.name(role)):
        latest[key.decode() if key else ""] = None if value is None else avro.to_json(role, avro.decode(role, value))
    return latest


def _all(config: Config, role: str) -> list[dict[str, Any]]:
    return [
        avro.to_json(role, avro.decode(role, value))
        for _, value, *_ in read_topic(config, config.topics.name(role))
        if value is not None
    ]


def main(config: Config, events: int = 5000) -> int:
    started = _step("starting the embedded Kafka-compatible broker (Tansu)")
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="profilestream-demo-") as tmp:
        config = dataclasses.replace(
            config,
            kafka=dataclasses.replace(config.kafka, brokers=broker.bootstrap),
            store=dataclasses.replace(config.store, path=f"{tmp}/store"),
            # the demo's broker is its own, and so are its values: raw Avro, no registry to ask
            schema_registry=dataclasses.replace(config.schema_registry, url=""),
        )
        _done(started, f"listening on {broker.bootstrap}")

        started = _step("creating topics")
        create_topics(config)
        _done(started, ", ".join(config.topics.names().values()))

        started = _step(f"producing a sample shop of {events:,} events (clickstream + CRM changes)")
        by_role: dict[str, list[Any]] = {"clickstream": [], "crm_changes": []}
        for role, record in generate(ShopSpec(events=events)):
            checked = avro.from_json(role, record)
            by_role[role].append((key_of(role, checked), checked))
        for role, records in by_role.items():
            produce_records(config, role, records)
        _done(started, ", ".join(f"{len(r):,} on {config.topics.name(role)}" for role, r in by_role.items()))

        started = _step("running the dataflow until the input is drained (run --until-idle)")
        code = runner.run(config, until_idle=True)
        if code != 0:
            print(f"profilestream: the dataflow exited with {code}", file=sys.stderr)
            return code
        _done(started)

        profiles = {k: v for k, v in _latest(config, "profiles").items() if v is not None}
        merges = _all(config, "merges")
        triggers = _all(config, "triggers")
        dead = _all(config, "dead_letters")
        customers = [p for p in profiles.values() if p["customer_id"]]
        print()
        print(
            f"profiles: {len(profiles):,} live ({len(customers):,} known CRM customers, "
            f"{sum(1 for p in profiles.values() if not p['customer_id'] and not p['customer_key']):,} anonymous)"
        )
        print("merges:   " + ", ".join(f"{n:,} {r}" for r, n in sorted(Counter(m["reason"] for m in merges).items())))
        print("triggers: " + ", ".join(f"{n:,} {t}" for t, n in sorted(Counter(t["type"] for t in triggers).items())))
        print(f"dead letters: {len(dead):,}")

        richest = max(customers, key=lambda p: (len(p["device_ids"]), p["orders"], p["profile_id"]), default=None)
        if richest is not None:
            print("\nA unified profile (the customer with the most devices):")
            print(json.dumps(richest, indent=2))
        for kind in ("cart_abandoned", "return_visit"):
            sample = next((t for t in triggers if t["type"] == kind), None)
            if sample is not None:
                print(f"\nA {kind} trigger:")
                print(json.dumps(sample, indent=2))
        if richest is not None:
            device = richest["device_ids"][0]
            started = _step(f"\nlooking up device {device} in the profile store (profilestream profile get)")
            found = store.get(config, device)
            _done(started, f"found profile {found['profile_id'] if found else None}")
        print("\nCampaigns by CRM lead status (profilestream report campaigns):")
        print(report.to_table(report.campaign_report(store.all_profiles(config))))
    return 0


__all__ = ["main"]
