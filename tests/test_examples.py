"""The examples in examples/ run as documented (against a layout and the real registry)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# every test runs an example script, which starts the CLI or Python several times
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_python_api_example_on_a_layout():
    done = subprocess.run([sys.executable, str(EXAMPLES / "python_api.py")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pushed oci:" in done.stdout and "pulled 8 files" in done.stdout


def test_python_api_example_on_the_registry(registry, repo_name):
    store = f"{registry.host}/{repo_name}"
    done = subprocess.run([sys.executable, str(EXAMPLES / "python_api.py"), store], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"pushed {store}:1.0" in done.stdout
    assert "tags: ['1.0', 'latest']" in done.stdout


def test_client_example_on_a_layout():
    done = subprocess.run([sys.executable, str(EXAMPLES / "client.py")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "changed files: ['README.md']" in done.stdout
    assert "versions: [('1.0', []), ('1.1', ['production'])]" in done.stdout
    assert "pulled production" in done.stdout


def test_client_example_on_the_registry(registry, repo_name):
    store = f"{registry.host}/{repo_name}"
    done = subprocess.run([sys.executable, str(EXAMPLES / "client.py"), store], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"pushed {store}:1.0" in done.stdout and "pulled production" in done.stdout


def _workflow(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OCIMODEL": str(Path(sys.executable).parent / "ocimodel"), "PYTHON": sys.executable, "WORK": str(tmp_path)}
    env = {k: v for k, v in env.items() if k not in ("OCIMODEL_USERNAME", "OCIMODEL_PASSWORD")}
    return subprocess.run(["bash", str(EXAMPLES / "registry_workflow.sh"), *args], capture_output=True, text=True, timeout=300, env=env)


def test_registry_workflow_example_on_a_layout(tmp_path):
    done = _workflow(tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "registry workflow OK" in done.stdout
    assert "latency regression in 1.2" in done.stdout and "rollback" in done.stdout


def test_registry_workflow_example_on_the_registry(registry, repo_name, tmp_path):
    done = _workflow(f"{registry.host}/{repo_name}", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "registry workflow OK" in done.stdout


def _sign_example(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OCIMODEL": str(Path(sys.executable).parent / "ocimodel"), "PYTHON": sys.executable, "WORK": str(tmp_path)}
    return subprocess.run(["bash", str(EXAMPLES / "sign_and_verify.sh"), *args], capture_output=True, text=True, timeout=300, env=env)


def test_sign_and_verify_example_on_a_layout(tmp_path):
    done = _sign_example(tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "pass attestation https://example.com/eval/v1" in done.stdout
    assert "Verification succeeded" in done.stdout + done.stderr  # the OpenSSF model_signing CLI agrees


def test_sign_and_verify_example_on_the_registry(registry, repo_name, tmp_path):
    done = _sign_example(f"{registry.host}/{repo_name}", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "sign and verify OK" in done.stdout
