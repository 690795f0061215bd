"""The module-level functions (``ocimodel.push``, ``ocimodel.pull``...): each builds a
:class:`~ocimodel.api.client.Client` from its connection arguments (``plain_http``,
``credentials``, ``options``, ``concurrency``) and calls the method of the same name, so
a script that never makes a Client works as it always did.

The signatures are those the API has always had, written out rather than generated so
that help(), editors and type checkers show every parameter, the connection arguments
included (tests/test_api_client.py keeps them in step with the Client's methods). The
docstrings of the operations are on the functions of :mod:`ocimodel.api.transfer`,
``.referrers``, ``.registry``, ``.compare`` and ``.trust`` that do the work."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ocimodel.api.client import Client
from ocimodel.transport.auth import Credentials
from ocimodel.transport.connection import ConnectionOptions

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
        BlobCacheInfo,
        BlobCachePruned,
        CopyResult,
        LoginResult,
        LogoutResult,
        ModelInfo,
        PullResult,
        PushResult,
    )
    from ocimodel.api.trust import AttestResult, ExportSignatureResult, KeyPairResult, SignResult
    from ocimodel.metadata.card import ModelCard
    from ocimodel.metadata.sources import MetadataFlags
    from ocimodel.oci.models import Descriptor
    from ocimodel.packaging.classify import FileKind
    from ocimodel.targets.copy import Progress
    from ocimodel.trust.policy import Policy
    from ocimodel.trust.verify import Decision

PathLike = str | os.PathLike[str]
CredentialsArg = Credentials | tuple[str, str] | None

# The default concurrency of the transfers, and of search, as these functions always had.
TRANSFER_CONCURRENCY = 4
SEARCH_CONCURRENCY = 8


def push(
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
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
    concurrency: int = TRANSFER_CONCURRENCY,
    progress: Progress | None = None,
) -> PushResult:
    """Package the model directory ``path`` and push it to ``reference``: :meth:`Client.push`
    with a Client made of the connection arguments (see :func:`ocimodel.api.transfer.push`)."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options, concurrency=concurrency)
    return client.push(
        path, reference, name=name, version=version, description=description, title=title, licenses=licenses,
        authors=authors, source=source, revision=revision, created=created, kinds=kinds, exclude=exclude,
        follow_symlinks=follow_symlinks, annotations=annotations, metadata=metadata, metadata_file=metadata_file,
        source_dir=source_dir, detect_git=detect_git, record_environment=record_environment, force=force,
        link_parents=link_parents, progress=progress,
    )


