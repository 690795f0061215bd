"""Commands for the local blob cache: cache info, cache prune (a sub-app the root adds as
`ocimodel cache`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ocimodel.cli.common import JsonOpt, print_json, run, size, stdout
from ocimodel.cli.lazy import lazy_import

api = lazy_import("ocimodel")

cache_app = typer.Typer(
    name="cache",
    help="The local blob cache that `pull --blob-cache` links files from.\n\n  ocimodel cache info\n\n  ocimodel cache prune",
    no_args_is_help=True,
)


@cache_app.command("info")
def cache_info(as_json: JsonOpt = False) -> None:
    """Where the blob cache is, what it holds, and what `prune` would free."""
    result = run(lambda _: api.blob_cache_info(), verb="cache", show_progress=False)
    if as_json:
        print_json(result)
        return
    for line in (
        f"Blob cache: {result.path}",
        f"Entries: {result.entries} ({size(result.bytes)}); {result.entries_in_use} shared with pulled files",
        f"Freed by `ocimodel cache prune`: {size(result.bytes_not_in_use)}",
    ):
        stdout.print(line, highlight=False, markup=False)


@cache_app.command("prune")
def cache_prune(
    everything: Annotated[bool, typer.Option("--all", help="Remove every entry, also those pulled files share (they keep their bytes).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove the entries no pulled file shares any more, freeing their disk.

    Pulled files are never touched: an entry and a pulled file are hard links to one file,
    so removing the entry only removes the cache's name for it.
    """
    result = run(lambda _: api.prune_blob_cache(everything=everything), verb="cache", show_progress=False)
    if as_json:
        print_json(result)
        return
    stdout.print(f"Removed {result.removed} entries from {result.path}; freed {size(result.bytes_freed)}", highlight=False, markup=False)
