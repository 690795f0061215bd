"""One audit timeline of a repository: everything the registry holds about it, newest first.

    result = client.audit("registry/team/sentiment", policy="policy.yaml", since="2026-12-01")
    for entry in result.entries:
        print(entry.time, entry.kind, entry.tags, entry.summary, entry.trust)

The timeline is made by record readers (:data:`READERS`), each turning what was read
from the registry into entries:

- versions pushed: each tagged model, with its created time and git revision when its
  card or annotations record them (nothing about who pushed is written into a model:
  pushes stay reproducible, so "who pushed" is answered by signatures, if anything);
- promotions and rollbacks, and moves of an alias that no record explains: from
  ``history`` (api/registry.py), per alias;
- deployments and retirements (api/deployments.py);
- signatures and attestations: signer identity, and the time of the log entry (keyless)
  or else the referrer's created annotation, which is unsigned and marked as such;
- any other referrer (an evaluation or a scan attached with ``attach``, a record of a
  kind this version does not know): listed by artifact type, never hidden.

Evaluations and scans get their own reader when their record formats exist: a function
``(AuditContext) -> list[AuditEntry]`` appended to :data:`READERS`, which claims its
referrers by digest so that the catch-all reader leaves them alone.

With ``policy`` (the verify policy: its signers) every signed entry is marked trusted or
untrusted, and a pushed version is trusted when a signature of it by a policy signer
verifies (docs/audit.md, "Trust marks")."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel

from ocimodel.api import registry
from ocimodel.api.common import open_store
from ocimodel.api.deployments import (
    compile_policy,
    records_of,
    repository_reference,
    tags_by_digest,
)
from ocimodel.api.statements import (
    MALFORMED,
    SIGNED,
    TRUSTED,
    UNSIGNED,
    UNTRUSTED,
    Referrer,
    parse_time,
    reader_threads,
    scan,
    tagged,
)
from ocimodel.errors import NotFound, OcimodelError, UsageError
from ocimodel.metadata.encoding import read_card
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Manifest, parse_manifest
from ocimodel.oci.reference import Reference
from ocimodel.signing.files_statement import MODEL_SIGNING_PREDICATE
from ocimodel.signing.statement import COSIGN_SIGN_PREDICATE
from ocimodel.threads import map_threads, run_all
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.trust.policy import Policy
from ocimodel.trust.verify import KeylessOptions, check_trusted_root
from ocimodel.versiontags import is_version_tag

PathLike = str | os.PathLike[str]
# Promotion records are read through `history`, which orders them and checks them against
# the alias's real moves; the timeline does not read them a second time as referrers.
PROMOTION_PREDICATE = "https://ocimodel.dev/promotion/v1"
# How sure the time of an entry is: said in a signed statement, by a transparency log,
# or by an unsigned annotation anyone who can push could have written.
SIGNED_TIME, LOG_TIME, ANNOTATION_TIME = "statement", "log", "annotation"


class AuditEntry(BaseModel):
    time: str | None  # RFC 3339; None: nothing records when
    time_source: str | None  # statement, log, annotation (see docs/audit.md)
    kind: str  # push, promote, rollback, tag-move, deploy, retire, signature, file-signature, attestation, referrer
    digest: str  # the model the entry is about
    tags: list[str]  # its tags now
    summary: str  # one line for people
    actor: str | None  # who, as the record says (the signer's identity for bundles)
    trust: str  # trusted, untrusted, signed, unsigned, unrecorded, malformed
    signers: list[str]  # the policy's names for who signed it, when trusted
    record: str | None  # the referrer manifest holding the record, if any
    predicate_type: str | None = None
    details: dict[str, str | None] = {}


class AuditResult(BaseModel):
    repository: str
    policy: bool  # whether entries were checked against a policy
    since: str | None
    entries: list[AuditEntry]  # newest first; entries whose time is unknown last
    warnings: list[str]


@dataclass
class AuditContext:
    """What the readers share: read once, in parallel, before any reader runs."""

    connection: ConnectionOptions
    repository: Reference
    tags: dict[str, str]  # tag -> digest
    names: dict[str, list[str]]  # digest -> tags
    manifests: dict[str, Manifest]
    referrers: list[Referrer]
    checked: bool
    # Read by `history`, beside the referrers: (entries, warnings).
    promotions: tuple[list[AuditEntry], list[str]] = field(default_factory=lambda: ([], []))
    claimed: set[str] = field(default_factory=set)  # referrer digests a reader has turned into entries
    warnings: list[str] = field(default_factory=list)


Reader = Callable[[AuditContext], list[AuditEntry]]


def audit(
    connection: ConnectionOptions,
    repository: str,
    *,
    since: str | datetime | None = None,
    policy: Policy | PathLike | None = None,
    trusted_root: PathLike | None = None,
    offline: bool = True,
) -> AuditResult:
    """Everything the registry holds about ``repository``, newest first: versions pushed,
    promotions and rollbacks, deployments, signatures, attestations and other referrers,
    each marked trusted / untrusted / signed / unsigned (see the module docstring).
    ``since``: an RFC 3339 time or date, or a span back from now (``7d``, ``12h``,
    ``30m``); entries older than it, and those whose time is unknown, are left out."""
    cutoff = _since(since)
    trust = compile_policy(policy)
    keyless = KeylessOptions(trusted_root=check_trusted_root(trusted_root), offline=offline)
    ref = repository_reference(repository, "audit")
    with open_store(connection, ref) as store:
        tags = tagged(store, missing_ok=False)
        digests = sorted(set(tags.values()))
        names = tags_by_digest(tags)

        def read_referrers():
            manifests = _manifests(store, digests)
            return manifests, scan(store, digests, trust=trust, keyless=keyless, manifests=manifests,
                                   skip=(mt.PROMOTION_ARTIFACT,), workers=reader_threads(connection))

        def read_history():
            aliases = {t for t in tags if not is_version_tag(t)}
            return promotion_entries(connection, str(ref), aliases, names,
                                     policy=policy, trusted_root=trusted_root, offline=offline)

        # History reads the promotion records on its own connection: both at once.
        (manifests, found), promotions = run_all([read_referrers, read_history], workers=2)
    context = AuditContext(
        connection=connection, repository=ref, tags=tags, names=names, manifests=manifests,
        referrers=found.referrers, checked=trust is not None, promotions=promotions, warnings=list(found.warnings),
    )
    entries = [entry for reader in READERS for entry in reader(context)]
    entries.sort(key=_newest_first)
    if cutoff is not None:
        untimed = sum(1 for e in entries if parse_time(e.time) is None)
        entries = [e for e in entries if (parse_time(e.time) or _NEVER) >= cutoff]
        if untimed:
            context.warnings.append(f"{untimed} entries record no time and are left out by --since")
    return AuditResult(
        repository=str(ref), policy=trust is not None, since=cutoff.isoformat().replace("+00:00", "Z") if cutoff else None,
        entries=entries, warnings=context.warnings,
    )


# -- the readers ------------------------------------------------------------------------


def read_versions(context: AuditContext) -> list[AuditEntry]:
    """One entry per tagged model: when it was made and from which revision, as its card
    and annotations say (signed with the manifest when the model is signed)."""
    signatures: dict[str, list[Referrer]] = {}
    for r in context.referrers:
        if r.statement is not None and r.statement.predicate_type == COSIGN_SIGN_PREDICATE:
            signatures.setdefault(r.subject, []).append(r)
    entries = []
    for digest, tags in context.names.items():
        manifest = context.manifests.get(digest)
        annotations = (manifest.annotations or {}) if manifest is not None else {}
        card = read_card(None, annotations).card if manifest is not None else None
        created = (card.created.isoformat().replace("+00:00", "Z") if card is not None and card.created else None) \
            or annotations.get(mt.ANNOTATION_CREATED)
        revision = (card.code.commit if card is not None and card.code is not None else None) \
            or annotations.get(mt.ANNOTATION_REVISION)
        versions = [t for t in tags if is_version_tag(t)]
        signed = signatures.get(digest, [])
        trusted = sorted({s for r in signed if r.trust == TRUSTED for s in r.signers})
        if trusted:
            trust = TRUSTED
        elif not signed:
            trust = UNSIGNED
        else:
            trust = UNTRUSTED if context.checked else SIGNED
        title = annotations.get(mt.ANNOTATION_TITLE)
        summary = f"pushed {', '.join(versions) or ', '.join(tags)}" + (f" ({title})" if title else "")
        if revision:
            summary += f" from revision {revision}"
        entries.append(AuditEntry(
            time=created, time_source=ANNOTATION_TIME if created else None, kind="push", digest=digest, tags=tags,
            summary=summary, actor=None, trust=trust, signers=trusted, record=None,
            details={"revision": revision, "title": title, "created": created},
        ))
    return entries


def read_promotions(context: AuditContext) -> list[AuditEntry]:
    """Promotions and rollbacks of every alias, and moves no record explains."""
    entries, warnings = context.promotions
    context.warnings += warnings
    return entries


def promotion_entries(
    connection: ConnectionOptions, repository: str, aliases: set[str], names: dict[str, list[str]], *,
    policy: Policy | PathLike | None = None, trusted_root: PathLike | None = None, offline: bool = True,
) -> tuple[list[AuditEntry], list[str]]:
    """THE ADAPTER to the promotion records (one place to change when their format does):
    ``registry.history`` of each alias, each event as an entry. ``trust`` is the event's
    own mark when history gives one (signed promotion records), else "unsigned" for a
    recorded move and "unrecorded" for a move no record explains."""

    def one(alias: str):
        try:
            found = registry.history(connection, repository, alias, policy=policy, trusted_root=trusted_root,
                                     offline=offline)
            return alias, found, None
        except NotFound:
            return alias, None, None
        except OcimodelError as exc:
            return alias, None, exc.message

    entries: list[AuditEntry] = []
    warnings: list[str] = []
    for alias, result, problem in map_threads(one, sorted(aliases), workers=4):
        if problem:
            warnings.append(f"history of {alias}: {problem}")
        if result is None:
            continue
        warnings += [f"{alias}: {w}" for w in result.warnings]
        for event in result.events:
            recorded = event.recorded
            kind = event.action if recorded and event.action in ("promote", "rollback") else "tag-move"
            trust = event.trust or (UNSIGNED if recorded else "unrecorded")
            target = event.digest or "nothing"
            summary = f"{'rolled back' if kind == 'rollback' else 'moved' if kind == 'tag-move' else 'promoted'} " \
                      f"{alias} -> {_short(target)}" + (f" from {_short(event.from_digest)}" if event.from_digest else "")
            if not recorded:
                summary += f" ({event.action}: no record)"
            if event.reason:
                summary += f": {event.reason}"
            if event.flagged:
                summary += " [flagged: no trusted record explains this move]"
            if event.conflicts:
                summary += " [conflict: " + "; ".join(event.conflicts) + "]"
            entries.append(AuditEntry(
                time=event.time, time_source=SIGNED_TIME if trust == TRUSTED else ANNOTATION_TIME if event.time else None,
                kind=kind, digest=event.digest or "", tags=names.get(event.digest or "", []), summary=summary,
                actor=event.actor, trust=trust, signers=list(event.signers),
                record=event.record, predicate_type=PROMOTION_PREDICATE if recorded else None,
                details={"alias": alias, "from": event.from_digest, "to": event.digest, "reason": event.reason},
            ))
    return entries, warnings


def read_deployments(context: AuditContext) -> list[AuditEntry]:
    records, warnings = records_of(context.referrers, context.tags)
    context.warnings += warnings
    entries = []
    for r in records:
        context.claimed.add(r.record)
        verb = "deployed to" if r.action == "record" else "retired from"
        extra = ", ".join(x for x in (r.runtime, r.endpoint) if x)
        entries.append(AuditEntry(
            time=r.time, time_source=SIGNED_TIME if r.trust != UNSIGNED else ANNOTATION_TIME,
            kind="deploy" if r.action == "record" else "retire", digest=r.digest, tags=r.tags,
            summary=f"{verb} {r.environment} {r.target}" + (f" ({extra})" if extra else ""),
            actor=r.actor, trust=r.trust, signers=r.signers, record=r.record,
            predicate_type="https://ocimodel.dev/deployment/v1",
            details={"environment": r.environment, "target": r.target, "endpoint": r.endpoint,
                     "runtime": r.runtime, "action": r.action, "identity": r.identity, "detail": r.detail},
        ))
    return entries


def read_bundles(context: AuditContext) -> list[AuditEntry]:
    """Signatures and attestations (every bundle and statement not claimed by a reader
    before this one), and malformed bundles, said as such."""
    entries = []
    for r in context.referrers:
        if r.trust is None or r.digest in context.claimed:
            continue
        predicate = r.statement.predicate_type if r.statement is not None else r.annotations.get(
            mt.ANNOTATION_BUNDLE_PREDICATE_TYPE)
        if predicate == PROMOTION_PREDICATE:
            continue  # read through history
        context.claimed.add(r.digest)
        kind = {COSIGN_SIGN_PREDICATE: "signature", MODEL_SIGNING_PREDICATE: "file-signature"}.get(predicate or "", "attestation")
        if r.trust == MALFORMED:
            summary = f"unreadable {kind} ({predicate or 'no predicate type'}): {r.detail}"
        elif kind == "attestation":
            summary = f"attested {predicate}"
        else:
            summary = "signed the manifest" if kind == "signature" else "signed the files"
        if r.trust == UNTRUSTED and r.detail:
            summary += f" [{r.detail}]"
        entries.append(AuditEntry(
            time=r.logged or r.created, time_source=LOG_TIME if r.logged else ANNOTATION_TIME if r.created else None,
            kind=kind, digest=r.subject, tags=context.names.get(r.subject, []), summary=summary,
            actor=", ".join(r.signers) if r.signers else r.identity, trust=r.trust, signers=list(r.signers),
            record=r.digest, predicate_type=predicate, details={"identity": r.identity, "detail": r.detail},
        ))
    return entries


def read_other_referrers(context: AuditContext) -> list[AuditEntry]:
    """Every referrer no reader claimed (evaluations, scans, files attached with
    ``attach``): listed by artifact type, its time the unsigned created annotation."""
    entries = []
    for r in context.referrers:
        if r.digest in context.claimed or r.trust is not None:
            continue
        entries.append(AuditEntry(
            time=r.created, time_source=ANNOTATION_TIME if r.created else None, kind="referrer", digest=r.subject,
            tags=context.names.get(r.subject, []), summary=f"attached {r.artifact_type or 'an artifact'}",
            actor=None, trust=UNSIGNED, signers=[], record=r.digest, predicate_type=None,
            details={"artifact_type": r.artifact_type},
        ))
    return entries


# The readers, in the order they run. Evaluation and scan readers go before the catch-all
# (read_other_referrers), which lists whatever no reader claimed.
READERS: list[Reader] = [read_versions, read_promotions, read_deployments, read_bundles, read_other_referrers]


# -- helpers ----------------------------------------------------------------------------

_NEVER = datetime.min.replace(tzinfo=timezone.utc)
_SPAN = re.compile(r"^(\d{1,6})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _since(value: str | datetime | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise UsageError("since must be an aware datetime (with a time zone)")
        return value.astimezone(timezone.utc)
    span = _SPAN.match(value.strip())
    if span:
        return datetime.now(timezone.utc) - timedelta(**{_UNITS[span.group(2)]: int(span.group(1))})
    when = parse_time(value)
    if when is None:
        raise UsageError(f"--since {value[:60]!r} is not a time",
                         hint="an RFC 3339 time (2026-12-06T08:00:00Z), a date (2026-12-06) or a span (7d, 12h, 30m)")
    return when


_KIND_ORDER = {k: i for i, k in enumerate(
    ("retire", "deploy", "rollback", "promote", "tag-move", "attestation", "file-signature", "signature", "referrer", "push"))}


def _newest_first(entry: AuditEntry) -> tuple[int, float, int, str]:
    when = parse_time(entry.time)
    # Unknown times last; at one instant, what follows a push is listed above it.
    return (1 if when is None else 0, -(when.timestamp() if when else 0.0), _KIND_ORDER.get(entry.kind, 50),
            entry.record or entry.digest)


def _manifests(store, digests: list[str]) -> dict[str, Manifest]:
    def read(digest: str) -> tuple[str, Any]:
        try:
            descriptor = store.resolve(digest)
            return digest, parse_manifest(store.fetch_manifest(descriptor), descriptor.media_type)
        except OcimodelError:
            return digest, None

    return {d: m for d, m in map_threads(read, digests) if isinstance(m, Manifest)}


def _short(digest: str | None) -> str:
    return (digest or "nothing")[:19]
