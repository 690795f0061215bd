"""OCI layouts in one tar (``ocimodel export`` / ``import``): deterministic writing, skopeo's
``oci-archive:`` transport reading what we write (and we reading what it writes), and
hostile archives refused with nothing left behind (docs/threats.md 9-10)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest

import ocimodel
from ocimodel.errors import (
    DestinationExists,
    DigestMismatch,
    OutputExists,
    StoreError,
    UnsafePath,
)
from ocimodel.oci.models import MAX_MANIFEST_BYTES
from ocimodel.targets.archive import (
    ArchiveInfo,
    ArchiveTooLarge,
    InvalidArchive,
    InvalidLayoutArchive,
    UnsafeArchive,
    extract_layout_archive,
    write_layout_archive,
)
from ocimodel.targets.layout import OciLayout
from tests.support.files import tree_digest
from tests.support.modeltrees import sha256_bytes, sha256_file

MiB = 1 << 20


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run skopeo; fail loudly (never skip) when it is missing or refuses."""
    binary = shutil.which("skopeo")
    assert binary is not None, "skopeo not installed: run `make test` or apt-get install skopeo"
    proc = subprocess.run([binary, *args], check=False, capture_output=True, timeout=120)
    assert proc.returncode == 0, (
        f"skopeo {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}"
    )
    return proc


