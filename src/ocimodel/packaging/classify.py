"""Which ModelPack layer kind each file of a model directory is, and which format the model is.

Both questions are answered without importing any ML framework and without reading whole
files: names decide the kind (as modctl and KitOps do), and a few bytes of content decide the
format wherever the format has a magic number, because a name is only a claim. A pickle named
``model.safetensors`` is reported as ``pickle`` (docs/threats.md 21). Every read is bounded: at most
100 MiB of a safetensors header (the limit the safetensors library itself enforces), a bounded
walk of a GGUF header, a bounded zip central directory, and a few KiB otherwise.

Detection is advisory metadata for the ModelPack config (``format``, ``precision``,
``paramSize``); it is not a safety check, and nothing here unpickles or executes anything.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import struct
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ocimodel.errors import UsageError

__all__ = [
    "FileKind",
    "FormatInfo",
    "classify_file",
    "detect_format",
    "format_param_size",
    "parse_kind",
    "sniff_format",
]


class FileKind(StrEnum):
    """The ModelPack layer kinds: ``application/vnd.cncf.model.<kind>.v1.*``."""

    WEIGHT = "weight"
    WEIGHT_CONFIG = "weight.config"
    DOC = "doc"
    CODE = "code"
    DATASET = "dataset"


def parse_kind(text: str) -> FileKind:
    """A user's override (``--kind weight.config``); case and surrounding blanks are ignored."""
    wanted = text.strip().lower()
    for kind in FileKind:
        if kind.value == wanted:
            return kind
    valid = ", ".join(k.value for k in FileKind)
    raise UsageError(
        f"unknown file kind {text!r}: valid kinds are {valid}",
        hint=f"use one of: {valid}",
    )


# --------------------------------------------------------------------------- classification

_KiB = 1024
_MiB = 1024 * 1024

# Above this size an unrecognised binary file is far more likely a weight blob than anything
# else a model directory holds.
_LARGE_UNKNOWN = 1 * _MiB
_SNIFF_BYTES = 8 * _KiB

_DATASET_DIRS = frozenset({"data", "dataset", "datasets"})

# Exact file names (lower-cased) that decide before any extension does.
_NAME_KINDS: dict[str, FileKind] = {
    # build and dependency files
    "dockerfile": FileKind.CODE,
    "containerfile": FileKind.CODE,
    "makefile": FileKind.CODE,
    "gnumakefile": FileKind.CODE,
    "cmakelists.txt": FileKind.CODE,
    "pyproject.toml": FileKind.CODE,
    "setup.py": FileKind.CODE,
    "setup.cfg": FileKind.CODE,
    "cargo.toml": FileKind.CODE,
    "package.json": FileKind.CODE,
    "package-lock.json": FileKind.CODE,
    "tsconfig.json": FileKind.CODE,
    "go.mod": FileKind.CODE,
    "go.sum": FileKind.CODE,
    "environment.yml": FileKind.CODE,
    "environment.yaml": FileKind.CODE,
    "conda.yaml": FileKind.CODE,
    "python_env.yaml": FileKind.CODE,
    ".gitattributes": FileKind.CODE,
    ".gitignore": FileKind.CODE,
    ".dockerignore": FileKind.CODE,
    ".editorconfig": FileKind.CODE,
    # tokenizer vocabularies that would otherwise read as docs
    "merges.txt": FileKind.WEIGHT_CONFIG,
    "added_tokens.json": FileKind.WEIGHT_CONFIG,
    # MLflow's model descriptor (no extension; not Core ML's *.mlmodel)
    "mlmodel": FileKind.WEIGHT_CONFIG,
    # TensorFlow SavedModel graph, and the checkpoint pointer file of TF checkpoints
    "saved_model.pb": FileKind.WEIGHT,
    "saved_model.pbtxt": FileKind.WEIGHT,
    "checkpoint": FileKind.WEIGHT_CONFIG,
}

