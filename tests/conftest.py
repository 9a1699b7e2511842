"""Shared fixtures: one broker of each kind for the session, fresh topic names for every test.

Every test that uses `broker` (or `config`, `config_path`) runs twice: on the embedded Tansu and on
Apache Kafka (the Kafka tier, marked `kafka`; skipped with the reason where no JDK and Maven are).
pytest groups the tests by broker, so one broker runs at a time. A Tansu start takes about 0.1 s,
a Kafka start a few seconds; one broker per session also keeps the suite's process count and ports
low; tests stay independent because each gets its own topic names. Tests that start brokers of
their own (stopped, paused, replaced) take `broker_kind` instead.
"""

from __future__ import annotations

import itertools
import os

import pytest

from profilestream.config import TOPIC_ROLES, load_config
from support import brokers
from support.brokers import KINDS, need

_serial = itertools.count()


@pytest.fixture(scope="session", params=KINDS)
def broker(request):
    with brokers.broker(request.param) as running:  # skips where this kind cannot run
        yield running
    assert not running.running()


@pytest.fixture(params=KINDS)
def broker_kind(request) -> str:
    """The kind of broker ("tansu", "kafka") a test that starts its own brokers runs on."""
    need(request.param)
    kind: str = request.param
    return kind


@pytest.fixture
def config_path(broker, tmp_path, monkeypatch):
    """A TOML file pointing at the session broker, with topic names no other test uses. The
    caller's PROFILESTREAM_* variables are removed so they cannot redirect the test."""
    for name in list(os.environ):
        if name.startswith("PROFILESTREAM_"):
            monkeypatch.delenv(name)
    prefix = f"t{next(_serial)}-"
    names = "\n".join(f'{role} = "{prefix}{role.replace("_", "-")}"' for role in TOPIC_ROLES)
    path = tmp_path / "profilestream.toml"
    path.write_text(
        f'[kafka]\nbrokers = "{broker.bootstrap}"\n\n[topics]\n{names}\npartitions = 3\n\n'
        f'[store]\npath = "{tmp_path / "store"}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config(config_path):
    return load_config(str(config_path), env={})


@pytest.fixture(params=["engine", "dataflow", "dataflow-3-workers"])
def scenario_level(request, monkeypatch):
    """Run a scenario module three times: on the domain engine alone, and through the whole
    Bytewax dataflow (Avro-encoded records over several partitions, decoded, ordered, resolved,
    applied by the profiles' shards) with one worker and with three (the shards spread over them,
    merged profiles' contents crossing between workers through the transfer loop)."""
    from support import flowkit, scenario

    runners = {
        "engine": scenario.run_engine,
        "dataflow": flowkit.run_scenario,
        "dataflow-3-workers": flowkit.run_scenario_on_3_workers,
    }
    monkeypatch.setattr(scenario, "RUNNER", runners[request.param])
    return request.param.split("-")[0]
