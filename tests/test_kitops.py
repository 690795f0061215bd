"""KitOps ModelKits (issue 14), read fully: inspect maps the Kitfile onto the card and lists
each layer at the path its Kitfile entry gives; pull unpacks each layer there; --kind and
--include select; copy, export, sign and verify work on them.

Every ModelKit here is built from KitOps' published format (docs/peers.md): the Kitfile as
JSON in the config blob, layers as `kit pack` writes them (tar from the context directory
since KitOps 0.5, base-name tars before; raw files with their ModelPack annotations in the
newest KitOps), pushed as `kit push` does (an OCI manifest with no mediaType field and the
CLI version annotation), then read with ocimodel and compared with what `kit unpack` writes
(:func:`kit_unpack`, KitOps' own algorithm re-stated)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import posixpath
import tarfile
from pathlib import Path

import httpx
import pytest

from ocimodel.errors import NotAModel, UnsafePath
from ocimodel.metadata.kitcard import kitfile_card, modelkit_info
from ocimodel.oci.models import Descriptor, Manifest
from ocimodel.packaging.kitfile import parse_kit_layer, plan_modelkit
from ocimodel.packaging.selection import select_files
from tests.support.files import tree_digest
from tests.test_archive import make_tar, member, zstd_compress
from tests.test_cli import json_of, ocimodel_cli, ok

KIT_CONFIG = "application/vnd.kitops.modelkit.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SUBTYPE = "ml.kitops.modelkit.layer-subtype"
FILEPATH = "org.cncf.model.filepath"
FILE_METADATA = "org.cncf.model.file.metadata+json"


def layer_type(base: str, fmt: str = "tar", comp: str = "") -> str:
    return f"application/vnd.kitops.modelkit.{base}.v1.{fmt}" + (f"+{comp}" if comp else "")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def go_json(document: object) -> bytes:
    """encoding/json's form: compact, fields in struct order (dicts keep insertion order)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


# -- kit pack, re-stated ------------------------------------------------------------------


class GoTarInfo(tarfile.TarInfo):
    """A header as Go's archive/tar writes the name it is given: Python's tarfile would add
    a trailing slash to a directory's name, kit's headers have none."""

    def get_info(self):
        info = super().get_info()
        info["name"] = self.name
        return info


def _header(context: Path, path: Path, name: str, uid: int) -> tarfile.TarInfo:
    st = path.stat()
    info = GoTarInfo(name)
    info.type = tarfile.DIRTYPE if path.is_dir() else tarfile.REGTYPE
    info.mode = st.st_mode & 0o777
    info.size = 0 if path.is_dir() else st.st_size
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, uid, 0, "", ""
    return info


def kit_tar(context: Path, layer_path: str) -> bytes:
    """A layer as `kit pack` (KitOps >= 0.5, pkg/lib/filesystem/tar.go) writes it: a walk of
    the whole context directory in lexical order keeping the layer path, its parent
    directories and everything under it, named relative to the context; uid 1000, gid 0,
    no user names, zero times."""
    base = posixpath.normpath(layer_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        def walk(directory: Path) -> None:
            for path in sorted(directory.iterdir(), key=lambda p: p.name.encode()):
                name = path.relative_to(context).as_posix()
                related = name == base or base.startswith(name + "/") or name.startswith(base + "/") or base == "."
                if not related:
                    continue
                info = _header(context, path, name, 1000)
                if path.is_dir():
                    tar.addfile(info)
                    walk(path)
                else:
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)
        walk(context)
    return buf.getvalue()


def legacy_kit_tar(context: Path, layer_path: str) -> bytes:
    """A layer as `kit pack` before KitOps 0.5 wrote it: a file by its base name alone, a
    directory named from its parent (the directory itself first); uid 0."""
    top = context / layer_path
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        if top.is_file():
            with open(top, "rb") as handle:
                tar.addfile(_header(context, top, top.name, 0), handle)
        else:
            for path in [top, *sorted(top.rglob("*"))]:
                info = _header(context, path, path.relative_to(top.parent).as_posix(), 0)
                if path.is_dir():
                    tar.addfile(info)
                else:
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)
    return buf.getvalue()


