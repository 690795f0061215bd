"""A model directory -> a ModelPack manifest, config and one raw layer per file.

The result, :class:`PackagedModel`, is a read-only target, so pushing a directory is just
the copy engine copying from it. Packaging is deterministic: files in sorted order, modes
normalised to 0644/0755 as git does, owner 0, mtime the epoch; the only time recorded is
the creation time the caller asks for. The same directory gives the same manifest digest
on any machine."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ocimodel.chunks import read_chunks
from ocimodel.errors import NotFound, PackagingError, UnsafePath, UsageError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import MAX_MANIFEST_BYTES, Descriptor, Manifest
from ocimodel.packaging.classify import (
    FileKind,
    FormatInfo,
    classify_file,
    detect_format,
    parse_kind,
)
from ocimodel.packaging.digestcache import DigestCache, same_file_state
from ocimodel.packaging.modelpack import ModelConfig, ModelDescriptor, ModelFS, ModelSettings
from ocimodel.packaging.paths import check_relative_path, check_unique_paths
from ocimodel.targets.copy import run_parallel

HASH_WORKERS = 4
# Never part of a model: version control and interpreter caches.
DEFAULT_EXCLUDES = (".git", ".hg", ".svn", "__pycache__", ".DS_Store", ".ipynb_checkpoints")
EPOCH = "1970-01-01T00:00:00Z"
TAR_TYPEFLAG_REGULAR = ord("0")
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


@dataclass(frozen=True)
class PackageOptions:
    """What a user says about a model at push time. Every field is optional."""

    name: str | None = None
    version: str | None = None
    description: str | None = None
    title: str | None = None
    licenses: Sequence[str] = ()
    authors: Sequence[str] = ()
    source: str | None = None
    revision: str | None = None
    created: datetime | None = None
    # glob (matched against the relative POSIX path) -> kind, first match wins
    kinds: Mapping[str, FileKind] = field(default_factory=dict)
    exclude: Sequence[str] = ()
    # False: a symlink whose target lies outside the model directory is refused instead of
    # uploading the file it points at.
    follow_symlinks: bool = True
    annotations: Mapping[str, str] = field(default_factory=dict)
    datasets_url: Sequence[str] = ()
    format: str | None = None  # overrides the format detected from the files


@dataclass(frozen=True)
class ModelFile:
    relpath: str
    path: Path
    size: int
    mode: int
    digest: str
    kind: FileKind
    kind_overridden: bool

    def layer(self) -> Descriptor:
        # Asked for several times per file and push (the manifest, the blobs, the result):
        # built once (a frozen model; kept beside the fields, so equality is unchanged).
        built = self.__dict__.get("_layer")
        if built is None:
            built = self._build_layer()
            object.__setattr__(self, "_layer", built)
        return built

    def _build_layer(self) -> Descriptor:
        metadata = {
            "name": self.relpath.rsplit("/", 1)[-1],
            "mode": self.mode,
            "uid": 0,
            "gid": 0,
            "size": self.size,
            "mtime": EPOCH,
            "typeflag": TAR_TYPEFLAG_REGULAR,
        }
        return Descriptor(
            mediaType=mt.model_layer(self.kind.value, "raw"),
            digest=self.digest,
            size=self.size,
            annotations={
                mt.ANNOTATION_TITLE: self.relpath,
                mt.ANNOTATION_FILEPATH: self.relpath,
                mt.ANNOTATION_FILE_METADATA: json.dumps(metadata, separators=(",", ":")),
                mt.ANNOTATION_MEDIATYPE_UNTESTED: "false" if self.kind_overridden else "true",
            },
        )


class PackagedModel:
    """A packaged directory as a read-only target: manifest and config in memory, layers
    streamed from the files."""

    def __init__(self, root: Path, files: list[ModelFile], manifest: bytes, config: bytes) -> None:
        self.root = root
        self.name = f"directory {root}"
        self.files = files
        self.manifest_bytes = manifest
        self.config_bytes = config
        self.descriptor = Descriptor.for_bytes(mt.OCI_MANIFEST, manifest)
        self.config_descriptor = Descriptor.for_bytes(mt.MODEL_CONFIG, config)
        self._paths = {f.digest: f.path for f in files}

    @property
    def manifest(self) -> Manifest:
        return Manifest.model_validate_json(self.manifest_bytes)

    def resolve(self, reference: str) -> Descriptor:
        return self.descriptor

    def fetch_manifest(self, descriptor: Descriptor) -> bytes:
        if descriptor.digest != self.descriptor.digest:
            raise NotFound(f"{descriptor.digest} is not the manifest of {self.root}")
        return self.manifest_bytes

    @contextmanager
    def open_blob(self, descriptor: Descriptor) -> Iterator[Iterator[bytes]]:
        if descriptor.digest == self.config_descriptor.digest:
            yield iter([self.config_bytes])
            return
        path = self._paths.get(descriptor.digest)
        if path is None:
            raise NotFound(f"{descriptor.digest} is not a file of {self.root}")
        try:
            handle = open(path, "rb")
        except OSError as exc:
            raise PackagingError(f"cannot read {path}: {exc.strerror}") from None
        with handle:
            yield read_chunks(handle)


@dataclass
class ModelSource:
    """A scanned model: its files and their stats, not hashed yet."""

    root: Path
    entries: list[tuple[str, Path, os.stat_result]]
    options: PackageOptions
    _format: FormatInfo | None = None
    # relpath -> (kind, overridden), for the kind overrides they were found with: telling a
    # file's kind may read its first bytes, and a push asks for every file's kind several
    # times (the size check of the manifest, the format, the manifest itself).
    _kinds: dict[str, tuple[FileKind, bool]] = field(default_factory=dict)
    _kinds_for: Mapping[str, FileKind] | None = None

    def kind_of(self, relpath: str, path: Path) -> tuple[FileKind, bool]:
        if self._kinds_for is not self.options.kinds:
            self._kinds, self._kinds_for = {}, self.options.kinds
        found = self._kinds.get(relpath)
        if found is None:
            found = self._kinds[relpath] = _kind_for(relpath, path, self.options.kinds)
        return found

    @property
    def format(self) -> FormatInfo:
        """The model format, from the weight files' headers (read once)."""
        if self._format is None:
            kinds = {rel: self.kind_of(rel, path)[0] for rel, path, _ in self.entries}
            weights = [rel for rel, kind in kinds.items() if kind == FileKind.WEIGHT]
            self._format = detect_format(self.root, weights or list(kinds))
        return self._format


