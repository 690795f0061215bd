"""The model registry: versions, promote, rollback, history, lineage.

Versions are tags that look like versions (``1.2``, ``v3``, ``2024-05-01``); aliases are
all other tags (``production``, ``champion``, ``latest``) and move. Moving an alias with
``promote`` or ``rollback`` first writes a promotion record (a referrer of the model it
now names: alias, from, to, actor, time, reason; signed when a key or identity is given,
see ``promotions``), then moves the tag. ``history`` reads the records back and checks
them against each other and against where the alias points now, so a tag moved by
another tool shows up as a gap instead of vanishing, and no record is ever dropped. With
a policy, promote and rollback pass the alias's gate first, and history and rollback
follow trusted records only (docs/promotion-records.md)."""

from __future__ import annotations

import getpass
import os
import socket
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from ocimodel import settings
from ocimodel.api.common import DEFAULT_TAG, as_reference, bound, open_store
from ocimodel.api.lineage import LineageGraph, walk_lineage
from ocimodel.api.promotions import (
    MAX_RECORDS,
    Conflict,
    GateDecision,
    Ordered,
    PromotionDenied,
    TrustContext,
    gate,
    order,
    policy_digest,
    record_at,
    records_on,
    sign_record,
    signers_of_bundle,
    undo_stack,
    write_record,
)
from ocimodel.api.trust import PathLike, compile_policy, record_signer
from ocimodel.errors import NotFound, OcimodelError, UsageError
from ocimodel.metadata.card import metric_value
from ocimodel.metadata.encoding import read_card
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Manifest, parse_manifest
from ocimodel.oci.reference import validate_tag
from ocimodel.signing.errors import Reason
from ocimodel.signing.keys import key_hint
from ocimodel.targets.referrers import is_fallback_tag
from ocimodel.targets.remote import RemoteRepository
from ocimodel.threads import map_threads
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.trust.policy import Policy
from ocimodel.trust.sign import KeySigner
from ocimodel.trust.verify import KeylessOptions, check_trusted_root
from ocimodel.versiontags import is_version_tag, version_key

MAX_VERSIONS = 2000  # tags read by `versions` and `history`
MAX_REASON = 1000


class VersionInfo(BaseModel):
    tag: str
    digest: str
    created: str | None
    size: int  # bytes of the files
    metrics: dict[str, float | int]
    aliases: list[str]  # alias tags pointing at the same manifest


class VersionsResult(BaseModel):
    repository: str
    versions: list[VersionInfo]
    aliases: dict[str, str]  # alias -> digest (also aliases pointing at no listed version)


class PromoteResult(BaseModel):
    repository: str
    alias: str
    from_digest: str | None
    to_digest: str
    record: str
    action: str
    signed: bool = False  # the record is a signed bundle (else an unsigned annotation record)
    signer: str | None = None  # how it was signed: "key 1a2b...", "keyless (Sigstore)"
    gate: GateDecision | None = None  # the policy's decision, when --policy was given


class HistoryEvent(BaseModel):
    time: str | None
    digest: str | None  # None: the alias did not exist
    from_digest: str | None
    actor: str | None
    reason: str | None
    # promote or rollback (a record); "moved outside ocimodel" (no record explains the
    # move); "moved without a trusted record" (with a policy: only records it does not
    # trust explain it); "deleted outside ocimodel"
    action: str
    recorded: bool  # a record, not a move inferred from the tag
    record: str | None = None  # the record's digest
    previous: str | None = None  # the record it names as its predecessor
    # with a policy: trusted or untrusted; without: unsigned or signed (not
    # checked); None for a move no record explains
    trust: str | None = None
    signed: bool = False  # a signed bundle (else an unsigned annotation record)
    signers: list[str] = []  # the policy's names of who signed it
    trust_detail: str | None = None  # why it is untrusted
    gate: GateDecision | None = None  # the policy decision it carries
    # False: a record the timeline does not follow (untrusted or unsigned under a policy,
    # or one that lost a race to another record following the same one)
    in_timeline: bool = True
    flagged: bool = False  # a move of the tag that no record the timeline follows explains
    conflicts: list[str] = []  # the conflicts this record is part of, each "kind: message"


