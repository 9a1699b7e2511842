"""Operations for `run`: structured logs (JSON lines on stderr) and Prometheus counters.

This is shell, not domain: the `Engine` keeps its own `stats` Counter and knows nothing of logs or
Prometheus. The dataflow publishes into the process-wide `COUNTERS` here:

- the decode step: records read per input topic, valid events per type, dead letters by reason;
- the engine step, after every call: a copy of `engine.stats` (applied events, late events,
  duplicates, merges by reason, triggers by type), the watermark and the pending buffer; the
  engine's counters live in its snapshot, so after a recovery they go on from the snapshot;
- each input partition: its next offset and the high watermark it last heard of (consumer lag);
- the sink: records delivered per output topic;
- the encode step: output records that could not be encoded or were too large for a Kafka record,
  per output topic (each also dead-lettered and logged with its key: `encode_failed`);
- the engine snapshot: its size and how long pickling took;
- the codec: records its fast paths declined and left to the general path (fastavro, `to_event`),
  per topic role and path (`codec_fallback`; see `profilestream.codec.avro`).

`Progress` logs a `progress` line every few seconds from these; `serve(port, host)` exposes them on
an HTTP server (127.0.0.1 unless told otherwise): `GET /metrics` the Prometheus text, `GET /healthz`
200 `{"status": "ok"}` while the process runs, `GET /readyz` 200 once the run has reached its
brokers and 503 `{"status": "not ready", "reason": ...}` before that and while a broker does not
answer (`Counters.readiness`), any other path 404 `{"error": "no such page: /x"}`. Counters of the
decode step and the sink count from the start of the process (Prometheus treats a restart as a
counter reset); those taken from the engine are the engine's own totals.

Log lines are one JSON object each: `{"ts": ..., "level": "info", "event": "progress", ...}`.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from profilestream.codec.times import iso_or_none

LOGGER_NAME = "profilestream"
LOG = logging.getLogger(LOGGER_NAME)


# --- structured logs -------------------------------------------------------------------------


# Epoch ms as the contract's ISO-8601 form, None (and the engine's sentinels) as None: the one
# formatter of codec/times.py, under the name the commands and flows call it by.
iso_ms = iso_or_none


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, event (the message), then the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": iso_ms(int(record.created * 1000)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for the `profilestream` loggers (idempotent)."""
    if any(isinstance(h, _StderrHandler) for h in LOG.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    LOG.addHandler(handler)
    LOG.setLevel(level)
    LOG.propagate = False


# Log events that say how the broker answers, as the source and sink report them today: their
# `kafka_trouble` (a client error librdkafka reports, rate-limited) and `waiting_for_broker` make
# the run not ready, `broker_back` ready again (`Counters.readiness`).
BROKER_TROUBLE_EVENTS = frozenset({"kafka_trouble", "waiting_for_broker"})
BROKER_BACK_EVENTS = frozenset({"broker_back"})


def log(event: str, level: int = logging.INFO, **fields: Any) -> None:
    if event in BROKER_TROUBLE_EVENTS:
        COUNTERS.broker_trouble(str(fields.get("error") or event))
    elif event in BROKER_BACK_EVENTS:
        COUNTERS.broker_answered()
    LOG.log(level, event, extra={"fields": fields})


class Every:
    """Rate limit for repeated warnings: `ready()` is True at most once per `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = -float("inf")

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.seconds:
            self._last = now
            return True
        return False


# --- counters --------------------------------------------------------------------------------


def dead_letter_reason(field: str, reason: str) -> str:
    """A short, bounded label for a rejected record (the full reason is in the dead letter).
    A `ts` ahead of the wall clock (`time.max_future`) has a label of its own: it points at a
    device or system clock, not at a producer's code."""
    if field == "ts" and "time.max_future" in reason:
        return "future_ts"
    if field == "value":
        text = reason.lower()
        if "limit" in text:
            return "too_large"
        if "null value" in text:
            return "null_value"
        return "not_avro"
    top = field.split(".", 1)[0].split("[", 1)[0]
    return f"invalid_{top}" if top else "invalid"


class Counters:
    """What the dataflow publishes for logs and metrics; safe to update from several workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.records_in: Counter = Counter()  # input topic role -> records read
            self.events_in: Counter = Counter()  # (role, type or op) -> valid events decoded
            self.dead_letters: Counter = Counter()  # (role, reason) -> dead letters
            self.records_out: Counter = Counter()  # output topic name -> records delivered
            self.encode_failures: Counter = Counter()  # output topic name -> records not encodable
            self.codec_fallbacks: Counter = Counter()  # (role, path) -> records a codec fast path declined
            self.engine: dict[str, int] = {}  # the latest copy of the resolution step's stats
            self.shards: list[Counter] = []  # each worker's profile shards' stats (live: read, never written here)
            self.profile_snapshots = 0  # profile states written to recovery (only those changed in an epoch)
            self.profile_snapshot_bytes_total = 0
            self.profile_snapshot_seconds_total = 0.0
            self.watermark: int | None = None
            self.pending = 0
            self.partitions: dict[str, tuple[int, int | None]] = {}  # source -> (next, high)
            self.snapshots = 0
            self.snapshot_bytes = 0
            self.snapshot_seconds = 0.0
            self.snapshot_seconds_total = 0.0
            # readiness: set by the runner once its broker checks passed; a broker trouble since
            # the last sign that the broker answers makes it not ready again
            self.ready = False
            self.trouble: str | None = None  # the last broker trouble reported, unanswered since
            self.trouble_at: float | None = None
            self.answered_at: float | None = None

    def mark_ready(self) -> None:
        """The run has reached its brokers (checked them, and starts the dataflow)."""
        with self._lock:
            self.ready = True
            self.answered_at = time.monotonic()
            self.trouble = None

    def broker_trouble(self, error: str) -> None:
        """A client reports that the broker does not answer (or answers with an error)."""
        with self._lock:
            self.trouble, self.trouble_at = error, time.monotonic()

    def broker_answered(self) -> None:
        """A sign that the broker answers: records read or delivered, a look answered."""
        with self._lock:
            self.answered_at = time.monotonic()
            self.trouble = None

    def readiness(self) -> tuple[bool, str | None]:
        """(ready, why not): ready once `mark_ready` was called and no broker trouble has been
        reported since the broker last answered."""
        with self._lock:
            if not self.ready:
                return False, "the run has not reached its brokers yet"
            if self.trouble is not None:
                return False, f"the broker does not answer: {self.trouble}"
            return True, None

    def decoded(self, records_in: Counter, events_in: Counter, dead_letters: Counter) -> None:
        with self._lock:
            self.records_in.update(records_in)
            self.events_in.update(events_in)
            self.dead_letters.update(dead_letters)
        if records_in:  # records were read: the broker answers
            self.broker_answered()

    def delivered(self, by_topic: Counter) -> None:
        with self._lock:
            self.records_out.update(by_topic)
        if by_topic:  # records were acknowledged: the broker answers
            self.broker_answered()

    def encode_failed(self, topic: str) -> None:
        with self._lock:
            self.encode_failures[topic] += 1

    def codec_fallback(self, role: str, path: str) -> None:
        """A record of `role` that the codec's fast `path` (`direct`, `reader`, `writer`) declined."""
        with self._lock:
            self.codec_fallbacks[role, path] += 1

    def engine_state(self, stats: Counter, watermark: int, pending: int) -> None:
        copy = dict(stats)  # the engine step's own thread: no concurrent change while copying
        self.engine, self.watermark, self.pending = copy, watermark, pending

    def partition(self, source: str, next_offset: int, high: int | None) -> None:
        self.partitions[source] = (next_offset, high)

    def snapshot(self, size: int, seconds: float) -> None:
        with self._lock:
            self.snapshots += 1
            self.snapshot_bytes = size
            self.snapshot_seconds = seconds
            self.snapshot_seconds_total += seconds

    # --- views -----------------------------------------------------------------------------

    def shard_stats(self, stats: Counter) -> None:
        """A worker's profile shards count into `stats` (its own thread writes it)."""
        with self._lock:
            self.shards.append(stats)

    def profile_snapshot(self, size: int, seconds: float) -> None:
        """One profile's state written to recovery (a worker's own thread: no lock needed for
        the sums to be right in CPython, but snapshots of workers interleave: take it)."""
        with self._lock:
            self.profile_snapshots += 1
            self.profile_snapshot_bytes_total += size
            self.profile_snapshot_seconds_total += seconds

    def engine_view(self) -> dict[str, int]:
        """The resolution step's stats and every worker's shards' stats, added up."""
        total: Counter = Counter(self.engine)
        for stats in list(self.shards):
            total.update(dict(stats))
        return dict(total)

    def engine_counts(self, prefix: str) -> dict[str, int]:
        return {k[len(prefix) :]: v for k, v in self.engine_view().items() if k.startswith(prefix)}

    def lag(self) -> dict[str, int]:
        """Per input partition: records between the next offset to read and the partition's end
        as last heard from the broker (never below 0)."""
        return {
            source: max(0, high - nxt)
            for source, (nxt, high) in list(self.partitions.items())
            if high is not None and high >= 0
        }

    def summary(self) -> dict[str, Any]:
        """The fields of a `progress` / `end` log line."""
        with self._lock:
            engine = self.engine_view()
            out: dict[str, Any] = {
                "records_in": sum(self.records_in.values()),
                "events_in": sum(self.events_in.values()),
                "dead_letters": sum(self.dead_letters.values()),
                "records_out": sum(self.records_out.values()),
            }
            if self.encode_failures:
                out["encode_failures"] = sum(self.encode_failures.values())
        applied = sum(v for k, v in engine.items() if k.startswith(("clicks.", "crm.")))
        out.update(
            {
                "applied": applied,
                "duplicates": engine.get("duplicates", 0),
                "late": engine.get("late", 0),
                "dropped_erased": engine.get("dropped_erased", 0),
                "merges": sum(v for k, v in engine.items() if k.startswith("merges.")),
                "triggers": sum(v for k, v in engine.items() if k.startswith("triggers.")),
                "watermark": iso_ms(self.watermark),
                "pending": self.pending,
                "lag": sum(self.lag().values()),
            }
        )
        if self.snapshots:
            out["snapshots"] = self.snapshots
            out["snapshot_bytes"] = self.snapshot_bytes
            out["snapshot_ms"] = round(self.snapshot_seconds * 1000, 1)
            out["snapshot_ms_total"] = round(self.snapshot_seconds_total * 1000)
        if self.profile_snapshots:
            out["profile_snapshots"] = self.profile_snapshots
            out["profile_snapshot_bytes"] = self.profile_snapshot_bytes_total
        return out


COUNTERS = Counters()


class Progress:
    """A daemon thread logging `progress` every `every` seconds until `stop()`."""

    def __init__(self, every: float = 10.0, **fields: Any) -> None:
        self.every = max(every, 0.05)
        self.fields = fields
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="profilestream-progress", daemon=True)

    def start(self) -> Progress:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            log("progress", **self.fields, **COUNTERS.summary())

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)