# File-name prefixes (lower-cased), checked after exact names.
_PREFIX_KINDS: tuple[tuple[str, FileKind], ...] = (
    ("vocab.", FileKind.WEIGHT_CONFIG),  # vocab.json, vocab.txt, vocab.bpe
    ("chat_template.", FileKind.WEIGHT_CONFIG),
    ("readme", FileKind.DOC),
    ("license", FileKind.DOC),
    ("licence", FileKind.DOC),
    ("notice", FileKind.DOC),
    ("copying", FileKind.DOC),
    ("citation", FileKind.DOC),
    ("changelog", FileKind.DOC),
    ("authors", FileKind.DOC),
    ("model_card", FileKind.DOC),
    ("modelcard", FileKind.DOC),
    ("model-card", FileKind.DOC),
    ("use_policy", FileKind.DOC),
)

# Multi-part endings, checked before the last suffix.
_ENDING_KINDS: tuple[tuple[str, FileKind], ...] = (
    (".index.json", FileKind.WEIGHT_CONFIG),  # model.safetensors.index.json and the like
    (".ckpt.index", FileKind.WEIGHT),  # TF checkpoint index
    (".onnx.data", FileKind.WEIGHT),  # ONNX external data
)

_SUFFIX_KINDS: dict[str, FileKind] = {
    **dict.fromkeys(
        (
            ".safetensors", ".gguf", ".ggml", ".bin", ".pt", ".pth", ".ckpt", ".onnx",
            ".onnx_data", ".ort", ".h5", ".hdf5", ".keras", ".pb", ".tflite", ".lite",
            ".pkl", ".pickle", ".joblib", ".msgpack", ".mlmodel", ".engine", ".plan",
            ".params", ".pte", ".pt2", ".nemo", ".mar", ".llamafile", ".caffemodel",
            ".pdparams", ".mnn", ".ncnn", ".trt",
        ),
        FileKind.WEIGHT,
    ),
    **dict.fromkeys(
        (
            ".json", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".conf", ".pbtxt", ".model",
            ".tiktoken", ".jinja", ".jinja2", ".spm", ".bpe", ".prototxt",
        ),
        FileKind.WEIGHT_CONFIG,
    ),
    **dict.fromkeys(
        (
            ".md", ".markdown", ".rst", ".txt", ".pdf", ".html", ".htm", ".adoc", ".cff",
            ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".bmp", ".ico",
        ),
        FileKind.DOC,
    ),
    **dict.fromkeys(
        (
            ".py", ".pyi", ".ipynb", ".sh", ".bash", ".zsh", ".ps1", ".bat", ".js", ".mjs",
            ".cjs", ".ts", ".go", ".rs", ".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp",
            ".cu", ".cuh", ".java", ".kt", ".scala", ".swift", ".r", ".jl", ".lua", ".rb",
            ".pl", ".cs", ".lock", ".mk", ".cmake", ".proto",
        ),
        FileKind.CODE,
    ),
    **dict.fromkeys(
        (
            ".csv", ".tsv", ".parquet", ".arrow", ".jsonl", ".ndjson", ".tfrecord",
            ".tfrecords", ".avro", ".feather", ".orc",
        ),
        FileKind.DATASET,
    ),
}

# NumPy arrays are weights when their name says so, data otherwise.
_WEIGHTISH = re.compile(
    r"weight|model|param|ckpt|checkpoint|embed|state|layer|kernel|bias|adapter|lora"
)
# TF checkpoint shards: variables.data-00000-of-00001, model.ckpt.data-00000-of-00002.
_TF_DATA_SHARD = re.compile(r"\.data-\d+-of-\d+$")
# Any other sharded name whose extension we do not know: model-00001-of-00002.foo.
_SHARD = re.compile(r"(?:^|[-_.])\d+-of-\d+(?:\.|$)")


def _normalise(relpath: str) -> PurePosixPath:
    # PurePosixPath drops "." components and repeated slashes; a leading "/" is not meaningful
    # for a path inside the model directory.
    return PurePosixPath(relpath.lstrip("/"))


