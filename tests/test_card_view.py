"""Issue 14: inspect shows the whole card wherever it is stored, models with several weight
formats are found by any of them, and what is not a model is called what it is (inspect)
and refused by pull. Artifacts are written by hand, byte for byte, into OCI layouts."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest

from tests.conftest import _tiny_safetensors
from tests.test_cli import json_of, ocimodel_cli, ok

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _blob(layout: Path, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest.split(":")[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def _layout(layout: Path, tag: str, media_type: str, document: dict) -> str:
    """Writes ``document`` as the manifest (or index) tagged ``tag``; returns oci:PATH:tag."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    data = json.dumps(document, separators=(",", ":")).encode()
    entry = {"mediaType": media_type, **_blob(layout, data), "annotations": {"org.opencontainers.image.ref.name": tag}}
    index_path = layout / "index.json"
    index = json.loads(index_path.read_bytes()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"].append(entry)
    index_path.write_bytes(json.dumps(index, separators=(",", ":")).encode())
    return f"oci:{layout}:{tag}"


def _image_manifest(layout: Path) -> dict:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\x00" * 20  # stands for a gzip'd tar; never read
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(layout, config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(layout, layer)}],
    }


# -- the whole card, from a ModelPack config without any annotation --------------------------


@pytest.mark.slow  # the CLI in subprocesses
def test_inspect_shows_every_card_field_from_a_modelpack_config_without_annotations(tmp_path: Path) -> None:
    layout = tmp_path / "store"
    weights = _tiny_safetensors()
    config = {
        "descriptor": {
            "name": "peer-model", "version": "2.1.0", "description": "Written by another ModelPack tool",
            "authors": ["Ada Lovelace"], "licenses": ["Apache-2.0"], "createdAt": "2025-01-02T03:04:05Z",
            "sourceURL": "https://example.com/peer.git", "revision": "abc123",
            "datasetsURL": ["hf://datasets/peer/train"],
        },
        "config": {"format": "safetensors", "paramSize": "16", "precision": "float32"},
        "modelfs": {"type": "layers", "diffIds": ["sha256:" + hashlib.sha256(weights).hexdigest()]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.model.config.v1+json", **_blob(layout, json.dumps(config).encode())},
        "layers": [{
            "mediaType": "application/vnd.cncf.model.weight.v1.raw", **_blob(layout, weights),
            "annotations": {"org.cncf.model.filepath": "model.safetensors"},
        }],
    }
    ref = _layout(layout, "1.0", OCI_MANIFEST, manifest)
    out = ok("inspect", ref).out
    for label, value in [
        ("Name", "peer-model"), ("Version", "2.1.0"), ("Description", "Written by another ModelPack tool"),
        ("Licenses", "Apache-2.0"), ("Authors", "Ada Lovelace"), ("Created", "2025-01-02T03:04:05Z"),
        ("Source", "https://example.com/peer.git"), ("Revision", "abc123"), ("Format", "safetensors"),
        ("Parameters", "16"), ("Precision", "float32"), ("Dataset", "hf://datasets/peer/train"),
        ("Kind", "a ModelPack model"),
    ]:
        assert f"{label + ':':<15}{value}" in out.splitlines(), (label, out)
    info = json_of(ok("inspect", ref, "--json"))
    assert info["card"]["version"] == "2.1.0" and info["card"]["licenses"] == ["Apache-2.0"]
    assert info["is_model"] is True and info["kind"] == "model"
    assert info["name"] == "peer-model" and info["param_size"] == "16" and info["precision"] == "float32"
    # The keys of before stay as they were.
    assert {"reference", "digest", "media_type", "artifact_type", "size", "annotations", "files", "total_size",
            "manifest", "config"} <= set(info)


@pytest.mark.slow  # the CLI in subprocesses
def test_inspect_shows_metrics_with_datasets_parameters_task_framework_base_models(tmp_path: Path, model_dir: Path) -> None:
    (model_dir / "ocimodel.yaml").write_text(
        "name: tiny\nversion: 1.0.0\nframework: pytorch\ntask: text-classification\ntags: [nlp]\n"
        "metrics:\n  accuracy: 0.93\n  f1: {value: 0.9, dataset: sst2, split: validation}\n"
        "hyperparameters:\n  learning_rate: 0.0003\n  optimizer: adamw\n"
        "datasets:\n  - uri: hf://datasets/stanfordnlp/sst2\n"
        "base_models:\n  - reference: hf://google/bert-base\n    relation: fine-tune\n"
    )
    ref = f"oci:{tmp_path / 'store'}:tiny:1.0"
    ok("push", model_dir, ref)
    lines = ok("inspect", ref).out.splitlines()
    for expected in [
        "Framework:     pytorch", "Task:          text-classification", "Tags:          nlp",
        "Metric:        accuracy = 0.93", "Metric:        f1 = 0.9 (on sst2/validation)",
        "Parameter:     learning_rate = 0.0003", "Parameter:     optimizer = adamw",
        "Dataset:       hf://datasets/stanfordnlp/sst2", "Base model:    hf://google/bert-base (fine-tune)",
        "Version:       1.0.0",
    ]:
        assert expected in lines, (expected, lines)


# -- several weight formats ------------------------------------------------------------------


@pytest.mark.slow  # the CLI in subprocesses
def test_a_model_with_safetensors_and_pickle_weights_is_found_by_either_format(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(_tiny_safetensors())
    (model / "model.pkl").write_bytes(pickle.dumps({"w": list(range(8))}, protocol=4))
    store = tmp_path / "store"
    ok("push", model, f"oci:{store}:both:1.0")
    info = json_of(ok("inspect", f"oci:{store}:both:1.0", "--json"))
    main = info["config"]["config"]["format"]  # ModelPack's one format field stays one string
    assert sorted(info["formats"]) == ["pickle", "safetensors"] and info["formats"][0] == main
    assert f"Format:        {', '.join(info['formats'])}" in ok("inspect", f"oci:{store}:both:1.0").out.splitlines()
    for wanted in ("pickle", "safetensors", "PICKLE"):
        found = json_of(ok("search", f"oci:{store}", "--format", wanted, "--json"))
        assert [m["reference"] for m in found["matches"]] == [f"oci:{store}:both:1.0"], (wanted, found)
    assert json_of(ok("search", f"oci:{store}", "--format", "gguf", "--json"))["matches"] == []
    assert json_of(ok("search", f"oci:{store}", "-w", "format!=pickle", "--json"))["matches"] == []


# -- what is not a model ---------------------------------------------------------------------


@pytest.mark.slow  # the CLI in subprocesses
def test_a_container_image_is_called_one_and_pull_refuses_it(tmp_path: Path) -> None:
    layout = tmp_path / "store"
    ref = _layout(layout, "img", OCI_MANIFEST, _image_manifest(layout))
    out = ok("inspect", ref).out
    assert "Kind:          a container image (not a model)" in out.splitlines(), out
    assert json_of(ok("inspect", ref, "--json"))["is_model"] is False
    run = ocimodel_cli("pull", ref, tmp_path / "out")
    assert run.code == 1, str(run)
    assert "is a container image, not a model" in run.err, run.err
    assert "docker, podman or skopeo" in run.err
    assert "Traceback" not in run.err and not (tmp_path / "out").exists()


@pytest.mark.slow  # the CLI in subprocesses
def test_an_index_lists_its_manifests_with_platform_and_pull_refuses_it(tmp_path: Path) -> None:
    layout = tmp_path / "store"
    image = json.dumps(_image_manifest(layout), separators=(",", ":")).encode()
    amd = {"mediaType": OCI_MANIFEST, **_blob(layout, image), "platform": {"architecture": "amd64", "os": "linux"}}
    arm = {"mediaType": OCI_MANIFEST, **_blob(layout, image + b" "), "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
           "artifactType": "application/vnd.example.thing"}
    ref = _layout(layout, "multi", OCI_INDEX, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, arm]})
    out = ok("inspect", ref, env={"COLUMNS": "200"}).out
    assert "Kind:          an image index of 2 manifests (not a model)" in out.splitlines(), out
    assert "0 files" not in out
    for entry, platform in ((amd, "linux/amd64"), (arm, "linux/arm64/v8")):
        assert any(entry["digest"] in line and platform in line for line in out.splitlines()), (platform, out)
    assert "application/vnd.example.thing" in out
    info = json_of(ok("inspect", ref, "--json"))
    assert [m["platform"] for m in info["manifests"]] == ["linux/amd64", "linux/arm64/v8"]
    run = ocimodel_cli("pull", ref, tmp_path / "out")
    assert run.code == 1 and "is an image index of 2 manifests, not a model" in run.err, str(run)
    assert "by digest" in run.err


