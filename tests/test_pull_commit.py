"""A pull's commit is all or nothing (issue 12, defects 3 and 5; docs/pull-commit.md).

Pulling v2 of a many-file model over v1, the user must end with v1 whole or v2 whole,
and the exit status and the message must say which: exit 0 and "Pulled ..." with v2 in
place, or exit 130 and "interrupted" (never "Pulled") with v1 in place, whenever SIGINT
comes. The tests run the real ``ocimodel pull`` in a subprocess and send the signal at
varied delays after the first file lands in the destination (seen from outside as the
destination directory's second change: the first is the staging directory), so each
round hits the commit at another point, with no hook in the product. A pull killed
outright (SIGKILL) is put back by the next pull into the same directory; an I/O error
midway leaves v1 whole too. And a pull says which local files with other content it
replaced (``files_replaced``), or with ``--keep-local`` refuses before downloading."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ocimodel
from ocimodel.errors import DestinationExists, LocalFilesDiffer, PackagingError, UnsafePath
from ocimodel.packaging import unpack
from ocimodel.packaging.unpack import STAGING_PREFIX, DirectoryWriter, recover_interrupted_pulls
from tests.support.faultproxy import FaultProxy
from tests.support.files import tree_digest
from tests.test_cli import Run, _env, failure_problems, json_of, ocimodel_cli, ok

LAYOUT_FILES = 600
REGISTRY_FILES = 250


def _write_model(root: Path, version: str, count: int) -> None:
    """Every numbered file differs between the versions; ``same.txt`` does not; ``run.sh``
    has the same bytes and another mode (an unchanged file whose mode the commit sets);
    v2 adds a file in new directories (the commit creates them)."""
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"f{i:04d}.txt").write_text(f"version {version} file {i}\n")
    (root / "same.txt").write_text("identical in both versions\n")
    script = root / "run.sh"
    script.write_text("#!/bin/sh\necho run\n")
    script.chmod(0o644 if version == "1" else 0o755)
    if version == "2":
        (root / "added" / "deep").mkdir(parents=True)
        (root / "added" / "deep" / "new.txt").write_text("only in v2\n")


class Versions:
    """v1 and v2 of a model at ``refs``, and the trees a pull of each leaves."""

    def __init__(self, base: Path, refs: dict[str, str], count: int) -> None:
        self.refs = refs
        self.trees: dict[str, dict] = {}
        for version, ref in refs.items():
            _write_model(base / f"model{version}", version, count)
            ocimodel.push(base / f"model{version}", ref)
            ocimodel.pull(ref, base / f"pulled{version}")
            self.trees[version] = tree_digest(base / f"pulled{version}")
        self.v1_dir = base / "pulled1"
        assert self.trees["1"] != self.trees["2"]

    def fresh_v1(self, dest: Path) -> Path:
        shutil.copytree(self.v1_dir, dest, symlinks=True)
        assert tree_digest(dest) == self.trees["1"]
        return dest


@pytest.fixture(scope="module")
def layout_versions(tmp_path_factory: pytest.TempPathFactory) -> Versions:
    base = tmp_path_factory.mktemp("commit-layout")
    store = base / "store"
    return Versions(base, {"1": f"oci:{store}:1", "2": f"oci:{store}:2"}, LAYOUT_FILES)


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = _env()
    env["OCIMODEL_CACHE_DIR"] = str(tmp_path / "cli-cache")
    return env


def _next_change(path: Path, before: int, proc: subprocess.Popen, deadline: float) -> int | None:
    """The directory's next mtime, or None if the process ended first."""
    while True:
        now = os.stat(path).st_mtime_ns
        if now != before:
            return now
        if proc.poll() is not None:
            return None
        assert time.monotonic() < deadline, "the pull did not get to its commit in time"
        time.sleep(0.0002)


