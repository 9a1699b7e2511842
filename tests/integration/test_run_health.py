"""`run --metrics-port` answers `/healthz` and `/readyz` (issue 12 item 5) during a real run."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request

import pytest

from profilestream.devtools.broker import free_port
from profilestream.devtools.sample import ShopSpec
from support.runkit import Run, clean_env, load_shop, write_config


def get(port: int, path: str) -> tuple[int, str, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.loads(error.read())


@pytest.mark.broker
def test_always_on_run_is_live_and_ready_on_its_metrics_port(broker, tmp_path):
    toml, config = write_config(tmp_path / "health.toml", broker.bootstrap, f"health{tmp_path.name[-10:]}")
    load_shop(config, ShopSpec(events=200, seed=5, start="2025-03-01T08:00:00Z"))
    port = free_port()
    run = Run("--config", str(toml), "--metrics-port", str(port), env=clean_env())
    try:
        deadline = time.monotonic() + 60
        ready: tuple[int, str, dict] | None = None
        while time.monotonic() < deadline and run.proc.poll() is None:
            try:
                ready = get(port, "/readyz")
            except OSError:  # not listening yet
                time.sleep(0.2)
                continue
            if ready[0] == 200:
                break
            time.sleep(0.2)
        assert ready == (200, "application/json", {"status": "ready"}), run.log_tail()
        assert get(port, "/healthz") == (200, "application/json", {"status": "ok"})
        assert get(port, "/no-such-page") == (404, "application/json", {"error": "no such page: /no-such-page"})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.status == 200 and b"profilestream_records_in_total" in response.read()
        time.sleep(1.0)  # still ready a moment later, with the dataflow going
        assert get(port, "/readyz")[0] == 200 and run.proc.poll() is None
    finally:
        run.kill(signal.SIGINT)
    assert run.proc.returncode == 130, run.log_tail()
    served = run.latest("metrics")
    assert served is not None and served["host"] == "127.0.0.1" and served["port"] == port
