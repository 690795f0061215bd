"""Promotion records: what moved an alias, written, read back, judged and put in order.

A record is a referrer of the model the alias was moved to. Two forms:

- signed (``promote --key``, or keyless): an in-toto statement about the model's digest
  with the predicate ``https://ocimodel.dev/promotion/v1`` (alias, action, from, to,
  actor, time, reason, previous, and the gate decision), in a Sigstore bundle stored as
  ``attest`` stores one, so cosign-format tools read it and ``copy --with-referrers``
  carries it;
- unsigned (no key): the ``application/vnd.ocimodel.promotion.v1+json`` referrer with
  ``dev.ocimodel.promotion.*`` annotations that older versions wrote and that are still
  read. Anyone who can push can write one; history marks them "unsigned".

Every record names the record it follows (``previous``). ``order`` never drops a record:
it puts them all in one list, names each conflict (two records following the same one, a
record that does not continue where its predecessor left the alias), and walks the
timeline over the records that count (with a policy: the trusted ones only)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ocimodel.errors import OcimodelError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.digest import validate_digest
from ocimodel.oci.models import Descriptor, Manifest, parse_manifest
from ocimodel.signing.bundle import unverified_statement
from ocimodel.signing.errors import Reason, VerificationFailed
from ocimodel.signing.statement import attestation_statement, check_subject
from ocimodel.targets.referrers import push_record
from ocimodel.threads import map_threads
from ocimodel.trust.policy import TrustPolicy
from ocimodel.trust.sign import BundleSigner, named
from ocimodel.trust.store import RefusedBundle, StoredBundle, read_bundle, write_bundle
from ocimodel.trust.verify import KeylessOptions, evaluate, verify_bundle

PROMOTION_PREDICATE = "https://ocimodel.dev/promotion/v1"
# Unsigned records carry the gate decision as JSON in this annotation.
ANNOTATION_PROMOTION_GATE = "dev.ocimodel.promotion.gate"
MAX_RECORDS = 2000  # records followed by one history

Trust = Literal["trusted", "untrusted", "unsigned", "signed"]


class GateRule(BaseModel):
    rule: str  # signature, file-signature, attestation <type>
    passed: bool
    detail: str


class GateDecision(BaseModel):
    """What the policy said about the target before the alias moved."""

    policy: str  # sha256 of the policy as parsed, with its keys' hints (policy_digest)
    allowed: bool
    reasons: list[GateRule]


class PromotionPredicate(BaseModel):
    """The predicate of a signed record (``https://ocimodel.dev/promotion/v1``)."""

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)

    alias: str = Field(min_length=1, max_length=128)
    action: Literal["promote", "rollback"]
    from_digest: str | None = Field(alias="from")
    to_digest: str = Field(alias="to")
    actor: str = Field(max_length=200)
    time: str = Field(min_length=1, max_length=64)
    reason: str | None = Field(default=None, max_length=1000)
    previous: str | None = None  # digest of the record this one follows
    gate: GateDecision | None = None  # None: promoted without a policy


class PromotionRecord(BaseModel):
    alias: str
    action: str  # promote or rollback
    from_digest: str | None
    to_digest: str
    actor: str
    time: str
    reason: str | None
    record: str  # the record's own digest (its referrer manifest)
    previous: str | None = None  # the record it follows
    signed: bool = False
    gate: GateDecision | None = None
    # With a policy: trusted (a valid bundle by a signer the policy lists and, for an alias
    # with promoters, one of them) or untrusted (anything else, unsigned records included:
    # see ``signed``). Without: unsigned, or signed (not checked: as the deployment records say it).
    trust: Trust = "unsigned"
    signers: list[str] = []  # the policy's names of who signed it, when verified
    trust_detail: str | None = None  # why it is untrusted


