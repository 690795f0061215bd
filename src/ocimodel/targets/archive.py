"""An OCI image layout in one tar file, for air-gapped transfer (``ocimodel export`` /
``ocimodel import``), readable by skopeo's ``oci-archive:`` transport.

Writing is deterministic: the same layout content gives the same bytes, whoever built the
layout and whenever, so an archive can be checksummed, compared and re-made. Entries come
in a fixed order (``oci-layout``, ``index.json``, ``blobs/``, then per algorithm its
directory and its blobs sorted by name) with zeroed metadata (mtime, uid, gid, empty
owner names) and fixed modes. The format is POSIX pax: plain ustar cannot hold a blob of
8 GiB or more (11 octal digits of size) nor a ``blobs/sha512/<128 hex>`` name (a 100-byte
name field that the ustar prefix cannot help with, as the hex has no ``/``); pax adds an
extended header only for such entries, so everything else stays byte-for-byte ustar, which
every reader (Go's archive/tar in skopeo, GNU tar, Python) takes. Each blob is hashed while
it is written, so a store that rotted on disk is caught before the archive crosses the air
gap rather than after.

Reading is the other side of a trust boundary (docs/threats.md 9-10). The names an archive may
hold are an allowlist: ``oci-layout``, ``index.json``, ``blobs/``, ``blobs/<alg>/`` and
``blobs/<alg>/<hex>`` (a leading ``./`` is tolerated, as ``tar -C layout .`` writes it).
Only regular files and directories are accepted; links, devices, fifos, sparse files,
duplicates and any other name are refused, naming the member. Every blob is hashed while it
is extracted and must match its name. The tar-reading guards (header-record caps, a cap on
decompressed data no member accounts for, corrupt-header and trailing-data detection) are
:mod:`ocimodel.oci.targuard`, the same ones that guard the tar layers of a model.

``oci-layout`` is what makes a directory an OCI layout to :class:`OciLayout` and to
skopeo, so it is written last, after every byte has been verified: an import that fails or
is killed never leaves something that opens as a layout."""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import ValidationError

from ocimodel.atomicwrite import atomic_file
from ocimodel.chunks import CHUNK_SIZE, FileTooLarge, read_capped, read_chunks
from ocimodel.errors import (
    DestinationExists,
    DigestMismatch,
    InvalidDigest,
    InvalidManifest,
    StoreError,
    UsageError,
)
from ocimodel.oci.digest import VerifyingHasher, validate_digest
from ocimodel.oci.models import MAX_MANIFEST_BYTES, Descriptor, loads_strict
from ocimodel.oci.targuard import (
    ArchiveTooLarge,
    ExtractLimits,
    InvalidArchive,
    ReadState,
    UnsafeArchive,
    drain_decoder,
    is_plain_file,
    read_members,
    refuse_type,
)
from ocimodel.outputs import open_output
from ocimodel.targets.layout import file_mode

ArchiveCompression = Literal["none", "gzip"]

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
BLOBS_DIR = "blobs"
ALGORITHMS = ("sha256", "sha512")
# Fixed so that gzip output depends on the content only (and on zlib, see write_layout_archive).
GZIP_LEVEL = 6
_GZIP_MAGIC = b"\x1f\x8b"
_BLOB_NAME = re.compile(r"blobs/([^/]+)/([^/]+)")
_DIR_MODE = 0o755
_MEMBER_FILE_MODE = 0o644
_LABEL = "archive"  # how the shared tar guards name a layout archive in their messages


class InvalidLayoutArchive(InvalidArchive):
    """A readable tar that is not a complete OCI layout: ``oci-layout`` or ``index.json``
    missing or malformed, or ``index.json`` naming a blob the archive does not hold."""


@dataclass(frozen=True)
class ArchiveInfo:
    path: Path
    size: int  # bytes of the archive file
    blob_count: int