def compress(data: bytes, comp: str) -> bytes:
    return {"": lambda d: d, "gzip": gzip.compress, "zstd": zstd_compress}[comp](data)


def raw_annotations(context: Path, path: str) -> dict[str, str]:
    """What the newest KitOps puts on a raw layer (fillDescAnnotations)."""
    st = (context / path).stat()
    meta = {"name": Path(path).name, "mode": st.st_mode & 0o777, "uid": 0, "gid": 0, "size": st.st_size,
            "mtime": "2026-01-01T00:00:00Z", "typeflag": 0}
    return {FILEPATH: path, FILE_METADATA: go_json(meta).decode()}


def push_modelkit(registry, repo: str, tag: str, kitfile: dict, layers: list[tuple[str, bytes, dict[str, str]]],
                  *, artifact_type: str | None = None) -> bytes:
    """Upload the blobs and PUT the manifest as `kit push` does (oras-go): no mediaType
    field in the manifest, the CLI version annotation; returns the manifest bytes."""
    config = go_json(kitfile)
    with httpx.Client(base_url=registry.url) as client:
        for data in [config, *(blob for _, blob, _ in layers)]:
            r = client.post(f"/v2/{repo}/blobs/uploads/")
            assert r.status_code == 202, r.text
            location = httpx.URL(registry.url).join(r.headers["Location"])
            r = client.put(location.copy_merge_params({"digest": sha(data)}), content=data,
                           headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
        manifest: dict = {"schemaVersion": 2}
        if artifact_type:
            manifest["mediaType"] = OCI_MANIFEST
            manifest["artifactType"] = artifact_type
        manifest["config"] = {"mediaType": KIT_CONFIG, "digest": sha(config), "size": len(config)}
        manifest["layers"] = [
            {"mediaType": media_type, "digest": sha(blob), "size": len(blob), **({"annotations": ann} if ann else {})}
            for media_type, blob, ann in layers
        ]
        manifest["annotations"] = {"ml.kitops.modelkit.cli-version": "1.7.0"}
        body = go_json(manifest)
        r = client.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
    return body


# -- kit unpack, re-stated -----------------------------------------------------------------


def kit_unpack(kitfile: dict, layers: list[tuple[str, bytes, dict[str, str]]], into: Path) -> Path:
    """What `kit unpack` writes (pkg/lib/filesystem/unpack/core.go): the layers of each type
    matched to the Kitfile entries of that type in order (prompts: code layers with the
    prompt subtype); a tar extracted at the root when its entry records a digest, else in
    the parent of the entry's path; a raw layer written at its filepath annotation."""
    into.mkdir()
    model = kitfile.get("model") or {}
    entries = {"model": [model], "modelpart": model.get("parts", []), "code": kitfile.get("code", []),
               "prompt": kitfile.get("prompts", []), "dataset": kitfile.get("datasets", []),
               "docs": kitfile.get("docs", []), "mcpb": kitfile.get("mcpServers", [])}
    seen = dict.fromkeys(entries, 0)
    for media_type, blob, layer_annotations in layers:
        base, fmt, comp = media_type.split(".")[3], media_type.split(".v1.")[1].partition("+")[0], media_type.partition("+")[2]
        kind = "prompt" if base == "code" and layer_annotations.get(SUBTYPE) == "prompt" else base
        entry = entries[kind][seen[kind]]
        seen[kind] += 1
        data = {"": lambda d: d, "gzip": gzip.decompress,
                "zstd": lambda d: __import__("zstandard").ZstdDecompressor().decompressobj().decompress(d)}[comp](blob)
        if fmt == "raw":
            target = into / layer_annotations[FILEPATH]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            continue
        assert "digest" not in entry or entry["digest"] == sha(blob)
        where = into if "digest" in entry else into / posixpath.dirname(posixpath.normpath(entry["path"]))
        where.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            tar.extractall(where, filter="data")
    return into


def contents(root: Path) -> dict[str, str]:
    return {path: digest for path, (digest, _mode) in tree_digest(root).items()}


# -- a project, as a user would pack it -----------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for directory in ("models", "src/lib", "data", "eval/eval", "docs", "prompts"):
        (root / directory).mkdir(parents=True)
    (root / "models/model.gguf").write_bytes(os.urandom(150_000))
    (root / "models/lora.safetensors").write_bytes(os.urandom(20_000))
    (root / "models/unrelated.bin").write_bytes(b"not in the kitfile")
    (root / "src/train.py").write_bytes(b"print('train')\n")
    (root / "src/train.py").chmod(0o755)
    (root / "src/lib/util.py").write_bytes(b"X = 1\n")
    (root / "data/train.csv").write_bytes(b"x,y\n1,2\n")
    (root / "data/test.csv").write_bytes(b"x,y\n3,4\n")
    # A directory named as its parent: where the member names start is not guessable.
    (root / "eval/eval/scores.csv").write_bytes(b"metric,value\nacc,0.9\n")
    (root / "docs/README.md").write_bytes("# Tiny\n\ncafé\n".encode())
    (root / "prompts/system.md").write_bytes(b"You are terse.\n")
    (root / "LICENSE").write_bytes(b"Apache-2.0\n")
    return root


def kitfile_for(with_digests: list[bytes] | None = None) -> dict:
    """The Kitfile of `project`, in KitOps' field order; ``with_digests``: the layer blobs,
    in order model, modelpart, code, dataset, docs, prompt (as KitOps >= 0.5 records them)."""
    kitfile: dict = {
        "manifestVersion": "1.0.0",
        "package": {"name": "tiny-llm", "version": "1.2.3", "description": "A tiny test model.",
                    "license": "Apache-2.0", "authors": ["Ada", "Linus"]},
        "model": {"name": "tiny", "path": "./models/model.gguf", "license": "MIT", "framework": "llama.cpp",
                  "format": "gguf", "version": "0.1", "description": "the weights",
                  "parts": [{"name": "adapter", "path": "models/lora.safetensors", "type": "lora"}],
                  "parameters": {"context": 2048, "temperature": 0.2}},
        "code": [{"path": "src/", "description": "training code", "license": "BSD-3-Clause"}],
        "datasets": [{"name": "train", "path": "data", "description": "training split", "license": "CC-BY-4.0"},
                     {"name": "eval", "path": "eval/eval"}],
        "docs": [{"path": "docs/README.md", "description": "readme"}],
        "prompts": [{"path": "prompts/system.md", "description": "system prompt"}],
    }
    if with_digests is not None:
        entries = [kitfile["model"], kitfile["model"]["parts"][0], kitfile["code"][0], *kitfile["datasets"],
                   kitfile["docs"][0], kitfile["prompts"][0]]
        for entry, blob in zip(entries, with_digests, strict=True):
            entry["digest"] = sha(blob)
            entry["diffId"] = sha(blob)  # not checked by kit unpack, nor here
    return kitfile


def modelkit_layers(project: Path, *, legacy: bool = False) -> tuple[dict, list[tuple[str, bytes, dict[str, str]]]]:
    tar = legacy_kit_tar if legacy else kit_tar
    plan = [("model", "models/model.gguf", "gzip", {}), ("modelpart", "models/lora.safetensors", "zstd", {}),
            ("code", "src", "", {}), ("dataset", "data", "gzip", {}), ("dataset", "eval/eval", "", {}),
            ("docs", "docs/README.md", "zstd", {}),
            ("code", "prompts/system.md", "gzip", {SUBTYPE: "prompt"})]
    layers = [(layer_type(base, "tar", comp), compress(tar(project, path), comp), ann) for base, path, comp, ann in plan]
    kitfile = kitfile_for(None if legacy else [blob for _, blob, _ in layers])
    return kitfile, layers


# -- planning (no registry) -------------------------------------------------------------------


def test_kit_layer_media_types() -> None:
    assert parse_kit_layer("application/vnd.kitops.modelkit.model.v1.tar") == ("model", "tar", "none")
    assert parse_kit_layer("application/vnd.kitops.modelkit.dataset.v1.tar+gzip") == ("dataset", "tar", "gzip")
    assert parse_kit_layer("application/vnd.kitops.modelkit.docs.v1.raw+zstd") == ("docs", "raw", "zstd")
    assert parse_kit_layer("application/vnd.kitops.modelkit.mcpb.v1.raw") == ("mcpb", "raw", "none")
    assert parse_kit_layer("application/vnd.cncf.model.weight.v1.tar") is None
    with pytest.raises(NotAModel, match="unknown compression"):
        parse_kit_layer("application/vnd.kitops.modelkit.model.v1.tar+lz4")


def _manifest(layers: list[tuple[str, bytes, dict[str, str]]]) -> Manifest:
    return Manifest(schemaVersion=2, config=Descriptor.for_bytes(KIT_CONFIG, b"{}"),
                    layers=[Descriptor.for_bytes(t, b, a or None) for t, b, a in layers])


def test_plan_matches_layers_to_kitfile_entries(project: Path) -> None:
    kitfile, layers = modelkit_layers(project)
    planned = plan_modelkit(_manifest(layers), kitfile)
    assert [(p.relpath, p.kind, p.archive, p.names_from) for p in planned] == [
        ("models/model.gguf", "weight", "gzip", ""), ("models/lora.safetensors", "weight.config", "zstd", ""),
        ("src", "code", "none", ""), ("data", "dataset", "gzip", ""), ("eval/eval", "dataset", "none", ""),
        ("docs/README.md", "doc", "zstd", ""),
        ("prompts/system.md", "code", "gzip", ""),
    ]
    # Before KitOps 0.5 (no digests): names are relative to the parent of the entry's path.
    legacy_kitfile, legacy_layers = modelkit_layers(project, legacy=True)
    assert [p.names_from for p in plan_modelkit(_manifest(legacy_layers), legacy_kitfile)] == [
        "models", "models", "", "", "eval", "docs", "prompts"]
    # KitOps' own words select too (kit unpack --filter model,docs).
    assert [p.relpath for p in select_files(planned, kinds=["model", "docs"])] == ["models/model.gguf", "docs/README.md"]
    assert [p.relpath for p in select_files(planned, kinds=["modelpart"])] == ["models/lora.safetensors"]


def test_plan_refuses_what_kit_would_refuse_or_misplace(project: Path) -> None:
    kitfile, layers = modelkit_layers(project)
    # A recorded digest that is not the layer's: KitOps refuses, so does ocimodel.
    swapped = json.loads(json.dumps(kitfile))
    swapped["model"]["digest"] = sha(b"something else")
    with pytest.raises(NotAModel, match="no entry in its Kitfile"):
        plan_modelkit(_manifest(layers), swapped)
    # More layers of a type than entries.
    with pytest.raises(NotAModel, match="no entry in its Kitfile"):
        plan_modelkit(_manifest([*layers, (layer_type("docs"), b"extra", {})]), kitfile)
    # A Kitfile path that leaves the directory, before anything is fetched.
    for bad in ("../outside", "/etc/passwd", "docs/../../x"):
        hostile = json.loads(json.dumps(kitfile))
        hostile["docs"][0]["path"] = bad
        with pytest.raises(UnsafePath):
            plan_modelkit(_manifest(layers), hostile)
    # Not a Kitfile at all.
    with pytest.raises(NotAModel, match="not a Kitfile"):
        plan_modelkit(_manifest(layers), None)
    with pytest.raises(NotAModel, match="not valid"):
        plan_modelkit(_manifest(layers), {"manifestVersion": "1", "code": "src"})
    # A raw layer whose filepath annotation disagrees with its Kitfile entry.
    raw = [(layer_type("docs", "raw"), b"# readme\n", {FILEPATH: "elsewhere/README.md"})]
    with pytest.raises(NotAModel, match="refusing to guess"):
        plan_modelkit(_manifest(raw), {"manifestVersion": "1.0.0", "docs": [{"path": "docs/README.md"}]})
    tar = [(layer_type("code", "tar"), b"t", {FILEPATH: "other"})]
    with pytest.raises(NotAModel, match="refusing to guess"):
        plan_modelkit(_manifest(tar), {"manifestVersion": "1.0.0", "code": [{"path": "./src/"}]})
    tar = [(layer_type("code", "tar"), b"t", {FILEPATH: "src"})]
    assert [p.relpath for p in plan_modelkit(_manifest(tar), {"manifestVersion": "1.0.0", "code": [{"path": "./src/"}]})] == ["src"]


def test_kitfile_card_says_what_it_cannot_read() -> None:
    fields = kitfile_card({"manifestVersion": "1.0.0", "package": {"name": "k", "license": "Apache 2", "authors": None},
                           "model": {"path": "m.bin", "format": "gguf", "framework": None}})
    assert fields["card"] == {"name": "k", "format": "gguf"}
    assert fields["formats"] == ["gguf"]
    assert len(fields["card_problems"]) == 1 and "Kitfile licenses" in fields["card_problems"][0]
    assert "Apache 2" in fields["card_problems"][0]
    assert kitfile_card(None)["card_problems"] == [
        "the ModelKit's config is not a Kitfile in JSON (or is larger than 4 MiB)"]
    # A Kitfile that does not name every layer: the card is still shown, the files are not
    # named, and the card's problems say why.
    manifest = _manifest([(layer_type("docs"), b"d", {})])
    planned, fields = modelkit_info(manifest, {"manifestVersion": "1.0.0", "package": {"name": "k"}})
    assert planned == [] and fields["card"] == {"name": "k"}
    assert fields["card_problems"] == [
        f"Kitfile: the ModelKit's layer {sha(b'd')[:19]} (docs) has no entry in its Kitfile"]


# -- through the registry ----------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["kit>=0.5", "kit<0.5"])
def test_modelkit_inspect_and_pull(registry, repo_name: str, project: Path, tmp_path: Path, legacy: bool) -> None:
    kitfile, layers = modelkit_layers(project, legacy=legacy)
    push_modelkit(registry, repo_name, "v1", kitfile, layers)
    ref = f"{registry.host}/{repo_name}:v1"

    info = json_of(ok("inspect", ref, "--json"))
    assert (info["kind"], info["is_model"]) == ("modelkit", True)
    assert info["card"] == {
        "name": "tiny-llm", "version": "1.2.3", "description": "A tiny test model.", "authors": ["Ada", "Linus"],
        # as KitOps collects them for a ModelPack config: package, model, parts, datasets, code
        "licenses": ["Apache-2.0", "MIT", "CC-BY-4.0", "BSD-3-Clause"],
        "framework": "llama.cpp", "format": "gguf",
    }
    assert info["card_problems"] == []
    assert (info["name"], info["formats"]) == ("tiny-llm", ["gguf"])
    assert [(f["path"], f["kind"]) for f in info["files"]] == [
        ("models/model.gguf", "weight"), ("models/lora.safetensors", "weight.config"), ("src", "code"),
        ("data", "dataset"), ("eval/eval", "dataset"), ("docs/README.md", "doc"), ("prompts/system.md", "code"),
    ]
    human = ok("inspect", ref).out
    for line in ("Kind:          a KitOps ModelKit", "Name:          tiny-llm", "Licenses:      Apache-2.0, MIT",
                 "Model:         tiny at ./models/model.gguf (version 0.1, license MIT): the weights",
                 'Model params:  {"context": 2048, "temperature": 0.2}',
                 "Model part:    adapter at models/lora.safetensors (type lora)",
                 "Code:          src/ (license BSD-3-Clause): training code",
                 "Dataset:       train at data (license CC-BY-4.0): training split", "Dataset:       eval at eval/eval",
                 "Docs:          docs/README.md: readme", "Prompt:        prompts/system.md: system prompt"):
        assert line in human, human

    dest = tmp_path / "out"
    pulled = json_of(ok("pull", ref, dest, "--json"))
    assert len(pulled["files"]) == 7
    expected = kit_unpack(kitfile, layers, tmp_path / "kit")
    assert contents(dest) == contents(expected)
    wanted = {p: d for p, d in contents(project).items()
              if p not in ("models/unrelated.bin", "LICENSE")}
    assert contents(dest) == wanted
    assert (dest / "src/train.py").stat().st_mode & 0o777 == 0o755  # the tar's mode, masked


def test_modelkit_selective_pull(registry, repo_name: str, project: Path, tmp_path: Path) -> None:
    kitfile, layers = modelkit_layers(project)
    push_modelkit(registry, repo_name, "v1", kitfile, layers)
    ref = f"{registry.host}/{repo_name}:v1"
    ok("pull", ref, tmp_path / "model", "--kind", "model")
    assert sorted(contents(tmp_path / "model")) == ["models/model.gguf"]
    ok("pull", ref, tmp_path / "weights", "--kind", "weight", "--kind", "weight.config")
    assert sorted(contents(tmp_path / "weights")) == ["models/lora.safetensors", "models/model.gguf"]
    ok("pull", ref, tmp_path / "data", "--include", "data")
    assert sorted(contents(tmp_path / "data")) == ["data/test.csv", "data/train.csv"]
    ok("pull", ref, tmp_path / "docs", "--kind", "docs", "--include", "*.md")
    assert sorted(contents(tmp_path / "docs")) == ["docs/README.md"]
    nothing = ocimodel_cli("pull", ref, tmp_path / "none", "--include", "nothing*")
    assert nothing.code == 2 and "models/model.gguf (weight)" in nothing.err, str(nothing)


def test_modelkit_raw_layers(registry, repo_name: str, project: Path, tmp_path: Path) -> None:
    """The newest KitOps' raw layers: one file each, at its filepath annotation, stored as
    is, gzip- or zstd-compressed; an MCP bundle is a raw layer of its own type."""
    (project / "filesystem.mcpb").write_bytes(b"PK\x03\x04 not really a zip, kept byte for byte")
    (project / "docs/README.md").chmod(0o600)
    files = [("model", "models/model.gguf", "zstd"), ("modelpart", "models/lora.safetensors", ""),
             ("docs", "docs/README.md", "gzip"), ("mcpb", "filesystem.mcpb", "")]
    layers = [(layer_type(base, "raw", comp), compress((project / path).read_bytes(), comp), raw_annotations(project, path))
              for base, path, comp in files]
    # the later sources annotate a tar layer with its path too
    layers.insert(2, (layer_type("code", "tar", "gzip"), gzip.compress(kit_tar(project, "src")), {FILEPATH: "src"}))
    blobs = [blob for _, blob, _ in layers]
    kitfile = {"manifestVersion": "1.0.0", "package": {"name": "raw-kit"},
               "model": {"name": "m", "path": "models/model.gguf", "digest": sha(blobs[0]),
                         "parts": [{"path": "models/lora.safetensors", "digest": sha(blobs[1])}]},
               "code": [{"path": "src", "digest": sha(blobs[2])}],
               "docs": [{"path": "docs/README.md", "digest": sha(blobs[3])}],
               "mcpServers": [{"name": "filesystem", "path": "filesystem.mcpb", "digest": sha(blobs[4])}]}
    push_modelkit(registry, repo_name, "raw", kitfile, layers, artifact_type="application/vnd.kitops.modelkit.manifest.v1+json")
    ref = f"{registry.host}/{repo_name}:raw"

    info = json_of(ok("inspect", ref, "--json"))
    assert info["kind"] == "modelkit"
    assert [f["path"] for f in info["files"]] == [
        "models/model.gguf", "models/lora.safetensors", "src", "docs/README.md", "filesystem.mcpb"]
    assert "MCP server:    filesystem at filesystem.mcpb" in ok("inspect", ref).out

    dest = tmp_path / "out"
    ok("pull", ref, dest)
    assert contents(dest) == contents(kit_unpack(kitfile, layers, tmp_path / "kit"))
    assert (dest / "models/model.gguf").read_bytes() == (project / "models/model.gguf").read_bytes()
    assert (dest / "docs/README.md").stat().st_mode & 0o777 == 0o600  # from the file metadata
    # Pulled again over itself: nothing differs, nothing is replaced.
    again = json_of(ok("pull", ref, dest, "--json"))
    assert again["files_replaced"] == []


def test_hostile_modelkits_are_refused_with_nothing_written(registry, repo_name: str, tmp_path: Path) -> None:
    ok_file = make_tar(member("models/ok.bin", b"fine"))
    cases = {
        "traversal": (make_tar(member("models/src/a.py", b"fine"), member("../evil", b"x")), "'..' component"),
        "dotdot": (make_tar(member("models/src/a.py", b"fine"), member("models/src/../../../evil", b"x")),
                   "'..' component"),
        "symlink": (make_tar(member("models", kind=tarfile.DIRTYPE, mode=0o755),
                             member("models/link", kind=tarfile.SYMTYPE, linkname="/etc/passwd")), "is a symlink"),
        # beside the declared path
        "outside": (make_tar(member("elsewhere/planted", b"x")), "outside the layer's declared path 'models/src'"),
    }
    for tag, (hostile, reason) in cases.items():
        blobs = [ok_file, hostile]
        kitfile = {"manifestVersion": "1.0.0",
                   "model": {"path": "models/ok.bin", "digest": sha(blobs[0])},
                   "code": [{"path": "models/link" if tag == "symlink" else "models/src", "digest": sha(blobs[1])}]}
        push_modelkit(registry, repo_name, tag, kitfile, [(layer_type("model"), blobs[0], {}), (layer_type("code"), blobs[1], {})])
        dest = tmp_path / tag
        run = ocimodel_cli("pull", f"{registry.host}/{repo_name}:{tag}", dest)
        assert run.code == 1 and reason in run.err and "Traceback" not in run.err, str(run)
        assert not dest.exists() or not any(dest.iterdir()), tag
        assert not (tmp_path / "evil").exists()

    # A Kitfile path out of the directory: refused before any layer is downloaded.
    blob = make_tar(member("x", b"x"))
    push_modelkit(registry, repo_name, "path", {"manifestVersion": "1.0.0", "docs": [{"path": "../x"}]},
                  [(layer_type("docs"), blob, {})])
    run = ocimodel_cli("pull", f"{registry.host}/{repo_name}:path", tmp_path / "path")
    assert run.code == 1 and "leaves the ModelKit directory" in run.err, str(run)
    assert not (tmp_path / "path").exists() and not (tmp_path / "x").exists()


def test_modelkit_copy_export_sign_verify(registry, repo_name: str, project: Path, tmp_path: Path) -> None:
    kitfile, layers = modelkit_layers(project)
    body = push_modelkit(registry, repo_name, "v1", kitfile, layers)
    ref = f"{registry.host}/{repo_name}:v1"
    digest = sha(body)

    copied = json_of(ok("copy", ref, f"{registry.host}/{repo_name}-copy:v1", "--json"))
    assert copied["digest"] == digest
    ok("copy", ref, f"oci:{tmp_path / 'layout'}:v1")
    assert json_of(ok("inspect", f"oci:{tmp_path / 'layout'}:v1", "--json"))["files"][0]["path"] == "models/model.gguf"

    ok("key", "generate", "--output-key-prefix", tmp_path / "k", "--no-password")
    # The file-level signature needs raw files; a ModelKit's tar layers are signed whole.
    refused = ocimodel_cli("sign", ref, "--key", tmp_path / "k.key")
    assert refused.code != 0 and "--no-file-signature" in refused.err, str(refused)
    ok("sign", ref, "--key", tmp_path / "k.key", "--no-file-signature")
    ok("verify", ref, "--key", tmp_path / "k.pub")
    ok("pull", ref, tmp_path / "verified", "--verify", "--key", tmp_path / "k.pub")
    assert contents(tmp_path / "verified") == contents(kit_unpack(kitfile, layers, tmp_path / "kit"))

    archive = tmp_path / "kit.tar"
    ok("export", ref, archive)
    imported = f"{registry.host}/{repo_name}-imported"
    ok("import", archive, imported)
    ok("verify", f"{imported}:v1", "--key", tmp_path / "k.pub")  # the signature came along
    ok("pull", f"{imported}:v1", tmp_path / "imported")
    assert contents(tmp_path / "imported") == contents(tmp_path / "verified")