class HistoryResult(BaseModel):
    repository: str
    alias: str
    current: str | None
    events: list[HistoryEvent]  # every record found, parents before children, and the unexplained moves
    warnings: list[str]
    policy: str | None = None  # digest of the policy the records were judged by
    conflicts: list[Conflict] = []


def versions(
    connection: ConnectionOptions,
    repository: str,
) -> VersionsResult:
    """Every version of a repository in version order (1.0-rc.9 < 1.0-rc.10 < 1.0 < 1.10,
    versiontags.version_key), with its digest, creation time, size, metrics and the
    aliases that point at it."""
    ref = as_reference(repository)
    with open_store(connection, ref) as target:
        resolved = _resolve_tags(target, missing_ok=False)  # a typo must not look like an empty repository
        version_rows = []
        models = _read_models(target, {d for t, d in resolved.items() if is_version_tag(t)})
    aliases = {t: d for t, d in resolved.items() if not is_version_tag(t)}
    for tag, digest in resolved.items():
        if not is_version_tag(tag):
            continue
        manifest, card = models.get(digest, (None, None))
        version_rows.append(VersionInfo(
            tag=tag,
            digest=digest,
            created=(manifest.annotations or {}).get(mt.ANNOTATION_CREATED) if manifest else None,
            size=sum(layer.size for layer in manifest.layers) if manifest else 0,
            metrics={k: metric_value(v) for k, v in (card.metrics or {}).items()} if card else {},
            aliases=sorted(a for a, d in aliases.items() if d == digest),
        ))
    version_rows.sort(key=lambda v: version_key(v.tag))
    return VersionsResult(repository=str(ref.with_tag(None).with_digest(None)), versions=version_rows, aliases=aliases)


def promote(
    connection: ConnectionOptions,
    reference: str,
    alias: str,
    *,
    reason: str | None = None,
    policy: Policy | PathLike | None = None,
    key: PathLike | None = None,
    password: str | bytes | None = None,
    identity_token: str | None = None,
    trust_config: PathLike | None = None,
    staging: bool = False,
    trusted_root: PathLike | None = None,
    offline: bool = True,
) -> PromoteResult:
    """Point ``alias`` (e.g. ``production``) at the model ``reference`` names, recording
    who moved it, from where, when and why.

    With ``key`` (or the keyless options, as for :func:`ocimodel.sign`) the record is a
    signed in-toto statement in a Sigstore bundle; without, an unsigned record. With
    ``policy`` the model is verified first against the alias's gate (its ``require``; the
    whole policy when the alias has no rule), and the signer must be one the policy lists
    (for an alias with ``promoters``, one of those): otherwise :class:`PromotionDenied`
    is raised and nothing moves."""
    _check_alias(alias)
    signer = record_signer(key, password, identity_token, trust_config, staging)
    context = _context(policy, trusted_root, offline, connection)
    _check_signer(context, alias, signer)
    ref = as_reference(reference)
    with open_store(connection, ref, for_write=True) as target:
        model = target.resolve(ref.reference or DEFAULT_TAG)
        current = _current(target, alias)
        ordered, _ = _records(target, alias, current.digest if current else None, context)
        previous = ordered.chain[-1].record if ordered.chain else None
        return _move(target, ref, alias, current, model, reason, "promote", previous=previous, signer=signer, context=context)


