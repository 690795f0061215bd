"""Checks, alerts and exports over evaluation records (issue 18):

    result = client.check_evaluations("registry/team/sentiment:production",
                                      ["accuracy>=0.90", "accuracy drop<=0.02 from baseline"],
                                      max_age="7d", notify=webhook_url, state_file="sentiment.state")
    result.ok, result.failures

    client.export_evaluations("registry/team/sentiment", output="/var/lib/node_exporter/sentiment.prom")

A check judges the model a reference names NOW (for ``REPO:ALIAS``, the version the alias
holds at the time of the check): the records about that digest and its baseline (the
card's push-time metrics), read by :func:`ocimodel.api.evaluations.evaluation_history`.
With a policy only trusted records count (a record signed by a signer of the policy); the
others are counted as ignored. The rules and their verdict are
:mod:`ocimodel.monitoring.rules`; alerts and the state file :mod:`ocimodel.monitoring.alerts`
(docs/monitoring.md)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from ocimodel.api.common import DEFAULT_TAG, as_reference, open_store
from ocimodel.errors import NotFound
from ocimodel.monitoring import alerts
from ocimodel.monitoring.rules import (
    Outcome,
    format_duration,
    judge,
    parse_duration,
    parse_rules,
    parse_time,
    point_of,
)
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.versiontags import is_version_tag

PathLike = str | os.PathLike[str]


class RuleOutcome(BaseModel):
    rule: str  # as written, spacing normalised
    metric: str
    passed: bool
    kind: Literal["threshold", "change", "missing", "stale"]  # missing / stale: no (fresh) record
    detail: str  # one line for people
    value: float | None = None
    reference_value: float | None = None  # the baseline or previous value of a drop / rise rule
    dataset: str | None = None
    version: str | None = None
    digest: str | None = None
    time: str | None = None  # of the record judged


class Notification(BaseModel):
    webhook: str  # scheme://host of the URL only: the rest is a secret
    event: Literal["firing", "resolved"] | None  # what was (or would have been) sent; None: nothing to send
    sent: bool
    attempts: int = 0
    error: str | None = None  # why it was not delivered (the state file is then left as it was)
    state_file: str | None = None


class EvaluationCheck(BaseModel):
    reference: str  # as given
    model: str  # the repository
    digest: str  # the model judged: what the reference named at the time of the check
    version: str | None  # a version tag naming it, if any
    alias: str | None  # the alias of the reference, if it names one
    ok: bool  # every rule held
    rules: list[str]
    window: int
    max_age: str | None
    trusted_only: bool  # a policy was given: only its signers' records counted
    records: int  # evaluation records of this model that counted
    ignored: int  # records that did not count (untrusted under the policy)
    outcomes: list[RuleOutcome]  # each rule on each record judged
    failures: list[RuleOutcome]
    checked: str  # when, RFC 3339 UTC
    notification: Notification | None = None
    warnings: list[str] = []

    def lines(self) -> list[str]:
        """The verdict for people: one line per rule and record."""
        name = self.version or self.digest
        head = f"{'OK' if self.ok else 'FAILING'} {self.model}" + (f":{self.alias}" if self.alias else "")
        out = [f"{head} -> {name} ({self.digest}), {self.records} record{'s' * (self.records != 1)}"
               + (f", {self.ignored} untrusted ignored" if self.ignored else "")]
        for o in self.outcomes:
            where = f" [{o.version or (o.digest or '')[:19]} {o.time}]" if o.time else ""
            out.append(f"{'pass' if o.passed else 'FAIL'} {o.rule}: {o.detail}{where}")
        return out


class ExportedEvaluations(BaseModel):
    reference: str
    format: str
    samples: int  # one per model version, metric and dataset
    output: str | None  # the file written; None: the text is in ``text``
    text: str | None = None
    warnings: list[str] = []


def check_evaluations(
    connection: ConnectionOptions,
    reference: str,
    rules: Sequence[str],
    *,
    window: int = 1,
    max_age: str | timedelta | None = None,
    policy: PathLike | None = None,
    trusted_root: PathLike | None = None,
    notify: str | None = None,
    state_file: PathLike | None = None,
    now: datetime | None = None,
) -> EvaluationCheck:
    """Judge ``rules`` (``accuracy>=0.90``, ``accuracy drop<=0.02 from baseline``...) on
    the latest evaluation record of the model ``reference`` names (``REF`` or
    ``REPO:ALIAS``), or on each of the last ``window`` records; a metric without a record,
    or whose latest record is older than ``max_age`` (``7d``, ``12h``...), fails.

    ``notify``: POST an alert to this webhook URL (a secret: only its scheme and host
    are ever shown). Without ``state_file`` every failing check alerts; with it, only a
    change of state does (ok -> failing alerts, failing -> ok sends a recovery). A rule
    that does not parse, a bad duration or a bad state file is a UsageError, raised
    before the registry is asked. The result says ``ok``; it does not raise on a failed
    rule."""
    parsed = parse_rules(rules)
    age = parse_duration(max_age, "max age") if max_age is not None else None
    if notify is not None:
        alerts.check_url(notify)
    ref = as_reference(reference)
    model = str(ref.with_tag(None).with_digest(None))
    shown = str(ref)
    state_path = Path(state_file) if state_file is not None else None
    previous = alerts.read_state(state_path, shown) if state_path is not None else None
    checked_at = now or datetime.now(timezone.utc)

    tag = ref.tag or (DEFAULT_TAG if ref.digest is None else None)
    alias = tag if tag is not None and not is_version_tag(tag) else None
    version = tag if tag is not None and is_version_tag(tag) else None
    with open_store(connection, ref) as target:
        try:
            digest = target.resolve(ref.reference or DEFAULT_TAG).digest
        except NotFound as exc:
            if ref.reference is None:  # REPO alone: a check is of one model, say how to name it
                exc.hint = (f"name the version or alias to check, e.g. {model}:1.0 or {model}:production"
                            + (f"; {exc.hint}" if exc.hint else ""))
            raise
        if version is None:  # an alias or a digest: the version tag that names the same model
            from ocimodel.api.statements import tagged

            named = sorted(t for t, d in tagged(target).items() if d == digest and is_version_tag(t))
            version = named[-1] if named else None

    from ocimodel.api.evaluations import evaluation_history

    # By digest: the records of the model the reference names now, not of whatever the
    # alias held when each record was made.
    history = evaluation_history(connection, str(ref.with_tag(None).with_digest(digest)), policy=policy,
                                 trusted_root=trusted_root)
    counted, ignored = [], 0
    for record in history.records:
        if record.digest != digest:
            continue
        if policy is not None and not record.baseline and record.trust != "trusted":
            ignored += 1
            continue
        counted.append(record)
    points = [p for p in (point_of(r) for r in counted) if p is not None]
    outcomes = [_outcome(o) for o in judge(points, parsed, window=window, max_age=age, now=checked_at)]
    failures = [o for o in outcomes if not o.passed]
    result = EvaluationCheck(
        reference=shown, model=model, digest=digest, version=version, alias=alias, ok=not failures,
        rules=[r.text for r in parsed], window=window, max_age=format_duration(age) if age else None,
        trusted_only=policy is not None, records=sum(1 for p in points if not p.baseline), ignored=ignored,
        outcomes=outcomes, failures=failures,
        checked=checked_at.isoformat(timespec="seconds").replace("+00:00", "Z"), warnings=list(history.warnings),
    )
    if notify is not None:
        result.notification = _notify(connection, notify, result, previous, state_path)
    elif state_path is not None:
        _write_state(state_path, result, previous)
    return result


def _outcome(o: Outcome) -> RuleOutcome:
    return RuleOutcome(rule=o.rule, metric=o.metric, passed=o.passed, kind=o.kind, detail=o.detail, value=o.value,
                       reference_value=o.reference_value, dataset=o.dataset, version=o.version, digest=o.digest,
                       time=o.time)


def _state_of(result: EvaluationCheck, previous: alerts.State | None) -> alerts.State:
    failures = frozenset((f.rule, f.kind, f.digest or result.digest) for f in result.failures)
    status = "failing" if result.failures else "ok"
    unchanged = previous is not None and previous.status == status and previous.failures == failures
    return alerts.State(status=status, failures=failures, since=previous.since if unchanged else result.checked)


def _write_state(path: Path, result: EvaluationCheck, previous: alerts.State | None) -> None:
    alerts.write_state(path, result.reference, _state_of(result, previous))


def _notify(connection: ConnectionOptions, url: str, result: EvaluationCheck, previous: alerts.State | None,
            state_path: Path | None) -> Notification:
    current = _state_of(result, previous)
    event = alerts.transition(previous, current) if state_path is not None else ("firing" if result.failures else None)
    shown = alerts.redact(url)
    note = Notification(webhook=shown, event=event, sent=False, state_file=str(state_path) if state_path else None)
    if event is not None:
        failures = [{"metric": f.metric, "rule": f.rule, "kind": f.kind, "value": f.value,
                     "reference_value": f.reference_value, "dataset": f.dataset, "version": f.version,
                     "digest": f.digest, "time": f.time, "detail": f.detail} for f in result.failures]
        held = "every rule holds again (" + ", ".join(result.rules) + ")"
        document = alerts.alert_document(event, result.model, result.reference, result.version, result.digest,
                                         failures, result.checked, held)
        try:
            delivery = alerts.post_alert(url, document, verify=_tls_context(connection, url))
        except alerts.AlertFailed as exc:
            note.error = exc.message
            return note  # the state stays: the next run tries again
        note.sent, note.attempts = True, delivery.attempts
    if state_path is not None:
        alerts.write_state(state_path, result.reference, current)
    return note


def _tls_context(connection: ConnectionOptions, url: str):
    """The TLS context for the webhook: the system's CAs plus --ca-file, as for registries."""
    from urllib.parse import urlsplit

    from ocimodel.transport.tls import build_tls

    parts = urlsplit(url)
    if parts.scheme != "https":
        return True
    return build_tls(parts.netloc.rpartition("@")[2], connection.tls).context


