"""Shared fixtures: a real local registry, unique repository names, a small model."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import struct
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test modules import helpers as `tests.support.*`: make that work for a bare `pytest`
# too (`python -m pytest` from the repo root already has the root on sys.path).
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.registry import LocalRegistry  # noqa: E402

# Tests that feed bad answers want the first failure, not five tries with backoff: retries
# are off unless a test asks for them (tests of retrying set their own policy). Set here,
# before any test starts, so subprocesses running the CLI inherit it too.
# A test run started in the background by a shell without job control (`cmd &` in a
# script, nohup) inherits SIGINT ignored, and so does every process it starts: the tests
# of Ctrl-C (a pull's commit, an interrupted push, the interrupt watchdog) would then
# test nothing. Python's own handler, as an interactive run has it; SIGTERM's default too.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
os.environ.setdefault("OCIMODEL_RETRIES", "1")
# Writers of a fallback referrers index (targets/referrers.py) and of a version tag on a
# registry (versiontags.py) wait 2 x their settle time after each write, so that of
# writers racing for it none is lost (referrers) or only one wins (version tags). Only the
# tests of racing writers have racers; they set their own settle times
# (tests/test_version_races.py, the concurrent tests of tests/test_referrers.py). For every
# other test the wait protects nothing and cost a second per version tag written (0.5 s
# here before; most pushes in the tests write a version tag such as `:1`): 0 turns the
# wait, the check's age limit and the write's time limit off, as the settings document
# (docs/version-tags.md). The check, the write and the read-back still run. A test that
# races writers must set the setting itself, as those do.
os.environ.setdefault("OCIMODEL_REFERRERS_SETTLE", "0")
os.environ.setdefault("OCIMODEL_TAG_SETTLE", "0")
# Nobody's proxy settings either: ocimodel honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY
# (docs/proxies.md), and a developer's would route the tests' requests, or a CLI run in a
# subprocess, through a proxy. Loopback is never proxied; names like registry.example
# would be. The tests of proxies set their own (tests/test_proxies.py, with monkeypatch).
for _name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
    os.environ.pop(_name, None)
# Nobody's own `docker login` may change what the tests see: an empty docker config
# directory, unless a test points DOCKER_CONFIG elsewhere.
os.environ["DOCKER_CONFIG"] = tempfile.mkdtemp(prefix="ocimodel-test-docker-config-")
# The digest cache of the tests is their own, not the developer's (and each test gets an
# empty one: see the fixture below), so no test depends on which ran before it.
os.environ["OCIMODEL_CACHE_DIR"] = tempfile.mkdtemp(prefix="ocimodel-test-cache-")


@pytest.fixture(autouse=True)
def _signal_handlers_put_back() -> Iterator[None]:
    """A pull run in-process through the CLI's main() leaves SIGINT and SIGTERM ignored
    (the process is about to exit; the next main() puts them back). Under pytest the
    process goes on: a later test in the same process, or a subprocess it starts, which
    inherits the ignored signals, would find Ctrl-C dead. Which tests share a process
    depends on the run (under xdist, on the worker), so each test ends as it began."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    unpack = sys.modules.get("ocimodel.packaging.unpack")
    if unpack is not None:
        unpack.INTERRUPTS.reset()
    for signum, handler in saved.items():
        if handler is not None and signal.getsignal(signum) is not handler:
            signal.signal(signum, handler)


@pytest.fixture(autouse=True)
def _fresh_digest_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIMODEL_CACHE_DIR", str(tmp_path_factory.mktemp("digest-cache")))
    monkeypatch.delenv("OCIMODEL_BLOB_CACHE", raising=False)  # pulls download unless a test asks


# -- the registry marker: `pytest -m "not registry"` runs what needs no docker-registry -----
# A test that uses the shared `registry` fixture, or any fixture named `*_registry` (the
# auth, token and TLS registries of single modules), is marked `registry` here, from its
# fixture closure; a test that starts a LocalRegistry in its own body carries the marker
# itself. The guard below makes a missing marker an error, so the fast subset can never
# start a registry by accident (and `make test`, which runs everything, reports it too).


def _needs_registry(fixturenames: list[str]) -> bool:
    return any(name == "registry" or name.endswith("_registry") for name in fixturenames)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _needs_registry(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.registry)
    _select_serial(config, items)


# -- the serial marker: what `make test` runs alone, after the parallel pass --------------
# `make test` runs the suite in two passes: everything not marked `serial` on several
# pytest-xdist workers, then the `serial` tests in one process with nothing else running.
# `serial` marks tests whose point is timing between processes or threads (racing
# writers, a signal landing inside a commit, a deadline or a grace period waited out):
# their assertions hold on a loaded machine, but "some round must land inside the commit"
# or "the grace period ends it" are checked more surely without other tests competing for
# the two cores. `--serial=skip|only` picks a pass; without it (a plain `pytest`) both
# run, in one process, as before.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--serial",
        choices=("run", "skip", "only"),
        default="run",
        help="tests marked serial: run them with the rest (default), skip them (the parallel "
        "pass of `make test`), or run only them (its serial pass)",
    )


