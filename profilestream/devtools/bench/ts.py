"""Rewriting the `ts` of an input record's Avro bytes (both input schemas start with a string id,
then `ts`), without a decode/encode round trip."""

from __future__ import annotations

from profilestream.codec.varint import encode_long, read_long


def _ts_span(value: bytes) -> tuple[int, int, int]:
    """(start, ts, end) of the `ts` field in an input record's Avro bytes."""
    length, pos = read_long(value, 0)
    start = pos + length
    ts, end = read_long(value, start)
    return start, ts, end


def retime(value: bytes, ts: int) -> bytes:
    """The same input record with another `ts` (no decode/encode round trip)."""
    start, _, end = _ts_span(value)
    return value[:start] + encode_long(ts) + value[end:]


__all__ = ["retime"]
