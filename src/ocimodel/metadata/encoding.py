"""A model card in an OCI artifact, and back.

Fields the ModelPack config has go there (other ModelPack tools read them); the rest go in
manifest annotations under ``dev.ocimodel.``: scalars as plain strings, structures as
compact JSON (sorted keys, no spaces) under keys ending in ``+json``. Both the config and the
annotations are covered by the manifest digest, so everything is signed with it.

=============================  ============================================================
card field                     where it is stored
=============================  ============================================================
name, version, description     config ``descriptor.name`` / ``.version`` / ``.description``
authors, licenses              config ``descriptor.authors`` / ``.licenses`` (lists)
created                        config ``descriptor.createdAt`` (RFC 3339, UTC)
code.repository, code.commit   config ``descriptor.sourceURL`` / ``descriptor.revision``
code.dirty                     annotation ``dev.ocimodel.code.dirty`` (``true`` / ``false``)
datasets                       annotation ``dev.ocimodel.datasets+json`` ([{uri, digest?}]),
                               and the URIs again in config ``descriptor.datasetsURL``
format                         config ``config.format``
formats                        annotation ``dev.ocimodel.formats+json`` (list, main first)
framework, task                annotations ``dev.ocimodel.framework``, ``dev.ocimodel.task``
tags                           annotation ``dev.ocimodel.tags+json`` (list)
metrics                        annotation ``dev.ocimodel.metrics+json``
hyperparameters                annotation ``dev.ocimodel.hyperparameters+json``
base_models                    annotation ``dev.ocimodel.base-models+json``
environment                    annotation ``dev.ocimodel.environment+json``
=============================  ============================================================

Decoding is strict on types (a ``metrics+json`` that is not a mapping of numbers is an
error naming the field) and ignores ``dev.ocimodel.*`` keys it does not know, so artifacts
written by a newer ocimodel still decode; :func:`unknown_annotations` lists those keys for
display. :func:`read_card` is the forgiving variant for ``inspect`` / ``diff`` of artifacts
written by other tools: fields that do not validate are dropped and reported."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ocimodel.errors import InvalidManifest, OcimodelError, UsageError
from ocimodel.metadata.card import ModelCard, validate_card
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import loads_strict

__all__ = [
    "ANNOTATION_PREFIX",
    "CARD_ANNOTATIONS",
    "MAX_CARD_ANNOTATION_BYTES",
    "DecodedCard",
    "EncodedCard",
    "canonical_json",
    "decode_card",
    "encode_card",
    "formats_of",
    "read_card",
    "unknown_annotations",
]

# Short names for the card's annotation keys (defined in oci/mediatypes.py), used throughout.
ANNOTATION_PREFIX = mt.OCIMODEL_ANNOTATION_PREFIX
FRAMEWORK = mt.ANNOTATION_FRAMEWORK
TASK = mt.ANNOTATION_TASK
CODE_DIRTY = mt.ANNOTATION_CODE_DIRTY
TAGS = mt.ANNOTATION_TAGS
METRICS = mt.ANNOTATION_METRICS
HYPERPARAMETERS = mt.ANNOTATION_HYPERPARAMETERS
DATASETS = mt.ANNOTATION_DATASETS
BASE_MODELS = mt.ANNOTATION_BASE_MODELS
ENVIRONMENT = mt.ANNOTATION_ENVIRONMENT
FORMATS = mt.ANNOTATION_FORMATS

# annotation key -> card field
CARD_ANNOTATIONS: dict[str, str] = {
    FRAMEWORK: "framework",
    TASK: "task",
    CODE_DIRTY: "code",
    TAGS: "tags",
    METRICS: "metrics",
    HYPERPARAMETERS: "hyperparameters",
    DATASETS: "datasets",
    BASE_MODELS: "base_models",
    ENVIRONMENT: "environment",
    FORMATS: "formats",
}
_FIELD_SOURCE = {
    **{f: f"annotation {k}" for k, f in CARD_ANNOTATIONS.items()},
    "code": f"config descriptor.sourceURL / descriptor.revision, annotation {CODE_DIRTY}",
    **{f: f"config descriptor.{f}" for f in ("name", "version", "description", "authors", "licenses")},
    "created": "config descriptor.createdAt",
    "format": "config config.format",
}
# The whole manifest must stay far below the 4 MiB registries accept; the card's share is
# capped well under that (descriptions and metric tables are small; a card this large is
# a mistake, e.g. a per-step loss curve, which belongs in an evaluation referrer).
MAX_CARD_ANNOTATION_BYTES = 128 * 1024


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON: the same card always gives the same annotation bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class EncodedCard:
    """What a card contributes to the artifact.

    ``descriptor`` and ``config`` use the ModelPack JSON names (``createdAt``, ``sourceURL``,
    ``datasetsURL``) with JSON values, ready for ``ModelDescriptor.model_validate`` /
    ``ModelSettings.model_validate``; only fields the card sets are present.
    ``annotations`` are the ``dev.ocimodel.*`` manifest annotations, sorted by key."""

    descriptor: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def encode_card(card: ModelCard) -> EncodedCard:
    data = card.model_dump(mode="json", exclude_none=True)
    descriptor: dict[str, Any] = {}
    for key in ("name", "version", "description"):
        if key in data:
            descriptor[key] = data[key]
    for key in ("authors", "licenses"):
        if data.get(key):
            descriptor[key] = data[key]
    if "created" in data:
        descriptor["createdAt"] = data["created"]
    code = data.get("code") or {}
    if "repository" in code:
        descriptor["sourceURL"] = code["repository"]
    if "commit" in code:
        descriptor["revision"] = code["commit"]
    if data.get("datasets"):
        descriptor["datasetsURL"] = [d["uri"] for d in data["datasets"]]

    config = {"format": data["format"]} if "format" in data else {}

    annotations: dict[str, str] = {}
    if "framework" in data:
        annotations[FRAMEWORK] = data["framework"]
    if "task" in data:
        annotations[TASK] = data["task"]
    if "dirty" in code:
        annotations[CODE_DIRTY] = "true" if code["dirty"] else "false"
    for key, name in ((TAGS, "tags"), (METRICS, "metrics"), (HYPERPARAMETERS, "hyperparameters"),
                      (DATASETS, "datasets"), (BASE_MODELS, "base_models"), (ENVIRONMENT, "environment"),
                      (FORMATS, "formats")):
        if data.get(name):
            annotations[key] = canonical_json(data[name])
    annotations = dict(sorted(annotations.items()))
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    size += len(canonical_json(descriptor).encode())
    if size > MAX_CARD_ANNOTATION_BYTES:
        biggest = max(annotations, key=lambda k: len(annotations[k]), default="descriptor")
        raise UsageError(
            f"metadata: the model card takes {size} bytes of the manifest, over the {MAX_CARD_ANNOTATION_BYTES}-byte limit",
            hint=f"the largest part is {biggest}; attach large results as an evaluation instead",
        )
    return EncodedCard(descriptor=descriptor, config=config, annotations=annotations)


def unknown_annotations(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """``dev.ocimodel.*`` annotations this version does not read (from a newer ocimodel, or
    other ocimodel features); decoding ignores them, ``inspect`` may show them as they are."""
    return {
        k: v for k, v in sorted((annotations or {}).items())
        if k.startswith(ANNOTATION_PREFIX) and k not in CARD_ANNOTATIONS
    }


def _card_data(
    config: Mapping[str, Any] | None, annotations: Mapping[str, str] | None, problems: list[str] | None
) -> dict[str, Any]:
    """The card fields found in a config and annotations, not validated yet. With
    ``problems`` given, unreadable parts are reported there instead of raised."""

    def bad(message: str) -> None:
        if problems is None:
            raise InvalidManifest(message)
        problems.append(message)

    data: dict[str, Any] = {}
    config = config or {}
    if not isinstance(config, Mapping):
        bad("model config: not a JSON object")
        config = {}
    descriptor = config.get("descriptor") or {}
    settings = config.get("config") or {}
    if not isinstance(descriptor, Mapping):
        bad("model config: descriptor is not an object")
        descriptor = {}
    if not isinstance(settings, Mapping):
        bad("model config: config is not an object")
        settings = {}
    for key in ("name", "version", "description", "authors", "licenses"):
        if descriptor.get(key) is not None:
            data[key] = descriptor[key]
    if descriptor.get("createdAt") is not None:
        data["created"] = descriptor["createdAt"]
    if settings.get("format") is not None:
        data["format"] = settings["format"]
    code: dict[str, Any] = {}
    if descriptor.get("sourceURL") is not None:
        code["repository"] = descriptor["sourceURL"]
    if descriptor.get("revision") is not None:
        code["commit"] = descriptor["revision"]

    annotations = annotations or {}
    for key, name in ((FRAMEWORK, "framework"), (TASK, "task")):
        if key in annotations:
            data[name] = annotations[key]
    if CODE_DIRTY in annotations:
        flag = annotations[CODE_DIRTY]
        if flag in ("true", "false"):
            code["dirty"] = flag == "true"
        else:
            bad(f"annotation {CODE_DIRTY}: not true or false: {flag[:40]!r}")
    if code:
        data["code"] = code
    for key, name in ((TAGS, "tags"), (METRICS, "metrics"), (HYPERPARAMETERS, "hyperparameters"),
                      (DATASETS, "datasets"), (BASE_MODELS, "base_models"), (ENVIRONMENT, "environment"),
                      (FORMATS, "formats")):
        if key not in annotations:
            continue
        try:
            data[name] = loads_strict(annotations[key].encode(), f"annotation {key}")
        except InvalidManifest as exc:
            bad(exc.message)
    if "datasets" not in data and isinstance(descriptor.get("datasetsURL"), list):
        # Written by another ModelPack tool: URIs without digests.
        data["datasets"] = [{"uri": uri} for uri in descriptor["datasetsURL"]]
    return data


def decode_card(config: Mapping[str, Any] | None, annotations: Mapping[str, str] | None) -> ModelCard:
    """The card recorded in an artifact: ``config`` is the parsed ModelPack config (or None),
    ``annotations`` the manifest annotations. Unknown ``dev.ocimodel.*`` keys are ignored.
    A malformed value raises InvalidManifest naming the card field and where it was read."""
    data = _card_data(config, annotations, None)
    return validate_card(data, error=InvalidManifest, field_sources=_FIELD_SOURCE)


@dataclass(frozen=True)
class DecodedCard:
    card: ModelCard
    unknown: dict[str, str]
    problems: list[str]


def read_card(config: Mapping[str, Any] | None, annotations: Mapping[str, str] | None) -> DecodedCard:
    """Like :func:`decode_card`, but never raises: a field that does not validate (say a
    license another tool wrote as ``Apache 2.0``) is left out and described in ``problems``."""
    problems: list[str] = []
    data = _card_data(config, annotations, problems)
    for _ in range(len(data) + 1):
        try:
            card = validate_card(data, error=InvalidManifest, field_sources=_FIELD_SOURCE)
            break
        except OcimodelError as exc:
            problems.append(exc.message + (f" ({exc.hint})" if exc.hint else ""))
            field_name = exc.message.removeprefix("metadata: ").split(":", 1)[0].split(".", 1)[0].split("[", 1)[0]
            if field_name not in data:
                card = ModelCard()
                break
            del data[field_name]
    else:  # pragma: no cover - every round removes a field
        card = ModelCard()
    return DecodedCard(card=card, unknown=unknown_annotations(annotations), problems=problems)


def formats_of(card: ModelCard) -> list[str]:
    """Every weight format a card records: the main one (``format``) first, then the
    others of ``formats``, each once (compared ignoring case)."""
    found: list[str] = []
    for value in ([card.format] if card.format else []) + list(card.formats):
        if value.casefold() not in (f.casefold() for f in found):
            found.append(value)
    return found
