"""A manifest's layers -> files in a directory, safely.

:func:`plan_files` checks every path before a byte is downloaded. :class:`DirectoryWriter`
is a write-only target for the copy engine: verified blobs land in a staging directory
beside the destination, and only when every blob has arrived and been verified (the
manifest "push" at the end of a copy) are the files moved into place. On any failure the
staging directory is removed and the destination is untouched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ocimodel.errors import NotAModel, PackagingError, UnsafePath
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Descriptor, Manifest
from ocimodel.packaging.paths import check_no_symlink_parents, check_relative_path, check_unique_paths

# ORAS marks a tar+gzip directory layer with this annotation.
ORAS_UNPACK = "io.deis.oras.content.unpack"
DEFAULT_FILE_MODE = 0o644


@dataclass(frozen=True)
class PlannedFile:
    relpath: str
    descriptor: Descriptor
    mode: int


def layer_path(layer: Descriptor) -> str | None:
    """The file path a layer carries: ModelPack filepath (current or legacy), else title."""
    for key in (mt.ANNOTATION_FILEPATH, mt.LEGACY_ANNOTATION_FILEPATH, mt.ANNOTATION_TITLE):
        value = layer.annotation(key)
        if value is not None:
            return value
    return None


def plan_files(manifest: Manifest) -> list[PlannedFile]:
    """The files a manifest describes, every path checked; raises before anything is fetched."""
    planned: list[PlannedFile] = []
    for layer in manifest.layers:
        name = layer_path(layer)
        if name is None:
            raise NotAModel(
                f"layer {layer.digest} has no file name annotation ({mt.ANNOTATION_TITLE})",
                hint="ocimodel pulls ModelPack models and ORAS-style artifacts whose layers carry titles",
            )
        parsed = mt.parse_model_layer(layer.media_type)
        packed = (parsed is not None and parsed[1] != "raw") or layer.annotation(ORAS_UNPACK) == "true"
        if packed:
            raise NotAModel(
                f"layer {name[:120]!r} is an archive ({layer.media_type}); unpacking archive layers is not supported yet",
                hint="ocimodel writes and reads one raw layer per file",
            )
        planned.append(PlannedFile(check_relative_path(name), layer, _mode_of(layer)))
    if not planned:
        raise NotAModel("the artifact has no files")
    check_unique_paths(p.relpath for p in planned)
    return planned


def _mode_of(layer: Descriptor) -> int:
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
    """Write side of a pull. Use as a context manager: leaving it with an error cleans up."""

    def __init__(self, destination: str | os.PathLike[str], files: list[PlannedFile]) -> None:
        self.destination = Path(destination)
        self.name = f"directory {self.destination}"
        self.files = files
        self._by_digest: dict[str, list[PlannedFile]] = {}
        for planned in files:
            self._by_digest.setdefault(planned.descriptor.digest, []).append(planned)
        if self.destination.exists() and not self.destination.is_dir():
            raise PackagingError(f"destination {self.destination} exists and is not a directory")
        for planned in files:
            check_no_symlink_parents(self.destination, planned.relpath)
        parent = self.destination.absolute().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._staging = Path(tempfile.mkdtemp(prefix=".ocimodel-pull-", dir=parent))
        except OSError as exc:
            raise PackagingError(f"cannot write next to {self.destination}: {exc.strerror}") from None
        self._staged: list[PlannedFile] = []
        self.unchanged: list[PlannedFile] = []
        self.committed = False

    def __enter__(self) -> DirectoryWriter:
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)

    def has_blob(self, descriptor: Descriptor) -> bool:
        targets = self._by_digest.get(descriptor.digest)
        if targets is None:
            return True  # not a file of the model (the config): nothing to write
        if all(_holds(self.destination / p.relpath, descriptor) for p in targets):
            self.unchanged.extend(targets)
            return True
        return False

    def push_blob(self, descriptor: Descriptor, chunks: Iterable[bytes]) -> None:
        targets = self._by_digest.get(descriptor.digest)
        if targets is None:
            for _ in chunks:  # still verified by the engine, then dropped
                pass
            return
        first = self._staging / targets[0].relpath
        first.parent.mkdir(parents=True, exist_ok=True)
        with open(first, "xb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        for other in targets[1:]:
            path = self._staging / other.relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(first, path)
        self._staged.extend(targets)

    def has_manifest(self, descriptor: Descriptor) -> bool:
        return False

    def push_manifest(self, descriptor: Descriptor, data: bytes, tag: str | None = None) -> None:
        """Every blob is in and verified: move the files into place."""
        self.destination.mkdir(parents=True, exist_ok=True)
        for planned in self._staged:
            staged = self._staging / planned.relpath
            final = self.destination / planned.relpath
            # Checked again now: the destination may have changed during the download.
            check_no_symlink_parents(self.destination, planned.relpath)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.is_dir() and not final.is_symlink():
                raise UnsafePath(f"destination {final} is a directory; cannot write a file there")
            os.chmod(staged, planned.mode)
            _move(staged, final)
        self.committed = True


def _holds(path: Path, descriptor: Descriptor) -> bool:
    """True if ``path`` is a regular file (not a symlink) with exactly the descriptor's bytes."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != descriptor.size:
        return False
    try:
        with open(path, "rb") as handle:
            actual = hashlib.file_digest(handle, descriptor.digest.split(":", 1)[0]).hexdigest()
    except (OSError, ValueError):
        return False
    return f"{descriptor.digest.split(':', 1)[0]}:{actual}" == descriptor.digest


def _move(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: staging and destination on different filesystems
            raise PackagingError(f"cannot write {target}: {exc.strerror}") from None
        tmp = target.with_name(f".{target.name}.ocimodel-tmp")
        shutil.copy2(source, tmp)
        os.replace(tmp, target)
