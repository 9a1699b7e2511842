"""Privacy through the real broker: clear e-mail addresses in the input never reach an output
topic, the profile store or the recovery snapshots; `erase` removes the customer from the store.

The addresses come two ways: the generated shop's clear `email`s (encoded by the codec, which
hashes them before they are written), and raw Avro records written here with fastavro straight
from the schema, so that the clear address is on the wire of the input topics and only the
dataflow's decoding stands between it and the outputs.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
from pathlib import Path

import pytest
from confluent_kafka import Producer
from fastavro import schemaless_writer

from profilestream import cli
from profilestream.codec import avro
from profilestream.codec.validation import hash_email
from profilestream.devtools import sample
from profilestream.kafka.clients import (
    create_topics,
    key_of,
    produce_records,
    read_topic,
)
from support.e2e import latest, produce, records, run

pytestmark = pytest.mark.broker

T0 = 1_788_256_800_000  # 2026-09-01, inside the shop's period (sample.ShopSpec start)


def raw_avro(role: str, record: dict) -> bytes:
    """Avro bytes straight from the schema: unlike `avro.encode`, a clear `email` stays clear."""
    buf = io.BytesIO()
    schemaless_writer(buf, avro.schema_for(role), record)
    return buf.getvalue()


def files_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_no_clear_email_in_outputs_store_or_recovery(config, config_path, tmp_path, capsys):
    spec = sample.ShopSpec(events=3000, seed=8, emails=True)
    create_topics(config)
    shop = {"clickstream": [], "crm_changes": []}
    sent_in_clear = []
    for role, rec in sample.generate(spec):
        if rec.get("email"):
            sent_in_clear.append(rec["email"])
        rec = avro.from_json(role, rec)
        shop[role].append((key_of(role, rec), rec))
    for role, recs in shop.items():
        produce_records(config, role, recs)
    assert len(sent_in_clear) >= 5

    # raw records with clear addresses, bypassing `produce`
    raw_addresses = [f"  Raw.Person{i}@Privacy.Example{'.ORG' if i % 2 else '.net'} " for i in range(12)]
    producer = Producer({"bootstrap.servers": config.kafka.brokers})
    for i, address in enumerate(raw_addresses):
        device, customer = f"d-raw-{i}", f"C-raw-{i}"
        click = {"event_id": f"e-raw-{i}", "ts": T0 + i, "device_id": device, "type": "login", "email": address}
        change = {
            "change_id": f"c-raw-{i}",
            "ts": T0 + i,
            "customer_id": customer,
            "op": "upsert",
            "email": address.upper() if i % 3 else address,
            "marketing_consent": True,
        }
        if i % 4 == 0:  # a key and an address both: the key wins, the address must vanish all the same
            click["customer_key"] = hash_email(address)
        producer.produce(config.topics.name("clickstream"), raw_avro("clickstream", click), device.encode())
        producer.produce(config.topics.name("crm_changes"), raw_avro("crm_changes", change), customer.encode())
    assert producer.flush(10) == 0
    wire = b"".join(m.value for m in read_topic(config, config.topics.name("crm_changes")))
    assert raw_addresses[1].strip().upper().encode() in wire  # the premise: clear on the input topic

    recovery = tmp_path / "recovery"
    assert cli.main(["run", "--config", str(config_path), "--until-idle", "--recovery-dir", str(recovery)]) == 0
    profiles = latest(config, "profiles")
    linked = [p for p in profiles.values() if p["customer_id"] == "C-raw-1"]
    assert linked and linked[0]["customer_key"] == hash_email(raw_addresses[1])
    assert "d-raw-1" in linked[0]["device_ids"]  # the raw records were used, keyed by the hash

    capsys.readouterr()
    assert cli.main(["profile", "get", "--config", str(config_path), "C-raw-1"]) == 0  # syncs the store
    shown = capsys.readouterr().out.encode()
    assert json.loads(shown)["customer_key"] == hash_email(raw_addresses[1])

    outputs = b""
    for role in ("profiles", "merges", "triggers", "crm_feed", "dead_letters"):
        for m in read_topic(config, config.topics.name(role)):
            outputs += (m.key or b"") + b"\n" + (m.value or b"") + b"\n"
    # a dead letter carries the original bytes, in base64 where a grep would not see them: decode
    letters = [base64.b64decode(d["value"]) for d in records(config, "dead_letters")]
    store, snapshots = Path(config.store.path), files_bytes(recovery)
    # positive controls: what the grep looks through does hold the profiles, in the clear
    digest = hash_email(raw_addresses[1]).encode()
    assert digest in files_bytes(store) and digest in snapshots and digest in outputs
    places = {
        "output topics": outputs + b"".join(letters),
        "profile store": files_bytes(store),
        "recovery directory": snapshots,
        "profile get": shown,
    }
    addresses = {a for c in sample.population(spec) for a in c.emails} | set(sent_in_clear) | set(raw_addresses)
    assert len(addresses) > 50
    for where, haystack in places.items():
        haystack = haystack.lower()
        found = [a for a in addresses if a.strip().lower().encode() in haystack]
        assert not found, f"clear addresses in the {where}: {found[:5]}"
    assert b"@" not in shown  # (binary files may hold the byte 0x40 by chance; this is text)


def test_erase_removes_the_customer_from_the_store(config, config_path, tmp_path, capsys):
    produce(
        config_path,
        "crm-changes",
        [
            {
                "change_id": "c1",
                "ts": "2026-11-20T10:00:00.000Z",
                "customer_id": "C1",
                "op": "upsert",
                "customer_key": "K1",
            }
        ],
        tmp_path,
    )
    produce(
        config_path,
        "clickstream",
        [
            {
                "event_id": "e1",
                "ts": "2026-11-20T10:05:00.000Z",
                "device_id": "d1",
                "type": "login",
                "customer_key": "K1",
            }
        ],
        tmp_path,
    )
    run(config_path)
    capsys.readouterr()
    for identifier in ("C1", "K1", "d1"):
        assert cli.main(["profile", "get", "--config", str(config_path), identifier]) == 0
    assert json.loads(capsys.readouterr().out.split("\n}\n")[0] + "}")["customer_id"] == "C1"

    produce(
        config_path,
        "crm-changes",
        [{"change_id": "c2", "ts": "2026-11-20T11:00:00.000Z", "customer_id": "C1", "op": "erase"}],
        tmp_path,
    )
    run(config_path)  # from the beginning again: the same outputs, then the erase
    for identifier in ("C1", "K1", "d1"):
        assert cli.main(["profile", "get", "--config", str(config_path), identifier]) == 1
        assert "no profile" in capsys.readouterr().err


def _latest_engine(recovery: Path):
    """Resolution's state in the newest snapshot of the recovery directory, with `shards`: the
    newest snapshot of every profile key that still has one (a discarded key's is None)."""
    import sqlite3

    from profilestream.flows import snapshot
    from profilestream.flows.changelog import NAME, Changelog

    [db] = recovery.glob("*.sqlite3")
    with sqlite3.connect(db) as conn:
        (blob,) = conn.execute(
            "SELECT ser_change FROM snaps WHERE step_id LIKE '%.resolve' ORDER BY snap_epoch DESC LIMIT 1"
        ).fetchone()
        rows = conn.execute(
            "SELECT state_key, ser_change FROM snaps WHERE step_id LIKE '%.profiles' ORDER BY snap_epoch"
        ).fetchall()
    resolver, _, _ = snapshot.load_resolver(pickle.loads(blob), Changelog(recovery / NAME))
    latest = {key: None if ser is None else pickle.loads(ser) for key, ser in rows}
    resolver.shards = [snapshot.load_shard(data) for data in latest.values() if data]
    return resolver


def test_erase_removes_the_customer_from_state_snapshotted_afterwards(config, config_path, tmp_path):
    recovery = tmp_path / "recovery"
    produce(
        config_path,
        "crm-changes",
        [
            {
                "change_id": "c1",
                "ts": "2026-11-20T10:00:00.000Z",
                "customer_id": "C1",
                "op": "upsert",
                "customer_key": "K1",
                "order_id": "O1",
            }
        ],
        tmp_path,
    )
    produce(
        config_path,
        "clickstream",
        [
            {
                "event_id": "e1",
                "ts": "2026-11-20T10:05:00.000Z",
                "device_id": "d1",
                "type": "login",
                "customer_key": "K1",
            }
        ],
        tmp_path,
    )
    run(config_path, "--recovery-dir", str(recovery))
    before = _latest_engine(recovery)
    assert "C1" in before.graph.by_customer and "K1" in before.graph.by_key  # the check can fail

    produce(
        config_path,
        "crm-changes",
        [{"change_id": "c2", "ts": "2026-11-20T11:00:00.000Z", "customer_id": "C1", "op": "erase"}],
        tmp_path,
    )
    run(config_path, "--recovery-dir", str(recovery))  # resumes, applies the erase, snapshots
    after = _latest_engine(recovery)
    assert "C1" not in after.graph.by_customer and "K1" not in after.graph.by_key
    assert "d1" not in after.graph.by_device and "O1" not in after.orders.crm
    assert all(p.customer_id != "C1" for p in after.graph.profiles.values())
    assert before.shards and all(s.profile is None or s.profile.customer_id != "C1" for s in after.shards)
