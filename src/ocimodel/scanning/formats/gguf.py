"""GGUF (llama.cpp's format): magic ``GGUF``, a version, tensor and key/value counts, the
key/value metadata, the tensor infos (name, dims, ggml type, offset), padding to the
alignment, then the tensor data.

Two kinds of risk. Structural: counts, string lengths, dims and offsets that do not fit the
file make a reader allocate or read out of bounds (llama.cpp has had such CVEs): high.
Code: the chat template (``tokenizer.chat_template``) is a Jinja template that servers
render; one that reaches Python internals (``__class__``, ``__globals__``, ``cycler``,
``os.popen``...) escapes an unsandboxed renderer (server-side template injection):
critical. Only the metadata and tensor infos are read, never the tensor data."""

from __future__ import annotations

import struct

from ocimodel.scanning.findings import Finding, Severity
from ocimodel.scanning.formats import Source
from ocimodel.scanning.formats.chat_template import template_findings
from ocimodel.scanning.formats.randomaccess import ChunkReader

__all__ = ["SCANNERS", "GgufScanner"]

MAGIC = b"GGUF"
# Metadata value types -> fixed size in bytes (8 string and 9 array vary).
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_DEPTH = 4  # arrays of arrays: nothing real nests deeper
_STRING_WINDOW = 256 << 10
# ggml type -> (elements per block, bytes per block), as ggml defines them.
GGML_TYPES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
    15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18),
    21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4),
    27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}  # fmt: skip

# Names whose appearance inside a Jinja tag reaches Python objects a chat template has no
# use for: the classic SSTI gadget chains start from one of them.
class _Bad(Exception):
    def __init__(self, rule: str, detail: str, offset: int) -> None:
        super().__init__(detail)
        self.rule, self.detail, self.offset = rule, detail, offset


class _Cursor:
    def __init__(self, reader: ChunkReader, wide: bool) -> None:
        self.reader, self.pos, self.wide = reader, 0, wide

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > self.reader.size:
            raise _Bad("gguf.truncated", f"{what} of {n} bytes runs past the end of the file", self.pos)
        data = self.reader.read(self.pos, n)
        self.pos += n
        return data

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack("<Q", self.take(8, what))[0]

    def count(self, what: str) -> int:  # version 1 wrote 32-bit counts and lengths
        return self.u64(what) if self.wide else self.u32(what)

    def string(self, what: str) -> str:
        at = self.pos
        length = self.count(f"{what} length")
        if length > self.reader.size - self.pos:
            raise _Bad("gguf.string.out-of-bounds", f"{what}: length {length} runs past the end of the file", at)
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad("gguf.string.not-utf8", f"{what} is not UTF-8", at) from None


