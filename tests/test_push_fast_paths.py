"""Push fast paths (docs/push-fast-paths.md), against the real registry through a counting
proxy: a re-push of an unchanged model is one manifest request; a push to another
repository of the same registry mounts the blobs recorded there instead of uploading
them; a stale record costs one declined mount and the blob is uploaded; a record of
another registry is never used; a broken record file never fails a push."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import ocimodel
from ocimodel import settings
from ocimodel.errors import VersionExists
from ocimodel.oci.models import Descriptor
from ocimodel.packaging.digestcache import DigestCache
from ocimodel.targets.locations import FILE_NAME, BlobLocations
from tests.support.faultproxy import FaultProxy
from tests.support.files import tree_digest
from tests.support.registry import LocalRegistry
from tests.support.tokenserver import TokenServer

HOUR = 3600


def _settle_files(root: Path) -> None:
    """Files last changed an hour ago: the digest cache trusts what it hashed of them (a
    file changed a moment before it was hashed is hashed again: git's racy case)."""
    past = time.time() - HOUR
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))


def _model(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    _settle_files(root)
    return root


@pytest.fixture
def one_big_file(tmp_path: Path) -> Path:
    """Stands in for the 1 GiB one-file model: what is timed there is not its size."""
    return _model(tmp_path / "big", {"weights.bin": os.urandom(96 * 1024)})


@pytest.fixture
def hundred_files(tmp_path: Path) -> Path:
    files = {f"part-{i // 25}/file-{i:03d}.json": os.urandom(200 + 37 * i) for i in range(100)}
    return _model(tmp_path / "hundred", files)


@pytest.fixture
def proxy(registry: LocalRegistry) -> Iterator[FaultProxy]:
    with FaultProxy(registry.host) as p:
        yield p


def _requests(proxy: FaultProxy) -> list[tuple[str, str]]:
    return [(seen.method, seen.target) for seen in proxy.requests]


def _blob_bytes_up(proxy: FaultProxy) -> int:
    return sum(seen.up for seen in proxy.requests if "/blobs/" in seen.path)


# -- re-push in one request --------------------------------------------------------------------


@pytest.mark.parametrize("model", ["one_big_file", "hundred_files"])
@pytest.mark.parametrize("tag", ["latest", "1.0"])
def test_a_repush_of_an_unchanged_model_is_one_manifest_request(model, tag, request, proxy, repo_name):
    # The tests' settle time is 0, but the check-and-set still reads the tag again after
    # its (here empty) wait: a version re-push that ran it, and so would wait 2 x
    # OCIMODEL_TAG_SETTLE, shows as more than one request.
    path = request.getfixturevalue(model)
    reference = f"{proxy.host}/{repo_name}:{tag}"
    first = ocimodel.push(path, reference)
    proxy.clear()
    again = ocimodel.push(path, reference)
    assert again.digest == first.digest
    assert again.uploaded == [] and again.bytes_uploaded == 0
    assert again.bytes_skipped == first.bytes_uploaded + first.bytes_skipped
    assert _requests(proxy) == [("GET", f"/v2/{repo_name}/manifests/{tag}")]


def test_the_manifest_built_from_the_digest_cache_is_the_one_a_full_push_builds(registry, model_dir, repo_name):
    """The first push streams every file (digests learnt while uploading); the second,
    to another repository, builds the manifest from the digest cache before anything is
    sent. Both must be the same bytes, or no re-push would ever be found unchanged."""
    _settle_files(model_dir)
    options = dict(name="tiny", version="1.0", licenses=["MIT"], authors=["a", "b"], description="d",
                   annotations={"org.example.note": "x"}, created="2024-05-01T00:00:00Z")
    cold = ocimodel.push(model_dir, f"{registry.host}/{repo_name}/a:1.0", **options)
    cache = DigestCache()
    try:  # the second push finds every digest in the cache: nothing is hashed or streamed
        assert all(cache.lookup(p.stat()) for p in model_dir.rglob("*") if p.is_file())
    finally:
        cache.close()
    warm = ocimodel.push(model_dir, f"{registry.host}/{repo_name}/b:1.0", **options)
    fetched = [
        httpx.get(f"{registry.url}/v2/{repo_name}/{name}/manifests/1.0",
                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).content
        for name in ("a", "b")
    ]
    assert fetched[0] == fetched[1]
    assert warm.digest == cold.digest


def test_a_version_holding_the_model_without_a_settled_record_runs_the_check_and_set(
    one_big_file, proxy, repo_name
):
    """Without the record that this user saw the version settle (another machine pushed
    it, or the cache was cleared), finding our model is not final: a racer's write may
    still land, so the check-and-set waits and reads again; it writes nothing."""
    reference = f"{proxy.host}/{repo_name}:2.0"
    ocimodel.push(one_big_file, reference)
    (settings.cache_dir() / FILE_NAME).unlink()
    proxy.clear()
    again = ocimodel.push(one_big_file, reference)
    assert again.uploaded == []
    tag_reads = proxy.count("GET", "/manifests/2.0$")
    assert tag_reads >= 2, _requests(proxy)  # the read after the wait
    assert proxy.count("PUT") == 0 and proxy.count(".*", "/blobs/") == 0
    proxy.clear()
    ocimodel.push(one_big_file, reference)  # the record is back: one request again
    assert _requests(proxy) == [("GET", f"/v2/{repo_name}/manifests/2.0")]


def test_a_version_holding_another_model_fails_before_any_blob_request(one_big_file, model_dir, proxy, repo_name):
    _settle_files(model_dir)
    reference = f"{proxy.host}/{repo_name}:3.0"
    ocimodel.push(one_big_file, reference)
    ocimodel.push(model_dir, f"{proxy.host}/{repo_name}:other")  # its digests in the cache
    proxy.clear()
    with pytest.raises(VersionExists):
        ocimodel.push(model_dir, reference)
    assert proxy.count(".*", "/blobs/") == 0 and proxy.count("PUT") == 0


def test_an_alias_moved_to_a_stored_model_visits_no_blob(one_big_file, model_dir, proxy, repo_name):
    ocimodel.push(one_big_file, f"{proxy.host}/{repo_name}:big")
    ocimodel.push(model_dir, f"{proxy.host}/{repo_name}:latest")
    proxy.clear()
    moved = ocimodel.push(one_big_file, f"{proxy.host}/{repo_name}:latest")
    assert moved.uploaded == []
    assert [m for m, _ in _requests(proxy)] == ["GET", "HEAD", "PUT"]  # tag, manifest, tag write
    assert proxy.count(".*", "/blobs/") == 0


# -- mounts ------------------------------------------------------------------------------------


def test_a_push_to_a_sibling_repository_moves_no_blob_bytes(model_dir, proxy, repo_name, tmp_path):
    _settle_files(model_dir)
    first = ocimodel.push(model_dir, f"{proxy.host}/{repo_name}/a:1.0")
    proxy.clear()
    sibling = ocimodel.push(model_dir, f"{proxy.host}/{repo_name}/b:1.0")
    blobs = set(first.uploaded)
    assert sibling.digest == first.digest
    assert sibling.bytes_uploaded == 0 and sibling.uploaded == []
    assert set(sibling.mounted) == blobs and len(sibling.mounted) == len(blobs)  # one mount each
    assert sibling.bytes_mounted == first.bytes_uploaded
    assert _blob_bytes_up(proxy) == 0
    assert proxy.count("PUT", "/blobs/uploads/") == 0 and proxy.count("PATCH") == 0
    assert all("mount=" in seen.target for seen in proxy.seen("POST", "/blobs/uploads/"))
    ocimodel.pull(f"{proxy.host}/{repo_name}/b:1.0", tmp_path / "out")
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)