@dataclass(frozen=True)
class TrustContext:
    """How records are judged: without a policy, nothing is trusted or untrusted."""

    trust: TrustPolicy | None = None
    keyless: KeylessOptions = field(default_factory=KeylessOptions)
    connection: Any = None  # ConnectionOptions: how a licenses rule reaches base models

    def promoters(self, alias: str) -> list[str] | None:
        if self.trust is None:
            return None
        rule = self.trust.policy.aliases.get(alias)
        return rule.promoters if rule else None

    def counts(self, record: PromotionRecord) -> bool:
        """Whether the timeline follows this record."""
        return self.trust is None or record.trust == "trusted"


# -- writing ----------------------------------------------------------------------------


def predicate_of(record: dict[str, Any]) -> dict[str, Any]:
    """The predicate for a record's fields (alias, action, from, to, actor, time, reason,
    previous, gate)."""
    return {k: v for k, v in record.items() if v is not None or k in ("from", "reason")}


def sign_record(record: dict[str, Any], model: Descriptor, signer: BundleSigner, name: str) -> bytes:
    """The Sigstore bundle of a record about ``model`` (nothing is written)."""
    statement = attestation_statement(model.digest, PROMOTION_PREDICATE, predicate_of(record))
    return signer.sign(named(statement, name).to_json())


def signers_of_bundle(bundle: bytes, model: Descriptor, context: TrustContext) -> set[str]:
    """The policy's names of who signed ``bundle`` (empty: nobody it trusts)."""
    assert context.trust is not None
    stored = StoredBundle(referrer=model, bundle=bundle, predicate_type=PROMOTION_PREDICATE, created=None)
    try:
        return set(verify_bundle(stored, context.trust, model.digest, None, context.keyless).signers)
    except VerificationFailed:
        return set()


def write_record(target, model: Descriptor, record: dict[str, Any], bundle: bytes | None) -> Descriptor:
    """Store a record as a referrer of ``model``: the signed bundle, else the unsigned
    annotation form."""
    if bundle is not None:
        return write_bundle(target, model, bundle, PROMOTION_PREDICATE)
    annotations = {
        mt.ANNOTATION_PROMOTION_ALIAS: record["alias"], mt.ANNOTATION_PROMOTION_ACTION: record["action"],
        mt.ANNOTATION_PROMOTION_TO: model.digest, mt.ANNOTATION_PROMOTION_ACTOR: record["actor"],
        mt.ANNOTATION_PROMOTION_TIME: record["time"],
        **({mt.ANNOTATION_PROMOTION_FROM: record["from"]} if record.get("from") else {}),
        **({mt.ANNOTATION_PROMOTION_REASON: record["reason"]} if record.get("reason") else {}),
        **({mt.ANNOTATION_PROMOTION_PREVIOUS: record["previous"]} if record.get("previous") else {}),
        **({ANNOTATION_PROMOTION_GATE: json.dumps(record["gate"], sort_keys=True)} if record.get("gate") else {}),
    }
    data = json.dumps(record, sort_keys=True).encode()
    return push_record(target, model, mt.PROMOTION_ARTIFACT, mt.PROMOTION_ARTIFACT, data, annotations)


# -- gates ------------------------------------------------------------------------------


def policy_digest(trust: TrustPolicy) -> str:
    """A digest of the policy as parsed plus the hint of each key it loaded: the same
    policy reformatted keeps it, a changed rule or a replaced key file changes it."""
    document = {
        "policy": trust.policy.model_dump(mode="json"),
        "keys": {name: key.hint for name, key in sorted(trust.keys.items())},
    }
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _section(rule: str) -> str:
    """The policy section a rule of verify's decision comes from ("scan (at most medium)"
    is the scan rule's name there)."""
    if rule.startswith("attestation "):
        return "attestations"
    if rule == "licenses":
        return "licenses"
    if rule.startswith("evaluation "):
        return "evaluations"
    return "scan" if rule.startswith("scan") else "signature"


