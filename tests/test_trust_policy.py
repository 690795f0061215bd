"""The policy file (YAML / JSON, strict, keys relative to it, JSON Schema) and the
attestation predicates (user JSON, SLSA provenance from GitHub Actions or a local git
checkout, materials from the model card)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest

import ocimodel
from ocimodel.api import functions as api_trust
from ocimodel.errors import UsageError
from ocimodel.oci.reference import parse_reference
from ocimodel.signing.bundle import verify_key_bundle
from ocimodel.signing.keys import load_public_key
from ocimodel.targets.open import open_target
from ocimodel.trust.attest import SLSA_PROVENANCE_V1, provenance
from ocimodel.trust.policy import PolicyError, load_policy, parse_policy
from ocimodel.trust.store import StoredBundle, read_bundles

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "policy.schema.json"
DATASET_DIGEST = "sha256:" + "d" * 64
BASE_DIGEST = "sha256:" + "b" * 64

EXAMPLE = """\
version: 1
signers:
  release: {key: keys/release.pub}
  ci:
    identity: https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main
    issuer: https://token.actions.githubusercontent.com
signature:
  signers: [release, ci]
  match: any-of
  files: true
attestations:
  - type: https://slsa.dev/provenance/v1
    signers: [ci]
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "keys").mkdir()
    api_trust.generate_key_pair(tmp_path / "release.key", tmp_path / "keys" / "release.pub")
    return tmp_path


# -- policy -----------------------------------------------------------------------------


def test_example_policy_loads_and_keys_are_relative_to_the_file(policy_dir: Path, monkeypatch):
    (policy_dir / "policy.yaml").write_text(EXAMPLE)
    monkeypatch.chdir("/")
    policy = load_policy(policy_dir / "policy.yaml")
    assert policy.signature.match == "any-of" and policy.signature.files
    assert [rule.type for rule in policy.attestations] == [SLSA_PROVENANCE_V1]
    trust = policy.compile()
    assert set(trust.keys) == {"release"} and set(trust.identities) == {"ci"}
    assert trust.identities["ci"].issuer == "https://token.actions.githubusercontent.com"


def test_the_same_policy_as_json_validates_against_the_schema(policy_dir: Path):
    import yaml

    document = yaml.safe_load(EXAMPLE)
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    (policy_dir / "policy.json").write_text(json.dumps(document))
    assert load_policy(policy_dir / "policy.json").compile().keys["release"].name == "release"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**document, "signature": {"match": "all_of"}}, json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize(
    "text, message",
    [
        ("signers: {a: {key: k.pub}}\nsignature: {match: all_of}\n", "signature.match"),
        ("signers: {a: {key: k.pub}}\nsignatures: {}\n", "Extra inputs are not permitted"),
        ("signers: {a: {key: k.pub, identity: x, issuer: y}}\n", "signers.a"),
        ("signers: {a: {identity: x}}\n", "signers.a"),
        ("signers: {}\n", "signers"),
        ("signers: {a: {key: k.pub}}\nsignature: {signers: [b]}\n", "names the signer 'b'"),
        ("signers: {a: {key: k.pub}}\nsignature: {signers: []}\n", "signature.signers"),
        ("signers: {a: {key: k.pub}}\nattestations: [{type: not a uri}]\n", "attestations.0.type"),
        ("signers: {a: {key: k.pub}}\nattestations: [{type: 'x:y'}, {type: 'x:y'}]\n", "same type"),
        ("version: 2\nsigners: {a: {key: k.pub}}\n", "version"),
        ("signers: {a: {key: k.pub}}\nsigners: {b: {key: k.pub}}\n", "duplicate key 'signers'"),
        ("base: &b {key: k.pub}\nsigners: {a: *b}\n", "aliases"),
        # YAML 1.2 core schema, as for model cards: `yes` is a string, which `files` refuses.
        ("signers: {a: {key: k.pub}}\nsignature: {files: yes}\n", "signature.files"),
        ("- just a list\n", "expected a mapping"),
        ("signers: [\n", "not valid YAML"),
    ],
)
def test_malformed_policies_are_refused(tmp_path: Path, text: str, message: str):
    (tmp_path / "policy.yaml").write_text(text)
    with pytest.raises(PolicyError) as refused:
        load_policy(tmp_path / "policy.yaml")
    assert message in refused.value.message
    assert isinstance(refused.value, UsageError)


