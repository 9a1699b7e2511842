"""The codec: JSON <-> record <-> Avro bytes, in one place for every topic.

A *record* is a plain dict with the topic's fields, times as epoch milliseconds (int). On the wire
a value is raw schemaless Avro (fastavro schemaless_writer/reader): no schema registry, no
Confluent magic byte; both ends use the schemas in the repository's `schemas/` directory.

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
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

import profilestream
from profilestream.domain.events import Click, CrmChange
from profilestream.domain.rules import Rules
from profilestream.io import compiled
from profilestream.io.validation import INPUT_ROLES, Rejected, absorb_email, hash_email, to_event

SCHEMA_DIR = Path(profilestream.__file__).resolve().parent.parent / "schemas"
SCHEMA_FILES = {
    "clickstream": "clickstream.avsc",
    "crm_changes": "crm-changes.avsc",
    "profiles": "profiles.avsc",
    "merges": "profile-merges.avsc",
    "triggers": "triggers.avsc",
    "crm_feed": "crm-feed.avsc",
    "dead_letters": "dead-letters.avsc",
}
ROLES = tuple(SCHEMA_FILES)
MAX_VALUE_BYTES = 1 << 20  # 1 MiB: larger input values are dead-lettered unread

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
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
    raw = json.loads((SCHEMA_DIR / SCHEMA_FILES[role]).read_text(encoding="utf-8"))
    return _Schema(raw, parse_schema(raw), parse_schema(_strip_logical(raw)))


def schema_for(role: str) -> dict[str, Any]:
    """The parsed schema of a topic role (logical types kept), e.g. for Avro container files."""
    return _schema(role).full


# --- bytes ---------------------------------------------------------------------------------


def encode(role: str, record: dict[str, Any]) -> bytes:
    """Schemaless Avro bytes of a record. For an input topic a clear `email` is hashed into
    `customer_key` first and never written. A record that does not fit raises fastavro's error.

    Records of plain values (what the dataflow emits) go through a writer compiled from the schema
    (see `_compile_writer`); anything else (a datetime for a time, a missing field left to its
    default, a value of the wrong type) is written, or refused, by fastavro as before."""
    if role in INPUT_ROLES and record.get("email") is not None:
        record = absorb_email(dict(record))
    try:
        return _fast_writer(role)(record)
    except Exception:  # unusual: fastavro writes it or says what is wrong
        pass
    buf = io.BytesIO()
    schemaless_writer(buf, _schema(role).full, record)
    return buf.getvalue()


# --- the hot paths (profilestream/io/compiled.py) ----------------------------------------------


@functools.cache
def _fast_writer(role: str):
    return compiled.writer(_schema(role).wire)


@functools.cache
def _fast_reader(role: str):
    return compiled.reader(_schema(role).wire)


_FAST_ROLES = frozenset(INPUT_ROLES)


def _read(role: str, data: bytes, errors: str, rules: Rules | None = None) -> dict[str, Any]:
    if role in _FAST_ROLES and data is not None:
        try:
            record = _fast_reader(role)(data, errors)
        except Exception:  # unusual or malformed: fastavro below reads it or says what is wrong
            pass
        else:
            absorb_email(record, rules)
            return record
    return _read_fastavro(role, data, errors, rules)


def _read_fastavro(role: str, data: bytes, errors: str, rules: Rules | None = None) -> dict[str, Any]:
    if data is None:
        raise Rejected("value", "null value (a tombstone) where a record was expected")
    buf = io.BytesIO(data)
    try:
        record = schemaless_reader(buf, _schema(role).wire, None, handle_unicode_errors=errors)
    except Exception as exc:  # garbage bytes raise EOFError, IndexError, UnicodeDecodeError...
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise Rejected("value", f"not a {role} Avro record ({why})") from None
    rest = len(data) - buf.tell()
    if rest:
        raise Rejected("value", f"not a {role} Avro record ({rest} bytes left over: another schema?)")
    if role in INPUT_ROLES:
        absorb_email(record, rules)
    return record


def decode(role: str, data: bytes) -> dict[str, Any]:
    """The record in schemaless Avro bytes; times as epoch ms. For an input topic an `email` on
    the wire is hashed into `customer_key` and dropped. Malformed bytes raise `Rejected("value")`."""
    return _read(role, data, "strict")


def decode_input(role: str, data: bytes | None, rules: Rules) -> Click | CrmChange:
    """Input bytes -> domain event, or `Rejected` (values over 1 MiB are refused unread; invalid
    UTF-8 is read with surrogateescape so that `to_event` can name the field).

    A well-formed, valid record is read by its role's direct decoder (`_DIRECT`); anything else
    (including every record that ends up rejected) by the general path, which alone decides."""
    if data is not None and len(data) > MAX_VALUE_BYTES:
        raise Rejected("value", f"{len(data)} bytes, over the {MAX_VALUE_BYTES}-byte (1 MiB) limit")
    direct = _DIRECT.get(role)
    if direct is not None:
        try:
            return direct(data, rules)
        except Exception:  # not plain, or not valid: the general path reads it, or says what is wrong
            pass
    return to_event(role, _read(role, data, "surrogateescape", rules), rules)  # type: ignore[arg-type]


_DIRECT = compiled.direct_decoders({role: _schema(role).wire for role in INPUT_ROLES})


DEAD_LETTER_VALUE_BYTES = 64 * 1024


def _redact_email(role: str, value: bytes) -> bytes:
    """The original bytes with a clear `email` overwritten by `*` of the same length (the Avro
    framing stays intact): a record rejected for another reason must not leak an address."""
    try:
        record = schemaless_reader(io.BytesIO(value), _schema(role).wire, None, handle_unicode_errors="ignore")
    except Exception:  # not decodable: nothing we can recognise as an address
        return value
    email = record.get("email") if isinstance(record, dict) else None
    if not email:
        return value
    clear = email.encode("utf-8")
    return value.replace(clear, b"*" * len(clear))


def dead_letter(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, error: str, ts_ms: int,
    role: str | None = None,
) -> dict[str, Any]:
    """The dead-letters record for an input that could not be used (a null value gives "").

    The value is the original bytes, with two exceptions: a clear `email` in a decodable input is
    overwritten (privacy by design), and a value longer than 64 KiB is cut to its first 64 KiB (the
    error says so), since its base64 would not fit in a Kafka record of the default size limit."""
    if value is not None and role in INPUT_ROLES and len(value) <= MAX_VALUE_BYTES:
        value = _redact_email(role, value)
    if value is not None and len(value) > DEAD_LETTER_VALUE_BYTES:
        error = f"{error} (value cut to its first {DEAD_LETTER_VALUE_BYTES} of {len(value)} bytes)"
        value = value[:DEAD_LETTER_VALUE_BYTES]
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": None if key is None else bytes(key).decode("utf-8", errors="replace"),
        "value": "" if value is None else base64.b64encode(value).decode("ascii"),
        "error": error.encode("utf-8", errors="replace").decode("utf-8"),
        "ts": ts_ms,
    }


# --- JSON ----------------------------------------------------------------------------------


def parse_time(value: Any) -> int:
    """ISO-8601 with a zone (`2026-11-20T10:15:00.123Z`, `...+01:00`) or int epoch ms -> epoch ms."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValueError("not an ISO-8601 time with a zone")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 time with a zone") from None
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} is not an ISO-8601 time with a zone (add Z or +hh:mm)")
    return (moment - _EPOCH) // _MS