def gate(target, model: Descriptor, alias: str, context: TrustContext, reference: str) -> GateDecision:
    """The policy's decision on ``model`` for ``alias``: the sections its alias rule
    requires (all of the policy when the alias has no rule or no ``require``)."""
    assert context.trust is not None
    data = target.fetch_manifest(model)
    from ocimodel.api.trust import license_rule
    from ocimodel.transport.connection import ConnectionOptions

    licenses = license_rule(context.connection or ConnectionOptions(), target, reference, model, data, context.trust)
    decision = evaluate(target, model, data, context.trust, reference=reference, keyless=context.keyless,
                        licenses=licenses)
    rule = context.trust.policy.aliases.get(alias)
    wanted = set(rule.require) if rule and rule.require else {"signature", "attestations", "scan", "licenses", "evaluations"}
    reasons = [GateRule(rule=r.rule, passed=r.passed, detail=r.detail) for r in decision.reasons if _section(r.rule) in wanted]
    return GateDecision(policy=policy_digest(context.trust), allowed=all(r.passed for r in reasons), reasons=reasons)


class PromotionDenied(VerificationFailed):
    """The policy does not let the alias point at that model, or the signer may not move
    it. Nothing was moved and no record was written."""

    def __init__(self, reason: Reason, message: str, hint: str | None = None) -> None:
        super().__init__(reason, message, hint=hint or "nothing was moved; `ocimodel verify REF --policy P` shows every rule")


# -- reading ----------------------------------------------------------------------------


def _annotation_record(manifest, alias: str, digest: str, context: TrustContext) -> PromotionRecord | None:
    """An unsigned record of ``alias`` read from its annotations, or None. The model it
    names must be its subject."""
    if not isinstance(manifest, Manifest) or manifest.subject is None or manifest.artifact_type != mt.PROMOTION_ARTIFACT:
        return None
    a = manifest.annotations or {}
    if (a.get(mt.ANNOTATION_PROMOTION_ALIAS) != alias or a.get(mt.ANNOTATION_PROMOTION_TO) != manifest.subject.digest
            or not a.get(mt.ANNOTATION_PROMOTION_TIME)):
        return None
    gate_decision = None
    if a.get(ANNOTATION_PROMOTION_GATE):
        try:
            gate_decision = GateDecision.model_validate_json(a[ANNOTATION_PROMOTION_GATE])
        except ValidationError:
            gate_decision = None  # unsigned: a malformed decision is no decision
    return PromotionRecord(
        alias=alias, action=a.get(mt.ANNOTATION_PROMOTION_ACTION, "promote"),
        from_digest=a.get(mt.ANNOTATION_PROMOTION_FROM), to_digest=manifest.subject.digest,
        actor=a.get(mt.ANNOTATION_PROMOTION_ACTOR, "?"), time=a[mt.ANNOTATION_PROMOTION_TIME],
        reason=a.get(mt.ANNOTATION_PROMOTION_REASON), record=digest, previous=a.get(mt.ANNOTATION_PROMOTION_PREVIOUS),
        gate=gate_decision, trust="unsigned" if context.trust is None else "untrusted",
        trust_detail=None if context.trust is None else "unsigned: anyone who can push can write such a record",
    )


