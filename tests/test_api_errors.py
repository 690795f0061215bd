"""User errors surface as the typed exceptions of ocimodel.errors, never as raw httpx,
OSError or pydantic exceptions, and leave nothing behind."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx
import pytest

import ocimodel
from ocimodel.errors import (
    InvalidReference,
    NotAModel,
    NotFound,
    OcimodelError,
    PackagingError,
    StoreError,
    TransportError,
    UsageError,
)
from tests.support.modeltrees import (
    OCI_INDEX,
    OCI_MANIFEST,
    put_blob,
    put_manifest,
    sha256_bytes,
)

MISSING_DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return port


def _no_leftovers(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p.name for p in parent.iterdir() if p.name.startswith(".ocimodel")]


# -- not found -----------------------------------------------------------------------------


def test_pull_missing_tag_is_not_found(registry, repo_name, model_dir, tmp_path):
    ocimodel.push(model_dir, f"{registry.host}/{repo_name}:1.0")
    with pytest.raises(NotFound) as err:
        ocimodel.pull(f"{registry.host}/{repo_name}:no-such-tag", tmp_path / "out")
    assert err.value.status == 404
    assert "no-such-tag" in str(err.value)
    _no_leftovers(tmp_path, "out")


def test_pull_missing_repository_and_digest_are_not_found(registry, repo_name, tmp_path):
    with pytest.raises(NotFound):
        ocimodel.pull(f"{registry.host}/{repo_name}:1.0", tmp_path / "out")
    with pytest.raises(NotFound):
        ocimodel.pull(f"{registry.host}/{repo_name}@{MISSING_DIGEST}", tmp_path / "out")
    with pytest.raises(NotFound):
        ocimodel.inspect(f"{registry.host}/{repo_name}:1.0")
    _no_leftovers(tmp_path, "out")


def test_layout_missing_tag_or_store_is_not_found(model_dir, tmp_path):
    store = tmp_path / "store"
    ocimodel.push(model_dir, f"oci:{store}:1.0")
    with pytest.raises(NotFound):
        ocimodel.pull(f"oci:{store}:2.0", tmp_path / "out")
    with pytest.raises(NotFound):
        ocimodel.pull(f"oci:{store}@{MISSING_DIGEST}", tmp_path / "out")
    with pytest.raises(NotFound):
        ocimodel.pull(f"oci:{tmp_path / 'no-store'}:1.0", tmp_path / "out")
    assert not (tmp_path / "no-store").exists()  # reading never creates a layout
    _no_leftovers(tmp_path, "out")


def test_a_directory_that_is_not_a_layout_is_a_store_error(model_dir, tmp_path):
    with pytest.raises(StoreError):
        ocimodel.pull(f"oci:{model_dir}:1.0", tmp_path / "out")
    with pytest.raises(StoreError):
        ocimodel.push(model_dir, f"oci:{model_dir}:1.0")  # would mix a layout into the model
    assert not (model_dir / "oci-layout").exists()
    assert not (model_dir / "index.json").exists()


# -- malformed references ------------------------------------------------------------------

BAD_REFERENCES = [
    ("{host}/Team/model:1", "Team"),
    ("{host}/team/model:bad!tag", "bad!tag"),
    ("{host}/team/model:", "empty tag"),
    ("{host}/team/model@sha256:abc", "sha256:abc"),
    ("http://{host}/team/model:1", "http://"),
    ("{host}//model:1", "//"),
    ("oci:", "oci:"),
    ("oci:{tmp}/store:bad tag", "bad tag"),
    ("", "empty"),
]


@pytest.mark.parametrize("template,bad_part", BAD_REFERENCES, ids=[t for t, _ in BAD_REFERENCES])
def test_bad_reference_is_invalid_reference(registry, model_dir, tmp_path, template, bad_part):
    text = template.format(host=registry.host, tmp=tmp_path)
    calls = {
        "push": lambda: ocimodel.push(model_dir, text),
        "pull": lambda: ocimodel.pull(text, tmp_path / "out"),
        "inspect": lambda: ocimodel.inspect(text),
        "copy-from": lambda: ocimodel.copy(text, f"oci:{tmp_path / 'dst'}:x"),
        "copy-to": lambda: ocimodel.copy(f"oci:{tmp_path / 'src'}:x", text),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidReference) as err:
            call()
        assert isinstance(err.value, UsageError), name
        assert bad_part in str(err.value), f"{name}: {err.value}"
    _no_leftovers(tmp_path, "out")
    assert not (tmp_path / "dst").exists()


def test_invalid_new_tag_is_invalid_reference(registry, repo_name, model_dir, tmp_path):
    ocimodel.push(model_dir, f"{registry.host}/{repo_name}:1.0")
    with pytest.raises(InvalidReference):
        ocimodel.tag(f"{registry.host}/{repo_name}:1.0", "bad tag")
    with pytest.raises(InvalidReference):
        ocimodel.tag(f"{registry.host}/{repo_name}:1.0", "name:1.0")  # fine in a layout, not here
    assert ocimodel.list_tags(f"{registry.host}/{repo_name}") == ["1.0"]


def test_copy_layout_tag_to_registry_without_tag_is_a_usage_error(registry, repo_name, model_dir, tmp_path):
    """``name:1.0`` is a valid layout tag but not a registry tag: copying it to a registry
    with no tag given must fail as a usage error naming it, before any blob is sent."""
    store = tmp_path / "store"
    pushed = ocimodel.push(model_dir, f"oci:{store}:name:1.0")
    with pytest.raises(InvalidReference) as err:
        ocimodel.copy(f"oci:{store}:name:1.0", f"{registry.host}/{repo_name}")
    assert "name:1.0" in str(err.value)
    weights = next(f for f in pushed.files if f.path == "model.safetensors")
    r = httpx.head(f"{registry.url}/v2/{repo_name}/blobs/{weights.digest}")
    assert r.status_code == 404, "blobs were uploaded before the tag was refused"


# -- push argument errors ------------------------------------------------------------------


def test_push_missing_directory_is_packaging_error(registry, repo_name, tmp_path):
    with pytest.raises(PackagingError) as err:
        ocimodel.push(tmp_path / "does-not-exist", f"{registry.host}/{repo_name}:1.0")
    assert "does-not-exist" in str(err.value)
    with pytest.raises(PackagingError):
        ocimodel.push(tmp_path / "does-not-exist", f"oci:{tmp_path / 'store'}:1.0")
    assert not (tmp_path / "store").exists()


def test_push_empty_directory_or_special_file_is_packaging_error(registry, repo_name, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PackagingError):
        ocimodel.push(empty, f"{registry.host}/{repo_name}:1.0")
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    with pytest.raises(PackagingError):
        ocimodel.push(fifo, f"{registry.host}/{repo_name}:1.0")
    inside = tmp_path / "with-fifo"
    inside.mkdir()
    (inside / "weights.bin").write_bytes(b"w")
    os.mkfifo(inside / "pipe")
    with pytest.raises(PackagingError) as err:
        ocimodel.push(inside, f"{registry.host}/{repo_name}:1.0")
    assert "pipe" in str(err.value)
    assert ocimodel.list_tags(f"{registry.host}/{repo_name}", missing_ok=True) == []


def test_push_to_a_digest_is_a_usage_error(registry, repo_name, model_dir, tmp_path):
    for ref in (
        f"{registry.host}/{repo_name}@{MISSING_DIGEST}",
        f"{registry.host}/{repo_name}:1.0@{MISSING_DIGEST}",
        f"oci:{tmp_path / 'store'}@{MISSING_DIGEST}",
    ):
        with pytest.raises(UsageError) as err:
            ocimodel.push(model_dir, ref)
        assert "digest" in str(err.value), ref
    assert not (tmp_path / "store").exists()
    assert ocimodel.list_tags(f"{registry.host}/{repo_name}", missing_ok=True) == []


def test_bad_concurrency_is_a_usage_error(registry, repo_name, model_dir):
    with pytest.raises(UsageError):
        ocimodel.push(model_dir, f"{registry.host}/{repo_name}:1.0", concurrency=0)


# -- transport -----------------------------------------------------------------------------


def test_unreachable_registry_is_transport_error(closed_port, model_dir, tmp_path):
    ref = f"127.0.0.1:{closed_port}/team/model:1.0"
    calls = {
        "push": lambda: ocimodel.push(model_dir, ref),
        "pull": lambda: ocimodel.pull(ref, tmp_path / "out"),
        "inspect": lambda: ocimodel.inspect(ref),
        "list_tags": lambda: ocimodel.list_tags(f"127.0.0.1:{closed_port}/team/model"),
        "tag": lambda: ocimodel.tag(ref, "latest"),
        "copy": lambda: ocimodel.copy(ref, f"oci:{tmp_path / 'store'}:x"),
    }
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(TransportError) as err:
            call()
        # A refused connection fails in milliseconds; the bound only catches a retry loop.
        assert time.monotonic() - started < 30, f"{name} took too long to fail"
        assert f"127.0.0.1:{closed_port}" in str(err.value), f"{name}: {err.value}"
    _no_leftovers(tmp_path, "out")


# -- not a model ---------------------------------------------------------------------------


def test_pull_of_an_index_is_not_a_model(registry, repo_name, model_dir, tmp_path):
    pushed = ocimodel.push(model_dir, f"{registry.host}/{repo_name}:1.0")
    manifest = httpx.get(
        f"{registry.url}/v2/{repo_name}/manifests/1.0", headers={"Accept": OCI_MANIFEST}
    ).content
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": pushed.digest,
            "size": len(manifest),
            "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        }],
    }
    index_digest = put_manifest(registry.url, repo_name, "multi", index, OCI_INDEX)

    for ref in (f"{registry.host}/{repo_name}:multi", f"{registry.host}/{repo_name}@{index_digest}"):
        with pytest.raises(NotAModel) as err:
            ocimodel.pull(ref, tmp_path / "out")
        assert "index" in str(err.value)
    _no_leftovers(tmp_path, "out")

    # inspect still describes it, and the index copies into a layout where pull refuses it too
    info = ocimodel.inspect(f"{registry.host}/{repo_name}:multi")
    assert info.media_type == OCI_INDEX and info.digest == index_digest
    store = tmp_path / "store"
    ocimodel.copy(f"{registry.host}/{repo_name}:multi", f"oci:{store}:multi")
    with pytest.raises(NotAModel):
        ocimodel.pull(f"oci:{store}:multi", tmp_path / "out")
    _no_leftovers(tmp_path, "out")
    # its child is still a model and pulls fine by digest
    ocimodel.pull(f"oci:{store}@{pushed.digest}", tmp_path / "child")
    assert (tmp_path / "child" / "model.safetensors").is_file()


def test_pull_of_an_artifact_without_file_names_is_not_a_model(registry, repo_name, tmp_path):
    """An image-like manifest whose layers carry no title: nothing to name the files by."""
    empty = put_blob(registry.url, repo_name, b"{}")
    layer = put_blob(registry.url, repo_name, b"opaque layer bytes")
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": 18}],
    }
    put_manifest(registry.url, repo_name, "plain", document, OCI_MANIFEST)
    with pytest.raises(NotAModel):
        ocimodel.pull(f"{registry.host}/{repo_name}:plain", tmp_path / "out")
    _no_leftovers(tmp_path, "out")
    assert sha256_bytes(b"{}") == empty


def test_every_error_is_an_ocimodel_error():
    for cls in (InvalidReference, NotAModel, NotFound, PackagingError, StoreError, TransportError, UsageError):
        assert issubclass(cls, OcimodelError)
    assert issubclass(InvalidReference, UsageError)


def test_every_name_the_package_offers_resolves():
    """`import ocimodel` loads its API on first use: each name in __all__ must resolve."""
    import ocimodel

    for name in ocimodel.__all__:
        assert getattr(ocimodel, name) is not None, name
    with pytest.raises(AttributeError):
        ocimodel.no_such_name  # noqa: B018