@pytest.mark.parametrize("seen_by", ["pull", "copy"])
def test_a_model_pulled_or_copied_is_mounted_when_pushed_to_another_repository(
    seen_by, model_dir, registry, repo_name, tmp_path, monkeypatch
):
    """What a pull read, or a copy read and wrote, is recorded too. The files are new to
    this digest cache; their sizes match blobs recorded on the registry, so they are
    hashed first and mounted instead of uploaded."""
    monkeypatch.setenv("OCIMODEL_CACHE_DIR", str(tmp_path / "someone-else"))
    ocimodel.push(model_dir, f"{registry.host}/{repo_name}/a:1.0")
    monkeypatch.setenv("OCIMODEL_CACHE_DIR", str(tmp_path / "mine"))
    if seen_by == "pull":
        ocimodel.pull(f"{registry.host}/{repo_name}/a:1.0", tmp_path / "files")
    else:
        shutil.copytree(model_dir, tmp_path / "files")
        ocimodel.copy(f"{registry.host}/{repo_name}/a:1.0", f"{registry.host}/{repo_name}/b:1.0")
    pushed = ocimodel.push(tmp_path / "files", f"{registry.host}/{repo_name}/c:1.0")
    assert pushed.bytes_uploaded == 0 and pushed.mounted


def test_a_blob_deleted_since_it_was_recorded_costs_one_declined_mount(
    model_dir, registry, proxy, repo_name, tmp_path
):
    _settle_files(model_dir)
    first = ocimodel.push(model_dir, f"{proxy.host}/{repo_name}/a:1.0")
    gone = max(first.files, key=lambda f: f.size).digest
    deleted = httpx.delete(f"{registry.url}/v2/{repo_name}/a/blobs/{gone}")
    assert deleted.status_code == 202
    proxy.clear()
    pushed = ocimodel.push(model_dir, f"{proxy.host}/{repo_name}/b:1.0")
    assert pushed.uploaded == [gone]
    assert set(pushed.mounted) == set(first.uploaded) - {gone}
    # One POST (the mount the registry declined, answered with an upload session), then
    # the blob went up in that very session: no second POST.
    assert proxy.count("POST", f"mount=sha256%3A{gone.removeprefix('sha256:')}") == 1
    assert proxy.count("POST", "/blobs/uploads/") == len(first.uploaded)
    assert proxy.count("PUT", f"/blobs/uploads/.*digest=sha256%3A{gone.removeprefix('sha256:')}") == 1
    assert f"{repo_name}/a" not in BlobLocations().candidates(proxy.host, gone, besides="x/y")
    ocimodel.pull(f"{proxy.host}/{repo_name}/b:1.0", tmp_path / "out")
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)


