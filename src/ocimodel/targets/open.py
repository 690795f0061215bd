"""Reference -> target: the one place that knows which store a reference names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ocimodel.oci.reference import LayoutReference, Reference, RegistryReference
from ocimodel.targets.layout import OciLayout
from ocimodel.targets.remote import RemoteRepository
from ocimodel.transport.connection import ConnectionOptions


@contextmanager
def open_target(
    reference: Reference, options: ConnectionOptions | None = None, *, for_write: bool = False
) -> Iterator[OciLayout | RemoteRepository]:
    options = options or ConnectionOptions()
    if isinstance(reference, LayoutReference):
        yield OciLayout(reference.path, create=for_write)
        return
    assert isinstance(reference, RegistryReference)
    with options.client_for(reference.registry) as client:
        yield RemoteRepository(client, reference.repository)
