"""The ``evaluations:`` section of a verify policy: the model must have a fresh, good
evaluation record signed by a signer the policy trusts.

    evaluations:
      - metric: accuracy
        min: 0.90              # and/or max: (for loss, latency...)
        max_age: 7d            # the newest such record is at most this old (s, m, h, d, w)
        signers: [ci]          # names from `signers`; omitted: every signer
        environment: production  # only records made in this environment; omitted: any
        dataset: https://data.example/holdout  # only this dataset; omitted: any

Each rule reads the newest record (by the time it says, which is signed) that a signer
of the rule signed, about this very model, for that environment, measuring that metric
(on that dataset), and passes when each of its values is within ``min`` / ``max`` and,
with ``max_age``, it is no older than that. A newer record that is unsigned, or signed
by a key the policy does not trust, does not count: it neither passes the rule nor hides
the trusted record before it. A record dated more than five minutes ahead of this
clock does not count either: it would stay fresh forever."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from ocimodel.errors import UsageError
from ocimodel.monitoring.rules import format_duration, parse_duration, parse_time

# The predicate type of an evaluation record (api/evaluations.py writes it).
EVALUATION_PREDICATE = "https://ocimodel.dev/evaluation/v1"
FUTURE_SKEW = timedelta(minutes=5)

MetricName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$")]
SignerName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
Duration = Annotated[str, StringConstraints(pattern=r"^\d+(\.\d+)?(s|m|h|d|w)$")]


class EvaluationRule(BaseModel):
    """One metric a model's latest trusted evaluation record must meet."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    metric: MetricName = Field(description="The metric's name, as recorded (accuracy, f1, loss...).")
    min: float | None = Field(default=None, description="The lowest value allowed.")
    max: float | None = Field(default=None, description="The highest value allowed.")
    max_age: Duration | None = Field(
        default=None, description="How old the newest trusted record may be: 90s, 30m, 12h, 7d, 2w. Omitted: any age."
    )
    signers: list[SignerName] | None = Field(
        default=None, min_length=1, description="Names from `signers` whose records count; omitted: every signer."
    )
    environment: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None, description="Only records made in this environment count (production...); omitted: any."
    )
    dataset: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None, description="Only values measured on this dataset count; omitted: any."
    )

    @field_validator("min", "max", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        # strict floats take ints too; a bool or an infinity is a mistake, not a limit.
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise ValueError("must be a finite number")
        return float(value) if value is not None else value

    @field_validator("max_age")
    @classmethod
    def _a_positive_duration(cls, value: str | None) -> str | None:
        # The pattern takes 0s or 9999w, which judge() would refuse on every verify, after
        # the policy loaded (an admission server would start and then deny everything).
        if value is not None:
            try:
                parse_duration(value, "max_age")
            except UsageError as exc:
                raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _a_limit(self) -> EvaluationRule:
        if self.min is None and self.max is None and self.max_age is None:
            raise ValueError(f"the rule for {self.metric} sets none of min, max, max_age")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"the rule for {self.metric} has min above max")
        return self

    @property
    def name(self) -> str:
        parts = [f">= {self.min:g}" if self.min is not None else "", f"<= {self.max:g}" if self.max is not None else "",
                 f"within {self.max_age}" if self.max_age else ""]
        return f"evaluation {self.metric} ({', '.join(p for p in parts if p)})"


@dataclass(frozen=True)
class Signed:
    """A verified evaluation statement about the model: who signed it, what it says."""

    referrer: str
    signers: frozenset[str]
    predicate: Any


@dataclass(frozen=True)
class Judgement:
    passed: bool
    detail: str


def judge(rule: EvaluationRule, signed: Iterable[Signed], signers: list[str],
          now: datetime | None = None) -> Judgement:
    """The rule over the verified evaluation statements of one model (see the module
    docstring). ``signers``: the names the rule trusts (its own, or every signer)."""
    now = now or datetime.now(timezone.utc)
    wanted = set(signers)
    candidates: list[tuple[datetime, list[float], Signed]] = []
    future = 0
    for item in signed:
        if not item.signers & wanted:
            continue
        when, values = _read(item.predicate, rule)
        if when is None or not values:
            continue
        if when - now > FUTURE_SKEW:
            future += 1
            continue
        candidates.append((when, values, item))
    who = ", ".join(signers) if len(signers) == 1 else "any of " + ", ".join(signers)
    where = (f" in {rule.environment}" if rule.environment else "") + (f" on {rule.dataset}" if rule.dataset else "")
    if not candidates:
        detail = f"no evaluation record of {rule.metric}{where} signed by {who}"
        if future:
            detail += f" ({future} dated in the future, which do not count)"
        return Judgement(False, detail + "; `ocimodel eval record REF --metric ... --key K` writes one")
    when, values, item = max(candidates, key=lambda c: c[0])
    stamp = when.isoformat().replace("+00:00", "Z")
    by = ", ".join(sorted(item.signers & wanted))
    shown = ", ".join(f"{v:.6g}" for v in values)
    age = parse_duration(rule.max_age, "max_age") if rule.max_age else None
    if age is not None and now - when > age:
        return Judgement(False, f"the latest trusted record of {rule.metric}{where} ({stamp}, by {by}) is older "
                                f"than {format_duration(age)}")
    low = [v for v in values if rule.min is not None and v < rule.min]
    high = [v for v in values if rule.max is not None and v > rule.max]
    if low or high:
        bound = f"below {rule.min:g}" if low else f"above {rule.max:g}"
        return Judgement(False, f"{rule.metric} is {shown}{where}, {bound} (record of {stamp}, by {by})")
    return Judgement(True, f"{rule.metric} is {shown}{where} (record of {stamp}, by {by})")


def _read(predicate: Any, rule: EvaluationRule) -> tuple[datetime | None, list[float]]:
    """The time and the values of the rule's metric in a predicate (signed, yet read
    defensively: anything not as expected counts as not measured)."""
    if not isinstance(predicate, dict):
        return None, []
    if rule.environment is not None and predicate.get("environment") != rule.environment:
        return None, []
    when = parse_time(predicate.get("time"))
    values: list[float] = []
    metrics = predicate.get("metrics")
    for metric in metrics if isinstance(metrics, list) else ():
        if not isinstance(metric, dict) or metric.get("name") != rule.metric:
            continue
        if rule.dataset is not None and metric.get("dataset") != rule.dataset:
            continue
        value = metric.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None, []  # a malformed value: the record says nothing trustworthy
        values.append(float(value))
    return when, values
