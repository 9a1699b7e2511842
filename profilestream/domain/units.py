"""Time units in milliseconds: event time, durations and deadlines are all epoch / ms integers.

One definition, imported by the core, the codec, the configuration and the tools, so that a
"day" cannot mean two things in two places.
"""

from __future__ import annotations

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

__all__ = ["DAY", "HOUR", "MINUTE", "SECOND"]
