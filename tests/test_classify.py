"""File classification and model-format detection, on small real files built by hand."""

from __future__ import annotations

import json
import os
import pickle
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from ocimodel.errors import UsageError
from ocimodel.packaging.classify import (
    FileKind,
    FormatInfo,
    classify_file,
    detect_format,
    format_param_size,
    parse_kind,
    sniff_format,
)

MiB = 1024 * 1024
ITEMSIZE = {"F16": 2, "BF16": 2, "F32": 4, "I8": 1, "U8": 1, "I32": 4, "F64": 8}


# --------------------------------------------------------------------------- file builders


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]], *, metadata=True) -> bytes:
    """A genuine safetensors file: u64 header length, JSON header padded to 8, data."""
    header: dict[str, object] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = ITEMSIZE[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def gguf_bytes(tensors: list[tuple[str, list[int], int]], file_type: int | None = 1) -> bytes:
    """A GGUF v3 header: a few metadata keys (a string, a string array, a u32 array) and the
    tensor table. No tensor data: detection never reads it."""

    def s(text: str) -> bytes:
        b = text.encode()
        return struct.pack("<Q", len(b)) + b

    kvs = [
        s("general.architecture") + struct.pack("<I", 8) + s("llama"),
        s("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, 3)
        + s("<s>") + s("</s>") + s("hello"),
        s("tokenizer.ggml.token_type") + struct.pack("<IIQ", 9, 4, 3) + struct.pack("<3I", 1, 1, 1),
    ]
    if file_type is not None:
        kvs.append(s("general.file_type") + struct.pack("<II", 4, file_type))
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs)
    for name, dims, ttype in tensors:
        out += s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", ttype, 0)
    return out + bytes(64)


def write(root: Path, rel: str, data: bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def torch_zip(root: Path, rel: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": "storage"}, protocol=2))
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/data/0", bytes(4096))
        zf.writestr("archive/version", "3\n")
    return p


HDF5 = b"\x89HDF\r\n\x1a\n"


# --------------------------------------------------------------------------- classify_file


@pytest.mark.parametrize(
    ("relpath", "kind"),
    [
        # weights
        ("model.safetensors", FileKind.WEIGHT),
        ("model-00001-of-00002.safetensors", FileKind.WEIGHT),
        ("pytorch_model-00002-of-00002.bin", FileKind.WEIGHT),
        ("llama-7b.Q4_K_M.gguf", FileKind.WEIGHT),
        ("ggml-model-q4_0.ggml", FileKind.WEIGHT),
        ("pytorch_model.bin", FileKind.WEIGHT),
        ("model.pt", FileKind.WEIGHT),
        ("model.pth", FileKind.WEIGHT),
        ("last.ckpt", FileKind.WEIGHT),
        ("model.onnx", FileKind.WEIGHT),
        ("model.onnx_data", FileKind.WEIGHT),
        ("tf_model.h5", FileKind.WEIGHT),
        ("weights.hdf5", FileKind.WEIGHT),
        ("model.keras", FileKind.WEIGHT),
        ("frozen_graph.pb", FileKind.WEIGHT),
        ("model.tflite", FileKind.WEIGHT),
        ("clf.pkl", FileKind.WEIGHT),
        ("clf.pickle", FileKind.WEIGHT),
        ("clf.joblib", FileKind.WEIGHT),
        ("flax_model.msgpack", FileKind.WEIGHT),
        ("embeddings.npy", FileKind.WEIGHT),
        ("model_weights.npz", FileKind.WEIGHT),
        ("Model.mlmodel", FileKind.WEIGHT),
        ("model.engine", FileKind.WEIGHT),
        ("model.plan", FileKind.WEIGHT),
        ("resnet-0000.params", FileKind.WEIGHT),
        ("saved_model.pb", FileKind.WEIGHT),
        ("export/1/saved_model.pb", FileKind.WEIGHT),
        ("export/1/variables/variables.index", FileKind.WEIGHT),
        ("variables/variables.data-00000-of-00001", FileKind.WEIGHT),
        ("model.ckpt.data-00000-of-00001", FileKind.WEIGHT),
        ("model.ckpt.index", FileKind.WEIGHT),
        ("model-00001-of-00004.unknownext", FileKind.WEIGHT),
        ("MODEL.SAFETENSORS", FileKind.WEIGHT),
        # weight config
        ("config.json", FileKind.WEIGHT_CONFIG),
        ("generation_config.json", FileKind.WEIGHT_CONFIG),
        ("tokenizer.json", FileKind.WEIGHT_CONFIG),
        ("tokenizer_config.json", FileKind.WEIGHT_CONFIG),
        ("special_tokens_map.json", FileKind.WEIGHT_CONFIG),
        ("vocab.json", FileKind.WEIGHT_CONFIG),
        ("vocab.txt", FileKind.WEIGHT_CONFIG),
        ("merges.txt", FileKind.WEIGHT_CONFIG),
        ("tokenizer.model", FileKind.WEIGHT_CONFIG),
        ("spiece.model", FileKind.WEIGHT_CONFIG),
        ("preprocessor_config.json", FileKind.WEIGHT_CONFIG),
        ("adapter_config.json", FileKind.WEIGHT_CONFIG),
        ("model.safetensors.index.json", FileKind.WEIGHT_CONFIG),
        ("pytorch_model.bin.index.json", FileKind.WEIGHT_CONFIG),
        ("params.json", FileKind.WEIGHT_CONFIG),
        ("chat_template.jinja", FileKind.WEIGHT_CONFIG),
        ("chat_template.json", FileKind.WEIGHT_CONFIG),
        ("hparams.yaml", FileKind.WEIGHT_CONFIG),
        ("model.yml", FileKind.WEIGHT_CONFIG),
        ("model.toml", FileKind.WEIGHT_CONFIG),
        ("model.cfg", FileKind.WEIGHT_CONFIG),
        ("config.pbtxt", FileKind.WEIGHT_CONFIG),
        ("MLmodel", FileKind.WEIGHT_CONFIG),
        # docs
        ("README.md", FileKind.DOC),
        ("README", FileKind.DOC),
        ("docs/usage.md", FileKind.DOC),
        ("docs/api.rst", FileKind.DOC),
        ("notes.txt", FileKind.DOC),
        ("LICENSE", FileKind.DOC),
        ("LICENSE.txt", FileKind.DOC),
        ("NOTICE", FileKind.DOC),
        ("COPYING", FileKind.DOC),
        ("paper.pdf", FileKind.DOC),
        ("report.html", FileKind.DOC),
        ("MODEL_CARD.md", FileKind.DOC),
        ("assets/figure.png", FileKind.DOC),
        ("logo.jpg", FileKind.DOC),
        ("diagram.svg", FileKind.DOC),
        ("CITATION.cff", FileKind.DOC),
        # code
        ("modeling_llama.py", FileKind.CODE),
        ("demo.ipynb", FileKind.CODE),
        ("run.sh", FileKind.CODE),
        ("web/app.js", FileKind.CODE),
        ("web/app.ts", FileKind.CODE),
        ("main.go", FileKind.CODE),
        ("lib.rs", FileKind.CODE),
        ("kernel.c", FileKind.CODE),
        ("kernel.cc", FileKind.CODE),
        ("kernel.cpp", FileKind.CODE),
        ("kernel.h", FileKind.CODE),
        ("Main.java", FileKind.CODE),
        ("analysis.R", FileKind.CODE),
        ("Dockerfile", FileKind.CODE),
        ("Makefile", FileKind.CODE),
        ("requirements.txt", FileKind.CODE),
        ("requirements-dev.txt", FileKind.CODE),
        ("pyproject.toml", FileKind.CODE),
        ("setup.py", FileKind.CODE),
        ("uv.lock", FileKind.CODE),
        (".gitattributes", FileKind.CODE),
        ("model_card_utils.py", FileKind.CODE),
        # datasets
        ("eval.csv", FileKind.DATASET),
        ("eval.tsv", FileKind.DATASET),
        ("train.parquet", FileKind.DATASET),
        ("train.arrow", FileKind.DATASET),
        ("train.jsonl", FileKind.DATASET),
        ("train.tfrecord", FileKind.DATASET),
        ("train.avro", FileKind.DATASET),
        ("train.feather", FileKind.DATASET),
        ("samples.npy", FileKind.DATASET),
        ("data/anything.bin", FileKind.DATASET),
        ("data/README.md", FileKind.DATASET),
        ("dataset/x/y.json", FileKind.DATASET),
        ("datasets/train.txt", FileKind.DATASET),
        ("./data/train.txt", FileKind.DATASET),
        ("sub/data/file.safetensors", FileKind.WEIGHT),  # only a top-level data/ counts
        # unknown names without content to look at
        ("mystery", FileKind.DOC),
        ("blob.xyz", FileKind.DOC),
    ],
)
def test_classify_by_name(relpath: str, kind: FileKind) -> None:
    assert classify_file(relpath) is kind


def test_classify_unknown_large_binary_is_weight(tmp_path: Path) -> None:
    p = tmp_path / "blob.xyz"
    with open(p, "wb") as f:
        f.truncate(2 * MiB)  # sparse: NUL bytes, costs no disk
    assert classify_file("blob.xyz", p) is FileKind.WEIGHT


def test_classify_unknown_small_or_text_is_doc(tmp_path: Path) -> None:
    small = write(tmp_path, "small.xyz", b"\x00\x01" * 100)
    assert classify_file("small.xyz", small) is FileKind.DOC
    text = write(tmp_path, "big.xyz", b"hello world\n" * (MiB // 6))
    assert classify_file("big.xyz", text) is FileKind.DOC


def test_classify_unknown_name_with_weight_magic_is_weight(tmp_path: Path) -> None:
    p = write(tmp_path, "model", gguf_bytes([("w", [4, 4], 1)]))
    assert classify_file("model", p) is FileKind.WEIGHT
    q = write(tmp_path, "weights_dump", safetensors_bytes({"w": ("F32", [2, 2])}))
    assert classify_file("weights_dump", q) is FileKind.WEIGHT


def test_classify_name_wins_over_content(tmp_path: Path) -> None:
    # A pickle named .safetensors is still a weight file; its format is what differs.
    p = write(tmp_path, "model.safetensors", pickle.dumps({"a": 1}, protocol=4))
    assert classify_file("model.safetensors", p) is FileKind.WEIGHT


def test_classify_missing_path_falls_back_quietly(tmp_path: Path) -> None:
    assert classify_file("gone.xyz", tmp_path / "gone.xyz") is FileKind.DOC


# --------------------------------------------------------------------------- parse_kind


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("weight", FileKind.WEIGHT),
        ("weight.config", FileKind.WEIGHT_CONFIG),
        ("doc", FileKind.DOC),
        ("code", FileKind.CODE),
        ("dataset", FileKind.DATASET),
        (" Weight.Config ", FileKind.WEIGHT_CONFIG),
    ],
)
def test_parse_kind(text: str, kind: FileKind) -> None:
    assert parse_kind(text) is kind


@pytest.mark.parametrize("text", ["", "weights", "config", "weight-config", "model"])
def test_parse_kind_rejects_unknown(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_kind(text)
    message = str(info.value)
    for kind in ("weight", "weight.config", "doc", "code", "dataset"):
        assert kind in message
    assert info.value.hint


def test_file_kind_values_are_modelpack_names() -> None:
    assert [k.value for k in FileKind] == ["weight", "weight.config", "doc", "code", "dataset"]
    assert f"application/vnd.cncf.model.{FileKind.WEIGHT_CONFIG}.v1.raw" == (
        "application/vnd.cncf.model.weight.config.v1.raw"
    )


# --------------------------------------------------------------------------- param size


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0"),
        (7, "7"),
        (999, "999"),
        (1_000, "1K"),
        (1_500, "1.5K"),
        (124_000, "124K"),
        (999_999, "1M"),
        (1_000_000, "1M"),
        (9_960_000, "10M"),
        (124_000_000, "124M"),
        (124_439_808, "124M"),
        (1_100_048_384, "1.1B"),
        (6_738_415_616, "6.7B"),
        (12_000_000_000, "12B"),
        (70_553_706_496, "71B"),
        (1_600_000_000_000, "1.6T"),
        (2_000_000_000_000_000, "2000T"),
    ],
)
def test_format_param_size(count: int, text: str) -> None:
    assert format_param_size(count) == text


# --------------------------------------------------------------------------- detect_format


def detect(root: Path) -> FormatInfo:
    rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return detect_format(root, rels)


def test_safetensors_precision_and_params(tmp_path: Path) -> None:
    write(tmp_path, "model.safetensors", safetensors_bytes({"w": ("F16", [1000, 124])}))
    write(tmp_path, "config.json", b"{}")
    write(tmp_path, "README.md", b"# hi")
    assert detect(tmp_path) == FormatInfo("safetensors", "float16", "124K")


def test_safetensors_header_from_the_brief(tmp_path: Path) -> None:
    header = {
        "w": {"dtype": "F16", "shape": [1000, 124], "data_offsets": [0, 248000]},
        "__metadata__": {"format": "pt"},
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    write(tmp_path, "m.safetensors", struct.pack("<Q", len(raw)) + raw + bytes(248000))
    assert detect(tmp_path) == FormatInfo("safetensors", "float16", "124K")


def test_sharded_safetensors_sum_params_majority_precision(tmp_path: Path) -> None:
    write(
        tmp_path,
        "model-00001-of-00002.safetensors",
        safetensors_bytes({"a": ("BF16", [300, 1000]), "norm": ("F32", [1000])}),
    )
    write(
        tmp_path,
        "model-00002-of-00002.safetensors",
        safetensors_bytes({"b": ("BF16", [200, 1000]), "bias": ("F32", [10])}, metadata=False),
    )
    write(tmp_path, "model.safetensors.index.json", b'{"weight_map": {}}')
    info = detect(tmp_path)
    assert info == FormatInfo("safetensors", "bfloat16", "501K")


def test_duplicate_copies_in_one_directory_count_once(tmp_path: Path) -> None:
    # Mistral-style: consolidated.safetensors next to HF shards of the same weights.
    st = safetensors_bytes
    write(tmp_path, "consolidated.safetensors", st({"w": ("F16", [1000, 1000])}))
    write(tmp_path, "model-00001-of-00002.safetensors", st({"a": ("F16", [500, 1000])}))
    write(tmp_path, "model-00002-of-00002.safetensors", st({"b": ("F16", [500, 1000])}))
    # A component in another directory (diffusers-style) adds up: 1M + 100K.
    write(tmp_path, "vae/diffusion_pytorch_model.safetensors", st({"v": ("F32", [100_000])}))
    assert detect(tmp_path) == FormatInfo("safetensors", "float16", "1.1M")


def test_gguf(tmp_path: Path) -> None:
    write(tmp_path, "model.gguf", gguf_bytes([("tok", [4096, 32000], 1), ("norm", [4096], 0)]))
    info = detect(tmp_path)
    assert info.format == "gguf"
    assert info.precision == "float16"
    assert info.param_size == format_param_size(4096 * 32000 + 4096) == "131M"


def test_gguf_quantized_has_no_precision_and_quantizations_count_once(tmp_path: Path) -> None:
    tensors = [("w", [1000, 1000], 12)]
    write(tmp_path, "m.Q4_K_M.gguf", gguf_bytes(tensors, file_type=15))
    write(tmp_path, "m.Q8_0.gguf", gguf_bytes(tensors, file_type=7))
    assert detect(tmp_path) == FormatInfo("gguf", None, "1M")


def test_gguf_precision_from_tensor_types_without_file_type(tmp_path: Path) -> None:
    write(tmp_path, "m.gguf", gguf_bytes([("w", [10, 10], 30)], file_type=None))
    assert detect(tmp_path) == FormatInfo("gguf", "bfloat16", "100")


def test_gguf_garbage_after_magic_is_still_gguf(tmp_path: Path) -> None:
    write(tmp_path, "m.gguf", b"GGUF" + struct.pack("<IQQ", 3, 2**60, 2**60) + bytes(100))
    assert detect(tmp_path) == FormatInfo("gguf", None, None)


@pytest.mark.parametrize("magic", [b"lmgg", b"tjgg", b"fmgg", b"ggjt"])
def test_ggml_magics(tmp_path: Path, magic: bytes) -> None:
    write(tmp_path, "ggml-model.bin", magic + bytes(100))
    assert detect(tmp_path).format == "ggml"


def test_pytorch_zip(tmp_path: Path) -> None:
    torch_zip(tmp_path, "pytorch_model.bin")
    assert detect(tmp_path) == FormatInfo("pytorch", None, None)


def test_pytorch_zip_under_any_name(tmp_path: Path) -> None:
    torch_zip(tmp_path, "weights.ckpt")
    assert sniff_format(tmp_path / "weights.ckpt", "weights.ckpt") == "pytorch"


def test_pytorch_legacy_pickle(tmp_path: Path) -> None:
    legacy = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
    write(tmp_path, "weights.dat", legacy)  # unknown name: magic number decides
    assert sniff_format(tmp_path / "weights.dat", "weights.dat") == "pytorch"
    write(tmp_path, "model.pth", pickle.dumps({"a": 1}, protocol=2))  # a pickle by a torch name
    assert sniff_format(tmp_path / "model.pth", "model.pth") == "pytorch"


def test_keras_v3(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        zf.writestr("config.json", json.dumps({"class_name": "Sequential"}))
        zf.writestr("model.weights.h5", HDF5 + bytes(1000))
    assert detect(tmp_path) == FormatInfo("keras", None, None)


def test_h5_magic(tmp_path: Path) -> None:
    write(tmp_path, "tf_model.h5", HDF5 + bytes(1000))
    assert detect(tmp_path).format == "h5"


def test_h5_after_user_block(tmp_path: Path) -> None:
    write(tmp_path, "weights.hdf5", bytes(512) + HDF5 + bytes(100))
    assert detect(tmp_path).format == "h5"


def test_h5_name_without_magic_is_not_h5(tmp_path: Path) -> None:
    write(tmp_path, "tf_model.h5", b"not hdf5 at all" * 10)
    assert detect(tmp_path).format is None


def test_pickle(tmp_path: Path) -> None:
    write(tmp_path, "clf.pkl", pickle.dumps({"coef": [1.0, 2.0]}, protocol=5))
    assert detect(tmp_path) == FormatInfo("pickle", None, None)


def test_pickle_protocol_0_by_name(tmp_path: Path) -> None:
    write(tmp_path, "clf.pkl", pickle.dumps({"coef": 1}, protocol=0))
    assert detect(tmp_path).format == "pickle"


def test_joblib(tmp_path: Path) -> None:
    write(tmp_path, "clf.joblib", pickle.dumps([1, 2, 3], protocol=4))
    assert detect(tmp_path).format == "joblib"


def test_tflite(tmp_path: Path) -> None:
    write(tmp_path, "model.tflite", b"\x1c\x00\x00\x00TFL3" + bytes(200))
    assert detect(tmp_path).format == "tflite"


def test_onnx_by_name_if_not_empty(tmp_path: Path) -> None:
    write(tmp_path, "model.onnx", b"\x08\x07\x12\x07pytorch" + bytes(50))
    assert detect(tmp_path).format == "onnx"
    (tmp_path / "model.onnx").write_bytes(b"")
    assert detect(tmp_path).format is None


def test_numpy(tmp_path: Path) -> None:
    write(tmp_path, "embeddings.npy", b"\x93NUMPY\x01\x00" + bytes(100))
    assert detect(tmp_path).format == "numpy"


def test_savedmodel(tmp_path: Path) -> None:
    write(tmp_path, "saved_model.pb", b"\x08\x01\x12\x00" * 10)
    write(tmp_path, "fingerprint.pb", b"\x08\x01" * 4)
    write(tmp_path, "variables/variables.index", bytes(40))
    write(tmp_path, "variables/variables.data-00000-of-00001", bytes(4000))
    write(tmp_path, "assets/vocab.txt", b"a\nb\n")
    assert detect(tmp_path) == FormatInfo("tensorflow-savedmodel", None, None)


def test_saved_model_pb_without_variables_is_not_savedmodel(tmp_path: Path) -> None:
    write(tmp_path, "saved_model.pb", b"\x08\x01\x12\x00" * 10)
    assert detect(tmp_path).format is None


def test_pickle_named_safetensors_is_pickle(tmp_path: Path) -> None:
    write(tmp_path, "model.safetensors", pickle.dumps({"w": list(range(100))}, protocol=4))
    write(tmp_path, "config.json", b"{}")
    assert detect(tmp_path) == FormatInfo("pickle", None, None)


def test_pickle_protocol_2_named_safetensors_is_pickle(tmp_path: Path) -> None:
    write(tmp_path, "model.safetensors", pickle.dumps("x", protocol=2))
    assert sniff_format(tmp_path / "model.safetensors", "model.safetensors") == "pickle"


def test_zip_named_safetensors_is_pytorch(tmp_path: Path) -> None:
    torch_zip(tmp_path, "model.safetensors")
    assert detect(tmp_path).format == "pytorch"


def test_huge_header_length_is_not_safetensors(tmp_path: Path) -> None:
    lengths = [2**64 - 1, 2**63, 100 * MiB + 1, 10 * MiB]  # the last: larger than the file
    for i, n in enumerate(lengths):
        write(tmp_path, f"m{i}.safetensors", struct.pack("<Q", n) + b'{"w": {}}' + bytes(64))
    tracemalloc.start()
    try:
        info = detect(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info == FormatInfo(None, None, None)
    assert peak < 2 * MiB


def test_header_length_inside_big_file_reads_only_the_header(tmp_path: Path) -> None:
    # 64 MiB claimed header inside a 200 MiB sparse file of zeros: it does not start with '{'
    # so nothing past the first few KiB is read.
    p = tmp_path / "big.safetensors"
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", 64 * MiB))
        f.truncate(200 * MiB)
    tracemalloc.start()
    try:
        info = detect(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.format is None
    assert peak < 2 * MiB


def test_weights_in_big_sparse_safetensors_are_not_read(tmp_path: Path) -> None:
    # A valid header describing 100 MiB of data: detection reads the header only.
    n = 25 * MiB
    raw = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    raw += b" " * (-len(raw) % 8)
    p = tmp_path / "model.safetensors"
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + 4 * n)
    tracemalloc.start()
    try:
        info = detect(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info == FormatInfo("safetensors", "float32", "26M")
    assert peak < 2 * MiB


@pytest.mark.parametrize(
    "header",
    [
        b"[1, 2, 3]",  # not an object (and does not start with '{')
        b'{"w": 1}',  # tensor info not an object
        b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 999]}}',  # past the end
        b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}',  # size mismatch
        b'{"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}',
        b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},'
        b' "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}',  # overlapping
        b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}',  # truncated JSON
        b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',  # data left over
    ],
)
def test_malformed_safetensors_headers(tmp_path: Path, header: bytes) -> None:
    header += b" " * (-len(header) % 8)
    write(tmp_path, "model.safetensors", struct.pack("<Q", len(header)) + header + bytes(16))
    assert detect(tmp_path).format is None


