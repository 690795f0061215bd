"""Symlinks in a model directory: followed by default (what is uploaded is the file the
link points at), refused with --no-follow-symlinks when they lead out of the directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ocimodel
from ocimodel.errors import PackagingError


def _model_with_links(tmp_path: Path) -> tuple[Path, Path]:
    secret = tmp_path / "outside" / "id_rsa"
    secret.parent.mkdir()
    secret.write_bytes(b"PRIVATE KEY MATERIAL")
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 64)
    os.symlink("weights.bin", model / "alias.bin")  # inside: always fine
    return model, secret


def _pushed_files(store: Path, tag: str) -> dict[str, str]:
    info = ocimodel.inspect(f"oci:{store}:{tag}")
    return {f.path: f.digest for f in info.files}


def test_links_out_of_the_directory_are_followed_by_default(tmp_path: Path) -> None:
    model, secret = _model_with_links(tmp_path)
    os.symlink(secret, model / "config.bin")
    ocimodel.push(model, f"oci:{tmp_path / 'store'}:1.0", detect_git=False)
    files = _pushed_files(tmp_path / "store", "1.0")
    assert set(files) == {"weights.bin", "alias.bin", "config.bin"}
    # the uploaded layer is the outside file's bytes
    blob = tmp_path / "store" / "blobs" / "sha256" / files["config.bin"].split(":")[1]
    assert blob.read_bytes() == secret.read_bytes()


def test_no_follow_symlinks_refuses_links_out_of_the_directory(tmp_path: Path) -> None:
    model, secret = _model_with_links(tmp_path)
    os.symlink(os.path.relpath(secret, model), model / "config.bin")
    with pytest.raises(PackagingError, match="outside the model directory"):
        ocimodel.push(model, f"oci:{tmp_path / 'store'}:1.0", detect_git=False, follow_symlinks=False)
    assert not (tmp_path / "store" / "index.json").exists() or not ocimodel.list_tags(f"oci:{tmp_path / 'store'}")


def test_no_follow_symlinks_keeps_links_inside_the_directory(tmp_path: Path) -> None:
    model, _ = _model_with_links(tmp_path)
    ocimodel.push(model, f"oci:{tmp_path / 'store'}:1.0", detect_git=False, follow_symlinks=False)
    files = _pushed_files(tmp_path / "store", "1.0")
    assert files["alias.bin"] == files["weights.bin"]


@pytest.mark.slow
def test_cli_flag(tmp_path: Path) -> None:
    model, secret = _model_with_links(tmp_path)
    os.symlink(secret, model / "config.bin")
    proc = subprocess.run(
        [sys.executable, "-m", "ocimodel", "push", str(model), f"oci:{tmp_path / 'store'}:1.0", "--no-follow-symlinks", "--no-detect"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 1
    assert "config.bin" in proc.stderr and "outside the model directory" in proc.stderr
    assert "PRIVATE" not in proc.stderr + proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "ocimodel", "push", str(model), f"oci:{tmp_path / 'store'}:1.0", "--no-detect", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "config.bin" in {f["path"] for f in json.loads(proc.stdout)["files"]}
