"""Moving models: push, pull, inspect, copy, tag, list_tags, catalog, login / logout,
and the local blob cache.

Each operation takes the connection settings first (what :class:`ocimodel.Client` holds),
then references as strings (``localhost:5000/team/model:1.0`` or
``oci:./store:model:1.0``), does its work through the layers beneath (packaging, targets,
the copy engine) and returns a typed result. Users call them as methods of a Client, or
through the module-level functions of :mod:`ocimodel.api.functions`."""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ocimodel.api.common import (
    DEFAULT_TAG,
    FileEntry,
    as_reference,
    bound,
    check_version_tag,
    client_retries,
    file_entry,
    model_manifest,
    open_store,
    read_config,
)
from ocimodel.errors import (
    AuthenticationError,
    InvalidManifest,
    InvalidReference,
    NotAModel,
    NotFound,
    PermissionDenied,
    RegistryError,
    UsageError,
)
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.kind import artifact_kind, is_variant_index
from ocimodel.oci.models import Descriptor, Index, Manifest, loads_strict, parse_manifest
from ocimodel.oci.reference import LayoutReference, Reference, RegistryReference
from ocimodel.packaging.blobcache import BlobCache, blob_cache_wanted
from ocimodel.packaging.classify import FileKind
from ocimodel.packaging.digestcache import DigestCache
from ocimodel.packaging.package import (
    ModelSource,
    PackageOptions,
    hash_files,
    package_files,
    parse_created,
    parse_kind_overrides,
    scan_model,
)
from ocimodel.packaging.selection import select_files, string_list
from ocimodel.targets.copy import (
    Graph,
    Progress,
    TransferResult,
    copy_blobs,
    copy_graph,
    read_graph,
    upload_unhashed,
    verified,
)
from ocimodel.targets.locations import BlobLocations
from ocimodel.targets.open import open_target
from ocimodel.targets.referrers import copy_with_referrers, is_fallback_tag
from ocimodel.targets.remote import RemoteRepository
from ocimodel.transport import credentials as stored_credentials
from ocimodel.transport.auth import Credentials
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.versiontags import is_guarded, version_taken

if TYPE_CHECKING:
    from ocimodel.metadata.card import ModelCard
    from ocimodel.metadata.sources import MetadataFlags


class PushResult(BaseModel):
    reference: str
    digest: str
    tag: str | None
    files: list[FileEntry]
    uploaded: list[str]
    bytes_uploaded: int
    mounted: list[str] = []  # linked from another repository of the registry: no bytes moved
    bytes_mounted: int = 0
    bytes_skipped: int
    retries: int = 0  # requests retried and blob transfers started over after a fault
    lineage: list[dict[str, str]] = []  # lineage links left on base models: {parent, status}


class PullResult(BaseModel):
    reference: str
    digest: str
    destination: str
    files: list[FileEntry]
    bytes_downloaded: int
    files_unchanged: int
    files_not_selected: int = 0  # layers a selective pull (include / kinds) left out
    files_from_cache: int = 0  # linked from the local blob cache instead of downloaded
    retries: int = 0  # requests retried, downloads resumed, blob transfers started over
    files_replaced: list[str] = []  # files already in the destination with other content, overwritten
    # A variant pulled from a variant index (docs/variants.md): the index's digest and the
    # labels of the variant (``digest`` is then the variant's).
    index_digest: str | None = None
    variant: dict[str, str] = {}


class CopyResult(BaseModel):
    source: str
    destination: str
    digest: str
    blobs_copied: int
    blobs_skipped: int
    blobs_mounted: int  # linked from the source repository on the same registry, no bytes moved
    bytes_copied: int
    retries: int = 0  # requests retried, downloads resumed, blob transfers started over
    referrers_copied: list[str] = []  # digests of referrers copied (with_referrers=True)
    referrers_ignored: list[str] = []  # listed at the source but not referring to it


class ModelInfo(BaseModel):
    reference: str
    digest: str
    media_type: str
    artifact_type: str | None
    size: int
    annotations: dict[str, str]
    files: list[FileEntry]
    total_size: int
    manifest: dict[str, Any]
    config: dict[str, Any] | None
    # What the artifact is (see ocimodel.oci.kind): model, modelkit, files, image,
    # index or artifact; a sentence saying so; whether it is a model at all.
    kind: str = "model"
    kind_description: str = ""
    is_model: bool = True
    # An index's entries: digest, media_type, size, artifact_type, platform (os/arch[/variant]);
    # of a variant index also labels, model_size (bytes of its files), files, formats.
    manifests: list[dict[str, Any]] = []
    # The model card read from the ModelPack config and the manifest annotations (JSON form
    # of ocimodel.metadata.card.ModelCard, empty fields left out), and what could not be read.
    card: dict[str, Any] = {}
    card_problems: list[str] = []
    # ModelPack config fields that are not part of the card.
    name: str | None = None
    formats: list[str] = []
    param_size: str | None = None
    precision: str | None = None