def test_a_record_of_a_missing_repository_falls_back_to_upload(one_big_file, proxy, repo_name, tmp_path):
    first = ocimodel.push(one_big_file, f"{proxy.host}/{repo_name}/a:1.0")
    blobs = [Descriptor(mediaType="application/octet-stream", digest=d, size=1) for d in first.uploaded]
    record = BlobLocations()
    for blob in blobs:
        record.forget(proxy.host, f"{repo_name}/a", blob.digest)
    record.record(proxy.host, f"{repo_name}/never-was", blobs)
    record.flush()
    proxy.clear()
    pushed = ocimodel.push(one_big_file, f"{proxy.host}/{repo_name}/b:1.0")
    assert sorted(pushed.uploaded) == sorted(first.uploaded) and pushed.mounted == []
    assert proxy.count("POST", "mount=") == len(blobs)
    assert proxy.count("POST", "/blobs/uploads/") == len(blobs)  # each upload in the declined mount's session
    ocimodel.pull(f"{proxy.host}/{repo_name}/b:1.0", tmp_path / "out")
    assert tree_digest(tmp_path / "out") == tree_digest(one_big_file)


def test_a_record_of_another_registry_is_never_used(one_big_file, registry, proxy, repo_name):
    """The proxy and the registry are two names of one storage: a mount would work, so
    only the rule keeps the record of one name from being used for the other."""
    ocimodel.push(one_big_file, f"{registry.host}/{repo_name}/a:1.0")
    proxy.clear()
    pushed = ocimodel.push(one_big_file, f"{proxy.host}/{repo_name}/b:1.0")
    assert pushed.mounted == [] and pushed.uploaded
    assert proxy.count("POST", "mount=") == 0