def _bundle_record(target, listed: Descriptor, subject: str, alias: str, context: TrustContext,
                   warnings: list[str]) -> PromotionRecord | None:
    """A signed record of ``alias`` from a bundle referrer of ``subject``, judged by the
    policy; None when the bundle is about something else."""
    stored = read_bundle(target, listed, subject)
    if isinstance(stored, RefusedBundle):
        if stored.predicate_type == PROMOTION_PREDICATE:
            warnings.append(f"promotion record {listed.digest} is unreadable ({stored.reason}): {stored.detail}")
        return None
    try:
        statement = unverified_statement(stored.bundle)
    except VerificationFailed as exc:
        if stored.predicate_type == PROMOTION_PREDICATE:
            warnings.append(f"promotion record {listed.digest} is unreadable ({exc.reason}): {exc.message}")
        return None
    if statement.predicate_type != PROMOTION_PREDICATE:
        return None
    try:
        check_subject(statement, subject)
        predicate = PromotionPredicate.model_validate(statement.predicate or {})
        for digest in (predicate.to_digest, predicate.from_digest, predicate.previous):
            if digest is not None:
                validate_digest(digest)
    except (VerificationFailed, ValidationError, OcimodelError) as exc:
        detail = exc.message if isinstance(exc, OcimodelError) else str(exc).splitlines()[0]
        warnings.append(f"promotion record {listed.digest} is malformed: {detail[:300]}")
        return None
    if predicate.alias != alias:
        return None
    if predicate.to_digest != subject:
        warnings.append(f"promotion record {listed.digest} is attached to {subject} but names {predicate.to_digest}")
        return None
    record = PromotionRecord(
        alias=alias, action=predicate.action, from_digest=predicate.from_digest, to_digest=subject,
        actor=predicate.actor, time=predicate.time, reason=predicate.reason, record=listed.digest,
        previous=predicate.previous, signed=True, gate=predicate.gate, trust="signed",
    )
    if context.trust is None:
        return record
    try:
        signers = sorted(verify_bundle(stored, context.trust, subject, None, context.keyless).signers)
    except VerificationFailed as exc:
        return record.model_copy(update={"trust": "untrusted", "trust_detail": f"{exc.reason}: {exc.message}"})
    promoters = context.promoters(alias)
    if not signers:
        return record.model_copy(update={"trust": "untrusted", "trust_detail": "signed by no signer the policy lists"})
    if promoters is not None and not set(signers) & set(promoters):
        return record.model_copy(update={
            "trust": "untrusted", "signers": signers,
            "trust_detail": f"signed by {', '.join(signers)}, not by a promoter of {alias} ({', '.join(promoters)})",
        })
    return record.model_copy(update={"trust": "trusted", "signers": signers})


def _is_candidate(listed: Descriptor) -> bool:
    if listed.artifact_type == mt.PROMOTION_ARTIFACT:
        return True
    if not (listed.artifact_type or "").startswith(mt.BUNDLE_ARTIFACT_PREFIX):
        return False
    # The listing's annotation is unsigned, so it only saves reading other bundles; a
    # listing without annotations (some registries drop them) is read in full.
    hint = (listed.annotations or {}).get(mt.ANNOTATION_BUNDLE_PREDICATE_TYPE)
    return hint in (None, PROMOTION_PREDICATE)


def records_on(target, alias: str, digests: list[str], context: TrustContext, warnings: list[str]) -> list[PromotionRecord]:
    """The records of ``alias`` attached to the models ``digests``."""

    def listing(digest: str) -> list[tuple[Descriptor, str]]:
        try:
            return [(d, digest) for d in target.referrers(digest) if _is_candidate(d)]
        except OcimodelError as exc:
            warnings.append(f"cannot list the referrers of {digest}: {exc.message}")
            return []

    # Each record is one or two small reads (its manifest, a bundle's one layer): all of
    # them on one pool of threads, never a pool per model (the connection pool is shared).
    candidates = [pair for found in map_threads(listing, digests) for pair in found]
    read = map_threads(lambda pair: _read(target, pair[0], pair[1], alias, context, warnings), candidates)
    return [r for r, (_, digest) in zip(read, candidates) if r is not None and r.to_digest == digest]


def record_at(target, alias: str, digest: str, context: TrustContext, warnings: list[str]) -> PromotionRecord | None:
    """The record with this digest (a ``previous`` link), whichever model it is on."""
    try:
        descriptor = target.resolve(digest)
        manifest = parse_manifest(target.fetch_manifest(descriptor), descriptor.media_type)
    except OcimodelError:
        return None
    if not isinstance(manifest, Manifest) or manifest.subject is None:
        return None
    listed = Descriptor(mediaType=mt.OCI_MANIFEST, digest=descriptor.digest, size=descriptor.size,
                        artifactType=manifest.artifact_type)
    return _read(target, listed, manifest.subject.digest, alias, context, warnings, manifest=manifest)


