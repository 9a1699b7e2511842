"""The codec's hot paths: Avro writers and readers compiled from a schema, and direct decoders.

Why a module of its own: `avro` is the codec's meaning (schemas, records, JSON, dead letters);
this is only its speed. Everything here either gives exactly what fastavro (and `to_event`) give,
or raises, and `avro` then takes the general path, which decides (tests/unit/test_codec_fast.py
compares the two on the sample shop and on mutated and generated records).

Entry points: `writer(wire_schema)`, `reader(wire_schema)` and `direct_decoders(wire_schemas)`.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from profilestream.codec.validation import (
    END_TS,
    MAX_ID_LENGTH,
    MAX_QUANTITY,
    MIN_QUANTITY,
    MIN_TS,
    NEEDS_PRODUCT,
    customer_key_of,
)
from profilestream.codec.varint import Overlong, read_long, write_long
from profilestream.domain.events import CLICK_TYPES, CRM_OPS, Campaign, Click, CrmChange
from profilestream.domain.roles import CLICKSTREAM, CRM_CHANGES
from profilestream.domain.rules import Rules

_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
RANGES = {"int": (-(1 << 31), (1 << 31) - 1), "long": (-(1 << 63), (1 << 63) - 1)}


# --- the output hot path: a writer compiled from the schema --------------------------------
#
# Every record the dataflow emits is encoded once; fastavro's writer was the largest single cost
# after decoding. The closures below write only values of exactly the schema's plain types (int
# for int/long within range, float for double, str, bool, None, list, dict, a known enum symbol)
# and raise on anything else, so `avro.encode` can hand that record to fastavro: the bytes are the same
# wherever the compiled writer writes (tests/unit/test_codec_fast.py checks it), and nothing that
# fastavro accepted or refused changes.


_write_long = write_long  # the one Avro varint writer (codec/varint.py)


def _compile_writer(node: Any, named: dict[str, Any]):
    """A writer `(buf, value) -> None` for one (parsed, logical-type free) schema node."""
    if isinstance(node, list):
        if len(node) == 2 and node[0] == "null":
            other = _compile_writer(node[1], named)

            def optional(buf, value):
                if value is None:
                    buf.append(0)
                else:
                    buf.append(2)
                    other(buf, value)

            return optional
        if node == ["string", "double"]:  # the attribute maps' values

            def string_or_double(buf, value):
                if value.__class__ is str:
                    buf.append(0)
                    string(buf, value)
                elif value.__class__ is float:
                    buf.append(2)
                    buf += _DOUBLE.pack(value)
                else:
                    raise _Unusual

            string = _compile_writer("string", named)
            return string_or_double
        raise TypeError(f"union {node!r} is not supported by the compiled writer")
    kind = node if isinstance(node, str) else node["type"]
    if isinstance(node, str) and kind in named:
        return named[kind]
    if kind == "null":

        def null(buf, value):
            if value is not None:
                raise _Unusual

        return null
    if kind in ("int", "long"):
        low, high = RANGES[kind]

        def integer(buf, value):
            if value.__class__ is not int or not low <= value <= high:
                raise _Unusual
            _write_long(buf, value)

        return integer
    if kind == "string":

        def string(buf, value):
            if value.__class__ is not str:
                raise _Unusual
            data = value.encode("utf-8")
            _write_long(buf, len(data))
            buf += data

        return string
    if kind == "boolean":

        def boolean(buf, value):
            if value is True:
                buf.append(1)
            elif value is False:
                buf.append(0)
            else:
                raise _Unusual

        return boolean
    if kind == "double":

        def double(buf, value):
            if value.__class__ is not float:
                raise _Unusual
            buf += _DOUBLE.pack(value)

        return double
    if kind == "enum":
        index = {symbol: i for i, symbol in enumerate(node["symbols"])}

        def enum(buf, value):
            i = index.get(value) if value.__class__ is str else None
            if i is None:  # not a symbol: fastavro says so
                raise _Unusual
            _write_long(buf, i)

        named[node["name"]] = enum
        return enum
    if kind == "array":
        items = _compile_writer(node["items"], named)

        def array(buf, value):
            if value.__class__ is not list:
                raise _Unusual
            if value:
                _write_long(buf, len(value))
                for item in value:
                    items(buf, item)
            buf.append(0)

        return array
    if kind == "map":
        values = _compile_writer(node["values"], named)
        key = _compile_writer("string", named)

        def mapping(buf, value):
            if value.__class__ is not dict:
                raise _Unusual
            if value:
                _write_long(buf, len(value))
                for k, v in value.items():
                    key(buf, k)
                    values(buf, v)
            buf.append(0)

        return mapping
    if kind == "record":
        fields: list = []

        def record(buf, value):
            if value.__class__ is not dict:
                raise _Unusual
            for name, write in fields:
                write(buf, value[name])  # KeyError on a missing field: fastavro fills defaults

        named[node["name"]] = record
        fields.extend((f["name"], _compile_writer(f["type"], named)) for f in node["fields"])
        return record
    raise TypeError(f"schema type {kind!r} is not supported by the compiled writer")


# --- the input hot path: a reader compiled from the schema ---------------------------------
#
# fastavro's schemaless_reader pulls every primitive through the file object's `read()` (a Python
# call per byte of a varint), which made it most of the cost of decoding an input record. Inputs
# are read here instead by closures compiled once from the wire schema, indexing the bytes
# directly. They cover exactly the well-formed encodings: anything unusual (an index out of range,
# a negative length, an over-long varint, a boolean byte other than 0/1, bytes left over) raises,
# and `avro._read` then reads the value with fastavro, which gives the same result or the same error
# as before. So this changes speed only, never what is accepted or how it is explained.


class _Unusual(Exception):
    """Not a plainly well-formed encoding: let fastavro read (and judge) it."""


# The one Avro varint reader (codec/varint.py), used as it is: no wrapper on the hot path. Its two
# errors mean what `_Unusual` means here: `Overlong` (past 64 bits) and `IndexError` (the bytes end
# inside it) are in `READ_DECLINED` / `DIRECT_DECLINED`, so callers let fastavro judge those bytes.
_read_long = read_long

# What each fast path raises when it declines a value, for `avro` to catch (and count) before the
# general path decides. Anything else is a bug in this module and propagates.
#   compiled reader: `_Unusual`; `IndexError` (data cut short); `ValueError`: `Overlong` and, read
#     strictly, `UnicodeDecodeError`.
#   direct decoders: the same, and `struct.error` (a double cut short); a six-byte time cut short is
#     a `ValueError` (unpacking too few bytes), a `Rejected` from `customer_key_of` one too.
#   compiled writer: `_Unusual`; `KeyError` (a field missing, left to fastavro's defaults);
#     `UnicodeEncodeError` (a lone surrogate, which fastavro refuses in its own words).
READ_DECLINED: tuple[type[Exception], ...] = (_Unusual, Overlong, IndexError, ValueError)
DIRECT_DECLINED: tuple[type[Exception], ...] = (*READ_DECLINED, struct.error)
WRITE_DECLINED: tuple[type[Exception], ...] = (_Unusual, KeyError, UnicodeEncodeError)


def _compile(node: Any, named: dict[str, Any], namespace: str | None = None):
    """A reader `(data, pos, errors) -> (value, pos)` for one (parsed, logical-type free) schema node."""
    if isinstance(node, list):
        branches = [_compile(b, named, namespace) for b in node]
        if len(node) == 2 and node[0] == "null":
            other = branches[1]

            def optional(data, pos, errors):
                index = data[pos]
                if index == 0:
                    return None, pos + 1
                if index == 2:  # zigzag 1
                    return other(data, pos + 1, errors)
                raise _Unusual

            return optional

        def union(data, pos, errors):
            index, pos = _read_long(data, pos)
            if not 0 <= index < len(branches):
                raise _Unusual
            return branches[index](data, pos, errors)

        return union
    kind = node if isinstance(node, str) else node["type"]
    if isinstance(node, str) and kind in named:
        return named[kind]
    if kind == "null":
        return lambda data, pos, errors: (None, pos)
    if kind in ("int", "long"):
        return lambda data, pos, errors: _read_long(data, pos)
    if kind == "string":

        def string(data, pos, errors):
            length = data[pos]
            if length < 0x80:  # the usual one-byte length
                pos += 1
                if length & 1:
                    raise _Unusual
                length >>= 1
            else:
                length, pos = _read_long(data, pos)
                if length < 0:
                    raise _Unusual
            end = pos + length
            if end > len(data):
                raise _Unusual
            return data[pos:end].decode("utf-8", errors), end

        return string
    if kind == "boolean":

        def boolean(data, pos, errors):
            byte = data[pos]
            if byte > 1:
                raise _Unusual
            return byte == 1, pos + 1

        return boolean
    if kind in ("double", "float"):
        unpack, size = (_DOUBLE.unpack_from, 8) if kind == "double" else (_FLOAT.unpack_from, 4)

        def number(data, pos, errors):
            if pos + size > len(data):
                raise _Unusual
            return unpack(data, pos)[0], pos + size

        return number
    if kind == "enum":
        symbols = tuple(node["symbols"])

        def enum(data, pos, errors):
            index, pos = _read_long(data, pos)
            if not 0 <= index < len(symbols):
                raise _Unusual
            return symbols[index], pos

        named[node["name"]] = enum
        return enum
    if kind == "map":
        values = _compile(node["values"], named, namespace)

        def mapping(data, pos, errors):
            out = {}
            while True:
                count, pos = _read_long(data, pos)
                if count == 0:
                    return out, pos
                if count < 0:
                    raise _Unusual
                for _ in range(count):
                    key, pos = string(data, pos, errors)
                    out[key], pos = values(data, pos, errors)

        string = _compile("string", named)
        return mapping
    if kind == "array":
        items = _compile(node["items"], named, namespace)

        def array(data, pos, errors):
            out = []
            while True:
                count, pos = _read_long(data, pos)
                if count == 0:
                    return out, pos
                if count < 0:
                    raise _Unusual
                for _ in range(count):
                    item, pos = items(data, pos, errors)
                    out.append(item)

        return array
    if kind == "record":
        fields: list = []  # (name, optional, read); strings and optional strings read inline

        def record(data, pos, errors):
            out = {}
            for name, optional, read in fields:
                if optional:
                    index = data[pos]
                    pos += 1
                    if index == 0:
                        out[name] = None
                        continue
                    if index != 2:
                        raise _Unusual
                if read is None:  # a string with a one-byte length, or the general reader
                    length = data[pos]
                    if length < 0x80 and not length & 1:
                        end = pos + 1 + (length >> 1)
                        if end > len(data):
                            raise _Unusual
                        out[name] = data[pos + 1 : end].decode("utf-8", errors)
                        pos = end
                        continue
                    out[name], pos = string(data, pos, errors)
                else:
                    out[name], pos = read(data, pos, errors)
            return out, pos

        named[node["name"]] = record
        string = _compile("string", named)
        for f in node["fields"]:
            t = f["type"]
            nullable = isinstance(t, list) and len(t) == 2 and t[0] == "null"
            inner = t[1] if nullable else t
            fields.append((f["name"], nullable, None if inner == "string" else _compile(inner, named, namespace)))
        return record
    raise TypeError(f"schema type {kind!r} is not supported by the compiled reader")


# --- the input hot path, direct: bytes straight to an event --------------------------------
#
# Reading a dict (the compiled reader above) and then validating it (`to_event`) built a dict per
# record only to take it apart, and handled every field twice. The two decoders below read the
# two input schemas field by field, straight into the arguments of `Click` / `CrmChange`, and make
# `to_event`'s checks on the way. They only ever *accept*: anything they would not read exactly as
# the general path does raises instead (see `avro.decode_input`), namely
#   - an encoding that is not plainly well formed (as for the compiled reader: a union index other
#     than 0/1, a negative length or count, an over-long varint, a boolean byte other than 0/1,
#     bytes left over or missing: a string cut short by the end of the data only shortens the
#     slice, but then the position is past the end and the final length check fails);
#   - a string that is not strict UTF-8 (strict decoding yields no lone surrogates, so such a
#     string passes `to_event`'s UTF-8 checks as it is);
#   - any record `to_event` would reject (blank id, time out of range or too far ahead of the
#     clock, blocked device, missing product_id / order_id, an id over `MAX_ID_LENGTH`
#     characters, quantity outside 1..100,000, a negative price, a non-finite number).
# The general path then accepts the same event or gives the same `Rejected` as before; so this
# changes speed only (tests/unit/test_codec_fast.py compares both on mutated and generated records).
# Each decoder is written for one schema layout and is used only while the wire schema is still
# exactly that layout (`_LAYOUTS`); otherwise that role takes the general path.


def _read_time(data: bytes, pos: int) -> tuple[int, int]:
    """`_read_long` for an epoch-ms time. Every time from 1990 to 2039 is a six-byte varint; read
    here without the byte loop, which was a fifth of the cost of reading a click."""
    b0, b1, b2, b3, b4, b5 = data[pos : pos + 6]
    if b0 & b1 & b2 & b3 & b4 & 0x80 and b5 < 0x80:
        n = (b0 & 0x7F) | (b1 & 0x7F) << 7 | (b2 & 0x7F) << 14 | (b3 & 0x7F) << 21 | (b4 & 0x7F) << 28 | b5 << 35
        return (n >> 1) ^ -(n & 1), pos + 6
    return _read_long(data, pos)


def _string_at(data: bytes, pos: int) -> tuple[str, int]:
    """A string (strict UTF-8) and the position after it."""
    length = data[pos]
    if length < 0x80:  # the usual one-byte length
        if length & 1:
            raise _Unusual
        end = pos + 1 + (length >> 1)
        return data[pos + 1 : end].decode(), end
    length, pos = _read_long(data, pos)
    if length < 0:
        raise _Unusual
    end = pos + length
    return data[pos:end].decode(), end


def _optional_string_at(data: bytes, pos: int) -> tuple[str | None, int]:
    """A ["null", "string"] value and the position after it. The usual short string is read here,
    as in `_string_at`, saving a call for most of a click's fields."""
    branch = data[pos]
    if branch == 0:
        return None, pos + 1
    if branch != 2:
        raise _Unusual
    length = data[pos + 1]
    if length < 0x80 and not length & 1:
        end = pos + 2 + (length >> 1)
        return data[pos + 2 : end].decode(), end
    return _string_at(data, pos + 1)


