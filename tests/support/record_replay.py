"""Shared test helpers, moved here from tests/integration/test_record_replay.py
(no test module imports another test module)."""

from __future__ import annotations

from pathlib import Path

from profilestream.config import TOPIC_ROLES, load_config


def other_config(tmp_path: Path, bootstrap: str, prefix: str):
    """A configuration with topic names of its own (like conftest's, on any broker)."""
    names = "\n".join(f'{role} = "{prefix}{role.replace("_", "-")}"' for role in TOPIC_ROLES)
    path = tmp_path / f"{prefix}profilestream.toml"
    path.write_text(
        f'[kafka]\nbrokers = "{bootstrap}"\n\n[topics]\n{names}\npartitions = 3\n\n'
        f'[store]\npath = "{tmp_path / (prefix + "store")}"\n',
        encoding="utf-8",
    )
    return path, load_config(str(path), env={})