class GgufScanner:
    name = "gguf"

    def detect(self, head: bytes, size: int) -> bool:
        # The version too: a text that starts with the word GGUF is not a model, and no
        # reader loads a version it does not know.
        return head[:4] == MAGIC and head[4:8] in (b"\x01\0\0\0", b"\x02\0\0\0", b"\x03\0\0\0")

    def scan(self, source: Source) -> list[Finding]:
        findings: list[Finding] = []

        def add(severity: Severity, rule: str, detail: str, offset: int | None) -> None:
            findings.append(Finding(file=source.name, format=self.name, severity=severity, rule=rule,
                                    detail=detail, offset=offset))  # fmt: skip

        reader = ChunkReader(source)
        cursor = _Cursor(reader, wide=True)
        try:
            self._scan(cursor, add)
        except _Bad as bad:
            add(Severity.HIGH, bad.rule, bad.detail, bad.offset)
        return findings

    def _value(self, cursor: _Cursor, vtype: int, key: str, depth: int = 0):
        at = cursor.pos
        if vtype in _FIXED:
            return cursor.take(_FIXED[vtype], key)
        if vtype == _STRING:
            return cursor.string(f"value of {key!r}")
        if vtype == _ARRAY and depth < _MAX_DEPTH:
            itype = cursor.u32(f"{key!r} array type")
            n = cursor.count(f"{key!r} array length")
            least = _FIXED.get(itype, 8 if cursor.wide else 4)
            if itype not in _FIXED and itype not in (_STRING, _ARRAY):
                raise _Bad("gguf.metadata.type", f"{key!r}: unknown array item type {itype}", at)
            if n * least > cursor.reader.size - cursor.pos:
                raise _Bad("gguf.metadata.array-out-of-bounds",
                           f"{key!r}: {n} items cannot fit in the rest of the file", at)  # fmt: skip
            if itype in _FIXED:
                cursor.take(n * _FIXED[itype], key)
                return None
            if itype == _STRING and not key.startswith("tokenizer.chat_template"):
                self._skip_strings(cursor, n, key)  # a vocabulary: 100k+ strings, not needed
                return None
            items = [self._value(cursor, itype, key, depth + 1) for _ in range(n)]
            return items if itype == _STRING else None
        if vtype == _ARRAY:
            raise _Bad("gguf.metadata.depth", f"{key!r}: arrays nested deeper than {_MAX_DEPTH}", at)
        raise _Bad("gguf.metadata.type", f"{key!r}: unknown value type {vtype}", at)

    @staticmethod
    def _skip_strings(cursor: _Cursor, n: int, key: str) -> None:
        """Step over ``n`` strings, checking each length, a window of the file at a time
        (a per-string read costs seconds on a large vocabulary). The window is 256 KiB: a
        1 MiB one fetched past the header into tensor data on a remote scan (2.1 MB for an
        856 kB header in benchmarks/scan_remote.py)."""
        width = 8 if cursor.wide else 4
        fmt = "<Q" if cursor.wide else "<I"
        size = cursor.reader.size
        window_at, window = cursor.pos, b""
        pos = cursor.pos
        for _ in range(n):
            if pos + width > window_at + len(window):
                window_at, window = pos, cursor.reader.read(pos, _STRING_WINDOW)
                if len(window) < width:
                    raise _Bad("gguf.truncated", f"{key!r}: a string length runs past the end of the file", pos)
            (length,) = struct.unpack_from(fmt, window, pos - window_at)
            if length > size - pos - width:
                raise _Bad("gguf.string.out-of-bounds", f"{key!r}: a string of {length} bytes runs past the end of the file", pos)
            pos += width + length
        cursor.pos = pos

    def _scan(self, cursor: _Cursor, add) -> None:
        reader = cursor.reader
        cursor.take(4, "magic")
        version = cursor.u32("version")
        if version not in (1, 2, 3):
            add(Severity.HIGH, "gguf.version", f"unknown GGUF version {version}", 4)
            return
        cursor.wide = version >= 2
        n_tensors = cursor.count("tensor count")
        n_kv = cursor.count("metadata count")
        # Each key/value takes at least 13 bytes, each tensor info at least 24: counts
        # beyond what the file can hold make a reader allocate for nothing.
        if n_kv * 13 > reader.size or n_tensors * 24 > reader.size:
            add(Severity.HIGH, "gguf.counts", f"{n_tensors} tensors and {n_kv} metadata entries cannot fit in {reader.size} bytes", 8)
            return
        alignment = 32
        for _ in range(n_kv):
            at = cursor.pos
            key = cursor.string("metadata key")
            vtype = cursor.u32(f"type of {key!r}")
            value_at = cursor.pos
            value = self._value(cursor, vtype, key)
            if key == "general.alignment":
                if vtype != 4:
                    add(Severity.HIGH, "gguf.alignment", f"general.alignment has type {vtype}, not uint32", at)
                else:
                    alignment = struct.unpack("<I", value)[0]
                    if alignment == 0 or alignment & (alignment - 1):
                        add(Severity.HIGH, "gguf.alignment", f"general.alignment {alignment} is not a power of two", at)
                        alignment = 32
            if key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template."):
                templates = value if isinstance(value, list) else [value]
                for template in templates:
                    if isinstance(template, str):
                        for severity, rule, detail, offset in template_findings(template):
                            add(severity, rule, f"{key}: {detail}", value_at + 8 + offset)

        infos: list[tuple[int, int, str, int]] = []
        for _ in range(n_tensors):
            at = cursor.pos
            name = cursor.string("tensor name")
            n_dims = cursor.u32(f"tensor {name!r} dimension count")
            if n_dims > _MAX_DIMS:
                raise _Bad("gguf.tensor.dims", f"tensor {name!r}: {n_dims} dimensions (at most {_MAX_DIMS})", at)
            dims = [cursor.count(f"tensor {name!r} dimension") for _ in range(n_dims)]
            ggml_type = cursor.u32(f"tensor {name!r} type")
            offset = cursor.u64(f"tensor {name!r} offset")
            if ggml_type not in GGML_TYPES:
                add(Severity.HIGH, "gguf.tensor.type", f"tensor {name!r}: unknown ggml type {ggml_type}", at)
                continue
            block, block_bytes = GGML_TYPES[ggml_type]
            count = 1
            for d in dims:
                count *= d
            if dims and dims[0] % block:
                add(Severity.HIGH, "gguf.tensor.block", f"tensor {name!r}: first dimension {dims[0]} is not a multiple of the block size {block}", at)
                continue
            if offset % alignment:
                add(Severity.HIGH, "gguf.tensor.unaligned", f"tensor {name!r}: offset {offset} is not a multiple of {alignment}", at)
            infos.append((offset, offset + count // block * block_bytes, name, at))

        data_start = -(-cursor.pos // alignment) * alignment
        data_size = reader.size - data_start
        infos.sort()
        end_so_far, previous = 0, None
        for begin, end, name, at in infos:
            if end > data_size:
                add(Severity.HIGH, "gguf.tensor.out-of-bounds",
                    f"tensor {name!r}: data [{begin}, {end}) runs past the {max(data_size, 0)} bytes of data", at)  # fmt: skip
            if begin < end_so_far:
                add(Severity.HIGH, "gguf.tensor.overlap", f"tensor {name!r} overlaps tensor {previous!r}", at)
            end_so_far, previous = max(end_so_far, end), name


SCANNERS = [GgufScanner()]
