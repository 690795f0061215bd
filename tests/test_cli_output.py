"""What the CLI prints around a command's result, as a user and a script rely on it:
``--help`` examples that can be copied whole at any terminal width, progress in a log
(not a terminal) as plain lines, and ``--json`` errors as one JSON object on stdout."""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import select
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.exceptions import TyperException

from ocimodel.cli import app as cli_app
from ocimodel.cli.helptext import paragraphs
from ocimodel.cli.progress import PlainLines
from ocimodel.oci.models import Descriptor
from tests.test_cli import Run, ocimodel_cli, ok

# -- help -----------------------------------------------------------------------------------


def _commands(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMAND_PATHS = [path for path, _ in _commands(cli_app.cli_command())]


def _help(path: tuple[str, ...], columns: int, monkeypatch, capsys) -> str:
    """`ocimodel PATH --help` through the real entry point, in this process (a subprocess
    per command and width would take a minute)."""
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setattr(sys, "argv", ["ocimodel", *path, "--help"])
    with pytest.raises(SystemExit) as exit_:
        cli_app.main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 0 and not err, (path, err)
    return out


def test_the_command_tree_is_walked() -> None:
    """The walk below must reach nested commands (cache prune, key generate...)."""
    assert {(), ("push",), ("cache", "prune"), ("signature", "export"), ("key", "generate")} <= set(COMMAND_PATHS)


@pytest.mark.parametrize("columns", [60, 200])
@pytest.mark.slow
def test_help_examples_stay_whole_at_any_width(columns: int, monkeypatch, capsys) -> None:
    """Every example (an indented line of a command's docstring) is one line of --help,
    exactly as written: copied from a narrow terminal it still runs. And no word of the
    help is broken at a hyphen (`--artifact-` / `type` was a broken flag)."""
    commands = dict(_commands(cli_app.cli_command()))
    problems = []
    seen = 0
    for path in COMMAND_PATHS:
        text = inspect.cleandoc(commands[path].help or "")
        examples = [line.strip() for literal, lines in paragraphs(text) if literal for line in lines]
        # A group's help is dedented by typer, so its example paragraph may no longer be
        # indented: a line that is a whole ocimodel command is an example all the same.
        examples += [line.strip() for line in text.splitlines() if line.strip().startswith("ocimodel ")]
        out = _help(path, columns, monkeypatch, capsys)
        shown = {line.strip() for line in out.splitlines()}
        for example in examples:
            seen += 1
            if example not in shown:
                problems.append(f"ocimodel {' '.join(path)} --help (COLUMNS={columns}): not whole: {example}")
        for line in out.splitlines():
            if re.search(r"[A-Za-z0-9]-$", line):
                problems.append(f"ocimodel {' '.join(path)} --help (COLUMNS={columns}): word split: {line!r}")
    assert not problems, "\n".join(problems)
    assert seen >= 40  # every command has examples; the walk found them
    assert any(path == ("attach",) for path in COMMAND_PATHS)


def test_every_help_example_is_a_command_that_parses() -> None:
    """Copied from --help and pasted, an example runs: its options and arguments are those
    of its command (a stale flag, or a note such as `(asks for the password)` written after
    the command, would make it a usage error). Shell comments and pipes are allowed."""
    root = cli_app.cli_command()
    problems = []
    checked = 0
    for path, command in _commands(root):
        text = inspect.cleandoc(command.help or "")
        for line in (line for literal, lines in paragraphs(text) if literal for line in lines):
            for part in line.split("|"):
                words = shlex.split(part, comments=True)
                if not words or words[0] != "ocimodel":
                    continue
                target, args, names = root, words[1:], ["ocimodel"]
                while getattr(target, "commands", None) and args and args[0] in target.commands:
                    names.append(args[0])
                    target, args = target.commands[args[0]], args[1:]
                checked += 1
                try:
                    target.make_context(" ".join(names), list(args))
                except TyperException as exc:  # the parser's errors (click's, as typer ships it)
                    problems.append(f"{' '.join(path) or 'ocimodel'}: {line.strip()}: {exc}")
    assert not problems, "\n".join(problems)
    assert checked >= 40


@pytest.mark.slow
def test_help_through_the_console_entry_point(monkeypatch) -> None:
    """The same layout in a real process: `attach`'s example names --artifact-type, the
    flag that used to be cut in two."""
    run = ocimodel_cli("attach", "--help", env={"COLUMNS": "60"})
    assert run.code == 0, str(run)
    assert any(
        line.strip().startswith("ocimodel attach ") and "--artifact-type application/vnd.example.eval.v1+json" in line
        for line in run.out.splitlines()
    ), run.out


# -- progress -------------------------------------------------------------------------------

PLAIN_LINE = re.compile(
    r"^(?P<verb>[a-z]+): (?P<done>done: )?[0-9.]+ (B|KiB|MiB) of (?P<total>[0-9.]+ (B|KiB|MiB)) \((?P<pct>\d+)%\), "
    r"\d+ of \d+ blobs, [0-9.]+ (B|KiB|MiB|GiB)/s, [0-9.]+ s$"
)


@pytest.fixture
def big_model(tmp_path: Path) -> Path:
    """A model of a few MiB: a transfer long enough to be a transfer, short for a test."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(os.urandom(5 * 1024 * 1024))
    (model / "config.json").write_text('{"layers": 2}\n')
    return model


def _progress_lines(run: Run, verb: str) -> list[re.Match]:
    lines = [line for line in run.err.splitlines() if line.strip()]
    matches = [PLAIN_LINE.match(line) for line in lines]
    assert all(matches), f"stderr has lines other than plain progress:\n{run}"
    assert all(m["verb"] == verb for m in matches), str(run)
    return matches


@pytest.mark.slow
def test_plain_progress_when_stderr_is_not_a_terminal(big_model: Path, tmp_path: Path) -> None:
    """A CI log gets lines (not silence, not bars) for push, pull and copy, ending with a
    `done` line that has the whole size, however fast the transfer was."""
    store = f"oci:{tmp_path / 'store'}"
    runs = {
        "push": ok("push", big_model, f"{store}:m-1"),
        "pull": ok("pull", f"{store}:m-1", tmp_path / "out"),
        "copy": ok("copy", f"{store}:m-1", f"oci:{tmp_path / 'other'}:m-1"),
    }
    for verb, run in runs.items():
        lines = _progress_lines(run, verb)
        assert lines, f"no progress at all:\n{run}"
        last = lines[-1]
        assert last["done"] and last["pct"] == "100", str(run)
        assert last["total"].endswith("MiB") and float(last["total"].split()[0]) >= 5.0, str(run)
        assert "\x1b[" not in run.err, "terminal escapes in a log"


@pytest.mark.slow
def test_progress_none_quiet_and_json(big_model: Path, tmp_path: Path) -> None:
    """--progress none, -q and --json print no progress; --progress given on the command
    line wins over -q and --json (stdout stays the digest / the JSON document);
    OCIMODEL_PROGRESS sets the default, and the flag wins over it."""
    store = f"oci:{tmp_path / 'store'}"
    silent = {
        "--progress none": ok("push", big_model, f"{store}:a", "--progress", "none"),
        "-q": ok("push", big_model, f"{store}:b", "-q"),
        "--json": ok("push", big_model, f"{store}:c", "--json"),
        "OCIMODEL_PROGRESS=none": ok("push", big_model, f"{store}:d", env={"OCIMODEL_PROGRESS": "none"}),
        "env plain, flag none": ok("pull", f"{store}:a", tmp_path / "o1", "--progress", "none",
                                   env={"OCIMODEL_PROGRESS": "plain"}),
    }
    for what, run in silent.items():
        assert run.err == "", f"[{what}] {run}"
    quiet_plain = ok("pull", f"{store}:a", tmp_path / "o2", "-q", "--progress", "plain")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", quiet_plain.out), str(quiet_plain)
    assert _progress_lines(quiet_plain, "pull")[-1]["done"]
    json_plain = ok("copy", f"{store}:a", f"oci:{tmp_path / 'other'}:a", "--json", "--progress", "plain")
    assert json.loads(json_plain.out)["digest"].startswith("sha256:")
    assert _progress_lines(json_plain, "copy")[-1]["done"]


@pytest.mark.slow
def test_a_closed_stderr_does_not_fail_a_transfer(big_model: Path, tmp_path: Path) -> None:
    """`ocimodel push ... 2>&-` (stderr closed, as some service managers start a job):
    progress has nowhere to go and must not turn a good push into a failure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCIMODEL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "ocimodel", "push", str(big_model), f"oci:{tmp_path / 'store'}:m", "--progress", "plain"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, timeout=120, check=False,
        preexec_fn=lambda: os.close(2),
    )
    assert proc.returncode == 0 and b"Pushed" in proc.stdout, proc.stdout


