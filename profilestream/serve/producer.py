"""One long-lived Kafka producer for the collector.

Why not `clients.produce_records`: that one makes a producer per call and waits for every
delivery, a broker round trip per request. The collector instead hands each record to
librdkafka's queue and answers at once (202 means "handed to the producer"); a thread serves
the delivery reports, and `close` flushes, so a clean stop loses nothing that was acknowledged.
A delivery that fails after the answer (the broker gone for longer than librdkafka's
`message.timeout.ms`) cannot be taken back: it is counted (`failed`) and logged, never silent.

With `schema_registry.url` set, values are framed in the Confluent wire format as `produce` writes
them (`registry.encoder`); `server.build` registers the schema first, so a registry that does not
answer stops `serve` at start with the key named (exit 2), not at the first request.

A full local queue is back-pressure, not bad input: `send` waits for room up to `wait` seconds
and then raises `Busy` (the app answers 503 with a reason, the client retries).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import KafkaError, Producer

from profilestream.codec import registry
from profilestream.domain.roles import CLICKSTREAM
from profilestream.kafka.clients import client_config, quiet
from profilestream.ops.metrics import log


class Busy(RuntimeError):
    """The producer's local queue stayed full: the broker is slower than the traffic."""


class EventProducer:
    """Encodes and produces clickstream records to `topic`; `delivered` and `failed` count the
    delivery reports (`failed` also by error name in `errors`)."""

    def __init__(self, config: Any, wait: float = 2.0) -> None:
        self.topic = config.topics.name(CLICKSTREAM)
        self._encode = registry.encoder(config)
        self.wait = wait
        self._producer = Producer(
            quiet(
                {
                    "allow.auto.create.topics": False,
                    "linger.ms": 5,  # batch what concurrent requests hand over
                    "compression.type": "lz4",
                    **client_config(config),
                }
            )
        )
        self.delivered = 0
        self.failed = 0
        self.errors: dict[str, int] = {}
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="serve-producer", daemon=True)
        self._poller.start()

    def _report(self, err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        self.errors[err.name()] = self.errors.get(err.name(), 0) + 1
        log("collect_delivery_failed", error=err.str(), topic=self.topic)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def send(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        """Hand the records over (encoded as Avro, keyed by device id); raises `Busy`."""
        deadline = None
        for key, record in records:
            # `from_json` drops `email` once hashed; the compiled writer wants every field (null
            # included) and would otherwise leave the record to fastavro's slower path
            record.setdefault("email", None)
            value = self._encode(CLICKSTREAM, record)
            while True:
                try:
                    self._producer.produce(self.topic, value, key.encode("utf-8"), on_delivery=self._report)
                    break
                except BufferError:
                    now = time.monotonic()
                    deadline = deadline or now + self.wait
                    if now > deadline:
                        raise Busy(f"the producer's queue to {self.topic} is full; retry later") from None
                    self._producer.poll(0.01)

    def pending(self) -> int:
        return len(self._producer)

    def close(self, timeout: float = 30.0) -> int:
        """Flush what was handed over; returns how many could not be delivered in time."""
        self._stop.set()
        self._poller.join()
        left: int = self._producer.flush(timeout)
        if left:
            log("collect_flush_incomplete", left=left, topic=self.topic)
        return left


__all__ = ["Busy", "EventProducer"]
