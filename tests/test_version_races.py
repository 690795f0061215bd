"""Versions are immutable even when two writers race for the same version tag.

Two `ocimodel` processes, started at the same instant, push (tag, copy, import) two
different models to one version tag of a real registry or of an OCI layout. Every round
must end with exactly one winner: it exits 0 and prints its digest, the tag holds that
digest, and the loser exits 1 with a message naming the model that holds the version and
never claims success. Aliases keep moving (last writer wins, both succeed).

The racers are two real processes running the CLI's entry point (`ocimodel.cli.app.main`):
each loads ocimodel once, then waits for a command line on stdin; the test sends the
line to both at once, so they start each round within microseconds of each other (a plain
pair of Popen calls spends most of a round importing, and lets one racer finish before
the other starts)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocimodel import api
from ocimodel.errors import VersionExists
from ocimodel.oci.reference import parse_reference
from ocimodel.targets.open import open_target

# timing between processes is the point: `make test` runs these alone (tests/conftest.py)
pytestmark = pytest.mark.serial

SETTLE = "0.5"
ROUNDS = 20
FEW_ROUNDS = 5
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

# A racer: the CLI's entry point, run once per command line read from stdin, its exit
# status and output sent back as one JSON line. Everything a command imports is loaded
# before it says it is ready, so both racers do the same work from the same instant.
_RACER = r"""
import io, json, sys
import ocimodel.api.functions, ocimodel.api.transfer, ocimodel.api.referrers, ocimodel.cli.app, ocimodel.cli.referrers
import ocimodel.api.lineage, ocimodel.metadata.encoding, ocimodel.metadata.sources
import ocimodel.targets.archive
from ocimodel.cli.app import main
print("READY", flush=True)
for line in sys.stdin:
    out, err = io.StringIO(), io.StringIO()
    sys.stdout, sys.stderr = out, err
    try:
        sys.argv = ["ocimodel", *json.loads(line)]
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:
        code = 99
        err.write(repr(exc))
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    print(json.dumps({"code": code, "out": out.getvalue(), "err": err.getvalue()}), flush=True)
"""


@dataclass
class Run:
    argv: list[str]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"ocimodel {' '.join(self.argv)} -> {self.code}\nstdout: {self.out}\nstderr: {self.err}"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OCIMODEL_TAG_SETTLE"] = SETTLE
    # The racers retry as a user's CLI does (conftest turns retries off for the tests):
    # distribution answers 500 now and then to a GET of a tag that the other racer is
    # rewriting at that moment, and with one try the loser failed on that answer instead
    # of reading the winner's model (seen once in 20 rounds of racing tags). Tag writes
    # are sent once whatever the retry setting (versiontags.py).
    env.pop("OCIMODEL_RETRIES", None)
    env["COLUMNS"] = "200"
    return env


class Racers:
    """Two CLI processes that run one command line each, started at the same instant."""

    def __init__(self) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", _RACER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, env=_env(),
            )
            for _ in range(2)
        ]
        for proc in self.procs:
            assert proc.stdout.readline() == "READY\n", proc.stderr.read()

    def race(self, *commands: list[str]) -> list[Run]:
        lines = [json.dumps(argv) + "\n" for argv in commands]
        for proc, line in zip(self.procs, lines):
            proc.stdin.write(line)
        for proc in self.procs:
            proc.stdin.flush()  # both lines go out back to back: the racers wake together
        runs = []
        for proc, argv in zip(self.procs, commands):
            answer = proc.stdout.readline()
            assert answer, f"a racer died: {proc.stderr.read()}"
            result = json.loads(answer)
            runs.append(Run(list(argv), result["code"], result["out"], result["err"]))
        return runs

    def close(self) -> None:
        for proc in self.procs:
            proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def racers() -> Iterator[Racers]:
    pair = Racers()
    yield pair
    pair.close()


def cli(*argv: object) -> Run:
    args = [str(a) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "ocimodel", *args], check=False, capture_output=True, text=True, env=_env(), timeout=120)
    return Run(args, proc.returncode, proc.stdout, proc.stderr)


def held(reference: str) -> str:
    """The digest a tag holds now, read afresh."""
    with open_target(parse_reference(reference)) as target:
        return target.resolve(parse_reference(reference).tag).digest


def one_winner(runs: list[Run], digests: list[str], reference: str, success: str) -> str:
    """Exactly one run won: it exited 0 and printed its digest, the tag holds it, and every
    other run exited 1 naming that digest and printing no success line."""
    report = "\n".join(map(str, runs))
    winners = [i for i, run in enumerate(runs) if run.code == 0]
    assert len(winners) == 1, f"expected exactly one winner:\n{report}"
    winner = winners[0]
    assert digests[winner] in runs[winner].out, report
    assert held(reference) == digests[winner], f"the tag does not hold the winner's model:\n{report}"
    for i, run in enumerate(runs):
        if i == winner:
            continue
        assert run.code == 1, report
        assert success not in run.out, report
        assert digests[winner] in run.err, f"the loser does not name the model holding the version:\n{report}"
        assert "immutable" in run.err, report
        assert "Traceback" not in run.err, report
    return digests[winner]


def _model(root: Path, text: str) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(f'{{"model_type": "race", "name": "{text}"}}\n')
    (root / "weights.bin").write_bytes(text.encode() * 1000)
    return root


@pytest.fixture
def models(tmp_path: Path) -> list[Path]:
    return [_model(tmp_path / "a", "model a"), _model(tmp_path / "b", "model b")]


@pytest.fixture(params=[pytest.param("registry", marks=pytest.mark.registry), "layout"])
def repository(request: pytest.FixtureRequest, tmp_path: Path, repo_name: str) -> str:
    """Where the models race: a repository of the test registry, or an OCI layout."""
    if request.param == "layout":
        return f"oci:{tmp_path / 'store'}"
    registry = request.getfixturevalue("registry")
    return f"{registry.host}/{repo_name}"


def _push(model: Path, reference: str) -> str:
    run = cli("push", model, reference, "--no-detect")
    assert run.code == 0, str(run)
    return DIGEST.search(run.out.split("Digest:", 1)[1]).group(0)


@pytest.mark.slow
def test_racing_pushes_of_a_version_have_exactly_one_winner(models: list[Path], repository: str, racers: Racers) -> None:
    # Both models are pushed once first (to an alias), so every round is the race itself:
    # no upload, just the check and the tag write, where the window is narrowest.
    digests = [_push(models[0], f"{repository}:a"), _push(models[1], f"{repository}:b")]
    assert digests[0] != digests[1]
    winners = []
    for n in range(ROUNDS):
        reference = f"{repository}:1.{n}"
        runs = racers.race(*[["push", str(model), reference, "--no-detect"] for model in models])
        winners.append(one_winner(runs, digests, reference, "Pushed"))
    # The tag still holds the winner once every writer is long gone.
    assert [held(f"{repository}:1.{n}") for n in range(ROUNDS)] == winners


@pytest.mark.slow
def test_racing_tags_of_a_version_have_exactly_one_winner(models: list[Path], repository: str, racers: Racers) -> None:
    digests = [_push(models[0], f"{repository}:a"), _push(models[1], f"{repository}:b")]
    for n in range(FEW_ROUNDS):
        runs = racers.race(*[["tag", f"{repository}:{alias}", f"2.{n}"] for alias in ("a", "b")])
        one_winner(runs, digests, f"{repository}:2.{n}", "Tagged")


def test_racing_copies_onto_a_version_have_exactly_one_winner(
    models: list[Path], repository: str, registry, repo_name: str, racers: Racers
) -> None:
    # The sources live in a registry repository; the destination is the one that races.
    source = f"{registry.host}/{repo_name}-src"
    digests = [_push(models[0], f"{source}:a"), _push(models[1], f"{source}:b")]
    for n in range(FEW_ROUNDS):
        reference = f"{repository}:3.{n}"
        runs = racers.race(*[["copy", f"{source}:{alias}", reference] for alias in ("a", "b")])
        one_winner(runs, digests, reference, "Copied")


@pytest.mark.slow
def test_racing_imports_onto_a_version_have_exactly_one_winner(
    models: list[Path], repository: str, tmp_path: Path, racers: Racers
) -> None:
    archives, digests = [], []
    for model in models:
        store = f"oci:{tmp_path / ('src-' + model.name)}"
        digests.append(_push(model, f"{store}:1.0"))
        archive = tmp_path / f"{model.name}.tar"
        run = cli("export", f"{store}:1.0", archive)
        assert run.code == 0, str(run)
        archives.append(archive)
    for n in range(3):
        reference = f"{repository}:4.{n}"
        runs = racers.race(*[["import", str(archive), reference] for archive in archives])
        one_winner(runs, digests, reference, "Imported")


@pytest.mark.slow
def test_racing_pushes_to_an_alias_both_succeed(models: list[Path], repository: str, racers: Racers) -> None:
    """Aliases move by design: both racers succeed and the alias holds one of the two."""
    runs = racers.race(*[["push", str(model), f"{repository}:latest", "--no-detect"] for model in models])
    assert [run.code for run in runs] == [0, 0], "\n".join(map(str, runs))
    digests = [DIGEST.search(run.out.split("Digest:", 1)[1]).group(0) for run in runs]
    assert held(f"{repository}:latest") in digests


@pytest.mark.slow
def test_force_still_replaces_a_version(models: list[Path], repository: str) -> None:
    first = _push(models[0], f"{repository}:5.0")
    refused = cli("push", models[1], f"{repository}:5.0", "--no-detect")
    assert refused.code == 1 and first in refused.err, str(refused)
    forced = cli("push", models[1], f"{repository}:5.0", "--no-detect", "--force")
    assert forced.code == 0, str(forced)
    assert held(f"{repository}:5.0") == DIGEST.search(forced.out.split("Digest:", 1)[1]).group(0) != first


def test_a_late_write_from_a_racer_makes_the_first_writer_lose(models: list[Path], registry, repo_name: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The interleaving the registry protocol exists for: racer B checks the tag before A
    writes it, but B's write lands after A's (B is slow to send it, within the bounds
    every writer keeps). A must not report success on a tag B then moves: A waits long
    enough to see B's write, loses, and B wins. C, pushing A's model, looks while the tag
    holds it: C must not take that for success either."""
    monkeypatch.setenv("OCIMODEL_TAG_SETTLE", SETTLE)
    repository = f"{registry.host}/{repo_name}"
    digests = [_push(models[0], f"{repository}:a"), _push(models[1], f"{repository}:b")]
    b_ready = threading.Event()
    a_wrote = threading.Event()
    outcome: dict[str, object] = {}

    from ocimodel.transport.client import RegistryClient

    real_put = RegistryClient.put_manifest

    def put(self, repository_, reference, data, media_type, **kwargs):
        if threading.current_thread().name == "B" and reference == "6.0":
            b_ready.set()  # B has made every check it makes: A goes now
            a_wrote.wait(10)  # B's write goes out after A's has landed...
            time.sleep(float(SETTLE) * 0.8)  # ...late, but within the bound every writer keeps
        result = real_put(self, repository_, reference, data, media_type, **kwargs)
        if threading.current_thread().name == "A" and reference == "6.0":
            a_wrote.set()
        return result

    monkeypatch.setattr(RegistryClient, "put_manifest", put)

    def run(name: str, alias: str) -> None:
        if name == "A":
            b_ready.wait(10)  # A checks and writes only once B has checked the tag is free
        if name == "C":
            a_wrote.wait(10)  # C finds A's model (its own) in the tag, B's write still to come
        try:
            outcome[name] = api.tag(f"{repository}:{alias}", "6.0")
        except VersionExists as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=run, args=(n, a), name=n) for n, a in (("A", "a"), ("B", "b"), ("C", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert isinstance(outcome["A"], VersionExists), outcome
    assert digests[1] in str(outcome["A"])
    assert isinstance(outcome["C"], VersionExists), outcome
    assert digests[1] in str(outcome["C"])
    assert outcome["B"] == digests[1], outcome
    assert held(f"{repository}:6.0") == digests[1]


@pytest.mark.parametrize(
    ("store", "stale_read"),
    [("layout", 1), pytest.param("registry", 1, marks=pytest.mark.registry),
     pytest.param("registry", 2, marks=pytest.mark.registry)],
    ids=["layout-after-the-first-check", "registry-after-the-first-check", "registry-after-the-last-check"],
)
@pytest.mark.slow
def test_a_version_taken_between_a_check_and_the_write_is_not_overwritten(
    store: str, stale_read: int, models: list[Path], tmp_path: Path, repo_name: str,
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writer A reads the tag (free), then, before A goes on, writer B takes the version
    and reports success. A must not overwrite B: it fails naming B's model. The read B
    slips in after is A's first look at the tag (the early check before any upload) or, on
    a registry, its last look before the write, which a whole check-and-set of B's can
    outlast: A must notice its look is stale rather than write on it."""
    monkeypatch.setenv("OCIMODEL_TAG_SETTLE", SETTLE)
    if store == "layout":
        repository = f"oci:{tmp_path / 'store'}"
    else:
        repository = f"{request.getfixturevalue('registry').host}/{repo_name}"
    digests = [_push(models[0], f"{repository}:a"), _push(models[1], f"{repository}:b")]
    reads = [0]
    b_result: list[object] = []

    def b_takes_the_version() -> None:
        b_result.append(api.tag(f"{repository}:b", "7.0"))

    def after_reading(reference: str) -> None:
        if reference != "7.0" or b_result:
            return
        reads[0] += 1
        if reads[0] == stale_read:
            b_takes_the_version()

    if store == "layout":
        from ocimodel.targets.layout import OciLayout

        real_resolve = OciLayout.resolve

        def resolve(self, reference):
            try:
                return real_resolve(self, reference)
            finally:
                after_reading(reference)

        monkeypatch.setattr(OciLayout, "resolve", resolve)
    else:
        from ocimodel.transport.client import RegistryClient

        real_get = RegistryClient.get_manifest

        def get(self, repository_, reference):
            try:
                return real_get(self, repository_, reference)
            finally:
                after_reading(reference)

        monkeypatch.setattr(RegistryClient, "get_manifest", get)

    with pytest.raises(VersionExists) as raised:
        api.tag(f"{repository}:a", "7.0")
    assert b_result == [digests[1]], "B did not take the version"
    assert digests[1] in raised.value.message
    assert held(f"{repository}:7.0") == digests[1]


def test_a_version_tag_write_left_unanswered_fails_saying_the_outcome_is_unknown(
    models: list[Path], registry, repo_name: str,
) -> None:
    """The registry applies the tag PUT but its answer comes after the writer gave up
    (OCIMODEL_TAG_SETTLE): the push must not report success, nor a lost race, nor send
    the write again (a write that lands later than its writer assumed is how two writers
    both came to report success); it fails with exit 1 saying the outcome is unknown and
    how to look. The tag does hold the model: the write did land."""
    from tests.support.faultproxy import FaultProxy

    with FaultProxy(registry.host) as proxy:
        repository = f"{proxy.host}/{repo_name}"
        # The answer's head is held back well past the settle time; the PUT itself has
        # reached the registry.
        proxy.stall(6 * float(SETTLE), method="PUT", path=r"/manifests/9\.0$", after=None)
        started = time.monotonic()
        run = cli("push", models[0], f"{repository}:9.0", "--no-detect")
        elapsed = time.monotonic() - started
        tag_puts = [seen for seen in proxy.requests if seen.method == "PUT" and seen.path.endswith("/manifests/9.0")]
    assert run.code == 1, str(run)
    assert "may have landed" in run.err and f"{repo_name}:9.0" in run.err, str(run)
    assert "ocimodel versions" in run.err and "OCIMODEL_TAG_SETTLE" in run.err, str(run)
    assert "Digest:" not in run.out and "Traceback" not in run.err, str(run)
    assert len(tag_puts) == 1, tag_puts  # sent once, never again
    assert elapsed < 60, elapsed  # generous: the push itself takes about a second
    # The same model pushed again (to an alias) has the same digest: the tag holds it.
    assert held(f"{registry.host}/{repo_name}:9.0") == _push(models[0], f"{registry.host}/{repo_name}:same")


@pytest.mark.registry
def test_a_slow_token_service_does_not_eat_the_tag_write_s_time(
    models: list[Path], repo_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a registry with token auth the tag PUT needs a push token the writer may not
    have yet. Fetching it is not part of the write's short deadline (OCIMODEL_TAG_SETTLE):
    a token service slower than that must not turn every version tag into "outcome
    unknown"."""
    from tests.support.registry import LocalRegistry
    from tests.support.tokenserver import TokenServer, default_policy

    monkeypatch.setenv("OCIMODEL_TAG_SETTLE", SETTLE)
    slow = threading.Event()

    def policy(user, type_, name):
        if slow.is_set():
            time.sleep(3 * float(SETTLE))  # every token answer takes longer than the write may
        return default_policy(user, type_, name)

    alice = ("alice", "alice-pw-tags")
    with TokenServer({alice[0]: alice[1]}, policy=policy) as tokens, \
            LocalRegistry(token_auth=tokens.registry_auth()) as reg:
        repository = f"{reg.host}/{repo_name}"
        pushed = api.push(models[0], f"{repository}:a", credentials=alice)
        slow.set()
        assert api.tag(f"{repository}:a", "1.0", credentials=alice) == pushed.digest
