"""The local blob cache (opt-in): files pulled before, kept by digest, hard-linked into later
pulls instead of being downloaded again.

``<cache dir>/blobs/<algorithm>/<hex>`` is a hard link to a file a pull wrote, so while the
pulled file exists the cache costs no disk; a later pull of the same file, into any
directory on the same filesystem, links it instead of downloading it. Rules:

- An entry is linked into the pull's private staging directory first, and the link is
  then checked against the digest (``_holds`` in unpack.py: a regular file, its size, its
  bytes hashed), so what was checked is what is moved into place; a damaged entry costs a
  download, never a wrong file, and is removed. (A link changes the inode's ctime, so the
  digest cache never knows it: each use hashes the file, ~0.6 s per GiB.)
- A file enters the cache with its final mode, and an entry whose mode differs from the
  file's is not linked: a pull never changes the mode of a file another pull shares.
- A pulled file and its entry are one inode: a file edited *in place* changes the entry
  too (and is then caught by that check). Tools that write a new file and rename it, as
  most do, leave the entry alone.
- Only hard links: where the cache and the destination are on different filesystems
  nothing is cached (no copy doubles the disk used). Archive layers are never cached.
- Nothing is evicted by itself; ``ocimodel cache prune`` removes the entries no pulled
  file shares any more (link count 1).

``OCIMODEL_BLOB_CACHE=1`` turns it on for every pull; ``OCIMODEL_NO_CACHE=1`` turns every
cache off, this one included."""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ocimodel import settings
from ocimodel.oci.digest import stored_path

log = logging.getLogger("ocimodel.cache")

ENABLE_ENV = "OCIMODEL_BLOB_CACHE"


def blob_cache_wanted(asked: bool | None) -> bool:
    """``asked`` (a flag) if given, else ``OCIMODEL_BLOB_CACHE``; never with OCIMODEL_NO_CACHE."""
    if settings.no_cache():
        return False
    if asked is not None:
        return asked
    return settings.blob_cache()


@dataclass(frozen=True)
class CacheEntry:
    digest: str
    size: int
    in_use: bool  # another link to it exists (a pulled file)


class BlobCache:
    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else settings.cache_dir() / "blobs"

    def path(self, digest: str) -> Path | None:
        return stored_path(self.root, digest)

    def link_into(self, digest: str, target: Path, mode: int, holds: Callable[[Path], bool]) -> bool:
        """Hard-link the entry for ``digest`` to ``target`` (a new name in a private staging
        directory), then check the link itself: a regular file with ``mode`` (a link shares
        its mode, so one with another mode is not shared) whose bytes ``holds`` accepts.
        Checking the link, not the entry's name, means what was checked is what was linked,
        whatever happens to the name in between. A wrong entry is removed (the download that
        follows replaces it). False: nothing was linked (``target`` does not exist)."""
        entry = self.path(digest)
        if entry is None:
            return False
        try:
            st = os.lstat(entry)
            if st.st_dev != os.lstat(target.parent).st_dev:
                return False  # another filesystem: no link possible, so no check either
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode):
            _unlink(entry)  # never a symlink or anything but a file
            return False
        if stat.S_IMODE(st.st_mode) != mode:
            return False  # the same bytes with another mode elsewhere: downloaded instead
        try:
            os.link(entry, target, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                log.debug("cannot link %s from the blob cache: %s", digest, exc.strerror)
            return False
        try:
            linked = os.lstat(target)
        except OSError:
            return False
        if stat.S_ISREG(linked.st_mode) and stat.S_IMODE(linked.st_mode) == mode and holds(target):
            return True
        log.debug("blob cache entry %s is not what its name says: removed", digest)
        _unlink(target)
        try:
            if stat.S_ISREG(linked.st_mode) and os.path.samestat(os.lstat(entry), linked):
                _unlink(entry)  # only the file found wrong, not one put there since
        except OSError:
            pass
        return False

    def add(self, digest: str, source: Path) -> None:
        """Keep ``source`` (a verified file of ``digest``) as the entry, by a hard link.
        Best effort: an entry that exists already, another filesystem, or any I/O problem
        leaves the cache as it was."""
        entry = self.path(digest)
        if entry is None:
            return
        try:
            entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.root, 0o700)
            os.link(source, entry, follow_symlinks=False)
        except FileExistsError:
            pass  # another pull added it; it is checked before each use
        except OSError as exc:
            log.debug("blob %s not cached: %s", digest, exc.strerror)

    def entries(self) -> Iterator[tuple[Path, CacheEntry]]:
        """Every entry whose name is a digest (anything else in the directory is ignored)."""
        if not self.root.is_dir():
            return
        for algorithm in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink()):
            for path in sorted(algorithm.iterdir()):
                digest = f"{algorithm.name}:{path.name}"
                if self.path(digest) != path:
                    continue
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield path, CacheEntry(digest, st.st_size, st.st_nlink > 1)

    def prune(self, *, everything: bool = False) -> list[CacheEntry]:
        """Remove the entries no pulled file shares (all of them with ``everything``);
        the pulled files themselves are never touched. Returns what was removed."""
        removed = []
        for path, entry in list(self.entries()):
            if (everything or not entry.in_use) and _unlink(path):
                removed.append(entry)
        return removed


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:
        return False
    return True
