"""The model registry: versions, promote, rollback, history, lineage.

Versions are tags that look like versions (``1.2``, ``v3``, ``2024-05-01``); aliases are
all other tags (``production``, ``champion``, ``latest``) and move. Moving an alias with
``promote`` or ``rollback`` first writes a promotion record (a referrer of the model it
now names: alias, from, to, actor, time, reason), then moves the tag. ``history`` reads
the records back and checks them against each other and against where the alias points
now, so a tag moved by another tool shows up as a gap instead of vanishing."""

from __future__ import annotations

import getpass
import json
import os
import socket
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from ocimodel import settings
from ocimodel.api.common import DEFAULT_TAG, as_reference, bound, open_store
from ocimodel.api.lineage import LineageGraph, walk_lineage
from ocimodel.errors import NotFound, OcimodelError, UsageError
from ocimodel.metadata.card import metric_value
from ocimodel.metadata.encoding import read_card
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Manifest, parse_manifest
from ocimodel.oci.reference import validate_tag
from ocimodel.targets.referrers import is_fallback_tag, push_bytes, push_referrer
from ocimodel.targets.remote import RemoteRepository
from ocimodel.threads import map_threads
from ocimodel.transport.connection import ConnectionOptions
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


class PromotionRecord(BaseModel):
    alias: str
    action: str  # promote or rollback
    from_digest: str | None
    to_digest: str
    actor: str
    time: str
    reason: str | None
    record: str  # the record's own digest
    previous: str | None = None  # the record it follows


class PromoteResult(BaseModel):
    repository: str
    alias: str
    from_digest: str | None
    to_digest: str
    record: str
    action: str


class HistoryEvent(BaseModel):
    time: str | None
    digest: str | None  # None: the alias did not exist
    from_digest: str | None
    actor: str | None
    reason: str | None
    action: str  # promote, rollback, or "moved outside ocimodel" (no record)
    recorded: bool


class HistoryResult(BaseModel):
    repository: str
    alias: str
    current: str | None
    events: list[HistoryEvent]  # oldest first
    warnings: list[str]


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
) -> PromoteResult:
    """Point ``alias`` (e.g. ``production``) at the model ``reference`` names, recording
    who moved it, from where, when and why."""
    _check_alias(alias)
    ref = as_reference(reference)
    with open_store(connection, ref, for_write=True) as target:
        model = target.resolve(ref.reference or DEFAULT_TAG)
        current = _current(target, alias)
        chain, _ = _chain(target, alias, current.digest) if current else ([], [])
        previous = chain[-1].record if chain and chain[-1].to_digest == current.digest else None
        return _move(target, ref, alias, current, model, reason, "promote", previous=previous)


def rollback(
    connection: ConnectionOptions,
    repository: str,
    alias: str,
    *,
    reason: str | None = None,
) -> PromoteResult:
    """Undo the last promotion of ``alias`` that is not undone yet: the alias goes back to
    the version it held before it (a second rollback goes one step further back), recorded
    as a rollback. Refused when the alias was moved by something that left no record."""
    _check_alias(alias)
    ref = as_reference(repository)
    if ref.tag is not None or ref.digest is not None:
        raise UsageError(f"rollback takes the repository, not a tag or digest: {repository}", hint="e.g. ocimodel rollback registry/team/model --alias production")
    with open_store(connection, ref, for_write=True) as target:
        current = _current(target, alias)
        if current is None:
            raise NotFound(f"{ref}:{alias} does not exist: nothing to roll back")
        chain, _concurrent = _chain(target, alias, current.digest)  # history reports those
        explain = f"`ocimodel history {ref} --alias {alias}` shows what is known; promote an explicit version instead"
        if not chain:
            raise NotFound(f"no promotion record says where {alias} was before {current.digest}", hint=explain)
        if chain[-1].to_digest != current.digest:
            raise NotFound(
                f"{alias} was moved to {current.digest} without a promotion record: no record says what to roll back to",
                hint=explain,
            )
        undone = _undo_stack(chain)
        if not undone or undone[-1].from_digest is None:
            raise NotFound(f"{alias} held nothing before {current.digest}: nothing to roll back to")
        target_descriptor = target.resolve(undone[-1].from_digest)
        return _move(target, ref, alias, current, target_descriptor, reason, "rollback", previous=chain[-1].record)


