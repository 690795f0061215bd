"""Key-signed Sigstore bundles: the round trip, and every bundle, envelope and statement
attack of docs/threats.md 11-16 that this layer must refuse, each with its reason."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ocimodel.errors import InvalidDigest, UsageError
from ocimodel.oci.mediatypes import BUNDLE_MEDIA_TYPE, BUNDLE_MEDIA_TYPE_ALT, IN_TOTO_PAYLOAD_TYPE
from ocimodel.signing import dsse
from ocimodel.signing.bundle import (
    MAX_BUNDLE_BYTES,
    MAX_SIGNATURES,
    sign_statement,
    sign_statement_with_key,
    verify_key_bundle,
)
from ocimodel.signing.errors import NotAKeyBundle, Reason, UnsupportedKey, VerificationFailed
from ocimodel.signing.keys import key_hint
from ocimodel.signing.statement import (
    COSIGN_SIGN_PREDICATE,
    attestation_statement,
    check_predicate_type,
    check_subject,
    parse_statement,
    signature_statement,
)
from tests.support.model_signing_oracle import sign_with_key

MODEL_A = "sha256:" + "a1" * 32
MODEL_B = "sha256:" + "b2" * 32
SBOM_PREDICATE = "https://cyclonedx.org/bom"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def attacker() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _sig(private_key, payload: bytes, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> str:
    return dsse.b64encode(private_key.sign(dsse.pae(payload_type, payload), ec.ECDSA(hashes.SHA256())))


def craft(
    payload: bytes,
    signers=(),
    *,
    sigs: list[str] | None = None,
    payload_type: str = IN_TOTO_PAYLOAD_TYPE,
    material: dict | None = None,
    media_type: str | None = BUNDLE_MEDIA_TYPE,
    encoded_payload: str | None = None,
) -> bytes:
    """A bundle built by hand, the way an attacker would."""
    if sigs is None:
        sigs = [_sig(s, payload, payload_type) for s in signers]
    document: dict = {
        "verificationMaterial": material if material is not None else {"publicKey": {"hint": ""}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": encoded_payload if encoded_payload is not None else dsse.b64encode(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": sig, "keyid": ""} for sig in sigs],
        },
    }
    if media_type is not None:
        document["mediaType"] = media_type
    return json.dumps(document).encode()


def refused(reason: Reason, bundle: bytes, trusted) -> VerificationFailed:
    with pytest.raises(VerificationFailed) as caught:
        verify_key_bundle(bundle, trusted)
    assert caught.value.reason == reason, caught.value.message
    return caught.value


STATEMENT = signature_statement(MODEL_A).to_json()


# --- formats ------------------------------------------------------------------------------


def test_signature_statement_is_what_cosign_writes() -> None:
    assert STATEMENT == (
        b'{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"'
        + b"a1" * 32
        + b'"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}'
    )


def test_pae_matches_the_dsse_spec_and_model_signing(key, tmp_path: Path) -> None:
    # The example of the DSSE protocol document.
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    # Lengths are in bytes, not characters.
    assert dsse.pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"
    # model-signing (its public API) signs an envelope: its signature verifies over
    # ocimodel's PAE of that envelope, so the two encode the signed bytes the same way.
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 100)
    private = tmp_path / "signing.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    envelope = sign_with_key(model, private, tmp_path / "model.sig")["dsseEnvelope"]
    assert envelope["payloadType"] == IN_TOTO_PAYLOAD_TYPE
    signed = dsse.pae(envelope["payloadType"], base64.b64decode(envelope["payload"]))
    key.public_key().verify(base64.b64decode(envelope["signatures"][0]["sig"]), signed, ec.ECDSA(hashes.SHA256()))


def test_bundle_shape(key) -> None:
    document = json.loads(sign_statement_with_key(STATEMENT, key))
    assert document["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert document["verificationMaterial"] == {"publicKey": {"hint": key_hint(key)}, "tlogEntries": []}
    envelope = document["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert base64.b64decode(envelope["payload"]) == STATEMENT
    assert [set(s) for s in envelope["signatures"]] == [{"sig", "keyid"}]
    assert envelope["signatures"][0]["keyid"] == ""
    # A DER ECDSA signature: SEQUENCE of two INTEGERs.
    assert base64.b64decode(envelope["signatures"][0]["sig"])[0] == 0x30


# --- round trips --------------------------------------------------------------------------


def test_round_trip(key) -> None:
    verified = verify_key_bundle(sign_statement_with_key(STATEMENT, key), [key.public_key()])
    assert verified.payload == STATEMENT
    assert verified.key == key.public_key()
    assert verified.statement.predicate_type == COSIGN_SIGN_PREDICATE
    check_subject(verified.statement, MODEL_A)
    check_predicate_type(verified.statement, COSIGN_SIGN_PREDICATE)


def test_any_of_several_trusted_keys_verifies(key, attacker) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    verified = verify_key_bundle(sign_statement_with_key(STATEMENT, key), [other.public_key(), key.public_key()])
    assert verified.key == key.public_key()


def test_attestation_keeps_integers_and_structure(key) -> None:
    predicate = {"metrics": {"accuracy": 0.91, "epochs": 3}, "tags": ["a", "b"], "none": None}
    statement = attestation_statement(MODEL_A, "https://ocimodel.dev/evaluation/v1", predicate)
    verified = verify_key_bundle(sign_statement(statement, key), [key.public_key()])
    assert verified.statement.predicate == predicate
    assert type(verified.statement.predicate["metrics"]["epochs"]) is int


def test_attestation_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(UsageError, match="not plain JSON"):
        attestation_statement(MODEL_A, SBOM_PREDICATE, {"x": float("nan")})
    with pytest.raises(UsageError, match="not plain JSON"):
        attestation_statement(MODEL_A, SBOM_PREDICATE, {"x": {1, 2}})
    with pytest.raises(InvalidDigest):
        signature_statement("sha256:short")


def test_two_good_signatures_both_count(key) -> None:
    second = ec.generate_private_key(ec.SECP256R1())
    verified = verify_key_bundle(craft(STATEMENT, [key, second]), [key.public_key(), second.public_key()])
    assert verified.keys == (key.public_key(), second.public_key())


def test_alternative_v03_media_type_spelling(key) -> None:
    verify_key_bundle(craft(STATEMENT, [key], media_type=BUNDLE_MEDIA_TYPE_ALT), [key.public_key()])


# --- docs/threats.md 11: trust -----------------------------------------------------------------------


def test_untrusted_key_is_refused(key, attacker) -> None:
    refused(Reason.UNTRUSTED_SIGNATURE, sign_statement_with_key(STATEMENT, attacker), [key.public_key()])


def test_key_carried_in_the_bundle_is_never_trusted(key, attacker) -> None:
    der = attacker.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    material = {
        "publicKey": {"hint": key_hint(attacker), "rawBytes": base64.b64encode(der).decode(), "keyDetails": "PKIX_ECDSA_P256_SHA_256"},
        "tlogEntries": [],
    }
    refused(Reason.UNTRUSTED_SIGNATURE, craft(STATEMENT, [attacker], material=material), [key.public_key()])


def test_hint_naming_a_trusted_key_proves_nothing(key, attacker) -> None:
    material = {"publicKey": {"hint": key_hint(key)}, "tlogEntries": []}
    refused(Reason.UNTRUSTED_SIGNATURE, craft(STATEMENT, [attacker], material=material), [key.public_key()])


def test_wrong_hint_does_not_stop_a_trusted_key(key) -> None:
    material = {"publicKey": {"hint": "0" * 64}, "tlogEntries": []}
    verify_key_bundle(craft(STATEMENT, [key], material=material), [key.public_key()])


def test_no_trusted_keys_is_a_deny(key) -> None:
    refused(Reason.NO_TRUSTED_KEYS, sign_statement_with_key(STATEMENT, key), [])


def test_trusted_keys_must_be_p256(key) -> None:
    with pytest.raises(UnsupportedKey):
        verify_key_bundle(sign_statement_with_key(STATEMENT, key), [ec.generate_private_key(ec.SECP384R1()).public_key()])
    with pytest.raises(UnsupportedKey):
        sign_statement_with_key(STATEMENT, ec.generate_private_key(ec.SECP384R1()))


# --- docs/threats.md 12: bundle -------------------------------------------------------------------


@pytest.mark.parametrize(
    "media_type",
    [
        None,
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle.v0.4+json",
        "application/json",
    ],
)
def test_unknown_bundle_media_type(key, media_type) -> None:
    refused(Reason.UNKNOWN_MEDIA_TYPE, craft(STATEMENT, [key], media_type=media_type), [key.public_key()])


@pytest.mark.parametrize(
    "material",
    [
        {"publicKey": {"hint": ""}, "certificate": {"rawBytes": "MAA="}, "tlogEntries": []},
        {"publicKey": {"hint": ""}, "x509CertificateChain": {"certificates": []}, "tlogEntries": []},
        {"tlogEntries": []},
    ],
    ids=["cert-and-key", "chain-and-key", "neither"],
)
def test_certificate_and_key_both_or_neither(key, material) -> None:
    refused(Reason.VERIFICATION_MATERIAL, craft(STATEMENT, [key], material=material), [key.public_key()])


@pytest.mark.parametrize("field", ["certificate", "x509CertificateChain"])
def test_keyless_bundle_is_dispatched_not_verified(key, field) -> None:
    material = {field: {"rawBytes": "MAA="}, "tlogEntries": []}
    with pytest.raises(NotAKeyBundle) as caught:
        verify_key_bundle(craft(STATEMENT, [key], material=material), [key.public_key()])
    # A caller that does not dispatch still denies.
    assert isinstance(caught.value, VerificationFailed)
    assert caught.value.reason == Reason.NOT_A_KEY_BUNDLE


def test_message_signature_bundle_is_not_a_statement(key) -> None:
    document = json.loads(sign_statement_with_key(STATEMENT, key))
    document["messageSignature"] = document.pop("dsseEnvelope")
    refused(Reason.NOT_DSSE, json.dumps(document).encode(), [key.public_key()])


def test_duplicate_keys_in_the_bundle(key, attacker) -> None:
    good = sign_statement_with_key(STATEMENT, key).decode()
    evil = json.dumps(json.loads(sign_statement_with_key(signature_statement(MODEL_B).to_json(), attacker))["dsseEnvelope"])
    # Two parsers could pick different envelopes: refuse rather than choose.
    doubled = good[:-1] + ',"dsseEnvelope":' + evil + "}"
    refused(Reason.DUPLICATE_KEY, doubled.encode(), [key.public_key()])


def test_oversized_and_malformed_bundles(key) -> None:
    refused(Reason.TOO_LARGE, b" " * (MAX_BUNDLE_BYTES + 1), [key.public_key()])
    refused(Reason.MALFORMED_BUNDLE, b"{not json", [key.public_key()])
    refused(Reason.MALFORMED_BUNDLE, b"[]", [key.public_key()])
    document = json.loads(sign_statement_with_key(STATEMENT, key))
    document["dsseEnvelope"]["signatures"] = {"sig": "x"}
    refused(Reason.MALFORMED_ENVELOPE, json.dumps(document).encode(), [key.public_key()])
    del document["dsseEnvelope"]
    refused(Reason.MALFORMED_BUNDLE, json.dumps(document).encode(), [key.public_key()])


# --- docs/threats.md 13: envelope -----------------------------------------------------------------


@pytest.mark.parametrize("payload_type", ["application/json", "text/plain", "application/vnd.in-toto+json; charset=utf-8"])
def test_payload_type_other_than_in_toto(key, payload_type) -> None:
    # Correctly signed over its own PAE: only the type is wrong.
    refused(Reason.PAYLOAD_TYPE, craft(STATEMENT, [key], payload_type=payload_type), [key.public_key()])


def test_zero_signatures(key) -> None:
    refused(Reason.NO_SIGNATURES, craft(STATEMENT, []), [key.public_key()])


def test_empty_signature(key) -> None:
    refused(Reason.EMPTY_SIGNATURE, craft(STATEMENT, sigs=[""]), [key.public_key()])
    # An empty one beside a good one is still refused.
    refused(Reason.EMPTY_SIGNATURE, craft(STATEMENT, sigs=[_sig(key, STATEMENT), ""]), [key.public_key()])


@pytest.mark.parametrize("good_first", [True, False])
def test_one_good_one_bad_signature(key, attacker, good_first) -> None:
    good, bad = _sig(key, STATEMENT), _sig(attacker, STATEMENT)
    sigs = [good, bad] if good_first else [bad, good]
    error = refused(Reason.UNTRUSTED_SIGNATURE, craft(STATEMENT, sigs=sigs), [key.public_key()])
    assert "signature 2 of 2" in error.message if good_first else "signature 1 of 2" in error.message


def test_garbage_signature_bytes(key) -> None:
    refused(Reason.UNTRUSTED_SIGNATURE, craft(STATEMENT, sigs=[dsse.b64encode(b"\x30\x03junk")]), [key.public_key()])


def test_too_many_signatures(key) -> None:
    refused(Reason.TOO_MANY_SIGNATURES, craft(STATEMENT, sigs=[_sig(key, STATEMENT)] * (MAX_SIGNATURES + 1)), [key.public_key()])


def _non_canonical(text: str) -> list[str]:
    """Spellings Python's lenient decoder would map to the same bytes."""
    assert text.endswith("=")
    unpadded = text.rstrip("=")
    last = unpadded[-1]
    # Flip an unused low bit of the last character: same bytes under lenient decoding.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    flipped = unpadded[:-1] + alphabet[alphabet.index(last) | 1] + text[len(unpadded):]
    return [
        unpadded,  # padding dropped
        text[:10] + "\n" + text[10:],  # whitespace
        text.replace("+", "-").replace("/", "_") if ("+" in text or "/" in text) else text + "==",  # URL alphabet
        flipped if flipped != text else text + "A",
    ]