@pytest.mark.slow  # the CLI in subprocesses
def test_an_artifact_of_an_unknown_type_is_named_by_its_type_and_refused(tmp_path: Path) -> None:
    layout = tmp_path / "store"
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", **_blob(layout, b"{}")},
        "layers": [{"mediaType": "application/vnd.example.sbom.layer.v1", **_blob(layout, b"sbom")}],
    }
    ref = _layout(layout, "sbom", OCI_MANIFEST, manifest)
    out = ok("inspect", ref).out
    assert "Kind:          an artifact of type application/vnd.example.sbom.v1 (not a model)" in out.splitlines(), out
    run = ocimodel_cli("pull", ref, tmp_path / "out")
    assert run.code == 1 and "is an artifact of type application/vnd.example.sbom.v1, not a model" in run.err, str(run)
    assert "org.opencontainers.image.title" in run.err


def test_search_over_a_registry_finds_a_two_format_model_by_its_second_format(registry, repo_name: str, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(_tiny_safetensors())
    (model / "model.pkl").write_bytes(pickle.dumps({"w": list(range(8))}, protocol=4))
    ok("push", model, f"{registry.host}/{repo_name}/both:1.0", "--plain-http")
    for wanted in ("pickle", "safetensors"):
        found = json_of(ok("search", f"{registry.host}/{repo_name}", "--format", wanted, "--plain-http", "--json"))
        assert [m["reference"] for m in found["matches"]] == [f"{registry.host}/{repo_name}/both:1.0"], (wanted, found)
