"""Keyless (Sigstore) signatures: sign an in-toto statement with an OIDC identity, and verify
one against allowed ``(identity, issuer)`` pairs.

Signing is sigstore-python's real ``Signer.sign_dsse``: an ephemeral P-256 key, a Fulcio
certificate for the caller's OIDC identity, an entry in Rekor. The result is a Sigstore
bundle v0.3 (JSON bytes) holding a DSSE envelope (``application/vnd.in-toto+json``) over
the statement, the same format cosign v3 and model-signing write.

API
===

``sign_keyless(statement_bytes, *, identity_token, trust_config=None, staging=False,
signing_context=None) -> bytes``
    The identity token is the argument, else ``OIDC_ENV_VARS`` (``OCIMODEL_IDENTITY_TOKEN``,
    then ``SIGSTORE_ID_TOKEN``), else an ambient CI credential
    (``sigstore.oidc.detect_credential()``: GitHub Actions with ``id-token: write``, GitLab,
    Buildkite, CircleCI, GCP); otherwise :class:`IdentityTokenMissing`. There is no
    interactive browser sign-in. The Sigstore instance is ``trust_config`` (a
    ClientTrustConfig JSON file, for a private instance), else staging if ``staging``, else
    the public-good production instance (both loaded through TUF: network). ``signing_context``
    (a ready ``sigstore.sign.SigningContext``) replaces all of that; tests inject one.
    Errors: :class:`KeylessSigningError` (and its subclasses), ``UsageError`` for
    contradictory arguments.

``verify_keyless(bundle_bytes, *, trusted_root=None, identities, offline=True)
-> KeylessVerified``
    Raises :class:`~ocimodel.signing.errors.VerificationFailed` (with a ``Reason``) on any
    doubt, never anything else for a bad bundle or trust root:

    1. strict input, before sigstore sees it: at most ``MAX_BUNDLE_BYTES``; duplicate JSON
       keys refused; media type ``application/vnd.dev.sigstore.bundle.v0.3+json`` or
       ``application/vnd.dev.sigstore.bundle+json;version=0.3``; a DSSE envelope with
       exactly one signature and payload type ``application/vnd.in-toto+json``. A bundle
       whose verification material is a public key raises ``Reason.NOT_A_KEYLESS_BUNDLE``:
       the caller dispatches it to ``ocimodel.signing.verify_key_bundle`` (the mirror of
       ``NotAKeyBundle``).
    2. the trust root: ``trusted_root`` (a ``trusted_root.json`` file, read offline), else,
       when ``offline`` (the default), the public-good production root shipped inside the
       sigstore-python package, *without a TUF refresh*. Never the copy sigstore-python
       keeps in the user cache dir (``XDG_CACHE_HOME``): offline, sigstore-python reads that
       file without checking any TUF signature, so whoever can write the cache would
       decide which keyless signatures count. The shipped root can be out of date: a key
       rotated or revoked after that sigstore-python release is not noticed. Pass
       ``offline=False`` to refresh the root through TUF (network; the refreshed root is
       checked against the signed TUF metadata), or a ``trusted_root`` file kept current
       by other means. A missing, unreadable or malformed root fails closed
       (``TRUST_ROOT_UNAVAILABLE`` / ``TRUST_ROOT_INVALID``). The root is read on every
       call (no cache here), from bytes read once (never re-read after the checks).
    3. ``sigstore.verify.Verifier.verify_dsse`` with policy
       ``AnyOf([Identity(identity=i, issuer=s) for (i, s) in identities])``: the certificate
       chains to the root at the log's (or a TSA's) verified time, SCT, code-signing EKU,
       identity (exact SAN match, exact issuer match; cosign's ``--certificate-identity`` /
       ``--certificate-oidc-issuer``), inclusion proof, checkpoint, SET, log entry matching
       the envelope, DSSE signature. Every exception it raises (``VerificationError``,
       ``CertValidationError``, cryptography's ``ExtensionNotFound`` for a leaf without EKU,
       ``InvalidBundle``, ``ValueError``...) becomes a ``VerificationFailed`` whose reason
       names the failed check (see ``_classify``).
    4. what sigstore-python does not check: the certificate authority that issued the leaf,
       and the log that signed the entry, must have been valid (``validFor`` in the trusted
       root) at the verified signing time, else ``TRUST_ROOT_STALE``; the entry's
       ``logId`` must name a log of the trusted root.
    5. the verified payload type is in-toto, the payload sigstore verified is the very
       payload ocimodel decoded, and the statement parses strictly
       (``ocimodel.signing.statement.parse_statement``).

    It does not check what the statement is about: the caller checks its subject and
    predicate type (``check_subject``, ``check_predicate_type``), as for key bundles.

``KeylessVerified`` (what the policy engine reads)
    ``statement`` and ``payload`` as in ``ocimodel.signing.VerifiedPayload``; instead of
    ``keys``: ``identity`` and ``issuer``, the allowed pair that matched the certificate
    (the first in the caller's order), ``signer`` == ``"identity (issuer)"``,
    ``signed_at`` (the verified signing time) and ``certificate`` (the verified leaf).

``identity_token_from_environment() -> str | None``
    The token from ``OIDC_ENV_VARS`` or ambient CI credentials, else None. Raises
    :class:`KeylessSigningError` when a CI environment is detected but its credential
    cannot be obtained (e.g. GitHub Actions without ``id-token: write``).

Reasons used (``ocimodel.signing.errors.Reason``): TOO_LARGE, DUPLICATE_KEY,
MALFORMED_BUNDLE, UNKNOWN_MEDIA_TYPE, VERIFICATION_MATERIAL, NOT_A_KEYLESS_BUNDLE, NOT_DSSE,
MALFORMED_ENVELOPE, PAYLOAD_TYPE, NO_SIGNATURES, TOO_MANY_SIGNATURES, BAD_BASE64,
NO_IDENTITIES, TRUST_ROOT_UNAVAILABLE, TRUST_ROOT_INVALID, TRUST_ROOT_STALE,
IDENTITY_MISMATCH, ISSUER_MISMATCH, UNTRUSTED_CHAIN, CERTIFICATE_NOT_VALID_AT_SIGNING,
CERTIFICATE_USAGE, BAD_SCT, NO_VERIFIED_TIME, BAD_TIMESTAMP, LOG_ENTRY_MISMATCH,
BAD_INCLUSION_PROOF, BAD_CHECKPOINT, BAD_SET, BAD_LOG_ENTRY, UNTRUSTED_SIGNATURE,
KEYLESS_UNVERIFIED (anything else), plus those of ``parse_statement``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509 import ExtensionNotFound
from sigstore.dsse import Statement as SigstoreStatement
from sigstore.errors import CertValidationError
from sigstore.errors import VerificationError as SigstoreVerificationError
from sigstore.models import Bundle, ClientTrustConfig, TrustedRoot
from sigstore.oidc import IdentityError, IdentityToken, detect_credential
from sigstore.sign import SigningContext
from sigstore.verify import Verifier
from sigstore.verify.policy import AnyOf, Identity
from sigstore_models.trustroot import v1 as trustroot_v1

from ocimodel.chunks import FileTooLarge, NotARegularFile, read_capped
from ocimodel.errors import InvalidManifest, UsageError, printable
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import loads_strict
from ocimodel.signing import dsse
from ocimodel.signing.bundle import envelope_of, load_bundle, material_kind
from ocimodel.signing.errors import Reason, SigningError, VerificationFailed
from ocimodel.signing.statement import Statement, parse_statement

__all__ = [
    "OIDC_ENV_VARS",
    "IdentityTokenMissing",
    "KeylessSigningError",
    "KeylessVerified",
    "identity_token_from_environment",
    "sign_keyless",
    "verify_keyless",
]

# Read in this order; the first non-empty one wins.
OIDC_ENV_VARS = ("OCIMODEL_IDENTITY_TOKEN", "SIGSTORE_ID_TOKEN")
# The public-good root is ~10 KB; anything near this is not a trust root.
MAX_TRUSTED_ROOT_BYTES = 4 * 1024 * 1024
MAX_TRUST_CONFIG_BYTES = 4 * 1024 * 1024
# OIDC issuer extension of Fulcio certificates (v1, what sigstore's Identity policy reads).
_OIDC_ISSUER_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_SIGSTORE_OTHERNAME_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")

_TOKEN_HINT = (
    "pass an OIDC identity token (--identity-token), or set OCIMODEL_IDENTITY_TOKEN or "
    "SIGSTORE_ID_TOKEN, or run in CI with ambient credentials (GitHub Actions: "
    "`permissions: id-token: write`); ocimodel never opens a browser for an interactive sign-in"
)


# --------------------------------------------------------------------------- errors


class KeylessSigningError(SigningError):
    """Keyless signing could not produce a bundle (token, trust config, Fulcio, Rekor...)."""


class IdentityTokenMissing(KeylessSigningError):
    """No OIDC identity token: none given, none in the environment, no ambient CI credential."""

    def __init__(self) -> None:
        super().__init__("no OIDC identity token for keyless signing", hint=_TOKEN_HINT)


# --------------------------------------------------------------------------- signing


def identity_token_from_environment() -> str | None:
    """An OIDC identity token from ``OIDC_ENV_VARS`` or ambient CI credentials, else None."""
    for name in OIDC_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    try:
        ambient = detect_credential()
    except IdentityError as exc:
        raise KeylessSigningError(
            f"ambient CI credential detection failed: {printable(str(exc))}",
            hint=printable(" ".join(exc.diagnostics().split()), 600),
        ) from exc
    return ambient.strip() if ambient and ambient.strip() else None


def sign_keyless(
    statement_bytes: bytes,
    *,
    identity_token: str | None,
    trust_config: Path | None = None,
    staging: bool = False,
    signing_context: SigningContext | None = None,
) -> bytes:
    """A Sigstore bundle v0.3 (JSON bytes): a DSSE envelope over ``statement_bytes`` (an
    in-toto Statement v1, payload type ``application/vnd.in-toto+json``) signed keyless."""
    if signing_context is not None and (trust_config is not None or staging):
        raise UsageError("give either a signing context or a trust config / staging, not both")
    if trust_config is not None and staging:
        raise UsageError("give either a trust config or staging, not both")
    statement_bytes = bytes(statement_bytes)
    try:
        parse_statement(statement_bytes)  # sign only what verify_keyless would accept
    except VerificationFailed as exc:
        raise KeylessSigningError(f"refusing to sign: {exc.message}") from None

    raw = identity_token.strip() if identity_token else None
    if not raw:
        raw = identity_token_from_environment()
    if not raw:
        raise IdentityTokenMissing()
    try:
        token = IdentityToken(raw)
    except IdentityError as exc:
        # The message never quotes the token (a credential).
        raise KeylessSigningError(
            f"the OIDC identity token was refused: {printable(str(exc))}",
            hint="use a fresh, unexpired token issued for the audience 'sigstore'",
        ) from None

    context = signing_context if signing_context is not None else _signing_context(trust_config, staging)
    try:
        # The default (cache=True) signer: in sigstore 4.5.1, cache=False writes bundles
        # that do not verify.
        with context.signer(token) as signer:
            bundle = signer.sign_dsse(SigstoreStatement(statement_bytes))
    except Exception as exc:  # Fulcio, Rekor, SCT check, expired token/certificate, network
        raise KeylessSigningError(
            f"keyless signing failed ({type(exc).__name__}): {printable(str(exc), 300)}",
            hint="check the identity token and that the Sigstore instance (Fulcio, Rekor) is reachable",
        ) from exc
    return bundle.to_json().encode()


def _signing_context(trust_config: Path | None, staging: bool) -> SigningContext:
    if trust_config is not None:
        path = Path(trust_config)
        try:
            data = read_capped(path, MAX_TRUST_CONFIG_BYTES)
        except FileTooLarge:
            raise UsageError(f"the Sigstore trust config {path} is too large") from None
        except OSError as exc:
            # The file the user named: a usage error (exit 2), not a signing failure.
            raise UsageError(f"cannot read the Sigstore trust config {path}: {exc.strerror or exc}") from None
        try:
            loads_strict(data, "Sigstore trust config")
            config = ClientTrustConfig.from_json(data.decode("utf-8"))
            return SigningContext.from_trust_config(config)
        except Exception as exc:  # noqa: BLE001 - any failure is a typed error
            message = exc.message if isinstance(exc, InvalidManifest) else printable(str(exc), 300)
            raise UsageError(
                f"{path} is not a usable Sigstore trust config (ClientTrustConfig): {message}",
                hint="expected application/vnd.dev.sigstore.clienttrustconfig.v0.1+json "
                "with a trustedRoot and a signingConfig",
            ) from None
    which = "staging" if staging else "production"
    try:
        config = ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
        return SigningContext.from_trust_config(config)
    except Exception as exc:  # noqa: BLE001 - any failure is a typed error
        raise KeylessSigningError(
            f"cannot load the Sigstore {which} trust config through TUF: {printable(str(exc), 300)}",
            hint="keyless signing with the public instance needs network access; for a private "
            "instance pass a ClientTrustConfig file (--trust-config)",
        ) from None


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class KeylessVerified:
    """What a verified keyless bundle says, and which allowed identity signed it.

    ``statement`` / ``payload`` mean what they mean in ``VerifiedPayload``; ``identity`` and
    ``issuer`` are the caller's allowed pair that matched the certificate."""

    statement: Statement
    payload: bytes  # the exact signed statement bytes
    identity: str  # certificate SAN (e-mail, URI...), exactly as allowed
    issuer: str  # OIDC issuer of the certificate, exactly as allowed
    signed_at: dt.datetime | None  # the log's SET-verified time, else a TSA's (UTC)
    certificate: x509.Certificate  # the verified signing (leaf) certificate

    @property
    def signer(self) -> str:
        return f"{self.identity} ({self.issuer})"