def test_json_policy_with_duplicate_keys_is_refused(tmp_path: Path):
    (tmp_path / "policy.json").write_text('{"signers": {"a": {"key": "a.pub"}}, "signers": {}}')
    with pytest.raises(PolicyError, match="duplicate key"):
        load_policy(tmp_path / "policy.json")


def test_missing_policy_and_missing_key(tmp_path: Path):
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")
    (tmp_path / "policy.yaml").write_text("signers: {a: {key: missing.pub}}\n")
    with pytest.raises(PolicyError, match="missing.pub does not exist"):
        load_policy(tmp_path / "policy.yaml").compile()


@pytest.mark.parametrize(
    "key, kind",
    [
        ("!!binary cmVsZWFzZQ==", "bytes"),  # decodes to 'release': a disguised second entry
        ("1", "int"),
        ("true", "bool"),
        ("null", "null"),
        ("1.5", "float"),
    ],
)
def test_a_key_that_is_not_a_string_is_refused_with_its_line(policy_dir: Path, key: str, kind: str):
    """Issue 7 review: a non-string key escaped the duplicate-key check, and pydantic then
    coerced it to the name of a trusted signer, silently replacing that signer's key."""
    api_trust.generate_key_pair(policy_dir / "evil.key", policy_dir / "evil.pub")
    (policy_dir / "policy.yaml").write_text(
        "version: 1\n"
        "signers:\n"
        "  release: {key: keys/release.pub}\n"
        f"  {key}: {{key: evil.pub}}\n"
        "signature: {signers: [release]}\n"
    )
    with pytest.raises(PolicyError) as refused:
        load_policy(policy_dir / "policy.yaml")
    assert f"a key must be a string, not {kind}" in refused.value.message
    assert "(line 4, column 3)" in refused.value.message
    assert isinstance(refused.value, UsageError)


@pytest.mark.parametrize(
    "document, where",
    [
        ({"signature": {"files": "false"}}, "signature.files"),
        ({"signature": {"files": "true"}}, "signature.files"),
        ({"signature": {"files": 1}}, "signature.files"),
        ({"signature": {"match": 1}}, "signature.match"),
        ({"version": "1"}, "version"),
        ({"version": True}, "version"),
        ({"version": 1.0}, "version"),
        ({"signature": {"signers": "r"}}, "signature.signers"),
        ({"attestations": [{"type": "https://slsa.dev/provenance/v1", "signers": ["r"], "match": None}]}, "attestations.0.match"),
    ],
)
def test_values_of_the_wrong_type_are_not_coerced(policy_dir: Path, document: dict, where: str):
    """`files: 'false'` must not be read as anything: a policy says exactly what it means."""
    full = {"signers": {"r": {"key": "keys/release.pub"}}, **document}
    for name, text in (("policy.json", json.dumps(full)), ("policy.yaml", json.dumps(full))):
        (policy_dir / name).write_text(text)
        with pytest.raises(PolicyError) as refused:
            load_policy(policy_dir / name)
        assert where in refused.value.message, refused.value.message


def test_two_names_for_one_key_or_one_identity_are_refused(policy_dir: Path):
    """One signature must not satisfy all-of twice (issue 7 review)."""
    release = policy_dir / "keys" / "release.pub"
    (policy_dir / "alice.pub").write_bytes(release.read_bytes())  # another file, the same key
    (policy_dir / "same-key.yaml").write_text(
        "signers: {alice: {key: alice.pub}, bob: {key: keys/release.pub}}\n"
        "signature: {signers: [alice, bob], match: all-of}\n"
    )
    with pytest.raises(PolicyError, match="signers 'alice' and 'bob' are the same public key") as refused:
        load_policy(policy_dir / "same-key.yaml").compile()
    assert isinstance(refused.value, UsageError)
    (policy_dir / "same-identity.yaml").write_text(
        "signers:\n"
        "  ci: {identity: https://github.com/o/r/.github/workflows/r.yml@refs/heads/main, issuer: https://token.actions.githubusercontent.com}\n"
        "  release: {identity: https://github.com/o/r/.github/workflows/r.yml@refs/heads/main, issuer: https://token.actions.githubusercontent.com}\n"
        "signature: {match: all-of}\n"
    )
    with pytest.raises(PolicyError, match="signers 'ci' and 'release' are the same identity and issuer"):
        load_policy(policy_dir / "same-identity.yaml").compile()
    # The same identity from two issuers is two signers.
    (policy_dir / "two-issuers.yaml").write_text(
        "signers:\n  a: {identity: dev@example.com, issuer: https://one.example}\n"
        "  b: {identity: dev@example.com, issuer: https://two.example}\n"
    )
    assert set(load_policy(policy_dir / "two-issuers.yaml").compile().identities) == {"a", "b"}