def _select_serial(config: pytest.Config, items: list[pytest.Item]) -> None:
    choice = config.getoption("serial")
    if choice == "run":
        return
    keep, drop = [], []
    for item in items:
        serial = item.get_closest_marker("serial") is not None
        (keep if serial == (choice == "only") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


_running: list[pytest.Item] = []  # the test whose setup, call or teardown runs now
_start_registry = LocalRegistry.start


def _guarded_start(self: LocalRegistry) -> LocalRegistry:
    item = _running[-1] if _running else None
    if item is not None and item.get_closest_marker("registry") is None:
        raise RuntimeError(
            f"{item.nodeid} starts docker-registry but is not marked: add "
            "@pytest.mark.registry (or take a fixture named `registry`/`*_registry`)"
        )
    return _start_registry(self)


LocalRegistry.start = _guarded_start  # type: ignore[method-assign]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    _running.append(item)
    try:
        yield
    finally:
        _running.pop()


# The `slow` marker is set by hand (tests that run the CLI or another program in a
# subprocess, or wait out a deadline). A run that leaves slow tests out (`make test-fast`)
# names the unmarked ones that took long, so the fast subset stays fast; it does not fail
# them, as timings on a loaded machine vary.
_SLOW_SECONDS = 1.0
_unmarked_slow: list[tuple[float, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.duration > _SLOW_SECONDS and not {"registry", "slow"} & set(report.keywords):
        _unmarked_slow.append((report.duration, f"{report.nodeid} ({report.when})"))


@pytest.fixture(scope="session")
def registry() -> Iterator[LocalRegistry]:
    """A started plain (no auth, HTTP) distribution registry shared by the session."""
    with LocalRegistry() as reg:
        yield reg


_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """A repository name unique to this test: ``test/<test name>-<6 hex>``.

    Each path component matches ``[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*``.
    """
    stem = _NON_ALNUM.sub("-", request.node.name.lower()).strip("-")[:48].strip("-")
    return f"test/{stem or 't'}-{secrets.token_hex(3)}"


def _tiny_safetensors() -> bytes:
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}},
        separators=(",", ":"),
    ).encode()
    header += b" " * (-len(header) % 8)
    data = struct.pack("<16f", *(i * 0.25 - 2.0 for i in range(16)))
    return struct.pack("<Q", len(header)) + header + data


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A small multi-file model directory with fixed contents and permission bits."""
    root = tmp_path / "model"
    files: dict[str, tuple[bytes, int]] = {
        "model.safetensors": (_tiny_safetensors(), 0o644),
        "config.json": (
            json.dumps(
                {"model_type": "tiny", "hidden_size": 4, "num_layers": 1}, indent=2
            ).encode() + b"\n",
            0o644,
        ),
        "tokenizer/tokenizer.json": (
            json.dumps(
                {"version": "1.0", "model": {"type": "WordLevel",
                                             "vocab": {"[UNK]": 0, "hello": 1, "world": 2},
                                             "unk_token": "[UNK]"}},
                indent=2,
            ).encode() + b"\n",
            0o644,
        ),
        "README.md": (b"# Tiny test model\n\nFour by four float32 weights.\n", 0o644),
        "src/train.py": (
            b"#!/usr/bin/env python3\n\"\"\"Train the tiny model.\"\"\"\n\n"
            b"if __name__ == \"__main__\":\n    print(\"training\")\n",
            0o755,
        ),
        "data/eval.csv": (b"input,expected\nhello,1\nworld,2\n", 0o644),
        "empty.txt": (b"", 0o644),
    }
    for rel, (content, mode) in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        p.chmod(mode)  # explicit: independent of the umask
    return root


# -- CI: a skipped test is a failed run ---------------------------------------------------------
# The oracles (skopeo, the model_signing package and CLI, zstandard, docker-registry) are
# installed by `make test`, and CI runs as root: where CI is set, nothing has a reason to
# skip. A skip there means a check did not run -- e.g. an oracle went missing -- so the run
# fails instead of going green without it. Outside CI a skip stays a skip.


def _skipped_reports(config: pytest.Config) -> list:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return list(reporter.stats.get("skipped", [])) if reporter is not None else []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") and exitstatus == pytest.ExitCode.OK and _skipped_reports(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if "slow" in (config.option.markexpr or "") and _unmarked_slow:
        title = f"not marked slow, but took over {_SLOW_SECONDS:.0f} s"
        terminalreporter.write_sep("=", title, yellow=True)
        for duration, what in sorted(_unmarked_slow, reverse=True):
            terminalreporter.write_line(f"{duration:6.2f} s  {what}: mark it @pytest.mark.slow")
    skipped = _skipped_reports(config)
    if os.environ.get("CI") and skipped:
        terminalreporter.write_sep("=", "CI is set: skipped tests fail the run", red=True, bold=True)
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            terminalreporter.write_line(f"SKIPPED (not allowed in CI) {report.nodeid}: {reason}")
