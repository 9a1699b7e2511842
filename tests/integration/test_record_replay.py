"""`profilestream record` / `replay` on the real embedded broker, and the scenario recordings in
tests/recordings/ (made by tests/recordings/make_recordings.py) replayed through `run --until-idle`.

A recording replayed into a fresh broker gives the same input partitions (keys, values, timestamps,
order) and so the same outputs as the original run.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Producer

from profilestream import cli
from profilestream.codec import avro
from profilestream.devtools import sample
from profilestream.kafka.clients import (
    create_topics,
    key_of,
    produce_records,
    read_topic,
)
from support import brokers
from support.e2e import holding, latest, records, tombstones
from support.record_replay import other_config

pytestmark = pytest.mark.broker

RECORDINGS = Path(__file__).parent.parent / "recordings"
sys.path.insert(0, str(RECORDINGS))
from make_recordings import ts  # noqa: E402  (the scenarios' own clock)


def cli_ok(capsys, *argv) -> str:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def partitions(config, role: str) -> dict[int, list[tuple]]:
    """Each partition's messages (key, value, timestamp) in offset order."""
    out: dict[int, list[tuple]] = {}
    for m in read_topic(config, config.topics.name(role)):
        out.setdefault(m.partition, []).append((m.key, m.value, m.timestamp))
    return out


def outputs(config) -> dict:
    """Everything a run produced, in a form that does not depend on topic names (one read a topic)."""
    got: dict = {}
    for role in ("profiles", "crm_feed", "merges", "triggers", "dead_letters"):
        state: dict[str, dict] = {}
        values = []
        for m in read_topic(config, config.topics.name(role)):
            value = None if m.value is None else avro.to_json(role, avro.decode(role, m.value))
            if m.key is not None:
                state.pop(m.key.decode(), None) if value is None else state.__setitem__(m.key.decode(), value)
            if value is not None:
                values.append(value)
        got[role] = state if role in ("profiles", "crm_feed") else values
    got["merges"] = sorted(json.dumps(m, sort_keys=True) for m in got["merges"])
    got["triggers"] = sorted(t["trigger_id"] for t in got["triggers"])
    got["dead_letters"] = sorted((d["partition"], d["offset"], d["value"], d["error"]) for d in got["dead_letters"])
    return got


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_replayed_recording_gives_the_same_outputs(broker, config, config_path, tmp_path, capsys, monkeypatch):
    create_topics(config)
    by_role: dict[str, list] = {"clickstream": [], "crm_changes": []}
    for role, rec in sample.generate(sample.ShopSpec(events=600, seed=11)):
        rec = avro.from_json(role, rec)
        by_role[role].append((key_of(role, rec), rec))
    for role, recs in by_role.items():
        produce_records(config, role, recs)
    # what no Avro reader can read must survive a recording too: garbage bytes and a tombstone
    producer = Producer({"bootstrap.servers": config.kafka.brokers})
    garbage = [b"\xff\x00garbage", b"", b"\x02\x00\x00\x00\x00\x00\x00\x00"]
    for i, value in enumerate(garbage):
        producer.produce(config.topics.name("clickstream"), value, f"junk-{i}".encode())
    producer.produce(config.topics.name("crm_changes"), None, b"C-tomb")
    assert producer.flush(10) == 0
    cli_ok(capsys, "run", "--config", str(config_path), "--until-idle")
    before = outputs(config)
    assert len(before["dead_letters"]) == 4 and before["triggers"] and before["merges"]

    out_dir = tmp_path / "rec"
    code = cli.main(
        ["record", "--config", str(config_path), "--topics", "clickstream,crm-changes", "--out", str(out_dir)]
    )
    out, err = capsys.readouterr()
    assert code == 0 and err == ""  # stderr is no terminal here: no progress bar
    assert out.splitlines()[-1] == f"recorded 604 records from 2 topics to {out_dir}"
    manifest = json.loads((out_dir / "manifest.json").read_text())
    clicks, crm = manifest["topics"]
    assert (clicks["role"], clicks["partitions"], clicks["undecodable"]) == ("clickstream", 3, 3)
    assert (crm["role"], crm["tombstones"]) == ("crm_changes", 1)
    assert clicks["records"] + crm["records"] == 604
    assert sum(f["records"] for f in clicks["files"]) == clicks["records"]
    with open(out_dir / clicks["files"][0]["file"], "rb") as fh:  # any Avro reader opens the files
        first = next(iter(fastavro.reader(fh)))
    assert set(first) == {"offset", "timestamp", "key", "value", "raw"} and first["offset"] == 0

    with brokers.broker(broker.kind) as fresh:  # another of the same kind
        path_b, config_b = other_config(tmp_path, fresh.bootstrap, "b-")
        monkeypatch.setattr(sys, "stderr", Terminal())  # a terminal: the bar shows
        code = cli.main(["replay", "--config", str(path_b), str(out_dir)])
        bar = sys.stderr.getvalue()
        monkeypatch.undo()
        out = capsys.readouterr().out
        assert code == 0 and "replaying" in bar
        assert out.splitlines()[-1] == "replayed 604 records into 2 topics"
        cli_ok(capsys, "topics", "create", "--config", str(path_b))  # the outputs: `run` creates no topics
        n = len(by_role["clickstream"]) + len(garbage)
        assert f"b-clickstream: {n} records in 3 partitions ({len(garbage)} undecodable) (created)" in out
        for role in ("clickstream", "crm_changes"):
            assert partitions(config_b, role) == partitions(config, role)  # keys, bytes, times, order
        cli_ok(capsys, "run", "--config", str(path_b), "--until-idle")
        after = outputs(config_b)
        assert after == before

        # an output topic with tombstones, replayed into fresh names on the same broker
        cli_ok(capsys, "record", "--config", str(config_path), "--topics", "profiles", "--out", str(tmp_path / "p"))
        path_c, config_c = other_config(tmp_path, fresh.bootstrap, "c-")
        cli_ok(capsys, "replay", "--config", str(path_c), str(tmp_path / "p"))
        assert partitions(config_c, "profiles") == partitions(config, "profiles")
        assert tombstones(config_c, "profiles") == tombstones(config, "profiles") != set()