def _pull_signalled(ref: str, dest: Path, *, delay: float, signum: int, env: dict[str, str], after: str = "first move") -> Run:
    """``ocimodel pull REF DEST``, sent ``signum`` ``delay`` seconds after the first file
    (or directory) of the new version appeared in DEST, or (``after="staging gone"``)
    after the staging directory was removed, the last thing a pull does to DEST."""
    args = ["pull", ref, str(dest)]
    watched = dest
    while not watched.exists():  # a new destination: staged in its nearest existing ancestor
        watched = watched.parent
    before = os.stat(watched).st_mtime_ns
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocimodel", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        staged = _next_change(watched, before, proc, deadline)
        assert staged is not None, f"the pull ended before it staged: {proc.communicate()}"
        moved = _next_change(watched, staged, proc, deadline)
        assert moved is not None, f"the pull ended without moving a file in: {proc.communicate()}"
        if after == "staging gone":
            staging = [p for p in watched.iterdir() if p.name.startswith(STAGING_PREFIX)]
            while staging and staging[0].exists() and proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.0001)
        time.sleep(delay)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return Run(args, proc.returncode, out, err)


def _outcome(run: Run, dest: Path, versions: Versions, *, interrupted_codes: tuple[int, ...]) -> str:
    """'v2' (exit 0, "Pulled", v2 whole) or 'v1' (an interrupted exit status, no "Pulled",
    v1 whole); anything else fails. Whole means every file and mode, and nothing more:
    no staging directory left behind."""
    tree = tree_digest(dest)
    if run.code == 0:
        assert "Pulled" in run.out and "interrupted" not in run.err, str(run)
        assert tree == versions.trees["2"], f"exit 0 but the destination is not v2 whole:\n{run}"
        return "v2"
    assert run.code in interrupted_codes, str(run)
    assert "Pulled" not in run.out and "Traceback" not in run.err, str(run)
    if run.code == 130:
        assert "interrupted" in run.err, str(run)
    mixed = sum(1 for path, entry in tree.items() if versions.trees["2"].get(path) == entry and versions.trees["1"].get(path) != entry)
    assert tree == versions.trees["1"], f"exit {run.code} and the destination is not v1 whole ({mixed} files from v2):\n{run}"
    return "v1"


# Seconds after the first file lands: from at once to well after the commit (600 files
# take some 0.05-0.5 s to move on a loaded machine), so some rounds stop the commit
# midway and some come after it; and just after the pull's last change to the
# destination, while it reports and exits (where "Pulled ..." with exit 130 was seen).
# The tests that signal a pull are marked serial: `make test` runs them alone after the
# parallel pass (tests/conftest.py), so the rounds land where the delays say.
ROUNDS = [("first move", d) for d in (0, 0.002, 0.01, 0.03, 0.1, 0.3, 1.0)] + [
    ("staging gone", d) for d in (0, 0.002, 0.01)
]


@pytest.mark.slow
@pytest.mark.serial
def test_sigint_during_commit_leaves_v1_or_v2_whole_and_says_which(layout_versions: Versions, tmp_path: Path):
    env = _cli_env(tmp_path)
    outcomes = []
    for round_, (after, delay) in enumerate(ROUNDS):
        dest = layout_versions.fresh_v1(tmp_path / f"round{round_}")
        run = _pull_signalled(layout_versions.refs["2"], dest, delay=delay, signum=signal.SIGINT, env=env, after=after)
        outcomes.append((after, delay, _outcome(run, dest, layout_versions, interrupted_codes=(130,))))
    # Some rounds must have stopped the commit midway, and the late ones cannot have: else
    # this test proved nothing.
    assert "v1" in {o for _, _, o in outcomes}, outcomes
    assert {o for a, _, o in outcomes if a == "staging gone"} == {"v2"}, outcomes


@pytest.mark.slow
@pytest.mark.serial
def test_sigterm_during_commit_leaves_v1_or_v2_whole(layout_versions: Versions, tmp_path: Path):
    env = _cli_env(tmp_path)
    outcomes = []
    for round_, delay in enumerate([0, 0.01, 0.05]):
        dest = layout_versions.fresh_v1(tmp_path / f"round{round_}")
        run = _pull_signalled(layout_versions.refs["2"], dest, delay=delay, signum=signal.SIGTERM, env=env)
        outcomes.append(_outcome(run, dest, layout_versions, interrupted_codes=(-signal.SIGTERM,)))
    assert "v1" in outcomes, outcomes