# -- writing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Blob:
    algorithm: str
    hex: str
    path: Path

    @property
    def digest(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def member(self) -> str:
        return f"{BLOBS_DIR}/{self.algorithm}/{self.hex}"


@dataclass
class _LayoutContent:
    oci_layout: bytes
    index: bytes
    blobs: dict[str, list[_Blob]] = field(default_factory=dict)  # algorithm -> sorted blobs

    @property
    def blob_count(self) -> int:
        return sum(len(blobs) for blobs in self.blobs.values())


def write_layout_archive(
    layout_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    compression: ArchiveCompression = "none",
    replace: bool = False,
) -> ArchiveInfo:
    """Write the OCI layout ``layout_dir`` as a tar at ``out`` and return what was written.

    Every file under ``blobs/`` with a digest name is included: the caller exports a layout
    built for the purpose, which holds exactly the graph to transfer. Anything else in the
    layout (symlinks, other names, special files) raises :class:`StoreError`, a blob whose
    bytes do not match its name raises :class:`DigestMismatch`.

    ``out`` is written as every user-named output is (:mod:`ocimodel.outputs`): a regular
    file, put in place only when complete and synced; an existing file only with
    ``replace``; never through a symlink or into a device; ``-`` is standard output.

    ``compression="gzip"`` is off by default: model weights barely compress and gzip costs
    far more time than the bytes it saves. Gzip output is deterministic for one zlib build;
    another zlib may compress differently (the tar inside stays identical)."""
    layout = Path(layout_dir)
    if compression not in ("none", "gzip"):
        raise UsageError(f"unknown archive compression {compression!r}: expected 'none' or 'gzip'")
    content = _scan_layout(layout)
    with open_output(out, replace=replace, mode=file_mode(), terminal_ok=False, example="model.tar") as stream:
        _write_tar(stream, content, compression)  # type: ignore[arg-type]  # write/tell/flush is all tarfile uses
    shown = os.fspath(out)
    return ArchiveInfo(path=Path(shown), size=stream.written, blob_count=content.blob_count)


def _write_tar(handle: BinaryIO, content: _LayoutContent, compression: ArchiveCompression) -> None:
    if compression == "gzip":
        # filename="" and mtime=0: the gzip header would otherwise carry the temp file's
        # name and the time of writing.
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=handle, compresslevel=GZIP_LEVEL, mtime=0
        ) as zipped:
            _write_members(zipped, content)
    else:
        _write_members(handle, content)


def _write_members(handle: BinaryIO, content: _LayoutContent) -> None:
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK_SIZE) as tar:
        _add_bytes(tar, LAYOUT_FILE, content.oci_layout)
        _add_bytes(tar, INDEX_FILE, content.index)
        tar.addfile(_tar_info(BLOBS_DIR + "/", tarfile.DIRTYPE))
        for algorithm in sorted(content.blobs):
            tar.addfile(_tar_info(f"{BLOBS_DIR}/{algorithm}/", tarfile.DIRTYPE))
            for blob in content.blobs[algorithm]:
                _add_blob(tar, blob)
                tar.members.clear()  # tarfile keeps every TarInfo written; memory stays flat


def _tar_info(name: str, kind: bytes, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = _DIR_MODE if kind == tarfile.DIRTYPE else _MEMBER_FILE_MODE
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tar_info(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))


