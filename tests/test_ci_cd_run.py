"""action.yml and the GitLab template, run against a real registry that wants a password.

There is no GitHub runner here: ``run_action`` does what the runner does with a composite
action's steps (evaluates ``if:`` and ``env:`` expressions, runs each script with
``bash -eo pipefail``, collects ``$GITHUB_OUTPUT``, stops at the first failing step) for the
expression forms action.yml uses, and fails on any other. The install step would
pip-install from the network: the release runs skip it (the test's own ocimodel stands in),
and it runs on its own with a stand-in Python that records what pip was asked for. The GitLab
job runs as the runner joins it: before_script then script in one bash, ``!reference``
resolved. Signing uses a key (keyless needs Fulcio and Rekor: network).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.cli_env import user_env
from tests.support.htpasswd import write_htpasswd
from tests.support.registry import LocalRegistry
from tests.support.secrets import assert_no_secret

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
USER = "ci-builder"
PASSWORD = "ci-pw-Qz8-secret"  # noqa: S105 - the test registry's
KEY_PASSWORD = "key-pw-Lr5-secret"  # noqa: S105


@pytest.fixture(scope="module")
def locked_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    htpasswd = write_htpasswd(tmp_path_factory.mktemp("htpasswd") / "htpasswd", USER, PASSWORD)
    with LocalRegistry(htpasswd=htpasswd) as reg:
        yield reg


@pytest.fixture(scope="module")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("keys") / "release"
    subprocess.run([str(BIN / "ocimodel"), "key", "generate", "--output-key-prefix", str(prefix)],
                   env=user_env(OCIMODEL_KEY_PASSWORD=KEY_PASSWORD), check=True, capture_output=True)
    return prefix.with_suffix(".key")


def _policy(directory: Path, key: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "release.pub").write_bytes(key.with_suffix(".pub").read_bytes())
    policy = directory / "policy.yaml"
    policy.write_text(
        "version: 1\n"
        "signers:\n  release: {key: release.pub}\n"
        "signature: {signers: [release], files: true}\n"
        "attestations:\n"
        "  - {type: 'https://slsa.dev/provenance/v1', signers: [release]}\n"
        "  - {type: 'https://cyclonedx.org/bom', signers: [release]}\n"
        "scan: {max_severity: low, signers: [release]}\n"
        "licenses: {allow: [Apache-2.0]}\n"
        "evaluations:\n  - {metric: accuracy, min: 0.9, max_age: 7d, signers: [release], environment: ci}\n"
        "aliases:\n"
        "  staging: {require: [signature, scan]}\n"
        "  production: {require: [signature, attestations, scan, licenses, evaluations], promoters: [release]}\n"
    )
    return policy


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = user_env(**extra)
    env.pop("DOCKER_CONFIG", None)
    env.update(PATH=f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}", HOME=str(home))
    return env


# -- a composite action, run as the runner runs it --------------------------------------------------

_TOKEN = re.compile(r"\s*(?:'((?:[^']|'')*)'|(&&|\|\||==|!=|!|\(|\)|,)|([A-Za-z_][\w.-]*))")


class _Expression:
    """GitHub's expression language, the part action.yml uses: strings, contexts, ==, !=,
    !, &&, || (which yield an operand, not a boolean) and format()."""

    def __init__(self, text: str, contexts: dict) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text.rstrip()):
            match = _TOKEN.match(text, pos)
            assert match, f"expression not understood: {text!r}"
            string, operator, name = match.groups()
            self.tokens.append(("str", string.replace("''", "'")) if string is not None
                               else ("op", operator) if operator else ("name", name))
            pos = match.end()
        self.contexts = contexts

    def value(self):
        result = self._or()
        assert not self.tokens, f"left over: {self.tokens}"
        return result

    def _take(self, op: str) -> bool:
        if self.tokens and self.tokens[0] == ("op", op):
            self.tokens.pop(0)
            return True
        return False

    def _or(self):
        left = self._and()
        while self._take("||"):
            right = self._and()
            left = left if left else right
        return left

    def _and(self):
        left = self._compare()
        while self._take("&&"):
            right = self._compare()
            left = right if left else left
        return left

    def _compare(self):
        left = self._unary()
        for op in ("==", "!="):
            if self._take(op):
                right = self._unary()
                equal = str(left).lower() == str(right).lower()  # GitHub compares strings ignoring case
                return equal if op == "==" else not equal
        return left

    def _unary(self):
        if self._take("!"):
            return not self._unary()
        kind, text = self.tokens.pop(0)
        if kind == "str":
            return text
        if kind == "op" and text == "(":
            inner = self._or()
            assert self._take(")")
            return inner
        if text == "format" and self._take("("):
            args = [self._or()]
            while self._take(","):
                args.append(self._or())
            assert self._take(")")
            return re.sub(r"\{(\d+)\}", lambda m: str(args[int(m.group(1)) + 1]), args[0])
        head, *rest = text.split(".")
        assert head in self.contexts, f"context {head} is not simulated"
        value = self.contexts[head]
        for part in rest:
            value = value.get(part, "") if isinstance(value, dict) else ""
        return value


def _evaluate(text: str, contexts: dict):
    return _Expression(text, contexts).value()


def _interpolate(text: str, contexts: dict) -> str:
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: str(_evaluate(m.group(1), contexts)), str(text))


def run_action(inputs: dict[str, str], tmp_path: Path, env: dict[str, str]) -> tuple[dict, dict, str]:
    """Run action.yml's steps (all but install) with these inputs; return (the action's
    outputs, each step's outcome, the whole log)."""
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    unknown = set(inputs) - set(action["inputs"])
    assert not unknown, unknown
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    version = subprocess.run([str(BIN / "ocimodel"), "--version"], capture_output=True, text=True, env=env, check=True)
    contexts = {
        "inputs": {name: inputs.get(name, spec.get("default", "")) for name, spec in action["inputs"].items()},
        "github": {"action_path": str(ROOT)},
        "runner": {"temp": str(runner_temp)},
        "env": dict(env),
        # The install step's outputs, as it would write them for key signing.
        "steps": {"install": {"outputs": {"version": version.stdout.split()[-1], "signing": "key"}, "outcome": "skipped"}},
    }
    log = []
    for step in action["runs"]["steps"]:
        if step["id"] == "install":
            continue
        if "if" in step and not _evaluate(step["if"], contexts):
            contexts["steps"][step["id"]] = {"outputs": {}, "outcome": "skipped"}
            continue
        output = runner_temp / f"output-{step['id']}"
        output.touch()
        step_env = {**env, "GITHUB_OUTPUT": str(output)}
        step_env.update({k: _interpolate(v, contexts) for k, v in step.get("env", {}).items()})
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                              capture_output=True, text=True, env=step_env, cwd=tmp_path, timeout=120)
        # The runner reads ::add-mask:: commands and never shows them; it then masks their
        # values everywhere. Here they are dropped and nothing is masked: a password that
        # shows anywhere else is found by the tests.
        shown = [line for line in (done.stdout + done.stderr).splitlines() if not line.startswith("::add-mask::")]
        log.append(f"== {step['id']} (exit {done.returncode})\n" + "\n".join(shown))
        outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
        contexts["steps"][step["id"]] = {"outputs": outputs, "outcome": "success" if done.returncode == 0 else "failure"}
        if done.returncode != 0:
            break
    results = {name: _interpolate(spec["value"], contexts) for name, spec in action["outputs"].items()}
    outcomes = {name: step["outcome"] for name, step in contexts["steps"].items()}
    return results, outcomes, "\n".join(log)


