"""Commands for referrers: attach, discover, detach, and delete (a model with its
referrers). Export and import, which carry referrers too, are in ocimodel.cli.transfer."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ocimodel.cli.common import (
    JsonOpt,
    PlainHttpOpt,
    QuietOpt,
    connection,
    parse_pairs,
    print_json,
    print_result,
    run,
    size,
    stderr,
    stdout,
)
from ocimodel.cli.lazy import lazy_import
from ocimodel.errors import escape_controls

ArtifactTypeOpt = Annotated[
    str | None,
    typer.Option("--artifact-type", metavar="TYPE", help="Only referrers of this artifact type (a media type)."),
]

api = lazy_import("ocimodel")


def attach(
    reference: Annotated[str, typer.Argument(metavar="REF", help="The model: registry/repo:tag, repo@digest or oci:PATH:tag.")],
    files: Annotated[list[Path] | None, typer.Argument(metavar="[FILE]...", help="Files to attach (none: annotations only).")] = None,
    artifact_type: Annotated[str, typer.Option("--artifact-type", metavar="TYPE", help="What the referrer is, as a media type, e.g. application/vnd.example.eval.v1+json.")] = ...,  # type: ignore[assignment]
    media_type: Annotated[str | None, typer.Option("--media-type", metavar="TYPE", help="Media type of the file layers (default: the artifact type).")] = None,
    annotation: Annotated[list[str] | None, typer.Option("--annotation", "-a", metavar="KEY=VALUE", help="Annotation on the referrer; repeatable.")] = None,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Attach files to a model as a referrer (an OCI 1.1 manifest whose subject is the
    model): an evaluation, an SBOM, a report. Prints the referrer's digest.

      ocimodel attach localhost:5000/team/sentiment:1.0 ./eval.json --artifact-type application/vnd.example.eval.v1+json -a dataset=imdb

    Works on registries with the referrers API, on those without it (the fallback tag
    sha256-<hex> is kept up to date) and on oci: layouts.
    """
    pairs = parse_pairs(annotation or [], "--annotation")
    result = run(
        lambda _: api.attach(
            reference, files or [], artifact_type=artifact_type, annotations=pairs, media_type=media_type,
            plain_http=plain_http, options=connection(),
        ),
        verb="attach",
        show_progress=False,
    )
    print_result(result, as_json, quiet, [
        f"Attached {result.artifact_type} to {result.subject}",
        f"Digest: {result.digest}",
        f"Listed by: {result.listed_by}",
    ])


def discover(
    reference: Annotated[str, typer.Argument(metavar="REF", help="The model: registry/repo:tag, repo@digest or oci:PATH:tag.")],
    artifact_type: ArtifactTypeOpt = None,
    depth: Annotated[int, typer.Option("--depth", min=1, max=8, metavar="N", help="Levels of referrers of referrers to follow.")] = 8,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what refers to a model (signatures, attestations, evaluations...) and what
    refers to those, as a tree by artifact type.

      ocimodel discover localhost:5000/team/sentiment:1.0

      ocimodel discover oci:./store:sentiment:1.0 --artifact-type application/vnd.dev.sigstore.bundle.v0.3+json --json

    Only referrers whose own manifest names the model are shown; anything else a
    listing holds is reported as ignored.
    """
    result = run(
        lambda _: api.referrers(
            reference, artifact_type=artifact_type, depth=depth, plain_http=plain_http, options=connection()
        ),
        verb="discover",
        show_progress=False,
    )
    if as_json:
        print_json(result)
        return
    # Plain lines, not rich's Tree: a digest must never be cut to fit the terminal.
    lines = [escape_controls(f"{result.reference}@{result.digest}", one_line=True)]

    from ocimodel.oci import mediatypes as mt

    def add(nodes: list[api.Referrer], prefix: str) -> None:
        for i, node in enumerate(nodes):
            last = i == len(nodes) - 1
            created = node.annotations.get(mt.ANNOTATION_CREATED, "")
            label = f"{node.artifact_type or node.media_type}  {node.digest}  {size(node.size)}  {created}".rstrip()
            # Artifact types and dates come from whoever pushed the referrer: shown, never acted on.
            lines.append(f"{prefix}{'└── ' if last else '├── '}{escape_controls(label, one_line=True)}")
            add(node.referrers, prefix + ("    " if last else "│   "))

    add(result.referrers, "")
    sys.stdout.write("\n".join(lines) + "\n")
    if not result.referrers:
        stdout.print("no referrers", highlight=False, markup=False)
    for line in result.ignored:
        stderr.print(f"warning: ignored {line}", highlight=False, markup=False)


def detach(
    reference: Annotated[str, typer.Argument(metavar="REF", help="The model the referrer refers to.")],
    referrer: Annotated[str, typer.Argument(metavar="DIGEST", help="The referrer's digest (from `ocimodel discover`).")],
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove a referrer (and what refers to it) from a model.

      ocimodel detach localhost:5000/team/sentiment:1.0 sha256:1f2e...
    """
    result = run(
        lambda _: api.detach(reference, referrer, plain_http=plain_http, options=connection()),
        verb="detach",
        show_progress=False,
    )
    kept = "" if result.manifest_deleted else " (no longer listed; the registry refused to delete its manifest)"
    print_result(result, as_json, quiet, [f"Detached {result.digest} from {result.subject}{kept}"])


def delete(
    reference: Annotated[str, typer.Argument(metavar="REF", help="The model to delete: registry/repo:tag, repo@digest or oci:PATH:tag.")],
    force: Annotated[bool, typer.Option("--force", help="Delete even when other tags point at the same manifest (they go too).")] = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete a model with its referrers and their index tags, so nothing dangles.

      ocimodel delete localhost:5000/team/sentiment:0.9

    Registries delete by digest, which removes every tag on that manifest; without
    --force this refuses when other tags would go too. The registry must allow deletes
    (distribution: storage.delete.enabled); blobs are freed by its garbage collector.
    """
    result = run(
        lambda _: api.delete(reference, force=force, plain_http=plain_http, options=connection()),
        verb="delete",
        show_progress=False,
    )
    print_result(result, as_json, quiet, [
        f"Deleted {result.reference} ({result.digest})",
        f"Tags removed: {', '.join(result.tags_removed) or '-'}",
        f"Referrers removed: {len(result.referrers_removed)}",
    ])
