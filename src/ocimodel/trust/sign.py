"""Sign a model: statements about its manifest, signed with a key or keyless, stored as
bundle referrers.

``sign_model`` writes two bundles by default:

- the cosign signature: predicate ``https://sigstore.dev/cosign/sign/v1`` about the
  manifest digest, which covers config, annotations and every layer (what ``cosign
  verify`` and Kyverno check);
- the OpenSSF model-signing file statement: predicate ``https://model_signing/signature/v1.0``
  over the files, so that ``model_signing verify`` accepts the pulled directory.

Both are signed before either is written: a signer that fails half-way (a wrong
password, an expired token) leaves the model as it was."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ocimodel.errors import UsageError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Descriptor, Manifest, parse_manifest
from ocimodel.signing.bundle import sign_statement_with_key
from ocimodel.signing.errors import FileSignatureUnsupported, SigningError
from ocimodel.signing.files_statement import MODEL_SIGNING_PREDICATE, files_statement_for_manifest
from ocimodel.signing.keys import PrivateKey, key_hint
from ocimodel.signing.statement import (
    COSIGN_SIGN_PREDICATE,
    Statement,
    Subject,
    signature_statement,
)
from ocimodel.targets.base import ReferrerWriter, WritableTarget
from ocimodel.trust.store import write_bundle


class BundleSigner(Protocol):
    """Turns statement bytes into a Sigstore bundle (JSON bytes)."""

    description: str

    def sign(self, statement: bytes) -> bytes: ...


@dataclass(frozen=True)
class KeySigner:
    """ECDSA P-256 with a local private key; the bundle names the key only by its hint."""

    private_key: PrivateKey

    @property
    def description(self) -> str:
        return f"key {key_hint(self.private_key)[:16]}"

    def sign(self, statement: bytes) -> bytes:
        return sign_statement_with_key(statement, self.private_key)


@dataclass(frozen=True)
class KeylessSigner:
    """Sigstore keyless: an OIDC identity token, a Fulcio certificate, a Rekor entry."""

    identity_token: str | None = None  # None: the ambient credential (CI) or a browser flow
    trust_config: Path | None = None
    staging: bool = False

    @property
    def description(self) -> str:
        return "keyless (Sigstore staging)" if self.staging else "keyless (Sigstore)"

    def sign(self, statement: bytes) -> bytes:
        try:
            from ocimodel.trust import keyless
        except ImportError as exc:
            if exc.name not in ("ocimodel.trust.keyless", None):
                raise
            raise SigningError(
                "keyless signing is not available in this installation", hint="sign with a key (--key)"
            ) from None
        return keyless.sign_keyless(
            statement, identity_token=self.identity_token, trust_config=self.trust_config, staging=self.staging
        )


@dataclass(frozen=True)
class WrittenBundle:
    predicate_type: str
    referrer: Descriptor


def model_name(manifest: Manifest, fallback: str) -> str:
    """The name model-signing records as the subject name (informative only)."""
    annotations = manifest.annotations or {}
    return annotations.get(mt.ANNOTATION_TITLE) or fallback


def named(statement: Statement, name: str) -> Statement:
    """The statement with ``name`` on subjects that have none. Verifiers match the digest
    only (the name is informative), but sigstore-python refuses to sign a statement whose
    subject has no name, so every statement we sign carries one."""
    if all(subject.name for subject in statement.subject):
        return statement
    subjects = [s if s.name else Subject(name=name, digest=s.digest) for s in statement.subject]
    return statement.model_copy(update={"subject": subjects})


def sign_model(
    target: ReferrerWriter,
    root: Descriptor,
    manifest_bytes: bytes,
    signer: BundleSigner,
    *,
    file_signature: bool = True,
    name: str = "model",
) -> list[WrittenBundle]:
    """Sign the manifest ``root`` in an open target and store the bundles as its referrers."""
    manifest = parse_manifest(manifest_bytes, root.media_type)
    if isinstance(manifest, Manifest):
        name = model_name(manifest, name)
    statements: list[Statement] = [named(signature_statement(root.digest), name)]
    if file_signature:
        if not isinstance(manifest, Manifest):
            raise FileSignatureUnsupported(
                f"{root.digest} is an index: a file-level signature needs a model manifest",
                hint="sign without the file-level signature (--no-file-signature)",
            )
        try:
            statements.append(files_statement_for_manifest(manifest, name))
        except FileSignatureUnsupported as exc:
            raise FileSignatureUnsupported(
                exc.message, hint="sign without the file-level signature (--no-file-signature)"
            ) from None
    bundles = [(s.predicate_type, signer.sign(s.to_json())) for s in statements]
    with target.batched_referrers():  # one referrers-index update for both bundles
        return [
            WrittenBundle(predicate_type=predicate, referrer=write_bundle(target, root, bundle, predicate))
            for predicate, bundle in bundles
        ]


def attest_model(
    target: WritableTarget, root: Descriptor, statement: Statement, signer: BundleSigner, *, name: str = "model"
) -> WrittenBundle:
    """Sign an attestation statement about ``root`` and store it as a bundle referrer."""
    if statement.predicate_type in (COSIGN_SIGN_PREDICATE, MODEL_SIGNING_PREDICATE):
        # An attestation carrying a signature's predicate would be counted as a signature.
        raise UsageError(
            f"{statement.predicate_type} is a signature predicate, not an attestation type",
            hint="use `ocimodel sign` to sign the model",
        )
    bundle = signer.sign(named(statement, name).to_json())
    return WrittenBundle(
        predicate_type=statement.predicate_type,
        referrer=write_bundle(target, root, bundle, statement.predicate_type),
    )
