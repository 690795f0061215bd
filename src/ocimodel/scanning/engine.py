"""Run the format scanners over a file, a directory, or the layers of a model.

Every scanner whose ``detect`` accepts a file's first bytes is run; formats are never
judged by names. Where the bytes come from is the engine's business (docs/scanning-cli.md):

- a local file: random access with ``pread``;
- a layer in a registry or an OCI layout (:class:`BlobSource`): ``read_at`` is one HTTP
  Range request (a safetensors or GGUF header costs kilobytes), ``open()`` streams the
  whole blob and checks it against its digest as it ends. A layer whose bytes were not all
  checked is then read through once more, hashed and dropped, unless the caller trusts the
  registry's ranges (``trust_ranges``): the scan of an unverified piece is marked so by an
  info finding, never reported as clean without saying so. A digest mismatch raises
  IntegrityError, whatever the scanners said;
- a tar layer: its members, each read into memory (nothing is written to disk) under the
  guarded tar reader pull uses, the whole layer verified as its stream ends.

Results are cached by layer digest (ocimodel.scanning.cache)."""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ocimodel.errors import IntegrityError, OcimodelError, TransportError, UsageError
from ocimodel.oci.digest import VerifyingHasher
from ocimodel.oci.models import Descriptor, Manifest
from ocimodel.scanning.cache import ScanCache
from ocimodel.scanning.findings import FileReport, Finding, ScanReport, Severity
from ocimodel.scanning.formats import HEAD_BYTES, FormatScanner, catalog

__all__ = [
    "MAX_MEMBER_BYTES", "Allowlist", "BlobSource", "LocalSource", "MemorySource", "scan_files", "scan_layers",
    "scan_path", "scanners",
]

# A tar member is scanned from memory (a pickle is never written to disk by `scan REF`):
# larger members are reported unscanned, at a severity the default gate stops at.
MAX_MEMBER_BYTES = 512 * 1024 * 1024

# The most any one ``read_at`` may ask for: a scanner reads headers, not tensors.
MAX_READ_BYTES = 256 * 1024 * 1024


def scanners() -> list[FormatScanner]:
    """The format scanners, in the catalog's order (looked up at each scan)."""
    return catalog.all_scanners()


# -- the allowlist ---------------------------------------------------------------------------


class Allowlist:
    """Callables (or other names a finding's detail gives) the user trusts, as globs.

    A user allowlist can trust what the scanners could not judge (medium and below); it
    never silences a high or critical finding: a known-dangerous callable stays dangerous
    whatever a file in the repository says."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns = sorted({p.strip() for p in patterns if p and p.strip()})

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], more: Iterable[str] = ()) -> Allowlist:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read the allow file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"the allow file {path} is not UTF-8 text") from None
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        return cls([*more, *(line for line in lines if line)])

    @property
    def digest(self) -> str:
        """What the cache keys on: the same globs give the same key, in any order."""
        return "sha256:" + hashlib.sha256("\n".join(self.patterns).encode()).hexdigest()

    def allows(self, finding: Finding) -> bool:
        if not self.patterns or finding.severity.at_least(Severity.HIGH):
            return False
        words = [finding.detail, *finding.detail.replace(",", " ").split()]
        return any(fnmatch.fnmatchcase(word, pattern) for word in words for pattern in self.patterns)

    def apply(self, report: FileReport) -> FileReport:
        kept = [f for f in report.findings if not self.allows(f)]
        return report if len(kept) == len(report.findings) else report.model_copy(update={"findings": kept})


# -- sources ---------------------------------------------------------------------------------


class LocalSource:
    """A local regular file, read with ``pread`` (never followed through a symlink)."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise UsageError(f"{name} is not a regular file")
        self._fd = fd
        self.size = st.st_size

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        return os.pread(self._fd, min(length, MAX_READ_BYTES), offset)

    def open(self):
        return os.fdopen(os.dup(self._fd), "rb", closefd=True)

    def close(self) -> None:
        os.close(self._fd)