def scan_model(root: str | os.PathLike[str], options: PackageOptions | None = None) -> ModelSource:
    """The files of a model directory (or a single model file), checked, not yet read."""
    options = options or PackageOptions()
    root = Path(root)
    if not root.exists():
        raise PackagingError(f"model directory {root} does not exist", hint="check the path (push takes a model directory or file)")
    if root.is_dir():
        entries = scan_directory(root, options.exclude, follow_symlinks=options.follow_symlinks)
    elif root.is_file():
        # A single-file model (one .gguf, one .onnx) is a directory of one file.
        entries = [(root.name, root, root.stat())]
        root = root.parent
    else:
        raise PackagingError(f"{root} is neither a directory nor a regular file", hint="push takes a model directory or file")
    if not entries:
        raise PackagingError(f"model directory {root} has no files to push", hint="check the path and any --exclude patterns")
    source = ModelSource(root, entries, options)
    # Every digest has the same length: with placeholders the manifest has its final size,
    # so an oversized model is refused before a byte is uploaded.
    package_files(source, {rel: PLACEHOLDER_DIGEST for rel, _, _ in entries})
    return source


def hash_files(source: ModelSource, cache: DigestCache | None = None) -> dict[str, str]:
    """Digests of the model's files: from the cache where the file is unchanged, else
    hashed (in parallel: hashlib releases the GIL) and remembered."""
    digests: dict[str, str] = {}
    missing = []
    for relpath, path, st in source.entries:
        cached = cache.lookup(st) if cache else None
        if cached:
            digests[relpath] = cached
        else:
            missing.append((relpath, path, st))

    def hash_one(entry) -> None:
        relpath, path, _ = entry
        started = time.time()
        digest, stable = _hash_file(path)
        if cache and stable is not None:
            cache.store(stable, digest, started)
        with lock:
            digests[relpath] = digest

    lock = threading.Lock()
    run_parallel(missing, hash_one, HASH_WORKERS, threading.Event())
    return digests


