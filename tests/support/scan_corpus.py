"""Corpora of malicious and benign model files for the scanner's tests and benchmark.

The malicious files are built here, opcode by opcode or with the same ``__reduce__`` trick
an attacker uses, after the gadget techniques that public advisories and papers on pickle
scanner bypasses describe; none is ever loaded. The benign files are written by the real
libraries (NumPy, joblib, scikit-learn, and PyTorch when it is installed).

Each corpus entry is ``(label, filename, bytes)``: the label names the technique, the file
name is where it would sit in a model (names never decide a format: several malicious
files carry the names of safe formats)."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable

__all__ = [
    "BENIGN_BUILDERS",
    "Corpus",
    "MaliciousPayload",
    "benign_corpus",
    "benign_torch_members",
    "malicious_pickle_corpus",
    "scan_bytes",
    "torch_zip",
]

Corpus = list[tuple[str, str, bytes]]

CMD = "echo pwned > /tmp/ocimodel-scan-canary"


# -- a tiny pickle assembler ---------------------------------------------------------------
def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data if len(data) < 256 else b"X" + struct.pack("<I", len(data)) + data


def _bytes(data: bytes) -> bytes:
    return b"C" + bytes([len(data)]) + data if len(data) < 256 else b"B" + struct.pack("<I", len(data)) + data


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _call(func: bytes, *args: bytes) -> bytes:
    return func + _tuple(*args) + b"R"


P2 = b"\x80\x02"
P4 = b"\x80\x04"
STOP = b"."


def _p2(body: bytes) -> bytes:
    return P2 + body + STOP


def _system(module: str = "os", name: str = "system", cmd: str = CMD) -> bytes:
    return _p2(_call(_global(module, name), _str(cmd)))


class MaliciousPayload:
    """The classic: an object whose ``__reduce__`` makes the load call ``os.system``."""

    def __init__(self, cmd: str = CMD):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def _benign_numpy_pickle() -> bytes:
    import numpy as np

    return pickle.dumps({"weights": np.arange(12, dtype=np.float32).reshape(3, 4)}, protocol=4)


def _npy_header(descr: str, shape: tuple) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    pad = 64 - (10 + len(header) + 1) % 64
    header += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def torch_zip(members: dict[str, bytes], top: str = "archive") -> bytes:
    """A zip laid out as torch.save writes it (stored members under one top folder,
    data.pkl first)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(f"{top}/{name}", data)
    return out.getvalue()


def benign_torch_members() -> dict[str, bytes]:
    # A data.pkl written by hand after the opcodes torch.save emits for a state dict of one
    # float tensor (protocol 2, the storage as a persistent id), and the layout's small
    # members: malicious variants swap members in. The files torch itself writes are in
    # _torch_files, when torch is installed.
    data_pkl = (
        P2 + b"ccollections\nOrderedDict\nq\x00)Rq\x01X\x06\x00\x00\x00weightq\x02"
        + b"ctorch._utils\n_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05"
        + b"X\x01\x00\x00\x000q\x06X\x03\x00\x00\x00cpuq\x07K\x04tq\x08QK\x00K\x04\x85q\tK\x01\x85q\n\x89"
        + b"ccollections\nOrderedDict\nq\x0b)Rq\x0ctq\rRq\x0es}q\x0fX\t\x00\x00\x00_metadataq\x10}q\x11sb."
    )
    return {"data.pkl": data_pkl, "byteorder": b"little", "data/0": b"\x00" * 16, "version": b"3\n"}


