"""A test-only Sigstore instance (Fulcio CA, CT log, Rekor v1 log, OIDC issuer), fully offline.

The REAL ``sigstore.verify.Verifier`` accepts what it makes, so keyless signing and
verification can be tested without contacting Fulcio, Rekor, TUF or an identity provider:

    inst = SigstoreInstance.create(tmp_path)
    token = inst.identity_token("dev@example.com", "https://issuer.example")
    with inst.signing_context().signer(token) as signer:      # the real sigstore Signer
        bundle = signer.sign_dsse(Statement(statement_bytes))
    verifier = Verifier(trusted_root=inst.trusted_root)        # or TrustedRoot.from_file(...)
    verifier.verify_dsse(bundle, Identity(identity="dev@example.com",
                                          issuer="https://issuer.example"))

What it holds (``docs/signing-facts.md``, "A test-only Sigstore instance"):

- a P-384 self-signed Fulcio-style root CA, a P-256 CT log key and a P-256 Rekor key,
  named in ``trusted_root.json`` (``trusted_root_path``, loaded as ``trusted_root``);
- a test Fulcio that checks the OIDC token (ES256 signature by this instance's issuer key,
  audience ``sigstore``, expiry) and issues a short-lived leaf for the CSR's key, with the
  token's identity as SAN (critical), the issuer in OID 1.3.6.1.4.1.57264.1.1, the
  code-signing EKU and an embedded precertificate SCT;
- a test Rekor: an append-only RFC 6962 Merkle log of ``dsse``/``hashedrekord`` v0.0.1
  entries; each entry comes back with a real inclusion proof, a signed checkpoint and a SET.

Bad cases (docs/threats.md 18), each a field of :class:`Faults`, given to
``signing_context(...)`` or ``make_dsse_bundle(...)``:

=====================================  ===================================================
``rogue_ca=True``                      leaf issued by a CA that is NOT in the trusted root
``eku=(CLIENT_AUTH,)`` / ``eku=None``  leaf without the code-signing EKU / without any EKU
``cert_validity=(a, b)``               leaf validity relative to issuance (expired leaves)
``integrated_time_shift=...``          log time outside the leaf's validity (SET still ok)
``entry_mismatch="payload"|"signature"``  the log entry is valid but for other content
``bad_inclusion_proof=True``           Merkle proof does not lead to the (signed) root
``bad_checkpoint=True``                checkpoint signed by a key that is not the log's
``bad_set=True``                       SET signed by a key that is not the log's
``sct="untrusted"|"missing"``          SCT by an unknown CT log / no SCT at all
=====================================  ===================================================

Wrong SAN / wrong issuer need no fault: sign with another ``identity_token(...)``.
Helpers ``swap_log_entry`` (a genuine log entry from another bundle) and ``edit_bundle``
(change the bundle JSON) cover tampering after signing.

The real ``Signer`` refuses a certificate that has already expired (``ExpiredCertificate``),
so bundles signed with an expired leaf are built by :meth:`SigstoreInstance.make_dsse_bundle`,
which assembles the same bundle without the Signer (public sigstore API only).

Private sigstore internals used (pin ``sigstore~=4.5`` where these tests run):
``sigstore._internal.fulcio.client`` (``FulcioCertificateSigningResponse``,
``FulcioClientError``), ``sigstore._internal.rekor.client.RekorClient`` (subclassed, for its
request builders), the ``@private`` constructor ``sigstore.models.TransparencyLogEntry(inner)``,
and the duck-typed hooks the Signer calls: ``fulcio.signing_cert.post(csr, token)``,
``rekor._build_dsse_request`` / ``_build_hashed_rekord_request`` / ``create_entry``.

All URLs in the trusted root point at a closed loopback port: nothing here opens a socket.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import jwt
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Private sigstore modules (see the module docstring): pin sigstore~=4.5 for these tests.
from sigstore._internal.fulcio.client import (
    FulcioCertificateSigningResponse,
    FulcioClientError,
)
from sigstore._internal.rekor.client import RekorClient
from sigstore.models import Bundle, TransparencyLogEntry, TrustedRoot
from sigstore.oidc import IdentityToken
from sigstore.sign import SigningContext
from sigstore_models.rekor import v1 as _rekor_v1

__all__ = [
    "CODE_SIGNING",
    "DSSE_PAYLOAD_TYPE",
    "OIDC_ISSUER_OID",
    "TRUSTED_ROOT_MEDIA_TYPE",
    "Faults",
    "SigstoreInstance",
    "edit_bundle",
    "in_toto_statement",
    "swap_log_entry",
]

TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
DSSE_PAYLOAD_TYPE = "application/vnd.in-toto+json"
OIDC_ISSUER_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
CODE_SIGNING = ExtendedKeyUsageOID.CODE_SIGNING
AUDIENCE = "sigstore"

# Closed loopback ports: the Verifier builds a RekorClient from tlogs[0].baseUrl (it never
# calls it for bundles with entries), and nothing else reads these.
FULCIO_URL = "http://127.0.0.1:1/fulcio"
REKOR_URL = "http://127.0.0.1:1/rekor"
CTFE_URL = "http://127.0.0.1:1/ctfe"
CHECKPOINT_NAME = "rekor.test.invalid"
TREE_ID = 4242424242


def _now() -> dt.datetime:
    # Whole seconds: X.509 times, integratedTime and the SCT timestamp all compare equal.
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """RFC 6962 key ID: sha256 of the DER SubjectPublicKeyInfo (log IDs, SCT issuer hash)."""
    return hashlib.sha256(_spki_der(key)).digest()


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Faults:
    """What the test Fulcio and Rekor get wrong (all off by default). See the module docstring."""

    # Fulcio
    rogue_ca: bool = False
    eku: tuple[x509.ObjectIdentifier, ...] | None = (CODE_SIGNING,)
    cert_validity: tuple[dt.timedelta, dt.timedelta] = (
        dt.timedelta(minutes=-1),
        dt.timedelta(minutes=10),
    )
    sct: Literal["valid", "untrusted", "missing"] = "valid"
    # Rekor
    integrated_time_shift: dt.timedelta = dt.timedelta(0)
    entry_mismatch: Literal["payload", "signature"] | None = None
    bad_inclusion_proof: bool = False
    bad_checkpoint: bool = False
    bad_set: bool = False


# --------------------------------------------------------------------------- X.509 / CT


@dataclass(frozen=True)
class _CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _make_ca(common_name: str) -> _CA:
    key = ec.generate_private_key(ec.SECP384R1())
    public = key.public_key()
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ocimodel tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA384())
    )
    return _CA(cert, key)


def _san_for(identity: str) -> x509.GeneralName:
    if "@" in identity and "://" not in identity:
        return x509.RFC822Name(identity)
    return x509.UniformResourceIdentifier(identity)


def _sct_extension(
    ct_key: ec.EllipticCurvePrivateKey, issuer_public: ec.EllipticCurvePublicKey, tbs: bytes,
    timestamp_ms: int,
) -> x509.UnrecognizedExtension:
    """An embedded precertificate SCT list (RFC 6962 3.2/3.3) for ``tbs``."""
    if len(tbs) >= 1 << 24:
        raise ValueError("TBS too large for an SCT")
    signed = (
        struct.pack("!BBQH", 0, 0, timestamp_ms, 1)  # v1, certificate_timestamp, ts, precert
        + _key_id(issuer_public)
        + len(tbs).to_bytes(3, "big") + tbs
        + struct.pack("!H", 0)  # no extensions
    )
    signature = ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    sct = (
        struct.pack("!B", 0) + _key_id(ct_key.public_key()) + struct.pack("!QH", timestamp_ms, 0)
        + struct.pack("!BBH", 4, 3, len(signature)) + signature  # sha256, ecdsa
    )
    sct_list = struct.pack("!H", len(sct) + 2) + struct.pack("!H", len(sct)) + sct
    return x509.UnrecognizedExtension(SCT_LIST_OID, _der_octet_string(sct_list))


def _der_octet_string(data: bytes) -> bytes:
    n = len(data)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return b"\x04" + length + data


def _issue_leaf(
    ca: _CA, ct_key: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey,
    identity: str, issuer: str, faults: Faults,
) -> x509.Certificate:
    now = _now()
    before, after = faults.cert_validity
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + before)
        .not_valid_after(now + after)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )
    if faults.eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(faults.eku)), critical=False)
    builder = (
        builder
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .add_extension(x509.SubjectAlternativeName([_san_for(identity)]), critical=True)
        .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_OID, issuer.encode()), critical=False)
    )
    precert = builder.sign(ca.key, hashes.SHA384())
    if faults.sct == "missing":
        return precert
    tbs = precert.tbs_certificate_bytes
    sct_ext = _sct_extension(ct_key, ca.key.public_key(), tbs, int(now.timestamp()) * 1000)
    leaf = builder.add_extension(sct_ext, critical=False).sign(ca.key, hashes.SHA384())
    if leaf.tbs_precertificate_bytes != tbs:  # same serial/validity/extensions, SCT last
        raise AssertionError("SCT was signed over a different TBSCertificate")
    return leaf


# --------------------------------------------------------------------------- Rekor log


def _leaf_hash(body: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + body).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _audit_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]), lowest level first."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return _audit_path(m, leaves[:k]) + [_mth(leaves[k:])]
    return _audit_path(m - k, leaves[k:]) + [_mth(leaves[:k])]


class _Log:
    """An append-only Rekor v1 log: entries come back as bundle ``tlogEntries`` JSON."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, rogue_key: ec.EllipticCurvePrivateKey):
        self._key = key
        self._rogue_key = rogue_key
        self.log_id = _key_id(key.public_key())
        self._leaves: list[bytes] = []
        self._lock = threading.Lock()

    def _sign(self, data: bytes, rogue: bool) -> bytes:
        return (self._rogue_key if rogue else self._key).sign(data, ec.ECDSA(hashes.SHA256()))

    def checkpoint(self, size: int, root: bytes, *, rogue: bool = False) -> str:
        note = f"{CHECKPOINT_NAME} - {TREE_ID}\n{size}\n{_b64(root)}\n"
        sig = self._sign(note.encode(), rogue)
        return note + f"\n\u2014 {CHECKPOINT_NAME} {_b64(self.log_id[:4] + sig)}\n"

    def append(self, kind: str, body: bytes, faults: Faults) -> dict[str, Any]:
        with self._lock:
            index = len(self._leaves)
            self._leaves.append(_leaf_hash(body))
            leaves = list(self._leaves)
        size = len(leaves)
        root = _mth(leaves)
        path = _audit_path(index, leaves)
        if faults.bad_inclusion_proof:
            # A correctly signed checkpoint for a root that the proof does not lead to.
            root = hashlib.sha256(b"not this tree" + root).digest()
        integrated = int((_now() + faults.integrated_time_shift).timestamp())
        set_payload = rfc8785.dumps({
            "body": _b64(body),
            "integratedTime": integrated,
            "logID": self.log_id.hex(),
            "logIndex": index,
        })
        return {
            "logIndex": str(index),
            "logId": {"keyId": _b64(self.log_id)},
            "kindVersion": {"kind": kind, "version": "0.0.1"},
            "integratedTime": str(integrated),
            "inclusionPromise": {"signedEntryTimestamp": _b64(self._sign(set_payload, faults.bad_set))},
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": _b64(root),
                "treeSize": str(size),
                "hashes": [_b64(h) for h in path],
                "checkpoint": {"envelope": self.checkpoint(size, root, rogue=faults.bad_checkpoint)},
            },
            "canonicalizedBody": _b64(body),
        }


