"""ocimodel: an ML model registry on any OCI registry.

    import ocimodel
    result = ocimodel.push("./my-model", "localhost:5000/team/sentiment:1.0", name="sentiment")
    ocimodel.pull("localhost:5000/team/sentiment:1.0", "./out")

    client = ocimodel.Client(credentials=("alice", token))  # connection settings, once
    client.push("./my-model", "registry.example/team/sentiment:1.1", name="sentiment")
"""

from typing import TYPE_CHECKING

# What `import ocimodel` offers, loaded on first use: the CLI imports this package for
# every command, and most commands need only a part of it.
_F = "ocimodel.api.functions"  # the module-level functions: one Client per call
_EXPORTS = {
    "Client": "ocimodel.api.client",
    "CopyResult": "ocimodel.api.transfer", "FileEntry": "ocimodel.api.transfer", "LoginResult": "ocimodel.api.transfer",
    "LogoutResult": "ocimodel.api.transfer", "ModelInfo": "ocimodel.api.transfer", "PullResult": "ocimodel.api.transfer",
    "PushResult": "ocimodel.api.transfer", "catalog": _F, "copy": _F,
    "inspect": _F, "list_tags": _F, "login": _F,
    "logout": "ocimodel.api.transfer", "pull": _F, "push": _F, "tag": _F,
    "blob_cache_info": "ocimodel.api.transfer", "prune_blob_cache": "ocimodel.api.transfer",
    "OcimodelError": "ocimodel.errors",
    "Credentials": "ocimodel.transport.auth",
    "ConnectionOptions": "ocimodel.transport.connection", "TlsOptions": "ocimodel.transport.connection",
    "RetryPolicy": "ocimodel.transport.retry",
    # referrers (issue 5)
    "attach": _F, "referrers": _F, "detach": _F, "delete": _F, "export": _F, "import_": _F,
    # the model registry (issue 6)
    "versions": _F, "promote": _F, "rollback": _F, "history": _F, "lineage": _F, "diff": _F, "search": _F,
    # trust (issue 7)
    "sign": _F, "attest": _F, "verify": _F, "export_signature": _F, "generate_key_pair": "ocimodel.api.trust",
    # variant indexes (issue 14)
    "create_index": _F, "VariantIndexResult": "ocimodel.api.variants",
    # records you can trust (issue 15)
    "deploy": _F, "retire": _F, "deployments": _F, "audit": _F,
    "AuditResult": "ocimodel.api.audit", "DeploymentsResult": "ocimodel.api.deployments",
    # scanning (issue 16)
    "scan": _F, "ScanResult": "ocimodel.api.scan",
    # bills of materials (issue 17)
    "sbom": _F, "SbomResult": "ocimodel.api.sbom",
    # licenses (issue 17)
    "license_report": _F, "LicenseReport": "ocimodel.api.licenses",
    # evaluation records (issue 18)
    "record_evaluation": _F, "evaluation_history": _F,
    "EvaluationHistory": "ocimodel.api.evaluations", "EvaluationResult": "ocimodel.api.evaluations",
    # evaluation checks and exports (issue 18)
    "check_evaluations": _F, "export_evaluations": _F, "EvaluationCheck": "ocimodel.api.evaluation_checks",
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
    from ocimodel.api.audit import AuditResult  # noqa: F401
    from ocimodel.api.client import Client  # noqa: F401
    from ocimodel.api.deployments import DeploymentsResult  # noqa: F401
    from ocimodel.api.evaluation_checks import EvaluationCheck  # noqa: F401
    from ocimodel.api.evaluations import EvaluationHistory, EvaluationResult  # noqa: F401
    from ocimodel.api.functions import (  # noqa: F401
        attach,
        attest,
        audit,
        catalog,
        check_evaluations,
        copy,
        create_index,
        delete,
        deploy,
        deployments,
        detach,
        diff,
        evaluation_history,
        export,
        export_evaluations,
        export_signature,
        history,
        import_,
        inspect,
        license_report,
        lineage,
        list_tags,
        login,
        promote,
        pull,
        push,
        record_evaluation,
        referrers,
        retire,
        rollback,
        sbom,
        scan,
        search,
        sign,
        tag,
        verify,
        versions,
    )
    from ocimodel.api.licenses import LicenseReport  # noqa: F401
    from ocimodel.api.sbom import SbomResult  # noqa: F401
    from ocimodel.api.scan import ScanResult  # noqa: F401
    from ocimodel.api.transfer import (  # noqa: F401
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
    from ocimodel.api.trust import generate_key_pair  # noqa: F401
    from ocimodel.api.variants import VariantIndexResult  # noqa: F401
    from ocimodel.errors import OcimodelError  # noqa: F401
    from ocimodel.transport.auth import Credentials  # noqa: F401
    from ocimodel.transport.connection import ConnectionOptions, TlsOptions  # noqa: F401
    from ocimodel.transport.retry import RetryPolicy  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    "Client",
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
    "create_index", "VariantIndexResult",
    "deploy", "retire", "deployments", "audit", "AuditResult", "DeploymentsResult",
    "scan", "ScanResult",
    "sbom", "SbomResult",
    "license_report", "LicenseReport",
    "record_evaluation", "evaluation_history", "EvaluationHistory", "EvaluationResult",
    "check_evaluations", "export_evaluations", "EvaluationCheck",
]
