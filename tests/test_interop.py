"""Interoperability with independent clients against the real registry.

skopeo (Go, containers/image) and oras-py (Python, requests) read what ocimodel pushes,
and ocimodel reads what they write: the ModelPack artifact is a plain OCI 1.1 artifact,
not something only ocimodel understands.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import ocimodel
from ocimodel.oci import mediatypes as mt
from tests.support.files import tree_digest

SKOPEO_TIMEOUT = 60


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run skopeo; fail loudly (never skip) when it is missing or refuses."""
    binary = shutil.which("skopeo")
    assert binary is not None, "skopeo not installed: run `make test` or apt-get install skopeo"
    proc = subprocess.run([binary, *args], capture_output=True, timeout=SKOPEO_TIMEOUT)
    assert proc.returncode == 0, (
        f"skopeo {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}"
    )
    return proc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_hashes(root: Path) -> dict[str, str]:
    """relpath -> sha256 hex (modes ignored: other clients need not restore them)."""
    return {path: digest for path, (digest, _mode) in tree_digest(root).items()}


# -- skopeo reads what we push ----------------------------------------------------------


def test_skopeo_inspect_raw_shows_a_modelpack_artifact(registry, repo_name: str, model_dir: Path) -> None:
    ref = f"{registry.host}/{repo_name}:v1"
    pushed = ocimodel.push(model_dir, ref, name="tiny", version="1.0")

    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}").stdout
    assert "sha256:" + sha256_hex(raw) == pushed.digest, "skopeo sees other manifest bytes"
    manifest = json.loads(raw)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == mt.OCI_MANIFEST
    assert manifest["artifactType"] == mt.MODEL_ARTIFACT
    assert manifest["config"]["mediaType"] == mt.MODEL_CONFIG

    expected = tree_digest(model_dir)
    layers = manifest["layers"]
    assert len(layers) == len(expected), "one layer per file"
    seen: dict[str, str] = {}
    for layer in layers:
        title = layer["annotations"][mt.ANNOTATION_TITLE]
        assert layer["annotations"][mt.ANNOTATION_FILEPATH] == title
        parsed = mt.parse_model_layer(layer["mediaType"])
        assert parsed is not None and parsed[1] == "raw", layer["mediaType"]
        assert layer["digest"] == "sha256:" + expected[title][0], title
        assert layer["size"] == (model_dir / title).stat().st_size, title
        metadata = json.loads(layer["annotations"][mt.ANNOTATION_FILE_METADATA])
        assert metadata["mode"] == expected[title][1], title
        seen[title] = layer["digest"]
    assert set(seen) == set(expected)
    kinds = {layer["annotations"][mt.ANNOTATION_TITLE]: mt.parse_model_layer(layer["mediaType"])[0]
             for layer in layers}
    assert kinds["model.safetensors"] == "weight"

    # The config skopeo fetches is the one the manifest names, byte for byte.
    config = skopeo("inspect", "--raw", "--config", "--tls-verify=false", f"docker://{ref}").stdout
    assert "sha256:" + sha256_hex(config) == manifest["config"]["digest"]
    assert len(config) == manifest["config"]["size"]
    document = json.loads(config)
    assert set(document) == {"descriptor", "config", "modelfs"}
    assert document["modelfs"]["type"] == "layers"
    assert len(document["modelfs"]["diffIds"]) == len(layers)


