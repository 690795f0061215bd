"""The ``ocimodel`` command as a user runs it: a subprocess (``python -m ocimodel``) against
the real registry and OCI layout directories. Checks the output contract (--json is one
JSON object and nothing else, -q is the digest alone, human output shows the full digest),
exit codes (0, 1 failure with error + hint, 2 usage error) and that push options land in
the manifest annotations and the ModelPack config."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import ocimodel
from tests.support.cli_env import user_env
from tests.support.files import tree_digest

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
COMMANDS = ["push", "pull", "inspect", "tag", "ls", "catalog", "copy", "login", "logout"]

PUSH_KEYS = {"reference", "digest", "tag", "files", "uploaded", "bytes_uploaded", "mounted", "bytes_mounted", "bytes_skipped", "retries", "lineage"}
PULL_KEYS = {"reference", "digest", "destination", "files", "bytes_downloaded", "files_unchanged", "files_not_selected", "files_from_cache", "retries", "files_replaced", "index_digest", "variant"}
INSPECT_KEYS = {
    "reference",
    "digest",
    "media_type",
    "artifact_type",
    "annotations",
    "files",
    "manifest",
    "config",
}
TAG_KEYS = {"reference", "tag", "digest"}
LS_KEYS = {"repository", "tags"}
CATALOG_KEYS = {"registry", "repositories"}
COPY_KEYS = {"source", "destination", "digest", "blobs_copied", "blobs_skipped", "blobs_mounted", "bytes_copied", "retries", "referrers_copied", "referrers_ignored"}


@dataclass
class Run:
    args: list[str]
    code: int
    out: str
    err: str

    def __str__(self) -> str:  # shown by pytest when an assertion on a Run fails
        return f"ocimodel {' '.join(self.args)} -> {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = user_env()
    env["COLUMNS"] = "200"  # help text is wrapped to the terminal: keep example lines whole
    env.update(extra or {})
    return env


def ocimodel_cli(*args: object, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    argv = [str(a) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "ocimodel", *argv],
        check=False,
        capture_output=True,
        text=True,
        env=_env(env),
        cwd=cwd,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return Run(argv, proc.returncode, proc.stdout, proc.stderr)


def ok(*args: object, **kwargs) -> Run:
    run = ocimodel_cli(*args, **kwargs)
    assert run.code == 0, str(run)
    assert "Traceback" not in run.err, str(run)
    return run


def json_of(run: Run) -> dict:
    """stdout must be exactly one JSON object (json.loads refuses anything around it)."""
    document = json.loads(run.out)
    assert isinstance(document, dict), str(run)
    return document


def usage_error_problems(run: Run) -> list[str]:
    """Exit 2, one ``error: ...`` line (maybe a ``hint:``), nothing else, no traceback."""
    lines = [line for line in run.err.splitlines() if line.strip()]
    problems = []
    if run.code != 2:
        problems.append(f"exit code {run.code}, expected 2")
    if "Traceback" in run.err:
        problems.append("traceback on stderr")
    if len([line for line in lines if line.startswith("error: ")]) != 1 or not lines[0].startswith(
        "error: "
    ):
        problems.append("stderr does not start with exactly one `error: ...` line")
    if not all(line.startswith(("error: ", "hint: ")) for line in lines):
        problems.append("stderr has lines other than `error:` / `hint:`")
    if run.out:
        problems.append("output on stdout")
    return [f"{'; '.join(problems)}:\n{run}"] if problems else []


def failure_problems(run: Run) -> list[str]:
    """Exit 1 with ``error:`` and ``hint:`` lines on stderr and no traceback."""
    lines = [line for line in run.err.splitlines() if line.strip()]
    problems = []
    if run.code != 1:
        problems.append(f"exit code {run.code}, expected 1")
    if "Traceback" in run.err:
        problems.append("traceback on stderr")
    if not lines or not lines[0].startswith("error: "):
        problems.append("stderr does not start with `error: `")
    if not any(line.startswith("hint: ") for line in lines):
        problems.append("no `hint: ` line")
    if run.out:
        problems.append("output on stdout")
    return [f"{'; '.join(problems)}:\n{run}"] if problems else []


# One try: an unreachable registry fails at once (retries only make the test slow).
NO_RETRIES = {"OCIMODEL_RETRIES": "1"}


@pytest.fixture
def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- help and version ----------------------------------------------------------------------


@pytest.mark.slow
def test_help_of_app_and_every_command_teaches_by_example() -> None:
    argvs = [["--help"], ["-h"], *([command, "--help"] for command in COMMANDS)]
    with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
        runs = list(pool.map(lambda argv: ocimodel_cli(*argv), argvs))
    for run in runs:
        assert run.code == 0, str(run)
        assert run.err == "", str(run)
        examples = [line for line in run.out.splitlines() if line.strip().startswith("ocimodel ")]
        assert examples, f"no example line in the help:\n{run}"
    top = runs[0].out
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", top, re.MULTILINE), (
            f"{command} missing from the app help"
        )
    # each command's examples use that command
    for command, run in zip(COMMANDS, runs[2:]):
        assert any(
            line.strip().startswith(f"ocimodel {command} ") for line in run.out.splitlines()
        ), str(run)


def test_version() -> None:
    run = ok("--version")
    assert run.out.strip() == f"ocimodel {ocimodel.__version__}"


def test_no_arguments_shows_help() -> None:
    run = ocimodel_cli()
    assert "Traceback" not in run.out + run.err
    assert "push" in run.out + run.err


# -- one end-to-end session: every command with --json -------------------------------------


def test_json_output_of_every_command(registry, repo_name, model_dir, tmp_path) -> None:
    ref = f"{registry.host}/{repo_name}:1.0"

    push = json_of(ok("push", model_dir, ref, "--json"))
    assert set(push) == PUSH_KEYS
    assert DIGEST.fullmatch(push["digest"])
    assert push["tag"] == "1.0"
    assert push["reference"] == ref
    assert {f["path"] for f in push["files"]} == set(tree_digest(model_dir))
    # A blob this machine saw in another repository of the registry (an earlier test's) is mounted.
    moved = push["bytes_uploaded"] + push["bytes_skipped"] + push["bytes_mounted"]
    assert moved >= sum(f["size"] for f in push["files"])
    assert all(DIGEST.fullmatch(d) for d in push["uploaded"])
    digest = push["digest"]

    inspect = json_of(ok("inspect", ref, "--json"))
    assert INSPECT_KEYS <= set(inspect)
    assert inspect["digest"] == digest
    assert inspect["artifact_type"] == "application/vnd.cncf.model.manifest.v1+json"
    assert inspect["media_type"] == "application/vnd.oci.image.manifest.v1+json"
    assert inspect["manifest"]["artifactType"] == inspect["artifact_type"]
    assert set(inspect["config"]) == {"descriptor", "config", "modelfs"}
    assert {f["path"] for f in inspect["files"]} == set(tree_digest(model_dir))

    tagged = json_of(ok("tag", ref, "latest", "--json"))
    assert set(tagged) == TAG_KEYS
    assert tagged == {"reference": ref, "tag": "latest", "digest": digest}

    listed = json_of(ok("ls", f"{registry.host}/{repo_name}", "--json"))
    assert set(listed) == LS_KEYS
    assert listed["repository"] == f"{registry.host}/{repo_name}"
    assert sorted(listed["tags"]) == ["1.0", "latest"]

    catalog = json_of(ok("catalog", registry.host, "--json"))
    assert set(catalog) == CATALOG_KEYS
    assert catalog["registry"] == registry.host
    assert repo_name in catalog["repositories"]

    dest = tmp_path / "out"
    pulled = json_of(ok("pull", ref, dest, "--json"))
    assert set(pulled) == PULL_KEYS
    assert pulled["digest"] == digest
    assert pulled["destination"] == str(dest)
    assert pulled["files_unchanged"] == 0
    assert pulled["bytes_downloaded"] == sum(f["size"] for f in pulled["files"])
    assert tree_digest(dest) == tree_digest(model_dir)
    again = json_of(ok("pull", ref, dest, "--json"))
    assert again["bytes_downloaded"] == 0
    assert again["files_unchanged"] == len(again["files"])

    store = tmp_path / "store"
    copied = json_of(ok("copy", ref, f"oci:{store}:m-1.0", "--json"))
    assert set(copied) == COPY_KEYS
    assert copied["digest"] == digest
    assert copied["source"] == ref
    assert copied["destination"] == f"oci:{store}:m-1.0"
    assert copied["blobs_copied"] >= 1 and copied["blobs_skipped"] == 0
    assert copied["bytes_copied"] > 0
    recopied = json_of(ok("copy", ref, f"oci:{store}:m-1.0", "--json"))
    assert recopied["blobs_copied"] == 0 and recopied["bytes_copied"] == 0
    assert recopied["blobs_skipped"] == copied["blobs_copied"]

    layout_ls = json_of(ok("ls", f"oci:{store}", "--json"))
    assert layout_ls == {"repository": f"oci:{store}", "tags": ["m-1.0"]}
    layout_tag = json_of(ok("tag", f"oci:{store}:m-1.0", "stable", "--json"))
    assert layout_tag["digest"] == digest
    assert json_of(ok("inspect", f"oci:{store}:stable", "--json"))["digest"] == digest


# -- quiet and human output ----------------------------------------------------------------


def test_quiet_prints_only_the_digest(registry, repo_name, model_dir, tmp_path) -> None:
    ref = f"{registry.host}/{repo_name}:q"
    pushed = ok("push", model_dir, ref, "-q")
    assert DIGEST.fullmatch(pushed.out.rstrip("\n")), str(pushed)
    assert pushed.out.count("\n") == 1
    digest = pushed.out.strip()
    pulled = ok("pull", ref, tmp_path / "out", "--quiet")
    assert pulled.out == digest + "\n"
    copied = ok("copy", ref, f"oci:{tmp_path / 'store'}:q", "-q")
    assert copied.out == digest + "\n"
    for run in (pushed, pulled, copied):
        assert run.err == "", str(run)


@pytest.mark.slow
def test_human_output_shows_the_full_digest(model_dir, tmp_path) -> None:
    ref = f"oci:{tmp_path / 'store'}:h-1"
    push = ok("push", model_dir, ref, "--name", "tiny")
    digest = ocimodel.inspect(ref).digest
    assert digest in push.out, str(push)
    with pytest.raises(json.JSONDecodeError):
        json.loads(push.out)
    pull = ok("pull", ref, tmp_path / "out")
    assert digest in pull.out, str(pull)
    inspect = ok("inspect", ref)
    assert digest in inspect.out, str(inspect)
    assert "model.safetensors" in inspect.out
    assert "tiny" in inspect.out


# -- push options land in the manifest and the config --------------------------------------


@pytest.mark.slow
def test_push_options_reach_annotations_and_config(model_dir, tmp_path) -> None:
    ref = f"oci:{tmp_path / 'store'}:full"
    (model_dir / "train.log").write_text("noise\n")
    (model_dir / "data" / "debug.log").write_text("more noise\n")
    ok(
        "push",
        model_dir,
        ref,
        "--name",
        "tiny",
        "--version",
        "1.2.3",
        "--description",
        "A tiny model",
        "--license",
        "Apache-2.0",
        "--license",
        "MIT",
        "--author",
        "Ada",
        "--author",
        "Grace",
        "--source",
        "https://example.com/tiny.git",
        "--revision",
        "0123abc",
        "--created",
        "2024-05-06T07:08:09Z",
        "--annotation",
        "com.example.team=ml",
        "-a",
        "com.example.empty=",
        "--kind",
        "data/*.csv=weight",
        "--kind",
        "*.md=dataset",
        "--exclude",
        "*.log",
    )
    info = json_of(ok("inspect", ref, "--json"))
    annotations = info["manifest"]["annotations"]
    assert annotations == info["annotations"]
    assert annotations == {
        "org.opencontainers.image.title": "tiny",
        "org.opencontainers.image.version": "1.2.3",
        "org.opencontainers.image.description": "A tiny model",
        "org.opencontainers.image.licenses": "Apache-2.0 AND MIT",
        "org.opencontainers.image.authors": "Ada, Grace",
        "org.opencontainers.image.source": "https://example.com/tiny.git",
        "org.opencontainers.image.revision": "0123abc",
        "org.opencontainers.image.created": "2024-05-06T07:08:09Z",
        "com.example.team": "ml",
        "com.example.empty": "",
    }
    descriptor = info["config"]["descriptor"]
    assert descriptor["name"] == "tiny"
    assert descriptor["version"] == "1.2.3"
    assert descriptor["description"] == "A tiny model"
    assert descriptor["licenses"] == ["Apache-2.0", "MIT"]
    assert descriptor["authors"] == ["Ada", "Grace"]
    assert descriptor["sourceURL"] == "https://example.com/tiny.git"
    assert descriptor["revision"] == "0123abc"
    assert descriptor["createdAt"].replace("+00:00", "Z") == "2024-05-06T07:08:09Z"

    files = {f["path"]: f for f in info["files"]}
    assert "train.log" not in files and "data/debug.log" not in files
    assert set(files) == set(tree_digest(model_dir)) - {"train.log", "data/debug.log"}
    assert files["data/eval.csv"]["kind"] == "weight"
    assert files["README.md"]["kind"] == "dataset"
    layers = {
        layer["annotations"]["org.cncf.model.filepath"]: layer
        for layer in info["manifest"]["layers"]
    }
    assert layers["data/eval.csv"]["mediaType"] == "application/vnd.cncf.model.weight.v1.raw"
    assert (
        layers["data/eval.csv"]["annotations"]["org.cncf.model.file.mediatype.untested"] == "false"
    )
    assert layers["README.md"]["mediaType"] == "application/vnd.cncf.model.dataset.v1.raw"
    assert layers["config.json"]["annotations"]["org.cncf.model.file.mediatype.untested"] == "true"
    # diffIds follow the layers, excluded files included nowhere
    assert info["config"]["modelfs"]["diffIds"] == [
        layer["digest"] for layer in info["manifest"]["layers"]
    ]


@pytest.mark.slow
def test_push_is_reproducible_without_created(model_dir, tmp_path) -> None:
    first = ok("push", model_dir, f"oci:{tmp_path / 'a'}:x", "-q").out
    second = ok("push", model_dir, f"oci:{tmp_path / 'b'}:x", "-q").out
    assert first == second


# -- plain HTTP ---------------------------------------------------------------------------


def test_plain_http_flag_and_environment_are_accepted(registry, repo_name, model_dir) -> None:
    ref = f"{registry.host}/{repo_name}:p"
    digest = ok("push", model_dir, ref, "-q", env={"OCIMODEL_PLAIN_HTTP": "1"}).out.strip()
    assert json_of(ok("inspect", ref, "--json", "--plain-http"))["digest"] == digest
    assert json_of(ok("ls", f"{registry.host}/{repo_name}", "--json", "--plain-http"))["tags"] == [
        "p"
    ]
    assert (
        repo_name in json_of(ok("catalog", registry.host, "--json", "--plain-http"))["repositories"]
    )
    assert ok("tag", ref, "p2", "--plain-http", env={"OCIMODEL_PLAIN_HTTP": "1"}).code == 0


# -- usage errors: exit 2 -----------------------------------------------------------------


@pytest.mark.slow
def test_usage_errors_exit_2_with_one_error_line(model_dir, tmp_path) -> None:
    store = f"oci:{tmp_path / 'store'}:t"
    cases = [
        ("push", model_dir, "localhost:5000/UPPER/case:1"),  # bad reference
        ("pull", "reg.example.com/team/m::1", tmp_path / "out"),  # bad reference
        ("inspect", "reg.example.com/team/m@sha256:abc"),  # bad digest
        ("push", model_dir, store, "--kind", "*.md=weights"),  # bad --kind
        ("push", model_dir, store, "--kind", "no-equals-sign"),  # bad --kind
        ("push", model_dir, store, "--annotation", "novalue"),  # bad --annotation
        ("push", model_dir, store, "--annotation", "=value"),  # bad --annotation
        ("push", model_dir, store, "--created", "yesterday"),  # bad --created
    ]
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        runs = list(pool.map(lambda argv: ocimodel_cli(*argv), cases))
    problems = [p for run in runs for p in usage_error_problems(run)]
    assert not problems, "\n\n".join(problems)
    assert "weights" in runs[3].err
    assert "novalue" in runs[5].err
    assert "yesterday" in runs[7].err
    assert not (tmp_path / "store").exists(), "a usage error wrote to the target"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_unknown_option_is_a_usage_error(model_dir, tmp_path) -> None:
    """Errors found by the option parser itself follow the same contract as ours."""
    cases = [
        ("push", model_dir, f"oci:{tmp_path / 'store'}:t", "--no-such-option"),
        ("pull",),  # missing arguments
        ("push", model_dir, f"oci:{tmp_path / 'store'}:t", "-j", "0"),  # out of range
    ]
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        runs = list(pool.map(lambda argv: ocimodel_cli(*argv), cases))
    problems = [p for run in runs for p in usage_error_problems(run)]
    assert not problems, "\n\n".join(problems)
    assert "--no-such-option" in runs[0].err
    assert not (tmp_path / "store").exists()


# -- failures: exit 1 ---------------------------------------------------------------------


def test_failures_exit_1_with_error_and_hint(
    registry, repo_name, model_dir, tmp_path, closed_port
) -> None:
    ref = f"{registry.host}/{repo_name}:1.0"
    ok("push", model_dir, ref, "-q")
    layout = tmp_path / "layout"
    ok("push", model_dir, f"oci:{layout}:m", "-q")
    before = tree_digest(layout)
    cases = {
        "missing tag": ("pull", f"{registry.host}/{repo_name}:nope", tmp_path / "out1"),
        "missing layout tag": ("inspect", f"oci:{layout}:nope"),
        "missing directory": ("push", tmp_path / "no-such-dir", f"oci:{tmp_path / 'store'}:t"),
        "unreachable registry": ("pull", f"127.0.0.1:{closed_port}/team/m:1", tmp_path / "out2"),
        "unreachable catalog": ("catalog", f"127.0.0.1:{closed_port}"),
        "pull into a layout": ("pull", ref, layout),
    }
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        runs = dict(zip(cases, pool.map(lambda argv: ocimodel_cli(*argv, env=NO_RETRIES), cases.values())))
    problems = [f"[{what}] {p}" for what, run in runs.items() for p in failure_problems(run)]
    assert not problems, "\n\n".join(problems)
    assert "nope" in runs["missing tag"].err
    assert "no-such-dir" in runs["missing directory"].err
    assert str(closed_port) in runs["unreachable registry"].err
    assert "OCI layout" in runs["pull into a layout"].err
    assert tree_digest(layout) == before
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()
    assert not (tmp_path / "store").exists()


def test_debug_adds_a_traceback(registry, repo_name, tmp_path) -> None:
    plain = ocimodel_cli("pull", f"{registry.host}/{repo_name}:nope", tmp_path / "out")
    debug = ocimodel_cli("--debug", "pull", f"{registry.host}/{repo_name}:nope", tmp_path / "out")
    assert plain.code == debug.code == 1
    assert "Traceback" not in plain.err
    assert "Traceback" in debug.err, str(debug)
    assert "error: " in debug.err
    env_debug = ocimodel_cli(
        "pull", f"{registry.host}/{repo_name}:nope", tmp_path / "out", env={"OCIMODEL_DEBUG": "1"}
    )
    assert env_debug.code == 1 and "Traceback" in env_debug.err, str(env_debug)