def classify_file(relpath: str, path: Path | None = None) -> FileKind:
    """The layer kind of the file at ``relpath`` (a POSIX path inside the model directory).

    Names decide first. Only a name that no rule knows is looked at: with ``path`` given,
    a weight magic (GGUF, HDF5, safetensors, pickle...) or more than 1 MiB of binary content
    makes it a ``weight``; everything else unknown is a ``doc``. Doc is the fallback because
    it is the kind that no consumer loads or executes (a model server reads weights and
    configs, a runtime runs code), so a wrong guess there changes no behaviour; and it keeps
    small stray files out of the weight layers that scanners and partial pulls focus on.
    """
    rel = _normalise(relpath)
    parts = rel.parts
    name = rel.name.lower()

    if len(parts) > 1 and parts[0].lower() in _DATASET_DIRS:
        return FileKind.DATASET
    if name in _NAME_KINDS:
        return _NAME_KINDS[name]
    suffix = PurePosixPath(name).suffix
    if name.startswith("requirements") and suffix in ("", ".txt", ".in"):
        return FileKind.CODE  # requirements.txt, requirements-dev.txt, requirements.in
    # A prefix names what a file is (README, LICENSE, vocab.*) unless its extension clearly
    # says otherwise: model_card_utils.py is code, license.safetensors a weight.
    if _SUFFIX_KINDS.get(suffix) not in (FileKind.CODE, FileKind.WEIGHT, FileKind.DATASET):
        for prefix, kind in _PREFIX_KINDS:
            if name.startswith(prefix):
                return kind
    if len(parts) > 1 and parts[-2] == "variables":  # TF SavedModel variables/
        return FileKind.WEIGHT
    if _TF_DATA_SHARD.search(name):
        return FileKind.WEIGHT
    for ending, kind in _ENDING_KINDS:
        if name.endswith(ending):
            return kind

    if suffix in (".npy", ".npz"):
        return FileKind.WEIGHT if _WEIGHTISH.search(name) else FileKind.DATASET
    if suffix in _SUFFIX_KINDS:
        return _SUFFIX_KINDS[suffix]
    if _SHARD.search(name):
        return FileKind.WEIGHT

    if path is not None and _looks_like_weight(path):
        return FileKind.WEIGHT
    return FileKind.DOC


def _looks_like_weight(path: Path) -> bool:
    """A file of unknown name: a weight magic, or a large binary blob."""
    try:
        with _open_regular(path) as (f, size):
            head = f.read(_SNIFF_BYTES)
    except OSError:
        return False
    if _head_kind(head) not in (None, "zip"):  # any zip could be anything: size decides
        return True
    if _safetensors_prefix_ok(head, size):
        return True
    return size > _LARGE_UNKNOWN and _is_binary(head)


def _is_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the end of the sample is still text.
        return exc.start < len(head) - 3
    return False


# --------------------------------------------------------------------------- bounded reading


class _BudgetExceeded(Exception):
    """A parser tried to read more than its budget: treat the file as not that format."""


class _BoundedReader:
    """A read-only view of a file that refuses to read more than ``budget`` bytes in total.

    A request is first cut to what the file still holds, then checked against the budget,
    both before reading, so a forged length can never make us allocate it. Provides what
    zipfile needs of a file object: read, seek, tell, seekable.
    """

    def __init__(self, f: BinaryIO, size: int, budget: int) -> None:
        self._f = f
        self._size = size
        self._left = budget

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def read(self, size: int | None = -1) -> bytes:
        remaining = max(0, self._size - self._f.tell())
        if size is None or size < 0 or size > remaining:
            size = remaining
        if size > self._left:
            raise _BudgetExceeded
        data = self._f.read(size)
        self._left -= len(data)
        return data

    def exact(self, size: int) -> bytes:
        data = self.read(size)
        if len(data) != size:
            raise _BudgetExceeded  # truncated
        return data


