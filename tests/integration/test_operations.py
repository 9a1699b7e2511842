"""Operations (issue 5): Kafka security settings reach every client, counters on a Prometheus
endpoint (`run --metrics-port`), structured JSON logs on stderr."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections import Counter

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from profilestream import store
from profilestream.config import load_config
from profilestream.devtools.broker import free_port
from profilestream.devtools.sample import ShopSpec
from profilestream.flows import runner
from profilestream.flows.profiles import build_flow
from profilestream.kafka import clients as kafka
from profilestream.kafka import sink as sink_module
from profilestream.kafka import source as source_module
from profilestream.ops import metrics
from support.runkit import Run, clean_env, load_shop, outputs, write_config

SECURITY = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "profiles",
    "sasl.password": "s3cret",
    "ssl.ca.location": "/etc/ssl/kafka-ca.pem",
}


class Built(Exception):
    """Raised by the fake clients once they have recorded their configuration."""


@pytest.fixture
def secure(tmp_path):
    kafka_table = "\n".join(f'"{k}" = "{v}"' for k, v in SECURITY.items())
    path = tmp_path / "secure.toml"
    path.write_text(
        f'[kafka]\nbrokers = "kafka-1:9093,kafka-2:9093"\n{kafka_table}\n\n[store]\npath = "{tmp_path / "store"}"\n',
        encoding="utf-8",
    )
    return load_config(str(path), env={})


def test_kafka_security_settings_reach_every_client(secure, monkeypatch, tmp_path):
    built: dict[str, dict] = {}

    def fake(name):
        def client(conf, *args, **kwargs):
            built[name] = dict(conf)
            raise Built(name)

        return client

    for module, names in (
        (source_module, ("Consumer",)),
        (sink_module, ("Producer",)),
        (kafka, ("Consumer", "Producer", "AdminClient")),
        (store, ("Consumer",)),
    ):
        for name in names:
            monkeypatch.setattr(module, name, fake(f"{module.__name__}.{name}"))

    # the dataflow's own ends, as built for a run
    flow = build_flow(secure, {"clickstream": 1, "crm_changes": 1}, None)
    read = next(step for step in flow.substeps if step.step_id.endswith(".read"))
    write = next(step for step in flow.substeps if step.step_id.endswith(".write"))
    with pytest.raises(Built):
        read.source.build_part(read.step_id, "clickstream/0", None)
    with pytest.raises(Built):
        write.sink.build(write.step_id, 0, 1)
    # the first contact of `run`, and every helper command
    with pytest.raises(Built):
        runner.input_layout(secure, bounded=True)
    with pytest.raises(Built):
        kafka.create_topics(secure)
    with pytest.raises(Built):
        kafka.produce_records(secure, "clickstream", [])
    with pytest.raises(Built):
        kafka.end_offsets(secure, "profiles")
    with pytest.raises(Built):
        store.sync(secure, store.ProfileStore(tmp_path / "store"))

    assert set(built) == {
        "profilestream.kafka.source.Consumer",
        "profilestream.kafka.sink.Producer",
        "profilestream.kafka.clients.AdminClient",
        "profilestream.kafka.clients.Producer",
        "profilestream.kafka.clients.Consumer",
        "profilestream.store.Consumer",
    }
    for name, conf in built.items():
        assert conf["bootstrap.servers"] == "kafka-1:9093,kafka-2:9093", name
        for key, value in SECURITY.items():
            assert conf.get(key) == value, f"{name} lacks {key}"
    # the user's settings win over the sink's defaults
    assert sink_module.producer_config({"enable.idempotence": "false"})["enable.idempotence"] == "false"


def test_counters_are_exported_in_prometheus_format():
    counters = metrics.Counters()
    counters.decoded(
        Counter({"clickstream": 5}),
        Counter({("clickstream", "page_view"): 4}),
        Counter({("clickstream", "not_avro"): 1}),
    )
    counters.engine_state(
        Counter({"clicks.page_view": 4, "late": 1, "merges.login": 2, "triggers.cart_abandoned": 3}),
        1_700_000_000_000,
        7,
    )
    counters.partition("clicks/0", 10, 25)
    counters.delivered(Counter({"profiles": 9}))
    families = {
        f.name: f
        for f in text_string_to_metric_families(
            __import__("prometheus_client").generate_latest(metrics.registry(counters)).decode()
        )
    }
    value = lambda name, **labels: next(  # noqa: E731
        s.value for s in families[name].samples if s.labels == labels and not s.name.endswith("_created")
    )
    assert value("profilestream_events_in", topic="clickstream", type="page_view") == 4
    assert value("profilestream_dead_letters", topic="clickstream", reason="not_avro") == 1
    assert value("profilestream_late_events") == 1
    assert value("profilestream_merges", reason="login") == 2
    assert value("profilestream_triggers", type="cart_abandoned") == 3
    assert value("profilestream_consumer_lag", topic="clicks", partition="0") == 15
    assert value("profilestream_records_out", topic="profiles") == 9
    assert value("profilestream_pending_events") == 7


def test_json_log_lines_and_dead_letter_reasons():
    record = metrics.logging.LogRecord("profilestream", metrics.logging.INFO, __file__, 1, "progress", None, None)
    record.fields = {"records_in": 3, "watermark": metrics.iso_ms(0)}
    line = json.loads(metrics.JsonFormatter().format(record))
    assert line["event"] == "progress" and line["level"] == "info" and line["records_in"] == 3
    assert line["watermark"] == "1970-01-01T00:00:00.000Z" and line["ts"].endswith("Z")
    assert metrics.dead_letter_reason("value", "not a clickstream Avro record (EOFError)") == "not_avro"
    assert metrics.dead_letter_reason("value", "2000000 bytes, over the 1048576-byte (1 MiB) limit") == "too_large"
    assert metrics.dead_letter_reason("campaign.source", "not UTF-8") == "invalid_campaign"
    assert metrics.dead_letter_reason("ts", "before 1990") == "invalid_ts"


def _scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _total(scraped: dict, name: str, **labels) -> float:
    return sum(
        v for (n, ls), v in scraped.items() if n == name and all(dict(ls).get(k) == v2 for k, v2 in labels.items())
    )


@pytest.mark.broker
def test_always_on_run_serves_metrics_and_logs_json_lines(broker, tmp_path):
    toml, config = write_config(
        tmp_path / "ops.toml", broker.bootstrap, f"ops{tmp_path.name[-10:]}", extra='[time]\nidle_after = "1s"\n'
    )
    good = load_shop(config, ShopSpec(events=3000, seed=3, start="2025-03-01T08:00:00Z"))  # all in the past
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(7):
        producer.produce(config.topics.clickstream, b"\xff\xfe not avro %d" % i, b"d-bad")
    producer.flush(10)
    port = free_port()
    run = Run(
        "--config", str(toml), "--metrics-port", str(port), env=clean_env(PROFILESTREAM_RUN_PROGRESS_INTERVAL="200ms")
    )
    try:
        deadline = time.monotonic() + 60
        scraped: dict = {}
        while time.monotonic() < deadline:  # always-on: wait until everything is read and applied
            time.sleep(0.5)
            try:
                scraped = _scrape(port)
            except OSError:
                continue
            applied = (
                _total(scraped, "profilestream_applied_clicks_total")
                + _total(scraped, "profilestream_applied_crm_changes_total")
                + _total(scraped, "profilestream_duplicate_events_total")
            )
            if applied == good and _total(scraped, "profilestream_pending_events") == 0:
                break
        time.sleep(1.0)  # the last outputs' delivery
        scraped = _scrape(port)
    finally:
        run.kill(signal.SIGINT)
    assert run.proc.returncode == 130  # stopped in order by SIGINT
    assert _total(scraped, "profilestream_records_in_total") == good + 7
    assert _total(scraped, "profilestream_events_in_total") == good
    assert _total(scraped, "profilestream_events_in_total", topic="clickstream", type="page_view") > 0
    assert _total(scraped, "profilestream_events_in_total", topic="crm_changes", type="upsert") > 0
    assert _total(scraped, "profilestream_dead_letters_total", topic="clickstream", reason="not_avro") == 7
    assert _total(scraped, "profilestream_late_events_total") == 0
    lags = {
        (dict(ls)["topic"], dict(ls)["partition"]): v
        for (n, ls), v in scraped.items()
        if n == "profilestream_consumer_lag"
    }
    # six input partitions and the transfer loop's three (the internal topic is read too)
    assert len(lags) == 9 and set(lags.values()) == {0}
    assert sum(1 for topic, _ in lags if topic.endswith("-transfers")) == 3

    out = outputs(config)
    by_type = Counter(t["type"] for t in out["triggers"])
    by_reason = Counter(m["reason"] for m in out["merges"])
    assert by_type and by_reason
    for kind, n in by_type.items():
        assert _total(scraped, "profilestream_triggers_total", type=kind) == n
    for reason, n in by_reason.items():
        assert _total(scraped, "profilestream_merges_total", reason=reason) == n
    assert len(out["dead_letters"]) == 7

    assert run.other == [], "\n".join(run.other)  # stderr: JSON lines only
    assert all({"ts", "level", "event"} <= set(line) for line in run.lines)
    names = [line["event"] for line in run.lines]
    assert names[0] == "start" and names.count("partition") == 9  # 6 input partitions, 3 of the transfer loop
    assert "stopping" in names and names[-1] == "end" and run.lines[-1]["reason"] == "stopped"
    assert "metrics" in names
    progress = run.latest("progress")
    for field in ("records_in", "records_out", "applied", "watermark", "pending", "late", "dead_letters", "lag"):
        assert field in progress
    assert progress["dead_letters"] == 7
