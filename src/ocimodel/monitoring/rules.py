"""Rules over evaluation records, and their verdict.

    accuracy>=0.90                          the value itself: >=, >, <=, <
    accuracy drop<=0.02 from baseline       at most 0.02 below the push-time value (the card)
    accuracy drop<=2% from previous         at most 2 % below the record before
    loss rise<=0.05 from baseline           for metrics where lower is better

A rule is judged per metric on the latest record that measures it, or on each of the
last ``window`` such records; a record measuring the metric on several datasets must
hold on each. A drop or rise compares like with like: the reference value of the same
metric on the same dataset and split (none matches none only), else the rule fails as
missing.
A metric with no record is a failure of its own kind (``missing``), and so
is one whose latest record is older than ``max_age`` (``stale``): silence is not health.
Nothing here reads a registry: the records come in, a verdict goes out."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from ocimodel.errors import UsageError

RULE_SYNTAX = (
    "METRIC>=N, METRIC>N, METRIC<=N, METRIC<N, or METRIC drop<=N[%] from baseline|previous "
    "(rise<=N[%] for lower-is-better), e.g. 'accuracy>=0.90' or 'accuracy drop<=0.02 from baseline'"
)
_METRIC = r"(?P<metric>[A-Za-z0-9_][A-Za-z0-9_.:/-]*)"
_NUMBER = r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
_THRESHOLD = re.compile(rf"^\s*{_METRIC}\s*(?P<op>>=|<=|>|<)\s*{_NUMBER}\s*$")
_CHANGE = re.compile(
    rf"^\s*{_METRIC}\s+(?P<kind>drop|rise)\s*<=\s*{_NUMBER}\s*(?P<percent>%)?\s+from\s+(?P<reference>baseline|previous)\s*$"
)
_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}

Kind = Literal["threshold", "change", "missing", "stale"]


@dataclass(frozen=True)
class Rule:
    """One parsed rule. ``text`` is the rule as written (normalised spacing), for messages."""

    metric: str
    op: str  # >=, >, <=, < ; or "drop" / "rise"
    limit: float
    percent: bool = False
    reference: str | None = None  # baseline or previous, for drop / rise

    @property
    def text(self) -> str:
        if self.reference is None:
            return f"{self.metric}{self.op}{_num(self.limit)}"
        return f"{self.metric} {self.op}<={_num(self.limit)}{'%' if self.percent else ''} from {self.reference}"


def parse_rule(text: str) -> Rule:
    """A rule from its text; a UsageError (with the syntax as hint) when it does not parse."""
    if not isinstance(text, str) or len(text) > 300:
        raise UsageError("a rule is a short text", hint=f"rules: {RULE_SYNTAX}")
    match = _THRESHOLD.match(text)
    if match:
        return Rule(match["metric"], match["op"], _finite(match["number"], text))
    match = _CHANGE.match(text)
    if match:
        limit = _finite(match["number"], text)
        if limit < 0:
            raise UsageError(f"rule {text!r}: a {match['kind']} limit is not negative", hint=f"rules: {RULE_SYNTAX}")
        return Rule(match["metric"], match["kind"], limit, percent=bool(match["percent"]), reference=match["reference"])
    raise UsageError(f"rule {text!r} does not parse", hint=f"rules: {RULE_SYNTAX}")


def parse_rules(texts: Iterable[str]) -> list[Rule]:
    rules = [parse_rule(t) for t in texts]
    if not rules:
        raise UsageError("no rule to check", hint=f"give --rule, e.g. --rule 'accuracy>=0.90'; rules: {RULE_SYNTAX}")
    return rules


def parse_duration(text: str | int | float | timedelta | None, what: str = "max age") -> timedelta | None:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` (or seconds, or a timedelta) as a timedelta."""
    if text is None or isinstance(text, timedelta):
        return text
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise UsageError(f"{what} {text!r} is not a duration", hint="e.g. 7d, 12h, 30m, 90s or 2w")
        seconds = float(match["n"]) * _UNITS[match["unit"]]
    if not 0 < seconds < 100 * 365 * 86400:
        raise UsageError(f"{what} {text!r} is not a positive duration", hint="e.g. 7d, 12h, 30m, 90s or 2w")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds >= 3600:
        return f"{seconds / 86400:.1f}d" if seconds >= 86400 else f"{seconds / 3600:.1f}h"
    return f"{int(seconds)}s"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time with a zone as an aware UTC datetime; None when it is not one."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.astimezone(timezone.utc)


# -- the records as this module sees them ---------------------------------------------------


@dataclass(frozen=True)
class Measure:
    name: str
    value: float
    dataset: str | None = None
    split: str | None = None

    @property
    def on(self) -> str | None:
        """Where it was measured, for messages: ``imdb (test)``; None: nowhere named."""
        if self.dataset is None and self.split is None:
            return None
        return f"{self.dataset or ''}{f' ({self.split})' if self.split else ''}".strip()


@dataclass(frozen=True)
class Point:
    """One evaluation record: when, of which model, what it measured."""

    time: datetime
    digest: str
    version: str | None
    measures: tuple[Measure, ...]
    baseline: bool = False
    alias: str | None = None

    def values(self, metric: str) -> list[Measure]:
        return [m for m in self.measures if m.name == metric]