def push(
    connection: ConnectionOptions,
    path: str | os.PathLike[str],
    reference: str,
    *,
    name: str | None = None,
    version: str | None = None,
    description: str | None = None,
    title: str | None = None,
    licenses: Sequence[str] = (),
    authors: Sequence[str] = (),
    source: str | None = None,
    revision: str | None = None,
    created: datetime | str | None = None,
    kinds: Mapping[str, FileKind | str] | Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    follow_symlinks: bool = True,
    annotations: Mapping[str, str] | None = None,
    metadata: ModelCard | MetadataFlags | Mapping[str, Any] | None = None,
    metadata_file: str | os.PathLike[str] | None = None,
    source_dir: str | os.PathLike[str] | None = None,
    detect_git: bool = True,
    record_environment: bool = False,
    force: bool = False,
    link_parents: bool = True,
    progress: Progress | None = None,
    scan: bool = False,
    fail_on: str = "high",
    allow_unsafe: bool = False,
    allow: Sequence[str] = (),
    allow_file: str | os.PathLike[str] | None = None,
) -> PushResult:
    """Package the model directory ``path`` as a ModelPack artifact and push it to ``reference``.

    ``created`` is a datetime, ``"now"`` or an ISO 8601 string (omitted: no time is
    recorded, so the push is reproducible). ``kinds`` maps globs to layer kinds, as a
    mapping or as ``"GLOB=KIND"`` strings. Symlinks in the directory are followed and the
    files they point at are uploaded; ``follow_symlinks=False`` refuses links that lead
    out of the directory. Returns the manifest digest and what was
    uploaded; files the destination already had are not sent again.

    The model card (metrics, datasets, base models...) comes from ``metadata`` (a
    ModelCard, a mapping, or MetadataFlags strings), over an ``ocimodel.yaml`` /
    ``ocimodel.json`` beside the model (or ``metadata_file``), over what is detected: the
    git checkout of ``source_dir`` (default: the model's) unless ``detect_git`` is off, and
    Python package versions when ``record_environment``. The keyword arguments above
    (``name``, ``licenses``...) win over all of them. A version tag that already holds a
    different model is refused unless ``force`` (``latest`` and aliases move freely). With
    ``link_parents``, each base model in a registry or layout gets a lineage link back to
    this one (best effort: failures are reported in ``lineage``, not raised).

    ``scan``: scan the files first (ocimodel.api.scan) and raise ScanFailed, before
    anything is uploaded, when something at or above ``fail_on`` is found; with
    ``allow_unsafe`` push anyway and record the override in the manifest annotation
    ``dev.ocimodel.scan.override``. ``allow`` / ``allow_file``: as for :func:`ocimodel.scan`."""
    ref = as_reference(reference)
    if ref.digest is not None:
        raise UsageError(f"push needs a tag, not a digest: {reference}", hint="e.g. registry/team/model:1.0")
    tag = ref.tag or DEFAULT_TAG
    # Here, not at the top: pull, inspect and copy never need the model-card models (~20 ms
    # of start-up for every command); lineage only when the card names base models.
    from ocimodel.metadata.encoding import encode_card
    from ocimodel.metadata.sources import MetadataFlags, collect_card, merge_cards, parse_flags

    card = merge_cards(
        collect_card(path, metadata, card_file=metadata_file, source_dir=source_dir,
                     detect_git=detect_git, detect_env=record_environment),
        parse_flags(MetadataFlags(
            name=name, version=version, description=description, licenses=string_list(licenses, "licenses"),
            authors=string_list(authors, "authors"), source=source, revision=revision,
            created=_aware(parse_created(created)),
        )),
    )
    registry_options = bound(connection, ref)
    concurrency = registry_options.concurrency
    if card.base_models:
        from ocimodel.api.lineage import link_to_parents, pin_base_digests

        card = pin_base_digests(card, registry_options)
    encoded = encode_card(card)
    described = encoded.descriptor
    user_annotations = dict(annotations or {})
    clashing = sorted(set(user_annotations) & set(encoded.annotations))
    if clashing:
        raise UsageError(f"annotation {clashing[0]} is set by the model card; give it as metadata instead")
    package_options = PackageOptions(
        name=described.get("name"), version=described.get("version"), description=described.get("description"),
        title=title, licenses=tuple(described.get("licenses", ())), authors=tuple(described.get("authors", ())),
        source=described.get("sourceURL"), revision=described.get("revision"),
        created=card.created,
        datasets_url=tuple(described.get("datasetsURL", ())), format=encoded.config.get("format"),
        kinds=parse_kind_overrides(kinds or ()),
        exclude=(*string_list(exclude, "exclude"), *_layout_inside(ref, path)),
        follow_symlinks=follow_symlinks,
        annotations={**user_annotations, **encoded.annotations},
    )
    source = scan_model(path, package_options)
    if scan:
        import dataclasses

        from ocimodel.api.scan import push_gate

        # What push uploads: a symlinked file's target (push follows links).
        files = [(rel, Path(os.path.realpath(p))) for rel, p, _ in source.entries]
        _, override = push_gate(files, str(path), fail_on=fail_on, allow=allow, allow_file=allow_file, allow_unsafe=allow_unsafe)
        if override:
            source.options = dataclasses.replace(source.options, annotations={**source.options.annotations, **override})
    cache = DigestCache()
    locations = BlobLocations() if isinstance(ref, RegistryReference) else None
    try:
        with open_target(ref, registry_options, for_write=True) as target:
            remote = isinstance(target, RemoteRepository)
            if remote:
                target.locations = locations  # mounts from where blobs were seen, settled versions
            digests, result = _digests_for_push(source, target, cache, concurrency, progress, registry_options)
            model = package_files(source, digests)
            guarded = is_guarded(tag, force)
            streamed = {d.digest for d in result.copied}
            blobs = _unique([model.config_descriptor, *(f.layer() for f in model.files)])
            if remote and not streamed:
                # Every digest known before any upload: the manifest first (docs/push-fast-paths.md).
                stored, tagged = _manifest_first(target, model.descriptor, tag, force)
            else:
                check_version_tag(target, tag, model.descriptor.digest, force)  # fails fast, before uploading
                stored, tagged = False, False
            if not stored:
                graph = Graph(
                    root=model.descriptor,
                    manifests=[(model.descriptor, model.manifest_bytes)],
                    blobs=[b for b in blobs if b.digest not in streamed],
                )
                rest = copy_graph(
                    model, target, model.descriptor, tag=None if guarded else tag, concurrency=concurrency,
                    progress=progress, graph=graph, retry=registry_options.retry,
                )
                result.copied += rest.copied
                result.skipped += rest.skipped
                result.mounted += rest.mounted
                result.restarts += rest.restarts
            else:
                result.skipped += blobs  # the registry holds the manifest, so every blob it names
                if not tagged and not guarded:
                    target.push_manifest(model.descriptor, model.manifest_bytes, tag)
            if guarded and not tagged:  # a version: check-and-set, as the last step (docs/version-tags.md)
                if remote:
                    target.keep_manifest(model.descriptor, model.manifest_bytes)
                target.tag(model.descriptor, tag, immutable=True)
            if remote and locations is not None:
                where = (target.client.registry, target.repository)
                if not locations.has_all(*where, [b.digest for b in blobs]):
                    locations.record(*where, blobs)
            retries = result.restarts + client_retries(target)
    finally:
        cache.close()
        if locations is not None:
            locations.flush()
    lineage = link_to_parents(card, ref.with_tag(None).with_digest(model.descriptor.digest), model.descriptor,
                              registry_options) if link_parents and card.base_models else []
    return PushResult(
        reference=str(ref.with_tag(tag)),
        digest=model.descriptor.digest,
        tag=tag,
        files=[
            FileEntry(path=f.relpath, digest=f.digest, size=f.size, media_type=f.layer().media_type, kind=f.kind.value)
            for f in model.files
        ],
        uploaded=[d.digest for d in result.copied],
        mounted=[d.digest for d in result.mounted],
        bytes_mounted=sum(d.size for d in result.mounted),
        bytes_uploaded=result.bytes_copied,
        bytes_skipped=result.bytes_skipped,
        retries=retries,
        lineage=lineage,
    )