def test_non_canonical_base64_payload(key) -> None:
    # A statement whose encoding needs padding, so every variant applies.
    payload = STATEMENT + b" " * ((3 - len(STATEMENT) % 3) % 3 + 1)
    text = dsse.b64encode(payload)
    for variant in _non_canonical(text):
        assert variant != text
        bundle = craft(payload, [key], encoded_payload=variant)
        refused(Reason.BAD_BASE64, bundle, [key.public_key()])


def test_non_canonical_base64_signature(key) -> None:
    for attempt in range(20):  # DER signatures vary in length: find one that needs padding
        sig = _sig(key, STATEMENT)
        if sig.endswith("="):
            break
    for variant in _non_canonical(sig):
        refused(Reason.BAD_BASE64, craft(STATEMENT, sigs=[variant]), [key.public_key()])


# --- docs/threats.md 14: statement ----------------------------------------------------------------


def _signed_payload(key, payload: bytes) -> bytes:
    return craft(payload, [key])


def test_wrong_statement_type(key) -> None:
    for statement_type in ("https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1 ", None):
        document = json.loads(STATEMENT)
        document["_type"] = statement_type
        refused(Reason.STATEMENT_TYPE, _signed_payload(key, json.dumps(document).encode()), [key.public_key()])


def test_duplicate_keys_in_the_statement(key) -> None:
    doubled = STATEMENT[:-1] + b',"subject":[{"digest":{"sha256":"' + b"b2" * 32 + b'"}}]}'
    refused(Reason.DUPLICATE_KEY, _signed_payload(key, doubled), [key.public_key()])


