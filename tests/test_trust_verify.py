"""Signing and verification through the Python API, on the real registry (fallback tag)
and on an OCI layout: allow, deny and the attacks of docs/threats.md 11-19, copies, air-gapped
export/import, the model-signing CLI as an oracle, and pull's verify hook."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

import ocimodel
from ocimodel.api import functions as api_trust
from ocimodel.api import functions as ar
from ocimodel.errors import TransportError, UsageError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Descriptor, parse_manifest
from ocimodel.oci.reference import parse_reference
from ocimodel.signing.bundle import sign_statement, sign_statement_with_key
from ocimodel.signing.errors import VerificationFailed
from ocimodel.signing.files_statement import (
    MODEL_SIGNING_PREDICATE,
    files_of_manifest,
    files_statement,
    files_statement_for_manifest,
)
from ocimodel.signing.keys import load_private_key
from ocimodel.signing.statement import (
    COSIGN_SIGN_PREDICATE,
    attestation_statement,
    signature_statement,
)
from ocimodel.targets.open import open_target
from ocimodel.targets.referrers import push_bytes, push_referrer
from ocimodel.trust.policy import PolicyError
from ocimodel.trust.store import (
    read_bundles,
    write_bundle,
)
from ocimodel.trust.verify import PolicyDenied
from tests.support.model_signing_oracle import verify_with_cli

SBOM = "https://cyclonedx.org/bom"
SLSA = "https://slsa.dev/provenance/v1"


@pytest.fixture(params=[pytest.param("registry", marks=pytest.mark.registry), "layout"])
def repo(request, tmp_path: Path) -> str:
    """A repository to push models to: on the real registry, or an OCI layout."""
    if request.param == "layout":
        return f"oci:{tmp_path / 'store'}"
    registry = request.getfixturevalue("registry")
    return f"{registry.host}/{request.getfixturevalue('repo_name')}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Three key pairs: name -> (private, public)."""
    directory = tmp_path_factory.mktemp("keys")
    pairs = {}
    for name in ("release", "qa", "mallory"):
        api_trust.generate_key_pair(directory / f"{name}.key", directory / f"{name}.pub")
        pairs[name] = (directory / f"{name}.key", directory / f"{name}.pub")
    return pairs


def _failed(decision) -> dict[str, str]:
    return {r.rule: r.detail for r in decision.reasons if not r.passed}


def _refused(decision) -> set[str]:
    return {r.reason for r in decision.refused}


def _target_of(ref: str):
    return open_target(parse_reference(ref), for_write=True)


def _root(target, ref: str) -> tuple[Descriptor, bytes]:
    root = target.resolve(parse_reference(ref).reference)
    return root, target.fetch_manifest(root)


