"""Smoke tests for the test registry itself (tests/support/registry.py)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest

from tests.support.files import tree_digest
from tests.support.htpasswd import write_htpasswd
from tests.support.registry import LocalRegistry

COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")


def test_v2_answers_with_api_version(registry: LocalRegistry) -> None:
    assert registry.url == f"http://{registry.host}"
    assert registry.host.startswith("127.0.0.1:")
    r = httpx.get(f"{registry.url}/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_repo_name_is_valid_and_unique(repo_name: str, request: pytest.FixtureRequest) -> None:
    parts = repo_name.split("/")
    assert parts[0] == "test"
    assert all(COMPONENT.fullmatch(p) for p in parts), repo_name
    assert parts[1].startswith("test-repo-name-is-valid-and-unique-")
    other = request.getfixturevalue("repo_name")  # same test -> same cached value
    assert other == repo_name


def test_uploaded_blob_is_on_disk(registry: LocalRegistry, repo_name: str) -> None:
    data = b"hello blob\n" * 100
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=registry.url) as client:
        r = client.post(f"/v2/{repo_name}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = httpx.URL(registry.url).join(r.headers["Location"])
        r = client.put(
            location.copy_merge_params({"digest": digest}),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == digest
    path = registry.blob_path(digest)
    assert path.is_file()
    assert path.read_bytes() == data
    assert path.is_relative_to(registry.root)


def test_blob_path_rejects_bad_digest(registry: LocalRegistry) -> None:
    with pytest.raises(ValueError):
        registry.blob_path("md5:abc")


@pytest.mark.registry
def test_htpasswd_registry(tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "alice", "s3cret")
    with LocalRegistry(htpasswd=htpasswd) as reg:
        r = httpx.get(f"{reg.url}/v2/")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("Basic ")
        assert 'realm="basic-realm"' in r.headers["WWW-Authenticate"]
        assert httpx.get(f"{reg.url}/v2/", auth=("alice", "wrong")).status_code == 401
        r = httpx.get(f"{reg.url}/v2/", auth=("alice", "s3cret"))
        assert r.status_code == 200
        proc = reg._proc
        root = reg.root
    assert proc is not None and proc.poll() is not None  # stopped on exit
    assert not root.exists()  # storage removed


def test_missing_binary_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="docker-registry not installed"):
        LocalRegistry()


def test_tls_needs_existing_files() -> None:
    with pytest.raises(ValueError, match="is not a file"):
        LocalRegistry(tls=(Path("c"), Path("k")))


def test_token_auth_needs_all_settings() -> None:
    with pytest.raises(ValueError, match="missing realm"):
        LocalRegistry(token_auth={})


def test_model_dir_fixture(model_dir: Path) -> None:
    tree = tree_digest(model_dir)
    assert sorted(tree) == [
        "README.md", "config.json", "data/eval.csv", "empty.txt",
        "model.safetensors", "src/train.py", "tokenizer/tokenizer.json",
    ]
    assert tree["src/train.py"][1] == 0o755
    assert tree["empty.txt"][0] == hashlib.sha256(b"").hexdigest()
    raw = (model_dir / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0 and len(raw) == 8 + n + 64