def package_files(source: ModelSource, digests: Mapping[str, str]) -> PackagedModel:
    """The manifest and config of a scanned model whose file digests are known."""
    options = source.options
    files = []
    for relpath, path, st in source.entries:
        kind, overridden = source.kind_of(relpath, path)
        mode = 0o755 if st.st_mode & 0o111 else 0o644
        files.append(ModelFile(relpath, path, st.st_size, mode, digests[relpath], kind, overridden))
    config_bytes = build_config(files, options, source.format).to_json()
    manifest = build_manifest(files, config_bytes, options, source.format.formats)
    if len(manifest) > MAX_MANIFEST_BYTES:
        # Registries refuse it, and so would our own pull: say so before uploading anything.
        raise PackagingError(
            f"{len(files)} files make a {len(manifest)}-byte manifest, over the {MAX_MANIFEST_BYTES}-byte limit",
            hint="pack the many small files into an archive inside the model directory",
        )
    return PackagedModel(source.root, files, manifest, config_bytes)


def package_directory(
    root: str | os.PathLike[str], options: PackageOptions | None = None, cache: DigestCache | None = None
) -> PackagedModel:
    """Package a model directory (or a single model file) deterministically."""
    source = scan_model(root, options)
    return package_files(source, hash_files(source, cache))


def build_config(files: list[ModelFile], options: PackageOptions, fmt) -> ModelConfig:
    return ModelConfig(
        descriptor=ModelDescriptor(
            name=options.name or None,
            version=options.version,
            description=options.description,
            title=options.title,
            licenses=list(options.licenses) or None,
            authors=list(options.authors) or None,
            sourceURL=options.source,
            revision=options.revision,
            createdAt=_utc(options.created) if options.created else None,
            datasetsURL=list(options.datasets_url) or None,
        ),
        config=ModelSettings(format=options.format or fmt.format, precision=fmt.precision, paramSize=fmt.param_size),
        modelfs=ModelFS(diffIds=[f.digest for f in files]),
    )


def build_manifest(files: list[ModelFile], config_bytes: bytes, options: PackageOptions, formats: Sequence[str] = ()) -> bytes:
    annotations = dict(options.annotations)
    # ModelPack's config.format holds one format (the main one); with several, all of them
    # go in the card's formats annotation, unless the card already says.
    main = options.format or (formats[0] if formats else None)
    every = list(dict.fromkeys([main, *formats])) if main else []
    if len(every) > 1 and mt.ANNOTATION_FORMATS not in annotations:
        annotations[mt.ANNOTATION_FORMATS] = json.dumps(every, separators=(",", ":"))
    standard = {
        mt.ANNOTATION_TITLE: options.title or options.name,
        mt.ANNOTATION_VERSION: options.version,
        mt.ANNOTATION_DESCRIPTION: options.description,
        # "MIT OR Apache-2.0" next to another license must stay one term of the AND.
        mt.ANNOTATION_LICENSES: " AND ".join(f"({x})" if " " in x else x for x in options.licenses) or None,
        mt.ANNOTATION_AUTHORS: ", ".join(options.authors) or None,
        mt.ANNOTATION_SOURCE: options.source,
        mt.ANNOTATION_REVISION: options.revision,
        mt.ANNOTATION_CREATED: _rfc3339(options.created) if options.created else None,
    }
    annotations.update({k: v for k, v in standard.items() if v})
    manifest = Manifest(
        schemaVersion=2,
        mediaType=mt.OCI_MANIFEST,
        artifactType=mt.MODEL_ARTIFACT,
        config=Descriptor.for_bytes(mt.MODEL_CONFIG, config_bytes),
        layers=[f.layer() for f in files],
        annotations=dict(sorted(annotations.items())) or None,
    )
    return manifest.to_json()


