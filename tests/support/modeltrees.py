"""Helpers for the push/pull/layout tests: build model trees, hash files, read the
registry over plain HTTP (independently of ocimodel's own client).

Stdlib + httpx only; no ocimodel imports, so these helpers can check ocimodel itself."""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "OCI_INDEX",
    "OCI_MANIFEST",
    "fetch_blob",
    "fetch_manifest",
    "nested_tree_spec",
    "one_weights_model",
    "put_blob",
    "put_manifest",
    "sha256_bytes",
    "sha256_file",
    "write_tree",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

TreeSpec = Mapping[str, tuple[bytes, int]]


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` of a file, read in 1 MiB chunks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def write_tree(root: Path, spec: TreeSpec) -> Path:
    """Write ``{relpath: (content, mode)}`` under ``root`` with explicit modes."""
    for rel, (content, mode) in spec.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        p.chmod(mode)
    return root


def nested_tree_spec(count: int = 60, seed: int = 1234) -> dict[str, tuple[bytes, int]]:
    """``count`` files spread over folders nested three deep (``a/b/c/file``), with
    distinct deterministic contents, mixed extensions and a few executables."""
    rng = random.Random(seed)
    exts = [".bin", ".json", ".txt", ".py", ".csv", ".md", ".safetensors"]
    spec: dict[str, tuple[bytes, int]] = {}
    for i in range(count):
        top = f"part{i % 3}"
        mid = f"block{(i // 3) % 4}"
        low = f"shard{(i // 12) % 5}"
        ext = exts[i % len(exts)]
        rel = f"{top}/{mid}/{low}/file{i:02d}{ext}"
        size = rng.randrange(1, 20_000)
        content = f"file {i}\n".encode() + rng.randbytes(size)
        mode = 0o755 if ext == ".py" else 0o644
        spec[rel] = (content, mode)
    return spec


# -- the registry, read and written directly (not through ocimodel) ------------------------


def one_weights_model(root: Path, size: int, seed: int, model_type: str) -> Path:
    """``root`` holding ``weights.bin`` (``size`` seeded random bytes: one large blob) and a
    small ``config.json``."""
    root.mkdir(parents=True)
    (root / "weights.bin").write_bytes(random.Random(seed).randbytes(size))
    (root / "config.json").write_text(f'{{"model_type": "{model_type}"}}\n')
    return root


def fetch_manifest(registry_url: str, repo: str, reference: str, accept: str = OCI_MANIFEST) -> httpx.Response:
    r = httpx.get(f"{registry_url}/v2/{repo}/manifests/{reference}", headers={"Accept": accept})
    r.raise_for_status()
    return r


def fetch_blob(registry_url: str, repo: str, digest: str) -> bytes:
    r = httpx.get(f"{registry_url}/v2/{repo}/blobs/{digest}", follow_redirects=True)
    r.raise_for_status()
    return r.content


def put_manifest(registry_url: str, repo: str, reference: str, document: dict[str, Any], media_type: str) -> str:
    """PUT a manifest or index; returns its digest."""
    data = json.dumps(document, separators=(",", ":")).encode()
    r = httpx.put(
        f"{registry_url}/v2/{repo}/manifests/{reference}",
        content=data,
        headers={"Content-Type": media_type},
    )
    assert r.status_code == 201, r.text
    return sha256_bytes(data)


def put_blob(registry_url: str, repo: str, data: bytes) -> str:
    """Monolithic upload (POST then PUT ?digest=); returns the digest."""
    digest = sha256_bytes(data)
    with httpx.Client(base_url=registry_url) as client:
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = httpx.URL(registry_url).join(r.headers["Location"])
        r = client.put(
            location.copy_merge_params({"digest": digest}),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
    return digest