def history(
    connection: ConnectionOptions,
    repository: str,
    alias: str,
) -> HistoryResult:
    """Which model held ``alias`` when, who moved it and why, oldest first. Records are
    ordered by the chain each one names (the record it follows), not by clocks; moves made
    without a record (another tool re-tagging) are listed and flagged."""
    _check_alias(alias)
    ref = as_reference(repository)
    with open_store(connection, ref) as target:
        current = _current(target, alias)
        now = current.digest if current else None
        chain, warnings = _chain(target, alias, now)
    if current is None and not chain:
        raise NotFound(
            f"{ref}:{alias} does not exist and no promotion record on a tagged model names it",
            hint=f"`ocimodel versions {ref}` lists the tags",
        )
    events: list[HistoryEvent] = []
    held: str | None = None
    for record in chain:
        if record.from_digest != held:
            events.append(HistoryEvent(
                time=None, digest=record.from_digest, from_digest=held, actor=None, reason=None,
                action="moved outside ocimodel", recorded=False,
            ))
            warnings.append(f"{alias} moved to {record.from_digest or 'nothing'} without a record before {record.time}")
        events.append(HistoryEvent(
            time=record.time, digest=record.to_digest, from_digest=record.from_digest, actor=record.actor,
            reason=record.reason, action=record.action, recorded=True,
        ))
        held = record.to_digest
    if now != held:
        events.append(HistoryEvent(time=None, digest=now, from_digest=held, actor=None, reason=None,
                                   action="moved outside ocimodel" if now else "deleted outside ocimodel", recorded=False))
        warnings.append(f"{alias} now points at {now or 'nothing'}, which no promotion record explains")
    return HistoryResult(repository=str(ref.with_tag(None).with_digest(None)), alias=alias, current=now, events=events, warnings=warnings)


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


