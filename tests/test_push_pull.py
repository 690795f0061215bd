"""Push and pull against the real registry: round trips, determinism, dedupe, wire format.

Everything here talks to the session's Debian ``docker-registry`` (tests/support/registry.py);
the manifest and config are read back with plain httpx, independently of ocimodel's client."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

import ocimodel
from tests.support.files import tree_digest
from tests.support.modeltrees import (
    fetch_blob,
    fetch_manifest,
    nested_tree_spec,
    sha256_bytes,
    sha256_file,
    write_tree,
)

MODEL_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODEL_CONFIG = "application/vnd.cncf.model.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER_RE = re.compile(r"application/vnd\.cncf\.model\.(weight|weight\.config|doc|code|dataset)\.v1\.raw")
TITLE = "org.opencontainers.image.title"
FILEPATH = "org.cncf.model.filepath"
FILE_METADATA = "org.cncf.model.file.metadata+json"

SCHEMA_PATH = Path(__file__).parent / "data" / "modelpack-config-schema.json"

BIG_SIZE = 200 * 1024 * 1024
RSS_LIMIT_MIB = 150


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nested_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~60 files in folders nested three deep (part*/block*/shard*/file*)."""
    root = tmp_path_factory.mktemp("nested") / "model"
    return write_tree(root, nested_tree_spec(60))


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory holding one 200 MiB file of random bytes (plus a small config)."""
    root = tmp_path_factory.mktemp("big") / "model"
    root.mkdir()
    with open(root / "model.bin", "wb") as f:
        for _ in range(BIG_SIZE // (1 << 20)):
            f.write(os.urandom(1 << 20))
    (root / "config.json").write_text('{"model_type": "big"}\n')
    return root


def _ref(registry, repo: str, tag: str) -> str:
    return f"{registry.host}/{repo}:{tag}"


def _manifest(registry, repo: str, reference: str) -> tuple[dict, bytes]:
    r = fetch_manifest(registry.url, repo, reference)
    return json.loads(r.content), r.content


def _rfc3339(instance: object) -> bool:
    """RFC 3339 date-time (the JSON-schema ``date-time`` format): offset required."""
    if not isinstance(instance, str):
        return True
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", instance):
        return False
    try:
        datetime.fromisoformat(instance.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _schema_validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    checker = FormatChecker()
    # jsonschema checks date-time only when rfc3339-validator is installed; check it
    # here regardless, so a missing optional package cannot hide a bad createdAt.
    checker.checks("date-time")(_rfc3339)
    return Draft202012Validator(schema, format_checker=checker)


def _config_of(registry, repo: str, manifest: dict) -> dict:
    data = fetch_blob(registry.url, repo, manifest["config"]["digest"])
    assert sha256_bytes(data) == manifest["config"]["digest"]
    assert len(data) == manifest["config"]["size"]
    return json.loads(data)


# -- round trips ---------------------------------------------------------------------------


def test_round_trip_model_dir(registry, repo_name, model_dir, tmp_path):
    before = tree_digest(model_dir)
    assert before["empty.txt"][0] == sha256_bytes(b"").split(":")[1]
    assert before["src/train.py"][1] == 0o755

    pushed = ocimodel.push(model_dir, _ref(registry, repo_name, "1.0"))
    assert pushed.tag == "1.0"
    assert pushed.digest.startswith("sha256:")
    assert sorted(f.path for f in pushed.files) == sorted(before)
    for f in pushed.files:
        assert f.digest == sha256_file(model_dir / f.path)
        assert f.size == (model_dir / f.path).stat().st_size

    out = tmp_path / "out"
    pulled = ocimodel.pull(_ref(registry, repo_name, "1.0"), out)
    assert pulled.digest == pushed.digest
    assert tree_digest(out) == before
    assert (out / "empty.txt").stat().st_size == 0
    assert os.access(out / "src/train.py", os.X_OK)
    assert pulled.files_unchanged == 0
    assert pulled.bytes_downloaded == sum(f.size for f in pushed.files)
    # no staging directory left next to the destination
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_round_trip_nested_sixty_files(registry, repo_name, nested_model, tmp_path):
    before = tree_digest(nested_model)
    assert len(before) == 60
    assert max(k.count("/") for k in before) == 3

    pushed = ocimodel.push(nested_model, _ref(registry, repo_name, "v1"))
    assert len(pushed.files) == 60
    manifest, _ = _manifest(registry, repo_name, "v1")
    assert len(manifest["layers"]) == 60
    assert {layer["annotations"][FILEPATH] for layer in manifest["layers"]} == set(before)

    out = tmp_path / "deep" / "out"  # the parent does not exist yet either
    pulled = ocimodel.pull(_ref(registry, repo_name, "v1"), out)
    assert pulled.digest == pushed.digest
    assert tree_digest(out) == before


_BIG_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import ocimodel

    def peak_kib():
        # VmHWM belongs to this process image. ru_maxrss would not do: Linux carries it
        # over from the parent through fork and exec, so a big pytest parent would count.
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])

    src, ref, dest = sys.argv[1:4]
    baseline = peak_kib()
    pushed = ocimodel.push(src, ref)
    after_push = peak_kib()
    pulled = ocimodel.pull(ref, dest)
    print(json.dumps({
        "baseline_kib": baseline,
        "after_push_kib": after_push,
        "maxrss_kib": peak_kib(),
        "digest": pushed.digest,
        "pulled_digest": pulled.digest,
        "bytes_uploaded": pushed.bytes_uploaded,
        "bytes_downloaded": pulled.bytes_downloaded,
        "files": {f.path: f.digest for f in pushed.files},
    }))
    """
)


