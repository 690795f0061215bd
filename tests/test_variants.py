"""Variant indexes (issue 14): several builds of one model under one reference, each
labelled, as an OCI image index (docs/variants.md).

What a user relies on: `index create` writes an index of the repository's models with
their labels; `inspect` lists the variants; `pull --variant` downloads exactly the chosen
variant (the registry sees GETs for its blobs only), and a missing or ambiguous choice is
a usage error naming every variant; the index round-trips through a registry, an OCI
layout, `copy` (with the referrers of every variant) and export/import; its tag follows
the version rules of push."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

import ocimodel
from ocimodel.errors import NotAModel, UsageError, VariantNotChosen, VersionExists
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Descriptor
from ocimodel.oci.reference import parse_reference
from ocimodel.targets.open import open_target
from tests.support.faultproxy import FaultProxy
from tests.support.files import tree_digest
from tests.test_cli import json_of, ocimodel_cli, ok, usage_error_problems

VARIANTS = "application/vnd.ocimodel.variants.v1+json"
PREFIX = "dev.ocimodel.variant."


def _builds(model_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """Two builds of one model: the same tokenizer and docs (shared blobs), other weights."""
    builds = {}
    for name, weights in (("q4", b"\x04" * 4096), ("f16", b"\x10" * 8192)):
        build = tmp_path / name
        shutil.copytree(model_dir, build)
        (build / "model.safetensors").unlink()
        (build / f"model-{name}.gguf").write_bytes(b"GGUF" + weights)
        builds[name] = build
    return builds


def _push_builds(builds: dict[str, Path], repository: str) -> dict[str, ocimodel.PushResult]:
    return {name: ocimodel.push(build, f"{repository}:llm-{name}", detect_git=False) for name, build in builds.items()}


def _create(repository: str, *extra: str) -> dict:
    run = ok("index", "create", f"{repository}:1.0", "llm-q4,quant=q4,device=cpu", "llm-f16,quant=f16,device=cuda", *extra, "--json")
    return json_of(run)


def _index_document(reference: str) -> dict:
    return ocimodel.inspect(reference).manifest


def _check_index(repository: str, pushed: dict[str, ocimodel.PushResult], created: dict) -> None:
    """The index as written: our artifactType, one entry per model, labels as annotations."""
    document = _index_document(f"{repository}:1.0")
    assert document["mediaType"] == mt.OCI_INDEX
    assert document["artifactType"] == VARIANTS
    entries = {entry["digest"]: entry for entry in document["manifests"]}
    assert set(entries) == {pushed["q4"].digest, pushed["f16"].digest}
    assert entries[pushed["q4"].digest]["annotations"] == {PREFIX + "quant": "q4", PREFIX + "device": "cpu"}
    assert entries[pushed["f16"].digest]["annotations"] == {PREFIX + "quant": "f16", PREFIX + "device": "cuda"}
    assert all(e["artifactType"] == mt.MODEL_ARTIFACT and e["mediaType"] == mt.OCI_MANIFEST for e in entries.values())
    assert created["digest"] == ocimodel.inspect(f"{repository}:1.0").digest
    assert [v["labels"] for v in created["variants"]] == [{"quant": "q4", "device": "cpu"}, {"quant": "f16", "device": "cuda"}]


def _check_inspect(reference: str, pushed: dict[str, ocimodel.PushResult]) -> None:
    text = ok("inspect", reference).out
    assert "a variant index of 2 models" in text and "not a model" not in text
    lines = [line for line in text.splitlines() if line.startswith("Variant:")]
    assert len(lines) == 2, text
    assert "quant=q4,device=cpu" in lines[0] and pushed["q4"].digest in lines[0] and "gguf" in lines[0]
    assert "quant=f16,device=cuda" in lines[1] and pushed["f16"].digest in lines[1]
    info = json_of(ok("inspect", reference, "--json"))
    assert info["kind"] == "variants" and info["is_model"] is True
    by_digest = {entry["digest"]: entry for entry in info["manifests"]}
    q4 = by_digest[pushed["q4"].digest]
    assert q4["labels"] == {"quant": "q4", "device": "cpu"}
    assert q4["model_size"] == sum(f.size for f in pushed["q4"].files)
    assert q4["files"] == len(pushed["q4"].files)
    assert "gguf" in q4["formats"]


def _check_pulls(reference: str, builds: dict[str, Path], pushed: dict[str, ocimodel.PushResult], tmp_path: Path) -> None:
    for name, labels in (("q4", "quant=q4"), ("f16", "device=cuda")):
        out = tmp_path / f"pulled-{name}-{abs(hash(reference))}"
        run = ok("pull", reference, out, "--variant", labels, "--json")
        result = json_of(run)
        assert result["digest"] == pushed[name].digest
        assert result["index_digest"] == ocimodel.inspect(reference).digest
        assert tree_digest(out) == tree_digest(builds[name])


# -- a registry ---------------------------------------------------------------------------------


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.host) as p:
        yield p


def test_round_trip_through_a_registry(registry, model_dir, repo_name, tmp_path, proxy):
    builds = _builds(model_dir, tmp_path)
    repository = f"{registry.host}/{repo_name}"
    pushed = _push_builds(builds, repository)
    created = _create(repository)
    _check_index(repository, pushed, created)
    _check_inspect(f"{repository}:1.0", pushed)
    _check_pulls(f"{repository}:1.0", builds, pushed, tmp_path)

    # Only the chosen variant's files are downloaded: the registry (through a pass-through
    # proxy that logs requests) sees a GET for each of its blobs and for nothing else.
    proxy.clear()
    result = ocimodel.pull(f"{proxy.host}/{repo_name}:1.0", tmp_path / "only-q4", variant=["quant=q4"])
    gets = sorted(seen.path.rsplit("/", 1)[-1] for seen in proxy.seen("GET", r"/blobs/"))
    assert gets == sorted({f.digest for f in pushed["q4"].files})
    assert set(gets).isdisjoint({f.digest for f in pushed["f16"].files} - {f.digest for f in pushed["q4"].files})
    assert result.bytes_downloaded == sum(f.size for f in pushed["q4"].files)
    assert result.variant == {"quant": "q4", "device": "cpu"}

    # Writing the same index again is a no-op; another one under the version is refused.
    assert _create(repository)["digest"] == created["digest"]
    again = ocimodel_cli("index", "create", f"{repository}:1.0", "llm-q4,quant=q4")
    assert again.code == 1 and "1.0" in again.err and created["digest"] in again.err, str(again)
    with pytest.raises(VersionExists):
        ocimodel.create_index(f"{repository}:1.0", {"llm-q4": {"quant": "q4"}})
    forced = ocimodel.create_index(f"{repository}:1.0", {"llm-q4": {"quant": "q4"}}, force=True)
    assert ocimodel.inspect(f"{repository}:1.0").digest == forced.digest != created["digest"]


def test_choosing_a_variant(registry, model_dir, repo_name, tmp_path):
    """A missing, unknown or ambiguous choice is a usage error that lists every variant."""
    builds = _builds(model_dir, tmp_path)
    repository = f"{registry.host}/{repo_name}"
    pushed = _push_builds(builds, repository)
    ok("index", "create", f"{repository}:1.0", "llm-q4,quant=q4,os=linux", "llm-f16,quant=f16,os=linux")
    out = tmp_path / "out"
    for args, says in (
        ((), "holds 2 variants: choose one with --variant"),
        (("--variant", "quant=q5"), "no variant of"),
        (("--variant", "os=linux"), "2 variants of"),
        (("--variant", "quant=q4", "--variant", "os=windows"), "no variant of"),
    ):
        run = ocimodel_cli("pull", f"{repository}:1.0", out, *args)
        assert usage_error_problems(run) == [], str(run)
        assert says in run.err, str(run)
        assert pushed["q4"].digest in run.err and "quant=q4" in run.err, str(run)
        assert not out.exists()  # nothing written
    # Repeated options and comma lists both narrow: all the labels must match.
    run = ok("pull", f"{repository}:1.0", out, "--variant", "os=linux,quant=f16")
    assert pushed["f16"].digest in run.out
    assert tree_digest(out) == tree_digest(builds["f16"])
    with pytest.raises(VariantNotChosen) as caught:
        ocimodel.pull(f"{repository}:1.0", tmp_path / "api", variant={"os": "linux"})
    assert {digest for digest, _ in caught.value.variants} == {pushed["q4"].digest, pushed["f16"].digest}
    for bad in ("quant", "quant=q4,quant=q8", "=q4"):
        run = ocimodel_cli("pull", f"{repository}:1.0", tmp_path / "bad", "--variant", bad)
        assert usage_error_problems(run) == [], str(run)

    # --variant on a single model has nothing to choose from.
    run = ocimodel_cli("pull", f"{repository}:llm-q4", tmp_path / "m", "--variant", "quant=q4")
    assert usage_error_problems(run) == [] and "not a variant index" in run.err, str(run)

    # An index of one variant needs no choice.
    ok("index", "create", f"{repository}:only-q4", "llm-q4,quant=q4")
    run = ok("pull", f"{repository}:only-q4", tmp_path / "single")
    assert tree_digest(tmp_path / "single") == tree_digest(builds["q4"])


def test_create_refuses_what_pull_could_not_choose_from(registry, model_dir, repo_name, tmp_path):
    builds = _builds(model_dir, tmp_path)
    repository = f"{registry.host}/{repo_name}"
    pushed = _push_builds(builds, repository)
    elsewhere = ocimodel.push(builds["q4"], f"{registry.host}/{repo_name}-other:q4", detect_git=False)
    assert elsewhere.digest == pushed["q4"].digest
    cases = (
        (("llm-q4,quant=q4", "llm-f16,quant=q4"), "could not tell them apart"),
        (("llm-q4", "llm-f16"), "could not tell them apart"),
        # Every label of llm-q4 is on llm-f16 too: no --variant picks llm-q4 alone.
        (("llm-q4,quant=q4", "llm-f16,quant=q4,device=cuda"), "--variant could never choose llm-q4"),
        (("llm-f16,quant=q4,device=cuda", "llm-q4,quant=q4"), "--variant could never choose llm-q4"),
        (("llm-q4,quant=q4", f"{registry.host}/{repo_name}-other:q4,quant=q8"), "is not in"),
        (("llm-q4,quant=q4", f"@{pushed['q4'].digest},quant=q8"), "are the same model"),
        (("llm-q4,quant=q4,quant=q8",), "given twice"),
        (("llm-q4,quant",), "is not KEY=VALUE"),
        (("llm-q4,bad key=1",), "label key"),
    )
    for members, says in cases:
        run = ocimodel_cli("index", "create", f"{repository}:1.0", *members)
        assert usage_error_problems(run) == [], str(run)
        assert says in run.err, str(run)
    # Members named by digest, or by a whole reference of the same repository, are accepted.
    result = ocimodel.create_index(
        f"{repository}:2.0", [f"@{pushed['q4'].digest},quant=q4", f"{repository}:llm-f16,quant=f16"]
    )
    assert [v.digest for v in result.variants] == [pushed["q4"].digest, pushed["f16"].digest]
    assert isinstance(result, ocimodel.VariantIndexResult)
    # An index is no model: an index of indexes is refused.
    with pytest.raises(NotAModel):
        ocimodel.create_index(f"{repository}:3.0", {"2.0": {"quant": "all"}})
    with pytest.raises(UsageError):
        ocimodel.create_index(f"{repository}:4.0", [])
    # Nothing was written under the refused tags.
    assert set(ocimodel.list_tags(repository)) == {"llm-q4", "llm-f16", "2.0"}


# -- an OCI layout, copy, export / import -----------------------------------------------------------


def test_round_trip_through_a_layout(model_dir, tmp_path):
    builds = _builds(model_dir, tmp_path)
    store = f"oci:{tmp_path / 'store'}"
    pushed = _push_builds(builds, store)
    created = _create(store)
    schema = json.loads((Path(__file__).parent.parent / "schemas" / "variant-index-result.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(created)  # what `index create --json` prints
    _check_index(store, pushed, created)
    _check_inspect(f"{store}:1.0", pushed)
    _check_pulls(f"{store}:1.0", builds, pushed, tmp_path)
    client = ocimodel.Client()
    assert client.create_index(f"{store}:1.0", ["llm-q4,quant=q4,device=cpu", "llm-f16,quant=f16,device=cuda"]).digest == created["digest"]


def _sign_each(repository: str, pushed: dict[str, ocimodel.PushResult], tmp_path: Path) -> dict[str, str]:
    """A referrer (an evaluation report) on each variant, as a signature would be."""
    digests = {}
    for name, result in pushed.items():
        report = tmp_path / f"eval-{name}.json"
        report.write_text(json.dumps({"variant": name, "accuracy": 0.9}))
        attached = ocimodel.attach(f"{repository}@{result.digest}", [report], artifact_type="application/vnd.example.eval+json")
        digests[name] = attached.digest
    return digests


def _referrer_digests(reference: str) -> set[str]:
    return {r.digest for r in ocimodel.referrers(reference).referrers}


def test_copy_carries_the_whole_index(registry, model_dir, repo_name, tmp_path):
    builds = _builds(model_dir, tmp_path)
    repository = f"{registry.host}/{repo_name}"
    pushed = _push_builds(builds, repository)
    created = _create(repository)
    evals = _sign_each(repository, pushed, tmp_path)

    # With referrers: the index, every variant, and each variant's referrers.
    store = f"oci:{tmp_path / 'copy'}"
    run = json_of(ok("copy", f"{repository}:1.0", f"{store}:1.0", "--with-referrers", "--json"))
    assert run["digest"] == created["digest"]
    assert set(run["referrers_copied"]) == set(evals.values())
    for name, result in pushed.items():
        assert _referrer_digests(f"{store}@{result.digest}") == {evals[name]}
    _check_pulls(f"{store}:1.0", builds, pushed, tmp_path)

    # Plain copy: the index and every variant (pullable there), no referrers.
    other = f"{registry.host}/{repo_name}-plain"
    ok("copy", f"{repository}:1.0", f"{other}:1.0")
    assert ocimodel.inspect(f"{other}:1.0").digest == created["digest"]
    _check_pulls(f"{other}:1.0", builds, pushed, tmp_path)
    assert _referrer_digests(f"{other}@{pushed['q4'].digest}") == set()


def test_export_and_import_round_trip_the_index(registry, model_dir, repo_name, tmp_path):
    builds = _builds(model_dir, tmp_path)
    repository = f"{registry.host}/{repo_name}"
    pushed = _push_builds(builds, repository)
    created = _create(repository)
    evals = _sign_each(repository, pushed, tmp_path)
    archive = tmp_path / "llm.tar"
    exported = json_of(ok("export", f"{repository}:1.0", archive, "--json"))
    assert exported["digest"] == created["digest"]
    assert set(exported["referrers"]) == set(evals.values())

    for destination in (f"{registry.host}/{repo_name}-airgap", f"oci:{tmp_path / 'airgap'}"):
        imported = json_of(ok("import", archive, destination, "--json"))
        assert imported["digest"] == created["digest"]
        _check_inspect(f"{destination}:1.0", pushed)
        _check_pulls(f"{destination}:1.0", builds, pushed, tmp_path)
        assert _referrer_digests(f"{destination}@{pushed['f16'].digest}") == {evals["f16"]}


def test_a_kitops_index_is_read_the_same_way(model_dir, tmp_path):
    """KitOps' `kit index` writes labels in each entry's `modelMetadata` under its own
    artifactType: inspect lists them and pull --variant chooses by them."""
    builds = _builds(model_dir, tmp_path)
    store = f"oci:{tmp_path / 'store'}"
    pushed = _push_builds(builds, store)
    document = {
        "schemaVersion": 2, "mediaType": mt.OCI_INDEX, "artifactType": "application/vnd.kitops.modelkit.index.v1+json",
        "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "digest": pushed[name].digest, "size": ocimodel.inspect(f"{store}:llm-{name}").size,
             "modelMetadata": {"quantization": name, "vram": gb}}
            for name, gb in (("q4", 6), ("f16", "16GB"))
        ],
    }
    data = json.dumps(document).encode()
    descriptor = Descriptor.for_bytes(mt.OCI_INDEX, data)
    with open_target(parse_reference(store), ocimodel.ConnectionOptions(), for_write=True) as target:
        target.push_manifest(descriptor, data, "all")
    info = ocimodel.inspect(f"{store}:all")
    assert info.kind == "variants"
    assert [e["labels"] for e in info.manifests] == [{"quantization": "q4", "vram": "6"}, {"quantization": "f16", "vram": "16GB"}]
    result = ocimodel.pull(f"{store}:all", tmp_path / "kit", variant="quantization=f16")
    assert result.digest == pushed["f16"].digest
    assert tree_digest(tmp_path / "kit") == tree_digest(builds["f16"])


def test_inspect_lists_a_variant_it_cannot_read(model_dir, tmp_path):
    """A variant whose manifest is gone (an index written by another tool, a model deleted
    since) is listed with what is wrong; the other variants are still shown."""
    builds = _builds(model_dir, tmp_path)
    store = f"oci:{tmp_path / 'store'}"
    pushed = _push_builds(builds, store)
    missing = "sha256:" + "0" * 64
    entries = [(pushed["q4"].digest, ocimodel.inspect(f"{store}:llm-q4").size, "q4"), (missing, 500, "q8")]
    document = {
        "schemaVersion": 2, "mediaType": mt.OCI_INDEX, "artifactType": VARIANTS,
        "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": size, "annotations": {PREFIX + "quant": quant}}
            for digest, size, quant in entries
        ],
    }
    data = json.dumps(document).encode()
    with open_target(parse_reference(store), ocimodel.ConnectionOptions(), for_write=True) as target:
        target.push_manifest(Descriptor.for_bytes(mt.OCI_INDEX, data), data, "broken")
    run = ok("inspect", f"{store}:broken")
    lines = [line for line in run.out.splitlines() if line.startswith("Variant:")]
    assert "quant=q4" in lines[0] and "unreadable" not in lines[0], run.out
    assert "quant=q8" in lines[1] and missing in lines[1] and "unreadable" in lines[1], run.out
    # The readable variant is still pulled.
    ok("pull", f"{store}:broken", tmp_path / "q4", "--variant", "quant=q4")
    assert tree_digest(tmp_path / "q4") == tree_digest(builds["q4"])