def _move(target, ref, alias: str, current, model, reason: str | None, action: str, *, previous: str | None) -> PromoteResult:
    if reason is not None and len(reason) > MAX_REASON:
        raise UsageError(f"--reason is over {MAX_REASON} characters")
    if current is not None and current.digest == model.digest:
        raise UsageError(f"{alias} already points at {model.digest}")
    record = {
        "alias": alias,
        "action": action,
        "from": current.digest if current else None,
        "to": model.digest,
        "actor": actor(),
        "time": datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "reason": reason,
    }
    annotations = {
        mt.ANNOTATION_PROMOTION_ALIAS: alias, mt.ANNOTATION_PROMOTION_ACTION: action,
        mt.ANNOTATION_PROMOTION_TO: model.digest, mt.ANNOTATION_PROMOTION_ACTOR: record["actor"],
        mt.ANNOTATION_PROMOTION_TIME: record["time"],
        **({mt.ANNOTATION_PROMOTION_FROM: current.digest} if current else {}),
        **({mt.ANNOTATION_PROMOTION_REASON: reason} if reason else {}),
        **({mt.ANNOTATION_PROMOTION_PREVIOUS: previous} if previous else {}),
    }
    # The record first, then the tag: a crash in between leaves a record of a move that
    # did not happen, which history shows (the alias still points elsewhere), never a move
    # without a record.
    layer = push_bytes(target, mt.PROMOTION_ARTIFACT, json.dumps(record, sort_keys=True).encode())
    descriptor, _ = push_referrer(target, model, mt.PROMOTION_ARTIFACT, [layer], annotations)
    target.tag(model, alias)
    return PromoteResult(
        repository=str(ref.with_tag(None).with_digest(None)), alias=alias,
        from_digest=record["from"], to_digest=model.digest, record=descriptor.digest, action=action,
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


def _chain(target, alias: str, current: str | None) -> tuple[list[PromotionRecord], list[str]]:
    """The promotion records of ``alias``, oldest first, following the ``previous`` link
    each record carries (clocks of different machines disagree; the chain does not).

    Records are found on every tagged model (each is a referrer of the model it promoted)
    and by following ``previous`` links back from them. Two records following the same
    one mean two promotions raced: both are reported. Records of models that lost every
    tag are found only through such links."""
    warnings: list[str] = []
    # Every tagged model is asked, not just the current one: after a re-tag by another
    # tool the alias may point at a model whose record is not the newest.
    heads = _records_on_tagged(target, alias, warnings) + (_records_on(target, alias, current) if current else [])
    known: dict[str, PromotionRecord] = {r.record: r for r in heads}
    # Follow the links back; each record is fetched by digest, so none can be forged in.
    pending = [r.previous for r in heads if r.previous]
    while pending and len(known) < MAX_VERSIONS:
        digest = pending.pop()
        if digest in known:
            continue
        record = _record(target, alias, digest)
        if record is None:
            warnings.append(f"promotion record {digest} is missing or unreadable; history before it is lost")
            continue
        known[digest] = record
        if record.previous:
            pending.append(record.previous)
    followed = {r.previous for r in known.values() if r.previous}
    tips = [r for r in known.values() if r.record not in followed]
    if not tips:
        return [], warnings
    if len(tips) > 1:
        warnings.append(
            "concurrent promotions: " + ", ".join(f"{r.actor} moved it to {r.to_digest} at {r.time}" for r in tips)
            + "; only one of them holds"
        )
    # The tip that explains where the alias is now, else the latest by its own clock.
    tip = next((r for r in tips if r.to_digest == current), max(tips, key=lambda r: r.time))
    chain = [tip]
    while chain[-1].previous and chain[-1].previous in known and len(chain) <= len(known):
        chain.append(known[chain[-1].previous])
    chain.reverse()
    return chain, warnings


def _undo_stack(chain: list[PromotionRecord]) -> list[PromotionRecord]:
    """The promotions not undone by a later rollback: a rollback undoes the newest one."""
    stack: list[PromotionRecord] = []
    for record in chain:
        if record.action == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(record)
    return stack


def _record(target, alias: str, digest: str) -> PromotionRecord | None:
    try:
        descriptor = target.resolve(digest)
        manifest = parse_manifest(target.fetch_manifest(descriptor), descriptor.media_type)
    except OcimodelError:
        return None
    return _as_record(manifest, alias, digest)


def _as_record(manifest, alias: str, digest: str) -> PromotionRecord | None:
    """A promotion record of ``alias`` read from its manifest, or None. Its annotations are
    covered by the record's digest; the model it names must be its subject."""
    a = manifest.annotations or {}
    if not isinstance(manifest, Manifest) or manifest.subject is None or manifest.artifact_type != mt.PROMOTION_ARTIFACT:
        return None
    if (a.get(mt.ANNOTATION_PROMOTION_ALIAS) != alias or a.get(mt.ANNOTATION_PROMOTION_TO) != manifest.subject.digest
            or not a.get(mt.ANNOTATION_PROMOTION_TIME)):
        return None
    return PromotionRecord(
        alias=alias, action=a.get(mt.ANNOTATION_PROMOTION_ACTION, "promote"),
        from_digest=a.get(mt.ANNOTATION_PROMOTION_FROM), to_digest=manifest.subject.digest,
        actor=a.get(mt.ANNOTATION_PROMOTION_ACTOR, "?"), time=a[mt.ANNOTATION_PROMOTION_TIME],
        reason=a.get(mt.ANNOTATION_PROMOTION_REASON), record=digest, previous=a.get(mt.ANNOTATION_PROMOTION_PREVIOUS),
    )


def _records_on(target, alias: str, digest: str) -> list[PromotionRecord]:
    out = []
    try:
        listed = target.referrers(digest, mt.PROMOTION_ARTIFACT)
    except OcimodelError:
        return out
    for descriptor in listed:
        try:
            manifest = parse_manifest(target.fetch_manifest(descriptor), descriptor.media_type)
        except OcimodelError:
            continue
        record = _as_record(manifest, alias, descriptor.digest)
        if record is not None and record.to_digest == digest:
            out.append(record)
    return out


def _records_on_tagged(target, alias: str, warnings: list[str]) -> list[PromotionRecord]:
    """Records of ``alias`` on every tagged model (the slow path)."""
    try:
        digests = set(_resolve_tags(target).values())
    except UsageError as exc:
        warnings.append(exc.message)
        return []
    found: dict[str, PromotionRecord] = {}
    for records in map_threads(lambda d: _records_on(target, alias, d), sorted(digests)):
        for record in records:
            found[record.record] = record
    return list(found.values())
