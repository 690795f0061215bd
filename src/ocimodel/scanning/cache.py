"""Scan results kept by layer digest, so a layer is judged once per scanner version.

Key: (layer digest, SCANNER_VERSION, the user allowlist's digest, how the bytes were read:
``verified`` or ``ranges-trusted``), one JSON file per key under
``settings.cache_dir()/scan``, written atomically. A result of the unverified mode is
never served to a verified scan. An entry that cannot be read or parsed is a miss: the
cache only saves work, it never decides a verdict (an entry is the list of FileReports
our own scan wrote; someone who can write the cache directory can also replace the
program, so it is not a trust boundary)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from ocimodel import settings
from ocimodel.atomicwrite import atomic_write
from ocimodel.oci.digest import validate_digest
from ocimodel.scanning.findings import SCANNER_VERSION, FileReport

__all__ = ["ScanCache"]

_REPORTS = TypeAdapter(list[FileReport])
MAX_ENTRY_BYTES = 64 * 1024 * 1024


class ScanCache:
    def __init__(self, directory: str | Path | None = None, version: str = SCANNER_VERSION) -> None:
        self.directory = Path(directory) if directory is not None else settings.cache_dir() / "scan"
        self.version = version

    def _path(self, digest: str, allow_digest: str, mode: str) -> Path:
        validate_digest(digest)
        key = hashlib.sha256(json.dumps([digest, self.version, allow_digest, mode]).encode()).hexdigest()
        return self.directory / key[:2] / f"{key}.json"

    def get(self, digest: str, allow_digest: str, mode: str) -> list[FileReport] | None:
        path = self._path(digest, allow_digest, mode)
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_ENTRY_BYTES + 1)
        except OSError:
            return None
        if len(data) > MAX_ENTRY_BYTES:
            return None
        try:
            document = json.loads(data)
            if document.get("digest") != digest or document.get("scanner_version") != self.version:
                return None
            return _REPORTS.validate_python(document["files"])
        except (ValueError, ValidationError, KeyError, AttributeError, TypeError):
            return None

    def put(self, digest: str, allow_digest: str, mode: str, reports: list[FileReport]) -> None:
        path = self._path(digest, allow_digest, mode)
        document = {
            "digest": digest, "scanner_version": self.version, "allowlist": allow_digest, "mode": mode,
            "files": _REPORTS.dump_python(reports, mode="json"),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(document).encode())
        except OSError:
            pass  # a cache that cannot be written costs time, not correctness
