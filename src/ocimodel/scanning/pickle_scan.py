"""Pickle streams to findings, shared by every format that holds pickles (plain pickles,
PyTorch archives, joblib files, NumPy object arrays): recognising a pickle by its bytes,
reading joblib's raw array data where joblib's own unpickler reads it, and turning the
simulation's events into findings."""

from __future__ import annotations

import io
import math
import re
import zipfile
import zlib
from collections.abc import Callable
from typing import BinaryIO

from ocimodel.scanning.findings import Finding, Severity
from ocimodel.scanning.formats import Source
from ocimodel.scanning.pickle_policy import judge
from ocimodel.scanning.pickle_vm import Event, Global, Made, PickleRun, StopLoad

__all__ = [
    "ZIP_ERRORS",
    "SourceFile",
    "joblib_arrays",
    "looks_like_pickle",
    "open_zip",
    "pickle_findings",
    "scan_pickle_stream",
    "scan_zip_members",
]


def looks_like_pickle(head: bytes, size: int, *, strict: bool = False) -> bool:
    """Whether ``head`` (the first bytes of a ``size``-byte file) starts a pickle: the
    simulation either reaches STOP in it or runs to its end without an error a load would
    raise (the file goes on past the head).

    ``strict``, for data that is usually raw numbers (a PyTorch storage): a pickle only if
    the head already imports something, since without an import a pickle calls nothing."""
    if not head:
        return False
    run = PickleRun(io.BytesIO(head), hooks=(joblib_arrays,))
    reached, ops = run.load_one()
    if strict:
        return any(event.kind in ("import", "ext") for event in run.events)
    if head[0] == 0x80:
        # PROTO opens every pickle of protocol 2 and later (and a load accepts PROTO 0 or
        # 1 too): a pickle even if broken later.
        return len(head) >= 2 and head[1] <= 5
    if reached:
        return ops >= 2
    stop = run.events[-1]
    truncated = stop.kind == "stop" and run.at_end() and "unknown" not in stop.detail
    if truncated and len(head) < size:
        # the head ends inside the pickle, even inside its first opcode's long argument,
        # as long as that argument fits in the file (BZh... is not BINBYTES of 800 MB)
        return ops >= 3 or _first_length_fits(head, size)
    # A protocol 0 or 1 pickle broken part-way: still a pickle when it imported something.
    return ops >= 3 and any(event.kind == "import" for event in run.events)


# The length-prefixed opcodes a pickle may open with: (code, width of the length).
_SIZED_FIRST = {ord("B"): 4, ord("T"): 4, ord("X"): 4, 0x8D: 8, 0x8E: 8, 0x96: 8}


def _first_length_fits(head: bytes, size: int) -> bool:
    width = _SIZED_FIRST.get(head[0])
    if width is None:
        return True  # a newline-terminated argument longer than the head
    return len(head) > width and int.from_bytes(head[1 : 1 + width], "little") <= size - 1 - width


class SourceFile(io.RawIOBase):
    """A seekable binary file over a :class:`Source`'s ``read_at`` (zip archives need to
    seek: reading a member from a registry then fetches only that member's bytes)."""

    def __init__(self, source: Source, start: int = 0):
        self.source = source
        self.pos = start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.source.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        data = self.source.read_at(self.pos, len(buffer)) if self.pos < self.source.size else b""
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


# What zipfile raises on a hostile or corrupt archive (unknown methods, encrypted members,
# names that differ between the directory and the header, bad CRCs...).
ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError, zlib.error)


def open_zip(source: Source) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BufferedReader(SourceFile(source), buffer_size=1 << 16))


def scan_zip_members(source: Source, format: str, rule: str,
                     scan_member: Callable[[zipfile.ZipFile, zipfile.ZipInfo], list[Finding]]) -> list[Finding]:
    """The findings of ``scan_member`` over each file member of the zip ``source``. What
    zipfile cannot read (the archive, or one member) is a finding ``rule`` of its own: it
    cannot be scanned, and a loader with another zip reader may still read it."""

    def malformed(error: Exception, member: str | None) -> Finding:
        return Finding(file=source.name, format=format, severity=Severity.HIGH, rule=rule, member=member,
                       detail=f"the zip cannot be read, so it cannot be scanned: {error}")

    try:
        archive = open_zip(source)
    except ZIP_ERRORS as error:
        return [malformed(error, None)]
    findings: list[Finding] = []
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            try:
                findings += scan_member(archive, info)
            except ZIP_ERRORS as error:
                findings.append(malformed(error, info.filename))
    return findings


_MAX_NESTING = 16  # object arrays inside object arrays: joblib recurses, a scan need not forever
_WRAPPERS = {"joblib.numpy_pickle.NumpyArrayWrapper"}