def _github_env(tmp_path: Path) -> dict[str, str]:
    # What a runner sets, so that `attest --provenance` describes a workflow run.
    return _environment(
        tmp_path, GITHUB_ACTIONS="true", GITHUB_REPOSITORY="org/models", GITHUB_SHA="a" * 40,
        GITHUB_WORKFLOW_REF="org/models/.github/workflows/release.yml@refs/heads/main",
        GITHUB_RUN_ID="4242", GITHUB_SERVER_URL="https://github.com", GITHUB_REF="refs/heads/main",
    )


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ocimodel"), *args], capture_output=True, text=True, env=env, timeout=120)


def test_the_action_pushes_signs_attests_verifies_and_promotes(locked_registry, repo_name, model_dir, release_key, tmp_path):
    env = _github_env(tmp_path)
    repository = f"{locked_registry.host}/{repo_name}"
    outputs, outcomes, log = run_action({
        "path": str(model_dir), "reference": f"{repository}:1.0", "name": "tiny", "model-version": "1.0",
        "license": "Apache-2.0", "metrics": "accuracy=0.93@imdb:test\n  f1=0.91  \n",
        "username": USER, "password": PASSWORD,
        "key": str(release_key), "key-password": KEY_PASSWORD,
        "evaluation": "accuracy=0.92\nf1=0.9", "evaluation-dataset": "https://data.example/holdout",
        "policy": str(_policy(tmp_path / "policy", release_key)), "promote-to": "staging, production",
    }, tmp_path, env)
    assert set(outcomes.values()) == {"success", "skipped"}, log
    assert outcomes["install"] == "skipped" and outcomes["login"] == "success", log

    digest = outputs["digest"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert outputs["reference"] == f"{repository}@{digest}" and outputs["repository"] == repository
    assert outputs["verdict"] == "allowed" and outputs["promoted"] == "staging production"
    assert outputs["signing"] == "key" and outputs["identity"] == ""
    assert json.loads(Path(outputs["sarif"]).read_text())["version"] == "2.1.0"
    assert json.loads(Path(outputs["sbom"]).read_text())["bomFormat"] == "CycloneDX"
    decision = json.loads(Path(outputs["verify-json"]).read_text())
    assert decision["digest"] == digest and decision["allowed"]
    passed = {r["rule"].split(" (")[0] for r in decision["reasons"] if r["passed"]}
    assert passed >= {"signature", "file-signature", "scan", "licenses", "evaluation accuracy",
                      "attestation https://slsa.dev/provenance/v1", "attestation https://cyclonedx.org/bom"}

    # Read back with the credentials the login step stored, in the runner's temp directory
    # (gone with the job), not in the user's docker config.
    assert not (Path(env["HOME"]) / ".docker" / "config.json").exists()
    reader = {**env, "DOCKER_CONFIG": str(tmp_path / "runner-temp" / "ocimodel-docker")}
    production = _cli(reader, "inspect", f"{repository}:production", "--json")
    assert production.returncode == 0, production.stderr
    assert json.loads(production.stdout)["digest"] == digest
    assert "0.93" in production.stdout and "0.91" in production.stdout  # the metrics, in the card
    assert_no_secret([log], [PASSWORD, KEY_PASSWORD], users=[USER])


def test_the_action_stops_when_verify_denies(locked_registry, repo_name, model_dir, release_key, tmp_path):
    env = _github_env(tmp_path)
    repository = f"{locked_registry.host}/{repo_name}"
    outputs, outcomes, log = run_action({
        "path": str(model_dir), "reference": f"{repository}:1.0", "username": USER, "password": PASSWORD,
        "key": str(release_key), "key-password": KEY_PASSWORD, "sign": "false", "scan": "false",
        "provenance": "false", "sbom": "false",
        "policy": str(_policy(tmp_path / "policy", release_key)), "promote-to": "production",
    }, tmp_path, env)
    assert outcomes["verify"] == "failure" and "promote" not in outcomes, log
    assert outputs["verdict"] == "denied" and outputs["promoted"] == ""
    assert "FAIL signature" in log
    reader = {**env, "DOCKER_CONFIG": str(tmp_path / "runner-temp" / "ocimodel-docker")}
    assert _cli(reader, "inspect", f"{repository}:production").returncode == 1  # nothing moved


# -- the GitLab template ----------------------------------------------------------------------------


class _GitLabLoader(yaml.SafeLoader):
    """YAML with GitLab's ``!reference [job, key]`` tag (kept as a ("!reference", [...]) pair)."""


_GitLabLoader.add_constructor("!reference", lambda loader, node: ("!reference", loader.construct_sequence(node)))


def _gitlab() -> dict:
    path = ROOT / "examples" / "gitlab" / "ocimodel.gitlab-ci.yml"
    return yaml.load(path.read_text(), Loader=_GitLabLoader)  # noqa: S506 - a SafeLoader subclass


def _gitlab_script(job: dict, template: dict) -> str:
    """A job's before_script and script as the runner joins them, !reference resolved."""

    def lines(key: str, entry: dict) -> list[str]:
        out: list[str] = []
        for item in entry.get(key, []):
            out += lines(item[1][1], template[item[1][0]]) if isinstance(item, tuple) else [item]
        return out

    def inherited(key: str, entry: dict) -> list[str]:
        if key in entry:
            return lines(key, entry)
        return inherited(key, template[entry["extends"]]) if "extends" in entry else []

    return "\n".join([*inherited("before_script", job), *inherited("script", job)])


def test_the_gitlab_release_job_pushes_signs_attests_verifies_and_promotes(
    locked_registry, repo_name, model_dir, release_key, tmp_path
):
    template = _gitlab()
    job = template[".ocimodel-release"]
    script = _gitlab_script(job, template)
    install, script = script.split("\n", 1)
    assert install.startswith("python -m pip install")  # not run: the test's ocimodel stands in
    repository = f"{locked_registry.host}/{repo_name}"
    project = tmp_path / "project"
    project.mkdir()
    variables = {name: str(value) for name, value in template[".ocimodel"]["variables"].items()}
    variables.update(
        OCIMODEL_REFERENCE=f"{repository}:2.0", OCIMODEL_MODEL_PATH=str(model_dir), OCIMODEL_MODEL_NAME="tiny",
        OCIMODEL_MODEL_LICENSE="Apache-2.0", OCIMODEL_MODEL_METRICS="accuracy=0.95@imdb:test",
        OCIMODEL_EVALUATION="accuracy=0.94",
        OCIMODEL_REGISTRY_USER=USER, OCIMODEL_REGISTRY_PASSWORD=PASSWORD,
        OCIMODEL_SIGNING_KEY=str(release_key), OCIMODEL_KEY_PASSWORD=KEY_PASSWORD,
        OCIMODEL_POLICY=str(_policy(tmp_path / "policy", release_key)), OCIMODEL_PROMOTE_TO="production",
        OCIMODEL_PROMOTE_REASON="https://gitlab.example/org/models/-/pipelines/7",
    )
    env = _environment(
        tmp_path, **variables, CI_PROJECT_DIR=str(project), CI_PROJECT_URL="https://gitlab.example/org/models",
        CI_COMMIT_SHA="b" * 40, SIGSTORE_ID_TOKEN="not-a-token-the-key-wins",
    )
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], capture_output=True,
                          text=True, env=env, cwd=project, timeout=180)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]

    dotenv = dict(line.split("=", 1) for line in (project / "ocimodel.env").read_text().splitlines())
    digest = dotenv["OCIMODEL_DIGEST"]
    assert dotenv["OCIMODEL_MODEL"] == f"{repository}@{digest}"
    assert (project / "ocimodel-scan.sarif").is_file() and (project / "ocimodel-sbom.cdx.json").is_file()
    reader = {**env, "DOCKER_CONFIG": str(project / ".ocimodel-docker")}
    production = _cli(reader, "inspect", f"{repository}:production", "--json")  # the job verified it
    assert production.returncode == 0, production.stderr
    assert json.loads(production.stdout)["digest"] == digest
    assert "Allowed: " in log and "pass evaluation accuracy" in log
    assert_no_secret([log], [PASSWORD, KEY_PASSWORD], users=[USER])


