"""The OCI image layout store (``oci:PATH:TAG``) and copies between stores.

A layout is read back from disk directly (``oci-layout``, ``index.json``, ``blobs/``) and by
skopeo's ``oci:`` transport, an independent reader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

import ocimodel
from ocimodel.errors import NotFound, PackagingError, SizeMismatch
from tests.support.files import tree_digest
from tests.support.modeltrees import fetch_manifest, sha256_bytes, sha256_file, write_tree

MODEL_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


def _index(store: Path) -> dict:
    return json.loads((store / "index.json").read_bytes())


def _entries_for(store: Path, tag: str) -> list[dict]:
    return [m for m in _index(store)["manifests"] if (m.get("annotations") or {}).get(REF_NAME) == tag]


def _blob(store: Path, digest: str) -> Path:
    algorithm, hexpart = digest.split(":", 1)
    return store / "blobs" / algorithm / hexpart


# -- the layout on disk --------------------------------------------------------------------


def test_push_to_layout_writes_an_oci_layout(model_dir, tmp_path):
    store = tmp_path / "store"
    pushed = ocimodel.push(model_dir, f"oci:{store}:name:1.0", name="tiny")
    assert pushed.tag == "name:1.0"

    assert json.loads((store / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = _index(store)
    assert index["schemaVersion"] == 2
    assert index.get("mediaType", OCI_INDEX) == OCI_INDEX
    [entry] = _entries_for(store, "name:1.0")
    assert entry["digest"] == pushed.digest
    assert entry["mediaType"] == OCI_MANIFEST

    manifest_bytes = _blob(store, pushed.digest).read_bytes()
    assert sha256_bytes(manifest_bytes) == pushed.digest
    assert entry["size"] == len(manifest_bytes)
    manifest = json.loads(manifest_bytes)
    assert manifest["artifactType"] == MODEL_ARTIFACT
    config = _blob(store, manifest["config"]["digest"]).read_bytes()
    assert sha256_bytes(config) == manifest["config"]["digest"]
    assert json.loads(config)["config"]["format"] == "safetensors"

    for path in tree_digest(model_dir):
        digest = sha256_file(model_dir / path)
        blob = _blob(store, digest)
        assert blob.is_file(), path
        assert blob.read_bytes() == (model_dir / path).read_bytes()
    # nothing but the three layout entries, and no temporary files left behind
    assert sorted(p.name for p in store.iterdir()) == ["blobs", "index.json", "oci-layout"]
    assert not [p for p in store.rglob(".tmp-*")]


def test_layout_list_tags_tag_inspect(model_dir, tmp_path):
    store = tmp_path / "store"
    assert not store.exists()
    pushed = ocimodel.push(model_dir, f"oci:{store}:name:1.0", version="1.0")
    assert ocimodel.list_tags(f"oci:{store}") == ["name:1.0"]

    assert ocimodel.tag(f"oci:{store}:name:1.0", "latest") == pushed.digest
    assert sorted(ocimodel.list_tags(f"oci:{store}")) == ["latest", "name:1.0"]
    [entry] = _entries_for(store, "latest")
    assert entry["digest"] == pushed.digest

    # re-pointing a tag replaces the entry instead of adding a second one
    (model_dir / "README.md").write_text("changed\n")
    v2 = ocimodel.push(model_dir, f"oci:{store}:latest", version="2.0")
    assert v2.digest != pushed.digest
    assert [e["digest"] for e in _entries_for(store, "latest")] == [v2.digest]
    assert [e["digest"] for e in _entries_for(store, "name:1.0")] == [pushed.digest]

    info = ocimodel.inspect(f"oci:{store}:name:1.0")
    assert info.digest == pushed.digest
    assert info.artifact_type == MODEL_ARTIFACT
    assert info.annotations["org.opencontainers.image.version"] == "1.0"
    assert {f.path for f in info.files} == {f.path for f in pushed.files}
    assert info.config is not None and info.config["config"]["format"] == "safetensors"
    by_digest = ocimodel.inspect(f"oci:{store}@{pushed.digest}")
    assert by_digest.digest == pushed.digest
    assert ocimodel.inspect(f"oci:{store}:latest").digest == v2.digest


def test_layout_pull_round_trip(model_dir, tmp_path):
    store = tmp_path / "store"
    pushed = ocimodel.push(model_dir, f"oci:{store}:name:1.0")
    out = tmp_path / "out"
    pulled = ocimodel.pull(f"oci:{store}:name:1.0", out)
    assert pulled.digest == pushed.digest
    assert tree_digest(out) == tree_digest(model_dir)
    by_digest = tmp_path / "out2"
    ocimodel.pull(f"oci:{store}@{pushed.digest}", by_digest)
    assert tree_digest(by_digest) == tree_digest(model_dir)
    # re-push to the layout stores nothing again
    again = ocimodel.push(model_dir, f"oci:{store}:name:1.0")
    assert again.digest == pushed.digest
    assert again.bytes_uploaded == 0


def test_skopeo_reads_the_layout(model_dir, tmp_path):
    skopeo = shutil.which("skopeo")
    assert skopeo is not None, "skopeo is not installed (apt-get install skopeo)"
    store = tmp_path / "store"
    pushed = ocimodel.push(model_dir, f"oci:{store}:name:1.0")
    proc = subprocess.run(
        [skopeo, "inspect", "--raw", f"oci:{store}:name:1.0"], capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert sha256_bytes(proc.stdout) == pushed.digest
    manifest = json.loads(proc.stdout)
    assert manifest["artifactType"] == MODEL_ARTIFACT
    assert {layer["digest"] for layer in manifest["layers"]} == {f.digest for f in pushed.files}


# -- copy between stores -------------------------------------------------------------------


def test_copy_registry_to_layout_to_registry_keeps_the_digest(registry, repo_name, model_dir, tmp_path):
    src = f"{registry.host}/{repo_name}:1.0"
    pushed = ocimodel.push(model_dir, src, name="tiny")
    store = tmp_path / "store"
    n_blobs = len(pushed.files) + 1  # files + config

    to_layout = ocimodel.copy(src, f"oci:{store}:tiny:1.0")
    assert to_layout.digest == pushed.digest
    assert to_layout.blobs_copied == n_blobs
    assert to_layout.bytes_copied == pushed.bytes_uploaded
    assert _entries_for(store, "tiny:1.0")[0]["digest"] == pushed.digest
    assert sha256_bytes(_blob(store, pushed.digest).read_bytes()) == pushed.digest

    other_repo = repo_name + "-copy"
    back = ocimodel.copy(f"oci:{store}:tiny:1.0", f"{registry.host}/{other_repo}:1.0")
    assert back.digest == pushed.digest
    assert back.blobs_copied == n_blobs
    r = fetch_manifest(registry.url, other_repo, "1.0")
    assert r.headers["Docker-Content-Digest"] == pushed.digest
    assert sha256_bytes(r.content) == pushed.digest
    assert r.content == fetch_manifest(registry.url, repo_name, "1.0").content

    # copying again moves no blob; the model pulls back byte for byte
    again = ocimodel.copy(f"oci:{store}:tiny:1.0", f"{registry.host}/{other_repo}:1.0")
    assert (again.blobs_copied, again.blobs_skipped, again.bytes_copied) == (0, n_blobs, 0)
    out = tmp_path / "out"
    assert ocimodel.pull(f"{registry.host}/{other_repo}:1.0", out).digest == pushed.digest
    assert tree_digest(out) == tree_digest(model_dir)


def test_copy_between_layouts_defaults_to_the_source_tag(model_dir, tmp_path):
    pushed = ocimodel.push(model_dir, f"oci:{tmp_path / 'a'}:name:1.0")
    result = ocimodel.copy(f"oci:{tmp_path / 'a'}:name:1.0", f"oci:{tmp_path / 'b'}")
    assert result.digest == pushed.digest
    assert ocimodel.list_tags(f"oci:{tmp_path / 'b'}") == ["name:1.0"]
    assert _blob(tmp_path / "b", pushed.digest).read_bytes() == _blob(tmp_path / "a", pushed.digest).read_bytes()


# -- failed pushes leave no tag ------------------------------------------------------------


class _OnStart:
    """A progress sink that runs ``action`` when the blob titled ``title`` starts."""

    def __init__(self, title: str, action) -> None:
        self.title = title
        self.action = action

    def blob_started(self, descriptor, label: str) -> None:
        if label == self.title:
            self.action()

    def __getattr__(self, name: str):
        # every other Progress callback (the protocol may grow): a no-op
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


def test_failed_push_to_layout_leaves_no_tag(model_dir, tmp_path):
    store = tmp_path / "store"
    kept = ocimodel.push(model_dir, f"oci:{store}:keep:1")
    index_before = (store / "index.json").read_bytes()

    victim = model_dir / "new" / "vanishing.bin"
    write_tree(model_dir, {"new/vanishing.bin": (os.urandom(4096), 0o644)})
    with pytest.raises(PackagingError) as err:
        ocimodel.push(
            model_dir, f"oci:{store}:broken:1", concurrency=1, progress=_OnStart("new/vanishing.bin", victim.unlink)
        )
    assert "vanishing.bin" in str(err.value)
    assert ocimodel.list_tags(f"oci:{store}") == ["keep:1"]
    assert (store / "index.json").read_bytes() == index_before
    with pytest.raises(NotFound):
        ocimodel.inspect(f"oci:{store}:broken:1")
    assert ocimodel.inspect(f"oci:{store}:keep:1").digest == kept.digest
    assert not [p for p in store.rglob(".tmp-*")]


def test_file_changed_during_push_is_refused(model_dir, tmp_path):
    """A file rewritten between hashing and upload: the push fails, no tag and no blob
    whose name does not match its bytes is left in the layout."""
    store = tmp_path / "store"
    target = model_dir / "data" / "eval.csv"
    old_digest = sha256_file(target)
    with pytest.raises(SizeMismatch):
        ocimodel.push(
            model_dir, f"oci:{store}:broken:1", concurrency=1,
            progress=_OnStart("data/eval.csv", lambda: target.write_bytes(b"input,expected\nrewritten,9\n")),
        )
    assert ocimodel.list_tags(f"oci:{store}") == []
    assert not _blob(store, old_digest).exists()
    for blob in (store / "blobs" / "sha256").iterdir():
        assert sha256_file(blob) == "sha256:" + blob.name, f"{blob.name} holds other bytes"


def test_failed_push_to_registry_leaves_no_tag(registry, repo_name, model_dir):
    victim = model_dir / "data" / "eval.csv"
    with pytest.raises(PackagingError):
        ocimodel.push(
            model_dir, f"{registry.host}/{repo_name}:1.0", concurrency=1,
            progress=_OnStart("data/eval.csv", victim.unlink),
        )
    r = httpx.head(
        f"{registry.url}/v2/{repo_name}/manifests/1.0", headers={"Accept": OCI_MANIFEST}
    )
    assert r.status_code == 404
    assert ocimodel.list_tags(f"{registry.host}/{repo_name}", missing_ok=True) == []


# -- concurrent writers --------------------------------------------------------------------

_PUSHER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import ocimodel
    store, src, prefix, count, go = sys.argv[1:6]
    Path(go + "." + prefix).touch()          # ready
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.001)
    out = {}
    for i in range(int(count)):
        tag = f"{prefix}-{i}"
        out[tag] = ocimodel.push(src, f"oci:{store}:{tag}", version=tag).digest
    print(json.dumps(out))
    """
)


