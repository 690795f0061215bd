"""The session object: :class:`Client` holds how to reach registries (credentials, plain
HTTP, TLS, retries, concurrency) once, and every operation is a method.

    client = ocimodel.Client(credentials=("alice", token), tls=TlsOptions(ca_file="ca.pem"))
    pushed = client.push("./model", "registry.example/team/sentiment:1.0", name="sentiment")
    client.promote(f"registry.example/team/sentiment@{pushed.digest}", "production")

Each method opens the stores it needs for the length of the call; the settings are what
the Client keeps. The operations live in the modules of this package (transfer,
referrers, registry, compare, trust), as functions whose first parameter is the
connection settings; a method is that function with the Client's settings filled in,
loaded on first use (a push never loads the signing code). Type checkers see the same
through :func:`_bound`. The module-level functions (``ocimodel.push``...) build a Client
from their connection arguments and call its method."""

from __future__ import annotations

import functools
import importlib
import inspect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from ocimodel.errors import UsageError
from ocimodel.transport.auth import Credentials
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.transport.retry import RetryPolicy
from ocimodel.transport.tls import TlsOptions

if TYPE_CHECKING:
    from ocimodel.api import audit as audit_ops
    from ocimodel.api import compare as compare_ops
    from ocimodel.api import deployments as deployment_ops
    from ocimodel.api import evaluation_checks as evaluation_check_ops
    from ocimodel.api import evaluations as evaluation_ops
    from ocimodel.api import licenses as license_ops
    from ocimodel.api import referrers as referrer_ops
    from ocimodel.api import registry as registry_ops
    from ocimodel.api import sbom as sbom_ops
    from ocimodel.api import scan as scan_ops
    from ocimodel.api import transfer as transfer_ops
    from ocimodel.api import trust as trust_ops
    from ocimodel.api import variants as variant_ops
    from ocimodel.api.transfer import LogoutResult

P = ParamSpec("P")
R = TypeVar("R")


def _bound(operation: Callable[Concatenate[ConnectionOptions, P], R]) -> Callable[Concatenate[Client, P], R]:
    """For type checkers: ``operation`` as a method of Client (its first parameter, the
    connection settings, is the Client's)."""
    raise NotImplementedError  # pragma: no cover - never called at run time


