"""A manifest's layers -> files in a directory, safely.

:func:`plan_files` checks every path before a byte is downloaded. :class:`DirectoryWriter`
is a write-only target for the copy engine: verified blobs land in a staging directory
beside the destination, and only when every blob has arrived and been verified (the
manifest "push" at the end of a copy) are the files moved into place. On any failure the
staging directory is removed and the destination is untouched.

The commit is all-or-nothing (docs/pull-commit.md): a file it replaces is first set aside
in the staging directory, and a journal there lists what the commit does, so an error or
an interrupt midway puts every old file back, and a pull killed outright (SIGKILL, a
crash) is undone by the next pull into the same place. SIGINT and SIGTERM are held off
while files move, then acted on: after the files are put back, or after the commit.

Archive layers (ModelPack ``.tar`` / ``.tar+gzip`` / ``.tar+zstd``, current and legacy
names, and ORAS directories: a ``tar+gzip`` image layer with a title, as oras-py pushes a
directory, or any layer marked ``io.deis.oras.content.unpack: "true"`` as the oras CLI
does) are extracted while they stream into the same staging tree by
:mod:`ocimodel.packaging.archive`; their members must lie at or under the path the layer
declares. A ModelPack archive layer that declares no path (modctl's and the spec's own
example manifest carry no file path annotation) is extracted at the model root under the
names its tar headers give, with the same checks. A wrong digest is only known at the
end of such a stream, which is fine: nothing leaves the staging directory before the
commit (docs/peers.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import filecmp
import hashlib
import json
import logging
import os
import shutil
import signal
import stat
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ocimodel.atomicwrite import atomic_file, atomic_write
from ocimodel.chunks import read_file_chunks
from ocimodel.errors import (
    DestinationExists,
    LocalFilesDiffer,
    NotAModel,
    PackagingError,
    UnsafePath,
)
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Descriptor, Manifest
from ocimodel.packaging.archive import (
    Compression,
    ExtractedEntry,
    ExtractLimits,
    InvalidArchive,
    decompress_stream,
    extract_tar_stream,
    first_member_name,
    list_members,
    zstd_module,
)
from ocimodel.packaging.blobcache import BlobCache
from ocimodel.packaging.digestcache import RACY_SECONDS, DigestCache, same_file_state
from ocimodel.packaging.paths import (
    check_no_symlink_parents,
    check_relative_path,
    check_unique_paths,
)

log = logging.getLogger("ocimodel.pull")

# ORAS marks a tar+gzip directory layer with this annotation (the oras CLI); oras-py marks
# a directory by this layer media type alone, and extracts every layer of that type.
ORAS_UNPACK = "io.deis.oras.content.unpack"
ORAS_DIRECTORY = "application/vnd.oci.image.layer.v1.tar+gzip"
DEFAULT_FILE_MODE = 0o644
STAGING_PREFIX = ".ocimodel-pull-"
# In a staging directory: the lock its pull holds while it lives (a pull that finds the lock
# free knows the owner is gone), the commit journal, and the old files set aside by index.
LOCK_NAME = "lock"
JOURNAL_NAME = "journal.json"
KEPT_DIR = "old"
# How many paths an error or warning names before "and N more".
SHOWN_PATHS = 10
COMPRESSED_EXPANSION = 50
MIN_EXPANSION_BYTES = 1 << 30
# Copies (copyfileobj) and spooled layers are written in 1 MiB pieces: fewer write calls
# (each gives up and retakes the GIL).
WRITE_BUFFER_BYTES = 1 << 20
# A pulled file's pieces come as they were read: up to 1 MiB straight from the socket for
# a large body (transport/body.py), smaller through httpx. A piece at least this big goes
# to the file as it is (the buffer would only copy it once more: ~0.08 CPU-s per GiB);
# smaller ones are gathered first.
RAW_WRITE_BUFFER_BYTES = 64 << 10
# ModelPack packing suffix -> compression of the tar stream.
_TAR_PACKINGS: dict[str, Compression] = {"tar": "none", "tar+gzip": "gzip", "tar+zstd": "zstd"}


@dataclass(frozen=True)
class PlannedFile:
    """One layer of a pull. A raw layer is the file at ``relpath``; an archive layer
    (``archive`` is its compression) is extracted at and under ``relpath``, or, when
    ``relpath`` is empty (a ModelPack archive that declares no path), at the model root
    under the names in its tar headers."""

    relpath: str
    descriptor: Descriptor
    mode: int
    archive: Compression | None = None
    # Where an archive's member names are relative to, when the writer is known (a KitOps
    # Kitfile says it): "" for the model root; None to tell from the first member.
    names_from: str | None = None
    # A single file stored compressed (KitOps raw+gzip / raw+zstd): written decompressed.
    packed: Compression | None = None
    # The layer kind, when the media type is not a ModelPack one (a KitOps layer).
    kind: str | None = None

    @property
    def streamed(self) -> bool:
        """Written from the stream as it arrives (an archive, or a compressed file): always
        fetched, compared with what is in place at the commit."""
        return self.archive is not None or self.packed is not None

    @property
    def shown(self) -> str:
        """How messages name the layer: its path, or its digest when it declares none."""
        return repr(self.relpath[:120]) if self.relpath else f"layer {self.descriptor.digest[:19]}"


def layer_path(layer: Descriptor) -> str | None:
    """The file path a layer carries: ModelPack filepath (current or legacy), else title."""
    for key in (mt.ANNOTATION_FILEPATH, mt.LEGACY_ANNOTATION_FILEPATH, mt.ANNOTATION_TITLE):
        value = layer.annotation(key)
        if value is not None:
            return value
    return None


def header_path(source, layer: Descriptor) -> str | None:
    """For display (``inspect``): the path a ModelPack tar layer that declares none gives
    itself in its first tar header (:func:`ocimodel.packaging.archive.first_member_name`),
    read from the start of the blob only; None for any other layer, and for one whose
    first header pull would refuse (pull then says why). ``source`` is any store with
    ``open_blob``. The layer's digest is not checked here; pull checks it."""
    if layer_path(layer) is not None:
        return None
    try:
        compression = unnamed_archive(layer)
        if compression is None:
            return None
        with source.open_blob(layer) as chunks:
            return first_member_name(chunks, compression=compression, label=f"layer {layer.digest[:19]}")
    except (UnsafePath, InvalidArchive, NotAModel):
        return None


