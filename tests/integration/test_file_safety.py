"""File safety (issue 11, finding 6): a recording cannot make `replay` read outside its directory,
a malformed recording is answered with a message naming the file, and what holds personal data
on disk (the profile store, the recovery directory, a recording) is private to its owner:
directories 0700, files 0600, also the files RocksDB and Bytewax create while they run."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fastavro.write import Writer

from profilestream import cli
from profilestream.codec import avro
from profilestream.devtools.sample import ShopSpec
from profilestream.kafka import recording
from profilestream.kafka.clients import create_topics, end_offsets, produce_records
from support.runkit import clean_env, load_shop

pytestmark = pytest.mark.broker

CLICK = {"event_id": "e-1", "ts": "2026-01-05T10:00:00.000Z", "device_id": "d-1", "type": "page_view"}


def write_container(path: Path, role: str = "clickstream", n: int = 3) -> None:
    """A recording file as `record` writes it, with `n` records of `role`."""
    value = avro.from_json(role, CLICK)
    with open(path, "wb") as fh:
        writer = Writer(fh, recording.container_schema(role), codec=recording.CODEC)
        for i in range(n):
            writer.write(
                {
                    "offset": i,
                    "timestamp": 1_767_607_200_000 + i,
                    "key": b"d-1",
                    "value": {**value, "event_id": f"e-{i}"},
                    "raw": None,
                }
            )
        writer.flush()


def write_recording(directory: Path, files: list[str], records: int = 3) -> Path:
    """A one-topic (clickstream) recording whose manifest names `files` as partitions 0, 1, ..."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = [
        {"partition": p, "file": name, "records": records, "first_offset": 0, "last_offset": records - 1}
        for p, name in enumerate(files)
    ]
    manifest = {
        "format": recording.FORMAT,
        "version": recording.VERSION,
        "topics": [
            {
                "topic": "clicks",
                "role": "clickstream",
                "partitions": max(1, len(files)),
                "records": records * len(files),
                "tombstones": 0,
                "undecodable": 0,
                "files": entries,
            }
        ],
    }
    (directory / recording.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return directory


def replay_cli(config_path: Path, directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "profilestream.cli", "replay", "--config", str(config_path), str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )


def clicks_on_broker(config) -> int:
    from confluent_kafka.admin import AdminClient

    topics = AdminClient(config.kafka.client_config()).list_topics(timeout=10).topics
    name = config.topics.name("clickstream")
    return sum(end - low for low, end in end_offsets(config, name).values()) if name in topics else 0


# --- replay stays inside its directory ---------------------------------------------------------


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "symlinked_dir"])
def test_replay_refuses_a_partition_file_outside_the_recording(config, config_path, tmp_path, how):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_container(outside / "secret.avro")
    rec = tmp_path / "rec"
    rec.mkdir()
    write_container(rec / "ok-0.avro")
    if how == "absolute":
        name = str(outside / "secret.avro")
    elif how == "dotdot":
        name = "../elsewhere/secret.avro"
    elif how == "symlink":
        (rec / "link.avro").symlink_to(outside / "secret.avro")
        name = "link.avro"
    else:
        (rec / "sub").symlink_to(outside)
        name = "sub/secret.avro"
    write_recording(rec, ["ok-0.avro", name])
    done = replay_cli(config_path, rec)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("profilestream: ") and "outside the recording" in line and name in line
    assert clicks_on_broker(config) == 0  # refused before anything was produced


