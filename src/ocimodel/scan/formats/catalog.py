"""Every format scanner, in the order the engine tries them. A new format is a module in
this package with a ``SCANNERS`` list, added here."""

from __future__ import annotations

from importlib import import_module

from ocimodel.scan.formats import FormatScanner

__all__ = ["MODULES", "all_scanners"]

MODULES: tuple[str, ...] = (
    # one line per format module, e.g. "ocimodel.scan.formats.pickles",
    "ocimodel.scan.formats.pytorch",
    "ocimodel.scan.formats.numpy_formats",
    "ocimodel.scan.formats.joblib_format",
    "ocimodel.scan.formats.pickles",
)


def all_scanners() -> list[FormatScanner]:
    return [scanner for module in MODULES for scanner in import_module(module).SCANNERS]