def _optional_number_at(data: bytes, pos: int) -> tuple[float | None, int]:
    """A ["null", "double"] value, which `to_event` accepts only finite, and the position after it."""
    branch = data[pos]
    if branch == 0:
        return None, pos + 1
    if branch != 2:
        raise _Unusual
    value = _DOUBLE.unpack_from(data, pos + 1)[0]
    if not math.isfinite(value):
        raise _Unusual
    return value, pos + 9


def _enum_at(data: bytes, pos: int, symbols: tuple[str, ...]) -> tuple[str, int]:
    """An enum symbol (index below 64: one byte) and the position after it."""
    index = data[pos]
    if index & 1 or index >= 2 * len(symbols):
        raise _Unusual
    return symbols[index >> 1], pos + 1


def _long(*ids: str | None) -> bool:
    """Is any of these ids over `MAX_ID_LENGTH` characters? (The usual short id: no call.)"""
    return any(i is not None and len(i) > MAX_ID_LENGTH for i in ids)


def _click_direct(data: bytes, rules: Rules, now_ms: int) -> Click:
    """The `Click` in clickstream bytes, or an exception where the general path must decide."""
    event_id, pos = _string_at(data, 0)
    ts, pos = _read_time(data, pos)
    device_id, pos = _string_at(data, pos)
    type_, pos = _enum_at(data, pos, _CLICK_SYMBOLS)
    customer_key, pos = _optional_string_at(data, pos)
    email, pos = _optional_string_at(data, pos)
    url, pos = _optional_string_at(data, pos)
    referrer, pos = _optional_string_at(data, pos)
    page_category, pos = _optional_string_at(data, pos)
    product_id, pos = _optional_string_at(data, pos)
    price, pos = _optional_number_at(data, pos)
    branch = data[pos]
    if branch == 0:
        quantity = None
        pos += 1
    elif branch == 2:
        quantity, pos = _read_long(data, pos + 1)
    else:
        raise _Unusual
    order_id, pos = _optional_string_at(data, pos)
    revenue, pos = _optional_number_at(data, pos)
    branch = data[pos]
    if branch == 0:
        campaign = None
        pos += 1
    elif branch == 2:
        source, pos = _optional_string_at(data, pos + 1)
        medium, pos = _optional_string_at(data, pos)
        name, pos = _optional_string_at(data, pos)
        campaign = Campaign(source, medium, name)
    else:
        raise _Unusual
    if pos != len(data):
        raise _Unusual
    # to_event's checks (validation._click), in any order: each failing one only means "not here"
    if not (MIN_TS <= ts < END_TS and event_id.strip() and rules.usable(device_id) is not None):
        raise _Unusual
    ahead = rules.max_future
    if ahead is not None and ts - now_ms > ahead:
        raise _Unusual
    if type_ in NEEDS_PRODUCT and not (product_id and product_id.strip()):
        raise _Unusual
    if type_ == "purchase" and not (order_id and order_id.strip()):
        raise _Unusual
    if quantity is not None and not MIN_QUANTITY <= quantity <= MAX_QUANTITY:
        raise _Unusual
    if price is not None and price < 0:
        raise _Unusual
    customer_key = customer_key_of(customer_key, email, rules)
    if len(data) > MAX_ID_LENGTH and _long(event_id, device_id, customer_key, product_id, order_id):
        raise _Unusual  # (a shorter record cannot hold an id that long)
    return Click(
        event_id,
        ts,
        device_id,
        type_,
        customer_key,
        url,
        referrer,
        page_category,
        product_id,
        price,
        quantity,
        order_id,
        revenue,
        campaign,
    )