@contextmanager
def _open_regular(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """Open a regular file for reading, yielding (file, size). O_NONBLOCK keeps a FIFO from
    hanging us before fstat can refuse it; it changes nothing for regular files."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"not a regular file: {path}")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f, st.st_size


# --------------------------------------------------------------------------- format sniffing

_GGUF_MAGIC = b"GGUF"
# Legacy ggml magics are uint32 values ('ggml', 'ggmf', 'ggjt', 'ggla') written little-endian.
_GGML_MAGICS = frozenset(
    m.to_bytes(4, "little") for m in (0x67676D6C, 0x67676D66, 0x67676A74, 0x67676C61)
) | {b"ggml", b"ggmf", b"ggjt", b"ggla"}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# HDF5 may sit behind a user block of 512 * 2**k bytes.
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)
_NUMPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# torch.save's legacy (pre-1.6) format starts by pickling this number with protocol 2.
_TORCH_LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")

_MAX_SAFETENSORS_HEADER = 100 * _MiB
_ZIP_DIRECTORY_BUDGET = 16 * _MiB
_GGUF_BUDGET = 32 * _MiB

_TORCH_NAMES = (".pt", ".pth", ".bin", ".ckpt", ".pt2")


def _head_kind(head: bytes) -> str | None:
    """What the first few KiB say: a format name, or "zip" / "pickle" for containers that
    need a closer look. Magics at offset 0 are tried before those further in, so that, say,
    a pickle cannot pass for HDF5 by carrying the HDF5 signature at offset 512."""
    if head[:4] in _ZIP_MAGICS:
        return "zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"  # PROTO opcode, protocols 2-5; 0 and 1 have no header
    if head[:4] == _GGUF_MAGIC:
        return "gguf"
    if head[:4] in _GGML_MAGICS:
        return "ggml"
    if head[:6] == _NUMPY_MAGIC:
        return "numpy"
    if head[4:8] == b"TFL3":
        return "tflite"
    if any(head[o : o + 8] == _HDF5_MAGIC for o in _HDF5_OFFSETS):
        return "h5"
    return None


def _safetensors_prefix_ok(head: bytes, size: int) -> bool:
    """The cheap part of the safetensors check: a plausible length followed by '{'."""
    if len(head) < 9:
        return False
    (n,) = struct.unpack_from("<Q", head)
    return 2 <= n <= _MAX_SAFETENSORS_HEADER and n <= size - 8 and head[8:9] == b"{"


def sniff_format(path: Path, relpath: str) -> str | None:
    """The format of one file by its content, falling back to its name only for formats that
    have no magic number (ONNX, protocol 0/1 pickles, compressed joblib, ggml). ``None`` when
    the file is unreadable, or its content contradicts its name."""
    sniffed = _sniff(path, relpath)
    return sniffed.format if sniffed else None


@dataclass
class _TensorStats:
    params: int = 0
    # precision -> bytes holding it; "" collects bytes whose precision is unknown
    precision_bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class _Sniffed:
    format: str | None
    size: int
    stats: _TensorStats | None = None


def _sniff(path: Path, relpath: str) -> _Sniffed | None:
    name = PurePosixPath(relpath).name.lower()
    suffix = PurePosixPath(name).suffix
    try:
        with _open_regular(path) as (f, size):
            head = f.read(_SNIFF_BYTES)
            kind = _head_kind(head)
            if kind == "zip":
                f.seek(0)
                return _Sniffed(_zip_format(f, size), size)
            if kind == "pickle":
                if head.startswith(_TORCH_LEGACY_PREFIX) or suffix in _TORCH_NAMES:
                    return _Sniffed("pytorch", size)
                return _Sniffed("joblib" if suffix == ".joblib" else "pickle", size)
            if kind == "gguf":
                f.seek(0)
                return _Sniffed("gguf", size, _gguf_stats(f, size))
            if kind is not None:
                return _Sniffed(kind, size)
            if _safetensors_prefix_ok(head, size):
                f.seek(0)
                stats = _safetensors_stats(f, size)
                if stats is not None:
                    return _Sniffed("safetensors", size, stats)
    except OSError:
        return None
    # No magic matched: only formats that have none may be taken from the name.
    if suffix == ".onnx":
        return _Sniffed("onnx" if size > 0 else None, size)
    if suffix in (".pkl", ".pickle") and size > 0:
        return _Sniffed("pickle", size)  # protocol 0/1 pickles have no header
    if suffix == ".joblib" and size > 0:
        return _Sniffed("joblib", size)  # compressed joblib (zlib, lz4, xz...)
    if suffix == ".ggml" and size > 0:
        return _Sniffed("ggml", size)
    return _Sniffed(None, size)


def _zip_format(f: BinaryIO, size: int) -> str | None:
    """Look inside a zip's central directory (read through a budget) for a known layout."""
    try:
        with zipfile.ZipFile(_BoundedReader(f, size, _ZIP_DIRECTORY_BUDGET)) as zf:
            names = zf.namelist()
    except (_BudgetExceeded, zipfile.BadZipFile, ValueError, OSError, EOFError):
        return None
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "pytorch"  # torch.save (>= 1.6) and TorchScript archives
    base = {n.rsplit("/", 1)[-1] for n in names}
    if "config.json" in base and ("model.weights.h5" in base or "metadata.json" in base):
        return "keras"  # Keras v3 .keras archive
    if names and all(n.endswith(".npy") for n in names):
        return "numpy"  # numpy.savez
    return None


# -- safetensors

_SAFETENSORS_PRECISION = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "U16": "uint16",
    "I16": "int16",
    "F16": "float16",
    "BF16": "bfloat16",
    "U32": "uint32",
    "I32": "int32",
    "F32": "float32",
    "U64": "uint64",
    "I64": "int64",
    "F64": "float64",
    "F8_E4M3": "float8_e4m3",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0",
}
_SAFETENSORS_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _safetensors_stats(f: BinaryIO, size: int) -> _TensorStats | None:
    """Validate a safetensors header as the reference implementation does; None if invalid.

    Layout: u64 little-endian N, N bytes of JSON object, then the data buffer. Tensors must
    tile the buffer exactly (sorted, contiguous, no gaps or overlaps) and each must be as long
    as its dtype and shape say (checked for byte-sized dtypes; newer sub-byte ones are taken
    on trust).
    """
    (n,) = struct.unpack("<Q", f.read(8))
    if n < 2 or n > _MAX_SAFETENSORS_HEADER or n > size - 8:
        return None
    raw = f.read(n)
    if len(raw) != n or raw[:1] != b"{":
        return None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    data_len = size - 8 - n
    stats = _TensorStats()
    spans: list[tuple[int, int]] = []
    for key, info in header.items():
        if key == "__metadata__":
            if not isinstance(info, dict):
                return None
            continue
        if not isinstance(info, dict):
            return None
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or not isinstance(shape, list):
            return None
        if not all(_is_int(d) and d >= 0 for d in shape):
            return None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
            return None
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            return None
        count = math.prod(shape)
        itemsize = _SAFETENSORS_ITEMSIZE.get(dtype)
        if itemsize is not None and count * itemsize != end - begin:
            return None
        spans.append((begin, end))
        stats.params += count
        stats.precision_bytes[_SAFETENSORS_PRECISION.get(dtype, dtype.lower())] += end - begin
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            return None
        position = end
    if position != data_len:
        return None
    return stats


