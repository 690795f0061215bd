"""The one engine that moves a manifest graph between two targets.

Push (directory -> store), pull (store -> directory) and copy (store -> store) all run
here: blobs first, in parallel, skipping what the destination has; then manifests,
children before parents, the tagged root last, so no tag ever points at a partial model.
Every byte read from the source is hashed on the way through and checked against its
descriptor before the destination is allowed to keep it."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ocimodel.errors import InvalidManifest, OcimodelError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import VerifyingHasher
from ocimodel.oci.models import Descriptor, Index, parse_manifest
from ocimodel.targets.base import ReadableTarget, WritableTarget
from ocimodel.transport import retry as retry_module
from ocimodel.transport.retry import RetryPolicy

DEFAULT_CONCURRENCY = 4
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
    descriptor: Descriptor
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
        mount = getattr(destination, "mount_from", None)
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

    if concurrency <= 1 or len(blobs) <= 1:
        for descriptor in blobs:
            transfer(descriptor)
        return
    # Daemon threads, not a ThreadPoolExecutor (whose workers the interpreter joins at
    # exit): after a failure or Ctrl-C the workers stop at their next chunk, and one stuck
    # in a stalled socket read or write is left behind after a short grace instead of
    # holding up the error, Ctrl-C and the exit of the process until its timeout.
    cancel_grace = 2.0  # seconds
    pending = list(reversed(blobs))  # popped from the end: in order
    errors: list[BaseException] = []
    running = [min(concurrency, len(blobs))]
    all_done = threading.Event()  # every worker has returned
    stop_waiting = threading.Event()  # every worker has returned, or one failed

    def worker() -> None:
        try:
            while not cancel.is_set():
                with lock:
                    if not pending:
                        return
                    descriptor = pending.pop()
                try:
                    transfer(descriptor)
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
        stop_waiting.wait()
    except BaseException:  # Ctrl-C in the main thread
        cancel.set()
        all_done.wait(cancel_grace)
        raise
    if errors:
        all_done.wait(cancel_grace)
        with lock:
            failures = list(errors)
        # Report the failure that caused the others to stop, not their cancellations.
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
            with source.open_blob(descriptor) as chunks:
                destination.push_blob(descriptor, verified(chunks, descriptor, cancel, moved))
            return attempt - 1
        except OcimodelError as exc:
            if not exc.transient or attempt == policy.attempts or cancel.is_set():
                raise
            if progress and moved.total:
                progress.blob_advanced(descriptor, -moved.total)  # the bar starts this blob over
            retry_module.wait(policy, attempt, f"blob {descriptor.digest}", exc.message)


class _Counter:
    """Passes progress on and remembers how much this attempt reported."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.total = 0

    def blob_advanced(self, descriptor: Descriptor, nbytes: int) -> None:
        self.total += nbytes
        if self.progress:
            self.progress.blob_advanced(descriptor, nbytes)


def verified(
    chunks: Iterable[bytes],
    descriptor: Descriptor,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """Pass chunks through while hashing them; raise before the last chunk is released if
    the bytes do not match the descriptor, so the consumer never commits bad data."""
    hasher = VerifyingHasher(descriptor.digest, descriptor.size)
    pending: bytes | None = None
    for chunk in chunks:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        if not chunk:
            continue
        hasher.update(chunk)
        if pending is not None:
            yield pending
            if progress:
                progress.blob_advanced(descriptor, len(pending))
        pending = chunk
    hasher.finish()
    if pending is not None:
        yield pending
        if progress:
            progress.blob_advanced(descriptor, len(pending))


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]

