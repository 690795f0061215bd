"""Guards added after review, through the Python API: push refuses what pull would refuse
(or could not represent) before writing anything, pull never damages an OCI layout and
stages inside an existing destination, layout files get ordinary modes, the copy engine
bounds an index graph, compressed archives are bounded by their expansion ratio, and the
API takes creation times and kind overrides as strings."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import secrets
import subprocess
import sys
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

import ocimodel
from ocimodel.errors import (
    DestinationExists,
    InvalidManifest,
    NotFound,
    PackagingError,
    UnsafePath,
    UsageError,
)
from ocimodel.packaging.archive import ArchiveTooLarge
from tests.support.files import tree_digest
from tests.support.modeltrees import put_blob, put_manifest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MODEL_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODEL_CONFIG = "application/vnd.cncf.model.config.v1+json"
CREATED = "org.opencontainers.image.created"
UNTESTED = "org.cncf.model.file.mediatype.untested"
STAGING = ".ocimodel-pull-"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def staging_dirs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(STAGING)]


# -- push refuses trees it cannot represent, before writing anything ---------------------


def _case_readme_twice(root: Path) -> None:
    (root / "Readme.md").write_text("second readme\n")  # README.md is in the model already


def _case_newline(root: Path) -> None:
    (root / "bad\nname.txt").write_text("x")


def _case_backslash(root: Path) -> None:
    (root / "bad\\name.txt").write_text("x")


def _case_not_utf8(root: Path) -> None:
    with open(os.fsencode(root) + b"/caf\xe9.bin", "wb") as handle:
        handle.write(b"latin-1 name")


def _case_symlink_to_directory(root: Path) -> None:
    (root / "tok-link").symlink_to(root / "tokenizer", target_is_directory=True)


def _case_fifo(root: Path) -> None:
    os.mkfifo(root / "data" / "pipe")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_case_readme_twice, r"Readme\.md|README\.md"),
        (_case_newline, r"control characters"),
        (_case_backslash, r"backslash"),
        (_case_not_utf8, r"UTF-8"),
        (_case_symlink_to_directory, r"symlink to a directory"),
        (_case_fifo, r"not a regular file"),
    ],
    ids=["readme-twice", "newline", "backslash", "not-utf8", "symlink-to-dir", "fifo"],
)
def test_push_refuses_unrepresentable_tree(model_dir, tmp_path, make, message) -> None:
    make(model_dir)
    store = tmp_path / "store"
    with pytest.raises(PackagingError, match=message) as err:
        ocimodel.push(model_dir, f"oci:{store}:t")
    assert err.value.hint, "a packaging refusal should say what to do"
    assert not store.exists(), "nothing may be written to the target"


def test_push_refusal_can_be_excluded(model_dir, tmp_path) -> None:
    """The hint says --exclude: it works for each refused kind of entry."""
    expected = set(tree_digest(model_dir))
    _case_newline(model_dir)
    _case_fifo(model_dir)
    _case_symlink_to_directory(model_dir)
    result = ocimodel.push(
        model_dir, f"oci:{tmp_path / 'store'}:t", exclude=["bad*", "pipe", "tok-link"]
    )
    assert {f.path for f in result.files} == expected


def test_push_follows_symlink_to_file(model_dir, tmp_path) -> None:
    (model_dir / "alias.json").symlink_to("config.json")
    (model_dir / "tokenizer" / "deep.json").symlink_to(model_dir / "tokenizer" / "tokenizer.json")
    ref = f"oci:{tmp_path / 'store'}:t"
    result = ocimodel.push(model_dir, ref)
    by_path = {f.path: f for f in result.files}
    assert by_path["alias.json"].digest == sha256((model_dir / "config.json").read_bytes())
    assert by_path["tokenizer/deep.json"].digest == by_path["tokenizer/tokenizer.json"].digest
    out = tmp_path / "out"
    ocimodel.pull(ref, out)
    assert not (out / "alias.json").is_symlink()
    assert (out / "alias.json").read_bytes() == (model_dir / "config.json").read_bytes()
    assert (out / "tokenizer" / "deep.json").read_bytes() == (
        model_dir / "tokenizer" / "tokenizer.json"
    ).read_bytes()


def test_push_refuses_oversize_manifest_before_any_upload(registry, repo_name, tmp_path) -> None:
    root = tmp_path / "many"
    token = secrets.token_hex(8).encode()
    content = b"tiny file " + token
    stem = "f" * 190
    for d in range(10):
        sub = root / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(500):
            (sub / f"{stem}{i:04d}.txt").write_bytes(content)
    store = tmp_path / "store"
    with pytest.raises(PackagingError, match=r"manifest, over the \d+-byte limit") as err:
        ocimodel.push(root, f"oci:{store}:t")
    assert err.value.hint
    assert not store.exists()

    with pytest.raises(PackagingError, match="byte limit"):
        ocimodel.push(root, f"{registry.host}/{repo_name}:t")
    try:
        tags = ocimodel.list_tags(f"{registry.host}/{repo_name}")
    except NotFound:
        tags = []
    assert tags == []
    head = httpx.head(f"{registry.url}/v2/{repo_name}/blobs/{sha256(content)}")
    assert head.status_code == 404, "a file blob was uploaded before the refusal"


@pytest.mark.parametrize("inside", ["store", "out/store", "st[1]ore", "st*re"])
def test_layout_inside_model_directory_is_not_part_of_the_model(
    model_dir, tmp_path, monkeypatch, inside
) -> None:
    """The layout's own files never become layers, whatever its name (a glob character in
    it included): the second push gives the same model as the first."""
    ref = f"oci:{model_dir}/{inside}:t"
    first = ocimodel.push(model_dir, ref)
    assert (model_dir / inside / "oci-layout").is_file()
    second = ocimodel.push(model_dir, ref)
    leaked = [f.path for f in second.files if f.path.startswith(inside + "/")]
    assert not leaked, f"layout files pushed as model files: {leaked[:3]}"
    assert second.digest == first.digest
    assert second.bytes_uploaded == 0
    # the same with relative paths, from inside the model directory
    monkeypatch.chdir(model_dir)
    third = ocimodel.push(".", f"oci:{inside}:t")
    assert third.digest == first.digest
    out = tmp_path / "out"
    ocimodel.pull(ref, out)
    expected = {
        k: v
        for k, v in tree_digest(model_dir).items()
        if not k.startswith(inside.split("/")[0] + "/")
    }
    assert tree_digest(out) == expected


# -- pull destinations -------------------------------------------------------------------


def test_pull_into_an_oci_layout_is_refused(registry, repo_name, model_dir, tmp_path) -> None:
    ref = f"{registry.host}/{repo_name}:1"
    ocimodel.push(model_dir, ref)
    layout = tmp_path / "layout"
    ocimodel.push(model_dir, f"oci:{layout}:m")
    before = tree_digest(layout)
    with pytest.raises(DestinationExists) as err:
        ocimodel.pull(ref, layout)
    assert err.value.hint
    with pytest.raises(DestinationExists):
        ocimodel.pull(f"oci:{layout}:m", layout)
    assert tree_digest(layout) == before
    assert ocimodel.list_tags(f"oci:{layout}") == ["m"]
    assert not staging_dirs(tmp_path)


class _Watch:
    """A Progress that looks at the file system each time a blob starts."""

    def __init__(self, parent: Path, destination: Path) -> None:
        self.parent = parent
        self.destination = destination
        self.in_parent: list[list[str]] = []
        self.in_destination: list[list[str]] = []
        self.started = 0

    def transfer_started(self, blobs) -> None:
        pass

    def blob_started(self, descriptor, label) -> None:
        self.started += 1
        self.in_parent.append([p.name for p in self.parent.iterdir() if p.name.startswith(STAGING)])
        self.in_destination.append(
            [p.name for p in self.destination.iterdir() if p.name.startswith(STAGING)]
        )

    def blob_advanced(self, descriptor, nbytes) -> None:
        pass

    def blob_finished(self, descriptor, skipped) -> None:
        pass


def test_pull_into_existing_destination_stages_inside_it(
    registry, repo_name, model_dir, tmp_path
) -> None:
    ref = f"{registry.host}/{repo_name}:1"
    ocimodel.push(model_dir, ref)
    parent = tmp_path / "readonly"
    dest = parent / "dest"
    dest.mkdir(parents=True)
    (dest / "keep.txt").write_text("mine\n")
    watch = _Watch(parent, dest)
    parent.chmod(0o555)
    try:
        result = ocimodel.pull(ref, dest, progress=watch, concurrency=2)
    finally:
        parent.chmod(0o755)
    assert watch.started >= len(result.files) - 1  # duplicates of one digest start once
    assert all(not names for names in watch.in_parent), (
        f"staged beside the destination: {watch.in_parent}"
    )
    assert all(len(names) == 1 for names in watch.in_destination), (
        f"not staged inside: {watch.in_destination}"
    )
    expected = dict(tree_digest(model_dir))
    expected["keep.txt"] = tree_digest(dest)["keep.txt"]
    assert tree_digest(dest) == expected
    assert not staging_dirs(tmp_path)


def test_pull_into_new_destination_leaves_no_staging(
    registry, repo_name, model_dir, tmp_path
) -> None:
    ref = f"{registry.host}/{repo_name}:1"
    ocimodel.push(model_dir, ref)
    dest = tmp_path / "a" / "b" / "dest"
    ocimodel.pull(ref, dest)
    assert tree_digest(dest) == tree_digest(model_dir)
    assert not staging_dirs(tmp_path)


def _layout_with_manifest(
    tmp_path: Path, model_dir: Path, layers: list[tuple[str, bytes, dict]]
) -> Path:
    """An OCI layout written by hand holding one manifest tagged ``evil``."""
    store = tmp_path / "hand"
    blobs = store / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        (blobs / sha256(data).split(":")[1]).write_bytes(data)
        return {"digest": sha256(data), "size": len(data)}

    config = b'{"descriptor":{"name":"evil"},"config":{},"modelfs":{"type":"layers","diffIds":[]}}'
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": MODEL_ARTIFACT,
        "config": {"mediaType": MODEL_CONFIG, **put(config)},
        "layers": [{"mediaType": mt, **put(data), "annotations": ann} for mt, data, ann in layers],
    }
    data = json.dumps(manifest).encode()
    entry = {
        "mediaType": OCI_MANIFEST,
        **put(data),
        "annotations": {"org.opencontainers.image.ref.name": "evil"},
    }
    (store / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})
    )
    (store / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return store


@pytest.mark.parametrize("name", [".ocimodel-pull-x/evil.bin", ".ocimodel-pull-abc"])
def test_pull_refuses_layer_path_reserved_for_staging(model_dir, tmp_path, name) -> None:
    raw = "application/vnd.cncf.model.weight.v1.raw"
    store = _layout_with_manifest(
        tmp_path,
        model_dir,
        [
            (raw, b"fine\n", {"org.cncf.model.filepath": "fine.txt"}),
            (raw, b"evil\n", {"org.cncf.model.filepath": name}),
        ],
    )
    out = tmp_path / "out"
    with pytest.raises(UnsafePath, match="reserved"):
        ocimodel.pull(f"oci:{store}:evil", out)
    assert not out.exists()
    out.mkdir()
    with pytest.raises(UnsafePath, match="reserved"):
        ocimodel.pull(f"oci:{store}:evil", out)
    assert list(out.iterdir()) == []
    assert not staging_dirs(tmp_path)


# -- layout file modes -------------------------------------------------------------------

_WRITER = """
import sys, ocimodel
model, store, copy_to = sys.argv[1:4]
ocimodel.push(model, f"oci:{store}:a")
ocimodel.push(model, f"oci:{store}:b", name="b")
ocimodel.tag(f"oci:{store}:a", "c")
ocimodel.copy(f"oci:{store}:b", f"oci:{copy_to}:b")
"""


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
@pytest.mark.slow
def test_layout_files_get_umask_modes(model_dir, tmp_path, umask, mode) -> None:
    store, copied = tmp_path / "store", tmp_path / "copied"
    subprocess.run(
        [sys.executable, "-c", _WRITER, str(model_dir), str(store), str(copied)],
        check=True,
        umask=umask,
        timeout=60,
    )
    for layout in (store, copied):
        files = [p for p in layout.rglob("*") if p.is_file()]
        assert {p.name for p in files} >= {"oci-layout", "index.json"}
        assert len([p for p in files if p.parent.name == "sha256"]) >= 3
        wrong = {
            str(p.relative_to(layout)): oct(p.stat().st_mode & 0o777)
            for p in files
            if p.stat().st_mode & 0o777 != mode
        }
        assert not wrong, f"expected {oct(mode)} under umask {oct(umask)}: {wrong}"
        assert not [p for p in files if p.name.startswith(".tmp-")]


# -- graph bound -------------------------------------------------------------------------


def _layout_with_index(tmp_path: Path, model_dir: Path, children: int) -> Path:
    """A layout whose tag ``idx`` is an index of ``children`` distinct model manifests."""
    store = tmp_path / f"idx{children}"
    ocimodel.push(model_dir, f"oci:{store}:m")
    info = ocimodel.inspect(f"oci:{store}:m")
    blobs = store / "blobs" / "sha256"
    entries = []
    for i in range(children):
        manifest = dict(info.manifest, annotations={"org.opencontainers.image.version": str(i)})
        data = json.dumps(manifest).encode()
        (blobs / sha256(data).split(":")[1]).write_bytes(data)
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256(data),
                "size": len(data),
                "artifactType": MODEL_ARTIFACT,
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    (blobs / sha256(index).split(":")[1]).write_bytes(index)
    document = json.loads((store / "index.json").read_text())
    document["manifests"].append(
        {
            "mediaType": OCI_INDEX,
            "digest": sha256(index),
            "size": len(index),
            "annotations": {"org.opencontainers.image.ref.name": "idx"},
        }
    )
    (store / "index.json").write_text(json.dumps(document))
    return store


def test_copy_refuses_index_graph_over_the_manifest_bound(model_dir, tmp_path, monkeypatch) -> None:
    from ocimodel.targets import copy as engine

    monkeypatch.setattr(engine, "MAX_GRAPH_MANIFESTS", 5)
    small = _layout_with_index(tmp_path, model_dir, 4)
    result = ocimodel.copy(
        f"oci:{small}:idx", f"oci:{tmp_path / 'ok'}:idx"
    )  # control: under the bound
    assert ocimodel.inspect(f"oci:{tmp_path / 'ok'}:idx").digest == result.digest

    big = _layout_with_index(tmp_path, model_dir, 6)
    dest = tmp_path / "dest"
    with pytest.raises(InvalidManifest, match="more than 5 manifests"):
        ocimodel.copy(f"oci:{big}:idx", f"oci:{dest}:idx")
    assert not dest.exists() or ocimodel.list_tags(f"oci:{dest}") == []
    assert not dest.exists() or not [p for p in (dest / "blobs").rglob("*") if p.is_file()]


# -- compressed archive expansion bound --------------------------------------------------


def _tar_gz(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), compresslevel=9)


def _push_tar_gz_artifact(registry, repo: str, tag: str, layer: bytes, path: str) -> None:
    config = b'{"descriptor":{"name":"t"},"config":{},"modelfs":{"type":"layers","diffIds":[]}}'
    put_blob(registry.url, repo, config)
    put_blob(registry.url, repo, layer)
    put_manifest(
        registry.url,
        repo,
        tag,
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": MODEL_ARTIFACT,
            "config": {"mediaType": MODEL_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [
                {
                    "mediaType": "application/vnd.cncf.model.dataset.v1.tar+gzip",
                    "digest": sha256(layer),
                    "size": len(layer),
                    "annotations": {"org.cncf.model.filepath": path},
                }
            ],
        },
        OCI_MANIFEST,
    )


def test_compressed_archive_expansion_is_bounded(
    registry, repo_name, tmp_path, monkeypatch
) -> None:
    from ocimodel.packaging import unpack

    monkeypatch.setattr(unpack, "MIN_EXPANSION_BYTES", 64 * 1024)
    bomb = _tar_gz("z/zeros.bin", bytes(4 << 20))  # ~4 KiB expanding to 4 MiB: ~1000x
    assert len(bomb) * 50 < 4 << 20
    _push_tar_gz_artifact(registry, repo_name, "bomb", bomb, "z")
    dest = tmp_path / "out"
    with pytest.raises(ArchiveTooLarge):
        ocimodel.pull(f"{registry.host}/{repo_name}:bomb", dest)
    assert not dest.exists()
    dest.mkdir()
    with pytest.raises(ArchiveTooLarge):
        ocimodel.pull(f"{registry.host}/{repo_name}:bomb", dest)
    assert list(dest.iterdir()) == []
    assert not staging_dirs(tmp_path)

    # Control: over MIN_EXPANSION_BYTES but under 50x its compressed size is fine.
    text = secrets.token_hex(128 * 1024).encode()  # 256 KiB, compresses about 2x
    fine = _tar_gz("t/hex.txt", text)
    assert len(text) > 64 * 1024 and len(text) < 50 * len(fine)
    _push_tar_gz_artifact(registry, repo_name, "fine", fine, "t")
    ok = tmp_path / "ok"
    ocimodel.pull(f"{registry.host}/{repo_name}:fine", ok)
    assert (ok / "t" / "hex.txt").read_bytes() == text


# -- API argument forms ------------------------------------------------------------------


def test_created_now(model_dir, tmp_path) -> None:
    ref = f"oci:{tmp_path / 'store'}:t"
    before = datetime.now(UTC).replace(microsecond=0)
    ocimodel.push(model_dir, ref, created="now")
    after = datetime.now(UTC)
    info = ocimodel.inspect(ref)
    stamp = info.annotations[CREATED]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp), stamp
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= moment <= after
    created_at = datetime.fromisoformat(info.config["descriptor"]["createdAt"])
    assert created_at == moment


@pytest.mark.parametrize(
    "given", ["2024-01-02T03:04:05", "2024-01-02T03:04:05Z", "2024-01-02T05:04:05+02:00"]
)
def test_created_iso_string_is_stored_in_utc_with_z(model_dir, tmp_path, given) -> None:
    ref = f"oci:{tmp_path / 'store'}:t"
    ocimodel.push(model_dir, ref, created=given)
    info = ocimodel.inspect(ref)
    assert info.annotations[CREATED] == "2024-01-02T03:04:05Z"
    created_at = datetime.fromisoformat(info.config["descriptor"]["createdAt"])
    assert created_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_created_datetime_and_bad_string(model_dir, tmp_path) -> None:
    ref = f"oci:{tmp_path / 'store'}:t"
    ocimodel.push(model_dir, ref, created=datetime(2024, 1, 2, 3, 4, 5))
    assert ocimodel.inspect(ref).annotations[CREATED] == "2024-01-02T03:04:05Z"
    with pytest.raises(UsageError, match="yesterday"):
        ocimodel.push(model_dir, f"oci:{tmp_path / 'other'}:t", created="yesterday")
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "kinds", [["*.md=doc"], {"*.md": "doc"}, ("*.md= DOC ",)], ids=["list", "dict", "tuple"]
)
def test_kinds_as_strings_or_mapping(model_dir, tmp_path, kinds) -> None:
    ref = f"oci:{tmp_path / 'store'}:t"
    result = ocimodel.push(model_dir, ref, kinds=kinds)
    assert {f.path: f.kind for f in result.files}["README.md"] == "doc"
    layers = {
        layer["annotations"]["org.cncf.model.filepath"]: layer
        for layer in ocimodel.inspect(ref).manifest["layers"]
    }
    assert layers["README.md"]["mediaType"] == "application/vnd.cncf.model.doc.v1.raw"
    assert layers["README.md"]["annotations"][UNTESTED] == "false"
    assert layers["config.json"]["annotations"][UNTESTED] == "true"


def test_kinds_forms_give_the_same_manifest(model_dir, tmp_path) -> None:
    as_list = ocimodel.push(model_dir, f"oci:{tmp_path / 'a'}:t", kinds=["data/*.csv=weight"])
    as_dict = ocimodel.push(model_dir, f"oci:{tmp_path / 'b'}:t", kinds={"data/*.csv": "weight"})
    plain = ocimodel.push(model_dir, f"oci:{tmp_path / 'c'}:t")
    assert as_list.digest == as_dict.digest != plain.digest
    assert {f.path: f.kind for f in as_list.files}["data/eval.csv"] == "weight"
    assert {f.path: f.kind for f in plain.files}["data/eval.csv"] == "dataset"


@pytest.mark.parametrize("kinds", [{"*": "weights"}, ["*=weights"], ["no-equals"], ["=doc"]])
def test_bad_kinds_are_usage_errors(model_dir, tmp_path, kinds) -> None:
    store = tmp_path / "store"
    with pytest.raises(UsageError):
        ocimodel.push(model_dir, f"oci:{store}:t", kinds=kinds)
    assert not store.exists()


@pytest.mark.parametrize(
    ("argument", "value", "annotation"),
    [
        ("licenses", "Apache-2.0", "org.opencontainers.image.licenses"),
        ("authors", "Ada Lovelace", "org.opencontainers.image.authors"),
    ],
)
def test_string_for_a_list_argument_is_not_split_into_characters(
    model_dir, tmp_path, argument, value, annotation
) -> None:
    """``licenses="Apache-2.0"`` is an easy slip for ``licenses=["Apache-2.0"]``: it must
    either mean the one value or be refused, never record one entry per character."""
    ref = f"oci:{tmp_path / 'store'}:t"
    try:
        ocimodel.push(model_dir, ref, **{argument: value})
    except UsageError:
        return
    info = ocimodel.inspect(ref)
    assert info.annotations[annotation] == value
    assert info.config["descriptor"][argument] == [value]


def test_string_for_exclude_is_not_split_into_characters(model_dir, tmp_path) -> None:
    (model_dir / "train.log").write_text("noise\n")
    ref = f"oci:{tmp_path / 'store'}:t"
    try:
        result = ocimodel.push(model_dir, ref, exclude="*.log")
    except UsageError:
        return
    assert {f.path for f in result.files} == set(tree_digest(model_dir)) - {"train.log"}
