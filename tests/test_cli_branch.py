"""A command line that names a command runs with only that command built (ocimodel.cli.app
`cli_command`): typer makes a click command of every function's signature, and a run
needs one. And plain option values are checked without typer's pydantic adapters
(`quick_coercion`). What a user sees must not depend on either: each command line below
prints and exits exactly as it does through the whole tree, with typer doing all the
checking."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from ocimodel.cli import app as cli_app

# Help, usage errors, --version in its forms, a mistyped name, a group and its
# subcommands, root options before the command: what the parser alone decides.
LINES = [
    ["push", "--help"], ["push", "-h"], ["pull", "--help"], ["ls", "--help"], ["import", "--help"],
    ["generate-key-pair", "--help"], ["license", "--help"], ["eval", "--help"], ["eval", "check", "--help"],
    ["cache", "--help"], ["cache", "prnue"], ["key"], ["push"], ["push", "model"],
    ["push", "model", "oci:store:m:1", "--concurrency", "0"], ["push", "model", "oci:store:m:1", "--bogus"],
    ["push", "model", "oci:store:m:1", "--progress", "loud", "--json"], ["pus", "model"], ["--bogus", "push"],
    ["--version"], ["--debug", "--version"], ["--version", "push"], ["--version", "--help"], ["--ca-file"],
    ["--ca-file", "--version"], ["--ca-file", "x.pem", "--insecure", "push", "--help"], ["--cert=x.pem", "pull"],
    ["--", "push"], ["--help"], [],
    # values checked quickly, or handed to typer: in range, out of it, not a number
    ["push", "model", "oci:store:m:1", "-j", "08", "--bogus"], ["push", "model", "oci:store:m:1", "-j", "33"],
    ["push", "model", "oci:store:m:1", "-j", "+4", "--bogus"], ["push", "model", "oci:store:m:1", "-j", "4.5"],
    ["push", "model", "oci:store:m:1", "-j", "x"], ["push", "model", "oci:store:m:1", "-j", "", "--bogus"],
    ["push", "model", "oci:store:m:1", "--annotation", "a=b", "--annotation", "c"],
    ["push", "model", "oci:store:m:1", "--fail-on", "high", "--allow", "x"],
    ["admission", "serve", "--port", "70000"], ["eval", "record", "--help"],
]


def _typer_alone(monkeypatch) -> None:
    """From here on, the whole tree and typer's own checks (as before either existed)."""
    monkeypatch.setattr(cli_app, "invoked_command", lambda args: None)
    monkeypatch.setattr(cli_app, "quick_coercion", lambda command: command)


def _run(args: list[str], monkeypatch, capsys) -> tuple[object, str, str]:
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(sys, "argv", ["ocimodel", *args])
    with pytest.raises(SystemExit) as exit_:
        cli_app.main()
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.mark.parametrize("args", LINES, ids=" ".join)
def test_a_command_line_runs_as_through_the_whole_tree(args: list[str], monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    branch = _run(args, monkeypatch, capsys)
    _typer_alone(monkeypatch)
    assert _run(args, monkeypatch, capsys) == branch


@pytest.mark.parametrize("value", ["yes", "0", "maybe"])
def test_an_option_from_the_environment_is_checked_as_typer_checks_it(value: str, monkeypatch, capsys, tmp_path: Path) -> None:
    """A flag's value from its environment variable is a string: typer's own adapter reads it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OCIMODEL_INSECURE", value)
    args = ["push", "model", "oci:store:m:1", "--bogus"]
    branch = _run(args, monkeypatch, capsys)
    _typer_alone(monkeypatch)
    assert _run(args, monkeypatch, capsys) == branch


def test_a_command_runs_in_its_branch_as_in_the_whole_tree(monkeypatch, capsys, tmp_path: Path) -> None:
    """A command that does its work (a push into a layout, --json and for people) gives the
    same result either way."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"\3" * 100)
    for extra in (["--json", "-j", "2", "--annotation", "a=b"], ["--progress", "none"]):  # (progress lines show a rate: timing)
        shutil.rmtree(tmp_path / "store", ignore_errors=True)
        args = ["push", "model", "oci:store:m:1", *extra]
        branch = _run(args, monkeypatch, capsys)
        assert branch[0] == 0, branch
        shutil.rmtree(tmp_path / "store")  # a first push again, not a re-push
        with monkeypatch.context() as whole:
            _typer_alone(whole)
            assert _run(args, monkeypatch, capsys) == branch


def test_only_the_named_command_is_built() -> None:
    whole = cli_app.cli_command()
    assert {"push", "pull", "eval", "cache", "generate-key-pair"} <= set(whole.commands)
    assert list(cli_app.cli_command(["push", "model", "oci:store:m:1", "--json"]).commands) == ["push"]
    assert list(cli_app.cli_command(["--insecure", "--ca-file", "ca.pem", "import", "x"]).commands) == ["import"]
    group = cli_app.cli_command(["eval", "check"]).commands
    assert list(group) == ["eval"] and set(group["eval"].commands) == set(whole.commands["eval"].commands)
    assert cli_app.cli_command(["--version"]).commands == {}  # it answers before any command
    # the whole tree where the answer names the others
    for args in (["--help"], [], ["pus"], ["-h", "push"], ["--", "push"], ["--debug"], ["--ca-file", "--version"]):
        assert set(cli_app.cli_command(args).commands) == set(whole.commands), args
