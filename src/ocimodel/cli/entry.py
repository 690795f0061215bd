"""The process entry of the ``ocimodel`` command (the console script and ``python -m
ocimodel``). What it sets is process-wide, so it lives here and not in
:func:`ocimodel.cli.app.main`, which tests and embedding apps call in their own process.

The garbage collector (docs/startup.md, "The garbage collector"): nearly every object a
command makes lives until the process exits -- modules, classes, pydantic's schemas and
validators. CPython's collector walks them again and again while they are made (a young
collection every 700 allocations, a full one now and then) and once more as the
interpreter ends, for nothing: about 5-7% of the instructions of a small pull or a
re-push went to those passes."""

from __future__ import annotations

import atexit
import gc

# Allocations between young collections while a command runs (CPython's default: 700).
# The collector still runs: a long pull or the webhook server frees its cycles.
FIRST_GENERATION_THRESHOLD = 20_000


def _freeze() -> None:
    """At exit: the collector stops and what is alive moves out of its reach, so the
    passes the interpreter makes as it ends do not walk every object of the command.
    Objects are still freed as their references go; nothing in a reference cycle is
    finalized after this (garbage or not): nothing of ours may rely on a finalizer at
    exit (docs/startup.md)."""
    gc.disable()
    gc.freeze()


def main() -> None:
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], FIRST_GENERATION_THRESHOLD), *threshold[1:])
    atexit.register(_freeze)

    from ocimodel.cli.app import main as run_command

    run_command()
