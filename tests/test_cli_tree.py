"""The CLI is a tree: the root (ocimodel.cli.app) registers the commands of its leaves,
and no leaf imports the root. What a user relies on from that: every command is there
whichever entry point starts the CLI (`ocimodel`, `python -m ocimodel`, `python -m
ocimodel.cli.app`), and a leaf can be loaded (and tested) without the root.

When a leaf imported the root, `python -m ocimodel.cli.app` ran the root twice (once as
__main__, once imported by the leaves) and the leaves registered their commands on the
copy that did not run: `attach`, `sign`, `diff`... were "No such command" there."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ocimodel.cli import app as cli_app

pytestmark = pytest.mark.slow  # fresh interpreters

LEAVES = (
    "ocimodel.cli.common", "ocimodel.cli.transfer", "ocimodel.cli.browse", "ocimodel.cli.auth",
    "ocimodel.cli.cache", "ocimodel.cli.referrers", "ocimodel.cli.registry", "ocimodel.cli.trust",
    "ocimodel.cli.compare",
)


def _listed(help_text: str) -> set[str]:
    """The command names of a group's --help (the first word of each line of its
    Commands section)."""
    section = help_text.partition("Commands:")[2]
    return {line.split()[0] for line in section.splitlines() if line.startswith("  ") and line.split()}


def test_every_command_runs_through_the_module_entry_point() -> None:
    root = cli_app.cli_command()
    visible = {name for name, command in root.commands.items() if not command.hidden}
    assert {"push", "attach", "sign", "diff", "versions", "cache", "key"} <= visible  # the tree was read
    listing = subprocess.run(
        [sys.executable, "-m", "ocimodel.cli.app", "--help"], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert listing.returncode == 0, listing.stderr
    assert _listed(listing.stdout) == visible
    # a leaf's command runs there, not only its help line
    run = subprocess.run(
        [sys.executable, "-m", "ocimodel.cli.app", "attach", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "--artifact-type" in run.stdout


def test_no_leaf_loads_the_root() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {LEAVES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps('ocimodel.cli.app' in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) is False
