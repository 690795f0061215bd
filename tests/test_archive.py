"""Tar layers (docs/threats.md 10): extract_tar_stream on crafted archives, and pulls of
modctl-style, ORAS-style and malicious archive layers from the real registry."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import ocimodel
from ocimodel.errors import DigestMismatch, IntegrityError, NotAModel, UnsafePath
from ocimodel.oci.models import Descriptor, Manifest
from ocimodel.packaging.archive import (
    MAX_HEADER_RECORD_BYTES,
    ArchiveTooLarge,
    ExtractLimits,
    InvalidArchive,
    UnsafeArchive,
    extract_tar_stream,
)
from ocimodel.packaging.unpack import archive_compression, plan_files
from tests.support.files import tree_digest
from tests.support.registry import LocalRegistry

MiB = 1 << 20

# -- building archives -------------------------------------------------------------------


def member(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, mode: int = 0o644,
           linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    return info, data


def make_tar(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return buf.getvalue()


def files(*pairs: tuple[str, bytes]) -> bytes:
    return make_tar(*(member(name, data) for name, data in pairs))


def chunked(data: bytes, size: int = 7001) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: file -> bytes, directory -> None (symlinks fail loudly)."""
    out: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        assert not path.is_symlink(), path
        out[path.relative_to(root).as_posix()] = None if path.is_dir() else path.read_bytes()
    return out


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    root = tmp_path / "staging"
    root.mkdir()
    return root


# -- normal archives ---------------------------------------------------------------------


def test_nested_files_and_directories(staging: Path) -> None:
    weights = os.urandom(3 * MiB + 17)
    data = make_tar(
        member("model", kind=tarfile.DIRTYPE, mode=0o755),
        member("model/config.json", b'{"a": 1}\n'),
        member("model/sub/deeper/weights.bin", weights),
        member("model/empty", kind=tarfile.DIRTYPE),
        member("model/zero.txt", b""),
    )
    entries = extract_tar_stream(chunked(data), staging, prefix="model")
    assert tree(staging) == {
        "model": None,
        "model/config.json": b'{"a": 1}\n',
        "model/empty": None,
        "model/sub": None,
        "model/sub/deeper": None,
        "model/sub/deeper/weights.bin": weights,
        "model/zero.txt": b"",
    }
    by_path = {e.relpath: e for e in entries}
    assert by_path["model/sub/deeper/weights.bin"].size == len(weights)
    assert by_path["model/sub/deeper/weights.bin"].kind == "file"
    assert by_path["model/empty"].kind == "dir"


def test_gzip_stream_in_tiny_chunks(staging: Path) -> None:
    data = gzip.compress(files(("a/b.txt", b"hello" * 1000), ("a/c.txt", b"world")))
    extract_tar_stream(chunked(data, 3), staging, compression="gzip")
    assert tree(staging) == {"a": None, "a/b.txt": b"hello" * 1000, "a/c.txt": b"world"}


def test_leading_dot_slash_is_stripped(staging: Path) -> None:
    data = make_tar(member("./", kind=tarfile.DIRTYPE), member("./ok", b"fine"), member("./d/x", b"x"))
    extract_tar_stream([data], staging)
    assert tree(staging) == {"ok": b"fine", "d": None, "d/x": b"x"}


def test_empty_archive(staging: Path) -> None:
    assert extract_tar_stream([make_tar()], staging) == []
    assert tree(staging) == {}


def test_gnu_and_ustar_formats_and_long_names(staging: Path) -> None:
    long = "d/" + "x" * 200 + "/file.txt"
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        root = staging / str(fmt)
        root.mkdir()
        extract_tar_stream([make_tar(member(long, b"long"), fmt=fmt)], root)
        assert (root / long).read_bytes() == b"long"
    root = staging / "ustar"
    root.mkdir()
    extract_tar_stream([make_tar(member("u/v.txt", b"v"), fmt=tarfile.USTAR_FORMAT)], root)
    assert (root / "u/v.txt").read_bytes() == b"v"


def test_modes_are_masked(staging: Path) -> None:
    data = make_tar(
        member("setuid", b"#!/bin/sh\n", mode=0o4755),
        member("setgid-sticky", b"x", mode=0o3777),
        member("group-writable", b"x", mode=0o664),
        member("read-only", b"x", mode=0o400),
    )
    entries = {e.relpath: e.mode for e in extract_tar_stream([data], staging)}
    expected = {"setuid": 0o755, "setgid-sticky": 0o755, "group-writable": 0o644, "read-only": 0o600}
    assert entries == expected
    for name, mode in expected.items():
        assert (staging / name).stat().st_mode & 0o7777 == mode, name


def test_iterator_is_read_to_the_end(staging: Path) -> None:
    """The engine's verifying iterator checks the digest after its last chunk: extraction
    must pull it to the end even though the tar ended earlier (end-of-archive padding)."""
    data = files(("f", b"data"))
    state = {"finished": False}

    def source() -> Iterator[bytes]:
        yield from chunked(data, 100)
        state["finished"] = True

    extract_tar_stream(source(), staging)
    assert state["finished"]


