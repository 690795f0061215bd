"""How long a registry request may take, and the line a user sees while one waits.

Two limits (docs/deadlines.md):

- No progress: a read waits at most ``OCIMODEL_READ_TIMEOUT`` seconds (default 300) for
  its next byte. That is the only limit on a blob body that keeps moving: a 20 GB layer
  on a slow link may take hours and must not be cut for being long.
- In all: a small request (a manifest, a tag list, a token, a HEAD, a referrers page,
  the wait for the answer to a blob GET: everything but a blob body) ends within
  ``OCIMODEL_REQUEST_TIMEOUT`` seconds (default 60), its retries included. Without it a
  registry that accepts connections and never answers held a command for 5 tries of 300
  seconds, with nothing on the screen.

The total is enforced where the waiting happens: each try gets the time that is left as
its connect/read/write timeouts, every socket read and write of the request is bounded
by the time left (a server trickling a byte at a time resets a read timeout forever, not
this), and no retry sleeps past it. The deadline of the request in progress is
thread-local, so the token fetch that the auth flow makes in the middle of a request
counts against that request.

While a request waits for its answer, :class:`WaitNotices` calls a callback once it has
waited ``NOTICE_AFTER`` seconds, so a command never sits silent for a minute (the CLI
prints the line on stderr; the Python API is silent unless asked)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpcore
import httpx

from ocimodel.errors import RequestTimeout

log = logging.getLogger("ocimodel.transport")

NOTICE_AFTER = 5.0  # seconds without an answer before the user is told
# Parallel transfers waiting on one stalled registry print one line, not one each.
NOTICE_QUIET = 30.0
CONNECT_TIMEOUT = 30.0
WRITE_TIMEOUT = 300.0
_SLACK = 0.05

_local = threading.local()


class Deadline:
    """The time one request may take in all (``seconds=None``: no total, only the
    no-progress read timeout). Created when the request starts; its retries share it."""

    __slots__ = ("at", "seconds", "started")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.at = None if seconds is None else self.started + seconds

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def passed(self) -> bool:
        # A timeout set to the time left may fire a hair early: count that as passed.
        return self.at is not None and time.monotonic() >= self.at - _SLACK

    def timeout(self, read: float) -> httpx.Timeout:
        """httpx timeouts for one try: the usual ones, none longer than the time left."""
        left = self.remaining()
        if left is None:
            return httpx.Timeout(connect=CONNECT_TIMEOUT, read=read, write=WRITE_TIMEOUT, pool=None)
        left = max(left, 0.001)
        return httpx.Timeout(
            connect=min(CONNECT_TIMEOUT, left), read=min(read, left), write=min(WRITE_TIMEOUT, left), pool=left
        )

    @contextmanager
    def active(self) -> Iterator[None]:
        """Make this the deadline of the request in progress in this thread (see
        :class:`GuardedBackend` and the token fetch)."""
        previous = getattr(_local, "deadline", None)
        _local.deadline = self
        try:
            yield
        finally:
            _local.deadline = previous


def current() -> Deadline | None:
    """The deadline of the request this thread is making, if any."""
    return getattr(_local, "deadline", None)


def request_timed_out(registry: str, what: str, seconds: float, tries: int) -> RequestTimeout:
    shown = f", {tries} tries" if tries > 1 else ""
    return RequestTimeout(
        f"{registry} did not answer within {seconds:g} s ({what}{shown})",
        hint=f"is the registry overloaded or stuck? if it is only slow, allow more time: OCIMODEL_REQUEST_TIMEOUT=SECONDS (now {seconds:g})",
    )


def read_timed_out(registry: str, what: str, seconds: float, tries: int) -> RequestTimeout:
    shown = f", {tries} tries" if tries > 1 else ""
    return RequestTimeout(
        f"{registry} sent nothing for {seconds:g} s ({what}{shown})",
        hint=f"is the registry overloaded or stuck? if it is only slow, allow more time: OCIMODEL_READ_TIMEOUT=SECONDS (now {seconds:g})",
    )


# -- every socket read and write bounded by the deadline -------------------------------------


def _bounded(timeout: float | None, expired: type[Exception]) -> float | None:
    deadline = current()
    left = None if deadline is None else deadline.remaining()
    if left is None:
        return timeout
    if left <= 0:
        raise expired("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class GuardedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        return GuardedStream(self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend with each socket operation bounded by the current
    request's deadline. httpx's own timeouts are per operation: a response head sent a
    byte every few seconds never trips them."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return GuardedStream(self._inner.connect_tcp(host, port, bounded, local_address, socket_options))

    def connect_unix_socket(self, path, timeout=None, socket_options=None) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return GuardedStream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def guarded_transport(verify, limits: httpx.Limits, proxy: httpx.Proxy | None = None) -> httpx.HTTPTransport:
    """httpx's transport with :class:`GuardedBackend` under its connection pool.

    httpx offers no parameter for the backend, so it is set on the pool httpx built (an
    attribute both libraries have kept since httpcore 0.14). If a later version moves it,
    the transport is used as it is: the per-try timeouts and the checks between body
    chunks still bound a silent registry; only a trickled response head would escape.
    ``proxy``: every request through it (httpx's proxy pool has the same attribute: the
    connection to the proxy is guarded too; transport/proxies.py decides per request)."""
    transport = httpx.HTTPTransport(verify=verify, limits=limits, proxy=proxy)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = GuardedBackend(backend)  # type: ignore[union-attr]
    return transport


# -- the notice ------------------------------------------------------------------------------


class WaitNotices:
    """Tells ``notify`` (one line of text) when a request of one client has waited
    ``after`` seconds without an answer; at most one line per ``quiet`` seconds."""

    def __init__(self, notify: Callable[[str], None], registry: str, *, after: float = NOTICE_AFTER,
                 quiet: float = NOTICE_QUIET) -> None:
        self._notify = notify
        self._registry = registry
        self._after = after
        self._quiet = quiet
        self._last = float("-inf")
        self._lock = threading.Lock()

    @contextmanager
    def watch(self, deadline: Deadline, read_timeout: float) -> Iterator[None]:
        """Around the wait for one answer."""
        entry = _WATCHER.add(deadline.started + self._after, lambda: self._fire(deadline, read_timeout))
        try:
            yield
        finally:
            entry.cancel()

    def _fire(self, deadline: Deadline, read_timeout: float) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self._quiet:
                return
            self._last = now
        waited = now - deadline.started
        if deadline.seconds is not None:
            limit = f"gives up after {deadline.seconds:g} s"
        else:
            limit = f"gives up after {read_timeout:g} s without a byte"
        try:
            self._notify(f"waiting for {self._registry} (no answer for {waited:.0f} s; {limit})...")
        except Exception as exc:  # noqa: BLE001  a broken notice must not break the transfer
            log.debug("wait notice failed: %s", exc)


class _Entry:
    __slots__ = ("action", "cancelled", "due")

    def __init__(self, due: float, action: Callable[[], None]) -> None:
        self.due = due
        self.action = action
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Watcher:
    """One daemon thread for every notice of the process: a request costs a heap push,
    not a thread (a pull of 3000 files makes thousands of requests)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Entry]] = []
        self._count = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, due: float, action: Callable[[], None]) -> _Entry:
        entry = _Entry(due, action)
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._count), entry))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ocimodel-wait-notices", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is entry:
                self._cond.notify()
        return entry

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    due, _, entry = self._heap[0]
                    if entry.cancelled:
                        heapq.heappop(self._heap)
                        continue
                    left = due - time.monotonic()
                    if left <= 0:
                        heapq.heappop(self._heap)
                        break
                    self._cond.wait(left)
            if not entry.cancelled:
                entry.action()


_WATCHER = _Watcher()
