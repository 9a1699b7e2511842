"""The codec: JSON <-> record <-> Avro bytes, in one place for every topic.

A *record* is a plain dict with the topic's fields, times as epoch milliseconds (int). The bytes
here are raw schemaless Avro (fastavro schemaless_writer/reader), written and read with the schemas
in the repository's `schemas/` directory. With a Schema Registry configured, `registry.py` frames
them in the Confluent wire format and hands the bytes after the header to the functions here,
with the writer's schema when it is not the topic's own (`writer`: read by Avro schema resolution).

Schemas are parsed once and cached. Each has two parsed forms: the full one (with
`timestamp-millis`, used to write, so ints and datetimes are both accepted) and a *wire* twin
without logical types (used to read, so times come back as plain ints without a datetime round
trip). The bytes of the two are the same.

`decode_input` is the dataflow's hot path: size check, then a decoder written for the input
schema that reads the bytes straight into a `Click` / `CrmChange`; whatever it does not accept
plainly takes the general path (compiled reader or fastavro, then `to_event`), which decides.
The compiled readers, writers and direct decoders are in `compiled.py`: speed only, never meaning.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate

from profilestream.codec import compiled
from profilestream.codec.times import EPOCH, format_time, parse_time  # re-exported: `avro.parse_time` is public
from profilestream.codec.validation import (
    Rejected,
    absorb_email,
    finite,
    hash_email,
    now,
    to_event,
)
from profilestream.domain.events import Click, CrmChange
from profilestream.domain.roles import (
    CLICKSTREAM,
    CRM_CHANGES,
    CRM_FEED,
    DEAD_LETTERS,
    INPUT_ROLES,
    MERGES,
    PROFILES,
    TOPIC_ROLES,
    TRIGGERS,
)
from profilestream.domain.rules import Rules
from profilestream.ops.metrics import COUNTERS

SCHEMAS = resources.files("profilestream.schemas")  # the .avsc files: package data (pyproject.toml)
SCHEMA_FILES = {
    CLICKSTREAM: "clickstream.avsc",
    CRM_CHANGES: "crm-changes.avsc",
    PROFILES: "profiles.avsc",
    MERGES: "profile-merges.avsc",
    TRIGGERS: "triggers.avsc",
    CRM_FEED: "crm-feed.avsc",
    DEAD_LETTERS: "dead-letters.avsc",
}
ROLES = TOPIC_ROLES  # one schema per role (SCHEMA_FILES, in the same order)
MAX_VALUE_BYTES = 1 << 20  # 1 MiB: larger input values are dead-lettered unread

_MS = timedelta(milliseconds=1)
_TIME = "timestamp-millis"


@dataclass(frozen=True)
class _Schema:
    raw: dict[str, Any]  # the .avsc as JSON, walked by from_json / to_json
    full: dict[str, Any]  # parsed, logical types kept: for writing
    wire: dict[str, Any]  # parsed, logical types stripped: for reading ints


def _strip_logical(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical(v) for v in node]
    return node


@functools.cache
def _schema(role: str) -> _Schema:
    if role not in SCHEMA_FILES:
        raise KeyError(f"unknown topic role {role!r} (known: {', '.join(ROLES)})")
    raw = json.loads((SCHEMAS / SCHEMA_FILES[role]).read_text(encoding="utf-8"))
    full: dict[str, Any] = parse_schema(raw)  # type: ignore[assignment]  # a record schema parses to a dict
    wire: dict[str, Any] = parse_schema(_strip_logical(raw))  # type: ignore[assignment]
    return _Schema(raw, full, wire)


def schema_for(role: str) -> dict[str, Any]:
    """The parsed schema of a topic role (logical types kept), e.g. for Avro container files."""
    return _schema(role).full


def schema_text(role: str) -> str:
    """The `.avsc` of a topic role as JSON text: what is registered in a Schema Registry."""
    return json.dumps(_schema(role).raw, separators=(",", ":"))


@dataclass(frozen=True)
class Writer:
    """A writer's schema for reading a role's bytes (from a Schema Registry): `same` when its
    layout is the role's own (the same Parsing Canonical Form: the same bytes mean the same
    record, so the fast decoders read them), otherwise `wire` is the parsed schema that
    fastavro resolves against the role's (an added optional field is skipped, a removed field
    with a default takes it)."""

    same: bool
    wire: dict[str, Any] | None


def writer_schema(role: str, text: str) -> Writer:
    """The `Writer` of a schema given as Avro JSON text; `ValueError` if it is not one."""
    try:
        raw = json.loads(text)
        canonical = to_parsing_canonical_form(raw)
    except Exception as exc:  # not JSON, not an Avro schema
        raise ValueError(f"not an Avro schema ({type(exc).__name__}: {exc})") from None
    if canonical == to_parsing_canonical_form(_schema(role).raw):
        return Writer(True, None)
    try:
        wire: dict[str, Any] = parse_schema(_strip_logical(raw))  # type: ignore[assignment]
    except Exception as exc:
        raise ValueError(f"not an Avro schema ({type(exc).__name__}: {exc})") from None
    return Writer(False, wire)


# --- bytes ---------------------------------------------------------------------------------


def encode(role: str, record: dict[str, Any]) -> bytes:
    """Schemaless Avro bytes of a record. For an input topic a clear `email` is hashed into
    `customer_key` first and never written. A record that does not fit raises fastavro's error.

    Records of plain values (what the dataflow emits) go through a writer compiled from the schema
    (see `_compile_writer`); anything else (a datetime for a time, a missing field left to its
    default, a value of the wrong type) is written, or refused, by fastavro as before, after
    fastavro's validation: its writer alone would write an int beyond 32 bits (a cart quantity
    that overflowed) as a longer varint, bytes that no other Avro reader takes."""
    if role in INPUT_ROLES and record.get("email") is not None:
        record = absorb_email(dict(record))
    try:
        return _fast_writer(role)(record)
    except compiled.WRITE_DECLINED:  # unusual: fastavro writes it or says what is wrong
        COUNTERS.codec_fallback(role, "writer")
    schema = _schema(role).full
    validate(record, schema, raise_errors=True)
    buf = io.BytesIO()
    schemaless_writer(buf, schema, record)
    return buf.getvalue()


# --- the hot paths (profilestream/codec/compiled.py) -------------------------------------------


@functools.cache
def _fast_writer(role: str):
    return compiled.writer(_schema(role).wire)


@functools.cache
def _fast_reader(role: str):
    return compiled.reader(_schema(role).wire)


_FAST_ROLES = frozenset(INPUT_ROLES)


def _read(
    role: str, data: bytes, errors: str, rules: Rules | None = None, writer: dict[str, Any] | None = None
) -> dict[str, Any]:
    if writer is not None:  # another writer's schema: fastavro resolves it against the role's
        return _read_fastavro(role, data, errors, rules, writer)
    if role in _FAST_ROLES and data is not None:
        try:
            record = _fast_reader(role)(data, errors)
        except compiled.READ_DECLINED:  # unusual or malformed: fastavro below reads it or says what is wrong
            COUNTERS.codec_fallback(role, "reader")
        else:
            absorb_email(record, rules)
            return record
    return _read_fastavro(role, data, errors, rules)


# fastavro names the file object it read from (`cannot read double from <_io.BytesIO object at
# 0x7f...>`): a memory address, different at every call, has no place in a dead letter's reason.
_AT_ADDRESS = re.compile(r" from <[\w.]+ object at 0x[0-9a-fA-F]+>")


def _read_fastavro(
    role: str, data: bytes, errors: str, rules: Rules | None = None, writer: dict[str, Any] | None = None
) -> dict[str, Any]:
    if data is None:
        raise Rejected("value", "null value (a tombstone) where a record was expected")
    buf = io.BytesIO(data)
    ours = _schema(role).wire
    try:
        record: dict[str, Any] = schemaless_reader(  # type: ignore[assignment]  # a record schema: a dict
            buf, ours if writer is None else writer, None if writer is None else ours, handle_unicode_errors=errors
        )
    except Exception as exc:  # garbage bytes raise EOFError, IndexError, UnicodeDecodeError...
        text = _AT_ADDRESS.sub("", str(exc))
        why = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        raise Rejected("value", f"not a {role} Avro record ({why})") from None
    rest = len(data) - buf.tell()
    if rest:
        raise Rejected("value", f"not a {role} Avro record ({rest} bytes left over: another schema?)")
    if role in INPUT_ROLES:
        absorb_email(record, rules)
    return record


def framed_hint(rejected: Rejected, data: bytes | None) -> Rejected:
    """`rejected`, saying so when the raw value it refuses starts as the Confluent wire format
    does (byte 0, then a schema id: see `registry.py`), for the readers that have no registry
    (the dataflow's dead letters, `consume`): the usual cause of such a value is a
    registry-aware producer and no `schema_registry.url`."""
    if data is None or len(data) < 5 or data[0] != 0:
        return rejected
    schema_id = int.from_bytes(data[1:5], "big")
    return Rejected(
        rejected.field,
        f"{rejected.reason} (the value starts as the Confluent wire format does: byte 0, schema id "
        f"{schema_id}; is schema_registry.url set?)",
    )


def decode(role: str, data: bytes, writer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record in schemaless Avro bytes; times as epoch ms. For an input topic an `email` on
    the wire is hashed into `customer_key` and dropped. Malformed bytes raise `Rejected("value")`.
    `writer`: the schema the bytes were written with, when not the role's own (`Writer.wire`)."""
    return _read(role, data, "strict", writer=writer)


def check_size(data: bytes | None) -> None:
    """`Rejected` for a value too large to be read at all (over `MAX_VALUE_BYTES`)."""
    if data is not None and len(data) > MAX_VALUE_BYTES:
        raise Rejected("value", f"{len(data)} bytes, over the {MAX_VALUE_BYTES}-byte (1 MiB) limit")


def decode_input(
    role: str,
    data: bytes | None,
    rules: Rules,
    now_ms: int | None = None,
    writer: dict[str, Any] | None = None,
) -> Click | CrmChange:
    """Input bytes -> domain event, or `Rejected` (values over 1 MiB are refused unread; invalid
    UTF-8 is read with surrogateescape so that `to_event` can name the field). `now_ms` is the
    wall clock at which the record is read (None: now; the dataflow reads it once per batch): a
    `ts` more than `rules.max_future` after it is rejected. See `validation` for every bound.

    A well-formed, valid record is read by its role's direct decoder (`_DIRECT`); anything else
    (including every record that ends up rejected) by the general path, which alone decides.
    `writer` (the bytes were written with another schema, `Writer.wire`): the general path
    reads them by Avro schema resolution."""
    check_size(data)
    if now_ms is None:
        now_ms = now()
    direct = _DIRECT.get(role) if writer is None else None
    if direct is not None and data is not None:
        try:
            return direct(data, rules, now_ms)
        except compiled.DIRECT_DECLINED:  # not plain, or not valid: the general path reads it, or says what is wrong
            COUNTERS.codec_fallback(role, "direct")
    return to_event(role, _read(role, data, "surrogateescape", rules, writer), rules, now_ms)  # type: ignore[arg-type]


_DIRECT = compiled.direct_decoders({role: _schema(role).wire for role in INPUT_ROLES})


DEAD_LETTER_VALUE_BYTES = 64 * 1024

# --- clear e-mail addresses in dead letters ----------------------------------------------------
#
# A dead letter keeps the original bytes so that a producer's developer can see what was sent; but
# an address in them would be personal data in clear on an output topic. So anything that looks
# like an address (local@domain.tld, or local%40domain.tld as in a URL) is overwritten with `*` of
# the same length (offsets stay), wherever it is: in a decodable record's strings (masked inside
# each string, so the Avro framing stays intact), then in the bytes as a whole (records that do
# not decode: truncated, another schema, plain JSON, invalid UTF-8 around the address), and in the
# dead letter's key and error text.
#
# The domain must have a dot followed by two ASCII letters (a TLD, perhaps run together with the
# next field's bytes), or, plain ASCII, reach the very end of the data (a record cut inside the
# address): an '@' is common in random bytes (one byte in 256), a domain like that after it is not
# (a few false hits in 10 MB of random bytes). The local part is
# whatever address characters or non-ASCII bytes precede the '@' (up to 256 bytes). The regex
# finds only the '@' and its domain, and the local part is walked back from there: a regex with
# the local part in front would backtrack quadratically on a long run of letters with no '@' (a
# 64 KiB value would take seconds); this stays linear.

_LABEL = rb"(?:[A-Za-z0-9-]|[\xc2-\xf4][\x80-\xbf]{1,3})++"
_ADDRESS_AT = re.compile(rb"(?:@|%40)" + _LABEL + rb"(?:\." + _LABEL + rb")*+\.?")  # '@' and a domain
_TLD = re.compile(rb"\.[A-Za-z]{2}")
_CUT = re.compile(rb"(?:@|%40)[A-Za-z0-9.-]{3,}")  # an address cut off by the end of the data, at least
_LOCAL_BYTES = frozenset(  # what a local part is made of (RFC 5322 atext and dots), and non-ASCII bytes
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~.-"
) | frozenset(range(0x80, 0x100))
_LOCAL_MAX = 256  # bytes masked before an '@' at most (an address's local part has at most 64)


def mask_addresses(data: bytes) -> bytes:
    """`data` with every e-mail address in it overwritten by `*` of the same length."""
    if b"@" not in data and b"%40" not in data:
        return data
    out: bytearray | None = None
    floor = 0  # the end of the last masked address: the next one's local part starts after it
    for found in _ADDRESS_AT.finditer(data):
        at, end = found.start(), found.end()
        start, low = at, max(floor, at - _LOCAL_MAX)
        while start > low and data[start - 1] in _LOCAL_BYTES:
            start -= 1
        if start == at:  # nothing before the '@': not an address
            continue
        if (
            not _TLD.search(data, at, end)
            and not (  # no TLD: then only an address cut short by the end
                end == len(data) and _CUT.fullmatch(data, at, end) and data[at - 2 : at].isascii() and at - start >= 2
            )
        ):
            continue
        if out is None:
            out = bytearray(data)
        out[start:end] = b"*" * (end - start)
        floor = end
    return data if out is None else bytes(out)


def _mask_text(text: str) -> str:
    return mask_addresses(text.encode("utf-8", errors="replace")).decode("utf-8", errors="replace")


def _strings(value: Any):
    """Every string in a decoded record, its keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _redact_email(role: str, value: bytes) -> bytes:
    """The original bytes with a clear `email` overwritten by `*` of the same length, and any
    address inside another string too, without touching the Avro framing (when they decode)."""
    try:
        record = schemaless_reader(io.BytesIO(value), _schema(role).wire, None, handle_unicode_errors="surrogateescape")
    except Exception:  # not decodable: `dead_letter` masks the bytes as a whole
        return value
    if not isinstance(record, dict):
        return value
    email = record.get("email")
    if email:
        clear = email.encode("utf-8", errors="surrogateescape")
        value = value.replace(clear, b"*" * len(clear))
    for text in _strings(record):
        raw = text.encode("utf-8", errors="surrogateescape")
        masked = mask_addresses(raw)
        if masked is not raw:
            value = value.replace(raw, masked)
    return value


def dead_letter(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    error: str,
    ts_ms: int,
    role: str | None = None,
) -> dict[str, Any]:
    """The dead-letters record for an input that could not be used (a null value gives "").

    The value is the original bytes, with two exceptions: e-mail addresses are overwritten (a
    clear `email`, and anything that looks like an address, decodable or not: see
    `mask_addresses`), and a value longer than 64 KiB is cut to its first 64 KiB (the error says
    so), since its base64 would not fit in a Kafka record of the default size limit. Addresses in
    the key and the error text are masked likewise."""
    if value is not None and role in INPUT_ROLES and len(value) <= MAX_VALUE_BYTES:
        value = _redact_email(role, value)
    if value is not None and len(value) > DEAD_LETTER_VALUE_BYTES:
        error = f"{error} (value cut to its first {DEAD_LETTER_VALUE_BYTES} of {len(value)} bytes)"
        value = value[:DEAD_LETTER_VALUE_BYTES]
    if value is not None:
        value = mask_addresses(bytes(value))
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": None if key is None else mask_addresses(bytes(key)).decode("utf-8", errors="replace"),
        "value": "" if value is None else base64.b64encode(value).decode("ascii"),
        "error": _mask_text(error),
        "ts": ts_ms,
    }


def encode_fault(role: str, record: Any, exc: BaseException) -> str:
    """Why an output record could not be encoded, naming the first field that breaks its schema
    (e.g. `field 'cart[0].quantity': 4294967296 is out of range for an Avro int`). Only numbers
    out of range are quoted, never a string's content: the record may hold personal data."""
    try:
        _record(_schema(role).raw, record, "", extra_ok=True)
    except Rejected as fault:
        return _mask_text(str(fault))
    except Exception:
        pass
    return f"not encodable as {role} ({type(exc).__name__})"


def output_dead_letter(topic: str, key: str | None, error: str, ts_ms: int) -> dict[str, Any]:
    """The dead-letters record for an output record that could not be written: `topic` and
    `key` are the output's, `value` is empty (the record is not kept: it may hold personal data),
    partition and offset -1 (it was never on a partition)."""
    return dead_letter(
        topic, -1, -1, None if key is None else key.encode("utf-8", errors="replace"), None, error, ts_ms
    )


# --- JSON ----------------------------------------------------------------------------------


def _kind(t: Any) -> str:
    return t if isinstance(t, str) else t["type"] if isinstance(t, dict) else "union"


def _from(t: Any, v: Any, path: str, extra_ok: bool = False) -> Any:
    """Check one JSON value against a schema node; return its record form or raise Rejected.
    `extra_ok`: fields a record has beyond its schema's are left out instead of rejected."""
    if isinstance(t, list):
        if v is None:
            if "null" in t:
                return None
            raise Rejected(path, "required field is null")
        branches = [b for b in t if b != "null"]
        if len(branches) == 1:
            return _from(branches[0], v, path, extra_ok)
        for branch in branches:
            try:
                return _from(branch, v, path, extra_ok)
            except Rejected:
                pass
        raise Rejected(path, f"expected one of {', '.join(map(_kind, branches))}, got {type(v).__name__}")
    kind = _kind(t)
    if v is None:
        raise Rejected(path, "required field is null")
    if kind == "string":
        if not isinstance(v, str):
            raise Rejected(path, f"expected a string, got {type(v).__name__}")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise Rejected(path, "not valid UTF-8 (a lone surrogate)") from None
        return v
    if kind == "boolean":
        if not isinstance(v, bool):
            raise Rejected(path, f"expected true or false, got {type(v).__name__}")
        return v
    if kind in ("int", "long"):
        if isinstance(t, dict) and t.get("logicalType") == _TIME:
            try:
                v = parse_time(v)
            except ValueError as exc:
                raise Rejected(path, str(exc)) from None
        elif isinstance(v, bool) or not isinstance(v, int):
            raise Rejected(path, f"expected an integer, got {type(v).__name__}")
        low, high = compiled.RANGES[kind]
        if not low <= v <= high:
            raise Rejected(path, f"{v} is out of range for an Avro {kind}")
        return v
    if kind in ("double", "float"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Rejected(path, f"expected a number, got {type(v).__name__}")
        return finite(v, path)
    if kind == "enum":
        if v not in t["symbols"]:
            raise Rejected(path, f"{v!r} is not one of {', '.join(t['symbols'])}")
        return v
    if kind == "array":
        if not isinstance(v, list):
            raise Rejected(path, f"expected an array, got {type(v).__name__}")
        return [_from(t["items"], item, f"{path}[{i}]", extra_ok) for i, item in enumerate(v)]
    if kind == "map":
        if not isinstance(v, dict):
            raise Rejected(path, f"expected an object (map), got {type(v).__name__}")
        return {_from("string", k, path): _from(t["values"], x, f"{path}.{k}", extra_ok) for k, x in v.items()}
    if kind == "record":
        return _record(t, v, path, extra_ok)
    raise TypeError(f"schema type {kind!r} at {path or 'top level'} is not supported by from_json")


def _record(t: dict[str, Any], v: Any, path: str, extra_ok: bool = False) -> dict[str, Any]:
    prefix = f"{path}." if path else ""
    if not isinstance(v, dict):
        raise Rejected(path or "value", f"expected an object, got {type(v).__name__}")
    known = {f["name"] for f in t["fields"]}
    for name in v:
        if name not in known and not extra_ok:
            raise Rejected(f"{prefix}{name}", f"unknown field (known: {', '.join(sorted(known))})")
    out = {}
    for f in t["fields"]:
        name = f["name"]
        if name in v:
            out[name] = _from(f["type"], v[name], prefix + name, extra_ok)
        elif "default" in f:
            out[name] = f["default"]
        else:
            raise Rejected(prefix + name, "required field is missing")
    return out


def from_json(role: str, obj: Any, rules: Rules | None = None, now_ms: int | None = None) -> dict[str, Any]:
    """Validate a JSON object (one parsed JSONL line) for a topic and return the record ready
    to `encode`: times to epoch ms, enums, types, required fields checked, unknown fields
    rejected; for an input topic `email` is hashed into an absent `customer_key` and removed.
    With `rules`, an input record must also pass `to_event` (so `produce` can refuse up front
    what the dataflow would dead-letter: blocked device, ts out of range or more than
    `rules.max_future` ahead of `now_ms` (None: the wall clock now), quantity out of range, an
    id too long, missing product_id...)."""
    record = _record(_schema(role).raw, obj, "")
    if role in INPUT_ROLES:
        absorb_email(record, rules)
        if rules is not None:
            to_event(role, record, rules, now_ms)
    return record


def _to(t: Any, v: Any) -> Any:
    if v is None:
        return None
    if isinstance(t, list):
        branches = [b for b in t if b != "null"]
        return _to(branches[0], v) if len(branches) == 1 else v
    kind = _kind(t)
    if kind == "long" and isinstance(t, dict) and t.get("logicalType") == _TIME:
        if isinstance(v, datetime):
            return format_time((v - EPOCH) // _MS)
        try:
            return format_time(v)
        except (OverflowError, TypeError):
            return v  # beyond what datetime can show: print the number
    if kind == "record" and isinstance(v, dict):
        types = {f["name"]: f["type"] for f in t["fields"]}
        return {k: _to(types[k], x) if k in types else x for k, x in v.items()}
    if kind == "array" and isinstance(v, list):
        return [_to(t["items"], x) for x in v]
    if kind == "map" and isinstance(v, dict):
        return {k: _to(t["values"], x) for k, x in v.items()}
    return v


def to_json(role: str, record: dict[str, Any]) -> dict[str, Any]:
    """A record ready for `json.dumps`: times as `2026-11-20T10:15:00.123Z`, the rest as is."""
    return _to(_schema(role).raw, record)


__all__ = [
    "DEAD_LETTER_VALUE_BYTES",
    "INPUT_ROLES",
    "MAX_VALUE_BYTES",
    "ROLES",
    "SCHEMAS",
    "SCHEMA_FILES",
    "Rejected",
    "Writer",
    "check_size",
    "dead_letter",
    "decode",
    "decode_input",
    "encode",
    "encode_fault",
    "format_time",
    "framed_hint",
    "from_json",
    "hash_email",
    "mask_addresses",
    "output_dead_letter",
    "parse_time",
    "schema_for",
    "schema_text",
    "to_event",
    "to_json",
    "writer_schema",
]
