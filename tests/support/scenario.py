"""A small language for domain and dataflow scenarios: build events tersely, run them, and read
back the final state of every output topic (latest record per key, tombstones dropped)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime

from profilestream.domain.engine import Engine
from profilestream.domain.events import Campaign, Click, CrmChange, Event
from profilestream.domain.outputs import Output
from profilestream.domain.rules import DAY, HOUR, MINUTE, Rules

# A Friday morning over a year back: scenarios reach a few weeks past it and must stay in the past,
# since the dataflow dead-letters events more than `time.max_future` ahead of the wall clock.
T0 = int(datetime(2025, 11, 21, 10, 0, tzinfo=UTC).timestamp() * 1000)
_ids = itertools.count(1)

__all__ = ["DAY", "HOUR", "MINUTE", "T0", "Campaign", "Result", "click", "crm", "erase", "run", "snapshot"]


def click(minute: float, device: str, type: str = "page_view", **fields) -> Click:
    """A click `minute` minutes after T0 (use ts= for an absolute time)."""
    ts = fields.pop("ts", None)
    return Click(
        event_id=fields.pop("event_id", f"e{next(_ids):06d}"),
        ts=T0 + int(minute * MINUTE) if ts is None else ts,
        device_id=device,
        type=type,
        **fields,
    )


def crm(minute: float, customer: str, op: str = "upsert", **fields) -> CrmChange:
    ts = fields.pop("ts", None)
    return CrmChange(
        change_id=fields.pop("change_id", f"c{next(_ids):06d}"),
        ts=T0 + int(minute * MINUTE) if ts is None else ts,
        customer_id=customer,
        op=op,
        **fields,
    )


def erase(minute: float, customer: str, **fields) -> CrmChange:
    return crm(minute, customer, op="erase", **fields)


@dataclass
class Result:
    outputs: list[Output]
    engine: Engine
    profiles: dict[str, dict] = field(default_factory=dict)
    feed: dict[str, dict] = field(default_factory=dict)
    tombstones: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for out in self.outputs:
            table = {"profiles": self.profiles, "crm_feed": self.feed}.get(out.topic)
            if table is None:
                continue
            if out.value is None:
                table.pop(out.key, None)
                if out.topic == "profiles":
                    self.tombstones.add(out.key)
            else:
                table[out.key] = out.value
                if out.topic == "profiles":
                    self.tombstones.discard(out.key)

    @property
    def merges(self) -> list[dict]:
        return [o.value for o in self.outputs if o.topic == "merges"]

    @property
    def dead_letters(self) -> list[dict]:
        return [o.value for o in self.outputs if o.topic == "dead_letters"]

    @property
    def triggers(self) -> list[dict]:
        return [o.value for o in self.outputs if o.topic == "triggers"]

    def of(self, identifier: str) -> dict:
        """The one live profile holding a device id, customer key or customer id."""
        found = [
            p
            for p in self.profiles.values()
            if identifier in p["device_ids"] or identifier in (p["customer_key"], p["customer_id"])
        ]
        assert len(found) == 1, f"{identifier!r} is in {len(found)} profiles"
        return found[0]

    def has(self, identifier: str) -> bool:
        return any(
            identifier in p["device_ids"] or identifier in (p["customer_key"], p["customer_id"])
            for p in self.profiles.values()
        )


def snapshot(res: Result) -> dict:
    """Everything a run produced, final state per key plus the merge and trigger streams, with
    only the wall-clock `emitted_at` left out."""
    return {
        "profiles": res.profiles,
        "feed": res.feed,
        "tombstones": res.tombstones,
        "merges": res.merges,
        "triggers": [{k: v for k, v in t.items() if k != "emitted_at"} for t in res.triggers],
    }


def run(events: list[Event], rules: Rules | None = None, sources: int = 1, batch: int = 0) -> Result:
    """Run a scenario at the level the test runs at: the engine alone (default) or the whole
    dataflow (see the `scenario_level` fixture in conftest.py)."""
    return RUNNER(events, rules, sources, batch)


def run_engine(events: list[Event], rules: Rules | None = None, sources: int = 1, batch: int = 0) -> Result:
    """Feed events as if read from `sources` partitions (round robin), in batches of `batch`
    (0: all at once), then end the input: a bounded run."""
    engine = Engine(rules or Rules())
    names = [f"p{i}" for i in range(sources)]
    engine.expect(names, 0)
    items = [(names[i % sources], e) for i, e in enumerate(events)]
    out: list[Output] = []
    size = batch or max(1, len(items))
    for start in range(0, len(items), size):
        out += engine.feed(items[start : start + size], now=0)
    out += engine.finish(now=0)
    return Result(out, engine)


RUNNER = run_engine
