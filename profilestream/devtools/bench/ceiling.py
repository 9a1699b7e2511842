"""2. The ceiling: one plain consumer reading (and decoding) every input record once."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from profilestream.domain.roles import INPUT_ROLES

if TYPE_CHECKING:
    from confluent_kafka import Message

    from profilestream.config import Config


def ceiling(config: Config, total: int, decode: bool = True) -> dict[str, Any]:
    """One consumer, every input partition assigned, read (and decode) every record once."""
    from confluent_kafka import Consumer, TopicPartition

    from profilestream.codec import avro
    from profilestream.kafka.clients import end_offsets

    rules = config.rules()
    roles = {config.topics.name(role): role for role in INPUT_ROLES}
    assignment = [
        TopicPartition(topic, p, low) for topic in roles for p, (low, _end) in end_offsets(config, topic).items()
    ]
    consumer = Consumer(
        {
            **config.kafka.client_config(),
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    decode_input = avro.decode_input
    try:
        started = time.perf_counter()
        consumer.assign(assignment)
        n = 0
        while n < total:
            batch = consumer.consume(1000, 0.1)
            now_ms = int(time.time() * 1000)  # once per batch, as the dataflow's decode step
            for m in batch:
                error = m.error()
                if error is not None:
                    raise RuntimeError(error.str())
                if decode:
                    decode_input(roles[_topic(m)], m.value(), rules, now_ms)
                n += 1
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"ceiling: read only {n} of {total} records in 600 s")
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    return {"events": n, "seconds": round(elapsed, 3), "eps": round(n / elapsed)}


def _topic(m: Message) -> str:
    topic = m.topic()
    if topic is None:  # only an error event has no topic
        raise RuntimeError("ceiling: a record without a topic")
    return topic


__all__ = ["ceiling"]