def _start_together(argvs: list[list[str]], go: Path) -> list[subprocess.Popen]:
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv in argvs]
    deadline = time.monotonic() + 30
    while len(list(go.parent.glob(go.name + ".*"))) < len(argvs):
        assert time.monotonic() < deadline, "pushers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.005)
    go.touch()
    return procs


@pytest.mark.slow
def test_concurrent_writers_keep_every_tag(tmp_path):
    """4 processes push 5 tags each into one layout at the same moment: index.json is
    read-modified-written under a lock, so all 20 tags survive."""
    store = tmp_path / "store"
    sources = []
    for n in range(4):
        src = write_tree(tmp_path / f"src{n}", {
            "model.bin": (os.urandom(64 * 1024), 0o644),
            "shared.txt": (b"same in every model\n", 0o644),
        })
        sources.append(src)
    ocimodel.push(sources[0], f"oci:{store}:base")  # the layout exists before the race

    go = tmp_path / "go"
    procs = _start_together(
        [[sys.executable, "-c", _PUSHER, str(store), str(src), f"w{n}", "5", str(go)] for n, src in enumerate(sources)],
        go,
    )
    pushed: dict[str, str] = {}
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-3000:]
        pushed.update(json.loads(stdout.strip().splitlines()[-1]))

    assert len(pushed) == 20
    assert sorted(ocimodel.list_tags(f"oci:{store}")) == sorted([*pushed, "base"])
    for tag, digest in pushed.items():
        assert [e["digest"] for e in _entries_for(store, tag)] == [digest], tag
    out = tmp_path / "out"
    ocimodel.pull(f"oci:{store}:w3-4", out)
    assert tree_digest(out) == tree_digest(sources[3])


