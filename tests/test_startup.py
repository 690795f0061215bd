"""Start-up: what each entry point loads. Start-up is most of every sub-second command (a
re-push, a small pull), so the heavy modules a command does not need must stay unloaded.
These tests assert which modules are imported, not how long it takes (timing belongs in
benchmarks/), each in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# every test starts a fresh interpreter to see what it imports
pytestmark = pytest.mark.slow

# The httpx command-line client and what it drags in; the CLI-only libraries.
HTTPX_CLI = ("httpx._main", "pygments")
CLI_ONLY = ("typer", "click", "rich")
# Needed by push (model card, lineage) or by the trust commands only.
PUSH_OR_TRUST_ONLY = (
    "ocimodel.metadata", "ocimodel.api.lineage", "ocimodel.api.trust", "ocimodel.trust", "ocimodel.signing", "sigstore",
    "yaml",
)

_REPORT = (
    "import json, sys; print(json.dumps(sorted(m for m, module in sys.modules.items()"
    " if type(module).__name__ != '_LazyModule')), file=sys.__stderr__)"  # lazy: not loaded yet
)


def _loaded_and_output(code: str, *, cwd: Path | None = None) -> tuple[set[str], str]:
    """The modules loaded after running ``code`` in a fresh interpreter, and its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\n{_REPORT}"], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stderr.strip().splitlines()[-1])), result.stdout


def _loaded(code: str, *, cwd: Path | None = None) -> set[str]:
    return _loaded_and_output(code, cwd=cwd)[0]


def _cli_loaded_and_output(args: list[str], *, cwd: Path) -> tuple[set[str], str]:
    """Run the ``ocimodel`` command in-process (as the console script does) and report."""
    code = (
        "import sys\nfrom ocimodel.cli.app import main\n"
        f"sys.argv = ['ocimodel', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
    )
    return _loaded_and_output(code, cwd=cwd)


def _cli_loaded(args: list[str], *, cwd: Path) -> set[str]:
    return _cli_loaded_and_output(args, cwd=cwd)[0]


def _any_of(loaded: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_the_library_loads_no_cli_libraries() -> None:
    loaded = _loaded("import ocimodel, ocimodel.api.transfer, ocimodel.api.client\nocimodel.push, ocimodel.Client")
    assert _any_of(loaded, HTTPX_CLI + CLI_ONLY) == []
    assert _any_of(loaded, PUSH_OR_TRUST_ONLY) == []
    assert "httpx" in loaded  # the transport itself is there


def test_httpx_command_line_module_is_still_importable_after() -> None:
    loaded = _loaded("import ocimodel.api.transfer, httpx._main\nassert callable(httpx._main.main)")
    assert "httpx._main" in loaded


def test_httpx_command_line_still_runs_after() -> None:
    # Importing ocimodel must leave httpx as it would be without it, its command included.
    code = "import ocimodel.api.transfer, httpx, sys\nsys.argv = ['httpx', '--help']\nhttpx.main()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--method" in result.stdout


# The root of the CLI and what every command shares; a command adds its own leaf.
CLI_CORE = {"ocimodel.cli", "ocimodel.cli.app", "ocimodel.cli.common", "ocimodel.cli.lazy", "ocimodel.cli.helptext"}


def _leaves(loaded: set[str]) -> set[str]:
    return {m for m in loaded if m.startswith("ocimodel.cli.")} | ({"ocimodel.cli"} & loaded)


def test_version_loads_neither_api_nor_transport(tmp_path: Path) -> None:
    loaded, out = _cli_loaded_and_output(["--version"], cwd=tmp_path)
    assert out.startswith("ocimodel ") and out.count("\n") == 1
    assert _any_of(loaded, ("ocimodel.api", "httpx", "pydantic", "rich")) == []
    assert _leaves(loaded) <= CLI_CORE  # no command's module: --version answers before one is looked up


def test_a_command_help_loads_neither_api_nor_transport(tmp_path: Path) -> None:
    # the options are parsed (typer's checks without pydantic), the transport waits for a use
    loaded, out = _cli_loaded_and_output(["push", "--help"], cwd=tmp_path)
    assert "--concurrency" in out
    assert _any_of(loaded, ("ocimodel.api", "ocimodel.transport", "httpx", "pydantic")) == []


def test_a_command_loads_only_its_own_leaf(tmp_path: Path) -> None:
    assert _leaves(_cli_loaded(["push", "--help"], cwd=tmp_path)) <= CLI_CORE | {"ocimodel.cli.transfer"}
    assert _leaves(_cli_loaded(["key", "--help"], cwd=tmp_path)) <= CLI_CORE | {"ocimodel.cli.trust", "ocimodel.cli.signing"}
    # the root's help lists every command: all of them are there
    assert {"ocimodel.cli.admission", "ocimodel.cli.trust", "ocimodel.cli.evaluation_checks"} <= _cli_loaded(["--help"], cwd=tmp_path)


def test_pull_loads_neither_model_card_nor_trust_code(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"\0" * 1000)
    (tmp_path / "model" / "config.json").write_text("{}")
    subprocess.run(
        [str(Path(sys.executable).with_name("ocimodel")), "push", "model", "oci:store:m:1", "--quiet"],
        cwd=tmp_path, check=True, capture_output=True, timeout=60,
    )
    loaded = _cli_loaded(["pull", "oci:store:m:1", "out", "--json"], cwd=tmp_path)
    assert (tmp_path / "out" / "weights.bin").read_bytes() == b"\0" * 1000
    assert _any_of(loaded, PUSH_OR_TRUST_ONLY + HTTPX_CLI) == []
    assert _any_of(loaded, ("rich",)) == []  # --json prints no table, no bars


def test_push_with_json_loads_no_rich(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"\1" * 1000)
    loaded = _cli_loaded(["push", "model", "oci:store:m:1", "--json"], cwd=tmp_path)
    assert (tmp_path / "store" / "index.json").is_file()
    assert _any_of(loaded, ("rich", "pygments", "ocimodel.trust", "ocimodel.signing", "sigstore")) == []


# What a re-push of an unchanged model never needs: the Kitfile and unpacking code (tar),
# card comparison, lineage (the card names no base model), drawing (--json), signing and
# trust, scanning, YAML (no card file).
REPUSH_NEVER = (
    "ocimodel.packaging.kitfile", "ocimodel.packaging.unpack", "ocimodel.packaging.archive", "tarfile",
    "ocimodel.metadata.diff", "ocimodel.api.lineage", "ocimodel.api.scan", "ocimodel.scanning", "ocimodel.trust", "ocimodel.signing",
    "sigstore", "cryptography", "yaml", "rich", "pygments", "httpx._main",
)


def test_a_repush_of_an_unchanged_model_loads_only_what_it_uses(tmp_path: Path, registry) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\2" * 1000)
    (model / "config.json").write_text("{}")
    past = time.time() - 3600  # settled files: the digest cache trusts them, the manifest goes first
    for path in model.iterdir():
        os.utime(path, (past, past))
    reference = f"{registry.host}/startup/repush:1.0"
    command = [str(Path(sys.executable).with_name("ocimodel")), "push", "model", reference, "--json"]
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, timeout=60)
    loaded, out = _cli_loaded_and_output(["push", "model", reference, "--json"], cwd=tmp_path)
    assert json.loads(out)["uploaded"] == []  # the re-push, not a first push
    assert _any_of(loaded, REPUSH_NEVER) == []
    assert _leaves(loaded) <= CLI_CORE | {"ocimodel.cli.transfer"}