def test_error_at_end_of_stream_propagates(staging: Path) -> None:
    """A digest mismatch is raised by the iterator only after the tar is complete."""

    class Mismatch(IntegrityError):
        pass

    data = files(("f", b"data"))

    def source() -> Iterator[bytes]:
        yield data
        raise Mismatch("digest mismatch for layer")

    with pytest.raises(Mismatch):
        extract_tar_stream(source(), staging)


# -- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../x", "a/../../x", "/abs", "/etc/passwd", "a\\b", "a/./b", "a//b", "..", "x\x01y"],
)
def test_unsafe_names_are_refused(tmp_path: Path, staging: Path, name: str) -> None:
    with pytest.raises(UnsafeArchive) as info:
        extract_tar_stream([files(("ok", b"1"), (name, b"evil"))], staging)
    assert isinstance(info.value, UnsafePath)  # what callers catch
    assert repr(name) in info.value.message
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["staging"]


def test_nul_in_pax_path_is_refused(staging: Path) -> None:
    info, content = member("placeholder", b"x")
    info.pax_headers = {"path": "a\x00b"}
    data = make_tar((info, content))
    with pytest.raises(UnsafeArchive):
        extract_tar_stream([data], staging)


def test_duplicate_names_are_refused(staging: Path) -> None:
    with pytest.raises(UnsafeArchive, match="same path twice"):
        extract_tar_stream([files(("a.txt", b"1"), ("a.txt", b"2"))], staging)


@pytest.mark.parametrize(
    "first, second",
    [
        ("Model.bin", "model.bin"),
        (unicodedata.normalize("NFC", "caf\u00e9"), unicodedata.normalize("NFD", "caf\u00e9")),
        ("STRASSE", "stra\u00dfe"),
    ],
)
def test_names_equal_after_folding_are_refused(staging: Path, first: str, second: str) -> None:
    assert first != second
    with pytest.raises(UnsafeArchive, match="same path twice"):
        extract_tar_stream([files((first, b"1"), (second, b"2"))], staging)


def test_file_used_as_directory_is_refused(staging: Path) -> None:
    with pytest.raises(UnsafeArchive, match="as a file and as a directory"):
        extract_tar_stream([files(("a", b"file"), ("a/b", b"under a file"))], staging)
    other = staging.parent / "other"
    other.mkdir()
    with pytest.raises(UnsafeArchive, match="as a file and as a directory"):
        extract_tar_stream([files(("a/b", b"1"), ("A", b"file over a directory"))], other)


# -- member types ------------------------------------------------------------------------


def test_symlink_to_etc_passwd_is_refused(staging: Path) -> None:
    data = make_tar(member("passwd", kind=tarfile.SYMTYPE, linkname="/etc/passwd"))
    with pytest.raises(UnsafeArchive, match=r"member 'passwd' is a symlink \(to '/etc/passwd'\)"):
        extract_tar_stream([data], staging)
    assert tree(staging) == {}


def test_relative_symlink_inside_is_refused_too(staging: Path) -> None:
    data = make_tar(member("a", b"x"), member("b", kind=tarfile.SYMTYPE, linkname="a"))
    with pytest.raises(UnsafeArchive, match="symlink"):
        extract_tar_stream([data], staging)


def test_symlink_then_file_through_it(tmp_path: Path, staging: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    data = make_tar(
        member("link", kind=tarfile.SYMTYPE, linkname=str(outside)),
        member("link/evil.txt", b"pwned"),
    )
    with pytest.raises(UnsafeArchive, match="symlink"):
        extract_tar_stream([data], staging)
    assert list(outside.iterdir()) == []
    assert not (staging / "link").exists() and not (staging / "link").is_symlink()


def test_hardlink_is_refused(tmp_path: Path, staging: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"secret")
    data = make_tar(member("h", kind=tarfile.LNKTYPE, linkname=str(target)), member("h2", b"x"))
    with pytest.raises(UnsafeArchive, match=r"member 'h' is a hardlink"):
        extract_tar_stream([data], staging)
    data = make_tar(member("a", b"x"), member("b", kind=tarfile.LNKTYPE, linkname="a"))
    other = tmp_path / "inside-link"
    other.mkdir()
    with pytest.raises(UnsafeArchive, match="hardlink"):
        extract_tar_stream([data], other)
    assert target.read_bytes() == b"secret"


@pytest.mark.parametrize(
    "kind, what",
    [(tarfile.CHRTYPE, "a device"), (tarfile.BLKTYPE, "a device"), (tarfile.FIFOTYPE, "a fifo"),
     (b"Z", "unsupported type")],
)
def test_devices_fifos_and_unknown_types_are_refused(staging: Path, kind: bytes, what: str) -> None:
    info, content = member("special", kind=kind)
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    with pytest.raises(UnsafeArchive, match=what):
        extract_tar_stream([make_tar((info, content))], staging)
    assert tree(staging) == {}


def test_gnu_sparse_member_is_refused(staging: Path) -> None:
    data = make_tar(member("sparse", kind=tarfile.GNUTYPE_SPARSE), fmt=tarfile.GNU_FORMAT)
    with pytest.raises(UnsafeArchive, match="sparse"):
        extract_tar_stream([data], staging)


# -- bombs and limits --------------------------------------------------------------------


def test_gzip_bomb_hits_max_total_bytes(staging: Path) -> None:
    bomb = gzip.compress(files(("zeros.bin", bytes(50 * MiB))), compresslevel=9)
    assert len(bomb) < 100 * 1024  # ~50 KiB on the wire
    with pytest.raises(ArchiveTooLarge, match="more than 1048576 bytes") as info:
        extract_tar_stream(chunked(bomb, 64 * 1024), staging, compression="gzip",
                           limits=ExtractLimits(max_total_bytes=MiB))
    assert isinstance(info.value, UnsafePath)
    assert sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) <= MiB


