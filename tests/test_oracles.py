"""The independent tools the suite checks ocimodel against are installed (`make test`
installs them: the apt packages in the Makefile, the Python ones in the test extra). Each
missing one fails here by name -- never a skip -- besides failing the tests that use it."""

from __future__ import annotations

import importlib
import shutil

import pytest

from ocimodel.packaging.archive import zstd_module
from tests.support.model_signing_oracle import run_cli


@pytest.mark.parametrize("module", ["model_signing.signing", "model_signing.verifying", "zstandard", "oras.client"])
def test_python_oracle_is_importable(module: str) -> None:
    importlib.import_module(module)


@pytest.mark.slow
def test_model_signing_cli_runs() -> None:
    done = run_cli("verify", "key", "--help")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--public_key" in done.stdout


def test_ocimodel_sees_zstandard() -> None:
    """ocimodel reads tar+zstd layers only when zstandard imports; the tests of them need it."""
    assert zstd_module() is not None


@pytest.mark.parametrize("tool", ["skopeo", "docker-registry"])
def test_system_tool_is_installed(tool: str) -> None:
    assert shutil.which(tool), f"{tool} is not installed: run `make test` (it apt-get installs it)"
