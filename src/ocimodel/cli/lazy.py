"""Modules loaded on first use. Every command starts by importing the whole CLI (typer
needs each command's options), but a command uses one API module: loading all of them
(pydantic models, cryptography, sigstore) cost every invocation about 0.2 s."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


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
    nothing never load rich (~20 ms of start-up)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def get(self) -> Console:
        """The console itself, for what needs a real one (progress bars)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:  # only for what this class does not define
        return getattr(self.get(), name)