def test_total_bytes_are_counted_across_members(staging: Path) -> None:
    data = files(*((f"f{i}", bytes(300 * 1024)) for i in range(5)))
    with pytest.raises(ArchiveTooLarge):
        extract_tar_stream([data], staging, limits=ExtractLimits(max_total_bytes=MiB))


def test_zero_padding_bomb_after_the_end_is_refused(staging: Path) -> None:
    """Data no member accounts for (here 64 MiB of zeros after the archive) is bounded too."""
    bomb = gzip.compress(files(("a", b"x")) + bytes(64 * MiB), compresslevel=9)
    with pytest.raises(ArchiveTooLarge, match="more data than its members account for"):
        extract_tar_stream([bomb], staging, compression="gzip")


def test_too_many_members(staging: Path) -> None:
    data = files(*((f"f{i}", b"") for i in range(11)))
    with pytest.raises(ArchiveTooLarge, match="more than 10 members"):
        extract_tar_stream([data], staging, limits=ExtractLimits(max_members=10))
    other = staging.parent / "ten"
    other.mkdir()
    assert len(extract_tar_stream([files(*((f"f{i}", b"") for i in range(10)))], other,
                                  limits=ExtractLimits(max_members=10))) == 10


def test_huge_pax_header_is_refused_before_it_is_read(staging: Path) -> None:
    info, content = member("a", b"x")
    info.pax_headers = {"comment": "c" * (MAX_HEADER_RECORD_BYTES + 1)}
    with pytest.raises(ArchiveTooLarge, match="header record"):
        extract_tar_stream([make_tar((info, content))], staging)


# -- corrupt streams ---------------------------------------------------------------------


def test_not_a_tar(staging: Path) -> None:
    with pytest.raises(InvalidArchive):
        extract_tar_stream([b"this is not a tar archive" * 100], staging)
    with pytest.raises(InvalidArchive):
        extract_tar_stream([b""], staging)


