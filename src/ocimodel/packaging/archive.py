"""Tar layers -> regular files and directories in a private staging directory (docs/threats.md 10).

A tar layer is attacker-controlled twice over: its member names and its member types. The
policy is deliberately narrow: only regular files and directories are extracted; symlinks,
hardlinks, devices, fifos, sparse files and unknown types are refused outright, so nothing
can point outside the staging directory and a later member can never be written through an
earlier one. Every name is checked like a layer title (:func:`check_relative_path`), names
equal after NFC normalisation and case folding are refused, permission bits are masked
(never setuid, setgid, sticky, or group/other write) and owners are never applied.

Extraction streams: the chunks are read once, in order, with constant memory (tarfile's
``r|`` mode over a file-like view of the chunk iterator; nothing seeks). A decompression
bomb is bounded by a cap on the bytes written, a cap on the member count, a cap on the
size of pax / GNU long-name headers, and a cap on decompressed bytes that no member
accounts for. The chunk iterator is always read to its end on success, so a verifying
iterator (the copy engine's) gets to check the digest before the caller commits anything.
Callers extract into a private staging directory and discard it on any error. The guards
on the tar stream itself (the caps, type refusal, end-of-archive checks) are
:mod:`ocimodel.oci.targuard`, shared with the OCI layout archive reader."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ocimodel.chunks import read_chunks
from ocimodel.errors import NotAModel, PackagingError, UnsafePath
from ocimodel.oci.targuard import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_TOTAL_BYTES,
    MAX_HEADER_CHAIN,
    MAX_HEADER_RECORD_BYTES,
    STREAM_BUFFER,
    STREAM_SLACK_BYTES,
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
from ocimodel.packaging.paths import check_relative_path

Compression = Literal["none", "gzip", "zstd"]

_LABEL = "tar layer"  # how messages name what they refuse (ocimodel.oci.targuard)
_BOMB_HINT = "a likely decompression bomb; nothing was written to the destination"


@dataclass(frozen=True)
class ExtractedEntry:
    """One member written under the staging root. ``relpath`` is relative to that root."""

    relpath: str
    kind: Literal["file", "dir"]
    size: int
    mode: int


def extract_tar_stream(
    chunks: Iterable[bytes],
    staging_root: str | os.PathLike[str],
    *,
    compression: Compression = "none",
    prefix: str | None = None,
    names_from: str | None = None,
    limits: ExtractLimits | None = None,
    label: str | None = None,
) -> list[ExtractedEntry]:
    """Extract the tar stream ``chunks`` under ``staging_root``; return what was written.

    ``prefix``: the path the layer declares (ModelPack filepath or ORAS title). Member names
    are read as relative to the model root, as modctl and ORAS write them, and every member
    must be ``prefix`` itself or lie under it. If the first member is instead named by the
    last component of ``prefix`` (older modctl and ``modctl attach`` name the single member
    by its base name), names are read relative to ``prefix``'s parent. Directory members
    that are ancestors of ``prefix``, and a ``.`` root member, are accepted and skipped.
    ``names_from`` fixes that choice when the writer is known (a KitOps Kitfile says it):
    ``""`` for names relative to the model root, or the directory they are relative to.

    Raises :class:`UnsafeArchive` / :class:`ArchiveTooLarge` (both :class:`UnsafePath`),
    :class:`InvalidArchive`, or :class:`NotAModel` for zstd without the ``zstandard``
    module. Whatever was written before an error stays in ``staging_root``: the caller
    owns that directory and removes it."""
    limits = limits or ExtractLimits()
    root = Path(staging_root)
    shown = label or (repr(prefix[:120]) if prefix else "layer")
    state = ReadState(limits=limits)
    raw = _ChunkReader(chunks)
    try:
        decoded = _decoder(raw, compression, shown)
        mapper = _NameMapper(prefix, shown, names_from)
        names = _UniqueNames(shown)
        entries: list[ExtractedEntry] = []
        for tar, member in read_members(decoded, state, shown, _LABEL, hint=_BOMB_HINT):
            entry = _extract_member(tar, member, root, mapper, names, state, shown)
            if entry is not None:
                entries.append(entry)
        drain_decoder(decoded)
        raw.drain(shown, compressed=compression != "none")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, *_zstd_errors()) as exc:
        raise InvalidArchive(
            f"tar layer {shown} is not a valid {_format_name(compression)}: {exc}",
            hint="the layer is corrupt or was altered in transit; nothing was written to the destination",
        ) from None
    return entries


def first_member_name(
    chunks: Iterable[bytes], *, compression: Compression = "none", label: str = "layer"
) -> str | None:
    """The name a tar layer that declares no path gives itself: its first member's name
    (modctl writes one file, or one directory first and then what is in it, per layer; a
    ``.`` root entry is passed over), checked as extraction checks it, or None for an empty
    archive. Reads only as far as that header (the pax records in front of it capped), so
    a caller can stop the download there; for display only (``inspect``): the layer's
    digest is not checked. Raises UnsafeArchive for a name or a member type pull would
    refuse, InvalidArchive for a stream that is not a tar."""
    state = ReadState(limits=ExtractLimits(max_members=_PEEKED_MEMBERS))
    try:
        decoded = _decoder(_ChunkReader(chunks), compression, label)
        for _tar, member in read_members(decoded, state, label, _LABEL):
            if not (is_plain_file(member) or member.isdir()):
                raise refuse_type(member, label, _LABEL)
            name = _member_name(member, label)
            if name is not None:
                return name
    except ArchiveTooLarge:
        return None  # nothing but root entries in front: no name to show
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, *_zstd_errors()) as exc:
        raise InvalidArchive(f"tar layer {label} is not a valid {_format_name(compression)}: {exc}") from None
    return None


def list_members(
    chunks: Iterable[bytes],
    *,
    compression: Compression = "none",
    limits: ExtractLimits | None = None,
    label: str = "layer",
) -> list[str]:
    """The names a tar layer's members would be extracted under at the model root (its
    ``.`` root entry passed over), every name and member type checked as extraction checks
    them, nothing written. Reads the stream to its end, under the same caps as extraction:
    with a verifying iterator (the copy engine's ``verified``) the names are only returned
    once the layer's digest has been checked. Same errors as :func:`extract_tar_stream`."""
    state = ReadState(limits=limits or ExtractLimits())
    raw = _ChunkReader(chunks)
    names = _UniqueNames(label)
    listed: list[str] = []
    try:
        decoded = _decoder(raw, compression, label)
        for _tar, member in read_members(decoded, state, label, _LABEL, hint=_BOMB_HINT):
            if not (is_plain_file(member) or member.isdir()):
                raise refuse_type(member, label, _LABEL)
            name = _member_name(member, label)
            if name is None:
                continue
            names.add(name, member.isdir())
            if is_plain_file(member):
                # Skipped, not written: counted as if written, so the caps still hold.
                state.written += member.size
                if state.written > state.limits.max_total_bytes:
                    raise ArchiveTooLarge(
                        f"tar layer {label} holds more than {state.limits.max_total_bytes} bytes", hint=_BOMB_HINT
                    )
            listed.append(name)
        drain_decoder(decoded)
        raw.drain(label, compressed=compression != "none")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, *_zstd_errors()) as exc:
        raise InvalidArchive(f"tar layer {label} is not a valid {_format_name(compression)}: {exc}") from None
    return listed