def _skopeo_copy_to_layout(ref: str, layout: Path, tag: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return skopeo("copy", *extra, "--src-tls-verify=false", "--dest-tls-verify=false",
                  f"docker://{ref}", f"oci:{layout}:{tag}")


@pytest.mark.parametrize("flags", [(), ("--all",)], ids=["plain", "all"])
def test_skopeo_copy_to_an_oci_layout_keeps_the_digest(
    registry, repo_name: str, model_dir: Path, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    """skopeo copies our artifact (non-image config and all) without rewriting it, so the
    digest survives; and ocimodel pulls the files back out of skopeo's layout."""
    ref = f"{registry.host}/{repo_name}:v1"
    pushed = ocimodel.push(model_dir, ref)
    layout = tmp_path / "layout"
    _skopeo_copy_to_layout(ref, layout, "model", *flags)

    raw = skopeo("inspect", "--raw", f"oci:{layout}:model").stdout
    assert "sha256:" + sha256_hex(raw) == pushed.digest
    index = json.loads((layout / "index.json").read_bytes())
    assert [m["digest"] for m in index["manifests"]] == [pushed.digest]
    for layer in json.loads(raw)["layers"]:
        blob = layout / "blobs" / "sha256" / layer["digest"].split(":", 1)[1]
        assert "sha256:" + sha256_hex(blob.read_bytes()) == layer["digest"]

    # ocimodel reads the layout skopeo wrote.
    out = tmp_path / "out"
    pulled = ocimodel.pull(f"oci:{layout}:model", out)
    assert pulled.digest == pushed.digest
    assert tree_digest(out) == tree_digest(model_dir)


def test_skopeo_copies_our_layout_to_a_registry(registry, repo_name: str, model_dir: Path, tmp_path: Path) -> None:
    """The other direction: skopeo reads an OCI layout ocimodel wrote (no server involved
    in writing it), pushes it to the registry, and ocimodel pulls the same digest back."""
    layout = tmp_path / "store"
    pushed = ocimodel.push(model_dir, f"oci:{layout}:model")
    ref = f"{registry.host}/{repo_name}:from-skopeo"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:model", f"docker://{ref}")

    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}").stdout
    assert "sha256:" + sha256_hex(raw) == pushed.digest
    out = tmp_path / "out"
    pulled = ocimodel.pull(ref, out)
    assert pulled.digest == pushed.digest
    assert tree_digest(out) == tree_digest(model_dir)


# -- oras-py -------------------------------------------------------------------------------


@pytest.fixture
def oras_client(registry):
    import oras.client

    # oras-py logs at INFO on every file; keep test output readable.
    logging.getLogger("oras").setLevel(logging.WARNING)
    return oras.client.OrasClient(hostname=registry.host, insecure=True)


def test_oras_py_pulls_what_we_push(registry, repo_name: str, model_dir: Path, tmp_path: Path, oras_client) -> None:
    ref = f"{registry.host}/{repo_name}:v1"
    pushed = ocimodel.push(model_dir, ref)

    manifest = oras_client.get_manifest(ref)
    assert manifest["artifactType"] == mt.MODEL_ARTIFACT
    assert sorted(layer["digest"] for layer in manifest["layers"]) == sorted(f.digest for f in pushed.files)

    out = tmp_path / "oras-out"
    written = oras_client.pull(target=ref, outdir=str(out))
    expected = file_hashes(model_dir)
    # oras-py names every file by its title, nested paths included.
    assert sorted(Path(p).resolve().relative_to(out.resolve()).as_posix() for p in written) == sorted(expected)
    assert file_hashes(out) == expected
    assert (out / "empty.txt").read_bytes() == b""


def test_we_pull_what_oras_py_pushes(registry, repo_name: str, tmp_path: Path, oras_client) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = {
        "weights.bin": os.urandom(300_000),
        "notes.md": "# notes\n\nnon-ASCII: café, 模型\n".encode(),
        "params.json": b'{"lr": 0.001}\n',
        "empty.dat": b"",
    }
    for name, data in files.items():
        (src / name).write_bytes(data)
    ref = f"{registry.host}/{repo_name}:oras"
    oras_client.push(
        target=ref,
        files=[str(src / name) for name in files],  # plain files: oras-py tars directories
        disable_path_validation=True,
        manifest_annotations={"org.opencontainers.image.description": "pushed by oras-py"},
        quiet=True,
    )

    info = ocimodel.inspect(ref)
    assert sorted(f.path for f in info.files) == sorted(files)
    assert info.annotations["org.opencontainers.image.description"] == "pushed by oras-py"
    for entry in info.files:
        assert entry.digest == "sha256:" + sha256_hex(files[entry.path])
        assert entry.size == len(files[entry.path])

    out = tmp_path / "out"
    pulled = ocimodel.pull(ref, out)
    assert pulled.digest == info.digest
    assert file_hashes(out) == {name: sha256_hex(data) for name, data in files.items()}
    for name, data in files.items():
        assert (out / name).read_bytes() == data

    # And oras-py still agrees it is the same artifact after we copy it to a new tag.
    copied = ocimodel.copy(ref, f"{registry.host}/{repo_name}:copied")
    assert copied.digest == info.digest
    again = tmp_path / "again"
    oras_client.pull(target=f"{registry.host}/{repo_name}:copied", outdir=str(again))
    assert file_hashes(again) == file_hashes(out)
