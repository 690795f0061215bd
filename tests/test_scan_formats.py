"""The format scanners for everything that is not a pickle (issue 16), on files built from
the published formats (tests/support/scan_corpus_formats.py): every malicious file is
claimed by its format's scanner and judged at the severity its risk carries (critical for
what runs code or writes outside the model), no benign file written by the real library
is flagged at high or above, and a scanner reads only the bytes it needs."""

from __future__ import annotations

import json
import struct
import sys
from functools import cache

import pytest

from ocimodel.scanning.findings import Severity, worst
from ocimodel.scanning.formats import HEAD_BYTES
from ocimodel.scanning.formats.catalog import all_scanners
from ocimodel.scanning.formats.chat_template import template_findings
from ocimodel.scanning.formats.h5 import H5Scanner
from ocimodel.scanning.formats.randomaccess import BytesSource
from ocimodel.scanning.formats.safetensors_format import SafetensorsScanner
from tests.support.scan_corpus_formats import (
    benign_files,
    keras_config,
    malicious_files,
    safetensors_bytes,
)


# The corpus is built once (the real libraries write the benign files: a few seconds).
@cache
def _malicious():
    return {f.name: f for f in malicious_files()}


@cache
def _benign():
    return {f.name: f for f in benign_files()}


def _scan(name: str, data: bytes):
    """What the engine does for one file: every scanner whose detect accepts the head."""
    source = BytesSource(name, data)
    claimed = [s for s in all_scanners() if s.detect(data[:HEAD_BYTES], len(data))]
    return [s.name for s in claimed], [f for s in claimed for f in s.scan(source)]


# Other scanners (the pickle family) may claim a file too once the catalog holds them: the
# checks below ask that this file's own scanner claims it and judges it, and that nothing
# any scanner says about a benign file reaches high.
@pytest.mark.parametrize("name", list(_malicious()))
def test_malicious_file_found_at_its_severity(name):
    corpus = _malicious()[name]
    formats, findings = _scan(name, corpus.data)
    assert corpus.format in formats, f"{name}: claimed by {formats}"
    own = [f for f in findings if f.format in (corpus.format, "keras")]
    assert worst(own) == corpus.expect, f"{name} ({corpus.why}): {[(f.severity.value, f.rule, f.detail) for f in findings]}"


@pytest.mark.parametrize("name", list(_benign()))
def test_benign_file_not_flagged(name):
    corpus = _benign()[name]
    formats, findings = _scan(name, corpus.data)
    assert corpus.format in formats, f"{name}: claimed by {formats}"
    bad = [(f.severity.value, f.rule, f.detail) for f in findings if f.severity.at_least(Severity.HIGH)]
    assert not bad, f"{name}: {bad}"


def test_formats_are_judged_by_bytes_not_names():
    """A GGUF named .safetensors is scanned as GGUF; a safetensors named .onnx as safetensors."""
    gguf = _malicious()["ssti-cycler.gguf"].data
    formats, findings = _scan("model.safetensors", gguf)
    assert "gguf" in formats and "safetensors" not in formats and worst(findings) is Severity.CRITICAL
    formats, _ = _scan("model.onnx", _benign()["model.safetensors"].data)
    assert "safetensors" in formats and "onnx" not in formats


class _CountingSource:
    """A sparse 1 GiB safetensors file: only the header exists; counts the bytes asked for."""

    def __init__(self, head: bytes, size: int) -> None:
        self.name, self.size, self._head, self.fetched = "big.safetensors", size, head, 0

    def read_at(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.size - offset))
        self.fetched += length
        data = self._head[offset : offset + length]
        return data + b"\0" * (length - len(data))

    def open(self):
        raise AssertionError("a safetensors scan must not stream the file")


