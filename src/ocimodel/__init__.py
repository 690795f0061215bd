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
    "blob_cache_info": "ocimodel.api", "prune_blob_cache": "ocimodel.api",
    "OcimodelError": "ocimodel.errors",
    "Credentials": "ocimodel.transport.auth",
    "ConnectionOptions": "ocimodel.transport.connection", "TlsOptions": "ocimodel.transport.connection",
    "RetryPolicy": "ocimodel.transport.retry",
    # referrers (issue 5)
    "attach": "ocimodel.api_referrers", "referrers": "ocimodel.api_referrers", "detach": "ocimodel.api_referrers",
    "delete": "ocimodel.api_referrers", "export": "ocimodel.api_referrers", "import_": "ocimodel.api_referrers",
    # the model registry (issue 6)
    "versions": "ocimodel.api_registry", "promote": "ocimodel.api_registry", "rollback": "ocimodel.api_registry",
    "history": "ocimodel.api_registry", "lineage": "ocimodel.api_registry",
    "diff": "ocimodel.api_compare", "search": "ocimodel.api_compare",
    # trust (issue 7)
    "sign": "ocimodel.api_trust", "attest": "ocimodel.api_trust", "verify": "ocimodel.api_trust",
    "export_signature": "ocimodel.api_trust", "generate_key_pair": "ocimodel.api_trust",
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
    "attach", "referrers", "detach", "delete", "export", "import_",
    "versions", "promote", "rollback", "history", "lineage", "diff", "search",
    "sign", "attest", "verify", "export_signature", "generate_key_pair",
    "blob_cache_info", "prune_blob_cache",
]