# -- GGUF

# gguf value types -> struct format for the fixed-size ones
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
# general.file_type (llama_ftype) values that name an unquantized precision; quantized
# types (Q4_K_M...) are a quantization, not a precision, and stay unknown.
_GGUF_FILE_TYPES = {0: "float32", 1: "float16", 32: "bfloat16"}
# ggml tensor types, used when general.file_type is absent
_GGML_TYPES = {0: "float32", 1: "float16", 30: "bfloat16", 24: "int8", 25: "int16",
               26: "int32", 27: "int64", 28: "float64"}
_GGUF_MAX_COUNT = 10_000_000


class _GGUFError(Exception):
    pass


def _gguf_stats(f: BinaryIO, size: int) -> _TensorStats | None:
    """Parameter count and precision from a GGUF v2/v3 header, read through a budget.

    The tensor table follows every metadata key, tokenizer arrays included, so this walks
    them; fixed-size arrays are skipped by seeking. Anything odd gives up (None) and the
    file still counts as GGUF.
    """
    r = _BoundedReader(f, size, _GGUF_BUDGET)
    try:
        return _gguf_walk(r, size)
    except (_BudgetExceeded, _GGUFError, struct.error, OSError, ValueError, OverflowError):
        return None


def _gguf_walk(r: _BoundedReader, size: int) -> _TensorStats:
    def u32() -> int:
        return struct.unpack("<I", r.exact(4))[0]

    def u64() -> int:
        return struct.unpack("<Q", r.exact(8))[0]

    def count(n: int) -> int:
        if n > _GGUF_MAX_COUNT:
            raise _GGUFError
        return n

    def string() -> bytes:
        return r.exact(u64())

    def skip_string() -> None:
        n = u64()
        if n > size:
            raise _GGUFError
        r.seek(n, io.SEEK_CUR)

    def value(vtype: int) -> object:
        if vtype in _GGUF_SCALARS:
            fmt = _GGUF_SCALARS[vtype]
            return struct.unpack(fmt, r.exact(struct.calcsize(fmt)))[0]
        if vtype == _GGUF_STRING:
            skip_string()
            return None
        if vtype == _GGUF_ARRAY:
            etype, n = u32(), count(u64())
            if etype in _GGUF_SCALARS:
                r.seek(n * struct.calcsize(_GGUF_SCALARS[etype]), io.SEEK_CUR)
            elif etype == _GGUF_STRING:
                for _ in range(n):
                    skip_string()
            else:
                raise _GGUFError  # nested arrays: not worth following
            return None
        raise _GGUFError

    if r.exact(4) != _GGUF_MAGIC:
        raise _GGUFError
    if u32() not in (2, 3):
        raise _GGUFError  # v1 used 32-bit counts; big-endian files show a swapped version
    n_tensors, n_kv = count(u64()), count(u64())
    file_type: object = None
    for _ in range(n_kv):
        key = r.exact(count(u64()))
        v = value(u32())
        if key == b"general.file_type":
            file_type = v
    stats = _TensorStats()
    elements_by_type: dict[int, int] = defaultdict(int)
    for _ in range(n_tensors):
        skip_string()
        n_dims = u32()
        if n_dims > 8:
            raise _GGUFError
        dims = struct.unpack(f"<{n_dims}Q", r.exact(8 * n_dims))
        ttype = u32()
        u64()  # offset
        elements = math.prod(dims)
        stats.params += elements
        elements_by_type[ttype] += elements
    if isinstance(file_type, int) and not isinstance(file_type, bool):
        precision = _GGUF_FILE_TYPES.get(file_type, "")
    elif elements_by_type:
        top = max(elements_by_type, key=lambda t: elements_by_type[t])
        precision = _GGML_TYPES.get(top, "")
    else:
        precision = ""
    # Bytes per precision are not cheap to know for quantized types; the file size stands in.
    stats.precision_bytes[precision] += size
    return stats