def iter_member_bytes(
    chunks: Iterable[bytes],
    *,
    compression: Compression = "none",
    max_bytes: int,
    label: str = "layer",
    prefix: str | None = None,
    single: str | None = None,
    names_from: str | None = None,
    limits: ExtractLimits | None = None,
) -> Iterator[tuple[str, bytes | None]]:
    """(path, content) of each regular file of a tar layer, read into memory under the
    checks and caps extraction applies, nothing written (``ocimodel scan`` of a model: a
    pickle inside must never reach the disk). Paths are those a pull would write (``prefix``
    and ``names_from`` as for :func:`extract_tar_stream`). A member over ``max_bytes``
    gives None for its content. ``single``: the stream is one compressed file of that
    name, not a tar. The chunk iterator is read to its end when the members are done.
    Same errors as :func:`extract_tar_stream`."""
    state = ReadState(limits=limits or ExtractLimits())
    raw = _ChunkReader(chunks)
    try:
        decoded = _decoder(raw, compression, label)
        if single is not None:
            data = decoded.read(max_bytes + 1)
            yield single, (data if len(data) <= max_bytes else None)
            drain_decoder(decoded)
            raw.drain(label, compressed=compression != "none")
            return
        names = _UniqueNames(label)
        mapper = _NameMapper(prefix, label, names_from)
        for tar, member in read_members(decoded, state, label, _LABEL, hint=_BOMB_HINT):
            if not (is_plain_file(member) or member.isdir()):
                raise refuse_type(member, label, _LABEL)
            name = _member_name(member, label)
            if name is None:
                continue
            shown = mapper.map(name, member.isdir())
            if shown is None:
                continue
            names.add(shown, member.isdir())
            if member.isdir():
                continue
            # Read or skipped, a member counts towards the cap, as when it is extracted.
            state.written += member.size
            if state.written > state.limits.max_total_bytes:
                raise ArchiveTooLarge(f"tar layer {label} holds more than {state.limits.max_total_bytes} bytes",
                                      hint=_BOMB_HINT)
            if member.size > max_bytes:
                yield shown, None
                continue
            handle = tar.extractfile(member)
            yield shown, handle.read() if handle is not None else b""
        drain_decoder(decoded)
        raw.drain(label, compressed=compression != "none")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, *_zstd_errors()) as exc:
        raise InvalidArchive(f"tar layer {label} is not a valid {_format_name(compression)}: {exc}") from None


