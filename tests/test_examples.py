"""The examples in examples/ run as documented (against a layout and the real registry)."""

import subprocess
import sys
from pathlib import Path

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
