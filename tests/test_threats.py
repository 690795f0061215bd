"""Negative tests: docs/threats.md items 2-6 and 9 for pull, inspect and copy.

A hostile registry (tests/support/badregistry.py) serves bytes that lie about their digest
or size, endless bodies, malformed digests, wrong manifest types, oversized manifests,
junk error pages and dangerous file names. For each the answer must be a typed error from
ocimodel.errors, nothing written in the destination or anywhere else, and no staging
directory left behind. The issue's acceptance test (a blob altered in the real registry's
storage) runs against the real registry, through the API and through the CLI.
"""

from __future__ import annotations

import copy as copy_module
import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ocimodel
from ocimodel.errors import (
    DestinationExists,
    DigestMismatch,
    IntegrityError,
    InvalidManifest,
    InvalidReference,
    NotAModel,
    NotFound,
    OcimodelError,
    PermissionDenied,
    RegistryError,
    SizeMismatch,
    TransportError,
    UnsafePath,
)
from tests.support.badregistry import (
    FILEPATH,
    MODEL_ARTIFACT,
    MODEL_CONFIG,
    MODEL_WEIGHT_RAW,
    OCI_INDEX,
    OCI_MANIFEST,
    TITLE,
    BadRegistry,
    Reply,
    endless,
    manifest_bytes,
    sha256,
)
from tests.support.files import tree_digest

REPO = "t/model"
OPS = ("pull", "inspect", "copy")
# Bytes a hostile server may push into socket buffers before it notices the client left.
SLACK = 32 * 1024 * 1024


# -- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def _bad_server() -> Iterator[BadRegistry]:
    with BadRegistry() as server:
        yield server


@pytest.fixture
def bad(_bad_server: BadRegistry) -> BadRegistry:
    """The module's hostile registry, with no routes left from an earlier test."""
    _bad_server.reset()
    return _bad_server


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (symlinks not followed): relpath -> kind and content."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mode & 0o7777)
    return out


class Witness:
    """Records ``tmp_path`` before an attempt and checks afterwards that nothing was
    written: the pull destination is absent or empty (or exactly as it was), no
    ``.ocimodel-pull-*`` staging directory is left, nothing else under ``tmp_path``
    changed, and a copy destination layout holds no tag, no temporary file and none of
    the ``forbidden`` (bad) blobs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.before = snapshot(root)

    def check(self, forbidden: tuple[str, ...] = ()) -> None:
        after = snapshot(self.root)
        staging = [k for k in after if ".ocimodel-pull-" in k]
        assert not staging, f"staging directories left behind: {staging}"
        assert not [k for k in after if "ocimodel-tmp" in k], after
        # A copy destination may have been initialised as an empty layout; valid blobs
        # may stay (content-addressed), but no tag, no temp file and no bad blob.
        store = self.root / "store"
        if "store" in after and "store" not in self.before:
            index = json.loads((store / "index.json").read_bytes()) if (store / "index.json").exists() else {}
            assert index.get("manifests", []) == [], f"copy left a manifest in the layout: {index}"
            for key in [k for k in after if k == "store" or k.startswith("store/")]:
                name = key.rsplit("/", 1)[-1]
                assert not name.startswith(".tmp-"), f"temporary file left in the layout: {key}"
                assert not any(name == d.split(":", 1)[1] for d in forbidden), f"bad blob stored: {key}"
                del after[key]
        dest = self.root / "dest"
        if "dest" in after and "dest" not in self.before:
            assert not [k for k in after if k.startswith("dest/")], (
                f"files written to the destination: {sorted(k for k in after if k.startswith('dest/'))}"
            )
            del after["dest"]
        assert after == self.before, "something outside the destination changed"
        assert not dest.exists() or dest.is_dir()


def attempt(op: str, ref: str, tmp_path: Path) -> Any:
    if op == "pull":
        return ocimodel.pull(ref, tmp_path / "dest")
    if op == "inspect":
        return ocimodel.inspect(ref)
    if op == "copy":
        return ocimodel.copy(ref, f"oci:{tmp_path / 'store'}:copied")
    raise AssertionError(op)


def modelpack_config(layers: list[dict[str, Any]]) -> bytes:
    return manifest_bytes({
        "descriptor": {"name": "bad"},
        "config": {"format": "safetensors"},
        "modelfs": {"type": "layers", "diffIds": [layer["digest"] for layer in layers] or [sha256(b"")]},
    })


def file_layer(bad: BadRegistry, name: str, data: bytes, *, repo: str = REPO,
               media_type: str = MODEL_WEIGHT_RAW, reply: Reply | None = None,
               annotations: dict[str, str] | None = None) -> dict[str, Any]:
    ann = {TITLE: name, FILEPATH: name} if annotations is None else annotations
    return bad.add_blob(repo, data, media_type=media_type, annotations=ann, reply=reply)


def model_document(bad: BadRegistry, layers: list[dict[str, Any]], *, repo: str = REPO,
                   config_reply: Reply | None = None) -> dict[str, Any]:
    config = bad.add_blob(repo, modelpack_config(layers), media_type=MODEL_CONFIG, reply=config_reply)
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": MODEL_ARTIFACT,
        "config": config,
        "layers": layers,
    }


def serve_model(bad: BadRegistry, files: dict[str, bytes], *, tag: str = "v1", repo: str = REPO,
                replies: dict[str, Reply] | None = None, config_reply: Reply | None = None
                ) -> tuple[dict[str, Any], str]:
    """Serve a ModelPack manifest of ``files`` under ``tag``; ``replies`` replaces the
    answer for a file's blob. Returns (manifest document, manifest digest)."""
    replies = replies or {}
    layers = [file_layer(bad, name, data, repo=repo, reply=replies.get(name)) for name, data in files.items()]
    doc = model_document(bad, layers, repo=repo, config_reply=config_reply)
    digest = bad.add_manifest(repo, manifest_bytes(doc), tags=[tag])
    return doc, digest