def decompress_stream(
    chunks: Iterable[bytes],
    staging_root: str | os.PathLike[str],
    relpath: str,
    *,
    compression: Compression,
    mode: int,
    limits: ExtractLimits | None = None,
    label: str | None = None,
) -> ExtractedEntry:
    """Write the decompressed stream ``chunks`` (one file stored compressed, as KitOps
    writes a ``raw+gzip`` / ``raw+zstd`` layer) to ``staging_root/relpath``, at most
    ``limits.max_total_bytes`` bytes. ``relpath`` must have been checked by the caller.
    The chunk iterator is read to its end, so a verifying iterator checks the digest
    before the caller commits anything. Same errors as :func:`extract_tar_stream`."""
    limits = limits or ExtractLimits()
    root = Path(staging_root)
    shown = label or repr(relpath[:120])
    raw = _ChunkReader(chunks)
    if "/" in relpath:
        _makedirs(root, relpath.rsplit("/", 1)[0])
    target = root / relpath
    written = 0
    try:
        decoded = _decoder(raw, compression, shown)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise PackagingError(f"cannot write {target}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as handle:
            for data in read_chunks(decoded):
                written += len(data)
                if written > limits.max_total_bytes:
                    raise ArchiveTooLarge(
                        f"layer {shown} decompresses to more than {limits.max_total_bytes} bytes", hint=_BOMB_HINT
                    )
                try:
                    handle.write(data)
                except OSError as exc:
                    raise PackagingError(f"cannot write {target}: {exc.strerror}") from None
            os.fchmod(handle.fileno(), mode)
        raw.drain(shown, compressed=True)
    except (EOFError, zlib.error, gzip.BadGzipFile, *_zstd_errors()) as exc:
        raise InvalidArchive(
            f"layer {shown} is not a valid {compression} stream: {exc}",
            hint="the layer is corrupt or was altered in transit; nothing was written to the destination",
        ) from None
    return ExtractedEntry(relpath, "file", written, mode)


_PEEKED_MEMBERS = 4  # root entries (`.`, `./`) looked past before giving up on a name


# -- reading -----------------------------------------------------------------------------


class _ChunkReader(io.RawIOBase):
    """A read-only, forward-only file over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""
        self._offset = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        view = memoryview(target).cast("B")
        while self._offset >= len(self._buffer):
            if self._done:
                return 0
            chunk = next(self._chunks, None)
            if chunk is None:
                self._done = True
                return 0
            self._buffer, self._offset = bytes(chunk), 0
        n = min(len(view), len(self._buffer) - self._offset)
        view[:n] = self._buffer[self._offset:self._offset + n]
        self._offset += n
        return n

    def drain(self, shown: str, *, compressed: bool) -> None:
        """Read the iterator to its end (a verifying iterator checks the digest there).
        After a compressed stream ended, nothing but zero padding may follow it."""
        trailing = bool(self._buffer[self._offset:].strip(b"\0"))
        self._buffer, self._offset = b"", 0
        if not self._done:
            for chunk in self._chunks:  # normally none: the decompressor read to the end
                trailing = trailing or bool(chunk.strip(b"\0"))
            self._done = True
        if compressed and trailing:
            raise InvalidArchive(f"tar layer {shown} has data after the end of its compressed stream")


def _decoder(raw: _ChunkReader, compression: str, shown: str):
    if compression == "none":
        return raw
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "zstd":
        zstandard = zstd_module()
        if zstandard is None:
            raise NotAModel(
                f"tar layer {shown} is zstd-compressed, which this Python cannot decompress",
                hint="install the `zstandard` package to pull tar+zstd layers",
            )
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    raise NotAModel(f"tar layer {shown} has an unknown compression {compression!r}")


def zstd_module():
    """The optional ``zstandard`` module, or None."""
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        return None
    return zstandard


def _zstd_errors() -> tuple[type[Exception], ...]:
    """What the zstd decompressor raises for a corrupt frame (or trailing garbage): a
    corrupt layer, like a bad gzip stream."""
    zstandard = zstd_module()
    return (zstandard.ZstdError,) if zstandard is not None else ()


def _format_name(compression: str) -> str:
    return {"none": "tar archive", "gzip": "gzip-compressed tar archive"}.get(
        compression, f"{compression}-compressed tar archive"
    )


# -- names -------------------------------------------------------------------------------


class _NameMapper:
    """Member name -> path relative to the staging root, confined to the layer's prefix."""

    def __init__(self, prefix: str | None, shown: str, names_from: str | None = None) -> None:
        self.prefix = prefix
        self.shown = shown
        # decided on the first member unless the caller knows it
        self.base: str | None = names_from if names_from is not None else (None if prefix is not None else "")
        if prefix is not None:
            parent, _, leaf = prefix.rpartition("/")
            self._parent, self._leaf = parent, leaf

    def map(self, name: str, is_dir: bool) -> str | None:
        """The staging-relative path of ``name``, or None for a directory member to skip."""
        if self.prefix is None:
            return name
        prefix = self.prefix
        if self.base is None:
            if _within(name, prefix):
                self.base = ""
            elif self._parent and _within(name, self._leaf):
                self.base = self._parent
            elif is_dir and _within(prefix, name):
                return None  # an ancestor directory of the declared path
            else:
                raise self._outside(name)
        path = f"{self.base}/{name}" if self.base else name
        if is_dir and path != prefix and _within(prefix, path):
            return None  # an ancestor directory of the declared path
        if not _within(path, prefix):
            raise self._outside(name)
        return path

    def _outside(self, name: str) -> UnsafeArchive:
        return UnsafeArchive(
            f"tar layer {self.shown}: member {name[:120]!r} is outside the layer's declared path "
            f"{self.prefix[:120]!r}"
        )


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


class _UniqueNames:
    """Incremental form of paths.check_unique_paths for one archive: refuses duplicates and
    names equal after NFC + casefold, and a name that is a file and a directory at once."""

    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.members: dict[str, tuple[str, bool]] = {}  # folded -> (name, is_dir)
        self.implied_dirs: dict[str, str] = {}  # folded ancestor -> a name under it

    def add(self, name: str, is_dir: bool) -> None:
        key = unicodedata.normalize("NFC", name).casefold()
        if key in self.members:
            raise UnsafeArchive(
                f"tar layer {self.shown} names the same path twice: "
                f"{self.members[key][0][:120]!r} and {name[:120]!r}"
            )
        if not is_dir and key in self.implied_dirs:
            raise UnsafeArchive(
                f"tar layer {self.shown} names {name[:120]!r} as a file and as a directory of "
                f"{self.implied_dirs[key][:120]!r}"
            )
        parts = key.split("/")
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            seen = self.members.get(ancestor)
            if seen is not None and not seen[1]:
                raise UnsafeArchive(
                    f"tar layer {self.shown} names {seen[0][:120]!r} as a file and as a directory of "
                    f"{name[:120]!r}"
                )
            self.implied_dirs.setdefault(ancestor, name)
        self.members[key] = (name, is_dir)


def _member_name(member: tarfile.TarInfo, shown: str) -> str | None:
    """The checked member name, one leading ``./`` removed; None for the ``.`` root entry."""
    name = member.name
    if name.startswith("./"):
        name = name[2:]
    if member.isdir() and name.rstrip("/") in ("", "."):
        return None
    if member.isdir():
        name = name.rstrip("/")
    try:
        return check_relative_path(name)
    except UnsafePath as exc:
        raise UnsafeArchive(f"tar layer {shown}: member {member.name[:120]!r}: {exc.message}") from None


# -- writing -----------------------------------------------------------------------------


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    root: Path,
    mapper: _NameMapper,
    names: _UniqueNames,
    state: ReadState,
    shown: str,
) -> ExtractedEntry | None:
    if not (is_plain_file(member) or member.isdir()):
        raise refuse_type(member, shown, _LABEL)
    name = _member_name(member, shown)
    if name is None:
        return None
    relpath = mapper.map(name, member.isdir())
    if relpath is None:
        return None
    names.add(relpath, member.isdir())
    target = root / relpath
    if member.isdir():
        _makedirs(root, relpath)
        return ExtractedEntry(relpath, "dir", 0, 0o755)
    limit = state.limits.max_total_bytes
    if state.written + member.size > limit:
        raise ArchiveTooLarge(
            f"tar layer {shown} extracts to more than {limit} bytes (at member {member.name[:120]!r})",
            hint=_BOMB_HINT,
        )
    if "/" in relpath:
        _makedirs(root, relpath.rsplit("/", 1)[0])
    mode = (member.mode & 0o755) | 0o600
    source = tar.extractfile(member)
    assert source is not None  # a regular file always has a file object
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise UnsafeArchive(f"tar layer {shown}: member {member.name[:120]!r} collides with another file") from None
    except OSError as exc:
        raise PackagingError(f"cannot write {target}: {exc.strerror}") from None
    written = 0
    with os.fdopen(fd, "wb") as handle:
        for data in read_chunks(source):
            written += len(data)
            state.written += len(data)
            if state.written > limit:  # cannot happen with a truthful size; belt and braces
                raise ArchiveTooLarge(f"tar layer {shown} extracts to more than {limit} bytes")
            try:
                handle.write(data)
            except OSError as exc:
                raise PackagingError(f"cannot write {target}: {exc.strerror}") from None
        os.fchmod(handle.fileno(), mode)
    if written != member.size:
        raise InvalidArchive(f"tar layer {shown}: member {member.name[:120]!r} is truncated")
    return ExtractedEntry(relpath, "file", written, mode)


