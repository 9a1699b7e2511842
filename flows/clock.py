"""The wall clock, in epoch milliseconds: the one reading of it the dataflow's steps share.

Event time comes from the events; the wall clock only bounds how far ahead an event may be
(`decode`) and drives the always-on resolution's ticks (`resolve_step`). One function, so a test can
tell the two uses apart and both read the same clock.
"""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    """The wall clock now, in epoch ms."""
    return int(time.time() * 1000)
