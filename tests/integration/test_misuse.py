"""Misuse answered clearly (issue 11, finding 7): one line naming the flag, key or directory, exit 2
for bad usage or configuration and 1 for work that failed, never a Python traceback or a Rust
panic. Each case runs the real command as a process, as a user would meet it.

Read-only and full disks are real: a tmpfs mounted for the test (as root), read-only or a few
kilobytes large. Where mounting is not allowed, the read-only case falls back to a directory
without write permission and the full-disk cases are skipped (they cannot be simulated honestly
from outside the process; `test_store_write_errors_are_one_line` covers the store's translation
in-process)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from profilestream import store as store_module
from profilestream.devtools.broker import free_port
from profilestream.devtools.sample import ShopSpec
from support.runkit import Run, clean_env, load_shop, write_config


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "profilestream.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or clean_env(),
    )


def one_line(done: subprocess.CompletedProcess) -> str:
    """The single line a failed command prints (JSON log lines of `run` aside)."""
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("profilestream: "), lines[0]
    return lines[0]


@pytest.fixture
def dead_config(tmp_path):
    """A configuration whose broker does not exist: a check that comes before any broker contact
    answers at once; one that comes after would first wait `run.connect_timeout` and exit 1."""
    path, _ = write_config(
        tmp_path / "dead.toml", f"127.0.0.1:{free_port()}", "dead", extra='[run]\nconnect_timeout = "20s"\n'
    )
    return path


# --- flags and configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--processes", "0"),
        ("--processes", "-3"),
        ("--workers", "-1"),
        ("--workers", "0"),
        ("--metrics-port", "70000"),
        ("--metrics-port", "-1"),
    ],
)
def test_a_bad_run_flag_exits_2_naming_it_before_anything_starts(dead_config, flag, value):
    started = time.monotonic()
    done = cli("run", "--config", str(dead_config), "--until-idle", flag, value)
    assert done.returncode == 2, done.stderr[-2000:]
    line = one_line(done)
    assert flag in line and value in line
    assert not [x for x in done.stderr.splitlines() if x.startswith("{")]  # no run started: no log lines
    assert time.monotonic() - started < 15  # the broker was not waited for


def test_an_absurd_duration_exits_2_naming_the_key(dead_config, tmp_path):
    toml = tmp_path / "gap.toml"
    toml.write_text(dead_config.read_text() + '\n[sessions]\ngap = "99999999999999999999d"\n', encoding="utf-8")
    done = cli("run", "--config", str(toml), "--until-idle")
    assert done.returncode == 2 and "sessions.gap" in one_line(done)
    done = cli("run", "--config", str(dead_config), env=clean_env(PROFILESTREAM_TRIGGERS_RETURN_VISIT_AFTER="36501d"))
    line = one_line(done)
    assert done.returncode == 2 and "triggers.return_visit_after" in line and "PROFILESTREAM_" in line


def test_a_missing_scores_model_is_reported_before_the_run_starts(dead_config, tmp_path):
    toml = tmp_path / "model.toml"
    toml.write_text(dead_config.read_text() + f'\n[scores]\nmodel = "{tmp_path / "nope.json"}"\n', encoding="utf-8")
    started = time.monotonic()
    done = cli("run", "--config", str(toml), "--until-idle")
    assert done.returncode == 2, done.stderr[-2000:]
    line = one_line(done)
    assert "scores.model" in line and "nope.json" in line
    assert not [x for x in done.stderr.splitlines() if x.startswith("{")]  # nothing was read, nothing logged
    assert time.monotonic() - started < 15


# --- directories on a read-only or a full disk ---------------------------------------------------


def _mount(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def disks(tmp_path):
    """`disks("ro")` a read-only directory, `disks("full", "64k")` one on a disk of that size."""
    mounted: list[Path] = []

    def make(kind: str, size: str = "64k") -> Path:
        where = tmp_path / f"{kind}-{len(mounted)}"
        options = f"ro,size={size}" if kind == "ro" else f"size={size}"
        if _mount(where, options):
            mounted.append(where)
        elif kind == "ro":
            where.chmod(0o500)  # not root: a directory we may not write to reads the same
        else:
            pytest.skip("a full disk needs a tmpfs, which only root may mount")
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def live(broker, tmp_path):
    """A configuration on the session broker with its topics created and a small shop in them."""
    path, config = write_config(tmp_path / "live.toml", broker.bootstrap, f"mis{tmp_path.name[-10:]}")
    load_shop(config, ShopSpec(events=1500, seed=7, start="2025-03-01T08:00:00Z"))
    return path, config


@pytest.mark.broker
def test_a_recovery_dir_on_a_read_only_disk_exits_2_naming_it(live, disks):
    toml, _ = live
    target = disks("ro") / "recovery"
    done = cli("run", "--config", str(toml), "--until-idle", "--recovery-dir", str(target))
    assert done.returncode == 2, done.stderr[-2000:]
    line = one_line(done)
    assert "--recovery-dir" in line and str(target) in line and ("read-only" in line or "permission denied" in line)


@pytest.mark.broker
def test_a_recovery_dir_on_a_full_disk_exits_1_naming_it(live, disks):
    toml, _ = live
    target = disks("full", "64k") / "recovery"
    done = cli("run", "--config", str(toml), "--until-idle", "--recovery-dir", str(target))
    assert done.returncode == 1, done.stderr[-2000:]
    line = one_line(done)
    assert "--recovery-dir" in line and str(target) in line and "full" in line


@pytest.mark.broker
def test_a_recovery_disk_that_fills_up_during_the_run_is_one_line_and_exit_1(live, disks, tmp_path):
    """The start-up check passes; the disk then fills while the run snapshots its state (today a
    Rust panic `called Result::unwrap() ... DiskFull`)."""
    toml, config = live
    disk = disks("full", "4m")
    target = disk / "recovery"
    env = clean_env(PROFILESTREAM_RUN_SNAPSHOT_INTERVAL="200ms", PROFILESTREAM_RUN_PROGRESS_INTERVAL="100ms")
    run = Run("--config", str(toml), "--recovery-dir", str(target), env=env)
    try:
        run.wait_for(lambda line: line["applied"] >= 1000, limit=90, what="the shop applied")
        try:  # fill the disk to the last byte (the run's own snapshots may have filled it already)
            with open(disk / "filler", "wb") as fh:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        load_shop(config, ShopSpec(events=1500, seed=8, start="2025-04-01T08:00:00Z"))  # more state to snapshot
        code = run.wait(90)
    finally:
        if run.proc.poll() is None:
            run.kill(9)
    assert code == 1, run.log_tail()
    assert "Traceback" not in "\n".join(run.other) and "panicked" not in "\n".join(run.other), run.other
    [line] = run.other
    assert line.startswith("profilestream: ") and str(target) in line and "full" in line, line
    assert run.lines[-1]["event"] == "end" and run.lines[-1]["reason"] == "failed"


@pytest.mark.broker
@pytest.mark.parametrize("kind,code,words", [("ro", 2, ("read-only", "permission denied")), ("full", 1, ("full",))])
def test_a_store_on_a_read_only_or_full_disk_is_one_line(live, disks, kind, code, words):
    toml, _ = live
    target = disks(kind) / "store"
    env = clean_env(PROFILESTREAM_STORE_PATH=str(target))
    for command in (["profile", "get", "d-1"], ["report", "campaigns"]):
        done = cli(*command, "--config", str(toml), env=env)
        assert done.returncode == code, (command, done.stderr[-2000:])
        line = one_line(done)
        assert "store.path" in line and str(target) in line and any(w in line for w in words), line


def test_store_write_errors_are_one_line(tmp_path, monkeypatch):
    """A RocksDB error while the store is written (the disk filled up meanwhile) becomes a
    `StoreError` naming the store, which the CLI prints in one line (exit 1)."""
    store = store_module.ProfileStore(tmp_path / "store")

    class Full:
        def get(self, key):
            return None

        def write(self, batch):
            raise Exception("IO error: No space left on device: While appending to file: 000004.log")

        def close(self):
            raise Exception("IO error: Writer has previous error.")

    real = store._db
    monkeypatch.setattr(store, "_db", Full())
    with pytest.raises(store_module.StoreError, match="no space left") as caught:
        store.apply("P1", {"profile_id": "P1", "device_ids": ["d"], "customer_key": None, "customer_id": None}, 0, 0)
    assert str(tmp_path / "store") in str(caught.value)
    monkeypatch.setattr(store, "_db", real)
    store.close()


# --- topics the run needs ---------------------------------------------------------------------------


@pytest.mark.broker
def test_run_against_a_broker_without_the_topics_exits_1_and_creates_nothing(broker, tmp_path):
    from confluent_kafka.admin import AdminClient

    toml, config = write_config(tmp_path / "none.toml", broker.bootstrap, f"none{tmp_path.name[-10:]}")
    for mode in (["--until-idle"], []):
        done = cli("run", "--config", str(toml), *mode)
        assert done.returncode == 1, done.stderr[-2000:]
        line = one_line(done)
        assert config.topics.clickstream in line and config.topics.crm_changes in line
        assert "profilestream topics create" in line
    existing = AdminClient(config.kafka.client_config()).list_topics(timeout=10).topics
    assert not set(config.topics.names().values()) & set(existing)  # nothing was created


@pytest.mark.broker
def test_run_with_an_output_topic_missing_exits_1_naming_it(broker, tmp_path):
    from confluent_kafka.admin import AdminClient

    toml, config = write_config(tmp_path / "out.toml", broker.bootstrap, f"out{tmp_path.name[-10:]}")
    load_shop(config, ShopSpec(events=100, seed=7, start="2025-03-01T08:00:00Z"))
    admin = AdminClient(config.kafka.client_config())
    for future in admin.delete_topics([config.topics.triggers]).values():
        future.result()
    done = cli("run", "--config", str(toml), "--until-idle")
    assert done.returncode == 1, done.stderr[-2000:]
    line = one_line(done)
    assert config.topics.triggers in line and config.topics.clickstream not in line
