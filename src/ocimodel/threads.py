"""Waiting for worker threads without deafening the main thread to Ctrl-C.

The kernel hands a process's SIGINT to any one of its threads. When a worker takes it,
Python only notes the signal; its handler (the KeyboardInterrupt) runs in the main thread
the next time that thread runs Python code. A main thread blocked in a wait with no
timeout never does, so the interrupt is lost until the wait ends, which for a transfer
stuck in a stalled socket is the network timeout. Every wait of the main thread on
workers is therefore taken in short slices."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Seconds between the main thread's looks at a pending signal while it waits.
WAKE_INTERVAL = 0.2


def wait_for(event: threading.Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)``, in slices of :data:`WAKE_INTERVAL` so that a signal taken
    by another thread is handled meanwhile."""
    if timeout is not None:
        return event.wait(timeout) if timeout <= WAKE_INTERVAL else _wait_until(event, timeout)
    while not event.wait(WAKE_INTERVAL):
        pass
    return True


def _wait_until(event: threading.Event, timeout: float) -> bool:
    import time

    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return event.is_set()
        if event.wait(min(left, WAKE_INTERVAL)):
            return True


def gather(pool: ThreadPoolExecutor, jobs: Iterable[Callable[[], R]]) -> list[R]:
    """Run ``jobs`` on ``pool``; their results in order. The first error cancels the jobs
    that have not started and is raised."""
    futures: list[Future[R]] = [pool.submit(job) for job in jobs]
    try:
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=WAKE_INTERVAL, return_when=FIRST_EXCEPTION)
            if any(f.done() and not f.cancelled() and f.exception() is not None for f in futures):
                break
        return [f.result() for f in futures]
    except BaseException:
        for f in futures:
            f.cancel()
        raise


def run_all(jobs: Iterable[Callable[[], R]], workers: int = 8, name: str = "ocimodel") -> list[R]:
    """Run ``jobs`` on up to ``workers`` threads of a pool of their own; results in order."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    try:
        results = gather(pool, jobs)
    except BaseException:
        # Not joined: a worker stuck in a stalled socket must not hold the error or the
        # Ctrl-C for the length of a network timeout.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def map_threads(work: Callable[[T], R], items: Iterable[T], workers: int = 8) -> list[R]:
    """``[work(item) for item in items]`` on up to ``workers`` threads; results in order."""
    return run_all([lambda item=item: work(item) for item in items], workers)
