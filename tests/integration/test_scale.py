"""A generated shop at scale through the real broker: the number of workers and processes (the
profiles' shards spread over them, merged contents crossing between processes through the
transfers topic), and how far one topic is read ahead of the other, do not change the results
(docs/semantics.md "Time")."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from profilestream.codec import avro
from profilestream.devtools.sample import ShopSpec, generate
from profilestream.flows import runner
from profilestream.kafka.clients import (
    create_topics,
    key_of,
    produce_records,
)
from support.e2e import latest, records, tombstones

pytestmark = pytest.mark.broker

OUTPUTS = ("profiles", "merges", "triggers", "crm_feed", "dead_letters")


def load(config, spec: ShopSpec) -> dict[str, int]:
    create_topics(config)
    by_role: dict[str, list] = {"clickstream": [], "crm_changes": []}
    for role, record in generate(spec):
        checked = avro.from_json(role, record)
        by_role[role].append((key_of(role, checked), checked))
    return {role: produce_records(config, role, items) for role, items in by_role.items()}


def with_outputs(config, suffix: str):
    """The same inputs, fresh output topics."""
    names = {role: f"{getattr(config.topics, role)}-{suffix}" for role in OUTPUTS}
    return dataclasses.replace(config, topics=dataclasses.replace(config.topics, **names))


def final_state(config) -> dict:
    """What must not depend on the number of workers and processes (issue 16, acceptance): the
    final profiles, the set of trigger ids, the merges and the profiles' tombstones."""
    return {
        "profiles": latest(config, "profiles"),
        "trigger_ids": {t["trigger_id"] for t in records(config, "triggers")},
        "merges": {json.dumps(m, sort_keys=True) for m in records(config, "merges")},
        "tombstones": tombstones(config, "profiles"),
    }


# One baseline run on one worker; then each other layout once, against it.
LAYOUTS = {"2 workers in one process": {"workers": 2}, "2 processes": {"processes": 2}, "4 processes": {"processes": 4}}


def test_100k_shop_gives_the_same_results_with_1_worker_2_workers_2_processes_and_4_processes(config):
    counts = load(config, ShopSpec(events=100_000, seed=11))
    assert sum(counts.values()) == 100_000
    one = with_outputs(config, "one")
    create_topics(one)
    assert runner.run(one, until_idle=True) == 0
    expected = final_state(one)
    assert len(expected["profiles"]) > 1000 and len(expected["trigger_ids"]) > 100
    assert len(expected["merges"]) > 50 and expected["tombstones"]
    for n, (layout, flags) in enumerate(LAYOUTS.items()):
        other = with_outputs(config, f"layout{n}")
        create_topics(other)
        assert runner.run(other, until_idle=True, **flags) == 0, layout
        got = final_state(other)
        for what, want in expected.items():
            assert got[what] == want, f"{layout}: {what} differ"


def test_topics_loaded_before_run_give_the_same_profiles_as_live_traffic_in_time_order(config, config_path, tmp_path):
    """Preloaded: both topics complete before `run --until-idle` starts. Live: an always-on `run`
    while the same events are produced in time order, in small chunks across both topics."""
    spec = ShopSpec(events=3000, seed=5, start="2025-03-01T08:00:00Z")
    preloaded = with_outputs(config, "pre")
    create_topics(preloaded)
    load(preloaded, spec)
    assert runner.run(preloaded, until_idle=True) == 0
    expected = latest(preloaded, "profiles")

    live_toml = tmp_path / "live.toml"
    live_toml.write_text(
        config_path.read_text()
        .replace('-clickstream"', '-live-clickstream"')
        .replace('-crm-changes"', '-live-crm-changes"')
        + '\n[time]\nidle_after = "1s"\n',
        encoding="utf-8",
    )
    from profilestream.config import load_config

    live = load_config(str(live_toml), env={})
    create_topics(live)
    proc = subprocess.Popen(
        [sys.executable, "-m", "profilestream.cli", "run", "--config", str(live_toml)],
        env={k: v for k, v in os.environ.items() if not k.startswith("PROFILESTREAM_")},
    )
    try:
        chunk: dict[str, list] = {"clickstream": [], "crm_changes": []}
        for n, (role, record) in enumerate(generate(spec), 1):
            checked = avro.from_json(role, record)
            chunk[role].append((key_of(role, checked), checked))
            if n % 200 == 0:
                for r, items in chunk.items():
                    produce_records(live, r, items)
                    items.clear()
        for r, items in chunk.items():
            produce_records(live, r, items)
        # Wait until the always-on run has caught up: all partitions idle, so the watermark follows
        # the clock (2025 events are all behind it) and every profile is out.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(2)
            if latest(live, "profiles") == expected:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert latest(live, "profiles") == expected
