"""The snapshot formats: what Bytewax recovery keeps of the two stateful steps.

- `resolve` (one key): the pickled dictionary `{"format": 2, "resolver": Resolver, "finished":
  bool, "sent": [int]}`: identity resolution's state, whether a bounded run has reached the end of
  its input, and the merges sent to each transfer partition so far. Once per epoch
  (`run.snapshot_interval`): it grows with the persons and devices, not with their contents.
- `profiles` (a key per profile): the pickled `ProfileShard`, written only in the epochs in which
  the profile changed (Bytewax snapshots the keys an epoch woke), so what a snapshot writes grows
  with what changed, not with the state.

Snapshots of builds before the shards (one `apply` step holding everything) are refused with
`Refused`: their state cannot be split after the fact. Kept apart from the steps so each format
has one reader and one writer.
"""

from __future__ import annotations

import pickle

from profilestream.domain.resolve import Resolver
from profilestream.domain.shard import ProfileShard

__all__ = [
    "FEED_STATE",
    "FORMAT",
    "PROFILE_STATE",
    "RESOLVE_STATE",
    "Refused",
    "dump_resolver",
    "dump_shard",
    "load_resolver",
    "load_shard",
]

FORMAT = 2
RESOLVE_STATE = (
    "Resolver (timeline, dedup, identity graph of persons, devices' visits, deadline calendar, erasure list)"
)
FEED_STATE = "the stamp of the newest profile that wrote the customer's CRM feed (an erased one's writes come late)"
PROFILE_STATE = "ProfileShard (the profile: counters, cart, campaigns, CRM attributes; merges waiting for a transfer)"
"""What each snapshot holds, as `profilestream describe` names it."""


class Refused(ValueError):
    """A recovery directory this build cannot resume from; the message says why."""


def dump_resolver(resolver: Resolver, finished: bool, sent: list[int]) -> bytes:
    state = {"format": FORMAT, "resolver": resolver, "finished": finished, "sent": list(sent)}
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def load_resolver(data: bytes) -> tuple[Resolver, bool, list[int]]:
    """The resolver, `finished` and the per-partition transfer counts of a snapshot."""
    state = pickle.loads(data)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise Refused(
            "the recovery directory was written by an earlier build (one engine step holding every "
            "profile); this build shards profiles and cannot split that state: start with a new "
            "--recovery-dir (the outputs are rebuilt from the input topics)"
        )
    return state["resolver"], bool(state["finished"]), list(state["sent"])


def dump_shard(shard: ProfileShard) -> bytes:
    return pickle.dumps(shard, protocol=pickle.HIGHEST_PROTOCOL)


def load_shard(data: bytes) -> ProfileShard:
    shard = pickle.loads(data)
    if not isinstance(shard, ProfileShard):
        raise Refused("a profile snapshot of another build: start with a new --recovery-dir")
    return shard
