"""Safety of file paths that come from an artifact (docs/threats.md 9).

A path named by a layer annotation is attacker-controlled. Before a byte is downloaded,
every path is checked to be a plain relative POSIX path that stays inside the destination,
and the set of paths is checked for names that would collide on a case-insensitive or
Unicode-normalising filesystem."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from ocimodel.errors import UnsafePath

MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255


def check_relative_path(name: object) -> str:
    """Return ``name`` if it is a safe relative POSIX path; raise UnsafePath otherwise."""
    if not isinstance(name, str) or name == "":
        raise UnsafePath("artifact names a file with an empty path")
    shown = repr(name[:120])
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise UnsafePath(f"artifact file path {shown} contains control characters")
    if "\\" in name:
        raise UnsafePath(f"artifact file path {shown} contains a backslash")
    if name.startswith("/"):
        raise UnsafePath(f"artifact file path {shown} is absolute")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise UnsafePath(f"artifact file path {shown}... is longer than {MAX_PATH_BYTES} bytes")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePath(f"artifact file path {shown} has a {part or 'empty'!r} component")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            raise UnsafePath(f"artifact file path {shown} has a component over {MAX_COMPONENT_BYTES} bytes")
    return name


def check_unique_paths(names: Iterable[str]) -> None:
    """Refuse two paths that are equal after NFC normalisation and case folding, and a path
    that is both a file and the directory of another file."""
    folded: dict[str, str] = {}
    for name in names:
        key = unicodedata.normalize("NFC", name).casefold()
        if key in folded:
            raise UnsafePath(
                f"artifact names the same file twice: {folded[key][:120]!r} and {name[:120]!r}"
            )
        folded[key] = name
    for key, name in folded.items():
        parts = key.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in folded:
                raise UnsafePath(
                    f"artifact names {folded[prefix][:120]!r} as a file and as a directory of {name[:120]!r}"
                )


def check_no_symlink_parents(root: Path, relative: str) -> None:
    """Refuse to write through a symlink (or non-directory) already in the destination."""
    current = root
    for part in relative.split("/")[:-1]:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return
        import stat

        if stat.S_ISLNK(mode):
            raise UnsafePath(
                f"destination {current} is a symlink; refusing to write {relative!r} through it"
            )
        if not stat.S_ISDIR(mode):
            raise UnsafePath(f"destination {current} is a file; {relative!r} needs a directory there")