def test_the_console_script_and_python_m_start_at_the_process_entry() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[1]
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ocimodel"] == "ocimodel.cli.entry:main"
    assert "from ocimodel.cli.entry import main" in (root / "src" / "ocimodel" / "__main__.py").read_text()


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter, which must exit 0."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd, check=False)
    assert result.returncode == 0, result.stderr
    return result


def test_the_process_entry_stops_the_collector_only_as_the_process_ends(tmp_path: Path) -> None:
    # A handler registered before the command runs after the entry's own (last in, first
    # out): it sees the collector as the interpreter's final passes will.
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('at exit:', gc.isenabled(), gc.get_freeze_count() > 0, file=sys.stderr))\n"
        "sys.argv = ['ocimodel', 'version-of-nothing']\n"
        "from ocimodel.cli.entry import main\n"
        "import ocimodel.cli.app as app\n"
        "seen = []\n"
        "app._main = lambda: seen.append((gc.isenabled(), gc.get_threshold()[0], gc.get_freeze_count()))\n"
        "try:\n    main()\nfinally:\n    print('during:', *seen[0])\n"
    )
    result = _python(code, tmp_path)
    enabled, threshold, frozen = result.stdout.split()[1:]
    assert (enabled, frozen) == ("True", "0") and int(threshold) > 700  # collecting, less often, nothing frozen
    assert "at exit: False True" in result.stderr


def test_the_command_run_in_process_leaves_the_collector_alone(tmp_path: Path) -> None:
    # tests and embedding apps call ocimodel.cli.app.main in their own process
    code = (
        "import gc, sys\nbefore = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())\n"
        "from ocimodel.cli.app import main\nsys.argv = ['ocimodel', '--version']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code\n"
        "assert (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()) == before, before\n"
    )
    result = _python(code, tmp_path)
    assert result.stdout.startswith("ocimodel ")


def test_the_webhook_server_puts_young_collections_back_to_cpython_s_pace(tmp_path: Path) -> None:
    # A server runs for weeks: the entry's spaced-out collections would let per-request
    # cycles pile up; what start-up made is frozen once instead.
    code = (
        "import gc\ngc.set_threshold(20000, 10, 10)\n"
        "from ocimodel.admission import server\nserver._settle_collector()\n"
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 0, gc.isenabled())\n"
    )
    result = _python(code, tmp_path)
    assert result.stdout.split() == ["700", "True", "True"]
