"""ocimodel: an ML model registry on any OCI registry.

    import ocimodel
    result = ocimodel.push("./my-model", "localhost:5000/team/sentiment:1.0", name="sentiment")
    ocimodel.pull("localhost:5000/team/sentiment:1.0", "./out")
"""

from ocimodel.api import (
    CopyResult,
    FileEntry,
    ModelInfo,
    PullResult,
    PushResult,
    catalog,
    copy,
    inspect,
    list_tags,
    pull,
    push,
    tag,
)
from ocimodel.errors import OcimodelError
from ocimodel.transport.auth import Credentials

__version__ = "0.1.0"

__all__ = [
    "CopyResult",
    "Credentials",
    "FileEntry",
    "ModelInfo",
    "OcimodelError",
    "PullResult",
    "PushResult",
    "catalog",
    "copy",
    "inspect",
    "list_tags",
    "pull",
    "push",
    "tag",
]
