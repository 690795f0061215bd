"""Reading files in pieces: the one piece size and reader that the stores, the packer, the
archive code and the hashers share. 1 MiB: the per-read cost vanishes against hashing and
disk or network time, and a few such pieces per worker cost no memory worth counting."""

from __future__ import annotations

from collections.abc import Iterator
from os import PathLike
from typing import BinaryIO

CHUNK_SIZE = 1 << 20


def read_chunks(handle: BinaryIO) -> Iterator[bytes]:
    """The rest of ``handle``, in pieces of at most :data:`CHUNK_SIZE` bytes."""
    while chunk := handle.read(CHUNK_SIZE):
        yield chunk


def read_file_chunks(path: str | PathLike[str]) -> Iterator[bytes]:
    """The whole file at ``path``, in pieces; the file is closed when the pieces run out."""
    with open(path, "rb") as handle:
        yield from read_chunks(handle)
