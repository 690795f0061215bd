"""joblib's compressed files (``joblib.dump(..., compress=...)``): the whole pickle stream,
array data included, compressed with zlib, gzip, bz2, xz or lzma. Recognised by the
compressor's magic bytes; the stream is decompressed as it is read and scanned like a plain
pickle (offsets in findings are offsets in the decompressed stream). A compressed stream
that is not a pickle (a .tar.bz2, say) yields no finding here."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib

from ocimodel.scanning.findings import Finding
from ocimodel.scanning.formats import HEAD_BYTES, Source
from ocimodel.scanning.pickle_scan import looks_like_pickle, scan_pickle_stream

__all__ = ["SCANNERS", "CompressedPickleScanner"]

_ZLIB = b"\x78"
_GZIP = b"\x1f\x8b"
_BZ2 = b"BZh"
_XZ = b"\xfd7zXZ"
_LZMA = b"\x5d\x00\x00"


def _decompressing(head: bytes, raw):
    if head.startswith(_GZIP):
        return gzip.GzipFile(fileobj=raw)
    if head.startswith(_BZ2):
        return bz2.BZ2File(raw)
    if head.startswith(_XZ) or head.startswith(_LZMA):
        return lzma.LZMAFile(raw)
    if head.startswith(_ZLIB):
        return io.BufferedReader(_Inflating(raw))
    return None


class _Inflating(io.RawIOBase):
    """A zlib stream (joblib writes plain zlib, not gzip), decompressed as it is read."""

    def __init__(self, raw):
        self.raw = raw
        self.inflate = zlib.decompressobj()
        self.pending = b""
        self.delivered = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.delivered

    def readinto(self, buffer) -> int:
        while not self.pending and not self.inflate.eof:
            data = self.inflate.unconsumed_tail or self.raw.read(1 << 16)
            if not data:
                break
            self.pending = self.inflate.decompress(data, 1 << 20)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        self.delivered += n
        return n


def _starts_pickle(data: bytes) -> bool:
    # The decompressed size is unknown: a full head means the stream goes on.
    return looks_like_pickle(data, len(data) + (1 if len(data) >= HEAD_BYTES else 0))


class CompressedPickleScanner:
    name = "joblib"

    def detect(self, head: bytes, size: int) -> bool:
        try:
            if head.startswith(_ZLIB):
                return _starts_pickle(zlib.decompressobj().decompress(head, HEAD_BYTES))
            if head.startswith(_GZIP):
                return _starts_pickle(zlib.decompressobj(31).decompress(head, HEAD_BYTES))
            if head.startswith(_XZ) or head.startswith(_LZMA):
                return _starts_pickle(lzma.LZMADecompressor().decompress(head, HEAD_BYTES))
        except (zlib.error, lzma.LZMAError):
            return False
        # bz2 compresses whole blocks: a head decompresses to nothing; the scan decides.
        return head.startswith(_BZ2) and len(head) > 10 and head[3:4].isdigit() and head[4:10] == b"1AY&SY"

    def scan(self, source: Source) -> list[Finding]:
        head = source.read_at(0, 16)
        with source.open() as raw:
            stream = _decompressing(head, raw)
            if stream is None:
                return []
            try:
                with stream:
                    if not _starts_pickle(stream.peek(HEAD_BYTES)[:HEAD_BYTES]):
                        return []
                    return scan_pickle_stream(stream, file=source.name, format=self.name,
                                              where=" (offset in the decompressed stream)",
                                              reopen=lambda: _decompressing(head, source.open()))  # fmt: skip
            except (OSError, EOFError, lzma.LZMAError, zlib.error):
                return []


SCANNERS = [CompressedPickleScanner()]