def _write_policy(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- allow and deny ---------------------------------------------------------------------


def test_signed_with_the_trusted_key_is_allowed_and_another_key_is_denied(repo, model_dir, keys):
    ref = f"{repo}:1"
    model = ocimodel.push(model_dir, ref)
    signed = api_trust.sign(ref, key=keys["release"][0])
    assert signed.digest == model.digest
    assert [b.predicate_type for b in signed.bundles] == [COSIGN_SIGN_PREDICATE, MODEL_SIGNING_PREDICATE]

    # The referrer has exactly cosign v3's shape.
    with _target_of(ref) as target:
        referrer = Descriptor(mediaType=mt.OCI_MANIFEST, digest=signed.bundles[0].referrer, size=0)
        listed = {d.digest: d for d in target.referrers(model.digest)}[referrer.digest]
        manifest = json.loads(target.fetch_manifest(listed))
    assert manifest["artifactType"] == mt.BUNDLE_MEDIA_TYPE
    assert manifest["config"] == {"mediaType": mt.OCI_EMPTY, "digest": mt.EMPTY_DIGEST, "size": 2}
    assert [layer["mediaType"] for layer in manifest["layers"]] == [mt.BUNDLE_MEDIA_TYPE]
    assert manifest["subject"]["digest"] == model.digest
    assert manifest["annotations"][mt.ANNOTATION_BUNDLE_CONTENT] == mt.BUNDLE_CONTENT_DSSE
    assert manifest["annotations"][mt.ANNOTATION_BUNDLE_PREDICATE_TYPE] == COSIGN_SIGN_PREDICATE
    assert mt.ANNOTATION_CREATED in manifest["annotations"]

    allowed = api_trust.verify(ref, keys=[keys["release"][1]])
    assert allowed.allowed, allowed.lines()
    assert allowed.digest == model.digest
    assert [(r.rule, r.passed) for r in allowed.reasons] == [("signature", True)]
    assert {(s.signer, s.predicate_type) for s in allowed.signatures} == {
        (str(keys["release"][1]), COSIGN_SIGN_PREDICATE), (str(keys["release"][1]), MODEL_SIGNING_PREDICATE)
    }

    denied = api_trust.verify(ref, keys=[keys["mallory"][1]])
    assert not denied.allowed
    assert "no valid signature" in _failed(denied)["signature"]
    assert _refused(denied) == {"untrusted-signature"}


def test_unsigned_is_denied_as_unsigned(repo, model_dir, keys):
    ref = f"{repo}:1"
    ocimodel.push(model_dir, ref)
    decision = api_trust.verify(ref, keys=[keys["release"][1]])
    assert not decision.allowed
    assert _failed(decision)["signature"].startswith("unsigned")
    assert decision.signatures == [] and decision.refused == []


def test_detached_signature_reads_as_unsigned(repo, model_dir, keys):
    """docs/threats.md 19: stripping the signature referrers must deny, never allow."""
    ref = f"{repo}:1"
    ocimodel.push(model_dir, ref)
    signed = api_trust.sign(ref, key=keys["release"][0])
    for bundle in signed.bundles:
        ar.detach(ref, bundle.referrer)
    decision = api_trust.verify(ref, keys=[keys["release"][1]])
    assert not decision.allowed
    assert _failed(decision)["signature"].startswith("unsigned")


def test_bundle_of_another_model_or_older_version_is_refused(repo, model_dir, keys, tmp_path):
    """docs/threats.md 16: a valid bundle for model A (or v1) attached to model B (or v2)."""
    ref_a, ref_b = f"{repo}:a", f"{repo}:b"
    ocimodel.push(model_dir, ref_a)
    (model_dir / "extra.txt").write_text("v2")
    ocimodel.push(model_dir, ref_b)
    signed = api_trust.sign(ref_a, key=keys["release"][0])
    with _target_of(ref_a) as target:
        root_b, _ = _root(target, ref_b)
        for bundle in signed.bundles:
            listed = next(d for d in target.referrers(signed.digest) if d.digest == bundle.referrer)
            layer = json.loads(target.fetch_manifest(listed))["layers"][0]
            with target.open_blob(Descriptor.model_validate(layer)) as chunks:
                data = b"".join(chunks)
            write_bundle(target, root_b, data, bundle.predicate_type)
    decision = api_trust.verify(ref_b, policy=_write_policy(tmp_path / "p.yaml", f"""
signers: {{release: {{key: {keys['release'][1]}}}}}
signature: {{files: true}}
"""))
    assert not decision.allowed
    assert set(_failed(decision)) == {"signature", "file-signature"}
    # The cosign bundle names A's digest; the file statement lists A's files, not B's.
    assert _refused(decision) == {"subject-mismatch", "unsigned-file"}
    assert api_trust.verify(ref_a, keys=[keys["release"][1]]).allowed


def test_an_sbom_attestation_is_not_a_signature(repo, model_dir, keys, tmp_path):
    """docs/threats.md 15: predicate confusion, by type and by a lying annotation."""
    ref = f"{repo}:1"
    ocimodel.push(model_dir, ref)
    sbom = tmp_path / "sbom.json"
    sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6"}))
    api_trust.attest(ref, predicate_file=sbom, predicate_type=SBOM, key=keys["release"][0])
    decision = api_trust.verify(ref, keys=[keys["release"][1]])
    assert not decision.allowed
    assert SBOM in _failed(decision)["signature"] and "do not count" in _failed(decision)["signature"]

    # The same SBOM statement, signed, stored under a referrer annotated as a signature.
    private = load_private_key(keys["release"][0])
    with _target_of(ref) as target:
        root, _ = _root(target, ref)
        statement = attestation_statement(root.digest, SBOM, {"bomFormat": "CycloneDX"})
        write_bundle(target, root, sign_statement(statement, private), COSIGN_SIGN_PREDICATE)
    decision = api_trust.verify(ref, keys=[keys["release"][1]])
    assert not decision.allowed
    assert _refused(decision) == {"predicate-type"}


def test_a_key_carried_in_the_bundle_is_never_trusted(repo, model_dir, keys):
    """docs/threats.md 11: mallory signs and puts her public key (and release's hint) in the bundle."""
    ref = f"{repo}:1"
    ocimodel.push(model_dir, ref)
    mallory = load_private_key(keys["mallory"][0])
    release_hint = json.loads(sign_statement_with_key(b"{}", load_private_key(keys["release"][0])))[
        "verificationMaterial"]["publicKey"]["hint"]
    from cryptography.hazmat.primitives import serialization

    raw = mallory.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with _target_of(ref) as target:
        root, _ = _root(target, ref)
        bundle = json.loads(sign_statement(signature_statement(root.digest), mallory))
        bundle["verificationMaterial"]["publicKey"] = {
            "rawBytes": base64.b64encode(raw).decode(), "keyDetails": "PKIX_ECDSA_P256_SHA_256", "hint": release_hint,
        }
        write_bundle(target, root, json.dumps(bundle).encode(), COSIGN_SIGN_PREDICATE)
    decision = api_trust.verify(ref, keys=[keys["release"][1]])
    assert not decision.allowed
    assert _refused(decision) == {"untrusted-signature"}


@pytest.mark.parametrize(
    "tamper, reason",
    [
        ("bundle-version", "unknown-media-type"),
        ("referrer-version", "unknown-media-type"),
        ("both-materials", "verification-material"),
        ("no-material", "verification-material"),
        ("two-layers", "malformed-referrer"),
        ("message-signature", "not-dsse"),
    ],
)
def test_tampered_bundles_are_refused(repo, model_dir, keys, tamper, reason):
    """docs/threats.md 12 (and the referrer's shape): the only bundle is a tampered copy of a good one."""
    ref = f"{repo}:1"
    ocimodel.push(model_dir, ref)
    private = load_private_key(keys["release"][0])
    with _target_of(ref) as target:
        root, _ = _root(target, ref)
        bundle = json.loads(sign_statement(signature_statement(root.digest), private))
        artifact_type = layer_type = mt.BUNDLE_MEDIA_TYPE
        annotations = {mt.ANNOTATION_BUNDLE_CONTENT: mt.BUNDLE_CONTENT_DSSE, mt.ANNOTATION_BUNDLE_PREDICATE_TYPE: COSIGN_SIGN_PREDICATE}
        extra_layers: list[Descriptor] = []
        if tamper == "bundle-version":
            bundle["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.4+json"
        elif tamper == "referrer-version":
            artifact_type = layer_type = "application/vnd.dev.sigstore.bundle.v0.4+json"
        elif tamper == "both-materials":
            bundle["verificationMaterial"]["certificate"] = {"rawBytes": "AAAA"}
        elif tamper == "no-material":
            del bundle["verificationMaterial"]["publicKey"]
        elif tamper == "two-layers":
            extra_layers = [push_bytes(target, mt.BUNDLE_MEDIA_TYPE, b"{}")]
        elif tamper == "message-signature":
            annotations[mt.ANNOTATION_BUNDLE_CONTENT] = "message-signature"
        layer = push_bytes(target, layer_type, json.dumps(bundle).encode())
        push_referrer(target, root, artifact_type, [layer, *extra_layers], annotations)
    decision = api_trust.verify(ref, keys=[keys["release"][1]])
    assert not decision.allowed
    assert _refused(decision) == {reason}, decision.lines()


@pytest.mark.parametrize("change, message", [
    ("longer", "longer than its announced"), ("altered", "digest mismatch"), ("embedded", "digest mismatch")])
def test_a_bundle_whose_blob_was_swapped_is_refused(model_dir, keys, tmp_path, change, message):
    """The layer's bytes are read no further than its size and checked against its digest
    before anything parses them: a blob read from the store (a bundle referrer without the
    embedded copy, as cosign and older ocimodel write them), or the copy embedded in the
    manifest's layer descriptor, which is refused when it does not match even though the
    blob does (docs/audit.md, "One GET per record")."""
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    signed = api_trust.sign(ref, key=keys["release"][0], file_signature=False)
    with _target_of(ref) as target:
        listed = next(d for d in target.referrers(signed.digest))
        manifest = json.loads(target.fetch_manifest(listed))
        layer = Descriptor.model_validate(manifest["layers"][0])
        assert layer.data is not None  # ocimodel embeds it
        data = target.blob_path(layer.digest).read_bytes()
        if change == "embedded":
            forged = data.replace(b'"keyid":""', b'"keyid":"x"')[:-1]  # the same length
            layer = layer.model_copy(update={"data": base64.b64encode(forged).decode()})
        else:
            layer = layer.model_copy(update={"data": None})
            blob = target.blob_path(layer.digest)
            blob.write_bytes(data + b" " if change == "longer" else data.replace(b'"keyid":""', b'"keyid":"x"')[:-1])
        target.remove_referrer(signed.digest, listed.digest)
        push_referrer(target, Descriptor.model_validate(manifest["subject"]), manifest["artifactType"], [layer],
                      manifest["annotations"])
    decision = api_trust.verify(ref, keys=[keys["release"][1]])
    assert not decision.allowed and _refused(decision) == {"malformed-referrer"}
    assert message in decision.refused[0].detail


# -- policies ---------------------------------------------------------------------------


def test_all_of_two_keys_and_required_attestations(repo, model_dir, keys, tmp_path):
    ref = f"{repo}:1"
    ocimodel.push(model_dir, ref)
    (tmp_path / "keys").mkdir()
    for name in ("release", "qa"):
        (tmp_path / "keys" / f"{name}.pub").write_bytes(keys[name][1].read_bytes())
    policy = _write_policy(tmp_path / "policy.yaml", f"""
version: 1
signers:
  release: {{key: keys/release.pub}}
  qa: {{key: keys/qa.pub}}
signature:
  signers: [release, qa]
  match: all-of
attestations:
  - type: {SLSA}
    signers: [release]
""")
    api_trust.sign(ref, key=keys["release"][0])
    one = api_trust.verify(ref, policy=policy)
    assert not one.allowed
    assert _failed(one)["signature"] == "all-of: signed by release but not by qa"
    assert _failed(one)[f"attestation {SLSA}"].startswith("no valid attestation")

    api_trust.sign(ref, key=keys["qa"][0], file_signature=False)
    api_trust.attest(ref, provenance=True, key=keys["qa"][0], env={})
    two = api_trust.verify(ref, policy=policy)
    assert not two.allowed  # the provenance is by qa; the rule asks for release
    assert list(_failed(two)) == [f"attestation {SLSA}"]

    api_trust.attest(ref, provenance=True, key=keys["release"][0], env={})
    allowed = api_trust.verify(ref, policy=policy)
    assert allowed.allowed, allowed.lines()
    assert [(r.rule, r.passed) for r in allowed.reasons] == [("signature", True), (f"attestation {SLSA}", True)]
    assert allowed.reasons[0].detail == "signed by release, qa"


def test_required_file_signature(model_dir, keys, tmp_path):
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    policy = _write_policy(tmp_path / "policy.json", json.dumps({
        "signers": {"release": {"key": str(keys["release"][1])}},
        "signature": {"files": True},
    }))
    api_trust.sign(ref, key=keys["release"][0], file_signature=False)
    decision = api_trust.verify(ref, policy=policy)
    assert [(r.rule, r.passed) for r in decision.reasons] == [("signature", True), ("file-signature", False)]
    api_trust.sign(ref, key=keys["release"][0])
    assert api_trust.verify(ref, policy=policy).allowed


# -- copies ---------------------------------------------------------------------------


def test_copy_with_referrers_then_verify_there(registry, repo_name, model_dir, keys, tmp_path):
    ref = f"{registry.host}/{repo_name}/a:1"
    ocimodel.push(model_dir, ref)
    api_trust.sign(ref, key=keys["release"][0])
    copied = ocimodel.copy(ref, f"{registry.host}/{repo_name}/b:1", with_referrers=True)
    assert len(copied.referrers_copied) == 2
    decision = api_trust.verify(f"{registry.host}/{repo_name}/b:1", keys=[keys["release"][1]])
    assert decision.allowed, decision.lines()
    plain = ocimodel.copy(ref, f"{registry.host}/{repo_name}/c:1")
    assert plain.referrers_copied == []
    assert not api_trust.verify(f"{registry.host}/{repo_name}/c:1", keys=[keys["release"][1]]).allowed


def test_export_import_then_verify_offline_on_a_layout(registry, repo_name, model_dir, keys, tmp_path):
    ref = f"{registry.host}/{repo_name}:1"
    ocimodel.push(model_dir, ref)
    api_trust.sign(ref, key=keys["release"][0])
    archive = tmp_path / "model.tar"
    ar.export(ref, archive)
    ar.import_(archive, f"oci:{tmp_path / 'airgap'}")
    decision = api_trust.verify(f"oci:{tmp_path / 'airgap'}:1", keys=[keys["release"][1]], offline=True)
    assert decision.allowed, decision.lines()


# -- the model-signing CLI as an oracle, and pull's hook --------------------------------------


def test_model_signing_cli_accepts_the_exported_signature_for_a_pulled_model(registry, repo_name, model_dir, keys, tmp_path):
    ref = f"{registry.host}/{repo_name}:1"
    ocimodel.push(model_dir, ref)
    api_trust.sign(ref, key=keys["release"][0])
    pulled = tmp_path / "pulled"
    ocimodel.pull(ref, pulled)
    exported = api_trust.export_signature(ref, tmp_path / "model.sig")
    assert exported.candidates == 1

    def model_signing(public: Path) -> subprocess.CompletedProcess:
        return verify_with_cli(pulled, tmp_path / "model.sig", public)

    accepted = model_signing(keys["release"][1])
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert model_signing(keys["mallory"][1]).returncode != 0
    (pulled / "config.json").write_text("{}")
    assert model_signing(keys["release"][1]).returncode != 0


def test_pull_with_a_verify_hook_denies_before_any_file_is_written(repo, model_dir, keys, tmp_path):
    ref = f"{repo}:1"
    ocimodel.push(model_dir, ref)
    destination = tmp_path / "out"
    with pytest.raises(PolicyDenied) as denied:
        ocimodel.pull(ref, destination, verify=api_trust.verify_hook(keys=[keys["release"][1]]))
    assert isinstance(denied.value, VerificationFailed)
    assert "unsigned" in denied.value.message
    assert not destination.exists() or not any(destination.iterdir())

    api_trust.sign(ref, key=keys["mallory"][0])
    with pytest.raises(PolicyDenied):
        ocimodel.pull(ref, destination, verify=api_trust.verify_hook(keys=[keys["release"][1]]))
    assert not destination.exists() or not any(destination.iterdir())

    api_trust.sign(ref, key=keys["release"][0])
    pulled = ocimodel.pull(ref, destination, verify=api_trust.verify_hook(keys=[keys["release"][1]]))
    assert (destination / "model.safetensors").is_file() and pulled.digest


def test_a_listing_that_names_another_models_bundle_is_refused(registry, repo_name, model_dir, keys):
    """A hostile fallback index for B listing A's (valid) signature referrer."""
    from ocimodel.targets import referrers as rf

    ref_a, ref_b = f"{registry.host}/{repo_name}:a", f"{registry.host}/{repo_name}:b"
    ocimodel.push(model_dir, ref_a)
    (model_dir / "extra.txt").write_text("b")
    model_b = ocimodel.push(model_dir, ref_b)
    signed = api_trust.sign(ref_a, key=keys["release"][0], file_signature=False)
    with _target_of(ref_a) as target:
        listed = [d for d in target.referrers(signed.digest)]
        index = rf.index_bytes(listed)
        target.push_manifest(Descriptor.for_bytes(mt.OCI_INDEX, index), index, rf.fallback_tag(model_b.digest))
    decision = api_trust.verify(ref_b, keys=[keys["release"][1]])
    assert not decision.allowed
    assert _refused(decision) == {"subject-mismatch"}
    assert f"not {model_b.digest}" in decision.refused[0].detail


def test_a_registry_that_cannot_be_reached_is_an_error_not_a_verdict(keys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError, match=str(port)):
        api_trust.verify(f"127.0.0.1:{port}/team/model:1", keys=[keys["release"][1]])


# -- issue 7 review: one signature counted twice, export choice, reasons, .github files ----------


def test_one_signature_cannot_count_twice_in_all_of(model_dir, keys, tmp_path):
    """Two signer names for one key (here two files with the same key) would let a single
    release signature meet all-of [alice, bob]: the policy is refused instead."""
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    api_trust.sign(ref, key=keys["release"][0], file_signature=False)
    for name in ("alice", "bob"):
        (tmp_path / f"{name}.pub").write_bytes(keys["release"][1].read_bytes())
    policy = _write_policy(tmp_path / "policy.yaml", """
signers: {alice: {key: alice.pub}, bob: {key: bob.pub}}
signature: {signers: [alice, bob], match: all-of}
""")
    with pytest.raises(PolicyError, match="signers 'alice' and 'bob' are the same public key"):
        api_trust.verify(ref, policy=policy)
    with pytest.raises(PolicyError):
        api_trust.verify_hook(policy=policy)


def _push_bundle(ref: str, bundle: bytes, predicate_type: str, created: str) -> str:
    """Attach a bundle as anyone with push access can, with an unsigned `created` of their choice."""
    with _target_of(ref) as target:
        root, _ = _root(target, ref)
        layer = push_bytes(target, mt.BUNDLE_MEDIA_TYPE, bundle)
        referrer, _ = push_referrer(target, root, mt.BUNDLE_MEDIA_TYPE, [layer], {
            mt.ANNOTATION_BUNDLE_CONTENT: mt.BUNDLE_CONTENT_DSSE, mt.ANNOTATION_BUNDLE_PREDICATE_TYPE: predicate_type, mt.ANNOTATION_CREATED: created,
        })
    return referrer.digest


def _file_signature_of(ref: str, key: Path) -> bytes:
    with _target_of(ref) as target:
        root, data = _root(target, ref)
    manifest = parse_manifest(data, root.media_type)
    return sign_statement(files_statement_for_manifest(manifest, "model"), load_private_key(key))


@pytest.mark.slow
def test_export_is_not_decided_by_the_unsigned_created_annotation(model_dir, keys, tmp_path):
    """Issue 7 review: export took the bundle with the newest `created` annotation, which
    whoever can push chooses. Now only a bundle about these very files is a candidate, a
    trusted key picks among them, and several without a key are refused as ambiguous."""
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    signed = api_trust.sign(ref, key=keys["release"][0])
    release_sig = next(b.referrer for b in signed.bundles if b.predicate_type == MODEL_SIGNING_PREDICATE)
    out = tmp_path / "model.sig"

    # A genuine release file-signature of another model, replayed here and dated later.
    (model_dir / "extra.txt").write_text("another model")
    other = f"oci:{tmp_path / 'store'}:2"
    ocimodel.push(model_dir, other)
    replayed = _push_bundle(ref, _file_signature_of(other, keys["release"][0]), MODEL_SIGNING_PREDICATE,
                            "2999-01-01T00:00:00Z")
    exported = api_trust.export_signature(ref, out)
    assert exported.referrer == release_sig  # not the replayed one, dated later
    assert (exported.candidates, exported.verified) == (1, False)
    with pytest.raises(VerificationFailed) as refused:
        api_trust.export_signature(ref, out, referrer=replayed, overwrite=True)
    assert refused.value.reason == "missing-file"

    # Mallory signs these very files, dated later still.
    mallory_sig = _push_bundle(ref, _file_signature_of(ref, keys["mallory"][0]), MODEL_SIGNING_PREDICATE,
                               "2999-12-31T00:00:00Z")
    out.unlink()
    with pytest.raises(UsageError) as ambiguous:
        api_trust.export_signature(ref, out)
    assert "2 file-level signatures" in ambiguous.value.message and "--key" in (ambiguous.value.hint or "")
    assert not out.exists()

    exported = api_trust.export_signature(ref, out, keys=[keys["release"][1]])
    assert exported.referrer == release_sig and exported.verified and exported.candidates == 1
    assert exported.signers == [str(keys["release"][1])]
    with _target_of(ref) as target:
        stored = {b.referrer.digest: b.bundle for b in read_bundles(target, exported.digest)}
    assert out.read_bytes() == stored[release_sig]
    assert api_trust.export_signature(ref, tmp_path / "m.sig", keys=[keys["mallory"][1]]).referrer == mallory_sig
    with pytest.raises(VerificationFailed) as untrusted:
        api_trust.export_signature(ref, tmp_path / "qa.sig", keys=[keys["qa"][1]])
    assert untrusted.value.reason == "untrusted-signature" and not (tmp_path / "qa.sig").exists()
    # A policy selects the same way; naming a referrer needs no key when it is the only candidate.
    policy = _write_policy(tmp_path / "policy.yaml", f"signers: {{release: {{key: {keys['release'][1]}}}}}\n")
    assert api_trust.export_signature(ref, out, policy=policy, overwrite=True).signers == ["release"]
    assert api_trust.export_signature(ref, out, referrer=release_sig, overwrite=True).referrer == release_sig

    api_trust.export_signature(ref, out, keys=[keys["release"][1]], overwrite=True)
    ocimodel.pull(ref, tmp_path / "pulled")
    checked = verify_with_cli(tmp_path / "pulled", out, keys["release"][1])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_policy_denied_carries_the_first_failed_rules_reason(model_dir, keys, tmp_path):
    """Issue 7 review: PolicyDenied.reason was always untrusted-signature."""
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    (tmp_path / "keys").mkdir()
    for name in ("release", "qa"):
        (tmp_path / "keys" / f"{name}.pub").write_bytes(keys[name][1].read_bytes())
    all_of = _write_policy(tmp_path / "all-of.yaml", """
signers: {release: {key: keys/release.pub}, qa: {key: keys/qa.pub}}
signature: {match: all-of}
""")
    provenance = _write_policy(tmp_path / "provenance.yaml", f"""
signers: {{release: {{key: keys/release.pub}}}}
attestations: [{{type: {SLSA}}}]
""")

    def denied(**trust) -> tuple[str, str | None]:
        with pytest.raises(PolicyDenied) as caught:
            ocimodel.pull(ref, tmp_path / "out", verify=api_trust.verify_hook(**trust))
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
        first = next(r for r in caught.value.decision.reasons if not r.passed)
        assert caught.value.reason == first.reason
        return caught.value.reason, first.rule

    assert denied(keys=[keys["release"][1]]) == ("unsigned", "signature")
    api_trust.attest(ref, predicate={"bomFormat": "CycloneDX"}, predicate_type=SBOM, key=keys["release"][0])
    assert denied(keys=[keys["release"][1]]) == ("predicate-type", "signature")  # an SBOM is no signature
    api_trust.sign(ref, key=keys["mallory"][0], file_signature=False)
    assert denied(keys=[keys["release"][1]]) == ("untrusted-signature", "signature")
    api_trust.sign(ref, key=keys["release"][0], file_signature=False)
    assert denied(policy=all_of) == ("missing-signer", "signature")
    assert denied(policy=provenance) == ("missing-attestation", f"attestation {SLSA}")
    decision = api_trust.verify(ref, policy=provenance)
    assert [(r.passed, r.reason) for r in decision.reasons] == [(True, None), (False, "missing-attestation")]


def test_files_under_github_are_signed_and_an_unsigned_one_is_refused(model_dir, keys, tmp_path):
    """Issue 7 review (docs/threats.md 17): a file under .github/ was "ignored" by the file-level
    check although pull writes it. A model that has one is signed with it; a statement
    that leaves one out does not cover the model."""
    (model_dir / ".github" / "workflows").mkdir(parents=True)
    (model_dir / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    (model_dir / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    policy = _write_policy(tmp_path / "policy.json", json.dumps({
        "signers": {"release": {"key": str(keys["release"][1])}}, "signature": {"files": True},
    }))
    api_trust.sign(ref, key=keys["release"][0])
    decision = api_trust.verify(ref, policy=policy)
    assert decision.allowed, decision.lines()

    # What the old signer wrote: .github left out as "ignored". It no longer covers the model.
    with _target_of(ref) as target:
        root, data = _root(target, ref)
    files = files_of_manifest(parse_manifest(data, root.media_type))
    assert ".github/workflows/ci.yml" in files
    old_style = files_statement({k: v for k, v in files.items() if not k.startswith(".github/")}, "model")
    (tmp_path / "old").mkdir()
    ref_old = f"oci:{tmp_path / 'old' / 'store'}:1"
    ocimodel.push(model_dir, ref_old)
    api_trust.sign(ref_old, key=keys["release"][0], file_signature=False)
    _push_bundle(ref_old, sign_statement(old_style, load_private_key(keys["release"][0])), MODEL_SIGNING_PREDICATE,
                 "2000-01-01T00:00:00Z")
    denied = api_trust.verify(ref_old, policy=policy)
    assert not denied.allowed
    assert [r.reason for r in denied.refused] == ["unsigned-file"]
    assert ".github/workflows/ci.yml" in denied.refused[0].detail