def rollback(
    connection: ConnectionOptions,
    repository: str,
    alias: str,
    *,
    reason: str | None = None,
    policy: Policy | PathLike | None = None,
    key: PathLike | None = None,
    password: str | bytes | None = None,
    identity_token: str | None = None,
    trust_config: PathLike | None = None,
    staging: bool = False,
    trusted_root: PathLike | None = None,
    offline: bool = True,
) -> PromoteResult:
    """Undo the last promotion of ``alias`` that is not undone yet: the alias goes back to
    the version it held before it (a second rollback goes one step further back), recorded
    as a rollback. Refused when the alias was moved by something that left no record.

    With ``policy`` only trusted records count: when the alias was moved by anything no
    trusted record explains (a plain re-tag, a forged record), it goes back to the last
    state a trusted record put it in; never to a model only an untrusted record names.
    The target is verified against the alias's gate first. Signing as for :func:`promote`."""
    _check_alias(alias)
    ref = as_reference(repository)
    if ref.tag is not None or ref.digest is not None:
        raise UsageError(f"rollback takes the repository, not a tag or digest: {repository}", hint="e.g. ocimodel rollback registry/team/model --alias production")
    signer = record_signer(key, password, identity_token, trust_config, staging)
    context = _context(policy, trusted_root, offline, connection)
    _check_signer(context, alias, signer)
    trusted = "trusted " if context.trust is not None else ""
    with open_store(connection, ref, for_write=True) as target:
        current = _current(target, alias)
        if current is None:
            raise NotFound(f"{ref}:{alias} does not exist: nothing to roll back")
        ordered, _ = _records(target, alias, current.digest, context)
        chain = ordered.chain
        explain = f"`ocimodel history {ref} --alias {alias}` shows what is known; promote an explicit version instead"
        if not chain:
            raise NotFound(f"no {trusted}promotion record says where {alias} was before {current.digest}", hint=explain)
        if chain[-1].to_digest != current.digest:
            if context.trust is None:
                raise NotFound(
                    f"{alias} was moved to {current.digest} without a promotion record: no record says what to roll back to",
                    hint=explain,
                )
            # Moved by something no trusted record explains: back to the last trusted state.
            back_to = chain[-1].to_digest
        else:
            undone = undo_stack(chain)
            if not undone:
                raise NotFound(f"every {trusted}promotion of {alias} is rolled back already: nothing to roll back to", hint=explain)
            back_to = undone[-2].to_digest if len(undone) >= 2 else undone[-1].from_digest
            if back_to is None:
                raise NotFound(f"{alias} held nothing before {current.digest}: nothing to roll back to")
        target_descriptor = target.resolve(back_to)
        return _move(target, ref, alias, current, target_descriptor, reason, "rollback", previous=chain[-1].record,
                     signer=signer, context=context)


def history(
    connection: ConnectionOptions,
    repository: str,
    alias: str,
    *,
    policy: Policy | PathLike | None = None,
    trusted_root: PathLike | None = None,
    offline: bool = True,
) -> HistoryResult:
    """Which model held ``alias`` when, who moved it and why, oldest first. Records are
    ordered by the chain each one names (the record it follows), not by clocks; moves made
    without a record (another tool re-tagging) are listed and flagged. Every record found
    is listed, those in conflict (two following the same record, one that does not
    continue where its predecessor left the alias) with the conflict named.

    With ``policy`` each record is trusted, untrusted or unsigned, and the timeline
    follows trusted records only: a move only untrusted records explain is flagged."""
    _check_alias(alias)
    context = _context(policy, trusted_root, offline, connection)
    ref = as_reference(repository)
    with open_store(connection, ref) as target:
        current = _current(target, alias)
        now = current.digest if current else None
        ordered, warnings = _records(target, alias, now, context)
    if current is None and not ordered.records:
        raise NotFound(
            f"{ref}:{alias} does not exist and no promotion record on a tagged model names it",
            hint=f"`ocimodel versions {ref}` lists the tags",
        )
    trusted = "trusted " if context.trust is not None else ""
    in_chain = {r.record for r in ordered.chain}

    def unexplained(held: str | None, to: str | None, before: str | None) -> HistoryEvent:
        # Records the timeline does not follow that put the alias there (from wherever).
        others = [r for r in ordered.records if r.record not in in_chain and r.to_digest == to and to is not None]
        if others:
            action = "moved without a trusted record" if context.trust is not None else "moved by a conflicting record"
        else:
            action = "moved outside ocimodel" if to else "deleted outside ocimodel"
        by = f" (only {', '.join(f'{r.trust} record {r.record}' for r in others)} claims it)" if others else ""
        if before is None:
            warnings.append(f"{alias} now points at {to or 'nothing'}, which no {trusted}promotion record explains{by}")
        else:
            warnings.append(f"{alias} moved to {to or 'nothing'} without a {trusted}record before {before}{by}")
        return HistoryEvent(time=None, digest=to, from_digest=held, actor=None, reason=None, action=action,
                            recorded=False, flagged=True)

    gaps: dict[str, HistoryEvent] = {}
    held: str | None = None
    for record in ordered.chain:
        if record.from_digest != held:
            gaps[record.record] = unexplained(held, record.from_digest, record.time)
        held = record.to_digest
    events: list[HistoryEvent] = []
    for record in ordered.records:
        if record.record in gaps:
            events.append(gaps[record.record])
        events.append(HistoryEvent(
            time=record.time, digest=record.to_digest, from_digest=record.from_digest, actor=record.actor,
            reason=record.reason, action=record.action, recorded=True, record=record.record,
            previous=record.previous, trust=record.trust, signed=record.signed, signers=record.signers, trust_detail=record.trust_detail,
            gate=record.gate, in_timeline=record.record in in_chain, conflicts=ordered.by_record.get(record.record, []),
        ))
    if now != held:
        events.append(unexplained(held, now, None))
    return HistoryResult(
        repository=str(ref.with_tag(None).with_digest(None)), alias=alias, current=now, events=events,
        warnings=warnings, policy=policy_digest(context.trust) if context.trust else None, conflicts=ordered.conflicts,
    )


