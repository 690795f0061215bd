"""HTTP to registries: the client, authentication, credentials, TLS, retries.

httpx is imported here, before its users in this package, without its command-line
module: ``import httpx`` also imports ``httpx._main`` (click, rich, pygments: ~40 ms, a
tenth of a small pull) only to offer the ``httpx`` command, which ocimodel never runs.
This cannot wait for the CLI entry point: the library (``import ocimodel``) imports httpx
too and must start as fast. So the import leaves the process as it found it, but for
httpx being loaded: see :func:`_import_httpx_without_its_cli`."""

import sys


def _import_httpx_without_its_cli() -> None:
    """Import httpx with ``httpx._main`` blocked, then lift the block, so that a later
    ``import httpx._main`` works; ``httpx.main`` (httpx's "not installed" stub after the
    block) becomes a stand-in that imports and runs the real command on first call."""
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return  # imported already, by someone else: nothing to save, nothing to touch
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # makes the import fail
    try:
        import httpx
    finally:
        if sys.modules.get("httpx._main", False) is None:
            del sys.modules["httpx._main"]

    def main(*args, **kwargs):  # the same call as httpx's click command
        from httpx._main import main as command

        return command(*args, **kwargs)

    httpx.main = main  # type: ignore[assignment]


_import_httpx_without_its_cli()
