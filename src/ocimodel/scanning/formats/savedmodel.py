"""TensorFlow SavedModel: ``saved_model.pb``, a protobuf SavedModel holding MetaGraphDefs
whose GraphDef (and its function library) lists every op the model runs. Read with
:mod:`ocimodel.scanning.protowire` (tensorflow is far too large to import for a scan).

A SavedModel runs no Python on load, but its graph runs on every call of the model, with
the rights of the serving process. Ops that call back into Python (PyFunc, EagerPyFunc) or
write files (WriteFile, PrintV2 to a file, TFRecord writers) are critical; ops that read
files or list directories (ReadFile, MatchingFiles, file readers and datasets) are high (a
model that returns /etc/passwd as its output); a save or restore whose path is a constant
outside the model (absolute, ``..``) is critical. Ordinary checkpoint saving (Save,
SaveV2, RestoreV2 fed by the ``saver_filename`` placeholder) is left alone: every
SavedModel has it."""

from __future__ import annotations

from ocimodel.scanning.findings import Finding, Severity
from ocimodel.scanning.formats import Source
from ocimodel.scanning.formats.onnx_format import escapes
from ocimodel.scanning.formats.randomaccess import ChunkReader
from ocimodel.scanning.protowire import LEN, VARINT, ProtoError, fields, head_fields

__all__ = ["DANGEROUS_OPS", "SCANNERS", "SavedModelScanner"]