def verify_keyless(
    bundle_bytes: bytes,
    *,
    trusted_root: Path | None = None,
    identities: list[tuple[str, str]],
    offline: bool = True,
) -> KeylessVerified:
    """Verify a keyless bundle; see the module docstring for every step."""
    allowed = _allowed_identities(identities)
    document, payload = _load_keyless_bundle(bundle_bytes)
    root, root_document = _load_trust_root(trusted_root, offline)
    try:
        verifier = Verifier(trusted_root=root)
    except Exception as exc:  # noqa: BLE001 - fail closed on any error
        raise VerificationFailed(
            Reason.TRUST_ROOT_INVALID, f"unusable trusted root: {printable(str(exc), 300)}"
        ) from None
    try:
        bundle = Bundle.from_json(bytes(bundle_bytes))
    except Exception as exc:  # noqa: BLE001 - fail closed on any error
        raise VerificationFailed(
            Reason.MALFORMED_BUNDLE, f"sigstore refused the bundle: {printable(str(exc), 300)}"
        ) from None

    policy = _RecordingPolicy(allowed)
    try:
        payload_type, verified_payload = verifier.verify_dsse(bundle, policy)
    except Exception as exc:  # noqa: BLE001 - fail closed on any error
        raise _classify(exc, policy) from None

    certificate = bundle.signing_certificate
    times = _signing_times(document, bundle)
    _check_authorities_in_time(root_document, document, certificate, times)
    if payload_type != mt.IN_TOTO_PAYLOAD_TYPE:
        raise VerificationFailed(
            Reason.PAYLOAD_TYPE,
            f"DSSE payload type is {printable(payload_type, 120)!r}, expected {mt.IN_TOTO_PAYLOAD_TYPE!r}",
        )
    if verified_payload != payload:
        # sigstore's parser and ours read different payloads out of the same JSON.
        raise VerificationFailed(
            Reason.MALFORMED_ENVELOPE, "the verified DSSE payload differs from the envelope's payload"
        )
    matched = policy.matched or _first_match(allowed, certificate)
    if matched is None:  # cannot happen after a passed policy; never allow on doubt
        raise VerificationFailed(Reason.IDENTITY_MISMATCH, "no allowed identity matches the certificate")
    statement = parse_statement(verified_payload)
    log_time = times[0] if times and times[0][0] == "log" else None
    signed_at = log_time[1] if log_time else (min(t for _, t in times) if times else None)
    return KeylessVerified(
        statement=statement,
        payload=verified_payload,
        identity=matched[0],
        issuer=matched[1],
        signed_at=signed_at,
        certificate=certificate,
    )


