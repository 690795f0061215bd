"""The README's quickstart runs top to bottom as written: the shell block against the
registry its own config starts, then the Python block, then a delete (the config must
enable deletes). Only the port, the temporary paths and the venv activation are adapted."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else None]


def _shell_block(section: str) -> str:
    """The first indented block of the section, with its backslash continuations."""
    lines = section.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("    "))
    block = []
    for line in lines[first:]:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block).strip() + "\n"


def _python_block(section: str) -> str:
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


# The README's shell block starts a docker-registry itself (not through LocalRegistry,
# so the guard in conftest cannot see it): it belongs with the registry tests.
@pytest.mark.registry
def test_quickstart_runs_top_to_bottom(tmp_path: Path) -> None:
    if shutil.which("docker-registry") is None:
        pytest.fail("docker-registry is not installed (make test installs it)")
    text = README.read_text()
    section = _section(text, "## Quickstart against a registry")
    shell, python = _shell_block(section), _python_block(section)
    client_python = _python_block(_section(text, "## One client for many calls"))
    assert "docker-registry serve" in shell and "ocimodel push" in shell
    assert "delete: {enabled: true}" in shell

    port = _free_port()

    def adapt(text: str) -> str:
        text = text.replace("/tmp/reg", str(tmp_path / "reg"))
        return text.replace("127.0.0.1:5000", f"127.0.0.1:{port}").replace("localhost:5000", f"localhost:{port}")

    venv_bin = Path(sys.executable).parent
    shell = adapt(shell).replace("source .venv/bin/activate", f'export PATH="{venv_bin}:$PATH"')
    # The README starts the registry in the background and goes on; wait for it to answer.
    shell = re.sub(
        r"^(docker-registry serve .*&)$",
        rf"\1\nREG=$!\ntrap 'kill $REG' EXIT\n"
        rf"for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.05; done",
        shell, flags=re.M,
    )
    script = tmp_path / "quickstart.sh"
    (tmp_path / "quickstart.py").write_text(adapt(python))
    (tmp_path / "client.py").write_text(adapt(client_python))
    repo = README.parent
    script.write_text(
        "set -euo pipefail\n"
        f"cp -r {repo / 'examples'} examples\n"
        + shell
        + "python quickstart.py\n"
        + "python client.py\n"
        + f"ocimodel delete localhost:{port}/team/sentiment:1.1 --force\n"
        + "echo QUICKSTART-OK\n"
    )
    env = {"PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "OCIMODEL_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "QUICKSTART-OK" in done.stdout
    assert (tmp_path / "out-1.1").is_dir() and (tmp_path / "out").is_dir()
    assert (tmp_path / "serving").is_dir()  # the Client block pulled what it promoted


@pytest.mark.registry
def test_delete_on_a_registry_that_refuses_deletes_says_how_to_enable_them(tmp_path: Path) -> None:
    from tests.support.registry import LocalRegistry

    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w" * 32)
    with LocalRegistry(deletes=False) as reg:
        cli = [sys.executable, "-m", "ocimodel"]
        ref = f"{reg.host}/team/nodelete:1.0"
        pushed = subprocess.run([*cli, "push", str(model), ref, "-q", "--no-detect"], capture_output=True, text=True, timeout=60)
        assert pushed.returncode == 0, pushed.stderr
        done = subprocess.run([*cli, "delete", ref, "--force"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "405" in done.stderr and "storage.delete.enabled" in done.stderr