@pytest.mark.slow
def test_bad_progress_values_are_usage_errors(big_model: Path, tmp_path: Path) -> None:
    store = f"oci:{tmp_path / 'store'}"
    flag = ocimodel_cli("push", big_model, f"{store}:a", "--progress", "loud")
    env = ocimodel_cli("push", big_model, f"{store}:a", env={"OCIMODEL_PROGRESS": "loud"})
    interval = ocimodel_cli("push", big_model, f"{store}:a", env={"OCIMODEL_PROGRESS_INTERVAL": "0"})
    assert flag.code == 2 and "--progress" in flag.err, str(flag)
    assert env.code == 2 and "OCIMODEL_PROGRESS" in env.err, str(env)
    assert interval.code == 2 and "OCIMODEL_PROGRESS_INTERVAL" in interval.err, str(interval)
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
def test_bars_on_a_terminal(big_model: Path, tmp_path: Path) -> None:
    """auto still draws bars when stderr is a terminal (a pseudo-terminal here), not lines."""
    import pty

    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCIMODEL_")}
    env.update(COLUMNS="100", TERM="xterm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocimodel", "push", str(big_model), f"oci:{tmp_path / 'store'}:m"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower, env=env,
    )
    os.close(follower)
    shown = b""
    while True:  # read the terminal until the process closes it
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    out, _ = proc.communicate(timeout=60)
    text = shown.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert b"Pushed" in out
    assert "push 3 blobs" in text and "MiB" in text, text
    assert not any(PLAIN_LINE.match(line.strip()) for line in text.splitlines()), text


