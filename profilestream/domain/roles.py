"""The streams the product reads and writes, by role: the one list every layer names them from.

A role is a key of the `[topics]` configuration table (`crm_changes`), never a configured topic
name (`crm-changes`): the core emits `Output(topic=PROFILES, ...)` and the shell maps the role to
the name the user configured. Defined in the core because the core's outputs are addressed by
role; the codec (one schema per role), the Kafka layer and the configuration import it from here.
"""

from __future__ import annotations

CLICKSTREAM = "clickstream"
CRM_CHANGES = "crm_changes"
PROFILES = "profiles"
MERGES = "merges"
TRIGGERS = "triggers"
CRM_FEED = "crm_feed"
DEAD_LETTERS = "dead_letters"

INPUT_ROLES: tuple[str, ...] = (CLICKSTREAM, CRM_CHANGES)
OUTPUT_ROLES: tuple[str, ...] = (PROFILES, MERGES, TRIGGERS, CRM_FEED, DEAD_LETTERS)
TOPIC_ROLES: tuple[str, ...] = INPUT_ROLES + OUTPUT_ROLES

__all__ = [
    "CLICKSTREAM",
    "CRM_CHANGES",
    "CRM_FEED",
    "DEAD_LETTERS",
    "INPUT_ROLES",
    "MERGES",
    "OUTPUT_ROLES",
    "PROFILES",
    "TOPIC_ROLES",
    "TRIGGERS",
]