@pytest.mark.serial
def test_sigint_during_commit_from_a_registry(registry, repo_name: str, tmp_path_factory, tmp_path: Path):
    refs = {v: f"{registry.host}/{repo_name}:{v}" for v in ("1", "2")}
    versions = Versions(tmp_path_factory.mktemp("commit-registry"), refs, REGISTRY_FILES)
    env = _cli_env(tmp_path)
    outcomes = []
    for round_, delay in enumerate([0, 0.005, 0.03, 0.3]):
        dest = versions.fresh_v1(tmp_path / f"round{round_}")
        run = _pull_signalled(refs["2"], dest, delay=delay, signum=signal.SIGINT, env=env)
        outcomes.append(_outcome(run, dest, versions, interrupted_codes=(130,)))
    assert "v1" in outcomes, outcomes


def _without_staging(tree: dict) -> dict:
    return {p: e for p, e in tree.items() if not p.startswith(STAGING_PREFIX)}


@pytest.mark.slow
@pytest.mark.serial
def test_pull_killed_in_its_commit_is_undone_by_the_next_pull(layout_versions: Versions, tmp_path: Path):
    """SIGKILL cannot be held off: the commit's journal lets the next pull into the same
    directory put v1 back before it does anything. Seen from outside: after the kill,
    `pull v1 --keep-local` finds no file that differs from v1 (nothing to refuse) and
    leaves v1 whole, with nothing of v2 and no staging directory left."""
    env = _cli_env(tmp_path)
    mixed_rounds = 0
    for round_, delay in enumerate([0, 0.002, 0.01]):
        dest = layout_versions.fresh_v1(tmp_path / f"round{round_}")
        killed = _pull_signalled(layout_versions.refs["2"], dest, delay=delay, signum=signal.SIGKILL, env=env)
        assert killed.code == -signal.SIGKILL, str(killed)
        left = _without_staging(tree_digest(dest))
        if left not in (layout_versions.trees["1"], layout_versions.trees["2"]):
            mixed_rounds += 1
        again = json_of(ok("pull", layout_versions.refs["1"], dest, "--keep-local", "--json", env=env))
        assert again["files_replaced"] == [], again["files_replaced"][:5]
        assert tree_digest(dest) == layout_versions.trees["1"]
    assert mixed_rounds, "no kill landed inside the commit: the test proved nothing"

    # And pulling v2 again after a kill gives v2 whole, nothing left over.
    dest = layout_versions.fresh_v1(tmp_path / "again")
    _pull_signalled(layout_versions.refs["2"], dest, delay=0, signum=signal.SIGKILL, env=env)
    redone = json_of(ok("pull", layout_versions.refs["2"], dest, "--json", env=env))
    assert tree_digest(dest) == layout_versions.trees["2"]
    # v1 was put back first, so every numbered file was replaced again by this pull.
    assert len(redone["files_replaced"]) == LAYOUT_FILES


@pytest.mark.slow
@pytest.mark.serial
def test_pull_killed_into_a_new_directory_is_undone_by_the_next_pull(layout_versions: Versions, tmp_path: Path):
    """A pull into a directory that does not exist stages beside it and creates it in its
    commit; killed there, the next pull into that path finds the journal in the parent
    and removes what the killed one left (the files, then the directories it created)."""
    env = _cli_env(tmp_path)
    mixed_rounds = 0
    for round_, delay in enumerate([0.002, 0.01, 0.03]):
        parent = tmp_path / f"round{round_}"
        parent.mkdir()
        dest = parent / "new" / "model"
        killed = _pull_signalled(layout_versions.refs["2"], dest, delay=delay, signum=signal.SIGKILL, env=env)
        assert killed.code == -signal.SIGKILL, str(killed)
        if dest.exists() and tree_digest(dest) not in ({}, layout_versions.trees["2"]):
            mixed_rounds += 1
        if dest.exists() and tree_digest(dest) == layout_versions.trees["2"]:
            continue  # the kill came after the commit point: v2 is whole, nothing to undo
        again = json_of(ok("pull", layout_versions.refs["1"], dest, "--keep-local", "--json", env=env))
        assert again["files_replaced"] == [] and again["files_unchanged"] == 0
        assert tree_digest(dest) == layout_versions.trees["1"]
        assert sorted(p.name for p in parent.iterdir()) == ["new"]  # no staging left beside it
    assert mixed_rounds, "no kill landed inside the commit: the test proved nothing"


