"""The one YAML loader for files a user writes (model cards, trust policies).

Safe (no Python objects) and strict, so that what a reader sees is what ocimodel reads:

- the YAML 1.2 core schema: ``yes`` / ``no`` / ``on`` stay strings, ``3e-4`` is a number,
  ``1:20`` is not 80, ``017`` is 17, dates stay strings;
- no aliases (``*name``): the files are short, and an alias only makes them harder to read;
- keys are strings and appear once: a duplicate key, or a ``!!binary`` / number key that a
  later step turns into another key's name, would hide one of two entries;
- at most ``max_bytes`` of input.

PyYAML is imported on first use, not with this module (start-up of commands that read no
YAML)."""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

MAX_YAML_BYTES = 1024 * 1024


class StrictYamlError(ValueError):
    """The text is not YAML, or breaks a rule above; ``problem`` says which, ``where`` is
    `` (line L, column C)`` when known, else empty."""

    def __init__(self, problem: str, where: str = "") -> None:
        super().__init__(f"{problem}{where}")
        self.problem = problem
        self.where = where


_loader: type | None = None


def _strict_loader() -> type:
    global _loader
    if _loader is not None:
        return _loader
    import yaml
    from yaml.composer import ComposerError
    from yaml.constructor import ConstructorError

    class StrictLoader(yaml.SafeLoader):
        # Start from no implicit types at all; the YAML 1.2 core ones are added below.
        yaml_implicit_resolvers: ClassVar[dict] = {}

        def compose_node(self, parent, index):  # type: ignore[override]
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise ComposerError(None, None, "aliases (*name) are not allowed", event.start_mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):  # type: ignore[override]
            if isinstance(node, yaml.MappingNode):
                seen: set[str] = set()
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=True)
                    if not isinstance(key, str):
                        kind = type(key).__name__ if key is not None else "null"
                        quote = " (quote it)" if kind in ("int", "float", "bool", "null") else ""
                        raise ConstructorError(
                            None, None, f"a key must be a string, not {kind}{quote}", key_node.start_mark
                        )
                    if key in seen:
                        raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                    seen.add(key)
            return super().construct_mapping(node, deep)

    def resolver(tag: str, pattern: str, first: str) -> None:
        StrictLoader.add_implicit_resolver(tag, re.compile(pattern, re.VERBOSE), list(first))

    resolver("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN")
    StrictLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])
    resolver("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
    resolver("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789")
    resolver(
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    )

    def construct_int(loader, node):
        text = loader.construct_scalar(node)
        if text.startswith(("0o", "0x")):
            return int(text, 0)
        return int(text, 10)  # "017" is 17 in YAML 1.2, not octal

    def construct_float(loader, node):
        text = loader.construct_scalar(node).lower()
        if text.endswith(".inf"):
            return -math.inf if text.startswith("-") else math.inf
        if text == ".nan":
            return math.nan
        return float(text)

    StrictLoader.add_constructor("tag:yaml.org,2002:int", construct_int)
    StrictLoader.add_constructor("tag:yaml.org,2002:float", construct_float)
    _loader = StrictLoader
    return StrictLoader


def loads_yaml_strict(data: bytes, *, max_bytes: int = MAX_YAML_BYTES) -> Any:
    """The document in ``data`` under the rules above. Raises :class:`StrictYamlError`, and
    ImportError when PyYAML is not installed."""
    if len(data) > max_bytes:
        raise StrictYamlError(f"over the {max_bytes}-byte limit")
    loader = _strict_loader()
    import yaml

    try:
        return yaml.load(data, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StrictYamlError(problem, where) from None