def test_200_mib_file_in_constant_memory(registry, repo_name, big_model, tmp_path):
    """Push then pull a 200 MiB file in a fresh interpreter; its peak RSS stays < 150 MiB."""
    ref = _ref(registry, repo_name, "big")
    out = tmp_path / "out"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _BIG_SCRIPT, str(big_model), ref, str(out)],
        capture_output=True, text=True, timeout=300,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    peak_mib = report["maxrss_kib"] / 1024  # VmHWM is in KiB
    print(f"200 MiB push+pull: peak RSS {peak_mib:.1f} MiB, {elapsed:.1f} s")
    assert peak_mib < RSS_LIMIT_MIB, (
        f"peak RSS {peak_mib:.0f} MiB (baseline {report['baseline_kib'] / 1024:.0f} MiB, "
        f"after push {report['after_push_kib'] / 1024:.0f} MiB) for a 200 MiB push+pull"
    )

    big_digest = sha256_file(big_model / "model.bin")
    assert report["files"]["model.bin"] == big_digest
    assert report["pulled_digest"] == report["digest"]
    assert report["bytes_uploaded"] >= BIG_SIZE
    assert report["bytes_downloaded"] == BIG_SIZE + (big_model / "config.json").stat().st_size
    # the registry stores the file as one raw layer whose digest is the file's sha256
    assert registry.blob_path(big_digest).stat().st_size == BIG_SIZE
    assert sha256_file(out / "model.bin") == big_digest
    assert tree_digest(out) == tree_digest(big_model)
    assert elapsed < 120, f"200 MiB push+pull took {elapsed:.1f} s"


# -- determinism and dedupe ----------------------------------------------------------------


def test_same_directory_same_digest(registry, repo_name, model_dir, tmp_path):
    first = ocimodel.push(model_dir, _ref(registry, repo_name, "a"))
    second = ocimodel.push(model_dir, _ref(registry, repo_name, "b"))
    assert second.digest == first.digest

    # A copy elsewhere, with other mtimes: the same manifest.
    copy = tmp_path / "elsewhere" / "copy-of-model"
    shutil.copytree(model_dir, copy)
    stamp = time.time() - 86_400 * 400
    for p in sorted(copy.rglob("*")):
        os.utime(p, (stamp, stamp))
        stamp += 7.5
    assert (copy / "README.md").stat().st_mtime != (model_dir / "README.md").stat().st_mtime
    third = ocimodel.push(copy, _ref(registry, repo_name, "c"))
    assert third.digest == first.digest

    _, a = _manifest(registry, repo_name, "a")
    _, c = _manifest(registry, repo_name, "c")
    assert a == c
    assert sha256_bytes(a) == first.digest