def test_record_and_replay_refuse_what_they_cannot_do(config, config_path, tmp_path, capsys):
    create_topics(config)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert cli.main(["record", "--config", str(config_path), "--out", str(tmp_path / "full")]) == 1
    assert "not an empty directory" in capsys.readouterr().err
    assert cli.main(["record", "--config", str(config_path), "--topics", "nope", "--out", str(tmp_path / "a")]) == 1
    assert 'unknown topic "nope"' in capsys.readouterr().err
    assert cli.main(["replay", "--config", str(config_path), str(tmp_path / "full")]) == 1
    assert "not a recording" in capsys.readouterr().err


# --- the scenario recordings -------------------------------------------------------------------


def replay_and_run(name: str, broker, config, config_path: Path, capsys) -> None:
    if broker.kind == "kafka":  # the recorded timestamps run weeks ahead too (below): Kafka refuses
        create_topics(config)  # those more than an hour ahead unless the topic allows them
        brokers.allow_future_timestamps(config, ("clickstream", "crm_changes"))
    cli_ok(capsys, "replay", "--config", str(config_path), str(RECORDINGS / name))
    cli_ok(capsys, "topics", "create", "--config", str(config_path))  # the outputs: `run` creates no topics
    # the scenarios' clock starts 2026-11-20 and runs for weeks: days of it may be ahead of the wall
    # clock, which time.max_future would dead-letter
    timeless = config_path.with_name("timeless.toml")
    timeless.write_text(config_path.read_text(encoding="utf-8") + '\n[time]\nmax_future = "off"\n', encoding="utf-8")
    cli_ok(capsys, "run", "--config", str(timeless), "--until-idle")


def test_recording_login_merge(broker, config, config_path, capsys):
    replay_and_run("login_merge", broker, config, config_path, capsys)
    profiles = latest(config, "profiles")
    person = holding(profiles, "C1")
    assert sorted(person["device_ids"]) == ["d1", "d2"]  # d1 and d2 end in one profile with C1
    assert person["customer_key"] == "K1" and person["lead_status"] == "lead"
    # their anonymous activity before the logins came along
    assert person["product_views"] == 2 and sorted(person["viewed_products"]) == ["sku-1", "sku-2"]
    assert person["page_views"] == 3 and [c["name"] for c in person["campaigns"]] == ["brand"]
    stranger = holding(profiles, "d3")
    assert stranger["customer_id"] is None and stranger["profile_id"] != person["profile_id"]
    assert len(profiles) == 2
    by_reason = {m["reason"]: m for m in records(config, "merges")}
    assert sorted(by_reason) == ["crm_link", "login"]
    # d2 merged into the profile of d1 and K1 at its login, which the CRM link then merged into C1's
    assert by_reason["login"]["into_profile_id"] == by_reason["crm_link"]["from_profile_id"]
    assert by_reason["crm_link"]["into_profile_id"] == person["profile_id"]
    assert by_reason["login"]["ts"] == ts(615)


def test_recording_order_match_crm_first(broker, config, config_path, capsys):
    replay_and_run("order_match_crm_first", broker, config, config_path, capsys)
    profiles = latest(config, "profiles")
    person = holding(profiles, "C2")
    assert "d5" in person["device_ids"] and person["lead_status"] == "sale"
    assert person["orders"] == 1 and person["revenue"] == 49.9
    [match] = [m for m in records(config, "merges") if m["reason"] == "order_match"]
    assert match["into_profile_id"] == person["profile_id"] and match["ts"] == ts(620)
    assert holding(profiles, "d6")["customer_id"] is None  # O-88: the CRM never named it
    assert holding(profiles, "d7")["customer_id"] is None  # O-99: 31 days apart, beyond the window
    assert records(config, "triggers") == []  # the purchase closed d5's cart


def test_recording_cart_abandon_cross_device(broker, config, config_path, capsys):
    replay_and_run("cart_abandon_cross_device", broker, config, config_path, capsys)
    [abandoned] = [t for t in records(config, "triggers") if t["type"] == "cart_abandoned"]
    assert abandoned["customer_id"] == "C3" and abandoned["device_id"] == "p3"  # exactly one, C3's
    assert abandoned["ts"] == ts(600 + 60, day=1)  # the add of the next day plus cart_abandon_after
    assert [line["product_id"] for line in abandoned["cart"]] == ["sku-2"]
    profiles = latest(config, "profiles")
    person = holding(profiles, "C3")
    assert sorted(person["device_ids"]) == ["l3", "p3"] and person["orders"] == 1
    assert holding(profiles, "C4")["cart"] != []  # left full, but no consent: no trigger
    assert holding(profiles, "d8")["cart"] == []  # emptied: no trigger
    assert len(records(config, "triggers")) == 1
