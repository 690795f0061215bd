"""Commands over evaluation records: eval check (rules, alerts), eval export (Prometheus).
Registered into the `eval` group in ocimodel.cli.app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ocimodel.cli.common import JsonOpt, PlainHttpOpt, connection, print_json, run, stderr, stdout
from ocimodel.cli.trust import TrustedRootOpt


def _api():
    """The API functions, loaded when a command runs (--help and --version load no API)."""
    from ocimodel.api import functions

    return functions


PolicyOpt = Annotated[
    Path | None,
    typer.Option("--policy", metavar="FILE", help="The verify policy: only records signed by its signers count."),
]


def check(
    reference: Annotated[str, typer.Argument(metavar="REF|REPO:ALIAS", help="The model, or the alias whose model is checked now.")],
    rules: Annotated[
        list[str],
        typer.Option("--rule", "-r", metavar="RULE",
                     help="A rule (repeatable): 'accuracy>=0.90', 'loss<0.3', 'accuracy drop<=0.02 from baseline', "
                          "'accuracy drop<=2% from previous', 'latency rise<=10 from baseline'."),
    ],
    window: Annotated[int, typer.Option("--window", "-w", min=1, max=1000, metavar="N",
                                        help="Each of the last N records of a metric must hold (default: the latest).")] = 1,
    max_age: Annotated[str | None, typer.Option("--max-age", metavar="DURATION",
                                                help="A metric whose latest record is older fails: 90s, 30m, 12h, 7d, 2w.")] = None,
    policy: PolicyOpt = None,
    trusted_root: TrustedRootOpt = None,
    notify: Annotated[
        str | None,
        typer.Option("--notify", metavar="URL", envvar="OCIMODEL_NOTIFY_URL", show_envvar=True, show_default=False,
                     help="POST a JSON alert to this webhook (Slack, Teams and alike). A secret: only its scheme and "
                          "host are ever printed; give it in OCIMODEL_NOTIFY_URL to keep it out of `ps`."),
    ] = None,
    state_file: Annotated[
        Path | None,
        typer.Option("--state-file", metavar="FILE",
                     help="Remember the state here and alert only when it changes (failing: an alert; ok again: a recovery)."),
    ] = None,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check rules on the latest evaluation records: exit 0 when all hold, 1 when one fails.

      ocimodel eval check localhost:5000/team/sentiment:production --rule 'accuracy>=0.90' --rule 'accuracy drop<=0.02 from baseline' --max-age 7d

      OCIMODEL_NOTIFY_URL="$SLACK_WEBHOOK" ocimodel eval check localhost:5000/team/sentiment:production --rule 'accuracy>=0.90' --state-file sentiment.state

    REPO:ALIAS checks the model the alias names now. A metric with no record, or whose
    latest record is older than --max-age, fails as missing or stale. With --policy, only
    records signed by the policy's signers count.
    """
    result = run(
        lambda _: _api().check_evaluations(
            reference, rules, window=window, max_age=max_age, policy=policy, trusted_root=trusted_root,
            notify=notify, state_file=state_file, plain_http=plain_http, options=connection(),
        ),
        verb="eval check", show_progress=False,
    )
    note = result.notification
    if as_json:
        print_json(result)
    else:
        for line in result.lines():
            stdout.print(line, highlight=False, markup=False)
        for warning in result.warnings:
            stdout.print(f"warning: {warning}", highlight=False, markup=False)
        if note is not None and note.sent:
            stdout.print(f"alert sent to {note.webhook} ({note.event})", highlight=False, markup=False)
        elif note is not None and note.event is None and note.state_file:
            stdout.print(f"no alert: the state in {note.state_file} did not change", highlight=False, markup=False)
    if note is not None and note.error:
        # On stderr only: with --json, the result above already holds the error (a second
        # JSON document on stdout would break the reader).
        stderr.print(f"error: {note.error}", highlight=False, markup=False)
        hint = ("the state file was left as it was; the next run tries again" if note.state_file else
                "run the check again; with --state-file, the next run retries an alert that was not delivered")
        stderr.print(f"hint: {hint}", highlight=False, markup=False)
        raise typer.Exit(1)
    if not result.ok:
        raise typer.Exit(1)


def export(
    reference: Annotated[str, typer.Argument(metavar="REF|REPO:ALIAS|REPO",
                                             help="A model, the model an alias names now, or a repository: every tagged version.")],
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="prometheus: the text exposition format.")] = "prometheus",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE",
                     help="Write here, whole or not at all, replacing the file (node_exporter's textfile collector "
                          "reads DIR/*.prom); default: standard output."),
    ] = None,
    policy: PolicyOpt = None,
    trusted_root: TrustedRootOpt = None,
    plain_http: PlainHttpOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export the latest evaluation values for Prometheus.

      ocimodel eval export localhost:5000/team/sentiment --format prometheus -o /var/lib/node_exporter/textfile/sentiment.prom

      ocimodel eval export localhost:5000/team/sentiment | curl --data-binary @- http://pushgateway:9091/metrics/job/ocimodel

    One sample per version, metric and dataset, labelled model, version, alias, metric
    and dataset, and the time of its record (ocimodel_evaluation_timestamp_seconds).
    REPO:ALIAS exports the model the alias names now, all its records counted, as
    `eval check` judges it.
    """
    result = run(
        lambda _: _api().export_evaluations(reference, output, fmt=fmt, policy=policy, trusted_root=trusted_root,
                                            plain_http=plain_http, options=connection()),
        verb="eval export", show_progress=False,
    )
    if as_json:
        print_json(result)
    elif result.text is not None:
        import sys

        sys.stdout.write(result.text)
    else:
        stdout.print(f"Wrote {result.samples} sample{'s' * (result.samples != 1)} to {result.output}",
                     highlight=False, markup=False)
    for warning in result.warnings:
        stderr.print(f"warning: {warning}", highlight=False, markup=False)
