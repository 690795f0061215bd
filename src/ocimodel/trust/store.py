"""Sigstore bundles stored as OCI referrers, in the shape cosign v3 writes and Kyverno's
SigstoreBundle and policy-controller read (docs/signing-facts.md, "The bundle referrer"):

    artifactType  application/vnd.dev.sigstore.bundle.v0.3+json
    config        the empty descriptor ``{}``
    layers        exactly one, of the same media type: the bundle JSON
    subject       the model manifest
    annotations   org.opencontainers.image.created, dev.sigstore.bundle.content: dsse-envelope,
                  dev.sigstore.bundle.predicateType: <predicate URI>

Reading them back is strict, because a referrer is untrusted until its signature and
subject are checked: the manifest is fetched by digest and verified, it must have that
shape exactly, its subject must be the model, and the bundle layer is read only up to its
announced size (at most 10 MiB) and checked against its digest before anything parses it.
A bundle written by ocimodel also sits in the manifest's layer descriptor (``data``,
targets/referrers.push_record), so reading it is one request; that copy is checked against
the same digest and size, and a ``data`` that does not match refuses the referrer.
A referrer that fails any of this is returned as a :class:`RefusedBundle` with the reason,
never raised: one bad referrer must not hide the good ones, nor crash a verification."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ocimodel.errors import IntegrityError, InvalidManifest, NotFound, OcimodelError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Descriptor, Manifest, parse_manifest
from ocimodel.signing.bundle import MAX_BUNDLE_BYTES
from ocimodel.signing.errors import Reason
from ocimodel.targets.base import BlobFetcher, ReferrerReader, WritableTarget
from ocimodel.targets.referrers import push_record, read_small_layer


@runtime_checkable
class BundleReader(ReferrerReader, BlobFetcher, Protocol):
    """What reading bundles back needs: list the referrers, fetch each manifest, read its
    one layer."""


@dataclass(frozen=True)
class StoredBundle:
    """A bundle referrer whose manifest passed the shape checks; the bundle itself is not
    verified yet. ``predicate_type`` is the (unsigned) annotation: a hint, never a fact."""

    referrer: Descriptor
    bundle: bytes
    predicate_type: str | None
    created: str | None


@dataclass(frozen=True)
class RefusedBundle:
    """A bundle referrer that cannot be used, and why."""

    referrer: str  # digest of the referrer manifest
    predicate_type: str | None
    reason: str  # a signing Reason value, or "malformed-referrer"
    detail: str


MALFORMED_REFERRER = "malformed-referrer"


def write_bundle(target: WritableTarget, subject: Descriptor, bundle: bytes, predicate_type: str) -> Descriptor:
    """Store ``bundle`` in an open target as a cosign v3 bundle referrer of ``subject``;
    returns the referrer manifest's descriptor."""
    annotations = {mt.ANNOTATION_BUNDLE_CONTENT: mt.BUNDLE_CONTENT_DSSE, mt.ANNOTATION_BUNDLE_PREDICATE_TYPE: predicate_type}
    return push_record(target, subject, mt.BUNDLE_MEDIA_TYPE, mt.BUNDLE_MEDIA_TYPE, bundle, annotations)


def read_bundles(target: BundleReader, subject_digest: str) -> Iterator[StoredBundle | RefusedBundle]:
    """Every bundle referrer listed for ``subject_digest``, each either read and checked
    (:class:`StoredBundle`) or refused with its reason (:class:`RefusedBundle`).

    A listing the registry cannot give raises: "could not look" must not read as
    "unsigned" any more than as "signed"; the caller denies either way."""
    for listed in target.referrers(subject_digest):
        if not (listed.artifact_type or "").startswith(mt.BUNDLE_ARTIFACT_PREFIX):
            continue  # evaluations, SBOM files, promotion records: not bundles
        yield read_bundle(target, listed, subject_digest)


