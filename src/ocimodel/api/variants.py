"""Variant indexes: several builds of one model (quantizations, hardware builds) under one
reference, told apart by labels (docs/variants.md).

A variant index is an OCI image index whose ``artifactType`` is
``application/vnd.ocimodel.variants.v1+json``; each entry is the descriptor of a model
manifest of the same repository, its labels written as annotations
``dev.ocimodel.variant.<key>: <value>``. :func:`create_index` writes one;
:func:`choose_variant` is what ``pull --variant`` uses to pick an entry; :func:`describe`
is what ``inspect`` lists. A KitOps ModelKit index (``kit index``: labels in each entry's
``modelMetadata``) is read the same way."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from ocimodel.api.common import (
    DEFAULT_TAG,
    as_reference,
    check_version_tag,
    open_store,
    read_config,
)
from ocimodel.errors import (
    InvalidManifest,
    InvalidReference,
    NotAModel,
    NotFound,
    UsageError,
    VariantNotChosen,
)
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.kind import (
    KITOPS_INDEX,
    VARIANT_INDEX,
    VARIANT_LABEL_PREFIX,
    artifact_kind,
    is_variant_index,
)
from ocimodel.oci.models import Descriptor, Index, Manifest, loads_strict, parse_manifest
from ocimodel.oci.reference import LayoutReference, Reference
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.versiontags import is_guarded

__all__ = [
    "Variant", "VariantIndexResult", "choose_variant", "create_index", "describe", "index_labels", "parse_labels",
]

# A label key is a word of an annotation key (it becomes dev.ocimodel.variant.<key>); a value
# is short printable text without a comma (the comma separates labels on the command line).
_KEY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")
MAX_VALUE = 256
MAX_VARIANTS = 256  # far above any real set of builds; an index names at most this many


class Variant(BaseModel):
    digest: str  # of the model's manifest
    labels: dict[str, str]
    media_type: str
    artifact_type: str | None = None
    reference: str = ""  # the model by digest: what `pull` of this one variant takes


class VariantIndexResult(BaseModel):
    reference: str  # the index, by its tag
    digest: str  # of the index
    tag: str
    variants: list[Variant]


def parse_labels(values: Sequence[str] | Mapping[str, str], what: str = "label") -> dict[str, str]:
    """``["quant=q4", "device=cuda,os=linux"]`` (repeated, or comma lists) or a mapping, as
    checked labels. A key given twice is refused: which one was meant cannot be told."""
    if isinstance(values, Mapping):
        pairs = [(str(k), str(v)) for k, v in values.items()]
    elif isinstance(values, str):
        raise UsageError(f"{what}s must be a list of KEY=VALUE strings or a mapping, not one string")
    else:
        pairs = []
        for value in values:
            for part in str(value).split(","):
                key, sep, label = part.partition("=")
                if not sep:
                    raise UsageError(f"{what} {part!r} is not KEY=VALUE", hint="e.g. quant=q4 or quant=q4,device=cuda")
                pairs.append((key.strip(), label.strip()))
    labels: dict[str, str] = {}
    for key, value in pairs:
        if not _KEY.fullmatch(key):
            raise UsageError(
                f"{what} key {key!r} is not a word of letters, digits, '.', '_' or '-' (at most 64)",
                hint="e.g. quant, device, gpu-arch",
            )
        if not value or len(value) > MAX_VALUE or "," in value or not value.isprintable():
            raise UsageError(f"{what} {key}={value!r}: the value must be 1 to {MAX_VALUE} printable characters without a comma")
        if key in labels and labels[key] != value:
            raise UsageError(f"{what} {key} is given twice ({labels[key]!r} and {value!r})")
        labels[key] = value
    return labels


def shown_labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "(no labels)"


def index_labels(data: bytes) -> list[tuple[Descriptor, dict[str, str]]]:
    """The entries of a variant index (its raw bytes, already verified) with their labels:
    our annotations, or the ``modelMetadata`` KitOps writes (a value that is not a JSON
    string is shown as its JSON text)."""
    parsed = parse_manifest(data)
    if not isinstance(parsed, Index):
        return []
    document = loads_strict(data, "index")
    raw = document.get("manifests") if isinstance(document, dict) else None
    raw = raw if isinstance(raw, list) else []
    kitops = parsed.artifact_type == KITOPS_INDEX
    entries: list[tuple[Descriptor, dict[str, str]]] = []
    for position, descriptor in enumerate(parsed.manifests):
        labels = {
            key.removeprefix(VARIANT_LABEL_PREFIX): value
            for key, value in (descriptor.annotations or {}).items()
            if key.startswith(VARIANT_LABEL_PREFIX)
        }
        entry = raw[position] if position < len(raw) and isinstance(raw[position], dict) else {}
        meta = entry.get("modelMetadata")
        if kitops and not labels and isinstance(meta, dict):
            labels = {str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for k, v in meta.items()}
        entries.append((descriptor, labels))
    return entries


def choose_variant(
    source: Any, root: Descriptor, data: bytes, wanted: Sequence[str] | Mapping[str, str], shown: str
) -> tuple[Descriptor, bytes, dict[str, str] | None]:
    """What pull downloads: ``(root, data, None)`` unchanged for a model; for a variant
    index, the one entry whose labels include every ``wanted`` label, its manifest fetched
    (and verified by the store against the entry's digest), and its labels. With nothing
    wanted, an index of one variant gives that one. Anything else is VariantNotChosen,
    listing the variants; ``wanted`` on something that is no variant index is a UsageError."""
    selector = parse_labels([wanted] if isinstance(wanted, str) else wanted, "--variant")
    parsed = parse_manifest(data, root.media_type)
    if not is_variant_index(parsed):
        if selector:
            kind = artifact_kind(parsed)
            raise UsageError(
                f"{shown} is {kind.description}, not a variant index: --variant has nothing to choose from",
                hint="drop --variant, or name the index (`ocimodel inspect` shows what a reference is)",
            )
        return root, data, None
    entries = index_labels(data)
    listed = [(d.digest, labels) for d, labels in entries]
    choices = "; ".join(f"{shown_labels(labels)} ({d.digest})" for d, labels in entries) or "none"
    matches = [(d, labels) for d, labels in entries if all(labels.get(k) == v for k, v in selector.items())]
    if len(matches) == 1:
        member, labels = matches[0]
        if member.media_type not in mt.MANIFEST_TYPES:
            raise NotAModel(f"{shown}: the variant {shown_labels(labels)} is {member.media_type}, not a model manifest")
        return member, source.fetch_manifest(member), labels
    if not entries:
        raise VariantNotChosen(f"{shown} is a variant index with no variants", variants=[], hint="nothing to pull")
    if not matches:
        raise VariantNotChosen(
            f"no variant of {shown} has {shown_labels(selector)}", variants=listed,
            hint=f"choose one with --variant KEY=VALUE[,KEY=VALUE]: {choices}",
        )
    if not selector:
        raise VariantNotChosen(
            f"{shown} holds {len(entries)} variants: choose one with --variant", variants=listed,
            hint=f"e.g. --variant {shown_labels(entries[0][1])}; the variants: {choices}",
        )
    raise VariantNotChosen(
        f"{len(matches)} variants of {shown} have {shown_labels(selector)}: add labels to choose one", variants=listed,
        hint="the matching variants: " + "; ".join(f"{shown_labels(labels)} ({d.digest})" for d, labels in matches),
    )


def describe(source: Any, data: bytes) -> list[dict[str, Any]]:
    """For inspect: each variant's labels and, from its manifest and config, its size (the
    bytes of its files), number of files and weight formats. One manifest and one small
    config read per variant; no file is downloaded."""
    # Imported here: only inspect of a variant index reads cards.
    from ocimodel.metadata.encoding import formats_of, read_card

    described: list[dict[str, Any]] = []
    for descriptor, labels in index_labels(data):
        entry: dict[str, Any] = {"labels": labels}
        if descriptor.media_type in mt.MANIFEST_TYPES:
            try:
                manifest = parse_manifest(source.fetch_manifest(descriptor), descriptor.media_type)
            except (NotFound, InvalidManifest) as exc:
                # One unreadable variant (an index written elsewhere, a model deleted since)
                # must not hide the others: it is listed with what is wrong.
                entry["problem"] = exc.message
                described.append(entry)
                continue
            if isinstance(manifest, Manifest):
                config = read_config(source, manifest.config)
                card = read_card(config if artifact_kind(manifest).kind == "model" else None, manifest.annotations or {})
                entry.update(
                    model_size=sum(layer.size for layer in manifest.layers), files=len(manifest.layers),
                    formats=formats_of(card.card),
                )
        described.append(entry)
    return described


def _member(index: Reference, text: str) -> Reference:
    """A member as the user named it: a tag (``1.0-q4``) or ``@sha256:...`` of the index's
    repository, or a whole reference, which must be in that repository."""
    bare = index.with_digest(None).with_tag(None)
    try:
        if text.startswith("@"):
            return bare.with_digest(text[1:])
        if "/" not in text and not text.startswith("oci:"):  # a whole reference has a '/' or 'oci:'
            return bare.with_tag(text)
    except InvalidReference as exc:
        raise InvalidReference(f"variant {text!r}: {exc.message}") from None
    member = as_reference(text)
    if not _same_repository(member, bare):
        raise UsageError(
            f"variant {text} is not in {bare}: an index names models of its own repository",
            hint=f"copy it there first (`ocimodel copy {text} {bare}:TAG`), then name it by tag or digest",
        )
    if member.reference is None:
        raise UsageError(f"variant {text} needs a tag or a digest")
    return member


def _same_repository(a: Reference, b: Reference) -> bool:
    if isinstance(a, LayoutReference) or isinstance(b, LayoutReference):
        return isinstance(a, LayoutReference) and isinstance(b, LayoutReference) and a.path.resolve() == b.path.resolve()
    return (a.registry, a.repository) == (b.registry, b.repository)


def _members(variants: Mapping[str, Mapping[str, str]] | Sequence[str]) -> list[tuple[str, dict[str, str]]]:
    if isinstance(variants, Mapping):
        return [(str(member), parse_labels(labels)) for member, labels in variants.items()]
    if isinstance(variants, str):
        raise UsageError("variants must be a list of 'MEMBER[,KEY=VALUE...]' strings or a mapping, not one string")
    members = []
    for text in variants:
        member, _, labels = str(text).partition(",")
        members.append((member.strip(), parse_labels([labels] if labels else [])))
    return members


def create_index(
    connection: ConnectionOptions,
    reference: str,
    variants: Mapping[str, Mapping[str, str]] | Sequence[str],
    *,
    annotations: Mapping[str, str] | None = None,
    force: bool = False,
) -> VariantIndexResult:
    """Write a variant index of models of one repository under the tag of ``reference``.

    ``variants`` names the models and their labels: a mapping ``{"1.0-q4": {"quant": "q4"},
    ...}`` or strings ``"1.0-q4,quant=q4,device=cpu"``. A model is named by a tag or
    ``@sha256:...`` of ``reference``'s repository, or by a whole reference in it; models of
    another repository are refused (copy them in first). Every variant must have a label
    set of its own, so that ``pull --variant`` can tell each one apart. ``annotations``
    go on the index itself. A version tag holding something else is refused unless
    ``force`` (docs/version-tags.md)."""
    ref = as_reference(reference)
    if ref.digest is not None:
        raise UsageError(f"index create needs a tag, not a digest: {reference}", hint="e.g. registry/team/llm:1.0")
    tag = ref.tag or DEFAULT_TAG
    members = _members(variants)
    if not members:
        raise UsageError("a variant index needs at least one model", hint="e.g. ocimodel index create REF 1.0-q4,quant=q4")
    if len(members) > MAX_VARIANTS:
        raise UsageError(f"a variant index holds at most {MAX_VARIANTS} models, got {len(members)}")
    seen_labels: dict[tuple[tuple[str, str], ...], str] = {}
    for text, labels in members:
        key = tuple(sorted(labels.items()))
        if key in seen_labels:
            raise UsageError(
                f"variants {seen_labels[key]} and {text} both have {shown_labels(labels)}: pull --variant could not tell them apart",
                hint="give each variant labels of its own, e.g. quant=q4 and quant=q8",
            )
        seen_labels[key] = text
    for text, labels in members:  # a selector that matches these labels matches the other's too
        wider = next((other for other, theirs in members if other != text and len(theirs) > len(labels)
                      and all(theirs.get(k) == v for k, v in labels.items())), None)
        if wider is not None:
            raise UsageError(
                f"every label of variant {text} ({shown_labels(labels)}) is on {wider} too: "
                f"pull --variant could never choose {text}",
                hint="give each variant a label of its own, e.g. device=cpu beside device=cuda",
            )
    targets = [(_member(ref, text), text, labels) for text, labels in members]
    with open_store(connection, ref, for_write=True) as target:
        entries: list[Descriptor] = []
        found: dict[str, str] = {}
        for member, text, labels in targets:
            descriptor = target.resolve(member.reference or DEFAULT_TAG)
            if descriptor.digest in found:
                raise UsageError(f"{found[descriptor.digest]} and {text} are the same model ({descriptor.digest})")
            found[descriptor.digest] = text
            manifest = parse_manifest(target.fetch_manifest(descriptor), descriptor.media_type)
            kind = artifact_kind(manifest)
            if not isinstance(manifest, Manifest) or kind.kind not in ("model", "modelkit"):
                raise NotAModel(f"variant {text} is {kind.description}, not a model", hint="a variant index holds models")
            entries.append(Descriptor(
                mediaType=descriptor.media_type, digest=descriptor.digest, size=descriptor.size,
                artifactType=manifest.effective_artifact_type,
                annotations={VARIANT_LABEL_PREFIX + key: value for key, value in labels.items()} or None,
            ))
        index = Index(
            schemaVersion=2, mediaType=mt.OCI_INDEX, artifactType=VARIANT_INDEX, manifests=entries,
            annotations=dict(annotations) if annotations else None,
        )
        data = index.to_json()
        descriptor = Descriptor.for_bytes(mt.OCI_INDEX, data)
        check_version_tag(target, tag, descriptor.digest, force)  # before writing anything
        guarded = is_guarded(tag, force)
        target.push_manifest(descriptor, data, None if guarded else tag)
        if guarded:  # a version: check-and-set, as the last step (docs/version-tags.md)
            target.tag(descriptor, tag, immutable=True)
    bare = ref.with_tag(None)
    return VariantIndexResult(
        reference=str(ref.with_tag(tag)), digest=descriptor.digest, tag=tag,
        variants=[
            Variant(digest=d.digest, labels=labels, media_type=d.media_type, artifact_type=d.artifact_type,
                    reference=str(bare.with_digest(d.digest)))
            for d, (_, _, labels) in zip(entries, targets)
        ],
    )
