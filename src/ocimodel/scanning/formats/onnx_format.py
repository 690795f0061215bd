"""ONNX: a protobuf ModelProto, read with :mod:`ocimodel.scanning.protowire` (the ``onnx``
package is not imported: tens of megabytes with native code for a handful of fields, and
a scan must not depend on what it scans).

Checks: tensors whose external data ``location`` leaves the model's directory (absolute,
``..``, a NUL byte): onnxruntime and onnx.load would read any file of the host into the
weights, or (when saving) write there: critical. Nodes in operator domains that are neither
ONNX's, Microsoft's onnxruntime contrib ops, nor functions defined in the model itself:
loading needs a custom operator library (native code from elsewhere): medium, for review.

Only the message structure is walked: initializer payloads are skipped without reading."""

from __future__ import annotations

from ocimodel.scanning.findings import Finding, Severity
from ocimodel.scanning.formats import Source
from ocimodel.scanning.formats.randomaccess import ChunkReader
from ocimodel.scanning.protowire import LEN, VARINT, ProtoError, fields, head_fields

__all__ = ["KNOWN_DOMAINS", "SCANNERS", "OnnxScanner", "escapes"]

KNOWN_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training"})

# ModelProto: every field ONNX defines, with its wire type (detection checks the head
# against it); 7 graph, 8 opset_import, 25 functions.
_MODEL_FIELDS = {1: VARINT, 2: LEN, 3: LEN, 4: LEN, 5: VARINT, 6: LEN, 7: LEN, 8: LEN, 14: LEN, 20: LEN, 25: LEN, 26: LEN}
_MAX_DEPTH = 64  # subgraphs in If/Loop/Scan nest; nothing real goes this deep


def escapes(location: str) -> bool:
    """Whether an external data path leaves the directory of the model."""
    if not location or "\x00" in location:
        return True
    if location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
        return True
    return ".." in location.replace("\\", "/").split("/")


def _is_text(head: bytes, f) -> bool:
    if f.end > len(head):
        return False
    try:
        text = head[f.start : f.end].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.replace("\n", "").replace("\r", "").replace("\t", "").isprintable()


class OnnxScanner:
    name = "onnx"

    def detect(self, head: bytes, size: int) -> bool:
        # ir_version (field 1, varint, 1..20 so far) comes first in every writer, and
        # every top-level field must be one ModelProto defines, with its wire type.
        if len(head) < 4 or head[0] != 0x08:
            return False

        seen = head_fields(head, size)
        if not seen:
            return False
        for f in seen:
            if _MODEL_FIELDS.get(f.number) != f.wire_type:
                return False
            if f.number == 1 and not 1 <= f.value <= 20:
                return False
            if f.number in (2, 3, 4, 6) and not _is_text(head, f):
                return False  # a SavedModel's field 2 is a MetaGraphDef, not a producer name
        numbers = {f.number for f in seen}
        return 1 in numbers and bool(numbers & {2, 7, 8})

    def scan(self, source: Source) -> list[Finding]:
        findings: list[Finding] = []
        reader = ChunkReader(source, chunk=1 << 16, keep=8)

        def add(severity: Severity, rule: str, detail: str, offset: int | None) -> None:
            findings.append(Finding(file=source.name, format=self.name, severity=severity, rule=rule,
                                    detail=detail, offset=offset))  # fmt: skip

        def text(f) -> str:
            return reader.read(f.start, f.length).decode("utf-8", "replace")

        local_domains: set[str] = set()
        nodes: list[tuple[str, str, int]] = []  # (domain, op_type, offset)

        def tensor(start: int, end: int) -> None:
            name, external = "", []
            for f in fields(reader, start, end):
                if f.number == 8 and f.wire_type == LEN:
                    name = text(f)
                elif f.number == 13 and f.wire_type == LEN:  # external_data: key/value entries
                    entry = {g.number: text(g) for g in fields(reader, f.start, f.end) if g.wire_type == LEN}
                    if entry.get(1) == "location":
                        external.append((entry.get(2, ""), f.offset))
            for location, offset in external:
                if escapes(location):
                    add(Severity.CRITICAL, "onnx.external-data.escapes",
                        f"tensor {name!r} reads its data from {location!r}, outside the model", offset)  # fmt: skip

        def attribute(start: int, end: int, depth: int) -> None:
            for f in fields(reader, start, end):
                if f.wire_type != LEN:
                    continue
                if f.number in (6, 11):  # g, graphs
                    graph(f.start, f.end, depth + 1)
                elif f.number in (5, 10):  # t, tensors
                    tensor(f.start, f.end)
                elif f.number in (22, 23):  # sparse_tensor(s): values, indices
                    for g in fields(reader, f.start, f.end):
                        if g.number in (1, 2) and g.wire_type == LEN:
                            tensor(g.start, g.end)

        def node(start: int, end: int, depth: int) -> None:
            domain, op_type = "", ""
            for f in fields(reader, start, end):
                if f.wire_type != LEN:
                    continue
                if f.number == 7:
                    domain = text(f)
                elif f.number == 4:
                    op_type = text(f)
                elif f.number == 5:
                    attribute(f.start, f.end, depth)
            nodes.append((domain, op_type, start))

        def graph(start: int, end: int, depth: int) -> None:
            if depth > _MAX_DEPTH:
                raise ProtoError("graphs nested too deep", start)
            for f in fields(reader, start, end):
                if f.wire_type != LEN:
                    continue
                if f.number == 1:
                    node(f.start, f.end, depth)
                elif f.number == 5:
                    tensor(f.start, f.end)
                elif f.number == 15:
                    for g in fields(reader, f.start, f.end):
                        if g.number in (1, 2) and g.wire_type == LEN:
                            tensor(g.start, g.end)

        try:
            for f in fields(reader, 0, reader.size):
                if f.number == 7 and f.wire_type == LEN:
                    graph(f.start, f.end, 0)
                elif f.number == 20 and f.wire_type == LEN:  # training_info: initialization, algorithm graphs
                    for g in fields(reader, f.start, f.end):
                        if g.number in (1, 2) and g.wire_type == LEN:
                            graph(g.start, g.end, 0)
                elif f.number == 25 and f.wire_type == LEN:  # a function defined in the model
                    for g in fields(reader, f.start, f.end):
                        if g.number == 10 and g.wire_type == LEN:
                            local_domains.add(text(g))
                        elif g.number == 7 and g.wire_type == LEN:
                            node(g.start, g.end, 0)
        except ProtoError as exc:
            add(Severity.HIGH, "onnx.malformed", f"not a well-formed ModelProto: {exc}", exc.offset)

        unknown: dict[str, list[str]] = {}
        first: dict[str, int] = {}
        for domain, op_type, offset in nodes:
            if domain not in KNOWN_DOMAINS and domain not in local_domains:
                unknown.setdefault(domain, []).append(op_type)
                first.setdefault(domain, offset)
        for domain, ops in unknown.items():
            add(Severity.MEDIUM, "onnx.domain.unknown",
                f"operators {sorted(set(ops))} of domain {domain!r} need a custom operator library to load", first[domain])  # fmt: skip
        return findings


SCANNERS = [OnnxScanner()]
