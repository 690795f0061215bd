"""Predicates over model cards: what ``ocimodel search --where`` filters on.

Grammar, one predicate per ``--where`` (several are ANDed)::

    predicate := FIELD OP VALUE
    OP        := >= | <= | > | < | == | !=
    FIELD     := metrics.<name> | params.<name> | name | version | task | format
               | framework | license | tags

- ``metrics.<name>``: the metric's number (a ``{value, dataset, split}`` metric by its
  value); VALUE must be a number; every OP applies.
- ``params.<name>`` (alias ``hyperparameters.<name>``): a hyperparameter. VALUE ``true``,
  ``false``, ``null``, a number, or text (quoted or not). ``==`` / ``!=`` compare numbers
  by value and anything else by type and value (``"3"`` is not ``3``); ``<`` ``<=`` ``>``
  ``>=`` need a number on both sides.
- ``name``, ``version``: text, compared exactly; ``==`` and ``!=`` only.
- ``task``, ``format``, ``framework``: text, compared ignoring case; ``==`` and ``!=`` only.
- ``license`` (alias ``licenses``), ``tags`` (alias ``tag``): lists. ``==`` holds when one
  entry equals VALUE (ignoring case), ``!=`` when none does. A license is compared as the
  whole SPDX expression it was recorded as (``MIT OR Apache-2.0`` is one entry).

A field the card does not have never matches, whatever the operator: ``metrics.f1<0.5``
does not select models that report no f1. VALUE may be wrapped in matching single or double
quotes (needed for text with blanks inside a shell word). Malformed predicates raise
UsageError naming the problem."""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ocimodel.errors import UsageError
from ocimodel.metadata.card import ModelCard, metric_value

__all__ = ["FIELDS", "OPERATORS", "Predicate", "equals", "matches_all", "parse_predicate", "parse_predicates"]

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}
_EQUALITY = ("==", "!=")
_EXACT_TEXT = ("name", "version")
_FOLDED_TEXT = ("task", "format", "framework")
_LISTS = {"license": "licenses", "tags": "tags"}
_KEYED = ("metrics", "params")
_ALIASES = {"licenses": "license", "tag": "tags", "hyperparameters": "params", "metric": "metrics", "param": "params"}
FIELDS = ("metrics.<name>", "params.<name>", *_EXACT_TEXT, *_FOLDED_TEXT, *_LISTS)
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$")  # metric / hyperparameter names, as the card allows
_SHAPE = re.compile(r"^\s*(?P<field>[^<>=!]*?)\s*(?P<op>>=|<=|==|!=|=>|=<|>|<|=|!)\s*(?P<value>.*?)\s*$", re.DOTALL)
_EXAMPLE = "e.g. --where 'metrics.accuracy>=0.9' or --where 'task==text-classification'"


@dataclass(frozen=True)
class Predicate:
    """One ``FIELD OP VALUE``: ``field`` is a canonical field name (``metrics``, ``params``,
    ``name``...), ``key`` the metric or parameter name, ``value`` already typed."""

    field: str
    op: str
    value: Any
    key: str | None = None

    def __str__(self) -> str:
        target = f"{self.field}.{self.key}" if self.key is not None else self.field
        return f"{target}{self.op}{_show(self.value)}"

    @property
    def metric(self) -> str | None:
        """The metric this predicate tests, if it tests one."""
        return self.key if self.field == "metrics" else None

    def matches(self, card: ModelCard) -> bool:
        compare = OPERATORS[self.op]
        if self.field == "metrics":
            found = card.metrics.get(self.key or "")
            return found is not None and compare(metric_value(found), self.value)
        if self.field == "params":
            if self.key not in card.hyperparameters:
                return False
            actual = card.hyperparameters[self.key]
            if self.op in _EQUALITY:
                same = _same_scalar(actual, self.value)
                return same if self.op == "==" else not same
            return _is_number(actual) and compare(actual, self.value)
        if self.field in _LISTS:
            entries = [str(x).casefold() for x in getattr(card, _LISTS[self.field])]
            if not entries:
                return False
            present = str(self.value).casefold() in entries
            return present if self.op == "==" else not present
        if self.field == "format" and card.formats:
            # A model with several weight formats is each of them: == matches any, != none.
            wanted = str(self.value).casefold()
            present = wanted in (f.casefold() for f in [*([card.format] if card.format else []), *card.formats])
            return present if self.op == "==" else not present
        actual = getattr(card, self.field)
        if actual is None:
            return False
        if self.field in _FOLDED_TEXT:
            return compare(actual.casefold(), str(self.value).casefold())
        return compare(actual, self.value)


