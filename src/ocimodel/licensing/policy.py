"""License rules, and the verdict of a model's licenses under them.

    licenses:
      allow: [Apache-2.0, MIT, BSD-3-Clause]
      deny: [CC-BY-NC-4.0, "LicenseRef-*-community-license"]
      unknown: deny            # or warn
      base_models: true        # a fine-tune carries its base models' licenses

Each license of an expression is *denied* (it matches ``deny``), *allowed* (it matches
``allow``, or ``allow`` is omitted) or *unknown* (listed by neither). An expression is
judged as SPDX means it: ``AND`` is only as good as its worst part (every license
applies), ``OR`` as good as its best (the user may choose one). A license with an
exception is matched whole first (``GPL-2.0-only WITH Classpath-exception-2.0`` can be
allowed while ``GPL-2.0-only`` is denied), then by its license alone. A model with no
license at all is unknown. ``unknown: deny`` denies unknown; ``warn`` allows with a warning.
Patterns are shell globs (``*``, ``?``, ``[...]``), compared without regard to case."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from ocimodel.licensing.expression import Expression, Leaf, parse

Pattern = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\s\x00-\x1f\x7f]+( WITH [^\s]+)?$")]
Status = Literal["allowed", "unknown", "denied"]
_ORDER: dict[str, int] = {"denied": 0, "unknown": 1, "allowed": 2}


class LicenseRule(BaseModel):
    """The `licenses:` section of a policy."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    allow: list[Pattern] | None = Field(
        default=None, description="Licenses (SPDX ids or globs) a model may have. Omitted: any not denied."
    )
    deny: list[Pattern] = Field(default_factory=list, description="Licenses (ids or globs) a model must not have.")
    unknown: Literal["deny", "warn"] = Field(
        default="deny", description="A license neither allowed nor denied, or no license: deny, or allow with a warning."
    )
    base_models: bool = Field(default=True, description="Judge the base models' licenses too (a fine-tune carries them).")

    @field_validator("allow", "deny")
    @classmethod
    def _no_duplicates(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len({v.lower() for v in value}) != len(value):
            raise ValueError("names a license twice")
        return value


class Judged(BaseModel):
    """One expression's verdict, and where it came from (the card, a file, a base model)."""

    expression: str
    source: str
    status: Status
    reasons: list[str] = Field(default_factory=list)


class Verdict(BaseModel):
    """All expressions together (every one applies): denied if any is denied, or unknown
    under ``unknown: deny``."""

    allowed: bool
    status: Status
    judged: list[Judged] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list, description="Why it is denied.")
    warnings: list[str] = Field(default_factory=list)


def _matches(text: str, patterns: list[str]) -> str | None:
    for pattern in patterns:
        if fnmatchcase(text.lower(), pattern.lower()):
            return pattern
    return None


def _leaf(leaf: Leaf, rules: LicenseRule, reasons: list[str]) -> Status:
    names = [str(leaf)] + ([leaf.license] if leaf.exception else [])
    for name in names:  # the whole "X WITH Y" decides before X alone
        if (hit := _matches(name, rules.deny)) is not None:
            reasons.append(f"{leaf} is denied (deny: {hit})")
            return "denied"
        if rules.allow is not None and _matches(name, rules.allow) is not None:
            return "allowed"
    if rules.allow is None:
        return "allowed"
    reasons.append(f"{leaf} is not in allow")
    return "unknown"


def evaluate(tree: Expression, rules: LicenseRule, reasons: list[str]) -> Status:
    if isinstance(tree, Leaf):
        return _leaf(tree, rules, reasons)
    statuses = [evaluate(part, rules, reasons) for part in tree.parts]
    pick = min if tree.operator == "AND" else max
    return pick(statuses, key=_ORDER.__getitem__)


def judge(expressions: list[tuple[str, str]], rules: LicenseRule) -> Verdict:
    """The verdict over ``(expression, source)`` pairs: every expression applies.

    An expression that is not SPDX is judged unknown (a tool wrote it, or a file said so)."""
    judged: list[Judged] = []
    for text, source in expressions:
        reasons: list[str] = []
        if not text.strip():  # a source with no license at all (an unreadable base model)
            judged.append(Judged(expression=text, source=source, status="unknown", reasons=["no license known"]))
            continue
        try:
            status = evaluate(parse(text), rules, reasons)
        except ValueError:
            status, reasons = "unknown", [f"{text[:80]!r} is not an SPDX license expression"]
        if status == "allowed":
            reasons = []  # an OR with an allowed choice: the other branches' notes are moot
        judged.append(Judged(expression=text, source=source, status=status, reasons=reasons))
    if not judged:
        judged_status: Status = "unknown"
        notes = ["no license declared or detected"]
    else:
        judged_status = min((j.status for j in judged), key=_ORDER.__getitem__)
        notes = [f"{j.source}: {r}" for j in judged if j.status != "allowed" for r in j.reasons]
    if judged_status == "denied":
        reasons = [f"{j.source}: {r}" for j in judged if j.status == "denied" for r in j.reasons]
        return Verdict(allowed=False, status="denied", judged=judged, reasons=reasons)
    if judged_status == "unknown":
        if rules.unknown == "deny":
            return Verdict(allowed=False, status="unknown", judged=judged, reasons=notes)
        return Verdict(allowed=True, status="unknown", judged=judged, warnings=notes)
    return Verdict(allowed=True, status="allowed", judged=judged)