def point_of(record: Any) -> Point | None:
    """A Point from an evaluation record (api.evaluations.EvaluationRecord or alike: time,
    digest, version, metrics with name / value / dataset, baseline); None when a record's
    time is not a time (a baseline without one still is the baseline)."""
    baseline = bool(getattr(record, "baseline", False))
    when = parse_time(getattr(record, "time", None))
    if when is None and baseline:
        when = datetime.min.replace(tzinfo=timezone.utc)  # a push that recorded no time: still the baseline
    if when is None:
        return None
    measures = tuple(
        Measure(m.name, float(m.value), getattr(m, "dataset", None), getattr(m, "split", None))
        for m in getattr(record, "metrics", ()) or ()
        if isinstance(m.value, (int, float)) and math.isfinite(m.value)
    )
    return Point(time=when, digest=record.digest, version=getattr(record, "version", None), measures=measures,
                 baseline=baseline, alias=getattr(record, "alias", None))


# -- the verdict ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One rule on one record (or the lack of one)."""

    rule: str
    metric: str
    passed: bool
    kind: Kind
    detail: str
    value: float | None = None
    reference_value: float | None = None  # the baseline or previous value of a drop / rise
    dataset: str | None = None
    version: str | None = None
    digest: str | None = None
    time: str | None = None  # of the record judged

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two failures the same failure (the values may move): the rule, the
        kind of failure and the model."""
        return (self.rule, self.kind, self.digest or "")


def judge(
    points: Sequence[Point],
    rules: Sequence[Rule],
    *,
    window: int = 1,
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> list[Outcome]:
    """Every rule on the latest ``window`` records measuring its metric (``points``:
    records and baselines of one model, any order). One Outcome per rule, record and
    dataset; a missing or stale metric is one failed Outcome for the rule."""
    if window < 1:
        raise UsageError(f"window {window} is not a positive number of records")
    now = now or datetime.now(timezone.utc)
    ordered = sorted(points, key=lambda p: p.time)
    records = [p for p in ordered if not p.baseline]
    baselines = [p for p in ordered if p.baseline]
    outcomes: list[Outcome] = []
    for rule in rules:
        series = [p for p in records if p.values(rule.metric)]
        if not series:
            outcomes.append(Outcome(rule.text, rule.metric, False, "missing",
                                    f"no evaluation record measures {rule.metric}"))
            continue
        latest = series[-1]
        if max_age is not None and now - latest.time > max_age:
            outcomes.append(Outcome(
                rule.text, rule.metric, False, "stale",
                f"the latest record of {rule.metric} is from {_iso(latest.time)}, older than {format_duration(max_age)}",
                version=latest.version, digest=latest.digest, time=_iso(latest.time),
            ))
            continue
        start = max(0, len(series) - window)
        for index in range(start, len(series)):
            outcomes += _judge_point(rule, series[index], series[index - 1] if index else None, baselines)
    return outcomes


def _judge_point(rule: Rule, point: Point, previous: Point | None, baselines: list[Point]) -> list[Outcome]:
    out: list[Outcome] = []
    where = dict(version=point.version, digest=point.digest, time=_iso(point.time))
    for measure in point.values(rule.metric):
        on = f" on {measure.on}" if measure.on else ""
        shown = f"{rule.metric}{on} is {_num(measure.value)}"
        if rule.reference is None:
            passed = _OPS[rule.op](measure.value, rule.limit)
            out.append(Outcome(rule.text, rule.metric, passed, "threshold",
                               f"{shown}{'' if passed else ', not ' + rule.op + ' ' + _num(rule.limit)}",
                               value=measure.value, dataset=measure.dataset, **where))
            continue
        base, others = _reference_value(rule, measure, point, previous, baselines)
        if base is None:
            what = "no baseline (push-time metrics of the card)" if rule.reference == "baseline" else "no previous record"
            detail = f"{shown}, and {what} of {rule.metric}{on or ' without a dataset'} to compare with"
            if others:  # say why the value that is there was not used
                detail += f" ({rule.reference} has it on {', '.join(d or 'no dataset' for d in others)} only)"
            out.append(Outcome(rule.text, rule.metric, False, "missing", detail,
                               value=measure.value, dataset=measure.dataset, **where))
            continue
        change = base - measure.value if rule.op == "drop" else measure.value - base
        amount = change / abs(base) * 100 if rule.percent and base else change
        if rule.percent and not base:
            amount = math.inf if change > 0 else 0.0
        passed = amount <= rule.limit + 1e-12  # 0.93 - 0.91 is 0.0200000000004 in floats
        unit = "%" if rule.percent else ""
        verb = "dropped" if rule.op == "drop" else "rose"
        detail = f"{shown}, {rule.reference} {_num(base)}: {verb} {_num(max(amount, 0.0))}{unit}"
        if not passed:
            detail += f", more than {_num(rule.limit)}{unit}"
        out.append(Outcome(rule.text, rule.metric, passed, "change", detail, value=measure.value,
                           reference_value=base, dataset=measure.dataset, **where))
    return out


def _reference_value(rule: Rule, measure: Measure, point: Point, previous: Point | None,
                     baselines: list[Point]) -> tuple[float | None, list[str | None]]:
    """The value to compare with, measured on the same dataset and split (none matches
    none only: a drop from a value on another dataset says nothing); else None and where
    the reference does measure the metric."""
    if rule.reference == "previous":
        candidates = previous.values(rule.metric) if previous else []
    else:
        # The baseline of this model (another version's card says nothing about this one).
        own = [b for b in baselines if b.digest == point.digest]
        candidates = own[-1].values(rule.metric) if own else []
    same = [c for c in candidates if (c.dataset, c.split) == (measure.dataset, measure.split)]
    if same:
        return same[-1].value, []
    return None, [c.on for c in candidates]


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _num(value: float) -> str:
    return f"{value:.6g}"


def _finite(text: str, rule: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UsageError(f"rule {rule!r}: {text} is not a finite number", hint=f"rules: {RULE_SYNTAX}")
    return value
