"""`profilestream record` / `replay`: topics to Avro container files and back, partition by partition.

A recording is a directory:

* `manifest.json`: the format and version, and per topic its name, role, partition count, record
  counts (records, tombstones, undecodable values) and one file per partition with the offsets
  it spans;
* `<topic>-<partition>.avro`: an Avro object container file (fastavro writer, deflate) whose
  records are the partition's messages in offset order: `offset` and `timestamp` (the original
  Kafka offset and timestamp), `key` (bytes), `value` (the message decoded with the topic's
  schema, embedded as a nullable field: null for a tombstone) and `raw` (the original bytes of a
  value that does not decode with the topic's schema, so hostile input records and replays too;
  null otherwise).

Any Avro reader can open the files; the schema travels in each file's header. Times in them are
plain `long` epoch milliseconds: the `timestamp-millis` logical type is left out on purpose,
because readers turn it into dates and a recorded hostile value (a time in microseconds, say)
is beyond any date type, which would make the whole file unreadable.

`replay` produces every file back to the same partition number of the topic that has the
recorded role in the current configuration (so a recording replays into fresh topic names or a
fresh broker), creating missing topics with the recorded partition counts. Keys, timestamps and
the order within each partition are kept (the producer is idempotent, so retries cannot reorder).
Decoded values are re-encoded with the topic's schema: byte for byte the original for canonical
Avro (what profilestream and fastavro write), except that a clear `email` on an input topic was
already hashed into `customer_key` when recorded (as on arrival: recordings hold no clear
addresses; the dataflow's result is the same).

Progress goes to stderr as a tqdm bar when stderr is a terminal; the counts are returned for the
command's final line.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from fastavro import reader as avro_reader
from fastavro.write import Writer
from tqdm import tqdm

from profilestream.io import avro
from profilestream.io.kafka import (
    BrokerError, client_config, create_missing, end_offsets, new_topic, read_topic, role_of,
)

FORMAT = "profilestream-recording"
VERSION = 1
MANIFEST = "manifest.json"
CODEC = "deflate"
MAX_MESSAGE_BYTES = 64 << 20  # the replaying producer's own limit; the broker has its own


class RecordingError(RuntimeError):
    """A recording that cannot be written or read (existing output, missing or bad manifest)."""


@dataclass
class TopicCount:
    topic: str
    role: str | None
    partitions: int
    records: int = 0
    tombstones: int = 0
    undecodable: int = 0
    created: bool = False  # replay: the topic was created for it
    files: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        extra = [f"{n} {what}" for n, what in ((self.tombstones, "tombstones"),
                                              (self.undecodable, "undecodable")) if n]
        return (f"{self.topic}: {self.records} record{'s' * (self.records != 1)} in "
                f"{self.partitions} partition{'s' * (self.partitions != 1)}"
                + (f" ({', '.join(extra)})" if extra else ""))


# --- schema ---------------------------------------------------------------------------------


def _topic_schema(role: str) -> dict[str, Any]:
    """The topic's .avsc as JSON (the parsed form cannot be nested into another schema), times
    as plain longs (see the module doc)."""
    raw = json.loads((avro.SCHEMA_DIR / avro.SCHEMA_FILES[role]).read_text(encoding="utf-8"))
    return avro._strip_logical(raw)


def container_schema(role: str) -> dict[str, Any]:
    """The schema of a recording file of a topic with this role."""
    return {
        "type": "record",
        "name": "RecordedMessage",
        "namespace": "profilestream.recording",
        "doc": "One Kafka message of a recorded topic partition, in offset order.",
        "fields": [
            {"name": "offset", "type": "long", "doc": "the message's offset in the recorded topic"},
            {"name": "timestamp", "type": "long", "doc": "the original Kafka timestamp, epoch ms"},
            {"name": "key", "type": ["null", "bytes"], "default": None},
            {"name": "value", "type": ["null", _topic_schema(role)], "default": None,
             "doc": "the decoded value; null for a tombstone or an undecodable value"},
            {"name": "raw", "type": ["null", "bytes"], "default": None,
             "doc": "the original bytes of a value that does not decode with the topic's schema"},
        ],
    }


# --- record ---------------------------------------------------------------------------------


def _progress(total: int | None, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit=" records", unit_scale=True, file=sys.stderr,
                disable=not sys.stderr.isatty(), leave=False)


def _decoded(role: str, value: bytes) -> dict[str, Any] | None:
    try:
        return avro.decode(role, value)
    except avro.Rejected:
        return None


def record(config, topics: Iterable[str], out: str | Path) -> list[TopicCount]:
    """Record `topics` (configured names or roles) from the beginning to their current end into
    the directory `out`, which must be new or empty. Returns the counts per topic."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RecordingError(f"{out} exists and is not an empty directory (record into a new one)")
    roles = list(dict.fromkeys(role_of(config, t) for t in topics))
    if not roles:
        raise RecordingError("no topics to record")
    spans = {role: end_offsets(config, config.topics.name(role)) for role in roles}  # checks they exist
    total = sum(end - low for ends in spans.values() for low, end in ends.values())
    out.mkdir(parents=True, exist_ok=True)
    counts = []
    with _progress(total, "recording") as bar:
        for role in roles:
            topic = config.topics.name(role)
            count = TopicCount(topic, role, len(spans[role]))
            schema = container_schema(role)
            handles, writers, per_partition = {}, {}, {}
            try:
                for p in sorted(spans[role]):
                    name = f"{topic}-{p}.avro"
                    handles[p] = open(out / name, "wb")
                    marker = hashlib.md5(f"{topic}/{p}".encode()).digest()  # same input, same file
                    writers[p] = Writer(handles[p], schema, codec=CODEC, sync_marker=marker)
                    per_partition[p] = {"partition": p, "file": name, "records": 0,
                                        "first_offset": None, "last_offset": None}
                for m in read_topic(config, topic):
                    value = raw = None
                    if m.value is None:
                        count.tombstones += 1
                    else:
                        value = _decoded(role, m.value)
                        if value is None:
                            raw = m.value
                            count.undecodable += 1
                    writers[m.partition].write({"offset": m.offset, "timestamp": m.timestamp,
                                                "key": m.key, "value": value, "raw": raw})
                    entry = per_partition[m.partition]
                    entry["records"] += 1
                    if entry["first_offset"] is None:
                        entry["first_offset"] = m.offset
                    entry["last_offset"] = m.offset
                    count.records += 1
                    bar.update()
                for w in writers.values():
                    w.flush()
            finally:
                for fh in handles.values():
                    fh.close()
            count.files = [per_partition[p] for p in sorted(per_partition)]
            counts.append(count)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "topics": [{"topic": c.topic, "role": c.role, "partitions": c.partitions, "records": c.records,
                    "tombstones": c.tombstones, "undecodable": c.undecodable, "files": c.files}
                   for c in counts],
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return counts


