"""The `decode` step: raw Kafka records in, events for the engine and dead letters out.

Two kinds of output, two named streams (`Decoded.events`, `Decoded.dead_letters`), as Bytewax's
own `KafkaOpOut.oks/errs`: the place where bad input leaves the main path has a name in the
topology (`profilestream describe`) instead of being an `isinstance` test further down.

Never stopped by one record: every input it cannot use is dead-lettered (the bounds are in
`profilestream.codec.validation`, a `ts` too far ahead of the wall clock included).

With a Schema Registry (`wire`, `profilestream.codec.registry`), values in the Confluent wire
format are read with their writer's schema and raw values as before; without one, raw only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from profilestream.codec import avro
from profilestream.codec.registry import Wire
from profilestream.domain.events import Click
from profilestream.domain.outputs import DEAD_LETTERS, Output
from profilestream.domain.rules import Rules
from profilestream.flows.clock import now_ms
from profilestream.kafka.source import PartitionEnd, Raw
from profilestream.ops import metrics

__all__ = ["Decoded", "EventBatch", "decode", "decode_batch"]

EventBatch = list[Any]
"""One batch read, for the engine: `(source, event)` pairs and `PartitionEnd` markers, in order."""


def decode_batch(
    rules: Rules, batch: list[Raw | PartitionEnd], now: int | None = None, wire: Wire | None = None
) -> list[Output | EventBatch]:
    """A batch of raw records to dead-letter `Output`s for the bad ones, followed by one list of
    `(source, event)` (and `PartitionEnd` markers) for the rest. Never raises on input.

    `now` (default: the wall clock now) is when the batch is read: an event more than
    `rules.max_future` ahead of it is dead-lettered here, so it never reaches the engine and never
    moves the watermark (one device with a wrong clock would otherwise make every later event late).
    `wire` (a Schema Registry is configured): framed values are read too (`Wire.decode_input`).

    Why one list for the whole batch: every item costs a Python call in each step it passes (and
    a pickle when it crosses to the engine's process), so the events travel to the engine as one
    item per batch read.

    >>> from profilestream.kafka.source import PartitionEnd
    >>> decode_batch(Rules(), [PartitionEnd("clicks/0")])
    [[PartitionEnd(source='clicks/0')]]
    """
    if now is None:
        now = now_ms()
    read = avro.decode_input if wire is None else wire.decode_input
    out: list[Output | EventBatch] = []
    events: EventBatch = []
    records_in: Counter[str] = Counter()
    events_in: Counter[tuple[str, str]] = Counter()
    dead: Counter[tuple[str, str]] = Counter()
    for raw in batch:
        if isinstance(raw, PartitionEnd):
            events.append(raw)
            continue
        records_in[raw.role] += 1
        try:
            if raw.value is None:
                raise avro.Rejected("value", "null value (tombstone) on an input topic")
            event = read(raw.role, raw.value, rules, now)
        except avro.Rejected as rejected:
            if wire is None:  # a framed value and no registry: the reason says so
                rejected = avro.framed_hint(rejected, raw.value)
            dead[raw.role, metrics.dead_letter_reason(rejected.field, rejected.reason)] += 1
            out.append(
                Output(
                    DEAD_LETTERS,
                    "",
                    avro.dead_letter(
                        raw.topic,
                        raw.partition,
                        raw.offset,
                        raw.key,
                        raw.value,
                        str(rejected),
                        raw.timestamp,
                        role=raw.role,
                    ),
                )
            )
        else:
            events_in[raw.role, event.type if isinstance(event, Click) else event.op] += 1
            events.append((raw.source, event))
    if records_in:
        metrics.COUNTERS.decoded(records_in, events_in, dead)
    if events:
        out.append(events)
    return out


@dataclass(frozen=True)
class Decoded:
    """The streams `decode` returns."""

    events: Stream[EventBatch]
    """One list per batch read: `(source, event)` pairs and `PartitionEnd` markers, for the engine."""

    dead_letters: Stream[Output]
    """A dead-letter `Output` for every record that could not be used."""


@operator
def decode(
    step_id: str,
    up: Stream[Raw | PartitionEnd],
    rules: Rules,
    sent: Callable[[int], None] | None = None,
    wire: Wire | None = None,
) -> Decoded:
    """Decode and validate raw records (`decode_batch`); `sent` counts the events decoded for
    the engine (`profilestream.kafka.inflight`); `wire`: the Schema Registry's, if one is
    configured (`registry.wire_for`).

    >>> import bytewax.operators as op
    >>> from bytewax.dataflow import Dataflow
    >>> from bytewax.testing import TestingSink, TestingSource, run_main
    >>> from profilestream.kafka.source import PartitionEnd
    >>> flow = Dataflow("decode_eg")
    >>> raw = op.input("inp", flow, TestingSource([PartitionEnd("clicks/0")]))
    >>> decoded = decode("decode", raw, Rules())
    >>> events, letters = [], []
    >>> op.output("events", decoded.events, TestingSink(events))
    >>> op.output("letters", decoded.dead_letters, TestingSink(letters))
    >>> run_main(flow)
    >>> events, letters
    ([[PartitionEnd(source='clicks/0')]], [])
    """

    def decode_one(batch: list[Raw | PartitionEnd]) -> list[Output | EventBatch]:
        out = decode_batch(rules, batch, wire=wire)
        if sent is not None and out and isinstance(out[-1], list):
            sent(sum(1 for item in out[-1] if not isinstance(item, PartitionEnd)))
        return out

    decoded = op.flat_map_batch("batch", up, decode_one)
    split = op.branch("split", decoded, lambda item: isinstance(item, Output))
    return Decoded(events=split.falses, dead_letters=split.trues)  # type: ignore[arg-type]
