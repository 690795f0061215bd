"""Writing a file whole or not at all: the one temporary-file-then-rename that the caches,
the OCI layout, docker's config, the pull journal and the user's outputs share.

The bytes go to a new file beside the target (same directory, so the same filesystem and
a rename that is one step), created exclusively under a fresh name (``mkstemp``:
``O_EXCL | O_NOFOLLOW``, mode 0600), so no file or symlink already in the directory is
written through. When the ``with`` block ends without an error the file gets its mode,
is synced if asked, and is put in place; on any error, an interrupt included, the
temporary file is removed and the target is as it was. A reader sees the old file or the
new one, never a part.

What differs between callers is a parameter, not a copy of this code: the mode (a shared
layout's umask mode, 0600 for credentials and caches), durability (``durable``: a file a
power cut must not lose, such as docker's config or the pull journal), the temporary
name (``prefix``/``suffix``) and how the file is put in place (``place``: the user's
outputs refuse to replace what they were not told to). Errors are ``OSError``; each
caller says in its own terms what it could not write.

This module imports nothing of ocimodel: every layer may use it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["AtomicFile", "atomic_file", "atomic_write", "sync_directory"]


class AtomicFile:
    """The file being written in an :func:`atomic_file` block.

    ``handle`` takes the bytes. ``path`` is where the file goes; a caller that learns the
    name only from the bytes (a blob is named by its digest) sets it before the block ends,
    to a path on the same filesystem. ``temp`` is the temporary file's path (to change its
    owner or times before it is put in place)."""

    def __init__(self, path: Path, temp: Path, handle: BinaryIO) -> None:
        self.path = path
        self.temp = temp
        self.handle = handle

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self.handle.write(data)


@contextmanager
def atomic_file(
    path: str | os.PathLike[str],
    *,
    mode: int | None = None,
    durable: bool = False,
    prefix: str = ".tmp-",
    suffix: str = "",
    place: Callable[[Path, Path], None] | None = None,
) -> Iterator[AtomicFile]:
    """Write ``path`` in a ``with`` block; it appears, whole, when the block ends.

    ``mode``: the file's permission bits, set with ``fchmod`` so the umask does not cut
    them; None keeps mkstemp's 0600. ``durable``: the file is synced before it is put in
    place and its directory after (best effort: a filesystem that cannot sync a directory
    is left be). ``place(temp, path)`` puts the file in place and leaves nothing at
    ``temp`` (it renames, or links and then unlinks); the default, ``os.replace``,
    replaces whatever regular file is there."""
    target = Path(path)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            file = AtomicFile(target, temp, handle)
            yield file
            handle.flush()
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            if durable:
                os.fsync(handle.fileno())
        (place or os.replace)(temp, file.path)
    except BaseException:
        _unlink_quietly(temp)
        raise
    if durable:
        sync_directory(file.path.parent)


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview | Iterable[bytes],
    *,
    mode: int | None = None,
    durable: bool = False,
) -> None:
    """Write ``data`` (bytes, or pieces of bytes) to ``path`` as :func:`atomic_file` does."""
    pieces = (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data
    with atomic_file(path, mode=mode, durable=durable) as file:
        for piece in pieces:
            file.write(piece)


def sync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename in ``directory`` durable; a filesystem that cannot sync a directory is
    left be (the file itself was synced)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
