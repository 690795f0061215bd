"""PyTorch's two save formats.

- The zip archive (``torch.save`` since 1.6): one top folder holding ``data.pkl`` (the
  object, with tensors as persistent ids), ``data/<n>`` (raw storages), ``version``,
  ``byteorder``... Recognised by the zip magic and that layout, never by the file name.
  Every member whose bytes are a pickle is scanned, whatever it is called: ``torch.load``
  reads only ``data.pkl``, but another loader (or a later PyTorch) may read the others.
- The legacy format: five pickles in a row (a magic number, the protocol version, system
  information, the object, the storage keys), then raw storage data, which is never
  unpickled."""

from __future__ import annotations

import pickle
import re
import struct
import zipfile

from ocimodel.scanning.findings import Finding, Severity
from ocimodel.scanning.formats import HEAD_BYTES, Source
from ocimodel.scanning.pickle_scan import looks_like_pickle, scan_pickle_stream, scan_zip_members

__all__ = ["SCANNERS", "TorchLegacyScanner", "TorchZipScanner", "is_torch_legacy"]

# torch.serialization's MAGIC_NUMBER, as every protocol pickles it.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_HEADS = tuple(pickle.dumps(_LEGACY_MAGIC, protocol=p) for p in range(6))
# The legacy format's pickles before its raw storage data.
_LEGACY_PICKLES = 5

_LAYOUT = re.compile(r"[^/]+/(data\.pkl|constants\.pkl|version|\.format_version|byteorder|\.data/.+|data/\d+|code/.+)")


# raw tensor data, which torch.load never unpickles: scanned only if it imports something
_STORAGE = re.compile(r"(.+/)?data/\d+")
_LAYOUT_ENDINGS = ("data.pkl", "/.format_version", "/version")


def is_torch_legacy(head: bytes) -> bool:
    return head.startswith(_LEGACY_HEADS)


class TorchLegacyScanner:
    name = "pytorch-legacy"

    def detect(self, head: bytes, size: int) -> bool:
        return is_torch_legacy(head)

    def scan(self, source: Source) -> list[Finding]:
        with source.open() as stream:
            return scan_pickle_stream(stream, file=source.name, format=self.name, limit=_LEGACY_PICKLES)


def _first_member_name(head: bytes) -> str | None:
    if len(head) < 30 or not head.startswith(b"PK\x03\x04"):
        return None
    name_length = struct.unpack_from("<H", head, 26)[0]
    return head[30 : 30 + name_length].decode("utf-8", "replace")


class TorchZipScanner:
    name = "pytorch-zip"

    def detect(self, head: bytes, size: int) -> bool:
        name = _first_member_name(head)
        # the archives scanner leaves zips whose first member ends so to this one
        return name is not None and (_LAYOUT.fullmatch(name) is not None or name.endswith(_LAYOUT_ENDINGS))

    def scan(self, source: Source) -> list[Finding]:
        def scan_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> list[Finding]:
            if "/code/" in info.filename:
                return [Finding(
                    file=source.name, format=self.name, severity=Severity.INFO, rule="pytorch.torchscript",
                    detail="TorchScript code: torch.jit.load compiles and runs it (not judged here)",
                    member=info.filename,
                )]  # fmt: skip
            with archive.open(info) as member:
                head = member.read(HEAD_BYTES)
            storage = _STORAGE.fullmatch(info.filename) is not None
            if not looks_like_pickle(head, info.file_size, strict=storage):
                return []
            with archive.open(info) as member:
                return scan_pickle_stream(member, file=source.name, format=self.name, member=info.filename,
                                          reopen=lambda: archive.open(info))  # fmt: skip

        return scan_zip_members(source, self.name, "pytorch.malformed", scan_member)


SCANNERS = [TorchZipScanner(), TorchLegacyScanner()]