def plan_files(manifest: Manifest) -> list[PlannedFile]:
    """The layers a manifest describes, every path checked; raises before anything is fetched.

    Raw layers and archive roots must not collide: no duplicates after NFC + case folding,
    and no file of one layer inside the declared path of another."""
    planned: list[PlannedFile] = []
    for layer in manifest.layers:
        name = layer_path(layer)
        if name is None:
            # modctl, and the ModelPack spec's example manifest, leave the path to the tar
            # headers: the members are extracted at the model root, checked one by one.
            compression = unnamed_archive(layer)
            if compression is None:
                raise NotAModel(
                    f"layer {layer.digest} ({layer.media_type[:120]}) has no file name: no "
                    f"{mt.ANNOTATION_FILEPATH} or {mt.ANNOTATION_TITLE} annotation, and it is not a ModelPack tar layer (whose tar headers name its files)",
                    hint="ocimodel pulls ModelPack models (raw layers with a file path, tar layers with or without one) "
                    "and ORAS artifacts whose layers carry titles",
                )
            planned.append(PlannedFile("", layer, DEFAULT_FILE_MODE, compression))
            continue
        relpath = check_relative_path(name)
        planned.append(PlannedFile(relpath, layer, mode_of(layer), archive_compression(layer, relpath)))
    if not planned:
        raise NotAModel("the artifact has no files")
    check_unique_paths(p.relpath for p in planned if p.relpath)
    return planned


def archive_names(chunks: Iterable[bytes], layer: Descriptor) -> list[str]:
    """The names a ModelPack tar layer that declares no path (modctl's) extracts to, read
    from its whole stream under pull's checks and caps, nothing written (``inspect
    --read-layers``). Give it the copy engine's verifying iterator: the names are returned
    only once the digest has been checked. [] for any other layer."""
    compression = unnamed_archive(layer)
    if compression is None or layer_path(layer) is not None:
        return []
    limits = _layer_limits(ExtractLimits(), PlannedFile("", layer, DEFAULT_FILE_MODE, compression))
    return list_members(chunks, compression=compression, limits=limits, label=f"layer {layer.digest[:19]}")


def unnamed_archive(layer: Descriptor) -> Compression | None:
    """The compression of a ModelPack tar layer (any kind, current or legacy names) that
    carries no path; None for any other layer, which cannot be named."""
    parsed = mt.parse_model_layer(layer.media_type)
    if parsed is None or parsed[1] == "raw":
        return None
    return archive_compression(layer, f"layer {layer.digest[:19]}")


def archive_compression(layer: Descriptor, name: str) -> Compression | None:
    """None for a raw layer; else the compression of the tar stream the layer holds.
    Raises NotAModel for a packing ocimodel cannot read."""
    parsed = mt.parse_model_layer(layer.media_type)
    unpack = layer.annotation(ORAS_UNPACK) == "true"
    shown = repr(name[:120])
    if parsed is not None:
        packing = parsed[1]
        if packing == "raw":
            if unpack:
                raise NotAModel(
                    f"layer {shown} is a raw ModelPack layer ({layer.media_type}) but is also marked "
                    f"{ORAS_UNPACK}=true; refusing to guess whether it is an archive"
                )
            return None
        compression = _TAR_PACKINGS.get(packing)
        if compression is None:
            raise NotAModel(
                f"layer {shown} has an unsupported packing {packing!r} ({layer.media_type})",
                hint="ocimodel reads ModelPack raw, tar, tar+gzip and (with `zstandard`) tar+zstd layers",
            )
    elif unpack:
        # ORAS always gunzips an unpack layer; honour an explicit tar or zstd media type.
        if layer.media_type.endswith("+zstd"):
            compression = "zstd"
        elif layer.media_type.endswith("tar"):
            compression = "none"
        else:
            compression = "gzip"
    elif layer.media_type == ORAS_DIRECTORY and layer.annotation(ORAS_UNPACK) != "false":
        # How oras-py pushes a directory, and what its pull extracts (by this media type
        # alone); an explicit unpack "false" (the oras CLI's word) keeps the file as is.
        compression = "gzip"
    else:
        return None
    if compression == "zstd" and zstd_module() is None:
        raise NotAModel(
            f"layer {shown} is a zstd-compressed tar ({layer.media_type}); Python 3.11 cannot decompress zstd",
            hint="install the `zstandard` package to pull tar+zstd layers",
        )
    return compression


def mode_of(layer: Descriptor) -> int:
    """File mode from the ModelPack metadata annotation: permission bits only, never setuid,
    setgid, sticky or group/other write."""
    raw = layer.annotation(mt.ANNOTATION_FILE_METADATA) or layer.annotation(mt.LEGACY_ANNOTATION_FILE_METADATA)
    if not raw or len(raw) > 4096:
        return DEFAULT_FILE_MODE
    try:
        mode = json.loads(raw).get("mode")
    except (ValueError, AttributeError):
        return DEFAULT_FILE_MODE
    if not isinstance(mode, int) or isinstance(mode, bool) or mode < 0:
        return DEFAULT_FILE_MODE
    return (mode & 0o755) | 0o600  # the owner can always read and rewrite what it pulled