def format_time(ms: int) -> str:
    """Epoch ms -> `2026-11-20T10:15:00.123Z`."""
    return (_EPOCH + ms * _MS).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _kind(t: Any) -> str:
    return t if isinstance(t, str) else t["type"] if isinstance(t, dict) else "union"


def _from(t: Any, v: Any, path: str) -> Any:
    """Check one JSON value against a schema node; return its record form or raise Rejected."""
    if isinstance(t, list):
        if v is None:
            if "null" in t:
                return None
            raise Rejected(path, "required field is null")
        branches = [b for b in t if b != "null"]
        if len(branches) == 1:
            return _from(branches[0], v, path)
        for branch in branches:
            try:
                return _from(branch, v, path)
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
        if not math.isfinite(v):
            raise Rejected(path, f"not a finite number: {v!r}")
        return float(v)
    if kind == "enum":
        if v not in t["symbols"]:
            raise Rejected(path, f"{v!r} is not one of {', '.join(t['symbols'])}")
        return v
    if kind == "array":
        if not isinstance(v, list):
            raise Rejected(path, f"expected an array, got {type(v).__name__}")
        return [_from(t["items"], item, f"{path}[{i}]") for i, item in enumerate(v)]
    if kind == "map":
        if not isinstance(v, dict):
            raise Rejected(path, f"expected an object (map), got {type(v).__name__}")
        return {_from("string", k, path): _from(t["values"], x, f"{path}.{k}") for k, x in v.items()}
    if kind == "record":
        return _record(t, v, path)
    raise TypeError(f"schema type {kind!r} at {path or 'top level'} is not supported by from_json")


def _record(t: dict[str, Any], v: Any, path: str) -> dict[str, Any]:
    prefix = f"{path}." if path else ""
    if not isinstance(v, dict):
        raise Rejected(path or "value", f"expected an object, got {type(v).__name__}")
    known = {f["name"] for f in t["fields"]}
    for name in v:
        if name not in known:
            raise Rejected(f"{prefix}{name}", f"unknown field (known: {', '.join(sorted(known))})")
    out = {}
    for f in t["fields"]:
        name = f["name"]
        if name in v:
            out[name] = _from(f["type"], v[name], prefix + name)
        elif "default" in f:
            out[name] = f["default"]
        else:
            raise Rejected(prefix + name, "required field is missing")
    return out


def from_json(role: str, obj: Any, rules: Rules | None = None) -> dict[str, Any]:
    """Validate a JSON object (one parsed JSONL line) for a topic and return the record ready
    to `encode`: times to epoch ms, enums, types, required fields checked, unknown fields
    rejected; for an input topic `email` is hashed into an absent `customer_key` and removed.
    With `rules`, an input record must also pass `to_event` (so `produce` can refuse up front
    what the dataflow would dead-letter: blocked device, ts out of range, missing product_id...)."""
    record = _record(_schema(role).raw, obj, "")
    if role in INPUT_ROLES:
        absorb_email(record, rules)
        if rules is not None:
            to_event(role, record, rules)
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
            return format_time((v - _EPOCH) // _MS)
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
    "MAX_VALUE_BYTES", "ROLES", "SCHEMA_DIR", "Rejected", "dead_letter", "decode", "decode_input",
    "encode", "format_time", "from_json", "hash_email", "parse_time", "schema_for", "to_event", "to_json",
]
