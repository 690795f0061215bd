"""Deployment records: where a model runs, since when, and who said so.

    client.deploy("registry/team/sentiment:1.2", environment="prod", target="k8s://eu-1/serving/sentiment",
                  runtime="vllm", key="deployer.key")
    client.retire("registry/team/sentiment:1.1", environment="prod", target="k8s://eu-1/serving/sentiment")
    client.deployments("registry/team/sentiment", policy="policy.yaml").running

A record is an in-toto statement about the model's digest, predicate type
``https://ocimodel.dev/deployment/v1``:

    {"environment": "prod", "target": "k8s://eu-1/serving/sentiment", "endpoint": null,
     "runtime": "vllm", "action": "record", "actor": "alice", "time": "2026-12-06T08:00:00.000000Z"}

signed with a key or keyless and stored as a cosign v3 bundle referrer of the model (as
``attest`` stores attestations), or, with no signer, stored unsigned as an in-toto
statement referrer and shown as unsigned. A target runs one model at a time: a record
of another model at the same environment and target replaces the one before; a retire
of the model running there ends its deployment (docs/audit.md)."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone

from pydantic import BaseModel

from ocimodel.api.common import DEFAULT_TAG, as_reference, open_store
from ocimodel.api.registry import actor
from ocimodel.api.statements import (
    MALFORMED,
    TRUSTED,
    UNSIGNED,
    Referrer,
    model_display_name,
    parse_time,
    reader_threads,
    scan,
    statement_signer,
    tagged,
    write_unsigned,
)
from ocimodel.errors import NotFound, UsageError
from ocimodel.signing.statement import attestation_statement
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.trust.policy import Policy, TrustPolicy, load_policy
from ocimodel.trust.sign import attest_model
from ocimodel.trust.verify import KeylessOptions, check_trusted_root

DEPLOYMENT_PREDICATE = "https://ocimodel.dev/deployment/v1"
ACTIONS = ("record", "retire")

PathLike = str | os.PathLike[str]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TARGET = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s\x00-\x1f\x7f]{1,1000}$")
_ENDPOINT = re.compile(r"^https?://[^\s\x00-\x1f\x7f]{1,1000}$")


class DeployResult(BaseModel):
    reference: str
    digest: str
    environment: str
    target: str
    action: str  # record or retire
    actor: str
    time: str
    record: str  # digest of the record's referrer manifest
    signed: bool
    signer: str | None  # the key or keyless signer; None when unsigned


class DeploymentRecord(BaseModel):
    digest: str  # the model the record is about
    tags: list[str]  # its tags now
    environment: str
    target: str
    endpoint: str | None
    runtime: str | None
    action: str  # record or retire
    actor: str
    time: str  # as the (signed, when signed) statement says
    record: str  # digest of the referrer manifest
    trust: str  # trusted, untrusted, signed (no policy to check), unsigned
    signers: list[str]  # the policy's names for who signed it, when trusted
    identity: str | None  # who signed, as the bundle says (verified only when trusted)
    detail: str | None = None  # why it is untrusted


class Deployment(BaseModel):
    environment: str
    target: str
    digest: str
    tags: list[str]
    endpoint: str | None
    runtime: str | None
    since: str  # the time of the record that put it there
    actor: str
    record: str
    trust: str


class DeploymentsResult(BaseModel):
    repository: str
    policy: bool  # whether the records were checked against a policy; with one, only trusted records count
    running: list[Deployment]  # where each model runs now, by environment and target
    records: list[DeploymentRecord]  # every record found, newest first
    warnings: list[str]


def deploy(
    connection: ConnectionOptions,
    reference: str,
    *,
    environment: str,
    target: str,
    endpoint: str | None = None,
    runtime: str | None = None,
    key: PathLike | None = None,
    password: str | bytes | None = None,
    keyless: bool = False,
    identity_token: str | None = None,
    trust_config: PathLike | None = None,
    staging: bool = False,
) -> DeployResult:
    """Record that the model at ``reference`` now runs at ``target`` in ``environment``.
    Signed with ``key`` (ECDSA P-256 PEM), or keyless (``keyless=True``, or an
    ``identity_token``, ``trust_config`` or ``staging``); unsigned with neither."""
    return _write(connection, reference, "record", environment, target, endpoint, runtime,
                  statement_signer(key, password, keyless, identity_token, trust_config, staging))


def retire(
    connection: ConnectionOptions,
    reference: str,
    *,
    environment: str,
    target: str,
    key: PathLike | None = None,
    password: str | bytes | None = None,
    keyless: bool = False,
    identity_token: str | None = None,
    trust_config: PathLike | None = None,
    staging: bool = False,
) -> DeployResult:
    """Record that the model at ``reference`` no longer runs at ``target`` in
    ``environment``. Refused (NotFound) when no record says it runs there now."""
    return _write(connection, reference, "retire", environment, target, None, None,
                  statement_signer(key, password, keyless, identity_token, trust_config, staging))


def deployments(
    connection: ConnectionOptions,
    repository: str,
    *,
    policy: Policy | PathLike | None = None,
    trusted_root: PathLike | None = None,
    offline: bool = True,
) -> DeploymentsResult:
    """Where each model of ``repository`` runs now and since when, and every deployment
    record found, newest first. With ``policy`` (the verify policy: its signers) each
    record is marked trusted or untrusted, and only trusted records decide what runs."""
    trust = compile_policy(policy)
    options = KeylessOptions(trusted_root=check_trusted_root(trusted_root), offline=offline)
    ref = repository_reference(repository, "deployments")
    with open_store(connection, ref) as store:
        tags = tagged(store, missing_ok=False)
        found = scan(store, sorted(set(tags.values())), trust=trust, keyless=options, workers=reader_threads(connection))
    records, warnings = records_of(found.referrers, tags)
    return DeploymentsResult(
        repository=str(ref), policy=trust is not None, running=running(records, trust is not None),
        records=records, warnings=found.warnings + warnings,
    )


# -- shared with audit --------------------------------------------------------------------


def compile_policy(policy: Policy | PathLike | None) -> TrustPolicy | None:
    if policy is None:
        return None
    return (policy if isinstance(policy, Policy) else load_policy(policy)).compile()


def tags_by_digest(tags: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for tag, digest in sorted(tags.items()):
        out.setdefault(digest, []).append(tag)
    return out


def records_of(referrers: list[Referrer], tags: dict[str, str]) -> tuple[list[DeploymentRecord], list[str]]:
    """The deployment records among ``referrers``, newest first, and a warning for each
    statement of the deployment type whose predicate is not a deployment record."""
    names = tags_by_digest(tags)
    records: list[DeploymentRecord] = []
    warnings: list[str] = []
    for r in referrers:
        if r.trust == MALFORMED and DEPLOYMENT_PREDICATE in r.annotations.values():
            # Said, not dropped: a record that cannot be read still tells someone tried.
            warnings.append(f"deployment record {r.digest} on {r.subject} is not readable: {r.detail}")
            continue
        if r.statement is None or r.statement.predicate_type != DEPLOYMENT_PREDICATE:
            continue
        fields = _predicate(r.statement.predicate)
        if isinstance(fields, str):
            warnings.append(f"deployment record {r.digest} on {r.subject} is not readable: {fields}")
            continue
        records.append(DeploymentRecord(
            digest=r.subject, tags=names.get(r.subject, []), record=r.digest, trust=r.trust or UNSIGNED,
            signers=list(r.signers), identity=r.identity, detail=r.detail, **fields,
        ))
    records.sort(key=_newest_first)
    return records, warnings


def running(records: list[DeploymentRecord], checked: bool) -> list[Deployment]:
    """Where each model runs now: per environment and target, the model of the latest
    record, unless a later retire of that model ended it. With a policy (``checked``),
    only trusted records count; without, every record does (and says what it is)."""
    counted = [r for r in records if r.trust == TRUSTED or not checked]
    now: dict[tuple[str, str], DeploymentRecord | None] = {}
    for record in sorted(counted, key=_newest_first, reverse=True):  # oldest first
        key = (record.environment, record.target)
        if record.action == "record":
            now[key] = record
        elif now.get(key) is not None and now[key].digest == record.digest:
            now[key] = None
    return [
        Deployment(environment=r.environment, target=r.target, digest=r.digest, tags=r.tags, endpoint=r.endpoint,
                   runtime=r.runtime, since=r.time, actor=r.actor, record=r.record, trust=r.trust)
        for (_, _), r in sorted(now.items()) if r is not None
    ]


# -- helpers ----------------------------------------------------------------------------


def _newest_first(record: DeploymentRecord) -> tuple[float, str]:
    when = parse_time(record.time)
    return (-(when.timestamp() if when else 0.0), record.record)


def _predicate(predicate: object) -> dict | str:
    """The fields of a deployment predicate, or what is wrong with it."""
    if not isinstance(predicate, dict):
        return "the predicate is not an object"
    out: dict[str, str | None] = {}
    for name in ("environment", "target", "action", "actor", "time"):
        value = predicate.get(name)
        if not isinstance(value, str) or not value or len(value) > 2000:
            return f"{name} is missing or not a string"
        out[name] = value
    for name in ("endpoint", "runtime"):
        value = predicate.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 2000):
            return f"{name} is not a string"
        out[name] = value
    if out["action"] not in ACTIONS:
        return f"action {str(out['action'])[:40]!r} is not record or retire"
    if parse_time(out["time"]) is None:
        return f"time {str(out['time'])[:40]!r} is not an RFC 3339 time"
    return out


def _check(environment: str, target: str, endpoint: str | None, runtime: str | None) -> None:
    if not _NAME.match(environment or ""):
        raise UsageError(f"environment {environment[:80]!r} is not a name", hint="e.g. prod, staging, eu-prod")
    if not _TARGET.match(target or ""):
        raise UsageError(f"target {target[:80]!r} is not a URI", hint="e.g. k8s://cluster/namespace/name")
    if endpoint is not None and not _ENDPOINT.match(endpoint):
        raise UsageError(f"endpoint {endpoint[:80]!r} is not an http(s) URL")
    if runtime is not None and not _NAME.match(runtime):
        raise UsageError(f"runtime {runtime[:80]!r} is not a name", hint="e.g. vllm, triton, kserve")


def repository_reference(repository: str, verb: str):
    ref = as_reference(repository)
    if ref.tag is not None or ref.digest is not None:
        raise UsageError(f"{verb} takes the repository, not a tag or digest: {repository}",
                         hint=f"e.g. ocimodel {verb} registry/team/model")
    return ref


def _write(connection, reference, action, environment, target, endpoint, runtime, signer) -> DeployResult:
    _check(environment, target, endpoint, runtime)
    ref = as_reference(reference)
    with open_store(connection, ref, for_write=True) as store:
        root = store.resolve(ref.reference or DEFAULT_TAG)
        if action == "retire":
            _check_running(store, root.digest, environment, target)
        predicate = {
            "environment": environment, "target": target, "endpoint": endpoint, "runtime": runtime,
            "action": action, "actor": actor(),
            "time": datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        }
        statement = attestation_statement(root.digest, DEPLOYMENT_PREDICATE, predicate)
        if signer is None:
            written = write_unsigned(store, root, statement)
        else:
            name = model_display_name(store, root, ref)
            written = attest_model(store, root, statement, signer, name=name).referrer
    return DeployResult(
        reference=str(ref), digest=root.digest, environment=environment, target=target, action=action,
        actor=predicate["actor"], time=predicate["time"], record=written.digest, signed=signer is not None,
        signer=signer.description if signer is not None else None,
    )


def _check_running(store, digest: str, environment: str, target: str) -> None:
    """A retire must end something: the model must run there by the records (any of
    them: whoever retires is not the judge of whose records count)."""
    found = scan(store, [digest])
    records, _ = records_of(found.referrers, {})
    if not any(d.digest == digest and (d.environment, d.target) == (environment, target) for d in running(records, False)):
        raise NotFound(
            f"no deployment record says {digest} runs at {target} in {environment}",
            hint="`ocimodel deployments REPO` lists where each version runs",
        )


__all__ = [
    "DEPLOYMENT_PREDICATE", "Deployment", "DeploymentRecord", "DeploymentsResult", "DeployResult",
    "deploy", "deployments", "retire",
]