def scan_directory(
    root: Path, exclude: Sequence[str] = (), *, follow_symlinks: bool = True
) -> list[tuple[str, Path, os.stat_result]]:
    """Regular files under ``root`` as (relative POSIX path, path, stat), sorted by path.

    Symlinks to files are followed by default (Hugging Face snapshots are made of them, and
    their targets live outside the snapshot directory), so what is uploaded is the file the
    link points at, wherever it is. ``follow_symlinks=False`` refuses a link whose target
    lies outside ``root``: a link planted in a model directory cannot then carry a file
    such as ``~/.ssh/id_rsa`` into a registry. Symlinked directories, devices, fifos and
    sockets are refused rather than silently skipped."""
    found: list[tuple[str, Path, os.stat_result]] = []
    real_root = os.path.realpath(root)

    def walk(directory: Path, prefix: str) -> None:
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise PackagingError(f"cannot read directory {directory}: {exc.strerror}") from None
        for name in names:
            relpath = f"{prefix}{name}"
            if name in DEFAULT_EXCLUDES or _excluded(relpath, exclude):
                continue
            path = directory / name
            try:
                lst = os.lstat(path)
                st = os.stat(path) if stat.S_ISLNK(lst.st_mode) else lst
            except FileNotFoundError:
                raise PackagingError(f"{path} is a broken symlink") from None
            except OSError as exc:
                raise PackagingError(f"cannot read {path}: {exc.strerror}") from None
            if stat.S_ISDIR(st.st_mode):
                if stat.S_ISLNK(lst.st_mode):
                    raise PackagingError(
                        f"{path} is a symlink to a directory", hint="copy it into the model directory, or --exclude it"
                    )
                walk(path, relpath + "/")
            elif stat.S_ISREG(st.st_mode):
                if not follow_symlinks and stat.S_ISLNK(lst.st_mode) and not _inside(os.path.realpath(path), real_root):
                    raise PackagingError(
                        f"{path} is a symlink to {os.path.realpath(path)}, outside the model directory",
                        hint="copy the file into the model directory, --exclude it, or push without --no-follow-symlinks",
                    )
                found.append((relpath, path, st))
            else:
                raise PackagingError(f"{path} is not a regular file", hint="--exclude it")

    walk(root, "")
    # Pull refuses these paths (docs/threats.md 9); refuse them here so we never write a model
    # that cannot be pulled back.
    try:
        for relpath, path, _ in found:
            try:
                relpath.encode("utf-8")
            except UnicodeEncodeError:
                raise PackagingError(
                    f"file name {os.fsencode(path)!r} is not valid UTF-8", hint="rename it, or --exclude it"
                ) from None
            check_relative_path(relpath)
        check_unique_paths(relpath for relpath, _, _ in found)
    except UnsafePath as exc:
        raise PackagingError(f"cannot package {root}: {exc.message}", hint="rename the file, or --exclude it") from None
    return found


def parse_kind_overrides(values: Mapping[str, FileKind | str] | Sequence[str]) -> dict[str, FileKind]:
    """``PATTERN=KIND`` strings (or a {pattern: kind} mapping) -> {pattern: kind}."""
    if isinstance(values, Mapping):
        return {pattern: parse_kind(str(kind)) for pattern, kind in values.items()}
    overrides: dict[str, FileKind] = {}
    for value in values:
        pattern, sep, kind = value.partition("=")
        if not sep or not pattern:
            raise UsageError(f"--kind expects PATTERN=KIND, got {value!r}", hint="e.g. --kind 'extra/*.bin=dataset'")
        overrides[pattern] = parse_kind(kind)
    return overrides


def parse_created(value: datetime | str | None) -> datetime | None:
    """A creation time: a datetime, ``"now"``, or an ISO 8601 string (no zone means UTC)."""
    if value is None or isinstance(value, datetime):
        return value
    if value == "now":
        return datetime.now(timezone.utc).replace(microsecond=0)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"creation time must be 'now' or an ISO 8601 time, got {value!r}") from None
    return _utc(moment)


def _kind_for(relpath: str, path: Path, overrides: Mapping[str, FileKind]) -> tuple[FileKind, bool]:
    for pattern, kind in overrides.items():
        if fnmatch.fnmatchcase(relpath, pattern):
            return kind, True
    return classify_file(relpath, path), False


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _excluded(relpath: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(relpath, p) or fnmatch.fnmatchcase(relpath.rsplit("/", 1)[-1], p) for p in patterns)


def _hash_file(path: Path) -> tuple[str, os.stat_result | None]:
    """(digest, stat) of a file read once; the stat is None if the file changed while it
    was read (then the digest is not worth remembering)."""
    try:
        with open(path, "rb") as handle:
            before = os.fstat(handle.fileno())
            digest = "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()
            after = os.fstat(handle.fileno())
    except OSError as exc:
        raise PackagingError(f"cannot read {path}: {exc.strerror}") from None
    return digest, (before if same_file_state(before, after) else None)


def _utc(moment: datetime) -> datetime:
    """A time without a zone is taken as UTC, so both the config and the annotation carry
    a valid RFC 3339 time (the ModelPack schema requires an offset)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _rfc3339(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")
