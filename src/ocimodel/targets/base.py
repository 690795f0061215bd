"""The one protocol every store speaks, so a single copy engine can move a model between
any two of them: a registry repository, an OCI layout directory, a model directory being
packaged (read side) or unpacked (write side)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

from ocimodel.oci.models import Descriptor


@runtime_checkable
class ReadableTarget(Protocol):
    """Something a model can be read from."""

    #: a human name for messages, e.g. ``localhost:5000/team/model`` or ``oci:./store``
    name: str

    def resolve(self, reference: str) -> Descriptor:
        """Tag or digest -> the manifest's descriptor. Raises NotFound."""
        ...

    def fetch_manifest(self, descriptor: Descriptor) -> bytes:
        """The manifest's bytes, already verified against ``descriptor``."""
        ...

    def open_blob(self, descriptor: Descriptor) -> AbstractContextManager[Iterator[bytes]]:
        """A stream of the blob's bytes. Not verified here: the copy engine verifies."""
        ...


@runtime_checkable
class WritableTarget(Protocol):
    """Something a model can be written to."""

    name: str

    def has_blob(self, descriptor: Descriptor) -> bool: ...

    def push_blob(self, descriptor: Descriptor, chunks: Iterable[bytes]) -> None:
        """Store a blob. ``chunks`` raises if the bytes do not match ``descriptor``; the
        target must then leave nothing behind."""
        ...

    def has_manifest(self, descriptor: Descriptor) -> bool: ...

    def push_manifest(self, descriptor: Descriptor, data: bytes, tag: str | None = None) -> None:
        """Store a manifest (blobs it names are already there) and point ``tag`` at it."""
        ...


class Target(ReadableTarget, WritableTarget, Protocol):
    """A store that can be both read and written, and has tags."""

    def tag(self, descriptor: Descriptor, tag: str, *, immutable: bool = False) -> None:
        """Point ``tag`` at the manifest; ``immutable``: only if the tag is free or already
        holds it (a check-and-set: raises VersionExists naming what the tag holds)."""
        ...

    def list_tags(self) -> list[str]: ...