def read_bundle(target: BundleReader, listed: Descriptor, subject_digest: str) -> StoredBundle | RefusedBundle:
    """One listed bundle referrer, checked strictly (see the module docstring)."""
    hint = (listed.annotations or {}).get(mt.ANNOTATION_BUNDLE_PREDICATE_TYPE)

    def refuse(reason: str, detail: str) -> RefusedBundle:
        return RefusedBundle(referrer=listed.digest, predicate_type=hint, reason=reason, detail=detail)

    if listed.media_type != mt.OCI_MANIFEST:
        return refuse(MALFORMED_REFERRER, f"listed as {listed.media_type[:80]!r}, not an OCI image manifest")
    try:
        data = target.fetch_manifest(listed)
        manifest = parse_manifest(data, mt.OCI_MANIFEST)
    except (InvalidManifest, IntegrityError, NotFound) as exc:
        return refuse(MALFORMED_REFERRER, exc.message)
    if not isinstance(manifest, Manifest):
        return refuse(MALFORMED_REFERRER, "the referrer is an index, not a bundle manifest")
    annotations = manifest.annotations or {}
    hint = annotations.get(mt.ANNOTATION_BUNDLE_PREDICATE_TYPE)
    problem = _shape_problem(manifest, subject_digest)
    if problem is not None:
        return refuse(*problem)
    layer = manifest.layers[0]
    try:
        bundle = read_small_layer(target, layer, f"bundle {layer.digest}")
    except OcimodelError as exc:
        return refuse(MALFORMED_REFERRER, exc.message)
    return StoredBundle(
        referrer=Descriptor(mediaType=mt.OCI_MANIFEST, digest=listed.digest, size=len(data),
                            artifactType=manifest.artifact_type, annotations=annotations or None),
        bundle=bundle,
        predicate_type=hint,
        created=annotations.get(mt.ANNOTATION_CREATED),
    )


def _shape_problem(manifest: Manifest, subject_digest: str) -> tuple[str, str] | None:
    """(reason, detail) if the manifest is not a bundle referrer of ``subject_digest``."""
    if manifest.media_type != mt.OCI_MANIFEST:
        return MALFORMED_REFERRER, f"manifest media type {str(manifest.media_type)[:80]!r} is not {mt.OCI_MANIFEST}"
    if manifest.artifact_type not in mt.KNOWN_BUNDLE_MEDIA_TYPES:
        return Reason.UNKNOWN_MEDIA_TYPE.value, f"unknown bundle artifact type {str(manifest.artifact_type)[:120]!r}"
    if manifest.subject is None or manifest.subject.digest != subject_digest:
        named = manifest.subject.digest if manifest.subject else "no subject"
        return Reason.SUBJECT_MISMATCH.value, f"the referrer's subject is {named}, not {subject_digest}"
    if manifest.config.media_type != mt.OCI_EMPTY or manifest.config.digest != mt.EMPTY_DIGEST:
        return MALFORMED_REFERRER, f"config is {manifest.config.media_type[:80]!r}, not the empty descriptor"
    if len(manifest.layers) != 1:
        return MALFORMED_REFERRER, f"a bundle referrer has exactly one layer, this one has {len(manifest.layers)}"
    layer = manifest.layers[0]
    if layer.media_type not in mt.KNOWN_BUNDLE_MEDIA_TYPES:
        return Reason.UNKNOWN_MEDIA_TYPE.value, f"unknown bundle layer media type {layer.media_type[:120]!r}"
    if layer.size > MAX_BUNDLE_BYTES:
        return Reason.TOO_LARGE.value, f"bundle layer is {layer.size} bytes, over the {MAX_BUNDLE_BYTES} limit"
    content = (manifest.annotations or {}).get(mt.ANNOTATION_BUNDLE_CONTENT)
    if content is not None and content != mt.BUNDLE_CONTENT_DSSE:
        # cosign also stores message-signature bundles; they sign bytes, not a statement.
        return Reason.NOT_DSSE.value, f"bundle content is {content[:40]!r}, not {mt.BUNDLE_CONTENT_DSSE}"
    return None

