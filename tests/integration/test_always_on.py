"""An always-on `run` (no --until-idle) on the real broker: when traffic stops, idle partitions stop
holding the watermark back, it follows the clock, and a cart deadline fires with no more input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from profilestream.codec import avro
from profilestream.kafka.clients import create_topics, produce_records
from support.e2e import records

pytestmark = pytest.mark.broker


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def test_cart_deadline_fires_when_traffic_stops(config, config_path, tmp_path):
    toml = tmp_path / "live.toml"
    toml.write_text(config_path.read_text() + '\n[time]\nidle_after = "1s"\n', encoding="utf-8")
    create_topics(config)
    added = datetime.now(UTC) - timedelta(minutes=61)
    click = avro.from_json(
        "clickstream",
        {"event_id": "e1", "ts": iso(added), "device_id": "d1", "type": "add_to_cart", "product_id": "sku1"},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "profilestream.cli", "run", "--config", str(toml)],
        env={k: v for k, v in os.environ.items() if not k.startswith("PROFILESTREAM_")},
    )
    try:
        produce_records(config, "clickstream", [("d1", click)])
        found = []
        deadline = time.monotonic() + 60
        while not found and time.monotonic() < deadline:
            time.sleep(0.5)
            found = records(config, "triggers")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    [trigger] = found
    assert trigger["type"] == "cart_abandoned" and trigger["device_id"] == "d1"
    assert trigger["ts"] == iso(added + timedelta(minutes=60))
