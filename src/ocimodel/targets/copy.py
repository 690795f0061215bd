"""The one engine that moves a manifest graph between two targets.

Push (directory -> store), pull (store -> directory) and copy (store -> store) all run
here: blobs first, in parallel, skipping what the destination has; then manifests,
children before parents, the tagged root last, so no tag ever points at a partial model.
Every byte read from the source is hashed on the way through and checked against its
descriptor before the destination is allowed to keep it."""

from __future__ import annotations

import collections
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from ocimodel.chunks import read_chunks
from ocimodel.errors import (
    DigestMismatch,
    InvalidManifest,
    OcimodelError,
    PackagingError,
    SizeMismatch,
)
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import algorithm_of, digest_bytes, new_hasher
from ocimodel.oci.models import Descriptor, Index, parse_manifest
from ocimodel.targets.base import (
    FileReceiver,
    Mounter,
    PartFetcher,
    ReadableTarget,
    UnhashedPusher,
    WritableTarget,
)
from ocimodel.threads import wait_for
from ocimodel.transport import retry as retry_module
from ocimodel.transport.retry import RetryPolicy

DEFAULT_CONCURRENCY = 4
T = TypeVar("T")
# Indexes of indexes are legal but a cycle or a deep chain is an attack, not a model.
MAX_GRAPH_DEPTH = 8
# Manifests of a graph are held in memory until the copy ends: bound them (a hostile index
# could name thousands of 4 MiB manifests).
MAX_GRAPH_MANIFESTS = 10_000
MAX_GRAPH_MANIFEST_BYTES = 64 * 1024 * 1024


class Progress(Protocol):
    """What the copy engine reports; the CLI draws bars from it, the API may ignore it.
    Methods are called from worker threads."""

    def transfer_started(self, blobs: list[Descriptor]) -> None: ...

    def blob_started(self, descriptor: Descriptor, label: str) -> None: ...

    def blob_advanced(self, descriptor: Descriptor, nbytes: int) -> None: ...

    def blob_finished(self, descriptor: Descriptor, skipped: bool) -> None: ...


class Cancelled(OcimodelError):
    """Another transfer in the same copy failed, or the user interrupted."""


@dataclass
class TransferResult:
    descriptor: Descriptor | None = None  # the root of a graph copy
    copied: list[Descriptor] = field(default_factory=list)
    skipped: list[Descriptor] = field(default_factory=list)
    mounted: list[Descriptor] = field(default_factory=list)  # linked from a sibling repository
    restarts: int = 0  # blob transfers started over after a failure that passed

    @property
    def bytes_copied(self) -> int:
        return sum(d.size for d in self.copied)

    @property
    def bytes_skipped(self) -> int:
        return sum(d.size for d in self.skipped)


@dataclass
class Graph:
    """A root manifest and everything it names, as read (and verified) from the source."""

    root: Descriptor
    manifests: list[tuple[Descriptor, bytes]]  # children before parents; root last
    blobs: list[Descriptor]  # unique by digest, in manifest order


def read_graph(source: ReadableTarget, root: Descriptor) -> Graph:
    manifests: list[tuple[Descriptor, bytes]] = []
    blobs: dict[str, Descriptor] = {}
    seen: set[str] = set()
    held = [0]  # manifest bytes read so far

    def visit(descriptor: Descriptor, depth: int) -> None:
        if depth > MAX_GRAPH_DEPTH:
            raise InvalidManifest(f"manifest graph deeper than {MAX_GRAPH_DEPTH} levels at {descriptor.digest}")
        if descriptor.digest in seen:
            return
        seen.add(descriptor.digest)
        if len(seen) > MAX_GRAPH_MANIFESTS:
            raise InvalidManifest(f"manifest graph names more than {MAX_GRAPH_MANIFESTS} manifests")
        data = source.fetch_manifest(descriptor)
        held[0] += len(data)
        if held[0] > MAX_GRAPH_MANIFEST_BYTES:
            raise InvalidManifest(f"manifest graph holds more than {MAX_GRAPH_MANIFEST_BYTES} bytes of manifests")
        parsed = parse_manifest(data, descriptor.media_type)
        if isinstance(parsed, Index):
            for child in parsed.manifests:
                if child.media_type not in mt.MANIFEST_TYPES + mt.INDEX_TYPES:
                    raise InvalidManifest(f"index {descriptor.digest} names a non-manifest {child.media_type!r}")
                visit(child, depth + 1)
        else:
            for blob in [parsed.config, *parsed.layers]:
                blobs.setdefault(blob.digest, blob)
        manifests.append((descriptor, data))

    visit(root, 0)
    return Graph(root=root, manifests=manifests, blobs=list(blobs.values()))