def _manifest_problems(rec: Path) -> dict[str, tuple]:
    """Recordings broken in one way each: (directory, the file the message must name, its words)."""
    cases: dict[str, tuple] = {}

    bad_json = rec / "bad_json"
    write_recording(bad_json, [])
    (bad_json / "manifest.json").write_text(
        '{"format": "profilestream-recording", "version": 1, "topics": [', encoding="utf-8"
    )
    cases["bad_json"] = (bad_json, bad_json / "manifest.json", "not valid JSON")

    for broken, change in {
        "no_topics": lambda m: m.pop("topics"),
        "no_files": lambda m: m["topics"][0].pop("files"),
        "no_file_name": lambda m: m["topics"][0]["files"][0].pop("file"),
        "no_partition": lambda m: m["topics"][0]["files"][0].pop("partition"),
        "partitions_text": lambda m: m["topics"][0].__setitem__("partitions", "three"),
        "topics_not_a_list": lambda m: m.__setitem__("topics", {"a": 1}),
        "partition_beyond_count": lambda m: m["topics"][0]["files"][0].__setitem__("partition", 7),
        "not_an_object": None,
    }.items():
        directory = write_recording(rec / broken, ["clicks-0.avro"])
        write_container(directory / "clicks-0.avro")
        manifest = json.loads((directory / "manifest.json").read_text())
        if change is None:
            manifest = [manifest]
        else:
            change(manifest)
        (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        cases[broken] = (directory, directory / "manifest.json", "")

    missing = write_recording(rec / "missing_file", ["clicks-0.avro"])
    cases["missing_file"] = (missing, missing / "clicks-0.avro", "")

    no_schema = write_recording(rec / "no_schema", ["clicks-0.avro"])
    write_container(no_schema / "clicks-0.avro")
    data = (no_schema / "clicks-0.avro").read_bytes()
    (no_schema / "clicks-0.avro").write_bytes(data.replace(b"avro.schema", b"avro.scheme", 1))
    cases["no_schema"] = (no_schema, no_schema / "clicks-0.avro", "avro.schema")

    truncated = write_recording(rec / "truncated", ["clicks-0.avro"], records=400)
    write_container(truncated / "clicks-0.avro", n=400)
    whole = (truncated / "clicks-0.avro").read_bytes()
    (truncated / "clicks-0.avro").write_bytes(whole[: len(whole) - 40])
    cases["truncated"] = (truncated, truncated / "clicks-0.avro", "")

    not_avro = write_recording(rec / "not_avro", ["clicks-0.avro"])
    (not_avro / "clicks-0.avro").write_text("hello, I am not an Avro file\n", encoding="utf-8")
    cases["not_avro"] = (not_avro, not_avro / "clicks-0.avro", "")

    other_schema = write_recording(rec / "other_schema", ["clicks-0.avro"])
    with open(other_schema / "clicks-0.avro", "wb") as fh:
        writer = Writer(fh, {"type": "record", "name": "X", "fields": [{"name": "n", "type": "long"}]})
        writer.write({"n": 1})
        writer.flush()
    cases["other_schema"] = (other_schema, other_schema / "clicks-0.avro", "")

    fewer = write_recording(rec / "fewer_records", ["clicks-0.avro"], records=5)
    write_container(fewer / "clicks-0.avro", n=3)
    cases["fewer_records"] = (fewer, fewer / "clicks-0.avro", "")
    return cases


def test_a_malformed_recording_is_a_message_naming_the_file_not_a_traceback(config, config_path, tmp_path, capsys):
    for name, (directory, culprit, words) in _manifest_problems(tmp_path).items():
        code = cli.main(["replay", "--config", str(config_path), str(directory)])
        out, err = capsys.readouterr()
        assert code == 1, (name, err)
        assert out == "" and err.startswith("profilestream: ") and len(err.strip().splitlines()) == 1, (name, err)
        assert str(culprit) in err, (name, err)
        assert words in err, (name, err)
    assert clicks_on_broker(config) == 0  # each one refused before anything was produced
    # and as a process: no Python traceback reaches the user
    directory, culprit, _ = _manifest_problems(tmp_path / "again")["no_schema"]
    done = replay_cli(config_path, directory)
    assert done.returncode == 1 and "Traceback" not in done.stderr and str(culprit) in done.stderr


def test_a_good_recording_made_by_hand_still_replays(config, config_path, tmp_path, capsys):
    rec = write_recording(tmp_path / "rec", ["clicks-0.avro", "sub/clicks-1.avro"])
    write_container(rec / "clicks-0.avro")
    (rec / "sub").mkdir()
    write_container(rec / "sub" / "clicks-1.avro")
    assert cli.main(["replay", "--config", str(config_path), str(rec)]) == 0, capsys.readouterr().err
    assert clicks_on_broker(config) == 6


# --- file modes of personal data ---------------------------------------------------------------


def modes(root: Path) -> dict[str, int]:
    """Every path under `root` (itself included) with its permission bits."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(root: Path, at_least: int = 2) -> None:
    found = modes(root)
    assert len(found) > at_least, found
    bad = {p: oct(m) for p, m in found.items() if m != (0o700 if (root / p).is_dir() else 0o600)}
    assert not bad, f"not private under {root}: {bad}"


@pytest.fixture
def loose_umask():
    """The usual umask (022) for the test, whatever the caller's: files would be 0644 by default."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _profiles(config, n: int) -> None:
    from support.cli_io import sample

    create_topics(config)
    produce_records(
        config, "profiles", [(f"p-{i:03d}", avro.from_json("profiles", sample("profiles", i))) for i in range(n)]
    )


def test_the_profile_store_is_private(config, config_path, tmp_path, capsys, loose_umask):
    _profiles(config, 50)
    store = Path(config.store.path)
    assert cli.main(["profile", "get", "--config", str(config_path), "dev-007"]) == 0, capsys.readouterr().err
    assert_private(store, at_least=5)
    # a store made by an older version (0755/0644) is made private when it is next opened
    for path in [store, *store.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    _profiles(config, 60)
    assert cli.main(["profile", "get", "--config", str(config_path), "dev-055"]) == 0, capsys.readouterr().err
    assert_private(store, at_least=5)


def run_with_recovery(config_path: Path, recovery: Path) -> None:
    """`run --until-idle --recovery-dir` in a process of its own (its umask is the process's)."""
    command = [sys.executable, "-m", "profilestream.cli", "run", "--config", str(config_path), "--until-idle"]
    done = subprocess.run(
        [*command, "--recovery-dir", str(recovery)], capture_output=True, text=True, timeout=180, env=clean_env()
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_recovery_directory_is_private_after_a_real_run(config, config_path, tmp_path, loose_umask):
    load_shop(config, ShopSpec(events=800, seed=5, start="2025-03-01T08:00:00Z"))
    recovery = tmp_path / "recovery"
    run_with_recovery(config_path, recovery)
    assert_private(recovery)
    # a directory the user made beforehand (0755) is made private too
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    run_with_recovery(config_path, mine)
    assert_private(mine)


def test_a_recording_is_private(config, config_path, tmp_path, capsys, loose_umask):
    load_shop(config, ShopSpec(events=200, seed=5, start="2025-03-01T08:00:00Z"))
    out = tmp_path / "deep" / "rec"
    assert cli.main(["record", "--config", str(config_path), "--out", str(out)]) == 0, capsys.readouterr().err
    assert_private(out, at_least=6)
