"""HTTP to registries: the client, authentication, credentials, TLS, retries.

httpx is imported here, before its users in this package, without its command-line
module: ``import httpx`` also imports ``httpx._main`` (click, rich, pygments: ~40 ms, a
tenth of a small pull) only to offer the ``httpx`` command, which ocimodel never runs.
Blocking that one submodule makes httpx define its stub ``main`` instead; the block is
lifted at once, so anyone who really imports ``httpx._main`` later still gets it (but
``httpx.main`` stays httpx's "not installed" stub in a process that imported ocimodel
first: running httpx's own command line from such a process is not supported)."""

import sys

if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # makes the import fail
    try:
        import httpx  # noqa: F401
    finally:
        if sys.modules.get("httpx._main", False) is None:
            del sys.modules["httpx._main"]