@pytest.fixture
def store(model_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    """A layout holding the test model under tag v1, and the manifest digest."""
    path = tmp_path / "store"
    return path, ocimodel.push(model_dir, f"oci:{path}:v1").digest


def blob_files(layout: Path) -> list[Path]:
    return sorted(p for p in (layout / "blobs").rglob("*") if p.is_file())


def assert_blobs_verify(layout: Path) -> None:
    for path in blob_files(layout):
        assert sha256_file(path) == f"sha256:{path.name}", path


# -- writing -----------------------------------------------------------------------------


def test_archive_is_deterministic(store, model_dir: Path, tmp_path: Path) -> None:
    layout, _ = store
    first = write_layout_archive(layout, tmp_path / "a.tar")
    second = write_layout_archive(layout, tmp_path / "b.tar")
    assert first.path.read_bytes() == second.path.read_bytes()

    # The same model pushed into another layout at another time, from a copy with other
    # mtimes: the same content gives the same archive.
    other_model = tmp_path / "other-model"
    shutil.copytree(model_dir, other_model)
    for path in other_model.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    other_layout = tmp_path / "other-store"
    ocimodel.push(other_model, f"oci:{other_layout}:v1")
    third = write_layout_archive(other_layout, tmp_path / "c.tar")
    assert third.path.read_bytes() == first.path.read_bytes()


def test_archive_layout_order_and_metadata(store, tmp_path: Path) -> None:
    layout, _ = store
    info = write_layout_archive(layout, tmp_path / "out.tar")
    blobs = [f"blobs/sha256/{p.name}" for p in blob_files(layout)]
    assert info == ArchiveInfo(path=tmp_path / "out.tar", size=(tmp_path / "out.tar").stat().st_size,
                               blob_count=len(blobs))

    with tarfile.open(info.path) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["oci-layout", "index.json", "blobs", "blobs/sha256", *blobs]
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
            assert m.mode == (0o755 if m.isdir() else 0o644)
            assert m.isdir() or m.isreg()
            if m.isreg():
                assert tar.extractfile(m).read() == (layout / m.name).read_bytes()
    # plain (no gzip) by default, and no temporary file left beside the archive
    assert not info.path.read_bytes().startswith(b"\x1f\x8b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "out.tar", "store"]


def test_gzip_archive_is_deterministic_and_readable(store, tmp_path: Path) -> None:
    layout, digest = store
    first = write_layout_archive(layout, tmp_path / "a.tar.gz", compression="gzip")
    second = write_layout_archive(layout, tmp_path / "b.tar.gz", compression="gzip")
    data = first.path.read_bytes()
    assert data.startswith(b"\x1f\x8b") and data == second.path.read_bytes()
    plain = write_layout_archive(layout, tmp_path / "c.tar")
    assert gzip.decompress(data) == plain.path.read_bytes()

    out = extract_layout_archive(first.path, tmp_path / "out")
    assert OciLayout(out).resolve("v1").digest == digest
    raw = skopeo("inspect", "--raw", f"oci-archive:{first.path}:v1").stdout
    assert sha256_bytes(raw) == digest


def test_archive_replaces_an_existing_file_only_when_told(store, tmp_path: Path) -> None:
    layout, _ = store
    out = tmp_path / "out.tar"
    out.write_bytes(b"an older export")
    with pytest.raises(OutputExists):
        write_layout_archive(layout, out)
    assert out.read_bytes() == b"an older export"
    write_layout_archive(layout, out, replace=True)
    assert tarfile.is_tarfile(out)
    assert not list(tmp_path.glob(".out.tar.*"))


def test_skopeo_reads_the_archive(store, tmp_path: Path) -> None:
    layout, digest = store
    archive = write_layout_archive(layout, tmp_path / "model.tar").path

    raw = skopeo("inspect", "--raw", f"oci-archive:{archive}:v1").stdout
    assert sha256_bytes(raw) == digest
    assert raw == (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()

    copied = tmp_path / "copied"
    skopeo("copy", f"oci-archive:{archive}:v1", f"oci:{copied}:v1")
    assert OciLayout(copied).resolve("v1").digest == digest
    assert tree_digest(copied / "blobs") == tree_digest(layout / "blobs")


def test_archive_of_a_corrupt_blob_is_refused(store, tmp_path: Path) -> None:
    layout, _ = store
    victim = max(blob_files(layout), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.write_bytes(bytes(data))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(DigestMismatch) as caught:
        write_layout_archive(layout, out_dir / "model.tar")
    assert victim.name in str(caught.value)
    assert list(out_dir.iterdir()) == []  # neither the archive nor its temporary file


def _symlink_blob(layout: Path) -> None:
    os.symlink("/etc/passwd", layout / "blobs" / "sha256" / ("a" * 64))


def _symlink_blobs_dir(layout: Path) -> None:
    real = layout.parent / "real-blobs"
    (layout / "blobs").rename(real)
    os.symlink(real, layout / "blobs")


def _leftover_temp(layout: Path) -> None:
    (layout / "blobs" / "sha256" / ".tmp-abc123").write_bytes(b"partial")


def _upper_case_name(layout: Path) -> None:
    blob = blob_files(layout)[0]
    blob.rename(blob.with_name(blob.name.upper()))


def _extra_top_level(layout: Path) -> None:
    (layout / "notes.txt").write_text("hello")


def _fifo_blob(layout: Path) -> None:
    os.mkfifo(layout / "blobs" / "sha256" / ("b" * 64))


def _unknown_algorithm(layout: Path) -> None:
    (layout / "blobs" / "md5").mkdir()


def _missing_index(layout: Path) -> None:
    (layout / "index.json").unlink()


def _dangling_index_entry(layout: Path) -> None:
    index = json.loads((layout / "index.json").read_bytes())
    (layout / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":", 1)[1]).unlink()


def _huge_index(layout: Path) -> None:
    index = json.loads((layout / "index.json").read_bytes())
    index["padding"] = "x" * MAX_MANIFEST_BYTES
    (layout / "index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("spoil", [
    _symlink_blob, _symlink_blobs_dir, _leftover_temp, _upper_case_name, _extra_top_level,
    _fifo_blob, _unknown_algorithm, _missing_index, _dangling_index_entry, _huge_index,
], ids=lambda f: f.__name__.lstrip("_"))
def test_odd_layouts_are_not_archived(store, tmp_path: Path, spoil) -> None:
    layout, _ = store
    spoil(layout)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(StoreError):
        write_layout_archive(layout, out_dir / "model.tar")
    assert list(out_dir.iterdir()) == []


@pytest.mark.slow
def test_archive_streams_big_blobs_in_constant_memory(model_dir: Path, tmp_path: Path) -> None:
    big = model_dir / "big.bin"
    with open(big, "wb") as handle:
        handle.writelines(bytes([i]) * MiB for i in range(32))
    layout = tmp_path / "store"
    digest = ocimodel.push(model_dir, f"oci:{layout}:v1").digest

    tracemalloc.start()
    try:
        archive = write_layout_archive(layout, tmp_path / "big.tar").path
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        out = extract_layout_archive(archive, tmp_path / "out")
        _, extract_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert write_peak < 8 * MiB and extract_peak < 8 * MiB, (write_peak, extract_peak)
    assert OciLayout(out).resolve("v1").digest == digest
    assert sha256_file(out / "blobs" / "sha256" / sha256_file(big).split(":", 1)[1]) == sha256_file(big)


# -- reading what we (and skopeo, and tar) wrote -------------------------------------------


def test_extract_round_trip(store, tmp_path: Path) -> None:
    layout, digest = store
    archive = write_layout_archive(layout, tmp_path / "model.tar").path
    out = extract_layout_archive(archive, tmp_path / "out")
    assert out == tmp_path / "out"

    opened = OciLayout(out)
    assert opened.resolve("v1").digest == digest
    assert opened.list_tags() == ["v1"]
    assert_blobs_verify(out)
    assert {p.relative_to(out) for p in out.rglob("*")} == {p.relative_to(layout) for p in layout.rglob("*")}
    for path in layout.rglob("*"):
        if path.is_file():
            assert (out / path.relative_to(layout)).read_bytes() == path.read_bytes()

    # and the extracted layout is a store ocimodel pulls the model out of
    pulled = ocimodel.pull(f"oci:{out}:v1", tmp_path / "pulled")
    assert pulled.digest == digest


def test_extract_reads_an_archive_written_by_skopeo(store, tmp_path: Path) -> None:
    layout, digest = store
    archive = tmp_path / "skopeo.tar"
    skopeo("copy", f"oci:{layout}:v1", f"oci-archive:{archive}:v1")
    out = extract_layout_archive(archive, tmp_path / "out")
    assert OciLayout(out).resolve("v1").digest == digest
    assert_blobs_verify(out)


def test_extract_reads_a_tar_made_with_dot_slash_names(store, tmp_path: Path) -> None:
    """``tar -C layout -cf x.tar .`` names members ``./blobs/...`` after a ``.`` entry."""
    layout, digest = store
    archive = tmp_path / "dot.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    with tarfile.open(archive) as tar:
        assert "./oci-layout" in tar.getnames()
    out = extract_layout_archive(archive, tmp_path / "out")
    assert OciLayout(out).resolve("v1").digest == digest


def test_extract_ignores_archive_modes(store, tmp_path: Path) -> None:
    layout, _ = store
    plain = extract_layout_archive(make_archive(tmp_path, layout_members(layout), "plain.tar"), tmp_path / "plain")
    members = layout_members(layout)
    for info, _ in members:
        info.mode = 0o6777  # setuid, setgid, world-writable
    out = extract_layout_archive(make_archive(tmp_path, members), tmp_path / "out")
    for path in out.rglob("*"):
        mode = path.stat().st_mode
        assert not mode & 0o7000, path
        assert mode == (plain / path.relative_to(out)).stat().st_mode, path


def test_extract_into_existing_empty_directory(store, tmp_path: Path) -> None:
    layout, digest = store
    archive = write_layout_archive(layout, tmp_path / "model.tar").path
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_layout_archive(archive, dest)
    assert OciLayout(dest).resolve("v1").digest == digest


def test_extract_refuses_a_non_empty_destination(store, tmp_path: Path) -> None:
    layout, _ = store
    archive = write_layout_archive(layout, tmp_path / "model.tar").path
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(DestinationExists):
        extract_layout_archive(archive, dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    with pytest.raises(DestinationExists):
        extract_layout_archive(archive, dest / "keep.txt")


# -- hostile archives ----------------------------------------------------------------------


def member(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, linkname: str = "",
           ) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def layout_members(layout: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    """The members write_layout_archive would write, as (info, bytes) to tamper with."""
    out = [member("oci-layout", (layout / "oci-layout").read_bytes()),
           member("index.json", (layout / "index.json").read_bytes()),
           member("blobs/", kind=tarfile.DIRTYPE), member("blobs/sha256/", kind=tarfile.DIRTYPE)]
    return out + [member(f"blobs/sha256/{p.name}", p.read_bytes()) for p in blob_files(layout)]


def make_archive(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], name: str = "evil.tar") -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    path = tmp_path / "in" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def _manifest_digest(layout: Path) -> str:
    return json.loads((layout / "index.json").read_bytes())["manifests"][0]["digest"]


def _a_blob_name(layout: Path) -> str:
    return f"blobs/sha256/{blob_files(layout)[0].name}"


def _named(members, name):
    return [m for m in members if m[0].name != name]


# Each case: the valid members -> hostile ones. Most add their member last, so that the
# refusal comes after real blobs were written and the clean-up is exercised.
HOSTILE = {
    "dotdot": (UnsafeArchive, lambda ms, lay: ms + [member("../x", b"escaped")]),
    "dotdot-inside": (UnsafeArchive, lambda ms, lay: ms + [member("blobs/../../x", b"escaped")]),
    "absolute": (UnsafeArchive, lambda ms, lay: ms + [member("/tmp/ocimodel-layout-archive-abs", b"x")]),
    "symlink": (UnsafeArchive, lambda ms, lay: [*_named(ms, _a_blob_name(lay)),
                                                member(_a_blob_name(lay), kind=tarfile.SYMTYPE,
                                                       linkname="/etc/passwd")]),
    "symlink-dir-then-file": (UnsafeArchive, lambda ms, lay: ms + [
        member("blobs/sha512", kind=tarfile.SYMTYPE, linkname="/tmp"),
        member("blobs/sha512/" + "0" * 128, b"through the link")]),
    "hardlink": (UnsafeArchive, lambda ms, lay: [*_named(ms, _a_blob_name(lay)),
                                                 member(_a_blob_name(lay), kind=tarfile.LNKTYPE,
                                                        linkname="oci-layout")]),
    "fifo": (UnsafeArchive, lambda ms, lay: ms + [member("blobs/sha256/" + "c" * 64, kind=tarfile.FIFOTYPE)]),
    "device": (UnsafeArchive, lambda ms, lay: ms + [member("blobs/sha256/" + "d" * 64, kind=tarfile.CHRTYPE)]),
    "blob-mismatch": (DigestMismatch, lambda ms, lay: [
        *_named(ms, _a_blob_name(lay)), member(_a_blob_name(lay), b"not the bytes of that digest")]),
    "unknown-file": (UnsafeArchive, lambda ms, lay: ms + [member("manifest.json", b"[]")]),
    "unknown-dir": (UnsafeArchive, lambda ms, lay: ms + [member("blobs/md5/", kind=tarfile.DIRTYPE)]),
    "upper-case-hex": (UnsafeArchive, lambda ms, lay: ms + [member("blobs/sha256/" + "A" * 64, b"x")]),
    "short-hex": (UnsafeArchive, lambda ms, lay: ms + [member("blobs/sha256/abc", b"x")]),
    "sha512-dir-with-sha256-hex": (UnsafeArchive, lambda ms, lay: ms + [member("blobs/sha512/" + "e" * 64, b"x")]),
    "blobs-as-a-file": (UnsafeArchive, lambda ms, lay: [member("blobs", b"x"), *ms]),
    "duplicate-index": (UnsafeArchive, lambda ms, lay: ms + [ms[1]]),
    "duplicate-blob": (UnsafeArchive, lambda ms, lay: ms + [ms[-1]]),
    "duplicate-dir": (UnsafeArchive, lambda ms, lay: ms + [member("./blobs/", kind=tarfile.DIRTYPE)]),
    "oversize-index": (ArchiveTooLarge, lambda ms, lay: [
        ms[0], member("index.json", ms[1][1] + b" " * (MAX_MANIFEST_BYTES + 1 - len(ms[1][1]))), *ms[2:]]),
    "oversize-oci-layout": (ArchiveTooLarge, lambda ms, lay: [
        member("oci-layout", b"{}" + b" " * MAX_MANIFEST_BYTES), *ms[1:]]),
    "missing-oci-layout": (InvalidLayoutArchive, lambda ms, lay: ms[1:]),
    "missing-index": (InvalidLayoutArchive, lambda ms, lay: _named(ms, "index.json")),
    "bad-layout-version": (InvalidLayoutArchive, lambda ms, lay: [
        member("oci-layout", b'{"imageLayoutVersion":"2.0.0"}'), *ms[1:]]),
    "oci-layout-without-version": (InvalidLayoutArchive, lambda ms, lay: [member("oci-layout", b"{}"), *ms[1:]]),
    "oci-layout-not-json": (InvalidLayoutArchive, lambda ms, lay: [member("oci-layout", b"\xff"), *ms[1:]]),
    "index-duplicate-keys": (InvalidLayoutArchive, lambda ms, lay: [
        ms[0], member("index.json", b'{"manifests":[],"manifests":[]}'), *ms[2:]]),
    "index-names-a-missing-blob": (InvalidLayoutArchive, lambda ms, lay: _named(
        ms, "blobs/sha256/" + _manifest_digest(lay).split(":", 1)[1])),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_nothing_is_left(store, tmp_path: Path, case: str) -> None:
    layout, _ = store
    error, build = HOSTILE[case]
    archive = make_archive(tmp_path, build(layout_members(layout), layout))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(error) as caught:
        extract_layout_archive(archive, out_dir / "dest")
    assert list(out_dir.iterdir()) == [], "the destination was not removed"
    assert not Path("/tmp/ocimodel-layout-archive-abs").exists()
    if isinstance(caught.value, UnsafePath):
        assert "member" in str(caught.value)  # the message names the member


def test_failure_leaves_an_existing_destination_empty(store, tmp_path: Path) -> None:
    layout, _ = store
    archive = make_archive(tmp_path, layout_members(layout) + [member("../x", b"escaped")])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeArchive):
        extract_layout_archive(archive, dest)
    assert dest.is_dir() and list(dest.iterdir()) == []
    assert not (tmp_path / "x").exists()


def test_blob_mismatch_is_an_integrity_error_naming_the_member(store, tmp_path: Path) -> None:
    layout, _ = store
    _, build = HOSTILE["blob-mismatch"]
    archive = make_archive(tmp_path, build(layout_members(layout), layout))
    with pytest.raises(DigestMismatch) as caught:
        extract_layout_archive(archive, tmp_path / "dest")
    assert _a_blob_name(layout).rsplit("/", 1)[1] in str(caught.value)
    assert str(archive) in str(caught.value)
    assert "archive" in (caught.value.hint or "")


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _trailing_garbage(data: bytes) -> bytes:
    return data + b"hidden data after the end"


def _not_a_tar(data: bytes) -> bytes:
    return b"this is not a tar archive at all" * 64


def _gzip_bad_crc(data: bytes) -> bytes:
    zipped = bytearray(gzip.compress(data, mtime=0))
    zipped[-8] ^= 0xFF  # the CRC32 in the trailer
    return bytes(zipped)


def _gzip_truncated(data: bytes) -> bytes:
    zipped = gzip.compress(data, mtime=0)
    return zipped[: len(zipped) - 100]


def _empty(data: bytes) -> bytes:
    return b""


@pytest.mark.parametrize("spoil", [_truncated, _trailing_garbage, _not_a_tar, _gzip_bad_crc, _gzip_truncated, _empty],
                         ids=lambda f: f.__name__.lstrip("_"))
def test_corrupt_archive_is_refused(store, tmp_path: Path, spoil) -> None:
    layout, _ = store
    good = write_layout_archive(layout, tmp_path / "good.tar").path
    bad = tmp_path / "bad.tar"
    bad.write_bytes(spoil(good.read_bytes()))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(InvalidArchive):
        extract_layout_archive(bad, out_dir / "dest")
    assert list(out_dir.iterdir()) == []


def test_missing_archive_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        extract_layout_archive(tmp_path / "nope.tar", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
