"""The session object: :class:`Client` holds how to reach registries (credentials, plain
HTTP, TLS, retries, concurrency) once, and every operation is a method.

    client = ocimodel.Client(credentials=("alice", token), tls=TlsOptions(ca_file="ca.pem"))
    pushed = client.push("./model", "registry.example/team/sentiment:1.0", name="sentiment")
    client.promote(f"registry.example/team/sentiment@{pushed.digest}", "production")

Each method opens the stores it needs for the length of the call; the settings are what
the Client keeps. The module-level functions (``ocimodel.push``...) build a Client from
their connection arguments and call its method. The operations themselves live in the
modules of this package (transfer, referrers, registry, compare, trust), which the
methods import on first use: a push never loads the signing code."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ocimodel.errors import UsageError
from ocimodel.transport.auth import Credentials
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.transport.retry import RetryPolicy
from ocimodel.transport.tls import TlsOptions

if TYPE_CHECKING:
    from ocimodel.api.compare import DiffResult, SearchResult
    from ocimodel.api.lineage import LineageGraph
    from ocimodel.api.referrers import (
        AttachResult,
        DeleteResult,
        DetachResult,
        DiscoverResult,
        ExportResult,
        ImportResult,
    )
    from ocimodel.api.registry import HistoryResult, PromoteResult, VersionsResult
    from ocimodel.api.transfer import (
        CopyResult,
        LoginResult,
        LogoutResult,
        ModelInfo,
        PullResult,
        PushResult,
    )
    from ocimodel.api.trust import AttestResult, ExportSignatureResult, SignResult
    from ocimodel.metadata.card import ModelCard
    from ocimodel.metadata.sources import MetadataFlags
    from ocimodel.oci.models import Descriptor
    from ocimodel.packaging.classify import FileKind
    from ocimodel.targets.copy import Progress
    from ocimodel.trust.policy import Policy
    from ocimodel.trust.verify import Decision

PathLike = str | os.PathLike[str]


class Client:
    """Connection settings held once; every operation of ocimodel as a method.

    ``credentials`` (a :class:`Credentials` or a ``(username, password)`` pair) belong to
    the registry of the reference an operation writes to (its destination, for a copy);
    they are never sent to another registry, which uses docker's config (``ocimodel
    login``) or goes anonymous. None: OCIMODEL_USERNAME / OCIMODEL_PASSWORD, then docker's
    config. ``plain_http`` None: HTTP only for loopback hosts or OCIMODEL_PLAIN_HTTP=1.
    ``tls``: CA file, client certificate and key, insecure. ``retry``: tries and delays
    (default: OCIMODEL_RETRIES / OCIMODEL_RETRY_DELAY). ``concurrency``: transfers (and
    HTTP connections) at a time; None: that of ``options`` (4 unless set there), and 8 for
    search.
    ``options``: a whole :class:`ConnectionOptions` to start from; the arguments above
    override its fields."""

    def __init__(
        self,
        *,
        credentials: Credentials | tuple[str, str] | None = None,
        plain_http: bool | None = None,
        tls: TlsOptions | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int | None = None,
        options: ConnectionOptions | None = None,
    ) -> None:
        if isinstance(credentials, tuple):
            credentials = Credentials(*credentials)
        if concurrency is not None and concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {concurrency}")
        self.options: ConnectionOptions = (options or ConnectionOptions()).with_overrides(
            plain_http=plain_http, credentials=credentials, tls=tls, retry=retry, concurrency=concurrency
        )
        self.concurrency: int | None = concurrency

    def __repr__(self) -> str:
        o = self.options
        who = o.credentials.username if o.credentials is not None else None  # never the secret
        return f"Client(username={who!r}, plain_http={o.plain_http!r}, concurrency={self.concurrency!r})"

    def _connection(self, default_concurrency: int | None = None) -> ConnectionOptions:
        """The settings one call uses: an operation's own default concurrency applies
        when the Client was given none."""
        if self.concurrency is None and default_concurrency is not None:
            return self.options.with_overrides(concurrency=default_concurrency)
        return self.options

    # -- moving models (ocimodel.api.transfer) ------------------------------------------

    def push(
        self,
        path: PathLike,
        reference: str,
        *,
        name: str | None = None,
        version: str | None = None,
        description: str | None = None,
        title: str | None = None,
        licenses: Sequence[str] = (),
        authors: Sequence[str] = (),
        source: str | None = None,
        revision: str | None = None,
        created: datetime | str | None = None,
        kinds: Mapping[str, FileKind | str] | Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        follow_symlinks: bool = True,
        annotations: Mapping[str, str] | None = None,
        metadata: ModelCard | MetadataFlags | Mapping[str, Any] | None = None,
        metadata_file: PathLike | None = None,
        source_dir: PathLike | None = None,
        detect_git: bool = True,
        record_environment: bool = False,
        force: bool = False,
        link_parents: bool = True,
        progress: Progress | None = None,
    ) -> PushResult:
        """Package the model directory ``path`` and push it to ``reference``
        (see :func:`ocimodel.api.transfer.push`)."""
        from ocimodel.api import transfer

        return transfer.push(
            self._connection(), path, reference, name=name, version=version, description=description,
            title=title, licenses=licenses, authors=authors, source=source, revision=revision, created=created,
            kinds=kinds, exclude=exclude, follow_symlinks=follow_symlinks, annotations=annotations,
            metadata=metadata, metadata_file=metadata_file, source_dir=source_dir, detect_git=detect_git,
            record_environment=record_environment, force=force, link_parents=link_parents, progress=progress,
        )

    def pull(
        self,
        reference: str,
        destination: PathLike,
        *,
        progress: Progress | None = None,
        verify: Callable[[Any, Descriptor, bytes], None] | None = None,
        include: Sequence[str] = (),
        kinds: Sequence[str] = (),
        blob_cache: bool | None = None,
        keep_local: bool = False,
    ) -> PullResult:
        """Download the model at ``reference`` into ``destination``
        (see :func:`ocimodel.api.transfer.pull`)."""
        from ocimodel.api import transfer

        return transfer.pull(
            self._connection(), reference, destination, progress=progress, verify=verify, include=include,
            kinds=kinds, blob_cache=blob_cache, keep_local=keep_local,
        )

    def inspect(self, reference: str) -> ModelInfo:
        """Manifest, config and file list of the artifact at ``reference``."""
        from ocimodel.api import transfer

        return transfer.inspect(self._connection(), reference)

    def copy(
        self,
        source: str,
        destination: str,
        *,
        progress: Progress | None = None,
        with_referrers: bool = False,
        force: bool = False,
    ) -> CopyResult:
        """Copy an artifact between two stores, keeping its digest
        (see :func:`ocimodel.api.transfer.copy`)."""
        from ocimodel.api import transfer

        return transfer.copy(
            self._connection(), source, destination, progress=progress, with_referrers=with_referrers, force=force
        )

    def tag(self, reference: str, new_tag: str, *, force: bool = False) -> str:
        """Point ``new_tag`` at the manifest ``reference`` names; returns its digest."""
        from ocimodel.api import transfer

        return transfer.tag(self._connection(), reference, new_tag, force=force)

    def list_tags(self, repository: str, *, all_tags: bool = False, missing_ok: bool = False) -> list[str]:
        """Tags of a repository or a layout (see :func:`ocimodel.api.transfer.list_tags`)."""
        from ocimodel.api import transfer

        return transfer.list_tags(self._connection(), repository, all_tags=all_tags, missing_ok=missing_ok)

    def catalog(self, registry: str) -> list[str]:
        """Repository names of a registry, where the registry allows it."""
        from ocimodel.api import transfer

        return transfer.catalog(self._connection(), registry)

    def login(self, registry: str, username: str, password: str, *, verify: bool = True) -> LoginResult:
        """Store credentials for ``registry`` where docker would
        (see :func:`ocimodel.api.transfer.login`)."""
        from ocimodel.api import transfer

        return transfer.login(self._connection(), registry, username, password, verify=verify)

    def logout(self, registry: str) -> LogoutResult:
        """Remove the stored credentials for ``registry``."""
        from ocimodel.api import transfer

        return transfer.logout(registry)

    # -- referrers (ocimodel.api.referrers) -----------------------------------------------

    def attach(
        self,
        reference: str,
        files: Sequence[PathLike] = (),
        *,
        artifact_type: str,
        annotations: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> AttachResult:
        """Attach ``files`` to the artifact at ``reference`` as one referrer
        (see :func:`ocimodel.api.referrers.attach`)."""
        from ocimodel.api import referrers

        return referrers.attach(
            self._connection(), reference, files, artifact_type=artifact_type, annotations=annotations,
            media_type=media_type,
        )

    def referrers(
        self, reference: str, *, artifact_type: str | None = None, depth: int | None = None
    ) -> DiscoverResult:
        """What refers to the artifact at ``reference``, as a tree
        (see :func:`ocimodel.api.referrers.referrers`)."""
        from ocimodel.api import referrers

        if depth is None:
            return referrers.referrers(self._connection(), reference, artifact_type=artifact_type)
        return referrers.referrers(self._connection(), reference, artifact_type=artifact_type, depth=depth)

    def detach(self, reference: str, referrer: str) -> DetachResult:
        """Remove the referrer ``referrer`` (a digest) from the artifact at ``reference``."""
        from ocimodel.api import referrers

        return referrers.detach(self._connection(), reference, referrer)

    def delete(self, reference: str, *, force: bool = False) -> DeleteResult:
        """Delete the artifact at ``reference`` with its referrers
        (see :func:`ocimodel.api.referrers.delete`)."""
        from ocimodel.api import referrers

        return referrers.delete(self._connection(), reference, force=force)

    def export(
        self,
        reference: str,
        output: PathLike,
        *,
        with_referrers: bool = True,
        compression: str = "none",
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> ExportResult:
        """Write the artifact (and its referrers) to an OCI layout archive
        (see :func:`ocimodel.api.referrers.export`)."""
        from ocimodel.api import referrers

        return referrers.export(
            self._connection(), reference, output, with_referrers=with_referrers, compression=compression,
            overwrite=overwrite, progress=progress,
        )

    def import_(
        self, archive: PathLike, destination: str, *, force: bool = False, progress: Progress | None = None
    ) -> ImportResult:
        """Copy the model of an ``export`` archive into ``destination``
        (see :func:`ocimodel.api.referrers.import_`)."""
        from ocimodel.api import referrers

        return referrers.import_(self._connection(), archive, destination, force=force, progress=progress)

    # -- the model registry (ocimodel.api.registry) ---------------------------------------

    def versions(self, repository: str) -> VersionsResult:
        """Every version of a repository in version order, with its aliases."""
        from ocimodel.api import registry

        return registry.versions(self._connection(), repository)

    def promote(self, reference: str, alias: str, *, reason: str | None = None) -> PromoteResult:
        """Point ``alias`` at the model ``reference`` names, with a promotion record."""
        from ocimodel.api import registry

        return registry.promote(self._connection(), reference, alias, reason=reason)

    def rollback(self, repository: str, alias: str, *, reason: str | None = None) -> PromoteResult:
        """Undo the last promotion of ``alias`` (see :func:`ocimodel.api.registry.rollback`)."""
        from ocimodel.api import registry

        return registry.rollback(self._connection(), repository, alias, reason=reason)

    def history(self, repository: str, alias: str) -> HistoryResult:
        """Which model held ``alias`` when, who moved it and why, oldest first."""
        from ocimodel.api import registry

        return registry.history(self._connection(), repository, alias)

    def lineage(self, reference: str, *, up: bool = True, down: bool = True, depth: int = 4) -> LineageGraph:
        """The models ``reference`` was derived from (up) and those derived from it (down)."""
        from ocimodel.api import registry

        return registry.lineage(self._connection(), reference, up=up, down=down, depth=depth)

    # -- comparing and finding (ocimodel.api.compare) -------------------------------------

    def diff(self, a: str, b: str) -> DiffResult:
        """What differs from model ``a`` to model ``b`` (see :func:`ocimodel.api.compare.diff`)."""
        from ocimodel.api import compare

        return compare.diff(self._connection(), a, b)

    def search(
        self,
        location: str,
        where: str | Sequence[str] = (),
        *,
        license: str | None = None,
        format: str | None = None,
        task: str | None = None,
        name: str | None = None,
        repositories: Sequence[str] = (),
        cache: bool = True,
    ) -> SearchResult:
        """The model versions under ``location`` whose cards satisfy every predicate
        (see :func:`ocimodel.api.compare.search`)."""
        from ocimodel.api import compare

        return compare.search(
            self._connection(compare.SEARCH_CONCURRENCY), location, where, license=license, format=format,
            task=task, name=name, repositories=repositories, cache=cache,
        )

    # -- trust (ocimodel.api.trust) -------------------------------------------------------

    def sign(
        self,
        reference: str,
        *,
        key: PathLike | None = None,
        password: str | bytes | None = None,
        identity_token: str | None = None,
        trust_config: PathLike | None = None,
        staging: bool = False,
        file_signature: bool = True,
    ) -> SignResult:
        """Sign the model at ``reference`` (see :func:`ocimodel.api.trust.sign`)."""
        from ocimodel.api import trust

        return trust.sign(
            self._connection(), reference, key=key, password=password, identity_token=identity_token,
            trust_config=trust_config, staging=staging, file_signature=file_signature,
        )

    def attest(
        self,
        reference: str,
        *,
        predicate_file: PathLike | None = None,
        predicate_type: str | None = None,
        predicate: Mapping[str, Any] | None = None,
        provenance: bool = False,
        source_dir: PathLike | None = None,
        env: Mapping[str, str] | None = None,
        key: PathLike | None = None,
        password: str | bytes | None = None,
        identity_token: str | None = None,
        trust_config: PathLike | None = None,
        staging: bool = False,
    ) -> AttestResult:
        """Attest something about the model at ``reference``
        (see :func:`ocimodel.api.trust.attest`)."""
        from ocimodel.api import trust

        return trust.attest(
            self._connection(), reference, predicate_file=predicate_file, predicate_type=predicate_type,
            predicate=predicate, provenance=provenance, source_dir=source_dir, env=env, key=key, password=password,
            identity_token=identity_token, trust_config=trust_config, staging=staging,
        )

    def verify(
        self,
        reference: str,
        *,
        keys: Sequence[PathLike] = (),
        identities: Sequence[tuple[str, str]] = (),
        policy: Policy | PathLike | None = None,
        trusted_root: PathLike | None = None,
        offline: bool = True,
    ) -> Decision:
        """Decide whether the model at ``reference`` is allowed
        (see :func:`ocimodel.api.trust.verify`)."""
        from ocimodel.api import trust

        return trust.verify(
            self._connection(), reference, keys=keys, identities=identities, policy=policy,
            trusted_root=trusted_root, offline=offline,
        )

    def export_signature(
        self,
        reference: str,
        output: PathLike,
        *,
        fmt: str = "model-signing",
        referrer: str | None = None,
        keys: Sequence[PathLike] = (),
        identities: Sequence[tuple[str, str]] = (),
        policy: Policy | PathLike | None = None,
        trusted_root: PathLike | None = None,
        offline: bool = True,
        overwrite: bool = False,
    ) -> ExportSignatureResult:
        """Write the model's file-level signature bundle to ``output``
        (see :func:`ocimodel.api.trust.export_signature`)."""
        from ocimodel.api import trust

        return trust.export_signature(
            self._connection(), reference, output, fmt=fmt, referrer=referrer, keys=keys, identities=identities,
            policy=policy, trusted_root=trusted_root, offline=offline, overwrite=overwrite,
        )
