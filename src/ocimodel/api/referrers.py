"""Referrers: attach, discover (``referrers``), detach, delete, and export / import of an
artifact with its referrers (an air-gapped copy).

A referrer is a small manifest whose ``subject`` is a model (an evaluation, an SBOM, a
signature, a promotion record). These functions work the same on a registry with the
referrers API, on one without it (the fallback tag ``sha256-<hex>``), and on an OCI layout."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel

from ocimodel.api.common import DEFAULT_TAG, as_reference, bound, check_version_tag, open_store
from ocimodel.chunks import read_chunks
from ocimodel.errors import NotFound, UsageError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import new_hasher, validate_digest
from ocimodel.oci.models import Descriptor
from ocimodel.outputs import check_output, is_stdout
from ocimodel.targets import referrers as rf
from ocimodel.targets.copy import verified
from ocimodel.targets.layout import OciLayout
from ocimodel.targets.open import open_target
from ocimodel.targets.referrers import push_referrer
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.versiontags import is_guarded

# RFC 6838 type/subtype, with the +suffix and parameters media types use.
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}(;.{1,200})?$")
# An attached file is evidence (a report, an SBOM), not a model: bounded, read twice.
MAX_ATTACH_FILE_BYTES = 512 * 1024 * 1024
MAX_ANNOTATION_BYTES = 16 * 1024


class AttachResult(BaseModel):
    subject: str  # the model, by digest
    digest: str  # the referrer manifest
    reference: str  # the referrer, addressable by digest
    artifact_type: str
    size: int
    files: list[str]
    listed_by: str  # "referrers API", "fallback tag sha256-...", or "layout index"


class Referrer(BaseModel):
    digest: str
    media_type: str
    artifact_type: str | None
    size: int
    annotations: dict[str, str]
    referrers: list[Referrer] = []


class DiscoverResult(BaseModel):
    reference: str
    digest: str
    referrers: list[Referrer]
    ignored: list[str]  # listed for the subject, but their manifests do not name it

    def count(self) -> int:
        def total(nodes: list[Referrer]) -> int:
            return sum(1 + total(n.referrers) for n in nodes)

        return total(self.referrers)


class DetachResult(BaseModel):
    subject: str
    digest: str
    manifest_deleted: bool  # False where the registry refuses deletes (no longer listed, still stored)


def attach(
    connection: ConnectionOptions,
    reference: str,
    files: Sequence[str | os.PathLike[str]] = (),
    *,
    artifact_type: str,
    annotations: Mapping[str, str] | None = None,
    media_type: str | None = None,
) -> AttachResult:
    """Attach ``files`` to the artifact at ``reference`` as one referrer of ``artifact_type``.

    Each file becomes a layer of ``media_type`` (default: the artifact type) titled with
    its name; with no files the referrer carries only its annotations. The subject is
    resolved to a digest once, so a tag moving meanwhile cannot redirect the referrer."""
    _check_media_type(artifact_type, "artifact type")
    layer_type = _check_media_type(media_type or artifact_type, "media type")
    paths = _attach_files(files)
    extra = _check_annotations(annotations or {})
    ref = as_reference(reference)
    with open_store(connection, ref, for_write=True) as target:
        subject = target.resolve(ref.reference or DEFAULT_TAG)
        layers = [_push_file(target, path, layer_type) for path in paths]
        descriptor, _ = push_referrer(target, subject, artifact_type, layers, extra)
        listed_by = target.listed_by(subject.digest)
    return AttachResult(
        subject=str(ref.with_digest(subject.digest).with_tag(None)),
        digest=descriptor.digest,
        reference=str(ref.with_tag(None).with_digest(descriptor.digest)),
        artifact_type=artifact_type,
        size=descriptor.size,
        files=[p.name for p in paths],
        listed_by=listed_by,
    )


def referrers(
    connection: ConnectionOptions,
    reference: str,
    *,
    artifact_type: str | None = None,
    depth: int | None = None,
) -> DiscoverResult:
    """What refers to the artifact at ``reference``, and what refers to those, as a tree.

    Only referrers whose own manifest (fetched by digest, verified) names the subject are
    returned; anything else a listing holds is reported in ``ignored``. ``depth``: levels
    of referrers of referrers to follow (None: all, up to rf.MAX_REFERRER_DEPTH)."""
    if artifact_type is not None:
        _check_media_type(artifact_type, "artifact type")
    ref = as_reference(reference)
    with open_store(connection, ref) as target:
        subject = target.resolve(ref.reference or DEFAULT_TAG)
        tree = rf.walk(target, subject.digest, artifact_type=artifact_type,
                       depth=rf.MAX_REFERRER_DEPTH if depth is None else depth)
    return DiscoverResult(
        reference=str(ref),
        digest=subject.digest,
        referrers=[_node(n) for n in tree.nodes],
        ignored=tree.ignored,
    )


def detach(
    connection: ConnectionOptions,
    reference: str,
    referrer: str,
) -> DetachResult:
    """Remove the referrer with digest ``referrer`` from the artifact at ``reference``,
    together with what refers to it (a signature of a removed report would dangle)."""
    _check_digest_argument(referrer, "detach")
    ref = as_reference(reference)
    with open_store(connection, ref, for_write=True) as target:
        subject = target.resolve(ref.reference or DEFAULT_TAG)
        if all(d.digest != referrer for d in target.referrers(subject.digest)):
            raise NotFound(
                f"{referrer} is not a referrer of {ref}",
                hint=f"`ocimodel discover {ref}` lists its referrers",
            )
        deleted = rf.remove_tree(target, subject.digest, referrer)
    return DetachResult(subject=subject.digest, digest=referrer, manifest_deleted=deleted)


class DeleteResult(BaseModel):
    reference: str
    digest: str
    referrers_removed: list[str]
    tags_removed: list[str]


def delete(
    connection: ConnectionOptions,
    reference: str,
    *,
    force: bool = False,
) -> DeleteResult:
    """Delete the artifact at ``reference`` with its referrers and their fallback index
    tags, so nothing is left dangling.

    Registries delete manifests by digest, which removes every tag pointing at it: when
    tags other than the one named would go too, this refuses unless ``force``."""
    ref = as_reference(reference)
    with open_store(connection, ref, for_write=True) as target:
        root = target.resolve(ref.reference or DEFAULT_TAG)
        tags = _tags_pointing_at(target, root.digest)
        others = sorted(set(tags) - {ref.tag})
        if others and not force:
            raise UsageError(
                f"{root.digest} is also tagged {', '.join(others[:10])}: deleting it removes those tags too",
                hint="pass --force to delete it anyway, or move those tags first",
            )
        tree = rf.walk(target, root.digest)
        removed = [node.descriptor.digest for node in tree.flatten()]
        for node in reversed(tree.nodes):
            rf.remove_tree(target, root.digest, node.descriptor.digest)
        target.drop_fallback_index(root.digest)
        target.delete_manifest(root.digest)
    return DeleteResult(reference=str(ref), digest=root.digest, referrers_removed=removed, tags_removed=tags)


def _tags_pointing_at(target, digest: str) -> list[str]:
    found = []
    for tag in target.list_tags():
        if rf.is_fallback_tag(tag):
            continue  # fallback index tags are handled as referrers
        try:
            if target.resolve(tag).digest == digest:
                found.append(tag)
        except NotFound:
            continue  # deleted meanwhile
    return found


def _check_digest_argument(value: str, command: str) -> str:
    try:
        return validate_digest(value)
    except Exception:
        raise UsageError(f"{command} takes the referrer's digest (sha256:...), not {str(value)[:80]!r}") from None


# -- helpers ----------------------------------------------------------------------------


def _node(node: rf.ReferrerNode) -> Referrer:
    d = node.descriptor
    return Referrer(
        digest=d.digest,
        media_type=d.media_type,
        artifact_type=d.artifact_type,
        size=d.size,
        annotations=dict(d.annotations or {}),
        referrers=[_node(child) for child in node.children],
    )


def _check_media_type(value: str, what: str) -> str:
    if not isinstance(value, str) or not _MEDIA_TYPE.match(value):
        raise UsageError(
            f"invalid {what} {str(value)[:100]!r}: expected type/subtype, e.g. application/vnd.example.eval.v1+json"
        )
    return value


def _check_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    # A referrer's annotations are copied into the fallback index of its subject, which a
    # registry caps at 4 MiB for all referrers together: one large value must not fill it.
    if sum(len(str(k)) + len(str(v)) for k, v in annotations.items()) > MAX_ANNOTATION_BYTES:
        raise UsageError(
            f"annotations of a referrer are limited to {MAX_ANNOTATION_BYTES >> 10} KiB",
            hint="put large content in an attached file instead",
        )
    out: dict[str, str] = {}
    for key, value in annotations.items():
        if not isinstance(key, str) or not key or len(key) > 256 or any(c.isspace() or c == "=" for c in key):
            raise UsageError(f"invalid annotation key {str(key)[:80]!r}")
        if not isinstance(value, str):
            raise UsageError(f"annotation {key!r} must be a string")
        out[key] = value
    return out


def _attach_files(files: Sequence[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    paths = [Path(f) for f in files]
    names: set[str] = set()
    for path in paths:
        if not path.is_file():
            raise UsageError(f"cannot attach {path}: not a file")
        if path.stat().st_size > MAX_ATTACH_FILE_BYTES:
            raise UsageError(f"cannot attach {path}: over {MAX_ATTACH_FILE_BYTES >> 20} MiB; push large files as a model")
        if path.name in names:
            raise UsageError(f"two attached files are named {path.name!r}: each file's name titles its layer")
        names.add(path.name)
    return paths


def _push_file(target, path: Path, media_type: str) -> Descriptor:
    hasher = new_hasher()
    size = 0
    with open(path, "rb") as handle:
        for chunk in read_chunks(handle):
            hasher.update(chunk)
            size += len(chunk)
    descriptor = Descriptor(
        mediaType=media_type,
        digest=f"sha256:{hasher.hexdigest()}",
        size=size,
        annotations={mt.ANNOTATION_TITLE: path.name},
    )
    if not target.has_blob(descriptor):
        with open(path, "rb") as handle:
            # verified(): a file changed since it was hashed is refused, not stored misnamed.
            target.push_blob(descriptor, verified(read_chunks(handle), descriptor))
    return descriptor


# -- export / import: an air-gapped copy ---------------------------------------------------


class ExportResult(BaseModel):
    reference: str
    digest: str
    path: str
    size: int  # bytes of the archive
    blobs: int
    tag: str | None  # the model's tag inside the archive (skopeo: oci-archive:PATH:TAG)
    referrers: list[str]


class ImportResult(BaseModel):
    archive: str
    destination: str
    digest: str
    referrers: list[str]
    blobs_copied: int
    blobs_skipped: int
    bytes_copied: int


def export(
    connection: ConnectionOptions,
    reference: str,
    output: str | os.PathLike[str],
    *,
    with_referrers: bool = True,
    compression: str = "none",
    overwrite: bool = False,
    progress=None,
) -> ExportResult:
    """Write the artifact at ``reference`` (and, by default, everything that refers to it)
    to ``output``: one deterministic tar of an OCI layout that skopeo's ``oci-archive:``
    reads, for carrying to an air-gapped site. ``compression`` is "none" or "gzip".

    ``output`` is a new regular file, or an existing one with ``overwrite``; a symlink,
    directory, fifo, socket or device there is refused (:class:`UnsafeOutput`) and left
    alone. ``"-"`` writes the tar to standard output (never a terminal)."""
    from ocimodel.targets.archive import write_layout_archive

    if compression not in ("none", "gzip"):
        raise UsageError(f"compression must be none or gzip, not {compression!r}")
    ref = as_reference(reference)
    to_stdout = is_stdout(output)
    # Refused before anything is fetched: a download can take an hour.
    check_output(output, replace=overwrite, example="model.tar", terminal_ok=False)
    out = Path(output)
    if not to_stdout:
        out.parent.mkdir(parents=True, exist_ok=True)
    tag = ref.tag if ref.digest is None else None
    registry_options = bound(connection, ref)
    concurrency = registry_options.concurrency
    # The layout is built beside the output: same disk, and gone whatever happens. For
    # standard output, in the working directory if it is writable (a model may not fit in
    # a memory-backed /tmp), else in the system's temp directory.
    staging_dir = out.parent if not to_stdout else (Path.cwd() if os.access(".", os.W_OK) else None)
    with tempfile.TemporaryDirectory(prefix=".ocimodel-export-", dir=staging_dir) as tmp:
        staging = OciLayout(Path(tmp) / "layout", create=True)
        with open_target(ref, registry_options) as source:
            root = source.resolve(ref.reference or DEFAULT_TAG)
            copied = _copy(source, staging, root, tag or (DEFAULT_TAG if ref.reference is None else None),
                           with_referrers, concurrency, progress, registry_options)
        info = write_layout_archive(staging.path, output, compression=compression, replace=overwrite)
    return ExportResult(
        reference=str(ref), digest=root.digest, path=str(info.path), size=info.size, blobs=info.blob_count,
        tag=tag or (DEFAULT_TAG if ref.reference is None else None), referrers=[d.digest for d in copied.referrers],
    )


def import_(
    connection: ConnectionOptions,
    archive: str | os.PathLike[str],
    destination: str,
    *,
    force: bool = False,
    progress=None,
) -> ImportResult:
    """Copy the model in an ``export`` archive, with its referrers, into ``destination``
    (a registry repository or an OCI layout; the tag defaults to the archive's).

    Every blob is checked against its digest while the archive is unpacked, and every
    manifest before the copy starts: nothing reaches the destination from an archive that
    does not verify whole."""
    from ocimodel.targets.archive import extract_layout_archive

    path = Path(archive)
    if not path.is_file():
        raise UsageError(f"no archive at {path}", hint="give the file `ocimodel export` wrote")
    dst_ref = as_reference(destination)
    if dst_ref.digest is not None:
        raise UsageError(f"import destination takes a tag, not a digest: {destination}")
    registry_options = bound(connection, dst_ref)
    concurrency = registry_options.concurrency
    # Unpacked beside the archive (same disk, usually roomy) unless that is read-only (a
    # DVD, a locked USB stick at the air-gapped site): then in the system's temp directory.
    staging_dir = path.parent if os.access(path.parent, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix=".ocimodel-import-", dir=staging_dir) as tmp:
        staging = OciLayout(extract_layout_archive(path, Path(tmp) / "layout"))
        root, archive_tag = _archive_root(staging, path)
        tag = dst_ref.tag or archive_tag
        with open_target(dst_ref, registry_options, for_write=True) as target:
            if tag is not None:
                check_version_tag(target, tag, root.digest, force)
            guarded = is_guarded(tag, force)  # a version is set last, by check-and-set
            copied = _copy(staging, target, root, None if guarded else tag, True, concurrency, progress,
                           registry_options, check_source=True)
            if guarded:
                target.tag(root, tag, immutable=True)
    transfer = copied.transfer
    return ImportResult(
        archive=str(path),
        destination=str(dst_ref.with_tag(tag) if tag else dst_ref.with_digest(root.digest)),
        digest=root.digest,
        referrers=[d.digest for d in copied.referrers],
        blobs_copied=len(transfer.copied),
        blobs_skipped=len(transfer.skipped) + len(transfer.mounted),
        bytes_copied=transfer.bytes_copied,
    )


def _copy(source, destination, root, tag, with_referrers, concurrency, progress, registry_options, check_source=False) -> rf.ArtifactCopy:
    from ocimodel.targets.copy import copy_graph

    if with_referrers:
        return rf.copy_with_referrers(
            source, destination, root, tag=tag, check_source=check_source, concurrency=concurrency,
            progress=progress, retry=registry_options.retry,
        )
    result = copy_graph(source, destination, root, tag=tag, concurrency=concurrency, progress=progress, retry=registry_options.retry)
    return rf.ArtifactCopy(transfer=result, referrers=[], ignored=[])


def _archive_root(layout: OciLayout, path: Path) -> tuple[Descriptor, str | None]:
    """The model an archive carries: its one tag, or its one entry that refers to nothing."""
    tags = layout.list_tags()
    if len(tags) == 1:
        return layout.resolve(tags[0]), tags[0]
    if len(tags) > 1:
        raise UsageError(f"{path} holds several tagged artifacts ({', '.join(tags[:5])}); import takes one")
    roots = [d for d in layout.entries() if layout.referrers_subject(d) is None]
    if len(roots) != 1:
        raise UsageError(f"{path} holds {len(roots)} untagged artifacts that refer to nothing; expected one")
    return roots[0], None
