"""Keyless signing and verification (ocimodel.trust.keyless) against the test-only Sigstore
instance: the real sigstore Signer and Verifier, offline.

docs/threats.md 18 (every keyless bad case -> VerificationFailed with its reason) and 19 (a
missing, unreadable or stale trust root fails closed)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from sigstore.errors import TUFError
from sigstore.oidc import IdentityError

from ocimodel.errors import UsageError
from ocimodel.signing import sign_statement_with_key
from ocimodel.signing.errors import Reason, VerificationFailed
from ocimodel.trust import keyless
from ocimodel.trust.keyless import (
    IdentityTokenMissing,
    KeylessSigningError,
    KeylessVerified,
    identity_token_from_environment,
    sign_keyless,
    verify_keyless,
)
from tests.support.secrets import assert_no_secret
from tests.support.sigstore_instance import (
    SigstoreInstance,
    in_toto_statement,
    swap_log_entry,
)

IDENTITY = "dev@example.com"
ISSUER = "https://issuer.example"
ALLOWED = [(IDENTITY, ISSUER)]
HOUR = dt.timedelta(hours=1)
STATEMENT = in_toto_statement(name="model", sha256="ab" * 32)
ALT_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle+json;version=0.3"

# Every variable an ambient-credential detector (the `id` package) looks at.
_CI_VARS = (
    "GITHUB_ACTIONS", "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "GOOGLE_SERVICE_ACCOUNT_NAME", "BUILDKITE", "GITLAB_CI", "CIRCLECI",
    "OCIMODEL_IDENTITY_TOKEN", "SIGSTORE_ID_TOKEN",
)


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No TUF cache of the developer's, no CI credentials, no connection beyond loopback."""
    home = tmp_path / "home"
    for var, sub in (("HOME", ""), ("XDG_CACHE_HOME", ".cache"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_CONFIG_HOME", ".config"), ("XDG_STATE_HOME", ".local/state")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(home / sub))
    for var in _CI_VARS:
        monkeypatch.delenv(var, raising=False)
    # The GCP detector reads this file and, on a GCE machine, asks the metadata server.
    from id._internal.oidc import ambient

    monkeypatch.setattr(ambient, "_GCP_PRODUCT_NAME_FILE", str(tmp_path / "no-product-name"))

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


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> SigstoreInstance:
    return SigstoreInstance.create(tmp_path_factory.mktemp("sigstore"))


def sign(
    inst: SigstoreInstance, statement: bytes = STATEMENT, *, identity: str = IDENTITY,
    issuer: str = ISSUER, **faults: object,
) -> bytes:
    return sign_keyless(
        statement,
        identity_token=inst.oidc_jwt(identity, issuer),
        signing_context=inst.signing_context(**faults),
    )


def verify(inst: SigstoreInstance, bundle: bytes, identities: Any = None, **kwargs: Any) -> KeylessVerified:
    kwargs.setdefault("trusted_root", inst.trusted_root_path)
    return verify_keyless(bundle, identities=ALLOWED if identities is None else identities, **kwargs)


def refused(reason: Reason, inst: SigstoreInstance, bundle: bytes, **kwargs: Any) -> VerificationFailed:
    with pytest.raises(VerificationFailed) as info:
        verify(inst, bundle, **kwargs)
    assert info.value.reason is reason, info.value.message
    return info.value


def edited(bundle: bytes, edit) -> bytes:  # type: ignore[no-untyped-def]
    data = json.loads(bundle)
    edit(data)
    return json.dumps(data).encode()


def made(inst: SigstoreInstance, payload: bytes = STATEMENT, **kwargs: Any) -> bytes:
    """A bundle the Signer would refuse to make (expired leaf, bad SCT...), as bytes."""
    return inst.make_dsse_bundle(payload, **kwargs).to_json().encode()


# --------------------------------------------------------------------------- the good path


def test_sign_then_verify_returns_the_statement_and_signer(inst: SigstoreInstance) -> None:
    bundle = sign(inst)
    data = json.loads(bundle)
    assert data["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert data["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    assert "certificate" in data["verificationMaterial"]

    verified = verify(inst, bundle)

    assert isinstance(verified, KeylessVerified)
    assert verified.payload == STATEMENT
    assert verified.statement.subject[0].digest == {"sha256": "ab" * 32}
    assert verified.statement.predicate_type == "https://model_signing/signature/v1.0"
    assert (verified.identity, verified.issuer) == (IDENTITY, ISSUER)
    assert verified.signer == "dev@example.com (https://issuer.example)"
    assert verified.signed_at is not None
    assert abs(verified.signed_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    assert verified.certificate.not_valid_after_utc > verified.signed_at


def test_any_allowed_pair_matches_and_the_matching_one_is_reported(inst: SigstoreInstance) -> None:
    bundle = sign(inst)
    verified = verify(inst, bundle, [("ci@example.org", "https://ci.example"), (IDENTITY, ISSUER)])
    assert verified.signer == f"{IDENTITY} ({ISSUER})"


def test_uri_identity_of_a_ci_workflow(inst: SigstoreInstance) -> None:
    workflow = "https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main"
    bundle = sign(inst, identity=workflow, issuer="https://token.example")
    assert verify(inst, bundle, [(workflow, "https://token.example")]).identity == workflow


def test_alternative_v03_media_type_spelling_is_accepted(inst: SigstoreInstance) -> None:
    bundle = edited(sign(inst), lambda d: d.__setitem__("mediaType", ALT_MEDIA_TYPE))
    assert verify(inst, bundle).payload == STATEMENT


def test_expired_certificate_with_log_time_inside_its_validity_is_accepted(inst: SigstoreInstance) -> None:
    bundle = made(inst, cert_validity=(-2 * HOUR, -HOUR), integrated_time_shift=dt.timedelta(minutes=-90))
    verified = verify(inst, bundle)
    assert verified.signed_at is not None and verified.signed_at < dt.datetime.now(dt.UTC) - HOUR


# --------------------------------------------------------------------------- identity (docs/threats.md 18)


def test_wrong_san_is_an_identity_mismatch(inst: SigstoreInstance) -> None:
    error = refused(Reason.IDENTITY_MISMATCH, inst, sign(inst, identity="mallory@example.com"))
    assert "mallory@example.com" in error.message and IDENTITY in error.message


def test_right_san_wrong_issuer_is_an_issuer_mismatch(inst: SigstoreInstance) -> None:
    error = refused(Reason.ISSUER_MISMATCH, inst, sign(inst, issuer="https://evil-issuer.example"))
    assert "https://evil-issuer.example" in error.message


def test_identity_matching_is_exact(inst: SigstoreInstance) -> None:
    bundle = sign(inst)
    for identity, issuer in [("Dev@example.com", ISSUER), ("dev@example.co", ISSUER),
                             (IDENTITY, ISSUER + "/"), (IDENTITY, "https://issuer.example.evil")]:
        with pytest.raises(VerificationFailed) as info:
            verify(inst, bundle, [(identity, issuer)])
        assert info.value.reason in (Reason.IDENTITY_MISMATCH, Reason.ISSUER_MISMATCH)


@pytest.mark.parametrize(
    "identities",
    [[], [(IDENTITY, "")], [("", ISSUER)], [(IDENTITY,)], "dev@example.com", [(IDENTITY, None)]],
    ids=["none", "empty-issuer", "empty-identity", "not-a-pair", "a-string", "none-issuer"],
)
def test_no_usable_identities_is_refused(inst: SigstoreInstance, identities: Any) -> None:
    refused(Reason.NO_IDENTITIES, inst, sign(inst), identities=identities)


# --------------------------------------------------------------------------- certificate (docs/threats.md 18)


def test_certificate_not_chaining_to_the_trusted_root(inst: SigstoreInstance) -> None:
    refused(Reason.UNTRUSTED_CHAIN, inst, sign(inst, rogue_ca=True))


def test_bundle_of_another_instance_is_untrusted(inst: SigstoreInstance, tmp_path: Path) -> None:
    other = SigstoreInstance.create(tmp_path / "other")
    refused(Reason.UNTRUSTED_CHAIN, inst, sign(other))


def test_expired_certificate_without_a_valid_log_time(inst: SigstoreInstance) -> None:
    refused(Reason.CERTIFICATE_NOT_VALID_AT_SIGNING, inst, made(inst, cert_validity=(-2 * HOUR, -HOUR)))


@pytest.mark.parametrize("shift", [HOUR, -HOUR], ids=["logged-after-expiry", "logged-before-issuance"])
def test_log_time_outside_the_certificate_validity(inst: SigstoreInstance, shift: dt.timedelta) -> None:
    refused(Reason.CERTIFICATE_NOT_VALID_AT_SIGNING, inst, sign(inst, integrated_time_shift=shift))


@pytest.mark.parametrize("eku", [(ExtendedKeyUsageOID.CLIENT_AUTH,), None], ids=["client-auth", "no-eku"])
def test_certificate_without_code_signing_eku(inst: SigstoreInstance, eku: object) -> None:
    # eku=None: sigstore 4.5.1 lets cryptography's ExtensionNotFound escape; still a reason.
    refused(Reason.CERTIFICATE_USAGE, inst, sign(inst, eku=eku))


@pytest.mark.parametrize("sct", ["untrusted", "missing"])
def test_bad_sct(inst: SigstoreInstance, sct: str) -> None:
    refused(Reason.BAD_SCT, inst, made(inst, sct=sct))


# --------------------------------------------------------------------------- log (docs/threats.md 18)


@pytest.mark.parametrize("mismatch", ["payload", "signature"])
def test_log_entry_for_other_content(inst: SigstoreInstance, mismatch: str) -> None:
    refused(Reason.LOG_ENTRY_MISMATCH, inst, sign(inst, entry_mismatch=mismatch))


def test_genuine_log_entry_of_another_bundle(inst: SigstoreInstance) -> None:
    from sigstore.models import Bundle

    bundle = Bundle.from_json(sign(inst, in_toto_statement(name="model-a")))
    donor = Bundle.from_json(sign(inst, in_toto_statement(name="model-b")))
    refused(Reason.LOG_ENTRY_MISMATCH, inst, swap_log_entry(bundle, donor).to_json().encode())


def test_bad_inclusion_proof(inst: SigstoreInstance) -> None:
    refused(Reason.BAD_INCLUSION_PROOF, inst, sign(inst, bad_inclusion_proof=True))


def test_inclusion_proof_edited_after_signing(inst: SigstoreInstance) -> None:
    def flip(data: dict) -> None:
        proof = data["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
        proof["hashes"] = ["A" * 43 + "="] * (len(proof["hashes"]) or 1)

    refused(Reason.BAD_INCLUSION_PROOF, inst, edited(sign(inst), flip))


def test_data_in_the_message_does_not_pick_the_reason(inst: SigstoreInstance) -> None:
    """sigstore's message for a bad inclusion proof carries the proof's repr, checkpoint
    included; base64 that happens to spell "sct" once made this a bad SCT (~0.4% of
    signings). Here the checkpoint's signature is made to spell it."""

    def spell_sct(data: dict) -> None:
        checkpoint = data["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
        head, _, signature_line = checkpoint["envelope"].rstrip("\n").rpartition("\n")
        checkpoint["envelope"] = f"{head}\n{signature_line[:-12]}EScTTajs{signature_line[-4:]}\n"

    # Matching needles anywhere in sigstore's message gives Reason.BAD_SCT here.
    refused(Reason.BAD_INCLUSION_PROOF, inst, edited(sign(inst, bad_inclusion_proof=True), spell_sct))


def test_checkpoint_not_signed_by_the_log(inst: SigstoreInstance) -> None:
    refused(Reason.BAD_CHECKPOINT, inst, sign(inst, bad_checkpoint=True))


def test_bad_set(inst: SigstoreInstance) -> None:
    refused(Reason.BAD_SET, inst, sign(inst, bad_set=True))


def test_integrated_time_edited_after_signing_breaks_the_set(inst: SigstoreInstance) -> None:
    def earlier(data: dict) -> None:
        entry = data["verificationMaterial"]["tlogEntries"][0]
        entry["integratedTime"] = str(int(entry["integratedTime"]) - 1)

    refused(Reason.BAD_SET, inst, edited(sign(inst), earlier))


def test_log_entry_naming_an_unknown_log(inst: SigstoreInstance) -> None:
    """sigstore tries every log key when the logId is unknown; we want the named log."""
    def rename(data: dict) -> None:
        entry = data["verificationMaterial"]["tlogEntries"][0]
        entry["logId"]["keyId"] = base64.b64encode(b"\x01" * 32).decode()

    with pytest.raises(VerificationFailed) as info:
        verify(inst, edited(sign(inst), rename))
    # The SET covers the log ID, so sigstore already refuses; either way it is a log failure.
    assert info.value.reason in (Reason.BAD_SET, Reason.BAD_LOG_ENTRY, Reason.BAD_CHECKPOINT)


def test_trusted_root_whose_log_ids_do_not_name_the_entry_log(inst: SigstoreInstance, tmp_path: Path) -> None:
    """sigstore finds the log key by trying them all; we also want the root to name that log."""
    def rename(data: dict) -> None:
        data["tlogs"][0]["logId"]["keyId"] = base64.b64encode(b"\x02" * 32).decode()

    bundle = sign(inst)
    error = refused(Reason.BAD_LOG_ENTRY, inst, bundle, trusted_root=_root_variant(inst, tmp_path, rename))
    assert "not in the trusted root" in error.message


# --------------------------------------------------------------------------- tampering


def test_statement_edited_after_signing(inst: SigstoreInstance) -> None:
    def swap_payload(data: dict) -> None:
        data["dsseEnvelope"]["payload"] = base64.b64encode(in_toto_statement(name="evil")).decode()

    refused(Reason.UNTRUSTED_SIGNATURE, inst, edited(sign(inst), swap_payload))


def test_payload_type_edited_after_signing(inst: SigstoreInstance) -> None:
    def retype(data: dict) -> None:
        data["dsseEnvelope"]["payloadType"] = "application/json"

    refused(Reason.PAYLOAD_TYPE, inst, edited(sign(inst), retype))


def test_signed_payload_that_is_not_an_in_toto_type(inst: SigstoreInstance) -> None:
    refused(Reason.PAYLOAD_TYPE, inst, made(inst, payload_type="text/plain"))


def test_signed_payload_that_is_not_a_statement(inst: SigstoreInstance) -> None:
    """Genuinely signed, but not a Statement v1: the strict parser still refuses it."""
    payload = json.dumps({"_type": "https://in-toto.io/Statement/v0.1", "subject": []}).encode()
    refused(Reason.STATEMENT_TYPE, inst, made(inst, payload))
    dup = b'{"_type":"https://in-toto.io/Statement/v1","subject":[],"subject":[{"digest":{"sha256":"' + b"a" * 64 + b'"}}],"predicateType":"x"}'
    refused(Reason.DUPLICATE_KEY, inst, made(inst, dup))


def test_second_signature_is_refused(inst: SigstoreInstance) -> None:
    def add(data: dict) -> None:
        sigs = data["dsseEnvelope"]["signatures"]
        sigs.append(dict(sigs[0]))

    refused(Reason.TOO_MANY_SIGNATURES, inst, edited(sign(inst), add))


def test_non_canonical_base64_payload_is_refused(inst: SigstoreInstance) -> None:
    def unpad(data: dict) -> None:
        env = data["dsseEnvelope"]
        env["payload"] = env["payload"].rstrip("=") + "\n"

    refused(Reason.BAD_BASE64, inst, edited(sign(inst), unpad))


# --------------------------------------------------------------------------- strict input


def test_key_bundle_is_not_a_keyless_bundle(inst: SigstoreInstance, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    bundle = sign_statement_with_key(STATEMENT, key)
    error = refused(Reason.NOT_A_KEYLESS_BUNDLE, inst, bundle)
    assert error.hint and "public key" in error.hint
    # Dispatch needs no trust root: it is decided before the root is read.
    refused(Reason.NOT_A_KEYLESS_BUNDLE, inst, bundle, trusted_root=tmp_path / "missing.json")


def test_oversized_bundle(inst: SigstoreInstance) -> None:
    refused(Reason.TOO_LARGE, inst, b" " * (10 * 1024 * 1024 + 1))


def test_duplicate_json_key_is_refused_before_sigstore(inst: SigstoreInstance) -> None:
    bundle = sign(inst)
    text = bundle.decode()
    # sigstore's parser would take the last mediaType; we refuse the document.
    doubled = '{"mediaType":"application/vnd.dev.sigstore.bundle.v0.1+json",' + text[1:]
    refused(Reason.DUPLICATE_KEY, inst, doubled.encode())


@pytest.mark.parametrize(
    ("bundle", "reason"),
    [
        (b"not json", Reason.MALFORMED_BUNDLE),
        (b"[]", Reason.MALFORMED_BUNDLE),
        (b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.2+json"}', Reason.UNKNOWN_MEDIA_TYPE),
        (b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}', Reason.MALFORMED_BUNDLE),
        (b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{}}',
         Reason.VERIFICATION_MATERIAL),
    ],
    ids=["not-json", "not-an-object", "v0.2", "no-material", "empty-material"],
)
def test_malformed_bundles(inst: SigstoreInstance, bundle: bytes, reason: Reason) -> None:
    refused(reason, inst, bundle)


def test_certificate_and_public_key_together(inst: SigstoreInstance) -> None:
    def both(data: dict) -> None:
        data["verificationMaterial"]["publicKey"] = {"hint": "x"}

    refused(Reason.VERIFICATION_MATERIAL, inst, edited(sign(inst), both))


def test_message_signature_bundle_is_not_dsse(inst: SigstoreInstance) -> None:
    with inst.signing_context().signer(inst.identity_token()) as signer:
        bundle = signer.sign_artifact(b"model bytes").to_json().encode()
    refused(Reason.NOT_DSSE, inst, bundle)


def test_garbage_certificate_is_a_malformed_bundle(inst: SigstoreInstance) -> None:
    def garble(data: dict) -> None:
        data["verificationMaterial"]["certificate"]["rawBytes"] = base64.b64encode(b"junk").decode()

    refused(Reason.MALFORMED_BUNDLE, inst, edited(sign(inst), garble))


# --------------------------------------------------------------------------- trust root (docs/threats.md 19)


def test_missing_trusted_root_fails_closed(inst: SigstoreInstance, tmp_path: Path) -> None:
    error = refused(Reason.TRUST_ROOT_UNAVAILABLE, inst, sign(inst), trusted_root=tmp_path / "nope.json")
    assert "does not exist" in error.message
    refused(Reason.TRUST_ROOT_UNAVAILABLE, inst, sign(inst), trusted_root=tmp_path)  # a directory


def _root_variant(inst: SigstoreInstance, tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    data = json.loads(inst.trusted_root_path.read_text())
    edit(data)
    path = tmp_path / "trusted_root.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "content",
    [b"garbage", b"", b"[]", b'{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}'],
    ids=["garbage", "empty", "array", "no-authorities"],
)
def test_garbage_trusted_root_fails_closed(inst: SigstoreInstance, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "trusted_root.json"
    path.write_bytes(content)
    refused(Reason.TRUST_ROOT_INVALID, inst, sign(inst), trusted_root=path)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.__setitem__("mediaType", "application/vnd.dev.sigstore.trustedroot+json;version=0.2"),
        lambda d: d.__setitem__("tlogs", []),
        lambda d: d.__setitem__("ctlogs", []),
        lambda d: d.__setitem__("certificateAuthorities", []),
        lambda d: d["certificateAuthorities"][0]["certChain"].__setitem__("certificates", []),
    ],
    ids=["media-type", "no-tlogs", "no-ctlogs", "no-cas", "empty-chain"],
)
def test_unusable_trusted_root_fails_closed(inst: SigstoreInstance, tmp_path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    refused(Reason.TRUST_ROOT_INVALID, inst, sign(inst), trusted_root=_root_variant(inst, tmp_path, edit))


def test_trusted_root_with_duplicate_key_fails_closed(inst: SigstoreInstance, tmp_path: Path) -> None:
    text = inst.trusted_root_path.read_text().strip()
    path = tmp_path / "trusted_root.json"
    path.write_text('{"tlogs": [],' + text[1:])
    refused(Reason.TRUST_ROOT_INVALID, inst, sign(inst), trusted_root=path)


def _ended(days_ago: int) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_certificate_authority_retired_before_signing_is_stale(inst: SigstoreInstance, tmp_path: Path) -> None:
    """sigstore-python ignores validFor; a CA the root retired must not vouch for new leaves."""
    bundle = sign(inst)

    def retire(data: dict) -> None:
        data["certificateAuthorities"][0]["validFor"]["end"] = _ended(1)

    error = refused(Reason.TRUST_ROOT_STALE, inst, bundle, trusted_root=_root_variant(inst, tmp_path, retire))
    assert "certificate authority" in error.message


def test_log_retired_before_signing_is_stale(inst: SigstoreInstance, tmp_path: Path) -> None:
    bundle = sign(inst)

    def retire(data: dict) -> None:
        data["tlogs"][0]["publicKey"]["validFor"]["end"] = _ended(1)

    error = refused(Reason.TRUST_ROOT_STALE, inst, bundle, trusted_root=_root_variant(inst, tmp_path, retire))
    assert "transparency log" in error.message


def test_authority_not_yet_valid_at_signing_is_stale(inst: SigstoreInstance, tmp_path: Path) -> None:
    """The root lists the CA twice: retired before the signature, and again from an hour on."""
    bundle = sign(inst)
    future = (dt.datetime.now(dt.UTC) + HOUR).strftime("%Y-%m-%dT%H:%M:%SZ")

    def gap(data: dict) -> None:
        ca = data["certificateAuthorities"][0]
        later = json.loads(json.dumps(ca))
        ca["validFor"]["end"] = _ended(1)
        later["validFor"] = {"start": future}
        data["certificateAuthorities"].append(later)

    refused(Reason.TRUST_ROOT_STALE, inst, bundle, trusted_root=_root_variant(inst, tmp_path, gap))


def test_root_whose_only_authority_is_not_yet_valid_fails_closed(inst: SigstoreInstance, tmp_path: Path) -> None:
    future = (dt.datetime.now(dt.UTC) + HOUR).strftime("%Y-%m-%dT%H:%M:%SZ")

    def later(data: dict) -> None:
        data["certificateAuthorities"][0]["validFor"]["start"] = future

    refused(Reason.TRUST_ROOT_INVALID, inst, sign(inst), trusted_root=_root_variant(inst, tmp_path, later))


def test_authority_still_valid_with_a_future_end_is_fine(inst: SigstoreInstance, tmp_path: Path) -> None:
    bundle = sign(inst)

    def rotate_later(data: dict) -> None:
        end = (dt.datetime.now(dt.UTC) + HOUR).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
        data["certificateAuthorities"][0]["validFor"]["end"] = end
        data["tlogs"][0]["publicKey"]["validFor"]["end"] = end

    assert verify(inst, bundle, trusted_root=_root_variant(inst, tmp_path, rotate_later)).payload == STATEMENT


def test_default_root_is_the_embedded_production_root_offline(inst: SigstoreInstance, tmp_path: Path) -> None:
    """No trusted_root: sigstore's production root without a TUF refresh (no network). It
    does not trust the test instance, and nothing is read from or written to the user cache."""
    refused(Reason.UNTRUSTED_CHAIN, inst, sign(inst), trusted_root=None)
    assert not list((tmp_path / "home").rglob("trusted_root.json"))


def _production_cache_dir(tmp_path: Path) -> Path:
    """Where sigstore-python keeps its unchecked copy of the production root (its TUF
    targets cache) under the test's $XDG_CACHE_HOME."""
    return tmp_path / "home" / ".cache" / "sigstore-python" / "tuf" / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"


def test_a_tampered_user_cache_root_is_never_trusted_offline(inst: SigstoreInstance, tmp_path: Path) -> None:
    """Issue 7 review: offline, sigstore-python reads trusted_root.json from the user cache
    dir without any TUF signature check. Whoever can write $XDG_CACHE_HOME must not decide
    which keyless signatures count: the test instance's root planted there changes nothing."""
    bundle = sign(inst)
    cache = _production_cache_dir(tmp_path)
    cache.mkdir(parents=True)
    (cache / "trusted_root.json").write_bytes(inst.trusted_root_path.read_bytes())
    refused(Reason.UNTRUSTED_CHAIN, inst, bundle, trusted_root=None)
    refused(Reason.UNTRUSTED_CHAIN, inst, bundle, trusted_root=None, offline=True)
    # Given explicitly, the same root is trusted: the planted copy was the only difference.
    assert verify(inst, bundle).payload == STATEMENT


def test_embedded_production_root_that_cannot_be_read_fails_closed(
    inst: SigstoreInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> bytes:
        raise FileNotFoundError("trusted_root.json")

    monkeypatch.setattr(keyless, "_embedded_production_root", missing)
    error = refused(Reason.TRUST_ROOT_UNAVAILABLE, inst, sign(inst), trusted_root=None)
    assert "--trusted-root" in (error.hint or "")
    monkeypatch.setattr(keyless, "_embedded_production_root", lambda: b'{"mediaType": "x"}')
    refused(Reason.TRUST_ROOT_INVALID, inst, sign(inst), trusted_root=None)
    monkeypatch.setattr(keyless, "_embedded_production_root", lambda: inst.trusted_root_path.read_bytes())
    assert verify(inst, sign(inst), trusted_root=None).payload == STATEMENT  # it is what is used


def test_production_root_that_cannot_be_loaded_fails_closed(
    inst: SigstoreInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []

    def no_tuf(offline: bool = False) -> None:
        calls.append(offline)
        raise TUFError("Failed to refresh TUF metadata")

    monkeypatch.setattr(keyless.ClientTrustConfig, "production", staticmethod(no_tuf))
    refused(Reason.TRUST_ROOT_UNAVAILABLE, inst, sign(inst), trusted_root=None, offline=False)
    assert calls == [False]


# --------------------------------------------------------------------------- identity tokens


def test_no_identity_token_anywhere_is_a_typed_error_with_a_hint(inst: SigstoreInstance) -> None:
    assert identity_token_from_environment() is None
    with pytest.raises(IdentityTokenMissing) as info:
        sign_keyless(STATEMENT, identity_token=None, signing_context=inst.signing_context())
    hint = info.value.hint or ""
    for needle in ("OCIMODEL_IDENTITY_TOKEN", "SIGSTORE_ID_TOKEN", "id-token: write", "browser"):
        assert needle in hint
    assert isinstance(info.value, KeylessSigningError)


def test_identity_token_from_the_environment(inst: SigstoreInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    token = inst.oidc_jwt("ci@example.org", ISSUER)
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", token + "\n")
    assert identity_token_from_environment() == token
    bundle = sign_keyless(STATEMENT, identity_token=None, signing_context=inst.signing_context())
    assert verify(inst, bundle, [("ci@example.org", ISSUER)]).identity == "ci@example.org"

    monkeypatch.setenv("OCIMODEL_IDENTITY_TOKEN", inst.oidc_jwt("first@example.org", ISSUER))
    bundle = sign_keyless(STATEMENT, identity_token="", signing_context=inst.signing_context())
    assert verify(inst, bundle, [("first@example.org", ISSUER)]).identity == "first@example.org"
    # An explicit argument wins over both.
    bundle = sign_keyless(STATEMENT, identity_token=inst.oidc_jwt(), signing_context=inst.signing_context())
    assert verify(inst, bundle).identity == IDENTITY


def test_ambient_ci_credential_is_used(inst: SigstoreInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    token = inst.oidc_jwt("https://github.com/org/repo/.github/workflows/r.yml@refs/heads/main", ISSUER)
    monkeypatch.setattr(keyless, "detect_credential", lambda: token)
    assert identity_token_from_environment() == token
    bundle = sign_keyless(STATEMENT, identity_token=None, signing_context=inst.signing_context())
    assert verify(inst, bundle, [("https://github.com/org/repo/.github/workflows/r.yml@refs/heads/main", ISSUER)])


def test_broken_ambient_credential_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise IdentityError("GitHub: missing or insufficient OIDC token permissions")

    monkeypatch.setattr(keyless, "detect_credential", broken)
    with pytest.raises(KeylessSigningError, match="ambient CI credential detection failed"):
        identity_token_from_environment()


def test_github_actions_without_a_token_request_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real detector: GitHub Actions without `id-token: write` has no request URL."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    with pytest.raises(KeylessSigningError) as info:
        identity_token_from_environment()
    assert "id-token" in (info.value.hint or "") or "permission" in (info.value.hint or "").lower()


@pytest.mark.parametrize("token_kind", ["expired", "garbage"])
def test_refused_identity_token_never_leaks_it(inst: SigstoreInstance, token_kind: str) -> None:
    raw = inst.oidc_jwt(lifetime=dt.timedelta(minutes=-5)) if token_kind == "expired" else "not.a.jwt"
    with pytest.raises(KeylessSigningError) as info:
        sign_keyless(STATEMENT, identity_token=raw, signing_context=inst.signing_context())
    assert_no_secret([str(info.value), repr(info.value), info.value.hint or ""], [raw])


def test_token_the_issuer_did_not_sign_is_refused_by_fulcio(inst: SigstoreInstance) -> None:
    raw = inst.oidc_jwt(signed=False)
    with pytest.raises(KeylessSigningError, match="keyless signing failed") as info:
        sign_keyless(STATEMENT, identity_token=raw, signing_context=inst.signing_context())
    assert_no_secret([str(info.value), repr(info.value), info.value.hint or ""], [raw])


# --------------------------------------------------------------------------- signing options


def test_refuses_to_sign_what_is_not_a_statement(inst: SigstoreInstance) -> None:
    with pytest.raises(KeylessSigningError, match="refusing to sign"):
        sign_keyless(b'{"hello": 1}', identity_token=inst.oidc_jwt(), signing_context=inst.signing_context())


def test_contradictory_signing_options(inst: SigstoreInstance, tmp_path: Path) -> None:
    """Each option alone is usable (the trust config is a valid file), so only the check
    that they contradict each other can refuse them; without it, signing would go ahead
    with one of the two and fail (or succeed) for another reason."""
    config = tmp_path / "trust_config.json"
    config.write_text(json.dumps(_client_trust_config(inst)))
    with pytest.raises(UsageError, match="signing context or a trust config / staging, not both"):
        sign_keyless(STATEMENT, identity_token=inst.oidc_jwt(), staging=True,
                     signing_context=inst.signing_context())
    with pytest.raises(UsageError, match="signing context or a trust config / staging, not both"):
        sign_keyless(STATEMENT, identity_token=inst.oidc_jwt(), trust_config=config,
                     signing_context=inst.signing_context())
    with pytest.raises(UsageError, match="either a trust config or staging, not both"):
        sign_keyless(STATEMENT, identity_token=inst.oidc_jwt(), staging=True, trust_config=config)


def _client_trust_config(inst: SigstoreInstance) -> dict[str, Any]:
    service = {"url": "http://127.0.0.1:1/{}", "majorApiVersion": 1,
               "validFor": {"start": "2020-01-01T00:00:00Z"}, "operator": "ocimodel-tests"}
    return {
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": json.loads(inst.trusted_root_path.read_text()),
        "signingConfig": {
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": [{**service, "url": "http://127.0.0.1:1/fulcio"}],
            "oidcUrls": [{**service, "url": "http://127.0.0.1:1/oidc"}],
            "rekorTlogUrls": [{**service, "url": "http://127.0.0.1:1/rekor"}],
            "tsaUrls": [],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaConfig": {"selector": "ANY"},
        },
    }


def test_private_instance_trust_config_is_used(inst: SigstoreInstance, tmp_path: Path) -> None:
    """The config's Fulcio is a closed loopback port: signing is attempted there, and fails."""
    path = tmp_path / "trust_config.json"
    path.write_text(json.dumps(_client_trust_config(inst)))
    with pytest.raises(KeylessSigningError, match="keyless signing failed"):
        sign_keyless(STATEMENT, identity_token=inst.oidc_jwt(), trust_config=path)


@pytest.mark.parametrize("content", [None, b"garbage", b'{"mediaType": "x"}'], ids=["missing", "garbage", "wrong"])
def test_unusable_trust_config(inst: SigstoreInstance, tmp_path: Path, content: bytes | None) -> None:
    """The file the user named cannot be used: a usage error (exit 2), not a signing failure."""
    path = tmp_path / "trust_config.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match="trust config"):
        sign_keyless(STATEMENT, identity_token=inst.oidc_jwt(), trust_config=path)


@pytest.mark.parametrize("staging", [False, True])
def test_public_instance_unreachable_is_a_typed_error(
    inst: SigstoreInstance, monkeypatch: pytest.MonkeyPatch, staging: bool
) -> None:
    def no_tuf(offline: bool = False) -> None:
        raise TUFError("Failed to refresh TUF metadata")

    monkeypatch.setattr(keyless.ClientTrustConfig, "production", staticmethod(no_tuf))
    monkeypatch.setattr(keyless.ClientTrustConfig, "staging", staticmethod(no_tuf))
    with pytest.raises(KeylessSigningError, match="staging" if staging else "production") as info:
        sign_keyless(STATEMENT, identity_token=inst.oidc_jwt(), staging=staging)
    assert "--trust-config" in (info.value.hint or "")