def copy_graph(
    source: ReadableTarget,
    destination: WritableTarget,
    root: Descriptor,
    *,
    tag: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
    graph: Graph | None = None,
    retry: RetryPolicy | None = None,
) -> TransferResult:
    """Copy ``root`` and all it names from ``source`` to ``destination``, tagging the root."""
    graph = graph or read_graph(source, root)
    result = TransferResult(descriptor=root)
    copy_blobs(source, destination, graph.blobs, result, concurrency=concurrency, progress=progress, retry=retry)
    for descriptor, data in graph.manifests:
        is_root = descriptor.digest == root.digest
        if not is_root and destination.has_manifest(descriptor):
            continue
        destination.push_manifest(descriptor, data, tag if is_root else None)
    return result


def copy_blobs(
    source: ReadableTarget,
    destination: WritableTarget,
    blobs: list[Descriptor],
    result: TransferResult,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
    retry: RetryPolicy | None = None,
) -> None:
    cancel = threading.Event()
    lock = threading.Lock()
    policy = retry or RetryPolicy.from_environment()
    # Optional: a store that can link a blob from the source without moving it says so by
    # being a Mounter (see that protocol for why it is not a hook passed in).
    mount = destination.mount_from if isinstance(destination, Mounter) else None
    if progress:
        progress.transfer_started(blobs)

    def transfer(descriptor: Descriptor) -> None:
        label = descriptor.annotation(mt.ANNOTATION_TITLE) or _short(descriptor.digest)
        if cancel.is_set():
            raise Cancelled("cancelled")
        if destination.has_blob(descriptor):
            with lock:
                result.skipped.append(descriptor)
            if progress:
                progress.blob_started(descriptor, label)
                progress.blob_finished(descriptor, skipped=True)
            return
        if mount is not None and mount(descriptor, source):
            # Same registry, other repository: linked in place, no bytes moved.
            with lock:
                result.mounted.append(descriptor)
            if progress:
                progress.blob_started(descriptor, label)
                progress.blob_finished(descriptor, skipped=True)
            return
        if progress:
            progress.blob_started(descriptor, label)
        restarts = _transfer_with_restarts(source, destination, descriptor, policy, cancel, progress)
        with lock:
            result.restarts += restarts
            result.copied.append(descriptor)
        if progress:
            progress.blob_finished(descriptor, skipped=False)

    schedule = _Schedule(blobs, concurrency)
    run_parallel([None] * len(blobs), lambda _: schedule.run(transfer), concurrency, cancel)


