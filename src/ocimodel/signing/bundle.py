"""Sigstore bundle v0.3 signed with a local key: write one, verify one.

sigstore-python neither signs with a local key nor accepts a bundle whose verification
material is a public key, so both directions are written here on ``cryptography``. The
format is what model-signing 1.1.1 (``sign key``) and cosign v3 (``--key``) write:

    {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "verificationMaterial": {"publicKey": {"hint": <sha256 hex of PEM SPKI>}, "tlogEntries": []},
     "dsseEnvelope": {"payload": b64(statement), "payloadType": "application/vnd.in-toto+json",
                      "signatures": [{"sig": b64(DER ECDSA-P256-SHA256 over PAE), "keyid": ""}]}}

Verification trusts only the keys the caller passes. A key, hint or keyid found in the
bundle selects nothing and proves nothing (docs/threats.md 11). Every signature in the
envelope must verify: model-signing checks only the first, which lets a bad signature
ride along with a good one (docs/threats.md 13)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ocimodel.errors import printable
from ocimodel.oci import mediatypes as mt
from ocimodel.signing import dsse
from ocimodel.signing.documents import load_object
from ocimodel.signing.errors import NotAKeyBundle, Reason, VerificationFailed
from ocimodel.signing.keys import PrivateKey, PublicKey, check_p256, key_hint
from ocimodel.signing.statement import Statement, parse_statement

# Kyverno refuses bundle layers over 10 MB; nothing legitimate comes close.
MAX_BUNDLE_BYTES = 10 * 1024 * 1024
# Each signature costs a verification per trusted key: bound the work an envelope can ask for.
MAX_SIGNATURES = 16
# verificationMaterial keys that carry a certificate (v0.3 and the older chain form).
CERTIFICATE_MATERIAL = ("certificate", "x509CertificateChain")


@dataclass(frozen=True)
class VerifiedPayload:
    """What a verified key bundle says, and which trusted key(s) vouched for it."""

    statement: Statement
    payload: bytes  # the exact signed statement bytes
    keys: tuple[PublicKey, ...]  # the trusted key that verified each signature, in order

    @property
    def key(self) -> PublicKey:
        return self.keys[0]


def sign_statement_with_key(statement_bytes: bytes, private_key: PrivateKey) -> bytes:
    """A bundle (JSON bytes) holding ``statement_bytes`` in a DSSE envelope signed with
    ``private_key`` (ECDSA P-256, SHA-256, DER signature)."""
    check_p256(private_key, "signing key")
    signature = private_key.sign(
        dsse.pae(mt.IN_TOTO_PAYLOAD_TYPE, statement_bytes), ec.ECDSA(hashes.SHA256())
    )
    bundle = {
        "mediaType": mt.BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint(private_key)}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": dsse.b64encode(statement_bytes),
            "payloadType": mt.IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": dsse.b64encode(signature), "keyid": ""}],
        },
    }
    return json.dumps(bundle, separators=(",", ":")).encode()


def sign_statement(statement: Statement, private_key: PrivateKey) -> bytes:
    return sign_statement_with_key(statement.to_json(), private_key)


def load_bundle(bundle_bytes: bytes) -> dict:
    """A bundle's JSON after the checks every bundle gets, keyless or not: size cap,
    strict JSON (no duplicate keys), a JSON object, a known bundle media type."""
    document = load_object(
        bundle_bytes, "sigstore bundle", limit=MAX_BUNDLE_BYTES, malformed=Reason.MALFORMED_BUNDLE, short="bundle"
    )
    media_type = document.get("mediaType")
    if media_type not in mt.KNOWN_BUNDLE_MEDIA_TYPES:
        raise VerificationFailed(
            Reason.UNKNOWN_MEDIA_TYPE,
            f"unknown bundle media type {str(media_type)[:120]!r}",
            hint=f"expected {mt.BUNDLE_MEDIA_TYPE}",
        )
    return document


def material_kind(document: dict) -> str:
    """``"publicKey"`` or the certificate field of a bundle's verification material, which
    must hold exactly one of them (docs/threats.md 12: both or neither is refused)."""
    material = document.get("verificationMaterial")
    if not isinstance(material, dict):
        raise VerificationFailed(Reason.MALFORMED_BUNDLE, "bundle has no verificationMaterial object")
    present = [name for name in (*CERTIFICATE_MATERIAL, "publicKey") if name in material]
    if len(present) != 1:
        raise VerificationFailed(
            Reason.VERIFICATION_MATERIAL,
            "bundle verificationMaterial must hold exactly one of certificate or publicKey, "
            f"found {', '.join(present) or 'neither'}",
        )
    return present[0]


def _check_key_material(document: dict) -> None:
    """Exactly one of certificate / public key; a certificate means keyless."""
    if material_kind(document) != "publicKey":
        raise NotAKeyBundle("bundle carries a certificate: it was signed keyless, not with a key")
    if not isinstance(document["verificationMaterial"]["publicKey"], dict):
        raise VerificationFailed(Reason.MALFORMED_BUNDLE, "bundle publicKey is not an object")


def envelope_of(document: dict) -> dsse.Envelope:
    """The DSSE envelope of a bundle, which must carry an in-toto statement."""
    if "messageSignature" in document:
        raise VerificationFailed(
            Reason.NOT_DSSE, "bundle signs a blob (messageSignature), not an in-toto statement"
        )
    if "dsseEnvelope" not in document:
        raise VerificationFailed(Reason.MALFORMED_BUNDLE, "bundle has no dsseEnvelope")
    envelope = dsse.parse_envelope(document["dsseEnvelope"])
    if envelope.payload_type != mt.IN_TOTO_PAYLOAD_TYPE:
        raise VerificationFailed(
            Reason.PAYLOAD_TYPE,
            f"DSSE payload type is {printable(envelope.payload_type, 120)!r}, expected {mt.IN_TOTO_PAYLOAD_TYPE!r}",
        )
    if not envelope.signatures:
        raise VerificationFailed(Reason.NO_SIGNATURES, "DSSE envelope has no signatures")
    if len(envelope.signatures) > MAX_SIGNATURES:
        raise VerificationFailed(
            Reason.TOO_MANY_SIGNATURES,
            f"DSSE envelope has {len(envelope.signatures)} signatures, over the {MAX_SIGNATURES} limit",
        )
    return envelope


def _trusted_key_order(trusted: Sequence[PublicKey], hint: object) -> list[PublicKey]:
    """The trusted keys, the one the hint names first. Only an optimisation: every
    trusted key is still tried, and an unknown hint changes nothing."""
    named = [key for key in trusted if isinstance(hint, str) and key_hint(key) == hint]
    return named + [key for key in trusted if key not in named]


def verify_key_bundle(bundle_bytes: bytes, trusted_public_keys: Sequence[PublicKey]) -> VerifiedPayload:
    """Verify a key-signed bundle against the caller's trusted keys and return its
    statement. Raises :class:`VerificationFailed` (with a :class:`Reason`) on any doubt,
    and :class:`NotAKeyBundle` for a keyless bundle, which the caller dispatches.

    This does not check what the statement is about: the caller must still check its
    subject and predicate type (``statement.check_subject``, ``check_predicate_type``)."""
    if not trusted_public_keys:
        raise VerificationFailed(Reason.NO_TRUSTED_KEYS, "no trusted public keys were given")
    for key in trusted_public_keys:
        check_p256(key, "trusted key")
    document = load_bundle(bundle_bytes)
    _check_key_material(document)
    envelope = envelope_of(document)
    payload = dsse.b64decode_strict(envelope.payload, "DSSE payload")
    signed = dsse.pae(envelope.payload_type, payload)
    candidates = _trusted_key_order(
        trusted_public_keys, document["verificationMaterial"]["publicKey"].get("hint")
    )
    verified_by: list[PublicKey] = []
    for index, entry in enumerate(envelope.signatures, start=1):
        signature = dsse.b64decode_strict(entry.sig, f"signature {index}")
        if not signature:
            raise VerificationFailed(Reason.EMPTY_SIGNATURE, f"signature {index} of the envelope is empty")
        key = _first_key_that_verifies(candidates, signature, signed)
        if key is None:
            raise VerificationFailed(
                Reason.UNTRUSTED_SIGNATURE,
                f"signature {index} of {len(envelope.signatures)} does not verify with any trusted key",
                hint="the model was signed with another key, or the bundle was altered",
            )
        verified_by.append(key)
    # Parsed only now: untrusted JSON is not interpreted before its signature checks out.
    statement = parse_statement(payload)
    return VerifiedPayload(statement=statement, payload=payload, keys=tuple(verified_by))


def unverified_statement(bundle_bytes: bytes) -> Statement:
    """The statement a bundle (key or keyless) carries, parsed strictly but WITHOUT
    checking any signature. Only for choosing among bundles (which one is about these
    files); never a reason to trust anything. Raises VerificationFailed when malformed."""
    document = load_bundle(bundle_bytes)
    envelope = envelope_of(document)
    return parse_statement(dsse.b64decode_strict(envelope.payload, "DSSE payload"))


def _first_key_that_verifies(keys: Sequence[PublicKey], signature: bytes, signed: bytes) -> PublicKey | None:
    for key in keys:
        try:
            key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return key
    return None
