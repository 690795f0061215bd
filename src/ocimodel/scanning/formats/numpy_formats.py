"""NumPy's ``.npy`` and ``.npz`` files. An ``.npy`` whose dtype holds Python objects
stores its data as a pickle after the header (``numpy.load(allow_pickle=True)`` loads it):
that pickle is scanned. An ``.npz`` is a zip of ``.npy`` files, recognised by its first
member's bytes; every member is read as an ``.npy`` or, if its bytes are one, a pickle."""

from __future__ import annotations

import ast
import struct
import zipfile
import zlib
from typing import BinaryIO

from ocimodel.scanning.findings import Finding, Severity
from ocimodel.scanning.formats import HEAD_BYTES, Source
from ocimodel.scanning.pickle_scan import looks_like_pickle, scan_pickle_stream, scan_zip_members

__all__ = ["SCANNERS", "NpyScanner", "NpzScanner", "scan_npy_stream"]

_MAGIC = b"\x93NUMPY"
# numpy.load refuses headers past 10,000 bytes by default; far past that is not a header.
_MAX_HEADER = 1 << 20


def _holds_objects(descr: object) -> bool:
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, list):  # structured: [(name, type[, shape]), ...]
        return any(isinstance(f, tuple) and len(f) >= 2 and _holds_objects(f[1]) for f in descr)
    return False


def scan_npy_stream(stream: BinaryIO, *, file: str, format: str, member: str | None = None) -> list[Finding]:
    def finding(severity: Severity, rule: str, detail: str, offset: int = 0) -> Finding:
        return Finding(file=file, format=format, severity=severity, rule=rule, detail=detail, offset=offset, member=member)

    prefix = stream.read(12)
    if not prefix.startswith(_MAGIC) or len(prefix) < 10:
        return [finding(Severity.MEDIUM, "numpy.header", "not a complete .npy header")]
    major = prefix[6]
    if major == 1:
        header_length, start = struct.unpack_from("<H", prefix, 8)[0], 10
    elif len(prefix) == 12:
        header_length, start = struct.unpack_from("<I", prefix, 8)[0], 12
    else:
        return [finding(Severity.MEDIUM, "numpy.header", "not a complete .npy header")]
    if header_length > _MAX_HEADER:
        return [finding(Severity.MEDIUM, "numpy.header", f"a .npy header of {header_length} bytes: not read")]
    raw = prefix[start:] + stream.read(header_length - (len(prefix) - start))
    try:
        header = ast.literal_eval(raw.decode("utf-8" if major >= 3 else "latin1"))
        descr = header["descr"]
    except (ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError, MemoryError, RecursionError):
        return [finding(Severity.MEDIUM, "numpy.header", "the .npy header is not the dict numpy writes")]
    if not _holds_objects(descr):
        return []
    data_start = start + header_length
    found = [finding(Severity.INFO, "numpy.object-array",
                     f"dtype {descr!r} holds Python objects: numpy.load unpickles them when allow_pickle=True", data_start)]  # fmt: skip
    return found + scan_pickle_stream(stream, file=file, format=format, member=member, base=data_start)


class NpyScanner:
    name = "numpy"

    def detect(self, head: bytes, size: int) -> bool:
        return head.startswith(_MAGIC)

    def scan(self, source: Source) -> list[Finding]:
        with source.open() as stream:
            return scan_npy_stream(stream, file=source.name, format=self.name)


class NpzScanner:
    name = "numpy-npz"

    def detect(self, head: bytes, size: int) -> bool:
        if len(head) < 30 or not head.startswith(b"PK\x03\x04"):
            return False
        method = struct.unpack_from("<H", head, 8)[0]
        name_length, extra_length = struct.unpack_from("<HH", head, 26)
        if head[30 : 30 + name_length].endswith(b".npy"):
            return True  # what np.savez names them (and what the archives scanner leaves to this one)
        data = head[30 + name_length + extra_length :]
        if method == 8:
            try:
                data = zlib.decompressobj(-15).decompress(data, len(_MAGIC))
            except zlib.error:
                return False
        return data.startswith(_MAGIC)

    def scan(self, source: Source) -> list[Finding]:
        def scan_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> list[Finding]:
            with archive.open(info) as member:
                head = member.read(HEAD_BYTES)
            with archive.open(info) as member:
                if head.startswith(_MAGIC):
                    return scan_npy_stream(member, file=source.name, format=self.name, member=info.filename)
                if looks_like_pickle(head, info.file_size):
                    return scan_pickle_stream(member, file=source.name, format=self.name, member=info.filename,
                                              reopen=lambda: archive.open(info))  # fmt: skip
            return []

        return scan_zip_members(source, self.name, "numpy.malformed", scan_member)


SCANNERS = [NpyScanner(), NpzScanner()]
