"""`ocimodel sbom`: a CycloneDX 1.6 ML bill of materials of a model (docs/sbom.md)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from ocimodel.cli.common import JsonOpt, PlainHttpOpt, connection, print_json, run, stderr, stdout
from ocimodel.cli.lazy import lazy_import
from ocimodel.cli.signing import (
    IdentityTokenOpt,
    SigningKeyOpt,
    StagingOpt,
    TrustConfigOpt,
    password_for,
)
from ocimodel.cli.trust import RefArg
from ocimodel.errors import UsageError

api = lazy_import("ocimodel")


def sbom(
    reference: RefArg,
    output: Annotated[str | None, typer.Option("--output", "-o", metavar="FILE", help="Write the BOM to FILE (- for standard output) and print a summary.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it is an existing regular file.")] = False,
    attest: Annotated[bool, typer.Option("--attest", help="Attach the BOM as a signed attestation (type https://cyclonedx.org/bom).")] = False,
    key: SigningKeyOpt = None,
    identity_token: IdentityTokenOpt = None,
    trust_config: TrustConfigOpt = None,
    staging: StagingOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the ML bill of materials of a model: CycloneDX 1.6 JSON with the model and
    its card, every file with its SHA-256, base models, datasets, licenses and the Python
    packages its code needs. The same model gives the same document.

      ocimodel sbom localhost:5000/team/sentiment:1.0 -o sentiment.cdx.json

      ocimodel sbom localhost:5000/team/sentiment:1.0 --attest --key release.key

    Without -o or --attest, the BOM goes to standard output. --json prints the result
    (reference, digest, output, attestation referrer, and the BOM) as one JSON object.
    """
    if as_json and output == "-":
        raise UsageError("--json and -o - would both write to standard output", hint="write the BOM to a file with -o FILE")
    result = run(
        lambda _: api.sbom(
            reference, output=output, overwrite=force, attest=attest, key=key,
            password=password_for(key) if attest else None, identity_token=identity_token,
            trust_config=trust_config, staging=staging, plain_http=plain_http, options=connection(),
        ),
        verb="sbom",
        show_progress=False,
    )
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    if output is None and not attest:
        sys.stdout.write(json.dumps(result.bom, indent=2, sort_keys=True) + "\n")
        return
    # With -o -, the BOM is on standard output: the summary goes to standard error.
    console = stderr if output == "-" else stdout
    if output is not None and output != "-":
        console.print(f"Wrote {output}: CycloneDX 1.6 ML-BOM of {result.reference} ({result.digest}), "
                     f"{result.components} components", highlight=False, markup=False)
    if result.attestation is not None:
        console.print(f"Attested https://cyclonedx.org/bom for {result.reference}: referrer {result.attestation}",
                     highlight=False, markup=False)
