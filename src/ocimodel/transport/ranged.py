"""One large blob fetched over several connections (HTTP Range) into a file, verified.

The blob is cut into parts of :data:`PART_BYTES`; each of ``connections`` threads takes the
next part not yet taken (in order, so the parts in flight are always near the front) and
writes what it receives straight into the file at the part's place (``os.pwrite``). The
calling thread hashes the file in order, as its prefix completes: it reads back (from the
page cache, into one reused buffer) whatever lies between what it hashed and the end of
the first unfinished part's received bytes, so hashing runs while the rest downloads.

Nothing here lets the caller use the file before its digest matched: :func:`fetch_into`
returns only after the whole blob was hashed and compared, and raises otherwise (the
caller removes the file). Memory is flat: each connection holds the pieces the HTTP
library hands over (64 KiB), the hasher one buffer of :data:`HASH_READ_BYTES`.

A cut connection resumes its own part from the last byte it wrote (a new Range request);
the digest over the whole file then covers the resumed bytes too. A registry (or a
storage service it redirects to) that answers a Range request with 200 and the whole
body does not do ranges: :func:`fetch_into` returns False at once, having kept nothing,
and the caller fetches the blob as one stream instead.

Why these numbers: docs/ranged-pulls.md (measured against the test registry)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import httpx

from ocimodel import settings
from ocimodel.errors import (
    DigestMismatch,
    OcimodelError,
    RegistryError,
    SizeMismatch,
    TransportError,
    printable,
)
from ocimodel.oci.digest import algorithm_of, new_hasher
from ocimodel.oci.reference import is_loopback_host
from ocimodel.transport import retry
from ocimodel.transport.body import body_chunks
from ocimodel.transport.client import RegistryClient
from ocimodel.transport.deadline import read_timed_out

# See docs/ranged-pulls.md for the measurements behind each.
PART_BYTES = 16 << 20
MIN_BYTES = 64 << 20  # below this a blob is one stream: the parts would be too few to overlap
HASH_READ_BYTES = 1 << 20
PROGRESS_STEP = 1 << 20  # parts report progress (and wake the hasher) once per this many bytes
# A worker that outlives a failure (stuck in a read until its timeout) is not waited for
# longer than this: it writes only through its own duplicate of the file descriptor.
JOIN_GRACE = 2.0


class _Stop(Exception):
    """Internal: another part failed, or the transfer was cancelled."""


class _Ignored(Exception):
    """Internal: the server answered a Range request with the whole blob."""


# Connections per large blob when OCIMODEL_PULL_CONNECTIONS is not set: one for a registry
# on this machine (loopback), whose own CPU competes with ours, where parts measured slower
# than one stream; several elsewhere, where one connection can be held back by latency or
# by the server (docs/ranged-pulls.md).
LOOPBACK_CONNECTIONS = 1
REMOTE_CONNECTIONS = 4


def connections(registry: str) -> int:
    """Connections one large blob from ``registry`` is fetched over (1: one stream)."""
    return settings.pull_connections(LOOPBACK_CONNECTIONS if is_loopback_host(registry) else REMOTE_CONNECTIONS)


def wanted(registry: str, size: int) -> bool:
    """Whether a blob of ``size`` bytes from ``registry`` is fetched in parts."""
    return size >= MIN_BYTES and connections(registry) > 1


def fetch_into(
    client: RegistryClient,
    repository: str,
    digest: str,
    size: int,
    fd: int,
    *,
    count: int | None = None,
    part_bytes: int | None = None,
    cancelled: Callable[[], bool] | None = None,
    advanced: Callable[[int], None] | None = None,
) -> bool:
    """Fetch the blob into ``fd`` (open for reading and writing, empty) and check its digest.

    True: the file holds exactly the blob, verified. False: the server does not honour
    Range; the file may hold some bytes, none of them to be used (fetch the blob as one
    stream instead). Raises :class:`DigestMismatch` when the bytes do not match, and a
    :class:`TransportError` (not transient: each part already resumed as often as the
    retry policy allows) when a part cannot be completed. ``advanced(n)`` reports bytes
    written, possibly from several threads."""
    count = connections(client.registry) if count is None else count
    part_bytes = PART_BYTES if part_bytes is None else part_bytes
    parts = [(start, min(start + part_bytes, size)) for start in range(0, size, part_bytes)]
    received = [0] * len(parts)
    lock = threading.Condition()
    state = {"next": 0, "failure": None}  # next part to take; first failure (an exception)
    stop = threading.Event()
    if advanced is not None:  # parts report from several threads; progress is counted in one
        reporting, report_to = threading.Lock(), advanced

        def advanced(n: int) -> None:
            with reporting:
                report_to(n)

    def should_stop() -> bool:
        return stop.is_set() or (cancelled is not None and cancelled())

    def fail(exc: BaseException) -> None:
        with lock:
            if state["failure"] is None:
                state["failure"] = exc
            stop.set()
            lock.notify_all()

    def worker() -> None:
        own = os.dup(fd)  # a worker left behind after a failure never writes into a reused fd
        try:
            while not should_stop():
                with lock:
                    index = state["next"]
                    if index >= len(parts):
                        return
                    state["next"] = index + 1
                _fetch_part(client, repository, digest, size, own, parts[index], index, received, lock,
                            should_stop, advanced)
        except _Stop:
            pass
        except BaseException as exc:  # reported by the hashing thread
            fail(exc)
        finally:
            os.close(own)

    threads = [threading.Thread(target=worker, name=f"ocimodel-part-{n}", daemon=True)
               for n in range(min(count, len(parts)))]
    for thread in threads:
        thread.start()
    try:
        actual = _hash_in_order(fd, digest, size, parts, received, lock, state, should_stop)
    except _Ignored:
        return False
    finally:
        stop.set()
        with lock:
            lock.notify_all()
        grace_ends = time.monotonic() + JOIN_GRACE  # for all of them together
        for thread in threads:
            thread.join(max(0.0, grace_ends - time.monotonic()))
    if actual != digest:
        raise DigestMismatch(digest, actual, f"blob {digest}")
    return True


def _hash_in_order(fd, digest, size, parts, received, lock, state, should_stop) -> str:
    """Hash the file from its start as its prefix completes; the digest of all ``size`` bytes."""
    hasher = new_hasher(digest)
    buffer = memoryview(bytearray(HASH_READ_BYTES))
    part_bytes = parts[0][1] - parts[0][0] if parts else 1
    hashed = 0
    while hashed < size:
        with lock:
            while True:
                failure = state["failure"]
                if failure is not None:
                    raise failure
                if should_stop():
                    raise _Cancelled()
                index = hashed // part_bytes
                ready = parts[index][0] + received[index]
                if ready > hashed:
                    break
                lock.wait(0.5)  # woken by the part; the timeout only re-checks cancellation
        while hashed < ready:
            want = min(HASH_READ_BYTES, ready - hashed)
            got = os.preadv(fd, [buffer[:want]], hashed)
            if got <= 0:
                raise TransportError(f"blob {digest}: its staging file is shorter than what was written")
            hasher.update(buffer[:got])
            hashed += got
    return f"{algorithm_of(digest)}:{hasher.hexdigest()}"


class _Cancelled(OcimodelError):
    """The copy was cancelled (another blob failed, or Ctrl-C)."""


def _fetch_part(client, repository, digest, size, fd, part, index, received, lock, should_stop, advanced) -> None:
    """Fetch one part into ``fd`` at its place, resuming from the last byte written when the
    connection is cut, as often as the retry policy allows."""
    start, end = part
    length = end - start
    got = 0
    cuts = 0
    what = f"blob {digest} bytes {start}-{end - 1}"
    while got < length:
        if should_stop():
            raise _Stop()
        response = client.open_blob_range(repository, digest, start + got, end - 1, size)
        if response is None:
            raise _Ignored()
        unreported = 0
        try:
            for chunk in body_chunks(response, client.read_timeout):
                if should_stop():
                    raise _Stop()
                n = len(chunk)
                if got + n > length:
                    raise RegistryError(f"{what}: the server sent more bytes than asked for")
                view = memoryview(chunk)
                while view:  # a regular file takes it whole; the loop is for the odd short write
                    written = os.pwrite(fd, view, start + got)
                    view = view[written:]
                    got += written
                unreported += n
                if unreported >= PROGRESS_STEP:
                    with lock:
                        received[index] = got
                        lock.notify_all()
                    if advanced is not None:
                        advanced(unreported)
                    unreported = 0
            if got < length:  # the server ended the body early without an error
                raise httpx.RemoteProtocolError("body ended before the part did")
        except httpx.HTTPError as exc:
            cuts += 1
            if cuts >= client.retry.attempts:
                if isinstance(exc, httpx.TimeoutException):
                    error = read_timed_out(client.registry, what, client.read_timeout, cuts)
                else:
                    error = TransportError(
                        f"connection to {client.registry} failed while reading {what}: {printable(str(exc) or type(exc).__name__)}",
                        hint="check the network, or retry",
                    )
                error.transient = False  # this part's tries are spent: no restart of the blob on top
                raise error from None
            client.stats.record("resume")
            retry.wait(client.retry, cuts, f"GET {what} from byte {start + got}", type(exc).__name__)
        finally:
            response.close()
            if unreported:
                with lock:
                    received[index] = got
                    lock.notify_all()
                if advanced is not None:
                    advanced(unreported)
    if got != length:
        raise SizeMismatch(digest, size, f"part {start}-{end - 1} of {got} bytes")
