"""HDF5 files (magic ``\x89HDF\r\n\x1a\n``), as Keras 2 and tf.keras saved whole models:
the root group's ``model_config`` attribute holds the same JSON as a ``.keras`` config,
judged by the same rules (keras.py: Lambda bytecode, modules outside Keras).

The attributes are read first by hdf5attrs.py, in pure Python (no hostile file reaches the
HDF5 C library, and on a registry only the superblock, the root header and the string are
fetched). Where that reader stops (attributes in dense storage), h5py reads them when it is
installed; otherwise, or when the file cannot be read at all, an info finding says the
config was not checked: never a silent pass. A file without ``model_config`` holds
weights only (nothing a load deserialises)."""

from __future__ import annotations

import json

from ocimodel.scanning.findings import Finding, Severity
from ocimodel.scanning.formats import Source
from ocimodel.scanning.formats.hdf5attrs import MAGIC, Unsupported, root_attributes
from ocimodel.scanning.formats.keras import config_findings
from ocimodel.scanning.formats.randomaccess import ChunkReader, seekable

__all__ = ["SCANNERS", "H5Scanner"]

# The superblock may follow a user block of 512, 1024, 2048... bytes.
_SUPERBLOCK_AT = (0, 512, 1024, 2048)
_CONFIG_ATTRS = ("model_config", "training_config")


class H5Scanner:
    name = "hdf5"

    def detect(self, head: bytes, size: int) -> bool:
        return any(head[at : at + 8] == MAGIC for at in _SUPERBLOCK_AT)

    def scan(self, source: Source) -> list[Finding]:
        def finding(severity: Severity, rule: str, detail: str) -> Finding:
            return Finding(file=source.name, format=self.name, severity=severity, rule=rule, detail=detail)

        try:
            texts = root_attributes(ChunkReader(source, chunk=1 << 16, keep=8), _CONFIG_ATTRS)
        except Unsupported as exc:
            texts = None
            why = str(exc)
        if texts is None:
            try:
                import h5py  # optional: only for what the pure reader does not cover
            except ImportError:
                return [finding(Severity.INFO, "h5.config.unread",
                                f"{why}, and h5py is not installed: a Keras model_config in this file was not checked")]  # fmt: skip
            texts = {}
            try:
                with h5py.File(seekable(source), "r") as f:
                    for name in _CONFIG_ATTRS:
                        if name in f.attrs:
                            value = f.attrs[name]
                            texts[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            except Exception as exc:  # h5py raises OSError, ValueError, KeyError... on bad files
                return [finding(Severity.INFO, "h5.config.unread", f"the HDF5 attributes could not be read: {exc}")]
        findings = []
        for name, text in texts.items():
            try:
                config = json.loads(text)
            except (ValueError, RecursionError) as exc:
                findings.append(finding(Severity.MEDIUM, "h5.config.invalid-json", f"{name} is not JSON: {exc}"))
                continue
            findings += [finding(s, rule, f"{name}: {detail}") for s, rule, detail in config_findings(config)]
        return findings


SCANNERS = [H5Scanner()]
