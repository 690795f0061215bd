"""Transfer progress, drawn on stderr so stdout stays clean for --json and pipes.

On a terminal, bars (:class:`TransferBars`): one overall bar (bytes, speed) and a bar per
file in flight. Elsewhere (a CI log, a file, a pipe) bars cannot be drawn, and printing
nothing left a log silent for the minutes a large transfer takes: :class:`PlainLines`
prints one line every few seconds with the bytes done, the total and the rate, and a last
line when the transfer is done. The CLI picks one from ``--progress`` / OCIMODEL_PROGRESS
(see :func:`reporter`)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Self, TextIO

from ocimodel.errors import escape_controls

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

    from ocimodel.oci.models import Descriptor

MODES = ("auto", "plain", "none")

# Below this size a file finishes before a bar could be seen; it only moves the total.
PER_FILE_BAR_MIN_BYTES = 4 * 1024 * 1024


def reporter(mode: str, verb: str, console: Console | None, stream: TextIO | None, interval: float) -> TransferBars | PlainLines | None:
    """What reports a transfer in ``mode``: "none" nothing; "plain" lines on ``stream``;
    "auto" bars on ``console`` when it is a terminal (None: not one), else plain lines."""
    if mode == "none":
        return None
    if mode == "auto" and console is not None:
        return TransferBars(console, verb)
    return PlainLines(stream, verb, interval=interval)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f} B"  # pragma: no cover - the loop always returns


class PlainLines:
    """The copy engine's Progress protocol as lines of text, for logs: every ``interval``
    seconds while bytes are expected, ``VERB: DONE of TOTAL (P%), I of N blobs, RATE/s,
    T s``, and the same line with ``done`` when the transfer ends well (also for a transfer
    shorter than the interval, so a log always says what moved). A failure prints no last
    line: the error is the last word. The rate of a periodic line is over the last
    interval; of the last line, over the whole transfer, counting only bytes moved (not
    blobs the destination already had)."""

    def __init__(self, stream: TextIO | None, verb: str, *, interval: float = 5.0, clock=time.monotonic) -> None:
        self._stream = stream  # None: stderr is closed (Python sets sys.stderr to None)
        self._verb = verb
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started: float | None = None
        self._total = 0
        self._count = 0
        self._done = 0  # bytes accounted for: moved, or already at the destination
        self._moved = 0  # bytes actually transferred (restarts subtract)
        self._finished = 0
        self._last = (0.0, 0)  # (time, moved) of the previous line, for its rate

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="ocimodel-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if exc_type is None and self._started is not None:
            self._print(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if self._started is not None:
                self._print(final=False)

    def _print(self, *, final: bool) -> None:
        now = self._clock()
        with self._lock:
            started = self._started if self._started is not None else now
            elapsed = max(now - started, 0.0)
            if final:
                rate = self._moved / elapsed if elapsed > 0 else 0.0
            else:
                since, moved_then = self._last
                span = now - (since or started)
                rate = (self._moved - moved_then) / span if span > 0 else 0.0
                self._last = (now, self._moved)
            percent = 100 if self._total == 0 else min(100, int(self._done * 100 / self._total))
            line = (
                f"{self._verb}: {'done: ' if final else ''}{_size(self._done)} of {_size(self._total)} "
                f"({percent}%), {self._finished} of {self._count} blobs, {_size(rate)}/s, {elapsed:.0f} s"
            )
        # One write per line, flushed: lines from this thread and the CLI's never interleave
        # within a line, and a log shows each as soon as it is printed. Progress is never
        # worth failing a transfer for: a closed or broken stderr only silences it.
        if self._stream is None:
            return
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            self._stream = None

    def transfer_started(self, blobs: list[Descriptor]) -> None:
        """A push announces its files in two steps (those uploaded while hashed, then the
        rest), and a copy with referrers one step per artifact: they add up."""
        with self._lock:
            if self._started is None:
                self._started = self._clock()
                self._last = (self._started, 0)
            self._count += len(blobs)
            self._total += sum(d.size for d in blobs)

    def blob_started(self, descriptor: Descriptor, label: str) -> None:
        pass

    def blob_advanced(self, descriptor: Descriptor, nbytes: int) -> None:
        with self._lock:
            self._done += nbytes
            self._moved += nbytes

    def blob_finished(self, descriptor: Descriptor, skipped: bool) -> None:
        with self._lock:
            self._finished += 1
            if skipped:
                self._done += descriptor.size


class TransferBars:
    """Implements the copy engine's Progress protocol with rich bars."""

    def __init__(self, console: Console, verb: str) -> None:
        # rich is loaded here: plain lines and no progress do without it.
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._verb = verb
        self._bars = Progress(
            TextColumn("{task.description}", justify="left", markup=False),  # file names are not markup
            BarColumn(bar_width=None),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            refresh_per_second=8,
        )
        self._total: TaskID | None = None
        self._count = 0
        self._files: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> TransferBars:
        self._bars.start()
        return self

    def __exit__(self, *exc) -> None:
        self._bars.stop()

    def transfer_started(self, blobs: list[Descriptor]) -> None:
        """One overall bar per command: a push announces its files in two steps (those
        uploaded while hashed, then the rest), which add up on the same bar."""
        total = sum(d.size for d in blobs)
        with self._lock:
            if self._total is None:
                self._count = len(blobs)
                self._total = self._bars.add_task(f"{self._verb} {self._count} blobs", total=total or 1)
                return
            self._count += len(blobs)
            task = self._bars.tasks[[t.id for t in self._bars.tasks].index(self._total)]
            self._bars.update(self._total, total=(task.total or 0) + total, description=f"{self._verb} {self._count} blobs")

    def blob_started(self, descriptor: Descriptor, label: str) -> None:
        if descriptor.size < PER_FILE_BAR_MIN_BYTES:
            return
        with self._lock:
            label = escape_controls(label, one_line=True)  # a user's file name: shown as named, never acted on
            shown = label if len(label) <= 40 else "…" + label[-39:]
            self._files[descriptor.digest] = self._bars.add_task(f"  {shown}", total=descriptor.size)

    def blob_advanced(self, descriptor: Descriptor, nbytes: int) -> None:
        if self._total is not None:
            self._bars.advance(self._total, nbytes)
        task = self._files.get(descriptor.digest)
        if task is not None:
            self._bars.advance(task, nbytes)

    def blob_finished(self, descriptor: Descriptor, skipped: bool) -> None:
        if skipped and self._total is not None:
            self._bars.advance(self._total, descriptor.size)
        with self._lock:
            task = self._files.pop(descriptor.digest, None)
        if task is not None:
            self._bars.remove_task(task)
