"""``diff`` and ``search`` (issue 6): what changed between two versions, and which versions
satisfy predicates on their metadata, against the real registry and OCI layouts. Both
read manifests and configs only; search keeps them in a digest-keyed cache but always
asks for tags afresh."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import ocimodel
from ocimodel.api import functions as api_compare
from ocimodel.errors import AuthenticationError, UsageError
from ocimodel.metadata.card import ModelCard
from ocimodel.metadata.query import equals, parse_predicate
from tests.support.faultproxy import FaultProxy
from tests.test_cli import json_of, ocimodel_cli, ok, usage_error_problems


def card_annotations(metrics=None, params=None, task=None, tags=None, framework=None) -> dict[str, str]:
    """Model card fields as push writes them (metadata/encoding.py): dev.ocimodel.* annotations."""
    annotations = {}
    if metrics is not None:
        annotations["dev.ocimodel.metrics+json"] = json.dumps(metrics, sort_keys=True, separators=(",", ":"))
    if params is not None:
        annotations["dev.ocimodel.hyperparameters+json"] = json.dumps(params, sort_keys=True, separators=(",", ":"))
    if tags is not None:
        annotations["dev.ocimodel.tags+json"] = json.dumps(tags, separators=(",", ":"))
    if task is not None:
        annotations["dev.ocimodel.task"] = task
    if framework is not None:
        annotations["dev.ocimodel.framework"] = framework
    return annotations


def push(model: Path, ref: str, *, name="tiny", version=None, licenses=(), **card) -> str:
    return ocimodel.push(
        model, ref, name=name, version=version, licenses=licenses, annotations=card_annotations(**card)
    ).digest


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.host) as p:
        yield p


# -- diff ---------------------------------------------------------------------------------


@pytest.fixture
def two_versions(registry, model_dir: Path, repo_name: str, tmp_path: Path):
    """v1 and v2 of one model: config.json changed, data/eval.csv removed, NOTES.md added,
    accuracy up, f1 gone, loss new, license and a hyperparameter changed."""
    v1 = f"{registry.host}/{repo_name}:1"
    push(model_dir, v1, version="1", licenses=["MIT"], metrics={"accuracy": 0.93, "f1": 0.8},
         params={"epochs": 3, "lr": 0.001}, task="text-classification")
    second = tmp_path / "v2"
    shutil.copytree(model_dir, second)
    (second / "config.json").write_text(json.dumps({"model_type": "tiny", "hidden_size": 8}) + "\n")
    (second / "data" / "eval.csv").unlink()
    (second / "NOTES.md").write_text("v2 notes\n")
    v2 = f"{registry.host}/{repo_name}:2"
    push(second, v2, version="2", licenses=["Apache-2.0"], metrics={"accuracy": 0.95, "loss": 0.2},
         params={"epochs": 5, "lr": 0.001}, task="text-classification")
    return v1, v2, model_dir, second


def test_diff_reports_files_metadata_metrics_and_licenses(two_versions):
    v1, v2, first, second = two_versions
    result = api_compare.diff(v1, v2)

    assert not result.identical and result.changed
    assert [f.path for f in result.files_added] == ["NOTES.md"]
    assert result.files_added[0].size == (second / "NOTES.md").stat().st_size
    assert [f.path for f in result.files_removed] == ["data/eval.csv"]
    assert [c.path for c in result.files_changed] == ["config.json"]
    change = result.files_changed[0]
    assert change.old_size == (first / "config.json").stat().st_size
    assert change.new_size == (second / "config.json").stat().st_size
    assert change.old_digest != change.new_digest and change.old_kind == change.new_kind == "weight.config"
    assert result.files_unchanged == 5

    metrics = {m.name: (m.old, m.new, m.delta) for m in result.metrics}
    assert metrics == {"accuracy": (0.93, 0.95, 0.02), "f1": (0.8, None, None), "loss": (None, 0.2, None)}
    assert result.licenses.changed
    assert (result.licenses.added, result.licenses.removed) == (["Apache-2.0"], ["MIT"])
    assert [(p.name, p.old, p.new) for p in result.hyperparameters] == [("epochs", 3, 5)]
    fields = {c.field: (c.old, c.new) for c in result.metadata}
    assert fields["version"] == ("1", "2")
    assert "task" not in fields and "name" not in fields  # unchanged fields are not listed


def test_diff_reads_manifests_and_configs_only(two_versions, proxy):
    v1, v2, _, _ = two_versions
    result = api_compare.diff(proxy.via(v1), proxy.via(v2))
    fetched = {s.path.rsplit("/", 1)[-1] for s in proxy.seen("GET", r"/blobs/")}
    configs = {ocimodel.inspect(ref).manifest["config"]["digest"] for ref in (v1, v2)}
    assert fetched == configs  # two small configs; not one weight, doc or code layer
    assert result.files_changed


def test_diff_across_stores_and_identical(two_versions, tmp_path: Path):
    v1, v2, _, _ = two_versions
    ocimodel.copy(v1, f"oci:{tmp_path / 'store'}:1")
    across = api_compare.diff(f"oci:{tmp_path / 'store'}:1", v2)
    same_store = api_compare.diff(v1, v2)
    assert across.model_dump(exclude={"a"}) == same_store.model_dump(exclude={"a"})
    assert across.a.digest == same_store.a.digest

    same = api_compare.diff(v1, f"oci:{tmp_path / 'store'}:1")
    assert same.identical and not same.changed
    assert not (same.files_added or same.files_removed or same.files_changed or same.metadata)
    assert all(m.delta == 0 for m in same.metrics)


def test_diff_cli_json_and_human(two_versions):
    v1, v2, _, _ = two_versions
    document = json_of(ok("diff", v1, v2, "--json"))
    assert {"a", "b", "identical", "changed", "files_added", "files_removed", "files_changed", "files_unchanged",
            "metadata", "metrics", "licenses", "hyperparameters"} <= set(document)
    assert document["changed"] is True
    assert [m["delta"] for m in document["metrics"] if m["name"] == "accuracy"] == [0.02]
    human = ok("diff", v1, v2).out
    for text in ("NOTES.md", "data/eval.csv", "config.json", "accuracy", "+0.02", "MIT -> Apache-2.0", "epochs"):
        assert text in human, human


def test_diff_of_an_index_or_a_missing_tag_fails_clearly(two_versions):
    v1, _, _, _ = two_versions
    missing = ocimodel_cli("diff", v1, v1.rsplit(":", 1)[0] + ":nope")
    assert missing.code == 1 and missing.err.startswith("error: ") and not missing.out


# -- search over a registry ---------------------------------------------------------------


@pytest.fixture
def catalog(registry, model_dir: Path, repo_name: str):
    """Versions in two repositories under one prefix, and one just outside it.

    a:1 acc .85 MIT | a:2 (= a:latest) acc .92 MIT, epochs 5, tags nlp | b:1 acc .95 Apache-2.0,
    task ner | b:2 no metrics | <prefix>-other/c:1 acc .99 (outside the prefix)."""
    host = registry.host
    prefix = repo_name
    versions = {
        "a:1": push(model_dir, f"{host}/{prefix}/a:1", name="alpha", version="1", licenses=["MIT"],
                    metrics={"accuracy": 0.85}, params={"epochs": 3}, task="text-classification"),
        "a:2": push(model_dir, f"{host}/{prefix}/a:2", name="alpha", version="2", licenses=["MIT"],
                    metrics={"accuracy": 0.92, "f1": 0.9}, params={"epochs": 5}, task="text-classification",
                    tags=["nlp", "prod"]),
        "b:1": push(model_dir, f"{host}/{prefix}/b:1", name="beta", version="1", licenses=["Apache-2.0"],
                    metrics={"accuracy": 0.95}, task="ner"),
        "b:2": push(model_dir, f"{host}/{prefix}/b:2", name="beta", version="2"),
    }
    ocimodel.tag(f"{host}/{prefix}/a:2", "latest")
    push(model_dir, f"{host}/{prefix}-other/c:1", name="gamma", metrics={"accuracy": 0.99})
    # A fallback referrers tag (sha256-...) in a/: an index of referrers, not a version.
    from ocimodel.api import functions as api_referrers

    api_referrers.attach(f"{host}/{prefix}/a:2", [], artifact_type="application/vnd.example.eval.v1+json",
                         annotations={"note": "x"})
    assert any(t.startswith("sha256-") for t in ocimodel.list_tags(f"{host}/{prefix}/a", all_tags=True))
    return host, prefix, versions


def _refs(result) -> set[str]:
    return {m.reference.split("/", 1)[1] for m in result.matches}


def test_search_finds_exactly_the_matching_versions(catalog):
    host, prefix, versions = catalog
    where = f"{host}/{prefix}"

    result = api_compare.search(where, "metrics.accuracy>=0.9")
    assert _refs(result) == {f"{prefix}/a:2", f"{prefix}/b:1"}
    by_ref = {m.reference: m for m in result.matches}
    a2 = by_ref[f"{host}/{prefix}/a:2"]
    assert a2.tags == ["2", "latest"] and a2.digest == versions["a:2"]
    assert (a2.name, a2.version, a2.metrics) == ("alpha", "2", {"accuracy": 0.92})
    assert set(result.repositories) == {f"{prefix}/a", f"{prefix}/b"}  # not <prefix>-other/c
    assert result.versions_examined == 5  # a:1 a:2 a:latest b:1 b:2; never the sha256-... tag
    assert result.skipped == []

    cases = {
        ("metrics.accuracy>=0.9", "metrics.accuracy<0.95"): {f"{prefix}/a:2"},
        ("metrics.accuracy>0.95",): set(),
        ("metrics.accuracy!=0.85",): {f"{prefix}/a:2", f"{prefix}/b:1"},  # b:2 has no accuracy: no match
        ("metrics.f1==0.9",): {f"{prefix}/a:2"},
        ("params.epochs>3",): {f"{prefix}/a:2"},
        ("params.epochs==3",): {f"{prefix}/a:1"},
        ("tags==nlp",): {f"{prefix}/a:2"},
        ("task!=ner",): {f"{prefix}/a:1", f"{prefix}/a:2"},
        ("name==beta",): {f"{prefix}/b:1", f"{prefix}/b:2"},
        ("version==1", "license==mit"): {f"{prefix}/a:1"},
        ("format==safetensors", "name==beta"): {f"{prefix}/b:1", f"{prefix}/b:2"},
        (): {f"{prefix}/a:1", f"{prefix}/a:2", f"{prefix}/b:1", f"{prefix}/b:2"},
    }
    for predicates, expected in cases.items():
        assert _refs(api_compare.search(where, predicates)) == expected, predicates

    assert _refs(api_compare.search(where, "metrics.accuracy>=0.9", license="MIT")) == {f"{prefix}/a:2"}
    assert _refs(api_compare.search(where, task="ner", format="SafeTensors")) == {f"{prefix}/b:1"}
    assert _refs(api_compare.search(f"{host}/{prefix}/b", name="beta")) == {f"{prefix}/b:1", f"{prefix}/b:2"}


def test_search_cli_json_and_table(catalog):
    host, prefix, _ = catalog
    document = json_of(ok("search", f"{host}/{prefix}", "--where", "metrics.accuracy>=0.9", "--license", "MIT", "--json"))
    assert [m["reference"] for m in document["matches"]] == [f"{host}/{prefix}/a:2"]
    assert document["predicates"] == ["metrics.accuracy>=0.9", "license==MIT"]
    table = ok("search", f"{host}/{prefix}", "-w", "metrics.accuracy>=0.9").out
    assert f"{host}/{prefix}/a:2" in table and f"{host}/{prefix}/b:1" in table and "ACCURACY" in table
    assert "0.92" in table and "2 matches among 5 tags of 2 repositories" in table
    assert "no matching versions" in ok("search", f"{host}/{prefix}", "-w", "metrics.accuracy>2").out


def test_search_caches_manifests_and_configs_but_not_tags(catalog, proxy):
    host, prefix, versions = catalog
    where = f"{proxy.host}/{prefix}"
    first = api_compare.search(where, "metrics.accuracy>=0.9")
    manifest_gets = proxy.count("GET", r"/manifests/")
    blob_gets = proxy.count("GET", r"/blobs/")
    heads = proxy.count("HEAD", r"/manifests/")
    assert manifest_gets >= 4 and blob_gets >= 4 and heads == 5

    proxy.clear()
    second = api_compare.search(where, "metrics.accuracy>=0.9")
    assert _refs(second) == _refs(first)
    assert proxy.count("GET", r"/manifests/") == 0 < manifest_gets
    assert proxy.count("GET", r"/blobs/") == 0
    assert proxy.count("HEAD", r"/manifests/") == 5  # every tag asked afresh
    assert second.cache_hits >= 8 and second.cache_misses == 0

    # A tag moved since: seen at once (the tag -> digest answer is never cached).
    ocimodel.tag(f"{host}/{prefix}/a:1", "latest")
    proxy.clear()
    moved = api_compare.search(where, "metrics.accuracy>=0.9")
    by_ref = {m.reference: m for m in moved.matches}
    assert (by_ref[f"{proxy.host}/{prefix}/a:2"].tags, by_ref[f"{proxy.host}/{prefix}/a:2"].digest) == (["2"], versions["a:2"])
    assert proxy.count("GET", r"/manifests/") == 0  # a:1's manifest was cached by digest

    # --no-cache / cache=False fetches everything again.
    proxy.clear()
    api_compare.search(where, "metrics.accuracy>=0.9", cache=False)
    assert proxy.count("GET", r"/manifests/") >= 4


def test_search_cache_is_verified_when_read(catalog, proxy):
    _, prefix, versions = catalog
    where = f"{proxy.host}/{prefix}"
    api_compare.search(where)
    from ocimodel.settings import cache_dir

    entry = cache_dir() / "manifests" / "sha256" / versions["b:1"].split(":", 1)[1]
    assert entry.is_file() and (entry.stat().st_mode & 0o077) == 0
    # Tampered: b:1 now claims accuracy 0.1 in the cache. It must be refused and fetched again.
    document = json.loads(entry.read_bytes())
    document["annotations"]["dev.ocimodel.metrics+json"] = '{"accuracy":0.1}'
    entry.write_bytes(json.dumps(document).encode())
    proxy.clear()
    result = api_compare.search(where, "metrics.accuracy>=0.9")
    assert f"{prefix}/b:1" in _refs(result)
    assert proxy.count("GET", rf"/manifests/{versions['b:1']}") == 1
    assert json.loads(entry.read_bytes())["annotations"]["dev.ocimodel.metrics+json"] == '{"accuracy":0.95}'


def test_search_with_explicit_repositories_where_the_catalog_is_refused(catalog, proxy):
    _, prefix, _ = catalog
    proxy.reply(401, method="GET", path=r"/v2/_catalog", times=None, code="UNAUTHORIZED")
    with pytest.raises(AuthenticationError) as caught:  # 401: the registry wants credentials
        api_compare.search(proxy.host, "metrics.accuracy>=0.9")
    assert "--repo" in (caught.value.hint or "")
    refused = ocimodel_cli("search", proxy.host, "-w", "metrics.accuracy>=0.9")
    assert refused.code == 1 and "refused to list its repositories" in refused.err and "--repo" in refused.err

    result = api_compare.search(proxy.host, "metrics.accuracy>=0.9", repositories=[f"{prefix}/b", f"{prefix}-other/c"])
    assert _refs(result) == {f"{prefix}/b:1", f"{prefix}-other/c:1"}
    document = json_of(ok("search", proxy.host, "--repo", f"{prefix}/a", "-w", "params.epochs>=5", "--json"))
    assert [m["reference"] for m in document["matches"]] == [f"{proxy.host}/{prefix}/a:2"]
    with pytest.raises(UsageError):
        api_compare.search(f"{proxy.host}/{prefix}/a", repositories=[f"{prefix}/b"])  # outside the prefix


def test_search_reports_repositories_it_may_not_read(catalog, proxy):
    _, prefix, _ = catalog
    proxy.reply(403, method="GET", path=rf"/v2/{prefix}/b/tags/list", times=None, code="DENIED")
    result = api_compare.search(f"{proxy.host}/{prefix}", "metrics.accuracy>=0.9")
    assert _refs(result) == {f"{prefix}/a:2"}
    assert [s.reference for s in result.skipped] == [f"{proxy.host}/{prefix}/b"]


def test_search_skips_what_is_not_a_model(registry, model_dir: Path, repo_name: str):
    from tests.support.modeltrees import OCI_MANIFEST, put_blob, put_manifest

    push(model_dir, f"{registry.host}/{repo_name}/m:1", metrics={"accuracy": 0.9})
    config = put_blob(registry.url, f"{repo_name}/img", b'{"architecture":"amd64","os":"linux"}')
    put_manifest(registry.url, f"{repo_name}/img", "1", {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 37},
        "layers": [],
    }, OCI_MANIFEST)
    result = api_compare.search(f"{registry.host}/{repo_name}")
    assert _refs(result) == {f"{repo_name}/m:1"}
    assert [(s.reference.split("/", 1)[1], "not a ModelPack model" in s.reason) for s in result.skipped] == [
        (f"{repo_name}/img:1", True)
    ]


# -- search over a layout ---------------------------------------------------------------------


@pytest.mark.slow
def test_search_in_a_layout(model_dir: Path, tmp_path: Path):
    store = tmp_path / "store"
    push(model_dir, f"oci:{store}:1", version="1", metrics={"accuracy": 0.8})
    push(model_dir, f"oci:{store}:2", version="2", metrics={"accuracy": 0.91}, licenses=["MIT"])
    push(model_dir, f"oci:{store}:3", version="3", metrics={"accuracy": 0.97}, licenses=["Apache-2.0"])
    result = api_compare.search(f"oci:{store}", "metrics.accuracy>=0.9")
    assert [m.reference for m in result.matches] == [f"oci:{store}:2", f"oci:{store}:3"]
    assert [m.version for m in result.matches] == ["2", "3"]
    document = json_of(ok("search", f"oci:{store}", "-w", "metrics.accuracy>=0.9", "--license", "Apache-2.0", "--json"))
    assert [m["reference"] for m in document["matches"]] == [f"oci:{store}:3"]
    with pytest.raises(UsageError):
        api_compare.search(f"oci:{store}:1")


# -- predicates ---------------------------------------------------------------------------


BAD_PREDICATES = {
    "accuracy>=0.9": "unknown field",
    "metrics.accuracy>=high": "number",
    "metrics.accuracy=0.9": "unknown operator",
    "metrics.accuracy=>0.9": "unknown operator",
    "metrics>=0.9": "needs a name",
    "metrics.>=0.9": "needs a name",
    "name>=alpha": "takes == or != only",
    "metrics.accuracy>=": "no value",
    "metrics.accuracy 0.9": "no operator",
    "metrics.accuracy>=0.9<=1": "more than one operator",
    "params.lr>fast": "needs a number",
    "metrics.accuracy>=nan": "not a finite number",
    "": "empty",
}


def test_bad_predicates_are_usage_errors_naming_the_problem():
    for text, problem in BAD_PREDICATES.items():
        with pytest.raises(UsageError) as caught:
            parse_predicate(text)
        assert problem in caught.value.message, (text, caught.value.message)


def test_bad_predicate_exits_2(catalog, tmp_path: Path):
    host, prefix, _ = catalog
    for text in ("accuracy>=0.9", "metrics.accuracy>=high", "name<beta"):
        run = ocimodel_cli("search", f"{host}/{prefix}", "--where", text)
        assert not usage_error_problems(run)
        assert "bad predicate" in run.err
    assert not usage_error_problems(ocimodel_cli("search", "not a location", "-w", "metrics.a>1"))


def test_predicate_semantics_on_cards():
    card = ModelCard.model_validate({
        "name": "alpha", "version": "1.2", "task": "Text-Classification", "licenses": ["MIT OR Apache-2.0", "CC-BY-4.0"],
        "tags": ["nlp"], "metrics": {"accuracy": 0.9, "f1": {"value": 0.8, "dataset": "sst2"}, "eval/loss": 1},
        "hyperparameters": {"epochs": 3, "optimizer": "adamw", "fp16": True, "seed": None, "steps": "100"},
    })
    holds = {
        "metrics.accuracy>=0.9": True, "metrics.accuracy>0.9": False, "metrics.f1<0.85": True,
        "metrics.eval/loss==1.0": True, "metrics.missing<1": False, "metrics.missing!=1": False,
        "task==text-classification": True, "name==Alpha": False, "version==1.2": True,
        "license==mit or apache-2.0": True, "license==MIT": False, "license!=GPL-3.0": True,
        "tags==NLP": True, "tags!=nlp": False, "framework==pytorch": False, "framework!=pytorch": False,
        "params.epochs==3.0": True, "params.epochs<=3": True, "params.optimizer==adamw": True,
        "params.fp16==true": True, "params.seed==null": True, "params.steps==100": False,
        "params.steps=='100'": True, "params.optimizer>1": False, "params.missing!=1": False,
        "hyperparameters.epochs>2": True, "licenses==CC-BY-4.0": True, "tag==nlp": True,
    }
    for text, expected in holds.items():
        assert parse_predicate(text).matches(card) is expected, text
    assert equals("license", "MIT OR Apache-2.0").matches(card)
    assert str(parse_predicate(" metrics.accuracy >= 0.9 ")) == "metrics.accuracy>=0.9"
    assert parse_predicate("metrics.accuracy>=0.9").metric == "accuracy"
