"""`ocimodel scan`: what loading a model would run, judged by its bytes (docs/scanning-cli.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ocimodel.cli.common import (
    JsonOpt,
    PlainHttpOpt,
    connection,
    print_json,
    run,
    stdout,
)
from ocimodel.cli.lazy import lazy_import
from ocimodel.cli.signing import IdentityTokenOpt, SigningKeyOpt, StagingOpt, TrustConfigOpt
from ocimodel.errors import UsageError

api = lazy_import("ocimodel")

SEVERITIES = "critical, high, medium, low, info"
FailOnOpt = Annotated[
    str,
    typer.Option("--fail-on", metavar="SEVERITY", help=f"Fail (exit 1) on a finding at or above this: {SEVERITIES}."),
]
AllowOpt = Annotated[
    list[str] | None,
    typer.Option("--allow", metavar="GLOB", help="Trust a callable the scan reports for review (medium and below), e.g. 'mylib.*'; repeatable."),
]
AllowFileOpt = Annotated[
    Path | None, typer.Option("--allow-file", metavar="FILE", help="More --allow globs, one a line (# comments).")
]


def scan(
    target: Annotated[str, typer.Argument(metavar="PATH|REF", help="A file, a model directory, or a model: registry/repo:tag or oci:PATH:tag.")],
    as_json: JsonOpt = False,
    sarif: Annotated[Path | None, typer.Option("--sarif", metavar="FILE", help="Also write the findings as SARIF 2.1.0 (GitHub code scanning); - for standard output.")] = None,
    fail_on: FailOnOpt = "high",
    allow: AllowOpt = None,
    allow_file: AllowFileOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Scan every layer again instead of reusing cached results.")] = False,
    trust_ranges: Annotated[bool, typer.Option("--trust-ranges", help="Judge headers read by HTTP Range without then checking the layer's digest (kilobytes instead of the whole layer).")] = False,
    attest: Annotated[bool, typer.Option("--attest", help="Attach the result to the model as a signed attestation (https://ocimodel.dev/scan/v1).")] = False,
    key: SigningKeyOpt = None,
    identity_token: IdentityTokenOpt = None,
    trust_config: TrustConfigOpt = None,
    staging: StagingOpt = False,
    plain_http: PlainHttpOpt = None,
    variant: Annotated[
        list[str] | None,
        typer.Option("--variant", metavar="KEY=VALUE[,KEY=VALUE]", help="From a variant index, the variant with these labels, e.g. quant=q4; repeatable. `ocimodel inspect REF` lists the variants."),
    ] = None,
) -> None:
    """Scan a model for what loading it would run: pickles are disassembled (never
    loaded), every format is recognised by its bytes, not its name. Exit 0 when nothing at
    or above --fail-on (default high) is found, 1 when something is, 2 for usage errors.

      ocimodel scan ./my-model

      ocimodel scan localhost:5000/team/sentiment:1.0 --sarif scan.sarif

      ocimodel scan localhost:5000/team/sentiment:1.0 --attest --key ci.key

    Severities: critical (a load runs code the author chose), high, medium (a callable
    neither known safe nor known dangerous: review it, or trust it with --allow), low, info.
    """
    from ocimodel.outputs import check_output

    if as_json and sarif is not None and str(sarif) == "-":
        raise UsageError("--json and --sarif - both write to standard output", hint="give --sarif a file name")
    if sarif is not None and str(sarif) != "-":
        run(lambda _: _check_sarif(sarif, check_output), verb="scan", show_progress=False)
    result = run(
        lambda _: api.scan(
            target, fail_on=fail_on, allow=allow or [], allow_file=allow_file, cache=not no_cache,
            trust_ranges=trust_ranges, attest=attest, key=key, identity_token=identity_token,
            trust_config=trust_config, staging=staging, plain_http=plain_http, options=connection(),
            variant=variant or (),
        ),
        verb="scan",
        show_progress=False,
    )
    if sarif is not None:
        from ocimodel import __version__
        from ocimodel.outputs import write_output
        from ocimodel.scanning.sarif import to_sarif

        document = json.dumps(to_sarif(result, tool_version=__version__), indent=2).encode() + b"\n"
        run(lambda _: write_output(sarif, document, replace=True, example="scan.sarif"), verb="scan", show_progress=False)
    if as_json:
        print_json(result)
    elif str(sarif) != "-":
        _print_text(result)
    raise typer.Exit(1 if result.failed else 0)


def _check_sarif(sarif: Path, check_output) -> None:
    """Refuse a --sarif file that cannot be written before the scan, which may download a
    whole model; through `run`, so a refusal is one line, not a traceback."""
    check_output(sarif, replace=True, example="scan.sarif")
    if not sarif.parent.is_dir():
        from ocimodel.errors import OutputError

        raise OutputError(f"cannot write {sarif}: no directory {sarif.parent}", hint="create it first, or name another file")


def _print_text(result) -> None:
    findings = result.findings
    what = f"{result.target} ({result.digest})" if result.digest else result.target
    cached = sum(1 for f in result.files if f.cached)
    from_cache = f", {cached} from the cache" if cached else ""
    stdout.print(f"Scanned {what}: {len(result.files)} files{from_cache}", highlight=False, markup=False)
    # One line a finding (severity, file, offset, rule), its detail indented below: never
    # cut to a column's width, so a file name or a rule can be copied and grepped.
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
    for f in sorted(findings, key=lambda f: (order[f.severity.value], f.file, f.offset or 0)):
        name = f.file if f.member is None or f.member == f.file else f"{f.file} ({f.member})"
        where = "" if f.offset is None else f" @{f.offset}"
        stdout.print(f"{f.severity.value:<9} {name}{where}  {f.format}  {f.rule}", highlight=False, markup=False)
        stdout.print(f"          {f.detail}", highlight=False, markup=False)
    worst = result.worst()
    verdict = "FAIL" if result.failed else "pass"
    worst_text = worst.value if worst is not None else "nothing"
    stdout.print(f"{verdict}: worst finding {worst_text} (--fail-on {result.fail_on.value})", highlight=False, markup=False)
    if result.attestation is not None:
        stdout.print(f"Attested with {result.attestation.signer}: {result.attestation.referrer}", highlight=False, markup=False)
