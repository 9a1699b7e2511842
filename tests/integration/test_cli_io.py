"""The I/O commands on the real embedded broker: topics, produce, consume, keys, errors."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from profilestream import cli
from profilestream.codec import avro
from profilestream.kafka.clients import (
    KEY_FIELDS,
    create_topics,
    end_offsets,
    produce_records,
    read_topic,
)
from support.cli_io import T, sample

pytestmark = pytest.mark.broker


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_lines(path, lines) -> str:
    """A JSONL file: dicts and lists as JSON, strings as they are (for broken lines)."""
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    path.write_text(text, encoding="utf-8")
    return str(path)


def consumed(capsys, config_path, topic) -> list[dict]:
    code, out, err = run_cli(capsys, "consume", "--config", str(config_path), "--topic", topic, "--until-idle")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_topics_create_is_idempotent(capsys, config, config_path):
    code, out, _ = run_cli(capsys, "topics", "create", "--config", str(config_path))
    assert code == 0 and out.count(": created") == 8  # the seven configured and the internal transfers topic
    assert f"{config.topics.profiles}-transfers: created (internal" in out
    code, out, _ = run_cli(capsys, "--config", str(config_path), "topics", "create")
    assert code == 0 and out.count(": exists") == 8
    admin = AdminClient({"bootstrap.servers": config.kafka.brokers})
    topics = admin.list_topics(timeout=10).topics
    for name in config.topics.names().values():
        assert len(topics[name].partitions) == 3
    resource = ConfigResource("topic", config.topics.name("profiles"))
    described = admin.describe_configs([resource])[resource].result()
    assert described["cleanup.policy"].value == "compact"


@pytest.mark.parametrize("role", list(KEY_FIELDS))
def test_every_topic_round_trips_json_avro_kafka_json(role, capsys, config, config_path, tmp_path):
    create_topics(config)
    records = [sample(role, i) for i in range(12)]
    topic = config.topics.name(role)
    code, out, err = run_cli(
        capsys, "produce", "--config", str(config_path), "--topic", topic, write_lines(tmp_path / "in.jsonl", records)
    )
    assert (code, err) == (0, "") and out.startswith(f"sent 12 records to {topic}")

    def key(r):
        return json.dumps(r, sort_keys=True)

    assert sorted(consumed(capsys, config_path, topic), key=key) == sorted(records, key=key)

    messages = list(read_topic(config, topic))
    assert len({m.partition for m in messages}) > 1 or KEY_FIELDS[role] is None
    field = KEY_FIELDS[role]
    expected_keys = sorted(((r[field].encode() if field else None) for r in records), key=lambda k: k or b"")
    assert sorted((m.key for m in messages), key=lambda k: k or b"") == expected_keys


def test_the_role_name_works_as_the_topic_too(capsys, config, config_path, tmp_path):
    create_topics(config)
    code, _, _ = run_cli(
        capsys,
        "produce",
        "--config",
        str(config_path),
        "--topic",
        "crm_changes",
        write_lines(tmp_path / "in.jsonl", [sample("crm_changes", 1)]),
    )
    assert code == 0
    assert consumed(capsys, config_path, "crm-changes") == [sample("crm_changes", 1)]


def test_a_clear_email_is_hashed_and_never_stored(capsys, config, config_path, tmp_path):
    create_topics(config)
    click = {"event_id": "e-1", "ts": T, "device_id": "dev-1", "type": "login", "email": "  Alice.Doe@Example.COM "}
    change = {"change_id": "c-1", "ts": T, "customer_id": "C1", "op": "upsert", "email": "alice.doe@example.com"}
    digest = hashlib.sha256(b"alice.doe@example.com").hexdigest()
    for role, record in (("clickstream", click), ("crm_changes", change)):
        topic = config.topics.name(role)
        code, _, _ = run_cli(
            capsys,
            "produce",
            "--config",
            str(config_path),
            "--topic",
            topic,
            write_lines(tmp_path / f"{role}.jsonl", [record]),
        )
        assert code == 0
        code, out, _ = run_cli(capsys, "consume", "--config", str(config_path), "--topic", topic, "--until-idle")
        [back] = [json.loads(line) for line in out.splitlines()]
        assert back["customer_key"] == digest and "email" not in back
        assert "alice" not in out.lower()
        assert all(b"alice" not in m.value.lower() for m in read_topic(config, topic))


def test_malformed_lines_are_rejected_with_their_line_numbers(capsys, config, config_path, tmp_path):
    create_topics(config)
    good = sample("clickstream", 1)
    lines = [
        good,  # 1
        "{not json",  # 2
        {k: v for k, v in good.items() if k != "ts"},  # 3: required field missing
        {**good, "type": "teleport"},  # 4: not in the enum
        "",  # 5: blank, skipped
        {**good, "ts": "2026-11-20 10:15:00"},  # 6: no zone
        {**good, "colour": "blue"},  # 7: unknown field
        [1, 2],  # 8: not an object
        {**good, "event_id": "e-2"},  # 9
    ]
    path = write_lines(tmp_path / "in.jsonl", lines)
    with open(path, "ab") as fh:  # 10: not UTF-8
        fh.write(json.dumps({**good, "event_id": "e-3"}).encode().replace(b"e-3", b"e-\xff") + b"\n")
    code, out, err = run_cli(capsys, "produce", "--config", str(config_path), "--topic", "clickstream", path)
    assert code == 1
    assert out.startswith(f"sent 2 records to {config.topics.name('clickstream')}; rejected 7")
    assert [line.split(":")[0] for line in err.splitlines()] == [f"line {n}" for n in (2, 3, 4, 6, 7, 8, 10)]
    assert "not valid JSON" in err and "'ts'" in err and "teleport" in err and "'colour'" in err
    assert "'event_id': not valid UTF-8" in err
    assert sorted(r["event_id"] for r in consumed(capsys, config_path, "clickstream")) == ["e-001", "e-2"]


def test_stdin_and_tombstones(capsys, config, config_path, monkeypatch):
    import io

    create_topics(config)
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(sample("profiles", 1)) + "\n"))
    code, _, _ = run_cli(capsys, "produce", "--config", str(config_path), "--topic", "profiles", "-")
    assert code == 0
    produce_records(config, "profiles", [("p-001", None)])
    assert consumed(capsys, config_path, "profiles")[-1] == {"key": "p-001", "tombstone": True}


def test_reading_finds_the_true_end_of_every_partition(config):
    """Tansu reports a partition's end as the start of its last batch + 1: we must not trust it."""
    create_topics(config)
    sent = produce_records(
        config, "merges", [(f"p-{i % 7}", avro.from_json("merges", sample("merges", i % 7))) for i in range(2000)]
    )
    ends = end_offsets(config, config.topics.name("merges"))
    assert sent == 2000 and sum(end - low for low, end in ends.values()) == 2000
    assert len(list(read_topic(config, config.topics.name("merges")))) == 2000