@pytest.mark.parametrize("broken", ["corrupt", "unwritable"])
def test_a_broken_record_file_never_fails_a_push(broken, one_big_file, proxy, repo_name):
    path = settings.cache_dir() / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    if broken == "corrupt":
        path.write_bytes(b'{"version": 1, "blobs": [["sha256:nope", 1, "x", "y", 0], [')
    else:
        path.mkdir()  # neither readable as a file nor replaceable by one
        (path.parent / "blob-locations.lock").mkdir()
    pushed = ocimodel.push(one_big_file, f"{proxy.host}/{repo_name}/a:1.0")
    sibling = ocimodel.push(one_big_file, f"{proxy.host}/{repo_name}/b:1.0")
    assert sibling.digest == pushed.digest
    if broken == "corrupt":  # rewritten whole, with what the pushes saw
        assert json.loads(path.read_bytes())["version"] == 1 and sibling.mounted
    else:
        assert path.is_dir() and sibling.mounted == [] and sibling.uploaded


# -- mounts on a token registry ------------------------------------------------------------------


def _policy(user: str | None, type_: str, name: str) -> set[str]:
    """alice may do anything; bob may not read alice's ``private/`` repositories."""
    if type_ != "repository" or user is None:
        return set()
    if user == "bob" and name.startswith("private/"):
        return set()
    return {"pull", "push"}


@pytest.fixture(scope="module")
def token_server() -> Iterator[TokenServer]:
    with TokenServer({"alice": "alice-pw", "bob": "bob-pw"}, policy=_policy) as ts:
        yield ts


@pytest.fixture(scope="module")
def token_registry(token_server: TokenServer) -> Iterator[LocalRegistry]:
    with LocalRegistry(token_auth=token_server.registry_auth()) as reg:
        yield reg


def test_mounts_need_pull_on_the_recorded_repository(token_registry, token_server, one_big_file, repo_name, monkeypatch):
    monkeypatch.delenv("OCIMODEL_USERNAME", raising=False)
    monkeypatch.delenv("OCIMODEL_PASSWORD", raising=False)
    with FaultProxy(token_registry.host) as proxy:
        host = proxy.host
        first = ocimodel.push(one_big_file, f"{host}/private/{repo_name}:1.0", credentials=("alice", "alice-pw"))
        # bob (same machine, same record) may not read private/: the mount is refused and
        # the blobs are uploaded; the refused repository is asked once, not once per blob.
        proxy.clear()
        client = ocimodel.Client(credentials=("bob", "bob-pw"), concurrency=1)
        theirs = client.push(one_big_file, f"{host}/{repo_name}/bob:1.0")
        assert theirs.mounted == [] and sorted(theirs.uploaded) == sorted(first.uploaded)
        assert proxy.count("POST", "mount=") == 1
        # alice's sibling push mounts (from bob's repository now, the newest record), with
        # a token for pull there and push here
        token_server.clear()
        mine = ocimodel.push(one_big_file, f"{host}/{repo_name}/alice:1.0", credentials=("alice", "alice-pw"))
        assert mine.bytes_uploaded == 0 and sorted(mine.mounted) == sorted(first.uploaded)
    asked = [set(r.scopes) for r in token_server.token_requests()]
    assert any(f"repository:{repo_name}/bob:pull" in scopes for scopes in asked), asked