def equals(field: str, value: str) -> Predicate:
    """``field == value`` for the shortcut options (``--license MIT``): the value is taken
    as it is, blanks and operators included."""
    canonical = _ALIASES.get(field, field)
    if canonical in _KEYED or canonical not in (*_EXACT_TEXT, *_FOLDED_TEXT, *_LISTS):
        raise UsageError(f"no shortcut for field {field!r}")
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"--{field} needs a value")
    return Predicate(canonical, "==", value.strip())


def parse_predicates(texts: str | Sequence[str]) -> list[Predicate]:
    if isinstance(texts, str):
        texts = (texts,)
    return [parse_predicate(text) for text in texts]


def parse_predicate(text: str) -> Predicate:
    if not isinstance(text, str) or not text.strip():
        raise UsageError("empty --where predicate", hint=f"write FIELD OP VALUE, {_EXAMPLE}")
    shown = text.strip()[:120]
    match = _SHAPE.match(text)
    if match is None:
        raise UsageError(
            f"bad predicate {shown!r}: no operator (one of {', '.join(OPERATORS)})",
            hint=f"write FIELD OP VALUE, {_EXAMPLE}",
        )
    raw_field, op, raw_value = match.group("field"), match.group("op"), match.group("value")
    if op not in OPERATORS:
        fixed = {"=": "==", "=>": ">=", "=<": "<=", "!": "!="}[op]
        raise UsageError(f"bad predicate {shown!r}: unknown operator {op!r}", hint=f"did you mean {fixed!r}?")
    if not raw_field:
        raise UsageError(f"bad predicate {shown!r}: no field before {op!r}", hint=f"fields: {', '.join(FIELDS)}")
    value_text = _unquote(raw_value)
    if value_text is None:
        raise UsageError(f"bad predicate {shown!r}: no value after {op!r}", hint=_EXAMPLE)
    if re.search(r"(>=|<=|==|!=)", raw_value) and raw_value[:1] not in "'\"":
        raise UsageError(
            f"bad predicate {shown!r}: more than one operator", hint="one comparison per --where; several --where are ANDed"
        )
    head, dot, key = raw_field.partition(".")
    field = _ALIASES.get(head, head)
    if field in _KEYED:
        if not dot or not key:
            raise UsageError(f"bad predicate {shown!r}: {field} needs a name, e.g. {field}.accuracy")
        if not _KEY.match(key) or len(key) > 128:
            raise UsageError(f"bad predicate {shown!r}: invalid {field} name {key[:80]!r} (letters, digits, _ . : / -)")
        if field == "metrics":
            return Predicate("metrics", op, _number(value_text, shown, "a metric"), key)
        value = _scalar(value_text, raw_value)
        if op not in _EQUALITY and not _is_number(value):
            raise UsageError(f"bad predicate {shown!r}: {op} needs a number, got {value_text[:40]!r}")
        return Predicate("params", op, value, key)
    known = (*_EXACT_TEXT, *_FOLDED_TEXT, *_LISTS)
    if dot or field not in known:
        names = [*_KEYED, *known, *_ALIASES]
        close = difflib.get_close_matches(raw_field.split(".")[0], names, n=1)
        suggestion = f"did you mean {_ALIASES.get(close[0], close[0])!r}? " if close else ""
        raise UsageError(f"bad predicate {shown!r}: unknown field {raw_field[:60]!r}", hint=f"{suggestion}fields: {', '.join(FIELDS)}")
    if op not in _EQUALITY:
        raise UsageError(
            f"bad predicate {shown!r}: {field} is text; it takes == or != only",
            hint="order comparisons (<, <=, >, >=) apply to metrics.<name> and numeric params.<name>",
        )
    return Predicate(field, op, value_text)


def matches_all(predicates: Sequence[Predicate], card: ModelCard) -> bool:
    return all(p.matches(card) for p in predicates)


# -- values -------------------------------------------------------------------------------


def _unquote(text: str) -> str | None:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text if text.strip() else None


def _number(text: str, shown: str, what: str) -> int | float:
    try:
        value: int | float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"bad predicate {shown!r}: {what} compares with a number, not {text[:40]!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"bad predicate {shown!r}: {text[:40]!r} is not a finite number")
    return value


def _scalar(text: str, raw: str) -> Any:
    """A hyperparameter value: quoted text stays text; else true / false / null / number / text."""
    if raw[:1] in "'\"" and raw[:1] == raw[-1:] and len(raw) >= 2:
        return text
    literals = {"true": True, "false": False, "null": None}
    if text in literals:
        return literals[text]
    try:
        return _number(text, "", "")
    except UsageError:
        return text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_scalar(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
