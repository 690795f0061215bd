"""The local blob cache (`pull --blob-cache`): files are hard-linked from it instead of
downloaded, only after being checked against their digests; downloads are kept in it;
`cache prune` frees what no pulled file shares. Against the real registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocimodel import api
from ocimodel.packaging.blobcache import BlobCache
from tests.support.files import tree_digest
from tests.support.registry import LocalRegistry

CLI = Path(sys.executable).with_name("ocimodel")


@pytest.fixture
def pushed(registry: LocalRegistry, repo_name: str, model_dir: Path) -> str:
    ref = f"{registry.host}/{repo_name}:1.0"
    api.push(model_dir, ref)
    return ref


def _cache() -> BlobCache:
    return BlobCache(Path(os.environ["OCIMODEL_CACHE_DIR"]) / "blobs")


def _entry(path: Path) -> Path:
    """The cache entry of a pulled file (by its digest)."""
    digest = "sha256:" + tree_digest(path.parent)[path.name][0]
    entry = _cache().path(digest)
    assert entry is not None
    return entry


def test_second_pull_links_every_file_and_downloads_nothing(pushed: str, model_dir: Path, tmp_path: Path) -> None:
    first = api.pull(pushed, tmp_path / "a", blob_cache=True)
    assert first.bytes_downloaded > 0 and first.files_from_cache == 0
    second = api.pull(pushed, tmp_path / "b", blob_cache=True)
    assert second.bytes_downloaded == 0
    assert second.files_from_cache == len(second.files)
    assert tree_digest(tmp_path / "b") == tree_digest(model_dir)  # bytes and modes
    weights_a, weights_b = tmp_path / "a" / "model.safetensors", tmp_path / "b" / "model.safetensors"
    assert weights_a.stat().st_ino == weights_b.stat().st_ino == _entry(weights_a).stat().st_ino


def test_without_the_option_nothing_is_cached_or_linked(pushed: str, tmp_path: Path) -> None:
    api.pull(pushed, tmp_path / "a")
    assert list(_cache().entries()) == []
    api.pull(pushed, tmp_path / "seed", blob_cache=True)
    again = api.pull(pushed, tmp_path / "b")  # the cache has everything, but was not asked for
    assert again.files_from_cache == 0 and again.bytes_downloaded > 0
    assert (tmp_path / "b" / "model.safetensors").stat().st_nlink == 1


def test_environment_turns_it_on_and_no_cache_turns_it_off(pushed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIMODEL_BLOB_CACHE", "1")
    api.pull(pushed, tmp_path / "a")
    assert api.pull(pushed, tmp_path / "b").bytes_downloaded == 0
    monkeypatch.setenv("OCIMODEL_NO_CACHE", "1")
    assert api.pull(pushed, tmp_path / "c").files_from_cache == 0


def test_a_file_edited_in_place_is_caught_and_downloaded_again(pushed: str, model_dir: Path, tmp_path: Path) -> None:
    """Editing a pulled file in place changes its cache entry too (one inode): the next
    pull checks the entry, finds it wrong, removes it and downloads the file."""
    api.pull(pushed, tmp_path / "a", blob_cache=True)
    weights = tmp_path / "a" / "model.safetensors"
    entry = _entry(weights)
    with open(weights, "r+b") as handle:  # same size, other bytes
        handle.write(b"\xff" * 8)
    assert entry.read_bytes()[:8] == b"\xff" * 8
    result = api.pull(pushed, tmp_path / "b", blob_cache=True)
    assert result.bytes_downloaded == (model_dir / "model.safetensors").stat().st_size
    assert result.files_from_cache == len(result.files) - 1
    assert tree_digest(tmp_path / "b") == tree_digest(model_dir)
    assert entry.read_bytes() == (model_dir / "model.safetensors").read_bytes()  # replaced


def test_an_entry_replaced_by_a_symlink_is_not_followed(pushed: str, model_dir: Path, tmp_path: Path) -> None:
    api.pull(pushed, tmp_path / "a", blob_cache=True)
    entry = _entry(tmp_path / "a" / "model.safetensors")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes((model_dir / "model.safetensors").read_bytes())
    entry.unlink()
    entry.symlink_to(elsewhere)
    result = api.pull(pushed, tmp_path / "b", blob_cache=True)
    assert result.files_from_cache == len(result.files) - 1
    pulled = tmp_path / "b" / "model.safetensors"
    assert not pulled.is_symlink() and pulled.stat().st_ino != elsewhere.stat().st_ino
    assert tree_digest(tmp_path / "b") == tree_digest(model_dir)


def test_an_entry_with_another_mode_is_not_shared(pushed: str, model_dir: Path, tmp_path: Path) -> None:
    """A link shares its mode: an entry with another mode is left alone (the file is
    downloaded), so no pull changes the mode of another directory's file."""
    api.pull(pushed, tmp_path / "a", blob_cache=True)
    weights = tmp_path / "a" / "model.safetensors"
    os.chmod(weights, 0o600)
    result = api.pull(pushed, tmp_path / "b", blob_cache=True)
    assert result.files_from_cache == len(result.files) - 1
    assert (weights.stat().st_mode & 0o777) == 0o600
    assert tree_digest(tmp_path / "b") == tree_digest(model_dir)


