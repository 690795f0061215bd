"""Reading what other tools push (issue 14): ModelPack artifacts as modctl writes them (tar
layers whose file names live only in the tar headers) and directories pushed by oras-py.

Every artifact is pushed byte for byte to the real registry, pulled with the `ocimodel`
command, and compared with what the peer itself unpacks: oras-py's own pull for an ORAS
directory, and a plain tar extraction into the model root for a ModelPack tar layer with no
path (what modctl's pull does with the names in the headers). Hostile tars in such layers
are refused with nothing written (docs/threats.md 10)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ocimodel.errors import NotAModel
from ocimodel.oci.models import Descriptor, Manifest, parse_manifest
from ocimodel.oci.reference import parse_reference
from ocimodel.packaging.unpack import header_path, plan_files
from ocimodel.targets.open import open_target
from tests.support.files import tree_digest
from tests.test_archive import go_style_tar, make_tar, member, push_artifact, zstd_compress

MODEL = "application/vnd.cncf.model.{kind}.v1.{packing}"
OCI_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocimodel", *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def unpacked_by_tar(layers: list[bytes], into: Path) -> Path:
    """What a peer that trusts the headers writes: every layer's tar extracted at the root."""
    into.mkdir()
    for data in layers:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            tar.extractall(into, filter="data")
    return into


def files_only(tree: dict[str, tuple[str, int]]) -> dict[str, str]:
    """relpath -> sha256 (modes are compared apart: peers apply the tar's mode unmasked)."""
    return {path: digest for path, (digest, _mode) in tree.items()}


def dirs_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()}


# -- ModelPack tar layers without a file path (modctl, the spec's example manifest) -------


def test_plan_takes_an_unnamed_modelpack_tar_layer_and_names_what_is_missing() -> None:
    config = Descriptor.for_bytes("application/vnd.cncf.model.config.v1+json", b"{}")
    tar_layer = Descriptor.for_bytes(MODEL.format(kind="weight", packing="tar+gzip"), b"t")
    planned = plan_files(Manifest(schemaVersion=2, config=config, layers=[tar_layer]))
    assert [(p.relpath, p.archive) for p in planned] == [("", "gzip")]

    raw = Descriptor.for_bytes(MODEL.format(kind="weight", packing="raw"), b"r")
    with pytest.raises(NotAModel) as caught:
        plan_files(Manifest(schemaVersion=2, config=config, layers=[raw]))
    # Both annotations a file name may come from are named, not only the OCI title.
    assert "org.cncf.model.filepath" in caught.value.message
    assert "org.opencontainers.image.title" in caught.value.message


@pytest.fixture
def modctl_model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "tokenizer").mkdir(parents=True)
    (root / "src").mkdir()
    (root / "data").mkdir()
    (root / "model.safetensors").write_bytes(os.urandom(200_000))
    (root / "config.json").write_bytes(b'{"architectures": ["Tiny"]}\n')
    (root / "tokenizer/tokenizer.json").write_bytes(b'{"vocab": {"a": 0}}\n')
    (root / "tokenizer/special_tokens.json").write_bytes(b"{}\n")
    (root / "README.md").write_bytes("# Tiny\n\nnon-ASCII: café\n".encode())
    (root / "src/train.py").write_bytes(b"print('train')\n")
    (root / "src/train.py").chmod(0o755)
    (root / "data/eval.csv").write_bytes(b"x,y\n1,2\n")
    return root


