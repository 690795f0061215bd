"""Every format scanner, in the order the engine tries them. A new format is a module in
this package with a ``SCANNERS`` list, added here."""

from __future__ import annotations

from importlib import import_module

from ocimodel.scanning.formats import FormatScanner

__all__ = ["MODULES", "all_scanners"]

MODULES: tuple[str, ...] = (
    # one line per format module, e.g. "ocimodel.scanning.formats.pickles",
    "ocimodel.scanning.formats.pytorch",
    "ocimodel.scanning.formats.numpy_formats",
    "ocimodel.scanning.formats.joblib_format",
    "ocimodel.scanning.formats.pickles",
    "ocimodel.scanning.formats.safetensors_format",
    "ocimodel.scanning.formats.gguf",
    "ocimodel.scanning.formats.chat_template",
    "ocimodel.scanning.formats.onnx_format",
    "ocimodel.scanning.formats.savedmodel",
    "ocimodel.scanning.formats.keras",
    "ocimodel.scanning.formats.keras_metadata",
    "ocimodel.scanning.formats.h5",
    "ocimodel.scanning.formats.archives",
)


def all_scanners() -> list[FormatScanner]:
    return [scanner for module in MODULES for scanner in import_module(module).SCANNERS]