def _wrapped_class(obj: object) -> str | None:
    if not isinstance(obj, Made) or not isinstance(obj.callee, Global):
        return None
    if obj.callee.full in ("copyreg._reconstructor", "copyreg.__newobj__") and isinstance(obj.args, tuple) and obj.args:
        inner = obj.args[0]
        return inner.full if isinstance(inner, Global) else None
    return obj.callee.full


def _dtype(dtype: object) -> tuple[int | None, bool]:
    """(item size, holds objects) of a pickled ``numpy.dtype(code, ...)`` with its state."""
    if not (isinstance(dtype, Made) and isinstance(dtype.callee, Global) and dtype.callee.name == "dtype"):
        return None, False
    code = dtype.args[0] if isinstance(dtype.args, tuple) and dtype.args and isinstance(dtype.args[0], str) else ""
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    flags = state[7] if len(state) > 7 and isinstance(state[7], int) else 0
    if code.lstrip("<>|=").startswith("O") or flags & 1:  # NPY_ITEM_REFCOUNT: holds objects
        return None, True
    elsize = state[5] if len(state) > 5 and isinstance(state[5], int) else -1
    if elsize > 0:
        return elsize, False
    if code in ("?", "b1"):
        return 1, False
    match = re.fullmatch(r"[<>|=]?[a-zA-Z]+(\d+)(\[\w+\])?", code)
    return (int(match.group(1)), False) if match else (None, False)


def joblib_arrays(obj: object, run: PickleRun) -> list[Event] | None:
    """joblib's NumpyArrayWrapper: after its BUILD, joblib reads the array from the stream,
    raw bytes (after an alignment byte and padding) or, for an object dtype, a nested pickle
    that it loads with a fresh unpickler. Read them the same way, scanning the nested one."""
    if _wrapped_class(obj) not in _WRAPPERS:
        return None
    state = obj.attrs  # type: ignore[union-attr]
    run.raw_read = True
    itemsize, objects = _dtype(state.get("dtype"))
    if objects:
        if run.depth >= _MAX_NESTING:
            raise StopLoad("joblib object arrays nested too deep; the rest is not scanned")
        nested = PickleRun(run.stream, base=run.base, hooks=run.hooks, depth=run.depth + 1)
        nested.load_one()
        return nested.events
    shape = state.get("shape")
    if itemsize is None or not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise StopLoad("a joblib array whose size cannot be read from its wrapper; the rest is not scanned")
    if state.get("numpy_array_alignment_bytes") is not None:
        padding = run.read(1)
        if not padding or run.skip(padding[0]) < padding[0]:
            raise StopLoad("a joblib array's padding runs past the end")
    length = math.prod(shape) * itemsize
    if run.skip(length) < length:
        raise StopLoad(f"a joblib array of {length} bytes runs past the end")
    return []


def scan_pickle_stream(stream: BinaryIO, *, file: str, format: str, member: str | None = None,
                       base: int = 0, limit: int | None = None, where: str = "",
                       reopen: Callable[[], BinaryIO] | None = None) -> list[Finding]:
    """The findings for every pickle in ``stream``.

    When joblib's array data was skipped, the bytes a plain ``pickle.load`` would parse as
    opcodes there were not judged: with ``reopen`` (a fresh stream of the same bytes) they
    are, in a second pass without the skip, and what it finds critical is added (a fake
    array wrapper must not hide a payload from the loader that ignores it)."""
    run = PickleRun(stream, base=base, hooks=(joblib_arrays,))
    findings = pickle_findings(run.run_all(limit), file=file, format=format, member=member, where=where)
    if run.raw_read and reopen is not None:
        with reopen() as again:
            plain = pickle_findings(PickleRun(again, base=base).run_all(limit), file=file, format=format, member=member,
                                    where=f"{where} (if loaded with pickle.load, not joblib)")  # fmt: skip
        seen = {(f.rule, f.offset) for f in findings}
        # Only callables named outright: random array bytes read as opcodes easily make an
        # EXT code or a call of a computed value, but not a dangerous module and name.
        named = [f for f in plain if f.rule == "pickle.callable.dangerous" and not f.detail.startswith("?.?")]
        findings += [f for f in named if (f.rule, f.offset) not in seen]
    return findings


def pickle_findings(events: list[Event], *, file: str, format: str, member: str | None = None, where: str = "") -> list[Finding]:
    return [
        Finding(file=file, format=format, severity=v.severity, rule=v.rule,
                detail=f"{v.detail}{where}", offset=v.offset, member=member)
        for v in judge(events)
    ]  # fmt: skip
