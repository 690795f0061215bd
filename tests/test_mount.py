"""Cross-repository blob mount: a copy between repositories of one registry links the blobs
the registry already holds instead of moving their bytes (plain and token registries)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import ocimodel
from ocimodel.oci.digest import digest_bytes
from ocimodel.transport.client import RegistryClient
from tests.support.files import tree_digest
from tests.support.registry import LocalRegistry
from tests.support.tokenserver import TokenServer

ALICE_PW = "mount-alice-pw"


@pytest.fixture(autouse=True)
def _no_env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCIMODEL_USERNAME", raising=False)
    monkeypatch.delenv("OCIMODEL_PASSWORD", raising=False)


@pytest.fixture(scope="module")
def token_server() -> Iterator[TokenServer]:
    with TokenServer({"alice": ALICE_PW}) as ts:
        yield ts


@pytest.fixture(scope="module")
def token_registry(token_server: TokenServer) -> Iterator[LocalRegistry]:
    with LocalRegistry(token_auth=token_server.registry_auth()) as reg:
        yield reg


def test_copy_between_repositories_mounts_every_blob(registry, model_dir, repo_name, tmp_path):
    source = f"{registry.host}/{repo_name}/a:1"
    pushed = ocimodel.push(model_dir, source)
    copied = ocimodel.copy(source, f"{registry.host}/{repo_name}/b:1")
    assert copied.digest == pushed.digest
    assert copied.blobs_mounted == len({f.digest for f in pushed.files}) + 1  # files + config
    assert copied.blobs_copied == 0 and copied.bytes_copied == 0
    ocimodel.pull(f"{registry.host}/{repo_name}/b:1", tmp_path / "out")
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)


def test_copy_mounts_on_a_token_registry(token_registry, token_server, model_dir, repo_name, tmp_path):
    alice = ("alice", ALICE_PW)
    source = f"{token_registry.host}/{repo_name}/a:1"
    ocimodel.push(model_dir, source, credentials=alice)
    token_server.clear()
    copied = ocimodel.copy(source, f"{token_registry.host}/{repo_name}/b:1", credentials=alice)
    assert copied.blobs_mounted > 0 and copied.bytes_copied == 0
    # The mount asked for one token covering both repositories: pull on a, push on b.
    asked = [set(r.scopes) for r in token_server.token_requests()]
    assert any(
        f"repository:{repo_name}/a:pull" in scopes and f"repository:{repo_name}/b:pull,push" in scopes
        for scopes in asked
    ), asked
    ocimodel.pull(f"{token_registry.host}/{repo_name}/b:1", tmp_path / "out", credentials=alice)
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)


def test_mount_of_an_absent_blob_falls_back(registry, repo_name):
    with RegistryClient(registry.host) as client:
        assert client.mount_blob(f"{repo_name}/b", digest_bytes(b"not there"), f"{repo_name}/a") is False
