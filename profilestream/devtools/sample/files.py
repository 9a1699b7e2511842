"""The shop as the two JSON-lines files `profilestream produce` reads, bad records mixed in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from profilestream.devtools.sample.bad import bad_records
from profilestream.devtools.sample.simulation import generate
from profilestream.devtools.sample.spec import CLICKSTREAM, CRM_CHANGES, ShopSpec


def _dumps(rec: dict[str, Any]) -> str:
    return json.dumps(rec, separators=(",", ":"), ensure_ascii=False)


def write_jsonl(spec: ShopSpec, clickstream_path: str | Path, crm_path: str | Path) -> dict[str, int]:
    """Write the shop as two JSONL files (what `profilestream produce` reads). With `spec.bad`,
    that many `bad_records` are spread evenly through the files. Returns the line counts:
    `{"clickstream": .., "crm_changes": .., "bad": ..}` (`bad` lines are included in the first two)."""
    bad = bad_records(spec, spec.bad)
    # bad record i goes in after the (i+1) * events / (bad+1)-th good record
    at = [((i + 1) * spec.events) // (len(bad) + 1) for i in range(len(bad))]
    counts = {CLICKSTREAM: 0, CRM_CHANGES: 0, "bad": len(bad)}
    with open(clickstream_path, "w", encoding="utf-8") as clicks, open(crm_path, "w", encoding="utf-8") as crm:
        files = {CLICKSTREAM: clicks, CRM_CHANGES: crm}
        j = 0
        n = 0
        while j < len(bad) and at[j] <= n:
            role, rec = bad[j]
            files[role].write(_dumps(rec) + "\n")
            counts[role] += 1
            j += 1
        for role, rec in generate(spec):
            files[role].write(_dumps(rec) + "\n")
            counts[role] += 1
            n += 1
            while j < len(bad) and at[j] <= n:
                role, rec = bad[j]
                files[role].write(_dumps(rec) + "\n")
                counts[role] += 1
                j += 1
        for role, rec in bad[j:]:
            files[role].write(_dumps(rec) + "\n")
            counts[role] += 1
    return counts


__all__ = ["write_jsonl"]
