"""The brokers (embedded Tansu, Apache Kafka): each comes up answering Kafka, and never outlives
whoever started it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from profilestream.devtools.broker import BrokerStartError, free_port
from support import brokers

pytestmark = pytest.mark.broker


def alive(pid: int) -> bool:
    """Running and not a zombie (a reaped or zombie process no longer holds anything)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return found


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_broker_starts_answers_metadata_and_stops(broker_kind):
    started = time.monotonic()
    with brokers.broker(broker_kind) as broker:
        took = time.monotonic() - started
        pid = broker.pid
        assert alive(pid) and broker.bootstrap.startswith("127.0.0.1:")
        metadata = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
        assert [b.port for b in metadata.brokers.values()] == [broker.port]
        data = getattr(broker, "data_dir", None)
        if data is not None:  # Kafka's log directory: private (the topics hold personal data)
            assert data.stat().st_mode & 0o777 == 0o700
    assert not alive(pid)
    if data is not None:
        assert not data.exists(), "the broker's data outlived it"
    print(f"the {broker_kind} broker answered after {took:.1f}s")  # a figure for the log, not a test
    broker.stop()  # idempotent


def test_a_busy_port_is_a_clear_error(broker_kind):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(BrokerStartError, match=f"127.0.0.1:{port}"):
            brokers.start(broker_kind, port)


def test_the_broker_dies_with_the_python_process_that_started_it(broker_kind):
    """Even a SIGKILL of the parent (no atexit, no finally) must not leave the broker running."""
    script = (
        "from profilestream.devtools.brokers import make_broker; import time; "
        f"b = make_broker({broker_kind!r}).start(); print(b.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.kill()
        parent.wait()
        assert gone_within([child], 10), "the broker outlived its parent"
    finally:
        parent.kill()
        parent.stdout.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_profilestream_broker_stops_on_ctrl_c_and_leaves_nothing(sig, broker_kind):
    command = [sys.executable, "-c", "import sys; from profilestream.cli import main; sys.exit(main())", "broker"]
    command += ["--kafka"] if broker_kind == "kafka" else []
    wanted = free_port()  # no --port: the broker listens where kafka.brokers points
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROFILESTREAM_")}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PROFILESTREAM_KAFKA_BROKERS": f"127.0.0.1:{wanted}"},
    )
    try:
        first = proc.stdout.readline()
        assert f"listening on 127.0.0.1:{wanted} " in first, first + proc.stderr.read()
        port = wanted
        started = children(proc.pid)
        assert started and all(alive(p) for p in started)
        AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10)
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        assert "broker stopped" in proc.stdout.read()
        assert gone_within(started, 5)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_broker_without_port_on_a_busy_kafka_brokers_port_names_the_setting(capsys, monkeypatch, broker_kind):
    from profilestream.cli import main

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        monkeypatch.setenv("PROFILESTREAM_KAFKA_BROKERS", f"127.0.0.1:{port}")
        assert main(["broker", *(["--kafka"] if broker_kind == "kafka" else [])]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "kafka.brokers" in err


def test_local_port_of_kafka_brokers():
    from profilestream.commands.broker import local_port

    assert local_port("127.0.0.1:9092") == 9092
    assert local_port("localhost:9094,127.0.0.1:9095") == 9094
    assert local_port("kafka:9092") is None  # not this machine: a free port
