"""File-tree helpers for byte-for-byte comparisons in tests."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

__all__ = ["tree_digest"]


def tree_digest(path: str | os.PathLike[str]) -> dict[str, tuple[str, int]]:
    """Map every regular file under ``path`` to (sha256 hex, permission bits).

    Keys are POSIX paths relative to ``path``. Directories are not listed (an empty
    directory leaves no trace); a symlink or other special file raises ValueError,
    so a comparison never silently ignores one.
    """
    root = Path(path)
    out: dict[str, tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            p = base / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode) or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                raise ValueError(f"not a regular file or directory: {p}")
        for name in sorted(filenames):
            p = base / name
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out[p.relative_to(root).as_posix()] = (h.hexdigest(), p.lstat().st_mode & 0o777)
    return out