def _crm_change_direct(data: bytes, rules: Rules, now_ms: int) -> CrmChange:
    """The `CrmChange` in crm_changes bytes, or an exception where the general path must decide."""
    change_id, pos = _string_at(data, 0)
    ts, pos = _read_time(data, pos)
    customer_id, pos = _string_at(data, pos)
    op, pos = _enum_at(data, pos, _CRM_SYMBOLS)
    customer_key, pos = _optional_string_at(data, pos)
    email, pos = _optional_string_at(data, pos)
    branch = data[pos]
    pos += 1
    attributes: dict[str, str | float] | None = None
    if branch == 2:
        attributes = found = {}
        while True:  # map blocks: a count, then that many (string key, ["string", "double"] value)
            count, pos = _read_long(data, pos)
            if count == 0:
                break
            if count < 0:
                raise _Unusual
            for _ in range(count):
                key, pos = _string_at(data, pos)
                branch = data[pos]
                if branch == 0:
                    found[key], pos = _string_at(data, pos + 1)
                elif branch == 2:
                    number = _DOUBLE.unpack_from(data, pos + 1)[0]
                    if not math.isfinite(number):
                        raise _Unusual
                    found[key] = number  # a double already: to_event makes only ints floats
                    pos += 9
                else:
                    raise _Unusual
    elif branch != 0:
        raise _Unusual
    lead_status, pos = _optional_string_at(data, pos)
    branch = data[pos]
    if branch == 0:
        consent = None
        pos += 1
    elif branch == 2 and data[pos + 1] <= 1:
        consent = data[pos + 1] == 1
        pos += 2
    else:
        raise _Unusual
    order_id, pos = _optional_string_at(data, pos)
    if pos != len(data):
        raise _Unusual
    # to_event's checks (validation._crm_change); customer_id need only be present, as it is here
    if not (MIN_TS <= ts < END_TS and change_id.strip()):
        raise _Unusual
    ahead = rules.max_future
    if ahead is not None and ts - now_ms > ahead:
        raise _Unusual
    customer_key = customer_key_of(customer_key, email, rules)
    if len(data) > MAX_ID_LENGTH and _long(change_id, customer_id, customer_key, order_id):
        raise _Unusual
    return CrmChange(change_id, ts, customer_id, op, customer_key, attributes, lead_status, consent, order_id)


