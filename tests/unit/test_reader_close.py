"""Ctrl-C on a reader (`consume` tailing) gives the prompt back even when librdkafka's close
waits (issue 12: on a loaded Apache Kafka the close may wait on the group coordinator)."""

from __future__ import annotations

import threading

from profilestream.kafka import clients


class _StuckConsumer:
    """A consumer whose close does not return until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closing = threading.Event()

    def close(self) -> None:
        self.closing.set()
        self.release.wait()


def test_an_interrupted_reader_does_not_wait_for_a_close_that_hangs():
    consumer = _StuckConsumer()
    clients._close_within(consumer, 0.05)  # type: ignore[arg-type]
    assert consumer.closing.is_set()  # the close was asked for
    assert not consumer.release.is_set()  # and the call came back while it still hung
    consumer.release.set()


def test_a_close_that_finishes_is_waited_for():
    consumer = _StuckConsumer()
    consumer.release.set()
    done = []
    original = consumer.close
    consumer.close = lambda: (original(), done.append(True))  # type: ignore[method-assign]
    clients._close_within(consumer, 30)  # type: ignore[arg-type]
    assert done == [True]