@pytest.mark.parametrize("fail_at", [0, 1, LAYOUT_FILES // 2, LAYOUT_FILES])
@pytest.mark.slow
def test_an_error_midway_through_the_commit_leaves_v1_whole(layout_versions: Versions, tmp_path: Path, monkeypatch, fail_at: int):
    """A write that fails after ``fail_at`` files moved (a full disk, a permission): the
    files already moved are put back and the error is raised."""
    dest = layout_versions.fresh_v1(tmp_path / "dest")
    real_move = unpack._move
    calls = []

    def failing_move(source: Path, target: Path) -> None:
        if len(calls) == fail_at:
            raise PackagingError(f"cannot write {target}: No space left on device")
        calls.append(target)
        real_move(source, target)

    monkeypatch.setattr(unpack, "_move", failing_move)
    with pytest.raises(PackagingError, match="No space left"):
        ocimodel.pull(layout_versions.refs["2"], dest)
    assert len(calls) == fail_at
    assert tree_digest(dest) == layout_versions.trees["1"]


@pytest.mark.slow
def test_an_error_after_every_file_moved_still_leaves_v1_whole(layout_versions: Versions, tmp_path: Path, monkeypatch):
    """The last step of the commit gives unchanged files the artifact's mode; if it fails,
    the moved files and the modes already changed go back too."""
    dest = layout_versions.fresh_v1(tmp_path / "dest")
    real_restore = unpack._restore_mode

    def failing_restore(root: Path, planned) -> None:
        real_restore(root, planned)
        if planned.relpath == "run.sh":  # its mode changed, then a failure
            raise PackagingError(f"cannot set the mode of {root / planned.relpath}: Operation not permitted")

    monkeypatch.setattr(unpack, "_restore_mode", failing_restore)
    with pytest.raises(PackagingError, match="Operation not permitted"):
        ocimodel.pull(layout_versions.refs["2"], dest)
    assert tree_digest(dest) == layout_versions.trees["1"]


def test_a_live_pull_is_never_taken_for_a_dead_one(tmp_path: Path):
    """Recovery undoes only pulls whose process is gone: a staging directory whose lock is
    held (a pull running now, here in this process) is left alone; one whose lock nobody
    holds (its pull was killed while downloading) is removed by a pull into that directory."""
    dest = tmp_path / "dest"
    dest.mkdir()
    with DirectoryWriter(dest, []):
        staging = [p for p in dest.iterdir() if p.name.startswith(STAGING_PREFIX)]
        assert len(staging) == 1
        assert recover_interrupted_pulls(dest) == 0
        assert staging[0].is_dir()
    assert list(dest.iterdir()) == []

    dead = dest / f"{STAGING_PREFIX}dead"
    (dead / "tree").mkdir(parents=True)
    (dead / "tree" / "half-downloaded").write_bytes(b"x" * 100)
    (dead / unpack.LOCK_NAME).touch()
    dead.chmod(0o700)  # as mkdtemp makes a staging directory: anything else is not trusted
    # Seen from a pull into another directory below (dest is then only an ancestor of its
    # destination), a dead pull that is not its own is not its business.
    assert recover_interrupted_pulls(dest, destination=dest / "other" / "model") == 0
    assert dead.is_dir()
    assert recover_interrupted_pulls(dest) == 1
    assert list(dest.iterdir()) == []


# -- files_replaced and --keep-local (defect 5), on the real registry -----------------------


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.host) as p:
        yield p


def _blob_gets(proxy: FaultProxy) -> list[str]:
    return [s.path for s in proxy.seen("GET", r"/blobs/")]


def test_a_replaced_local_file_is_reported(registry, proxy, model_dir: Path, repo_name: str, tmp_path: Path):
    ocimodel.push(model_dir, f"{registry.host}/{repo_name}:1")
    ref = f"{proxy.host}/{repo_name}:1"
    out = tmp_path / "out"
    assert ocimodel.pull(ref, out).files_replaced == []
    original = (out / "config.json").read_bytes()

    (out / "config.json").write_text('{"edited": "locally"}\n')
    document = json_of(ok("pull", ref, out, "--json"))
    assert document["files_replaced"] == ["config.json"]
    assert (out / "config.json").read_bytes() == original

    (out / "config.json").write_text('{"edited": "again"}\n')
    (out / "README.md").write_text("my notes\n")
    human = ok("pull", ref, out)
    assert "warning: replaced 2 local file(s) that differed: README.md, config.json" in human.err
    assert (out / "config.json").read_bytes() == original

    # Nothing differs: nothing is reported.
    quiet = ok("pull", ref, out, "--json")
    assert json_of(quiet)["files_replaced"] == [] and "replaced" not in quiet.err


def test_keep_local_refuses_before_downloading_and_changes_nothing(registry, proxy, model_dir: Path, repo_name: str, tmp_path: Path):
    ocimodel.push(model_dir, f"{registry.host}/{repo_name}:1")
    ref = f"{proxy.host}/{repo_name}:1"
    out = tmp_path / "out"
    ocimodel.pull(ref, out)
    (out / "config.json").write_text('{"edited": "locally"}\n')
    (out / "tokenizer" / "tokenizer.json").write_text("mine\n")
    (out / "README.md").unlink()  # missing is not "differing": keep-local restores it
    before = tree_digest(out)
    mtimes = {p: (out / p).stat().st_mtime_ns for p in before}

    proxy.clear()
    refused = ocimodel_cli("pull", ref, out, "--keep-local")
    assert not failure_problems(refused)
    assert "config.json" in refused.err and "tokenizer/tokenizer.json" in refused.err
    assert "README.md" not in refused.err.split("hint:")[0]
    assert _blob_gets(proxy) == [], "keep-local must refuse before downloading"
    assert tree_digest(out) == before and {p: (out / p).stat().st_mtime_ns for p in before} == mtimes

    with pytest.raises(LocalFilesDiffer) as caught:
        ocimodel.pull(ref, out, keep_local=True)
    assert isinstance(caught.value, DestinationExists)
    assert caught.value.files == ["config.json", "tokenizer/tokenizer.json"]
    assert tree_digest(out) == before

    # Put the edits back as the model has them: keep-local pulls, restoring README.md.
    shutil.copyfile(model_dir / "config.json", out / "config.json")
    shutil.copyfile(model_dir / "tokenizer" / "tokenizer.json", out / "tokenizer" / "tokenizer.json")
    result = ocimodel.pull(ref, out, keep_local=True)
    assert result.files_replaced == [] and (out / "README.md").read_bytes() == (model_dir / "README.md").read_bytes()
    assert tree_digest(out) == tree_digest(model_dir)


def test_archive_members_replaced_are_reported_and_keep_local_refuses_them(registry, model_dir: Path, repo_name: str, tmp_path: Path):
    """Files of an archive layer (a directory packed as one tar) are extracted again on
    every pull: one with the same bytes is not "replaced"; one edited locally is, and
    keep-local refuses it at the commit (it can only be compared once downloaded), with
    nothing in the destination changed."""
    from tests.test_archive import go_style_tar, push_artifact

    push_artifact(registry, repo_name, "1", [
        ("application/vnd.cncf.model.weight.config.v1.tar", go_style_tar(model_dir, "tokenizer"),
         {"org.cncf.model.filepath": "tokenizer"}),
        ("application/vnd.cncf.model.doc.v1.raw", (model_dir / "README.md").read_bytes(),
         {"org.cncf.model.filepath": "README.md"}),
    ])
    ref = f"{registry.host}/{repo_name}:1"
    out = tmp_path / "out"
    ocimodel.pull(ref, out)
    assert ocimodel.pull(ref, out).files_replaced == []

    (out / "tokenizer" / "tokenizer.json").write_text("mine\n")
    assert ocimodel.pull(ref, out).files_replaced == ["tokenizer/tokenizer.json"]
    assert (out / "tokenizer" / "tokenizer.json").read_bytes() == (model_dir / "tokenizer" / "tokenizer.json").read_bytes()

    (out / "tokenizer" / "tokenizer.json").write_text("mine again\n")
    before = tree_digest(out)
    with pytest.raises(LocalFilesDiffer) as caught:
        ocimodel.pull(ref, out, keep_local=True)
    assert caught.value.files == ["tokenizer/tokenizer.json"]
    assert tree_digest(out) == before  # no staging directory left either


# -- a journal the next pull finds may have been planted (review of issue 12) -----------------


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """Files a planted journal aims at: outside the destination, or in it."""
    root = tmp_path / "victim"
    (root / "empty").mkdir(parents=True)
    (root / "secret").write_bytes(b"the victim's secret\n")
    (root / "other").write_bytes(b"the victim's other file\n")
    return root


def _plant(dest: Path, document: dict, *, old: bytes = b"attacker's bytes\n", name: str = "x") -> Path:
    """A dead pull's staging directory as a pull makes it (mode 0700, a free lock, the
    journal, one old copy), holding whatever journal an attacker wrote."""
    staging = dest / f"{STAGING_PREFIX}{name}"
    (staging / unpack.KEPT_DIR).mkdir(parents=True)
    (staging / unpack.LOCK_NAME).touch()
    (staging / unpack.KEPT_DIR / "0").write_bytes(old)
    (staging / unpack.JOURNAL_NAME).write_text(json.dumps({"version": 1, "modes": [], "dirs": [], **document}))
    staging.chmod(0o700)
    return staging


def _left_alone(dest: Path, staging: Path, victim: Path, before: dict, caplog) -> None:
    """Recovery, directly and as a pull into ``dest`` starts it, changes nothing and says why."""
    with caplog.at_level(logging.WARNING, logger="ocimodel.pull"):
        assert recover_interrupted_pulls(dest) == 0
        with DirectoryWriter(dest, []):
            pass
    assert tree_digest(victim) == before and (victim / "empty").is_dir()
    assert (staging / unpack.JOURNAL_NAME).exists(), "a journal that is not trusted is left where it is"
    assert f"left {staging} alone" in caplog.text


def test_a_journal_naming_another_destination_is_not_acted_on(tmp_path: Path, victim: Path, caplog):
    dest = tmp_path / "dest"
    dest.mkdir()
    before = tree_digest(victim)
    staging = _plant(dest, {"destination": str(victim), "files": [["secret", True], ["other", False]], "dirs": [str(victim / "empty")]})
    _left_alone(dest, staging, victim, before, caplog)
    assert "another destination" in caplog.text


def test_a_journal_naming_directories_outside_its_destination_is_not_acted_on(tmp_path: Path, victim: Path, caplog):
    dest = tmp_path / "dest"
    dest.mkdir()
    before = tree_digest(victim)
    for name, outside in [("abs", str(victim / "empty")), ("dots", f"{dest}/../victim/empty")]:
        staging = _plant(dest, {"destination": str(dest), "files": [], "dirs": [outside]}, name=name)
        _left_alone(dest, staging, victim, before, caplog)
        shutil.rmtree(staging)


@pytest.mark.parametrize("field", ["files", "modes"])
def test_a_journal_naming_paths_with_dots_is_not_acted_on(tmp_path: Path, victim: Path, caplog, field: str):
    dest = tmp_path / "dest"
    dest.mkdir()
    before = tree_digest(victim)
    entries = {"files": [["../victim/secret", True], ["../victim/other", False]], "modes": [["../victim/secret", 0o777]]}
    staging = _plant(dest, {"destination": str(dest), "files": [], field: entries[field]})
    _left_alone(dest, staging, victim, before, caplog)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
@pytest.mark.parametrize("whose", ["staging", "journal"])
def test_a_journal_of_another_user_is_not_acted_on(tmp_path: Path, caplog, whose: str):
    """In a shared directory another user can make a staging directory (and its lock free
    to take) naming this destination and its files: only this user's own is undone."""
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "model.bin").write_bytes(b"my model\n")
    staging = _plant(dest, {"destination": str(dest), "files": [["model.bin", True]]})
    os.chown(staging if whose == "staging" else staging / unpack.JOURNAL_NAME, 4321, 4321)
    (dest / "empty").mkdir()  # what _left_alone looks for
    _left_alone(dest, staging, dest, tree_digest(dest), caplog)
    assert (dest / "model.bin").read_bytes() == b"my model\n"