def _aware(moment: datetime | None) -> datetime | None:
    """A time without a zone is UTC (as `--created` always read it)."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def pull(
    connection: ConnectionOptions,
    reference: str,
    destination: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    verify: Callable[[Any, Descriptor, bytes], None] | None = None,
    include: Sequence[str] = (),
    kinds: Sequence[str] = (),
    blob_cache: bool | None = None,
    keep_local: bool = False,
    variant: Sequence[str] | Mapping[str, str] = (),
    scan: bool = False,
    fail_on: str = "high",
    allow: Sequence[str] = (),
    allow_file: str | os.PathLike[str] | None = None,
) -> PullResult:
    """Download the model at ``reference`` into the directory ``destination``.

    Every path is checked before anything is downloaded, every byte is verified against its
    digest, and files are moved into place only when all of them have been verified.
    ``verify(source, root, manifest_bytes)`` runs after the tag is resolved to a digest and
    before a byte of the model is downloaded (signature checks: it raises to refuse).

    ``include`` (globs on the file path, its name or a leading directory: ``tokenizer*``,
    ``*.json``) and ``kinds`` (``weight``, ``weight.config``, ``doc``, ``code``,
    ``dataset``) pull only the files that match: any of the patterns and any of the kinds
    (both, when both are given); other layers are not downloaded, and files already in
    ``destination`` that were not selected are left alone. A selection that matches
    nothing raises NothingSelected, naming the files.

    Files in ``destination`` whose content differs from the model's are replaced and
    listed in ``files_replaced``; with ``keep_local=True`` they are refused instead
    (LocalFilesDiffer, before anything is downloaded or changed). The files move into
    place all or nothing: an error or a KeyboardInterrupt during the move puts the old
    files back (docs/pull-commit.md).

    ``blob_cache`` (default: ``OCIMODEL_BLOB_CACHE=1``) links files from the local blob
    cache instead of downloading them, after checking them against their digests, and
    keeps downloaded files there; see :mod:`ocimodel.packaging.blobcache`.

    ``reference`` may name a variant index (docs/variants.md): ``variant`` (``["quant=q4"]``,
    ``"quant=q4,device=cuda"`` items, or a mapping) picks the one variant whose labels
    include all of them, and only its files are downloaded (``verify`` sees that variant).
    An index of one variant needs no choice; a choice that matches none or several, or none
    given among several, raises VariantNotChosen listing the variants.

    ``scan``: scan the files once they are downloaded and verified, before they are moved
    into place; ScanFailed when something at or above ``fail_on`` is found, and nothing
    is written to ``destination``. ``allow`` / ``allow_file``: as for :func:`ocimodel.scan`."""
    # Here: `import ocimodel.api.transfer` (every command) does not load the variant code.
    from ocimodel.api.variants import choose_variant

    ref = as_reference(reference)
    registry_options = bound(connection, ref)
    concurrency = registry_options.concurrency
    with open_target(ref, registry_options) as source:
        root = source.resolve(ref.reference or DEFAULT_TAG)
        data = source.fetch_manifest(root)
        index_digest = root.digest
        root, data, labels = choose_variant(source, root, data, variant, str(ref))
        _refuse_non_model(data, root, str(ref))
        manifest = model_manifest(data, root, str(ref))
        if verify is not None:
            verify(source, root, data)
        # A KitOps ModelKit's paths are in its Kitfile (the config, read verified).
        # Imported here: a push never reads a Kitfile (its models, tarfile: start-up).
        from ocimodel.packaging.kitfile import is_modelkit, plan_modelkit
        from ocimodel.packaging.unpack import DirectoryWriter, plan_files

        planned = plan_modelkit(manifest, read_config(source, manifest.config)) if is_modelkit(manifest) else plan_files(manifest)
        files = select_files(planned, include, kinds, shown=str(ref))
        result = TransferResult(descriptor=root)
        cache = BlobCache() if blob_cache_wanted(blob_cache) else None
        with DirectoryWriter(destination, files, blob_cache=cache, keep_local=keep_local) as writer:
            copy_blobs(source, writer, _unique([f.descriptor for f in files]), result, concurrency=concurrency, progress=progress, retry=registry_options.retry)
            if scan:
                from ocimodel.api.scan import refused, scan_local_files

                scanned = scan_local_files(f"{ref}@{root.digest}", writer.staged_files(), fail_on, allow, allow_file)
                if scanned.failed:
                    raise refused(scanned, f"pull of {ref} refused", f"nothing was written to {destination}; "
                                  "`ocimodel scan REF` lists every finding")
            writer.commit()
            _record_locations(source, [manifest.config, *manifest.layers])  # where a push may mount them from
            unchanged = len(writer.unchanged)
            from_cache = len(writer.from_cache)
            replaced = writer.replaced
        retries = result.restarts + client_retries(source)
    return PullResult(
        reference=str(ref),
        digest=root.digest,
        destination=str(destination),
        files=[file_entry(f.relpath, f.descriptor, f.kind) for f in files],
        bytes_downloaded=result.bytes_copied,
        files_unchanged=unchanged,
        files_not_selected=len(planned) - len(files),
        files_from_cache=from_cache,
        retries=retries,
        files_replaced=replaced,
        index_digest=index_digest if labels is not None else None,
        variant=labels or {},
    )


def inspect(
    connection: ConnectionOptions,
    reference: str,
    *,
    read_layers: bool = False,
) -> ModelInfo:
    """Manifest, config and file list of the artifact at ``reference``, without its files.

    ``read_layers``: download each ModelPack tar layer that declares no path (as modctl
    writes them: the names are only in the tar headers), check its digest, and list it by
    the name of its first member; such a layer is listed with an empty path otherwise."""
    ref = as_reference(reference)
    with open_store(connection, ref) as source:
        root = source.resolve(ref.reference or DEFAULT_TAG)
        data = source.fetch_manifest(root)
        parsed = parse_manifest(data, root.media_type)
        document = loads_strict(data, "manifest")
        config = None
        files: list[FileEntry] = []
        if isinstance(parsed, Manifest):
            from ocimodel.packaging.unpack import layer_path  # a push writes no files: start-up

            config = read_config(source, parsed.config)
            files = [file_entry(layer_path(layer) or _read_name(source, layer, read_layers), layer) for layer in parsed.layers]
        entries = [_index_entry(d) for d in parsed.manifests] if isinstance(parsed, Index) else []
        if is_variant_index(parsed):  # each variant's labels, size and formats (docs/variants.md)
            from ocimodel.api.variants import describe as describe_variants

            entries = [{**entry, **more} for entry, more in zip(entries, describe_variants(source, data))]
    kind = artifact_kind(parsed)
    if kind.kind == "modelkit":  # names, kinds and the card from the Kitfile
        from ocimodel.metadata.kitcard import modelkit_info
        planned, card_fields = modelkit_info(parsed, config)
        files = [file_entry(p.relpath, p.descriptor, p.kind) for p in planned] or files
    else:
        card_fields = _card_fields(config if kind.kind == "model" else None, parsed.annotations or {})
    return ModelInfo(
        reference=str(ref),
        digest=root.digest,
        media_type=root.media_type,
        artifact_type=parsed.artifact_type or (parsed.config.media_type if isinstance(parsed, Manifest) else None),
        size=root.size,
        annotations=dict(parsed.annotations or {}),
        files=files,
        total_size=sum(f.size for f in files),
        manifest=document,
        config=config,
        kind=kind.kind,
        kind_description=kind.description,
        is_model=kind.kind in ("model", "modelkit", "variants"),
        manifests=entries,
        **card_fields,
    )


def _read_name(source, layer: Descriptor, wanted: bool) -> str:
    """inspect --read-layers: a tar layer's name from its headers, after its digest is checked."""
    # tarfile: pull and inspect only
    from ocimodel.packaging.unpack import archive_names, unnamed_archive

    if not wanted or unnamed_archive(layer) is None:
        return ""
    with source.open_blob(layer) as chunks:
        names = archive_names(verified(chunks, layer), layer)
    return names[0] if names else ""


