"""Where blobs were seen: a small local record of (registry, repository) per blob digest,
so a push to another repository of the same registry can mount what that registry already
holds instead of uploading it again (docs/push-fast-paths.md); and which version tags a
push of this user saw settle, so pushing the same model to the same version again need not
wait out the check-and-set a second time.

A record is only a hint about what to *ask* the registry. A mount names a digest, and a
registry links only the blob that digest names, so a stale or even forged record costs one
mount the registry declines (then the blob is uploaded), never a wrong blob. A settled tag
saves the wait only when a read of the tag, made now, shows the same model.

The file: ``<cache dir>/blob-locations.v1.json`` (beside the digest cache; private to the
user, 0600), one JSON object::

    {"version": 1,
     "blobs": [[digest, size, registry, repository, seen], ...],
     "settled": [[registry, repository, tag, digest, seen], ...]}

``seen`` is a Unix time. The size lets a push tell which files of a model it has not hashed
yet may be blobs the registry holds (worth hashing first, to mount them). Bounded: at most MAX_BLOBS blob rows (MAX_PER_BLOB
repositories per digest, the newest kept) and MAX_SETTLED tag rows, the oldest dropped
first; a file over MAX_FILE_BYTES is not read. Every row is checked when read (digest,
registry and repository grammar) and a bad one is dropped.

Writers (processes and threads) take an exclusive ``flock`` on ``blob-locations.lock``,
read the file, merge their changes and replace it by an atomic rename, so concurrent
pushes keep each other's rows; readers take no lock (a rename is all or nothing). Any
problem -- no cache directory, an unwritable or corrupt file, a lock held too long -- makes
the record empty or the write a no-op: this cache never fails a command.
``OCIMODEL_NO_CACHE=1`` turns it off."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from ocimodel import settings
from ocimodel.atomicwrite import atomic_write
from ocimodel.errors import InvalidDigest, InvalidReference
from ocimodel.oci.digest import validate_digest
from ocimodel.oci.models import Descriptor
from ocimodel.oci.reference import RegistryReference, validate_tag

log = logging.getLogger("ocimodel.cache")

__all__ = ["MAX_BLOBS", "MAX_PER_BLOB", "MAX_SETTLED", "BlobLocations"]

FILE_NAME = "blob-locations.v1.json"
LOCK_NAME = "blob-locations.lock"
FORMAT_VERSION = 1
MAX_BLOBS = 4096  # rows; about 150 bytes each, so the file stays under 1 MiB
MAX_PER_BLOB = 4  # repositories remembered per digest and registry
MAX_SETTLED = 512
MAX_FILE_BYTES = 4 * 1024 * 1024
# How long a writer waits for another process's lock before it gives up (a write is a few
# milliseconds; a lock held longer belongs to a stuck process, and a cache can do without).
LOCK_WAIT_SECONDS = 1.0
LOCK_POLL_SECONDS = 0.01

BlobRow = tuple[str, int, str, str, float]  # digest, size, registry, repository, seen
BlobKey = tuple[str, str, str]  # digest, registry, repository
SettledRow = tuple[str, str, str, str, float]  # registry, repository, tag, digest, seen


class BlobLocations:
    """The record, read once (lazily) per instance; changes are kept in memory and written
    by :meth:`flush`, in one locked read-merge-write."""

    def __init__(self, path: Path | None = None) -> None:
        self.enabled = not settings.no_cache()
        self._path = path
        self._lock = threading.Lock()
        self._blobs: list[BlobRow] | None = None
        self._settled: list[SettledRow] | None = None
        self._add: dict[BlobKey, tuple[int, float]] = {}
        self._drop: set[BlobKey] = set()
        self._add_settled: dict[tuple[str, str, str], tuple[str, float]] = {}

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = settings.cache_dir() / FILE_NAME
        return self._path

    # -- reading ---------------------------------------------------------------------------

    def candidates(self, registry: str, digest: str, *, besides: str) -> list[str]:
        """Repositories of ``registry`` where ``digest`` was seen, newest first, other than
        ``besides`` (the repository being pushed to)."""
        self._load()
        with self._lock:
            rows = [r for r in self._blobs or () if r[0] == digest and r[2] == registry and r[3] != besides
                    and (digest, registry, r[3]) not in self._drop]
        return [r[3] for r in sorted(rows, key=lambda r: r[4], reverse=True)]

    def sizes(self, registry: str) -> set[int]:
        """Sizes of the blobs recorded on ``registry``: a file of another size is no blob a
        mount could bring."""
        self._load()
        with self._lock:
            return {r[1] for r in self._blobs or () if r[2] == registry}

    def has_all(self, registry: str, repository: str, digests: Iterable[str]) -> bool:
        """Whether every digest is already recorded in this repository (nothing to write)."""
        self._load()
        with self._lock:
            known = {r[0] for r in self._blobs or () if r[2] == registry and r[3] == repository}
            known.update(d for (d, reg, repo) in self._add if reg == registry and repo == repository)
        return set(digests) <= known

    def settled(self, registry: str, repository: str, tag: str, digest: str) -> bool:
        """Whether a version-tag check-and-set of this user saw ``tag`` settle on ``digest``."""
        self._load()
        with self._lock:
            if self._add_settled.get((registry, repository, tag), ("",))[0] == digest:
                return True
            return any(r[:4] == (registry, repository, tag, digest) for r in self._settled or ())

    # -- changing --------------------------------------------------------------------------

    def record(self, registry: str, repository: str, blobs: Iterable[Descriptor]) -> None:
        """``blobs`` are in ``repository`` of ``registry`` (pushed, mounted or pulled)."""
        if not self.enabled:
            return
        now = time.time()
        with self._lock:
            for blob in blobs:
                key = (blob.digest, registry, repository)
                self._add[key] = (blob.size, now)
                self._drop.discard(key)

    def forget(self, registry: str, repository: str, digest: str) -> None:
        """A mount from there was declined: the record is stale."""
        if not self.enabled:
            return
        with self._lock:
            key = (digest, registry, repository)
            self._add.pop(key, None)
            self._drop.add(key)

    def record_settled(self, registry: str, repository: str, tag: str, digest: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._add_settled[(registry, repository, tag)] = (digest, time.time())

    def flush(self) -> None:
        """Write what changed, merged with what other processes wrote meanwhile. Never
        raises: a cache that cannot be written is only a slower next push."""
        with self._lock:
            add, drop, settled = dict(self._add), set(self._drop), dict(self._add_settled)
            self._add.clear()
            self._drop.clear()
            self._add_settled.clear()
        if not self.enabled or not (add or drop or settled):
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with _exclusive(self.path.parent / LOCK_NAME):
                blobs, tags = _read(self.path)
                blobs = _merge_blobs(blobs, add, drop)
                tags = _merge_settled(tags, settled)
                atomic_write(self.path, _encode(blobs, tags))  # 0600
        except (OSError, TimeoutError, ValueError) as exc:
            log.debug("blob location record not written: %s", exc)
            return
        with self._lock:
            self._blobs, self._settled = blobs, tags

    # -- internals -------------------------------------------------------------------------

    def _load(self) -> None:
        with self._lock:
            if self._blobs is not None:
                return
        blobs, tags = _read(self.path) if self.enabled else ([], [])
        with self._lock:
            if self._blobs is None:
                self._blobs, self._settled = blobs, tags


class _exclusive:
    """An exclusive ``flock`` on ``path``, waited for at most LOCK_WAIT_SECONDS."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise TimeoutError(f"{self.path} stayed locked for {LOCK_WAIT_SECONDS:g} s") from None
                time.sleep(LOCK_POLL_SECONDS)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing releases the lock