# --- Prometheus --------------------------------------------------------------------------


class _Collector:
    """Builds the metric families from `COUNTERS` at every scrape."""

    def __init__(self, counters: Counters) -> None:
        self.c = counters

    def describe(self) -> Iterable:
        return []  # no fixed description: families are built at collect time

    def collect(self) -> Iterable:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        c = self.c
        with c._lock:
            records_in, events_in = dict(c.records_in), dict(c.events_in)
            dead, out = dict(c.dead_letters), dict(c.records_out)
            unencodable = dict(c.encode_failures)
            fallbacks = dict(c.codec_fallbacks)
            snap = (c.snapshots, c.snapshot_bytes, c.snapshot_seconds, c.snapshot_seconds_total)
            profile_snap = (c.profile_snapshots, c.profile_snapshot_bytes_total, c.profile_snapshot_seconds_total)
        engine = c.engine_view()

        family = CounterMetricFamily("profilestream_records_in", "Records read from an input topic", labels=["topic"])
        for role, n in sorted(records_in.items()):
            family.add_metric([role], n)
        yield family
        family = CounterMetricFamily(
            "profilestream_events_in",
            "Valid input events read, per type (click type or CRM op)",
            labels=["topic", "type"],
        )
        for (role, kind), n in sorted(events_in.items()):
            family.add_metric([role, kind], n)
        yield family
        family = CounterMetricFamily(
            "profilestream_dead_letters", "Input records sent to dead-letters, by reason", labels=["topic", "reason"]
        )
        for (role, reason), n in sorted(dead.items()):
            family.add_metric([role, reason], n)
        yield family
        family = CounterMetricFamily(
            "profilestream_records_out", "Records delivered to an output topic", labels=["topic"]
        )
        for topic, n in sorted(out.items()):
            family.add_metric([topic], n)
        yield family
        family = CounterMetricFamily(
            "profilestream_encode_failures",
            "Output records that could not be encoded (or exceeded a Kafka record), dead-lettered instead; "
            "the `encode_failed` log line names each key",
            labels=["topic"],
        )
        for topic, n in sorted(unencodable.items()):
            family.add_metric([topic], n)
        yield family
        family = CounterMetricFamily(
            "profilestream_codec_fallbacks",
            "Records a fast path of the codec declined (direct decoder, compiled reader or writer) and left to "
            "the general path, which decides: every rejected input, and unusual but valid encodings",
            labels=["role", "path"],
        )
        for (role, path), n in sorted(fallbacks.items()):
            family.add_metric([role, path], n)
        yield family

        def from_engine(name: str, doc: str, prefix: str, label: str | None):
            if label is None:
                family = CounterMetricFamily(name, doc)
                family.add_metric([], engine.get(prefix, 0))
                return family
            family = CounterMetricFamily(name, doc, labels=[label])
            for key, n in sorted(engine.items()):
                if key.startswith(prefix):
                    family.add_metric([key[len(prefix) :]], n)
            return family

        yield from_engine(
            "profilestream_applied_clicks",
            "Clicks applied to profiles, per type (resolution total, kept across recovery)",
            "clicks.",
            "type",
        )
        yield from_engine(
            "profilestream_applied_crm_changes",
            "CRM changes applied, per op (resolution total, kept across recovery)",
            "crm.",
            "op",
        )
        yield from_engine(
            "profilestream_late_events",
            "Events older than the watermark on arrival (resolution total, kept across recovery)",
            "late",
            None,
        )
        yield from_engine(
            "profilestream_duplicate_events",
            "Repeated event/change ids dropped (resolution total, kept across recovery)",
            "duplicates",
            None,
        )
        yield from_engine(
            "profilestream_dropped_erased",
            "Late events of an erased customer (ts before the erase) dropped (resolution total, kept across recovery)",
            "dropped_erased",
            None,
        )
        yield from_engine(
            "profilestream_clamped",
            "Sums saturated at their output type's bound, by field (revenue, quantity; "
            "this process's shards since it started)",
            "clamped.",
            "field",
        )
        yield from_engine(
            "profilestream_merges",
            "Profile merges, by reason (resolution total, kept across recovery)",
            "merges.",
            "reason",
        )
        yield from_engine(
            "profilestream_triggers",
            "Triggers emitted, by type (this process's shards since it started)",
            "triggers.",
            "type",
        )
        yield from_engine(
            "profilestream_triggers_suppressed",
            "Triggers withheld for lack of consent, by type (this process's shards since it started)",
            "triggers_suppressed.",
            "type",
        )

        gauge = GaugeMetricFamily(
            "profilestream_consumer_lag", "Records not yet read, per input partition", labels=["topic", "partition"]
        )
        for source, lag in sorted(c.lag().items()):
            topic, _, partition = source.rpartition("/")
            gauge.add_metric([topic, partition], lag)
        yield gauge
        if c.watermark is not None and -(2**61) < c.watermark < 2**61:
            yield GaugeMetricFamily(
                "profilestream_watermark_seconds",
                "Resolution's event-time watermark (epoch s)",
                value=c.watermark / 1000,
            )
        yield GaugeMetricFamily(
            "profilestream_pending_events", "Events buffered until the watermark passes them", value=c.pending
        )
        yield CounterMetricFamily("profilestream_snapshots", "Engine snapshots taken", value=snap[0])
        yield GaugeMetricFamily("profilestream_last_snapshot_bytes", "Size of the last engine snapshot", value=snap[1])
        yield GaugeMetricFamily(
            "profilestream_last_snapshot_seconds", "Time to pickle the last engine snapshot", value=snap[2]
        )
        yield CounterMetricFamily(
            "profilestream_snapshot_pickle_seconds", "Time spent pickling engine snapshots", value=snap[3]
        )
        yield CounterMetricFamily(
            "profilestream_profile_snapshots",
            "Profile states written to recovery (changed ones)",
            value=profile_snap[0],
        )
        yield CounterMetricFamily(
            "profilestream_profile_snapshot_bytes", "Bytes of profile states written to recovery", value=profile_snap[1]
        )
        yield CounterMetricFamily(
            "profilestream_profile_snapshot_seconds", "Time spent pickling profile states", value=profile_snap[2]
        )


