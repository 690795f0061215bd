"""SPDX license expressions as trees, for evaluating them against rules.

``packaging.licenses`` checks an expression (ids and exceptions on the SPDX list,
``LicenseRef-``) but gives back only a string; deciding ``MIT OR GPL-3.0-only`` needs its
structure. The grammar is small (SPDX annex D): ``WITH`` binds tighter than ``AND``, which
binds tighter than ``OR``; parentheses group. So the expression is checked by packaging
first and then parsed here, and a tree is only ever made of a valid expression."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_DOCUMENT_REF = re.compile(r"DocumentRef-[A-Za-z0-9.-]+:(?=LicenseRef-)")


@dataclass(frozen=True)
class Leaf:
    """One license, with the exception that adds to it (``GPL-2.0-only WITH Classpath-exception-2.0``)."""

    license: str
    exception: str | None = None

    def __str__(self) -> str:
        return self.license if self.exception is None else f"{self.license} WITH {self.exception}"


@dataclass(frozen=True)
class Node:
    """``AND``: every part applies; ``OR``: one of them may be chosen."""

    operator: str  # "AND" | "OR"
    parts: tuple[Leaf | Node, ...]

    def __str__(self) -> str:
        return f" {self.operator} ".join(f"({p})" if isinstance(p, Node) else str(p) for p in self.parts)


Expression = Leaf | Node


def parse(text: str) -> Expression:
    """The tree of an SPDX expression; ValueError if it is not one (packaging decides).

    Ids are canonicalised (``mit`` is ``MIT``) so that rules compare like with like."""
    try:
        canonical = canonicalize_license_expression(_DOCUMENT_REF.sub("", text))
    except InvalidLicenseExpression as exc:
        raise ValueError(f"not an SPDX license expression: {text[:80]!r} ({exc})") from None
    tokens = _TOKEN.findall(canonical)
    tree, end = _or(tokens, 0)
    if end != len(tokens):  # packaging accepted it, so this is a bug here, not bad input
        raise ValueError(f"cannot parse license expression {text[:80]!r}")
    return tree


def _or(tokens: list[str], i: int) -> tuple[Expression, int]:
    parts = []
    part, i = _and(tokens, i)
    parts.append(part)
    while i < len(tokens) and tokens[i] == "OR":
        part, i = _and(tokens, i + 1)
        parts.append(part)
    return (parts[0] if len(parts) == 1 else Node("OR", tuple(parts))), i


def _and(tokens: list[str], i: int) -> tuple[Expression, int]:
    parts = []
    part, i = _with(tokens, i)
    parts.append(part)
    while i < len(tokens) and tokens[i] == "AND":
        part, i = _with(tokens, i + 1)
        parts.append(part)
    return (parts[0] if len(parts) == 1 else Node("AND", tuple(parts))), i


def _with(tokens: list[str], i: int) -> tuple[Expression, int]:
    if tokens[i] == "(":
        inner, i = _or(tokens, i + 1)
        return inner, i + 1  # the ")"
    license = tokens[i]
    if i + 1 < len(tokens) and tokens[i + 1] == "WITH":
        return Leaf(license, tokens[i + 2]), i + 3
    return Leaf(license), i + 1


def leaves(tree: Expression) -> list[Leaf]:
    if isinstance(tree, Leaf):
        return [tree]
    return [leaf for part in tree.parts for leaf in leaves(part)]


def closest_ids(word: str, limit: int = 3) -> list[str]:
    """The SPDX ids (licenses and exceptions) that look most like ``word``: the hint for
    a typo such as ``Apache2`` or ``GPL-3.0``."""
    from packaging.licenses import _spdx  # the list packaging checks against; no public accessor

    # Deprecated ids (GPL-3.0) still parse, but a hint should name the current spelling.
    entries = (*_spdx.LICENSES.values(), *_spdx.EXCEPTIONS.values())
    known = {e["id"].lower(): e["id"] for e in entries if not e["deprecated"]}
    # Compared without punctuation, so Apache2 is near Apache-2.0; a typed prefix (GPL3,
    # gpl-3.0) names the ids that complete it before those merely alike.
    squeezed: dict[str, list[str]] = {}
    for key, spelled in sorted(known.items()):
        squeezed.setdefault(_squeeze(key), []).append(spelled)
    target = _squeeze(word.removesuffix("+"))
    if not target:
        return []
    prefixed = sorted((k for k in squeezed if k.startswith(target) and k != target), key=len)
    alike = difflib.get_close_matches(target, list(squeezed), n=limit, cutoff=0.6)
    out: list[str] = []
    for key in [*prefixed, *alike]:
        out += [i for i in squeezed[key] if i not in out]
    return out[:limit]


def _squeeze(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def unknown_ids(text: str) -> list[str]:
    """The words of ``text`` that are neither operators, parentheses, ``LicenseRef-``
    nor ids packaging knows."""
    from packaging.licenses import _spdx

    out = []
    for word in _TOKEN.findall(text):
        if word in ("(", ")", "AND", "OR", "WITH") or _DOCUMENT_REF.sub("", word).startswith("LicenseRef-"):
            continue
        lowered = word.lower().removesuffix("+")
        if lowered not in _spdx.LICENSES and lowered not in _spdx.EXCEPTIONS:
            out.append(word)
    return out
