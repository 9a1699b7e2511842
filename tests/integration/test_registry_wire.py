"""`produce` and `consume` in the Confluent wire format on a real broker, with the registry client's
`mock://` registry (it lives in the process, so the commands run in-process, as `cli.main`)."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from profilestream import cli
from profilestream.codec import registry
from profilestream.config import load_config
from profilestream.kafka.clients import read_topic

pytestmark = pytest.mark.broker

CLICKS = [
    {"event_id": f"e-{i}", "ts": f"2026-11-20T10:15:0{i}.000Z", "device_id": f"d-{i}", "type": "page_view"}
    for i in range(3)
]


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _with_registry(config_path, url: str):
    path = config_path.with_name("with-registry.toml")
    path.write_text(config_path.read_text() + f'\n[schema_registry]\nurl = "{url}"\n')
    return path


def test_produce_frames_consume_reads_framed_and_raw(capsys, config_path, tmp_path):
    url = f"mock://{uuid.uuid4().hex}"
    framed_config = _with_registry(config_path, url)
    lines = tmp_path / "clicks.jsonl"
    lines.write_text("".join(json.dumps(c) + "\n" for c in CLICKS[:2]))
    one_raw = tmp_path / "raw.jsonl"
    one_raw.write_text(json.dumps(CLICKS[2]) + "\n")

    assert _cli(capsys, "topics", "create", "--config", str(config_path))[0] == 0
    code, out, err = _cli(capsys, "produce", "--config", str(framed_config), "--topic", "clickstream", str(lines))
    assert code == 0, err
    code, _, err = _cli(capsys, "produce", "--config", str(config_path), "--topic", "clickstream", str(one_raw))
    assert code == 0, err  # a producer without a registry: a raw value on the same topic

    config = load_config(str(framed_config), env={})
    topic = config.topics.name("clickstream")
    values = [m.value for m in read_topic(config, topic)]
    subject_id = registry.client(url).get_latest_version(f"{topic}-value").schema_id
    assert sorted(registry.schema_id(v) or 0 for v in values) == [0, subject_id, subject_id]  # 0: raw
    deserializer = AvroDeserializer(registry.client(url))
    read = [deserializer(v, SerializationContext(topic, MessageField.VALUE)) for v in values if v and v[0] == 0]
    assert sorted(r["event_id"] for r in read) == ["e-0", "e-1"]

    code, out, err = _cli(capsys, "consume", "--config", str(framed_config), "--topic", "clickstream", "--until-idle")
    assert code == 0, err
    printed = sorted((json.loads(line) for line in out.splitlines()), key=lambda r: r["event_id"])
    assert [{k: r[k] for k in CLICKS[0]} for r in printed] == CLICKS

    # without the registry, the framed ones are unreadable, and the reason says why
    code, out, err = _cli(capsys, "consume", "--config", str(config_path), "--topic", "clickstream", "--until-idle")
    assert code == 1
    assert [json.loads(line)["event_id"] for line in out.splitlines()] == ["e-2"]
    assert err.count("is schema_registry.url set?") == 2


def _newer_clickstream_schema() -> str:
    """The clickstream schema as a producer that added an optional field would register it."""
    from profilestream.codec import avro

    schema = json.loads(avro.schema_text("clickstream"))
    schema["fields"].append({"name": "ab_variant", "type": ["null", "string"], "default": None})
    return json.dumps(schema)


def _written_with(schema_text: str, ours: bytes, **added) -> bytes:
    """`ours` (a raw value in our own schema) re-written with a newer schema, plus `added` fields."""
    import io

    from fastavro import parse_schema, schemaless_reader, schemaless_writer

    from profilestream.codec import avro

    record = schemaless_reader(io.BytesIO(ours), parse_schema(json.loads(avro.schema_text("clickstream"))), None)
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(json.loads(schema_text)), {**record, **added})
    return out.getvalue()


def test_run_reads_framed_raw_and_newer_schema_inputs_and_frames_its_outputs(capsys, config_path, tmp_path):
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import Schema

    from profilestream.codec import avro

    url = f"mock://{uuid.uuid4().hex}"
    framed_config = _with_registry(config_path, url)
    config = load_config(str(framed_config), env={})
    topic = config.topics.name("clickstream")
    assert _cli(capsys, "topics", "create", "--config", str(config_path))[0] == 0
    framed = tmp_path / "framed.jsonl"
    framed.write_text(json.dumps(CLICKS[0]) + "\n")
    assert _cli(capsys, "produce", "--config", str(framed_config), "--topic", "clickstream", str(framed))[0] == 0
    raw = tmp_path / "raw.jsonl"
    raw.write_text(json.dumps(CLICKS[1]) + "\n")
    assert _cli(capsys, "produce", "--config", str(config_path), "--topic", "clickstream", str(raw))[0] == 0
    # a third producer registered a newer version of the subject (one optional field more)
    newer = _newer_clickstream_schema()
    newer_id = registry.client(url).register_schema(f"{topic}-value", Schema(newer, "AVRO"))
    ours = avro.encode("clickstream", avro.from_json("clickstream", CLICKS[2]))
    producer = Producer({"bootstrap.servers": config.kafka.brokers})
    producer.produce(topic, registry.frame(newer_id, _written_with(newer, ours, ab_variant="B")), partition=0)
    assert producer.flush(30) == 0

    code, _, err = _cli(capsys, "run", "--config", str(framed_config), "--until-idle")
    assert code == 0, err

    assert list(read_topic(config, config.topics.name("dead_letters"))) == []
    deserializer = AvroDeserializer(registry.client(url))
    profiles_topic = config.topics.name("profiles")
    values = [m.value for m in read_topic(config, profiles_topic) if m.value is not None]
    assert values and all(registry.schema_id(v) is not None for v in values)
    read = [deserializer(v, SerializationContext(profiles_topic, MessageField.VALUE)) for v in values]
    devices = {d for r in read for d in r["device_ids"]}
    assert devices == {"d-0", "d-1", "d-2"}  # framed, raw and newer-schema clicks all applied


def test_run_stops_at_start_naming_the_registry_that_does_not_answer(capsys, config_path):
    unreachable = _with_registry(config_path, "http://127.0.0.1:9")  # the discard port: refused
    assert _cli(capsys, "topics", "create", "--config", str(config_path))[0] == 0
    code, _, err = _cli(capsys, "run", "--config", str(unreachable), "--until-idle")
    assert code == 2
    assert "schema_registry.url" in err and "127.0.0.1:9" in err


def _framed_clicks(capsys, config_path, tmp_path):
    """The topics created and `CLICKS` produced framed for a fresh mock registry: its URL and the
    configuration that names it."""
    url = f"mock://{uuid.uuid4().hex}"
    framed_config = _with_registry(config_path, url)
    lines = tmp_path / "clicks.jsonl"
    lines.write_text("".join(json.dumps(c) + "\n" for c in CLICKS))
    assert _cli(capsys, "topics", "create", "--config", str(config_path))[0] == 0
    assert _cli(capsys, "produce", "--config", str(framed_config), "--topic", "clickstream", str(lines))[0] == 0
    return url, framed_config


def test_profile_get_reads_the_framed_profiles_of_a_run_with_a_registry(capsys, config_path, tmp_path):
    _, framed_config = _framed_clicks(capsys, config_path, tmp_path)
    assert _cli(capsys, "run", "--config", str(framed_config), "--until-idle")[0] == 0
    code, out, err = _cli(capsys, "profile", "get", "--config", str(framed_config), "d-1")
    assert code == 0, err
    assert json.loads(out)["device_ids"] == ["d-1"]


def test_record_reads_framed_values_and_replay_frames_them_with_a_registry(capsys, config_path, tmp_path):
    url, framed_config = _framed_clicks(capsys, config_path, tmp_path)
    code, out, err = _cli(capsys, "record", "--config", str(framed_config), "--out", str(tmp_path / "rec"))
    assert code == 0, err
    assert "undecodable" not in out + err  # framed values were read, and recorded decoded

    # replayed into other topics of the same cluster and registry
    text = framed_config.read_text()
    prefix = text.split('clickstream = "')[1].split("clickstream")[0]
    copy = framed_config.with_name("copy.toml")
    copy.write_text(text.replace(f'"{prefix}', f'"{prefix}copy-'))
    code, out, err = _cli(capsys, "replay", "--config", str(copy), str(tmp_path / "rec"))
    assert code == 0, err
    config = load_config(str(copy), env={})
    topic = config.topics.name("clickstream")
    values = [m.value for m in read_topic(config, topic)]
    deserializer = AvroDeserializer(registry.client(url))
    read = [deserializer(v, SerializationContext(topic, MessageField.VALUE)) for v in values]
    assert all(registry.schema_id(v) is not None for v in values)
    assert sorted(r["event_id"] for r in read) == ["e-0", "e-1", "e-2"]