def test_missing_topic_and_unknown_topic_are_clear_errors(capsys, config_path, tmp_path):
    path = write_lines(tmp_path / "in.jsonl", [sample("clickstream", 1)])
    code, _, err = run_cli(capsys, "produce", "--config", str(config_path), "--topic", "clickstream", path)
    assert code == 1 and "does not exist" in err and "topics create" in err
    code, _, err = run_cli(capsys, "consume", "--config", str(config_path), "--topic", "nope", "--until-idle")
    assert code == 1 and 'unknown topic "nope"' in err


def test_a_bad_config_value_exits_2_naming_the_key(capsys, tmp_path, monkeypatch):
    path = tmp_path / "bad.toml"
    path.write_text("[topics]\npartitions = 0\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "topics", "create", "--config", str(path))
    assert code == 2 and err.startswith("profilestream: configuration error: topics.partitions")
    monkeypatch.setenv("PROFILESTREAM_TIME_ALLOWED_LATENESS", "soon")
    code, _, err = run_cli(capsys, "consume", "--topic", "clickstream")
    assert code == 2 and "time.allowed_lateness" in err and "PROFILESTREAM_TIME_ALLOWED_LATENESS" in err


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_consume_without_until_idle_tails_until_ctrl_c(config, config_path, broker, inherited):
    """`ignored`: started with SIGINT ignored, as a shell's background job is. So was this test's
    child on Apache Kafka in every full-suite run: `make test` starts the Kafka session with `&`
    in make's non-interactive shell, which ignores SIGINT for it and all its children, and the
    hung `consume`'s stacks showed its read loop going on 60 s after SIGINT."""
    create_topics(config)
    produce_records(config, "triggers", [("p-001", avro.from_json("triggers", sample("triggers", 1)))])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from profilestream.cli import main; sys.exit(main())",
            "consume",
            "--config",
            str(config_path),
            "--topic",
            "triggers",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PROFILESTREAM_")},
        preexec_fn=_ignore_sigint if inherited == "ignored" else None,
    )
    try:
        assert json.loads(proc.stdout.readline())["trigger_id"] == "tr-001"
        produce_records(config, "triggers", [("p-002", avro.from_json("triggers", sample("triggers", 2)))])
        assert json.loads(proc.stdout.readline())["trigger_id"] == "tr-002"
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)  # a bound against a hang: a loaded machine answers the close late
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # where it hangs: every thread's stack (cli.main), kept
            time.sleep(2)
            proc.kill()
            stacks = proc.communicate()[1]
            kept = Path("build") / "hangs" / f"consume-ctrl-c-{broker.kind}-{os.getpid()}.txt"
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(stacks, encoding="utf-8")
            raise AssertionError(f"consume did not stop within 60 s of SIGINT; its stacks are in {kept}") from None
        assert code == 130
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_no_broker_answering_is_a_clear_error(capsys, config_path, monkeypatch, tmp_path):
    monkeypatch.setenv("PROFILESTREAM_KAFKA_BROKERS", "127.0.0.1:1")
    monkeypatch.setenv("PROFILESTREAM_RUN_CONNECT_TIMEOUT", "1s")
    path = write_lines(tmp_path / "in.jsonl", [sample("clickstream", 1)])
    for argv in (
        ["topics", "create"],
        ["produce", "--topic", "clickstream", path],
        ["consume", "--topic", "clickstream", "--until-idle"],
    ):
        code, _, err = run_cli(capsys, *argv, "--config", str(config_path))
        assert code == 1 and err.count("\n") == 1, argv  # one line, no librdkafka noise
        assert "no Kafka broker answered at kafka.brokers = 127.0.0.1:1 within run.connect_timeout = 1s" in err, argv