def blob_gets(bad: BadRegistry) -> list[str]:
    return [path for method, path in bad.requests if method == "GET" and "/blobs/" in path]


def flip(data: bytes, at: int | None = None) -> bytes:
    i = len(data) // 2 if at is None else at
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


def assert_clean_message(err: OcimodelError) -> None:
    """One short printable line: no HTML, no traceback, no terminal escapes."""
    text = str(err)
    assert text == err.message
    assert "\n" not in text and "\r" not in text
    assert all(ch.isprintable() for ch in text), repr(text)
    assert len(text) < 500, text
    low = text.lower()
    for junk in ("<html", "<body", "<!doctype", "traceback", "exception", 'file "', "\x1b"):
        assert junk not in low, text


GOOD = {
    "model.safetensors": bytes(range(256)) * 400,  # 100 KiB
    "config.json": b'{"hidden_size": 4}\n',
}


# -- sanity: the fake registry serves a good model correctly ----------------------------


@pytest.mark.parametrize("op", OPS)
def test_fake_registry_serves_a_good_model(bad: BadRegistry, tmp_path: Path, op: str) -> None:
    """Control: the same fixtures without tampering work, so every failure below is caused
    by the one thing each test changes."""
    _, digest = serve_model(bad, GOOD)
    result = attempt(op, f"{bad.host}/{REPO}:v1", tmp_path)
    assert result.digest == digest
    if op == "pull":
        assert {k: v[0] for k, v in tree_digest(tmp_path / "dest").items()} == {
            name: hashlib.sha256(data).hexdigest() for name, data in GOOD.items()
        }
    if op == "inspect":
        assert sorted(f.path for f in result.files) == sorted(GOOD)


# -- 2. manifest bytes that do not match their digest -----------------------------------


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("header", ["asked", "actual", "none"])
def test_manifest_by_digest_with_other_bytes(bad: BadRegistry, tmp_path: Path, op: str, header: str) -> None:
    """Pull by digest; the registry answers with other (valid!) manifest bytes. The header
    may lie (announce the digest asked for), tell the truth about the bytes, or be absent."""
    doc, asked = serve_model(bad, GOOD)
    other_doc = copy_module.deepcopy(doc)
    other_doc["annotations"] = {"org.opencontainers.image.version": "evil"}
    other = manifest_bytes(other_doc)
    headers = {"Content-Type": OCI_MANIFEST}
    if header != "none":
        headers["Docker-Content-Digest"] = asked if header == "asked" else sha256(other)
    bad.set_manifest(REPO, asked, Reply(body=other, headers=headers))
    witness = Witness(tmp_path)
    with pytest.raises(DigestMismatch) as info:
        attempt(op, f"{bad.host}/{REPO}@{asked}", tmp_path)
    assert asked in str(info.value) and sha256(other) in str(info.value)
    assert blob_gets(bad) == []
    witness.check()


@pytest.mark.parametrize("op", OPS)
def test_manifest_by_digest_with_one_byte_flipped(bad: BadRegistry, tmp_path: Path, op: str) -> None:
    doc, asked = serve_model(bad, GOOD)
    data = manifest_bytes(doc)
    at = data.index(b"safetensors")  # inside a title: still valid JSON, other bytes
    tampered = flip(data, at)
    bad.set_manifest(REPO, asked, Reply(body=tampered, headers={"Content-Type": OCI_MANIFEST,
                                                                "Docker-Content-Digest": asked}))
    witness = Witness(tmp_path)
    with pytest.raises(DigestMismatch):
        attempt(op, f"{bad.host}/{REPO}@{asked}", tmp_path)
    assert blob_gets(bad) == []
    witness.check()


@pytest.mark.parametrize("op", OPS)
def test_manifest_by_tag_with_lying_digest_header(bad: BadRegistry, tmp_path: Path, op: str) -> None:
    """Pull by tag: the bytes' sha256 differs from the Docker-Content-Digest header."""
    doc, actual = serve_model(bad, GOOD)
    announced = sha256(b"some other manifest")
    bad.set_manifest(REPO, "v1", Reply(body=manifest_bytes(doc), headers={
        "Content-Type": OCI_MANIFEST, "Docker-Content-Digest": announced}))
    witness = Witness(tmp_path)
    with pytest.raises(DigestMismatch) as info:
        attempt(op, f"{bad.host}/{REPO}:v1", tmp_path)
    assert announced in str(info.value) and actual in str(info.value)
    assert blob_gets(bad) == []
    witness.check()


