"""What the API's modules share: reading a reference, opening the store it names with the
connection bound to its registry, the version-tag guard, reading a model manifest and its
config. Public names, so that no module of the API reaches into another's private ones."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from ocimodel.errors import InvalidManifest, NotAModel, NotFound, RegistryError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Descriptor, Index, Manifest, loads_strict, parse_manifest
from ocimodel.oci.reference import Reference, RegistryReference, parse_reference
from ocimodel.targets.copy import verified
from ocimodel.targets.layout import OciLayout
from ocimodel.targets.open import open_target
from ocimodel.targets.remote import RemoteRepository
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.versiontags import is_version_tag, version_taken

DEFAULT_TAG = "latest"
MAX_CONFIG_BYTES = 4 * 1024 * 1024


class FileEntry(BaseModel):
    path: str
    digest: str
    size: int
    media_type: str
    kind: str | None = None


def as_reference(text: str | Reference) -> Reference:
    return parse_reference(text) if isinstance(text, str) else text


def registry_of(ref: Reference) -> str | None:
    return ref.registry if isinstance(ref, RegistryReference) else None


def bound(connection: ConnectionOptions, *refs: Reference) -> ConnectionOptions:
    """``connection`` with explicit and environment credentials tied to the registry of the
    first of ``refs`` that is in a registry (the destination's, for a copy): they are
    never sent to another registry."""
    return connection.bound_to(next((r for r in map(registry_of, refs) if r is not None), None))


@contextmanager
def open_store(
    connection: ConnectionOptions, ref: Reference, *, for_write: bool = False
) -> Iterator[OciLayout | RemoteRepository]:
    """The store ``ref`` names, opened with ``connection`` bound to its registry.

    A layout is never created here: every caller adds to (or removes from) a model that
    is already in the store, so a mistyped layout path is NotFound, not a new empty
    layout left behind (push and copy, which create one, call open_target)."""
    with open_target(ref, bound(connection, ref), for_write=False) as target:
        yield target


def check_version_tag(target: OciLayout | RemoteRepository, tag: str, digest: str, force: bool) -> None:
    """Versions are immutable: a tag that names a version and holds another model is not
    silently moved (aliases such as ``latest`` or ``production`` are, by design).

    This is the early check, made before uploading so that a taken version fails fast;
    the tag write itself is the check-and-set that decides (versiontags.py). So a read
    answered 500, as distribution answers while a racer rewrites the tag, leaves the
    decision to that write instead of failing the push."""
    if force or not is_version_tag(tag):
        return
    try:
        existing = target.resolve(tag)
    except NotFound:
        return
    except RegistryError as exc:
        if exc.status != 500:
            raise
        return
    if existing.digest != digest:
        raise version_taken(f"{target.name}:{tag}", existing.digest, digest, stored=False)


def client_retries(*targets: object) -> int:
    """Requests the registry clients of ``targets`` retried (and blob downloads resumed);
    a layout makes no requests."""
    return sum(t.client.stats.total for t in targets if isinstance(t, RemoteRepository))


def model_manifest(data: bytes, root: Descriptor, shown: str) -> Manifest:
    parsed = parse_manifest(data, root.media_type)
    if isinstance(parsed, Index):
        raise NotAModel(
            f"{shown} is an image index, not a model manifest",
            hint="pull one of its manifests by digest (`ocimodel inspect` lists them)",
        )
    return parsed


def read_config(source, descriptor: Descriptor) -> dict[str, Any] | None:
    """The config as JSON if it is small JSON; other configs are reported by descriptor only."""
    if descriptor.size > MAX_CONFIG_BYTES or not descriptor.media_type.endswith("json"):
        return None
    with source.open_blob(descriptor) as chunks:
        data = b"".join(verified(chunks, descriptor))
    try:
        document = loads_strict(data, "config")
    except InvalidManifest:
        return None
    return document if isinstance(document, dict) else None


def file_entry(path: str, layer: Descriptor, kind: str | None = None) -> FileEntry:
    """``kind``: the layer's kind when its media type is not a ModelPack one (a ModelKit's)."""
    parsed = mt.parse_model_layer(layer.media_type)
    return FileEntry(path=path, digest=layer.digest, size=layer.size, media_type=layer.media_type,
                     kind=kind or (parsed[0] if parsed else None))