def _dsse_body(envelope: dict[str, Any], cert_pem: bytes, faults: Faults) -> bytes:
    """The canonical body Rekor v1 stores for a ``dsse`` 0.0.1 entry."""
    payload = base64.b64decode(envelope["payload"])
    signatures = [base64.b64decode(s["sig"]) for s in envelope["signatures"]]
    if faults.entry_mismatch == "payload":
        payload = payload + b" (some other payload)"
    if faults.entry_mismatch == "signature":
        signatures = [hashlib.sha256(b"other" + s).digest() for s in signatures]
    envelope_json = json.dumps(envelope, separators=(",", ":")).encode()
    return rfc8785.dumps({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(envelope_json).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
            "signatures": [{"signature": _b64(s), "verifier": _b64(cert_pem)} for s in signatures],
        },
    })


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


# --------------------------------------------------------------------------- Fulcio / Rekor for the Signer


class _TestSigningCert:
    def __init__(self, instance: SigstoreInstance, faults: Faults):
        self._instance = instance
        self._faults = faults

    def post(self, req: x509.CertificateSigningRequest, identity: IdentityToken) -> FulcioCertificateSigningResponse:
        if not req.is_signature_valid:
            raise FulcioClientError("CSR signature is invalid")
        public = req.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise FulcioClientError("test Fulcio issues for EC keys only")
        claims = self._instance.check_token(str(identity))
        leaf, chain = self._instance.issue(public, claims["identity"], claims["iss"], self._faults)
        return FulcioCertificateSigningResponse(leaf, chain)