# --------------------------------------------------------------------------- model format


@dataclass(frozen=True)
class FormatInfo:
    """What the ModelPack config's ``format``, ``precision`` and ``paramSize`` should say."""

    format: str | None
    precision: str | None
    param_size: str | None
    # Every format found, most weight bytes first (``format`` is the first): a model shipped
    # as both safetensors and pickle is both, and search by either must find it. Left out of
    # equality: the three ModelPack fields are what a FormatInfo is compared on.
    formats: tuple[str, ...] = field(default=(), compare=False)


_UNITS = ((1_000_000_000_000, "T"), (1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K"))


def format_param_size(count: int) -> str:
    """A parameter count the way model names say it: 999, 124M, 6.7B, 12B, 1.1T.

    One decimal below 10 of a unit (dropped when it is .0), none above; rounding that
    reaches 1000 of a unit moves up to the next one (999_999 -> 1M).
    """
    if count < 1000:
        return str(count)
    for i in range(len(_UNITS) - 1, -1, -1):  # smallest unit first
        scale, unit = _UNITS[i]
        value = count / scale
        text = f"{value:.1f}" if value < 9.95 else f"{value:.0f}"
        if text.endswith(".0"):
            text = text[:-2]
        if float(text) < 1000 or i == 0:
            return text + unit
    raise AssertionError("unreachable")


def _safe_relpath(relpath: str) -> PurePosixPath | None:
    rel = PurePosixPath(relpath)
    if rel.is_absolute() or not rel.parts or ".." in rel.parts:
        return None
    return rel


def _savedmodel_members(root: Path, rels: Sequence[PurePosixPath]) -> set[PurePosixPath]:
    """Files belonging to a TensorFlow SavedModel: ``saved_model.pb`` (or ``.pbtxt``) next to
    a ``variables/`` directory, plus that directory's files and sibling ``*.pb`` files
    (``fingerprint.pb``)."""
    members: set[PurePosixPath] = set()
    for rel in rels:
        if rel.name.lower() not in ("saved_model.pb", "saved_model.pbtxt"):
            continue
        parent = rel.parent
        variables = parent / "variables"
        inside = [r for r in rels if r.parent == variables]
        if not inside and not (root / variables).is_dir():
            continue
        members.add(rel)
        members.update(inside)
        members.update(r for r in rels if r.parent == parent and r.suffix.lower() == ".pb")
    return members


_SHARD_NAME = re.compile(r"^(?P<prefix>.*?)[-_.]?\d+-of-(?P<total>\d+)(?P<rest>.*)$")


def _copy_group(rel: PurePosixPath) -> tuple[str, ...]:
    """Files that together make one copy of some weights: the shards of one set, else one file."""
    m = _SHARD_NAME.match(rel.name)
    if m:
        return (str(rel.parent), m["prefix"], m["total"], m["rest"])
    return (str(rel.parent), rel.name)


def _combine(items: Iterable[tuple[PurePosixPath, _Sniffed]]) -> tuple[str | None, str | None]:
    """Precision and parameter size over the files of the chosen format.

    Precision is the one holding the most bytes. Parameters are summed over copies of the
    weights (a shard set, or a single file), except that a directory holding several copies
    of the same size (consolidated + shards, fp16 variants, several GGUF quantizations)
    counts them once: equal within 1% means the same tensors again.
    """
    precision_bytes: dict[str, int] = defaultdict(int)
    groups: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])  # params, bytes
    any_stats = False
    for rel, sniffed in items:
        if sniffed.stats is None:
            continue
        any_stats = True
        for precision, n in sniffed.stats.precision_bytes.items():
            precision_bytes[precision] += n
        group = groups[_copy_group(rel)]
        group[0] += sniffed.stats.params
        group[1] += sniffed.size
    if not any_stats:
        return None, None

    precision: str | None = None
    if precision_bytes:
        top = min(precision_bytes, key=lambda p: (-precision_bytes[p], p))
        precision = top or None

    kept: dict[str, list[int]] = defaultdict(list)
    total = 0
    for key in sorted(groups, key=lambda k: (-groups[k][1], k)):
        params = groups[key][0]
        same_dir = kept[key[0]]
        if any(abs(params - p) <= 0.01 * max(params, p) for p in same_dir):
            continue
        same_dir.append(params)
        total += params
    return precision, (format_param_size(total) if total > 0 else None)