def test_a_key_that_cannot_be_loaded_is_a_usage_error(policy_dir: Path, tmp_path: Path):
    """A configuration error, not a deny: PolicyError (a UsageError, CLI exit 2), naming
    the signer and the file."""
    (policy_dir / "not-pem.pub").write_text("not a key\n")
    for key, message in (("missing.pub", "missing.pub does not exist"), ("not-pem.pub", "is not a PEM public key")):
        (policy_dir / "policy.yaml").write_text(f"signers: {{release: {{key: {key}}}}}\n")
        with pytest.raises(PolicyError) as refused:
            load_policy(policy_dir / "policy.yaml").compile()
        assert refused.value.message.startswith("signer 'release': ") and message in refused.value.message
        assert isinstance(refused.value, UsageError)
    ref = f"oci:{tmp_path / 'store'}:1"
    with pytest.raises(PolicyError, match="does not exist") as refused:
        api_trust.verify(ref, keys=[tmp_path / "missing.pub"])
    assert not refused.value.message.startswith("signer")  # the name is the path: said once
    with pytest.raises(PolicyError, match="is not a PEM public key"):
        api_trust.verify_hook(keys=[policy_dir / "not-pem.pub"])


def test_nothing_to_trust_and_both_policy_and_keys_are_usage_errors(tmp_path: Path, policy_dir: Path):
    ref = f"oci:{tmp_path / 'store'}:1"
    with pytest.raises(UsageError, match="nothing to trust"):
        api_trust.verify(ref)
    (policy_dir / "policy.yaml").write_text(EXAMPLE)
    with pytest.raises(UsageError, match="either a policy or keys"):
        api_trust.verify(ref, policy=policy_dir / "policy.yaml", keys=[policy_dir / "keys" / "release.pub"])
    with pytest.raises(UsageError, match="pairs"):
        api_trust.verify(ref, identities=[("only-identity",)])


def test_policy_object_is_accepted_directly(policy_dir: Path):
    policy = parse_policy({"signers": {"r": {"key": str(policy_dir / "keys" / "release.pub")}}})
    assert policy.signature.signers is None and policy.attestations == []
    assert set(policy.compile().keys) == {"r"}


# -- attestations -----------------------------------------------------------------------


def _model(tmp_path: Path, model_dir: Path) -> str:
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref, annotations={
        "dev.ocimodel.datasets+json": json.dumps([{"uri": "hf://datasets/imdb", "digest": DATASET_DIGEST},
                                                  {"uri": "s3://bucket/extra"}]),
        "dev.ocimodel.base-models+json": json.dumps([{"reference": "hf://bert-base", "digest": BASE_DIGEST,
                                                      "relation": "fine-tune"}]),
    })
    return ref


def _statement(ref: str, public: Path, predicate_type: str):
    reference = parse_reference(ref)
    with open_target(reference) as target:
        root = target.resolve(reference.reference)
        for item in read_bundles(target, root.digest):
            assert isinstance(item, StoredBundle)
            statement = verify_key_bundle(item.bundle, [load_public_key(public)]).statement
            if statement.predicate_type == predicate_type:
                return statement
    raise AssertionError(f"no {predicate_type} attestation")


GITHUB_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "org/models",
    "GITHUB_SHA": "a" * 40,
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_WORKFLOW_REF": "org/models/.github/workflows/train.yml@refs/heads/main",
    "GITHUB_RUN_ID": "1234",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_EVENT_NAME": "push",
}