def _layout(node: Any) -> str:
    """A (wire) schema node spelt compactly, e.g. `{id: string, n: null|int}`: what a direct
    decoder assumes, compared with the schema actually in use."""
    if isinstance(node, list):
        return "|".join(_layout(branch) for branch in node)
    if isinstance(node, str):
        return node
    kind = node["type"]
    if kind == "record":
        return "{" + ", ".join(f"{f['name']}: {_layout(f['type'])}" for f in node["fields"]) + "}"
    if kind == "enum":
        return f"enum({','.join(node['symbols'])})"
    if kind == "map":
        return f"map({_layout(node['values'])})"
    if kind == "array":
        return f"array({_layout(node['items'])})"
    return kind


_CLICK_SYMBOLS = tuple(CLICK_TYPES)  # the ClickType symbols in schema order (checked in _LAYOUTS)
_CRM_SYMBOLS = tuple(CRM_OPS)
_STRING = "null|string"
_LAYOUTS = {  # role: (the layout its direct decoder reads, the decoder)
    CLICKSTREAM: (
        f"{{event_id: string, ts: long, device_id: string, type: enum({','.join(_CLICK_SYMBOLS)}), "
        f"customer_key: {_STRING}, email: {_STRING}, url: {_STRING}, referrer: {_STRING}, "
        f"page_category: {_STRING}, product_id: {_STRING}, price: null|double, quantity: null|int, "
        f"order_id: {_STRING}, revenue: null|double, "
        f"campaign: null|{{source: {_STRING}, medium: {_STRING}, name: {_STRING}}}}}",
        _click_direct,
    ),
    CRM_CHANGES: (
        f"{{change_id: string, ts: long, customer_id: string, op: enum({','.join(_CRM_SYMBOLS)}), "
        f"customer_key: {_STRING}, email: {_STRING}, attributes: null|map(string|double), "
        f"lead_status: {_STRING}, marketing_consent: null|boolean, order_id: {_STRING}}}",
        _crm_change_direct,
    ),
}