@pytest.mark.parametrize("how", ["mode 0755", "journal writable by others", "journal a symlink"])
def test_a_staging_directory_a_pull_did_not_make_is_not_acted_on(tmp_path: Path, caplog, how: str):
    """A pulled directory (mode 0755 from an earlier, unchecked pull, or a journal anyone
    may rewrite) is not a staging directory of this user's: mkdtemp makes them 0700."""
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "model.bin").write_bytes(b"my model\n")
    staging = _plant(dest, {"destination": str(dest), "files": [["model.bin", True]]})
    journal = staging / unpack.JOURNAL_NAME
    if how == "mode 0755":
        staging.chmod(0o755)
    elif how == "journal writable by others":
        journal.chmod(0o666)
    else:
        journal.rename(tmp_path / "real.json")
        journal.symlink_to(tmp_path / "real.json")
    with caplog.at_level(logging.WARNING, logger="ocimodel.pull"):
        assert recover_interrupted_pulls(dest) == 0
    assert (dest / "model.bin").read_bytes() == b"my model\n"
    assert os.path.lexists(journal) and f"left {staging} alone" in caplog.text


def test_a_symlinked_destination_is_not_recovered_through(tmp_path: Path, caplog):
    real = tmp_path / "real"
    real.mkdir()
    (real / "model.bin").write_bytes(b"my model\n")
    link = tmp_path / "link"
    link.symlink_to(real)
    staging = _plant(real, {"destination": str(link), "files": [["model.bin", True]]})
    with caplog.at_level(logging.WARNING, logger="ocimodel.pull"):
        assert recover_interrupted_pulls(link) == 0
    assert (real / "model.bin").read_bytes() == b"my model\n"
    assert (staging / unpack.JOURNAL_NAME).exists() and "symlink" in caplog.text