def test_modctl_tar_layers_without_file_paths(registry, repo_name: str, modctl_model: Path, tmp_path: Path) -> None:
    """Every ModelPack kind, tar / tar+gzip / tar+zstd, current and legacy names, no
    annotation at all: the files land where the tar headers say, as the peer unpacks them."""
    tars = {
        "model.safetensors": go_style_tar(modctl_model, "model.safetensors"),
        "config.json": go_style_tar(modctl_model, "config.json"),
        "tokenizer": go_style_tar(modctl_model, "tokenizer"),  # a directory in one layer
        "README.md": go_style_tar(modctl_model, "README.md"),
        "src/train.py": go_style_tar(modctl_model, "src/train.py"),
        "data/eval.csv": go_style_tar(modctl_model, "data/eval.csv"),
    }
    layers = [
        (MODEL.format(kind="weight", packing="tar"), tars["model.safetensors"], {}),
        (MODEL.format(kind="weight.config", packing="tar+gzip"), gzip.compress(tars["config.json"]), {}),
        (MODEL.format(kind="weight.config", packing="tar+zstd"), zstd_compress(tars["tokenizer"]), {}),
        ("application/vnd.cnai.model.doc.v1.tar", tars["README.md"], {}),
        (MODEL.format(kind="code", packing="tar+gzip"), gzip.compress(tars["src/train.py"]), {}),
        (MODEL.format(kind="dataset", packing="tar+zstd"), zstd_compress(tars["data/eval.csv"]), {}),
    ]
    push_artifact(registry, repo_name, "v1", layers)
    ref = f"{registry.host}/{repo_name}:v1"

    dest = tmp_path / "out"
    run = cli("pull", ref, dest)
    assert run.returncode == 0, run.stderr
    peer = unpacked_by_tar(list(tars.values()), tmp_path / "peer")
    assert files_only(tree_digest(dest)) == files_only(tree_digest(peer)) == files_only(tree_digest(modctl_model))
    assert dirs_under(dest) == dirs_under(peer)
    assert (dest / "src/train.py").stat().st_mode & 0o777 == 0o755  # the tar's mode, masked
    assert not list(tmp_path.glob(".ocimodel-pull-*"))

    # What inspect can show for each layer: the name in its first tar header, read from
    # the start of the blob (the API's inspect is to call this; see docs/peers.md).
    with open_target(parse_reference(ref)) as source:
        manifest = source.fetch_manifest(source.resolve("v1"))
        layers_read = parse_manifest(manifest, "application/vnd.oci.image.manifest.v1+json").layers
        assert [header_path(source, layer) for layer in layers_read] == list(tars)

    # --kind selects an unnamed layer by its media type.
    docs = tmp_path / "docs"
    run = cli("pull", ref, docs, "--kind", "doc")
    assert run.returncode == 0, run.stderr
    assert files_only(tree_digest(docs)) == {"README.md": files_only(tree_digest(peer))["README.md"]}
    # A selection that matches nothing names such layers by digest, not by a blank.
    run = cli("pull", ref, tmp_path / "none", "--include", "nomatch*")
    assert run.returncode == 2, run.stderr  # NothingSelected is a usage error
    assert "layer sha256:" in run.stderr, run.stderr


def test_inspect_read_layers_names_unnamed_tar_layers_after_checking_them(
    registry, repo_name: str, modctl_model: Path, tmp_path: Path
) -> None:
    """inspect leaves a tar layer with no path unnamed unless asked to read the layers;
    then each is downloaded, its digest checked, and it is named by its headers."""
    layers = [
        (MODEL.format(kind="weight", packing="tar"), go_style_tar(modctl_model, "model.safetensors"), {}),
        (MODEL.format(kind="weight.config", packing="tar+gzip"), gzip.compress(go_style_tar(modctl_model, "tokenizer")), {}),
        (MODEL.format(kind="doc", packing="raw"), b"# readme\n", {"org.cncf.model.filepath": "README.md"}),
    ]
    push_artifact(registry, repo_name, "v1", layers)
    ref = f"{registry.host}/{repo_name}:v1"
    plain = cli("inspect", ref, "--json")
    assert plain.returncode == 0, plain.stderr
    assert [f["path"] for f in json.loads(plain.stdout)["files"]] == ["", "", "README.md"]
    read = cli("inspect", ref, "--json", "--read-layers")
    assert read.returncode == 0, read.stderr
    assert [f["path"] for f in json.loads(read.stdout)["files"]] == ["model.safetensors", "tokenizer", "README.md"]

    # A layer whose bytes are not its digest's: no name is shown, the inspect fails.
    layout = tmp_path / "layout"
    assert cli("copy", ref, f"oci:{layout}:v1").returncode == 0
    blob = layout / "blobs" / "sha256" / hashlib.sha256(layers[0][1]).hexdigest()
    tampered = bytearray(blob.read_bytes())
    tampered[600] ^= 1  # inside the file's content, not its header
    blob.write_bytes(bytes(tampered))
    bad = cli("inspect", f"oci:{layout}:v1", "--read-layers")
    assert bad.returncode == 1 and "digest" in bad.stderr.lower() and "Traceback" not in bad.stderr, bad.stderr
    assert "model.safetensors" not in bad.stdout


