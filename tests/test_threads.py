"""Ctrl-C reaches the main thread while it waits for workers, whichever thread the kernel
handed the signal to. Each case runs in a child process, so that a lost interrupt shows as
a child that has to be killed, not as a hung test run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Each case runs a child process and signals it (slow); timing between processes is the
# point (serial: `make test` runs these alone, tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.serial]

CHILD = textwrap.dedent(
    """
    import signal, sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from ocimodel.targets.copy import run_parallel
    from ocimodel.threads import gather, map_threads

    started = threading.Event()
    workers = []

    def stuck(_item=None):
        # A worker blocked in a call that does not return on a signal for another thread.
        workers.append(threading.get_ident())
        started.set()
        time.sleep(30)

    def signal_a_worker():
        started.wait(10)
        time.sleep(0.3)
        signal.pthread_kill(workers[0], signal.SIGINT)  # the worker takes the signal

    threading.Thread(target=signal_a_worker, daemon=True).start()
    began = time.monotonic()
    try:
        if sys.argv[1] == "run_parallel":
            run_parallel([1, 2], stuck, concurrency=2, cancel=threading.Event())
        elif sys.argv[1] == "gather":
            pool = ThreadPoolExecutor(max_workers=2)
            try:
                gather(pool, [stuck, stuck])
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
        else:
            map_threads(stuck, [1])
    except KeyboardInterrupt:
        print(f"interrupted after {time.monotonic() - began:.1f} s", flush=True)
        import os
        os._exit(130)
    os._exit(0)
    """
)


@pytest.mark.parametrize("waiter", ["run_parallel", "gather", "map_threads"])
def test_a_signal_taken_by_a_worker_interrupts_the_waiting_main_thread(waiter):
    process = subprocess.Popen([sys.executable, "-c", CHILD, waiter], stdout=subprocess.PIPE, text=True)
    try:
        out, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"{waiter}: the main thread never saw the Ctrl-C a worker thread took")
    assert process.returncode == 130, out
    assert out.startswith("interrupted after"), out
