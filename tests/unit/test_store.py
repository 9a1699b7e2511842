"""The profile store as a materialised view of `profiles` (no broker: records applied directly)."""

from __future__ import annotations

import os

from profilestream.store import ProfileStore


def profile(pid: str, devices: list[str], key=None, customer=None, updated="2026-11-20T10:00:00.000Z") -> dict:
    return {
        "profile_id": pid,
        "device_ids": devices,
        "customer_key": key,
        "customer_id": customer,
        "updated_at": updated,
    }


def test_found_by_every_identifier(tmp_path):
    store = ProfileStore(tmp_path)
    store.apply("P1", profile("P1", ["d1", "d2"], "k1", "C1"), 0, 0)
    assert {store.find(i)["profile_id"] for i in ("d1", "d2", "k1", "C1", "P1")} == {"P1"}
    assert store.find("nobody") is None


def test_a_record_replaces_and_moves_the_index(tmp_path):
    store = ProfileStore(tmp_path)
    store.apply("P1", profile("P1", ["d1", "d2"]), 0, 0)
    store.apply("P1", profile("P1", ["d1"]), 0, 1)
    assert store.find("d2") is None and store.find("d1")["device_ids"] == ["d1"]


def test_tombstone_deletes_profile_and_its_index(tmp_path):
    store = ProfileStore(tmp_path)
    store.apply("P1", profile("P1", ["d1"], "k1", "C1"), 0, 0)
    store.apply("P1", None, 0, 1)
    assert all(store.find(i) is None for i in ("d1", "k1", "C1", "P1"))
    assert store.count() == 0


def test_merge_applied_with_partitions_out_of_step(tmp_path):
    """The survivor's partition is applied before the merged profile's record and tombstone."""
    store = ProfileStore(tmp_path)
    store.apply("P2", profile("P2", ["d1"], "k", "C1", updated="2026-11-20T10:01:00.000Z"), 1, 0)
    store.apply("P1", profile("P1", ["d1"]), 0, 0)
    assert store.find("d1")["profile_id"] == "P2"  # the more recently updated holder
    store.apply("P1", None, 0, 1)
    assert store.find("d1")["profile_id"] == "P2"


def test_offsets_make_catching_up_incremental(tmp_path):
    store = ProfileStore(tmp_path)
    store.apply("P1", profile("P1", ["d1"]), 2, 41)
    store.close()
    reopened = ProfileStore(tmp_path)
    assert reopened.offset(2) == 42 and reopened.offset(0) is None
    assert reopened.find("d1")["profile_id"] == "P1"


def test_serve_store_on_a_store_another_process_holds_is_one_line_naming_the_key(tmp_path, capsys, monkeypatch):
    """No broker is asked: the store is opened first (a held lock is a Python exception from
    rocksdict, which must not reach the user as a traceback)."""
    from profilestream import cli

    for name in [n for n in os.environ if n.startswith("PROFILESTREAM_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "store"
    config = tmp_path / "p.toml"
    config.write_text(f'[kafka]\nbrokers = "127.0.0.1:9"\n\n[store]\npath = "{path}"\n', encoding="utf-8")
    holder = ProfileStore(path)  # the lock is per process in RocksDB: a second open here is refused alike
    try:
        code = cli.main(["serve-store", "--config", str(config)])
    finally:
        holder.close()
    out, err = capsys.readouterr()
    assert code == 1
    assert "following" not in out
    assert err.strip().splitlines() == [
        f"profilestream: store.path {path}: held by another process (a `serve-store` or a `serve`); "
        "give this one its own store.path"
    ]