def test_github_actions_provenance_with_materials(tmp_path: Path, model_dir: Path, policy_dir: Path):
    ref = _model(tmp_path, model_dir)
    result = api_trust.attest(ref, provenance=True, key=policy_dir / "release.key", env=GITHUB_ENV)
    assert result.predicate_type == SLSA_PROVENANCE_V1
    statement = _statement(ref, policy_dir / "keys" / "release.pub", SLSA_PROVENANCE_V1)
    assert statement.subject[0].digest == {"sha256": result.digest.removeprefix("sha256:")}
    predicate = statement.predicate
    assert predicate["runDetails"]["builder"]["id"] == (
        "https://github.com/org/models/.github/workflows/train.yml@refs/heads/main"
    )
    assert predicate["runDetails"]["metadata"]["invocationId"] == (
        "https://github.com/org/models/actions/runs/1234/attempts/2"
    )
    definition = predicate["buildDefinition"]
    assert definition["externalParameters"]["workflow"] == {
        "ref": "refs/heads/main", "repository": "https://github.com/org/models", "path": ".github/workflows/train.yml",
    }
    assert definition["internalParameters"]["github"]["event_name"] == "push"
    assert definition["resolvedDependencies"] == [
        {"uri": "git+https://github.com/org/models@refs/heads/main", "digest": {"gitCommit": "a" * 40}},
        {"uri": "hf://datasets/imdb", "digest": {"sha256": "d" * 64}, "annotations": {"ocimodel.role": "dataset"}},
        {"uri": "s3://bucket/extra", "annotations": {"ocimodel.role": "dataset"}},
        {"uri": "hf://bert-base", "digest": {"sha256": "b" * 64},
         "annotations": {"ocimodel.role": "base-model", "ocimodel.relation": "fine-tune"}},
    ]


def test_github_actions_without_its_variables_is_a_usage_error(tmp_path: Path, model_dir: Path):
    from ocimodel.metadata.card import ModelCard

    with pytest.raises(UsageError, match="GITHUB_SHA"):
        provenance(ModelCard(), env={**GITHUB_ENV, "GITHUB_SHA": ""})


def test_local_provenance_from_git(tmp_path: Path, model_dir: Path, policy_dir: Path):
    source = tmp_path / "src"
    source.mkdir()
    git = ["git", "-C", str(source), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://user:secret@example.com/org/train.git"], check=True)
    (source / "train.py").write_text("print('train')\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()

    ref = _model(tmp_path, model_dir)
    api_trust.attest(ref, provenance=True, key=policy_dir / "release.key", env={}, source_dir=source)
    predicate = _statement(ref, policy_dir / "keys" / "release.pub", SLSA_PROVENANCE_V1).predicate
    definition = predicate["buildDefinition"]
    assert definition["buildType"] == "https://ocimodel.dev/buildtypes/local/v1"
    assert definition["externalParameters"]["source"] == {
        "repository": "https://example.com/org/train.git", "commit": commit, "dirty": False,
    }
    assert definition["resolvedDependencies"][0] == {
        "uri": "git+https://example.com/org/train.git", "digest": {"gitCommit": commit},
    }
    assert len(definition["resolvedDependencies"]) == 4
    assert "secret" not in json.dumps(predicate)


def test_any_predicate_with_its_type(tmp_path: Path, model_dir: Path, policy_dir: Path):
    ref = _model(tmp_path, model_dir)
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps({"accuracy": 0.93, "samples": 1000}))
    kind = "https://ocimodel.dev/evaluation/v1"
    api_trust.attest(ref, predicate_file=evaluation, predicate_type=kind, key=policy_dir / "release.key")
    statement = _statement(ref, policy_dir / "keys" / "release.pub", kind)
    assert statement.predicate == {"accuracy": 0.93, "samples": 1000}
    assert isinstance(statement.predicate["samples"], int)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"predicate_file": "eval.json"}, "predicate type"),
        ({"predicate_file": "eval.json", "predicate_type": "not a uri"}, "not a URI"),
        ({"predicate_file": "eval.json", "provenance": True}, "exactly one"),
        ({}, "exactly one"),
        ({"provenance": True, "predicate_type": "https://cyclonedx.org/bom"}, "provenance is of type"),
        ({"predicate_file": "list.json", "predicate_type": "https://x.example/v1"}, "not a JSON object"),
        ({"predicate_file": "dup.json", "predicate_type": "https://x.example/v1"}, "duplicate key"),
        ({"predicate_file": "eval.json", "predicate_type": "https://sigstore.dev/cosign/sign/v1"}, "signature predicate"),
    ],
)
def test_attest_usage_errors(tmp_path: Path, model_dir: Path, policy_dir: Path, monkeypatch, kwargs, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval.json").write_text("{}")
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "dup.json").write_text('{"a": 1, "a": 2}')
    ref = _model(tmp_path, model_dir)
    with pytest.raises(UsageError, match=message):
        api_trust.attest(ref, key=policy_dir / "release.key", **kwargs)
