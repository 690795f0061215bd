"""Writing the files a user names: ``export FILE``, ``signature export -o FILE``,
``key generate --output-key-prefix PREFIX``.

A path typed by a user may name something other than a file to fill: a symlink, a fifo, a
socket, a device (run as root, ``export REF /dev/full`` once replaced the device node with a
regular file), or a file somebody still needs. So every output goes through here, and:

- it is a regular file or nothing. Anything else at the path (a symlink, even a dangling
  one; a directory; a fifo; a socket; a device) is refused with :class:`UnsafeOutput` and
  left as it is: never followed, never replaced;
- an existing regular file is replaced only when the caller says so (``replace=True``, the
  CLI's ``--force``); otherwise :class:`OutputExists`;
- the bytes go to a temporary file beside the output (same filesystem), are synced, and are
  then put in place in one step: a reader never sees half a file, and an error or an
  interrupt leaves the old file (or nothing) and no temporary file;
- ``-`` is standard output: bytes for archives (refused when it is a terminal), text for
  JSON documents.

Only the last component of the path is checked: the directories above it are the user's
to arrange (a symlinked home directory or /tmp is common and harmless). This module is
infrastructure for the api and targets layers; it imports nothing of ocimodel but errors
and :mod:`ocimodel.atomicwrite`, whose temporary file (created exclusively, never through
a link) and put-in-place step it shares with every other file ocimodel writes."""

from __future__ import annotations

import errno
import functools
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ocimodel.atomicwrite import atomic_file
from ocimodel.errors import OutputError, OutputExists, UnsafeOutput, UsageError

STDOUT = "-"

# The temporary file's name: hidden, beside the output, and recognisably ours.
_TEMP_SUFFIX = ".tmp"
_NAME_ROOM = 200  # of the output's name kept in the temporary name (NAME_MAX is 255)
# link(2) fails with these where a filesystem has no hard links (FAT on a USB stick, the
# usual medium for carrying an export); then the output is renamed into place instead.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK})

