"""The OpenSSF ``model-signing`` package as an independent oracle, through its public API
(``model_signing.signing``) and its CLI only.

It is in the test extra (pyproject.toml), so it is always there where the tests run: it is
imported here at module level, never with ``importorskip`` or a ``skipif``. A missing
oracle is a collection error -- a failed run -- not a quietly green one. The CLI is run as
``python -m model_signing`` with the test interpreter, which exists exactly when the
package imports (no console-script lookup that could be skipped). No private module
(``model_signing._...``) is used: the tests must not break on a refactoring inside it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import model_signing.signing  # the test extra installs it; missing, the tests using it fail

__all__ = ["bundle_statement", "run_cli", "sign_with_key", "verify_with_cli"]

CLI_TIMEOUT = 120


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``model_signing ARGS`` (the package's own CLI), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "model_signing", *map(str, args)],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
    )


def verify_with_cli(model_dir: Path, signature: Path, public_key: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``model_signing verify key``: exit 0 only when the signature covers the directory."""
    return run_cli("verify", "key", model_dir, "--signature", signature, "--public_key", public_key, *extra)


def sign_with_key(model_dir: Path, private_key: Path, signature: Path) -> dict[str, Any]:
    """Sign ``model_dir`` as model-signing does by default (its public API), write the
    bundle to ``signature`` (keep it outside the model: it would be hashed) and return the
    bundle as JSON."""
    model_signing.signing.Config().use_elliptic_key_signer(private_key=private_key).sign(model_dir, signature)
    return json.loads(signature.read_bytes())


def bundle_statement(bundle: dict[str, Any]) -> dict[str, Any]:
    """The in-toto statement a bundle's DSSE envelope carries."""
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
