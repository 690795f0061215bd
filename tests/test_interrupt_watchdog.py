"""Ctrl-C always ends the CLI: when the clean-up an interrupt starts hangs (a thread stuck
in a stalled socket, a lock it holds), the process still exits with 130 after a grace."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

# timing between processes is the point: `make test` runs these alone (tests/conftest.py)
pytestmark = [pytest.mark.slow, pytest.mark.serial]

HANGING_CLEANUP = """
import sys, time
import ocimodel.cli.app as app

def command():
    try:
        print("ready", flush=True)
        time.sleep(60)
    finally:
        time.sleep(60)  # the clean-up that never ends

app._install_interrupt_handler()
try:
    command()
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_an_interrupt_whose_cleanup_hangs_still_exits_130() -> None:
    from ocimodel.cli.app import INTERRUPT_GRACE

    process = subprocess.Popen(
        [sys.executable, "-c", HANGING_CLEANUP], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "ready"
        started = time.monotonic()
        process.send_signal(subprocess.signal.SIGINT)
        _, stderr = process.communicate(timeout=INTERRUPT_GRACE + 30)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert "clean-up did not finish" in stderr
    assert took >= INTERRUPT_GRACE  # the clean-up had its grace first


def test_main_gives_the_callers_handler_back() -> None:
    import signal

    from ocimodel.cli import app

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit):
        sys_argv, sys.argv = sys.argv, ["ocimodel", "--version"]
        try:
            app.main()
        finally:
            sys.argv = sys_argv
    assert signal.getsignal(signal.SIGINT) is before
