"""A cluster across machines (issue 16 item 6): `run --addresses H:P,H:P,H:P --process-id I`,
three processes, each in its own network namespace with its own address, as three machines
would be; the broker (Tansu, then Apache Kafka) runs in the root namespace on the bridge that joins them.

The namespaces, a bridge and the veth pairs are made by the test and removed after it
(`ip netns`, iproute2); it is skipped only where making a namespace is not permitted. The
processes share this machine's disk, which machines would not: each is given its own recovery
directory under the same `--recovery-dir` anyway (`D/process-<i>`), as on separate machines.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from profilestream.devtools.broker import free_port
from profilestream.devtools.sample import ShopSpec
from profilestream.flows import runner
from profilestream.kafka.clients import create_topics
from support import brokers
from support.runkit import clean_env, load_shop, outputs, write_config

pytestmark = [pytest.mark.broker, pytest.mark.slow]

MACHINES = 3
EVENTS = 10_000


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Network:
    """A bridge with the root namespace on `.254` and one namespace per machine on `.1`, `.2`, ..."""

    def __init__(self, machines: int):
        tag = uuid.uuid4().hex[:6]
        self.subnet = f"10.77.{os.getpid() % 250}"
        self.bridge = f"psbr{tag}"
        self.namespaces = [f"ps{tag}m{i}" for i in range(machines)]
        self.tag = tag

    @property
    def host(self) -> str:
        return f"{self.subnet}.254"

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i + 1}"

    def up(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, ns in enumerate(self.namespaces):
            _ip("netns", "add", ns)
            outside, inside = f"psv{self.tag}{i}", f"psw{self.tag}{i}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            _ip("link", "set", inside, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        for ns in self.namespaces:  # its veth end goes with it, and so the pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def start(self, i: int, args: list[str], log: Path) -> subprocess.Popen:
        """`profilestream run ARGS` as machine `i`; its stderr (JSON log lines) into `log`."""
        with open(log, "w", encoding="utf-8") as err:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.namespaces[i], sys.executable, "-m", "profilestream.cli", "run", *args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=clean_env(PROFILESTREAM_RUN_PROGRESS_INTERVAL="200ms"),
            )


@pytest.fixture(scope="module")
def network():
    probe = f"psprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"network namespaces are not permitted here (ip netns add: {made.stderr.strip()})")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    net = Network(MACHINES)
    try:
        net.up()
        yield net
    finally:
        net.down()
    assert not any(
        ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout for ns in net.namespaces
    )


@pytest.fixture(scope="module", params=brokers.KINDS)
def bridge_broker(network, request):
    with brokers.broker(request.param, host=network.host) as running:
        yield running


def _lines(log: Path) -> list[dict]:
    found = []
    for line in log.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            found.append(json.loads(line))
    return found


def _wait(procs: list[subprocess.Popen], logs: list[Path], limit: float) -> list[int]:
    deadline = time.monotonic() + limit
    try:
        return [p.wait(max(1.0, deadline - time.monotonic())) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        tails = "\n".join(f"--- {log.name}\n" + log.read_text(encoding="utf-8")[-3000:] for log in logs)
        raise AssertionError(f"the cluster did not end within {limit:.0f}s\n{tails}") from None


def _cluster(network: Network, port: int) -> str:
    return ",".join(f"{network.address(i)}:{port}" for i in range(MACHINES))


def test_three_machines_read_their_shares_and_give_the_outputs_of_one_process(network, bridge_broker, tmp_path):
    prefix = f"netns{tmp_path.name[-12:]}"
    _, reference = write_config(tmp_path / "reference.toml", bridge_broker.bootstrap, prefix, "one")
    toml, cluster = write_config(tmp_path / "cluster.toml", bridge_broker.bootstrap, prefix, "three")
    assert load_shop(reference, ShopSpec(events=EVENTS, seed=43)) == EVENTS
    create_topics(cluster)
    assert runner.run(reference, until_idle=True) == 0
    expected = outputs(reference)

    addresses = _cluster(network, free_port())
    logs = [tmp_path / f"machine-{i}.log" for i in range(MACHINES)]
    recovery = tmp_path / "recovery"
    procs = [
        network.start(
            i,
            ["--config", str(toml), "--until-idle", "-a", addresses, "-i", str(i), "--recovery-dir", str(recovery)],
            logs[i],
        )
        for i in range(MACHINES)
    ]
    assert _wait(procs, logs, 180) == [0] * MACHINES, "\n".join(log.read_text()[-2000:] for log in logs)

    read: dict[str, int] = {}
    for i, log in enumerate(logs):
        lines = _lines(log)
        [cluster_line] = [line for line in lines if line.get("event") == "cluster"]
        assert cluster_line["process"] == i and cluster_line["addresses"] == addresses.split(",")
        assert [line["reason"] for line in lines if line.get("event") == "end"] == ["done"]
        for line in lines:
            if line.get("event") == "partition" and "-transfers/" not in line["partition"]:  # inputs only
                assert line["partition"] not in read, f"{line['partition']} read by two machines"
                read[line["partition"]] = i
    inputs = {f"{cluster.topics.name(role)}/{p}" for role in ("clickstream", "crm_changes") for p in range(3)}
    assert set(read) == inputs  # every input partition read, each by one machine
    assert len(set(read.values())) == MACHINES - 1  # shared out: the engine's machine reads none
    # recovery per process: its own directory, holding its own partition of three
    for i in range(MACHINES):
        assert sorted(p.name for p in (recovery / f"process-{i}").glob("*.sqlite3")) == [f"part-{i}.sqlite3"]

    got = outputs(cluster)
    assert got["profiles"] == expected["profiles"]
    assert got["crm_feed"] == expected["crm_feed"]
    key = lambda t: t["trigger_id"]  # noqa: E731
    assert sorted(got["triggers"], key=key) == sorted(expected["triggers"], key=key)
    assert sorted(map(str, got["merges"])) == sorted(map(str, expected["merges"]))


def test_three_machines_stopped_and_started_again_go_on_and_another_count_is_refused(
    network, bridge_broker, tmp_path, monkeypatch
):
    """Always-on across the namespaces with the default state directory (each machine's
    working directory, here one directory for all): SIGTERM to every process, start them again
    with the same commands: nothing is sent twice. Started as two processes, each refuses."""
    monkeypatch.chdir(tmp_path)
    prefix = f"nsrs{tmp_path.name[-12:]}"
    extra = '[run]\nsnapshot_interval = "1s"\n'
    _, reference = write_config(tmp_path / "reference.toml", bridge_broker.bootstrap, prefix, "one", extra)
    toml, cluster = write_config(tmp_path / "cluster.toml", bridge_broker.bootstrap, prefix, "three", extra)
    assert load_shop(reference, ShopSpec(events=EVENTS, seed=47)) == EVENTS
    create_topics(cluster)

    addresses = _cluster(network, free_port())
    args = lambda i: ["--config", str(toml), "-a", addresses, "-i", str(i)]  # noqa: E731
    for attempt in ("first", "again"):
        logs = [tmp_path / f"{attempt}-{i}.log" for i in range(MACHINES)]
        procs = [network.start(i, args(i), logs[i]) for i in range(MACHINES)]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # all read, applied and written: the outputs settle
            time.sleep(1)
            ends = [p.poll() for p in procs]
            assert ends == [None] * MACHINES, "\n".join(log.read_text()[-2000:] for log in logs)
            if attempt == "again" and any(line.get("event") == "resumed" for log in logs for line in _lines(log)):
                break
            if attempt == "first" and _settled(logs):
                break
        time.sleep(3)  # a few epochs: the last outputs acknowledged and snapshotted
        for p in procs:
            p.send_signal(signal.SIGTERM)
        assert _wait(procs, logs, 60) == [130] * MACHINES
    state = runner.default_state_dir(cluster)
    assert state is not None
    for i in range(MACHINES):
        assert sorted(p.name for p in (tmp_path / state / f"process-{i}").glob("*.sqlite3")) == [f"part-{i}.sqlite3"]

    got = outputs(cluster)
    ids = [t["trigger_id"] for t in got["triggers"]]
    assert ids and len(ids) == len(set(ids))  # each trigger once, over the two runs

    two = ",".join(addresses.split(",")[:2])
    logs = [tmp_path / f"two-{i}.log" for i in range(2)]
    procs = [network.start(i, ["--config", str(toml), "-a", two, "-i", str(i)], logs[i]) for i in range(2)]
    assert _wait(procs, logs, 60) == [2, 2]
    said = logs[0].read_text(encoding="utf-8")
    assert "process 0 of a cluster of 3 processes" in said and "a cluster of 2" in said


def _settled(logs: list[Path]) -> bool:
    """Every process has logged progress and the engine's totals stopped moving (last 2 s)."""
    engine = None
    for log in logs:
        progress = [line for line in _lines(log) if line.get("event") == "progress"]
        if len(progress) < 10 or progress[-1]["lag"]:
            return False
        if progress[-1]["applied"]:
            engine = progress[-10:]
    return engine is not None and len({(p["applied"], p["records_out"]) for p in engine}) == 1