def test_safetensors_reads_only_its_header():
    tensors, offset = {}, 0
    for i in range(200):  # 200 tensors of 5 MiB each: ~1 GiB of data
        size = 5 << 20
        tensors[f"layer.{i}.weight"] = {"dtype": "F32", "shape": [size // 4], "data_offsets": [offset, offset + size]}
        offset += size
    head = safetensors_bytes(tensors, b"")
    source = _CountingSource(head, len(head) + offset)
    assert SafetensorsScanner().scan(source) == []
    assert source.fetched <= len(head) < 1 << 20


def test_gguf_chat_template_rules():
    """Ordinary templates (namespace, loops, filters) pass; gadget chains do not."""
    assert template_findings("{% set ns = namespace(x=1) %}{{ messages[0]['content'] | trim }}") == []
    assert template_findings("text about os and popen outside tags {{ x }}") == []
    assert template_findings("{{ x.__class__ }}")[0][0] is Severity.CRITICAL
    assert template_findings("{{ cycler }}")[0][0] is Severity.CRITICAL
    assert template_findings("{{ x | attr(name) }}")[0][0] is Severity.HIGH


def test_h5_config_read_without_h5py(monkeypatch):
    """The pure reader finds a Keras 2 Lambda with h5py absent; where it stops (dense
    attribute storage) and h5py is absent, the report says the config was not checked."""
    monkeypatch.setitem(sys.modules, "h5py", None)
    findings = H5Scanner().scan(BytesSource("m.h5", _malicious()["lambda-keras2.h5"].data))
    assert [(f.severity, f.rule) for f in findings] == [(Severity.CRITICAL, "keras.lambda.bytecode")]
    findings = H5Scanner().scan(BytesSource("m.h5", _malicious()["lambda-dense.h5"].data))
    assert [(f.severity, f.rule) for f in findings] == [(Severity.INFO, "h5.config.unread")]


def test_h5_reads_only_the_attributes():
    """A Keras .h5 with 8 MiB of weights: the config is found from a few blocks."""
    import io

    import h5py
    import numpy as np

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.attrs["model_config"] = json.dumps(keras_config())
        f.create_dataset("model_weights/big", data=np.ones((2048, 1024), np.float32))
    data = buffer.getvalue()
    source = _CountingSource(data, len(data))
    assert H5Scanner().scan(source) == []
    assert source.fetched < 512 << 10 < len(data)


def test_safetensors_truncated_length_is_high():
    data = struct.pack("<Q", 100) + b"{}"
    findings = SafetensorsScanner().scan(BytesSource("x", data))
    assert worst(findings) is Severity.HIGH


def test_archive_members_go_to_the_inner_scan():
    """With the engine's scan as ``inner``, a poisoned GGUF inside a tarball is found, named
    by its member path."""
    import io
    import tarfile

    from ocimodel.scanning.formats.archives import ArchiveScanner

    gguf = _malicious()["ssti-joiner.gguf"].data
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("model/model.gguf")
        info.size = len(gguf)
        tar.addfile(info, io.BytesIO(gguf))

    def inner(source):
        return _scan(source.name, source.read_at(0, source.size))[1]

    findings = ArchiveScanner(inner=inner).scan(BytesSource("bundle.tar.gz", buffer.getvalue()))
    assert worst(findings) is Severity.CRITICAL
    assert any(f.format == "gguf" and f.file.endswith("model/model.gguf") for f in findings)


def test_tar_devices_and_setuid_are_high():
    import io
    import tarfile

    from ocimodel.scanning.formats.archives import ArchiveScanner

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        device = tarfile.TarInfo("dev/sda")
        device.type = tarfile.CHRTYPE
        tar.addfile(device)
        suid = tarfile.TarInfo("bin/helper")
        suid.mode, suid.size = 0o4755, 1
        tar.addfile(suid, io.BytesIO(b"x"))
    findings = ArchiveScanner().scan(BytesSource("t.tar", buffer.getvalue()))
    assert {f.rule for f in findings} == {"archive.device", "archive.setuid"}
    assert worst(findings) is Severity.HIGH


def test_onnx_scan_skips_weight_payloads():
    """The ONNX walk reads the message structure, not the initializers' raw data."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((1024, 1024), np.float32), "W")  # 4 MiB inline
    graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"], domain="com.evil")], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1024])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1024])], [weight])  # fmt: skip
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    source = _CountingSource(data, len(data))
    formats, _ = _scan("m.onnx", data)
    findings = [f for s in all_scanners() if s.name == "onnx" for f in s.scan(source)]
    assert "onnx" in formats and [f.rule for f in findings] == ["onnx.domain.unknown"]
    assert source.fetched < 512 << 10 < len(data)


def test_onnx_with_a_multiline_doc_string_is_still_onnx():
    """Detection reads the head's text fields; a doc string with newlines is text too."""
    import onnx
    from onnx import helper

    model = onnx.ModelProto()
    model.ParseFromString(_malicious()["external-dotdot.onnx"].data)
    slim = helper.make_model(model.graph, opset_imports=list(model.opset_import), doc_string="line one\nline two\n")
    formats, findings = _scan("m.onnx", slim.SerializeToString())
    assert "onnx" in formats and worst(findings) is Severity.CRITICAL


def test_hostile_bytes_never_crash_a_scanner():
    """Corpus files with flipped bytes, truncated, or overwritten headers: every scanner that
    claims one returns findings, never an exception (a crash would leave the file unjudged).
    Seeded: the same mutations every run."""
    import random

    rng = random.Random(16)
    files = list(_malicious().values()) + list(_benign().values())
    scanners = all_scanners()
    for _ in range(400):
        data = bytearray(rng.choice(files).data)
        choice = rng.random()
        if choice < 0.4:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.7:
            del data[rng.randrange(len(data)) :]
        else:
            at = rng.randrange(min(len(data), HEAD_BYTES))
            data[at : at + 8] = rng.randbytes(8)
        data = bytes(data)
        for scanner in scanners:
            if scanner.detect(data[:HEAD_BYTES], len(data)):
                scanner.scan(BytesSource("mutated", data))


@pytest.mark.parametrize("name", ["deep.safetensors", "deep.keras", "tokenizer_config.json"])
def test_deeply_nested_json_is_a_finding_not_a_crash(name):
    import io
    import zipfile

    deep = b"[" * 100_000 + b"]" * 100_000
    if name == "deep.safetensors":
        header = b'{"__metadata__": {"a": ' + deep + b"}}"
        data = struct.pack("<Q", len(header)) + header
    elif name == "deep.keras":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("metadata.json", "{}")
            archive.writestr("config.json", b'{"a": ' + deep + b"}")
        data = buffer.getvalue()
    else:
        data = b'{"tokenizer_class": "x", "chat_template": ' + deep + b"}"
    formats, findings = _scan(name, data)
    assert formats
    if name != "tokenizer_config.json":  # unreadable JSON holds no template a server renders
        assert worst(findings) is Severity.HIGH


def test_zip_with_an_unknown_compression_method_is_malformed():
    """zipfile raises NotImplementedError (not BadZipFile) for it: still a finding."""
    import io
    import zipfile

    from ocimodel.scanning.formats.archives import ArchiveScanner

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", b"hello")
    data = bytearray(buffer.getvalue())
    central = data.rfind(b"PK\x01\x02")
    data[8:10] = data[central + 10 : central + 12] = (99).to_bytes(2, "little")  # method 99
    findings = ArchiveScanner().scan(BytesSource("a.zip", bytes(data)))
    assert [(f.severity, f.rule) for f in findings] == [(Severity.HIGH, "archive.malformed")]


@pytest.mark.parametrize(
    "text",
    [b'{"abc": {"d": 1}}', b"GGUF models run on llama.cpp; see {% raw %}", b"\x89HDF is a magic number"],
)
def test_text_that_looks_like_a_header_is_not_claimed(text):
    """A JSON document whose ninth byte is "{" is not safetensors, a README that starts
    with GGUF is not a GGUF model: no format, so no false alarm."""
    formats, findings = _scan("README.md", text)
    assert not set(formats) & {"safetensors", "gguf", "hdf5"}
    assert not [f for f in findings if f.severity.at_least(Severity.LOW)]


def test_archives_nested_past_the_depth_are_reported_not_skipped():
    import io
    import zipfile

    from ocimodel.scanning.formats.archives import MAX_DEPTH, ArchiveScanner

    data = b"../../evil"  # never reached: the innermost level is past the budget
    for level in range(MAX_DEPTH + 1):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(f"level{level}.zip" if level else "x.txt", data)
        data = buffer.getvalue()
    findings = ArchiveScanner().scan(BytesSource("deep.zip", data))
    assert [(f.severity, f.rule) for f in findings] == [(Severity.INFO, "archive.depth")]


def test_zip_entries_sharing_their_data_are_a_bomb():
    """Two central-directory entries pointing at one local header: the overlapping zip
    bomb's shape (each entry re-reads the same compressed bytes)."""
    import io
    import zipfile

    from ocimodel.scanning.formats.archives import ArchiveScanner

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", b"aaaa")
        archive.writestr("b.txt", b"aaaa")
    data = bytearray(buffer.getvalue())
    second = data.rfind(b"PK\x01\x02")
    data[second + 42 : second + 46] = (0).to_bytes(4, "little")  # b.txt's local header offset := a.txt's
    findings = ArchiveScanner().scan(BytesSource("overlap.zip", bytes(data)))
    assert "archive.overlap" in {f.rule for f in findings}
    assert worst(findings) is Severity.HIGH
