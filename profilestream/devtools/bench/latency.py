"""4. Latency: an always-on `profilestream run` fed live, the trigger records' arrival, and the
broker's own produce -> consume latency beside it."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profilestream.devtools.bench.snapshots import SnapshotWatch, scrape, seconds_per_epoch
from profilestream.devtools.bench.support import _load, _names, _percentile, _renamed, _say
from profilestream.devtools.bench.ts import _ts_span, retime
from profilestream.domain.roles import INPUT_ROLES
from profilestream.domain.units import DAY

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

    from profilestream.config import Config


class _TriggerWatch(threading.Thread):
    """Consumes the triggers topic from the beginning; records (arrival wall ms, record ts, trigger)."""

    def __init__(self, config: Config) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.seen: list[tuple[float, int, dict[str, Any]]] = []
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from profilestream.codec import avro

        topic = self.config.topics.name("triggers")
        consumer = Consumer(
            {
                **self.config.kafka.client_config(),
                "group.id": f"bench-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
                "fetch.error.backoff.ms": 5,
            }
        )
        consumer.assign([TopicPartition(topic, p, 0) for p in range(self.config.topics.partitions)])
        self.ready.set()
        try:
            while not self.stop.is_set():
                for m in consumer.consume(500, 0.05):
                    arrived = time.time() * 1000
                    value = m.value()
                    if m.error() is None and value is not None:
                        self.seen.append((arrived, m.timestamp()[1], avro.decode("triggers", value)))
        finally:
            consumer.close()


def broker_latency(config: Config, rate: float, warmup_s: float, measure_s: float) -> dict[str, Any]:
    """The broker's own produce -> consume latency at `rate` records/s on a fresh 3-partition
    topic, over the same span as a latency run (`warmup_s`, then `measure_s` measured): a floor
    under the dataflow's latency, whose path crosses the broker twice (input, then output).

    Why it is measured: Tansu, in memory, answers a fetch more slowly the more a partition holds,
    so this floor grows with the time a live run has been going (BENCHMARKS.md)."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient

    from profilestream.kafka.clients import create_missing, new_topic
    from profilestream.kafka.sink import PRODUCER_DEFAULTS

    topic = f"bench-broker-{uuid.uuid4().hex[:6]}"
    create_missing(AdminClient({**config.kafka.client_config()}), [new_topic(topic, None, 3)], 30)
    seen: list[tuple[float, float]] = []  # (sent, arrived), wall seconds
    stop = threading.Event()

    def consume() -> None:
        consumer = Consumer(
            {
                **config.kafka.client_config(),
                "group.id": f"bench-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
                "fetch.error.backoff.ms": 5,
            }
        )
        consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
        try:
            while not stop.is_set():
                for m in consumer.consume(500, 0.05):
                    value = m.value()
                    if m.error() is None:
                        if value is None:
                            raise RuntimeError(f"a record of {topic} without the send time as its value")
                        seen.append((float(value), time.time()))
        finally:
            consumer.close()

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    time.sleep(1.0)
    producer = Producer({**config.kafka.client_config(), **PRODUCER_DEFAULTS})  # as the dataflow's sink
    total = int(rate * (warmup_s + measure_s))
    started, wall0, i = time.perf_counter(), time.time(), 0
    while i < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        while i < due:
            producer.produce(topic, repr(time.time()).encode(), str(i).encode())
            i += 1
        producer.poll(0)
        time.sleep(0.001)
    producer.flush(30)
    time.sleep(1.0)
    stop.set()
    reader.join(10)
    measured = [(arrived - sent) * 1000 for sent, arrived in seen if sent - wall0 >= warmup_s]
    return {
        "rate_eps": round(rate),
        "records": len(measured),
        "p50_ms": round(_percentile(measured, 50), 1),
        "p99_ms": round(_percentile(measured, 99), 1),
    }


