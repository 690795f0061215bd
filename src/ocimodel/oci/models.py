"""OCI descriptors, manifests and indexes as pydantic models.

Parsing is strict where a lie could hurt (digests, sizes, schemaVersion, media type,
duplicate JSON keys, size caps) and lenient about fields we do not use, so that manifests
written by other tools still load. A manifest fetched from a store is never re-serialised:
its raw bytes are what is copied and hashed; these models are for reading them."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ocimodel.errors import InvalidDigest, InvalidManifest
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import digest_bytes, validate_digest

# distribution refuses manifests over 4 MiB; nothing legitimate comes close, so the cap is
# applied before parsing (docs/threats.md 5).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

Digest = Annotated[str, AfterValidator(validate_digest)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    def to_json(self) -> bytes:
        """Canonical bytes for a manifest we author: field order fixed, no nulls, no spaces."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class Platform(_Model):
    architecture: str
    os: str
    variant: str | None = None


class Descriptor(_Model):
    media_type: str = Field(alias="mediaType")
    digest: Digest
    # A JSON integer in int64 range, nothing pydantic would coerce ("1", true, 1.0).
    size: int = Field(ge=0, le=2**63 - 1, strict=True)
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    artifact_type: str | None = Field(default=None, alias="artifactType")
    platform: Platform | None = None
    # The content itself, base64 (image spec 1.1 "embedded content"): a copy of what the
    # digest names, never believed before it is checked against digest and size
    # (targets/referrers.read_small_layer).
    data: str | None = None

    @classmethod
    def for_bytes(
        cls, media_type: str, data: bytes, annotations: dict[str, str] | None = None
    ) -> Descriptor:
        return cls(
            mediaType=media_type, digest=digest_bytes(data), size=len(data), annotations=annotations
        )

    def annotation(self, key: str) -> str | None:
        return (self.annotations or {}).get(key)


class Manifest(_Model):
    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    artifact_type: str | None = Field(default=None, alias="artifactType")
    config: Descriptor
    layers: list[Descriptor] = Field(default_factory=list)
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None

    @property
    def effective_artifact_type(self) -> str:
        """artifactType, or the config media type as the image spec says to fall back to."""
        return self.artifact_type or self.config.media_type


class Index(_Model):
    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    artifact_type: str | None = Field(default=None, alias="artifactType")
    manifests: list[Descriptor] = Field(default_factory=list)
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


def loads_strict(data: bytes, what: str = "JSON document") -> Any:
    """json.loads that refuses duplicate keys (two parsers could disagree on which wins)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise InvalidManifest(f"{what} has a duplicate key {key[:80]!r}")
            result[key] = value
        return result

    try:
        return json.loads(data, object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifest(f"{what} is not valid JSON: {exc}") from None


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse manifest bytes into a Manifest or an Index.

    ``media_type`` is what the store announced (Content-Type or descriptor); when both it and
    the document's own ``mediaType`` are present they must agree."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} limit")
    document = loads_strict(data, "manifest")
    if not isinstance(document, dict):
        raise InvalidManifest("manifest is not a JSON object")
    version = document.get("schemaVersion")
    if type(version) is not int or version != 2:
        raise InvalidManifest(f"unsupported manifest schemaVersion {str(version)[:40]!r}")
    declared = document.get("mediaType")
    if declared is not None and declared not in mt.MANIFEST_TYPES + mt.INDEX_TYPES:
        raise InvalidManifest(f"unsupported manifest media type {str(declared)[:100]!r}")
    if declared is not None and media_type is not None and declared != media_type:
        if not (media_type.startswith("application/json") or media_type == "text/plain"):
            raise InvalidManifest(
                f"manifest says it is {declared!r} but was served as {media_type!r}"
            )
    kind = declared or media_type
    if kind not in mt.MANIFEST_TYPES and kind not in mt.INDEX_TYPES:
        # Neither told us; the shape decides (the image spec allows omitting mediaType).
        kind = mt.OCI_INDEX if "manifests" in document else mt.OCI_MANIFEST
        if "manifests" not in document and "config" not in document:
            raise InvalidManifest(f"unsupported manifest media type {declared or media_type!r}")
    try:
        if kind in mt.INDEX_TYPES:
            return Index.model_validate(document)
        return Manifest.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidManifest(f"malformed manifest at {where or 'top level'}: {first['msg']}") from None
    except InvalidDigest as exc:  # pragma: no cover - pydantic wraps validator errors
        raise InvalidManifest(f"malformed manifest: {exc}") from None


def media_type_of(data: bytes) -> str:
    """The mediaType a manifest declares about itself (for stores that do not record it)."""
    document = loads_strict(data, "manifest")
    declared = document.get("mediaType") if isinstance(document, dict) else None
    if isinstance(declared, str):
        return declared
    return mt.OCI_INDEX if isinstance(document, dict) and "manifests" in document else mt.OCI_MANIFEST