# ---- inputs


def _allowed_identities(identities: object) -> tuple[tuple[str, str], ...]:
    if isinstance(identities, (str, bytes)) or not identities:
        raise VerificationFailed(
            Reason.NO_IDENTITIES,
            "no allowed (identity, issuer) pair was given",
            hint="name the signer: --certificate-identity and --certificate-oidc-issuer",
        )
    allowed: list[tuple[str, str]] = []
    for pair in identities:  # type: ignore[attr-defined]
        if (
            not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(part, str) and part.strip() for part in pair)
        ):
            # An empty issuer would make sigstore's Identity policy skip the issuer check.
            raise VerificationFailed(
                Reason.NO_IDENTITIES,
                "each allowed signer must be a non-empty (identity, issuer) pair",
            )
        allowed.append((pair[0], pair[1]))
    return tuple(allowed)


def _load_keyless_bundle(bundle_bytes: bytes) -> tuple[dict[str, Any], bytes]:
    """The bundle JSON and its decoded DSSE payload, after every structural check."""
    if not isinstance(bundle_bytes, (bytes, bytearray, memoryview)):
        raise VerificationFailed(Reason.MALFORMED_BUNDLE, "bundle must be bytes")
    data = bytes(bundle_bytes)
    document = load_bundle(data)
    if material_kind(document) == "publicKey":
        raise VerificationFailed(
            Reason.NOT_A_KEYLESS_BUNDLE,
            "bundle was signed with a key (publicKey verification material), not keyless",
            hint="verify it with a trusted public key, not with an identity and issuer",
        )
    envelope = envelope_of(document)
    if not envelope.signatures:
        raise VerificationFailed(Reason.NO_SIGNATURES, "DSSE envelope has no signatures")
    if len(envelope.signatures) > 1:
        # A keyless bundle has one certificate, hence one signature (sigstore insists too).
        raise VerificationFailed(
            Reason.TOO_MANY_SIGNATURES,
            f"a keyless DSSE envelope has exactly one signature, found {len(envelope.signatures)}",
        )
    dsse.b64decode_strict(envelope.signatures[0].sig, "signature")
    payload = dsse.b64decode_strict(envelope.payload, "DSSE payload")
    return document, payload