def lineage(
    connection: ConnectionOptions,
    reference: str,
    *,
    up: bool = True,
    down: bool = True,
    depth: int = 4,
) -> LineageGraph:
    """The models ``reference`` was derived from (up) and those derived from it (down)."""
    ref = as_reference(reference)
    return walk_lineage(str(ref), bound(connection, ref), up=up, down=down, depth=depth)


# -- helpers ----------------------------------------------------------------------------


def actor() -> str:
    """Who is moving an alias: OCIMODEL_ACTOR, else the CI's user, else user@host."""
    actor = settings.ACTOR.text()
    if actor:
        return actor[:200]
    if os.environ.get("GITHUB_ACTOR"):
        run = os.environ.get("GITHUB_RUN_ID")
        return f"{os.environ['GITHUB_ACTOR']} (GitHub Actions{' run ' + run if run else ''})"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _check_alias(alias: str) -> None:
    validate_tag(alias)
    if is_version_tag(alias):
        raise UsageError(
            f"{alias!r} looks like a version; aliases are names such as production or champion",
            hint="versions are immutable: push a new version instead of moving one",
        )
    if alias.startswith(("sha256-", "sha512-")):
        raise UsageError(f"{alias!r} is a referrers index tag, not an alias")


def _current(target, alias: str):
    try:
        return target.resolve(alias)
    except NotFound:
        return None


def _context(policy, trusted_root, offline: bool, connection: ConnectionOptions | None = None) -> TrustContext:
    if policy is None:
        return TrustContext()
    return TrustContext(trust=compile_policy(policy),
                        keyless=KeylessOptions(trusted_root=check_trusted_root(trusted_root), offline=offline),
                        connection=connection)


def _check_signer(context: TrustContext, alias: str, signer) -> None:
    """With a policy, a key the policy does not list (for an alias with promoters: one of
    them) is refused before anything is read: its record would not be trusted."""
    if context.trust is None:
        return
    promoters = context.promoters(alias)
    if signer is None:
        if promoters:
            raise PromotionDenied(
                Reason.UNSIGNED,
                f"the policy lets only {', '.join(promoters)} move {alias}, and this record would be unsigned",
                hint="sign the record with a promoter's key (--key) or identity; nothing was moved",
            )
        return
    if isinstance(signer, KeySigner):
        hint = key_hint(signer.private_key)
        names = {k.name for k in context.trust.keys.values() if k.hint == hint}
        _check_names(names, promoters, alias, f"key {hint[:16]}")


def _check_names(names: set[str], promoters: list[str] | None, alias: str, what: str) -> None:
    if not names:
        raise PromotionDenied(
            Reason.UNTRUSTED_SIGNATURE, f"the policy lists no signer with the {what}: its record of {alias} would be untrusted",
            hint="sign with a key the policy's signers list; nothing was moved",
        )
    if promoters is not None and not names & set(promoters):
        raise PromotionDenied(
            Reason.UNTRUSTED_SIGNATURE,
            f"{', '.join(sorted(names))} may not move {alias}: the policy's promoters of {alias} are {', '.join(promoters)}",
            hint="sign with a promoter's key; nothing was moved",
        )


