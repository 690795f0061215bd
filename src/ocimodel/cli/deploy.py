"""Commands for deployment records: deploy record, deploy retire, deployments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ocimodel.cli.common import JsonOpt, PlainHttpOpt, QuietOpt, connection, print_json, run, stdout
from ocimodel.cli.signing import (
    KeylessOpt,
    RecordIdentityTokenOpt,
    RecordKeyOpt,
    StagingOpt,
    TrustConfigOpt,
)


def _api():
    """The API functions, loaded when a command runs (--help and --version load no API)."""
    from ocimodel.api import functions

    return functions

deploy_app = typer.Typer(
    name="deploy",
    help=(
        "Deployment records: where a model runs (signed like attestations).\n\n"
        "  ocimodel deploy record localhost:5000/team/sentiment:1.2 --environment prod --target k8s://eu-1/serving/sentiment --key deployer.key"
    ),
    no_args_is_help=True,
)

RefArg = Annotated[str, typer.Argument(metavar="REF", help="The model: registry/repo:tag, repo@digest or oci:PATH:tag.")]
EnvironmentOpt = Annotated[str, typer.Option("--environment", "-e", metavar="NAME", help="The environment, e.g. prod or staging.")]
TargetOpt = Annotated[str, typer.Option("--target", metavar="URI", help="Where it runs, e.g. k8s://cluster/namespace/name.")]
PolicyOpt = Annotated[
    Path | None,
    typer.Option("--policy", metavar="FILE", help="The verify policy: mark each record trusted or untrusted by its signers; only trusted records count."),
]
TrustedRootOpt = Annotated[
    Path | None, typer.Option("--trusted-root", metavar="FILE", help="Keyless: the Sigstore trusted_root.json to verify with.")
]


def _print_written(result, as_json: bool, quiet: bool) -> None:
    if as_json:
        print_json(result)
    elif quiet:
        stdout.print(result.record, highlight=False)
    else:
        verb = "Deployed" if result.action == "record" else "Retired"
        where = "to" if result.action == "record" else "from"
        stdout.print(f"{verb} {result.reference} ({result.digest}) {where} {result.environment} {result.target}",
                     highlight=False, markup=False)
        stdout.print(f"Record: {result.record} ({'signed with ' + result.signer if result.signed else 'unsigned'})",
                     highlight=False, markup=False)


@deploy_app.command("record")
def record(
    reference: RefArg,
    environment: EnvironmentOpt,
    target: TargetOpt,
    endpoint: Annotated[str | None, typer.Option("--endpoint", metavar="URL", help="The URL it serves at.")] = None,
    runtime: Annotated[str | None, typer.Option("--runtime", metavar="NAME", help="What serves it, e.g. vllm.")] = None,
    key: RecordKeyOpt = None,
    keyless: KeylessOpt = False,
    identity_token: RecordIdentityTokenOpt = None,
    trust_config: TrustConfigOpt = None,
    staging: StagingOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Record that a model now runs at a target (it replaces the model recorded there before).

      ocimodel deploy record localhost:5000/team/sentiment:1.2 --environment prod --target k8s://eu-1/serving/sentiment --runtime vllm --key deployer.key

    The record is an in-toto statement (https://ocimodel.dev/deployment/v1) attached to
    the model, signed as `attest` signs; the actor is OCIMODEL_ACTOR, else the CI user,
    else user@host.
    """
    result = run(
        lambda _: _api().deploy(
            reference, environment=environment, target=target, endpoint=endpoint, runtime=runtime, key=key,
            keyless=keyless, identity_token=identity_token, trust_config=trust_config, staging=staging,
            plain_http=plain_http, options=connection(),
        ),
        verb="deploy record", show_progress=False,
    )
    _print_written(result, as_json, quiet)


@deploy_app.command("retire")
def retire(
    reference: RefArg,
    environment: EnvironmentOpt,
    target: TargetOpt,
    key: RecordKeyOpt = None,
    keyless: KeylessOpt = False,
    identity_token: RecordIdentityTokenOpt = None,
    trust_config: TrustConfigOpt = None,
    staging: StagingOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Record that a model no longer runs at a target.

      ocimodel deploy retire localhost:5000/team/sentiment:1.1 --environment prod --target k8s://eu-1/serving/sentiment --key deployer.key
    """
    result = run(
        lambda _: _api().retire(
            reference, environment=environment, target=target, key=key, keyless=keyless,
            identity_token=identity_token, trust_config=trust_config, staging=staging,
            plain_http=plain_http, options=connection(),
        ),
        verb="deploy retire", show_progress=False,
    )
    _print_written(result, as_json, quiet)


def deployments(
    repository: Annotated[str, typer.Argument(metavar="REPO", help="registry/team/model or oci:PATH.")],
    policy: PolicyOpt = None,
    trusted_root: TrustedRootOpt = None,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show where each version runs now and since when, then every deployment record.

      ocimodel deployments localhost:5000/team/sentiment --policy policy.yaml
    """
    result = run(
        lambda _: _api().deployments(repository, policy=policy, trusted_root=trusted_root, plain_http=plain_http,
                                  options=connection()),
        verb="deployments", show_progress=False,
    )
    if as_json:
        print_json(result)
        return
    if not result.running:
        stdout.print(f"nothing of {result.repository} runs anywhere by the records"
                     + (" a policy signer signed" if result.policy else ""), highlight=False, markup=False)
    for d in result.running:
        version = ", ".join(d.tags) or "-"
        endpoint = f" at {d.endpoint}" if d.endpoint else ""
        stdout.print(f"{d.environment} {d.target}: {version} ({d.digest}){endpoint} since {d.since} by {d.actor}  [{d.trust}]",
                     highlight=False, markup=False)
    if result.records:
        stdout.print("records, newest first:", highlight=False)
    for r in result.records:
        trust = r.trust + (f" by {', '.join(r.signers)}" if r.signers else "")
        version = ", ".join(r.tags) or r.digest[:19]
        stdout.print(f"  {r.time:<28} {r.action:<7} {r.environment} {r.target} {version} by {r.actor}  [{trust}]",
                     highlight=False, markup=False)
    for warning in result.warnings:
        stdout.print(f"warning: {warning}", highlight=False, markup=False)
