"""Cheap pickling for the small records that cross processes and fill snapshots.

Why: every decoded event crosses from the worker that read it to the worker that owns the engine
when a run has several processes, and every profile, cart and visit is pickled in a recovery
snapshot. A `slots=True` dataclass pickles through a Python-level `__getstate__` and unpickles
through `__setstate__`, about 3 us a round trip for a click; as `(cls, field values)` the same
object takes under 1 us, because the field tuple is pickled and rebuilt in C. Snapshots written
before this change still load: the dataclass keeps its `__setstate__`.
"""

from __future__ import annotations

from dataclasses import fields
from operator import attrgetter
from typing import Any


def pickled_as_fields(cls: type) -> type:
    """Class decorator: pickle instances of a dataclass as its class and its field values.

    Only for dataclasses whose `__init__` takes every field as is (no `init=False` field, no
    `__post_init__`), so that `cls(*values)` rebuilds an equal object."""
    names = [f.name for f in fields(cls)]
    if any(not f.init for f in fields(cls)) or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: every field must be an __init__ argument")
    get = attrgetter(*names)
    if len(names) == 1:  # attrgetter of one name returns the value, not a 1-tuple

        def __reduce__(self: Any) -> tuple[Any, ...]:
            return cls, (get(self),)
    else:

        def __reduce__(self: Any) -> tuple[Any, ...]:
            return cls, get(self)

    setattr(cls, "__reduce__", __reduce__)  # noqa: B010 (mypy: no assigning a method)
    return cls


__all__ = ["pickled_as_fields"]
