"""The topics' .avsc files as installed: package data of `profilestream.schemas`, read with
`importlib.resources` like the codec does (`profilestream.codec.avro.SCHEMAS`), so the tests read
what a wheel install reads, not a path next to the source."""

from __future__ import annotations

import json
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

SCHEMAS = resources.files("profilestream.schemas")


def avsc_files() -> list[Traversable]:
    """Every .avsc file, by name."""
    return sorted((f for f in SCHEMAS.iterdir() if f.name.endswith(".avsc")), key=lambda f: f.name)


def avsc(name: str) -> dict[str, Any]:
    """One schema file as JSON, e.g. `avsc("crm-changes.avsc")`."""
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
