"""How to reach a registry: scheme, credentials, TLS and retries, gathered in one value
that the API takes and the store layer turns into a client for each registry it meets."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from ocimodel.transport.auth import Credentials
from ocimodel.transport.client import RegistryClient
from ocimodel.transport.retry import RetryPolicy


@dataclass(frozen=True)
class TlsOptions:
    """TLS settings. Verification is on unless ``insecure`` is asked for."""

    ca_file: Path | None = None  # extra CA bundle to trust (a corporate or private CA)
    insecure: bool = False  # do not verify certificates (warned about at the CLI)
    client_cert: Path | None = None  # for registries that require mutual TLS
    client_key: Path | None = None


@dataclass(frozen=True)
class ConnectionOptions:
    """``plain_http=None``: HTTP only for loopback hosts or OCIMODEL_PLAIN_HTTP=1.
    ``credentials=None``: found for each registry (environment, then docker's config)."""

    plain_http: bool | None = None
    credentials: Credentials | None = None
    tls: TlsOptions = TlsOptions()
    retry: RetryPolicy | None = None
    concurrency: int = 4

    def with_overrides(self, **changes) -> ConnectionOptions:
        """A copy with the given fields replaced; ``None`` values leave a field as it is."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def credentials_for(self, registry: str) -> Credentials | None:
        """Explicit credentials win; then OCIMODEL_USERNAME / OCIMODEL_PASSWORD."""
        if self.credentials is not None:
            return self.credentials
        user = os.environ.get("OCIMODEL_USERNAME")
        password = os.environ.get("OCIMODEL_PASSWORD")
        if user and password is not None:
            return Credentials(user, password)
        return None

    def client_for(self, registry: str) -> RegistryClient:
        return RegistryClient(
            registry,
            plain_http=self.plain_http,
            credentials=self.credentials_for(registry),
            max_connections=max(self.concurrency * 2, 4),
            retry=self.retry,
        )
