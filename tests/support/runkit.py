"""Helpers for tests that run `profilestream run` as a process: configs with their own topics, a
generated shop loaded into the broker, the JSON log lines of a running process, and the final
outputs of a run to compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from profilestream.codec import avro
from profilestream.config import TOPIC_ROLES, load_config
from profilestream.devtools.sample import ShopSpec, generate
from profilestream.kafka.clients import (
    create_topics,
    key_of,
    produce_records,
    read_topic,
)

OUTPUT_ROLES = ("profiles", "merges", "triggers", "crm_feed", "dead_letters")
WALL_CLOCK = {"triggers": ("emitted_at",)}  # the only fields that depend on when a run ran


def write_config(path: Path, brokers: str, prefix: str, outputs: str = "", extra: str = ""):
    """A TOML file (and its loaded config) with topics `<prefix>-<role>`; `outputs` gives the
    output topics their own infix so that several runs can read the same inputs."""
    names = []
    for role in TOPIC_ROLES:
        infix = f"{outputs}-" if outputs and role in OUTPUT_ROLES else ""
        names.append(f'{role} = "{prefix}-{infix}{role.replace("_", "-")}"')
    path.write_text(
        f'[kafka]\nbrokers = "{brokers}"\n\n[topics]\n'
        + "\n".join(names)
        + f'\npartitions = 3\n\n[store]\npath = "{path.parent / "store"}"\n\n{extra}',
        encoding="utf-8",
    )
    return path, load_config(str(path), env={})


def load_shop(config, spec: ShopSpec) -> int:
    """Produce the generated shop to the input topics; returns the number of records."""
    create_topics(config)
    by_role: dict[str, list] = {"clickstream": [], "crm_changes": []}
    for role, record in generate(spec):
        checked = avro.from_json(role, record)
        by_role[role].append((key_of(role, checked), checked))
    return sum(produce_records(config, role, items) for role, items in by_role.items())


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROFILESTREAM_")}
    env.update(extra)
    return env


class Run:
    """`profilestream run ...` as a child process whose JSON log lines are parsed as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.lines: list[dict] = []
        self.other: list[str] = []  # stderr lines that are not JSON
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "profilestream.cli", "run", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env if env is not None else clean_env(),
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            try:
                self.lines.append(json.loads(line))
            except json.JSONDecodeError:
                self.other.append(line.rstrip("\n"))

    def events(self, name: str) -> list[dict]:
        return [line for line in list(self.lines) if line.get("event") == name]

    def latest(self, name: str) -> dict | None:
        found = self.events(name)
        return found[-1] if found else None

    def wait_for(self, predicate, limit: float, what: str) -> dict:
        """The first progress line that satisfies `predicate`; fails if the process ends first
        or `limit` seconds pass."""
        deadline = time.monotonic() + limit
        seen = 0
        while time.monotonic() < deadline:
            lines = self.events("progress")
            for line in lines[seen:]:
                if predicate(line):
                    return line
            seen = len(lines)
            if self.proc.poll() is not None:
                raise AssertionError(f"run exited with {self.proc.returncode} before {what}\n{self.log_tail()}")
            time.sleep(0.02)
        raise AssertionError(f"no {what} within {limit:.0f}s\n{self.log_tail()}")

    def kill(self, sig) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(30)
        self._reader.join(10)

    def wait(self, limit: float) -> int:
        code = self.proc.wait(limit)
        self._reader.join(10)
        return code

    def log_tail(self, n: int = 15) -> str:
        lines = [json.dumps(line) for line in list(self.lines)[-n:]] + self.other[-n:]
        return "\n".join(lines)


def outputs(config) -> dict:
    """What a run left in its output topics: the final state of the keyed topics (latest record
    per key, tombstones applied), and every trigger, merge and dead letter (wall-clock fields
    removed)."""
    final: dict = {"profiles": {}, "crm_feed": {}, "triggers": [], "merges": [], "dead_letters": []}
    for role in OUTPUT_ROLES:
        for m in read_topic(config, config.topics.name(role)):
            key = None if m.key is None else m.key.decode()
            record = None if m.value is None else avro.to_json(role, avro.decode(role, m.value))
            for field in WALL_CLOCK.get(role, ()):
                record.pop(field, None)
            if role in ("profiles", "crm_feed"):
                if record is None:
                    final[role].pop(key, None)
                else:
                    final[role][key] = record
            else:
                final[role].append(record)
    return final
