"""Random access over a :class:`~ocimodel.scanning.formats.Source` for the format scanners:
a seekable file object (zipfile and h5py need one; on a registry each read becomes a
Range request, so only the central directory or the attributes are fetched), a chunk
cache for parsers that read many small fields, and an in-memory source for the members
of an archive."""

from __future__ import annotations

import io

from ocimodel.scanning.formats import Source

__all__ = ["BytesSource", "ChunkReader", "SourceFile", "seekable"]


class SourceFile(io.RawIOBase):
    """A read-only, seekable file over ``source.read_at``."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._source.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._source.read_at(self._pos, len(view)) if self._pos < self._source.size else b""
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


def seekable(source: Source, buffer: int = 1 << 16) -> io.BufferedReader:
    """A buffered seekable file over ``source``: zipfile and h5py read many small pieces,
    and each unbuffered read would be one request to a registry."""
    return io.BufferedReader(SourceFile(source), buffer)


class ChunkReader:
    """``read(offset, length)`` through a small cache of aligned chunks, so a parser reading
    thousands of small fields (GGUF metadata, protobuf tags) makes few requests."""

    def __init__(self, source: Source, chunk: int = 1 << 20, keep: int = 4) -> None:
        self.source = source
        self.size = source.size
        self._chunk = chunk
        self._keep = keep
        self._cache: dict[int, bytes] = {}
        self.fetched = 0  # bytes asked of the source (what a remote scan costs)

    def _get(self, index: int) -> bytes:
        data = self._cache.get(index)
        if data is None:
            data = self.source.read_at(index * self._chunk, self._chunk)
            self.fetched += len(data)
            if len(self._cache) >= self._keep:
                self._cache.pop(next(iter(self._cache)))
            self._cache[index] = data
        return data

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``, or fewer at the end of the file."""
        if length <= 0 or offset >= self.size:
            return b""
        end = min(offset + length, self.size)
        if end - offset > 4 * self._chunk:  # a large field: one direct read, not cached
            self.fetched += end - offset
            return self.source.read_at(offset, end - offset)
        parts = []
        pos = offset
        while pos < end:
            index, within = divmod(pos, self._chunk)
            data = self._get(index)
            take = data[within : within + (end - pos)]
            if not take:
                break
            parts.append(take)
            pos += len(take)
        return b"".join(parts)


class BytesSource:
    """A source over bytes already in memory (a member read out of an archive)."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.size = len(data)
        self._data = data

    def read_at(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + max(0, length)]

    def open(self):
        return io.BytesIO(self._data)