def _read(target, listed: Descriptor, subject: str, alias: str, context: TrustContext, warnings: list[str],
          manifest=None) -> PromotionRecord | None:
    if listed.artifact_type == mt.PROMOTION_ARTIFACT:
        if manifest is None:
            try:
                manifest = parse_manifest(target.fetch_manifest(listed), listed.media_type)
            except OcimodelError:
                return None
        return _annotation_record(manifest, alias, listed.digest, context)
    if (listed.artifact_type or "").startswith(mt.BUNDLE_ARTIFACT_PREFIX):
        return _bundle_record(target, listed, subject, alias, context, warnings)
    return None


# -- order ------------------------------------------------------------------------------


class Conflict(BaseModel):
    kind: str  # same-previous, several-first, gap, unlinked, stale-previous
    records: list[str]  # the records involved
    message: str


@dataclass
class Ordered:
    """All records in order (parents before children, siblings by their own clocks), the
    timeline the alias followed over the records that count, and the conflicts."""

    records: list[PromotionRecord]  # every record found, in order
    chain: list[PromotionRecord]  # the timeline: records that count, oldest first
    parent: dict[str, str | None]  # record -> the record it follows (given or inferred)
    conflicts: list[Conflict]
    by_record: dict[str, list[str]]  # record -> messages of the conflicts it is in