def writer(wire: Any):
    """`record -> bytes` for a parsed wire schema; raises on anything but plain values (see above)."""
    try:
        write = _compile_writer(wire, {})
    except TypeError:  # a schema this writer does not cover: always the general path

        def write(buf, value):
            raise _Unusual

    def whole(record: dict[str, Any]) -> bytes:
        buf = bytearray()
        write(buf, record)
        return bytes(buf)

    return whole


def reader(wire: Any):
    """`(bytes, errors) -> record` for a parsed wire schema; raises on anything unusual."""
    read = _compile(wire, {})

    def whole(data: bytes, errors: str) -> dict[str, Any]:
        record, pos = read(data, 0, errors)
        if pos != len(data):
            raise _Unusual
        return record

    return whole


def direct_decoders(wire: dict[str, Any]) -> dict[str, Any]:
    """`{role: (bytes, rules, now_ms) -> event}` for the input roles whose wire schema
    (`wire[role]`) is still exactly the layout its decoder was written for."""
    return {
        role: decoder for role, (layout, decoder) in _LAYOUTS.items() if role in wire and _layout(wire[role]) == layout
    }


__all__ = ["DIRECT_DECLINED", "RANGES", "READ_DECLINED", "WRITE_DECLINED", "direct_decoders", "reader", "writer"]