class DirectoryWriter:
    """Write side of a pull. Use as a context manager: leaving it with an error cleans up.

    ``extracted`` lists what archive layers wrote (paths relative to the destination).
    With ``blob_cache``, files are linked from it instead of downloaded when it has them
    (``from_cache`` lists those), and downloaded files are added to it. ``replaced`` lists,
    after the commit, the files whose different content the pull overwrote; with
    ``keep_local`` such files are refused (LocalFilesDiffer) and nothing is changed: raw
    layers are checked here, before a byte is downloaded, archive members at the commit."""

    def __init__(
        self,
        destination: str | os.PathLike[str],
        files: list[PlannedFile],
        *,
        limits: ExtractLimits | None = None,
        blob_cache: BlobCache | None = None,
        keep_local: bool = False,
    ) -> None:
        self.destination = Path(destination)
        self.keep_local = keep_local
        self.blob_cache = blob_cache
        self.name = f"directory {self.destination}"
        self.files = files
        self.limits = limits or ExtractLimits()
        self._by_digest: dict[str, list[PlannedFile]] = {}
        for planned in files:
            self._by_digest.setdefault(planned.descriptor.digest, []).append(planned)
        # A pull killed in its commit left its journal where it staged: in the destination,
        # or in an ancestor if the destination did not exist then. Undone first.
        for directory in (self.destination.absolute(), *self.destination.absolute().parents):
            recover_interrupted_pulls(directory, destination=self.destination)
        if self.destination.exists() and not self.destination.is_dir():
            raise PackagingError(f"destination {self.destination} exists and is not a directory")
        if (self.destination / "oci-layout").exists():
            raise DestinationExists(
                f"destination {self.destination} is an OCI layout; pulling files into it would damage it",
                hint="pull into another directory (to copy the model into the layout, use `ocimodel copy`)",
            )
        for planned in files:
            if not planned.relpath:
                continue  # names known once extracted: checked then, before anything moves
            _check_not_staging_name(planned.relpath)
            check_no_symlink_parents(self.destination, planned.relpath)
        # Staged inside the destination when it exists (the one place we know is writable
        # and on the same filesystem: a mounted volume's parent may be read-only), else in
        # its nearest existing ancestor; missing parents are only created by the commit.
        if self.destination.is_dir():
            anchor = self.destination
        else:
            anchor = _existing_ancestor(self.destination.absolute().parent)
        self._lock = threading.Lock()
        self._digests: DigestCache | None = None  # opened when a file to check is found
        if keep_local:
            try:
                self._refuse_local_changes(
                    p.relpath for p in files
                    if not p.streamed and not _holds(self.destination / p.relpath, p.descriptor, self._digest_cache)
                )
            finally:
                if self._digests is not None:
                    self._digests.close()
                    self._digests = None
        self._lock_fd: int | None = None
        self._keep_staging = False  # a failed rollback: the journal and old files must stay
        try:
            self._staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=anchor))
        except OSError as exc:
            raise PackagingError(f"cannot write next to {self.destination}: {exc.strerror}") from None
        try:
            # Held until the staging directory is gone: the next pull knows it is alive.
            self._lock_fd = os.open(self._staging / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            # The staged tree mirrors the destination; blobs needed twice are spooled apart
            # from it, so no model path can collide with the spool.
            self._tree = self._staging / "tree"
            self._spool = self._staging / "spool"
            self._tree.mkdir()
            self._spool.mkdir()
        except OSError as exc:
            self.__exit__()
            raise PackagingError(f"cannot write next to {self.destination}: {exc.strerror}") from None
        self._staged: list[PlannedFile] = []
        self.extracted: list[ExtractedEntry] = []
        self.unchanged: list[PlannedFile] = []
        self.from_cache: list[PlannedFile] = []
        self.replaced: list[str] = []
        self.committed = False

    def __enter__(self) -> DirectoryWriter:
        return self

    def __exit__(self, *exc) -> None:
        if not self._keep_staging:
            shutil.rmtree(self._staging, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._digests is not None:
            self._digests.close()

    def _refuse_local_changes(self, relpaths: Iterable[str]) -> None:
        differing = [r for r in relpaths if os.path.lexists(self.destination / r)]
        if differing:
            raise LocalFilesDiffer(
                f"{len(differing)} file(s) in {self.destination} differ from the model and keep-local is set: "
                f"{shown_paths(differing)}; nothing was changed",
                files=differing,
                hint="move them away, or pull without --keep-local to replace them (the pull lists what it replaced)",
            )

    def _digest_cache(self) -> DigestCache:
        with self._lock:
            if self._digests is None:
                self._digests = DigestCache()
            return self._digests

    def has_blob(self, descriptor: Descriptor) -> bool:
        targets = self._by_digest.get(descriptor.digest)
        if targets is None:
            return True  # not a file of the model (the config): nothing to write
        if any(p.streamed for p in targets):
            return False  # an archive is always fetched and extracted again
        if all(_holds(self.destination / p.relpath, descriptor, self._digest_cache) for p in targets):
            with self._lock:
                self.unchanged.extend(targets)
            return True
        return self.blob_cache is not None and self._link_from_cache(descriptor, targets)

    def _link_from_cache(self, descriptor: Descriptor, targets: list[PlannedFile]) -> bool:
        first = self._tree / targets[0].relpath
        first.parent.mkdir(parents=True, exist_ok=True)
        assert self.blob_cache is not None

        def holds(linked: Path) -> bool:
            return _holds(linked, descriptor, self._digest_cache)

        if not self.blob_cache.link_into(descriptor.digest, first, targets[0].mode, holds):
            return False
        self._copy_to_others(first, targets[1:])
        with self._lock:
            self._staged.extend(targets)
            self.from_cache.extend(targets)
        return True

    def push_blob(self, descriptor: Descriptor, chunks: Iterable[bytes]) -> None:
        targets = self._by_digest.get(descriptor.digest)
        if targets is None:
            for _ in chunks:  # still verified by the engine, then dropped
                pass
            return
        raws = [p for p in targets if not p.streamed]
        archives = [p for p in targets if p.streamed]
        if not archives:
            self._write_raw(raws, chunks)
        elif len(targets) == 1:
            self._extract(archives[0], chunks)
        else:
            # The same bytes are needed more than once: verify them whole first, then reuse.
            spooled = self._spool / descriptor.digest.replace(":", "-")
            with _open_staged(spooled) as handle:
                for chunk in chunks:
                    handle.write(chunk)
            if raws:
                self._write_raw(raws, read_file_chunks(spooled))
            for planned in archives:
                self._extract(planned, read_file_chunks(spooled))
            spooled.unlink()

    def receive_file(self, descriptor: Descriptor, fill: Callable[[int], bool]) -> bool:
        """A blob of plain files (no archive) written by ``fill`` straight into its staging
        file (a download in parts: transport/ranged.py), which verifies it before it
        returns True. Only then is the file counted as staged; it moves into place at the
        commit like any other. False (nothing staged) for a blob that is not a plain file
        of the model, or when ``fill`` could not do it."""
        targets = self._by_digest.get(descriptor.digest)
        if not targets or any(p.streamed for p in targets):
            return False
        first = self._tree / targets[0].relpath
        first.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(first, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        kept = False
        try:
            kept = fill(fd)
        finally:
            os.close(fd)
            if not kept:  # unverified bytes are not left where a file of the model goes
                first.unlink(missing_ok=True)
        if kept:
            self._staged_raw(targets, first)
        return kept

    def _write_raw(self, targets: list[PlannedFile], chunks: Iterable[bytes]) -> None:
        first = self._tree / targets[0].relpath
        first.parent.mkdir(parents=True, exist_ok=True)
        with _open_staged(first, RAW_WRITE_BUFFER_BYTES) as handle:
            for chunk in chunks:
                handle.write(chunk)
        self._staged_raw(targets, first)

    def _staged_raw(self, targets: list[PlannedFile], first: Path) -> None:
        # The engine checks the digest before it lets the last piece go (a download in
        # parts, before ``fill`` returns): here the file is whole and verified, so it may be kept. It gets its final mode first: once in the
        # cache another pull may link it, and the commit must not change a shared inode.
        if self.blob_cache is not None:
            os.chmod(first, targets[0].mode)
            self.blob_cache.add(targets[0].descriptor.digest, first)
        self._copy_to_others(first, targets[1:])
        with self._lock:
            self._staged.extend(targets)

    def _copy_to_others(self, first: Path, others: list[PlannedFile]) -> None:
        """Files with the same bytes as ``first`` are copies (never links: each gets its
        own mode, and editing one must not change another)."""
        for other in others:
            path = self._tree / other.relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(first, path)

    def _extract(self, planned: PlannedFile, chunks: Iterable[bytes]) -> None:
        label = f"{planned.relpath[:120]!r} ({planned.descriptor.digest[:19]})" if planned.relpath else planned.shown
        if planned.packed is not None:
            # One file, compressed: staged like an archive member (compared at the commit).
            entries = [decompress_stream(
                chunks, self._tree, planned.relpath, compression=planned.packed, mode=planned.mode,
                limits=_layer_limits(self.limits, planned), label=label,
            )]
        else:
            entries = extract_tar_stream(
                chunks,
                self._tree,
                compression=planned.archive or "none",
                prefix=planned.relpath or None,
                names_from=planned.names_from,
                limits=_layer_limits(self.limits, planned),
                label=label,
            )
        with self._lock:
            self.extracted.extend(entries)

    def has_manifest(self, descriptor: Descriptor) -> bool:
        return False

    def push_manifest(self, descriptor: Descriptor, data: bytes, tag: str | None = None) -> None:
        """As a copy target, the manifest comes last: that is the moment to commit."""
        self.commit()

    def staged_files(self) -> list[tuple[str, Path]]:
        """(path in the model, file on disk) of every file the commit would leave in the
        destination: staged and extracted files from the staging tree, unchanged ones where
        they are (``pull --scan`` judges them all before anything moves)."""
        staged = [p.relpath for p in self._staged] + [e.relpath for e in self.extracted if e.kind == "file"]
        out = [(r, self._tree / r) for r in dict.fromkeys(staged)]
        out += [(p.relpath, self.destination / p.relpath) for p in self.unchanged if p.relpath not in staged]
        return out

    def commit(self) -> None:
        """Every blob is in and verified: check every target path, then move the files into
        place, all or nothing. Nothing is moved if any check fails; an error or an interrupt
        while files move puts every old file back (see :class:`_Journal`)."""
        if self.committed:
            return
        files = [p.relpath for p in self._staged] + [e.relpath for e in self.extracted if e.kind == "file"]
        dirs = [e.relpath for e in self.extracted if e.kind == "dir"]
        _check_final_paths(files, dirs)
        for relpath in files:
            self._check_file_target(relpath)
        for relpath in dirs:
            self._check_dir_target(relpath)
        for planned in self.unchanged:
            check_no_symlink_parents(self.destination, planned.relpath)
        for planned in self._staged:
            staged = self._tree / planned.relpath
            st = os.lstat(staged)
            if stat.S_IMODE(st.st_mode) != planned.mode:
                if st.st_nlink > 1:  # shared with the blob cache: this file gets its own inode
                    _copy_over(staged, staged)
                os.chmod(staged, planned.mode)
        # A raw file was staged because the one in place does not hold its digest: it differs
        # (no need to read it). Archive members are extracted every time: compared.
        raw = {p.relpath for p in self._staged}
        self.replaced = sorted(
            r for r in files
            if (os.path.lexists(self.destination / r) if r in raw else _differs(self.destination / r, self._tree / r))
        )
        if self.keep_local:
            self._refuse_local_changes(self.replaced)
        modes = []
        for planned in self.unchanged:
            with contextlib.suppress(OSError):
                st = os.lstat(self.destination / planned.relpath)
                if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != planned.mode:
                    modes.append((planned.relpath, stat.S_IMODE(st.st_mode)))
        journal = _Journal(
            self._staging,
            self.destination.absolute(),
            files=[(r, os.path.lexists(self.destination / r)) for r in files],
            dirs=_missing_dirs(self.destination.absolute(), files, dirs),
            modes=modes,
        )
        self._commit(journal)
        self.committed = True

    def _commit(self, journal: _Journal) -> None:
        held = INTERRUPTS.hold()
        if not (journal.files or journal.dirs or journal.modes):  # every file already in place
            if held and not INTERRUPTS.keep_after_commit:
                INTERRUPTS.release()
            return
        try:
            journal.begin()
            for directory in journal.dirs:
                _check_interrupt(held)
                if Path(directory) != journal.destination and Path(directory).is_relative_to(journal.destination):
                    # Checked again now: the destination may have changed since the check above.
                    self._check_dir_target(Path(directory).relative_to(journal.destination).as_posix())
                _make_dir(Path(directory))
            for index, (relpath, had_old) in enumerate(journal.files):
                _check_interrupt(held)
                self._check_file_target(relpath)
                final = self.destination / relpath
                if os.path.lexists(final) != had_old:
                    raise PackagingError(f"{final} was created or removed during the pull", hint="pull again")
                if had_old:
                    _set_aside(final, journal.kept(index))
                _move(self._tree / relpath, final)  # modes were set above or at extraction
                journal.moved.add(index)
            for planned in self.unchanged:
                _check_interrupt(held)
                _restore_mode(self.destination, planned)
            _check_interrupt(held)
            journal.finish()  # the commit point: from here on the new files stay
        except BaseException as failure:
            try:
                journal.roll_back()
            except PackagingError as undo:
                self._keep_staging = True  # the next pull finds the journal and tries again
                if held:
                    INTERRUPTS.release(deliver=False)
                raise undo from failure
            # The old files are back and the staged ones are of no more use. Removed now:
            # a SIGTERM delivered below ends the process before the context manager could.
            shutil.rmtree(self._staging, ignore_errors=True)
            if held:
                INTERRUPTS.release()  # an interrupt held off is acted on now, as it was meant
            if isinstance(failure, _Interrupted):
                raise KeyboardInterrupt from None  # its handler returned: still, this pull stops
            raise
        if held and not INTERRUPTS.keep_after_commit:
            INTERRUPTS.release()  # a signal that came as the last file landed: acted on now

    def _check_file_target(self, relpath: str) -> None:
        check_no_symlink_parents(self.destination, relpath)
        final = self.destination / relpath
        if final.is_dir() and not final.is_symlink():
            raise UnsafePath(f"destination {final} is a directory; cannot write a file there")

    def _check_dir_target(self, relpath: str) -> None:
        check_no_symlink_parents(self.destination, relpath)
        final = self.destination / relpath
        try:
            mode = os.lstat(final).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISLNK(mode):
            raise UnsafePath(f"destination {final} is a symlink; refusing to write a directory through it")
        if not stat.S_ISDIR(mode):
            raise UnsafePath(f"destination {final} is a file; the model needs a directory there")


class _Interrupted(BaseException):
    """SIGINT or SIGTERM came while a commit moved files: stop and put the old ones back."""


class InterruptHold:
    """Holds SIGINT and SIGTERM off while a commit moves files: their handlers only record
    the signal (``pending``), and :meth:`release` puts the handlers back and delivers it.

    Only in the main thread, the one Python runs signal handlers in and lets set them;
    elsewhere :meth:`hold` changes nothing and returns False. A signal the process ignores
    (SIG_IGN) stays ignored."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self.keep_after_commit = False
        self._saved: dict[int, object] = {}
        self._held = False

    def hold(self) -> bool:
        if self._held or threading.current_thread() is not threading.main_thread():
            return False
        self.pending = None
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)
            if previous in (signal.SIG_IGN, None):  # ignored, or not set from Python
                continue
            self._saved[signum] = previous
            signal.signal(signum, self._record)
        self._held = True
        return True

    def ignore_until_exit(self) -> None:
        """For a process about to exit after a pull it reported as done: SIGINT and SIGTERM
        held so far are ignored from now on. (While the interpreter shuts down it puts the
        default action back in place of a handler set from Python, and a signal then would
        kill the process, exit status 130 or 143, after its report said "Pulled".) The
        handlers the hold replaced are still known: :meth:`reset` puts them back."""
        if self._held:
            for signum in self._saved:
                signal.signal(signum, signal.SIG_IGN)

    def reset(self) -> None:
        """No hold any more, nothing pending, ``keep_after_commit`` off: the handlers a hold
        (or :meth:`ignore_until_exit`) replaced are put back, a held signal is dropped."""
        self.keep_after_commit = False
        self.release(deliver=False)

    def _record(self, signum: int, frame: object) -> None:
        if self.pending is None:
            self.pending = signum

    def release(self, *, deliver: bool = True) -> None:
        for signum, previous in self._saved.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._saved.clear()
        self._held = False
        pending, self.pending = self.pending, None
        if pending is not None and deliver:
            signal.raise_signal(pending)  # SIGINT: KeyboardInterrupt here; SIGTERM: the process ends


# One per process, as signal handlers are.
INTERRUPTS = InterruptHold()


@contextlib.contextmanager
def hold_interrupts_after_commit(*, until_exit: bool = False) -> Iterator[InterruptHold]:
    """For a command that reports a pull: from the pull's commit on, SIGINT and SIGTERM stay
    held (recorded in ``pending``, never acted on) until the block ends, so a pull whose
    files are all in place is reported as done, with exit status 0, never cut mid-report or
    turned into an "interrupted". An interrupt before the commit point still stops the pull.

    The hold is the block's: on leaving it the handlers are put back as they were and a
    held signal is dropped (it came after the pull was done), so a later pull in the same
    process is protected again and Ctrl-C works again. With ``until_exit`` (the process
    exits right after the block) the held signals are ignored instead, until
    :meth:`InterruptHold.reset` (``main()`` calls it as it starts)."""
    INTERRUPTS.reset()  # whatever an earlier command in this process left
    INTERRUPTS.keep_after_commit = True
    try:
        yield INTERRUPTS
    except BaseException:
        INTERRUPTS.reset()
        raise
    if until_exit:
        INTERRUPTS.keep_after_commit = False
        INTERRUPTS.ignore_until_exit()
    else:
        INTERRUPTS.reset()


def _check_interrupt(held: bool) -> None:
    if held and INTERRUPTS.pending is not None:
        raise _Interrupted


class _Journal:
    """What a commit does, written (and synced) in the staging directory before anything in
    the destination changes: the directories it creates, each file it moves in and whether
    one was there (kept aside as ``old/<index>`` before the new one replaces it), and the
    old modes of unchanged files it gives the artifact's mode. Removing it is the commit
    point. While it exists, :meth:`roll_back` puts the destination back as it was: right
    away after an error or an interrupt, or in the next pull after the process was killed
    (:func:`recover_interrupted_pulls`)."""

    def __init__(
        self,
        staging: Path,
        destination: Path,
        *,
        files: list[tuple[str, bool]],
        dirs: list[str],
        modes: list[tuple[str, int]],
        begun: bool = False,
    ) -> None:
        self.staging = staging
        self.destination = destination
        self.files = files
        self.dirs = dirs
        self.modes = modes
        self.path = staging / JOURNAL_NAME
        self.begun = begun
        # Indexes of files moved in by this process; None when read back after a kill.
        self.moved: set[int] | None = None if begun else set()

    def kept(self, index: int) -> Path:
        return self.staging / KEPT_DIR / str(index)

    def begin(self) -> None:
        (self.staging / KEPT_DIR).mkdir(exist_ok=True)
        document = {
            "version": 1,
            "destination": str(self.destination),
            "files": [[relpath, had_old] for relpath, had_old in self.files],
            "dirs": self.dirs,
            "modes": [[relpath, mode] for relpath, mode in self.modes],
        }
        atomic_write(self.path, json.dumps(document).encode(), durable=True)
        self.begun = True
        # Again, and not best effort here: a journal whose rename a power cut could lose
        # would leave moved files that no later pull knows to put back.
        _fsync_dir(self.staging)

    def finish(self) -> None:
        os.unlink(self.path)
        self.begun = False
        with contextlib.suppress(OSError):
            _fsync_dir(self.staging)

    @classmethod
    def load(cls, staging: Path) -> _Journal:
        path = staging / JOURNAL_NAME
        try:
            with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), encoding="utf-8") as handle:
                document = json.load(handle)
            destination = Path(document["destination"])
            files = [(check_relative_path(r), bool(h)) for r, h in document["files"]]
            dirs = [str(d) for d in document["dirs"]]
            modes = [(check_relative_path(r), int(m) & 0o777) for r, m in document["modes"]]
        except (OSError, ValueError, KeyError, TypeError, UnsafePath) as exc:
            raise PackagingError(
                f"the journal of an interrupted pull, {path}, cannot be read ({exc}); the files it names may be half moved",
                hint=f"check the destination, then remove {staging}",
            ) from None
        if not destination.is_absolute():
            raise PackagingError(f"the journal of an interrupted pull, {path}, names no absolute destination")
        return cls(staging, destination, files=files, dirs=dirs, modes=modes, begun=True)

    def untrusted(self, scanned: Path, wanted: Path) -> str | None:
        """Why a journal read back after a kill must not be acted on, or None. Its files
        and modes name paths relative to its destination (checked at :meth:`load`); here:
        the destination is the pull's own (the same directory, not a symlink), and every
        directory to remove is that destination, below it, or one of its missing parents
        below the directory the staging directory is in (``scanned``): what a commit into
        ``wanted`` could have created, and nothing else."""
        if not _same_place(self.destination, wanted):
            return f"it names another destination, {self.destination}"
        if _is_symlink(self.destination) or _is_symlink(wanted):
            return f"the destination {wanted} is a symlink"
        for directory in self.dirs:
            path = Path(directory)
            if not path.is_absolute() or ".." in path.parts or str(path) != os.path.normpath(path):
                return f"it names a directory {directory[:120]!r} that is not a plain absolute path"
            if path == self.destination:
                continue
            if path.is_relative_to(self.destination):
                try:
                    check_relative_path(path.relative_to(self.destination).as_posix())
                except UnsafePath as exc:
                    return str(exc)
                continue
            if not (self.destination.is_relative_to(path) and path.is_relative_to(scanned) and path != scanned):
                return f"it names a directory outside the destination, {directory[:120]}"
        return None

    def roll_back(self) -> None:
        """Every old file back in its place, every new file and created directory gone; a
        no-op before :meth:`begin` and after :meth:`finish`. Raises PackagingError naming
        what could not be put back (the journal and the kept files then stay)."""
        if not self.begun:
            return
        problems: list[str] = []
        for relpath, mode in self.modes:
            with contextlib.suppress(OSError, UnsafePath):
                check_no_symlink_parents(self.destination, relpath)  # chmod follows a symlinked parent
                path = self.destination / relpath
                if stat.S_ISREG(os.lstat(path).st_mode):
                    os.chmod(path, mode)
        for index in reversed(range(len(self.files))):
            relpath, had_old = self.files[index]
            final = self.destination / relpath
            try:
                check_no_symlink_parents(self.destination, relpath)
                kept = self.kept(index)
                if had_old:
                    if os.path.lexists(kept):
                        if not stat.S_ISREG(os.lstat(kept).st_mode):
                            raise UnsafePath(f"the old copy {kept} is not a regular file")
                        os.replace(kept, final)
                elif self._moved_in(index, relpath):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(final)
            except (OSError, UnsafePath) as exc:
                problems.append(f"{relpath}: {getattr(exc, 'strerror', None) or exc}")
        for directory in reversed(self.dirs):
            with contextlib.suppress(OSError):
                os.rmdir(directory)  # only if empty: nothing else may have come to live there
        if problems:
            raise PackagingError(
                f"the pull into {self.destination} stopped halfway and {len(problems)} file(s) could not be put back: "
                f"{shown_paths(problems)}",
                hint=f"the old files are kept in {self.staging / KEPT_DIR}; the next pull into {self.destination} tries again",
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.begun = False

    def _moved_in(self, index: int, relpath: str) -> bool:
        """Whether the file now at ``relpath`` is the one this commit moved in (the place was
        empty before). Known in the process that moved it; after a kill, a staged file that
        is no longer in the staging tree was moved."""
        if self.moved is not None:
            return index in self.moved
        return not os.path.lexists(self.staging / "tree" / relpath)


def recover_interrupted_pulls(directory: str | os.PathLike[str], *, destination: str | os.PathLike[str] | None = None) -> int:
    """Undo the commits of pulls that were killed with their staging directory in
    ``directory`` and remove those staging directories. A staging directory whose lock is
    held belongs to a pull still running and is left alone, and so is one without a lock
    file (being created, or from an older ocimodel).

    A journal is acted on only if it can be trusted (docs/pull-commit.md): its staging
    directory was made by this user's pull (owned by the effective uid, no access for
    group or others, as ``mkdtemp`` makes it; the journal owned by the uid, not writable
    by others; neither a symlink), it names this pull's destination (the same directory,
    not a symlink), and every path it names stays there (:meth:`_Journal.untrusted`).
    Anything else may have been planted (by a model file, by another user in a shared
    directory): it is left alone and logged as a warning, never acted on.

    With ``destination`` other than ``directory`` (an ancestor, where a pull into a
    directory that did not exist yet staged), only the pulls into ``destination`` are
    undone: the rest of that ancestor is not this pull's business. Returns how many
    staging directories were cleaned up; raises PackagingError if a commit cannot be
    undone (the journal and the old files then stay for another try)."""
    here = Path(directory).absolute()
    wanted = Path(destination).absolute() if destination is not None else here
    own = wanted == here  # the destination itself: every staging directory here is ours to judge
    try:
        entries = [e for e in os.scandir(here) if e.name.startswith(STAGING_PREFIX) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return 0
    cleaned = 0
    for entry in entries:
        staging = Path(entry.path)
        try:
            fd = os.open(staging / LOCK_NAME, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live pull
            reason = _untrusted_staging(staging)
            journal = None
            if reason is None and os.path.lexists(staging / JOURNAL_NAME):
                try:
                    journal = _Journal.load(staging)
                except PackagingError as exc:
                    reason = exc.message
                else:
                    reason = journal.untrusted(here, wanted)
            if not own and (journal is None or not _same_place(journal.destination, wanted)):
                continue  # another pull's business (or nobody's): not even worth a warning
            if reason is not None:
                log.warning(
                    "warning: left %s alone, not undoing the interrupted pull it describes: %s; "
                    "if no pull of yours was killed there, remove it", staging, reason,
                )
                continue
            if journal is not None:
                journal.roll_back()
            shutil.rmtree(staging, ignore_errors=True)
            cleaned += 1
        finally:
            os.close(fd)
    return cleaned


def _untrusted_staging(staging: Path) -> str | None:
    """Why a staging directory (and its journal, if any) may not be this user's pull's."""
    uid = os.geteuid()
    try:
        st = os.lstat(staging)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
            return f"the directory is not one this user's pull made (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})"
        journal = staging / JOURNAL_NAME
        if os.path.lexists(journal):
            st = os.lstat(journal)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
                return f"its journal is not one this user's pull wrote (owner uid {st.st_uid}, mode {st.st_mode:o})"
    except OSError as exc:
        return f"it cannot be checked ({exc.strerror})"
    return None


def _same_place(a: Path, b: Path) -> bool:
    """Whether two paths are the same directory: the same device and inode when both
    exist, else the same path once symlinks are resolved."""
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _is_symlink(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def shown_paths(paths: list[str]) -> str:
    more = f" and {len(paths) - SHOWN_PATHS} more" if len(paths) > SHOWN_PATHS else ""
    return ", ".join(paths[:SHOWN_PATHS]) + more


def _missing_dirs(destination: Path, files: list[str], dirs: list[str]) -> list[str]:
    """The directories a commit creates (the destination and its missing parents, and those
    the model's paths need), parents first."""
    wanted = {destination}
    parent = destination.parent
    while not os.path.lexists(parent) and parent.parent != parent:
        wanted.add(parent)
        parent = parent.parent
    for relpath in files:
        parts = relpath.split("/")[:-1]
        wanted.update(destination.joinpath(*parts[:i]) for i in range(1, len(parts) + 1))
    for relpath in dirs:
        parts = relpath.split("/")
        wanted.update(destination.joinpath(*parts[:i]) for i in range(1, len(parts) + 1))
    missing = [d for d in wanted if not os.path.lexists(d)]
    return [str(d) for d in sorted(missing, key=lambda d: (len(d.parts), str(d)))]


def _make_dir(path: Path) -> None:
    try:
        os.mkdir(path)
    except OSError as exc:
        raise PackagingError(f"cannot create {path}: {exc.strerror}") from None


def _set_aside(final: Path, kept: Path) -> None:
    """Keep the old file at ``final`` as ``kept`` until the commit is done. A hard link
    leaves it in place meanwhile (a reader never finds the path missing); where links are
    refused (some file systems, protected_hardlinks) it is moved."""
    try:
        os.link(final, kept, follow_symlinks=False)
    except OSError:
        try:
            os.rename(final, kept)
        except OSError as exc:
            raise PackagingError(f"cannot set {final} aside: {exc.strerror}") from None


def _differs(final: Path, staged: Path) -> bool:
    """Whether a file already at ``final`` holds other content than ``staged``."""
    try:
        st = os.lstat(final)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    if not stat.S_ISREG(st.st_mode):
        return True
    try:
        return not filecmp.cmp(final, staged, shallow=False)
    except OSError:
        return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _layer_limits(limits: ExtractLimits, planned: PlannedFile) -> ExtractLimits:
    """A compressed layer may expand at most COMPRESSED_EXPANSION times its size (at least
    1 GiB): a bomb is stopped long before it fills the disk. An uncompressed tar cannot hold
    more content than its own size, so it needs no extra bound."""
    if (planned.packed or planned.archive) in (None, "none"):
        return limits
    bound = max(MIN_EXPANSION_BYTES, planned.descriptor.size * COMPRESSED_EXPANSION)
    return dataclasses.replace(limits, max_total_bytes=min(limits.max_total_bytes, bound))


def _check_not_staging_name(relpath: str) -> None:
    # Any component, not only the first: a model's `sub/.ocimodel-pull-x/journal.json`
    # would be a journal the next pull into `sub` finds (and must never be able to plant).
    if any(part.startswith(STAGING_PREFIX) for part in relpath.split("/")):
        raise UnsafePath(f"artifact file path {relpath[:120]!r} uses the name reserved for pull staging")


def _check_final_paths(files: list[str], dirs: list[str]) -> None:
    """The whole model at once: no file twice (after NFC + casefold), no file inside a file,
    no path that is a file in one layer and a directory in another."""
    for relpath in files + dirs:
        _check_not_staging_name(relpath)
    check_unique_paths(files)
    folded = {unicodedata.normalize("NFC", f).casefold(): f for f in files}
    for relpath in dirs:
        clash = folded.get(unicodedata.normalize("NFC", relpath).casefold())
        if clash is not None:
            raise UnsafePath(f"artifact names {clash[:120]!r} as a file and {relpath[:120]!r} as a directory")


def _open_staged(path: Path, buffering: int = -1):
    """Open a staging file for writing, truncating what an earlier try of the same blob left
    (the copy engine may start a blob over); never through a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "wb", buffering)


def _existing_ancestor(path: Path) -> Path:
    while not path.is_dir() and path.parent != path:
        path = path.parent
    return path


def _restore_mode(root: Path, planned: PlannedFile) -> None:
    """An unchanged file keeps its bytes but gets the artifact's mode back (mode-for-mode),
    never through a symlink. A file with other hard links (a blob cache entry, another
    pulled copy) is copied first: a mode is per inode, and the others keep theirs."""
    check_no_symlink_parents(root, planned.relpath)
    path = root / planned.relpath
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != planned.mode:
            if st.st_nlink > 1:
                _copy_over(path, path)
            os.chmod(path, planned.mode, follow_symlinks=False)
    except NotImplementedError:  # no lchmod on this platform: the lstat above was enough
        os.chmod(path, planned.mode)
    except OSError as exc:
        raise PackagingError(f"cannot set the mode of {path}: {exc.strerror}") from None


def _holds(path: Path, descriptor: Descriptor, cache: Callable[[], DigestCache] | None = None) -> bool:
    """True if ``path`` is a regular file (not a symlink) with exactly the descriptor's bytes.

    With a digest cache (``cache`` opens it), a file the cache knows by (device, inode,
    size, mtime_ns, ctime_ns) to hold this digest is not read again; the cache itself
    refuses an entry made within a moment of the file's last change (git's "racy" case).
    Any other file is hashed, and what was found is remembered for the next pull or push."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != descriptor.size:
        return False
    digests = cache() if cache is not None else None
    if digests is not None and digests.lookup(st) == descriptor.digest:
        return True
    algorithm = descriptor.digest.split(":", 1)[0]
    started = time.time()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "rb") as handle:
            opened = os.fstat(handle.fileno())
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                return False  # replaced since the lstat: not the file we looked at
            actual = f"{algorithm}:{hashlib.file_digest(handle, algorithm).hexdigest()}"
            after = os.fstat(handle.fileno())
    except (OSError, ValueError):
        return False
    # Remembered only if the file did not change while it was read, and only an entry the
    # cache would trust is worth its write (a file changed a moment ago, e.g. pulled just
    # now, is hashed again anyway); the cache holds sha256 digests only.
    settled = started - after.st_mtime_ns / 1e9 >= RACY_SECONDS
    if digests is not None and algorithm == "sha256" and same_file_state(st, after) and settled:
        digests.store(after, actual, started)
    return actual == descriptor.digest


def _copy_over(source: Path, target: Path) -> None:
    """Replace ``target`` by a copy of ``source`` (mode and times too), made in a new file
    beside ``target`` that is created exclusively under a fresh name (``mkstemp``), so no
    symlink or file already in the directory is written through."""
    with (
        atomic_file(target, prefix=STAGING_PREFIX) as out,
        open(os.open(source, os.O_RDONLY | os.O_NOFOLLOW), "rb", closefd=True) as src,
    ):
        shutil.copyfileobj(src, out.handle, WRITE_BUFFER_BYTES)
        out.handle.flush()  # before the times are copied: a later write would change them
        shutil.copystat(source, out.temp, follow_symlinks=False)


def _move(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: staging and destination on different filesystems
            raise PackagingError(f"cannot write {target}: {exc.strerror}") from None
        _copy_over(source, target)