# --- replay ---------------------------------------------------------------------------------


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise RecordingError(f"{directory} is not a recording (no {MANIFEST}; make one with `profilestream record`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RecordingError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise RecordingError(f"{path}: not a {FORMAT} version {VERSION} manifest")
    return manifest


def messages(directory: str | Path, entry: dict[str, Any], partition: dict[str, Any]):
    """`(key, value bytes or None, timestamp ms)` of one recorded partition, in offset order."""
    role = entry["role"]
    with open(Path(directory) / partition["file"], "rb") as fh:
        for rec in avro_reader(fh):
            if rec["raw"] is not None:
                value = rec["raw"]
            elif rec["value"] is not None:
                value = avro.encode(role, rec["value"])
            else:
                value = None
            yield rec["key"], value, rec["timestamp"]


def _target(config, entry: dict[str, Any]) -> str:
    role = entry.get("role")
    return config.topics.name(role) if role else entry["topic"]


def _prepare_topics(config, wanted: dict[str, tuple[str | None, int]]) -> set[str]:
    """Create the missing ones of `{topic: (role, partitions)}`; an existing one needs at least
    the recorded partitions. Returns the names created."""
    timeout = config.run.connect_timeout / 1000
    admin = AdminClient(client_config(config))
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise BrokerError(f"no Kafka broker answered within {timeout:.0f}s: {exc.args[0].str()}") from None
    for name, (_, partitions) in wanted.items():
        if name in existing and len(existing[name].partitions) < partitions:
            raise BrokerError(f'topic "{name}" has {len(existing[name].partitions)} partitions, '
                              f"the recording needs {partitions}")
    missing = [new_topic(name, role, partitions) for name, (role, partitions) in wanted.items()
               if name not in existing]
    return set(create_missing(admin, missing, timeout))


def replay(config, directory: str | Path) -> list[TopicCount]:
    """Produce a recording back into the configured broker (see the module doc); returns the
    counts per topic. Any delivery error raises `BrokerError`."""
    manifest = read_manifest(directory)
    entries = manifest["topics"]
    for entry in entries:
        if entry.get("role") is not None and entry["role"] not in avro.SCHEMA_FILES:
            raise RecordingError(f"unknown topic role {entry['role']!r} in the manifest")
    wanted = {_target(config, e): (e.get("role"), e["partitions"]) for e in entries}
    created = _prepare_topics(config, wanted)
    producer = Producer({"enable.idempotence": True, "allow.auto.create.topics": False,
                         "message.max.bytes": MAX_MESSAGE_BYTES, **client_config(config)})
    errors: list[KafkaError] = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(err)

    total = sum(e["records"] for e in entries)
    counts = []
    sent = 0
    with _progress(total, "replaying") as bar:
        for entry in entries:
            topic = _target(config, entry)
            count = TopicCount(topic, entry.get("role"), entry["partitions"], created=topic in created)
            for partition in entry["files"]:
                for key, value, ts in messages(directory, entry, partition):
                    while True:
                        try:
                            producer.produce(topic, value, key, partition=partition["partition"],
                                             timestamp=ts, on_delivery=delivered)
                            break
                        except BufferError:  # local queue full: let deliveries drain
                            producer.poll(0.1)
                    producer.poll(0)
                    count.records += 1
                    count.tombstones += value is None
                    sent += 1
                    bar.update()
                    if errors:
                        break
            count.undecodable = entry.get("undecodable", 0)
            counts.append(count)
        left = producer.flush(config.run.connect_timeout / 1000 + 30)
    if errors or left:
        why = errors[0].str() if errors else f"{left} not acknowledged in time"
        raise BrokerError(f"{len(errors) + left} of {sent} replayed records were not delivered: {why}")
    return counts