def registry(counters: Counters = COUNTERS):
    """A Prometheus registry with the profilestream metrics and the process collector."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(counters))
    ProcessCollector(registry=reg)
    return reg


DEFAULT_HOST = "127.0.0.1"


class _Handler(BaseHTTPRequestHandler):
    """`/metrics`, `/healthz`, `/readyz`; 404 JSON elsewhere. The server carries the registry and
    the counters (`_Server`)."""

    server: _Server
    server_version = "profilestream"

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path == "/metrics":
            from prometheus_client.exposition import choose_encoder

            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(self.server.registry), content_type, body)
        elif path == "/healthz":
            self._json(200, {"status": "ok"}, body)
        elif path == "/readyz":
            ready, reason = self.server.counters.readiness()
            if ready:
                self._json(200, {"status": "ready"}, body)
            else:
                self._json(503, {"status": "not ready", "reason": reason}, body)
        else:
            self._json(404, {"error": f"no such page: {path}"}, body)

    def _json(self, status: int, payload: dict[str, Any], body: bool) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", body)

    def _send(self, status: int, data: bytes, content_type: str, body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log on stderr: it holds JSON log lines only


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: Any, counters: Counters) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.registry = registry
        self.counters = counters
        super().__init__(address, _Handler)


def serve(port: int, host: str = DEFAULT_HOST, counters: Counters = COUNTERS) -> ThreadingHTTPServer:
    """Start the HTTP server of `run --metrics-port` (`/metrics`, `/healthz`, `/readyz`) on
    `host`:`port` in a daemon thread; returns the server (`shutdown()`, `server_close()`).
    `port` 0 takes a free port (`server.server_address[1]`)."""
    server = _Server((host, port), registry(counters), counters)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), name="profilestream-metrics", daemon=True)
    thread.start()
    return server


__all__ = [
    "BROKER_BACK_EVENTS",
    "BROKER_TROUBLE_EVENTS",
    "COUNTERS",
    "DEFAULT_HOST",
    "LOG",
    "LOGGER_NAME",
    "Counters",
    "Every",
    "JsonFormatter",
    "Progress",
    "dead_letter_reason",
    "iso_ms",
    "log",
    "registry",
    "serve",
    "setup_logging",
]
