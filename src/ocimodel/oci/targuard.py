"""Guards for reading an untrusted tar stream with :mod:`tarfile` (docs/threats.md 9-10).

Every tar ocimodel reads came from somewhere else: a tar layer of a model (extracted by
:mod:`ocimodel.packaging.archive`) or an OCI layout archive carried across an air gap
(:mod:`ocimodel.targets.archive`). Both read it once, forward only, with tarfile's ``r|``
mode, and both need the same protections against what tarfile would otherwise accept:

- a decompression bomb: a cap on the bytes written and on the member count
  (:class:`ExtractLimits`), a cap on the size of each pax / GNU long-name header record and
  on the chain of them in front of one member (tarfile reads them into memory whole and
  follows chains recursively), and a cap on decompressed bytes that no member accounts for
  (:class:`CountingReader`), so that hidden data cannot make a reader spin or fill memory;
- an archive silently cut short: tarfile reads a corrupt header after the first member as
  the end of the archive (:func:`check_clean_end`), and ignores anything after the
  end-of-archive marker (:func:`drain_stream`); a gzip stream is only checked against its
  CRC and length trailer when read to its end (:func:`drain_decoder`);
- members that could point outside the destination or alias another file: symlinks,
  hardlinks, devices, fifos, sparse files and unknown types are refused by name
  (:func:`refuse_type`); only regular files and directories are ever extracted.

What a member may be called, and where it is written, is the caller's policy. Messages name
the archive as ``<label> <shown>``: the caller says what the stream is (``tar layer``,
``archive``) and how it is shown (a quoted path)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ocimodel.chunks import CHUNK_SIZE, read_chunks
from ocimodel.errors import OcimodelError, UnsafePath

DEFAULT_MAX_TOTAL_BYTES = 1 << 40  # 1 TiB of file content per archive
DEFAULT_MAX_MEMBERS = 1_000_000
# pax and GNU long-name records are read into memory whole by tarfile: cap each one, and
# the chain of them in front of one member (tarfile follows such chains recursively).
MAX_HEADER_RECORD_BYTES = 1 << 20
MAX_HEADER_CHAIN = 8
# Decompressed bytes may run ahead of what members account for by tarfile's read-ahead
# plus the end-of-archive padding; anything beyond this is hidden data.
STREAM_SLACK_BYTES = 4 << 20
STREAM_BUFFER = 256 << 10  # tarfile reads the stream in pieces of this size

_EXTENSION_TYPES = frozenset(
    (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
     tarfile.SOLARIS_XHDTYPE)
)

_BOMB_HINT = "a likely decompression bomb; nothing was written to the destination"


class UnsafeArchive(UnsafePath):
    """A tar archive holds a member that would escape, alias or not be a plain file or directory."""


class ArchiveTooLarge(UnsafeArchive):
    """A tar archive exceeds an extraction limit (bytes, members, header size): a likely bomb."""


class InvalidArchive(OcimodelError):
    """A tar archive cannot be read: not a tar, a corrupt or truncated stream, bad compression."""


@dataclass(frozen=True)
class ExtractLimits:
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS


@dataclass
class ReadState:
    """What one read of one archive has consumed so far, checked against its limits."""

    limits: ExtractLimits
    members: int = 0
    written: int = 0  # file content bytes written
    overhead: int = 0  # header blocks, header records and padding the members account for
    chain: int = 0  # extension headers in front of the current member
    bad_header: str | None = None

    @property
    def stream_allowance(self) -> int:
        return self.written + self.overhead + STREAM_SLACK_BYTES


class CountingReader(io.RawIOBase):
    """Counts decompressed bytes and refuses any not accounted for by a member."""

    def __init__(self, inner, state: ReadState, shown: str, label: str) -> None:
        self._inner = inner
        self._state = state
        self._shown = shown
        self._label = label
        self.produced = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = CHUNK_SIZE
        data = self._inner.read(size)
        self.produced += len(data)
        if self.produced > self._state.stream_allowance:
            raise ArchiveTooLarge(
                f"{self._label} {self._shown} decompresses to more data than its members account for",
                hint=_BOMB_HINT,
            )
        return data

    def readinto(self, target) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


class SafeTarInfo(tarfile.TarInfo):
    """Caps header records before tarfile reads them into memory, and accounts for header
    bytes so that unaccounted decompressed data can be detected. tarfile builds its members
    from the class alone, so use a subclass bound to one read (:func:`safe_tarinfo`)."""

    _state: ReadState
    _shown: str
    _label: str

    @classmethod
    def fromtarfile(cls, tarfile_obj):
        try:
            return super().fromtarfile(tarfile_obj)
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as exc:
            # tarfile reads a bad header after the first member as the end of the archive;
            # remember it so that the archive is refused instead of silently cut short.
            cls._state.bad_header = str(exc) or type(exc).__name__
            raise

    def _proc_member(self, tarfile_obj):  # the documented hook for TarInfo subclasses
        state = self._state
        if self.type in _EXTENSION_TYPES:
            state.chain += 1
            if self.size > MAX_HEADER_RECORD_BYTES:
                raise ArchiveTooLarge(
                    f"{self._label} {self._shown} has a {self.size}-byte header record "
                    f"(limit {MAX_HEADER_RECORD_BYTES})"
                )
            if state.chain > MAX_HEADER_CHAIN:
                raise UnsafeArchive(
                    f"{self._label} {self._shown} chains more than {MAX_HEADER_CHAIN} header records"
                )
            state.overhead += tarfile.BLOCKSIZE + self._block(self.size)
        else:
            state.chain = 0
            state.overhead += tarfile.BLOCKSIZE
            if self.type in tarfile.REGULAR_TYPES:
                state.overhead += self._block(self.size) - self.size  # padding after the data
        return super()._proc_member(tarfile_obj)


def safe_tarinfo(state: ReadState, shown: str, label: str) -> type[SafeTarInfo]:
    """A :class:`SafeTarInfo` subclass bound to one read, for ``tarfile.open(tarinfo=...)``."""
    return type("_BoundTarInfo", (SafeTarInfo,), {"_state": state, "_shown": shown, "_label": label})


def read_members(
    decoded: BinaryIO, state: ReadState, shown: str, label: str, *, hint: str | None = None
) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """Each member of the tar stream ``decoded``, with every guard above applied: bytes
    counted, header records capped, at most ``state.limits.max_members`` members (``hint``
    goes with that error), a clean end checked and whatever follows it drained. The caller
    extracts each member (from the ``TarFile`` given with it) by its own rules, and drains
    the decoder itself (:func:`drain_decoder`) once the members are done."""
    counted = CountingReader(decoded, state, shown, label)
    tarinfo_cls = safe_tarinfo(state, shown, label)
    with tarfile.open(fileobj=counted, mode="r|", tarinfo=tarinfo_cls, bufsize=STREAM_BUFFER) as tar:
        while (member := tar.next()) is not None:
            tar.members.clear()  # stream mode needs no history; keep memory constant
            state.members += 1
            if state.members > state.limits.max_members:
                raise ArchiveTooLarge(f"{label} {shown} has more than {state.limits.max_members} members", hint=hint)
            yield tar, member
        check_clean_end(state, shown, label)
        drain_stream(tar, shown, label)


def check_clean_end(state: ReadState, shown: str, label: str) -> None:
    """A real end is a zero block or the plain end of the data, not a bad header."""
    if state.bad_header is not None:
        raise InvalidArchive(
            f"{label} {shown} has a corrupt or truncated member header ({state.bad_header})"
        )


def drain_stream(tar: tarfile.TarFile, shown: str, label: str) -> None:
    """Read past the end-of-archive marker to the end: only zero padding may follow."""
    for data in read_chunks(tar.fileobj):
        if data.strip(b"\0"):
            raise InvalidArchive(f"{label} {shown} has data after the end of the archive")


def drain_decoder(decoded) -> None:
    """Finish decompression so that gzip checks its CRC and length trailer."""
    for _ in read_chunks(decoded):
        pass


def refuse_type(member: tarfile.TarInfo, shown: str, label: str) -> UnsafeArchive:
    """The error for a member that is neither a regular file nor a directory (the caller
    raises it), saying what the member is."""
    name = repr(member.name[:120])
    if member.issym():
        what = f"a symlink (to {member.linkname[:120]!r})"
    elif member.islnk():
        what = f"a hardlink (to {member.linkname[:120]!r})"
    elif member.ischr() or member.isblk():
        what = "a device"
    elif member.isfifo():
        what = "a fifo"
    elif member.sparse is not None or member.type == tarfile.GNUTYPE_SPARSE:
        what = "a sparse file"
    else:
        what = f"of unsupported type {member.type!r}"
    return UnsafeArchive(
        f"{label} {shown}: member {name} is {what}; only regular files and directories are extracted",
        hint="links, devices and fifos in an archive are refused so nothing can point outside the destination",
    )


def is_plain_file(member: tarfile.TarInfo) -> bool:
    """A regular file that is not sparse: the only kind of file member ever extracted."""
    return member.isreg() and member.sparse is None and member.type != tarfile.GNUTYPE_SPARSE


__all__ = [
    "DEFAULT_MAX_MEMBERS", "DEFAULT_MAX_TOTAL_BYTES", "MAX_HEADER_CHAIN",
    "MAX_HEADER_RECORD_BYTES", "STREAM_BUFFER", "STREAM_SLACK_BYTES", "ArchiveTooLarge",
    "CountingReader", "ExtractLimits", "InvalidArchive", "ReadState", "SafeTarInfo",
    "UnsafeArchive", "check_clean_end", "drain_decoder", "drain_stream", "is_plain_file",
    "read_members", "refuse_type", "safe_tarinfo",
]