def _add_blob(tar: tarfile.TarFile, blob: _Blob) -> None:
    try:
        # O_NOFOLLOW: the scan saw a regular file; a symlink swapped in since is refused.
        fd = os.open(blob.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise StoreError(f"cannot read blob {blob.digest} in the layout: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        hasher = VerifyingHasher(blob.digest, size, "blob in the layout")
        try:
            tar.addfile(_tar_info(blob.member, tarfile.REGTYPE, size), _HashingReader(source, hasher))
        except OSError as exc:
            if exc.errno is not None:
                raise  # a real I/O error, reported with the archive it was writing
            # tarfile's own OSError, without errno: the file shrank under it
            raise StoreError(f"blob {blob.digest} changed while it was archived: {exc}") from None
        try:
            hasher.finish()
        except DigestMismatch as exc:
            exc.hint = "the blob is corrupt on disk; copy the model into a fresh layout and export that"
            raise


class _HashingReader:
    """Hands tarfile the bytes of a blob and hashes them on the way (one read, not two)."""

    def __init__(self, source: BinaryIO, hasher: VerifyingHasher) -> None:
        self._source = source
        self._hasher = hasher

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._hasher.update(data)
        return data


def _scan_layout(layout: Path) -> _LayoutContent:
    """Check that ``layout`` holds an OCI layout and nothing else, and list its blobs."""
    entries = _listdir(layout, "layout")
    unexpected = sorted(set(entries) - {LAYOUT_FILE, INDEX_FILE, BLOBS_DIR})
    if unexpected:
        raise StoreError(
            f"{layout} holds {unexpected[0][:120]!r}, which is not part of an OCI layout",
            hint="export from a layout holding only oci-layout, index.json and blobs/",
        )
    for name in (LAYOUT_FILE, INDEX_FILE):
        if name not in entries:
            raise StoreError(f"{layout} is not an OCI layout (no {name})")
    content = _LayoutContent(
        oci_layout=_read_small_file(layout / LAYOUT_FILE, entries[LAYOUT_FILE]),
        index=_read_small_file(layout / INDEX_FILE, entries[INDEX_FILE]),
    )
    if BLOBS_DIR in entries:
        _require_dir(layout / BLOBS_DIR, entries[BLOBS_DIR])
        content.blobs = _scan_blobs(layout / BLOBS_DIR)
    where = str(layout)
    _parse_or(StoreError, _check_oci_layout, content.oci_layout, where)
    descriptors = _parse_or(StoreError, _index_descriptors, content.index, where)
    present = {blob.digest for blobs in content.blobs.values() for blob in blobs}
    _check_index_blobs(descriptors, present, where, StoreError)
    return content


def _scan_blobs(blobs_dir: Path) -> dict[str, list[_Blob]]:
    found: dict[str, list[_Blob]] = {}
    for algorithm, mode in sorted(_listdir(blobs_dir, "blobs directory").items()):
        if algorithm not in ALGORITHMS:
            raise StoreError(
                f"{blobs_dir} holds {algorithm[:120]!r}, which is not a digest algorithm we verify"
            )
        _require_dir(blobs_dir / algorithm, mode)
        blobs = []
        for name, entry_mode in sorted(_listdir(blobs_dir / algorithm, "blobs directory").items()):
            path = blobs_dir / algorithm / name
            try:
                validate_digest(f"{algorithm}:{name}")
            except InvalidDigest:
                raise StoreError(
                    f"{path} is not named by a digest",
                    hint="a leftover temporary file? export from a layout built for the purpose",
                ) from None
            if not stat.S_ISREG(entry_mode):
                raise StoreError(f"{path} is not a regular file ({_kind(entry_mode)})")
            blobs.append(_Blob(algorithm, name, path))
        if blobs:
            found[algorithm] = blobs
    return found


def _listdir(path: Path, what: str) -> dict[str, int]:
    """Names in ``path`` -> their lstat mode (links are reported, never followed)."""
    try:
        with os.scandir(path) as scan:
            return {entry.name: entry.stat(follow_symlinks=False).st_mode for entry in scan}
    except FileNotFoundError:
        raise StoreError(f"no OCI layout at {path}") from None
    except OSError as exc:
        raise StoreError(f"cannot read the {what} {path}: {exc.strerror}") from None


def _require_dir(path: Path, mode: int) -> None:
    if not stat.S_ISDIR(mode):
        raise StoreError(f"{path} is not a directory ({_kind(mode)})")


def _read_small_file(path: Path, mode: int) -> bytes:
    if not stat.S_ISREG(mode):
        raise StoreError(f"{path} is not a regular file ({_kind(mode)})")
    try:
        return read_capped(path, MAX_MANIFEST_BYTES, follow_symlinks=False)
    except FileTooLarge:
        # import refuses it (the same cap), so an archive holding it would be useless
        raise StoreError(f"{path} is over the {MAX_MANIFEST_BYTES}-byte limit of a layout archive") from None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "a special file"


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- the two small documents, checked the same way on both sides -------------------------


def _check_oci_layout(data: bytes, where: str) -> None:
    document = loads_strict(data, f"{LAYOUT_FILE} of {where}")
    version = document.get("imageLayoutVersion") if isinstance(document, dict) else None
    if version is None:
        raise InvalidManifest(f"{LAYOUT_FILE} of {where} has no imageLayoutVersion")
    # the same rule as OciLayout, which opens the result
    if not isinstance(version, str) or not version.startswith("1."):
        raise InvalidManifest(f"{where} has unsupported imageLayoutVersion {str(version)[:40]!r}")


def _index_descriptors(data: bytes, where: str) -> list[Descriptor]:
    document = loads_strict(data, f"{INDEX_FILE} of {where}")
    manifests = document.get("manifests") if isinstance(document, dict) else None
    if not isinstance(manifests, list):
        raise InvalidManifest(f"{INDEX_FILE} of {where} has no manifests list")
    descriptors = []
    for entry in manifests:
        try:
            descriptors.append(Descriptor.model_validate(entry))
        except (ValidationError, InvalidDigest):
            shown = str(entry.get("digest") if isinstance(entry, dict) else entry)[:80]
            raise InvalidManifest(f"{INDEX_FILE} of {where} holds a malformed descriptor ({shown})") from None
    return descriptors


def _check_index_blobs(descriptors: list[Descriptor], present: set[str], where: str, error: type) -> None:
    """Every manifest index.json names must be there: a layout without it opens fine and
    fails only when that tag is used, far from the export that lost it."""
    for descriptor in descriptors:
        if descriptor.digest not in present:
            raise error(f"{INDEX_FILE} of {where} names {descriptor.digest}, which is not among its blobs")


def _parse_or(error: type, check, data: bytes, where: str) -> Any:
    try:
        return check(data, where)
    except InvalidManifest as exc:
        raise error(exc.message) from None


# -- reading -----------------------------------------------------------------------------


def extract_layout_archive(
    archive: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str],
    *,
    limits: ExtractLimits | None = None,
) -> Path:
    """Unpack the layout archive ``archive`` (plain or gzip-compressed tar) into ``dest_dir``,
    which must be empty or not exist yet; return ``dest_dir``.

    Raises :class:`UnsafeArchive` (an :class:`~ocimodel.errors.UnsafePath`) for a member
    that is not an allowed name and type, :class:`ArchiveTooLarge` past a size cap,
    :class:`~ocimodel.errors.DigestMismatch` for a blob whose bytes do not match its name,
    :class:`InvalidLayoutArchive` for a missing or malformed ``oci-layout`` / ``index.json``,
    :class:`InvalidArchive` for a file that is not a readable tar, and
    :class:`DestinationExists` when ``dest_dir`` holds anything. On any error everything
    this call created is removed again. The caller still opens the result with
    :class:`OciLayout` and verifies the manifests it copies out of it."""
    source = Path(archive)
    dest = Path(dest_dir)
    created = _Created(dest, _prepare_destination(dest))
    try:
        _extract(source, dest, limits or ExtractLimits(), created)
    except BaseException:
        created.remove()
        raise
    return dest


def _prepare_destination(dest: Path) -> bool:
    """Make sure ``dest`` is an empty directory; True when this call created it."""
    try:
        dest.mkdir()
        return True
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot create {dest}: {exc.strerror}") from None
    if not dest.is_dir():
        raise DestinationExists(f"{dest} exists and is not a directory")
    try:
        with os.scandir(dest) as scan:
            occupied = next(scan, None) is not None
    except OSError as exc:
        raise StoreError(f"cannot read {dest}: {exc.strerror}") from None
    if occupied:
        raise DestinationExists(
            f"{dest} is not empty", hint="import into a new or empty directory"
        )
    return False


class _Created:
    """What one extraction made, so that a failure can take exactly that away again (the
    destination may be a directory the caller made and wants back empty)."""

    def __init__(self, root: Path, root_is_new: bool) -> None:
        self.root = root
        self.root_is_new = root_is_new
        self.files: list[Path] = []
        self.dirs: list[Path] = []

    def remove(self) -> None:
        for path in reversed(self.files):
            _unlink_quietly(path)
        for path in reversed(self.dirs):
            _rmdir_quietly(path)
        if self.root_is_new:
            _rmdir_quietly(self.root)


def _rmdir_quietly(path: Path) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


@dataclass
class _Extraction:
    dest: Path
    shown: str
    state: ReadState
    created: _Created
    seen: set[str] = field(default_factory=set)
    documents: dict[str, bytes] = field(default_factory=dict)  # oci-layout, index.json
    blobs: set[str] = field(default_factory=set)  # digests extracted and verified


def _extract(source: Path, dest: Path, limits: ExtractLimits, created: _Created) -> None:
    shown = repr(str(source)[-200:])
    job = _Extraction(dest=dest, shown=shown, state=ReadState(limits=limits), created=created)
    try:
        with _opened(source) as raw:
            compressed = raw.peek(len(_GZIP_MAGIC))[: len(_GZIP_MAGIC)] == _GZIP_MAGIC
            # gzip.GzipFile, not tarfile's own "r|gz": only GzipFile checks the CRC trailer.
            decoded = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            _read_members(decoded, job)
            drain_decoder(decoded)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidArchive(
            f"{source} is not a valid layout archive (tar, or gzip-compressed tar): {exc}",
            hint="the archive is corrupt or truncated; nothing was imported",
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot import {source} into {dest}: {exc.strerror or exc}") from None
    _finish(job)


@contextmanager
def _opened(source: Path) -> Iterator[io.BufferedReader]:
    """The archive, opened apart from the rest so that only its own absence reads as "no
    archive" (a FileNotFoundError while extracting means something else)."""
    try:
        handle = open(source, "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise StoreError(f"cannot read the archive {source}: {exc.strerror}") from None
    with handle:
        yield handle


def _read_members(decoded: BinaryIO, job: _Extraction) -> None:
    for tar, member in read_members(decoded, job.state, job.shown, _LABEL):
        _extract_member(tar, member, job)


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, job: _Extraction) -> None:
    if not (is_plain_file(member) or member.isdir()):
        raise refuse_type(member, job.shown, _LABEL)
    name = _normalised_name(member)
    if name is None:
        return
    if name in job.seen:
        raise _unsafe(job, member, "appears twice")
    job.seen.add(name)
    if member.isdir():
        _extract_dir(name, member, job)
    elif name in (LAYOUT_FILE, INDEX_FILE):
        job.documents[name] = _read_document(tar, member, job)
    else:
        _extract_blob(tar, member, name, _blob_digest(name, member, job), job)


def _normalised_name(member: tarfile.TarInfo) -> str | None:
    """The member name without one leading ``./`` and, for a directory, a trailing ``/``;
    None for the root directory entry that ``tar -C dir .`` writes."""
    name = member.name.removeprefix("./")
    if member.isdir():
        name = name.rstrip("/")
        if name in ("", "."):
            return None
    return name


def _extract_dir(name: str, member: tarfile.TarInfo, job: _Extraction) -> None:
    if name != BLOBS_DIR and not (name.startswith(BLOBS_DIR + "/") and name.split("/", 1)[1] in ALGORITHMS):
        raise _unsafe(job, member, "is not a directory of an OCI layout (blobs/ or blobs/<sha256|sha512>/)")
    _make_dirs(job, name)


def _make_dirs(job: _Extraction, relpath: str) -> Path:
    """Create ``relpath`` (at most ``blobs/<alg>``, both names already checked) under the
    destination; a directory the archive names twice was refused before."""
    current = job.dest
    for part in relpath.split("/"):
        current = current / part
        try:
            os.mkdir(current)
        except FileExistsError:
            continue
        except OSError as exc:
            raise StoreError(f"cannot create {current}: {exc.strerror}") from None
        job.created.dirs.append(current)
    return current


def _blob_digest(name: str, member: tarfile.TarInfo, job: _Extraction) -> str:
    match = _BLOB_NAME.fullmatch(name)
    if match is None:
        raise _unsafe(job, member, "is not part of an OCI layout (oci-layout, index.json, blobs/<alg>/<hex>)")
    digest = f"{match.group(1)}:{match.group(2)}"
    try:
        return validate_digest(digest)
    except InvalidDigest as exc:
        raise _unsafe(job, member, f"is not named by a digest we verify ({exc.message})") from None


def _read_document(tar: tarfile.TarFile, member: tarfile.TarInfo, job: _Extraction) -> bytes:
    if member.size > MAX_MANIFEST_BYTES:
        raise ArchiveTooLarge(
            f"archive {job.shown}: member {member.name[:120]!r} is {member.size} bytes, "
            f"over the {MAX_MANIFEST_BYTES}-byte limit"
        )
    source = tar.extractfile(member)
    assert source is not None  # a regular file always has a file object
    data = source.read(MAX_MANIFEST_BYTES + 1)
    if len(data) != member.size:
        raise InvalidArchive(f"archive {job.shown}: member {member.name[:120]!r} is truncated")
    job.state.written += len(data)
    return data


def _extract_blob(
    tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, digest: str, job: _Extraction
) -> None:
    limit = job.state.limits.max_total_bytes
    if job.state.written + member.size > limit:
        raise ArchiveTooLarge(
            f"archive {job.shown} extracts to more than {limit} bytes (at {member.name[:120]!r})"
        )
    directory = _make_dirs(job, name.rsplit("/", 1)[0])
    hasher = VerifyingHasher(digest, member.size, f"blob in archive {job.shown}")
    source = tar.extractfile(member)
    assert source is not None
    # Checked before it is put in place: a blob whose bytes differ never gets its name.
    with atomic_file(directory / digest.split(":", 1)[1], mode=file_mode()) as blob:
        for data in read_chunks(source):
            hasher.update(data)
            blob.write(data)
            job.state.written += len(data)
        try:
            hasher.finish()
        except DigestMismatch as exc:
            exc.hint = "the archive is corrupt or was altered; nothing was imported"
            raise
    job.created.files.append(blob.path)
    job.blobs.add(digest)


def _finish(job: _Extraction) -> None:
    """Check the two documents, then write them: ``oci-layout`` last, since its presence is
    what makes the directory a layout."""
    where = f"archive {job.shown}"
    for name in (LAYOUT_FILE, INDEX_FILE):
        if name not in job.documents:
            raise InvalidLayoutArchive(f"{where} has no {name}: it is not an OCI layout archive")
    _parse_or(InvalidLayoutArchive, _check_oci_layout, job.documents[LAYOUT_FILE], where)
    descriptors = _parse_or(InvalidLayoutArchive, _index_descriptors, job.documents[INDEX_FILE], where)
    _check_index_blobs(descriptors, job.blobs, where, InvalidLayoutArchive)
    _make_dirs(job, BLOBS_DIR)  # an archive of an empty layout may name no directory at all
    for name in (INDEX_FILE, LAYOUT_FILE):
        _write_document(job, name, job.documents[name])


def _write_document(job: _Extraction, name: str, data: bytes) -> None:
    path = job.dest / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, file_mode())
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from None
    job.created.files.append(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from None


def _unsafe(job: _Extraction, member: tarfile.TarInfo, why: str) -> UnsafeArchive:
    return UnsafeArchive(
        f"archive {job.shown}: member {member.name[:120]!r} {why}",
        hint="a layout archive holds only oci-layout, index.json and blobs/<alg>/<hex>; nothing was imported",
    )


__all__ = [
    "ArchiveCompression", "ArchiveInfo", "ArchiveTooLarge", "InvalidArchive", "InvalidLayoutArchive",
    "UnsafeArchive", "extract_layout_archive", "write_layout_archive",
]
