"""Commands for variant indexes: index create (a sub-app the root adds as `ocimodel index`).
See docs/variants.md."""

from __future__ import annotations

from typing import Annotated

import typer

from ocimodel.cli.common import (
    JsonOpt,
    PlainHttpOpt,
    QuietOpt,
    connection,
    parse_pairs,
    print_result,
    run,
)
from ocimodel.cli.lazy import lazy_import

api = lazy_import("ocimodel")

index_app = typer.Typer(
    name="index",
    help=(
        "Variant indexes: several builds of one model (quantizations, hardware builds) under one "
        "reference, told apart by labels; `pull --variant` picks one.\n\n"
        "  ocimodel index create localhost:5000/team/llm:1.0 1.0-q4,quant=q4 1.0-f16,quant=f16"
    ),
    no_args_is_help=True,
)


@index_app.command("create")
def create(
    reference: Annotated[str, typer.Argument(metavar="REF", help="The index to write: registry/repo:tag or oci:PATH:tag (tag defaults to latest).")],
    members: Annotated[
        list[str],
        typer.Argument(
            metavar="MEMBER[,KEY=VALUE...]...",
            help="A model of REF's repository (a tag, @sha256:..., or a whole reference in it), then its labels after commas.",
            show_default=False,
        ),
    ],
    annotation: Annotated[list[str] | None, typer.Option("--annotation", "-a", metavar="KEY=VALUE", help="An annotation on the index itself; repeatable.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a version tag that holds something else (versions are immutable otherwise).")] = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write an index of models of one repository, each labelled, under REF's tag.

    Each MEMBER is a model already in REF's repository, named by its tag (1.0-q4), its
    digest (@sha256:...) or a whole reference, with its labels after it, separated by
    commas: the labels stay with their model, whatever the order of the arguments.
    Every member needs labels of its own (pull --variant must tell them apart). Models of
    another repository are refused: `ocimodel copy` them in first. Examples:

      ocimodel index create localhost:5000/team/llm:1.0 1.0-q4,quant=q4,device=cpu 1.0-f16,quant=f16,device=cuda

      ocimodel index create oci:./store:llm 'llm-q4,quant=q4' 'llm-q8,quant=q8'

      ocimodel pull localhost:5000/team/llm:1.0 ./out --variant quant=q4

    A version tag (1.0) is never moved to another index without --force.
    """
    result = run(
        lambda _: api.create_index(
            reference, members, annotations=parse_pairs(annotation or [], "--annotation"), force=force,
            plain_http=plain_http, options=connection(),
        ),
        verb="index create",
        show_progress=False,
    )
    print_result(result, as_json, quiet, [
        f"Created {result.reference}",
        f"Digest: {result.digest}",
        *[f"Variant: {_labels(v.labels)}  {v.digest}" for v in result.variants],
    ])


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "(no labels)"