def test_a_journal_of_its_own_is_still_undone(tmp_path: Path):
    """The checks let a real dead pull's journals through: an old file comes back in an
    existing destination; in a new one (staged in an ancestor) the file and the
    directories the commit created go."""
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "model.bin").write_bytes(b"v2, half committed\n")
    staging = _plant(dest, {"destination": str(dest), "files": [["model.bin", True]]}, old=b"v1\n")
    assert recover_interrupted_pulls(dest) == 1
    assert (dest / "model.bin").read_bytes() == b"v1\n" and not staging.exists()

    new = tmp_path / "new" / "model"
    new.mkdir(parents=True)
    (new / "model.bin").write_bytes(b"v2, half committed\n")
    dirs = [str(tmp_path / "new"), str(new)]
    staging = _plant(tmp_path, {"destination": str(new), "files": [["model.bin", False]], "dirs": dirs})
    assert recover_interrupted_pulls(tmp_path, destination=new) == 1
    assert not (tmp_path / "new").exists() and not staging.exists()


def test_a_model_cannot_plant_a_journal(registry, repo_name: str, tmp_path: Path, model_dir: Path):
    """`sub/.ocimodel-pull-x/journal.json` as a model file would be a journal the next pull
    into `sub` finds: the name is refused in any component, of a raw layer before anything
    is downloaded, of an archive member before anything moves; nothing lands."""
    from tests.test_archive import go_style_tar, push_artifact

    journal = json.dumps({"version": 1, "destination": "/tmp/victim", "files": [["secret", True]], "dirs": [], "modes": []}).encode()
    raw = "application/vnd.cncf.model.doc.v1.raw"
    push_artifact(registry, repo_name, "raw", [
        (raw, journal, {"org.cncf.model.filepath": f"sub/{STAGING_PREFIX}x/journal.json"}),
        (raw, b"", {"org.cncf.model.filepath": f"sub/{STAGING_PREFIX}x/lock"}),
    ])
    packed = tmp_path / "packed"
    (packed / "weights" / f"{STAGING_PREFIX}x").mkdir(parents=True)
    (packed / "weights" / f"{STAGING_PREFIX}x" / "journal.json").write_bytes(journal)
    push_artifact(registry, repo_name, "tar", [
        ("application/vnd.cncf.model.weight.v1.tar", go_style_tar(packed, "weights"), {"org.cncf.model.filepath": "weights"}),
    ])
    for tag in ("raw", "tar"):
        out = tmp_path / f"out-{tag}"
        with pytest.raises(UnsafePath, match="reserved for pull staging"):
            ocimodel.pull(f"{registry.host}/{repo_name}:{tag}", out)
        assert not out.exists() or tree_digest(out) == {}
        refused = ocimodel_cli("pull", f"{registry.host}/{repo_name}:{tag}", out)
        assert refused.code == 1 and "reserved for pull staging" in refused.err, str(refused)


