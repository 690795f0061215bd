"""Files a user names as outputs (``export FILE``, ``signature export -o FILE``, ``key
generate --output-key-prefix``): written only as regular files, never through or over a
symlink, fifo, socket or device, an existing file only with --force, ``-`` as standard
output. First the module (ocimodel.outputs), then the commands as a user runs them, on an
OCI layout (no registry) and once against the registry."""

from __future__ import annotations

import errno
import io
import json
import os
import pty
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import ocimodel
from ocimodel.errors import OutputExists, UnsafeOutput, UsageError
from ocimodel.outputs import check_output, is_stdout, open_output, write_output
from tests.test_cli import _env, ocimodel_cli, ok, usage_error_problems

IS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason="mknod of a device needs root")


# -- destinations that are not regular files -------------------------------------------------


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))  # the node stays when the socket object is collected
    server.close()


def _link_to_file(path: Path) -> None:
    (path.parent / "precious.txt").write_text("keep me")
    os.symlink("precious.txt", path)


def _dangling_link(path: Path) -> None:
    os.symlink("nowhere.txt", path)


def _directory(path: Path) -> None:
    path.mkdir()
    (path / "inside.txt").write_text("keep me")


def _char_device(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is


SPECIAL = [
    pytest.param(_fifo, id="fifo"),
    pytest.param(_socket, id="socket"),
    pytest.param(_link_to_file, id="symlink-to-file"),
    pytest.param(_dangling_link, id="dangling-symlink"),
    pytest.param(_directory, id="directory"),
    pytest.param(_char_device, id="char-device", marks=root_only),
]


def snapshot(directory: Path) -> dict[str, tuple]:
    """What a user would notice: every entry's name, type, inode, link target and bytes."""
    seen = {}
    for entry in sorted(directory.iterdir()):
        st = entry.lstat()
        target = os.readlink(entry) if stat.S_ISLNK(st.st_mode) else None
        data = entry.read_bytes() if stat.S_ISREG(st.st_mode) else None
        inner = tuple(sorted(p.name for p in entry.iterdir())) if stat.S_ISDIR(st.st_mode) else None
        seen[entry.name] = (stat.S_IFMT(st.st_mode), st.st_ino, st.st_rdev, target, data, inner)
    return seen


@pytest.fixture
def place(tmp_path: Path) -> Path:
    """An empty directory for the output: nothing else of the test lives in it."""
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


# -- the module ------------------------------------------------------------------------------


@pytest.mark.parametrize("make", SPECIAL)
@pytest.mark.parametrize("replace", [False, True], ids=["new", "replace"])
def test_special_destinations_are_refused_and_left_alone(place: Path, make, replace: bool) -> None:
    path = place / "output"
    make(path)
    before = snapshot(place)
    with pytest.raises(UnsafeOutput) as caught:
        write_output(path, b"data", replace=replace)
    assert caught.value.path == str(path) and caught.value.kind in str(caught.value)
    assert isinstance(caught.value, UsageError) and caught.value.hint
    with pytest.raises(UnsafeOutput), open_output(path, replace=replace) as stream:
        stream.write(b"data")
    assert snapshot(place) == before  # the node, its target, and no temporary file


def test_a_new_file_is_written_whole_with_its_mode(place: Path) -> None:
    old_umask = os.umask(0o077)
    try:
        write_output(place / "public.sig", b"signature", mode=0o644)
        write_output(place / "secret.key", b"key", mode=0o600)
    finally:
        os.umask(old_umask)
    assert (place / "public.sig").read_bytes() == b"signature"
    assert stat.S_IMODE((place / "public.sig").stat().st_mode) == 0o644
    assert stat.S_IMODE((place / "secret.key").stat().st_mode) == 0o600
    assert sorted(p.name for p in place.iterdir()) == ["public.sig", "secret.key"]


def test_an_existing_file_is_replaced_only_when_asked(place: Path) -> None:
    path = place / "model.tar"
    path.write_bytes(b"an older export")
    with pytest.raises(OutputExists) as caught:
        write_output(path, b"new")
    assert "--force" in (caught.value.hint or "")
    assert path.read_bytes() == b"an older export"
    write_output(path, b"new", replace=True)
    assert path.read_bytes() == b"new"
    assert [p.name for p in place.iterdir()] == ["model.tar"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()], ids=["error", "interrupt"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_an_interrupted_write_leaves_the_old_file_or_nothing(place: Path, error: BaseException, existing: bool) -> None:
    path = place / "model.tar"
    if existing:
        path.write_bytes(b"an older export")
    with pytest.raises(type(error)), open_output(path, replace=True) as stream:
        stream.write(b"half of it")
        raise error
    assert [p.name for p in place.iterdir()] == (["model.tar"] if existing else [])
    if existing:
        assert path.read_bytes() == b"an older export"


def _write_while(path: Path, make: Callable[[Path], None], replace: bool) -> None:
    with open_output(path, replace=replace) as stream:
        stream.write(b"data")
        make(path)  # another process puts something at the path meanwhile


@pytest.mark.parametrize("replace", [False, True], ids=["new", "replace"])
@pytest.mark.parametrize("make", [_dangling_link, _link_to_file, _fifo], ids=["dangling-symlink", "symlink", "fifo"])
def test_a_node_that_appears_while_writing_is_not_replaced(place: Path, make, replace: bool) -> None:
    path = place / "output"
    with pytest.raises(UnsafeOutput):
        _write_while(path, make, replace)
    assert path.is_symlink() or stat.S_ISFIFO(path.lstat().st_mode)
    assert not [p for p in place.iterdir() if p.name.startswith(".")]  # no temporary file


def test_a_file_that_appears_while_writing_is_kept_without_replace(place: Path) -> None:
    path = place / "output"
    with pytest.raises(OutputExists):
        _write_while(path, lambda p: p.write_text("theirs"), replace=False)
    assert path.read_text() == "theirs"
    assert [p.name for p in place.iterdir()] == ["output"]


def test_a_filesystem_without_hard_links_is_written_by_rename(place: Path, monkeypatch) -> None:
    # FAT on a USB stick, where exports often go, has no link(2): EPERM.
    def no_link(*_args, **_kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    write_output(place / "model.tar", b"data")
    assert (place / "model.tar").read_bytes() == b"data"
    with pytest.raises(UnsafeOutput):
        _write_while(place / "other", _dangling_link, replace=False)
    assert (place / "other").is_symlink()
    assert sorted(p.name for p in place.iterdir()) == ["model.tar", "other"]


def test_dash_is_standard_output_and_dot_slash_dash_a_file(tmp_path: Path, monkeypatch, capsys) -> None:
    assert is_stdout("-") and not is_stdout("./-") and not is_stdout(tmp_path / "-")
    write_output("-", b'{"a": 1}\n')
    assert capsys.readouterr().out == '{"a": 1}\n'
    monkeypatch.chdir(tmp_path)
    write_output("./-", b"a file")
    assert (tmp_path / "-").read_bytes() == b"a file"


def test_an_archive_is_never_written_to_a_terminal(monkeypatch) -> None:
    leader, follower = pty.openpty()
    try:
        terminal = io.TextIOWrapper(io.BufferedWriter(io.FileIO(follower, "w", closefd=False)))
        monkeypatch.setattr(sys, "stdout", terminal)
        with pytest.raises(UsageError, match="terminal"):
            check_output("-", terminal_ok=False)
        with pytest.raises(UsageError, match="terminal"), open_output("-", terminal_ok=False) as stream:
            stream.write(b"tar bytes")
        os.set_blocking(leader, False)
        with pytest.raises(BlockingIOError):
            os.read(leader, 100)  # nothing reached the terminal
    finally:
        os.close(leader)
        os.close(follower)


# -- the commands ----------------------------------------------------------------------------


def cli_bytes(*args: object, cwd: Path, stdout=subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:
    """The CLI with stdout as bytes (an archive on standard output is binary), run in
    ``cwd``: exporting to - stages the layout in the working directory."""
    return subprocess.run(
        [sys.executable, "-m", "ocimodel", *map(str, args)], check=False, stdout=stdout,
        stderr=subprocess.PIPE, env=_env(), timeout=60, stdin=subprocess.DEVNULL, cwd=cwd,
    )


@pytest.fixture
def layout_ref(model_dir: Path, tmp_path: Path) -> str:
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    return ref


@pytest.mark.parametrize("make", [p for p in SPECIAL if p.id != "directory"])
def test_export_never_replaces_a_special_destination(layout_ref: str, place: Path, make) -> None:
    path = place / "model.tar"
    make(path)
    before = snapshot(place)
    for overwrite in (False, True):
        with pytest.raises(UnsafeOutput):
            ocimodel.export(layout_ref, path, overwrite=overwrite)
    assert snapshot(place) == before


@pytest.mark.parametrize("make", [_fifo, _dangling_link], ids=["fifo", "dangling-symlink"])
@pytest.mark.slow
def test_export_command_refuses_a_special_destination(layout_ref: str, place: Path, make) -> None:
    path = place / "model.tar"
    make(path)
    before = snapshot(place)
    run = ocimodel_cli("export", layout_ref, path, "--force")
    assert not usage_error_problems(run), str(run)
    assert str(path) in run.err
    assert snapshot(place) == before


@root_only
@pytest.mark.slow
def test_export_over_a_device_leaves_the_device(layout_ref: str, place: Path) -> None:
    """The defect as found: as root, a device node became a regular file, exit 0."""
    device = place / "full"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # what /dev/full is
    run = ocimodel_cli("export", layout_ref, device, "--force")
    assert run.code == 2 and "character device" in run.err, str(run)
    assert stat.S_ISCHR(device.lstat().st_mode) and device.lstat().st_rdev == os.makedev(1, 7)


@pytest.mark.slow
def test_export_to_standard_output_writes_the_same_archive(layout_ref: str, place: Path, tmp_path: Path) -> None:
    ok("export", layout_ref, place / "model.tar")
    piped = cli_bytes("export", layout_ref, "-", cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr.decode()
    assert piped.stdout == (place / "model.tar").read_bytes()
    assert b"Exported" in piped.stderr and b"standard output" in piped.stderr
    assert [p.name for p in place.iterdir()] == ["model.tar"]  # no file named "-"

    with open(place / "redirected.tar", "wb") as handle:
        assert cli_bytes("export", layout_ref, "-", "-q", stdout=handle, cwd=tmp_path).returncode == 0
    assert (place / "redirected.tar").read_bytes() == (place / "model.tar").read_bytes()

    both = ocimodel_cli("export", layout_ref, "-", "--json")
    # a usage error; with --json its report is the one JSON object on stdout, no tar bytes
    assert both.code == 2 and "--json" in both.err
    assert json.loads(both.out)["error"]["exit_code"] == 2


@pytest.mark.slow
def test_export_to_a_terminal_is_refused(layout_ref: str, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    shown = bytearray()

    def drain() -> None:  # what the terminal receives; EIO once the last writer is gone
        while True:
            try:
                data = os.read(leader, 1 << 16)
            except OSError:
                return
            if not data:
                return
            shown.extend(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        run = cli_bytes("export", layout_ref, "-", stdout=follower, cwd=tmp_path)
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)
    assert run.returncode == 2 and b"terminal" in run.stderr, run.stderr
    assert b"oci-layout" not in shown


@pytest.mark.slow
def test_export_replaces_an_existing_file_only_with_force(layout_ref: str, place: Path, tmp_path: Path) -> None:
    path = place / "model.tar"
    path.write_bytes(b"an older export")
    refused = ocimodel_cli("export", layout_ref, path)
    assert not usage_error_problems(refused) and "--force" in refused.err, str(refused)
    assert path.read_bytes() == b"an older export"
    ok("export", layout_ref, path, "--force")
    assert path.read_bytes() == cli_bytes("export", layout_ref, "-", cwd=tmp_path).stdout
    assert [p.name for p in place.iterdir()] == ["model.tar"]


@pytest.fixture
def signed_layout(layout_ref: str, tmp_path: Path) -> tuple[str, Path]:
    keys = tmp_path / "keys"
    keys.mkdir()
    ocimodel.generate_key_pair(keys / "k.key", keys / "k.pub")
    ocimodel.sign(layout_ref, key=keys / "k.key")
    return layout_ref, keys / "k.pub"


@pytest.mark.slow
def test_signature_export_destinations(signed_layout, place: Path, tmp_path: Path) -> None:
    ref, public = signed_layout
    path = place / "model.sig"
    ok("signature", "export", ref, "--key", public, "-o", path)
    written = path.read_bytes()
    piped = cli_bytes("signature", "export", ref, "--key", public, "-o", "-", cwd=tmp_path)
    assert piped.returncode == 0 and piped.stdout == written, piped.stderr.decode()
    assert b"standard output" in piped.stderr

    refused = ocimodel_cli("signature", "export", ref, "--key", public, "-o", path)
    assert not usage_error_problems(refused) and "--force" in refused.err
    ok("signature", "export", ref, "--key", public, "-o", path, "--force")
    assert path.read_bytes() == written

    fifo = place / "fifo"
    _fifo(fifo)
    before = snapshot(place)
    run = ocimodel_cli("signature", "export", ref, "--key", public, "-o", fifo, "--force")
    assert not usage_error_problems(run), str(run)
    for make in (_dangling_link, _link_to_file):
        other = place / make.__name__
        make(other)
        before = snapshot(place)
        with pytest.raises(UnsafeOutput):
            ocimodel.export_signature(ref, other, keys=[public], overwrite=True)
        assert snapshot(place) == before


def test_signature_export_from_the_registry_to_standard_output(registry, repo_name, model_dir, tmp_path: Path) -> None:
    ref = f"{registry.host}/{repo_name}:1"
    ocimodel.push(model_dir, ref)
    ocimodel.generate_key_pair(tmp_path / "k.key", tmp_path / "k.pub")
    ocimodel.sign(ref, key=tmp_path / "k.key")
    ocimodel.export_signature(ref, tmp_path / "model.sig", keys=[tmp_path / "k.pub"])
    piped = cli_bytes("signature", "export", ref, "--key", tmp_path / "k.pub", "-o", "-", cwd=tmp_path)
    assert piped.returncode == 0 and piped.stdout == (tmp_path / "model.sig").read_bytes()
    os.symlink("model.sig", tmp_path / "link.sig")
    refused = ocimodel_cli("signature", "export", ref, "--key", tmp_path / "k.pub", "-o", tmp_path / "link.sig", "--force")
    assert not usage_error_problems(refused) and "symbolic link" in refused.err
    assert os.readlink(tmp_path / "link.sig") == "model.sig"


@pytest.mark.slow
def test_key_generate_replaces_keys_only_with_force_and_never_through_a_link(place: Path) -> None:
    prefix = place / "release"
    ok("key", "generate", "--output-key-prefix", prefix, "--no-password")
    first = (prefix.with_suffix(".key").read_bytes(), prefix.with_suffix(".pub").read_bytes())
    again = ocimodel_cli("key", "generate", "--output-key-prefix", prefix, "--no-password")
    assert not usage_error_problems(again) and "refusing to overwrite" in again.err
    assert (prefix.with_suffix(".key").read_bytes(), prefix.with_suffix(".pub").read_bytes()) == first
    ok("key", "generate", "--output-key-prefix", prefix, "--no-password", "--force")
    second = (prefix.with_suffix(".key").read_bytes(), prefix.with_suffix(".pub").read_bytes())
    assert second[0] != first[0] and second[1] != first[1]
    assert stat.S_IMODE(prefix.with_suffix(".key").stat().st_mode) == 0o600

    # A link at the public key's path: refused before anything is written, even with --force.
    os.symlink("release.pub", place / "other.pub")
    before = snapshot(place)
    linked = ocimodel_cli("key", "generate", "--output-key-prefix", place / "other", "--no-password", "--force")
    assert not usage_error_problems(linked) and "symbolic link" in linked.err
    assert snapshot(place) == before  # no other.key either


def test_a_key_pair_is_written_whole_or_not_at_all(place: Path) -> None:
    os.symlink("elsewhere.pub", place / "k.pub")
    with pytest.raises(UnsafeOutput):
        ocimodel.generate_key_pair(place / "k.key", place / "k.pub", overwrite=True)
    assert [p.name for p in place.iterdir()] == ["k.pub"]  # no private key without its pair
    with pytest.raises(UsageError):
        ocimodel.generate_key_pair(place / "k.key", "-")


@pytest.mark.slow
def test_help_says_when_a_file_is_replaced() -> None:
    for command in (["export"], ["signature", "export"], ["key", "generate"]):
        text = ok(*command, "--help").out
        assert "--force" in text and "symlink" in text, command
