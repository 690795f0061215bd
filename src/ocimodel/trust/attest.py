"""Attestation predicates: any JSON predicate a user brings, and SLSA provenance v1 that
we generate from the build we run in (GitHub Actions, or a local checkout).

The materials of a model are its training data and the models it was derived from: the
card's ``datasets`` and ``base_models`` (manifest annotations ``dev.ocimodel.datasets+json``
and ``dev.ocimodel.base-models+json``, signed with the manifest), listed as
``resolvedDependencies`` with their digests where the card has them."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ocimodel.chunks import FileTooLarge, read_capped
from ocimodel.errors import InvalidManifest, UsageError
from ocimodel.metadata.card import ModelCard
from ocimodel.metadata.sources import detect_code
from ocimodel.oci.models import loads_strict

SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
# The build types: GitHub's own for workflows (what actions/attest-build-provenance writes),
# ours for a build on a developer's machine.
GITHUB_WORKFLOW_BUILD_TYPE = "https://actions.github.io/buildtypes/workflow/v1"
LOCAL_BUILD_TYPE = "https://ocimodel.dev/buildtypes/local/v1"
LOCAL_BUILDER_ID = "https://ocimodel.dev/builders/local/v1"
MAX_PREDICATE_BYTES = 8 * 1024 * 1024  # the whole bundle must stay under 10 MiB

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]{1,1000}$")
_GIT_COMMIT = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_GITHUB_REQUIRED = ("GITHUB_REPOSITORY", "GITHUB_SHA", "GITHUB_WORKFLOW_REF", "GITHUB_RUN_ID")


def check_predicate_type(value: object) -> str:
    """A predicate type is a URI (in-toto says so; policies match it exactly)."""
    if not isinstance(value, str) or not _URI.match(value):
        raise UsageError(
            f"predicate type {str(value)[:100]!r} is not a URI",
            hint="e.g. https://slsa.dev/provenance/v1 or https://cyclonedx.org/bom",
        )
    return value


def load_predicate(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A predicate from a JSON file: one object, no duplicate keys, bounded in size."""
    path = Path(path)
    try:
        data = read_capped(path, MAX_PREDICATE_BYTES)
    except FileTooLarge as exc:
        raise UsageError(f"predicate {exc}") from None
    except FileNotFoundError:
        raise UsageError(f"predicate file {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read predicate file {path}: {exc.strerror}") from None
    try:
        document = loads_strict(data, f"predicate {path}")
    except InvalidManifest as exc:
        raise UsageError(exc.message) from None
    if not isinstance(document, dict):
        raise UsageError(f"predicate {path} is not a JSON object")
    return document


def materials(card: ModelCard) -> list[dict[str, Any]]:
    """Datasets and base models as SLSA resource descriptors."""
    out: list[dict[str, Any]] = []
    for dataset in card.datasets or ():
        out.append(_resource(dataset.uri, dataset.digest, {"ocimodel.role": "dataset"}))
    for base in card.base_models or ():
        out.append(_resource(base.reference, base.digest, {"ocimodel.role": "base-model", "ocimodel.relation": base.relation}))
    return out


def _resource(uri: str, digest: str | None, annotations: dict[str, str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"uri": uri}
    if digest:
        algorithm, _, encoded = digest.partition(":")
        entry["digest"] = {algorithm: encoded}
    entry["annotations"] = annotations
    return entry


def is_github_actions(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


def provenance(
    card: ModelCard,
    *,
    env: Mapping[str, str] | None = None,
    source_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """SLSA provenance v1 predicate for the build we run in: GitHub Actions when
    ``GITHUB_ACTIONS=true``, else a local build described from git (``source_dir``,
    default the working directory) or, failing that, from the card's ``code``."""
    env = os.environ if env is None else env
    if is_github_actions(env):
        return _github_provenance(card, env)
    return _local_provenance(card, Path(source_dir) if source_dir is not None else Path.cwd())


def _github_provenance(card: ModelCard, env: Mapping[str, str]) -> dict[str, Any]:
    missing = [name for name in _GITHUB_REQUIRED if not env.get(name)]
    if missing:
        raise UsageError(
            f"GITHUB_ACTIONS is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not",
            hint="run inside a GitHub Actions job, or unset GITHUB_ACTIONS for a local provenance",
        )
    server = env.get("GITHUB_SERVER_URL") or "https://github.com"
    repository = env["GITHUB_REPOSITORY"]
    workflow_ref = env["GITHUB_WORKFLOW_REF"]  # owner/repo/.github/workflows/x.yml@refs/heads/main
    workflow_path, _, workflow_git_ref = workflow_ref.partition("@")
    workflow_path = workflow_path.removeprefix(repository + "/")
    git_ref = env.get("GITHUB_REF") or workflow_git_ref
    attempt = env.get("GITHUB_RUN_ATTEMPT") or "1"
    source = {"uri": f"git+{server}/{repository}@{git_ref}" if git_ref else f"git+{server}/{repository}",
              "digest": {"gitCommit": env["GITHUB_SHA"]}}
    internal = {key: env[var] for key, var in (
        ("event_name", "GITHUB_EVENT_NAME"), ("repository_id", "GITHUB_REPOSITORY_ID"),
        ("repository_owner_id", "GITHUB_REPOSITORY_OWNER_ID"), ("runner_environment", "RUNNER_ENVIRONMENT"),
    ) if env.get(var)}
    return {
        "buildDefinition": {
            "buildType": GITHUB_WORKFLOW_BUILD_TYPE,
            "externalParameters": {
                "workflow": {"ref": git_ref, "repository": f"{server}/{repository}", "path": workflow_path},
            },
            "internalParameters": {"github": internal},
            "resolvedDependencies": [source, *materials(card)],
        },
        "runDetails": {
            "builder": {"id": f"{server}/{workflow_ref}"},
            "metadata": {"invocationId": f"{server}/{repository}/actions/runs/{env['GITHUB_RUN_ID']}/attempts/{attempt}"},
        },
    }


def _local_provenance(card: ModelCard, source_dir: Path) -> dict[str, Any]:
    code = detect_code(source_dir) or card.code
    dependencies: list[dict[str, Any]] = []
    external: dict[str, Any] = {}
    if code is not None:
        external["source"] = {k: v for k, v in (
            ("repository", code.repository), ("commit", code.commit), ("dirty", code.dirty)
        ) if v is not None}
        entry: dict[str, Any] = {"uri": f"git+{code.repository}"} if code.repository else {}
        if code.commit and _GIT_COMMIT.match(code.commit):
            entry["digest"] = {"gitCommit": code.commit}
        elif code.commit and "uri" in entry:
            entry["uri"] += f"@{code.commit}"
        if entry:
            dependencies.append(entry)
    return {
        "buildDefinition": {
            "buildType": LOCAL_BUILD_TYPE,
            "externalParameters": external,
            "resolvedDependencies": [*dependencies, *materials(card)],
        },
        "runDetails": {"builder": {"id": LOCAL_BUILDER_ID}},
    }
