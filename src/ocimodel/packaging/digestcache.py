"""A local cache of file digests, so an unchanged file is never hashed twice.

Entries are keyed on (device, inode, size, mtime_ns, ctime_ns), as git's index does: a
file rewritten in place gets a new mtime, a replaced file a new inode, and a file whose
mtime was set back (``touch -r``, ``cp -p`` over it) still gets a new ctime, which no user
can set. An entry is stored only for a file whose stat did not change while it was read. The
cache only decides what to *ask* the registry about; it is never trusted for what is sent
(the registry hashes every upload and refuses a body whose digest differs).

A file modified within the same clock tick as it was hashed could keep its mtime (git's
"racy" case): such entries are kept but marked unsure, and a caller hashes the file again
rather than trust them (cheap, and it still knows the file was seen). The cache lives in an SQLite file under
the cache directory (:func:`ocimodel.settings.cache_dir`: ``$OCIMODEL_CACHE_DIR``, else on
Linux ``$XDG_CACHE_HOME/ocimodel`` or ``~/.cache/ocimodel``);
``OCIMODEL_NO_CACHE=1`` turns it off. Any problem with the cache file disables it for the
process: a cache must never make a push fail."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from ocimodel import settings

log = logging.getLogger("ocimodel.cache")

# A file whose mtime is this close to the moment it was hashed may still be changing.
RACY_SECONDS = 2.0
SCHEMA_VERSION = 2


class DigestCache:
    def __init__(self, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if settings.no_cache():
            return
        path = path or settings.cache_dir() / "digests.sqlite"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path = path.with_name(path.name.replace(".sqlite", f".v{SCHEMA_VERSION}.sqlite"))
            db = sqlite3.connect(path, timeout=5, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # A lost entry after a power cut costs one re-hash; no fsync per stored file.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS digests (dev INTEGER, ino INTEGER, size INTEGER,"
                " mtime_ns INTEGER, ctime_ns INTEGER, digest TEXT NOT NULL, hashed_at REAL NOT NULL,"
                " PRIMARY KEY (dev, ino, size, mtime_ns, ctime_ns))"
            )
            self._db = db
        except (OSError, sqlite3.Error) as exc:
            log.debug("digest cache disabled: %s", exc)

    def lookup(self, st: os.stat_result) -> str | None:
        """The digest of an unchanged file, or None (unknown, or too racy to trust)."""
        found = self.lookup_entry(st)
        return found[0] if found is not None and found[1] else None

    def lookup_entry(self, st: os.stat_result) -> tuple[str, bool] | None:
        """(digest, trusted) for a file seen before; trusted is False for a racy entry."""
        if self._db is None:
            return None
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT digest, hashed_at FROM digests"
                    " WHERE dev=? AND ino=? AND size=? AND mtime_ns=? AND ctime_ns=?",
                    _key(st),
                ).fetchone()
        except sqlite3.Error as exc:
            self._disable(exc)
            return None
        if row is None:
            return None
        return row[0], row[1] - st.st_mtime_ns / 1e9 >= RACY_SECONDS

    def store(self, st: os.stat_result, digest: str, hashed_at: float | None = None) -> None:
        """Remember ``digest`` for the file ``st`` describes, hashed at ``hashed_at`` (the
        moment reading began)."""
        if self._db is None:
            return
        hashed_at = time.time() if hashed_at is None else hashed_at
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)", (*_key(st), digest, hashed_at)
                )
        except sqlite3.Error as exc:
            self._disable(exc)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _disable(self, exc: Exception) -> None:
        log.debug("digest cache disabled: %s", exc)
        db, self._db = self._db, None
        if db is not None:
            db.close()


def _key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def same_file_state(a: os.stat_result, b: os.stat_result) -> bool:
    """True if two stats of one file show no change in between (the cache's key)."""
    return _key(a) == _key(b)
