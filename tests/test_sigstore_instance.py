"""The test-only Sigstore instance against the REAL sigstore Signer and Verifier (offline).

Covers docs/threats.md 18 at the sigstore layer: each bad bundle below is refused by
``sigstore.verify.Verifier`` itself, so ocimodel's own keyless tests can build on them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
from pathlib import Path

import pytest
from cryptography.x509 import ExtendedKeyUsage, ExtensionNotFound
from cryptography.x509.oid import ExtendedKeyUsageOID

# Private sigstore module (the error the real Signer raises); the test extra pins sigstore~=4.5.
from sigstore._internal.fulcio.client import ExpiredCertificate, FulcioClientError
from sigstore.dsse import Statement
from sigstore.errors import CertValidationError, VerificationError
from sigstore.models import Bundle, TrustedRoot
from sigstore.oidc import IdentityError, IdentityToken
from sigstore.verify import Verifier
from sigstore.verify.policy import Identity

from tests.support.sigstore_instance import (
    CODE_SIGNING,
    OIDC_ISSUER_OID,
    TRUSTED_ROOT_MEDIA_TYPE,
    Faults,
    SigstoreInstance,
    edit_bundle,
    in_toto_statement,
    swap_log_entry,
)

IDENTITY = "dev@example.com"
ISSUER = "https://issuer.example"
POLICY = Identity(identity=IDENTITY, issuer=ISSUER)
HOUR = dt.timedelta(hours=1)


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No TUF cache of the developer's, and no connection beyond loopback."""
    home = tmp_path / "home"
    for var, sub in (("HOME", ""), ("XDG_CACHE_HOME", ".cache"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_CONFIG_HOME", ".config"), ("XDG_STATE_HOME", ".local/state")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(home / sub))

    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def loopback_only(host: object) -> None:
        if host not in ("127.0.0.1", "::1", "localhost", None):
            raise AssertionError(f"test tried to reach {host!r}: this test file must stay offline")

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        loopback_only(host)
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):  # type: ignore[no-untyped-def]
        if isinstance(address, tuple):
            loopback_only(address[0])
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def inst(tmp_path: Path) -> SigstoreInstance:
    return SigstoreInstance.create(tmp_path / "sigstore")


@pytest.fixture
def verifier(inst: SigstoreInstance) -> Verifier:
    # Exactly what a user of ocimodel would do: the root from a file, explicitly.
    return Verifier(trusted_root=TrustedRoot.from_file(str(inst.trusted_root_path)))


def sign(
    inst: SigstoreInstance, statement: bytes | None = None, *, identity: str = IDENTITY,
    issuer: str = ISSUER, **faults: object,
) -> Bundle:
    """Sign through the real ``Signer.sign_dsse`` with the instance's Fulcio and Rekor."""
    ctx = inst.signing_context(**faults)
    with ctx.signer(inst.identity_token(identity, issuer)) as signer:
        return signer.sign_dsse(Statement(statement or in_toto_statement()))


# --------------------------------------------------------------------------- the good path


def test_trusted_root_file_names_the_instance(inst: SigstoreInstance) -> None:
    data = json.loads(inst.trusted_root_path.read_text())
    assert data["mediaType"] == TRUSTED_ROOT_MEDIA_TYPE
    assert len(data["tlogs"]) == len(data["ctlogs"]) == len(data["certificateAuthorities"]) == 1
    assert data["timestampAuthorities"] == []
    assert data["tlogs"][0]["publicKey"]["keyDetails"] == "PKIX_ECDSA_P256_SHA_256"
    for url in (data["tlogs"][0]["baseUrl"], data["ctlogs"][0]["baseUrl"],
                data["certificateAuthorities"][0]["uri"]):
        assert url.startswith("http://127.0.0.1:")
    assert isinstance(inst.trusted_root, TrustedRoot)
    assert inst.trusted_root.get_fulcio_certs() == [inst.ca.cert]


def test_identity_token_is_accepted_by_sigstore(inst: SigstoreInstance) -> None:
    token = inst.identity_token(IDENTITY, ISSUER)
    assert token.identity == IDENTITY
    assert token.issuer == ISSUER
    assert token.in_validity_period()
    claims = inst.check_token(inst.oidc_jwt("ci@example.org", "https://ci.example"))
    assert claims["aud"] == "sigstore" and claims["email_verified"] is True


def test_real_signer_bundle_verifies_and_returns_payload(inst: SigstoreInstance, verifier: Verifier) -> None:
    statement = in_toto_statement(name="model", sha256="ab" * 32)
    bundle = sign(inst, statement)

    payload_type, payload = verifier.verify_dsse(bundle, POLICY)

    assert payload_type == "application/vnd.in-toto+json"
    assert payload == statement
    cert = bundle.signing_certificate
    assert cert.extensions.get_extension_for_oid(OIDC_ISSUER_OID).value.value == ISSUER.encode()
    assert CODE_SIGNING in cert.extensions.get_extension_for_class(ExtendedKeyUsage).value


def test_bundle_json_round_trip_still_verifies(inst: SigstoreInstance, verifier: Verifier) -> None:
    bundle = sign(inst)
    text = bundle.to_json()
    data = json.loads(text)
    assert data["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert data["verificationMaterial"]["tlogEntries"][0]["kindVersion"] == {
        "kind": "dsse", "version": "0.0.1",
    }

    reloaded = Bundle.from_json(text)

    assert verifier.verify_dsse(reloaded, POLICY)[1] == in_toto_statement()


def test_log_grows_and_every_inclusion_proof_verifies(inst: SigstoreInstance, verifier: Verifier) -> None:
    bundles = [sign(inst, in_toto_statement(name=f"m{i}")) for i in range(6)]
    last = json.loads(bundles[-1].to_json())["verificationMaterial"]["tlogEntries"][0]
    assert last["logIndex"] == "5"
    assert last["inclusionProof"]["treeSize"] == "6"
    assert len(last["inclusionProof"]["hashes"]) == 2  # index 5 of 6: leaf 4, then MTH(0..3)
    for i, bundle in enumerate(bundles):
        assert verifier.verify_dsse(bundle, POLICY)[1] == in_toto_statement(name=f"m{i}")


def test_make_dsse_bundle_matches_the_signer_path(inst: SigstoreInstance, verifier: Verifier) -> None:
    bundle = inst.make_dsse_bundle(in_toto_statement(), IDENTITY, ISSUER)
    assert verifier.verify_dsse(Bundle.from_json(bundle.to_json()), POLICY)[1] == in_toto_statement()


def test_sign_artifact_hashedrekord_also_verifies(inst: SigstoreInstance, verifier: Verifier) -> None:
    with inst.signing_context().signer(inst.identity_token()) as signer:
        bundle = signer.sign_artifact(b"model bytes")
    verifier.verify_artifact(b"model bytes", bundle, POLICY)
    with pytest.raises(VerificationError):
        verifier.verify_artifact(b"other bytes", bundle, POLICY)
    with inst.signing_context(entry_mismatch="payload").signer(inst.identity_token()) as signer:
        mismatched = signer.sign_artifact(b"model bytes")
    with pytest.raises(VerificationError, match="inconsistent with other materials"):
        verifier.verify_artifact(b"model bytes", mismatched, POLICY)


def test_expired_leaf_with_log_time_inside_its_validity_is_accepted(
    inst: SigstoreInstance, verifier: Verifier
) -> None:
    """The Sigstore model: a leaf that expired since signing verifies via the log's time."""
    bundle = inst.make_dsse_bundle(
        in_toto_statement(), cert_validity=(-2 * HOUR, -HOUR),
        integrated_time_shift=dt.timedelta(minutes=-90),
    )
    assert bundle.signing_certificate.not_valid_after_utc < dt.datetime.now(dt.UTC)
    assert verifier.verify_dsse(bundle, POLICY)[1] == in_toto_statement()


# --------------------------------------------------------------------------- identity policy


def test_wrong_san_is_rejected_by_the_policy(inst: SigstoreInstance, verifier: Verifier) -> None:
    bundle = sign(inst, identity="mallory@example.com")
    with pytest.raises(VerificationError, match="SANs do not match dev@example.com"):
        verifier.verify_dsse(bundle, POLICY)
    # ...and the same bundle is fine for a policy naming its real signer.
    verifier.verify_dsse(bundle, Identity(identity="mallory@example.com", issuer=ISSUER))


def test_right_san_wrong_issuer_is_rejected_by_the_policy(inst: SigstoreInstance, verifier: Verifier) -> None:
    bundle = sign(inst, issuer="https://evil-issuer.example")
    with pytest.raises(VerificationError, match="OIDCIssuer does not match"):
        verifier.verify_dsse(bundle, POLICY)


def test_uri_identity_is_a_uri_san(inst: SigstoreInstance, verifier: Verifier) -> None:
    workflow = "https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main"
    bundle = sign(inst, identity=workflow, issuer="https://token.example")
    verifier.verify_dsse(bundle, Identity(identity=workflow, issuer="https://token.example"))


# --------------------------------------------------------------------------- certificate faults


def test_certificate_from_a_ca_outside_the_trusted_root_is_rejected(
    inst: SigstoreInstance, verifier: Verifier
) -> None:
    bundle = sign(inst, rogue_ca=True)  # the Signer only checks the SCT, which is genuine
    with pytest.raises(CertValidationError, match="failed to build timestamp certificate chain"):
        verifier.verify_dsse(bundle, POLICY)


def test_bundle_from_another_instance_is_rejected(inst: SigstoreInstance, tmp_path: Path) -> None:
    other = SigstoreInstance.create(tmp_path / "other")
    bundle = sign(other)
    with pytest.raises(CertValidationError):
        Verifier(trusted_root=inst.trusted_root).verify_dsse(bundle, POLICY)


def test_leaf_without_code_signing_eku_is_rejected(inst: SigstoreInstance, verifier: Verifier) -> None:
    bundle = sign(inst, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    with pytest.raises(VerificationError, match="does not contain `code signing`"):
        verifier.verify_dsse(bundle, POLICY)


def test_leaf_with_no_eku_at_all_raises_a_non_sigstore_error(inst: SigstoreInstance, verifier: Verifier) -> None:
    """sigstore 4.5.1 lets cryptography's ExtensionNotFound escape here (not a VerificationError):
    callers must treat ANY exception from verify_* as "not verified"."""
    bundle = sign(inst, eku=None)
    with pytest.raises(ExtensionNotFound):
        verifier.verify_dsse(bundle, POLICY)


@pytest.mark.parametrize("shift", [HOUR, -HOUR], ids=["logged-after-expiry", "logged-before-issuance"])
def test_log_time_outside_certificate_validity_is_rejected(
    inst: SigstoreInstance, verifier: Verifier, shift: dt.timedelta
) -> None:
    bundle = sign(inst, integrated_time_shift=shift)  # the SET over that time is genuine
    with pytest.raises(CertValidationError, match="not valid at validation time"):
        verifier.verify_dsse(bundle, POLICY)


def test_expired_certificate_without_a_valid_log_time_is_rejected(
    inst: SigstoreInstance, verifier: Verifier
) -> None:
    bundle = inst.make_dsse_bundle(in_toto_statement(), cert_validity=(-2 * HOUR, -HOUR))
    with pytest.raises(CertValidationError, match="not valid at validation time"):
        verifier.verify_dsse(bundle, POLICY)


def test_real_signer_refuses_an_already_expired_certificate(inst: SigstoreInstance) -> None:
    with pytest.raises(ExpiredCertificate):
        sign(inst, cert_validity=(-2 * HOUR, -HOUR))


@pytest.mark.parametrize("sct", ["untrusted", "missing"])
def test_bad_sct(inst: SigstoreInstance, verifier: Verifier, sct: str) -> None:
    with pytest.raises(VerificationError):  # the real Signer checks the SCT too
        sign(inst, sct=sct)
    bundle = inst.make_dsse_bundle(in_toto_statement(), sct=sct)
    with pytest.raises(VerificationError, match="failed to verify SCT"):
        verifier.verify_dsse(bundle, POLICY)


# --------------------------------------------------------------------------- log faults


@pytest.mark.parametrize(
    ("mismatch", "message"),
    [("payload", "payload hash does not match bundle"), ("signature", "signatures do not match bundle")],
)
def test_log_entry_for_other_content_is_rejected(
    inst: SigstoreInstance, verifier: Verifier, mismatch: str, message: str
) -> None:
    bundle = sign(inst, entry_mismatch=mismatch)
    with pytest.raises(VerificationError, match=message):
        verifier.verify_dsse(bundle, POLICY)


def test_genuine_log_entry_of_another_bundle_is_rejected(inst: SigstoreInstance, verifier: Verifier) -> None:
    bundle = sign(inst, in_toto_statement(name="model-a"))
    donor = sign(inst, in_toto_statement(name="model-b"))
    verifier.verify_dsse(donor, POLICY)  # the donor entry itself is fine
    with pytest.raises(VerificationError, match="log entry payload hash does not match bundle"):
        verifier.verify_dsse(swap_log_entry(bundle, donor), POLICY)


def test_bad_inclusion_proof_is_rejected(inst: SigstoreInstance, verifier: Verifier) -> None:
    bundle = sign(inst, bad_inclusion_proof=True)
    with pytest.raises(VerificationError, match="inclusion proof contains invalid root hash"):
        verifier.verify_dsse(bundle, POLICY)


def test_inclusion_proof_edited_after_signing_is_rejected(inst: SigstoreInstance, verifier: Verifier) -> None:
    sign(inst)
    bundle = sign(inst)  # index 1 of 2: one sibling hash in the proof

    def flip(data: dict) -> None:
        proof = data["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
        proof["hashes"] = ["A" * 43 + "="]

    with pytest.raises(VerificationError, match="inclusion proof contains invalid root hash"):
        verifier.verify_dsse(edit_bundle(bundle, flip), POLICY)


def test_checkpoint_not_signed_by_the_log_is_rejected(inst: SigstoreInstance, verifier: Verifier) -> None:
    bundle = sign(inst, bad_checkpoint=True)
    with pytest.raises(VerificationError, match="checkpoint: invalid signature"):
        verifier.verify_dsse(bundle, POLICY)


def test_bad_set_is_rejected(inst: SigstoreInstance, verifier: Verifier) -> None:
    bundle = sign(inst, bad_set=True)
    with pytest.raises(VerificationError, match="SET: invalid inclusion promise"):
        verifier.verify_dsse(bundle, POLICY)


def test_integrated_time_edited_after_signing_breaks_the_set(
    inst: SigstoreInstance, verifier: Verifier
) -> None:
    def earlier(data: dict) -> None:
        entry = data["verificationMaterial"]["tlogEntries"][0]
        entry["integratedTime"] = str(int(entry["integratedTime"]) - 1)

    with pytest.raises(VerificationError, match="SET: invalid inclusion promise"):
        verifier.verify_dsse(edit_bundle(sign(inst), earlier), POLICY)


def test_payload_edited_after_signing_is_rejected(inst: SigstoreInstance, verifier: Verifier) -> None:
    def swap_payload(data: dict) -> None:
        data["dsseEnvelope"]["payload"] = base64.b64encode(in_toto_statement(name="evil")).decode()

    with pytest.raises(VerificationError, match="DSSE: invalid signature"):
        verifier.verify_dsse(edit_bundle(sign(inst), swap_payload), POLICY)


# --------------------------------------------------------------------------- tokens


def test_test_fulcio_refuses_an_unsigned_token(inst: SigstoreInstance) -> None:
    token = IdentityToken(inst.oidc_jwt(signed=False))  # sigstore itself does not check it
    ctx = inst.signing_context()
    with pytest.raises(FulcioClientError, match="identity token rejected"), ctx.signer(token):
        pass


def test_expired_token_is_refused_before_fulcio(inst: SigstoreInstance) -> None:
    with pytest.raises(IdentityError):
        inst.identity_token(lifetime=dt.timedelta(minutes=-5))


def test_faults_object_and_keywords_are_equivalent(inst: SigstoreInstance, verifier: Verifier) -> None:
    bundle_a = inst.make_dsse_bundle(in_toto_statement(), faults=Faults(bad_set=True))
    ctx = inst.signing_context(Faults(bad_set=True))
    with ctx.signer(inst.identity_token()) as signer:
        bundle_b = signer.sign_dsse(Statement(in_toto_statement()))
    for bundle in (bundle_a, bundle_b):
        with pytest.raises(VerificationError, match="SET"):
            verifier.verify_dsse(bundle, POLICY)