def test_created_changes_the_digest(registry, repo_name, model_dir):
    plain = ocimodel.push(model_dir, _ref(registry, repo_name, "plain"))
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    dated = ocimodel.push(model_dir, _ref(registry, repo_name, "dated"), created=when)
    assert dated.digest != plain.digest
    # still deterministic for the same creation time
    again = ocimodel.push(model_dir, _ref(registry, repo_name, "dated2"), created=when)
    assert again.digest == dated.digest
    later = ocimodel.push(
        model_dir, _ref(registry, repo_name, "later"), created=datetime(2025, 1, 1, tzinfo=timezone.utc)
    )
    assert later.digest != dated.digest

    manifest, _ = _manifest(registry, repo_name, "dated")
    assert manifest["annotations"]["org.opencontainers.image.created"] == "2024-05-06T07:08:09Z"
    config = _config_of(registry, repo_name, manifest)
    assert datetime.fromisoformat(config["descriptor"]["createdAt"].replace("Z", "+00:00")) == when
    plain_manifest, _ = _manifest(registry, repo_name, "plain")
    assert "org.opencontainers.image.created" not in (plain_manifest.get("annotations") or {})
    assert "createdAt" not in _config_of(registry, repo_name, plain_manifest)["descriptor"]


def test_repush_uploads_nothing(registry, repo_name, model_dir):
    first = ocimodel.push(model_dir, _ref(registry, repo_name, "1"))
    total = sum(f.size for f in first.files)
    assert first.bytes_uploaded >= total
    assert {f.digest for f in first.files} <= set(first.uploaded)

    again = ocimodel.push(model_dir, _ref(registry, repo_name, "1"))
    assert again.digest == first.digest
    assert again.bytes_uploaded == 0
    assert again.uploaded == []
    assert again.bytes_skipped == first.bytes_uploaded


def test_push_v2_uploads_only_the_changed_file(registry, repo_name, model_dir):
    v1 = ocimodel.push(model_dir, _ref(registry, repo_name, "v1"), version="1")
    changed = model_dir / "config.json"
    changed.write_bytes(changed.read_bytes().replace(b'"hidden_size": 4', b'"hidden_size": 8'))
    new_digest = sha256_file(changed)
    assert new_digest not in {f.digest for f in v1.files}

    v2 = ocimodel.push(model_dir, _ref(registry, repo_name, "v2"), version="2")
    assert v2.digest != v1.digest
    manifest, _ = _manifest(registry, repo_name, "v2")
    config = manifest["config"]
    # the changed file and the (new) config blob; no other file travels again
    assert sorted(v2.uploaded) == sorted({new_digest, config["digest"]})
    assert v2.bytes_uploaded == changed.stat().st_size + config["size"]
    assert v2.bytes_skipped == sum(f.size for f in v2.files) - changed.stat().st_size

    # both versions stay pullable, each with its own bytes
    assert ocimodel.inspect(_ref(registry, repo_name, "v1")).digest == v1.digest
    v2_files = {f.path: f.digest for f in v2.files}
    v1_files = {f.path: f.digest for f in v1.files}
    assert {p for p in v2_files if v2_files[p] != v1_files[p]} == {"config.json"}


def test_pull_into_populated_destination(registry, repo_name, model_dir, tmp_path):
    ref = _ref(registry, repo_name, "1")
    pushed = ocimodel.push(model_dir, ref)
    out = tmp_path / "out"
    ocimodel.pull(ref, out)

    again = ocimodel.pull(ref, out)
    assert again.files_unchanged == len(pushed.files)
    assert again.bytes_downloaded == 0
    assert tree_digest(out) == tree_digest(model_dir)

    # one file altered locally: only that one is fetched again and restored
    (out / "data/eval.csv").write_bytes(b"tampered\n")
    third = ocimodel.pull(ref, out)
    assert third.files_unchanged == len(pushed.files) - 1
    assert third.bytes_downloaded == (model_dir / "data/eval.csv").stat().st_size
    assert tree_digest(out) == tree_digest(model_dir)


