"""1. The workload: the reference shop, generated, Avro-encoded and keyed as `produce` does,
produced into the two input topics."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from profilestream.domain.roles import INPUT_ROLES

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

    from profilestream.config import Config


def load(config: Config, events: int, seed: int = 7) -> tuple[list[tuple[str, bytes, bytes]], dict[str, Any]]:
    """Generate the reference shop, produce it to the input topics and return what was sent
    (role, key, value) in generation order, with a summary."""

    from profilestream.codec import avro
    from profilestream.devtools.sample import ShopSpec, generate
    from profilestream.kafka.clients import key_of

    started = time.perf_counter()
    sent: list[tuple[str, bytes, bytes]] = []
    for role, record in generate(ShopSpec(events=events, seed=seed)):
        checked = avro.from_json(role, record)
        key = key_of(role, checked)
        if key is None:
            raise ValueError(f"a generated {role} record has no key")
        sent.append((role, key.encode("utf-8"), avro.encode(role, checked)))
    generated = time.perf_counter()
    produce_all(config, sent)
    done = time.perf_counter()
    counts = Counter(role for role, _, _ in sent)
    return sent, {
        "events": len(sent),
        "clickstream": counts["clickstream"],
        "crm_changes": counts["crm_changes"],
        "avg_value_bytes": round(sum(len(v) for _, _, v in sent) / max(1, len(sent)), 1),
        "generate_encode_seconds": round(generated - started, 2),
        "produce_seconds": round(done - generated, 2),
        "produce_eps": round(len(sent) / max(1e-9, done - generated)),
    }


def produce_all(config: Config, sent: list[tuple[str, bytes, bytes]]) -> None:
    from confluent_kafka import Producer

    topics = {role: config.topics.name(role) for role in INPUT_ROLES}
    producer = Producer(
        {
            **config.kafka.client_config(),
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500_000,
            "allow.auto.create.topics": False,
        }
    )
    errors: list[Any] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    for role, key, value in sent:
        while True:
            try:
                producer.produce(topics[role], value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
    left = producer.flush(120)
    if errors or left:
        raise RuntimeError(f"loading the workload failed: {errors[:1] or f'{left} not delivered'}")


__all__ = ["load", "produce_all"]
