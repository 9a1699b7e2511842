"""The Confluent wire format: values framed for a Schema Registry (`[schema_registry] url`).

A framed value is the magic byte 0, the schema's id in the registry (4 bytes, big-endian) and
the Avro bytes; the schema of a topic's values is registered under the subject `<topic>-value`
(TopicNameStrategy), which is what Kafka Connect, ksqlDB and every registry-aware client expect.
With `url` empty nothing here is used and values stay raw schemaless Avro (`avro.py`).

Telling framed from raw, on inputs (both are accepted): with a registry configured, a value is
framed when it has at least 5 bytes and its first byte is 0; every other value is raw. This never
takes a raw record the product would accept for a framed one: both input schemas start with a
required id string (`event_id`, `change_id`) that must not be blank, and a raw record whose first
byte is 0 starts with an empty string (length 0), which is dead-lettered whatever follows. A framed
value whose id the registry does not know (or whose schema cannot be resolved to the topic's) is
dead-lettered with the reason; it is never read again as raw. Without a registry every value is
read as raw, and a refused value that looks framed says so in its reason (`avro.framed_hint`).

Reading a framed input: the writer's schema is fetched by id once and kept (`Wire.writer`). A
writer schema with the layout of the topic's own (the same Parsing Canonical Form: what our own
`produce` writes, or a copy of our schema registered elsewhere) is read by the fast decoders
(`compiled.py`) after the 5-byte header; any other is read by Avro schema resolution to the
topic's schema, so a producer that added an optional field is read, not dead-lettered.

Why one `Wire` per process, made from the URL and the topic names and connecting only when first
used: the flow is built in every process of a cluster and by `describe`, which must connect to
nothing, and the client's `mock://` registry (the tests') lives in its client object, so every
user in a process must share one client (`client`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from profilestream.codec import avro
from profilestream.config import ConfigError
from profilestream.domain.events import Click, CrmChange
from profilestream.domain.roles import TOPIC_ROLES
from profilestream.domain.rules import Rules

MAGIC = 0
HEADER_BYTES = 5  # the magic byte and the 4-byte schema id
KEY = "schema_registry.url"
TIMEOUT_S = 10  # one request to the registry; a registry that does not answer in that time is down
UNKNOWN_FOR_S = 60.0  # an id the registry did not know is not asked for again this long
UNKNOWN_KEPT = 10_000  # ids kept as unknown at most (garbage values carry any id)

__all__ = [
    "HEADER_BYTES",
    "MAGIC",
    "RegistryUnavailable",
    "Wire",
    "client",
    "decoder",
    "encoder",
    "frame",
    "schema_id",
    "subject",
    "wire_for",
]


class RegistryUnavailable(ConfigError):
    """The registry at `schema_registry.url` did not answer, or refused a schema, at start."""

    def __init__(self, message: str) -> None:
        super().__init__(KEY, message)


def frame(schema_id: int, payload: bytes) -> bytes:
    """A value in the Confluent wire format.

    >>> frame(7, b"ab")
    b'\\x00\\x00\\x00\\x00\\x07ab'
    """
    return bytes((MAGIC,)) + schema_id.to_bytes(4, "big") + payload


def schema_id(data: bytes | None) -> int | None:
    """The schema id of a framed value, None for a value that is not framed (see the module doc).

    >>> schema_id(frame(7, b"ab")), schema_id(b"\\x02ab"), schema_id(b"\\x00ab")
    (7, None, None)
    """
    if data is None or len(data) < HEADER_BYTES or data[0] != MAGIC:
        return None
    return int.from_bytes(data[1:HEADER_BYTES], "big")


def subject(topic: str) -> str:
    """The subject a topic's value schema is registered under (TopicNameStrategy)."""
    return f"{topic}-value"