class TestFulcio:
    """Stands in for ``FulcioClient``: the Signer calls ``signing_cert.post(csr, token)``."""

    __test__ = False  # not a pytest class

    def __init__(self, instance: SigstoreInstance, faults: Faults):
        self.url = FULCIO_URL
        self.signing_cert = _TestSigningCert(instance, faults)


class TestRekor(RekorClient):
    """Stands in for ``RekorClient``: same request builders, entries go to the in-memory log."""

    __test__ = False

    def __init__(self, instance: SigstoreInstance, faults: Faults):
        super().__init__(REKOR_URL)
        self._instance = instance
        self._faults = faults
        self.requests: list[dict[str, Any]] = []

    def create_entry(self, request: Any) -> TransparencyLogEntry:
        request = _drop_none(dict(request))
        self.requests.append(request)
        kind = request.get("kind")
        if kind == "dsse":
            content = request["spec"]["proposedContent"]
            envelope = json.loads(content["envelope"])
            cert_pem = base64.b64decode(content["verifiers"][0])
            body = _dsse_body(envelope, cert_pem, self._faults)
        elif kind == "hashedrekord":
            if self._faults.entry_mismatch:
                spec = request["spec"]
                spec["data"]["hash"]["value"] = hashlib.sha256(b"other").hexdigest()
            body = rfc8785.dumps({"apiVersion": "0.0.1", **request})
        else:
            raise ValueError(f"test Rekor: unsupported entry kind {kind!r}")
        entry = self._instance.log.append(kind, body, self._faults)
        inner = _rekor_v1.TransparencyLogEntry.from_json(json.dumps(entry))
        return TransparencyLogEntry(inner)


