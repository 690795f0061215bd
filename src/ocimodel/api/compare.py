"""Comparing and finding models by what their manifests and configs say: :func:`diff`
between two versions, :func:`search` over a registry (or a layout) with predicates on the
model card. Neither reads a byte of weights: a manifest and a small config per version.

``search`` keeps the manifests and configs it reads in a local cache keyed by digest
(``settings.cache_dir()/manifests``), checked
against the digest when read back. Tags are resolved afresh on every search (a HEAD per
tag): what a tag names is never cached, so a moved tag is seen at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, computed_field

from ocimodel.api.common import (
    DEFAULT_TAG,
    MAX_CONFIG_BYTES,
    FileEntry,
    as_reference,
    bound,
    file_entry,
    model_manifest,
    read_config,
)
from ocimodel.errors import (
    AuthenticationError,
    IntegrityError,
    InvalidManifest,
    InvalidReference,
    NotAModel,
    NotFound,
    PermissionDenied,
    UsageError,
)
from ocimodel.metadata.card import ModelCard, metric_value
from ocimodel.metadata.diff import card_deltas
from ocimodel.metadata.encoding import CARD_ANNOTATIONS, read_card
from ocimodel.metadata.query import Predicate, equals, matches_all, parse_predicates
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import verify_bytes
from ocimodel.oci.models import Descriptor, Index, Manifest, loads_strict, parse_manifest
from ocimodel.oci.reference import LayoutReference, Reference, RegistryReference
from ocimodel.packaging.unpack import layer_path
from ocimodel.settings import cache_dir
from ocimodel.targets.contentcache import ContentCache
from ocimodel.targets.copy import verified
from ocimodel.targets.layout import OciLayout
from ocimodel.targets.open import open_target
from ocimodel.targets.referrers import is_fallback_tag
from ocimodel.targets.remote import RemoteRepository
from ocimodel.threads import run_all
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.versiontags import is_version_tag

__all__ = [
    "DiffResult", "DiffSide", "FieldChange", "FileChange", "LicenseChanges", "MetricChange", "ParamChange",
    "SearchMatch", "SearchResult", "SearchSkip", "diff", "search",
]

SEARCH_CONCURRENCY = 8
# Fallback referrers tags (OCI 1.1): indexes of signatures and attestations, not versions.
# Settings of the ModelPack config that the card does not carry, compared by diff too.
_CONFIG_SETTINGS = ("architecture", "paramSize", "precision", "quantization")
# Standard annotations that repeat card fields (push writes both).
_MIRRORED = frozenset({
    mt.ANNOTATION_VERSION, mt.ANNOTATION_DESCRIPTION, mt.ANNOTATION_LICENSES, mt.ANNOTATION_AUTHORS,
    mt.ANNOTATION_SOURCE, mt.ANNOTATION_REVISION, mt.ANNOTATION_CREATED,
})
# Card fields with sections of their own in a diff.
_OWN_SECTIONS = ("metrics", "licenses", "hyperparameters")


# -- results ------------------------------------------------------------------------------


class DiffSide(BaseModel):
    reference: str
    digest: str
    problems: list[str] = []  # card fields that did not validate and were left out


class FileChange(BaseModel):
    path: str
    old_digest: str
    new_digest: str
    old_size: int
    new_size: int
    old_kind: str | None = None
    new_kind: str | None = None


class FieldChange(BaseModel):
    field: str  # a card field (``task``, ``datasets``...) or ``config.<setting>`` of ModelPack
    old: Any = None
    new: Any = None


class MetricChange(BaseModel):
    name: str
    old: int | float | None
    new: int | float | None
    delta: int | float | None  # new - old, when both exist
    comparable: bool = True  # False: measured on another dataset or split
    old_dataset: str | None = None
    old_split: str | None = None
    new_dataset: str | None = None
    new_split: str | None = None


class ParamChange(BaseModel):
    name: str
    old: Any = None
    new: Any = None
    old_set: bool
    new_set: bool


class LicenseChanges(BaseModel):
    old: list[str]
    new: list[str]
    added: list[str]
    removed: list[str]
    changed: bool


class DiffResult(BaseModel):
    a: DiffSide
    b: DiffSide
    identical: bool  # the same manifest digest: nothing differs
    files_added: list[FileEntry]  # in b only
    files_removed: list[FileEntry]  # in a only
    files_changed: list[FileChange]  # same path, other content (or media type)
    files_unchanged: int
    metadata: list[FieldChange]
    metrics: list[MetricChange]  # every metric of either card, with its delta
    licenses: LicenseChanges
    hyperparameters: list[ParamChange]  # only those that differ

    @computed_field  # type: ignore[prop-decorator]
    @property
    def changed(self) -> bool:
        """Anything at all differs (a new digest with the same files and card does not count)."""
        return not self.identical and bool(
            self.files_added or self.files_removed or self.files_changed or self.metadata
            or any(m.old != m.new or not m.comparable for m in self.metrics)
            or self.licenses.changed or self.hyperparameters
        )


class SearchMatch(BaseModel):
    reference: str  # registry/repo:tag or oci:PATH:tag, ready for pull
    repository: str
    digest: str
    tags: list[str]  # every tag of the repository naming this digest
    name: str | None
    version: str | None
    # The metrics the predicates test; every metric of the card when none does.
    metrics: dict[str, int | float]


class SearchSkip(BaseModel):
    reference: str
    reason: str


class SearchResult(BaseModel):
    location: str
    predicates: list[str]
    repositories: list[str]
    versions_examined: int  # tags examined
    matches: list[SearchMatch]
    skipped: list[SearchSkip]  # tags that are not readable models (images, indexes, errors)
    cache_hits: int
    cache_misses: int


# -- diff ---------------------------------------------------------------------------------


def diff(
    connection: ConnectionOptions,
    a: str,
    b: str,
) -> DiffResult:
    """What differs from model ``a`` to model ``b``: files (by path, compared by digest),
    card fields, metrics (with deltas), licenses and hyperparameters. Either may be a
    registry reference or an ``oci:`` layout, in different stores. Only manifests and
    configs are read.

    ``credentials`` (and OCIMODEL_USERNAME / OCIMODEL_PASSWORD) belong to ``a``'s registry
    (``b``'s when ``a`` is a layout); the other registry uses docker's config."""
    ref_a, ref_b = as_reference(a), as_reference(b)
    connection = bound(connection, ref_a, ref_b)
    old = _read_version(ref_a, connection)
    new = _read_version(ref_b, connection)
    files_a, files_b = _files_by_path(old.manifest), _files_by_path(new.manifest)
    changed, unchanged = [], 0
    for path in sorted(set(files_a) & set(files_b)):
        before, after = files_a[path], files_b[path]
        if before.digest == after.digest and before.media_type == after.media_type:
            unchanged += 1
            continue
        changed.append(FileChange(
            path=path, old_digest=before.digest, new_digest=after.digest, old_size=before.size,
            new_size=after.size, old_kind=before.kind, new_kind=after.kind,
        ))
    deltas = card_deltas(old.card, new.card)
    licenses = deltas.licenses
    return DiffResult(
        a=DiffSide(reference=str(ref_a), digest=old.digest, problems=old.problems),
        b=DiffSide(reference=str(ref_b), digest=new.digest, problems=new.problems),
        identical=old.digest == new.digest,
        files_added=[files_b[p] for p in sorted(set(files_b) - set(files_a))],
        files_removed=[files_a[p] for p in sorted(set(files_a) - set(files_b))],
        files_changed=changed,
        files_unchanged=unchanged,
        metadata=_field_changes(old, new),
        metrics=[
            MetricChange(
                name=m.name, old=m.old, new=m.new, delta=m.delta, comparable=m.comparable,
                old_dataset=m.old_dataset, old_split=m.old_split, new_dataset=m.new_dataset, new_split=m.new_split,
            )
            for m in deltas.metrics
        ],
        licenses=LicenseChanges(
            old=list(licenses.old), new=list(licenses.new), added=list(licenses.added),
            removed=list(licenses.removed), changed=licenses.changed,
        ),
        hyperparameters=[
            ParamChange(name=p.name, old=p.old, new=p.new, old_set=p.old_set, new_set=p.new_set)
            for p in deltas.hyperparameters
        ],
    )


class _Version:
    """One model version as diff and search read it: manifest, config, card."""

    def __init__(self, digest: str, manifest: Manifest, config: dict[str, Any] | None) -> None:
        self.digest = digest
        self.manifest = manifest
        self.config = config
        decoded = read_card(config, manifest.annotations)
        self.card = _with_annotation_fallbacks(decoded.card, manifest.annotations or {})
        self.problems = decoded.problems


def _read_version(ref: Reference, connection: ConnectionOptions) -> _Version:
    with open_target(ref, connection) as source:
        root = source.resolve(ref.reference or DEFAULT_TAG)
        manifest = model_manifest(source.fetch_manifest(root), root, str(ref))
        return _Version(root.digest, manifest, read_config(source, manifest.config))


def _files_by_path(manifest: Manifest) -> dict[str, FileEntry]:
    files: dict[str, FileEntry] = {}
    for layer in manifest.layers:
        path = layer_path(layer) or f"(untitled layer {layer.digest})"
        files[path] = file_entry(path, layer)
    return files


def _field_changes(old: _Version, new: _Version) -> list[FieldChange]:
    before = old.card.model_dump(mode="json")
    after = new.card.model_dump(mode="json")
    changes = [
        FieldChange(field=name, old=before[name], new=after[name])
        for name in ModelCard.model_fields
        if name not in _OWN_SECTIONS and before[name] != after[name]
    ]
    settings_a, settings_b = _settings(old.config), _settings(new.config)
    for name in _CONFIG_SETTINGS:
        if settings_a.get(name) != settings_b.get(name):
            changes.append(FieldChange(field=f"config.{name}", old=settings_a.get(name), new=settings_b.get(name)))
    notes_a, notes_b = _other_annotations(old.manifest), _other_annotations(new.manifest)
    for key in sorted(set(notes_a) | set(notes_b)):
        if notes_a.get(key) != notes_b.get(key):
            changes.append(FieldChange(field=f"annotation.{key}", old=notes_a.get(key), new=notes_b.get(key)))
    return changes


def _other_annotations(manifest: Manifest) -> dict[str, str]:
    """Manifest annotations that say something the card does not (a title, a URL, the
    user's own keys): the card's own and those mirroring card fields are compared above."""
    return {k: v for k, v in (manifest.annotations or {}).items() if k not in CARD_ANNOTATIONS and k not in _MIRRORED}


def _settings(config: dict[str, Any] | None) -> dict[str, Any]:
    settings = (config or {}).get("config")
    return settings if isinstance(settings, dict) else {}


def _with_annotation_fallbacks(card: ModelCard, annotations: dict[str, str]) -> ModelCard:
    """Artifacts written by other tools may carry version and licenses only in the standard
    OCI annotations; the card (from the ModelPack config) wins where it has them."""
    update: dict[str, Any] = {}
    version = annotations.get(mt.ANNOTATION_VERSION)
    if card.version is None and version and version.isprintable() and len(version) <= 128:
        update["version"] = version
    licenses = annotations.get(mt.ANNOTATION_LICENSES)
    if not card.licenses and licenses and licenses.isprintable() and len(licenses) <= 512:
        update["licenses"] = [licenses]
    return card.model_copy(update=update) if update else card


# -- search -------------------------------------------------------------------------------


def search(
    connection: ConnectionOptions,
    location: str,
    where: str | Sequence[str] = (),
    *,
    license: str | None = None,
    format: str | None = None,
    task: str | None = None,
    name: str | None = None,
    repositories: Sequence[str] = (),
    cache: bool = True,
) -> SearchResult:
    """The model versions under ``location`` whose cards satisfy every predicate.

    ``location`` is ``REGISTRY`` (``localhost:5000``), ``REGISTRY/PREFIX`` (repositories at
    or under ``PREFIX``, whole path components) or ``oci:PATH`` (the tags of a layout).
    Repositories come from the registry's catalog, or from ``repositories`` (full names,
    for registries that refuse the catalog). ``where`` holds ``FIELD OP VALUE`` predicates
    (see :mod:`ocimodel.metadata.query`); ``license``, ``format``, ``task`` and ``name`` are
    shortcuts for ``FIELD==VALUE``; all are ANDed. Every tag but the fallback referrers
    tags (``sha256-...``) is examined: a HEAD per tag, then the manifest and config from
    the local cache or the registry, as many at a time as the connection's ``concurrency``.

    Matches are one per (repository, digest), named by their first tag (other than
    ``latest`` when there is one); ``tags`` lists all of them."""
    predicates = parse_predicates(where)
    for field, value in (("license", license), ("format", format), ("task", task), ("name", name)):
        if value is not None:
            predicates.append(equals(field, value))
    concurrency = connection.concurrency
    store = ContentCache(cache_dir() / "manifests") if cache else None
    if location.startswith("oci:"):
        result = _search_layout(location, predicates, repositories, concurrency)
    else:
        result = _search_registry(location, predicates, repositories, connection, concurrency, store)
    if store is not None:
        result.cache_hits, result.cache_misses = store.hits, store.misses
    return result


def _search_layout(location: str, predicates: list[Predicate], repositories: Sequence[str], concurrency: int) -> SearchResult:
    ref = as_reference(location)
    assert isinstance(ref, LayoutReference)
    if ref.reference is not None:
        raise UsageError(f"search takes a layout, not one of its tags: {location}", hint=f"e.g. oci:{ref.path}")
    if repositories:
        raise UsageError("repositories apply to a registry; a layout is searched whole")
    layout = OciLayout(ref.path)
    versions = [(layout, tag) for tag in layout.list_tags() if not is_fallback_tag(tag)]
    examined = _examine_all(versions, predicates, None, concurrency)
    return _result(str(ref), predicates, [str(ref.path)], examined, lambda target, tag: str(ref.with_tag(tag)))


def _search_registry(
    location: str,
    predicates: list[Predicate],
    repositories: Sequence[str],
    connection: ConnectionOptions,
    concurrency: int,
    store: ContentCache | None,
) -> SearchResult:
    registry, prefix = _split_location(location)
    connection = connection.bound_to(registry)
    with connection.client_for(registry) as client:
        names = _repositories(client, registry, prefix, repositories)
        targets = [RemoteRepository(client, name) for name in names]
        tag_lists = run_all([lambda t=t: _tags_of(t) for t in targets], concurrency, "ocimodel-search")
        versions = [(t, tag) for t, (tags, _) in zip(targets, tag_lists) for tag in tags if not is_fallback_tag(tag)]
        examined = _examine_all(versions, predicates, store, concurrency)
    # A catalog may list repositories these credentials cannot read (Harbor, GHCR do).
    refused = [SearchSkip(reference=f"{registry}/{t.repository}", reason=why)
               for t, (_, why) in zip(targets, tag_lists) if why is not None]
    shown = f"{registry}/{prefix}" if prefix else registry
    return _result(shown, predicates, names, examined, lambda target, tag: f"{registry}/{target.repository}:{tag}", refused)


def _tags_of(target: RemoteRepository) -> tuple[list[str], str | None]:
    """The repository's tags, or none and why the registry refused to list them."""
    try:
        return target.list_tags(), None
    except (PermissionDenied, AuthenticationError) as exc:
        return [], exc.message


def _split_location(location: str) -> tuple[str, str]:
    registry, _, prefix = location.partition("/")
    prefix = prefix.strip("/")
    try:
        RegistryReference(registry, prefix or "x")  # validates host[:port] and the prefix
    except InvalidReference as exc:
        raise InvalidReference(
            f"invalid search location {location!r}: {exc.message}",
            hint="write REGISTRY[/REPOSITORY-PREFIX] (e.g. localhost:5000/team) or oci:PATH",
        ) from None
    if "." not in registry and ":" not in registry and registry != "localhost":
        raise InvalidReference(
            f"invalid search location {location!r}: {registry!r} is not a registry host",
            hint="write REGISTRY[/REPOSITORY-PREFIX], e.g. localhost:5000/team or ghcr.io/org",
        )
    return registry, prefix


def _under(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + "/")


def _repositories(client, registry: str, prefix: str, explicit: Sequence[str]) -> list[str]:
    if explicit:
        if isinstance(explicit, str):
            explicit = (explicit,)
        names = []
        for name in explicit:
            try:
                RegistryReference(registry, name)
            except InvalidReference as exc:
                raise InvalidReference(f"invalid repository {name!r}: {exc.message}") from None
            if not _under(name, prefix):
                raise UsageError(
                    f"repository {name!r} is not under {registry}/{prefix}",
                    hint="name repositories in full; the location's prefix filters them",
                )
            names.append(name)
        return sorted(set(names))
    try:
        catalog = client.catalog(page_size=1000)
    except (NotFound, PermissionDenied, AuthenticationError) as exc:
        raise type(exc)(
            f"{registry} refused to list its repositories: {exc.message}",
            status=exc.status, code=exc.code,
            hint="name the repositories to search: --repo team/model (repeatable), or repositories=[...]",
        ) from None
    return [name for name in catalog if _under(name, prefix)]


class _Examined:
    def __init__(self, target: OciLayout | RemoteRepository, tag: str, digest: str | None = None, card: ModelCard | None = None,
                 matched: bool = False, reason: str | None = None) -> None:
        self.target, self.tag, self.digest, self.card, self.matched, self.reason = target, tag, digest, card, matched, reason


# Problems that make one version unreadable without making the search pointless.
_SKIPPABLE = (NotFound, PermissionDenied, AuthenticationError, InvalidManifest, IntegrityError, NotAModel)


def _examine_all(versions, predicates: list[Predicate], store: ContentCache | None, concurrency: int) -> list[_Examined]:
    def examine(target, tag: str) -> _Examined:
        try:
            return _examine(target, tag, predicates, store)
        except _SKIPPABLE as exc:
            return _Examined(target, tag, reason=exc.message)

    return run_all([lambda t=t, g=g: examine(t, g) for t, g in versions], concurrency, "ocimodel-search")


def _examine(target, tag: str, predicates: list[Predicate], store: ContentCache | None) -> _Examined:
    root = _resolve_tag(target, tag)
    data = _document(store, root, lambda: target.fetch_manifest(root))
    parsed = parse_manifest(data, root.media_type)
    if isinstance(parsed, Index):
        return _Examined(target, tag, root.digest, reason="an image index, not a model manifest")
    kind = parsed.effective_artifact_type
    if kind not in mt.MODEL_ARTIFACT_TYPES and parsed.config.media_type not in mt.MODEL_CONFIG_TYPES:
        return _Examined(target, tag, root.digest, reason=f"not a ModelPack model (artifact type {kind[:100]})")
    config = _config(target, parsed.config, store)
    version = _Version(root.digest, parsed, config)
    return _Examined(target, tag, root.digest, version.card, matched=matches_all(predicates, version.card))


def _resolve_tag(target, tag: str) -> Descriptor:
    """A tag's digest, asked afresh: a HEAD on a registry (the manifest itself may then come
    from the cache), the index of a layout."""
    if isinstance(target, RemoteRepository):
        head = target.client.head_manifest(target.repository, tag)
        if head is not None:
            return head
    return target.resolve(tag)  # a registry that gave no digest: GET, whose bytes are kept


def _document(store: ContentCache | None, descriptor: Descriptor, fetch: Callable[[], bytes]) -> bytes:
    if store is not None:
        cached = store.get(descriptor.digest, descriptor.size)
        if cached is not None:
            return cached
    data = fetch()
    verify_bytes(data, descriptor.digest, descriptor.size, descriptor.digest)
    if store is not None:
        store.put(descriptor.digest, data)
    return data


def _config(target, descriptor: Descriptor, store: ContentCache | None) -> dict[str, Any] | None:
    if descriptor.size > MAX_CONFIG_BYTES or not descriptor.media_type.endswith("json"):
        return None

    def fetch() -> bytes:
        with target.open_blob(descriptor) as chunks:
            return b"".join(verified(chunks, descriptor))

    data = _document(store, descriptor, fetch)
    try:
        document = loads_strict(data, "config")
    except InvalidManifest:
        return None
    return document if isinstance(document, dict) else None


def _result(location: str, predicates: list[Predicate], repositories: list[str], examined: list[_Examined],
            reference_of: Callable[[Any, str], str], refused: Sequence[SearchSkip] = ()) -> SearchResult:
    metrics_named = [p.metric for p in predicates if p.metric is not None]
    groups: dict[tuple[str, str], list[_Examined]] = {}
    skipped = list(refused)
    for item in examined:
        if item.reason is not None:
            skipped.append(SearchSkip(reference=reference_of(item.target, item.tag), reason=item.reason))
        elif item.matched and item.digest is not None:
            groups.setdefault((item.target.name, item.digest), []).append(item)
    matches = []
    for (_, digest), items in groups.items():
        tags = sorted(i.tag for i in items)
        # Name a match by a version (immutable) rather than an alias that may move.
        first = next((t for t in tags if is_version_tag(t)), next((t for t in tags if t != DEFAULT_TAG), tags[0]))
        item = items[0]
        card = item.card or ModelCard()
        shown = metrics_named or sorted(card.metrics)
        matches.append(SearchMatch(
            reference=reference_of(item.target, first),
            repository=item.target.repository if isinstance(item.target, RemoteRepository) else repositories[0],
            digest=digest, tags=tags, name=card.name, version=card.version,
            metrics={m: metric_value(card.metrics[m]) for m in shown if m in card.metrics},
        ))
    matches.sort(key=lambda m: (m.repository, m.reference))
    skipped.sort(key=lambda s: s.reference)
    return SearchResult(
        location=location, predicates=[str(p) for p in predicates], repositories=repositories,
        versions_examined=len(examined), matches=matches, skipped=skipped, cache_hits=0, cache_misses=0,
    )