def test_empty_subject_list(key) -> None:
    document = json.loads(STATEMENT)
    document["subject"] = []
    refused(Reason.EMPTY_SUBJECT, _signed_payload(key, json.dumps(document).encode()), [key.public_key()])


@pytest.mark.parametrize(
    "subject",
    [[{"digest": {}}], [{"digest": {"sha256": "A1" * 32}}], [{"digest": {"sha256": "a1"}}], [{"name": 5, "digest": {"sha256": "a1" * 32}}], "x"],
    ids=["no-digest", "upper-hex", "short", "name-not-string", "not-a-list"],
)
def test_malformed_subjects(key, subject) -> None:
    document = json.loads(STATEMENT)
    document["subject"] = subject
    refused(Reason.MALFORMED_STATEMENT, _signed_payload(key, json.dumps(document).encode()), [key.public_key()])


def test_statement_is_not_parsed_before_its_signature_checks_out(key, attacker) -> None:
    refused(Reason.UNTRUSTED_SIGNATURE, craft(b'{"_type": 1, "_type": 2}', [attacker]), [key.public_key()])


def test_one_matching_and_one_foreign_subject(key) -> None:
    document = json.loads(STATEMENT)
    document["subject"].append({"digest": {"sha256": "b2" * 32}})
    verified = verify_key_bundle(_signed_payload(key, json.dumps(document).encode()), [key.public_key()])
    with pytest.raises(VerificationFailed) as caught:
        check_subject(verified.statement, MODEL_A)
    assert caught.value.reason == Reason.SUBJECT_MISMATCH


# --- docs/threats.md 15, 16: predicate confusion, replay -------------------------------------------


def test_sbom_offered_as_the_signature(key) -> None:
    sbom = attestation_statement(MODEL_A, SBOM_PREDICATE, {"bomFormat": "CycloneDX"})
    verified = verify_key_bundle(sign_statement(sbom, key), [key.public_key()])
    check_subject(verified.statement, MODEL_A)  # right model...
    with pytest.raises(VerificationFailed) as caught:  # ...but not a signature
        check_predicate_type(verified.statement, COSIGN_SIGN_PREDICATE)
    assert caught.value.reason == Reason.PREDICATE_TYPE


def test_bundle_for_model_a_replayed_on_model_b(key) -> None:
    verified = verify_key_bundle(sign_statement_with_key(STATEMENT, key), [key.public_key()])
    with pytest.raises(VerificationFailed) as caught:
        check_subject(verified.statement, MODEL_B)
    assert caught.value.reason == Reason.SUBJECT_MISMATCH


def test_parse_statement_caps_size() -> None:
    with pytest.raises(VerificationFailed) as caught:
        parse_statement(b" " * (10 * 1024 * 1024 + 1))
    assert caught.value.reason == Reason.TOO_LARGE
