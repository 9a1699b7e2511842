"""Avro's variable-length zig-zag integers (`int` and `long` on the wire), in one place.

The compiled fast paths (`compiled`), the benchmark's `ts` rewriting and anything else that
reads or writes Avro longs by hand use these, so the encoding cannot drift between copies.
"""

from __future__ import annotations


class Overlong(ValueError):
    """A varint longer than 64 bits: not a long any Avro writer produces (the general reader,
    fastavro, then decides what the bytes are)."""


def write_long(buf: bytearray, n: int) -> None:
    """Append `n` (a signed 64-bit long) to `buf`, zig-zag varint encoded."""
    if 0 <= n < 64:
        buf.append(n << 1)
        return
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        buf.append((n & 0x7F) | 0x80)
        n >>= 7
    buf.append(n)


def encode_long(n: int) -> bytes:
    """`n` as the bytes of one zig-zag varint."""
    buf = bytearray()
    write_long(buf, n)
    return bytes(buf)


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """The long at `data[pos:]` and the position after it. `IndexError` when the bytes end inside
    it, `Overlong` when it runs past 64 bits."""
    byte = data[pos]
    pos += 1
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos
    n = byte & 0x7F
    shift = 7
    while True:
        byte = data[pos]
        pos += 1
        if shift == 63 and byte > 1:  # beyond 64 bits
            raise Overlong("varint longer than 64 bits")
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (n >> 1) ^ -(n & 1), pos
        shift += 7
        if shift > 63:
            raise Overlong("varint longer than 64 bits")


__all__ = ["Overlong", "encode_long", "read_long", "write_long"]
