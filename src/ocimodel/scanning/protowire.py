"""A minimal reader of the protocol buffers wire format, enough for the scanners to walk
ONNX and TensorFlow SavedModel files without importing onnx or tensorflow (both far larger
than what a scan needs: a few field numbers of a few messages).

It reads through any object with ``size`` and ``read(offset, length)``, so a scanner walks
the message tree and skips the payloads it does not need (an ONNX initializer's raw data,
gigabytes on a large model) without reading them: on a registry, only the structure is
fetched."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["LEN", "VARINT", "Field", "ProtoError", "Reader", "fields", "head_fields", "read_varint"]

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


class Reader(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes: ...


class ProtoError(ValueError):
    """The bytes are not a well-formed message (``offset``: where it stopped making sense)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at byte {offset}")
        self.offset = offset


@dataclass(frozen=True)
class Field:
    number: int
    wire_type: int
    offset: int  # of the tag
    value: int = 0  # VARINT, I64, I32
    start: int = 0  # LEN: where the payload starts
    length: int = 0  # LEN: its length

    @property
    def end(self) -> int:
        return self.start + self.length


def read_varint(reader: Reader, offset: int, end: int) -> tuple[int, int]:
    """The varint at ``offset`` and the offset after it."""
    data = reader.read(offset, min(10, end - offset))
    result = 0
    for i, byte in enumerate(data):
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return result, offset + i + 1
    raise ProtoError("truncated or overlong varint", offset)


def fields(reader: Reader, start: int, end: int) -> Iterator[Field]:
    """The fields of the message in ``[start, end)``, in order; payloads are not read."""
    pos = start
    while pos < end:
        tag_at = pos
        tag, pos = read_varint(reader, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise ProtoError("field number 0", tag_at)
        if wire_type == VARINT:
            value, pos = read_varint(reader, pos, end)
            yield Field(number, wire_type, tag_at, value=value)
        elif wire_type == I64:
            if pos + 8 > end:
                raise ProtoError("truncated fixed64", tag_at)
            yield Field(number, wire_type, tag_at, value=int.from_bytes(reader.read(pos, 8), "little"))
            pos += 8
        elif wire_type == I32:
            if pos + 4 > end:
                raise ProtoError("truncated fixed32", tag_at)
            yield Field(number, wire_type, tag_at, value=int.from_bytes(reader.read(pos, 4), "little"))
            pos += 4
        elif wire_type == LEN:
            length, pos = read_varint(reader, pos, end)
            if pos + length > end:
                raise ProtoError(f"field {number} of {length} bytes runs past its message", tag_at)
            yield Field(number, wire_type, tag_at, start=pos, length=length)
            pos += length
        else:  # groups are deprecated and unused by ONNX and TensorFlow
            raise ProtoError(f"unsupported wire type {wire_type}", tag_at)


class _Head:
    def __init__(self, head: bytes, size: int) -> None:
        self.head, self.size = head, size

    def read(self, offset: int, length: int) -> bytes:
        return self.head[offset : offset + length]


def head_fields(head: bytes, size: int) -> list[Field] | None:
    """The top-level fields that start in ``head`` (a file's first bytes, ``size`` its
    length), or None when those bytes are not a well-formed message: format detection
    by structure."""
    seen: list[Field] = []
    try:
        for f in fields(_Head(head, size), 0, size):
            seen.append(f)
            if f.end > len(head) or f.offset >= len(head):
                break
    except ProtoError as exc:
        if exc.offset < len(head) - 10 or not seen:
            return None
    return seen
