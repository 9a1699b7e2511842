"""What identity resolution tells a profile's shard, and what one shard hands another.

Resolution (`resolve.Resolver`) is serial and holds identifiers only; each event leaves it as a few
small commands, each for one profile, applied by that profile's shard (`shard.ProfileShard`) in
the order resolution sent them. A shard needs nothing else to build the profile's records and
triggers, so shards can live on any worker of any process: the outputs do not depend on where.

Why a merge is two commands and a `Transfer`: the merged profile's contents (counters, cart,
campaigns, ...) are in its own shard, maybe in another process, and a dataflow has no edge back
from one shard to another; so the source's shard sends its contents as a `Transfer` (through the
dataflow's transfer loop, README "Design") and the survivor's shard holds its later commands
until the transfer with the merge's `seq` has arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

from .compact import pickled_as_fields
from .events import Event
from .profile import Profile


@pickled_as_fields
@dataclass(slots=True)
class Apply:
    """Apply an event's contents. `counts_visit`: the event's visit counts in this profile for
    the first time; `late`: it came after the watermark (moves counters, not the episode)."""

    event: Event
    late: bool
    counts_visit: bool


@pickled_as_fields
@dataclass(slots=True)
class Ids:
    """The profile's identifiers are now these (identity decided them). `since`: the place in
    event order of the last erase of `customer_id` before (None: never erased), the stamp of the
    profile's CRM feed records (`outputs.Output.stamp`)."""

    customer_id: str | None
    customer_key: str | None
    device_ids: tuple[str, ...]
    since: tuple[int, int, str] | None = None


@pickled_as_fields
@dataclass(slots=True)
class AddVisit:
    """A device moved in during a visit not yet counted here: count it (`count` visits)."""

    count: int


@pickled_as_fields
@dataclass(slots=True)
class MergeOut:
    """This profile is merged into `into`: send the contents (transfer `seq`), end with a
    tombstone, forget the state."""

    into: str
    seq: int


@pickled_as_fields
@dataclass(slots=True)
class MergeIn:
    """The profile `source` is merged into this one: absorb transfer `seq` (waiting for it if it
    has not arrived) and take back `visits_back` visits counted on both sides."""

    source: str
    seq: int
    visits_back: int


@pickled_as_fields
@dataclass(slots=True)
class ReturnVisit:
    """Identity found a return visit (`device_id`'s visit that began at `visit_start`, after
    `away` ms): fire the trigger if the profile's consent allows it."""

    device_id: str
    visit_start: int
    away: int
    ts: int


@pickled_as_fields
@dataclass(slots=True)
class Deadline:
    """The watermark passed the cart deadline `at`: fire if the episode is still open there."""

    at: int


@pickled_as_fields
@dataclass(slots=True)
class Erase:
    """The customer was erased: tombstones for the profile and the customer's feed record."""

    customer_id: str


Command = Apply | Ids | AddVisit | MergeOut | MergeIn | ReturnVisit | Deadline | Erase


@pickled_as_fields
@dataclass(slots=True)
class Transfer:
    """The contents of a merged profile on their way to the survivor `into` (merge `seq`)."""

    into: str
    seq: int
    profile: Profile


__all__ = [
    "AddVisit",
    "Apply",
    "Command",
    "Deadline",
    "Erase",
    "Ids",
    "MergeIn",
    "MergeOut",
    "ReturnVisit",
    "Transfer",
]
