"""`ocimodel license`: a model's licenses and a policy's verdict on them (docs/licenses.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ocimodel.cli.common import JsonOpt, PlainHttpOpt, connection, print_json, run, stdout
from ocimodel.cli.lazy import lazy_import

api = lazy_import("ocimodel")


def license_command(
    target: Annotated[str, typer.Argument(metavar="PATH|REF", help="A model directory, or a model: registry/repo:tag or oci:PATH:tag.")],
    as_json: JsonOpt = False,
    policy: Annotated[Path | None, typer.Option("--policy", metavar="FILE", help="A policy file whose licenses: section judges the model.")] = None,
    plain_http: PlainHttpOpt = None,
) -> None:
    """Show a model's licenses: declared in its card, found in its files (by their text,
    whatever their names), and those of its base models; with --policy, the verdict.
    Exit 0 when allowed (or without a policy), 1 when the policy denies it, 2 for usage errors.

      ocimodel license ./my-model

      ocimodel license localhost:5000/team/sentiment:1.0 --policy policy.yaml
    """
    report = run(
        lambda _: api.license_report(target, policy=policy, plain_http=plain_http, options=connection()),
        verb="license", show_progress=False,
    )
    if as_json:
        print_json(report)
    else:
        _print_text(report)
    raise typer.Exit(0 if report.allowed else 1)


def _print_text(report) -> None:
    def say(line: str) -> None:
        stdout.print(line, highlight=False, markup=False)

    say(f"{report.target}" + (f" ({report.digest})" if report.digest else ""))
    say(f"declared: {', '.join(report.declared) if report.declared else '(none)'}")
    for found in report.detected:
        say(f"detected: {found.file}: {found.license} ({found.how}, confidence {found.confidence:.2f})")
    for base in report.base_models:
        licenses = ", ".join(base.licenses) if base.licenses else ("(none)" if base.readable else "(unreadable)")
        say(f"base model: {base.reference}: {licenses}")
    for finding in report.findings:
        say(f"finding: {finding}")
    if report.verdict is not None:
        v = report.verdict
        say(f"verdict: {'allowed' if v.allowed else 'denied'} ({v.status})")
        for reason in v.reasons:
            say(f"  {reason}")
        for warning in v.warnings:
            say(f"  warning: {warning}")