# ---- trust root


# Where sigstore-python ships the production instance's TUF targets (its package data,
# named after the TUF repository URL https://tuf-repo-cdn.sigstore.dev).
_EMBEDDED_STORE = ("sigstore._store", "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev")


def _embedded_production_root() -> bytes:
    """The production trusted_root.json shipped inside the sigstore package: as trusted as
    the installed code, unlike the user cache dir's copy."""
    from importlib import resources

    package, directory = _EMBEDDED_STORE
    return resources.files(package).joinpath(directory, "trusted_root.json").read_bytes()


def _load_trust_root(path: Path | None, offline: bool) -> tuple[TrustedRoot, dict[str, Any]]:
    if path is not None:
        return _trusted_root_from_file(Path(path))
    if offline:
        try:
            data = _embedded_production_root()
        except Exception as exc:  # noqa: BLE001 - fail closed on any error
            raise VerificationFailed(
                Reason.TRUST_ROOT_UNAVAILABLE,
                "cannot read the Sigstore production trusted root shipped with sigstore-python: "
                f"{printable(str(exc), 300)}",
                hint="pass a trusted_root.json file (--trusted-root), or refresh it through TUF (--online)",
            ) from None
        return _trusted_root_from_bytes(data, "the production trusted root shipped with sigstore-python")
    try:
        # Online: TUF refreshes the signed metadata and checks the root's hash against it.
        root = ClientTrustConfig.production(offline=False).trusted_root
    except Exception as exc:  # noqa: BLE001 - fail closed on any error
        raise VerificationFailed(
            Reason.TRUST_ROOT_UNAVAILABLE,
            f"cannot load the Sigstore production trusted root (TUF refresh): {printable(str(exc), 300)}",
            hint="pass a trusted_root.json file (--trusted-root)",
        ) from None
    try:
        # sigstore has no public accessor for the root's JSON; its inner model has one.
        document = json.loads(root._inner.to_json())
    except Exception as exc:  # noqa: BLE001 - fail closed on any error
        raise VerificationFailed(
            Reason.TRUST_ROOT_INVALID,
            f"cannot read the production trusted root: {printable(str(exc), 200)}",
        ) from None
    _check_root_document(document, "the production trusted root")
    return root, document