# -- the malicious corpus ---------------------------------------------------------------------
def malicious_pickle_corpus() -> Corpus:
    """Every entry must be judged critical."""
    corpus: Corpus = []

    def add(label: str, data: bytes, name: str = "model.pkl") -> None:
        corpus.append((label, name, data))

    # a dangerous callable through REDUCE, by the pickler itself and by hand
    add("reduce-os-system-pickler-p0", pickle.dumps(MaliciousPayload(), protocol=0))
    add("reduce-os-system-pickler-p5", pickle.dumps(MaliciousPayload(), protocol=5))
    add("reduce-posix-system", _system("posix"))
    add("reduce-subprocess-popen", _p2(_call(_global("subprocess", "Popen"), b"(" + _str("sh") + _str("-c") + _str(CMD) + b"l")))
    add("reduce-subprocess-check-output", _p2(_call(_global("subprocess", "check_output"), _str(CMD))))
    add("reduce-subprocess-getoutput", _p2(_call(_global("subprocess", "getoutput"), _str(CMD))))
    # builtins that run code, under their Python 3 and Python 2 names
    add("builtins-eval", _p2(_call(_global("builtins", "eval"), _str(f"__import__('os').system({CMD!r})"))))
    add("builtins-exec", _p2(_call(_global("builtins", "exec"), _str(f"import os; os.system({CMD!r})"))))
    add("py2-builtin-eval-p0", b"c__builtin__\neval\n(S'1+1'\ntR.")
    add("proto-1-opcode", b"\x80\x01" + _system()[2:])
    add("builtins-exec-compile", _p2(_call(_global("builtins", "exec"), _call(_global("builtins", "compile"), _str("print(1)"), _str("<x>"), _str("exec")))))
    add("builtins-open-write", _p2(_call(_global("builtins", "open"), _str("/tmp/ocimodel-scan-canary"), _str("w"))))
    # getattr indirection
    import_os = _call(_global("builtins", "__import__"), _str("os"))
    add("getattr-import-os-system", _p2(_call(_call(_global("builtins", "getattr"), import_os, _str("system")), _str(CMD))))
    builtins_module = _call(_global("importlib", "import_module"), _str("builtins"))
    add("getattr-builtins-eval", _p2(_call(_call(_global("builtins", "getattr"), builtins_module, _str("eval")), _str("1+1"))))
    add("getattr-exec-via-dict", _p2(_call(_call(_global("builtins", "getattr"), _global("builtins", "dict"), _str("get")), _str("exec"))))
    # STACK_GLOBAL with names from the memo and from string operations
    memo_names = P4 + _str("os") + b"\x94" + _str("system") + b"\x94" + b"h\x00h\x01\x93" + _str(CMD) + b"\x85R" + STOP
    add("stack-global-memo", memo_names)
    rot13 = lambda text: _call(_global("_codecs", "decode"), _str(text), _str("rot13"))  # noqa: E731
    add("stack-global-rot13-names", P4 + rot13("bf") + rot13("flfgrz") + b"\x93" + _str(CMD) + b"\x85R" + STOP)
    add("stack-global-decoded-bytes", P4 + _call(_global("_codecs", "decode"), _bytes(b"os"), _str("utf-8")) + rot13("flfgrz") + b"\x93" + _str(CMD) + b"\x85R" + STOP)
    lower = _str("builtins") + _str("str.lower") + b"\x93"
    add("stack-global-computed-name", P4 + lower + _tuple(_str("OS")) + b"R" + _str("system") + b"\x93" + _str(CMD) + b"\x85R" + STOP)
    # INST, OBJ, NEWOBJ, NEWOBJ_EX
    add("inst-os-system-p0", b"(S'" + CMD.encode() + b"'\nios\nsystem\n.")
    add("obj-os-system-p1", b"(cos\nsystem\nS'" + CMD.encode() + b"'\no.")
    add("newobj-subprocess-popen", P2 + _global("subprocess", "Popen") + _tuple(_str(CMD)) + b"\x81" + STOP)
    add("newobj-ex-popen-shell", P4 + _global("subprocess", "Popen") + _tuple(_str(CMD)) + b"}" + _str("shell") + b"\x88s\x92" + STOP)
    # BUILD gadgets: __setstate__ planted in an instance, a module patched, os.environ
    add("build-setstate-os-system", P2 + _call(_global("collections", "OrderedDict")) + b"}" + _str("__setstate__") + _global("os", "system") + b"sb" + _str(CMD) + b"b" + STOP)
    add("build-patches-module", P2 + _global("numpy", "random") + b"N}" + _str("seed") + _global("builtins", "print") + b"s\x86b" + STOP)
    add("setitem-os-environ", P2 + _global("os", "environ") + _str("LD_PRELOAD") + _str("/tmp/evil.so") + b"s" + STOP)
    # operator and functools indirection
    add("operator-attrgetter", _p2(_call(_call(_global("operator", "attrgetter"), _str("system")), import_os)))
    add("operator-methodcaller", _p2(_call(_call(_global("operator", "methodcaller"), _str("system"), _str(CMD)), import_os)))
    add("functools-partial", _p2(_call(_call(_global("functools", "partial"), _global("os", "system"), _str(CMD)))))
    add("functools-reduce-eval", _p2(_call(_global("functools", "reduce"), _global("builtins", "eval"), b"(" + _str("1+1") + b"l")))
    # nested loads
    inner = _system()
    add("nested-pickle-loads", _p2(_call(_global("pickle", "loads"), _bytes(inner))))
    add("nested-_pickle-loads", _p2(_call(_global("_pickle", "loads"), _bytes(inner))))
    bytes_io = _call(_global("_io", "BytesIO"), _bytes(inner))
    add("torch-load-embedded", _p2(_call(_global("torch", "load"), bytes_io)))
    add("torch-storage-load-from-bytes", _p2(_call(_global("torch.storage", "_load_from_bytes"), _bytes(inner))))
    add("numpy-load-allow-pickle", _p2(_call(_global("numpy", "load"), _str("/tmp/x.npy"), b"N", b"\x88")))
    add("numpy-testing-runstring", _p2(_call(_global("numpy.testing._private.utils", "runstring"), _str("import os"), b"}")))
    # modules that run code, touch files, processes or the network
    add("runpy-run-path", _p2(_call(_global("runpy", "run_path"), _str("/tmp/x.py"))))
    add("importlib-import-module", _p2(_call(_global("importlib", "import_module"), _str("os"))))
    add("code-interactive-interpreter", _p2(_call(_call(_global("builtins", "getattr"), _call(_global("code", "InteractiveInterpreter")), _str("runsource")), _str("import os"))))
    add("timeit-timeit", _p2(_call(_global("timeit", "timeit"), _str(f"__import__('os').system({CMD!r})"), _str("pass"), b"N", b"K\x01")))
    add("pdb-run", _p2(_call(_global("pdb", "run"), _str("import os"))))
    add("webbrowser-open", _p2(_call(_global("webbrowser", "open"), _str("https://example.invalid/x"))))
    add("shutil-rmtree", _p2(_call(_global("shutil", "rmtree"), _str("/tmp/ocimodel-scan-canary-dir"))))
    add("socket-create-connection", _p2(_call(_global("socket", "create_connection"), _tuple(_str("127.0.0.1"), b"M\x50\x00"))))
    add("ctypes-cdll", _p2(_call(_global("ctypes", "CDLL"), _str("/tmp/evil.so"))))
    add("pty-spawn", _p2(_call(_global("pty", "spawn"), _str("/bin/sh"))))
    add("pip-main", _p2(_call(_global("pip", "main"), b"(" + _str("install") + _str("evil") + b"l")))
    add("asyncio-subprocess-shell", _p2(_call(_global("asyncio.subprocess", "create_subprocess_shell"), _str(CMD))))
    # code objects, sys.modules, attribute walks
    add("types-function-marshal", _p2(_call(_call(_global("types", "FunctionType"), _call(_global("marshal", "loads"), _bytes(b"\xe3" + b"\x00" * 16)), b"}"))))
    add("sys-modules-lookup", _p2(_call(_call(_global("builtins", "getattr"), _global("sys", "modules"), _str("get")), _str("os"))))
    add("dunder-globals-walk", P4 + _str("torch._utils") + _str("_rebuild_tensor_v2.__globals__") + b"\x93" + STOP)
    add("dunder-module-builtins", _p2(_global("sklearn", "__builtins__")))
    add("attribute-walk-torch-os-system", P4 + _str("torch") + _str("os.system") + b"\x93" + _str(CMD) + b"\x85R" + STOP)
    add("reexported-dangerous-name", _p2(_call(_global("mylab.helpers", "system"), _str(CMD))))
    add("long-first-literal", b"X" + struct.pack("<I", 100_000) + b"a" * 100_000 + b"0" + _system()[2:])
    # EXT codes
    add("ext1-code", P2 + b"\x82\xf0" + _tuple(_str(CMD)) + b"R" + STOP)
    add("ext2-code", P2 + b"\x83\x00\x10" + _tuple(_str(CMD)) + b"R" + STOP)
    add("ext4-code", P2 + b"\x84\x00\x00\x01\x00" + _tuple(_str(CMD)) + b"R" + STOP)
    # dangerous classes through the standard reconstruction paths
    add("copyreg-reconstructor-popen", b"ccopy_reg\n_reconstructor\n(csubprocess\nPopen\nc__builtin__\nobject\nNtR.")
    add("copyreg-newobj-popen", _p2(_call(_global("copyreg", "__newobj__"), _global("subprocess", "Popen"), _str(CMD))))
    add("numpy-randomstate-ctor-calls-eval", _p2(_call(_global("numpy.random._pickle", "__randomstate_ctor"), _str("1+1"), _global("builtins", "eval"))))
    add("torch-rebuild-from-type-os-system", _p2(_call(_global("torch._tensor", "_rebuild_from_type_v2"), _global("os", "system"), _global("torch", "Tensor"), _tuple(_str(CMD)), b"}")))
    # where the payload hides
    add("after-benign-pickle", _benign_numpy_pickle() + pickle.dumps(MaliciousPayload(), protocol=2))
    add("truncated-after-payload", _system()[:-1] + b"(" + _str("garbage") + b"\x8c\xff" + b"x")
    add("named-safetensors", _system(), "model.safetensors")
    add("framed-protocol-5", pickle.dumps([MaliciousPayload(), list(range(2000))], protocol=5))
    add("deep-in-benign-dict", pickle.dumps({"layers": [{"w": [0.5] * 100}] * 3, "hook": MaliciousPayload()}, protocol=2))
    # in other containers
    members = benign_torch_members()
    add("pytorch-zip-data-pkl", torch_zip({**members, "data.pkl": pickle.dumps(MaliciousPayload(), protocol=2)}), "pytorch_model.bin")
    add("pytorch-zip-other-member", torch_zip({**members, "extra/aux.bin": pickle.dumps(MaliciousPayload(), protocol=2)}), "pytorch_model.bin")
    add("pytorch-zip-storage-member", torch_zip({**members, "data/1": pickle.dumps(MaliciousPayload(), protocol=2)}), "pytorch_model.bin")
    legacy = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001}))
    add("pytorch-legacy-object", legacy + pickle.dumps(MaliciousPayload(), protocol=2) + pickle.dumps([], protocol=2), "model.pt")
    payload = pickle.dumps(MaliciousPayload(), protocol=3)
    add("npy-object-array", _npy_header("|O", (1,)) + payload, "weights.npy")
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as archive:
        archive.writestr("a.npy", _npy_header("<f8", (2,)) + b"\x00" * 16)
        archive.writestr("b.npy", _npy_header("|O", (1,)) + payload)
    add("npz-object-member", npz.getvalue(), "arrays.npz")
    # a fake joblib array wrapper whose "array data" is a payload a plain pickle.load runs
    hidden = _global("os", "system") + _tuple(_str(CMD)) + b"R0"
    state = (b"}(" + _str("subclass") + _global("numpy", "ndarray") + _str("shape") + b"K" + bytes([len(hidden)]) + b"\x85"
             + _str("order") + _str("C") + _str("dtype") + _call(_global("numpy", "dtype"), _str("u1"), b"\x89\x88")
             + b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb" + _str("allow_mmap") + b"\x89u")
    add("joblib-fake-wrapper-hides-payload", P2 + _global("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81" + state + b"b" + hidden + STOP, "model.pkl")
    joblib_plain = _joblib_with_payload()
    if joblib_plain is not None:
        add("joblib-after-array", joblib_plain, "model.joblib")
        add("joblib-zlib", zlib.compress(joblib_plain, 3), "model.joblib")
        add("joblib-gzip", gzip.compress(joblib_plain), "model.joblib.gz")
        add("joblib-bz2", bz2.compress(joblib_plain), "model.joblib.bz2")
        add("joblib-object-array-nested", _joblib_object_array_payload(), "model.joblib")
    return corpus


def _joblib_with_payload() -> bytes | None:
    try:
        import joblib
        import numpy as np
    except ImportError:
        return None
    out = io.BytesIO()
    joblib.dump({"coef": np.arange(1000, dtype=np.float64), "hook": MaliciousPayload()}, out)
    return out.getvalue()


def _joblib_object_array_payload() -> bytes:
    import joblib
    import numpy as np

    array = np.empty(2, dtype=object)
    array[0] = MaliciousPayload()
    array[1] = "ok"
    out = io.BytesIO()
    joblib.dump({"coef": np.arange(10.0), "labels": array}, out)
    return out.getvalue()


# -- the benign corpus -------------------------------------------------------------------------
def _numpy_files() -> Corpus:
    import numpy as np

    out: Corpus = []
    for dtype in ("<f4", "<i8", "bool", "<c16", "<U5"):
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(7, dtype=dtype))
        out.append((f"npy-{dtype}", "a.npy", buffer.getvalue()))
    buffer = io.BytesIO()
    np.save(buffer, np.array(["x", None, 3, {"k": [1.5]}], dtype=object), allow_pickle=True)
    out.append(("npy-object-array", "o.npy", buffer.getvalue()))
    for label, save in (("npz", np.savez), ("npz-compressed", np.savez_compressed)):
        buffer = io.BytesIO()
        save(buffer, a=np.arange(5), b=np.eye(3), c=np.array(["x", None], dtype=object))
        out.append((label, "a.npz", buffer.getvalue()))
    for protocol in range(6):
        data = {"a": np.arange(6.0).reshape(2, 3), "s": np.float64(2.5), "i": np.int32(3), "d": np.dtype("M8[s]"),
                "r": np.random.RandomState(0), "g": np.random.default_rng(1), "m": np.ma.masked_array([1, 2], mask=[0, 1]),
                "set": {1, 2}, "fs": frozenset("ab"), "c": 1 + 2j, "sl": slice(1, 5), "b": bytearray(b"xy")}  # fmt: skip
        out.append((f"numpy-pickle-p{protocol}", "arrays.pkl", pickle.dumps(data, protocol=protocol)))
    return out


def _sklearn_files() -> Corpus:
    import joblib
    import numpy as np
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import SVC

    rng = np.random.RandomState(0)
    x, y = rng.rand(40, 4), np.array([0, 1] * 20)
    models = {
        "pipeline": Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]).fit(x, y),
        "forest": RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y),
        "boosting": GradientBoostingClassifier(n_estimators=3).fit(x, y),
        "svc": SVC(probability=True, random_state=0).fit(x, y),
        "onehot": OneHotEncoder().fit([["a"], ["b"]]),
        "tfidf": TfidfVectorizer().fit(["a model", "another model"]),
    }
    out: Corpus = []
    for label, model in models.items():
        for compress in (0, 3, ("gzip", 3), ("xz", 3), ("bz2", 3)):
            path = f"/tmp/ocimodel-scan-corpus-{os.getpid()}.joblib"
            joblib.dump(model, path, compress=compress)
            with open(path, "rb") as handle:
                data = handle.read()
            os.unlink(path)
            tag = "plain" if compress == 0 else (compress[0] if isinstance(compress, tuple) else "zlib")
            out.append((f"sklearn-{label}-joblib-{tag}", "model.joblib", data))
        out.append((f"sklearn-{label}-pickle", "model.pkl", pickle.dumps(model, protocol=5)))
    return out