def _read(path: Path) -> tuple[list[BlobRow], list[SettledRow]]:
    """The rows of the file that pass every check; none for a missing, oversized or
    malformed file."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError:
        return [], []
    if len(data) > MAX_FILE_BYTES:
        log.debug("%s is over %d bytes: ignored", path, MAX_FILE_BYTES)
        return [], []
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        log.debug("%s is not JSON: ignored", path)
        return [], []
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        return [], []
    # A full record names a few places thousands of times; checking a place's grammar once
    # a read (not once a row) took reading 4,096 rows from ~50 ms to a few, and every push
    # and pull reads the record.
    places: dict[tuple[object, object], bool] = {}
    blobs = [row for row in (_blob_row(r, places) for r in _list(document.get("blobs"))) if row is not None]
    tags = [row for row in (_settled_row(r, places) for r in _list(document.get("settled"))) if row is not None]
    return blobs[-MAX_BLOBS:], tags[-MAX_SETTLED:]


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _blob_row(row: object, places: dict[tuple[object, object], bool]) -> BlobRow | None:
    if not (isinstance(row, list) and len(row) == 5 and isinstance(row[4], (int, float))):
        return None
    digest, size, registry, repository, seen = row
    when = _seen(seen)
    if when is None or not (_valid_digest(digest) and isinstance(size, int) and size >= 0
                            and _valid_place(registry, repository, places)):
        return None
    return digest, size, registry, repository, when


def _settled_row(row: object, places: dict[tuple[object, object], bool]) -> SettledRow | None:
    if not (isinstance(row, list) and len(row) == 5 and isinstance(row[4], (int, float))):
        return None
    registry, repository, tag, digest, seen = row
    when = _seen(seen)
    if when is None or not (_valid_digest(digest) and _valid_place(registry, repository, places) and isinstance(tag, str)):
        return None
    try:
        validate_tag(tag)
    except InvalidReference:
        return None
    return registry, repository, tag, digest, when


def _seen(value: int | float) -> float | None:
    """A row's Unix time as a finite float, or None: an integer too large for a float (JSON
    allows any number of digits) raised OverflowError, and NaN would sort anywhere."""
    try:
        when = float(value)
    except OverflowError:
        return None
    return when if math.isfinite(when) else None


def _valid_digest(value: object) -> bool:
    try:
        validate_digest(value)
    except InvalidDigest:
        return False
    return True


def _valid_place(registry: object, repository: object, known: dict[tuple[object, object], bool]) -> bool:
    """Whether ``registry`` and ``repository`` are strings of their grammars; ``known``
    holds the answers already given (only str pairs go in: they hash and compare by value)."""
    if not isinstance(registry, str) or not isinstance(repository, str):
        return False
    answer = known.get((registry, repository))
    if answer is None:
        try:
            RegistryReference(registry, repository)
            answer = True
        except InvalidReference:
            answer = False
        known[(registry, repository)] = answer
    return answer


def _merge_blobs(rows: list[BlobRow], add: dict[BlobKey, tuple[int, float]], drop: set[BlobKey]) -> list[BlobRow]:
    """``rows`` with ``drop`` removed and ``add`` put in (the newer wins), bounded: per
    digest and registry the MAX_PER_BLOB newest repositories, in all the MAX_BLOBS newest."""
    merged: dict[BlobKey, tuple[int, float]] = {}
    for digest, size, registry, repository, seen in rows:
        key = (digest, registry, repository)
        merged[key] = max((size, seen), merged.get(key, (size, seen)), key=lambda v: v[1])
    for key, value in add.items():
        merged[key] = max(value, merged.get(key, value), key=lambda v: v[1])
    for key in drop:
        merged.pop(key, None)
    newest = sorted(merged.items(), key=lambda item: item[1][1], reverse=True)
    per_blob: dict[tuple[str, str], int] = {}
    kept: list[BlobRow] = []
    for (digest, registry, repository), (size, seen) in newest:
        count = per_blob.get((digest, registry), 0)
        if count >= MAX_PER_BLOB:
            continue
        per_blob[(digest, registry)] = count + 1
        kept.append((digest, size, registry, repository, seen))
        if len(kept) == MAX_BLOBS:
            break
    kept.reverse()  # oldest first in the file: a truncated read keeps the newest
    return kept


def _merge_settled(rows: list[SettledRow], add: dict[tuple[str, str, str], tuple[str, float]]) -> list[SettledRow]:
    merged: dict[tuple[str, str, str], tuple[str, float]] = {(r[0], r[1], r[2]): (r[3], r[4]) for r in rows}
    merged.update(add)  # a tag settles on one digest: the newest record replaces the older
    newest = sorted(merged.items(), key=lambda item: item[1][1])[-MAX_SETTLED:]
    return [(registry, repository, tag, digest, seen) for (registry, repository, tag), (digest, seen) in newest]


def _encode(blobs: list[BlobRow], tags: list[SettledRow]) -> bytes:
    document = {
        "version": FORMAT_VERSION,
        "blobs": [[d, size, reg, repo, round(seen, 6)] for d, size, reg, repo, seen in blobs],
        "settled": [[reg, repo, tag, d, round(seen, 6)] for reg, repo, tag, d, seen in tags],
    }
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"
