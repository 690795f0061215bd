"""Archives inside a model (zip, tar, gzip-compressed tar or file) that are not a known
model container (a PyTorch zip, an ``.npz``, a ``.keras`` file: their own scanners read
them, and no loader extracts them).

Whoever unpacks an archive writes where its member names say: a name that is absolute or
climbs out with ``..``, or a link pointing outside, writes anywhere on the host (zip slip,
tar traversal): critical. Member sizes far beyond the compressed size exhaust the disk or
memory of whoever unpacks (a zip bomb): high; so do overlapping zip entries (the
non-recursive zip bomb). Device files and set-uid members: high. Archives nested in
archives are read too, within a depth and a byte budget (what is left unread is reported
as info, never passed in silence).

``ArchiveScanner(inner=...)`` also hands each member that is not an archive to ``inner``
(the engine's scan of one source), so a pickle inside a tarball is judged as a pickle."""

from __future__ import annotations

import gzip
import json
import lzma
import posixpath
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable

from ocimodel.scanning.findings import Finding, Severity
from ocimodel.scanning.formats import Source
from ocimodel.scanning.formats.keras import config_findings, is_keras_zip
from ocimodel.scanning.formats.randomaccess import BytesSource, seekable

__all__ = ["SCANNERS", "ArchiveScanner", "unsafe_member_path"]

MAX_DEPTH = 3  # archives within archives read at most this deep
MAX_MEMBER = 256 << 20  # bytes of one member read into memory to look inside
MAX_TOTAL = 1 << 30  # bytes decompressed for one top-level file, all members together
BOMB_RATIO = 100  # uncompressed / compressed beyond this, on a member over BOMB_MIN, is a bomb
BOMB_MIN = 16 << 20

Inner = Callable[[Source], list[Finding]]


def unsafe_member_path(name: str) -> bool:
    """Whether extracting to ``name`` writes outside the extraction directory."""
    if not name or "\x00" in name:
        return True
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return True
    return ".." in name.replace("\\", "/").split("/")


def _link_escapes(member: str, target: str) -> bool:
    """Whether a symlink at ``member`` pointing to ``target`` leads outside the directory."""
    target = target.replace("\\", "/")
    if not target or "\x00" in target or target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        return True
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(member.replace("\\", "/")), target))
    return joined == ".." or joined.startswith("../")


def _kind(head: bytes) -> str | None:
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        if is_keras_zip(head) or _is_npz_or_torch(head):
            return None
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    return None


def _is_npz_or_torch(head: bytes) -> bool:
    n = int.from_bytes(head[26:28], "little")
    first = head[30 : 30 + n].decode("utf-8", "replace")
    return first.endswith((".npy", "/data.pkl", "data.pkl", "/.format_version", "/version"))


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_TOTAL


