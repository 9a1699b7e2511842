"""The `encode` step: the engine's `Output`s to Kafka records, never stopped by one of them.

An output that cannot be written (a count overflowing its Avro int, a value of the wrong type,
anything the writer refuses, or a record over Kafka's size limit) becomes a dead letter instead
(`unwritable`), and every other record goes on: one bad record must not stop the dataflow for
everyone, as a poison pill that a restart from recovery would only meet again.

Why one output stream here, where `decode` has two: an unwritable record's dead letter goes to
the same sink (`write`) as every other record, in the same batch; a second stream would cost a
Python call per output record (the hottest stream of the flow) to split what is merged again at
once. The dead-letter exit is named in the topology all the same (`UNWRITABLE`).

With a Schema Registry (`wire`, `profilestream.codec.registry`) every value, dead letters
included, is in the Confluent wire format, framed with its topic's registered schema id.
"""

from __future__ import annotations

import logging

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.dataflow import Stream, operator

from profilestream.codec import avro
from profilestream.codec.registry import RegistryUnavailable, Wire, frame
from profilestream.domain.outputs import DEAD_LETTERS, Output
from profilestream.flows.clock import now_ms
from profilestream.ops import metrics

__all__ = [
    "RECORD_OVERHEAD",
    "UNWRITABLE",
    "Message",
    "encode",
    "encode_batch",
    "max_record_bytes",
    "to_message",
    "unwritable",
]

Message = KafkaSinkMessage[bytes | None, bytes | None]

# librdkafka refuses to produce a record over `message.max.bytes` (1,000,000 by default): the sink
# would stop the run on it, and again at every restart. Room is left for the key and the framing.
RECORD_OVERHEAD = 512

UNWRITABLE = "unwritable records become dead letters"
"""What `describe` says of the dead letters that leave the main path inside `encode`."""


def max_record_bytes(client_config: dict[str, str]) -> int:
    """The largest value (plus key) the sink can produce with this `[kafka]` configuration."""
    return int(client_config.get("message.max.bytes", 1_000_000)) - RECORD_OVERHEAD


def to_message(
    topic_names: dict[str, str], output: Output, max_bytes: int | None = None, wire: Wire | None = None
) -> Message:
    """The Kafka record of an output, framed when `wire` is given. Never raises: an output that
    cannot be encoded or that is over `max_bytes` becomes a dead letter instead (`unwritable`)."""
    try:
        if output.value is None:
            value = None
        else:
            value = avro.encode(output.topic, output.value)
            if wire is not None:
                value = frame(wire.id_of(output.topic), value)
        key = output.key.encode() if output.key else None
    except RegistryUnavailable:  # not the record's fault: the run stops, naming the registry
        raise
    except Exception as exc:  # whatever the writer raises: dead-lettered, named
        return unwritable(topic_names, output, avro.encode_fault(output.topic, output.value, exc), wire)
    if max_bytes is not None and value is not None and len(value) + len(key or b"") > max_bytes:
        return unwritable(
            topic_names,
            output,
            f"{len(value)} bytes encoded, over the {max_bytes}-byte limit of a Kafka record (message.max.bytes)",
            wire,
        )
    return KafkaSinkMessage(key, value, topic=topic_names[output.topic])


def unwritable(topic_names: dict[str, str], output: Output, error: str, wire: Wire | None = None) -> Message:
    """The dead letter for an output record that cannot be written: its topic and key (profile ids,
    customer ids and hashed keys, never an address), the reason, no value (it may hold personal
    data); counted per topic (`profilestream_encode_failures`) and logged with the key, so the
    profile that produced it can be found."""
    topic = topic_names[output.topic]
    metrics.COUNTERS.encode_failed(topic)
    letter = avro.output_dead_letter(topic, output.key, error, now_ms())
    metrics.log("encode_failed", logging.ERROR, topic=topic, key=letter["key"], error=letter["error"])
    value = avro.encode(DEAD_LETTERS, letter) if wire is None else wire.encode(DEAD_LETTERS, letter)
    return KafkaSinkMessage(None, value, topic=topic_names[DEAD_LETTERS])


def encode_batch(
    topic_names: dict[str, str], batch: list[Output], max_bytes: int | None = None, wire: Wire | None = None
) -> list[Message]:
    """A batch of outputs to Kafka records (`to_message`)."""
    return [to_message(topic_names, output, max_bytes, wire) for output in batch]


@operator
def encode(
    step_id: str,
    up: Stream[Output],
    topic_names: dict[str, str],
    max_bytes: int | None = None,
    wire: Wire | None = None,
) -> Stream[Message]:
    """Kafka records of the outputs, by role to the configured topic names (`topic_names`);
    `wire`: the Schema Registry's, if one is configured (`registry.wire_for`): values framed.

    >>> import bytewax.operators as op
    >>> from bytewax.dataflow import Dataflow
    >>> from bytewax.testing import TestingSink, TestingSource, run_main
    >>> names = {"profiles": "t-profiles", "dead_letters": "t-dead"}
    >>> flow = Dataflow("encode_eg")
    >>> outputs = op.input("inp", flow, TestingSource([Output("profiles", "p1", None)]))
    >>> records = []
    >>> op.output("out", encode("encode", outputs, names), TestingSink(records))
    >>> run_main(flow)
    >>> [(r.topic, r.key, r.value) for r in records]
    [('t-profiles', b'p1', None)]
    """
    return op.flat_map_batch("batch", up, lambda batch: encode_batch(topic_names, batch, max_bytes, wire))