def test_copy_index_whose_child_manifest_is_swapped(bad: BadRegistry, tmp_path: Path) -> None:
    """copy walks an index; a child fetched by digest comes back as other bytes."""
    doc, child = serve_model(bad, GOOD, tag="child")
    child_bytes = manifest_bytes(doc)
    index = manifest_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child, "size": len(child_bytes)}]})
    bad.add_manifest(REPO, index, tags=["v1"], content_type=OCI_INDEX)
    other = copy_module.deepcopy(doc)
    other["annotations"] = {"x": "swapped"}
    bad.set_manifest(REPO, child, Reply(body=manifest_bytes(other), headers={
        "Content-Type": OCI_MANIFEST, "Docker-Content-Digest": child}))
    witness = Witness(tmp_path)
    with pytest.raises(DigestMismatch):
        attempt("copy", f"{bad.host}/{REPO}:v1", tmp_path)
    assert blob_gets(bad) == []
    witness.check()


# -- 3. blob bytes that do not match their descriptor -----------------------------------

WEIGHTS = GOOD["model.safetensors"]


def _blob_reply(kind: str, data: bytes) -> tuple[Reply, type[BaseException] | tuple]:
    ok_headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": sha256(data)}
    if kind == "flipped":
        return Reply(body=flip(data), headers=ok_headers), DigestMismatch
    if kind == "flipped-last-byte":
        return Reply(body=flip(data, len(data) - 1), headers=ok_headers), DigestMismatch
    if kind == "longer":
        return Reply(body=data + b"more", headers=ok_headers), SizeMismatch
    if kind == "shorter":
        return Reply(body=data[:-1], headers=ok_headers), SizeMismatch
    if kind == "empty":
        return Reply(body=b"", headers=ok_headers), SizeMismatch
    if kind == "cut":  # announces the full length, then the connection closes early
        return Reply(body=data[: len(data) // 2], headers=ok_headers, content_length=len(data)), TransportError
    if kind == "endless":
        return Reply(body=endless(b"\xff" * 4096), headers=ok_headers, content_length=None), SizeMismatch
    if kind == "endless-with-length":  # honest-looking length, endless body
        return Reply(body=endless(b"\xff" * 4096), headers=ok_headers, content_length=len(data)), DigestMismatch
    raise AssertionError(kind)


BLOB_KINDS = ("flipped", "flipped-last-byte", "longer", "shorter", "empty", "cut", "endless", "endless-with-length")


@pytest.mark.parametrize("op", ["pull", "copy"])
@pytest.mark.parametrize("kind", BLOB_KINDS)
def test_layer_blob_tampered(bad: BadRegistry, tmp_path: Path, op: str, kind: str) -> None:
    reply, expected = _blob_reply(kind, WEIGHTS)
    doc, _ = serve_model(bad, GOOD, replies={"model.safetensors": reply})
    digest = sha256(WEIGHTS)
    witness = Witness(tmp_path)
    started = time.monotonic()
    with pytest.raises(expected) as info:
        attempt(op, f"{bad.host}/{REPO}:v1", tmp_path)
    assert time.monotonic() - started < 20
    if isinstance(info.value, IntegrityError):
        assert digest in str(info.value)
    path = f"/v2/{REPO}/blobs/{digest}"
    # Reads are bounded by size: the client hung up long before the body's end.
    assert bad.sent.get(path, 0) < len(WEIGHTS) + SLACK
    witness.check(forbidden=(digest,))


@pytest.mark.parametrize("kind", ["flipped", "longer", "shorter", "endless"])
def test_config_blob_tampered_on_inspect(bad: BadRegistry, tmp_path: Path, kind: str) -> None:
    """inspect downloads only the config; it is verified like any blob."""
    layers = [file_layer(bad, "model.safetensors", WEIGHTS)]
    config = modelpack_config(layers)
    reply, expected = _blob_reply(kind, config)
    doc = model_document(bad, layers, config_reply=reply)
    bad.add_manifest(REPO, manifest_bytes(doc), tags=["v1"])
    with pytest.raises(expected) as info:
        ocimodel.inspect(f"{bad.host}/{REPO}:v1")
    assert sha256(config) in str(info.value)
    assert bad.sent.get(f"/v2/{REPO}/blobs/{sha256(config)}", 0) < SLACK


def test_one_bad_blob_among_many_leaves_nothing(bad: BadRegistry, tmp_path: Path) -> None:
    """Several files download in parallel and verify; one is bad: none may land, and a
    destination that already held an unrelated file keeps exactly that."""
    files = {f"shard-{i:02d}.bin": secrets.token_bytes(50_000 + i) for i in range(12)}
    bad_name = "shard-07.bin"
    reply, _ = _blob_reply("flipped", files[bad_name])
    serve_model(bad, files, replies={bad_name: reply})
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_bytes(b"mine")
    witness = Witness(tmp_path)
    with pytest.raises(DigestMismatch):
        ocimodel.pull(f"{bad.host}/{REPO}:v1", dest, concurrency=4)
    witness.check()
    assert sorted(os.listdir(dest)) == ["keep.txt"]


# -- 4. malformed digest strings ---------------------------------------------------------

HEX = hashlib.sha256(b"x").hexdigest()
BAD_DIGESTS = {
    "upper-case": "sha256:" + HEX.upper(),
    "unknown-algorithm": "md5:" + hashlib.md5(b"x").hexdigest(),
    "too-short": "sha256:" + HEX[:-1],
    "too-long": "sha256:" + HEX + "0",
    "non-hex": "sha256:" + "g" * 64,
    "empty": "",
    "no-algorithm": HEX,
    "extra-colon": "sha256:" + HEX[:32] + ":" + HEX[32:],
    "sha512-length-of-sha256": "sha512:" + HEX,
    "with-whitespace": " sha256:" + HEX,
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("where", ["layer", "config"])
@pytest.mark.parametrize("name", sorted(BAD_DIGESTS))
def test_malformed_digest_in_manifest(bad: BadRegistry, tmp_path: Path, op: str, where: str, name: str) -> None:
    doc, _ = serve_model(bad, GOOD)
    target = doc["layers"][0] if where == "layer" else doc["config"]
    target["digest"] = BAD_DIGESTS[name]
    bad.add_manifest(REPO, manifest_bytes(doc), tags=["v1"])
    witness = Witness(tmp_path)
    with pytest.raises(InvalidManifest) as info:
        attempt(op, f"{bad.host}/{REPO}:v1", tmp_path)
    assert_clean_message(info.value)
    assert blob_gets(bad) == []
    witness.check()


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("name", ["upper-case", "too-short", "non-hex", "unknown-algorithm"])
def test_malformed_docker_content_digest_header(bad: BadRegistry, tmp_path: Path, op: str, name: str) -> None:
    doc, _ = serve_model(bad, GOOD)
    bad.set_manifest(REPO, "v1", Reply(body=manifest_bytes(doc), headers={
        "Content-Type": OCI_MANIFEST, "Docker-Content-Digest": BAD_DIGESTS[name]}))
    witness = Witness(tmp_path)
    with pytest.raises(InvalidManifest):
        attempt(op, f"{bad.host}/{REPO}:v1", tmp_path)
    assert blob_gets(bad) == []
    witness.check()


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("suffix", [
    "@sha256:" + HEX.upper(),
    "@md5:" + hashlib.md5(b"x").hexdigest(),
    "@sha256:" + HEX[:-1],
    "@sha256:",
    "@",
    "@sha256:" + HEX + "@sha256:" + HEX,
    ":v1:v2",
    ":v1@sha256:" + "z" * 64,
])
def test_malformed_reference_is_refused_before_any_request(bad: BadRegistry, tmp_path: Path, op: str, suffix: str) -> None:
    serve_model(bad, GOOD)
    witness = Witness(tmp_path)
    with pytest.raises(InvalidReference):
        attempt(op, f"{bad.host}/{REPO}{suffix}", tmp_path)
    assert bad.requests == []
    witness.check()


# -- 5. wrong manifest type or version, index instead of manifest, huge manifests -------


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("version", [1, 3, "2", None, "missing", True, [2], 2.0])
def test_wrong_schema_version(bad: BadRegistry, tmp_path: Path, op: str, version: object) -> None:
    doc, _ = serve_model(bad, GOOD)
    if version == "missing":
        del doc["schemaVersion"]
    else:
        doc["schemaVersion"] = version
    bad.add_manifest(REPO, manifest_bytes(doc), tags=["v1"])
    witness = Witness(tmp_path)
    with pytest.raises(InvalidManifest) as info:
        attempt(op, f"{bad.host}/{REPO}:v1", tmp_path)
    assert "schemaVersion" in str(info.value)
    assert blob_gets(bad) == []
    witness.check()


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("size", ["1", True, 1.0, 2**64])
def test_descriptor_size_that_is_not_a_json_integer(bad: BadRegistry, tmp_path: Path, op: str, size: object) -> None:
    """Sizes bound every read: a size that is a string, a boolean, a float or beyond int64
    is not an OCI size (distribution refuses such a manifest) and must not be coerced.
    The layer really is 1 byte long, so a coerced "1" / true / 1.0 would be accepted."""
    doc, _ = serve_model(bad, {"w.bin": b"x"})
    doc["layers"][0]["size"] = size
    bad.add_manifest(REPO, manifest_bytes(doc), tags=["v1"])
    witness = Witness(tmp_path)
    with pytest.raises(InvalidManifest):
        attempt(op, f"{bad.host}/{REPO}:v1", tmp_path)
    assert blob_gets(bad) == []
    witness.check()


DUPLICATE_KEY_MANIFESTS = {
    # two parsers could each pick a different value: refuse the document
    "top-level-layers": lambda data, doc: data.replace(b'"layers":', b'"layers":[],"layers":', 1),
    "descriptor-digest": lambda data, doc: data.replace(
        b'"digest":"' + doc["layers"][0]["digest"].encode(),
        b'"digest":"' + sha256(b"other").encode() + b'","digest":"' + doc["layers"][0]["digest"].encode(), 1),
    "annotation-title": lambda data, doc: data.replace(
        b'"org.cncf.model.filepath":"model.safetensors"',
        b'"org.cncf.model.filepath":"model.safetensors","org.cncf.model.filepath":"../evil"', 1),
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("case", sorted(DUPLICATE_KEY_MANIFESTS))
def test_manifest_with_duplicate_keys(bad: BadRegistry, tmp_path: Path, op: str, case: str) -> None:
    doc, _ = serve_model(bad, GOOD)
    original = manifest_bytes(doc)
    data = DUPLICATE_KEY_MANIFESTS[case](original, doc)
    assert data != original
    bad.add_manifest(REPO, data, tags=["v1"])
    witness = Witness(tmp_path)
    with pytest.raises(InvalidManifest) as info:
        attempt(op, f"{bad.host}/{REPO}:v1", tmp_path)
    assert "duplicate" in str(info.value)
    assert blob_gets(bad) == []
    witness.check()


@pytest.mark.parametrize("layers", ["empty", "missing"])
def test_manifest_without_files_is_not_a_model(bad: BadRegistry, tmp_path: Path, layers: str) -> None:
    doc, _ = serve_model(bad, GOOD)
    if layers == "empty":
        doc["layers"] = []
    else:
        del doc["layers"]
    bad.add_manifest(REPO, manifest_bytes(doc), tags=["v1"])
    witness = Witness(tmp_path)
    with pytest.raises(NotAModel):
        ocimodel.pull(f"{bad.host}/{REPO}:v1", tmp_path / "dest")
    witness.check()


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("declared,served", [
    # the document claims to be something that is not a manifest at all
    ("application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.config.v1+json"),
    ("text/html", "text/html"),
    ("application/vnd.docker.distribution.manifest.v1+prettyjws", "application/octet-stream"),
    # the document and the Content-Type disagree
    (OCI_MANIFEST, OCI_INDEX),
    (OCI_INDEX, OCI_MANIFEST),
])
def test_wrong_manifest_media_type(bad: BadRegistry, tmp_path: Path, op: str, declared: str, served: str) -> None:
    doc, _ = serve_model(bad, GOOD)
    doc["mediaType"] = declared
    bad.add_manifest(REPO, manifest_bytes(doc), tags=["v1"], content_type=served)
    witness = Witness(tmp_path)
    with pytest.raises(InvalidManifest):
        attempt(op, f"{bad.host}/{REPO}:v1", tmp_path)
    assert blob_gets(bad) == []
    witness.check()


@pytest.mark.parametrize("content_type,declared", [
    (OCI_INDEX, True),
    (OCI_INDEX, False),
    ("application/json", True),
    ("application/vnd.docker.distribution.manifest.list.v2+json", False),
])
def test_index_where_a_model_manifest_was_expected(bad: BadRegistry, tmp_path: Path, content_type: str, declared: bool) -> None:
    doc, child = serve_model(bad, GOOD, tag="child")
    child_bytes = manifest_bytes(doc)
    index: dict[str, Any] = {"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child, "size": len(child_bytes)}]}
    if declared:
        index["mediaType"] = OCI_INDEX if "oci" in content_type or content_type == "application/json" else content_type
    bad.add_manifest(REPO, manifest_bytes(index), tags=["v1"], content_type=content_type)
    witness = Witness(tmp_path)
    with pytest.raises(NotAModel):
        ocimodel.pull(f"{bad.host}/{REPO}:v1", tmp_path / "dest")
    assert blob_gets(bad) == []
    witness.check()


def _huge_valid_manifest(bad: BadRegistry) -> bytes:
    """A *valid* 5 MiB manifest (whitespace padding): refusing it can only be the cap."""
    doc, _ = serve_model(bad, GOOD)
    data = manifest_bytes(doc)
    return data[:-1] + b" " * (5 * 1024 * 1024) + data[-1:]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("length", ["announced", "unannounced"])
def test_huge_manifest_by_tag(bad: BadRegistry, tmp_path: Path, op: str, length: str) -> None:
    huge = _huge_valid_manifest(bad)
    json.loads(huge)  # really valid
    bad.set_manifest(REPO, "v1", Reply(body=huge, headers={"Content-Type": OCI_MANIFEST},
                                       content_length=True if length == "announced" else None))
    witness = Witness(tmp_path)
    with pytest.raises(InvalidManifest) as info:
        attempt(op, f"{bad.host}/{REPO}:v1", tmp_path)
    assert "limit" in str(info.value)
    assert blob_gets(bad) == []
    witness.check()


@pytest.mark.parametrize("op", OPS)
def test_huge_manifest_by_digest(bad: BadRegistry, tmp_path: Path, op: str) -> None:
    huge = _huge_valid_manifest(bad)
    digest = bad.add_manifest(REPO, huge)
    witness = Witness(tmp_path)
    with pytest.raises(InvalidManifest):
        attempt(op, f"{bad.host}/{REPO}@{digest}", tmp_path)
    assert blob_gets(bad) == []
    witness.check()


@pytest.mark.parametrize("op", OPS)
def test_endless_manifest(bad: BadRegistry, tmp_path: Path, op: str) -> None:
    bad.set_manifest(REPO, "v1", Reply(body=endless(b" " * 65536), headers={"Content-Type": OCI_MANIFEST},
                                       content_length=None))
    witness = Witness(tmp_path)
    started = time.monotonic()
    with pytest.raises(InvalidManifest):
        attempt(op, f"{bad.host}/{REPO}:v1", tmp_path)
    assert time.monotonic() - started < 20
    assert bad.sent.get(f"/v2/{REPO}/manifests/v1", 0) < 4 * 1024 * 1024 + SLACK
    witness.check()


# -- 6. error bodies that are not OCI JSON -------------------------------------------------

HTML = (b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
        b"<body><h1>Bad Gateway</h1><pre>Traceback (most recent call last):\n  File \"x.py\"</pre>"
        b"</body></html>\n")
ERROR_BODIES = {
    "html": (HTML, "text/html"),
    "plain-text": (b"upstream connect error or disconnect/reset before headers\n", "text/plain"),
    "json-duplicate-keys": (b'{"errors":[{"code":"DENIED","code":"NAME_UNKNOWN","message":"a","message":"b"}]}',
                            "application/json"),
    "json-duplicate-errors": (b'{"errors":[{"code":"DENIED"}],"errors":[{"code":"UNKNOWN"}]}', "application/json"),
    "json-truncated": (b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unkn', "application/json"),
    "json-not-an-object": (b'["errors"]', "application/json"),
    "binary": (bytes(range(256)) * 4, "application/octet-stream"),
    "empty": (b"", "application/json"),
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("status", [500, 400])
@pytest.mark.parametrize("body", sorted(ERROR_BODIES))
def test_error_body_on_manifest(bad: BadRegistry, tmp_path: Path, op: str, status: int, body: str) -> None:
    data, content_type = ERROR_BODIES[body]
    bad.set_manifest(REPO, "v1", Reply(status=status, body=data, headers={"Content-Type": content_type}))
    witness = Witness(tmp_path)
    with pytest.raises(RegistryError) as info:
        attempt(op, f"{bad.host}/{REPO}:v1", tmp_path)
    err = info.value
    assert err.status == status
    # No code taken from an unparseable or ambiguous body.
    assert err.code is None
    assert str(status) in str(err)
    assert_clean_message(err)
    witness.check()


@pytest.mark.parametrize("body", ["html", "plain-text", "json-truncated"])
def test_error_body_404_is_not_found(bad: BadRegistry, tmp_path: Path, body: str) -> None:
    data, content_type = ERROR_BODIES[body]
    bad.set_manifest(REPO, "v1", Reply(status=404, body=data, headers={"Content-Type": content_type}))
    witness = Witness(tmp_path)
    with pytest.raises(NotFound) as info:
        ocimodel.pull(f"{bad.host}/{REPO}:v1", tmp_path / "dest")
    assert_clean_message(info.value)
    witness.check()


@pytest.mark.parametrize("op", ["pull", "copy"])
@pytest.mark.parametrize("body", ["html", "json-duplicate-keys", "json-truncated"])
def test_error_body_on_blob(bad: BadRegistry, tmp_path: Path, op: str, body: str) -> None:
    data, content_type = ERROR_BODIES[body]
    serve_model(bad, GOOD, replies={"model.safetensors": Reply(status=500, body=data,
                                                                headers={"Content-Type": content_type})})
    witness = Witness(tmp_path)
    with pytest.raises(RegistryError) as info:
        attempt(op, f"{bad.host}/{REPO}:v1", tmp_path)
    assert info.value.status == 500 and info.value.code is None
    assert_clean_message(info.value)
    witness.check(forbidden=(sha256(WEIGHTS),))


def test_error_message_with_terminal_escapes_is_cleaned(bad: BadRegistry, tmp_path: Path) -> None:
    body = json.dumps({"errors": [{"code": "DENIED", "message": "\x1b[2J\x1b[31mpwned\r\nline two\x07" + "x" * 5000}]})
    bad.set_manifest(REPO, "v1", Reply(status=403, body=body.encode(), headers={"Content-Type": "application/json"}))
    with pytest.raises(PermissionDenied) as info:
        ocimodel.pull(f"{bad.host}/{REPO}:v1", tmp_path / "dest")
    assert info.value.code == "DENIED"
    assert_clean_message(info.value)


def test_endless_error_body_is_bounded(bad: BadRegistry, tmp_path: Path) -> None:
    bad.set_manifest(REPO, "v1", Reply(status=500, body=endless(b"<html>" * 10000),
                                       headers={"Content-Type": "text/html"}, content_length=None))
    started = time.monotonic()
    with pytest.raises(RegistryError) as info:
        ocimodel.pull(f"{bad.host}/{REPO}:v1", tmp_path / "dest")
    assert time.monotonic() - started < 20
    assert_clean_message(info.value)
    assert bad.sent.get(f"/v2/{REPO}/manifests/v1", 0) < SLACK


# -- 9. unsafe file names -----------------------------------------------------------------

UNSAFE_NAMES = {
    "dotdot": "../x",
    "absolute": "/etc/x",
    "dotdot-inside": "a/../../x",
    "dot-dot-slash-deep": "a/b/../../../x",
    "backslash": "a\\b",
    "backslash-dotdot": "..\\x",
    "nul": "a\x00b",
    "newline": "a\nb",
    "dot": ".",
    "dot-prefix": "./x",
    "empty": "",
    "trailing-slash": "a/",
    "double-slash": "a//b",
    "very-long": "a" * 5000,
    "long-component": "d/" + "b" * 300,
    "dotdot-alone": "..",
}


@pytest.mark.parametrize("annotation", ["both", "title-only", "filepath-only", "legacy-filepath"])
@pytest.mark.parametrize("case", sorted(UNSAFE_NAMES))
def test_unsafe_layer_path(bad: BadRegistry, tmp_path: Path, case: str, annotation: str) -> None:
    name = UNSAFE_NAMES[case]
    annotations = {
        "both": {TITLE: name, FILEPATH: name},
        "title-only": {TITLE: name},
        "filepath-only": {FILEPATH: name},
        "legacy-filepath": {"org.cnai.model.filepath": name},
    }[annotation]
    layers = [file_layer(bad, "ok.txt", b"fine"), file_layer(bad, "?", b"payload", annotations=annotations)]
    bad.add_manifest(REPO, manifest_bytes(model_document(bad, layers)), tags=["v1"])
    (tmp_path / "sub").mkdir()  # so that a/../../x would land in tmp_path/... : watched
    witness = Witness(tmp_path)
    with pytest.raises(UnsafePath) as info:
        ocimodel.pull(f"{bad.host}/{REPO}:v1", tmp_path / "sub" / "dest")
    assert_clean_message(info.value)
    assert blob_gets(bad) == []
    assert not Path("/etc/x").exists()
    witness.check()
    assert not (tmp_path / "sub" / "dest").exists() or not any((tmp_path / "sub" / "dest").iterdir())


def test_safe_filepath_wins_over_title(bad: BadRegistry, tmp_path: Path) -> None:
    """The ModelPack filepath is the name ocimodel writes; a hostile title beside a safe
    filepath must not be used."""
    layers = [file_layer(bad, "?", b"payload", annotations={TITLE: "../evil", FILEPATH: "good.bin"})]
    bad.add_manifest(REPO, manifest_bytes(model_document(bad, layers)), tags=["v1"])
    ocimodel.pull(f"{bad.host}/{REPO}:v1", tmp_path / "dest")
    assert sorted(os.listdir(tmp_path)) == ["dest"]
    assert (tmp_path / "dest" / "good.bin").read_bytes() == b"payload"


NFC_E = unicodedata.normalize("NFC", "caf\u00e9.txt")
NFD_E = unicodedata.normalize("NFD", "caf\u00e9.txt")
COLLIDING = {
    "duplicate": ("x.txt", "x.txt", b"one", b"two"),
    "duplicate-same-bytes": ("x.txt", "x.txt", b"same", b"same"),
    "case": ("A.txt", "a.txt", b"upper", b"lower"),
    "case-in-directory": ("Dir/x.txt", "dir/x.txt", b"upper", b"lower"),
    "nfc-nfd": (NFC_E, NFD_E, b"nfc", b"nfd"),
    "file-and-directory": ("sub", "sub/x", b"file", b"inner"),
    "file-and-directory-case": ("SUB", "sub/x", b"file", b"inner"),
}


@pytest.mark.parametrize("case", sorted(COLLIDING))
def test_colliding_layer_paths(bad: BadRegistry, tmp_path: Path, case: str) -> None:
    first, second, a, b = COLLIDING[case]
    assert first != second or case.startswith("duplicate")
    layers = [file_layer(bad, first, a), file_layer(bad, second, b)]
    bad.add_manifest(REPO, manifest_bytes(model_document(bad, layers)), tags=["v1"])
    witness = Witness(tmp_path)
    with pytest.raises(UnsafePath):
        ocimodel.pull(f"{bad.host}/{REPO}:v1", tmp_path / "dest")
    assert blob_gets(bad) == []
    witness.check()


@pytest.mark.parametrize("link_at,layer_name", [
    ("sub", "sub/x"),
    ("sub", "sub/deeper/x"),
    ("a/b", "a/b/x"),
])
def test_symlink_in_destination_pointing_outside(bad: BadRegistry, tmp_path: Path, link_at: str, layer_name: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    link = dest / link_at
    link.parent.mkdir(parents=True)
    link.symlink_to(outside, target_is_directory=True)
    serve_model(bad, {"ok.txt": b"fine", layer_name: b"escaped"})
    witness = Witness(tmp_path)
    with pytest.raises(UnsafePath) as info:
        ocimodel.pull(f"{bad.host}/{REPO}:v1", dest)
    assert "symlink" in str(info.value)
    assert list(outside.iterdir()) == []
    assert blob_gets(bad) == []
    witness.check()  # the destination is exactly as it was: the link, nothing else


def test_file_in_destination_where_a_directory_is_needed(bad: BadRegistry, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").write_bytes(b"a file")
    serve_model(bad, {"sub/x": b"inner"})
    witness = Witness(tmp_path)
    with pytest.raises(UnsafePath):
        ocimodel.pull(f"{bad.host}/{REPO}:v1", dest)
    witness.check()


def test_directory_in_destination_where_a_file_goes_leaves_no_partial_model(bad: BadRegistry, tmp_path: Path) -> None:
    """The destination holds a directory ``b.txt``; the model has files a.txt and b.txt.
    The pull must fail with a typed error before any file is moved into place: a.txt must
    not be left behind as a partial model."""
    dest = tmp_path / "dest"
    (dest / "b.txt").mkdir(parents=True)
    (dest / "b.txt" / "keep").write_bytes(b"mine")
    serve_model(bad, {"a.txt": b"first", "b.txt": b"second"})
    witness = Witness(tmp_path)
    # Either typed refusal is right (the test is about what is left behind, not the type).
    with pytest.raises((UnsafePath, DestinationExists)):
        ocimodel.pull(f"{bad.host}/{REPO}:v1", dest, concurrency=1)
    witness.check()


def test_symlink_planted_during_download_leaves_no_partial_model(bad: BadRegistry, tmp_path: Path) -> None:
    """Someone plants ``dest/sub -> outside`` while the blobs download (the fake registry
    does it while serving the last blob). The final check catches it (nothing goes
    outside), and no file of the model may be left in the destination either."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"

    def plant_then_serve() -> Iterator[bytes]:
        dest.mkdir(exist_ok=True)
        (dest / "sub").symlink_to(outside, target_is_directory=True)
        yield b"inner"

    serve_model(bad, {"a.txt": b"first", "sub/x": b"inner"},
                replies={"sub/x": Reply(body=plant_then_serve, content_length=len(b"inner"))})
    with pytest.raises(UnsafePath):
        ocimodel.pull(f"{bad.host}/{REPO}:v1", dest, concurrency=1)
    assert list(outside.iterdir()) == []
    assert not [k for k in snapshot(tmp_path) if ".ocimodel-pull-" in k]
    assert sorted(os.listdir(dest)) == ["sub"], "a file of the model was left in the destination"


def test_failed_pull_creates_no_parent_directories(bad: BadRegistry, tmp_path: Path) -> None:
    """A pull that fails verification writes nothing: not even the missing parents of the
    destination (they are outside it)."""
    reply, _ = _blob_reply("flipped", WEIGHTS)
    serve_model(bad, GOOD, replies={"model.safetensors": reply})
    witness = Witness(tmp_path)
    with pytest.raises(DigestMismatch):
        ocimodel.pull(f"{bad.host}/{REPO}:v1", tmp_path / "new" / "parents" / "dest")
    witness.check()


def test_symlink_at_a_file_path_is_replaced_not_followed(bad: BadRegistry, tmp_path: Path) -> None:
    """The destination holds ``x -> ../outside/x``; pulling a layer ``x`` must replace the
    link with a regular file and leave the outside file alone."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_bytes(b"precious")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "x").symlink_to(outside / "x")
    serve_model(bad, {"x": b"from the model"})
    ocimodel.pull(f"{bad.host}/{REPO}:v1", dest)
    assert (outside / "x").read_bytes() == b"precious"
    assert not (dest / "x").is_symlink()
    assert (dest / "x").read_bytes() == b"from the model"


def test_symlink_with_the_right_content_is_not_taken_as_unchanged(bad: BadRegistry, tmp_path: Path) -> None:
    """A symlink whose target happens to hold the layer's bytes must not count as "file
    already there": the pull must leave a regular file."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_bytes(b"from the model")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "x").symlink_to(outside / "x")
    serve_model(bad, {"x": b"from the model"})
    result = ocimodel.pull(f"{bad.host}/{REPO}:v1", dest)
    assert result.files_unchanged == 0
    assert not (dest / "x").is_symlink()
    assert (dest / "x").read_bytes() == b"from the model"


# -- the acceptance test: a blob altered in the REAL registry's storage ----------


def _push_model_with_unique_weights(registry, repo_name: str, model_dir: Path) -> tuple[str, str, bytes]:
    """Push ``model_dir`` plus a file of random bytes (its blob is not shared with any other
    test of the session, so altering it on disk harms no one). Returns (ref, digest, data)."""
    weights = secrets.token_bytes(200_000)
    (model_dir / "unique.safetensors").write_bytes(weights)
    ref = f"{registry.host}/{repo_name}:1.0"
    ocimodel.push(model_dir, ref)
    return ref, sha256(weights), weights


def _tamper_on_disk(registry, digest: str) -> tuple[Path, bytes]:
    path = registry.blob_path(digest)
    original = path.read_bytes()
    path.write_bytes(flip(original))
    return path, original


@pytest.mark.parametrize("op", ["pull", "copy"])
def test_blob_altered_in_registry_storage(registry, repo_name: str, model_dir: Path, tmp_path: Path, op: str) -> None:
    ref, digest, _ = _push_model_with_unique_weights(registry, repo_name, model_dir)
    path, original = _tamper_on_disk(registry, digest)
    work = tmp_path / "work"
    work.mkdir()
    witness = Witness(work)
    try:
        with pytest.raises(DigestMismatch) as info:
            attempt(op, ref, work)
    finally:
        path.write_bytes(original)
    assert info.value.expected == digest
    witness.check(forbidden=(digest,))


def _cli() -> list[str]:
    """The installed console script, else the module (the CLI may still be in progress)."""
    script = Path(sys.executable).parent / "ocimodel"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ocimodel.cli.app"]


def test_cli_pull_of_blob_altered_in_registry_storage(registry, repo_name: str, model_dir: Path, tmp_path: Path) -> None:
    """Done-when of issue 2: `ocimodel pull` exits non-zero naming the digest mismatch, and
    no file of the model is left in the destination."""
    ref, digest, _ = _push_model_with_unique_weights(registry, repo_name, model_dir)
    path, original = _tamper_on_disk(registry, digest)
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "dest"
    witness = Witness(work)
    try:
        proc = subprocess.run(
            [*_cli(), "pull", "--plain-http", ref, str(dest)],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"},
        )
    finally:
        path.write_bytes(original)
    assert proc.returncode != 0, proc
    # Rich may wrap long lines: compare with whitespace removed.
    flat = "".join(proc.stderr.split())
    assert "digestmismatch" in flat.lower(), proc.stderr
    assert digest in flat, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    witness.check(forbidden=(digest,))
    model_files = set(tree_digest(model_dir))
    assert not dest.exists() or not (set(tree_digest(dest)) & model_files)


def test_untampered_pull_from_real_registry_still_works(registry, repo_name: str, model_dir: Path, tmp_path: Path) -> None:
    """Control for the two tests above: restoring the blob makes the same pull succeed."""
    ref, digest, weights = _push_model_with_unique_weights(registry, repo_name, model_dir)
    path, original = _tamper_on_disk(registry, digest)
    path.write_bytes(original)
    ocimodel.pull(ref, tmp_path / "dest")
    assert tree_digest(tmp_path / "dest") == tree_digest(model_dir)

