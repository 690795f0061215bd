"""Typed errors of the signing layer.

A policy engine needs more than "it failed": :class:`VerificationFailed` carries a short,
stable ``reason`` (a :class:`Reason`) that can be logged, counted and asserted in tests,
beside the one-line message a person reads. Every check that refuses a signature raises
it (or a subclass), so ``except VerificationFailed`` is always a deny."""

from __future__ import annotations

from enum import StrEnum

from ocimodel.errors import OcimodelError, UsageError


class Reason(StrEnum):
    """Why a signature, bundle or statement was refused. Values are stable strings."""

    TOO_LARGE = "too-large"
    MALFORMED_BUNDLE = "malformed-bundle"
    UNKNOWN_MEDIA_TYPE = "unknown-media-type"
    VERIFICATION_MATERIAL = "verification-material"  # certificate and key both, or neither
    NOT_A_KEY_BUNDLE = "not-a-key-bundle"  # keyless: verified elsewhere
    NOT_DSSE = "not-dsse"  # a messageSignature bundle signs bytes, not a statement
    MALFORMED_ENVELOPE = "malformed-envelope"
    PAYLOAD_TYPE = "payload-type"
    NO_SIGNATURES = "no-signatures"
    TOO_MANY_SIGNATURES = "too-many-signatures"
    EMPTY_SIGNATURE = "empty-signature"
    BAD_BASE64 = "bad-base64"
    NO_TRUSTED_KEYS = "no-trusted-keys"
    UNTRUSTED_SIGNATURE = "untrusted-signature"  # no trusted key verifies it
    MALFORMED_STATEMENT = "malformed-statement"
    DUPLICATE_KEY = "duplicate-key"
    STATEMENT_TYPE = "statement-type"
    EMPTY_SUBJECT = "empty-subject"
    SUBJECT_MISMATCH = "subject-mismatch"
    PREDICATE_TYPE = "predicate-type"
    MALFORMED_PREDICATE = "malformed-predicate"
    UNSUPPORTED_SERIALIZATION = "unsupported-serialization"
    ROOT_MISMATCH = "root-mismatch"
    UNSORTED_RESOURCES = "unsorted-resources"
    DUPLICATE_RESOURCE = "duplicate-resource"
    UNSAFE_NAME = "unsafe-name"
    UNSIGNED_FILE = "unsigned-file"
    MISSING_FILE = "missing-file"
    FILE_DIGEST_MISMATCH = "file-digest-mismatch"
    UNSUPPORTED_FILE = "unsupported-file"  # symlink or special file in a directory
    # Keyless (Sigstore certificate) verification: ocimodel.trust.keyless
    NOT_A_KEYLESS_BUNDLE = "not-a-keyless-bundle"  # a key bundle: verified elsewhere
    NO_IDENTITIES = "no-identities"  # no (identity, issuer) pair to accept, or an empty one
    TRUST_ROOT_UNAVAILABLE = "trust-root-unavailable"  # missing / unreadable trusted root
    TRUST_ROOT_INVALID = "trust-root-invalid"  # not a usable trusted_root.json
    TRUST_ROOT_STALE = "trust-root-stale"  # its authorities were not valid at signing time
    IDENTITY_MISMATCH = "identity-mismatch"  # certificate SAN is not an allowed identity
    ISSUER_MISMATCH = "issuer-mismatch"  # allowed SAN, but from another OIDC issuer
    UNTRUSTED_CHAIN = "untrusted-chain"  # certificate does not chain to the trusted root
    CERTIFICATE_NOT_VALID_AT_SIGNING = "certificate-not-valid-at-signing"  # expired / not yet
    CERTIFICATE_USAGE = "certificate-usage"  # no code-signing EKU / digital signature usage
    BAD_SCT = "bad-sct"  # certificate transparency proof missing or not by a trusted CT log
    NO_VERIFIED_TIME = "no-verified-time"
    BAD_TIMESTAMP = "bad-timestamp"  # RFC 3161 timestamp problems
    LOG_ENTRY_MISMATCH = "log-entry-mismatch"  # the log entry is for other content
    BAD_INCLUSION_PROOF = "bad-inclusion-proof"
    BAD_CHECKPOINT = "bad-checkpoint"
    BAD_SET = "bad-set"  # signed entry timestamp (inclusion promise)
    BAD_LOG_ENTRY = "bad-log-entry"  # any other transparency log entry failure
    KEYLESS_UNVERIFIED = "keyless-unverified"  # any other sigstore verification failure
    # Policy rules (ocimodel.trust.verify): why a rule failed when no bundle was refused
    UNSIGNED = "unsigned"  # no signature or attestation refers to the model at all
    MISSING_ATTESTATION = "missing-attestation"  # no valid attestation of the required type
    MISSING_SIGNER = "missing-signer"  # all-of: some, not all, of the required signers signed
    LICENSE_DENIED = "license-denied"  # the licenses rule denied the model's licenses (docs/licenses.md)


class SigningError(OcimodelError):
    """Base of the signing layer's errors."""


class KeyLoadError(SigningError, UsageError):
    """A key file is missing, unreadable, not PEM, or the password is wrong: what the user
    gave cannot be used (exit 2 at the CLI), not a verdict on the model."""


class KeyPasswordRequired(KeyLoadError):
    """The private key is encrypted and no password was given (argument or environment).
    The CLI catches this one to prompt."""


class UnsupportedKey(KeyLoadError):
    """The key is not ECDSA P-256, the only algorithm we sign and verify with (cosign and
    model-signing interoperate on it)."""


class FileSignatureUnsupported(SigningError):
    """The model's manifest cannot be described as a file-level statement without
    downloading it (a tar layer, a layer without a file path, a digest that is not sha256)."""


class VerificationFailed(SigningError):
    """A signature, bundle or statement was refused. ``reason`` says which check failed."""

    def __init__(self, reason: Reason, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class NotAKeyBundle(VerificationFailed):
    """The bundle carries a certificate (keyless signing): the keyless verifier handles it.
    Still a VerificationFailed, so a caller that does not dispatch denies."""

    def __init__(self, message: str) -> None:
        super().__init__(
            Reason.NOT_A_KEY_BUNDLE,
            message,
            hint="verify it with an identity and issuer (keyless), not with a public key",
        )