# -- wire format ---------------------------------------------------------------------------


def test_manifest_is_a_modelpack_manifest(registry, repo_name, model_dir):
    pushed = ocimodel.push(
        model_dir,
        _ref(registry, repo_name, "1.0"),
        name="tiny-model",
        version="1.0",
        description="A tiny model for tests",
        licenses=["Apache-2.0"],
    )
    r = fetch_manifest(registry.url, repo_name, "1.0")
    assert r.headers["Content-Type"] == OCI_MANIFEST
    assert r.headers["Docker-Content-Digest"] == pushed.digest
    assert sha256_bytes(r.content) == pushed.digest
    manifest = r.json()

    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["artifactType"] == MODEL_ARTIFACT
    assert manifest["config"]["mediaType"] == MODEL_CONFIG

    files = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
    layers = manifest["layers"]
    assert len(layers) == len(files)  # one layer per file
    assert sorted(layer["annotations"][FILEPATH] for layer in layers) == files
    kinds = {}
    for layer in layers:
        path = layer["annotations"][FILEPATH]
        local = model_dir / path
        assert layer["digest"] == sha256_file(local), path
        assert layer["size"] == local.stat().st_size, path
        match = LAYER_RE.fullmatch(layer["mediaType"])
        assert match, layer["mediaType"]
        kinds[path] = match.group(1)
        ann = layer["annotations"]
        assert ann[TITLE] == path
        metadata = json.loads(ann[FILE_METADATA])
        assert {"name", "mode", "uid", "gid", "size", "mtime", "typeflag"} <= set(metadata)
        assert metadata["name"] == path.rsplit("/", 1)[-1]
        assert metadata["size"] == local.stat().st_size
        assert metadata["mode"] == local.stat().st_mode & 0o777
        # the registry holds exactly the file's bytes under that digest
        assert registry.blob_path(layer["digest"]).read_bytes() == local.read_bytes()
    assert kinds["model.safetensors"] == "weight"
    assert kinds["src/train.py"] == "code"
    assert kinds["README.md"] == "doc"

    annotations = manifest["annotations"]
    assert annotations["org.opencontainers.image.title"] == "tiny-model"
    assert annotations["org.opencontainers.image.version"] == "1.0"
    assert annotations["org.opencontainers.image.description"] == "A tiny model for tests"
    assert annotations["org.opencontainers.image.licenses"] == "Apache-2.0"

    config = _config_of(registry, repo_name, manifest)
    assert config["descriptor"]["name"] == "tiny-model"
    assert config["descriptor"]["version"] == "1.0"
    assert config["descriptor"]["description"] == "A tiny model for tests"
    assert config["descriptor"]["licenses"] == ["Apache-2.0"]
    assert config["config"]["format"] == "safetensors"
    assert config["modelfs"] == {"type": "layers", "diffIds": [layer["digest"] for layer in layers]}


def test_inspect_matches_the_wire(registry, repo_name, model_dir):
    pushed = ocimodel.push(model_dir, _ref(registry, repo_name, "1"), name="m")
    info = ocimodel.inspect(_ref(registry, repo_name, "1"))
    manifest, raw = _manifest(registry, repo_name, "1")
    assert info.digest == pushed.digest == sha256_bytes(raw)
    assert info.artifact_type == MODEL_ARTIFACT
    assert info.manifest == manifest
    assert info.config == _config_of(registry, repo_name, manifest)
    assert {f.path: f.digest for f in info.files} == {f.path: f.digest for f in pushed.files}
    assert info.total_size == sum(f.size for f in pushed.files)