def _place(placed: list[tuple[str, int, int]], ts: int, err: KafkaError | None, msg: Message) -> None:
    """Delivery callback: where a delivered record went, with its `ts`."""
    if err is not None:
        return
    topic, partition = msg.topic(), msg.partition()
    if topic is None or partition is None:
        raise RuntimeError("a delivered record without a topic or partition")
    placed.append((topic, partition, ts))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _latency(
    config: Config,
    workload: list[tuple[str, bytes, bytes]],
    rate: float,
    lateness: str,
    measure_s: float,
    backlog: int,
    warmup_s: float,
    config_path: str | None,
) -> dict[str, Any]:
    """One always-on run fed live at `rate` events/s; see the module doc."""
    from confluent_kafka import Producer

    from profilestream.kafka.clients import create_topics

    tag = f"bench-lat{lateness}-{uuid.uuid4().hex[:6]}-"
    names = {**_names(tag), **_names(tag, INPUT_ROLES)}
    lat_config = dataclasses.replace(config, topics=_renamed(config.topics, names))
    create_topics(lat_config)
    lateness_ms = {"0s": 0, "30s": 30_000}[lateness]
    trail_s = lateness_ms / 1000 + 3  # keep traffic going until the last measured click is due
    room_s = (len(workload) - backlog) / rate - warmup_s - trail_s
    if room_s < measure_s:  # a small workload: measure what there is room for
        _say(f"    the workload leaves room for {max(0.0, room_s):.1f}s of measuring, not {measure_s:.0f}s")
        measure_s = max(0.0, room_s)
    live_n = min(len(workload) - backlog, int(rate * (warmup_s + measure_s + trail_s)))

    # the backlog: the start of the shop, shifted to end eight days ago (history for return visits)
    now_ms = int(time.time() * 1000)
    last_ts = _ts_span(workload[backlog - 1][2])[1]
    shift = now_ms - 8 * DAY - last_ts
    topics = {role: lat_config.topics.name(role) for role in INPUT_ROLES}

    env = dict(os.environ)  # the user's settings, with the bench's broker, topics and lateness on top
    if config_path:
        env["PROFILESTREAM_CONFIG"] = config_path
    env["PROFILESTREAM_KAFKA_BROKERS"] = config.kafka.brokers
    env["PROFILESTREAM_TIME_ALLOWED_LATENESS"] = lateness
    for role, name in names.items():
        env[f"PROFILESTREAM_TOPICS_{role.upper()}"] = name
    watch = _TriggerWatch(lat_config)
    watch.start()
    watch.ready.wait(10)
    producer = Producer(
        {**config.kafka.client_config(), "allow.auto.create.topics": False, "queue.buffering.max.messages": 1_000_000}
    )
    for role, key, value in workload[:backlog]:
        ts = _ts_span(value)[1]
        producer.produce(topics[role], retime(value, ts + shift), key)
        producer.poll(0)
    producer.flush(60)

    load_before = _load()
    log = tempfile.TemporaryFile(prefix="profilestream-bench-run-")  # noqa: SIM115 (closed in the finally below; a pipe could fill and stall the run)
    # recovery on, in a directory of its own (not the user's state_dir), and the metrics port:
    # the snapshots written per epoch are measured (`snapshots`)
    recovery = Path(tempfile.mkdtemp(prefix="profilestream-bench-recovery-"))
    port = _free_port()
    command = ["run", "--recovery-dir", str(recovery), "--metrics-port", str(port)]
    run = subprocess.Popen(
        [sys.executable, "-m", "profilestream.cli", *command], env=env, stdout=subprocess.DEVNULL, stderr=log
    )
    snaps = SnapshotWatch(recovery)
    snaps.start()
    snapshot_metrics: dict[str, float] = {}
    produced: dict[tuple[str, int], float] = {}  # (device_id, ts) of a live click -> produce wall ms
    placed: list[tuple[str, int, int]] = []  # (topic, partition, ts) of every live record, as delivered
    live = workload[backlog : backlog + live_n]
    started = time.perf_counter()
    wall0 = time.time()
    measure_from = wall0 + warmup_s
    measure_to = measure_from + measure_s
    behind_max = 0.0
    try:
        i = 0
        while i < live_n:
            if run.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the live run exited with {run.returncode}: {log.read().decode()[-2000:]}")
            due = min(live_n, int((time.perf_counter() - started) * rate) + 1)
            while i < due:
                role, key, value = live[i]
                wall = time.time()
                ts = int(wall * 1000)
                try:
                    producer.produce(
                        topics[role],
                        retime(value, ts),
                        key,
                        on_delivery=functools.partial(_place, placed, ts),
                    )
                except BufferError:
                    producer.poll(0.01)
                    continue
                if role == "clickstream" and measure_from <= wall < measure_to:
                    produced.setdefault((key.decode(), ts), wall * 1000)
                i += 1
            producer.poll(0)
            behind_max = max(behind_max, (time.perf_counter() - started) - i / rate)
            time.sleep(0.001)
        producer.flush(30)
        time.sleep(2.0)
        snapshot_metrics = scrape(port)
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(15)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
        watch.stop.set()
        watch.join(10)
        snaps.stop.set()
        snaps.join(10)
        log.close()
        shutil.rmtree(recovery, ignore_errors=True)

    arrivals: list[float] = []
    stamps: list[float] = []
    engine: list[float] = []
    by_second: dict[int, list[float]] = {}
    by_1s: dict[int, float] = {}
    matched: list[tuple[tuple[str, int], float]] = []
    unmatched = 0
    for arrived, stamp, trigger in watch.seen:
        if trigger["type"] != "return_visit":
            continue
        sent = produced.get((trigger["device_id"], trigger["ts"]))
        if sent is None:
            if measure_from * 1000 <= trigger["ts"] < measure_to * 1000:
                unmatched += 1
            continue
        arrivals.append(arrived - sent)
        stamps.append(stamp - sent)
        engine.append(trigger["emitted_at"] - sent)
        by_second.setdefault(int((sent / 1000 - measure_from) // 5) * 5, []).append(arrived - sent)
        second = int(sent / 1000 - measure_from)
        by_1s[second] = max(by_1s.get(second, 0.0), arrived - sent)
        matched.append(((trigger["device_id"], trigger["ts"]), arrived - sent))
    # The contract's watermark is the least latest `ts` over the input partitions: with lateness 0
    # a click at T can apply only once every partition has a record later than T. From what was
    # produced, that wait is a floor under any implementation's latency (sparse CRM partitions).
    by_partition: dict[tuple[str, int], list[int]] = {}
    for topic, partition, ts in placed:
        by_partition.setdefault((topic, partition), []).append(ts)
    for stamps_p in by_partition.values():
        stamps_p.sort()
    floor, floor_of = [], {}
    for device, ts in produced:
        waits = []
        for stamps_p in by_partition.values():
            at = bisect.bisect_right(stamps_p, ts)
            waits.append(stamps_p[at] - ts if at < len(stamps_p) else float("inf"))
        if waits and max(waits) != float("inf"):
            floor.append(max(waits) + lateness_ms)
            floor_of[device, ts] = max(waits) + lateness_ms
    # what the run adds to the contract's floor, trigger by trigger
    over_floor = [latency - floor_of[key] for key, latency in matched if key in floor_of]
    return {
        "allowed_lateness": lateness,
        "rate_eps": round(rate),
        "backlog_events": backlog,
        "warmup_s": round(warmup_s, 1),
        "measured_s": measure_s,
        "triggers_measured": len(arrivals),
        "triggers_unmatched": unmatched,
        "p50_ms": round(_percentile(arrivals, 50), 1),
        "p99_ms": round(_percentile(arrivals, 99), 1),
        "max_ms": round(max(arrivals), 1) if arrivals else None,
        "p50_ms_record_timestamp": round(_percentile(stamps, 50), 1),
        "p99_ms_record_timestamp": round(_percentile(stamps, 99), 1),
        "p50_ms_to_engine": round(_percentile(engine, 50), 1),  # produce call -> the engine emitting it
        "p99_ms_to_engine": round(_percentile(engine, 99), 1),
        "p50_ms_watermark_floor": round(_percentile(floor, 50), 1),  # the wait for every partition to pass T
        "p99_ms_watermark_floor": round(_percentile(floor, 99), 1),
        "p50_ms_over_floor": round(_percentile(over_floor, 50), 1),  # latency minus its own floor
        "p99_ms_over_floor": round(_percentile(over_floor, 99), 1),
        "p50_ms_by_5s": {k: round(_percentile(v, 50), 1) for k, v in sorted(by_second.items())},
        "max_ms_by_1s": {k: round(v, 1) for k, v in sorted(by_1s.items())},
        "producer_behind_max_s": round(behind_max, 3),
        "load_before": load_before,
        "snapshots": {**snaps.summary(), "seconds_per_epoch": seconds_per_epoch(snapshot_metrics)},
    }


__all__ = ["broker_latency"]