@pytest.fixture
def v2_with_another_mode(registry: LocalRegistry, repo_name: str, model_dir: Path, tmp_path: Path) -> str:
    """v1 pulled into a/ and b/ through the cache (b's weights are a cache link); v2, whose
    weights have the same bytes and mode 0755, is returned."""
    v1 = f"{registry.host}/{repo_name}:1.0"
    api.push(model_dir, v1)
    os.chmod(model_dir / "model.safetensors", 0o755)
    v2 = f"{registry.host}/{repo_name}:2.0"
    api.push(model_dir, v2)
    api.pull(v1, tmp_path / "a", blob_cache=True)
    api.pull(v1, tmp_path / "b", blob_cache=True)
    return v2


def test_mode_change_of_an_unchanged_linked_file_does_not_reach_the_other_links(v2_with_another_mode: str, tmp_path: Path) -> None:
    """Pulling v2 into a directory whose file is a cache link gives that directory its own
    copy before the mode changes."""
    api.pull(v2_with_another_mode, tmp_path / "b", blob_cache=True)
    assert (tmp_path / "b" / "model.safetensors").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "a" / "model.safetensors").stat().st_mode & 0o777 == 0o644


def test_prune_frees_only_what_no_pulled_file_shares(pushed: str, model_dir: Path, tmp_path: Path) -> None:
    api.pull(pushed, tmp_path / "a", blob_cache=True)
    info = api.blob_cache_info()
    assert info.entries == info.entries_in_use > 0 and info.bytes_not_in_use == 0
    assert api.prune_blob_cache().removed == 0
    for path in (tmp_path / "a").rglob("*"):
        if path.is_file():
            path.unlink()
    info = api.blob_cache_info()
    assert info.entries_in_use == 0 and info.bytes_not_in_use == info.bytes > 0
    pruned = api.prune_blob_cache()
    assert pruned.removed == info.entries and pruned.bytes_freed == info.bytes
    assert api.blob_cache_info().entries == 0


def test_prune_all_leaves_pulled_files_whole(pushed: str, model_dir: Path, tmp_path: Path) -> None:
    api.pull(pushed, tmp_path / "a", blob_cache=True)
    pruned = api.prune_blob_cache(everything=True)
    assert pruned.removed > 0 and pruned.bytes_freed == 0  # the pulled files keep the bytes
    assert tree_digest(tmp_path / "a") == tree_digest(model_dir)


