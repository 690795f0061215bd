"""The format scanners. Each module defines one or more :class:`FormatScanner` objects and
the list :data:`SCANNERS` orders them (ocimodel.scanning.engine runs every scanner whose
``detect`` accepts a file's first bytes).

A scanner reads from a :class:`Source`: random access to one file's bytes, which may be a
local file or a layer in a registry read with HTTP Range requests (the engine decides), so
a scanner asks only for the bytes it needs (a safetensors header, not its tensors)."""

from __future__ import annotations

from typing import Protocol

from ocimodel.scanning.findings import Finding

__all__ = ["HEAD_BYTES", "FormatScanner", "Source"]

# How many leading bytes ``detect`` is given: enough for every magic number and header
# prefix the scanners look at.
HEAD_BYTES = 4096


class Source(Protocol):
    """One file's bytes. ``name`` is its path in the model (for findings only: formats
    are never judged by it)."""

    name: str
    size: int

    def read_at(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer only at the end of the file)."""
        ...

    def open(self):
        """A binary file object over the whole content, read sequentially (pickles,
        zip archives); a registry source streams and verifies it."""
        ...


class FormatScanner(Protocol):
    name: str  # the format, as it appears in findings and FileReport.formats

    def detect(self, head: bytes, size: int) -> bool:
        """Whether the bytes are this format (``head``: the first HEAD_BYTES or fewer)."""
        ...

    def scan(self, source: Source) -> list[Finding]:
        """Everything wrong with the file; never loads or runs what it reads."""
        ...