def _refuse_non_model(data: bytes, root: Descriptor, shown: str) -> None:
    """Pull writes a model directory: a container image, an index or an artifact of an
    unknown type is refused before anything is fetched, saying what it is."""
    kind = artifact_kind(parse_manifest(data, root.media_type))
    if not kind.pullable:
        raise NotAModel(f"{shown} is {kind.description}, not a model", hint=f"ocimodel pull needs {kind.needed}")


def _index_entry(descriptor: Descriptor) -> dict[str, Any]:
    entry: dict[str, Any] = {"digest": descriptor.digest, "media_type": descriptor.media_type, "size": descriptor.size}
    if descriptor.artifact_type:
        entry["artifact_type"] = descriptor.artifact_type
    if descriptor.platform:
        p = descriptor.platform
        entry["platform"] = "/".join(x for x in (p.os, p.architecture, p.variant) if x)
    if descriptor.annotations:
        entry["annotations"] = dict(descriptor.annotations)
    return entry


def _card_fields(config: Mapping[str, Any] | None, annotations: Mapping[str, str]) -> dict[str, Any]:
    """The card and the other ModelPack config fields, for ModelInfo: the card from the
    config where the spec has a field and from annotations otherwise (read_card), filled in
    from the OCI standard annotations another tool may have used instead."""
    # Imported here: inspect reads the card, pull must not load the card code.
    from ocimodel.metadata.encoding import formats_of, read_card
    decoded = read_card(config, annotations)
    card = decoded.card.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    standard = {"version": mt.ANNOTATION_VERSION, "description": mt.ANNOTATION_DESCRIPTION}
    for key, annotation in standard.items():
        if key not in card and annotations.get(annotation):
            card[key] = annotations[annotation]
    for key, annotation in (("licenses", mt.ANNOTATION_LICENSES), ("authors", mt.ANNOTATION_AUTHORS)):
        if key not in card and annotations.get(annotation):
            card[key] = [annotations[annotation]]
    config = config or {}
    descriptor = config.get("descriptor") if isinstance(config.get("descriptor"), dict) else {}
    settings = config.get("config") if isinstance(config.get("config"), dict) else {}
    formats = formats_of(decoded.card)

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) and value else None

    return {
        "card": card,
        "card_problems": decoded.problems,
        "name": text(annotations.get(mt.ANNOTATION_TITLE)) or text(descriptor.get("name")),
        "formats": formats,
        "param_size": text(settings.get("paramSize")),
        "precision": text(settings.get("precision")),
    }