# -- the install step, with a stand-in Python ---------------------------------------------------------

_FAKE_PYTHON = """#!/bin/bash
# Stands in for python3: `-m venv DIR` makes DIR/bin with a python that logs its pip
# arguments and an ocimodel that prints a version.
if [[ "$1 $2" == "-m venv" ]]; then
  mkdir -p "$3/bin"
  printf '#!/bin/bash\\necho "$*" >> "%s/pip.log"\\n' "$3" > "$3/bin/python"
  printf '#!/bin/bash\\necho "ocimodel 9.9.9"\\n' > "$3/bin/ocimodel"
  chmod +x "$3/bin/python" "$3/bin/ocimodel"
fi
"""


@pytest.mark.slow
@pytest.mark.parametrize(("inputs", "requirement", "signing"), [
    ({}, f"{ROOT}[sbom]", "keyless"),
    ({"version": "1.2.3", "key": "release.key"}, "ocimodel[sbom]==1.2.3", "key"),
])
def test_the_install_step_makes_a_venv_and_names_the_signing_identity(inputs, requirement, signing, tmp_path):
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    install = next(step for step in action["runs"]["steps"] if step["id"] == "install")
    python = tmp_path / "python3"
    python.write_text(_FAKE_PYTHON)
    python.chmod(0o755)
    contexts = {
        "inputs": {name: spec.get("default", "") for name, spec in action["inputs"].items()} | inputs | {"python": str(python)},
        "github": {"action_path": str(ROOT)}, "runner": {"temp": str(tmp_path)}, "env": {}, "steps": {},
    }
    output, path_file = tmp_path / "output", tmp_path / "path"
    env = _environment(tmp_path, GITHUB_OUTPUT=str(output), GITHUB_PATH=str(path_file), GITHUB_SERVER_URL="https://github.com",
                       GITHUB_WORKFLOW_REF="org/models/.github/workflows/release.yml@refs/heads/main")
    env.update({k: _interpolate(v, contexts) for k, v in install["env"].items()})
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", install["run"]],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    venv = tmp_path / "ocimodel-venv"
    assert (venv / "pip.log").read_text().split()[-1] == requirement
    assert path_file.read_text().strip() == str(venv / "bin")
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert outputs["version"] == "9.9.9" and outputs["signing"] == signing
    if signing == "keyless":
        assert outputs["identity"] == "https://github.com/org/models/.github/workflows/release.yml@refs/heads/main"
        assert outputs["issuer"] == "https://token.actions.githubusercontent.com"
    else:
        assert "identity" not in outputs


@pytest.mark.slow
def test_keyless_promotion_without_a_token_fails_before_promoting(tmp_path):
    # Outside CI there is no ambient credential: the step says what is missing and moves
    # nothing, rather than writing an unsigned record no policy would trust.
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    promote = next(step for step in action["runs"]["steps"] if step["id"] == "promote")
    output = tmp_path / "output"
    output.touch()
    env = _environment(tmp_path, GITHUB_OUTPUT=str(output), OCIMODEL_MODEL="127.0.0.1:9/none@sha256:" + "0" * 64,
                       OCIMODEL_PROMOTE_TO="production", OCIMODEL_POLICY=str(tmp_path / "policy.yaml"),
                       OCIMODEL_SIGNING_KEY="", OCIMODEL_PROMOTE_REASON="test")
    for name in ("GITHUB_ACTIONS", "SIGSTORE_ID_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL", "GITLAB_CI", "CI"):
        env.pop(name, None)
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", promote["run"]],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert "::error::ocimodel promote: no OIDC token for keyless signing" in done.stdout
    assert output.read_text() == ""