def _descriptor(size: int, n: int = 0) -> Descriptor:
    return Descriptor(mediaType="application/octet-stream", digest=f"sha256:{n:064x}", size=size)


def test_plain_lines_every_interval_while_a_transfer_runs() -> None:
    """A transfer that takes longer than the interval prints a line per interval with the
    bytes so far, not only at the end. (Waits for the line, with a generous deadline: the
    interval is 50 ms, the deadline 30 s.)"""
    stream = io.StringIO()
    blob = _descriptor(100)
    with PlainLines(stream, "pull", interval=0.05) as lines:
        lines.transfer_started([blob])
        lines.blob_started(blob, "w.bin")
        lines.blob_advanced(blob, 40)
        deadline = time.monotonic() + 30
        while "40 B of 100 B (40%)" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        lines.blob_advanced(blob, 60)
        lines.blob_finished(blob, skipped=False)
    text = stream.getvalue().splitlines()
    assert any(line.startswith("pull: 40 B of 100 B (40%), 0 of 1 blobs, ") for line in text), text
    assert text[-1].startswith("pull: done: 100 B of 100 B (100%), 1 of 1 blobs, "), text
    assert all(PLAIN_LINE.match(line) for line in text), text


def test_plain_lines_count_skipped_blobs_and_say_nothing_more_on_failure() -> None:
    """Blobs the destination has count as done; a push's two announcements add up; a
    failed transfer prints no `done` line (the error is the last word)."""
    stream = io.StringIO()
    a, b = _descriptor(1024, 1), _descriptor(3072, 2)
    with PlainLines(stream, "push", interval=3600) as lines:
        lines.transfer_started([a])
        lines.transfer_started([b])
        lines.blob_finished(a, skipped=True)
        lines.blob_advanced(b, 3072)
        lines.blob_finished(b, skipped=False)
    assert stream.getvalue().startswith("push: done: 4.0 KiB of 4.0 KiB (100%), 2 of 2 blobs, ")
    failed = io.StringIO()
    with pytest.raises(RuntimeError), PlainLines(failed, "push", interval=3600) as lines:
        lines.transfer_started([a])
        raise RuntimeError("registry went away")
    assert failed.getvalue() == ""
    # nothing announced (nothing to transfer): nothing printed, no thread left behind
    idle = io.StringIO()
    with PlainLines(idle, "pull", interval=0.01):
        time.sleep(0.05)
    assert idle.getvalue() == ""
    assert not [t for t in threading.enumerate() if t.name == "ocimodel-progress"]


