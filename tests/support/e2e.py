"""End-to-end helpers: events through the real embedded broker, the CLI and the dataflow."""

from __future__ import annotations

import json
from pathlib import Path

from profilestream import cli
from profilestream.codec import avro
from profilestream.kafka.clients import read_topic

TIME_FIELDS = ("ts", "first_seen", "last_seen", "last_order_ts", "updated_at", "first_ts", "last_ts")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def produce(config_path: Path, topic: str, records: list[dict], tmp: Path) -> None:
    assert cli.main(["topics", "create", "--config", str(config_path)]) == 0
    file = write_jsonl(tmp / f"{topic}.jsonl", records)
    assert cli.main(["produce", "--config", str(config_path), "--topic", topic, str(file)]) == 0


def run(config_path: Path, *extra: str) -> None:
    assert cli.main(["run", "--config", str(config_path), "--until-idle", *extra]) == 0


def latest(config, role: str) -> dict[str, dict]:
    """The final state of a keyed topic: latest record per key, tombstones applied."""
    state: dict[str, dict] = {}
    for m in read_topic(config, config.topics.name(role)):
        key = m.key.decode()
        if m.value is None:
            state.pop(key, None)
        else:
            state[key] = avro.to_json(role, avro.decode(role, m.value))
    return state


def records(config, role: str) -> list[dict]:
    return [
        avro.to_json(role, avro.decode(role, m.value))
        for m in read_topic(config, config.topics.name(role))
        if m.value is not None
    ]


def tombstones(config, role: str) -> set[str]:
    return {m.key.decode() for m in read_topic(config, config.topics.name(role)) if m.value is None}


def raw_bytes(config) -> bytes:
    """Every key and value of every output topic, for privacy greps."""
    out = b""
    for role in ("profiles", "merges", "triggers", "crm_feed", "dead_letters"):
        for m in read_topic(config, config.topics.name(role)):
            out += (m.key or b"") + (m.value or b"")
    return out


def holding(profiles: dict[str, dict], identifier: str) -> dict:
    found = [
        p
        for p in profiles.values()
        if identifier in p["device_ids"] or identifier in (p["customer_key"], p["customer_id"])
    ]
    assert len(found) == 1, f"{identifier!r} is in {len(found)} profiles"
    return found[0]


def comparable(profiles: dict[str, dict]) -> dict[str, dict]:
    return {k: {f: v for f, v in p.items()} for k, p in profiles.items()}
