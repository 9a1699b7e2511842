"""The HTTP server of `run --metrics-port` (issue 12 item 5): `/metrics`, `/healthz`, `/readyz`,
404 JSON elsewhere, bound to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.error
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from profilestream.ops import metrics


@pytest.fixture
def served():
    counters = metrics.Counters()
    server = metrics.serve(0, counters=counters)
    try:
        yield counters, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_healthz_answers_ok_while_the_process_runs(served):
    _, port = served
    status, content_type, body = get(port, "/healthz")
    assert (status, content_type, json.loads(body)) == (200, "application/json", {"status": "ok"})


def test_readyz_is_503_until_the_run_has_reached_its_brokers(served):
    counters, port = served
    status, content_type, body = get(port, "/readyz")
    assert (status, content_type) == (503, "application/json")
    answer = json.loads(body)
    assert answer["status"] == "not ready" and "has not reached its brokers" in answer["reason"]

    counters.mark_ready()
    status, content_type, body = get(port, "/readyz")
    assert (status, content_type, json.loads(body)) == (200, "application/json", {"status": "ready"})


def test_readyz_is_503_while_the_broker_does_not_answer_and_200_once_it_does(served):
    counters, port = served
    counters.mark_ready()
    # what the source and sink log when librdkafka reports trouble (rate-limited, every 10 s)
    metrics.log("kafka_trouble", client="consumer", error="localhost:9092/1: Connect failed", fatal=False)
    assert metrics.COUNTERS.readiness()[0] is False  # `log` reports to the process-wide counters
    counters.broker_trouble("localhost:9092/1: Connect failed")
    status, _, body = get(port, "/readyz")
    assert status == 503 and "Connect failed" in json.loads(body)["reason"]

    counters.decoded(Counter(), Counter(), Counter())  # nothing read: no sign of the broker
    assert get(port, "/readyz")[0] == 503
    counters.decoded(Counter({"clickstream": 3}), Counter(), Counter())  # records read: it answers
    assert get(port, "/readyz")[0] == 200

    counters.broker_trouble("all brokers down")
    assert get(port, "/readyz")[0] == 503
    counters.delivered(Counter({"profiles": 1}))  # records acknowledged: it answers
    assert get(port, "/readyz")[0] == 200


def test_broker_events_of_the_log_set_the_process_readiness():
    metrics.COUNTERS.reset()
    try:
        assert metrics.COUNTERS.readiness() == (False, "the run has not reached its brokers yet")
        metrics.COUNTERS.mark_ready()
        assert metrics.COUNTERS.readiness() == (True, None)
        metrics.log("waiting_for_broker", client="producer", unacknowledged=3, waited_s=10)
        ready, reason = metrics.COUNTERS.readiness()
        assert not ready and "waiting_for_broker" in (reason or "")
        metrics.log("broker_back", client="producer", waited_s=12)
        assert metrics.COUNTERS.readiness() == (True, None)
    finally:
        metrics.COUNTERS.reset()


def test_metrics_serves_the_prometheus_text(served):
    counters, port = served
    counters.decoded(Counter({"clickstream": 5}), Counter({("clickstream", "page_view"): 5}), Counter())
    status, content_type, body = get(port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert samples[("profilestream_records_in_total", (("topic", "clickstream"),))] == 5
    assert get(port, "/metrics?name[]=profilestream_records_in_total")[0] == 200


@pytest.mark.parametrize("path", ["/no-such-page", "/", "/metrics/x", "/healthz/extra"])
def test_any_other_path_is_404_json(served, path):
    _, port = served
    status, content_type, body = get(port, path)
    assert (status, content_type, json.loads(body)) == (404, "application/json", {"error": f"no such page: {path}"})


def test_head_answers_like_get_without_a_body(served):
    _, port = served
    request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", method="HEAD")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200 and response.read() == b""


def non_loopback_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    candidates = set()
    with contextlib.suppress(OSError):
        candidates.add(socket.gethostbyname(socket.gethostname()))
    try:  # the address the default route leaves by (no packet is sent for a UDP connect)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            candidates.add(probe.getsockname()[0])
    except OSError:
        pass
    return next((a for a in sorted(candidates) if not a.startswith("127.") and a != "0.0.0.0"), None)


def test_bound_to_loopback_only_by_default(served):
    _, port = served
    assert metrics.DEFAULT_HOST == "127.0.0.1"
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to try")
    with pytest.raises(OSError):
        socket.create_connection((address, port), timeout=2).close()
    assert get(port, "/healthz")[0] == 200  # on loopback it answers


def test_another_host_when_told(served):
    server = metrics.serve(0, "0.0.0.0", counters=metrics.Counters())
    try:
        port = server.server_address[1]
        assert server.server_address[0] == "0.0.0.0"
        assert get(port, "/healthz")[0] == 200
        address = non_loopback_address()
        if address is not None:
            assert get(port, "/healthz", host=address)[0] == 200
    finally:
        server.shutdown()
        server.server_close()