class MemorySource:
    """Bytes already in memory (a tar member, read under the guarded reader)."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name
        self.size = len(data)

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0:
            return b""
        return self.data[offset:offset + min(length, MAX_READ_BYTES)]

    def open(self):
        return io.BytesIO(self.data)

    def close(self) -> None:
        pass


class _VerifiedReader(io.RawIOBase):
    """A file object over a blob's stream that checks the digest before it reports the end
    (so a scanner that reads to EOF never sees an end on bytes that did not match)."""

    def __init__(self, chunks: Iterator[bytes], hasher: VerifyingHasher, on_verified: Callable[[], None]) -> None:
        self._chunks = chunks
        self._hasher = hasher
        self._pending = b""
        self._done = False
        self._on_verified = on_verified
        self._position = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        # Forward-only, but the position is known: the pickle scanner reports byte offsets
        # (io.BufferedReader.tell asks the raw stream).
        return self._position

    def readinto(self, buffer) -> int:
        while not self._pending and not self._done:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._hasher.finish()  # raises DigestMismatch / SizeMismatch (IntegrityError)
                self._done = True
                self._on_verified()
                break
            if chunk:
                self._hasher.update(chunk)
                self._pending = chunk
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        self._position += count
        return count


class BlobSource:
    """One layer of a model in a registry or a layout, read by range or streamed.

    ``store`` has ``read_blob_range`` and ``open_blob`` (targets.base). ``verified`` turns
    True once a whole stream of the blob matched its digest; ``ranged`` counts the bytes
    read by range (unverified pieces)."""

    def __init__(self, store, descriptor: Descriptor, name: str) -> None:
        self.store = store
        self.descriptor = descriptor
        self.name = name
        self.size = descriptor.size
        self.verified = False
        self.ranged = 0
        self._streams: list = []
        self._head = b""  # the first piece read: every scanner starts with the same header

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        length = min(length, MAX_READ_BYTES, self.size - offset)
        if offset + length <= len(self._head):
            return self._head[offset:offset + length]
        data = self.store.read_blob_range(self.descriptor, offset, length)
        self.ranged += len(data)
        if offset == 0 and len(data) > len(self._head) and len(data) <= HEAD_BYTES:
            self._head = data
        return data

    def open(self):
        context = self.store.open_blob(self.descriptor)
        chunks = context.__enter__()
        self._streams.append(context)
        hasher = VerifyingHasher(self.descriptor.digest, self.descriptor.size, f"layer {self.name}")
        return io.BufferedReader(_VerifiedReader(iter(chunks), hasher, self._mark_verified), 1 << 20)

    def _mark_verified(self) -> None:
        self.verified = True

    def verify(self) -> None:
        """Read the whole blob once, hashing it (nothing kept): raises IntegrityError."""
        with self.open() as reader:
            while reader.read(1 << 20):
                pass

    def close(self) -> None:
        for context in self._streams:
            context.__exit__(None, None, None)
        self._streams.clear()


# -- one file --------------------------------------------------------------------------------


def scan_source(source, digest: str | None = None, found: list[FormatScanner] | None = None) -> FileReport:
    """Every scanner whose format the bytes show, on one source. A scanner that fails on
    the file is a finding (high: what a scanner could not read is not clean); an integrity
    or transport error is raised (the bytes themselves are in doubt)."""
    found = scanners() if found is None else found
    head = source.read_at(0, HEAD_BYTES)
    report = FileReport(file=source.name, size=source.size, digest=digest)
    for scanner in found:
        try:
            if not scanner.detect(head, source.size):
                continue
            report.formats.append(scanner.name)
            report.findings.extend(scanner.scan(source))
        except (IntegrityError, TransportError):
            raise
        except OcimodelError as exc:
            report.findings.append(_scanner_failed(source.name, scanner.name, exc.message))
        except Exception as exc:  # noqa: BLE001 - a scanner's bug on hostile bytes must not pass the file
            report.findings.append(_scanner_failed(source.name, scanner.name, type(exc).__name__))
    return report


SCANNER_FAILED = "scan.scanner-failed"


def _scanner_failed(name: str, fmt: str, why: str) -> Finding:
    return Finding(
        file=name, format=fmt, severity=Severity.HIGH, rule=SCANNER_FAILED,
        detail=f"the {fmt} scanner could not read this file ({why[:200]}); it is not known to be safe",
    )


# -- paths -----------------------------------------------------------------------------------


def scan_path(path: str | os.PathLike[str], *, allow: Allowlist | None = None, cache: ScanCache | None = None) -> ScanReport:
    """A file, or every regular file under a directory. Symlinks are not followed: each is
    reported (info) with where it points, as a pull of the model would not carry it."""
    root = Path(path)
    allow = allow or Allowlist()
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", hint="give a file, a model directory or a reference") from None
    if stat.S_ISLNK(st.st_mode):
        root = root.resolve()  # the path given on the command line: the user named it
        st = os.stat(root)
    if stat.S_ISREG(st.st_mode):
        files = [(root.name, root)]
        links: list[tuple[str, str]] = []
        unlisted: list[tuple[str, str]] = []
    elif stat.S_ISDIR(st.st_mode):
        files, links, unlisted = _walk(root)
    else:
        raise UsageError(f"{path} is neither a file nor a directory")
    report = scan_files(str(path), files, allow=allow, cache=cache)
    for relpath, why in unlisted:
        if not why:  # not a regular file: push refuses it, a pull never writes one
            finding = Finding(file=relpath, format="special", severity=Severity.INFO, rule="scan.not-regular",
                              detail="a fifo, socket or device, not a regular file: not read")
        else:  # its files were not scanned: not known to be safe
            finding = Finding(file=relpath, format="directory", severity=Severity.HIGH, rule="scan.unreadable",
                              detail=f"a directory that cannot be listed ({why}); the files in it were not scanned")
        report.files.append(FileReport(file=relpath, size=0, findings=[finding]))
    for relpath, pointee in links:
        report.files.append(FileReport(file=relpath, size=0, findings=[Finding(
            file=relpath, format="symlink", severity=Severity.INFO, rule="scan.symlink",
            detail=f"a symlink to {pointee[:200]}, not followed",
        )]))
    report.files.sort(key=lambda r: r.file)
    return report


def _walk(root: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, str]], list[tuple[str, str]]]:
    files: list[tuple[str, Path]] = []
    links: list[tuple[str, str]] = []
    unlisted: list[tuple[str, str]] = []

    def unlistable(exc: OSError) -> None:  # os.walk would skip the directory silently
        where = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "."
        unlisted.append((where, exc.strerror or str(exc)))

    for directory, dirnames, filenames in os.walk(root, followlinks=False, onerror=unlistable):
        dirnames.sort()
        for name in [*sorted(filenames), *[d for d in dirnames if os.path.islink(os.path.join(directory, d))]]:
            full = Path(directory) / name
            relpath = full.relative_to(root).as_posix()
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                links.append((relpath, os.readlink(full)))
            elif stat.S_ISREG(st.st_mode):
                files.append((relpath, full))
            else:  # a fifo, socket or device: never opened (a fifo would block), but named
                unlisted.append((relpath, ""))
    return files, links, unlisted


def scan_files(target: str, files: Sequence[tuple[str, Path]], *, allow: Allowlist | None = None,
               cache: ScanCache | None = None) -> ScanReport:
    """Local files by (name in the report, path): a directory, or a pull's staged tree."""
    allow = allow or Allowlist()
    found = scanners()
    report = ScanReport(target=target)
    for name, path in files:
        try:
            source = LocalSource(path, name)
        except (OSError, UsageError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else exc.message
            report.files.append(FileReport(file=name, size=0, findings=[Finding(
                file=name, format="unknown", severity=Severity.HIGH, rule="scan.unreadable",
                detail=f"cannot be read as a regular file ({why}); it is not known to be safe",
            )]))
            continue
        try:
            report.files.append(allow.apply(scan_source(source, found=found)))
        finally:
            source.close()
    return report


# -- models ----------------------------------------------------------------------------------


def scan_layers(
    store,
    manifest: Manifest,
    planned: Sequence,
    *,
    target: str,
    digest: str | None = None,
    allow: Allowlist | None = None,
    cache: ScanCache | None = None,
    trust_ranges: bool = False,
) -> ScanReport:
    """Every layer of a model in ``store`` (a registry repository or a layout), as planned
    by packaging.unpack.plan_files (paths checked). Raises IntegrityError when a layer's
    bytes do not match its digest."""
    allow = allow or Allowlist()
    found = scanners()
    report = ScanReport(target=target, digest=digest)
    mode = "ranges-trusted" if trust_ranges else "verified"
    for planned_file in planned:
        layer = planned_file.descriptor
        name = planned_file.relpath or f"layer {layer.digest[:19]}"
        archive = planned_file.archive is not None or planned_file.packed is not None
        # An archive's member paths depend on where the layer is unpacked: part of its key.
        # A raw layer's verdict is about its bytes; the name is set on the way out.
        key = f"{mode}|{planned_file.relpath}|{planned_file.names_from}" if archive else mode
        cached = cache.get(layer.digest, allow.digest, key) if cache is not None else None
        if cached is not None:
            reports = cached if archive else [_renamed(r, name) for r in cached]
            report.files.extend(r.model_copy(update={"cached": True}) for r in reports)
            continue
        if archive:
            reports = _scan_archive_layer(store, planned_file, name, found)
        else:
            reports = [_scan_blob(store, layer, name, found, trust_ranges)]
        reports = [allow.apply(r) for r in reports]
        # A scanner that failed says nothing about the bytes (it may be fixed, or the
        # failure passing): that verdict is not kept.
        failed = any(f.rule == SCANNER_FAILED for r in reports for f in r.findings)
        if cache is not None and not failed:
            cache.put(layer.digest, allow.digest, key, reports)
        report.files.extend(reports)
    return report


def _renamed(report: FileReport, name: str) -> FileReport:
    """A cached raw layer's report under the path it has in this model (the same bytes may
    be another file of another model)."""
    if report.file == name:
        return report
    findings = [f.model_copy(update={"file": name}) for f in report.findings]
    return report.model_copy(update={"file": name, "findings": findings})


def _scan_blob(store, layer: Descriptor, name: str, found: list[FormatScanner], trust_ranges: bool) -> FileReport:
    source = BlobSource(store, layer, name)
    try:
        report = scan_source(source, digest=layer.digest, found=found)
        if not source.verified:
            if trust_ranges:
                report.findings.append(Finding(
                    file=name, format=report.formats[0] if report.formats else "unknown", severity=Severity.INFO,
                    rule="scan.unverified-ranges",
                    detail=f"judged on {source.ranged} bytes read by range, trusting the registry: "
                    "the layer's digest was not checked",
                ))
            else:
                source.verify()
    finally:
        source.close()
    return report


def _scan_archive_layer(store, planned, name: str, found: list[FormatScanner]) -> list[FileReport]:
    """A tar (or compressed) layer: each member scanned from memory; the layer's digest is
    checked as its stream ends, before any report of it is returned."""
    from ocimodel.packaging.archive import iter_member_bytes

    layer = planned.descriptor
    hasher = VerifyingHasher(layer.digest, layer.size, f"layer {name}")
    reports: list[FileReport] = []

    def hashed(chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            hasher.update(chunk)
            yield chunk

    with store.open_blob(layer) as chunks:
        stream = hashed(chunks)
        if planned.packed is not None:
            members = iter_member_bytes(stream, compression=planned.packed, single=planned.relpath,
                                        max_bytes=MAX_MEMBER_BYTES, label=name)
        else:
            members = iter_member_bytes(stream, compression=planned.archive, max_bytes=MAX_MEMBER_BYTES, label=name,
                                        prefix=planned.relpath or None, names_from=planned.names_from)
        for member, data in members:
            if data is None:
                reports.append(FileReport(file=member, size=0, findings=[Finding(
                    file=member, format="unknown", severity=Severity.HIGH, rule="scan.too-large",
                    detail=f"a member over {MAX_MEMBER_BYTES} bytes in a tar layer, not scanned", member=member,
                )]))
                continue
            reports.append(scan_source(MemorySource(data, member), found=found))
        for _ in stream:  # the rest of the layer (padding, a compressed trailer): hashed
            pass
    hasher.finish()
    return reports
