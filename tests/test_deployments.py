"""Deployment records, on the real registry (no referrers API: the fallback tag index) and
on an OCI layout: `deploy record` / `deploy retire` write an in-toto statement about the
model digest (signed as a bundle referrer, or unsigned), and `deployments` says where each
version runs now, since when, and whether the record is trusted by the policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

import ocimodel
from ocimodel.api import functions as reg
from ocimodel.api import trust as api_trust
from ocimodel.api.common import as_reference, open_store
from ocimodel.api.deployments import DEPLOYMENT_PREDICATE
from ocimodel.errors import NotFound, UsageError
from ocimodel.oci import mediatypes as mt
from ocimodel.signing.bundle import verify_key_bundle
from ocimodel.signing.keys import load_public_key
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.trust.store import read_bundles
from tests.test_cli import json_of, ocimodel_cli, ok, usage_error_problems


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
    for name in ("deployer", "mallory"):
        api_trust.generate_key_pair(directory / f"{name}.key", directory / f"{name}.pub")
        pairs[name] = (directory / f"{name}.key", directory / f"{name}.pub")
    return pairs


def _versions(repo: str, model_dir: Path, tmp_path: Path, names=("1.0", "1.1", "1.2")) -> dict[str, str]:
    digests = {}
    for i, version in enumerate(names):
        copy = tmp_path / f"v{version}"
        shutil.copytree(model_dir, copy)
        (copy / "config.json").write_text(json.dumps({"version": version, "i": i}))
        digests[version] = ocimodel.push(copy, f"{repo}:{version}", name="sentiment", version=version).digest
    return digests


def _policy(tmp_path: Path, public_key: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(f"version: 1\nsigners:\n  deployer: {{key: {public_key}}}\n")
    return path


def test_where_each_version_runs_now_and_since_when(repo, model_dir, tmp_path, keys, monkeypatch):
    v = _versions(repo, model_dir, tmp_path)
    key = keys["deployer"][0]
    monkeypatch.setenv("OCIMODEL_ACTOR", "alice")
    first = reg.deploy(f"{repo}:1.0", environment="prod", target="k8s://eu-1/serving/sentiment",
                       endpoint="https://sentiment.example/v1", runtime="vllm", key=key)
    assert (first.digest, first.signed, first.actor) == (v["1.0"], True, "alice")
    reg.deploy(f"{repo}:1.0", environment="staging", target="k8s://eu-1/staging/sentiment", key=key)
    monkeypatch.setenv("OCIMODEL_ACTOR", "bob")
    # A new version at the same target replaces the one there; a retire ends a deployment.
    second = reg.deploy(f"{repo}:1.1", environment="prod", target="k8s://eu-1/serving/sentiment", runtime="vllm", key=key)
    reg.retire(f"{repo}:1.0", environment="staging", target="k8s://eu-1/staging/sentiment", key=key)
    reg.deploy(f"{repo}:1.2", environment="canary", target="k8s://eu-1/canary/sentiment")  # unsigned

    result = reg.deployments(repo)
    assert [(d.environment, d.target, d.digest, d.tags, d.since, d.actor, d.trust) for d in result.running] == [
        ("canary", "k8s://eu-1/canary/sentiment", v["1.2"], ["1.2"], result.running[0].since, "bob", "unsigned"),
        ("prod", "k8s://eu-1/serving/sentiment", v["1.1"], ["1.1"], second.time, "bob", "signed"),
    ]
    assert [(r.action, r.environment, r.digest) for r in result.records] == [
        ("record", "canary", v["1.2"]), ("retire", "staging", v["1.0"]), ("record", "prod", v["1.1"]),
        ("record", "staging", v["1.0"]), ("record", "prod", v["1.0"]),
    ]
    oldest = result.records[-1]
    assert (oldest.endpoint, oldest.runtime, oldest.actor, oldest.time) == (
        "https://sentiment.example/v1", "vllm", "alice", first.time)

    # With a policy, the unsigned canary record is listed but decides nothing.
    checked = reg.deployments(repo, policy=_policy(tmp_path, keys["deployer"][1]))
    assert [(d.environment, d.digest, d.trust) for d in checked.running] == [("prod", v["1.1"], "trusted")]
    assert [r.trust for r in checked.records] == ["unsigned", "trusted", "trusted", "trusted", "trusted"]
    assert all(r.signers == ["deployer"] for r in checked.records[1:])


def test_a_record_by_a_key_the_policy_does_not_trust_moves_nothing(repo, model_dir, tmp_path, keys):
    v = _versions(repo, model_dir, tmp_path, names=("1.0", "1.1"))
    target = "k8s://eu-1/serving/sentiment"
    reg.deploy(f"{repo}:1.0", environment="prod", target=target, key=keys["deployer"][0])
    reg.deploy(f"{repo}:1.1", environment="prod", target=target, key=keys["mallory"][0])
    policy = _policy(tmp_path, keys["deployer"][1])

    checked = reg.deployments(repo, policy=policy)
    assert [(d.digest, d.trust) for d in checked.running] == [(v["1.0"], "trusted")]
    forged = checked.records[0]
    assert (forged.digest, forged.trust, forged.signers) == (v["1.1"], "untrusted", [])
    assert forged.detail and forged.identity and forged.identity.startswith("key ")
    # Without a policy every record counts, and says it was not checked.
    assert [(d.digest, d.trust) for d in reg.deployments(repo).running] == [(v["1.1"], "signed")]


def test_the_record_is_a_signed_statement_about_the_model_digest(repo, model_dir, tmp_path, keys):
    v = _versions(repo, model_dir, tmp_path, names=("1.0",))
    written = reg.deploy(f"{repo}:1.0", environment="prod", target="k8s://c/ns/m", key=keys["deployer"][0])
    listed = {d.digest: d for d in ocimodel.referrers(f"{repo}@{v['1.0']}").referrers}
    entry = listed[written.record]
    # The shape cosign v3 writes, so cosign-format tools can read it.
    assert entry.artifact_type == mt.BUNDLE_MEDIA_TYPE
    assert entry.annotations[mt.ANNOTATION_BUNDLE_PREDICATE_TYPE] == DEPLOYMENT_PREDICATE
    ref = as_reference(repo)
    with open_store(ConnectionOptions(), ref) as store:
        stored = [b for b in read_bundles(store, v["1.0"]) if b.referrer.digest == written.record]
    assert len(stored) == 1
    bundle = stored[0].bundle
    payload = verify_key_bundle(bundle, [load_public_key(keys["deployer"][1])])
    statement = payload.statement
    assert statement.predicate_type == DEPLOYMENT_PREDICATE
    assert [s.digest for s in statement.subject] == [{"sha256": v["1.0"].split(":")[1]}]
    assert {k: statement.predicate[k] for k in ("environment", "target", "action")} == {
        "environment": "prod", "target": "k8s://c/ns/m", "action": "record"}


def test_retire_refuses_what_does_not_run_there_and_bad_input_is_a_usage_error(repo, model_dir, tmp_path):
    _versions(repo, model_dir, tmp_path, names=("1.0",))
    with pytest.raises(NotFound):
        reg.retire(f"{repo}:1.0", environment="prod", target="k8s://c/ns/m")
    for bad in ({"environment": "prod env", "target": "k8s://c/ns/m"}, {"environment": "prod", "target": "cluster"}):
        with pytest.raises(UsageError):
            reg.deploy(f"{repo}:1.0", **bad)
    with pytest.raises(UsageError):
        reg.deployments(f"{repo}:1.0")
    assert reg.deployments(repo).records == []  # nothing was written by the refusals


def test_cli_deploy_record_retire_and_deployments(repo, model_dir, tmp_path, keys):
    v = _versions(repo, model_dir, tmp_path, names=("1.0", "1.1"))
    env = {"OCIMODEL_ACTOR": "carol"}
    target = "k8s://eu-1/serving/sentiment"
    written = json_of(ok("deploy", "record", f"{repo}:1.0", "--environment", "prod", "--target", target,
                         "--runtime", "vllm", "--key", keys["deployer"][0], "--json", env=env))
    assert (written["digest"], written["action"], written["signed"], written["actor"]) == (v["1.0"], "record", True, "carol")
    text = ok("deploy", "record", f"{repo}:1.1", "-e", "staging", "--target", "k8s://eu-1/staging/s", env=env).out
    assert "unsigned" in text and v["1.1"] in text

    shown = ok("deployments", repo, "--policy", _policy(tmp_path, keys["deployer"][1])).out
    lines = shown.splitlines()
    assert lines[0].startswith(f"prod {target}: 1.0 ({v['1.0']})") and lines[0].endswith("[trusted]")
    assert not any(line.startswith("staging ") for line in lines)  # unsigned: listed below, not running
    assert any("staging k8s://eu-1/staging/s 1.1 by carol  [unsigned]" in line for line in lines)

    ok("deploy", "retire", f"{repo}:1.0", "--environment", "prod", "--target", target, env=env)
    document = json_of(ok("deployments", repo, "--json"))
    schema = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "deployments.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(document)
    assert [(d["environment"], d["digest"]) for d in document["running"]] == [("staging", v["1.1"])]
    assert [r["action"] for r in document["records"]] == ["retire", "record", "record"]

    missing = ocimodel_cli("deploy", "retire", f"{repo}:1.0", "--environment", "prod", "--target", target)
    assert missing.code == 1 and "no deployment record" in missing.err
    assert usage_error_problems(ocimodel_cli("deploy", "record", f"{repo}:1.0", "-e", "prod", "--target", "nope")) == []


def test_an_unreadable_deployment_record_is_reported_not_dropped(repo, model_dir, tmp_path):
    v = _versions(repo, model_dir, tmp_path, names=("1.0",))
    junk = tmp_path / "bundle.json"
    junk.write_text('{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}')
    attached = reg.attach(f"{repo}:1.0", [junk], artifact_type=mt.BUNDLE_MEDIA_TYPE,
                          annotations={mt.ANNOTATION_BUNDLE_PREDICATE_TYPE: DEPLOYMENT_PREDICATE})
    result = reg.deployments(repo)
    assert result.running == [] and result.records == []
    assert any(attached.digest in w and "not readable" in w for w in result.warnings)
    entries = [e for e in reg.audit(repo).entries if e.record == attached.digest]
    assert [(e.digest, e.trust) for e in entries] == [(v["1.0"], "malformed")]


def test_a_command_on_a_layout_that_does_not_exist_leaves_nothing_behind(tmp_path):
    # `deploy record`, `promote`, `index create` (every command that opens a store to add
    # to a model in it) created an empty layout at a mistyped path, then failed.
    missing = tmp_path / "no-such-layout"
    for args in (
        ("deploy", "record", f"oci:{missing}:1.0", "--environment", "prod", "--target", "k8s://c/ns/m"),
        ("promote", f"oci:{missing}:1.0", "--to", "production"),
        ("index", "create", f"oci:{missing}:2.0", "1.0,quant=q4"),
    ):
        run = ocimodel_cli(*args)
        assert run.code == 1, str(run)
        assert f"no OCI layout at {missing}" in run.err and "Traceback" not in run.err, run.err
        assert not missing.exists(), args