def test_most_weight_bytes_wins(tmp_path: Path) -> None:
    write(tmp_path, "small.safetensors", safetensors_bytes({"w": ("F32", [10])}))
    write(tmp_path, "big.gguf", gguf_bytes([("w", [10, 10], 1)]) + bytes(10_000))
    assert detect(tmp_path).format == "gguf"
    write(tmp_path, "bigger.safetensors", safetensors_bytes({"w": ("F32", [10_000])}))
    assert detect(tmp_path) == FormatInfo("safetensors", "float32", "10K")


def test_non_weight_files_are_not_sniffed(tmp_path: Path) -> None:
    # A GGUF under a doc name, or under data/, does not make the model GGUF.
    write(tmp_path, "notes.md", gguf_bytes([("w", [10], 1)]))
    write(tmp_path, "data/x.gguf", gguf_bytes([("w", [10], 1)]))
    assert detect(tmp_path) == FormatInfo(None, None, None)


def test_empty_and_missing(tmp_path: Path) -> None:
    assert detect_format(tmp_path, []) == FormatInfo(None, None, None)
    assert detect_format(tmp_path, ["nope.safetensors", "../escape.gguf", "/etc/passwd"]) == (
        FormatInfo(None, None, None)
    )


def test_unreadable_file_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "a.gguf", gguf_bytes([("w", [10], 1)]))
    locked = write(tmp_path, "b.safetensors", safetensors_bytes({"w": ("F32", [10_000])}))
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)  # works as root too, unlike chmod 0
    assert detect(tmp_path).format == "gguf"


def test_zip_with_forged_central_directory_size(tmp_path: Path) -> None:
    # End-of-central-directory record claiming a 1 GiB directory in a tiny file.
    eocd = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, 2**30, 0, 0)
    write(tmp_path, "model.pt", b"PK\x03\x04" + bytes(100) + eocd)
    tracemalloc.start()
    try:
        info = detect(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info == FormatInfo(None, None, None)
    assert peak < 2 * MiB


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_fifo_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "model.safetensors")
    assert detect_format(tmp_path, ["model.safetensors"]) == FormatInfo(None, None, None)
    assert classify_file("pipe", tmp_path / "model.safetensors") is FileKind.DOC
