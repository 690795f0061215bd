"""The audit command: one timeline of everything the registry holds about a repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ocimodel.cli.common import JsonOpt, PlainHttpOpt, connection, print_json, run, stdout


def _api():
    """The API functions, loaded when a command runs (--help and --version load no API)."""
    from ocimodel.api import functions

    return functions


def audit(
    repository: Annotated[str, typer.Argument(metavar="REPO", help="registry/team/model or oci:PATH.")],
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="TIME", help="Only entries from then on: 2026-12-06, 2026-12-06T08:00:00Z, or a span back (7d, 12h, 30m)."),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", metavar="FILE", help="The verify policy: mark each entry trusted or untrusted by its signers."),
    ] = None,
    trusted_root: Annotated[
        Path | None, typer.Option("--trusted-root", metavar="FILE", help="Keyless: the Sigstore trusted_root.json to verify with.")
    ] = None,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Everything the registry holds about a model, newest first: versions pushed,
    promotions and rollbacks, deployments, signatures, attestations and other referrers,
    each marked trusted, untrusted, signed (no policy to check), unsigned or unrecorded.

      ocimodel audit localhost:5000/team/sentiment --policy policy.yaml

      ocimodel audit localhost:5000/team/sentiment --since 7d --json

    Beside each time, where it comes from: statement (inside the record, signed when the
    record is), log (a transparency log), annotation (unsigned: whoever pushed wrote it).
    """
    result = run(
        lambda _: _api().audit(repository, since=since, policy=policy, trusted_root=trusted_root,
                            plain_http=plain_http, options=connection()),
        verb="audit", show_progress=False,
    )
    if as_json:
        print_json(result)
        return
    if not result.entries:
        stdout.print(f"nothing recorded about {result.repository}" + (f" since {result.since}" if result.since else ""),
                     highlight=False, markup=False)
    for e in result.entries:
        # One line an entry, never wrapped: a timeline is read top to bottom and grepped.
        version = ", ".join(e.tags) or (e.digest[:19] if e.digest else "-")
        trust = e.trust + (f" by {', '.join(e.signers)}" if e.signers else "")
        who = f"  by {e.actor}" if e.actor and e.actor != ", ".join(e.signers) else ""
        when = (e.time or "?") + (f" ({e.time_source})" if e.time_source else "")
        stdout.print(f"{when:<41} {e.kind:<14} {version}: {e.summary}{who}  [{trust}]", highlight=False, markup=False)
    for warning in result.warnings:
        stdout.print(f"warning: {warning}", highlight=False, markup=False)