def copy(
    connection: ConnectionOptions,
    source: str,
    destination: str,
    *,
    progress: Progress | None = None,
    with_referrers: bool = False,
    force: bool = False,
) -> CopyResult:
    """Copy an artifact (any manifest or index and all it names) between two stores,
    keeping its digest. The destination tag defaults to the source's. ``with_referrers``
    also copies what refers to it (signatures, attestations...), recursively, after it.

    ``credentials`` (and OCIMODEL_USERNAME / OCIMODEL_PASSWORD) belong to the destination
    registry (the source's, when the destination is a layout): they are never sent to
    the other registry, which uses docker's config (``ocimodel login``) or goes anonymous."""
    src_ref = as_reference(source)
    dst_ref = as_reference(destination)
    if dst_ref.digest is not None:
        raise UsageError(f"copy destination takes a tag, not a digest: {destination}")
    tag = dst_ref.tag or src_ref.tag or (None if src_ref.digest else DEFAULT_TAG)
    # Checked before any byte moves: a layout tag (`name:1.0`) is not a valid registry tag.
    try:
        shown_destination = dst_ref.with_tag(tag) if tag else dst_ref
    except InvalidReference as exc:
        raise InvalidReference(
            f"the source tag {tag!r} is not a valid tag for {destination}: {exc.message}",
            hint=f"name the destination tag, e.g. {destination}:1.0",
        ) from None
    registry_options = bound(connection, dst_ref, src_ref)
    concurrency = registry_options.concurrency
    with open_target(src_ref, registry_options) as src, open_target(dst_ref, registry_options, for_write=True) as dst:
        root = src.resolve(src_ref.reference or DEFAULT_TAG)
        if tag is not None:
            check_version_tag(dst, tag, root.digest, force)
        guarded = is_guarded(tag, force)
        copy_tag = None if guarded else tag  # a version is set last, by check-and-set
        graph = read_graph(src, root)
        referrers_copied: list[str] = []
        referrers_ignored: list[str] = []
        if with_referrers:
            copied = copy_with_referrers(
                src, dst, root, tag=copy_tag, graph=graph, concurrency=concurrency, progress=progress, retry=registry_options.retry
            )
            result = copied.transfer
            referrers_copied = [d.digest for d in copied.referrers]
            referrers_ignored = copied.ignored
        else:
            result = copy_graph(src, dst, root, tag=copy_tag, concurrency=concurrency, progress=progress, graph=graph, retry=registry_options.retry)
        if guarded:
            dst.tag(root, tag, immutable=True)
        for store in (src, dst):  # both hold the blobs now: a later push may mount from either
            _record_locations(store, graph.blobs)
        retries = result.restarts + client_retries(src, dst)
    return CopyResult(
        source=str(src_ref),
        destination=str(shown_destination if tag else dst_ref.with_digest(root.digest)),
        digest=root.digest,
        blobs_copied=len(result.copied),
        blobs_skipped=len(result.skipped),
        blobs_mounted=len(result.mounted),
        bytes_copied=result.bytes_copied,
        retries=retries,
        referrers_copied=referrers_copied,
        referrers_ignored=referrers_ignored,
    )


