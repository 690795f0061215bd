"""One audit timeline, on the real registry (no referrers API: the fallback tag index) and
on an OCI layout: versions pushed, promotions, a deployment, signatures and attestations,
newest first, in text and JSON, each marked against the policy's signers."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import jsonschema
import pytest

import ocimodel
from ocimodel.api import functions as reg
from ocimodel.api import trust as api_trust
from ocimodel.errors import UsageError
from tests.test_cli import json_of, ocimodel_cli, ok, usage_error_problems

EVAL = "https://ocimodel.dev/evaluation/v1"


@pytest.fixture(params=[pytest.param("registry", marks=pytest.mark.registry), "layout"])
def repo(request, tmp_path: Path) -> str:
    if request.param == "layout":
        return f"oci:{tmp_path / 'store'}"
    registry = request.getfixturevalue("registry")
    return f"{registry.host}/{request.getfixturevalue('repo_name')}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("keys")
    pairs = {}
    for name in ("release", "mallory"):
        api_trust.generate_key_pair(directory / f"{name}.key", directory / f"{name}.pub")
        pairs[name] = (directory / f"{name}.key", directory / f"{name}.pub")
    return pairs


def _push(repo: str, model_dir: Path, tmp_path: Path, version: str, created: str, revision: str | None = None) -> str:
    copy = tmp_path / f"v{version}"
    shutil.copytree(model_dir, copy)
    (copy / "config.json").write_text(json.dumps({"version": version}))
    metadata = {"created": created, **({"code": {"commit": revision}} if revision else {})}
    return ocimodel.push(copy, f"{repo}:{version}", name="sentiment", version=version, metadata=metadata).digest


def _policy(tmp_path: Path, public_key: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(f"version: 1\nsigners:\n  release: {{key: {public_key}}}\n")
    return path


def _pause() -> None:
    """Signatures carry no signed time with a key: their time is the referrer's created
    annotation, to the second. The steps of the story are a second apart so that their
    order is the order of their times."""
    time.sleep(1.05)


def test_audit_lists_versions_promotions_deployment_signatures_and_attestations_in_order(
    repo, model_dir, tmp_path, keys, monkeypatch
):
    v10 = _push(repo, model_dir, tmp_path, "1.0", "2026-01-01T00:00:00Z", revision="a" * 40)
    v11 = _push(repo, model_dir, tmp_path, "1.1", "2026-02-01T00:00:00Z", revision="b" * 40)
    v12 = _push(repo, model_dir, tmp_path, "1.2", "2026-03-01T00:00:00Z")
    monkeypatch.setenv("OCIMODEL_ACTOR", "alice")
    reg.promote(f"{repo}:1.0", "production", reason="first")
    monkeypatch.setenv("OCIMODEL_ACTOR", "bob")
    reg.promote(f"{repo}:1.1", "production", reason="better", key=keys["release"][0])  # a signed record
    _pause()
    reg.sign(f"{repo}:1.1", key=keys["release"][0])
    reg.sign(f"{repo}:1.2", key=keys["mallory"][0], file_signature=False)
    _pause()
    reg.attest(f"{repo}:1.1", predicate={"accuracy": 0.93}, predicate_type=EVAL, key=keys["release"][0])
    _pause()
    monkeypatch.setenv("OCIMODEL_ACTOR", "deployer")
    deployed = reg.deploy(f"{repo}:1.1", environment="prod", target="k8s://eu-1/serving/sentiment",
                          key=keys["release"][0])
    policy = _policy(tmp_path, keys["release"][1])

    result = reg.audit(repo, policy=policy)
    rows = [(e.kind, e.digest, e.trust) for e in result.entries]
    # Newest first. The signatures were made within a second of each other (in either
    # order); the one of 1.2 by mallory's key is untrusted, those of 1.1 trusted.
    assert rows[:2] == [("deploy", v11, "trusted"), ("attestation", v11, "trusted")]
    assert sorted(rows[2:5]) == sorted([("signature", v11, "trusted"), ("file-signature", v11, "trusted"),
                                        ("signature", v12, "untrusted")])
    kinds = [e.kind for e in result.entries]
    promotions = [e for e in result.entries if e.kind == "promote"]
    assert [(e.actor, e.digest, e.details["reason"]) for e in promotions] == [
        ("bob", v11, "better"), ("alice", v10, "first")]
    # Under the policy bob's record, signed by its signer, is trusted; alice's carries no
    # signature, so nothing vouches for it.
    assert [e.trust for e in promotions] == ["trusted", "untrusted"]
    pushes = [e for e in result.entries if e.kind == "push"]
    assert [(e.digest, e.time, e.details["revision"]) for e in pushes] == [
        (v12, "2026-03-01T00:00:00Z", None), (v11, "2026-02-01T00:00:00Z", "b" * 40), (v10, "2026-01-01T00:00:00Z", "a" * 40)]
    assert [e.trust for e in pushes] == ["untrusted", "trusted", "unsigned"]  # by their signatures
    assert kinds.index("deploy") < kinds.index("attestation") < kinds.index("promote") < kinds.index("push")
    # deploy, attestation, signatures, promotions, pushes, and the move to 1.0 that only
    # alice's unsigned record explains: flagged under the policy.
    assert len(kinds) == 1 + 1 + 3 + 2 + 3 + 1
    flagged = [e for e in result.entries if e.kind == "tag-move"]
    assert [(e.digest, e.trust) for e in flagged] == [(v10, "unrecorded")] and "flagged" in flagged[0].summary
    assert result.entries[0].time == deployed.time and result.entries[0].actor == "deployer"
    assert result.entries[0].time_source == "statement"
    times = [e.time for e in result.entries if e.kind != "tag-move"]  # a move no record explains has no time
    assert all(t is not None for t in times)

    # The same, in JSON and in text.
    document = json_of(ok("audit", repo, "--policy", policy, "--json"))
    schema = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "audit.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(document)
    assert [(e["kind"], e["digest"], e["trust"]) for e in document["entries"]] == rows
    printed = ok("audit", repo, "--policy", policy).out.splitlines()
    lines = [line for line in printed if not line.startswith("warning: ")]  # warnings follow the entries
    assert len(lines) == len(rows) and printed[:len(lines)] == lines
    for line, entry in zip(lines, result.entries):
        assert line.startswith(entry.time or "?") and f" {entry.kind} " in line and line.endswith(
            f"[{entry.trust}" + (f" by {', '.join(entry.signers)}]" if entry.signers else "]"))

    # Without a policy the signed entries are "signed": nobody checked by whom.
    unchecked = reg.audit(repo)
    assert {e.trust for e in unchecked.entries if e.kind in ("signature", "attestation", "deploy")} == {"signed"}


def test_since_and_other_referrers_and_moves_without_a_record(repo, model_dir, tmp_path):
    v10 = _push(repo, model_dir, tmp_path, "1.0", "2026-01-01T00:00:00Z")
    v11 = _push(repo, model_dir, tmp_path, "1.1", "2026-02-01T00:00:00Z")
    reg.promote(f"{repo}:1.0", "production")
    ocimodel.tag(f"{repo}:1.1", "production")  # moved by another tool: no record
    report = tmp_path / "eval.json"
    report.write_text('{"accuracy": 0.9}')
    attached = reg.attach(f"{repo}:1.1", [report], artifact_type="application/vnd.example.evaluation+json")

    result = reg.audit(repo)
    by_kind = {e.kind: e for e in result.entries}
    assert by_kind["referrer"].record == attached.digest and by_kind["referrer"].digest == v11
    assert "application/vnd.example.evaluation+json" in by_kind["referrer"].summary
    assert (by_kind["tag-move"].digest, by_kind["tag-move"].trust) == (v11, "unrecorded")
    assert any("no promotion record explains" in w for w in result.warnings)

    recent = reg.audit(repo, since="2026-01-15")
    assert v10 not in [e.digest for e in recent.entries if e.kind == "push"]
    assert v11 in [e.digest for e in recent.entries if e.kind == "push"]
    assert reg.audit(repo, since="1h").entries and all(e.kind != "push" for e in reg.audit(repo, since="1h").entries)
    with pytest.raises(UsageError):
        reg.audit(repo, since="yesterday")
    assert usage_error_problems(ocimodel_cli("audit", repo, "--since", "yesterday")) == []
    assert usage_error_problems(ocimodel_cli("audit", f"{repo}:1.0")) == []


def test_pushes_stay_reproducible_whoever_pushes(model_dir, tmp_path, monkeypatch):
    digests = set()
    for actor in ("alice", "bob"):
        monkeypatch.setenv("OCIMODEL_ACTOR", actor)
        digests.add(ocimodel.push(model_dir, f"oci:{tmp_path / actor}:1.0", name="m", version="1.0").digest)
    assert len(digests) == 1


def test_keyless_records_show_the_identity_and_the_log_time(tmp_path, model_dir, monkeypatch):
    """Keyless (the offline test Sigstore instance): the signer is the certificate's
    identity and issuer, the time that of the transparency log, and with a policy naming
    that identity the entries are trusted."""
    from ocimodel.trust import keyless
    from tests.support.sigstore_instance import SigstoreInstance

    for var in ("HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        (tmp_path / "home" / var).mkdir(parents=True)
        monkeypatch.setenv(var, str(tmp_path / "home" / var))  # no TUF cache between tests
    instance = SigstoreInstance.create(tmp_path / "sigstore")
    monkeypatch.setattr(keyless, "_signing_context", lambda trust_config, staging: instance.signing_context())
    repo = f"oci:{tmp_path / 'store'}"
    digest = _push(repo, model_dir, tmp_path, "1.0", "2026-01-01T00:00:00Z")
    token = instance.oidc_jwt("dev@example.com", "https://issuer.example")
    reg.sign(f"{repo}:1.0", identity_token=token, file_signature=False)
    reg.deploy(f"{repo}:1.0", environment="prod", target="k8s://c/ns/m", identity_token=token)
    policy = tmp_path / "policy.yaml"
    policy.write_text("signers: {ci: {identity: dev@example.com, issuer: https://issuer.example}}\n")

    result = reg.audit(repo, policy=policy, trusted_root=instance.trusted_root_path)
    by_kind = {e.kind: e for e in result.entries}
    assert set(by_kind) == {"deploy", "signature", "push"}
    assert (by_kind["signature"].trust, by_kind["signature"].signers, by_kind["signature"].time_source) == (
        "trusted", ["ci"], "log")
    assert by_kind["signature"].details["identity"] == "dev@example.com (https://issuer.example)"
    assert (by_kind["deploy"].trust, by_kind["deploy"].signers, by_kind["deploy"].digest) == ("trusted", ["ci"], digest)
    assert by_kind["push"].trust == "trusted"
    # Without the policy the identity is still shown, as what the bundle says.
    unchecked = {e.kind: e for e in reg.audit(repo).entries}
    assert (unchecked["signature"].trust, unchecked["signature"].actor) == ("signed", "dev@example.com (https://issuer.example)")
