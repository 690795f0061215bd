"""Commands that compare and find models by their metadata: diff, search."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ocimodel.cli.common import (
    JsonOpt,
    PlainHttpOpt,
    connection,
    new_table,
    print_json,
    run,
    size,
    stdout,
)
from ocimodel.cli.lazy import lazy_import

api = lazy_import("ocimodel")

if TYPE_CHECKING:
    from rich.table import Table


def diff(
    a: Annotated[str, typer.Argument(metavar="A", help="The old model: registry/repo:tag, repo@digest or oci:PATH:tag.")],
    b: Annotated[str, typer.Argument(metavar="B", help="The new model, in the same store or another.")],
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what changed from model A to model B: files added, removed and changed (by
    digest), card fields, metric deltas, licenses and hyperparameters. Reads manifests and
    configs only, never weights.

      ocimodel diff localhost:5000/team/sentiment:1.0 localhost:5000/team/sentiment:1.1

      ocimodel diff oci:./store:sentiment:1.0 ghcr.io/org/sentiment:1.1 --json
    """
    result = run(
        lambda _: api.diff(a, b, plain_http=plain_http, options=connection()), verb="diff", show_progress=False
    )
    if as_json:
        print_json(result)
        return
    _print_diff(result)


def search(
    location: Annotated[
        str,
        typer.Argument(metavar="LOCATION", help="REGISTRY, REGISTRY/REPO-PREFIX (e.g. localhost:5000/team) or oci:PATH."),
    ],
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where", "-w", metavar="PREDICATE",
            help="FIELD OP VALUE, e.g. 'metrics.accuracy>=0.9'. OP: >= <= > < == !=. FIELD: metrics.<name>, "
            "params.<name>, name, version, task, format, framework, license, tags. Repeatable (ANDed).",
        ),
    ] = None,
    license: Annotated[str | None, typer.Option("--license", metavar="SPDX", help="Shortcut for --where 'license==SPDX'.")] = None,
    format: Annotated[str | None, typer.Option("--format", metavar="FORMAT", help="Shortcut for --where 'format==FORMAT', e.g. safetensors.")] = None,
    task: Annotated[str | None, typer.Option("--task", metavar="TASK", help="Shortcut for --where 'task==TASK'.")] = None,
    name: Annotated[str | None, typer.Option("--name", metavar="NAME", help="Shortcut for --where 'name==NAME'.")] = None,
    repo: Annotated[
        list[str] | None,
        typer.Option("--repo", metavar="REPO", help="Search this repository (full name) instead of the catalog; repeatable."),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or keep manifests and configs in the local cache.")] = False,
    concurrency: Annotated[int, typer.Option("--concurrency", "-j", min=1, max=32, metavar="N", help="Versions read at once.")] = 8,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find the model versions whose metadata satisfies every predicate. Reads manifests
    and configs only (kept in a local cache by digest; tags are always asked afresh).

      ocimodel search localhost:5000/team --where 'metrics.accuracy>=0.9' --license MIT

      ocimodel search ghcr.io --repo org/sentiment --repo org/ner --task text-classification --json

      ocimodel search oci:./store --where 'params.epochs>3' --format safetensors

    Repositories come from the registry's catalog (filtered by the prefix); where the
    registry refuses it, name them with --repo.
    """
    result = run(
        lambda _: api.search(
            location, where or (), license=license, format=format, task=task, name=name, repositories=repo or (),
            plain_http=plain_http, options=connection(), concurrency=concurrency, cache=not no_cache,
        ),
        verb="search",
        show_progress=False,
    )
    if as_json:
        print_json(result)
        return
    _print_search(result)


# -- human output ---------------------------------------------------------------------------


def _print_diff(result: api.DiffResult) -> None:
    line = _line
    line(f"A: {result.a.reference}  {result.a.digest}")
    line(f"B: {result.b.reference}  {result.b.digest}")
    for side, label in ((result.a, "A"), (result.b, "B")):
        for problem in side.problems:
            line(f"warning: {label}: left out of the card: {problem}")
    if result.identical:
        line("identical: the same manifest digest")
        return
    line(
        f"Files: {len(result.files_added)} added, {len(result.files_removed)} removed, "
        f"{len(result.files_changed)} changed, {result.files_unchanged} unchanged"
    )
    if result.files_added or result.files_removed or result.files_changed:
        files = _table("", "FILE", "KIND", "SIZE", "DIGEST")
        for entry in result.files_removed:
            files.add_row("-", entry.path, entry.kind or entry.media_type, size(entry.size), _short(entry.digest))
        for entry in result.files_added:
            files.add_row("+", entry.path, entry.kind or entry.media_type, size(entry.size), _short(entry.digest))
        for change in result.files_changed:
            kind = change.new_kind if change.old_kind == change.new_kind else f"{change.old_kind} -> {change.new_kind}"
            files.add_row(
                "~", change.path, kind or "-", f"{size(change.old_size)} -> {size(change.new_size)}",
                f"{_hex(change.old_digest)} -> {_hex(change.new_digest)}",
            )
        stdout.print(files)
    if result.metadata:
        line("")
        fields = _table("FIELD", "A", "B")
        for change in result.metadata:
            fields.add_row(change.field, _value(change.old), _value(change.new))
        stdout.print(fields)
    if result.metrics:
        line("")
        metrics = _table("METRIC", "A", "B", "DELTA")
        for metric in result.metrics:
            delta = "-" if metric.delta is None else (f"+{metric.delta}" if metric.delta > 0 else str(metric.delta))
            if not metric.comparable:
                delta += " (other dataset/split)"
            metrics.add_row(metric.name, _value(metric.old), _value(metric.new), delta)
        stdout.print(metrics)
    if result.licenses.changed:
        line("")
        line(f"Licenses: {', '.join(result.licenses.old) or '-'} -> {', '.join(result.licenses.new) or '-'}")
    if result.hyperparameters:
        line("")
        params = _table("HYPERPARAMETER", "A", "B")
        for param in result.hyperparameters:
            params.add_row(
                param.name, _value(param.old) if param.old_set else "-", _value(param.new) if param.new_set else "-"
            )
        stdout.print(params)
    if not result.changed:
        line("no differences in files or metadata")


def _print_search(result: api.SearchResult) -> None:
    metric_names = sorted({m for match in result.matches for m in match.metrics})
    if result.matches:
        table = _table("REFERENCE", "NAME", "VERSION", *(n.upper() for n in metric_names), "DIGEST")
        for match in result.matches:
            table.add_row(
                match.reference, match.name or "-", match.version or "-",
                *(_value(match.metrics.get(n)) for n in metric_names), _short(match.digest),
            )
        stdout.print(table)
    else:
        _line("no matching versions")
    summary = (
        f"{len(result.matches)} match{'es' if len(result.matches) != 1 else ''} among {result.versions_examined} "
        f"tags of {len(result.repositories)} repositor{'ies' if len(result.repositories) != 1 else 'y'}"
    )
    if result.skipped:
        summary += f"; {len(result.skipped)} tags skipped (not readable models: --json lists them)"
    _line(summary)


def _table(*columns: str) -> Table:
    table = new_table()
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _line(text: str) -> None:
    stdout.print(text, highlight=False, markup=False)


def _short(digest: str) -> str:
    return digest[:19]


def _hex(digest: str) -> str:
    """Twelve hex digits: two of them fit on one line beside a path."""
    return digest.partition(":")[2][:12]


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)
