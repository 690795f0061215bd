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
    read_layers: Annotated[bool, typer.Option(
        "--read-layers",
        help="Download each tar layer that names its files only in its tar headers (modctl's), check its digest, and list it by name.",
    )] = False,
) -> None:
    """Show a model's digest, metadata and files without downloading them.

      ocimodel inspect localhost:5000/team/sentiment:1.0

      ocimodel inspect oci:./store:sentiment:1.0 --json | jq .config
    """
    info = run(lambda _: api.inspect(reference, plain_http=plain_http, options=connection(), read_layers=read_layers),
               verb="inspect", show_progress=False)
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
    card = info.card

    def joined(values) -> str | None:
        return ", ".join(str(v) for v in values) if values else None

    rows = [
        ("Reference", info.reference),
        ("Digest", info.digest),
        ("Artifact type", info.artifact_type or "-"),
        ("Kind", info.kind_description if info.is_model else f"{info.kind_description} (not a model)"),
        ("Name", info.name or card.get("name")),
        ("Version", card.get("version")),
        ("Description", card.get("description")),
        ("Licenses", joined(card.get("licenses"))),
        ("Authors", joined(card.get("authors"))),
        ("Created", card.get("created") or a.get(mt.ANNOTATION_CREATED)),
        ("Source", (card.get("code") or {}).get("repository") or a.get(mt.ANNOTATION_SOURCE)),
        ("Revision", (card.get("code") or {}).get("commit") or a.get(mt.ANNOTATION_REVISION)),
        ("Format", joined(info.formats)),
        ("Framework", card.get("framework")),
        ("Task", card.get("task")),
        ("Tags", joined(card.get("tags"))),
        ("Parameters", info.param_size),
        ("Precision", info.precision),
    ]
    if info.kind not in ("index", "variants"):
        rows.append(("Size", f"{size(info.total_size)} in {len(info.files)} files"))
    # Plain lines, not a table: a digest must never be cut to fit the terminal.
    for label, value in rows:
        if value:
            _line(label, value)
    for name, metric in (card.get("metrics") or {}).items():
        if isinstance(metric, dict):
            where = "/".join(x for x in (metric.get("dataset"), metric.get("split")) if x)
            _line("Metric", f"{name} = {metric.get('value')}" + (f" (on {where})" if where else ""))
        else:
            _line("Metric", f"{name} = {metric}")
    for name, value in (card.get("hyperparameters") or {}).items():
        _line("Parameter", f"{name} = {value}")
    for dataset in card.get("datasets") or []:
        _line("Dataset", dataset["uri"] + (f"@{dataset['digest']}" if dataset.get("digest") else ""))
    for base in card.get("base_models") or []:
        _line("Base model", f"{base['reference']}" + (f"@{base['digest']}" if base.get("digest") else "") + f" ({base.get('relation', 'fine-tune')})")
    environment = card.get("environment") or {}
    if environment.get("python"):
        _line("Python", environment["python"])
    if environment.get("packages"):
        _line("Packages", ", ".join(f"{k}=={v}" for k, v in environment["packages"].items()))
    if (card.get("code") or {}).get("dirty") is not None:
        _line("Code dirty", "yes" if card["code"]["dirty"] else "no")
    if info.kind == "modelkit":  # what the Kitfile says that the card has no field for
        from ocimodel.metadata.kitcard import kitfile_lines
        for label, value in kitfile_lines(info.config):
            _line(label, value)
    for problem in info.card_problems:
        _line("Unreadable", problem)
    if info.kind == "variants":  # plain lines: labels and digests are never cut (docs/variants.md)
        for entry in info.manifests:
            labels = ",".join(f"{k}={v}" for k, v in entry.get("labels", {}).items()) or "(no labels)"
            formats = ", ".join(entry.get("formats") or []) or entry.get("artifact_type") or entry["media_type"]
            shown = f"{size(entry['model_size'])} in {entry['files']} files" if "model_size" in entry else size(entry["size"])
            _line("Variant", f"{labels}  {entry['digest']}  {formats}  {shown}" + (f"  (unreadable: {entry['problem']})" if entry.get("problem") else ""))
    elif info.manifests:
        entries = new_table()
        entries.add_column("DIGEST")
        entries.add_column("PLATFORM")
        entries.add_column("ARTIFACT TYPE / MEDIA TYPE")
        entries.add_column("SIZE", justify="right")
        for entry in info.manifests:
            entries.add_row(entry["digest"], entry.get("platform", "-"), entry.get("artifact_type") or entry["media_type"], size(entry["size"]))
        stdout.print()
        stdout.print(entries)
    if info.files:
        files = new_table()
        files.add_column("FILE")
        files.add_column("KIND")
        files.add_column("SIZE", justify="right")
        files.add_column("DIGEST")
        for entry in info.files:
            files.add_row(entry.path or "-", entry.kind or entry.media_type, size(entry.size), entry.digest[:19])
        stdout.print()
        stdout.print(files)


def _line(label: str, value: str) -> None:
    stdout.print(f"{label + ':':<15}{value}", highlight=False, markup=False)