# -- --json errors --------------------------------------------------------------------------


def _json_error(run: Run, code: int) -> dict:
    """Exit `code`; stdout one JSON object {"error": {...}} and nothing else; stderr the
    usual `error:` line with the same message."""
    assert run.code == code, str(run)
    document = json.loads(run.out)  # refuses anything around the object
    assert list(document) == ["error"], str(run)
    error = document["error"]
    assert set(error) == {"type", "message", "hint", "exit_code"}, str(run)
    assert error["exit_code"] == code and isinstance(error["type"], str) and error["type"], str(run)
    assert run.err.startswith(f"error: {error['message']}\n"), str(run)
    if error["hint"]:
        assert f"hint: {error['hint']}" in run.err, str(run)
    assert "Traceback" not in run.err
    return error


def test_json_errors_on_stdout(registry, repo_name, model_dir, tmp_path: Path) -> None:
    """With --json a failure is a JSON document on stdout too (exit 1: the registry or the
    data; exit 2: the command), for errors from the API, from the option parser and from
    OCIMODEL_* settings."""
    ref = f"{registry.host}/{repo_name}"
    ok("push", model_dir, f"{ref}:1.0", "-q")
    keys = ok("key", "generate", "--output-key-prefix", tmp_path / "k", "--no-password")
    assert keys.code == 0
    failures = {
        "inspect": ("inspect", f"{ref}:nope", "--json"),
        "pull": ("pull", f"{ref}:nope", tmp_path / "out", "--json"),
        "ls": ("ls", f"oci:{tmp_path / 'no-layout'}", "--json"),
        "verify": ("verify", f"{ref}:nope", "--key", tmp_path / "k.pub", "--json"),
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        failed = dict(zip(failures, pool.map(lambda argv: ocimodel_cli(*argv), failures.values())))
    for what, run in failed.items():
        error = _json_error(run, 1)
        assert error["type"] == "NotFound", (what, error)
        assert error["hint"], (what, error)
    usage = {
        "inspect: bad reference": ("inspect", "reg.example.com/team/m@sha256:abc", "--json"),
        "pull: bad --kind": ("pull", f"{ref}:1.0", tmp_path / "out", "--kind", "weights", "--json"),
        "ls: missing argument (parser)": ("ls", "--json"),
        "verify: nothing to trust": ("verify", f"{ref}:1.0", "--json"),
        "pull: unknown option (parser)": ("pull", "--json", "--no-such-option", f"{ref}:1.0", tmp_path / "out"),
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        refused = dict(zip(usage, pool.map(lambda argv: ocimodel_cli(*argv), usage.values())))
    for what, run in refused.items():
        error = _json_error(run, 2)
        assert error["type"], what
    settings_error = _json_error(ocimodel_cli("inspect", f"{ref}:1.0", "--json", env={"OCIMODEL_RETRIES": "five"}), 2)
    assert "OCIMODEL_RETRIES" in settings_error["message"]
    assert not (tmp_path / "out").exists()


def test_without_json_errors_leave_stdout_empty(registry, repo_name, tmp_path: Path) -> None:
    run = ocimodel_cli("inspect", f"{registry.host}/{repo_name}:nope")
    assert run.code == 1 and run.out == "" and run.err.startswith("error: "), str(run)
    after_dashes = ocimodel_cli("inspect", "--", "--json")  # a positional value, not the option
    assert after_dashes.code == 2 and after_dashes.out == "", str(after_dashes)