DANGEROUS_OPS: dict[str, tuple[Severity, str]] = {
    **{op: (Severity.CRITICAL, "calls a Python function of the serving process")
       for op in ("PyFunc", "PyFuncStateless", "EagerPyFunc")},
    **{op: (Severity.CRITICAL, "writes files")
       for op in ("WriteFile", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord")},
    **{op: (Severity.HIGH, "reads or lists files")
       for op in ("ReadFile", "MatchingFiles", "WholeFileReader", "WholeFileReaderV2", "TextLineReader",
                  "TextLineReaderV2", "FixedLengthRecordReader", "FixedLengthRecordReaderV2",
                  "TFRecordReader", "TFRecordReaderV2", "LMDBReader", "ImmutableConst",
                  "TextLineDataset", "TFRecordDataset", "TFRecordDatasetV2", "FixedLengthRecordDataset",
                  "FixedLengthRecordDatasetV2", "LoadDataset", "ExperimentalLMDBDataset")},
    **{op: (Severity.HIGH, "writes files")
       for op in ("SaveDataset", "SaveDatasetV2", "CreateSummaryFileWriter", "CreateSummaryDbWriter")},
}  # fmt: skip
# Ops whose first input is a file name or prefix: critical when it is a constant outside the model.
_PATH_OPS = {"Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints", "Restore", "RestoreV2", "RestoreSlice",
             "WriteFile", "ReadFile", "MatchingFiles"}  # fmt: skip


class SavedModelScanner:
    name = "tf-savedmodel"

    def detect(self, head: bytes, size: int) -> bool:
        # saved_model_schema_version (1, varint) then meta_graphs (2): a MetaGraphDef whose
        # own fields are MetaGraphDef's (1..9, length-delimited).
        seen = head_fields(head, size)
        if not seen or {f.number for f in seen} - {1, 2} or not any(f.number == 2 for f in seen):
            return False
        if any(f.number == 1 and (f.wire_type != VARINT or f.value != 1) for f in seen):
            return False
        graph = next(f for f in seen if f.number == 2)
        if graph.wire_type != LEN or graph.start >= len(head):
            return False
        inner = head_fields(head[graph.start : graph.end], graph.length)
        return bool(inner) and all(1 <= f.number <= 9 and f.wire_type == LEN for f in inner)

    def scan(self, source: Source) -> list[Finding]:
        findings: list[Finding] = []
        reader = ChunkReader(source, chunk=1 << 16, keep=8)

        def add(severity: Severity, rule: str, detail: str, offset: int | None) -> None:
            findings.append(Finding(file=source.name, format=self.name, severity=severity, rule=rule,
                                    detail=detail, offset=offset))  # fmt: skip

        def text(f) -> str:
            return reader.read(f.start, f.length).decode("utf-8", "replace")

        def node(start: int, end: int, where: str, consts: dict[str, str], nodes: list) -> None:
            name, op, inputs, attrs = "", "", [], {}
            for f in fields(reader, start, end):
                if f.wire_type != LEN:
                    continue
                if f.number == 1:
                    name = text(f)
                elif f.number == 2:
                    op = text(f)
                elif f.number == 3:
                    inputs.append(text(f))
                elif f.number == 5:  # attr: map entry (key 1, AttrValue 2)
                    key, value = "", None
                    for g in fields(reader, f.start, f.end):
                        if g.number == 1 and g.wire_type == LEN:
                            key = text(g)
                        elif g.number == 2 and g.wire_type == LEN:
                            value = g
                    if value is not None:
                        attrs[key] = value
            if op == "Const" and "value" in attrs:  # AttrValue.tensor (8) -> string_val (8)
                for g in fields(reader, attrs["value"].start, attrs["value"].end):
                    if g.number == 8 and g.wire_type == LEN:
                        for h in fields(reader, g.start, g.end):
                            if h.number == 8 and h.wire_type == LEN:
                                consts[name] = text(h)
            stream = ""
            if op == "PrintV2" and "output_stream" in attrs:
                stream = "".join(text(g) for g in fields(reader, attrs["output_stream"].start, attrs["output_stream"].end)
                                 if g.number == 2 and g.wire_type == LEN)  # fmt: skip
            nodes.append((name, op, inputs, stream, start, where))

        def graph_nodes(start: int, end: int, where: str) -> None:
            consts: dict[str, str] = {}
            nodes: list = []
            for f in fields(reader, start, end):
                if f.wire_type != LEN:
                    continue
                if f.number == 1 and where == "graph":
                    node(f.start, f.end, where, consts, nodes)
                elif f.number == 3 and where != "graph":
                    node(f.start, f.end, where, consts, nodes)
                elif f.number == 2 and where == "graph":  # library: FunctionDefLibrary.function (1)
                    for g in fields(reader, f.start, f.end):
                        if g.number == 1 and g.wire_type == LEN:
                            fname = ""
                            for h in fields(reader, g.start, g.end):
                                if h.number == 1 and h.wire_type == LEN:  # signature: OpDef.name (1)
                                    fname = next((text(k) for k in fields(reader, h.start, h.end)
                                                  if k.number == 1 and k.wire_type == LEN), "")  # fmt: skip
                            graph_nodes(g.start, g.end, f"function {fname!r}")
            for name, op, inputs, stream, offset, place in nodes:
                label = f"op {op} (node {name!r} in the {place})"
                if op in DANGEROUS_OPS:
                    severity, why = DANGEROUS_OPS[op]
                    add(severity, f"savedmodel.op.{op}", f"{label} {why}", offset)
                if op == "PrintV2" and stream.startswith("file://"):
                    add(Severity.CRITICAL, "savedmodel.op.PrintV2-file", f"{label} writes to {stream}", offset)
                if op in _PATH_OPS and inputs:
                    path = consts.get(inputs[0].split(":")[0].lstrip("^"))
                    if path is not None and escapes(path):
                        add(Severity.CRITICAL, "savedmodel.op.path-outside",
                            f"{label} works on the fixed path {path!r}, outside the model", offset)  # fmt: skip

        try:
            for f in fields(reader, 0, reader.size):
                if f.number == 2 and f.wire_type == LEN:  # MetaGraphDef
                    for g in fields(reader, f.start, f.end):
                        if g.number == 2 and g.wire_type == LEN:  # graph_def
                            graph_nodes(g.start, g.end, "graph")
        except ProtoError as exc:
            add(Severity.HIGH, "savedmodel.malformed", f"not a well-formed SavedModel: {exc}", exc.offset)
        return findings


SCANNERS = [SavedModelScanner()]