def tag(
    connection: ConnectionOptions,
    reference: str,
    new_tag: str,
    *,
    force: bool = False,
) -> str:
    """Point ``new_tag`` in the same repository at the manifest ``reference`` names.
    Returns the manifest digest. A version tag holding another model is not moved
    unless ``force`` (versions are immutable; aliases move)."""
    ref = as_reference(reference)
    target_ref = ref.with_digest(None).with_tag(new_tag)  # validates the tag for this store
    with open_store(connection, ref) as target:
        root = target.resolve(ref.reference or DEFAULT_TAG)
        check_version_tag(target, target_ref.tag, root.digest, force)
        target.tag(root, target_ref.tag, immutable=is_guarded(target_ref.tag, force))
    return root.digest


def list_tags(
    connection: ConnectionOptions,
    repository: str,
    *,
    all_tags: bool = False,
    missing_ok: bool = False,
) -> list[str]:
    """Tags of a repository (``registry/team/model``) or an OCI layout (``oci:./store``).

    The ``sha256-<hex>`` tags that index referrers on registries without the referrers
    API are left out unless ``all_tags``. A repository the registry does not know raises
    :class:`NotFound` (a typo must not look like an empty repository), or gives an empty
    list with ``missing_ok``; one that exists without tags gives an empty list."""
    ref = as_reference(repository)
    with open_store(connection, ref) as target:
        remote = isinstance(target, RemoteRepository)
        tags = target.list_tags(missing_ok=missing_ok) if remote else target.list_tags()
    return tags if all_tags else [t for t in tags if not is_fallback_tag(t)]


