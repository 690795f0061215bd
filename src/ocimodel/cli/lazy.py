"""Modules loaded on first use. Every command starts by importing the whole CLI (typer
needs each command's options), but a command uses one API module: loading all of them
(pydantic models, cryptography, sigstore) cost every invocation about 0.2 s."""

from __future__ import annotations

import functools
import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text


def lazy_import(name: str) -> ModuleType:
    """``name``, executed only when an attribute of it is first read."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:  # pragma: no cover - our own modules always exist
        raise ImportError(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


class LazyConsole:
    """A rich ``Console`` made on first use. Commands that print only JSON (pipelines) or
    nothing never load rich (~20 ms of start-up).

    What it prints is shown as typed: names, references, descriptions and paths come from
    users and registries, and rich would read ``:smile:`` as an emoji, ``[red]`` as markup
    and pass ESC sequences to the terminal. So markup, emoji and highlighting are off, and
    every string printed is a ``Text`` of :func:`ocimodel.errors.escape_controls` (a Text
    is never parsed for markup or emoji, whatever a caller passes)."""

    def __init__(self, **options: Any) -> None:
        self._options = {"markup": False, "emoji": False, "highlight": False, **options}
        self._console: Console | None = None

    def get(self) -> Console:
        """The console itself, for what needs a real one (progress bars)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        """``Console.print``, with each string shown as typed (tables: ``plain_table``)."""
        self.get().print(*(plain_text(o) if isinstance(o, str) else o for o in objects), **options)

    def __getattr__(self, name: str) -> Any:  # only for what this class does not define
        return getattr(self.get(), name)


def plain_text(value: str, *, one_line: bool = False) -> Text:
    """``value`` as a rich Text shown as typed: no markup, no emoji, controls escaped."""
    from rich.text import Text

    from ocimodel.errors import escape_controls

    return Text(escape_controls(value, one_line=one_line))


@functools.cache
def plain_table() -> type[Table]:
    """A rich Table whose string cells are :func:`plain_text`: a file name or a value with
    brackets is not markup. Defined on first use: rich is loaded only by commands that
    print a table."""
    from rich.table import Table

    class PlainTable(Table):
        def add_row(self, *cells: Any, **kwargs: Any) -> None:  # type: ignore[override]
            super().add_row(*(plain_text(c, one_line=True) if isinstance(c, str) else c for c in cells), **kwargs)

    return PlainTable
