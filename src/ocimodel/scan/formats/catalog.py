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
    "ocimodel.scan.formats.safetensors_format",
    "ocimodel.scan.formats.gguf",
    "ocimodel.scan.formats.chat_template",
    "ocimodel.scan.formats.onnx_format",
    "ocimodel.scan.formats.savedmodel",
    "ocimodel.scan.formats.keras",
    "ocimodel.scan.formats.keras_metadata",
    "ocimodel.scan.formats.h5",
    "ocimodel.scan.formats.archives",
)


def all_scanners() -> list[FormatScanner]:
    return [scanner for module in MODULES for scanner in import_module(module).SCANNERS]
