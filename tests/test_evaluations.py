"""Evaluation records on the real registry (no referrers API: the fallback tag index) and on
an OCI layout: `eval record` writes an in-toto statement about the model digest (signed as
a bundle referrer, or unsigned), and `eval history` lists the baseline (the card's
push-time metrics) and every record in time order: of a model, of a repository, and of an
alias, each record under the version that held the alias then."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

import ocimodel
from ocimodel.api import functions as reg
from ocimodel.api import trust as api_trust
from ocimodel.api.common import as_reference, open_store
from ocimodel.api.evaluations import EVALUATION_PREDICATE
from ocimodel.api.statements import write_unsigned
from ocimodel.oci import mediatypes as mt
from ocimodel.signing.statement import attestation_statement
from ocimodel.transport.connection import ConnectionOptions
from tests.support.faultproxy import FaultProxy
from tests.test_cli import json_of, ok

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


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
    for name in ("evaluator", "mallory"):
        api_trust.generate_key_pair(directory / f"{name}.key", directory / f"{name}.pub")
        pairs[name] = (directory / f"{name}.key", directory / f"{name}.pub")
    return pairs


def _versions(repo: str, model_dir: Path, tmp_path: Path, names=("1.0",), accuracy=0.95) -> dict[str, str]:
    digests = {}
    for i, version in enumerate(names):
        copy = tmp_path / f"v{version}"
        shutil.copytree(model_dir, copy)
        (copy / "config.json").write_text(json.dumps({"version": version, "i": i}))
        digests[version] = ocimodel.push(
            copy, f"{repo}:{version}", name="sentiment", version=version, created=f"2026-0{i + 1}-01T00:00:00Z",
            metadata={"metrics": {"accuracy": accuracy, "f1": {"value": 0.9, "dataset": "imdb", "split": "test"}}},
        ).digest
    return digests


def _points(history) -> list[tuple]:
    return [(p.version, p.baseline, [(m.name, m.value) for m in p.metrics]) for p in history.records]


def test_records_at_three_times_are_listed_in_time_order_after_the_baseline(repo, model_dir, tmp_path, monkeypatch):
    v = _versions(repo, model_dir, tmp_path)
    monkeypatch.setenv("OCIMODEL_ACTOR", "monitor")
    # Written out of order: the history is ordered by when each was measured.
    reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.91}, time="2026-11-01T00:00:00Z", environment="production")
    first = reg.record_evaluation(f"{repo}:1.0", ["accuracy=0.93"], time="2026-10-01T00:00:00+02:00",
                                  dataset="s3://evals/october.parquet@sha256:" + "a" * 64, split="test")
    reg.record_evaluation(f"{repo}@{v['1.0']}", {"accuracy": 0.78}, time="2026-12-01T00:00:00Z", notes="drift")
    assert (first.digest, first.signed, first.predicate.time, first.predicate.recorder) == (
        v["1.0"], False, "2026-09-30T22:00:00Z", "monitor")

    history = reg.evaluation_history(f"{repo}:1.0")
    assert [(p.time, p.baseline, [(m.name, m.value) for m in p.metrics]) for p in history.records] == [
        ("2026-01-01T00:00:00Z", True, [("accuracy", 0.95), ("f1", 0.9)]),
        ("2026-09-30T22:00:00Z", False, [("accuracy", 0.93)]),
        ("2026-11-01T00:00:00Z", False, [("accuracy", 0.91)]),
        ("2026-12-01T00:00:00Z", False, [("accuracy", 0.78)]),
    ]
    assert {(p.version, p.digest, p.trust) for p in history.records[1:]} == {("1.0", v["1.0"], "unsigned")}
    baseline, october, november, december = history.records
    assert (baseline.trust, baseline.referrer, baseline.metrics[1].dataset, baseline.metrics[1].split) == (None, None, "imdb", "test")
    assert october.referrer == first.record
    assert (october.metrics[0].dataset, october.metrics[0].split) == ("s3://evals/october.parquet@sha256:" + "a" * 64, "test")
    assert (november.environment, december.notes, december.recorder) == ("production", "drift", "monitor")
    assert history.warnings == []
    # More records, again out of order: the order is the times', not the write order nor
    # the records' digests (a sort on those would pass the three above by chance).
    for value, time in ((0.8, "2026-11-20T00:00:00Z"), (0.92, "2026-10-15T00:00:00Z"), (0.9, "2026-11-10T00:00:00Z")):
        reg.record_evaluation(f"{repo}:1.0", {"accuracy": value}, time=time)
    assert [p.metrics[0].value for p in reg.evaluation_history(f"{repo}:1.0", metric="accuracy").records] == [
        0.95, 0.93, 0.92, 0.91, 0.9, 0.8, 0.78]

    # The repository's history is the same here (one version); --metric and --since narrow it.
    assert _points(reg.evaluation_history(repo)) == _points(reg.evaluation_history(f"{repo}:1.0"))
    assert [(p.baseline, [m.name for m in p.metrics]) for p in reg.evaluation_history(repo, metric="f1").records] == [
        (True, ["f1"])]
    since = reg.evaluation_history(f"{repo}:1.0", since="2026-11-01", metric="accuracy")
    assert [(p.baseline, p.metrics[0].value) for p in since.records] == [(True, 0.95), (False, 0.91), (False, 0.9), (False, 0.8), (False, 0.78)]


def test_history_of_an_alias_shows_each_record_under_the_version_that_held_it(repo, model_dir, tmp_path):
    v = _versions(repo, model_dir, tmp_path, names=("1.0", "1.1"))
    reg.promote(f"{repo}:1.0", "production")
    reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.93}, environment="production")
    reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.91}, environment="production")
    reg.promote(f"{repo}:1.1", "production")
    reg.record_evaluation(f"{repo}:1.1", {"accuracy": 0.92}, environment="production")
    reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.5}, environment="shadow")  # 1.0 no longer held it

    history = reg.evaluation_history(f"{repo}:production", metric="accuracy")
    assert history.kind == "alias"
    records = [(p.version, p.alias, p.metrics[0].value) for p in history.records if not p.baseline]
    assert records == [("1.0", "production", 0.93), ("1.0", "production", 0.91), ("1.1", "production", 0.92)]
    # The baselines of both versions are there, pushed before either held the alias.
    assert sorted((p.version, p.alias) for p in history.records if p.baseline) == [("1.0", None), ("1.1", None)]
    assert {p.digest for p in history.records} == {v["1.0"], v["1.1"]}
    # The repository's history has every record, the one made off the alias too.
    assert sorted(p.metrics[0].value for p in reg.evaluation_history(repo, metric="accuracy").records if not p.baseline) == [
        0.5, 0.91, 0.92, 0.93]
    # A tag no promotion record moved gives the history of the model it names, said so.
    reg.tag(f"{repo}:1.1", "candidate")
    candidate = reg.evaluation_history(f"{repo}:candidate", metric="accuracy")
    assert candidate.kind == "model" and {p.digest for p in candidate.records} == {v["1.1"]}
    assert [(p.version, p.alias) for p in candidate.records] == [("1.1", None), ("1.1", None)]
    assert candidate.warnings[-1] == "no promotion record of candidate: the history of the model it names now"


def test_signed_records_are_trusted_under_a_policy_naming_the_key(repo, model_dir, tmp_path, keys):
    v = _versions(repo, model_dir, tmp_path)
    signed = reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.93}, time="2026-10-01T00:00:00Z", key=keys["evaluator"][0])
    reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.91}, time="2026-11-01T00:00:00Z")
    reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.99}, time="2026-12-01T00:00:00Z", key=keys["mallory"][0])
    assert signed.signed and signed.signer and signed.signer.startswith("key ")

    # Stored as attestations are: a cosign v3 bundle whose listing names our predicate.
    listed = {d.digest: d for d in ocimodel.referrers(f"{repo}@{v['1.0']}").referrers}
    assert listed[signed.record].artifact_type == mt.BUNDLE_MEDIA_TYPE
    assert listed[signed.record].annotations[mt.ANNOTATION_BUNDLE_PREDICATE_TYPE] == EVALUATION_PREDICATE

    policy = tmp_path / "policy.yaml"
    policy.write_text(f"version: 1\nsigners:\n  evaluator: {{key: {keys['evaluator'][1]}}}\n")
    checked = reg.evaluation_history(f"{repo}:1.0", policy=policy)
    assert checked.policy is True
    assert [(p.metrics[0].value, p.trust, p.signers) for p in checked.records[1:]] == [
        (0.93, "trusted", ["evaluator"]), (0.91, "unsigned", []), (0.99, "untrusted", [])]
    assert checked.records[3].detail
    # Without a policy, a signed record says it was not checked.
    assert [p.trust for p in reg.evaluation_history(f"{repo}:1.0").records[1:]] == ["signed", "unsigned", "signed"]


def test_records_travel_with_copy_with_referrers_and_export(repo, model_dir, tmp_path, keys):
    v = _versions(repo, model_dir, tmp_path)
    reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.93}, time="2026-10-01T00:00:00Z", key=keys["evaluator"][0])
    reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.91}, time="2026-11-01T00:00:00Z")
    before = _points(reg.evaluation_history(f"{repo}:1.0"))
    assert len(before) == 3

    copied = f"oci:{tmp_path / 'copied'}:1.0"
    reg.copy(f"{repo}:1.0", copied, with_referrers=True)
    archive = tmp_path / "model.tar"
    reg.export(f"{repo}:1.0", archive)
    imported = f"oci:{tmp_path / 'imported'}:1.0"
    reg.import_(archive, imported)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"version: 1\nsigners:\n  evaluator: {{key: {keys['evaluator'][1]}}}\n")
    for where in (copied, imported):
        history = reg.evaluation_history(where, policy=policy)
        assert _points(history) == before, where
        assert [p.trust for p in history.records[1:]] == ["trusted", "unsigned"], where
        assert {p.digest for p in history.records} == {v["1.0"]}


@pytest.mark.registry
def test_cli_eval_record_and_history(registry, repo_name, model_dir, tmp_path, keys):
    # On the registry only: the API tests above cover both stores, a CLI run costs seconds.
    repo = f"{registry.host}/{repo_name}"
    v = _versions(repo, model_dir, tmp_path)
    env = {"OCIMODEL_ACTOR": "carol"}
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"metrics": [{"name": "accuracy", "value": 0.93, "dataset": "imdb"}],
                                  "environment": "staging", "time": "2026-10-01T00:00:00Z", "notes": "nightly"}))
    written = json_of(ok("eval", "record", f"{repo}:1.0", "--from", report, "--environment", "production",
                         "--key", keys["evaluator"][0], "--json", env=env))
    jsonschema.Draft202012Validator(json.loads((SCHEMAS / "evaluation-predicate.schema.json").read_text())).validate(
        written["predicate"])
    assert (written["digest"], written["signed"]) == (v["1.0"], True)
    assert written["predicate"] == {
        "metrics": [{"name": "accuracy", "value": 0.93, "dataset": "imdb", "split": None}],
        "environment": "production", "time": "2026-10-01T00:00:00Z", "recorder": "carol", "notes": "nightly"}

    table = tmp_path / "metrics.csv"
    table.write_text("metric,value,dataset,split\naccuracy,0.78,imdb,test\nf1,0.7,,\n")
    text = ok("eval", "record", f"{repo}:1.0", "--from", table, "--metric", "latency_ms=41", "--time", "2026-12-01T00:00:00Z",
              env=env).out
    assert "accuracy=0.78, f1=0.7, latency_ms=41" in text and "unsigned" in text and v["1.0"] in text

    document = json_of(ok("eval", "history", f"{repo}:1.0", "--json"))
    jsonschema.Draft202012Validator(json.loads((SCHEMAS / "evaluation-history.schema.json").read_text())).validate(document)
    assert [(r["baseline"], r["time"], r["trust"]) for r in document["records"]] == [
        (True, "2026-01-01T00:00:00Z", None), (False, "2026-10-01T00:00:00Z", "signed"),
        (False, "2026-12-01T00:00:00Z", "unsigned")]
    assert [(m["name"], m["value"], m["dataset"], m["split"]) for m in document["records"][2]["metrics"]] == [
        ("accuracy", 0.78, "imdb", "test"), ("f1", 0.7, None, None), ("latency_ms", 41.0, None, None)]

    drawn = tmp_path / "accuracy.svg"
    shown = ok("eval", "history", repo, "--metric", "accuracy", "--plot", drawn).out
    assert ET.parse(drawn).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert shown.splitlines()[-1] == f"Plot: {drawn}"
    lines = shown.splitlines()
    assert lines[0].startswith("2026-01-01T00:00:00Z") and "accuracy=0.95" in lines[0] and lines[0].endswith("[baseline]")
    assert "accuracy=0.93" in lines[1] and lines[1].endswith("[signed]")
    assert "accuracy=0.78" in lines[2] and "f1" not in shown
    assert "accuracy: 3 points, first 0.95, last 0.78, min 0.78, max 0.95" in shown


@pytest.mark.registry
def test_a_second_history_fetches_no_record_again(registry, repo_name, model_dir, tmp_path):
    """Records never change (named by digest): read once, a record comes from the local
    cache after, checked against its digest; only the listing is asked again."""
    repo = f"{registry.host}/{repo_name}"
    _versions(repo, model_dir, tmp_path)
    for i in range(3):
        reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.9 - i / 100}, time=f"2026-1{i}-01T00:00:00Z")
    with FaultProxy(registry.host) as proxy:
        first = reg.evaluation_history(f"{proxy.host}/{repo_name}:1.0")
        blobs, manifests = proxy.count("GET", r"/blobs/sha256:"), proxy.count("GET", r"/manifests/sha256:")
        assert blobs == 0  # each record's statement is embedded in its manifest
        # The records' manifests, once each; the model's was read once, by its tag.
        assert (manifests, proxy.count("GET", r"/manifests/1\.0")) == (3, 1)
        second = reg.evaluation_history(f"{proxy.host}/{repo_name}:1.0")
        assert proxy.count("GET", r"/blobs/sha256:") == blobs
        assert proxy.count("GET", r"/manifests/sha256:") - manifests == manifests - 3  # the records' are not asked again
    assert _points(second) == _points(first) and len(first.records) == 4


def test_an_unreadable_evaluation_record_is_reported_not_dropped(model_dir, tmp_path):
    repo = f"oci:{tmp_path / 'store'}"
    v = _versions(repo, model_dir, tmp_path)
    junk = tmp_path / "bundle.json"
    junk.write_text('{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}')
    attached = reg.attach(f"{repo}:1.0", [junk], artifact_type=mt.BUNDLE_MEDIA_TYPE,
                          annotations={mt.ANNOTATION_BUNDLE_PREDICATE_TYPE: EVALUATION_PREDICATE})
    # A statement of our type whose predicate is not a record (another tool's, or a bug).
    with open_store(ConnectionOptions(), as_reference(f"{repo}:1.0")) as store:
        root = store.resolve("1.0")
        statement = attestation_statement(root.digest, EVALUATION_PREDICATE, {"metrics": [{"name": "accuracy", "value": "high"}],
                                                                              "time": "2026-10-01T00:00:00Z"})
        bad = write_unsigned(store, root, statement)
    reg.record_evaluation(f"{repo}:1.0", {"accuracy": 0.9}, time="2026-11-01T00:00:00Z")
    history = reg.evaluation_history(f"{repo}:1.0")
    assert [(p.baseline, p.metrics[0].value) for p in history.records] == [(True, 0.95), (False, 0.9)]
    assert any(attached.digest in w and "not readable" in w for w in history.warnings), history.warnings
    assert any(bad.digest in w and "metrics.0.value" in w for w in history.warnings), history.warnings
    assert {p.digest for p in history.records} == {v["1.0"]}
