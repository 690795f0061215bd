"""ocimodel: an ML model registry on any OCI registry.

    import ocimodel
    result = ocimodel.push("./my-model", "localhost:5000/team/sentiment:1.0", name="sentiment")
    ocimodel.pull("localhost:5000/team/sentiment:1.0", "./out")
"""

from ocimodel.api import (
    CopyResult,
    FileEntry,
    LoginResult,
    LogoutResult,
    ModelInfo,
    PullResult,
    PushResult,
    catalog,
    copy,
    inspect,
    list_tags,
    login,
    logout,
    pull,
    push,
    tag,
)
from ocimodel.errors import OcimodelError
from ocimodel.transport.auth import Credentials
from ocimodel.transport.connection import ConnectionOptions, TlsOptions
from ocimodel.transport.retry import RetryPolicy

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