# --------------------------------------------------------------------------- the instance


@dataclass
class SigstoreInstance:
    """A private Fulcio + CT log + Rekor + OIDC issuer, with a ``trusted_root.json`` naming them."""

    dir: Path
    trusted_root_path: Path
    trusted_root: TrustedRoot
    ca: _CA
    ct_key: ec.EllipticCurvePrivateKey
    rekor_key: ec.EllipticCurvePrivateKey
    oidc_key: ec.EllipticCurvePrivateKey
    log: _Log
    rogue_ca: _CA = field(repr=False)
    rogue_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def create(cls, tmp_dir: Path) -> SigstoreInstance:
        tmp_dir = Path(tmp_dir)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        ca = _make_ca("ocimodel test Fulcio")
        ct_key = ec.generate_private_key(ec.SECP256R1())
        rekor_key = ec.generate_private_key(ec.SECP256R1())
        rogue_key = ec.generate_private_key(ec.SECP256R1())
        start = _rfc3339(ca.cert.not_valid_before_utc)

        def log_instance(url: str, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
            public = key.public_key()
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": _b64(_spki_der(public)),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": start},
                },
                "logId": {"keyId": _b64(_key_id(public))},
            }

        root = {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [log_instance(REKOR_URL, rekor_key)],
            "certificateAuthorities": [{
                "subject": {"organization": "ocimodel tests", "commonName": "ocimodel test Fulcio"},
                "uri": FULCIO_URL,
                "certChain": {"certificates": [
                    {"rawBytes": _b64(ca.cert.public_bytes(serialization.Encoding.DER))}
                ]},
                "validFor": {"start": start},
            }],
            "ctlogs": [log_instance(CTFE_URL, ct_key)],
            "timestampAuthorities": [],
        }
        path = tmp_dir / "trusted_root.json"
        path.write_text(json.dumps(root, indent=2) + "\n")
        return cls(
            dir=tmp_dir,
            trusted_root_path=path,
            trusted_root=TrustedRoot.from_file(str(path)),
            ca=ca,
            ct_key=ct_key,
            rekor_key=rekor_key,
            oidc_key=ec.generate_private_key(ec.SECP256R1()),
            log=_Log(rekor_key, rogue_key),
            rogue_ca=_make_ca("ocimodel rogue CA (not in the trusted root)"),
            rogue_key=rogue_key,
        )

    # ---- OIDC

    def oidc_jwt(
        self,
        identity: str = "dev@example.com",
        issuer: str = "https://issuer.example",
        *,
        lifetime: dt.timedelta = dt.timedelta(minutes=5),
        audience: str = AUDIENCE,
        signed: bool = True,
    ) -> str:
        """A raw OIDC ID token (ES256 by this instance's issuer key, or ``alg: none``)."""
        now = int(_now().timestamp())
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": identity,
            "iat": now,
            "nbf": now,
            "exp": now + int(lifetime.total_seconds()),
        }
        if "@" in identity:
            claims.update(email=identity, email_verified=True)
        if signed:
            return jwt.encode(claims, self.oidc_key, algorithm="ES256")
        return jwt.encode(claims, None, algorithm="none")

    def identity_token(
        self, identity: str = "dev@example.com", issuer: str = "https://issuer.example", **kwargs: Any
    ) -> IdentityToken:
        """``oidc_jwt(...)`` parsed by ``sigstore.oidc.IdentityToken``."""
        return IdentityToken(self.oidc_jwt(identity, issuer, **kwargs))

    def check_token(self, raw: str) -> dict[str, Any]:
        """What the test Fulcio checks: signature, audience, expiry. Returns claims + identity."""
        try:
            claims = jwt.decode(
                raw, self.oidc_key.public_key(), algorithms=["ES256"], audience=AUDIENCE,
                options={"require": ["iss", "aud", "sub", "iat", "exp"]},
            )
        except jwt.PyJWTError as exc:
            raise FulcioClientError(f"test Fulcio: identity token rejected: {exc}") from exc
        # Like IdentityToken.identity for an issuer Fulcio does not special-case: the `sub`.
        return {**claims, "identity": str(claims["sub"])}

    # ---- Fulcio

    def issue(
        self, public: ec.EllipticCurvePublicKey, identity: str, issuer: str, faults: Faults = Faults()
    ) -> tuple[x509.Certificate, list[x509.Certificate]]:
        """A leaf for ``public`` and its chain (without the leaf), as the test Fulcio returns."""
        ca = self.rogue_ca if faults.rogue_ca else self.ca
        ct_key = self.rogue_key if faults.sct == "untrusted" else self.ct_key
        leaf = _issue_leaf(ca, ct_key, public, identity, issuer, faults)
        return leaf, [ca.cert]

    # ---- signing

    def signing_context(self, faults: Faults | None = None, **fault_fields: Any) -> SigningContext:
        """A real ``SigningContext`` whose Fulcio and Rekor are this instance (no network).

        ``signing_context(bad_set=True)`` is short for ``signing_context(Faults(bad_set=True))``.
        """
        faults = replace(faults or Faults(), **fault_fields)
        return SigningContext(
            fulcio=TestFulcio(self, faults),  # type: ignore[arg-type]
            rekor=TestRekor(self, faults),
            trusted_root=self.trusted_root,
            tsa_clients=[],
        )

    def make_dsse_bundle(
        self,
        payload: bytes,
        identity: str = "dev@example.com",
        issuer: str = "https://issuer.example",
        *,
        payload_type: str = DSSE_PAYLOAD_TYPE,
        faults: Faults | None = None,
        **fault_fields: Any,
    ) -> Bundle:
        """The bundle ``Signer.sign_dsse`` would make, built without the Signer.

        For what the Signer refuses to make (an already expired leaf, an SCT from an unknown
        log) and for payloads that are not in-toto Statements. Uses only public sigstore API.
        """
        faults = replace(faults or Faults(), **fault_fields)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf, _chain = self.issue(key.public_key(), identity, issuer, faults)
        pae = f"DSSEv1 {len(payload_type)} {payload_type} {len(payload)} ".encode() + payload
        signature = key.sign(pae, ec.ECDSA(hashes.SHA256()))
        envelope = {
            "payload": _b64(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": _b64(signature)}],
        }
        cert_pem = leaf.public_bytes(serialization.Encoding.PEM)
        entry = self.log.append("dsse", _dsse_body(envelope, cert_pem, faults), faults)
        bundle = {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {
                "certificate": {"rawBytes": _b64(leaf.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [entry],
                "timestampVerificationData": {"rfc3161Timestamps": []},
            },
            "dsseEnvelope": envelope,
        }
        return Bundle.from_json(json.dumps(bundle))


# --------------------------------------------------------------------------- helpers


def in_toto_statement(
    name: str = "model",
    sha256: str = "0" * 64,
    predicate_type: str = "https://model_signing/signature/v1.0",
    predicate: dict[str, Any] | None = None,
) -> bytes:
    """A compact in-toto Statement v1 (bytes, as ``sigstore.dsse.Statement`` takes it)."""
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": sha256}}],
        "predicateType": predicate_type,
        "predicate": predicate if predicate is not None else {},
    }
    return json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()


def edit_bundle(bundle: Bundle, edit: Callable[[dict[str, Any]], object]) -> Bundle:
    """``bundle`` with its JSON changed in place by ``edit`` (which may raise InvalidBundle on load)."""
    data = json.loads(bundle.to_json())
    edit(data)
    return Bundle.from_json(json.dumps(data))


def swap_log_entry(bundle: Bundle, donor: Bundle) -> Bundle:
    """``bundle`` carrying ``donor``'s (genuine, correctly proven) transparency log entry."""
    donor_entries = json.loads(donor.to_json())["verificationMaterial"]["tlogEntries"]

    def put(data: dict[str, Any]) -> None:
        data["verificationMaterial"]["tlogEntries"] = donor_entries

    return edit_bundle(bundle, put)
