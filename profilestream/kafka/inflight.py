"""How far the reading processes of a cluster may run ahead of the engine's process.

Why: Bytewax (timely dataflow underneath) has no backpressure between processes. In a cluster the
engine's process reads nothing and the others read and decode for it (`profilestream.flows.profiles`); reading
is faster than the engine, so with a backlog the events sent ahead pile up in the engine
process's memory (measured on the 1,000,000-event shop: peak RSS 872 MB for the engine's process
of a 2-process run, against 438 MB for a whole 1-process run). The processes of a local cluster
therefore share a small file of counters, one slot each: a reading process adds the events it
sends to the engine to its slot, the engine's process adds the events it takes in to its own, and
a reading process pauses reading while more than `limit` events are on their way. Each slot has
one writer; an aligned 8-byte store is atomic, so readers see a count, old or new, never a torn
one, and an old count only makes the pause a little early or late.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

LIMIT = 50_000  # events on their way to the engine: about 1.5 s of its work, tens of MB
_SLOT = struct.Struct("<q")


class InFlight:
    """One process's view of the shared counters (`slot` is its own, `engine` the engine's)."""

    def __init__(self, path: str | Path, slots: int, slot: int, engine: int, limit: int = LIMIT):
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, slots * _SLOT.size)
        finally:
            os.close(fd)
        self._offset = slot * _SLOT.size
        self._engine = engine * _SLOT.size
        self._readers = [i * _SLOT.size for i in range(slots) if i != engine]
        self._limit = limit

    @staticmethod
    def create(path: str | Path, slots: int) -> None:
        """The shared file, every count zero (done once, before the processes start)."""
        Path(path).write_bytes(bytes(slots * _SLOT.size))

    def sent(self, n: int) -> None:
        """This reading process sent `n` more events to the engine."""
        self._add(self._offset, n)

    def taken(self, n: int) -> None:
        """The engine took `n` more events in. Counted in the engine's slot by whichever process
        the engine's step runs in: were it not where `engine` says, reading would only be slower,
        never stopped for good."""
        self._add(self._engine, n)

    def _add(self, offset: int, n: int) -> None:
        if n:
            _SLOT.pack_into(self._map, offset, _SLOT.unpack_from(self._map, offset)[0] + n)

    def ahead(self) -> int:
        """Events sent by every reading process and not yet taken in by the engine."""
        sent = sum(_SLOT.unpack_from(self._map, offset)[0] for offset in self._readers)
        return sent - _SLOT.unpack_from(self._map, self._engine)[0]

    def may_read(self) -> bool:
        return self.ahead() < self._limit


__all__ = [
    "LIMIT",
    "InFlight",
]