def order(known: dict[str, PromotionRecord], current: str | None, context: TrustContext) -> Ordered:
    parent: dict[str, str | None] = {d: (r.previous if r.previous in known else None) for d, r in known.items()}
    conflicts: list[Conflict] = []

    def ancestors(digest: str | None):
        seen = set()
        while digest is not None and digest not in seen:
            seen.add(digest)
            yield digest
            digest = parent.get(digest)

    # A record that names no previous record but moves the alias from somewhere continues
    # the record that left it there (an old record, or one another tool wrote): it is put
    # after that one, and the missing link is named.
    by_time = sorted(known.values(), key=lambda r: (r.time, r.record))
    followers: dict[str, list[PromotionRecord]] = {}
    for record in by_time:
        if parent[record.record] is not None:
            followers.setdefault(parent[record.record], []).append(record)
    for record in by_time:
        if parent[record.record] is not None or record.from_digest is None:
            continue
        if record.previous is not None and record.previous not in known:
            continue  # its predecessor is lost: history warns about that
        candidates = [q for q in by_time if q.to_digest == record.from_digest and q.record != record.record
                      and record.record not in ancestors(q.record)]
        # Best: a record after which the alias was found where this one left it (this one
        # fills that gap); else the latest by its own clock.
        fillers = [q for q in candidates if any(c.from_digest == record.to_digest and c.from_digest != q.to_digest
                                                for c in followers.get(q.record, ()))]
        if candidates:
            inferred = (fillers or candidates)[-1]
            parent[record.record] = inferred.record
            followers.setdefault(inferred.record, []).append(record)
            conflicts.append(Conflict(
                kind="unlinked", records=[record.record, inferred.record],
                message=f"record {record.record} ({record.actor}) names no previous record; it continues "
                        f"{inferred.record} ({inferred.actor}), which left the alias at {record.from_digest}",
            ))

    # A record that names a previous record but found the alias where another record left
    # it continues that other record: its writer read the tag after that move but listed
    # the records before the move's record could be seen (concurrent promotions; on a
    # registry without the referrers API a record becomes visible only once the fallback
    # index is rewritten). It is put after the record whose move it found (one after the
    # record it names first, else the latest), and the stale link is named; a gap that no
    # record explains stays a gap.
    for record in by_time:
        before = parent[record.record]
        if before is None or record.from_digest is None or known[before].to_digest == record.from_digest:
            continue
        found = [q for q in by_time if q.to_digest == record.from_digest and q.record != record.record
                 and record.record not in ancestors(q.record)]
        after = [q for q in found if before in ancestors(parent.get(q.record))]
        if found:
            continued = (after or found)[-1]
            parent[record.record] = continued.record
            conflicts.append(Conflict(
                kind="stale-previous", records=[record.record, continued.record],
                message=f"record {record.record} ({record.actor}) names {before} as its previous record, but found "
                        f"the alias at {record.from_digest}, where {continued.record} ({continued.actor}) left it; "
                        f"it continues {continued.record}",
            ))

    children: dict[str | None, list[PromotionRecord]] = {}
    for record in by_time:
        children.setdefault(parent[record.record], []).append(record)
    for previous, siblings in children.items():
        if len(siblings) < 2:
            continue
        names = ", ".join(f"{r.record} ({r.actor}, to {r.to_digest})" for r in siblings)
        if previous is None:
            conflicts.append(Conflict(kind="several-first", records=[r.record for r in siblings],
                                      message=f"{len(siblings)} records each claim to be the first move: {names}"))
        else:
            conflicts.append(Conflict(kind="same-previous", records=[r.record for r in siblings],
                                      message=f"{len(siblings)} records follow the same record {previous} "
                                              f"(concurrent promotions, or a forgery); only one holds: {names}"))
    for record in by_time:
        before = parent[record.record]
        if before is not None and known[before].to_digest != record.from_digest:
            conflicts.append(Conflict(
                kind="gap", records=[record.record, before],
                message=f"record {record.record} moves the alias from {record.from_digest or 'nothing'}, but the "
                        f"record it follows ({before}) left it at {known[before].to_digest}",
            ))

    # Every record once, parents first; siblings and roots by their own clocks.
    ordered: list[PromotionRecord] = []
    stack = list(reversed(children.get(None, [])))
    placed: set[str] = set()
    while stack:
        record = stack.pop()
        if record.record in placed:
            continue
        placed.add(record.record)
        ordered.append(record)
        stack.extend(reversed(children.get(record.record, [])))
    ordered += [r for r in by_time if r.record not in placed]  # cycles: none should exist, none is dropped

    # The timeline: over the records that count, each follows its nearest counting
    # ancestor; the tip is the one that explains where the alias is now, else the latest.
    counting = {r.record for r in ordered if context.counts(r)}

    memo: dict[str, str | None] = {}

    def counting_parent(digest: str) -> str | None:
        # Memoised walk up: each record is visited once however long the history.
        path: list[str] = []
        above = parent.get(digest)
        found: str | None = None
        seen: set[str] = set()
        while above is not None and above not in seen:
            if above in memo:
                found = above if above in counting else memo[above]
                break
            if above in counting:
                found = above
                break
            seen.add(above)
            path.append(above)
            above = parent.get(above)
        for skipped in path:
            memo[skipped] = found
        return found

    followed = {counting_parent(d) for d in counting}
    tips = [known[d] for d in counting if d not in followed]
    chain: list[PromotionRecord] = []
    if tips:
        explaining = [r for r in tips if r.to_digest == current]
        tip = max(explaining or tips, key=lambda r: (r.time, r.record))
        cursor: str | None = tip.record
        while cursor is not None and len(chain) <= len(known):
            chain.append(known[cursor])
            cursor = counting_parent(cursor)
        chain.reverse()
    by_record: dict[str, list[str]] = {}
    for conflict in conflicts:
        for digest in conflict.records[:1] if conflict.kind in ("unlinked", "gap", "stale-previous") else conflict.records:
            by_record.setdefault(digest, []).append(f"{conflict.kind}: {conflict.message}")
    # A record on a branch that lost (it follows a record in a race) is named too: no
    # record leaves the timeline without saying why.
    in_chain = {r.record for r in chain}
    for record in ordered:
        if record.record in in_chain or record.record in by_record or record.record not in counting:
            continue
        loser = next((a for a in ancestors(parent.get(record.record)) if a in by_record and a not in in_chain), None)
        if loser is not None:
            by_record[record.record] = [f"branch: follows {loser} ({known[loser].actor}), which the timeline does not follow"]
    return Ordered(records=ordered, chain=chain, parent=parent, conflicts=conflicts, by_record=by_record)


def undo_stack(chain: list[PromotionRecord]) -> list[PromotionRecord]:
    """The promotions not undone by a later rollback: a rollback undoes the newest one."""
    stack: list[PromotionRecord] = []
    for record in chain:
        if record.action == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(record)
    return stack
