"""What an artifact is, told from its manifest (and config descriptor) alone.

A registry holds more than models: container images, image indexes, artifacts of other
tools. ``inspect`` says which one it is looking at, and ``pull`` refuses what it cannot
write as a model directory, with a message naming the thing and what would be needed,
instead of failing on its first layer. Nothing here fetches: the manifest is enough."""

from __future__ import annotations

from dataclasses import dataclass

from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Index, Manifest

__all__ = [
    "IMAGE_CONFIG_TYPES", "KITOPS_CONFIG", "KITOPS_INDEX", "KITOPS_MANIFEST", "VARIANT_INDEX", "VARIANT_INDEX_TYPES",
    "VARIANT_LABEL_PREFIX", "ArtifactKind", "artifact_kind", "is_variant_index",
]

# The config of a runnable container image (OCI and Docker schema 2): its layers are root
# filesystem diffs, not files of a model.
IMAGE_CONFIG_TYPES = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
# A KitOps ModelKit's config is its Kitfile as JSON; newer KitOps may also set this
# artifactType on the manifest (older ones set none).
KITOPS_CONFIG = "application/vnd.kitops.modelkit.config.v1+json"
KITOPS_MANIFEST = "application/vnd.kitops.modelkit.manifest.v1+json"
# A variant index (docs/variants.md): an image index of models of one repository, each entry
# labelled (quant=q4, device=cuda) by annotations under VARIANT_LABEL_PREFIX. KitOps writes
# the same thing (`kit index`) with its own artifactType and labels in `modelMetadata`.
VARIANT_INDEX = "application/vnd.ocimodel.variants.v1+json"
KITOPS_INDEX = "application/vnd.kitops.modelkit.index.v1+json"
VARIANT_INDEX_TYPES = (VARIANT_INDEX, KITOPS_INDEX)
VARIANT_LABEL_PREFIX = "dev.ocimodel.variant."
_FILE_NAME_ANNOTATIONS = (mt.ANNOTATION_TITLE, mt.ANNOTATION_FILEPATH, mt.LEGACY_ANNOTATION_FILEPATH)


@dataclass(frozen=True)
class ArtifactKind:
    """``kind`` is one of: ``model`` (a ModelPack model, ocimodel's own format),
    ``modelkit`` (a KitOps ModelKit), ``files`` (an artifact of another type whose layers
    are named files, as oras pushes them: pulled as those files), ``image`` (a container
    image), ``variants`` (a variant index: models told apart by labels), ``index`` (any
    other image index) or ``artifact`` (anything else).
    ``pullable`` says whether pull may try to write it as a directory; ``description``
    reads in a sentence ("a container image"); ``needed`` says what pull would need."""

    kind: str
    description: str
    pullable: bool
    needed: str = ""


def _type_of(document: Manifest | Index) -> str | None:
    if isinstance(document, Index):
        return document.artifact_type
    return document.effective_artifact_type


def is_variant_index(document: Manifest | Index) -> bool:
    """An index that says it holds variants of one model (ours, or a KitOps index)."""
    return isinstance(document, Index) and document.artifact_type in VARIANT_INDEX_TYPES


def artifact_kind(document: Manifest | Index) -> ArtifactKind:
    """Classify a parsed manifest or index (see :class:`ArtifactKind`)."""
    if isinstance(document, Index) and is_variant_index(document):
        count = len(document.manifests)
        return ArtifactKind(
            "variants", f"a variant index of {count} model{'s' if count != 1 else ''}", False,
            needed="a choice of variant: --variant KEY=VALUE (`ocimodel inspect` lists them)",
        )
    if isinstance(document, Index):
        count = len(document.manifests)
        what = f"an image index of {count} manifest{'s' if count != 1 else ''}"
        return ArtifactKind(
            "index", what, False,
            needed="one manifest: pull one of its manifests by digest (`ocimodel inspect` lists them)",
        )
    config_type = document.config.media_type
    artifact_type = _type_of(document) or ""
    if artifact_type in mt.MODEL_ARTIFACT_TYPES or config_type in mt.MODEL_CONFIG_TYPES:
        return ArtifactKind("model", "a ModelPack model", True)
    if config_type == KITOPS_CONFIG or artifact_type == KITOPS_MANIFEST:
        return ArtifactKind("modelkit", "a KitOps ModelKit", True)
    if config_type in IMAGE_CONFIG_TYPES and not document.artifact_type:
        return ArtifactKind(
            "image", "a container image", False,
            needed="a model artifact (a ModelPack config, or layers named by org.opencontainers.image.title); "
            "container images are pulled with docker, podman or skopeo",
        )
    named = bool(document.layers) and all(
        any(layer.annotation(key) for key in _FILE_NAME_ANNOTATIONS) for layer in document.layers
    )
    if named:
        return ArtifactKind("files", f"an artifact of type {artifact_type} holding named files", True)
    return ArtifactKind(
        "artifact", f"an artifact of type {artifact_type}", False,
        needed="a model artifact: a ModelPack config, or layers named by org.opencontainers.image.title",
    )
