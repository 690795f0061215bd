"""The digest cache and hashing while uploading: each file is read once on a cold push, not
at all on an unchanged re-push, and a changed file is always hashed again."""

from __future__ import annotations

import os
import shutil
import time

import pytest

import ocimodel
from ocimodel.packaging import package
from ocimodel.packaging.digestcache import DigestCache
from tests.support.files import tree_digest


@pytest.fixture
def hashed(monkeypatch):
    """Counts the files ocimodel hashes by reading them in a separate pass."""
    calls: list[str] = []
    real = package._hash_file

    def counting(path):
        calls.append(os.fspath(path))
        return real(path)  # (digest, stat)

    monkeypatch.setattr(package, "_hash_file", counting)
    return calls


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("OCIMODEL_CACHE_DIR", str(path))
    return path


def _age(directory, seconds=60):
    """Make every file look settled (not just written), as a model on disk usually is."""
    past = time.time() - seconds
    for root, _, names in os.walk(directory):
        for name in names:
            os.utime(os.path.join(root, name), (past, past))


@pytest.mark.parametrize("store", ["registry", "layout"])
def test_cold_push_hashes_while_uploading_and_repush_reads_nothing(
    store, registry, repo_name, model_dir, tmp_path, cache_dir, hashed
):
    _age(model_dir)
    ref = f"{registry.host}/{repo_name}:1" if store == "registry" else f"oci:{tmp_path}/store:m:1"
    first = ocimodel.push(model_dir, ref)
    assert hashed == []  # no separate hashing pass: digests came from the upload stream
    assert first.bytes_uploaded >= sum(f.size for f in first.files)
    second = ocimodel.push(model_dir, ref)
    assert hashed == []  # every digest came from the cache
    assert second.digest == first.digest
    assert second.bytes_uploaded == 0
    ocimodel.pull(ref, tmp_path / "out")
    assert tree_digest(tmp_path / "out") == tree_digest(model_dir)


def test_a_changed_file_is_hashed_again(registry, repo_name, model_dir, cache_dir, hashed):
    _age(model_dir)
    ref = f"{registry.host}/{repo_name}:1"
    first = ocimodel.push(model_dir, ref)
    target = model_dir / "config.json"
    content = target.read_bytes()
    target.write_bytes(content.replace(b"{", b"[", 1)[: len(content)])  # same size, new bytes
    second = ocimodel.push(model_dir, f"{registry.host}/{repo_name}:2")
    changed = {f.path: f.digest for f in second.files}
    before = {f.path: f.digest for f in first.files}
    assert changed["config.json"] != before["config.json"]
    assert {p for p in changed if changed[p] != before[p]} == {"config.json"}
    # Only the changed file and the new config blob (its diffIds changed) were sent.
    assert len(second.uploaded) == 2 and changed["config.json"] in second.uploaded


def test_files_just_written_are_checked_again_not_trusted(registry, repo_name, model_dir, cache_dir, hashed):
    """A file written a moment ago could change again without a new mtime: the next push
    hashes it again (and then finds the registry has it) instead of trusting the cache."""
    ref = f"{registry.host}/{repo_name}:1"
    ocimodel.push(model_dir, ref)
    again = ocimodel.push(model_dir, ref)
    assert len(hashed) == len(again.files)
    assert again.bytes_uploaded == 0


def test_cache_can_be_turned_off_and_a_broken_cache_is_ignored(registry, repo_name, model_dir, cache_dir, monkeypatch):
    _age(model_dir)
    monkeypatch.setenv("OCIMODEL_NO_CACHE", "1")
    assert DigestCache().lookup(os.stat(model_dir / "config.json")) is None
    ocimodel.push(model_dir, f"{registry.host}/{repo_name}:1")
    assert not cache_dir.exists()
    monkeypatch.delenv("OCIMODEL_NO_CACHE")
    cache_dir.mkdir()
    for name in os.listdir(cache_dir):
        os.unlink(cache_dir / name)
    (cache_dir / "digests.v1.sqlite").write_bytes(b"this is not a database" * 100)
    pushed = ocimodel.push(model_dir, f"{registry.host}/{repo_name}:2")
    assert pushed.digest


def test_a_fresh_checkout_still_skips_what_the_registry_has(registry, repo_name, model_dir, tmp_path, cache_dir):
    """A cold cache (another machine, a new CI runner) pushing v2 next to v1: files are
    hashed first and only the changed one travels, not the whole model."""
    ref = f"{registry.host}/{repo_name}"
    ocimodel.push(model_dir, f"{ref}:v1")
    checkout = tmp_path / "checkout"
    shutil.copytree(model_dir, checkout)
    (checkout / "README.md").write_text("v2 readme\n")
    for name in os.listdir(cache_dir):  # nothing remembered from the first push
        shutil.rmtree(cache_dir / name) if (cache_dir / name).is_dir() else os.unlink(cache_dir / name)
    v2 = ocimodel.push(checkout, f"{ref}:v2")
    readme = next(f.digest for f in v2.files if f.path == "README.md")
    assert readme in v2.uploaded and len(v2.uploaded) == 2  # README.md and the config
    assert v2.bytes_skipped == sum(f.size for f in v2.files if f.path != "README.md")


def test_a_file_that_grows_during_the_upload_is_a_clean_error(registry, repo_name, tmp_path, monkeypatch):
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(b"x" * 3_000_000)
    from ocimodel.targets import copy as engine

    real = engine.read_chunks

    def growing(handle):
        for chunk in real(handle):
            yield chunk
        yield b"appended while pushing"

    monkeypatch.setattr(engine, "read_chunks", growing)
    with pytest.raises(ocimodel.errors.SizeMismatch):
        ocimodel.push(model, f"{registry.host}/{repo_name}:1")
    assert ocimodel.list_tags(f"{registry.host}/{repo_name}", missing_ok=True) == []