def _torch_files() -> Corpus:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    out: Corpus = []
    objects = {
        "state-dict": net.state_dict(),
        "full-module": net,
        "tensors": {"f16": torch.ones(2, dtype=torch.float16), "bf16": torch.zeros(2, dtype=torch.bfloat16),
                    "i64": torch.arange(3), "bool": torch.tensor([True]), "param": torch.nn.Parameter(torch.ones(1)),
                    "size": torch.Size([2, 3]), "device": torch.device("cpu"), "dtype": torch.float32},  # fmt: skip
        "optimizer": torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9).state_dict(),
    }
    for label, obj in objects.items():
        for legacy in (False, True):
            buffer = io.BytesIO()
            torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
            out.append((f"torch-{label}-{'legacy' if legacy else 'zip'}", "model.pt", buffer.getvalue()))
    return out


BENIGN_BUILDERS: dict[str, Callable[[], Corpus]] = {
    "numpy": _numpy_files,
    "sklearn": _sklearn_files,
    "torch": _torch_files,
}


def benign_corpus(require: tuple[str, ...] = ()) -> Corpus:
    """Files written by the real libraries; a library that is not installed is skipped,
    unless it is named in ``require``."""
    out: Corpus = [("torch-zip-by-hand", "pytorch_model.bin", torch_zip(benign_torch_members()))]
    for name, build in BENIGN_BUILDERS.items():
        try:
            out += build()
        except ImportError:
            if name in require:
                raise
    return out


def scan_bytes(data: bytes, name: str = "model.bin", allow: tuple[str, ...] = ()):
    """Every finding the format scanners report for one file's bytes (what the engine
    does for a local file, without its cache)."""
    from ocimodel.scanning.formats import HEAD_BYTES
    from ocimodel.scanning.formats.catalog import all_scanners
    from ocimodel.scanning.pickle_policy import user_allowlist

    source = _BytesSource(name, data)
    findings = []
    with user_allowlist(allow):
        for scanner in all_scanners():
            if scanner.detect(data[:HEAD_BYTES], len(data)):
                findings += scanner.scan(source)
    return findings


class _BytesSource:
    def __init__(self, name: str, data: bytes):
        self.name = name
        self.data = data
        self.size = len(data)

    def read_at(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]

    def open(self):
        return io.BytesIO(self.data)