def _move(target, ref, alias: str, current, model, reason: str | None, action: str, *, previous: str | None,
          signer, context: TrustContext) -> PromoteResult:
    if reason is not None and len(reason) > MAX_REASON:
        raise UsageError(f"--reason is over {MAX_REASON} characters")
    if current is not None and current.digest == model.digest:
        raise UsageError(f"{alias} already points at {model.digest}")
    decision = None
    if context.trust is not None:
        # The gate first: a denial moves nothing and writes no record.
        decision = gate(target, model, alias, context, f"{ref.with_tag(None).with_digest(None)}@{model.digest}")
        if not decision.allowed:
            failed = "; ".join(f"{r.rule}: {r.detail}" for r in decision.reasons if not r.passed)
            raise PromotionDenied(
                Reason.UNSIGNED if any("unsigned" in r.detail for r in decision.reasons if not r.passed) else Reason.UNTRUSTED_SIGNATURE,
                f"the policy does not let {alias} point at {model.digest}: {failed}",
            )
    record = {
        "alias": alias,
        "action": action,
        "from": current.digest if current else None,
        "to": model.digest,
        "actor": actor(),
        "time": datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "reason": reason,
        "previous": previous,
        "gate": decision.model_dump() if decision else None,
    }
    bundle = None
    if signer is not None:
        bundle = sign_record(record, model, signer, str(ref.with_tag(None).with_digest(None)))
        if context.trust is not None and not isinstance(signer, KeySigner):
            # Keyless: who signed is known only from the certificate Fulcio issued.
            _check_names(signers_of_bundle(bundle, model, context), context.promoters(alias), alias, "identity that signed")
    # The record first, then the tag: a crash in between leaves a record of a move that
    # did not happen, which history shows (the alias still points elsewhere), never a move
    # without a record.
    descriptor = write_record(target, model, record, bundle)
    target.tag(model, alias)
    return PromoteResult(
        repository=str(ref.with_tag(None).with_digest(None)), alias=alias,
        from_digest=record["from"], to_digest=model.digest, record=descriptor.digest, action=action,
        signed=bundle is not None, signer=signer.description if signer is not None else None, gate=decision,
    )


def _resolve_tags(target, *, missing_ok: bool = True) -> dict[str, str]:
    listed = target.list_tags() if missing_ok or not isinstance(target, RemoteRepository) else target.list_tags(missing_ok=False)
    tags = [t for t in listed if not is_fallback_tag(t)]
    if len(tags) > MAX_VERSIONS:
        raise UsageError(f"{target.name} has {len(tags)} tags; over the {MAX_VERSIONS} this reads")

    def resolve(tag: str) -> tuple[str, str | None]:
        try:
            return tag, target.resolve(tag).digest
        except NotFound:
            return tag, None  # deleted meanwhile

    return {tag: digest for tag, digest in map_threads(resolve, tags) if digest}


def _read_models(target, digests: set[str]) -> dict[str, tuple[Manifest, Any]]:
    """Manifest and model card of each digest (manifests only, never weights)."""

    def read(digest: str):
        try:
            descriptor = target.resolve(digest)
            manifest = parse_manifest(target.fetch_manifest(descriptor), descriptor.media_type)
        except OcimodelError:
            return digest, None
        if not isinstance(manifest, Manifest):
            return digest, None
        return digest, (manifest, read_card(None, manifest.annotations).card)

    return {d: row for d, row in map_threads(read, sorted(digests)) if row}


def _records(target, alias: str, current: str | None, context: TrustContext) -> tuple[Ordered, list[str]]:
    """Every promotion record of ``alias``, in order, with the timeline (see
    ``promotions.order``).

    Records are found on every tagged model (each is a referrer of the model it promoted)
    and by following ``previous`` links back from them; each is fetched by digest, so
    none can be forged into a link. Records of models that lost every tag are found only
    through such links."""
    warnings: list[str] = []
    # Every tagged model is asked, not just the current one: after a re-tag by another
    # tool the alias may point at a model whose record is not the newest.
    try:
        digests = set(_resolve_tags(target).values())
    except UsageError as exc:
        warnings.append(exc.message)
        digests = set()
    if current:
        digests.add(current)
    known = {record.record: record for record in records_on(target, alias, sorted(digests), context, warnings)}
    pending = [r.previous for r in known.values() if r.previous]
    while pending and len(known) < MAX_RECORDS:
        digest = pending.pop()
        if digest in known:
            continue
        record = record_at(target, alias, digest, context, warnings)
        if record is None:
            warnings.append(f"promotion record {digest} is missing or unreadable; history before it is lost")
            continue
        known[digest] = record
        if record.previous:
            pending.append(record.previous)
    return order(known, current, context), warnings