# -- the hold of SIGINT/SIGTERM is the pull command's, not the process's ----------------------


@pytest.mark.slow
def test_two_cli_pulls_in_one_process_each_hold_interrupts(layout_versions: Versions, tmp_path: Path, monkeypatch):
    """After one `ocimodel pull` run in-process (CliRunner, an embedding app), the next
    one's commit is protected all the same: a Ctrl-C during it puts v1 back. And Ctrl-C
    works again afterwards (the handler is Python's own, not ignored)."""
    from typer.testing import CliRunner

    from ocimodel.cli import app as cli_app

    runner = CliRunner()
    before = signal.getsignal(signal.SIGINT)
    first = runner.invoke(cli_app.app, ["pull", layout_versions.refs["2"], str(tmp_path / "first")])
    assert first.exit_code == 0, first.output
    assert signal.getsignal(signal.SIGINT) is before
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL

    dest = layout_versions.fresh_v1(tmp_path / "second")
    real_move = unpack._move
    moved = []

    def move_then_interrupt(source: Path, target: Path) -> None:
        real_move(source, target)
        moved.append(target)
        if len(moved) == 10:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C, midway through the commit

    monkeypatch.setattr(unpack, "_move", move_then_interrupt)
    second = runner.invoke(cli_app.app, ["pull", layout_versions.refs["2"], str(dest)])
    assert second.exit_code == 130, second.output
    assert "Pulled" not in second.output
    assert tree_digest(dest) == layout_versions.trees["1"]
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


