"""What changed between two model cards (for ``ocimodel diff``): metric deltas, license
and hyperparameter changes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ocimodel.metadata.card import MetricValue, ModelCard, metric_value

__all__ = ["CardDelta", "LicenseChange", "MetricDelta", "ParamChange", "card_deltas", "number_delta"]

Number = int | float


def number_delta(old: Number, new: Number) -> Number:
    """``new - old`` without binary noise: 0.95 - 0.93 is 0.02, not 0.020000000000000018.
    Integers stay integers."""
    if isinstance(old, int) and isinstance(new, int):
        return new - old
    return float(Decimal(repr(new)) - Decimal(repr(old)))


@dataclass(frozen=True)
class MetricDelta:
    """One metric across two cards. ``old`` / ``new`` are None where the metric is absent;
    ``delta`` is ``new - old`` when both exist. ``comparable`` is False when the two values
    were measured on different datasets or splits (the delta is then apples to oranges)."""

    name: str
    old: Number | None
    new: Number | None
    delta: Number | None
    comparable: bool
    old_dataset: str | None = None
    old_split: str | None = None
    new_dataset: str | None = None
    new_split: str | None = None

    @property
    def changed(self) -> bool:
        return self.old != self.new or not self.comparable

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"name": self.name, "old": self.old, "new": self.new, "delta": self.delta}
        if not self.comparable:
            result["comparable"] = False
            result["old_dataset"], result["old_split"] = self.old_dataset, self.old_split
            result["new_dataset"], result["new_split"] = self.new_dataset, self.new_split
        return result


@dataclass(frozen=True)
class LicenseChange:
    old: tuple[str, ...]
    new: tuple[str, ...]

    @property
    def added(self) -> tuple[str, ...]:
        return tuple(x for x in self.new if x not in self.old)

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(x for x in self.old if x not in self.new)

    @property
    def changed(self) -> bool:
        return set(self.old) != set(self.new)

    def to_dict(self) -> dict[str, Any]:
        return {"old": list(self.old), "new": list(self.new), "added": list(self.added),
                "removed": list(self.removed), "changed": self.changed}


_ABSENT = object()


@dataclass(frozen=True)
class ParamChange:
    """A hyperparameter whose value differs; ``old_set`` / ``new_set`` tell an absent
    parameter from one set to null."""

    name: str
    old: Any
    new: Any
    old_set: bool
    new_set: bool

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"name": self.name}
        if self.old_set:
            result["old"] = self.old
        if self.new_set:
            result["new"] = self.new
        return result


@dataclass(frozen=True)
class CardDelta:
    metrics: list[MetricDelta]
    licenses: LicenseChange
    hyperparameters: list[ParamChange]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": [m.to_dict() for m in self.metrics],
            "licenses": self.licenses.to_dict(),
            "hyperparameters": [p.to_dict() for p in self.hyperparameters],
        }


def _where(metric: Any) -> tuple[str | None, str | None]:
    return (metric.dataset, metric.split) if isinstance(metric, MetricValue) else (None, None)


def card_deltas(old: ModelCard | None, new: ModelCard | None) -> CardDelta:
    """Per metric name (sorted, union of both cards): old, new, delta; the license lists of
    both and what was added / removed; hyperparameters whose value differs (sorted).
    Strict type: ``1`` and ``1.0`` or ``true`` and ``1`` count as different parameters."""
    old = old or ModelCard()
    new = new or ModelCard()
    metrics = []
    for name in sorted(set(old.metrics) | set(new.metrics)):
        before, after = old.metrics.get(name), new.metrics.get(name)
        old_value = metric_value(before) if before is not None else None
        new_value = metric_value(after) if after is not None else None
        old_where, new_where = _where(before), _where(after)
        both = before is not None and after is not None
        metrics.append(
            MetricDelta(
                name=name,
                old=old_value,
                new=new_value,
                delta=number_delta(old_value, new_value) if both else None,
                comparable=not both or old_where == new_where,
                old_dataset=old_where[0], old_split=old_where[1],
                new_dataset=new_where[0], new_split=new_where[1],
            )
        )
    params = []
    for name in sorted(set(old.hyperparameters) | set(new.hyperparameters)):
        before = old.hyperparameters.get(name, _ABSENT)
        after = new.hyperparameters.get(name, _ABSENT)
        if before is _ABSENT or after is _ABSENT or type(before) is not type(after) or before != after:
            params.append(
                ParamChange(
                    name=name,
                    old=None if before is _ABSENT else before,
                    new=None if after is _ABSENT else after,
                    old_set=before is not _ABSENT,
                    new_set=after is not _ABSENT,
                )
            )
    return CardDelta(
        metrics=metrics,
        licenses=LicenseChange(tuple(old.licenses), tuple(new.licenses)),
        hyperparameters=params,
    )