def test_cli_pull_and_cache_commands(pushed: str, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120, check=False)

    assert run("pull", pushed, str(tmp_path / "a"), "--blob-cache", "--quiet").returncode == 0
    second = run("pull", pushed, str(tmp_path / "b"), "--blob-cache")
    assert second.returncode == 0, second.stderr
    assert "downloaded 0 B" in second.stdout and "linked from the blob cache" in second.stdout
    info = json.loads(run("cache", "info", "--json").stdout)
    assert info["entries"] == info["entries_in_use"] > 0
    pruned = run("cache", "prune", "--all")
    assert pruned.returncode == 0 and f"Removed {info['entries']} entries" in pruned.stdout


def test_every_linked_file_is_checked_after_it_is_linked(pushed: str, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes are checked on the link in the staging directory, every time: what was
    checked is what ends up in the destination, whatever happens to the entry's name."""
    import hashlib

    from ocimodel.packaging import unpack

    api.pull(pushed, tmp_path / "seed", blob_cache=True)
    hashed: list[str] = []
    real = hashlib.file_digest

    def counting(handle, algorithm):  # type: ignore[no-untyped-def]
        hashed.append(os.readlink(f"/proc/self/fd/{handle.fileno()}"))
        return real(handle, algorithm)

    monkeypatch.setattr(unpack.hashlib, "file_digest", counting)
    for run in ("a", "b"):
        hashed.clear()
        result = api.pull(pushed, tmp_path / run, blob_cache=True)
        assert result.bytes_downloaded == 0
        assert len(hashed) == len({f.digest for f in result.files})
        assert all(unpack.STAGING_PREFIX in path for path in hashed)  # the links, not the entries
    assert tree_digest(tmp_path / "b") == tree_digest(model_dir)


def test_an_entry_swapped_for_a_symlink_while_linking_is_refused(
    pushed: str, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry's name is replaced by a symlink to another file at the last moment (after
    it was looked at, before the link): the link is then a symlink, which is refused; the
    file is downloaded and nothing outside the destination is touched."""
    from ocimodel.packaging import blobcache

    api.pull(pushed, tmp_path / "seed", blob_cache=True)
    victim = tmp_path / "victim.key"
    victim.write_bytes(b"secret")
    os.chmod(victim, 0o600)
    real_link = os.link

    def swapping_link(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(src).startswith(str(_cache().root)):
            os.unlink(src)
            os.symlink(victim, src)
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(blobcache.os, "link", swapping_link)
    result = api.pull(pushed, tmp_path / "a", blob_cache=True)
    assert result.files_from_cache == 0 and result.bytes_downloaded > 0
    assert tree_digest(tmp_path / "a") == tree_digest(model_dir)
    assert victim.read_bytes() == b"secret" and victim.stat().st_mode & 0o777 == 0o600


def test_a_file_enters_the_cache_with_its_final_mode(pushed: str, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once in the cache a file may be linked by another pull at once, so it must already
    have its mode: the commit never changes the mode of a shared file."""
    modes: dict[str, int] = {}
    real_add = BlobCache.add

    def recording_add(self, digest, source):  # type: ignore[no-untyped-def]
        modes[digest] = source.stat().st_mode & 0o777
        return real_add(self, digest, source)

    monkeypatch.setattr(BlobCache, "add", recording_add)
    result = api.pull(pushed, tmp_path / "a", blob_cache=True)
    expected = {f"sha256:{digest}": mode for digest, mode in tree_digest(model_dir).values()}
    assert modes and all(modes[d] == expected[d] for d in modes)
    assert len(modes) == len({f.digest for f in result.files})


def test_a_symlink_beside_a_file_whose_mode_changes_is_not_written_through(v2_with_another_mode: str, tmp_path: Path) -> None:
    """Giving a shared file its own inode before a mode change copies it beside itself:
    into a fresh, exclusive name, never through a name already in the directory."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    for name in (".model.safetensors.ocimodel-tmp", ".model.safetensors.tmp"):
        (tmp_path / "b" / name).symlink_to(victim)
    api.pull(v2_with_another_mode, tmp_path / "b", blob_cache=True)
    assert victim.read_bytes() == b"untouched"
    assert (tmp_path / "b" / "model.safetensors").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "a" / "model.safetensors").stat().st_mode & 0o777 == 0o644