def pull(
    reference: str,
    destination: PathLike,
    *,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
    concurrency: int = TRANSFER_CONCURRENCY,
    progress: Progress | None = None,
    verify: Callable[[Any, Descriptor, bytes], None] | None = None,
    include: Sequence[str] = (),
    kinds: Sequence[str] = (),
    blob_cache: bool | None = None,
    keep_local: bool = False,
) -> PullResult:
    """Download the model at ``reference`` into ``destination``: :meth:`Client.pull`
    (see :func:`ocimodel.api.transfer.pull`)."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options, concurrency=concurrency)
    return client.pull(
        reference, destination, progress=progress, verify=verify, include=include, kinds=kinds,
        blob_cache=blob_cache, keep_local=keep_local,
    )


def inspect(
    reference: str,
    *,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> ModelInfo:
    """Manifest, config and file list of the artifact at ``reference``: :meth:`Client.inspect`."""
    return Client(plain_http=plain_http, credentials=credentials, options=options).inspect(reference)


def copy(
    source: str,
    destination: str,
    *,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
    concurrency: int = TRANSFER_CONCURRENCY,
    progress: Progress | None = None,
    with_referrers: bool = False,
    force: bool = False,
) -> CopyResult:
    """Copy an artifact between two stores: :meth:`Client.copy` (see
    :func:`ocimodel.api.transfer.copy`; ``credentials`` belong to the destination's registry)."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options, concurrency=concurrency)
    return client.copy(source, destination, progress=progress, with_referrers=with_referrers, force=force)


def tag(
    reference: str,
    new_tag: str,
    *,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
    force: bool = False,
) -> str:
    """Point ``new_tag`` at the manifest ``reference`` names: :meth:`Client.tag`."""
    return Client(plain_http=plain_http, credentials=credentials, options=options).tag(reference, new_tag, force=force)


def list_tags(
    repository: str,
    *,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
    all_tags: bool = False,
    missing_ok: bool = False,
) -> list[str]:
    """Tags of a repository or a layout: :meth:`Client.list_tags`."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options)
    return client.list_tags(repository, all_tags=all_tags, missing_ok=missing_ok)


def catalog(
    registry: str,
    *,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> list[str]:
    """Repository names of a registry: :meth:`Client.catalog`."""
    return Client(plain_http=plain_http, credentials=credentials, options=options).catalog(registry)


def login(
    registry: str,
    username: str,
    password: str,
    *,
    verify: bool = True,
    plain_http: bool | None = None,
    options: ConnectionOptions | None = None,
) -> LoginResult:
    """Store credentials for ``registry`` where docker would: :meth:`Client.login`."""
    return Client(plain_http=plain_http, options=options).login(registry, username, password, verify=verify)


def logout(registry: str) -> LogoutResult:
    """Remove the stored credentials for ``registry``: :meth:`Client.logout`."""
    return Client().logout(registry)


def attach(
    reference: str,
    files: Sequence[PathLike] = (),
    *,
    artifact_type: str,
    annotations: Mapping[str, str] | None = None,
    media_type: str | None = None,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> AttachResult:
    """Attach ``files`` to the artifact at ``reference`` as one referrer: :meth:`Client.attach`."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options)
    return client.attach(reference, files, artifact_type=artifact_type, annotations=annotations, media_type=media_type)


def referrers(
    reference: str,
    *,
    artifact_type: str | None = None,
    depth: int | None = None,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> DiscoverResult:
    """What refers to the artifact at ``reference``, as a tree: :meth:`Client.referrers`."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options)
    return client.referrers(reference, artifact_type=artifact_type, depth=depth)


def detach(
    reference: str,
    referrer: str,
    *,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> DetachResult:
    """Remove a referrer from the artifact at ``reference``: :meth:`Client.detach`."""
    return Client(plain_http=plain_http, credentials=credentials, options=options).detach(reference, referrer)


def delete(
    reference: str,
    *,
    force: bool = False,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> DeleteResult:
    """Delete the artifact at ``reference`` with its referrers: :meth:`Client.delete`."""
    return Client(plain_http=plain_http, credentials=credentials, options=options).delete(reference, force=force)


def export(
    reference: str,
    output: PathLike,
    *,
    with_referrers: bool = True,
    compression: str = "none",
    overwrite: bool = False,
    concurrency: int = TRANSFER_CONCURRENCY,
    progress: Progress | None = None,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> ExportResult:
    """Write the artifact (and its referrers) to an OCI layout archive: :meth:`Client.export`."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options, concurrency=concurrency)
    return client.export(
        reference, output, with_referrers=with_referrers, compression=compression, overwrite=overwrite,
        progress=progress,
    )


def import_(
    archive: PathLike,
    destination: str,
    *,
    force: bool = False,
    concurrency: int = TRANSFER_CONCURRENCY,
    progress: Progress | None = None,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> ImportResult:
    """Copy the model of an ``export`` archive into ``destination``: :meth:`Client.import_`."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options, concurrency=concurrency)
    return client.import_(archive, destination, force=force, progress=progress)


def versions(
    repository: str,
    *,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> VersionsResult:
    """Every version of a repository in version order: :meth:`Client.versions`."""
    return Client(plain_http=plain_http, credentials=credentials, options=options).versions(repository)


def promote(
    reference: str,
    alias: str,
    *,
    reason: str | None = None,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> PromoteResult:
    """Point ``alias`` at the model ``reference`` names, recorded: :meth:`Client.promote`."""
    return Client(plain_http=plain_http, credentials=credentials, options=options).promote(reference, alias, reason=reason)


def rollback(
    repository: str,
    alias: str,
    *,
    reason: str | None = None,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> PromoteResult:
    """Undo the last promotion of ``alias``: :meth:`Client.rollback`."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options)
    return client.rollback(repository, alias, reason=reason)


def history(
    repository: str,
    alias: str,
    *,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> HistoryResult:
    """Which model held ``alias`` when, who moved it and why: :meth:`Client.history`."""
    return Client(plain_http=plain_http, credentials=credentials, options=options).history(repository, alias)


def lineage(
    reference: str,
    *,
    up: bool = True,
    down: bool = True,
    depth: int = 4,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> LineageGraph:
    """The models ``reference`` was derived from and those derived from it: :meth:`Client.lineage`."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options)
    return client.lineage(reference, up=up, down=down, depth=depth)


def diff(
    a: str,
    b: str,
    *,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> DiffResult:
    """What differs from model ``a`` to model ``b``: :meth:`Client.diff` (``credentials``
    belong to ``a``'s registry, ``b``'s when ``a`` is a layout)."""
    return Client(plain_http=plain_http, credentials=credentials, options=options).diff(a, b)


def search(
    location: str,
    where: str | Sequence[str] = (),
    *,
    license: str | None = None,
    format: str | None = None,
    task: str | None = None,
    name: str | None = None,
    repositories: Sequence[str] = (),
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
    concurrency: int = SEARCH_CONCURRENCY,
    cache: bool = True,
) -> SearchResult:
    """The model versions under ``location`` whose cards satisfy every predicate:
    :meth:`Client.search` (see :func:`ocimodel.api.compare.search`)."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options, concurrency=concurrency)
    return client.search(
        location, where, license=license, format=format, task=task, name=name, repositories=repositories, cache=cache
    )


def sign(
    reference: str,
    *,
    key: PathLike | None = None,
    password: str | bytes | None = None,
    identity_token: str | None = None,
    trust_config: PathLike | None = None,
    staging: bool = False,
    file_signature: bool = True,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> SignResult:
    """Sign the model at ``reference``: :meth:`Client.sign` (see :func:`ocimodel.api.trust.sign`)."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options)
    return client.sign(
        reference, key=key, password=password, identity_token=identity_token, trust_config=trust_config,
        staging=staging, file_signature=file_signature,
    )


def attest(
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
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> AttestResult:
    """Attest something about the model at ``reference``: :meth:`Client.attest`
    (see :func:`ocimodel.api.trust.attest`)."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options)
    return client.attest(
        reference, predicate_file=predicate_file, predicate_type=predicate_type, predicate=predicate,
        provenance=provenance, source_dir=source_dir, env=env, key=key, password=password,
        identity_token=identity_token, trust_config=trust_config, staging=staging,
    )


def verify(
    reference: str,
    *,
    keys: Sequence[PathLike] = (),
    identities: Sequence[tuple[str, str]] = (),
    policy: Policy | PathLike | None = None,
    trusted_root: PathLike | None = None,
    offline: bool = True,
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> Decision:
    """Decide whether the model at ``reference`` is allowed: :meth:`Client.verify`
    (see :func:`ocimodel.api.trust.verify`)."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options)
    return client.verify(
        reference, keys=keys, identities=identities, policy=policy, trusted_root=trusted_root, offline=offline
    )


def export_signature(
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
    plain_http: bool | None = None,
    credentials: CredentialsArg = None,
    options: ConnectionOptions | None = None,
) -> ExportSignatureResult:
    """Write the model's file-level signature bundle to ``output``: :meth:`Client.export_signature`
    (see :func:`ocimodel.api.trust.export_signature`)."""
    client = Client(plain_http=plain_http, credentials=credentials, options=options)
    return client.export_signature(
        reference, output, fmt=fmt, referrer=referrer, keys=keys, identities=identities, policy=policy,
        trusted_root=trusted_root, offline=offline, overwrite=overwrite,
    )


# -- module-level functions that need no connection: here so that every function of
# ``ocimodel`` has one home; each loads its module on first call ---------------------------


def verify_hook(
    *,
    keys: Sequence[PathLike] = (),
    identities: Sequence[tuple[str, str]] = (),
    policy: Policy | PathLike | None = None,
    trusted_root: PathLike | None = None,
    offline: bool = True,
) -> Callable[[Any, Descriptor, bytes], None]:
    """A ``verify=`` hook for :func:`pull` (see :func:`ocimodel.api.trust.verify_hook`)."""
    from ocimodel.api import trust

    return trust.verify_hook(keys=keys, identities=identities, policy=policy, trusted_root=trusted_root, offline=offline)


def generate_key_pair(
    private_key: PathLike = "ocimodel.key",
    public_key: PathLike = "ocimodel.pub",
    password: str | bytes | None = None,
    *,
    overwrite: bool = False,
) -> KeyPairResult:
    """Write a new ECDSA P-256 key pair (see :func:`ocimodel.api.trust.generate_key_pair`)."""
    from ocimodel.api import trust

    return trust.generate_key_pair(private_key, public_key, password, overwrite=overwrite)


def blob_cache_info() -> BlobCacheInfo:
    """What the local blob cache holds (see :func:`ocimodel.api.transfer.blob_cache_info`)."""
    from ocimodel.api import transfer

    return transfer.blob_cache_info()


def prune_blob_cache(*, everything: bool = False) -> BlobCachePruned:
    """Remove blob cache entries (see :func:`ocimodel.api.transfer.prune_blob_cache`)."""
    from ocimodel.api import transfer

    return transfer.prune_blob_cache(everything=everything)