def _trusted_root_from_file(path: Path) -> tuple[TrustedRoot, dict[str, Any]]:
    try:
        data = read_capped(path, MAX_TRUSTED_ROOT_BYTES)
    except FileTooLarge:
        raise VerificationFailed(
            Reason.TRUST_ROOT_INVALID, f"trusted root {printable(str(path))} is too large"
        ) from None
    except OSError as exc:
        # A directory or a fifo is "no trusted root there", as for a missing file.
        missing = isinstance(exc, (FileNotFoundError, NotARegularFile))
        what = "does not exist" if missing else f"cannot be read ({exc.strerror or exc})"
        raise VerificationFailed(
            Reason.TRUST_ROOT_UNAVAILABLE,
            f"trusted root {printable(str(path))} {what}",
            hint="without its trusted root nothing signed keyless can be verified",
        ) from None
    return _trusted_root_from_bytes(data, f"trusted root {printable(str(path))}")


def _trusted_root_from_bytes(data: bytes, what: str) -> tuple[TrustedRoot, dict[str, Any]]:
    """The root from bytes read once: what is checked is what sigstore gets."""
    if len(data) > MAX_TRUSTED_ROOT_BYTES:
        raise VerificationFailed(Reason.TRUST_ROOT_INVALID, f"{what} is too large")
    try:
        document = loads_strict(data, "trusted root")
    except InvalidManifest as exc:
        raise VerificationFailed(Reason.TRUST_ROOT_INVALID, exc.message) from None
    _check_root_document(document, what)
    try:
        root = TrustedRoot(trustroot_v1.TrustedRoot.from_json(data))
        root.get_fulcio_certs()
    except Exception as exc:  # noqa: BLE001 - fail closed on any error
        raise VerificationFailed(
            Reason.TRUST_ROOT_INVALID, f"{what} is not usable: {printable(str(exc), 300)}"
        ) from None
    return root, document


