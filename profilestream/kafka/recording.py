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

A recording holds personal data, so `record` makes its directory 0700 and its files 0600. A
recording is also input from elsewhere, so `replay` checks all of it before it produces anything
(issue 11): the manifest's shape (a message naming the key, not a `KeyError`), every partition
file inside the recording's directory once resolved (no absolute names, no `..`, no symbolic
link out of it: a manifest must not make `replay` read and publish any file the user can read),
and every file an Avro container of recorded messages whose blocks hold the records the manifest
counts (a truncated or damaged file is found before the first record is sent, not half-way).
Each problem is a `RecordingError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Producer
from fastavro import block_reader
from fastavro import reader as avro_reader
from fastavro.write import Writer
from tqdm import tqdm

from profilestream.codec import avro, registry
from profilestream.kafka.clients import (
    BrokerError,
    admin_client,
    client_config,
    create_missing,
    end_offsets,
    metadata,
    new_topic,
    quiet,
    read_topic,
    role_of,
)
from profilestream.store import make_private, private_files

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
        extra = [f"{n} {what}" for n, what in ((self.tombstones, "tombstones"), (self.undecodable, "undecodable")) if n]
        return (
            f"{self.topic}: {self.records} record{'s' * (self.records != 1)} in "
            f"{self.partitions} partition{'s' * (self.partitions != 1)}" + (f" ({', '.join(extra)})" if extra else "")
        )


# --- schema ---------------------------------------------------------------------------------


def _topic_schema(role: str) -> dict[str, Any]:
    """The topic's .avsc as JSON (the parsed form cannot be nested into another schema), times
    as plain longs (see the module doc)."""
    raw = json.loads((avro.SCHEMAS / avro.SCHEMA_FILES[role]).read_text(encoding="utf-8"))
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
            {
                "name": "value",
                "type": ["null", _topic_schema(role)],
                "default": None,
                "doc": "the decoded value; null for a tombstone or an undecodable value",
            },
            {
                "name": "raw",
                "type": ["null", "bytes"],
                "default": None,
                "doc": "the original bytes of a value that does not decode with the topic's schema",
            },
        ],
    }


# --- record ---------------------------------------------------------------------------------


def _progress(total: int | None, desc: str) -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        unit=" records",
        unit_scale=True,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        leave=False,
    )


def _decoded(role: str, value: bytes, decode: Callable[[str, bytes], dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return decode(role, value)
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
    with private_files():  # personal data: the directory 0700, the files 0600
        try:
            out.mkdir(parents=True, exist_ok=True)
            counts = _record(config, roles, spans, out)
        except OSError as exc:
            raise RecordingError(f"--out {out}: cannot write the recording: {exc.strerror or exc}") from None
        finally:
            if out.is_dir():
                make_private(out)
    return counts


def _record(config, roles: list[str], spans: dict, out: Path) -> list[TopicCount]:
    total = sum(end - low for ends in spans.values() for low, end in ends.values())
    decode = registry.decoder(config)  # framed values too, with a registry: recorded decoded
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
                    handles[p] = open(out / name, "wb")  # noqa: SIM115 (closed in the finally below)
                    marker = hashlib.md5(f"{topic}/{p}".encode()).digest()  # same input, same file
                    writers[p] = Writer(handles[p], schema, codec=CODEC, sync_marker=marker)
                    per_partition[p] = {
                        "partition": p,
                        "file": name,
                        "records": 0,
                        "first_offset": None,
                        "last_offset": None,
                    }
                for m in read_topic(config, topic):
                    value = raw = None
                    if m.value is None:
                        count.tombstones += 1
                    else:
                        value = _decoded(role, m.value, decode)
                        if value is None:
                            raw = m.value
                            count.undecodable += 1
                    writers[m.partition].write(
                        {"offset": m.offset, "timestamp": m.timestamp, "key": m.key, "value": value, "raw": raw}
                    )
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
        "topics": [
            {
                "topic": c.topic,
                "role": c.role,
                "partitions": c.partitions,
                "records": c.records,
                "tombstones": c.tombstones,
                "undecodable": c.undecodable,
                "files": c.files,
            }
            for c in counts
        ],
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return counts


# --- replay ---------------------------------------------------------------------------------


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest, checked: its shape, and every partition file inside `directory`, readable
    as a recording file of its topic with the records the manifest counts. Each entry of
    `topics[].files[]` gets `path`, the file resolved."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise RecordingError(f"{directory} is not a recording (no {MANIFEST}; make one with `profilestream record`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RecordingError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise RecordingError(f"{path}: not a {FORMAT} version {VERSION} manifest")
    root = Path(directory).resolve()
    for t, entry in enumerate(_field(path, manifest, "topics", list)):
        where = f"topics[{t}]"
        entry = _field(path, {where: entry}, where, dict)
        role = _field(path, entry, "role", str, where)  # what the values are encoded with, and where they go
        if role not in avro.SCHEMA_FILES:
            raise RecordingError(f"{path}: {where}.role: unknown topic role {role!r}")
        _field(path, entry, "topic", str, where)
        count = _field(path, entry, "partitions", int, where)
        if count < 1:
            raise RecordingError(f"{path}: {where}.partitions: must be 1 or more, got {count}")
        entry.setdefault("undecodable", 0)
        seen: set[int] = set()
        files = _field(path, entry, "files", list, where)
        for f, partition in enumerate(files):
            at = f"{where}.files[{f}]"
            partition = _field(path, {at: partition}, at, dict)
            number = _field(path, partition, "partition", int, at)
            if not 0 <= number < count or number in seen:
                raise RecordingError(
                    f"{path}: {at}.partition: {number} is not one of the topic's {count} partitions, or is there twice"
                )
            seen.add(number)
            records = _field(path, partition, "records", int, at)
            partition["path"] = _inside(path, root, Path(directory), _field(path, partition, "file", str, at))
            _check_file(partition["path"], Path(directory) / partition["file"], role, records)
        entry["records"] = sum(p["records"] for p in files)
    return manifest


_JSON_TYPES = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


def _field(path: Path, table: dict, key: str, kind: type, where: str = ""):
    """`table[key]`, of type `kind`; otherwise a `RecordingError` naming the manifest and the key."""
    name = f"{where}.{key}" if where else key
    if key not in table:
        raise RecordingError(f"{path}: {name} is missing")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise RecordingError(f"{path}: {name} must be {_JSON_TYPES[kind]}, got {json.dumps(value)[:60]}")
    return value


def _inside(manifest: Path, root: Path, directory: Path, name: str) -> Path:
    """The partition file `name`, resolved (symbolic links too) and inside the recording."""
    given = directory / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise RecordingError(
            f"{manifest}: the partition file {name!r} is outside the recording "
            f"{directory} (files must be named relative to it, without ..)"
        )
    try:
        resolved = given.resolve(strict=True)
    except FileNotFoundError:
        raise RecordingError(f"{given}: no such file (named in {manifest})") from None
    except (OSError, RuntimeError) as exc:  # a symbolic link loop
        raise RecordingError(f"{given}: cannot resolve it ({exc})") from None
    if not resolved.is_relative_to(root):
        raise RecordingError(
            f"{manifest}: the partition file {name!r} is outside the recording {directory} (it leads to {resolved})"
        )
    if not resolved.is_file():
        raise RecordingError(f"{given}: not a regular file (named in {manifest})")
    return resolved


_FIELDS = {"offset", "timestamp", "key", "value", "raw"}


def _check_file(path: Path, shown: Path, role: str | None, records: int) -> None:
    """A recording file of `role` holding `records` records: its header, and its blocks read
    (decompressed, not decoded: a truncated or damaged file shows there, cheaply)."""
    try:
        with open(path, "rb") as fh:
            blocks = block_reader(fh)
            names = (
                {f.get("name") for f in blocks.writer_schema.get("fields", ())}
                if isinstance(blocks.writer_schema, dict)
                else set()
            )
            if not names >= _FIELDS:
                raise RecordingError(
                    f"{shown}: not a recording file (its records lack {', '.join(sorted(_FIELDS - names))})"
                )
            found = sum(block.num_records for block in blocks)
    except RecordingError:
        raise
    except KeyError as exc:  # fastavro: a header without `avro.schema` (or `avro.codec`)
        raise RecordingError(f"{shown}: not a recording file (its header has no {exc.args[0]})") from None
    except OSError as exc:
        raise RecordingError(f"{shown}: cannot read it ({exc.strerror or exc})") from None
    except Exception as exc:  # fastavro: not Avro, truncated, a damaged block or sync marker
        raise RecordingError(
            f"{shown}: not a readable Avro container file, or truncated ({type(exc).__name__}: {exc})"
        ) from None
    if found != records:
        raise RecordingError(f"{shown}: holds {found} records, the manifest counts {records} (truncated?)")


def messages(
    directory: str | Path,
    entry: dict[str, Any],
    partition: dict[str, Any],
    encode: Callable[[str, dict[str, Any]], bytes] = avro.encode,
):
    """`(key, value bytes or None, timestamp ms)` of one recorded partition, in offset order.
    The file is `partition["path"]` as `read_manifest` checked it; `encode` writes the decoded
    values (`registry.encoder`'s: framed when a Schema Registry is configured)."""
    role = entry.get("role")
    shown = Path(directory) / partition["file"]
    n = 0
    try:
        with open(partition["path"], "rb") as fh:
            for rec in avro_reader(fh):
                assert isinstance(rec, dict)  # the container schema is a record
                if rec["raw"] is not None:
                    value = rec["raw"]
                elif rec["value"] is not None:
                    value = encode(role, rec["value"])  # type: ignore[arg-type]  # a value has a role
                else:
                    value = None
                n += 1
                yield rec["key"], value, rec["timestamp"]
    except Exception as exc:  # fastavro or the encoder: damage inside a block
        raise RecordingError(
            f"{shown}: record {n + 1} cannot be read ({type(exc).__name__}: {exc}); "
            f"{n} records of this file were replayed"
        ) from None


def _target(config, entry: dict[str, Any]) -> str:
    role = entry.get("role")
    return config.topics.name(role) if role else entry["topic"]


def _prepare_topics(config, wanted: dict[str, tuple[str | None, int]]) -> set[str]:
    """Create the missing ones of `{topic: (role, partitions)}`; an existing one needs at least
    the recorded partitions. Returns the names created."""
    timeout = config.run.connect_timeout / 1000
    admin = admin_client(config)
    existing = metadata(config, admin).topics
    for name, (_, partitions) in wanted.items():
        if name in existing and len(existing[name].partitions) < partitions:
            raise BrokerError(
                f'topic "{name}" has {len(existing[name].partitions)} partitions, the recording needs {partitions}'
            )
    factor = config.topics.replication_factor
    missing = [
        new_topic(name, role, partitions, factor) for name, (role, partitions) in wanted.items() if name not in existing
    ]
    return set(create_missing(admin, missing, timeout))


def replay(config, directory: str | Path) -> list[TopicCount]:
    """Produce a recording back into the configured broker (see the module doc); returns the
    counts per topic. Any delivery error raises `BrokerError`."""
    manifest = read_manifest(directory)
    entries = manifest["topics"]
    wanted = {_target(config, e): (e.get("role"), e["partitions"]) for e in entries}
    created = _prepare_topics(config, wanted)
    producer = Producer(
        quiet(
            {
                "enable.idempotence": True,
                "allow.auto.create.topics": False,
                "message.max.bytes": MAX_MESSAGE_BYTES,
                **client_config(config),
            }
        )
    )
    errors: list[KafkaError] = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(err)

    total = sum(e["records"] for e in entries)
    encode = registry.encoder(config)  # framed when a Schema Registry is configured
    counts = []
    sent = 0
    with _progress(total, "replaying") as bar:
        for entry in entries:
            topic = _target(config, entry)
            count = TopicCount(topic, entry.get("role"), entry["partitions"], created=topic in created)
            for partition in entry["files"]:
                for key, value, ts in messages(directory, entry, partition, encode):
                    while True:
                        try:
                            producer.produce(
                                topic, value, key, partition=partition["partition"], timestamp=ts, on_delivery=delivered
                            )
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


__all__ = [
    "CODEC",
    "FORMAT",
    "MANIFEST",
    "MAX_MESSAGE_BYTES",
    "VERSION",
    "RecordingError",
    "TopicCount",
    "container_schema",
    "messages",
    "read_manifest",
    "record",
    "replay",
]
