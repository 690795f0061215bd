"""Transfer progress on the terminal: one overall bar (bytes, speed) and a bar per file in
flight. Drawn on stderr so stdout stays clean for --json and pipes."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

if TYPE_CHECKING:
    from ocimodel.oci.models import Descriptor

# Below this size a file finishes before a bar could be seen; it only moves the total.
PER_FILE_BAR_MIN_BYTES = 4 * 1024 * 1024


class TransferBars:
    """Implements the copy engine's Progress protocol with rich bars."""

    def __init__(self, console: Console, verb: str) -> None:
        self._verb = verb
        self._bars = Progress(
            TextColumn("{task.description}", justify="left"),
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