def _check_root_document(document: object, what: str) -> None:
    if not isinstance(document, dict):
        raise VerificationFailed(Reason.TRUST_ROOT_INVALID, f"{what} is not a JSON object")
    if document.get("mediaType") != mt.TRUSTED_ROOT_MEDIA_TYPE:
        raise VerificationFailed(
            Reason.TRUST_ROOT_INVALID,
            f"{what} has media type {printable(str(document.get('mediaType')), 120)!r}",
            hint=f"expected {mt.TRUSTED_ROOT_MEDIA_TYPE}",
        )
    for key in ("certificateAuthorities", "tlogs", "ctlogs"):
        value = document.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
            raise VerificationFailed(Reason.TRUST_ROOT_INVALID, f"{what} names no {key}")


# ---- policy


class _RecordingPolicy:
    """``AnyOf([Identity(identity=i, issuer=s), ...])`` that remembers why it failed, so a
    policy failure is told apart from the other VerificationErrors sigstore raises."""

    def __init__(self, allowed: tuple[tuple[str, str], ...]) -> None:
        self._allowed = allowed
        self._inner = AnyOf([Identity(identity=i, issuer=s) for i, s in allowed])
        self.failure: VerificationFailed | None = None
        self.matched: tuple[str, str] | None = None

    def verify(self, cert: x509.Certificate) -> None:
        try:
            self._inner.verify(cert)
        except Exception:
            self.failure = _explain_identity_failure(self._allowed, cert)
            raise
        self.matched = _first_match(self._allowed, cert)


def _passes(policy: Identity, cert: x509.Certificate) -> bool:
    try:
        policy.verify(cert)
    except Exception:  # noqa: BLE001 - fail closed on any error
        return False
    return True


def _first_match(allowed: tuple[tuple[str, str], ...], cert: x509.Certificate) -> tuple[str, str] | None:
    for identity, issuer in allowed:
        if _passes(Identity(identity=identity, issuer=issuer), cert):
            return identity, issuer
    return None


def _certificate_identity(cert: x509.Certificate) -> tuple[list[str], str | None]:
    """The certificate's SAN values and OIDC issuer, for messages (best effort)."""
    sans: list[str] = []
    issuer: str | None = None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [*san.get_values_for_type(x509.RFC822Name), *san.get_values_for_type(x509.UniformResourceIdentifier)]
        sans += [
            other.value.decode("utf-8", "replace")
            for other in san.get_values_for_type(x509.OtherName)
            if other.type_id == _SIGSTORE_OTHERNAME_OID
        ]
    except Exception:  # noqa: BLE001,S110 - best effort, for the message only
        pass
    try:
        raw = cert.extensions.get_extension_for_oid(_OIDC_ISSUER_OID).value
        issuer = raw.value.decode("utf-8", "replace")  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001,S110 - best effort, for the message only
        pass
    return sans, issuer


def _explain_identity_failure(allowed: tuple[tuple[str, str], ...], cert: x509.Certificate) -> VerificationFailed:
    sans, issuer = _certificate_identity(cert)
    actual = f"{', '.join(sans) or 'no identity'} (issuer {issuer or 'unknown'})"
    expected = "; ".join(f"{i} ({s})" for i, s in allowed)
    san_allowed = any(_passes(Identity(identity=i), cert) for i, _ in allowed)
    if san_allowed:
        return VerificationFailed(
            Reason.ISSUER_MISMATCH,
            printable(f"signer {actual} has an allowed identity but not from an allowed issuer; "
                      f"allowed: {expected}", 600),
        )
    return VerificationFailed(
        Reason.IDENTITY_MISMATCH,
        printable(f"signer {actual} is not an allowed identity; allowed: {expected}", 600),
        hint="the model was signed by someone else, or the allowed identity is misspelled",
    )


# ---- sigstore's exceptions -> reasons