_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a fifo (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
_REPLACE_HINT = "pass --force to replace it, or name another file"


def is_stdout(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``-``, standard output. ``./-`` is a file named ``-``."""
    return os.fspath(path) == STDOUT


def check_output(
    path: str | os.PathLike[str], *, replace: bool = False, example: str | None = None, terminal_ok: bool = True,
) -> None:
    """Refuse ``path`` unless it is free or (with ``replace``) a regular file; refuse
    ``-`` on a terminal unless ``terminal_ok``.

    Callers check before the work that produces the bytes (a download can take an hour),
    and :func:`open_output` checks again before the file is put in place. ``example`` is a
    file name to suggest when ``path`` is a directory."""
    if is_stdout(path):
        if not terminal_ok and sys.stdout is not None and sys.stdout.isatty():
            raise UsageError(
                "refusing to write an archive to a terminal",
                hint="redirect standard output (> model.tar, | ssh ...), or name a file instead of -",
            )
        return
    try:
        status = os.lstat(path)  # lstat: a symlink is judged as itself, never by its target
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    if stat.S_ISREG(status.st_mode):
        if not replace:
            raise OutputExists(str(path), hint=_REPLACE_HINT)
        return
    kind = next((name for test, name in _KINDS if test(status.st_mode)), "not a regular file")
    raise UnsafeOutput(str(path), kind, hint=_unsafe_hint(Path(path), status.st_mode, example))


def _unsafe_hint(path: Path, mode: int, example: str | None) -> str:
    if stat.S_ISLNK(mode):
        return "a link is never followed: name the file itself, or remove the link"
    if stat.S_ISDIR(mode):
        return f"name a file inside it, e.g. {path / (example or 'output')}"
    return "to write into a pipe or a device, give - and redirect standard output (e.g. > /dev/null)"


class OutputStream:
    """The output as ``tarfile`` and ``gzip`` use it: ``write``, ``flush`` and a ``tell``
    that counts (a pipe cannot tell). Write errors become :class:`OutputError`, naming the
    output rather than a temporary file."""

    def __init__(self, raw: BinaryIO, shown: str) -> None:
        self._raw = raw
        self._shown = shown
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        try:
            self._raw.write(data)
        except OSError as exc:
            raise _write_error(self._shown, exc) from None
        size = memoryview(data).nbytes
        self.written += size
        return size

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        try:
            self._raw.flush()
        except OSError as exc:
            raise _write_error(self._shown, exc) from None


def _write_error(shown: str, exc: OSError) -> OutputError:
    hint = "the program reading the pipe stopped early" if exc.errno == errno.EPIPE else None
    return OutputError(f"cannot write {shown}: {exc.strerror or exc}", hint=hint)


@contextmanager
def open_output(
    path: str | os.PathLike[str],
    *,
    replace: bool = False,
    mode: int = 0o644,
    terminal_ok: bool = True,
    example: str | None = None,
) -> Iterator[OutputStream]:
    """Write the output ``path`` in a ``with`` block: the file appears, whole and synced,
    when the block ends without an error, and not at all otherwise.

    ``mode`` is the file's permission bits (the umask does not apply: a private key gets
    0600 whatever it is). ``-`` writes to standard output as it goes, which cannot be taken
    back: an error part way leaves part of the bytes written. ``terminal_ok=False``
    refuses a terminal there (an archive is binary)."""
    if is_stdout(path):
        with _stdout_stream(terminal_ok) as stream:
            yield stream
        return
    target = Path(path)
    check_output(target, replace=replace, example=example)
    in_block = False
    try:
        # durable: an export is often carried away on removable media.
        with atomic_file(
            target, mode=mode, durable=True, prefix=f".{target.name[:_NAME_ROOM]}.", suffix=_TEMP_SUFFIX,
            place=functools.partial(_put_in_place, replace=replace, example=example),
        ) as file:
            stream = OutputStream(file.handle, str(target))
            in_block = True
            yield stream
            in_block = False
            stream.flush()
    except OSError as exc:
        if in_block:
            raise  # the caller's own error, not one writing the output
        raise _write_error(str(target), exc) from None


def write_output(
    path: str | os.PathLike[str], data: bytes, *, replace: bool = False, mode: int = 0o644,
    example: str | None = None,
) -> None:
    """Write ``data`` to the output ``path`` as :func:`open_output` does. On standard
    output a UTF-8 document (JSON) is written as text, after whatever was printed before."""
    if is_stdout(path):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and sys.stdout is not None:
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except OSError as exc:
                raise _write_error("standard output", exc) from None
            return
    with open_output(path, replace=replace, mode=mode, example=example) as stream:
        stream.write(data)


@contextmanager
def _stdout_stream(terminal_ok: bool) -> Iterator[OutputStream]:
    text = sys.stdout
    raw = getattr(text, "buffer", None)
    if raw is None:
        raise UsageError("standard output does not take bytes here", hint="name a file to write instead of -")
    check_output(STDOUT, terminal_ok=terminal_ok)
    stream = OutputStream(raw, "standard output")
    try:
        text.flush()  # what was printed as text comes first
    except OSError as exc:
        raise _write_error("standard output", exc) from None
    yield stream
    stream.flush()


def _put_in_place(tmp: Path, target: Path, *, replace: bool, example: str | None) -> None:
    if not replace:
        # link(2) never replaces anything, so "do not overwrite" holds even against a file,
        # a symlink or a device that appeared at the path while the output was written.
        try:
            os.link(tmp, target)
        except FileExistsError:
            check_output(target, replace=False, example=example)  # says what is there now
            raise OutputExists(str(target), hint=_REPLACE_HINT) from None  # it went again meanwhile
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise OutputError(f"cannot write {target}: {exc.strerror}") from None
        else:
            _unlink_quietly(tmp)
            return
    # Checked again just before the rename: something may have been put at the path while
    # the output was written. A window remains between this check and the rename (there
    # is no portable rename that refuses a non-regular destination); the worst a racing
    # process with write access to the directory can get is its node (or, without hard
    # links, a file) replaced by the output: the output is never written through a link or
    # into a device.
    check_output(target, replace=replace, example=example)
    try:
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror}") from None


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


__all__ = ["STDOUT", "OutputStream", "check_output", "is_stdout", "open_output", "write_output"]
