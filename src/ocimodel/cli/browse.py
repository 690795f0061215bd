"""Commands that read a store and change nothing: inspect, ls, catalog."""

from __future__ import annotations

from typing import Annotated

import typer

from ocimodel.cli.common import (
    JsonOpt,
    PlainHttpOpt,
    connection,
    new_table,
    print_json,
    print_names,
    run,
    size,
    stdout,
)
from ocimodel.cli.lazy import lazy_import

api = lazy_import("ocimodel")


def inspect(
    reference: Annotated[str, typer.Argument(metavar="REF", help="registry/repo:tag, repo@sha256:..., or oci:PATH:tag.")],
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a model's digest, metadata and files without downloading them.

      ocimodel inspect localhost:5000/team/sentiment:1.0

      ocimodel inspect oci:./store:sentiment:1.0 --json | jq .config
    """
    info = run(lambda _: api.inspect(reference, plain_http=plain_http, options=connection()), verb="inspect", show_progress=False)
    if as_json:
        print_json(info)
        return
    _print_info(info)


def list_tags(
    repository: Annotated[str, typer.Argument(metavar="REPO", help="registry/repo or oci:PATH.")],
    plain_http: PlainHttpOpt = None,
    all_tags: Annotated[bool, typer.Option("--all", help="Also the sha256-... tags that index signatures and other referrers.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the tags of a repository or an OCI layout (a repository that does not exist is an error).

      ocimodel ls localhost:5000/team/sentiment

      ocimodel ls oci:./store
    """
    tags = run(
        lambda _: api.list_tags(repository, plain_http=plain_http, options=connection(), all_tags=all_tags),
        verb="ls", show_progress=False,
    )
    print_names(tags, as_json, {"repository": repository, "tags": tags})


def catalog(
    registry: Annotated[str, typer.Argument(metavar="REGISTRY", help="host[:port], e.g. localhost:5000.")],
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the repositories of a registry (where the registry allows it).

      ocimodel catalog localhost:5000
    """
    names = run(lambda _: api.catalog(registry, plain_http=plain_http, options=connection()), verb="catalog", show_progress=False)
    print_names(names, as_json, {"registry": registry, "repositories": names})


def _print_info(info: api.ModelInfo) -> None:
    from ocimodel.oci import mediatypes as mt

    a = info.annotations
    config = info.config or {}
    model = config.get("config", {}) if isinstance(config.get("config"), dict) else {}
    rows = [
        ("Reference", info.reference),
        ("Digest", info.digest),
        ("Artifact type", info.artifact_type or "-"),
        ("Name", a.get(mt.ANNOTATION_TITLE) or (config.get("descriptor") or {}).get("name")),
        ("Version", a.get(mt.ANNOTATION_VERSION)),
        ("Description", a.get(mt.ANNOTATION_DESCRIPTION)),
        ("Licenses", a.get(mt.ANNOTATION_LICENSES)),
        ("Created", a.get(mt.ANNOTATION_CREATED)),
        ("Source", a.get(mt.ANNOTATION_SOURCE)),
        ("Revision", a.get(mt.ANNOTATION_REVISION)),
        ("Format", model.get("format")),
        ("Parameters", model.get("paramSize")),
        ("Precision", model.get("precision")),
        ("Size", f"{size(info.total_size)} in {len(info.files)} files"),
    ]
    # Plain lines, not a table: a digest must never be cut to fit the terminal.
    for label, value in rows:
        if value:
            stdout.print(f"{label + ':':<15}{value}", highlight=False, markup=False)
    if info.files:
        files = new_table()
        files.add_column("FILE")
        files.add_column("KIND")
        files.add_column("SIZE", justify="right")
        files.add_column("DIGEST")
        for entry in info.files:
            files.add_row(entry.path, entry.kind or entry.media_type, size(entry.size), entry.digest[:19])
        stdout.print()
        stdout.print(files)