HOSTILE = {
    "dotdot": make_tar(member("../escaped.txt", b"owned\n")),
    "absolute": make_tar(member("/tmp/escaped.txt", b"owned\n")),
    "nested-dotdot": make_tar(member("a/../../escaped.txt", b"owned\n")),
    "symlink-then-write": make_tar(
        member("w", kind=tarfile.DIRTYPE),
        member("w/link", kind=tarfile.SYMTYPE, linkname="../.."),
        member("w/link/escaped.txt", b"owned\n"),
    ),
    "hardlink": make_tar(member("h", kind=tarfile.LNKTYPE, linkname="/etc/passwd")),
    "staging-name": make_tar(member(".ocimodel-pull-x/journal.json", b"{}")),
}


# What the refusal names, per case.
EXPECTED = {
    "dotdot": "'../escaped.txt'",
    "absolute": "'/tmp/escaped.txt'",
    "nested-dotdot": "'a/../../escaped.txt'",
    "symlink-then-write": "symlink",
    "hardlink": "hardlink",
    "staging-name": "reserved for pull staging",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("packing", ["tar", "tar+gzip"])
def test_hostile_unnamed_tar_layer_is_refused_with_nothing_written(
    registry, repo_name: str, tmp_path: Path, case: str, packing: str
) -> None:
    evil = HOSTILE[case]
    good = make_tar(member("README.md", b"# fine\n"))
    blob = gzip.compress(evil) if packing == "tar+gzip" else evil
    layers = [
        (MODEL.format(kind="doc", packing="tar"), good, {}),
        (MODEL.format(kind="weight", packing=packing), blob, {}),
    ]
    push_artifact(registry, repo_name, "v1", layers)
    work = tmp_path / "work"
    dest = work / "out"
    dest.mkdir(parents=True)
    run = cli("pull", f"{registry.host}/{repo_name}:v1", dest)
    assert run.returncode == 1, (run.stdout, run.stderr)
    # Refused for what the tar holds (not for want of a file name annotation).
    assert run.stderr.startswith("error: "), run.stderr
    assert EXPECTED[case] in run.stderr, run.stderr
    assert list(dest.iterdir()) == []
    assert sorted(p.name for p in work.iterdir()) == ["out"]
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/escaped.txt").exists()


def test_unnamed_tar_layers_that_collide_are_refused(registry, repo_name: str, tmp_path: Path) -> None:
    layers = [
        (MODEL.format(kind="weight", packing="tar"), make_tar(member("w.bin", b"one")), {}),
        (MODEL.format(kind="weight", packing="tar"), make_tar(member("W.bin", b"two")), {}),
    ]
    push_artifact(registry, repo_name, "v1", layers)
    dest = tmp_path / "out"
    run = cli("pull", f"{registry.host}/{repo_name}:v1", dest)
    assert run.returncode == 1, run.stderr
    assert "w.bin" in run.stderr and "W.bin" in run.stderr
    assert not dest.exists()


# -- directories pushed by oras-py ---------------------------------------------------------


@pytest.fixture
def oras_client(registry):
    import oras.client

    logging.getLogger("oras").setLevel(logging.WARNING)  # oras-py logs every file at INFO
    return oras.client.OrasClient(hostname=registry.host, insecure=True)


def test_oras_py_directory_is_pulled_as_oras_py_unpacks_it(
    registry, repo_name: str, modctl_model: Path, tmp_path: Path, oras_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    (modctl_model / "tokenizer/empty").mkdir()  # an empty directory travels too
    (modctl_model / "tokenizer/nested").mkdir()
    (modctl_model / "tokenizer/nested/merges.txt").write_bytes(b"a b\n")
    monkeypatch.chdir(modctl_model)
    ref = f"{registry.host}/{repo_name}:v1"
    oras_client.push(target=ref, files=["tokenizer", "config.json"], disable_path_validation=True, quiet=True)
    manifest = oras_client.get_manifest(ref)
    directory = next(layer for layer in manifest["layers"] if layer["annotations"]["org.opencontainers.image.title"] == "tokenizer")
    assert directory["mediaType"] == OCI_TAR_GZIP  # how oras-py marks a directory: no unpack annotation
    assert "io.deis.oras.content.unpack" not in directory["annotations"]

    ours = tmp_path / "ours"
    run = cli("pull", ref, ours)
    assert run.returncode == 0, run.stderr
    theirs = tmp_path / "theirs"
    oras_client.pull(target=ref, outdir=str(theirs))
    assert (ours / "tokenizer").is_dir()
    assert files_only(tree_digest(ours)) == files_only(tree_digest(theirs))
    assert dirs_under(ours) == dirs_under(theirs) == {"tokenizer", "tokenizer/empty", "tokenizer/nested"}

    # inspect lists the directory by its title.
    run = cli("inspect", ref, "--json")
    assert run.returncode == 0, run.stderr
    assert '"tokenizer"' in run.stdout


# Members under the titled directory `sub`, as oras-py names them, each hostile one way.
ORAS_HOSTILE = {
    "dotdot": (make_tar(member("sub/a.txt", b"a\n"), member("sub/../../escaped.txt", b"owned\n")),
               "'sub/../../escaped.txt'"),
    "absolute": (make_tar(member("/tmp/escaped.txt", b"owned\n")), "'/tmp/escaped.txt'"),
    "symlink-then-write": (make_tar(
        member("sub", kind=tarfile.DIRTYPE),
        member("sub/link", kind=tarfile.SYMTYPE, linkname="../.."),
        member("sub/link/escaped.txt", b"owned\n"),
    ), "symlink"),
    "hardlink": (make_tar(member("sub/h", kind=tarfile.LNKTYPE, linkname="/etc/passwd")), "hardlink"),
    # A member beside the titled directory: oras-py's own check lets it through (it stays
    # in the output directory); ocimodel keeps a layer to the path it declares.
    "outside-title": (make_tar(member("sub/a.txt", b"a\n"), member("other.txt", b"x\n")), "outside the layer's declared path"),
}


@pytest.mark.parametrize("case", sorted(ORAS_HOSTILE))
def test_hostile_oras_directory_is_refused_with_nothing_written(registry, repo_name: str, tmp_path: Path, case: str) -> None:
    tar, expected = ORAS_HOSTILE[case]
    evil = gzip.compress(tar)
    layers = [
        (OCI_TAR_GZIP, evil, {"org.opencontainers.image.title": "sub"}),
        ("application/vnd.oci.image.layer.v1.tar", b"fine\n", {"org.opencontainers.image.title": "notes.txt"}),
    ]
    push_artifact(registry, repo_name, "v1", layers,
                  config=("application/vnd.unknown.config.v1+json", b"{}"), artifact_type=None)
    work = tmp_path / "work"
    dest = work / "out"
    dest.mkdir(parents=True)
    run = cli("pull", f"{registry.host}/{repo_name}:v1", dest)
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert expected in run.stderr, run.stderr
    assert list(dest.iterdir()) == []
    assert sorted(p.name for p in work.iterdir()) == ["out"]


def test_oras_tar_gzip_layer_marked_not_to_unpack_stays_a_file(registry, repo_name: str, tmp_path: Path) -> None:
    data = gzip.compress(make_tar(member("sub/a.txt", b"a\n")))
    layers = [(OCI_TAR_GZIP, data, {"org.opencontainers.image.title": "sub.tar.gz", "io.deis.oras.content.unpack": "false"})]
    push_artifact(registry, repo_name, "v1", layers,
                  config=("application/vnd.unknown.config.v1+json", b"{}"), artifact_type=None)
    dest = tmp_path / "out"
    run = cli("pull", f"{registry.host}/{repo_name}:v1", dest)
    assert run.returncode == 0, run.stderr
    assert (dest / "sub.tar.gz").read_bytes() == data
