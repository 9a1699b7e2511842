"""What the core emits: records for the output topics, as plain dicts in the fields of
docs/topics.md "Outputs".

Times in these dicts are epoch milliseconds (the Avro codec writes them as `timestamp-millis`).
`topic` names the role of the output topic (a key of the `[topics]` configuration table), not its
configured name, so the core stays free of configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .compact import pickled_as_fields
from .roles import CRM_FEED, DEAD_LETTERS, MERGES, PROFILES, TRIGGERS


@pickled_as_fields
@dataclass(slots=True)
class Output:
    """One record for an output topic; `value` None is a tombstone. Never changed once built
    (not `frozen`: see `events.Click`)."""

    topic: str
    key: str
    value: dict[str, Any] | None


__all__ = ["CRM_FEED", "DEAD_LETTERS", "MERGES", "PROFILES", "TRIGGERS", "Output"]