def catalog(
    connection: ConnectionOptions,
    registry: str,
) -> list[str]:
    """Repository names of a registry (``localhost:5000``), where the registry allows it."""
    try:
        RegistryReference(registry, "x")  # validates host[:port]
    except InvalidReference:
        raise InvalidReference(f"invalid registry {registry!r}: expected host[:port], e.g. localhost:5000") from None
    with connection.bound_to(registry).client_for(registry) as client:
        return client.catalog(page_size=1000)


# -- helpers ----------------------------------------------------------------------------


def _digests_for_push(source, target, cache, concurrency, progress, options) -> tuple[dict[str, str], TransferResult]:
    """Digests of every file of the model, reading each file at most once.

    Unchanged files come from the cache. Into a new repository or an empty layout (where
    nothing can be skipped) the other files are uploaded while they are hashed: one read
    instead of two. Anywhere else they are hashed here first, so that the copy engine can
    skip what the destination already holds (a second machine, a fresh CI checkout)."""
    digests: dict[str, str] = {}
    unknown: list[tuple[str, Path, os.stat_result]] = []
    for relpath, path, st in source.entries:
        found = cache.lookup_entry(st)
        if found is not None and found[1]:
            digests[relpath] = found[0]
        else:
            unknown.append((relpath, path, st))  # new, or seen a moment after a change
    result = TransferResult()
    if not unknown:
        return digests, result
    if target.list_tags():
        digests.update(hash_files(ModelSource(source.root, unknown, source.options), cache))
        return digests, result
    # Into a new repository, a file the size of a blob recorded on this registry (pulled or
    # pushed elsewhere) is hashed first all the same: if it is that blob, it is mounted.
    locations = target.locations if isinstance(target, RemoteRepository) else None
    sizes = locations.sizes(target.client.registry) if locations is not None else set()
    mountable = [entry for entry in unknown if entry[2].st_size in sizes]
    if mountable:
        digests.update(hash_files(ModelSource(source.root, mountable, source.options), cache))
        unknown = [entry for entry in unknown if entry[2].st_size not in sizes]
        if not unknown:
            return digests, result
    started = time.time()
    streamed = upload_unhashed(
        target, [(rel, path, st.st_size) for rel, path, st in unknown], result,
        concurrency=concurrency, progress=progress, retry=options.retry,
    )
    for relpath, (digest, stat) in streamed.items():
        digests[relpath] = digest
        if stat is not None:
            cache.store(stat, digest, started)
    return digests, result


def _manifest_first(target: RemoteRepository, descriptor: Descriptor, tag: str, force: bool) -> tuple[bool, bool]:
    """Before any blob is looked at: (the registry holds the manifest, the tag needs no
    write). One GET of the tag decides a re-push of an unchanged model: it holds our
    manifest, and it is an alias, or a version whose check-and-set this user saw settle on
    it. Otherwise one HEAD of the manifest says whether the blobs must be visited. A
    version holding another model fails here, before anything is uploaded (as
    check_version_tag does)."""
    digest = descriptor.digest
    guarded = is_guarded(tag, force)
    try:
        holder: str | None = target.resolve(tag).digest  # GET: the digest of the bytes, no header trusted
    except NotFound:
        holder = None
    except InvalidManifest:
        if guarded:
            raise
        holder = None  # an alias on something unreadable (over 4 MiB): not ours, and it moves
    except RegistryError as exc:
        if exc.status != 500:
            raise
        holder = None  # a racer rewriting the tag (docs/registry-facts.md): the check-and-set decides
    if holder == digest:
        return True, not guarded or target.settled_version(tag, digest)
    if holder is not None and guarded:
        raise version_taken(f"{target.name}:{tag}", holder, digest, stored=False)
    return target.has_manifest(descriptor), False


def _record_locations(target, descriptors: Sequence[Descriptor]) -> None:
    """Remember that a registry repository holds these blobs (a pull read them there, a
    copy read or wrote them), so that a push of them to another repository of that
    registry mounts them. Best effort: the record never fails a command
    (targets/locations.py)."""
    if not isinstance(target, RemoteRepository):
        return
    locations = target.locations or BlobLocations()
    where = (target.client.registry, target.repository)
    if not locations.has_all(*where, [d.digest for d in descriptors]):
        locations.record(*where, descriptors)
        locations.flush()


def _layout_inside(ref: Reference, model: str | os.PathLike[str]) -> tuple[str, ...]:
    """An OCI layout written inside the model directory must not become part of the model."""
    if not isinstance(ref, LayoutReference):
        return ()
    try:
        inside = Path(ref.path).resolve().relative_to(Path(model).resolve())
    except ValueError:
        return ()
    return (glob.escape(inside.as_posix()),) if inside.parts else ()  # a literal path, not a pattern


