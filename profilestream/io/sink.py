"""Writing the dataflow's outputs: a Bytewax sink that waits for the broker instead of losing records.

Bytewax's own `KafkaSink` flushes after every batch but never looks at delivery reports, so a
record that librdkafka gives up on (after `message.timeout.ms`, 5 minutes by default) is lost
without a word. Here:

- `message.timeout.ms = 0` (never give up) and `enable.idempotence = true` (retries keep the order
  per partition and add no duplicates): while the broker is away the batch waits, and a warning is
  logged every few seconds; when it is back, everything is delivered, in order. Order matters:
  the latest record of a key on `profiles` is the profile.
- a delivery error that retrying cannot cure (record too large, no such topic, not authorised)
  raises `BrokerError`: the run stops, loudly; with `--recovery-dir` a restart redoes the epoch.
- Bytewax calls `write_batch` within an epoch and commits the epoch's snapshot only after it
  returns, so every output of a snapshotted epoch has been acknowledged by the broker (outputs
  after the last snapshot are written again on resume: at-least-once).

Any `[kafka]` property (SASL/SSL, ...) reaches the producer; the user's settings win over the
defaults here.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Producer

from profilestream import metrics
from profilestream.io.kafka import BrokerError

PRODUCER_DEFAULTS = {
    "enable.idempotence": "true",
    "message.timeout.ms": "0",  # infinite: wait for the broker, never drop a record
    "linger.ms": "5",
}
WAIT_STEP = 1.0  # seconds between flush attempts while records are unacknowledged
WARN_EVERY = 10.0


def producer_config(conf: dict[str, str]) -> dict[str, Any]:
    """The sink producer's librdkafka configuration: defaults, then the `[kafka]` settings."""
    return {**PRODUCER_DEFAULTS, **conf}


class _SinkPartition(StatelessSinkPartition):
    def __init__(self, conf: dict[str, str]):
        self._failed: list[KafkaError] = []
        self._warn = metrics.Every(WARN_EVERY)
        self._producer = Producer({
            **producer_config(conf),
            "error_cb": self._error,
            "logger": logging.getLogger("profilestream.kafka.producer"),
        })

    def _error(self, error: KafkaError) -> None:
        if error.fatal():
            self._failed.append(error)
        elif self._warn.ready():
            metrics.log("kafka_trouble", logging.WARNING, client="producer", error=error.str())

    def _delivered(self, error: KafkaError | None, _message) -> None:
        if error is not None:
            self._failed.append(error)

    def write_batch(self, items: list) -> None:
        produce, poll = self._producer.produce, self._producer.poll
        by_topic: Counter = Counter()
        for message in items:
            while True:
                try:
                    produce(message.topic, message.value, message.key, on_delivery=self._delivered)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    poll(0.1)
            by_topic[message.topic] += 1
        self._wait(len(items))
        metrics.COUNTERS.delivered(by_topic)

    def _wait(self, count: int) -> None:
        waited = 0.0
        while (left := self._producer.flush(WAIT_STEP)) > 0:
            waited += WAIT_STEP
            if self._failed:
                break
            if waited >= WARN_EVERY and self._warn.ready():
                metrics.log("waiting_for_broker", logging.WARNING, client="producer",
                            unacknowledged=left, waited_s=round(waited))
        if self._failed:
            error = self._failed[0]
            raise BrokerError(f"{len(self._failed)} output record(s) could not be delivered: {error.str()}")
        if waited >= WARN_EVERY:
            metrics.log("broker_back", client="producer", waited_s=round(waited))

    def close(self) -> None:
        self._wait(0)


class OutputSink(DynamicSink):
    """Every output topic through one producer per worker; items are `KafkaSinkMessage`s that
    name their topic."""

    def __init__(self, conf: dict[str, str]):
        self._conf = dict(conf)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SinkPartition:
        return _SinkPartition(self._conf)