_SLOW_CREATOR = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import ocimodel
    import ocimodel.targets.layout as layout
    store, src, started, go, pause_at = sys.argv[1:6]
    original = layout._write_atomic
    paused = []
    def slow(path, data):
        # the first writer is preempted while it creates the layout, just before it
        # writes the file `pause_at` (the first time only)
        if Path(path).name == pause_at and not paused:
            paused.append(path)
            Path(started).touch()
            deadline = time.monotonic() + 30
            while not os.path.exists(go) and time.monotonic() < deadline:
                time.sleep(0.001)
        return original(path, data)
    layout._write_atomic = slow
    print(ocimodel.push(src, f"oci:{store}:first").digest)
    """
)


@pytest.mark.parametrize("pause_at", ["oci-layout", "index.json"])
@pytest.mark.slow
def test_concurrent_first_pushes_to_a_new_layout(tmp_path, pause_at):
    """Two writers create the same new layout at once. The first is paused while it
    initialises the directory, just before writing ``oci-layout`` or the initial empty
    ``index.json`` (as a busy machine may do); the second must still succeed, and both
    tags must be there afterwards."""
    store = tmp_path / "store"
    first_src = write_tree(tmp_path / "a", {"a.bin": (os.urandom(1024), 0o644)})
    second_src = write_tree(tmp_path / "b", {"b.bin": (os.urandom(1024), 0o644)})
    started, go = tmp_path / "started", tmp_path / "go"
    slow = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CREATOR, str(store), str(first_src), str(started), str(go), pause_at],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert slow.poll() is None, slow.communicate()
            assert time.monotonic() < deadline, "the first writer never reached oci-layout"
            time.sleep(0.005)

        outcome: dict[str, object] = {}

        def second() -> None:
            try:
                outcome["digest"] = ocimodel.push(second_src, f"oci:{store}:second").digest
            except BaseException as exc:  # reported below
                outcome["error"] = exc

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=1.0)  # a fix may make it wait for the first writer: let that one go
    finally:
        go.touch()
    thread.join(timeout=60)
    stdout, stderr = slow.communicate(timeout=60)
    assert slow.returncode == 0, stderr[-3000:]
    assert "error" not in outcome, f"second writer failed: {outcome['error']!r}"
    assert sorted(ocimodel.list_tags(f"oci:{store}")) == ["first", "second"]
    assert _entries_for(store, "second")[0]["digest"] == outcome["digest"]
    assert _entries_for(store, "first")[0]["digest"] == stdout.strip()


def test_layout_files_follow_the_umask_which_import_leaves_alone(tmp_path):
    # Layout files get the mode a plain open() would give (shared with other users and
    # tools), read from the umask when first written: importing ocimodel must not set it.
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"w" * 100)
    code = textwrap.dedent(
        """
        import os
        os.umask(0o027)
        calls = []
        real_umask = os.umask
        os.umask = lambda mask: calls.append(mask) or real_umask(mask)
        import ocimodel, ocimodel.api, ocimodel.targets.layout, ocimodel.targets.archive, ocimodel.cli.app
        assert calls == [], calls
        ocimodel.push("model", "oci:store:m:1")
        """
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)
    store = tmp_path / "store"
    written = [store / "index.json", *(p for p in (store / "blobs").rglob("*") if p.is_file())]
    assert len(written) >= 4
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o640, path