def test_truncated_gzip(staging: Path) -> None:
    data = gzip.compress(files(("a", os.urandom(100_000))))
    with pytest.raises(InvalidArchive):
        extract_tar_stream([data[: len(data) // 2]], staging, compression="gzip")


def test_gzip_crc_mismatch(staging: Path) -> None:
    data = bytearray(gzip.compress(files(("a", b"payload"))))
    data[-8] ^= 0xFF  # CRC32 in the gzip trailer
    with pytest.raises(InvalidArchive):
        extract_tar_stream([bytes(data)], staging, compression="gzip")


def test_truncated_member_data(staging: Path) -> None:
    data = files(("a", os.urandom(10_000)))
    with pytest.raises(InvalidArchive):
        extract_tar_stream([data[:5000]], staging)


def test_corrupt_header_after_first_member(staging: Path) -> None:
    """tarfile alone would stop at the bad header and report success."""
    first = files(("a", b"x"))[:1024]  # header + one data block, no end marker
    second = bytearray(files(("b", b"y"))[:1024])
    second[148:156] = b"garbage!"  # header checksum field
    with pytest.raises(InvalidArchive, match="corrupt or truncated member header"):
        extract_tar_stream([first + bytes(second) + bytes(1024)], staging)


def test_data_after_end_of_archive(staging: Path) -> None:
    data = files(("a", b"x")) + b"hidden" * 100
    with pytest.raises(InvalidArchive, match="after the end"):
        extract_tar_stream([data], staging)
    other = staging.parent / "gz"
    other.mkdir()
    data = gzip.compress(files(("a", b"x"))) + b"not gzip"
    with pytest.raises(InvalidArchive):
        extract_tar_stream([data], other, compression="gzip")


def test_zero_padded_gzip_and_concatenated_members_are_accepted(staging: Path) -> None:
    tar = files(("a", b"x" * 5000))
    data = gzip.compress(tar[:3000]) + gzip.compress(tar[3000:]) + bytes(512)
    extract_tar_stream([data], staging, compression="gzip")
    assert (staging / "a").read_bytes() == b"x" * 5000


# -- tar+zstd (zstandard is in the test extra: these run, never skip) ----------------------


def _zstd():
    """The zstandard module; its absence fails the zstd tests (it is a test dependency)."""
    try:
        import zstandard
    except ImportError:  # pragma: no cover - the test extra installs it
        pytest.fail("zstandard is not installed: it is in the test extra (make test / pip install -e '.[test]')")
    return zstandard


def zstd_compress(data: bytes, level: int = 3) -> bytes:
    return _zstd().ZstdCompressor(level=level).compress(data)


def test_zstd_stream_in_tiny_chunks(staging: Path) -> None:
    data = zstd_compress(files(("a/b.txt", b"hello" * 1000), ("a/c.txt", b"world")))
    extract_tar_stream(chunked(data, 3), staging, compression="zstd")
    assert tree(staging) == {"a": None, "a/b.txt": b"hello" * 1000, "a/c.txt": b"world"}


def test_zstd_concatenated_frames_are_accepted(staging: Path) -> None:
    tar = files(("a", b"x" * 5000))
    data = zstd_compress(tar[:3000]) + zstd_compress(tar[3000:])
    extract_tar_stream([data], staging, compression="zstd")
    assert (staging / "a").read_bytes() == b"x" * 5000


def test_zstd_bomb_hits_max_total_bytes(staging: Path) -> None:
    bomb = zstd_compress(files(("zeros.bin", bytes(50 * MiB))), level=19)
    assert len(bomb) < 100 * 1024  # a few KiB on the wire
    with pytest.raises(ArchiveTooLarge, match="more than 1048576 bytes") as info:
        extract_tar_stream(chunked(bomb, 64 * 1024), staging, compression="zstd",
                           limits=ExtractLimits(max_total_bytes=MiB))
    assert isinstance(info.value, UnsafePath)
    assert sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) <= MiB


def test_zstd_zero_padding_bomb_after_the_end_is_refused(staging: Path) -> None:
    bomb = zstd_compress(files(("a", b"x")) + bytes(64 * MiB), level=19)
    with pytest.raises(ArchiveTooLarge, match="more data than its members account for"):
        extract_tar_stream([bomb], staging, compression="zstd")


def test_truncated_zstd(staging: Path) -> None:
    data = zstd_compress(files(("a", os.urandom(100_000))))
    with pytest.raises(InvalidArchive, match="zstd"):
        extract_tar_stream([data[: len(data) // 2]], staging, compression="zstd")


def test_corrupt_zstd_is_an_invalid_archive(staging: Path) -> None:
    """Not zstd at all, and a frame whose content checksum fails: a typed error, not the
    decompressor's own exception."""
    with pytest.raises(InvalidArchive, match="zstd"):
        extract_tar_stream([b"this is not zstd" * 100], staging, compression="zstd")
    other = staging.parent / "checksum"
    other.mkdir()
    data = bytearray(_zstd().ZstdCompressor(write_checksum=True).compress(files(("a", os.urandom(1000)))))
    data[-1] ^= 0xFF  # the frame's content checksum
    with pytest.raises(InvalidArchive, match="zstd"):
        extract_tar_stream([bytes(data)], other, compression="zstd")


def test_data_after_the_end_of_a_zstd_stream(staging: Path) -> None:
    data = zstd_compress(files(("a", b"x"))) + b"not zstd"
    with pytest.raises(InvalidArchive):
        extract_tar_stream([data], staging, compression="zstd")


def test_zstd_without_zstandard(staging: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python without zstandard (it is optional for users): a tar+zstd layer is refused
    with a hint, before any byte is written."""
    monkeypatch.setitem(sys.modules, "zstandard", None)  # `import zstandard` raises ImportError
    with pytest.raises(NotAModel, match="zstd") as info:
        extract_tar_stream([zstd_bytes_for_missing_module()], staging, compression="zstd")
    assert "zstandard" in (info.value.hint or "")
    with pytest.raises(NotAModel, match="zstd"):
        archive_compression(_layer("application/vnd.cncf.model.weight.v1.tar+zstd", {}), "x")
    assert tree(staging) == {}


def zstd_bytes_for_missing_module() -> bytes:
    return b"\x28\xb5\x2f\xfd"  # the zstd frame magic


# -- the declared path (prefix) ----------------------------------------------------------


def test_member_outside_prefix_is_refused(staging: Path) -> None:
    with pytest.raises(UnsafeArchive, match="outside the layer's declared path 'weights'"):
        extract_tar_stream([files(("weights/a", b"1"), ("config.json", b"{}"))], staging, prefix="weights")
    with pytest.raises(UnsafeArchive, match="outside"):
        extract_tar_stream([files(("weightsX/a", b"1"))], staging, prefix="weights")
    assert not (staging / "config.json").exists()


def test_single_file_named_by_relative_path(staging: Path) -> None:
    """modctl build: member name == filepath annotation, relative to the model root."""
    entries = extract_tar_stream([files(("tok/tokenizer.json", b"{}"))], staging, prefix="tok/tokenizer.json")
    assert [e.relpath for e in entries] == ["tok/tokenizer.json"]


def test_single_file_named_by_base_name(staging: Path) -> None:
    """Older modctl and `modctl attach`: the member is named by its base name only."""
    entries = extract_tar_stream([files(("tokenizer.json", b"{}"))], staging, prefix="tok/tokenizer.json")
    assert [e.relpath for e in entries] == ["tok/tokenizer.json"]
    assert (staging / "tok/tokenizer.json").read_bytes() == b"{}"


def test_base_name_mode_still_confines_members(staging: Path) -> None:
    with pytest.raises(UnsafeArchive, match="outside"):
        extract_tar_stream([files(("tokenizer.json", b"{}"), ("other.json", b"{}"))], staging,
                           prefix="tok/tokenizer.json")


def test_ancestor_directories_of_prefix_are_skipped(staging: Path) -> None:
    data = make_tar(
        member("a", kind=tarfile.DIRTYPE),
        member("a/b", kind=tarfile.DIRTYPE),
        member("a/b/c.bin", b"c"),
    )
    entries = extract_tar_stream([data], staging, prefix="a/b/c.bin")
    assert [e.relpath for e in entries] == ["a/b/c.bin"]


# -- plan_files --------------------------------------------------------------------------


def _layer(media_type: str, annotations: dict[str, str]) -> Descriptor:
    return Descriptor(mediaType=media_type, digest="sha256:" + "ab" * 32, size=10, annotations=annotations)


@pytest.mark.parametrize(
    "media_type, annotations, expected",
    [
        ("application/vnd.cncf.model.weight.v1.raw", {}, None),
        ("application/vnd.cncf.model.weight.v1.tar", {}, "none"),
        ("application/vnd.cncf.model.doc.v1.tar+gzip", {}, "gzip"),
        ("application/vnd.cnai.model.weight.config.v1.tar", {}, "none"),
        ("application/vnd.cnai.model.code.v1.tar+gzip", {}, "gzip"),
        ("application/vnd.oci.image.layer.v1.tar+gzip", {"io.deis.oras.content.unpack": "true"}, "gzip"),
        ("application/vnd.oci.image.layer.v1.tar", {"io.deis.oras.content.unpack": "true"}, "none"),
        # oras-py's directory: marked by the media type alone (its pull extracts it)
        ("application/vnd.oci.image.layer.v1.tar+gzip", {}, "gzip"),
        ("application/vnd.oci.image.layer.v1.tar", {}, None),  # oras-py's plain file
        ("application/vnd.oci.image.layer.v1.tar+gzip", {"io.deis.oras.content.unpack": "false"}, None),
    ],
)
def test_archive_compression(media_type: str, annotations: dict[str, str], expected: str | None) -> None:
    assert archive_compression(_layer(media_type, annotations), "x") == expected


def test_archive_compression_refusals() -> None:
    with pytest.raises(NotAModel, match="packing"):
        archive_compression(_layer("application/vnd.cncf.model.weight.v1.tar+lz4", {}), "x")
    with pytest.raises(NotAModel, match="refusing to guess"):
        archive_compression(
            _layer("application/vnd.cncf.model.weight.v1.raw", {"io.deis.oras.content.unpack": "true"}), "x"
        )
    _zstd()
    assert archive_compression(_layer("application/vnd.cncf.model.weight.v1.tar+zstd", {}), "x") == "zstd"


def test_plan_refuses_raw_file_inside_archive_root() -> None:
    manifest = Manifest(
        schemaVersion=2,
        config=Descriptor.for_bytes("application/vnd.cncf.model.config.v1+json", b"{}"),
        layers=[
            Descriptor.for_bytes("application/vnd.cncf.model.weight.v1.tar", b"t1",
                                 {"org.cncf.model.filepath": "tokenizer"}),
            Descriptor.for_bytes("application/vnd.cncf.model.weight.v1.raw", b"r1",
                                 {"org.cncf.model.filepath": "Tokenizer/vocab.json"}),
        ],
    )
    with pytest.raises(UnsafePath, match="as a file and as a directory"):
        plan_files(manifest)


# -- end to end through the registry -----------------------------------------------------

MODEL_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODEL_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_artifact(
    registry: LocalRegistry,
    repo: str,
    tag: str,
    layers: list[tuple[str, bytes, dict[str, str]]],
    *,
    config: tuple[str, bytes] = (MODEL_CONFIG, b'{"descriptor":{"name":"t"},"modelfs":{"type":"layers","diffIds":[]}}'),
    artifact_type: str | None = MODEL_ARTIFACT,
) -> dict:
    """Upload blobs (POST + PUT ?digest=) and PUT a hand-built manifest."""
    with httpx.Client(base_url=registry.url) as client:
        for data in [config[1], *(blob for _, blob, _ in layers)]:
            r = client.post(f"/v2/{repo}/blobs/uploads/")
            assert r.status_code == 202, r.text
            location = httpx.URL(registry.url).join(r.headers["Location"])
            r = client.put(location.copy_merge_params({"digest": _digest(data)}), content=data,
                           headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
        manifest: dict = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": config[0], "digest": _digest(config[1]), "size": len(config[1])},
            "layers": [
                {"mediaType": mt, "digest": _digest(blob), "size": len(blob), "annotations": ann}
                for mt, blob, ann in layers
            ],
        }
        if artifact_type:
            manifest["artifactType"] = artifact_type
        body = json.dumps(manifest).encode()
        r = client.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
    return manifest


def go_style_tar(root: Path, relpath: str) -> bytes:
    """A tar like modctl's archiver.Tar: one header per path, named relative to the model
    root, the directory itself first when ``relpath`` is a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        top = root / relpath
        paths = [top] + (sorted(top.rglob("*")) if top.is_dir() else [])
        for path in paths:
            info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.uid = info.gid = 1000
            info.uname = info.gname = "builder"
            if path.is_file():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return buf.getvalue()


def file_metadata(root: Path, relpath: str) -> str:
    st = (root / relpath).stat()
    return json.dumps({"name": Path(relpath).name, "mode": st.st_mode & 0o777, "uid": 0, "gid": 0,
                       "size": st.st_size, "mtime": "2025-01-01T00:00:00Z", "typeflag": 0})


def test_pull_modctl_style_tar_layers(registry: LocalRegistry, repo_name: str, model_dir: Path,
                                      tmp_path: Path) -> None:
    def weight(kind: str, packing: str = "tar") -> str:
        return f"application/vnd.cncf.model.{kind}.v1.{packing}"

    old_modctl = io.BytesIO()  # member named by base name only, filepath carries the directory
    with tarfile.open(fileobj=old_modctl, mode="w") as tar:
        tar.add(str(model_dir / "data/eval.csv"), arcname="eval.csv")

    layers = [
        (weight("weight"), go_style_tar(model_dir, "model.safetensors"),
         {"org.cncf.model.filepath": "model.safetensors",
          "org.cncf.model.file.metadata+json": file_metadata(model_dir, "model.safetensors")}),
        # tar+zstd
        (weight("weight.config", "tar+zstd"), zstd_compress(go_style_tar(model_dir, "config.json")),
         {"org.cncf.model.filepath": "config.json"}),
        # a directory in one tar layer
        (weight("weight.config"), go_style_tar(model_dir, "tokenizer"),
         {"org.cncf.model.filepath": "tokenizer"}),
        # legacy cnai names
        ("application/vnd.cnai.model.doc.v1.tar", go_style_tar(model_dir, "README.md"),
         {"org.cnai.model.filepath": "README.md"}),
        # tar+gzip, nested path
        (weight("code", "tar+gzip"), gzip.compress(go_style_tar(model_dir, "src/train.py")),
         {"org.cncf.model.filepath": "src/train.py"}),
        (weight("dataset"), old_modctl.getvalue(), {"org.cncf.model.filepath": "data/eval.csv"}),
        # a raw layer in the same model
        (weight("doc", "raw"), (model_dir / "empty.txt").read_bytes(),
         {"org.cncf.model.filepath": "empty.txt", "org.opencontainers.image.title": "empty.txt"}),
    ]
    push_artifact(registry, repo_name, "v1", layers)
    dest = tmp_path / "out"
    result = ocimodel.pull(f"{registry.host}/{repo_name}:v1", dest)
    assert tree_digest(dest) == tree_digest(model_dir)
    assert (dest / "src/train.py").stat().st_mode & 0o777 == 0o755
    assert result.bytes_downloaded == sum(len(blob) for _, blob, _ in layers)
    assert not list(tmp_path.glob(".ocimodel-pull-*"))

    # Pulling again over the result works (archives are always fetched again).
    again = ocimodel.pull(f"{registry.host}/{repo_name}:v1", dest)
    assert tree_digest(dest) == tree_digest(model_dir)
    assert again.files_unchanged == 1  # the raw layer


def test_pull_oras_style_directory_layer(registry: LocalRegistry, repo_name: str, model_dir: Path,
                                         tmp_path: Path) -> None:
    """The exact tarball oras-py builds for a directory (members `<dir>/...`), marked for
    unpacking as oras-go does."""
    import oras.utils

    targz = Path(oras.utils.make_targz(str(model_dir / "tokenizer"), str(tmp_path / "tok.tar.gz")))
    layers = [
        ("application/vnd.oci.image.layer.v1.tar+gzip", targz.read_bytes(),
         {"org.opencontainers.image.title": "tokenizer", "io.deis.oras.content.unpack": "true"}),
        ("application/vnd.oci.image.layer.v1.tar", (model_dir / "README.md").read_bytes(),
         {"org.opencontainers.image.title": "README.md"}),
    ]
    push_artifact(registry, repo_name, "v1", layers,
                  config=("application/vnd.unknown.config.v1+json", b"{}"), artifact_type=None)
    dest = tmp_path / "out"
    ocimodel.pull(f"{registry.host}/{repo_name}:v1", dest)
    expected = {k: v for k, v in tree_digest(model_dir).items() if k.startswith("tokenizer/") or k == "README.md"}
    assert tree_digest(dest) == expected


def test_oras_py_directory_push(registry: LocalRegistry, repo_name: str, model_dir: Path,
                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """oras-py (0.2.x) pushes a directory as tar+gzip with a title but WITHOUT the
    unpack annotation (oras-go sets it), and its own pull extracts every layer of that
    media type: ocimodel pulls it as the directory too (tests/test_peers.py compares
    with oras-py's own pull)."""
    import oras.client

    monkeypatch.chdir(model_dir)
    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    client.push(target=f"{registry.host}/{repo_name}:v1", files=["tokenizer"], disable_path_validation=True,
                quiet=True)
    dest = tmp_path / "out"
    ocimodel.pull(f"{registry.host}/{repo_name}:v1", dest)
    expected = {k: v for k, v in tree_digest(model_dir).items() if k.startswith("tokenizer/")}
    assert {k: d for k, (d, _) in tree_digest(dest).items()} == {k: d for k, (d, _) in expected.items()}


def assert_no_staging_left(parent: Path) -> None:
    assert not list(parent.glob(".ocimodel-pull-*")), "staging directory left behind"


def test_pull_malicious_tar_layer_writes_nothing(registry: LocalRegistry, repo_name: str,
                                                 tmp_path: Path) -> None:
    evil = make_tar(
        member("weights", kind=tarfile.DIRTYPE),
        member("weights/a.bin", b"a" * 100_000),
        member("weights/escape", kind=tarfile.SYMTYPE, linkname="/etc"),
        member("weights/escape/passwd", b"root::0:0::/:/bin/sh\n"),
    )
    layers = [
        ("application/vnd.cncf.model.doc.v1.raw", b"# readme\n", {"org.cncf.model.filepath": "README.md"}),
        ("application/vnd.cncf.model.weight.v1.tar", evil, {"org.cncf.model.filepath": "weights"}),
        ("application/vnd.cncf.model.doc.v1.raw", b"license\n", {"org.cncf.model.filepath": "LICENSE"}),
    ]
    push_artifact(registry, repo_name, "v1", layers)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchive, match="symlink"):
        ocimodel.pull(f"{registry.host}/{repo_name}:v1", dest, concurrency=1)
    assert not dest.exists() or list(dest.iterdir()) == []
    assert_no_staging_left(tmp_path)

    # Same with parallel downloads: the raw layers finish, the archive fails, nothing lands.
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match="symlink"):
        ocimodel.pull(f"{registry.host}/{repo_name}:v1", dest, concurrency=4)
    assert list(dest.iterdir()) == []
    assert_no_staging_left(tmp_path)


def test_pull_tar_layer_altered_in_storage(registry: LocalRegistry, repo_name: str, tmp_path: Path) -> None:
    """The registry serves a still-valid tar with other bytes: extraction succeeds, the
    digest check at the end of the stream fails, and nothing reaches the destination."""
    good = files(("w/a.bin", b"A" * 50_000))
    layers = [("application/vnd.cncf.model.weight.v1.tar", good, {"org.cncf.model.filepath": "w"})]
    push_artifact(registry, repo_name, "v1", layers)
    blob = registry.blob_path(_digest(good))
    blob.write_bytes(good.replace(b"A" * 50_000, b"B" * 50_000))
    dest = tmp_path / "out"
    with pytest.raises(DigestMismatch):
        ocimodel.pull(f"{registry.host}/{repo_name}:v1", dest)
    assert not dest.exists() or list(dest.iterdir()) == []
    assert_no_staging_left(tmp_path)


@pytest.mark.parametrize("packing", ["tar+gzip", "tar+zstd"])
def test_pull_bomb_layer_is_bounded(registry: LocalRegistry, repo_name: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, packing: str) -> None:
    from ocimodel.packaging import unpack

    monkeypatch.setattr(unpack, "ExtractLimits", lambda: ExtractLimits(max_total_bytes=MiB))
    tar = files(("z/zeros", bytes(20 * MiB)))
    bomb = gzip.compress(tar, compresslevel=9) if packing == "tar+gzip" else zstd_compress(tar, level=19)
    push_artifact(registry, repo_name, "v1",
                  [(f"application/vnd.cncf.model.dataset.v1.{packing}", bomb, {"org.cncf.model.filepath": "z"})])
    dest = tmp_path / "out"
    with pytest.raises(ArchiveTooLarge):
        ocimodel.pull(f"{registry.host}/{repo_name}:v1", dest)
    assert not dest.exists()
    assert_no_staging_left(tmp_path)


def test_pull_refuses_symlink_in_destination_where_archive_writes(
    registry: LocalRegistry, repo_name: str, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "tok").symlink_to(outside)
    layers = [
        ("application/vnd.cncf.model.doc.v1.raw", b"# readme\n", {"org.cncf.model.filepath": "README.md"}),
        ("application/vnd.cncf.model.weight.config.v1.tar", files(("tok/vocab.json", b"{}")),
         {"org.cncf.model.filepath": "tok"}),
    ]
    push_artifact(registry, repo_name, "v1", layers)
    with pytest.raises(UnsafePath, match="symlink"):
        ocimodel.pull(f"{registry.host}/{repo_name}:v1", dest)
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in dest.iterdir()) == ["tok"]  # README.md not written either
    assert_no_staging_left(tmp_path)


def test_pull_refuses_layers_that_collide(registry: LocalRegistry, repo_name: str, tmp_path: Path) -> None:
    layers = [
        ("application/vnd.cncf.model.weight.config.v1.tar", files(("tok/vocab.json", b"{}")),
         {"org.cncf.model.filepath": "tok"}),
        ("application/vnd.cncf.model.weight.config.v1.raw", b"{}", {"org.cncf.model.filepath": "tok/vocab.json"}),
    ]
    push_artifact(registry, repo_name, "v1", layers)
    dest = tmp_path / "out"
    with pytest.raises(UnsafePath):
        ocimodel.pull(f"{registry.host}/{repo_name}:v1", dest)
    assert not dest.exists()


def test_pull_same_tar_blob_in_two_layers(registry: LocalRegistry, repo_name: str, tmp_path: Path) -> None:
    """One blob, two declared paths (base-name members, as `modctl attach` writes them), plus
    a raw layer with the very same bytes: the blob is fetched once, verified whole, then
    extracted twice and copied once."""
    blob = files(("vocab.json", b'{"hello": 1}'))
    layers = [
        ("application/vnd.cncf.model.weight.config.v1.tar", blob, {"org.cncf.model.filepath": "a/vocab.json"}),
        ("application/vnd.cncf.model.weight.config.v1.tar", blob, {"org.cncf.model.filepath": "b/vocab.json"}),
        ("application/vnd.cncf.model.weight.config.v1.raw", blob, {"org.cncf.model.filepath": "vocab.tar"}),
    ]
    push_artifact(registry, repo_name, "v1", layers)
    dest = tmp_path / "out"
    result = ocimodel.pull(f"{registry.host}/{repo_name}:v1", dest)
    assert tree(dest) == {
        "a": None, "a/vocab.json": b'{"hello": 1}',
        "b": None, "b/vocab.json": b'{"hello": 1}',
        "vocab.tar": blob,
    }
    assert result.bytes_downloaded == len(blob)
    assert_no_staging_left(tmp_path)


# -- first_member_name: the name inspect can show for a tar layer with no path -------------


@pytest.mark.parametrize("packing", ["none", "gzip", "zstd"])
def test_first_member_name_reads_only_the_start(packing: str) -> None:
    from ocimodel.packaging.archive import first_member_name

    def encode(data: bytes) -> bytes:
        return {"none": lambda d: d, "gzip": gzip.compress, "zstd": zstd_compress}[packing](data)

    tar = make_tar(member("./", kind=tarfile.DIRTYPE), member("weights/model.safetensors", os.urandom(300_000)))
    pieces = chunked(encode(tar), 4096)
    assert first_member_name(pieces, compression=packing) == "weights/model.safetensors"
    assert next(pieces, None) is not None  # the rest of the layer was never read
    directory = make_tar(member("tokenizer", kind=tarfile.DIRTYPE), member("tokenizer/vocab.json", b"{}"))
    assert first_member_name([encode(directory)], compression=packing) == "tokenizer"
    assert first_member_name([encode(make_tar())], compression=packing) is None


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x"])
def test_first_member_name_refuses_what_pull_refuses(name: str) -> None:
    from ocimodel.packaging.archive import first_member_name

    with pytest.raises(UnsafeArchive):
        first_member_name([make_tar(member(name, b"x"))])
    with pytest.raises(UnsafeArchive, match="symlink"):
        first_member_name([make_tar(member("w", kind=tarfile.SYMTYPE, linkname="/etc"))])
    with pytest.raises(InvalidArchive):
        first_member_name([b"not a tar at all" * 100], compression="gzip")
