"""The Python API of ocimodel, one module per concern:

- :mod:`~ocimodel.api.client`: :class:`Client`, the session object (connection settings
  held once, every operation a method);
- :mod:`~ocimodel.api.functions`: the module-level functions (``ocimodel.push``,
  ``ocimodel.attach``...), each a Client made of its connection arguments and one call;
- the operations, which take the connection settings first: :mod:`~ocimodel.api.transfer`
  (push, pull, inspect, copy, tag, list_tags, catalog, login / logout, the blob cache),
  :mod:`~ocimodel.api.referrers` (attach, discover, detach, delete, export / import),
  :mod:`~ocimodel.api.registry` (versions, promote, rollback, history, lineage),
  :mod:`~ocimodel.api.compare` (diff, search), :mod:`~ocimodel.api.trust` (sign, attest,
  verify, export_signature, keys), :mod:`~ocimodel.api.lineage` (the lineage graph);
- :mod:`~ocimodel.api.common`: what those share.

This package offers what ``ocimodel.api`` always did (the transfer functions and their
results) and :class:`Client`, loaded on first use: importing it loads nothing else. The
other functions are ``ocimodel.attach``... (or :mod:`ocimodel.api.functions`): here
``referrers`` and ``lineage`` name modules."""

from typing import TYPE_CHECKING

_F = "ocimodel.api.functions"
_T = "ocimodel.api.transfer"
_EXPORTS = {
    "Client": "ocimodel.api.client",
    "push": _F, "pull": _F, "inspect": _F, "copy": _F, "tag": _F, "list_tags": _F, "catalog": _F, "login": _F,
    "logout": _T, "blob_cache_info": _T, "prune_blob_cache": _T,
    "BlobCacheInfo": _T, "BlobCachePruned": _T, "CopyResult": _T, "FileEntry": _T, "LoginResult": _T,
    "LogoutResult": _T, "ModelInfo": _T, "PullResult": _T, "PushResult": _T,
    # evaluation records (issue 18)
    "record_evaluation": _F, "evaluation_history": _F,
    "EvaluationHistory": "ocimodel.api.evaluations", "EvaluationResult": "ocimodel.api.evaluations",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ocimodel.api' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from ocimodel.api.client import Client  # noqa: F401
    from ocimodel.api.evaluations import EvaluationHistory, EvaluationResult  # noqa: F401
    from ocimodel.api.functions import (  # noqa: F401
        catalog,
        copy,
        evaluation_history,
        inspect,
        list_tags,
        login,
        pull,
        push,
        record_evaluation,
        tag,
    )
    from ocimodel.api.transfer import (  # noqa: F401
        BlobCacheInfo,
        BlobCachePruned,
        CopyResult,
        FileEntry,
        LoginResult,
        LogoutResult,
        ModelInfo,
        PullResult,
        PushResult,
        blob_cache_info,
        logout,
        prune_blob_cache,
    )

__all__ = sorted(_EXPORTS)
