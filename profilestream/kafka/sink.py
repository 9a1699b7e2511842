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
- With recovery, each `write_batch` waits for the broker's acknowledgement of its records:
  Bytewax commits the epoch's snapshot only after `write_batch` returns, so every output of a
  snapshotted epoch has been acknowledged (outputs after the last snapshot are written again on
  resume: at-least-once). Without recovery there is no snapshot to get ahead of (a restart
  computes every output again), so `write_batch` hands its records to librdkafka and returns:
  waiting for a broker round trip per batch was most of an always-on run's time per small batch.
  Delivery errors still stop the run, at the next batch; `close` waits for everything.

Any `[kafka]` property (SASL/SSL, ...) reaches the producer; the user's settings win over the
defaults here.

Topics that change under the run (issue 11): the producer never asks the broker to create a
topic (`allow.auto.create.topics = false`: Tansu would create a missing output topic with 4
partitions, so a broker that came back empty got the run's remaining outputs without a word),
and each batch, each wait for the broker and the final flush ask the process's `TopicWatch`
whether the output topics are still those the run started with; if not, the run stops
(`TopicChanged`) instead of writing on.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Producer

from profilestream.kafka.clients import BrokerError, topic_watch
from profilestream.ops import metrics

PRODUCER_DEFAULTS = {
    "enable.idempotence": "true",
    "message.timeout.ms": "0",  # infinite: wait for the broker, never drop a record
    "linger.ms": "5",
    "allow.auto.create.topics": "false",  # a missing output topic is an error, never a new topic
}
WAIT_STEP = 1.0  # seconds between flush attempts while records are unacknowledged
WARN_EVERY = 10.0


def producer_config(conf: dict[str, str]) -> dict[str, Any]:
    """The sink producer's librdkafka configuration: defaults, then the `[kafka]` settings."""
    return {**PRODUCER_DEFAULTS, **conf}


class _SinkPartition(StatelessSinkPartition):
    def __init__(self, conf: dict[str, str], wait: bool = True):
        self._each_batch = wait
        self._acked: Counter = Counter()
        self._failed: list[KafkaError] = []
        self._warn = metrics.Every(WARN_EVERY)
        self._watch = topic_watch()
        self._producer = Producer(
            {
                **producer_config(conf),
                "error_cb": self._error,
                "logger": logging.getLogger("profilestream.kafka.producer"),
            }
        )

    def _error(self, error: KafkaError) -> None:
        if error.fatal():
            self._failed.append(error)
            return
        metrics.COUNTERS.broker_trouble(error.str())  # readiness hears of each at once (`/readyz`)
        if self._warn.ready():
            metrics.log("kafka_trouble", logging.WARNING, client="producer", error=error.str())

    def _delivered(self, error: KafkaError | None, message) -> None:
        if error is not None:
            self._failed.append(error)
        else:
            self._acked[message.topic()] += 1

    def _check_topics(self) -> None:
        if self._watch is not None:
            self._watch.check()

    def write_batch(self, items: list) -> None:
        self._check_topics()
        produce, poll = self._producer.produce, self._producer.poll
        for message in items:
            while True:
                try:
                    if message.partition is None:
                        produce(message.topic, message.value, message.key, on_delivery=self._delivered)
                    else:  # the transfer loop names its partition (`kafka.transfers`)
                        produce(
                            message.topic,
                            message.value,
                            message.key,
                            partition=message.partition,
                            on_delivery=self._delivered,
                        )
                    break
                except BufferError:  # local queue full: let deliveries drain
                    poll(0.1)
        if self._each_batch:
            self._wait()
        else:
            poll(0)  # delivery reports so far
            self._raise_failed()
        self._report()

    def _report(self) -> None:
        if self._acked:
            acked, self._acked = self._acked, Counter()
            metrics.COUNTERS.delivered(acked)

    def _wait(self) -> None:
        waited = 0.0
        while (left := self._producer.flush(WAIT_STEP)) > 0:
            waited += WAIT_STEP
            if self._failed:
                break
            self._check_topics()  # a broker that came back empty: stop rather than wait for it
            if waited >= WARN_EVERY and self._warn.ready():
                metrics.log(
                    "waiting_for_broker",
                    logging.WARNING,
                    client="producer",
                    unacknowledged=left,
                    waited_s=round(waited),
                )
        self._raise_failed()
        if waited >= WARN_EVERY:
            metrics.log("broker_back", client="producer", waited_s=round(waited))

    def _raise_failed(self) -> None:
        if self._failed:
            error = self._failed[0]
            raise BrokerError(f"{len(self._failed)} output record(s) could not be delivered: {error.str()}")

    def close(self) -> None:
        """Deliver what is left. Never raises: Bytewax closes sinks while it unwinds from another
        error too, and a second error there aborts the process (a Rust "panic in a destructor"),
        so a failure here goes to `CLOSE_FAILURES`, which the runner raises once Bytewax is done."""
        try:
            self._check_topics()
            self._wait()
            self._report()
            if self._watch is not None:  # what was just delivered went to the topics the run began with
                self._watch.verify()
        except BrokerError as exc:
            if self._watch is not None and self._watch.problem is not None:
                self._producer.purge()  # not one more record into a topic the run did not start with
            CLOSE_FAILURES.append(exc)


CLOSE_FAILURES: list[BrokerError] = []  # see `_SinkPartition.close`


class OutputSink(DynamicSink):
    """Every output topic through one producer per worker; items are `KafkaSinkMessage`s that
    name their topic. `wait`: every batch waits for its acknowledgement (a run with recovery)."""

    def __init__(self, conf: dict[str, str], wait: bool = True):
        self._conf = dict(conf)
        self._each_batch = wait

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SinkPartition:
        return _SinkPartition(self._conf, self._each_batch)


__all__ = [
    "CLOSE_FAILURES",
    "PRODUCER_DEFAULTS",
    "WAIT_STEP",
    "WARN_EVERY",
    "OutputSink",
    "producer_config",
]