_FULL = dict(
    name="tiny-model",
    version="2.1",
    description="described",
    title="Tiny Model",
    licenses=["Apache-2.0", "MIT"],
    authors=["Ada <ada@example.com>"],
    source="https://example.com/tiny.git",
    revision="0123abcd",
)


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({}, id="no-metadata"),
        pytest.param(dict(_FULL, created=datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)), id="full-utc"),
        pytest.param(dict(_FULL, created=datetime(2024, 5, 6, 7, 8, 9)), id="created-naive"),
    ],
)
def test_config_validates_against_modelpack_schema(registry, repo_name, model_dir, metadata):
    ocimodel.push(model_dir, _ref(registry, repo_name, "1"), **metadata)
    manifest, _ = _manifest(registry, repo_name, "1")
    config = _config_of(registry, repo_name, manifest)
    errors = sorted(_schema_validator().iter_errors(config), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    assert config["config"]["format"] == "safetensors"
    if metadata:
        d = config["descriptor"]
        assert d["name"] == "tiny-model" and d["title"] == "Tiny Model"
        assert d["licenses"] == ["Apache-2.0", "MIT"]
        assert d["authors"] == ["Ada <ada@example.com>"]
        assert d["sourceURL"] == "https://example.com/tiny.git"
        assert d["revision"] == "0123abcd"
        ann = manifest["annotations"]
        assert ann["org.opencontainers.image.title"] == "Tiny Model"
        assert ann["org.opencontainers.image.source"] == "https://example.com/tiny.git"
        assert ann["org.opencontainers.image.revision"] == "0123abcd"
        assert ann["org.opencontainers.image.created"] == "2024-05-06T07:08:09Z"
        assert "Apache-2.0" in ann["org.opencontainers.image.licenses"]
        assert "MIT" in ann["org.opencontainers.image.licenses"]


def test_schema_rejects_what_modelpack_forbids():
    """The validator used above is not vacuous: extra keys and bad dates fail."""
    validator = _schema_validator()
    good = {"descriptor": {}, "config": {}, "modelfs": {"type": "layers", "diffIds": ["sha256:" + "0" * 64]}}
    assert validator.is_valid(good)
    assert not validator.is_valid(dict(good, extra=1))
    assert not validator.is_valid(dict(good, descriptor={"dev.ocimodel.x": "y"}))
    assert not validator.is_valid(dict(good, descriptor={"createdAt": "2024-05-06T07:08:09"}))
    assert validator.is_valid(dict(good, descriptor={"createdAt": "2024-05-06T07:08:09Z"}))


def test_pull_restores_the_mode_of_an_unchanged_file(registry, repo_name, model_dir, tmp_path):
    """Same bytes but a lost executable bit: pull must put the mode back (mode-for-mode)."""
    ref = _ref(registry, repo_name, "1")
    ocimodel.push(model_dir, ref)
    out = tmp_path / "out"
    ocimodel.pull(ref, out)
    (out / "src/train.py").chmod(0o644)
    ocimodel.pull(ref, out)
    assert (out / "src/train.py").stat().st_mode & 0o777 == 0o755
    assert tree_digest(out) == tree_digest(model_dir)


def test_round_trip_duplicates_odd_names_and_hidden_files(registry, repo_name, tmp_path):
    """Files sharing one blob (two copies, two empty files), names with spaces, unicode and
    a leading dot all come back as they were."""
    same = os.urandom(3000)
    src = write_tree(tmp_path / "model", {
        "weights/a.bin": (same, 0o644),
        "weights/copy of a.bin": (same, 0o644),
        "empty-1": (b"", 0o644),
        "nested/empty-2": (b"", 0o755),
        "docs/ünïcødé – notes.md": ("héllo wörld\n".encode(), 0o644),
        ".hidden-config": (b"k=v\n", 0o644),
        "run.sh": (b"#!/bin/sh\necho hi\n", 0o755),
    })
    before = tree_digest(src)
    pushed = ocimodel.push(src, _ref(registry, repo_name, "1"))
    assert sorted(f.path for f in pushed.files) == sorted(before)
    manifest, _ = _manifest(registry, repo_name, "1")
    assert len(manifest["layers"]) == len(before)  # one layer per file, even for equal bytes

    out = tmp_path / "out"
    ocimodel.pull(_ref(registry, repo_name, "1"), out)
    assert tree_digest(out) == before

    again = ocimodel.pull(_ref(registry, repo_name, "1"), out)
    assert again.files_unchanged == len(before)
    assert again.bytes_downloaded == 0
