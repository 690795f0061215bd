"""``keras_metadata.pb``: what tf.keras (Keras 2) writes beside ``saved_model.pb`` in a
SavedModel directory. A protobuf SavedMetadata: repeated ``nodes`` (1), each a SavedObject
with ``node_path`` (3), ``identifier`` (4, ``_tf_keras_layer``, ``_tf_keras_model``...),
``metadata`` (5, a JSON string holding the layer's class and config) and ``version`` (6).

``tf.keras.models.load_model`` rebuilds every layer from that JSON, so a Lambda layer's
marshalled bytecode in it runs like one in a ``.keras`` config: the same rules apply
(keras.py). Recognised by structure and by the ``_tf_keras_`` identifiers, never by name."""

from __future__ import annotations

import json

from ocimodel.scanning.findings import Finding, Severity
from ocimodel.scanning.formats import Source
from ocimodel.scanning.formats.keras import config_findings
from ocimodel.scanning.formats.randomaccess import ChunkReader
from ocimodel.scanning.protowire import LEN, ProtoError, fields, head_fields

__all__ = ["SCANNERS", "KerasMetadataScanner"]

_NODE_FIELDS = {2, 3, 4, 5, 6}


class KerasMetadataScanner:
    name = "keras-metadata"

    def detect(self, head: bytes, size: int) -> bool:
        if b"_tf_keras_" not in head:
            return False
        seen = head_fields(head, size)
        if not seen or any(f.number != 1 or f.wire_type != LEN for f in seen):
            return False
        first = seen[0]
        inner = head_fields(head[first.start : first.end], first.length)
        return bool(inner) and all(f.number in _NODE_FIELDS for f in inner)

    def scan(self, source: Source) -> list[Finding]:
        findings: list[Finding] = []
        reader = ChunkReader(source, chunk=1 << 16, keep=8)

        def add(severity: Severity, rule: str, detail: str, offset: int | None) -> None:
            findings.append(Finding(file=source.name, format=self.name, severity=severity, rule=rule,
                                    detail=detail, offset=offset))  # fmt: skip

        try:
            for node in fields(reader, 0, reader.size):
                if node.number != 1 or node.wire_type != LEN:
                    continue
                path, metadata = "", None
                for f in fields(reader, node.start, node.end):
                    if f.number == 3 and f.wire_type == LEN:
                        path = reader.read(f.start, f.length).decode("utf-8", "replace")
                    elif f.number == 5 and f.wire_type == LEN:
                        metadata = f
                if metadata is None:
                    continue
                try:
                    config = json.loads(reader.read(metadata.start, metadata.length))
                except (ValueError, RecursionError) as exc:
                    add(Severity.MEDIUM, "keras-metadata.invalid-json", f"node {path!r}: metadata is not JSON: {exc}", metadata.offset)
                    continue
                for severity, rule, detail in config_findings(config):
                    add(severity, rule, f"node {path!r}: {detail}", metadata.offset)
        except ProtoError as exc:
            add(Severity.HIGH, "keras-metadata.malformed", f"not a well-formed SavedMetadata: {exc}", exc.offset)
        return findings


SCANNERS = [KerasMetadataScanner()]
