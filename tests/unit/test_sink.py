"""The output sink's bookkeeping: delivery reports counted by topic, failures stop the run."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from profilestream.kafka.clients import BrokerError
from profilestream.kafka.sink import OutputSink
from profilestream.ops import metrics

UNREACHABLE = {"bootstrap.servers": "127.0.0.1:1"}  # never contacted: nothing is produced here


class Delivered:
    def __init__(self, topic: str):
        self._topic = topic

    def topic(self) -> str:
        return self._topic


@pytest.mark.parametrize("wait", [True, False])
def test_a_failed_delivery_stops_the_run_at_the_next_batch(wait):
    part = OutputSink(UNREACHABLE, wait=wait).build("write", 0, 1)
    part.write_batch([])  # nothing failed: returns
    part._delivered(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
    with pytest.raises(BrokerError, match="1 output record"):
        part.write_batch([])


def test_acknowledged_records_are_counted_by_topic():
    metrics.COUNTERS.reset()
    part = OutputSink(UNREACHABLE, wait=False).build("write", 0, 1)
    for topic in ("profiles", "profiles", "triggers"):
        part._delivered(None, Delivered(topic))
    part.write_batch([])
    assert metrics.COUNTERS.records_out == {"profiles": 2, "triggers": 1}
