"""ocimodel: an ML model registry on any OCI registry.

    import ocimodel
    result = ocimodel.push("./my-model", "localhost:5000/team/sentiment:1.0", name="sentiment")
    ocimodel.pull("localhost:5000/team/sentiment:1.0", "./out")
"""

from typing import TYPE_CHECKING

# What `import ocimodel` offers, loaded on first use: the CLI imports this package for
# every command, and most commands need only a part of it.
_EXPORTS = {
    "CopyResult": "ocimodel.api", "FileEntry": "ocimodel.api", "LoginResult": "ocimodel.api",
    "LogoutResult": "ocimodel.api", "ModelInfo": "ocimodel.api", "PullResult": "ocimodel.api",
    "PushResult": "ocimodel.api", "catalog": "ocimodel.api", "copy": "ocimodel.api",
    "inspect": "ocimodel.api", "list_tags": "ocimodel.api", "login": "ocimodel.api",
    "logout": "ocimodel.api", "pull": "ocimodel.api", "push": "ocimodel.api", "tag": "ocimodel.api",
    "OcimodelError": "ocimodel.errors",
    "Credentials": "ocimodel.transport.auth",
    "ConnectionOptions": "ocimodel.transport.connection", "TlsOptions": "ocimodel.transport.connection",
    "RetryPolicy": "ocimodel.transport.retry",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ocimodel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from ocimodel.api import (  # noqa: F401
        CopyResult, FileEntry, LoginResult, LogoutResult, ModelInfo, PullResult, PushResult,
        catalog, copy, inspect, list_tags, login, logout, pull, push, tag,
    )
    from ocimodel.errors import OcimodelError  # noqa: F401
    from ocimodel.transport.auth import Credentials  # noqa: F401
    from ocimodel.transport.connection import ConnectionOptions, TlsOptions  # noqa: F401
    from ocimodel.transport.retry import RetryPolicy  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    "ConnectionOptions",
    "CopyResult",
    "Credentials",
    "FileEntry",
    "LoginResult",
    "LogoutResult",
    "ModelInfo",
    "OcimodelError",
    "PullResult",
    "PushResult",
    "RetryPolicy",
    "TlsOptions",
    "catalog",
    "copy",
    "inspect",
    "list_tags",
    "login",
    "logout",
    "pull",
    "push",
    "tag",
]
