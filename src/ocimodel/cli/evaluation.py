"""Commands for evaluation records: eval record, eval history."""

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
    password_for,
)
from ocimodel.cli.trust import OfflineOpt, TrustedRootOpt


def _api():
    """The API functions, loaded when a command runs (--help and --version load no API)."""
    from ocimodel.api import functions

    return functions


eval_app = typer.Typer(
    name="eval",
    help=(
        "Evaluation records: how a model measures after it was pushed, and their history.\n\n"
        "  ocimodel eval record localhost:5000/team/sentiment:1.2 --metric accuracy=0.91 --environment production\n\n"
        "  ocimodel eval history localhost:5000/team/sentiment:production --metric accuracy"
    ),
    no_args_is_help=True,
)

RefArg = Annotated[str, typer.Argument(metavar="REF", help="The model: registry/repo:tag, repo@digest or oci:PATH:tag.")]


@eval_app.command("record")
def record(
    reference: RefArg,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", metavar="NAME=VALUE", help="A measured value, e.g. accuracy=0.91; repeatable."),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", metavar="URI[@sha256:...]", help="What it was measured on (for the metrics that name none); @digest pins the data."),
    ] = None,
    split: Annotated[str | None, typer.Option("--split", metavar="NAME", help="The dataset split, e.g. test.")] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", metavar="NAME", help="Where it was measured: production, staging...")
    ] = None,
    time: Annotated[
        str | None,
        typer.Option("--time", metavar="ISO8601", help="When it was measured: RFC 3339 with a zone, e.g. 2026-06-01T08:00:00Z (default: now)."),
    ] = None,
    notes: Annotated[str | None, typer.Option("--notes", metavar="TEXT", help="Free text kept in the record.")] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from", metavar="FILE",
            help="Read the metrics from FILE ('-': standard input): JSON as a monitoring job writes it "
            "(schemas/evaluation-predicate.schema.json: {\"metrics\": [{\"name\", \"value\", \"dataset\", \"split\"}], "
            "\"environment\", \"time\", \"notes\"}) or CSV with a header line metric,value[,dataset,split]. "
            "--metric adds to them; --environment, --time, --notes override the file's.",
        ),
    ] = None,
    key: RecordKeyOpt = None,
    keyless: KeylessOpt = False,
    identity_token: RecordIdentityTokenOpt = None,
    trust_config: TrustConfigOpt = None,
    staging: StagingOpt = False,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Record how a model measured (an in-toto statement attached to the model, signed
    with --key or keyless, else unsigned).

      ocimodel eval record localhost:5000/team/sentiment:1.2 --metric accuracy=0.91 --metric f1=0.88 --dataset s3://evals/june.parquet --environment production --key evaluator.key

      ocimodel eval record localhost:5000/team/sentiment:1.2 --from metrics.csv

    The recorder is OCIMODEL_ACTOR, else the CI user, else user@host. A metric that is not
    a finite number, a bad name, time or dataset digest is a usage error (exit 2) and
    nothing is written.
    """
    result = run(
        lambda _: _api().record_evaluation(
            reference, list(metric or []), dataset=dataset, split=split, environment=environment, time=time,
            notes=notes, from_file=str(from_file) if from_file is not None else None, key=key,
            password=password_for(key), keyless=keyless, identity_token=identity_token, trust_config=trust_config,
            staging=staging, plain_http=plain_http, options=connection(),
        ),
        verb="eval record", show_progress=False,
    )
    if as_json:
        print_json(result)
    elif quiet:
        stdout.print(result.record, highlight=False)
    else:
        p = result.predicate
        values = ", ".join(f"{m.name}={m.value:g}" for m in p.metrics)
        stdout.print(f"Recorded {values} for {result.reference} ({result.digest}) at {p.time}"
                     + (f" in {p.environment}" if p.environment else ""), highlight=False, markup=False)
        stdout.print(f"Record: {result.record} ({'signed with ' + result.signer if result.signed else 'unsigned'})",
                     highlight=False, markup=False)


@eval_app.command("history")
def history(
    reference: Annotated[
        str, typer.Argument(metavar="REF|REPO|REPO:ALIAS", help="One model, every version of a repository, or the versions an alias held.")
    ],
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", metavar="NAME", help="Only this metric; repeatable.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="TIME", help="Records from this time on: RFC 3339, or 7d, 12h, 30m, 2w ago.")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", metavar="FILE", help="The verify policy: mark each signed record trusted or untrusted by its signers."),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", metavar="FILE.svg|FILE.png", help="Also draw the history to FILE (needs pip install 'ocimodel[plot]')."),
    ] = None,
    trusted_root: TrustedRootOpt = None,
    offline: OfflineOpt = True,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the baseline (the metrics pushed with the model) and every evaluation record,
    oldest first, with a chart per metric.

      ocimodel eval history localhost:5000/team/sentiment:1.2

      ocimodel eval history localhost:5000/team/sentiment:production --metric accuracy --since 30d --plot accuracy.svg

    For REPO:ALIAS each record is shown under the version that held the alias at its time
    (from the promotion history); records of a version made while the alias was elsewhere
    are left out.
    """
    from ocimodel.api import evaluation_charts

    if plot is not None:
        evaluation_charts.check_plot_path(plot)
    result = run(
        lambda _: _api().evaluation_history(
            reference, metric=list(metric or []) or None, since=since, policy=policy, trusted_root=trusted_root,
            offline=offline, plain_http=plain_http, options=connection(),
        ),
        verb="eval history", show_progress=False,
    )
    if plot is not None:
        run(lambda _: evaluation_charts.plot(result, plot), verb="eval history", show_progress=False)
    if as_json:
        print_json(result)
        return
    _print_history(result, evaluation_charts)
    if plot is not None:
        stdout.print(f"Plot: {plot}", highlight=False, markup=False)


def _short(dataset: str) -> str:
    """A dataset with its digest cut to 12 hex digits, as `docker images` shows ids (--json has it whole)."""
    uri, at, digest = dataset.rpartition("@")
    return f"{uri}@{digest[:19]}" if at and digest.startswith(("sha256:", "sha512:")) else dataset


def _print_history(result, charts) -> None:
    if not result.records:
        stdout.print(f"no evaluation record and no baseline metric for {result.reference}", highlight=False, markup=False)
    for r in result.records:
        when = r.time or "(push time not recorded)"
        version = r.version or r.digest[:19]
        if r.alias:
            version += f" ({r.alias})"
        values = "  ".join(f"{m.name}={m.value:g}" + (f" [{_short(m.dataset)}" + (f" {m.split}" if m.split else "") + "]" if m.dataset else "")
                           for m in r.metrics)
        if r.baseline:
            mark = "baseline"
        else:
            mark = r.trust + (f" by {', '.join(r.signers)}" if r.signers else "")
            if r.environment:
                values += f"  env={r.environment}"
        stdout.print(f"{when:<32} {version:<20} {values}  [{mark}]", highlight=False, markup=False)
    chart = charts.text_chart(result)
    if chart:
        stdout.print("", highlight=False)
    for line in chart:
        stdout.print(line, highlight=False, markup=False)
    for warning in result.warnings:
        stdout.print(f"warning: {warning}", highlight=False, markup=False)

