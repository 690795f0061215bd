"""Reference -> target: the one place that knows which store a reference names."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ocimodel.oci.reference import LayoutReference, Reference, RegistryReference
from ocimodel.targets.layout import OciLayout
from ocimodel.targets.remote import RemoteRepository
from ocimodel.transport.auth import Credentials
from ocimodel.transport.client import RegistryClient


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach registries. ``plain_http=None`` means: only for loopback hosts or when
    OCIMODEL_PLAIN_HTTP=1. ``credentials=None`` means: OCIMODEL_USERNAME/OCIMODEL_PASSWORD
    from the environment if set, else anonymous."""

    plain_http: bool | None = None
    credentials: Credentials | None = None
    concurrency: int = 4

    def resolved_credentials(self) -> Credentials | None:
        if self.credentials is not None:
            return self.credentials
        user = os.environ.get("OCIMODEL_USERNAME")
        password = os.environ.get("OCIMODEL_PASSWORD")
        if user and password is not None:
            return Credentials(user, password)
        return None


@contextmanager
def open_target(
    reference: Reference, options: RegistryOptions | None = None, *, for_write: bool = False
) -> Iterator[OciLayout | RemoteRepository]:
    options = options or RegistryOptions()
    if isinstance(reference, LayoutReference):
        yield OciLayout(reference.path, create=for_write)
        return
    assert isinstance(reference, RegistryReference)
    client = RegistryClient(
        reference.registry,
        plain_http=options.plain_http,
        credentials=options.resolved_credentials(),
        max_connections=max(options.concurrency * 2, 4),
    )
    with client:
        yield RemoteRepository(client, reference.repository)
