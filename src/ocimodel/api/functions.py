"""The module-level functions (``ocimodel.push``, ``ocimodel.pull``...): each builds a
:class:`~ocimodel.api.client.Client` from its connection arguments and calls the method
of the same name, so a script that never makes a Client works as it always did.

Each function is made from its Client method when it is first asked for (``ocimodel.push``
loads the transfer module, not the trust one): its signature is the method's, plus the
connection arguments it has always taken, so help() and ``inspect.signature()`` show every
parameter and the parameters are written once, on the operation. Which connection
arguments a function takes is the one thing said here:

- every one takes ``plain_http`` and ``options`` (a whole :class:`ConnectionOptions`);
- all but ``login`` take ``credentials`` (login is given a username and password);
- the transfers (push, pull, copy, export, import_) take ``concurrency``, default 4, and
  search, deployments, audit and evaluation_history take it with default 8 (they read many small records);
  the others use that of ``options``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from inspect import Parameter, signature
from typing import TYPE_CHECKING, Any

from ocimodel.api.client import Client

# The default concurrency of the transfers, and of search, as these functions always had.
TRANSFER_CONCURRENCY = 4
SEARCH_CONCURRENCY = 8

# Every operation of Client that connects somewhere, with the default concurrency its
# function takes (None: it takes no concurrency argument).
CONNECTED: dict[str, int | None] = {
    "push": TRANSFER_CONCURRENCY, "pull": TRANSFER_CONCURRENCY, "copy": TRANSFER_CONCURRENCY,
    "export": TRANSFER_CONCURRENCY, "import_": TRANSFER_CONCURRENCY, "search": SEARCH_CONCURRENCY,
    "inspect": None, "tag": None, "list_tags": None, "catalog": None, "login": None,
    "attach": None, "referrers": None, "detach": None, "delete": None,
    "versions": None, "promote": None, "rollback": None, "history": None, "lineage": None, "diff": None,
    "sign": None, "attest": None, "verify": None, "export_signature": None,
    "create_index": None, "scan": None, "sbom": None, "license_report": None,
    "deploy": None, "retire": None, "deployments": SEARCH_CONCURRENCY, "audit": SEARCH_CONCURRENCY,
    "record_evaluation": None, "evaluation_history": SEARCH_CONCURRENCY,
    "check_evaluations": SEARCH_CONCURRENCY, "export_evaluations": SEARCH_CONCURRENCY,
}
WITHOUT_CREDENTIALS = frozenset({"login"})


def _connection_parameters(name: str) -> list[Parameter]:
    def keyword(parameter: str, default: Any, annotation: str) -> Parameter:
        return Parameter(parameter, Parameter.KEYWORD_ONLY, default=default, annotation=annotation)

    parameters = [keyword("plain_http", None, "bool | None")]
    if name not in WITHOUT_CREDENTIALS:
        parameters.append(keyword("credentials", None, "Credentials | tuple[str, str] | None"))
    parameters.append(keyword("options", None, "ConnectionOptions | None"))
    if CONNECTED[name] is not None:
        parameters.append(keyword("concurrency", CONNECTED[name], "int"))
    return parameters


def module_function(name: str) -> Callable[..., Any]:
    """``ocimodel.<name>``: the Client method ``name`` as a function that takes the
    connection arguments as well."""
    method = getattr(Client, name)  # loads the operation's module, once
    connection = _connection_parameters(name)
    names = [p.name for p in connection]
    default_concurrency = CONNECTED[name]

    @functools.wraps(method)
    def function(*args: Any, **kwargs: Any) -> Any:
        settings = {key: kwargs.pop(key) for key in names if key in kwargs}
        if default_concurrency is not None:
            settings.setdefault("concurrency", default_concurrency)
        return getattr(Client(**settings), name)(*args, **kwargs)

    own = list(signature(method).parameters.values())[1:]  # without self
    tail = [p for p in own if p.kind is Parameter.VAR_KEYWORD]
    head = [p for p in own if p.kind is not Parameter.VAR_KEYWORD]
    function.__signature__ = signature(method).replace(parameters=[*head, *connection, *tail])
    function.__qualname__ = function.__name__ = name
    function.__module__ = __name__
    del function.__wrapped__  # the signature above is the one to show, not the method's
    function.__doc__ = (
        f":meth:`Client.{name}` with a Client made of the connection arguments ({', '.join(names)}).\n\n"
        + (method.__doc__ or "")
    )
    return function


# The functions that connect nowhere are those of their modules, offered here as well so
# that every function of ``ocimodel`` can be found in this one module.
UNCONNECTED = {
    "logout": "ocimodel.api.transfer", "blob_cache_info": "ocimodel.api.transfer",
    "prune_blob_cache": "ocimodel.api.transfer", "generate_key_pair": "ocimodel.api.trust",
    "verify_hook": "ocimodel.api.trust",
}


def __getattr__(name: str) -> Callable[..., Any]:
    if name in UNCONNECTED:
        import importlib

        function = getattr(importlib.import_module(UNCONNECTED[name]), name)
    elif name in CONNECTED:
        function = module_function(name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = function
    return function


if TYPE_CHECKING:  # for type checkers: the operations as a default Client's methods
    _default = Client()
    push = _default.push
    pull = _default.pull
    inspect = _default.inspect
    copy = _default.copy
    tag = _default.tag
    list_tags = _default.list_tags
    catalog = _default.catalog
    login = _default.login
    attach = _default.attach
    referrers = _default.referrers
    detach = _default.detach
    delete = _default.delete
    export = _default.export
    import_ = _default.import_
    versions = _default.versions
    promote = _default.promote
    rollback = _default.rollback
    history = _default.history
    lineage = _default.lineage
    diff = _default.diff
    search = _default.search
    sign = _default.sign
    attest = _default.attest
    verify = _default.verify
    export_signature = _default.export_signature
    create_index = _default.create_index
    deploy = _default.deploy
    retire = _default.retire
    deployments = _default.deployments
    audit = _default.audit
    scan = _default.scan
    record_evaluation = _default.record_evaluation
    evaluation_history = _default.evaluation_history
    check_evaluations = _default.check_evaluations
    export_evaluations = _default.export_evaluations
