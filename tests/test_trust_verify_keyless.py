"""The policy engine with keyless bundles: real sigstore signing and verification against
the test-only Sigstore instance (offline), stored as referrers on an OCI layout and on the
real registry. The keyless checks themselves are tested in test_trust_keyless.py; here:
identities as policy signers, key and keyless signers mixed, and a trust root that cannot
be read failing closed (docs/threats.md 18-19)."""

from __future__ import annotations

from pathlib import Path

import pytest

import ocimodel
from ocimodel.api import functions as api_trust
from ocimodel.errors import UsageError
from ocimodel.oci.reference import parse_reference
from ocimodel.signing.statement import COSIGN_SIGN_PREDICATE
from ocimodel.targets.open import open_target
from ocimodel.trust.sign import sign_model

IDENTITY = "dev@example.com"
ISSUER = "https://issuer.example"


@pytest.fixture(autouse=True)
def _no_tuf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        (tmp_path / "home" / var).mkdir(parents=True)
        monkeypatch.setenv(var, str(tmp_path / "home" / var))


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    from tests.support.sigstore_instance import SigstoreInstance

    return SigstoreInstance.create(tmp_path_factory.mktemp("sigstore"))


class InstanceSigner:
    """A keyless signer on the test instance (the real sigstore Signer, offline)."""

    def __init__(self, instance, identity: str = IDENTITY, issuer: str = ISSUER) -> None:
        self.instance, self.identity, self.issuer = instance, identity, issuer
        self.description = f"keyless {identity}"

    def sign(self, statement: bytes) -> bytes:
        from ocimodel.trust import keyless

        return keyless.sign_keyless(
            statement, identity_token=self.instance.oidc_jwt(self.identity, self.issuer),
            signing_context=self.instance.signing_context(),
        )


def _sign(ref: str, signer, *, file_signature: bool = True) -> None:
    reference = parse_reference(ref)
    with open_target(reference, for_write=True) as target:
        root = target.resolve(reference.reference)
        sign_model(target, root, target.fetch_manifest(root), signer, file_signature=file_signature)


@pytest.fixture(params=["layout", pytest.param("registry", marks=pytest.mark.registry)])
def ref(request, tmp_path: Path, model_dir: Path) -> str:
    if request.param == "layout":
        ref = f"oci:{tmp_path / 'store'}:1"
    else:
        ref = f"{request.getfixturevalue('registry').host}/{request.getfixturevalue('repo_name')}:1"
    ocimodel.push(model_dir, ref)
    return ref


def test_keyless_signature_allowed_for_the_trusted_identity_only(ref, instance, tmp_path):
    _sign(ref, InstanceSigner(instance))
    root = instance.trusted_root_path
    allowed = api_trust.verify(ref, identities=[(IDENTITY, ISSUER)], trusted_root=root)
    assert allowed.allowed, allowed.lines()
    assert {s.predicate_type for s in allowed.signatures} >= {COSIGN_SIGN_PREDICATE}
    assert allowed.signatures[0].signer == f"{IDENTITY} ({ISSUER})"

    wrong_san = api_trust.verify(ref, identities=[("eve@example.com", ISSUER)], trusted_root=root)
    assert not wrong_san.allowed and {r.reason for r in wrong_san.refused} == {"identity-mismatch"}
    wrong_issuer = api_trust.verify(ref, identities=[(IDENTITY, "https://other.example")], trusted_root=root)
    assert not wrong_issuer.allowed and {r.reason for r in wrong_issuer.refused} == {"issuer-mismatch"}

    # A keyless bundle does not count for a policy that trusts only keys, and vice versa.
    key_only = tmp_path / "release"
    api_trust.generate_key_pair(f"{key_only}.key", f"{key_only}.pub")
    decision = api_trust.verify(ref, keys=[f"{key_only}.pub"], trusted_root=root)
    assert not decision.allowed and {r.reason for r in decision.refused} == {"untrusted-signature"}


def test_mixed_all_of_key_and_identity(tmp_path, model_dir, instance):
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    api_trust.generate_key_pair(tmp_path / "release.key", tmp_path / "release.pub")
    (tmp_path / "policy.yaml").write_text(f"""
signers:
  release: {{key: release.pub}}
  ci: {{identity: {IDENTITY}, issuer: {ISSUER}}}
signature: {{signers: [release, ci], match: all-of, files: true}}
""")
    root = instance.trusted_root_path
    _sign(ref, InstanceSigner(instance))
    partial = api_trust.verify(ref, policy=tmp_path / "policy.yaml", trusted_root=root)
    assert not partial.allowed
    assert [r.detail for r in partial.reasons] == ["all-of: signed by ci but not by release"] * 2
    api_trust.sign(ref, key=tmp_path / "release.key")
    both = api_trust.verify(ref, policy=tmp_path / "policy.yaml", trusted_root=root)
    assert both.allowed, both.lines()


def test_an_unreadable_trust_root_fails_closed(tmp_path, model_dir, instance):
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    _sign(ref, InstanceSigner(instance), file_signature=False)
    with pytest.raises(UsageError, match="trusted root"):
        api_trust.verify(ref, identities=[(IDENTITY, ISSUER)], trusted_root=tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text('{"mediaType": 1, "mediaType": 2}')
    with pytest.raises(UsageError, match="duplicate key"):
        api_trust.verify(ref, identities=[(IDENTITY, ISSUER)], trusted_root=tmp_path / "broken.json")
    # Another instance's root: the chain does not lead to it.
    from tests.support.sigstore_instance import SigstoreInstance

    other = SigstoreInstance.create(tmp_path / "other")
    decision = api_trust.verify(ref, identities=[(IDENTITY, ISSUER)], trusted_root=other.trusted_root_path)
    assert not decision.allowed and decision.refused


def test_api_sign_and_attest_keyless(tmp_path, model_dir, instance, monkeypatch):
    """``api_trust.sign`` without a key goes keyless (here: the test instance in place of
    the public one, which would need the network)."""
    from ocimodel.trust import keyless

    monkeypatch.setattr(keyless, "_signing_context", lambda trust_config, staging: instance.signing_context())
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    token = instance.oidc_jwt(IDENTITY, ISSUER)
    signed = api_trust.sign(ref, identity_token=token)
    assert signed.signer == "keyless (Sigstore)" and len(signed.bundles) == 2
    api_trust.attest(ref, provenance=True, env={}, identity_token=token)
    (tmp_path / "policy.yaml").write_text(f"""
signers: {{ci: {{identity: {IDENTITY}, issuer: {ISSUER}}}}}
signature: {{files: true}}
attestations: [{{type: https://slsa.dev/provenance/v1}}]
""")
    decision = api_trust.verify(ref, policy=tmp_path / "policy.yaml", trusted_root=instance.trusted_root_path)
    assert decision.allowed, decision.lines()
    assert [r.passed for r in decision.reasons] == [True, True, True]
