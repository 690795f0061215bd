"""Plain pickle files, of any protocol, several in a row, whatever their name (a pickle
named model.safetensors is scanned as a pickle). joblib's uncompressed files are plain
pickles with array data between opcodes; that data is skipped as joblib reads it."""

from __future__ import annotations

from ocimodel.scanning.findings import Finding
from ocimodel.scanning.formats import Source
from ocimodel.scanning.formats.pytorch import is_torch_legacy
from ocimodel.scanning.pickle_scan import looks_like_pickle, scan_pickle_stream

__all__ = ["SCANNERS", "PickleScanner"]


class PickleScanner:
    name = "pickle"

    def detect(self, head: bytes, size: int) -> bool:
        # The legacy PyTorch format is a run of pickles too: its own scanner reads it.
        return looks_like_pickle(head, size) and not is_torch_legacy(head)

    def scan(self, source: Source) -> list[Finding]:
        with source.open() as stream:
            return scan_pickle_stream(stream, file=source.name, format=self.name, reopen=source.open)


SCANNERS = [PickleScanner()]