@pytest.mark.slow
def test_main_ignores_held_signals_until_exit_and_starts_clean(layout_versions: Versions, tmp_path: Path, monkeypatch, capsys):
    """Under main() the process exits after the command: a pull's held signals are ignored
    till then (no 130 after "Pulled"). main() run again in the same process puts the
    handlers back first, so its command starts with Ctrl-C working."""
    from ocimodel.cli import app as cli_app

    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(sys, "argv", ["ocimodel", "pull", layout_versions.refs["1"], str(tmp_path / "out")])
    try:
        with pytest.raises(SystemExit) as exit_:
            cli_app.main()
        assert exit_.value.code == 0, capsys.readouterr()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        monkeypatch.setattr(sys, "argv", ["ocimodel", "--version"])
        with pytest.raises(SystemExit):
            cli_app.main()
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        unpack.INTERRUPTS.reset()


def test_undoing_a_mode_never_follows_a_symlinked_parent(tmp_path: Path, victim: Path):
    """A journal's mode is put back on the file in the destination, never through a
    symlink that has come to stand where a directory was."""
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(victim)
    (victim / "secret").chmod(0o600)
    _plant(dest, {"destination": str(dest), "files": [], "modes": [["link/secret", 0o777]]})
    recover_interrupted_pulls(dest)
    assert (victim / "secret").stat().st_mode & 0o777 == 0o600