# Checked in order against sigstore 4.5's messages (case-insensitive); first match wins.
_MESSAGE_REASONS: tuple[tuple[str, Reason], ...] = (
    ("not valid at validation time", Reason.CERTIFICATE_NOT_VALID_AT_SIGNING),
    ("expired at time of signing", Reason.CERTIFICATE_NOT_VALID_AT_SIGNING),
    ("certificate chain", Reason.UNTRUSTED_CHAIN),
    ("sct", Reason.BAD_SCT),
    ("key usage", Reason.CERTIFICATE_USAGE),
    ("extended usage", Reason.CERTIFICATE_USAGE),
    ("not enough sources of verified time", Reason.NO_VERIFIED_TIME),
    ("inclusion proof", Reason.BAD_INCLUSION_PROOF),
    ("checkpoint", Reason.BAD_CHECKPOINT),
    ("malformed note", Reason.BAD_CHECKPOINT),
    ("note must contain", Reason.BAD_CHECKPOINT),
    ("inclusion promise", Reason.BAD_SET),
    ("log entry payload hash does not match", Reason.LOG_ENTRY_MISMATCH),
    ("log entry signatures do not match", Reason.LOG_ENTRY_MISMATCH),
    ("inconsistent with other materials", Reason.LOG_ENTRY_MISMATCH),
    ("dsse log entry", Reason.LOG_ENTRY_MISMATCH),
    ("expected entry type", Reason.LOG_ENTRY_MISMATCH),
    ("log entry", Reason.BAD_LOG_ENTRY),
    ("integrated time", Reason.BAD_LOG_ENTRY),
    ("timestamp", Reason.BAD_TIMESTAMP),
    ("dsse:", Reason.UNTRUSTED_SIGNATURE),
)

# sigstore puts data in some messages (the inclusion proof's repr: hashes, the checkpoint's
# base64 signature), and random data can spell a needle ("...EScTT..." holds "sct": a bad
# inclusion proof was reported as a bad SCT in ~0.4% of signings). So tokens of 20 or more
# characters without a space (hashes, base64, reprs) are not read, and a needle must start
# a word.
_DATA_TOKEN = re.compile(r"\S{20,}")
_NEEDLES: tuple[tuple[re.Pattern[str], Reason], ...] = tuple(
    (re.compile(r"(?<![a-z0-9])" + re.escape(needle)), reason) for needle, reason in _MESSAGE_REASONS
)


def _reason_in(message: str) -> Reason | None:
    """The reason the words of a sigstore error message name, first match in order."""
    words = _DATA_TOKEN.sub(" ", message.lower())
    return next((reason for needle, reason in _NEEDLES if needle.search(words)), None)

_REASON_TEXT = {
    Reason.CERTIFICATE_NOT_VALID_AT_SIGNING: "the signing certificate was not valid when it was used",
    Reason.UNTRUSTED_CHAIN: "the signing certificate does not chain to the trusted root",
    Reason.BAD_SCT: "the certificate's transparency proof (SCT) is missing or untrusted",
    Reason.CERTIFICATE_USAGE: "the signing certificate is not for code signing",
    Reason.NO_VERIFIED_TIME: "no verified signing time (log entry or timestamp)",
    Reason.BAD_INCLUSION_PROOF: "the transparency log inclusion proof is invalid",
    Reason.BAD_CHECKPOINT: "the transparency log checkpoint is invalid",
    Reason.BAD_SET: "the transparency log's signed entry timestamp (SET) is invalid",
    Reason.LOG_ENTRY_MISMATCH: "the transparency log entry is for other content",
    Reason.BAD_LOG_ENTRY: "the transparency log entry is invalid",
    Reason.BAD_TIMESTAMP: "a signed timestamp is invalid",
    Reason.UNTRUSTED_SIGNATURE: "the DSSE signature does not verify with the signing certificate",
    Reason.KEYLESS_UNVERIFIED: "keyless verification failed",
}


def _classify(exc: BaseException, policy: _RecordingPolicy) -> VerificationFailed:
    if policy.failure is not None:
        return policy.failure
    if isinstance(exc, VerificationFailed):
        return exc
    detail = printable(f"{type(exc).__name__}: {exc}", 400)
    if isinstance(exc, ExtensionNotFound):
        reason = Reason.CERTIFICATE_USAGE  # sigstore 4.5.1: a leaf without KeyUsage / EKU
    else:
        reason = _reason_in(str(exc))
        if reason is None:
            reason = Reason.UNTRUSTED_CHAIN if isinstance(exc, CertValidationError) else Reason.KEYLESS_UNVERIFIED
    if not isinstance(exc, (SigstoreVerificationError, ExtensionNotFound)) and reason is Reason.KEYLESS_UNVERIFIED:
        detail = f"unexpected error during verification: {detail}"
    return VerificationFailed(reason, f"{_REASON_TEXT[reason]} ({detail})")


# ---- trust root validity windows (sigstore-python does not check them)