@functools.cache
def client(url: str) -> Any:
    """The process's one registry client for `url` (`mock://...`: the client's in-memory registry)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    try:
        return SchemaRegistryClient.new_client({"url": url, "timeout": TIMEOUT_S})
    except ValueError as exc:  # the client's own check of the URL
        raise RegistryUnavailable(f"{url!r} is not a registry URL ({exc}): http(s)://host:port") from None


def _why(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _not_found(exc: BaseException) -> bool:
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    return isinstance(exc, SchemaRegistryError) and exc.http_status_code == 404


@dataclass
class _Unknown:
    """An id the registry did not know, or whose schema is not one this role can read: why, until when."""

    reason: str
    until: float


class Wire:
    """The wire format for one registry and one set of topic names, in one process.

    `register` (at start) registers the schema of every topic the process writes; `encode` frames
    a record with its topic's id; `decode_input` and `decode` read raw and framed values alike.
    Pickles as its URL and topic names (a cluster's processes make their own connection)."""

    def __init__(self, url: str, topics: dict[str, str]) -> None:
        self.url = url
        self.topics = dict(topics)  # role -> topic name
        self._ids: dict[str, int] = {}
        self._writers: dict[tuple[str, int], avro.Writer] = {}
        self._unknown: dict[tuple[str, int], _Unknown] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "topics": self.topics}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["topics"])  # type: ignore[misc]

    # --- writing ---------------------------------------------------------------------------

    def register(self, roles: tuple[str, ...] = TOPIC_ROLES) -> dict[str, int]:
        """Register the schema of each role's topic under `<topic>-value` (idempotent: the same
        schema gets the id it already has) and keep the ids; `RegistryUnavailable` names the
        URL and what went wrong (exit 2 at start)."""
        from confluent_kafka.schema_registry import Schema

        registry = client(self.url)
        with self._lock:
            for role in roles:
                if role in self._ids:
                    continue
                name = subject(self.topics[role])
                try:
                    self._ids[role] = registry.register_schema(name, Schema(avro.schema_text(role), "AVRO"))
                except Exception as exc:  # no answer (httpx's errors), a refusal (SchemaRegistryError)
                    raise RegistryUnavailable(
                        f"the registry at {self.url} did not register the {role} schema under subject "
                        f"{name!r} ({_why(exc)})"
                    ) from None
            return {role: self._ids[role] for role in roles}

    def id_of(self, role: str) -> int:
        """The id of the role's schema, registered on first use if `register` was not called."""
        found = self._ids.get(role)
        return found if found is not None else self.register((role,))[role]

    def encode(self, role: str, record: dict[str, Any]) -> bytes:
        """`avro.encode`, framed with the id of the role's schema."""
        return frame(self.id_of(role), avro.encode(role, record))

    # --- reading ---------------------------------------------------------------------------

    def writer(self, role: str, found: int) -> avro.Writer:
        """The writer schema of id `found`, for reading `role`'s values; `Rejected` naming the id
        when the registry does not know it, cannot be asked, or holds a schema that is not Avro."""
        key = (role, found)
        known = self._writers.get(key)
        if known is not None:
            return known
        unknown = self._unknown.get(key)
        if unknown is not None and time.monotonic() < unknown.until:
            raise avro.Rejected("value", unknown.reason)
        try:
            schema = client(self.url).get_schema(found)
            if schema.schema_type not in (None, "AVRO"):
                raise ValueError(f"a {schema.schema_type} schema, not Avro")
            writer = avro.writer_schema(role, schema.schema_str)
        except Exception as exc:
            if _not_found(exc):
                reason = f"schema id {found} (Confluent wire format) is not in the registry at {self.url}"
            elif isinstance(exc, ValueError):
                reason = f"schema id {found} in the registry at {self.url} is {exc}"
            else:  # no answer: not kept, the next record asks again
                reason = f"the registry at {self.url} did not answer for schema id {found} ({_why(exc)})"
                raise avro.Rejected("value", reason) from None
            if len(self._unknown) >= UNKNOWN_KEPT:
                self._unknown.clear()
            self._unknown[key] = _Unknown(reason, time.monotonic() + UNKNOWN_FOR_S)
            raise avro.Rejected("value", reason) from None
        self._writers[key] = writer
        return writer

    def decode_input(self, role: str, data: bytes | None, rules: Rules, now_ms: int | None = None) -> Click | CrmChange:
        """`avro.decode_input` of a raw or framed value (the module doc says which is which).
        Written out rather than through `schema_id`: it is on the hot path, once per record."""
        if data is None or len(data) < HEADER_BYTES or data[0] != MAGIC:
            return avro.decode_input(role, data, rules, now_ms)
        if len(data) > avro.MAX_VALUE_BYTES:  # the whole value, before anything is asked of the registry
            avro.check_size(data)
        found = int.from_bytes(data[1:HEADER_BYTES], "big")
        writer = self._writers.get((role, found)) or self.writer(role, found)
        payload = data[HEADER_BYTES:]
        try:
            return avro.decode_input(role, payload, rules, now_ms, writer=writer.wire)
        except avro.Rejected as rejected:
            raise avro.Rejected(rejected.field, f"{rejected.reason} (framed, schema id {found})") from None

    def decode(self, role: str, data: bytes) -> dict[str, Any]:
        """`avro.decode` of a raw or framed value (`consume`: outputs and inputs alike)."""
        found = schema_id(data)
        if found is None:
            return avro.decode(role, data)
        writer = self.writer(role, found)
        return avro.decode(role, data[HEADER_BYTES:], writer=writer.wire)


@functools.cache
def _wire(url: str, topics: tuple[tuple[str, str], ...]) -> Wire:
    return Wire(url, dict(topics))


def wire_for(config: Any) -> Wire | None:
    """The process's `Wire` for the configuration, None when `schema_registry.url` is empty (raw
    schemaless Avro). Connects to nothing: `Wire.register` does, at start."""
    url = config.schema_registry.url.strip()
    if not url:
        return None
    return _wire(url, tuple(sorted(config.topics.names().items())))


def encoder(config: Any) -> Callable[[str, dict[str, Any]], bytes]:
    """What every writer of values calls for a record's bytes: `avro.encode`, or with a registry
    configured `Wire.encode` (framed)."""
    wire = wire_for(config)
    return avro.encode if wire is None else wire.encode


def decoder(config: Any) -> Callable[[str, bytes], dict[str, Any]]:
    """What every reader of values calls for a record: `avro.decode`, or with a registry
    configured `Wire.decode` (framed and raw values alike)."""
    wire = wire_for(config)
    return avro.decode if wire is None else wire.decode