def _unique(descriptors) -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}
    for descriptor in descriptors:
        seen.setdefault(descriptor.digest, descriptor)
    return list(seen.values())


__all__ = [
    "BlobCacheInfo", "BlobCachePruned", "CopyResult", "FileEntry", "LoginResult", "LogoutResult", "ModelInfo",
    "PullResult", "PushResult", "blob_cache_info", "catalog", "copy", "inspect", "list_tags", "login", "logout",
    "prune_blob_cache", "pull", "push", "tag",
]


# -- credentials ------------------------------------------------------------------------------


class LoginResult(BaseModel):
    registry: str
    username: str
    stored_in: str  # "credential helper 'NAME'" or the docker config file's path
    helper: str | None
    verified: bool  # the registry was asked first (it accepted them, or asks for none)


class LogoutResult(BaseModel):
    registry: str
    removed: bool
    removed_from: str | None
    helper: str | None


class BlobCacheInfo(BaseModel):
    path: str
    entries: int
    bytes: int
    entries_in_use: int  # shared with a pulled file: removing them frees no disk
    bytes_not_in_use: int  # what `prune` frees


class BlobCachePruned(BaseModel):
    path: str
    removed: int
    bytes_freed: int


def blob_cache_info() -> BlobCacheInfo:
    """What the local blob cache holds (see :func:`pull`'s ``blob_cache``)."""
    cache = BlobCache()
    entries = [entry for _, entry in cache.entries()]
    return BlobCacheInfo(
        path=str(cache.root), entries=len(entries), bytes=sum(e.size for e in entries),
        entries_in_use=sum(e.in_use for e in entries), bytes_not_in_use=sum(e.size for e in entries if not e.in_use),
    )


def prune_blob_cache(*, everything: bool = False) -> BlobCachePruned:
    """Remove the blob cache entries no pulled file shares (their disk is freed), or all
    of them with ``everything`` (pulled files are never touched: they keep their bytes)."""
    cache = BlobCache()
    removed = cache.prune(everything=everything)
    # Only an entry with no other link frees its disk when removed.
    freed = sum(e.size for e in removed if not e.in_use)
    return BlobCachePruned(path=str(cache.root), removed=len(removed), bytes_freed=freed)


def login(
    connection: ConnectionOptions,
    registry: str,
    username: str,
    password: str,
    *,
    verify: bool = True,
) -> LoginResult:
    """Store ``username`` / ``password`` for ``registry`` (``ghcr.io``, ``localhost:5000``,
    ``docker.io``) where docker would: the credential helper the docker config names for it
    (``credHelpers``, else ``credsStore``), else ``auths`` of ``$DOCKER_CONFIG/config.json``
    (``~/.docker/config.json``), mode 0600. Every later call finds them there, as do
    docker, oras, crane and skopeo.

    With ``verify`` the registry is asked first (``GET /v2/`` and, for token auth, a token),
    so a mistyped password raises AuthenticationError and nothing is stored."""
    host = _registry_host(registry)
    if not username or ":" in username or not username.isprintable():
        raise UsageError("login needs a username without ':' or control characters")
    if not password:
        raise UsageError("login needs a password (or token)")
    if verify:
        asked = connection.with_overrides(credentials=Credentials(username, password)).bound_to(registry)
        try:
            with asked.client_for(host) as client:
                client.ping()
        except (AuthenticationError, PermissionDenied) as exc:
            raise AuthenticationError(
                f"login to {host} failed: {exc.message.removeprefix('ping: ')}",
                status=exc.status, code=exc.code,
                hint="check the username and password (or token); nothing was stored",
            ) from None
    where = stored_credentials.store(host, username, password)
    return LoginResult(registry=host, username=username, stored_in=str(where), helper=where.helper, verified=verify)


def logout(registry: str) -> LogoutResult:
    """Remove the stored credentials for ``registry``: from its credential helper, and any
    entry for it in the docker config's ``auths``."""
    host = _registry_host(registry)
    where = stored_credentials.erase(host)
    return LogoutResult(
        registry=host, removed=where is not None,
        removed_from=str(where) if where is not None else None,
        helper=where.helper if where is not None else None,
    )


def _registry_host(registry: str) -> str:
    """``host[:port]`` from what a user typed (``https://ghcr.io/`` works; Docker Hub's
    names become ``docker.io``), validated."""
    host = stored_credentials.normalize_registry(registry) if isinstance(registry, str) else ""
    try:
        RegistryReference(host, "x")  # validates host[:port]
    except InvalidReference:
        raise InvalidReference(
            f"invalid registry {registry!r}: expected host[:port], e.g. ghcr.io or localhost:5000"
        ) from None
    return host
