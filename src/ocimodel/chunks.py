"""Reading files: in pieces, or whole up to a cap.

In pieces: the one piece size and reader that the stores, the packer, the archive code and
the hashers share. 1 MiB: the per-read cost vanishes against hashing and disk or network
time, and a few such pieces per worker cost no memory worth counting.

Whole, up to a cap (:func:`read_capped`): for the small documents read from disk (a model
card, index.json, a cached manifest, a trust root). The rules every such read needs, so
that no caller forgets one: never more than the cap in memory, whatever the file claims or
becomes while it is read; only a regular file (a fifo put in the file's place would block
the command for ever, a device would never end); and, where the caller asks, never
through a symbolic link."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from os import PathLike
from typing import BinaryIO

CHUNK_SIZE = 1 << 20

__all__ = ["CHUNK_SIZE", "FileTooLarge", "NotARegularFile", "read_capped", "read_chunks", "read_file_chunks"]


def read_chunks(handle: BinaryIO) -> Iterator[bytes]:
    """The rest of ``handle``, in pieces of at most :data:`CHUNK_SIZE` bytes."""
    while chunk := handle.read(CHUNK_SIZE):
        yield chunk


def read_file_chunks(path: str | PathLike[str]) -> Iterator[bytes]:
    """The whole file at ``path``, in pieces; the file is closed when the pieces run out."""
    with open(path, "rb") as handle:
        yield from read_chunks(handle)


class NotARegularFile(OSError):
    """The path names a directory, a fifo, a socket or a device (an ``OSError``, so a
    caller's ``exc.strerror`` reads "not a regular file")."""

    def __init__(self, path: str | PathLike[str]) -> None:
        super().__init__(0, "not a regular file", os.fspath(path))


class FileTooLarge(Exception):
    """The file holds more than ``limit`` bytes; ``size`` is what it said it held, or None
    when it grew past the limit while it was read. Its text, "PATH is N bytes, over the
    L-byte limit", is written to follow a caller's word for the file ("policy ...")."""

    def __init__(self, path: str | PathLike[str], limit: int, size: int | None) -> None:
        said = "" if size is None else f" {size} bytes,"
        super().__init__(f"{os.fspath(path)} is{said} over the {limit}-byte limit")
        self.limit = limit
        self.size = size


def read_capped(path: str | PathLike[str], limit: int, *, follow_symlinks: bool = True) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them.

    Raises :class:`FileTooLarge` past the limit, :class:`NotARegularFile`, and the
    ``OSError`` of the open (``FileNotFoundError``, ``ELOOP`` for a symbolic link when
    ``follow_symlinks`` is False, ...). The file is opened without blocking, so a fifo is
    refused rather than waited on, and judged by what was opened, not by an earlier look
    at the path."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow_symlinks else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise NotARegularFile(path)
        if status.st_size > limit:
            raise FileTooLarge(path, limit, status.st_size)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(path, limit, None)
    return data
