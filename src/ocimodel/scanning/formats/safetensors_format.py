"""safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's
dtype, shape and ``[begin, end)`` offsets into the data that follows, then the data.

Nothing in a safetensors file runs on load, so nothing here is critical: the risks are
readers that trust the header (a hand-written or C++ reader may read or allocate out of
bounds: high) and bytes the header does not account for (a pickle or zip appended to a
file that passes for safetensors: a polyglot, high). Only the header is read: scanning a
10 GB model on a registry fetches 8 bytes plus its header."""

from __future__ import annotations

import json

from ocimodel.scanning.findings import Finding, Severity
from ocimodel.scanning.formats import Source

__all__ = ["SCANNERS", "SafetensorsScanner"]

# The reference library refuses headers over 100 MB; so do we.
MAX_HEADER = 100_000_000

# dtype -> bits per element, as the reference library (safetensors 0.8) defines them.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64,
    "F64": 64, "I64": 64, "U64": 64,
}  # fmt: skip


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class SafetensorsScanner:
    name = "safetensors"

    def detect(self, head: bytes, size: int) -> bool:
        # The header length, then a JSON object: '{' is the first header byte.
        if len(head) < 9 or head[8:9] != b"{":
            return False
        # A text file whose ninth byte is "{" (a JSON document) is not safetensors: a real
        # length has zero high bytes, so its 8 bytes are never all printable text.
        if all(0x20 <= b < 0x7F or b in b"\t\r\n" for b in head[:8]):
            return False
        return int.from_bytes(head[:8], "little") >= 2  # a wrong length is a finding

    def scan(self, source: Source) -> list[Finding]:
        findings: list[Finding] = []

        def add(severity: Severity, rule: str, detail: str, offset: int | None = None) -> None:
            findings.append(
                Finding(file=source.name, format=self.name, severity=severity, rule=rule, detail=detail, offset=offset)
            )

        length = int.from_bytes(source.read_at(0, 8), "little")
        if length > MAX_HEADER:
            add(Severity.HIGH, "safetensors.header.too-large", f"header length {length} over {MAX_HEADER} bytes", 0)
            return findings
        if 8 + length > source.size:
            add(Severity.HIGH, "safetensors.header.out-of-bounds",
                f"header length {length} runs past the end of the {source.size}-byte file", 0)  # fmt: skip
            return findings
        raw = source.read_at(8, length)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            add(Severity.HIGH, "safetensors.header.not-utf8", f"header is not UTF-8: {exc.reason}", 8 + exc.start)
            return findings
        try:
            header = json.loads(text, object_pairs_hook=_no_duplicates)
        except _Duplicate as exc:
            add(Severity.HIGH, "safetensors.header.duplicate-key",
                f"key {exc.args[0]!r} appears twice (readers disagree on which one counts)", 8)  # fmt: skip
            return findings
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting no header needs
            add(Severity.HIGH, "safetensors.header.invalid-json", f"header is not valid JSON: {exc}", 8)
            return findings
        if not isinstance(header, dict):
            add(Severity.HIGH, "safetensors.header.not-object", "header is not a JSON object", 8)
            return findings

        metadata = header.pop("__metadata__", None)
        if metadata is not None and not (
            isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
        ):
            add(Severity.HIGH, "safetensors.metadata.not-strings",
                "__metadata__ must map strings to strings (the reference library refuses anything else)", 8)  # fmt: skip

        data_size = source.size - 8 - length
        spans: list[tuple[int, int, str]] = []
        for name, info in header.items():
            if not isinstance(info, dict):
                add(Severity.HIGH, "safetensors.tensor.malformed", f"tensor {name!r}: entry is not an object", 8)
                continue
            extra = sorted(set(info) - {"dtype", "shape", "data_offsets"})
            if extra:
                add(Severity.LOW, "safetensors.tensor.extra-keys", f"tensor {name!r}: unknown keys {extra}", 8)
            dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
            if dtype not in DTYPE_BITS:
                add(Severity.HIGH, "safetensors.tensor.dtype", f"tensor {name!r}: unknown dtype {dtype!r}", 8)
            if not (isinstance(shape, list) and all(_is_int(d) for d in shape)):
                add(Severity.HIGH, "safetensors.tensor.shape", f"tensor {name!r}: shape {shape!r} is not a list of sizes", 8)
                shape = None
            if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                    and offsets[0] <= offsets[1]):  # fmt: skip
                add(Severity.HIGH, "safetensors.tensor.offsets",
                    f"tensor {name!r}: data_offsets {offsets!r} are not [begin, end] with begin <= end", 8)  # fmt: skip
                continue
            begin, end = offsets
            if end > data_size:
                add(Severity.HIGH, "safetensors.tensor.out-of-bounds",
                    f"tensor {name!r}: data [{begin}, {end}) runs past the {data_size} bytes of data", 8 + length + begin)  # fmt: skip
            if shape is not None and dtype in DTYPE_BITS:
                count = 1
                for d in shape:
                    count *= d
                bits = count * DTYPE_BITS[dtype]
                if bits % 8 or bits // 8 != end - begin:
                    add(Severity.HIGH, "safetensors.tensor.size-mismatch",
                        f"tensor {name!r}: shape {shape} of {dtype} needs {bits // 8 if bits % 8 == 0 else bits / 8} bytes, offsets span {end - begin}",
                        8 + length + begin)  # fmt: skip
            spans.append((begin, end, name))

        spans.sort()
        position, previous = 0, None
        for begin, end, name in spans:
            if begin < position:
                add(Severity.HIGH, "safetensors.tensor.overlap",
                    f"tensor {name!r} [{begin}, {end}) overlaps tensor {previous!r}", 8 + length + begin)  # fmt: skip
            elif begin > position:
                add(Severity.HIGH, "safetensors.data.gap",
                    f"{begin - position} bytes before tensor {name!r} belong to no tensor", 8 + length + position)  # fmt: skip
            position, previous = max(position, end), name
        if position < data_size:
            add(Severity.HIGH, "safetensors.data.trailing",
                f"{data_size - position} bytes after the last tensor belong to no tensor (a file appended?)",
                8 + length + position)  # fmt: skip
        return findings


SCANNERS = [SafetensorsScanner()]
