"""The blob location record (targets/locations.py), without a registry: what it keeps,
its bounds, what it drops when read, and concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from ocimodel.oci.digest import digest_bytes
from ocimodel.oci.models import Descriptor
from ocimodel.targets import locations as loc
from ocimodel.targets.locations import BlobLocations

REG = "registry.example:5000"


def _blob(n: int, size: int = 10) -> Descriptor:
    return Descriptor(mediaType="application/octet-stream", digest=digest_bytes(str(n).encode()), size=size)


def test_candidates_are_newest_first_per_registry_and_never_the_destination(tmp_path: Path):
    path = tmp_path / "record.json"
    blob = _blob(1)
    for repository in ("team/a", "team/b", "team/c"):
        record = BlobLocations(path)
        record.record(REG, repository, [blob])
        record.flush()
    record = BlobLocations(path)
    record.record("other.example", "team/z", [blob])
    record.flush()
    fresh = BlobLocations(path)
    assert fresh.candidates(REG, blob.digest, besides="team/b") == ["team/c", "team/a"]
    assert fresh.candidates("other.example", blob.digest, besides="x/y") == ["team/z"]
    assert fresh.candidates(REG, _blob(2).digest, besides="x/y") == []
    assert fresh.sizes(REG) == {10}
    fresh.forget(REG, "team/c", blob.digest)
    assert fresh.candidates(REG, blob.digest, besides="x/y") == ["team/b", "team/a"]
    fresh.flush()
    assert BlobLocations(path).candidates(REG, blob.digest, besides="x/y") == ["team/b", "team/a"]


def test_the_record_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(loc, "MAX_BLOBS", 50)
    monkeypatch.setattr(loc, "MAX_SETTLED", 5)
    path = tmp_path / "record.json"
    record = BlobLocations(path)
    shared = _blob(0)
    for n in range(10):  # one digest in ten repositories: MAX_PER_BLOB are kept
        record.record(REG, f"team/r{n}", [shared])
    record.record(REG, "team/many", [_blob(n) for n in range(1, 200)])
    for n in range(20):
        record.record_settled(REG, "team/a", f"1.{n}", shared.digest)
    record.flush()
    document = json.loads(path.read_bytes())
    assert len(document["blobs"]) == 50 and len(document["settled"]) == 5
    again = BlobLocations(path)
    assert len(again.candidates(REG, shared.digest, besides="x/y")) <= loc.MAX_PER_BLOB
    assert again.settled(REG, "team/a", "1.19", shared.digest) and not again.settled(REG, "team/a", "1.0", shared.digest)


def test_rows_that_fail_a_check_are_dropped_when_read(tmp_path: Path):
    path = tmp_path / "record.json"
    good, other = _blob(1), _blob(2)
    path.write_text(json.dumps({"version": 1, "blobs": [
        [good.digest, 10, REG, "team/a", 1.0],
        ["sha256:../../etc", 10, REG, "team/a", 1.0],  # no digest
        [good.digest, -1, REG, "team/a", 1.0],  # no size
        [good.digest, 10, "no host/", "team/a", 1.0],
        [good.digest, 10, REG, "Team/../A", 1.0],  # no repository name
        [good.digest, 10, REG, "team/b"],  # short
        "junk",
        # a place is checked once a read: its second row gets the same answer
        [other.digest, 10, REG, "Team/../A", 1.0],
        [other.digest, 10, "no host/", "team/a", 1.0],
        [other.digest, 10, 7, "team/a", 1.0],
        [other.digest, 10, REG, "team/a", 10**400],  # no float can hold it
        [other.digest, 10, REG, "team/a", float("nan")],
        [other.digest, 10, f"host:{'9' * 5000}", "team/a", 1.0],  # a port past int()'s digit limit
    ], "settled": [[REG, "team/a", "bad tag!", good.digest, 1.0], [REG, "team/a", "1.0", good.digest, 1.0],
                   [REG, "Team/../A", "1.0", other.digest, 1.0], [REG, "team/a", "2.0", other.digest, 10**400]]}))
    record = BlobLocations(path)
    assert record.candidates(REG, good.digest, besides="x/y") == ["team/a"]
    assert record.candidates(REG, other.digest, besides="x/y") == []
    assert not record.settled(REG, "Team/../A", "1.0", other.digest)
    assert not record.settled(REG, "team/a", "2.0", other.digest)
    assert record.settled(REG, "team/a", "1.0", good.digest)
    assert not record.settled(REG, "team/a", "bad tag!", good.digest)


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"version": 2, "blobs": []}', b"\xff" * 100, b"[" * 200_000])
def test_an_unreadable_file_is_an_empty_record_and_is_replaced(tmp_path: Path, content: bytes):
    path = tmp_path / "record.json"
    path.write_bytes(content)
    record = BlobLocations(path)
    assert record.candidates(REG, _blob(1).digest, besides="x/y") == []
    record.record(REG, "team/a", [_blob(1)])
    record.flush()
    assert BlobLocations(path).candidates(REG, _blob(1).digest, besides="x/y") == ["team/a"]


def test_an_oversized_file_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "record.json"
    record = BlobLocations(path)
    record.record(REG, "team/a", [_blob(1)])
    record.flush()
    monkeypatch.setattr(loc, "MAX_FILE_BYTES", 10)
    assert BlobLocations(path).candidates(REG, _blob(1).digest, besides="x/y") == []


def test_no_cache_turns_it_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OCIMODEL_NO_CACHE", "1")
    path = tmp_path / "record.json"
    record = BlobLocations(path)
    record.record(REG, "team/a", [_blob(1)])
    record.flush()
    assert not path.exists()


def test_a_lock_held_too_long_skips_the_write_without_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import fcntl
    import os

    monkeypatch.setattr(loc, "LOCK_WAIT_SECONDS", 0.05)
    path = tmp_path / "record.json"
    fd = os.open(tmp_path / loc.LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        record = BlobLocations(path)
        record.record(REG, "team/a", [_blob(1)])
        record.flush()  # gives up quietly
    finally:
        os.close(fd)
    assert not path.exists()


def _writer(path: str, first: int) -> None:
    for n in range(first, first + 30):
        record = BlobLocations(Path(path))
        record.record(REG, f"team/w{first}", [_blob(n)])
        record.flush()


def test_concurrent_processes_keep_each_other_s_rows(tmp_path: Path):
    path = tmp_path / "record.json"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(path), first)) for first in (0, 100, 200)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    record = BlobLocations(path)
    for first in (0, 100, 200):
        for n in range(first, first + 30):
            assert record.candidates(REG, _blob(n).digest, besides="x/y") == [f"team/w{first}"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