class _Operation:
    """A method of Client that is a function of an operations module, imported on first
    use; the method then replaces this descriptor on the class."""

    def __init__(self, module: str, default_concurrency: int | None = None) -> None:
        self.module = module
        self.default_concurrency = default_concurrency

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, client: Client | None, owner: type) -> Any:
        operation = getattr(importlib.import_module(self.module), self.name)
        default = self.default_concurrency

        @functools.wraps(operation)
        def method(client: Client, *args: Any, **kwargs: Any) -> Any:
            return operation(client.connection(default), *args, **kwargs)

        signature = inspect.signature(operation)
        first, *rest = signature.parameters.values()
        method.__signature__ = signature.replace(parameters=[first.replace(name="self", annotation="Client"), *rest])
        method.__qualname__ = f"Client.{self.name}"
        setattr(owner, self.name, method)
        return method.__get__(client, owner) if client is not None else method


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
    search. ``read_timeout``: seconds a read may wait for its next byte (a blob that keeps
    moving has no other limit); ``request_timeout``: seconds a small request may take, its
    retries included; None: OCIMODEL_READ_TIMEOUT (300), OCIMODEL_REQUEST_TIMEOUT (60).
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
        read_timeout: float | None = None,
        request_timeout: float | None = None,
        options: ConnectionOptions | None = None,
    ) -> None:
        if isinstance(credentials, tuple):
            credentials = Credentials(*credentials)
        if concurrency is not None and concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {concurrency}")
        for name, seconds in (("read_timeout", read_timeout), ("request_timeout", request_timeout)):
            if seconds is not None and not 0 < seconds < math.inf:
                raise UsageError(f"{name} must be a positive number of seconds, got {seconds}")
        self.options: ConnectionOptions = (options or ConnectionOptions()).with_overrides(
            plain_http=plain_http, credentials=credentials, tls=tls, retry=retry, concurrency=concurrency,
            read_timeout=read_timeout, request_timeout=request_timeout,
        )
        self.concurrency: int | None = concurrency

    def __repr__(self) -> str:
        o = self.options
        who = o.credentials.username if o.credentials is not None else None  # never the secret
        return f"Client(username={who!r}, plain_http={o.plain_http!r}, concurrency={self.concurrency!r})"

    def connection(self, default_concurrency: int | None = None) -> ConnectionOptions:
        """The settings one call uses: an operation's own default concurrency (search's)
        applies when the Client was given none."""
        if self.concurrency is None and default_concurrency is not None:
            return self.options.with_overrides(concurrency=default_concurrency)
        return self.options


    def logout(self, registry: str) -> LogoutResult:
        """Remove the stored credentials for ``registry`` from this machine (see
        :func:`ocimodel.api.transfer.logout`); no connection is made."""
        from ocimodel.api import transfer

        return transfer.logout(registry)

    # The operations: each is the function of its module, documented there (help(Client.push)
    # shows it), with the Client's settings as its first argument.
    if TYPE_CHECKING:
        push = _bound(transfer_ops.push)
        pull = _bound(transfer_ops.pull)
        inspect = _bound(transfer_ops.inspect)
        copy = _bound(transfer_ops.copy)
        tag = _bound(transfer_ops.tag)
        list_tags = _bound(transfer_ops.list_tags)
        catalog = _bound(transfer_ops.catalog)
        login = _bound(transfer_ops.login)
        attach = _bound(referrer_ops.attach)
        referrers = _bound(referrer_ops.referrers)
        detach = _bound(referrer_ops.detach)
        delete = _bound(referrer_ops.delete)
        export = _bound(referrer_ops.export)
        import_ = _bound(referrer_ops.import_)
        versions = _bound(registry_ops.versions)
        promote = _bound(registry_ops.promote)
        rollback = _bound(registry_ops.rollback)
        history = _bound(registry_ops.history)
        lineage = _bound(registry_ops.lineage)
        diff = _bound(compare_ops.diff)
        search = _bound(compare_ops.search)
        sign = _bound(trust_ops.sign)
        attest = _bound(trust_ops.attest)
        verify = _bound(trust_ops.verify)
        export_signature = _bound(trust_ops.export_signature)
        create_index = _bound(variant_ops.create_index)
        deploy = _bound(deployment_ops.deploy)
        retire = _bound(deployment_ops.retire)
        deployments = _bound(deployment_ops.deployments)
        audit = _bound(audit_ops.audit)
        scan = _bound(scan_ops.scan)
        sbom = _bound(sbom_ops.sbom)
        license_report = _bound(license_ops.license_report)
        record_evaluation = _bound(evaluation_ops.record_evaluation)
        evaluation_history = _bound(evaluation_ops.evaluation_history)
        check_evaluations = _bound(evaluation_check_ops.check_evaluations)
        export_evaluations = _bound(evaluation_check_ops.export_evaluations)
    else:
        push = _Operation("ocimodel.api.transfer")
        pull = _Operation("ocimodel.api.transfer")
        inspect = _Operation("ocimodel.api.transfer")
        copy = _Operation("ocimodel.api.transfer")
        tag = _Operation("ocimodel.api.transfer")
        list_tags = _Operation("ocimodel.api.transfer")
        catalog = _Operation("ocimodel.api.transfer")
        login = _Operation("ocimodel.api.transfer")
        attach = _Operation("ocimodel.api.referrers")
        referrers = _Operation("ocimodel.api.referrers")
        detach = _Operation("ocimodel.api.referrers")
        delete = _Operation("ocimodel.api.referrers")
        export = _Operation("ocimodel.api.referrers")
        import_ = _Operation("ocimodel.api.referrers")
        versions = _Operation("ocimodel.api.registry")
        promote = _Operation("ocimodel.api.registry")
        rollback = _Operation("ocimodel.api.registry")
        history = _Operation("ocimodel.api.registry")
        lineage = _Operation("ocimodel.api.registry")
        diff = _Operation("ocimodel.api.compare")
        search = _Operation("ocimodel.api.compare", default_concurrency=8)  # as ocimodel.search
        sign = _Operation("ocimodel.api.trust")
        attest = _Operation("ocimodel.api.trust")
        verify = _Operation("ocimodel.api.trust")
        export_signature = _Operation("ocimodel.api.trust")
        create_index = _Operation("ocimodel.api.variants")
        deploy = _Operation("ocimodel.api.deployments")
        retire = _Operation("ocimodel.api.deployments")
        deployments = _Operation("ocimodel.api.deployments", default_concurrency=8)  # reads every referrer
        audit = _Operation("ocimodel.api.audit", default_concurrency=8)
        scan = _Operation("ocimodel.api.scan")
        sbom = _Operation("ocimodel.api.sbom")
        license_report = _Operation("ocimodel.api.licenses")
        record_evaluation = _Operation("ocimodel.api.evaluations")
        evaluation_history = _Operation("ocimodel.api.evaluations", default_concurrency=8)  # reads every record
        check_evaluations = _Operation("ocimodel.api.evaluation_checks", default_concurrency=8)  # reads every record
        export_evaluations = _Operation("ocimodel.api.evaluation_checks", default_concurrency=8)
