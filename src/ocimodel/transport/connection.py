"""How to reach a registry: scheme, credentials, TLS and retries, gathered in one value
that the API takes and the store layer turns into a client for each registry it meets."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from ocimodel import settings
from ocimodel.transport import credentials as stored_credentials
from ocimodel.transport.auth import Credentials
from ocimodel.transport.client import RegistryClient
from ocimodel.transport.retry import RetryPolicy
from ocimodel.transport.tls import TlsOptions  # defined there (client.py needs it too); re-exported


@dataclass(frozen=True)
class ConnectionOptions:
    """``plain_http=None``: HTTP only for loopback hosts or OCIMODEL_PLAIN_HTTP=1.
    ``credentials=None``: found for each registry (environment, then docker's config)."""

    plain_http: bool | None = None
    credentials: Credentials | None = None
    # The registry that explicit and environment credentials belong to. They are never
    # sent anywhere else (a copy between two registries must not hand one registry's
    # token to the other); other registries use docker's config. None: not bound yet.
    credentials_registry: str | None = None
    tls: TlsOptions = TlsOptions()
    retry: RetryPolicy | None = None
    concurrency: int = 4
    # Seconds a read may wait for its next byte, and a small request may take in all with
    # its retries (see transport/deadline.py); None: OCIMODEL_READ_TIMEOUT (300) and
    # OCIMODEL_REQUEST_TIMEOUT (60).
    read_timeout: float | None = None
    request_timeout: float | None = None
    # Called with one line of text when a request has waited a few seconds for an answer
    # (the CLI prints it on stderr); None: waits are silent.
    on_wait: Callable[[str], None] | None = None

    def with_overrides(self, **changes) -> ConnectionOptions:
        """A copy with the given fields replaced; ``None`` values leave a field as it is."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def credentials_for(self, registry: str) -> Credentials | None:
        """Explicit beats implicit: the ``credentials`` given; then OCIMODEL_USERNAME /
        OCIMODEL_PASSWORD; then docker's config (credential helpers, ``auths``), as
        ``docker login`` / ``ocimodel login`` left it. None: anonymous."""
        bound = self.credentials_registry or settings.credentials_registry() or registry
        if _same_registry(bound, registry):
            if self.credentials is not None:
                return self.credentials
            # Secrets are read here, where they are used, never by ocimodel.settings.
            user = os.environ.get("OCIMODEL_USERNAME")
            password = os.environ.get("OCIMODEL_PASSWORD")
            if user and password is not None:
                return Credentials(user, password, source="OCIMODEL_USERNAME / OCIMODEL_PASSWORD")
        return stored_credentials.find(registry)

    def bound_to(self, registry: str | None) -> ConnectionOptions:
        """These options with explicit and environment credentials tied to ``registry``
        (unless already tied)."""
        if registry is None or self.credentials_registry is not None:
            return self
        return replace(self, credentials_registry=registry)

    def client_for(self, registry: str) -> RegistryClient:
        return RegistryClient(
            registry,
            plain_http=self.plain_http,
            credentials=self.credentials_for(registry),
            max_connections=max(self.concurrency * 2, 4),
            retry=self.retry,
            tls=self.tls,
            on_wait=self.on_wait,
            read_timeout=self.read_timeout,
            request_timeout=self.request_timeout,
        )


def _same_registry(a: str, b: str) -> bool:
    return stored_credentials.normalize_registry(a) == stored_credentials.normalize_registry(b)