_FRACTION = re.compile(r"\.(\d{1,6})\d*")


def _parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        raise TypeError("time is not a string")
    text = _FRACTION.sub(lambda m: "." + m.group(1).ljust(6, "0"), value.strip())
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("time has no time zone")
    return parsed.astimezone(dt.UTC)


def _valid_at(valid_for: object, when: dt.datetime) -> bool:
    """``validFor`` ({start, end?}) covers ``when``. A malformed range covers nothing."""
    if not isinstance(valid_for, dict) or "start" not in valid_for:
        return False
    try:
        start = _parse_time(valid_for["start"])
        end = _parse_time(valid_for["end"]) if valid_for.get("end") is not None else None
    except (ValueError, TypeError):
        return False
    return start is not None and start <= when and (end is None or when <= end)


def _signing_times(document: dict[str, Any], bundle: Bundle) -> list[tuple[str, dt.datetime]]:
    """The times sigstore may have used: the log's integrated time (when the entry carries
    an inclusion promise, which binds it), then any RFC 3161 timestamps."""
    times: list[tuple[str, dt.datetime]] = []
    entries = document["verificationMaterial"].get("tlogEntries") or []
    entry = entries[0] if isinstance(entries, list) and entries and isinstance(entries[0], dict) else {}
    try:
        integrated = int(entry.get("integratedTime") or 0)
    except (TypeError, ValueError):
        integrated = 0
    if integrated > 0 and entry.get("inclusionPromise"):
        times.append(("log", dt.datetime.fromtimestamp(integrated, dt.UTC)))
    try:
        data = bundle.verification_material.timestamp_verification_data
        for response in (data.rfc3161_timestamps if data else []):
            when = response.tst_info.gen_time
            when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
            times.append(("tsa", when))
    except Exception as exc:  # noqa: BLE001 - fail closed on any error
        raise VerificationFailed(
            Reason.BAD_TIMESTAMP, f"cannot read the bundle's signed timestamps: {printable(str(exc), 200)}"
        ) from None
    return times


def _issued_by(cert: x509.Certificate, authority: dict[str, Any]) -> bool:
    chain = authority.get("certChain")
    certificates = chain.get("certificates") if isinstance(chain, dict) else None
    for item in certificates if isinstance(certificates, list) else []:
        try:
            issuer = x509.load_der_x509_certificate(base64.b64decode(item["rawBytes"]))
            cert.verify_directly_issued_by(issuer)
        except Exception:  # noqa: BLE001,S112 - not issued by this certificate
            continue
        return True
    return False


def _key_id(log_id: object) -> bytes | None:
    if not isinstance(log_id, dict) or not isinstance(log_id.get("keyId"), str):
        return None
    try:
        return base64.b64decode(log_id["keyId"], validate=True) or None
    except (binascii.Error, ValueError):
        return None


def _check_authorities_in_time(
    root: dict[str, Any], document: dict[str, Any], cert: x509.Certificate,
    times: list[tuple[str, dt.datetime]],
) -> None:
    if not times:
        raise VerificationFailed(Reason.NO_VERIFIED_TIME, "the bundle has no signing time")
    issuers = [ca for ca in root["certificateAuthorities"] if _issued_by(cert, ca)]
    if not issuers:
        raise VerificationFailed(
            Reason.UNTRUSTED_CHAIN, "no certificate authority of the trusted root issued the signing certificate"
        )
    for _, when in times:
        if not any(_valid_at(ca.get("validFor"), when) for ca in issuers):
            raise VerificationFailed(
                Reason.TRUST_ROOT_STALE,
                f"the certificate authority that issued the signing certificate was not valid "
                f"at the signing time {when.isoformat()} (validFor in the trusted root)",
                hint="the trusted root is out of date, or the authority was retired",
            )
    entry = document["verificationMaterial"]["tlogEntries"][0]
    log_id = _key_id(entry.get("logId"))
    logs = [log for log in root["tlogs"] if log_id is not None and _key_id(log.get("logId")) == log_id]
    if not logs:
        raise VerificationFailed(
            Reason.BAD_LOG_ENTRY, "the log entry names a transparency log that is not in the trusted root"
        )
    for source, when in times:
        if source != "log":
            continue
        if not any(_valid_at((log.get("publicKey") or {}).get("validFor"), when) for log in logs):
            raise VerificationFailed(
                Reason.TRUST_ROOT_STALE,
                f"the transparency log was not valid at the signing time {when.isoformat()} "
                "(validFor in the trusted root)",
                hint="the trusted root is out of date, or the log was retired",
            )