class _Schedule:
    """The order blobs are transferred in: about half the workers take the largest blob
    left, the others the smallest. A big blob started last would finish alone while the
    other workers idle; and a small blob costs the registry a request (~3.5 ms of its CPU
    for a GET) while a big one costs this process hashing and writing, so running both
    kinds at once keeps both sides busy (see "Profiling notes: pull" in
    benchmarks/README.md)."""

    def __init__(self, blobs: list[Descriptor], concurrency: int) -> None:
        self._left = collections.deque(sorted(blobs, key=lambda d: d.size, reverse=True))
        self._big_slots = max(1, (concurrency + 1) // 2)
        self._big_running = 0
        self._lock = threading.Lock()

    def run(self, work: Callable[[Descriptor], None]) -> None:
        with self._lock:
            big = self._big_running < self._big_slots
            descriptor = self._left.popleft() if big else self._left.pop()
            self._big_running += big
        try:
            work(descriptor)
        finally:
            if big:
                with self._lock:
                    self._big_running -= 1


def upload_unhashed(
    destination: UnhashedPusher,
    files: list[tuple[str, Path, int]],
    result: TransferResult,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
    retry: RetryPolicy | None = None,
) -> dict[str, tuple[str, os.stat_result | None]]:
    """Upload files whose digests are not known, hashing them on the way (one read
    instead of two). ``files`` are (label, path, size). A transient failure starts
    that file over; the others are not touched. Returns {label: (digest,
    stat)}, the stat None for a file that changed while it was read."""
    policy = retry or RetryPolicy.from_environment()
    cancel = threading.Event()
    lock = threading.Lock()
    digests: dict[str, tuple[str, os.stat_result | None]] = {}
    # Progress is keyed by descriptor; until a file's digest is known it is keyed by a
    # stand-in digest derived from its label (never stored or sent anywhere).
    keys = {label: Descriptor(mediaType="application/octet-stream", digest=digest_bytes(label.encode()), size=size)
            for label, _, size in files}
    if progress:
        progress.transfer_started(list(keys.values()))

    def upload(item: tuple[str, Path, int]) -> None:
        label, path, size = item
        key = keys[label]
        if progress:
            progress.blob_started(key, label)
        for attempt in range(1, policy.attempts + 1):
            moved = _Counter(progress)
            try:
                with open(path, "rb") as handle:
                    before = os.fstat(handle.fileno())
                    digest = destination.push_unhashed(size, _counted(read_chunks(handle), key, cancel, moved))
                    after = os.fstat(handle.fileno())
                break
            except OSError as exc:
                raise PackagingError(f"cannot read {path}: {exc.strerror}") from None
            except OcimodelError as exc:
                if not exc.transient or attempt == policy.attempts or cancel.is_set():
                    raise
                if progress and moved.total:
                    progress.blob_advanced(key, -moved.total)
                with lock:
                    result.restarts += 1
                retry_module.wait(policy, attempt, f"upload of {label}", exc.message)
        with lock:
            # The stat the file had while it was read, if it did not change meanwhile: what
            # a digest cache may remember the digest under.
            digests[label] = (digest, before if _unchanged(before, after) else None)
            result.copied.append(Descriptor(mediaType="application/octet-stream", digest=digest, size=size))
        if progress:
            progress.blob_finished(key, skipped=False)

    run_parallel(files, upload, concurrency, cancel)
    return digests


def _unchanged(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns
    )


def _counted(chunks: Iterable[bytes], key: Descriptor, cancel: threading.Event, moved: _Counter) -> Iterator[bytes]:
    # Counted as each chunk is handed over, not after: a progress callback that stops the
    # transfer then does so before the last byte leaves, never between the body's end and
    # the registry's answer, when the upload may be complete and its cancel would race it.
    for chunk in chunks:
        if cancel.is_set():
            raise Cancelled("cancelled")
        moved.blob_advanced(key, len(chunk))
        yield chunk


def run_parallel(items: list[T], work: Callable[[T], None], concurrency: int, cancel: threading.Event) -> None:
    """Run ``work`` on every item with up to ``concurrency`` threads; the first failure
    (not a cancellation it caused) is raised after the others stopped.

    Daemon threads, not a ThreadPoolExecutor (whose workers the interpreter joins at
    exit): after a failure or Ctrl-C the workers stop at their next chunk, and one stuck
    in a stalled socket read or write is left behind after a short grace instead of
    holding up the error, Ctrl-C and the exit of the process until its timeout."""
    if concurrency <= 1 or len(items) <= 1:
        for item in items:
            if cancel.is_set():
                raise Cancelled("cancelled")
            work(item)
        return
    cancel_grace = 2.0  # seconds
    lock = threading.Lock()
    pending = list(reversed(items))  # popped from the end: in order
    errors: list[BaseException] = []
    running = [min(concurrency, len(items))]
    all_done = threading.Event()  # every worker has returned
    stop_waiting = threading.Event()  # every worker has returned, or one failed

    def worker() -> None:
        try:
            while not cancel.is_set():
                with lock:
                    if not pending:
                        return
                    item = pending.pop()
                try:
                    work(item)
                except BaseException as exc:  # reported by the main thread
                    with lock:
                        errors.append(exc)
                    cancel.set()
                    stop_waiting.set()
                    return
        finally:
            with lock:
                running[0] -= 1
                if running[0] == 0:
                    all_done.set()
                    stop_waiting.set()

    for number in range(running[0]):
        threading.Thread(target=worker, name=f"ocimodel-copy-{number}", daemon=True).start()
    try:
        wait_for(stop_waiting)  # in slices: see ocimodel.threads
    except BaseException:  # Ctrl-C in the main thread
        cancel.set()
        wait_for(all_done, cancel_grace)
        raise
    if errors:
        wait_for(all_done, cancel_grace)
        with lock:
            failures = list(errors)
        raise next((e for e in failures if not isinstance(e, Cancelled)), failures[0])


def _transfer_with_restarts(
    source: ReadableTarget,
    destination: WritableTarget,
    descriptor: Descriptor,
    policy: RetryPolicy,
    cancel: threading.Event,
    progress: Progress | None,
) -> int:
    """Move one blob; on a failure that may pass (a cut connection, a killed upload
    session, a 5xx), start that blob over: neither stream can be rewound. Blobs already
    done are not touched, and nothing is retried after a digest mismatch. Returns the
    number of restarts."""
    for attempt in range(1, policy.attempts + 1):
        moved = _Counter(progress)
        try:
            if not _fetched_in_parts(source, destination, descriptor, cancel, moved):
                with source.open_blob(descriptor) as chunks:
                    destination.push_blob(descriptor, verified(chunks, descriptor, cancel, moved))
            return attempt - 1
        except OcimodelError as exc:
            if not exc.transient or attempt == policy.attempts or cancel.is_set():
                raise
            if progress and moved.total:
                progress.blob_advanced(descriptor, -moved.total)  # the bar starts this blob over
            retry_module.wait(policy, attempt, f"blob {descriptor.digest}", exc.message)


def _fetched_in_parts(
    source: ReadableTarget, destination: WritableTarget, descriptor: Descriptor, cancel: threading.Event, moved: _Counter,
) -> bool:
    """A large blob from a registry into a pull's staging file: fetched over several
    connections straight into the file it will be, and verified by the source before the
    destination keeps it (transport/ranged.py). False when either side cannot (or the
    registry ignores Range): then it goes as a stream, the progress of this try undone."""
    if not (isinstance(source, PartFetcher) and isinstance(destination, FileReceiver)
            and source.fetches_in_parts(descriptor)):
        return False

    def fill(fd: int) -> bool:
        return source.fetch_into(descriptor, fd, cancel.is_set, lambda n: moved.blob_advanced(descriptor, n))

    try:
        done = destination.receive_file(descriptor, fill)
    except OcimodelError:
        if cancel.is_set():
            raise Cancelled("cancelled") from None  # the failure that cancelled us is the one reported
        raise
    if not done and moved.total:
        moved.blob_advanced(descriptor, -moved.total)
        moved.total = 0
    return done


class _Counter:
    """Passes progress on and remembers how much this attempt reported."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.total = 0

    def blob_advanced(self, descriptor: Descriptor, nbytes: int) -> None:
        self.total += nbytes
        if self.progress:
            self.progress.blob_advanced(descriptor, nbytes)


# Sources yield pieces as they arrive (64 KiB from a socket); the progress bars are moved
# once per this many bytes instead of for every piece.
PROGRESS_STEP = 1024 * 1024
# A blob at least this big is hashed in a helper thread while the worker receives and
# writes it: hashlib releases the GIL, so the two overlap on two cores (hashing was a
# quarter of a 1 GiB pull's time, see benchmarks/README.md). Pieces go to the helper in
# batches of HASH_BATCH_BYTES, at most HASH_QUEUE_BATCHES of them waiting: a bounded few
# MiB per blob, whatever its size.
BACKGROUND_HASH_MIN_BYTES = 16 * 1024 * 1024
HASH_BATCH_BYTES = 1024 * 1024
HASH_QUEUE_BATCHES = 4
# A bytes piece at least this long goes to the hash thread as it is, not copied (see _HashThread).
HAND_OVER_BYTES = 256 * 1024


def verified(
    chunks: Iterable[bytes],
    descriptor: Descriptor,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """Pass chunks through while hashing them; raise before the last chunk is released if
    the bytes do not match the descriptor, so the consumer never commits bad data.

    Bytes are counted as they arrive: a body longer than announced is refused at its first
    extra byte (docs/threats.md 3)."""
    digest, size = descriptor.digest, descriptor.size
    hasher = _HashThread(digest) if size >= BACKGROUND_HASH_MIN_BYTES else new_hasher(digest)
    update = hasher.update
    cancelled = cancel.is_set if cancel is not None else None
    pending: bytes | None = None
    seen = 0
    unreported = 0  # bytes released but not yet reported: progress goes in steps, not per chunk
    try:
        for chunk in chunks:
            if cancelled is not None and cancelled():
                raise Cancelled("cancelled")
            if not chunk:
                continue
            seen += len(chunk)
            if seen > size:
                raise SizeMismatch(digest, size, f"more than {size}")
            update(chunk)
            if pending is not None:
                # Reported before it is released (see _counted): a callback that stops the
                # transfer never does so between the body's last byte and the answer.
                unreported += len(pending)
                if progress and unreported >= PROGRESS_STEP:
                    progress.blob_advanced(descriptor, unreported)
                    unreported = 0
                yield pending
            pending = chunk
        if seen != size:
            raise SizeMismatch(digest, size, seen)
        actual = f"{algorithm_of(digest)}:{hasher.hexdigest()}"
        if actual != digest:
            raise DigestMismatch(digest, actual, f"blob {digest}")
    finally:
        if isinstance(hasher, _HashThread):
            hasher.close()
    if pending is not None:
        unreported += len(pending)
    if progress and unreported:
        progress.blob_advanced(descriptor, unreported)
    if pending is not None:
        yield pending


class _HashThread:
    """A hash computed by a helper thread.

    hashlib releases the GIL while it hashes, so the helper's hashing overlaps the
    worker's reading and writing. A large ``bytes`` piece (a socket read: up to 1 MiB,
    transport/body.py) is handed over as it is: it cannot change, so no copy is needed.
    Small or mutable pieces are copied into a few fixed buffers and each buffer is hashed
    in one call, so the helper gives up and takes back the GIL once per HASH_BATCH_BYTES
    rather than once per piece (feeding it every 64 KiB piece made the two threads fight
    over the GIL and cost more CPU than hashing inline). At most HASH_QUEUE_BATCHES items
    wait for the helper: the worker waits when it is that far behind, so memory is a
    bounded few MiB per blob, whatever its size."""

    def __init__(self, digest: str) -> None:
        self._hash = new_hasher(digest)
        self._full: queue.Queue[tuple[memoryview | bytes, int, bool] | None] = queue.Queue()
        # One slot per item waiting or being hashed (a buffer, or a piece handed over).
        self._slots = threading.Semaphore(HASH_QUEUE_BATCHES)
        self._free: queue.Queue[memoryview] = queue.Queue()
        self._buffer: memoryview | None = None
        self._filled = 0
        self._stopped = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ocimodel-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        update = self._hash.update
        try:
            while (item := self._full.get()) is not None and not self._stopped:
                data, length, reused = item
                update(data[:length] if reused else data)
                if reused:
                    self._free.put(data)  # type: ignore[arg-type]
                self._slots.release()
        except BaseException as exc:  # re-raised in the worker by hexdigest()
            self._error = exc

    def update(self, chunk: bytes) -> None:
        if type(chunk) is bytes and len(chunk) >= HAND_OVER_BYTES:
            self._flush()  # what was batched before it is hashed first
            self._take_slot()
            self._full.put((chunk, len(chunk), False))
            return
        view = memoryview(chunk)
        while view:
            if self._buffer is None:
                self._take_slot()
                try:
                    self._buffer = self._free.get_nowait()
                except queue.Empty:
                    self._buffer = memoryview(bytearray(HASH_BATCH_BYTES))
            room = HASH_BATCH_BYTES - self._filled
            piece = view[:room]
            self._buffer[self._filled : self._filled + len(piece)] = piece
            self._filled += len(piece)
            view = view[len(piece) :]
            if self._filled == HASH_BATCH_BYTES:
                self._flush()

    def _flush(self) -> None:
        if self._buffer is not None:
            self._full.put((self._buffer, self._filled, True))
            self._buffer = None
            self._filled = 0

    def hexdigest(self) -> str:
        self._flush()
        self._full.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._hash.hexdigest()

    def close(self) -> None:
        """Stop the helper (done, or the transfer failed); never blocks."""
        self._stopped = True
        self._full.put(None)

    def _take_slot(self) -> None:
        while not self._slots.acquire(timeout=1.0):
            if not self._thread.is_alive():
                raise self._error or RuntimeError("hash thread stopped")


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]

