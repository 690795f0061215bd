"""Small content-addressed documents (manifests, configs) kept on local disk by digest.

What a digest names never changes, so a document read once need not be fetched again:
``search`` over a registry re-resolves every tag (a tag -> digest answer is never kept)
and then finds most manifests and configs here. Every read is checked against the digest
(and size) it was asked for; a file that does not match is removed and reported as a miss,
so a damaged or tampered cache costs a download, never a wrong answer. Any I/O problem is
a miss too: a cache must never make a command fail. ``OCIMODEL_NO_CACHE=1`` turns it off.

Layout: ``<root>/<algorithm>/<hex>``, written to a temporary name and renamed into place,
so concurrent writers (threads or processes) never expose a partial file. Files are
private to the user (0600 in a 0700 directory): manifests of private repositories say
what a model is. Nothing is evicted; entries are a few KiB each."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from ocimodel import settings
from ocimodel.atomicwrite import atomic_write
from ocimodel.chunks import FileTooLarge, read_capped
from ocimodel.errors import IntegrityError
from ocimodel.oci.digest import stored_path, verify_bytes
from ocimodel.oci.models import MAX_MANIFEST_BYTES

log = logging.getLogger("ocimodel.cache")

__all__ = ["ContentCache"]


class ContentCache:
    """``get`` / ``put`` by digest under ``root``; ``hits`` / ``misses`` count lookups."""

    def __init__(self, root: str | os.PathLike[str], *, max_bytes: int = MAX_MANIFEST_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.enabled = not settings.no_cache()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()  # the counters; files need none (atomic renames)

    def _path(self, digest: str) -> Path | None:
        return stored_path(self.root, digest)

    def get(self, digest: str, size: int | None = None) -> bytes | None:
        """The bytes named by ``digest`` (and ``size``), or None."""
        path = self._path(digest) if self.enabled else None
        data = None
        if path is not None and (size is None or size <= self.max_bytes):
            try:
                data = read_capped(path, self.max_bytes, follow_symlinks=False)
            except (OSError, FileTooLarge):
                data = None
            if data is not None:
                try:
                    verify_bytes(data, digest, size, f"cached {digest}")
                except IntegrityError:
                    log.debug("cache entry %s does not match its digest: removed", digest)
                    _unlink(path)
                    data = None
        with self._lock:
            if data is None:
                self.misses += 1
            else:
                self.hits += 1
        return data

    def put(self, digest: str, data: bytes) -> None:
        """Keep ``data`` if it is exactly what ``digest`` names (else keep nothing)."""
        path = self._path(digest) if self.enabled else None
        if path is None or len(data) > self.max_bytes:
            return
        try:
            verify_bytes(data, digest, None, digest)
        except IntegrityError:
            return
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.parent.mkdir(mode=0o700, exist_ok=True)
            atomic_write(path, data)  # 0600, like the directories: a user's cache is theirs
        except OSError as exc:
            log.debug("cannot write cache entry %s: %s", digest, exc)


def _unlink(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