def detect_format(root: Path, relpaths: Sequence[str]) -> FormatInfo:
    """The model's format, chosen among its weight files by content where a magic exists.

    When several formats are present the one with the most weight bytes wins (ties go to the
    alphabetically first name, for determinism). Files that cannot be read, are not regular
    files, or whose path leaves ``root`` are ignored. ``precision`` and ``param_size`` come
    from safetensors and GGUF headers only; other formats would need unpickling or a
    framework.
    """
    rels = [r for r in (_safe_relpath(p) for p in relpaths) if r is not None]
    savedmodel = _savedmodel_members(root, rels)

    bytes_by_format: dict[str, int] = defaultdict(int)
    sniffed_files: dict[str, list[tuple[PurePosixPath, _Sniffed]]] = defaultdict(list)
    for rel in dict.fromkeys(rels):
        path = root / rel
        if rel in savedmodel:
            try:
                st = path.stat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                bytes_by_format["tensorflow-savedmodel"] += st.st_size
            continue
        if classify_file(str(rel), path) is not FileKind.WEIGHT:
            continue
        sniffed = _sniff(path, str(rel))
        if sniffed is None or sniffed.format is None:
            continue
        bytes_by_format[sniffed.format] += sniffed.size
        sniffed_files[sniffed.format].append((rel, sniffed))

    if not bytes_by_format:
        return FormatInfo(None, None, None)
    ranked = tuple(sorted(bytes_by_format, key=lambda fmt: (-bytes_by_format[fmt], fmt)))
    chosen = ranked[0]
    precision, param_size = _combine(sniffed_files.get(chosen, ()))
    return FormatInfo(chosen, precision, param_size, ranked)