class ArchiveScanner:
    name = "archive"

    def __init__(self, inner: Inner | None = None) -> None:
        self.inner = inner

    def detect(self, head: bytes, size: int) -> bool:
        return _kind(head) is not None

    def scan(self, source: Source) -> list[Finding]:
        findings: list[Finding] = []
        self._scan(source, source.name, None, 0, _Budget(), findings)
        return findings

    def _scan(self, source: Source, file: str, prefix: str | None, depth: int, budget: _Budget, out: list) -> None:
        def add(severity: Severity, rule: str, detail: str, member: str | None, offset: int | None = None) -> None:
            where = member if prefix is None or member is None else f"{prefix}/{member}"
            out.append(Finding(file=file, format=self.name, severity=severity, rule=rule, detail=detail,
                               member=where if where is not None else prefix, offset=offset))  # fmt: skip

        kind = _kind(source.read_at(0, 512))
        try:
            if kind == "zip":
                self._zip(source, file, prefix, depth, budget, out, add)
            elif kind == "tar":
                self._tar(source.open(), "tar", file, prefix, depth, budget, out, add)
            elif kind == "gzip":
                self._gzip(source, file, prefix, depth, budget, out, add)
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError,
                NotImplementedError, RuntimeError) as exc:  # zipfile: unknown methods, encrypted members
            add(Severity.HIGH, "archive.malformed", f"the {kind} archive cannot be read: {exc}", None)

    def _member(self, data: bytes, name: str, file: str, prefix: str | None, depth: int, budget: _Budget, out: list, add) -> None:
        path = name if prefix is None else f"{prefix}/{name}"
        if posixpath.basename(name) == "config.json":
            # Keras reads config.json by name wherever it sits in the zip: a .keras file
            # whose first member is something else still gets the Keras rules here.
            try:
                config = json.loads(data)
            except (ValueError, RecursionError):
                config = None
            for severity, rule, detail in config_findings(config) if isinstance(config, dict) else ():
                out.append(Finding(file=file, format="keras", severity=severity, rule=rule, detail=detail, member=path))
        if _kind(data[:512]) is not None:
            if depth + 1 >= MAX_DEPTH:
                add(Severity.INFO, "archive.depth", f"archive nested deeper than {MAX_DEPTH}: not read", name)
                return
            self._scan(BytesSource(path, data), file, path, depth + 1, budget, out)
        elif self.inner is not None:
            out.extend(self.inner(BytesSource(f"{file}!{path}", data)))

    def _read(self, stream, size: int, name: str, budget: _Budget, add) -> bytes | None:
        if size > MAX_MEMBER or size > budget.left:
            add(Severity.INFO, "archive.budget", f"member of {size} bytes over the scan budget: not read", name)
            return None
        data = stream.read(size + 1)
        budget.left -= len(data)
        if len(data) > size:
            add(Severity.HIGH, "archive.size-lie", "member holds more bytes than its header says", name)
            return None
        return data

    def _zip(self, source: Source, file: str, prefix: str | None, depth: int, budget: _Budget, out: list, add) -> None:
        with zipfile.ZipFile(seekable(source)) as archive:
            offsets: dict[int, str] = {}
            for info in archive.infolist():
                name = info.filename
                if unsafe_member_path(name):
                    add(Severity.CRITICAL, "archive.path-traversal", f"member {name!r} extracts outside the target directory", name, info.header_offset)
                if info.header_offset in offsets:
                    add(Severity.HIGH, "archive.overlap", f"member {name!r} shares its data with {offsets[info.header_offset]!r} (an overlapping zip bomb)", name, info.header_offset)
                offsets[info.header_offset] = name
                ratio = info.file_size / max(info.compress_size, 1)
                if info.file_size > BOMB_MIN and ratio > BOMB_RATIO:
                    add(Severity.HIGH, "archive.bomb", f"member {name!r} expands {ratio:.0f}x to {info.file_size} bytes", name, info.header_offset)
                    continue
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    target = archive.read(info)[:4096].decode("utf-8", "replace")
                    if _link_escapes(name, target):
                        add(Severity.CRITICAL, "archive.link-escapes", f"symlink {name!r} points outside: {target!r}", name, info.header_offset)
                    continue
                if info.is_dir():
                    continue
                with archive.open(info) as member:
                    data = self._read(member, info.file_size, name, budget, add)
                if data is not None:
                    self._member(data, name, file, prefix, depth, budget, out, add)

    def _tar(self, stream, kind: str, file: str, prefix: str | None, depth: int, budget: _Budget, out: list, add) -> None:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for info in archive:
                name = info.name
                if unsafe_member_path(name):
                    add(Severity.CRITICAL, "archive.path-traversal", f"member {name!r} extracts outside the target directory", name)
                escapes = (info.issym() and _link_escapes(name, info.linkname)) or (
                    info.islnk() and unsafe_member_path(info.linkname)
                )
                if escapes:
                    add(Severity.CRITICAL, "archive.link-escapes", f"link {name!r} points outside: {info.linkname!r}", name)
                if info.ischr() or info.isblk() or info.isfifo():
                    add(Severity.HIGH, "archive.device", f"member {name!r} is a device or fifo", name)
                if info.isreg() and info.mode & (stat.S_ISUID | stat.S_ISGID):
                    add(Severity.HIGH, "archive.setuid", f"member {name!r} is set-uid or set-gid", name)
                if info.isreg():
                    member = archive.extractfile(info)
                    data = self._read(member, info.size, name, budget, add) if member is not None else None
                    if data is not None:
                        self._member(data, name, file, prefix, depth, budget, out, add)

    def _gzip(self, source: Source, file: str, prefix: str | None, depth: int, budget: _Budget, out: list, add) -> None:
        with gzip.GzipFile(fileobj=source.open()) as stream:
            head = stream.peek(512)[:512] if hasattr(stream, "peek") else b""
            if len(head) >= 262 and head[257:262] == b"ustar":
                self._tar(stream, "tar.gz", file, prefix, depth, budget, out, add)
                return
            limit = min(MAX_MEMBER, budget.left)
            data = stream.read(limit + 1)
            budget.left -= len(data)
            if len(data) > limit:
                ratio = len(data) / max(source.size, 1)
                severity = Severity.HIGH if ratio > BOMB_RATIO else Severity.INFO
                add(severity, "archive.bomb" if severity is Severity.HIGH else "archive.budget",
                    f"gzip content over {limit} bytes ({ratio:.0f}x its compressed size): not read further", None)  # fmt: skip
                return
            self._member(data, "(gzip content)", file, prefix, depth, budget, out, add)


SCANNERS = [ArchiveScanner()]