def _makedirs(root: Path, relpath: str) -> None:
    """Create ``root/relpath`` one component at a time, refusing anything but a directory on
    the way (the staging root is private, but an earlier member must not redirect a later
    one)."""
    current = root
    for part in relpath.split("/"):
        current = current / part
        try:
            os.mkdir(current, 0o755)
            continue
        except FileExistsError:
            pass
        except OSError as exc:
            raise PackagingError(f"cannot create {current}: {exc.strerror}") from None
        if not current.is_dir() or current.is_symlink():
            raise UnsafeArchive(f"cannot create directory {relpath!r}: {current} is not a directory")


# ArchiveTooLarge, ExtractLimits, InvalidArchive, UnsafeArchive and the limits live in
# ocimodel.oci.targuard, shared with the layout archive reader; they stay importable here.
__all__ = [
    "DEFAULT_MAX_MEMBERS", "DEFAULT_MAX_TOTAL_BYTES", "MAX_HEADER_CHAIN",
    "MAX_HEADER_RECORD_BYTES", "STREAM_BUFFER", "STREAM_SLACK_BYTES",
    "ArchiveTooLarge", "Compression", "ExtractLimits", "ExtractedEntry", "InvalidArchive",
    "UnsafeArchive", "decompress_stream", "extract_tar_stream", "list_members", "first_member_name", "zstd_module",
]