# -- export ----------------------------------------------------------------------------------


def export_evaluations(
    connection: ConnectionOptions,
    reference: str,
    output: PathLike | None = None,
    *,
    fmt: str = "prometheus",
    policy: PathLike | None = None,
    trusted_root: PathLike | None = None,
) -> ExportedEvaluations:
    """The latest evaluation value of each model version, metric and dataset of
    ``reference`` (a model; ``REPO:ALIAS``: the model the alias names now, with all its
    records, as ``check_evaluations`` judges it; or a repository: every tagged version) in Prometheus' text
    format, labelled model, version, alias (the aliases naming the version now),
    metric and dataset, plus the time of each value's record. ``output``: a file, written
    whole or not at all and replaced each time (node_exporter's textfile collector reads
    it while it may be rewritten); None: the text is returned in ``text``. With
    ``policy``, only trusted records count."""
    from ocimodel.errors import OutputError, UsageError

    if fmt != "prometheus":
        raise UsageError(f"unknown export format {fmt!r}", hint="the one format is prometheus")
    from ocimodel.api.evaluations import evaluation_history
    from ocimodel.api.statements import tagged
    from ocimodel.monitoring.prometheus import Sample, exposition
    from ocimodel.outputs import is_stdout, write_output

    ref = as_reference(reference)
    model = str(ref.with_tag(None).with_digest(None))
    if output is not None and not is_stdout(output) and not Path(output).absolute().parent.is_dir():
        # Said before the registry is read, with what to do (the write would fail bare).
        raise OutputError(f"cannot write {output}: its directory {Path(output).absolute().parent} does not exist",
                          hint="create the directory first (node_exporter reads its --collector.textfile.directory), "
                               "or leave out -o to write to standard output")
    only = None  # REPO:ALIAS: the model the alias names now, with all its records, as check judges it
    with open_store(connection, ref) as target:
        tags = tagged(target)
        if ref.tag is not None and ref.digest is None and not is_version_tag(ref.tag):
            only = target.resolve(ref.tag).digest
    source = str(ref) if only is None else str(ref.with_tag(None).with_digest(only))
    history = evaluation_history(connection, source, policy=policy, trusted_root=trusted_root)
    aliases: dict[str, list[str]] = {}
    versions: dict[str, list[str]] = {}
    for tag, digest in sorted(tags.items()):
        (versions if is_version_tag(tag) else aliases).setdefault(digest, []).append(tag)
    latest: dict[tuple[str, str, str], tuple[datetime, float, str | None]] = {}
    for record in history.records:
        if record.baseline or (policy is not None and record.trust != "trusted"):
            continue
        if only is not None and record.digest != only:
            continue
        when = parse_time(record.time)
        if when is None:
            continue
        for metric in record.metrics:
            key = (record.digest, metric.name, metric.dataset or "")
            if key not in latest or latest[key][0] <= when:
                latest[key] = (when, float(metric.value), record.version)
    samples = []
    for (digest, metric, dataset), (when, value, version) in sorted(latest.items()):
        shown_version = version or ",".join(versions.get(digest, [])) or digest
        samples.append(Sample(model=model, version=shown_version, alias=",".join(aliases.get(digest, [])),
                              metric=metric, dataset=dataset, value=value, timestamp=when.timestamp()))
    data = exposition(samples)
    result = ExportedEvaluations(reference=str(ref), format=fmt, samples=len(samples),
                                 output=None if output is None else str(output), warnings=list(history.warnings))
    if output is None:
        result.text = data.decode()
    else:
        write_output(output, data, replace=True)
    return result
