"""Decide whether a model is allowed: read its bundle referrers, verify each strictly
against the policy's signers, and judge every rule of the policy.

Order of trust (docs/threats.md 11-19):

1. The model is named by digest. The caller resolves a tag once and passes the manifest it
   fetched by digest; nothing here looks at a tag again (docs/threats.md 1).
2. Each bundle referrer is read strictly (``store``); its signature is verified with the
   policy's keys or identities only, never with a key the bundle carries (11).
3. The signed statement must be about THIS manifest: its one subject is the manifest
   digest (16), or, for the file-level signature, its resources are exactly this
   manifest's files (17). Its predicate type must be the one the rule asks for: an SBOM
   is not a signature (15), and the unsigned ``predicateType`` annotation must agree.
4. A bundle that fails any check is recorded as refused, with why; it does not abort the
   verification (another bundle may be good) and it never counts.
5. Every rule passes or fails with one line saying why. No bundle at all is "unsigned",
   which fails the signature rule: stripping signatures denies, never allows (19)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ocimodel.errors import InvalidManifest, UsageError
from ocimodel.oci.models import Descriptor, Manifest, loads_strict, parse_manifest
from ocimodel.signing.bundle import load_bundle, material_kind, verify_key_bundle
from ocimodel.signing.errors import FileSignatureUnsupported, Reason, VerificationFailed
from ocimodel.signing.files_statement import (
    MODEL_SIGNING_PREDICATE,
    check_resources,
    files_of_manifest,
    parse_files_statement,
)
from ocimodel.signing.statement import COSIGN_SIGN_PREDICATE, check_subject
from ocimodel.trust.policy import TrustPolicy
from ocimodel.trust.store import BundleReader, RefusedBundle, StoredBundle, read_bundles

# verificationMaterial keys that carry a certificate (as signing.bundle reads them).


class RuleResult(BaseModel):
    rule: str  # "signature", "file-signature", "attestation <predicate type>"
    passed: bool
    detail: str
    # Why it failed, a stable code (a Reason value: unsigned, missing-attestation,
    # missing-signer, untrusted-signature, or the reason the first matching bundle was
    # refused); None when it passed.
    reason: str | None = None


class SignatureRecord(BaseModel):
    signer: str  # the policy's name for the signer
    predicate_type: str
    referrer: str  # digest of the bundle referrer


class RefusedRecord(BaseModel):
    referrer: str
    predicate_type: str | None  # the referrer's annotation: unsigned, for display only
    reason: str  # a stable code: ocimodel.signing.errors.Reason values, or malformed-referrer
    detail: str


class Decision(BaseModel):
    reference: str
    digest: str
    allowed: bool
    reasons: list[RuleResult]  # one per rule of the policy, in order
    signatures: list[SignatureRecord]  # every verified signature and attestation, by signer
    refused: list[RefusedRecord]  # bundles that did not verify, and why

    def lines(self) -> list[str]:
        """The decision for people: one line per rule, then one per refused bundle."""
        out = [f"{'pass' if r.passed else 'FAIL'} {r.rule}: {r.detail}" for r in self.reasons]
        out += [f"refused {r.referrer}: {r.reason}: {r.detail}" for r in self.refused]
        return out


class PolicyDenied(VerificationFailed):
    """The policy denied the model. ``decision`` says which rules failed; ``reason`` is
    the first failed rule's (``Reason.UNSIGNED`` for a model nobody signed)."""

    def __init__(self, decision: Decision) -> None:
        failed = [r for r in decision.reasons if not r.passed]
        summary = "; ".join(f"{r.rule}: {r.detail}" for r in failed) or "denied"
        reason = _as_reason(failed[0].reason if failed else None)
        super().__init__(
            reason,
            f"{decision.reference} ({decision.digest}) is denied by the policy: {summary}",
            hint="nothing was downloaded; `ocimodel verify` shows every rule and bundle",
        )
        self.decision = decision


def _as_reason(code: str | None) -> Reason:
    try:
        return Reason(code)
    except ValueError:  # None, or the store's "malformed-referrer"
        return Reason.MALFORMED_BUNDLE if code else Reason.UNTRUSTED_SIGNATURE


@dataclass(frozen=True)
class VerifiedBundle:
    referrer: str
    predicate_type: str
    signers: frozenset[str]
    # The signed statement's predicate (what a scan rule reads); None for file signatures.
    predicate: Any = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class LocalScan:
    """A scan made by the verifier itself (`verify --scan`): it stands in for the signed
    scan a policy's scan rule asks for. ``worst`` is None when nothing was found."""

    worst: str | None
    digest: str
    # The limit when the policy has no scan rule: worse than medium fails, as `scan` does.
    max_severity: str = "medium"


@dataclass
class _Found:
    verified: list[VerifiedBundle] = field(default_factory=list)
    refused: list[RefusedRecord] = field(default_factory=list)
    listed: int = 0


@dataclass(frozen=True)
class KeylessOptions:
    trusted_root: Path | None = None
    offline: bool = True


def evaluate(
    target: BundleReader,
    root: Descriptor,
    manifest_bytes: bytes,
    trust: TrustPolicy,
    *,
    reference: str,
    keyless: KeylessOptions | None = None,
    local_scan: LocalScan | None = None,
    licenses: RuleResult | None = None,
) -> Decision:
    """The decision for the manifest ``root`` (whose verified bytes are ``manifest_bytes``)
    in an open ``target``. Raises only when the referrers cannot be listed (an outage is
    not "unsigned"; the caller denies on the error)."""
    keyless = keyless or KeylessOptions()
    manifest = parse_manifest(manifest_bytes, root.media_type)
    found = _Found()
    for item in read_bundles(target, root.digest):
        found.listed += 1
        if isinstance(item, RefusedBundle):
            found.refused.append(RefusedRecord(**item.__dict__))
            continue
        try:
            found.verified.append(verify_bundle(item, trust, root.digest, manifest, keyless))
        except VerificationFailed as exc:
            found.refused.append(RefusedRecord(
                referrer=item.referrer.digest, predicate_type=item.predicate_type,
                reason=str(exc.reason), detail=exc.message,
            ))
    policy = trust.policy
    reasons = [_rule(found, "signature", COSIGN_SIGN_PREDICATE, trust.signers_of(policy.signature.signers),
                     policy.signature.match, root.digest)]
    if policy.signature.files:
        reasons.append(_rule(found, "file-signature", MODEL_SIGNING_PREDICATE,
                             trust.signers_of(policy.signature.signers), policy.signature.match, root.digest))
    for rule in policy.attestations:
        reasons.append(_rule(found, f"attestation {rule.type}", rule.type, trust.signers_of(rule.signers),
                             rule.match, root.digest))
    if policy.scan is not None or local_scan is not None:
        reasons.append(_scan_rule(found, trust, manifest, root.digest, local_scan))
    if licenses is not None:  # judged by the caller, which can read cards and base models
        reasons.append(licenses)
    reasons += [_evaluation_rule(found, trust, rule) for rule in policy.evaluations]
    signatures = [
        SignatureRecord(signer=name, predicate_type=v.predicate_type, referrer=v.referrer)
        for v in found.verified for name in sorted(v.signers)
    ]
    return Decision(
        reference=reference,
        digest=root.digest,
        allowed=all(r.passed for r in reasons),
        reasons=reasons,
        signatures=signatures,
        refused=found.refused,
    )


def verify_bundle(
    stored: StoredBundle, trust: TrustPolicy, digest: str, manifest: Manifest | Any, keyless: KeylessOptions
) -> VerifiedBundle:
    """Verify one stored bundle: its signature by a trusted signer, then what it says (see
    the module docstring). Raises VerificationFailed."""
    if _is_keyless(stored.bundle):
        payload, signers = _verify_keyless(stored.bundle, trust, keyless)
    else:
        if not trust.keys:
            raise VerificationFailed(
                Reason.UNTRUSTED_SIGNATURE,
                "signed with a key, and the policy trusts no key",
                hint="add the public key to the policy's signers",
            )
        payload = verify_key_bundle(stored.bundle, [k.key for k in trust.keys.values()])
        signers = trust.names_for_keys(payload.keys)
    statement = payload.statement
    if stored.predicate_type is not None and stored.predicate_type != statement.predicate_type:
        raise VerificationFailed(
            Reason.PREDICATE_TYPE,
            f"the referrer is annotated as {stored.predicate_type[:120]!r} but the signed statement "
            f"is {statement.predicate_type[:120]!r}",
        )
    if statement.predicate_type == MODEL_SIGNING_PREDICATE:
        # About files, not the manifest: its subject is the root over the file digests. It
        # counts for this model only if its files are exactly this manifest's files.
        if not isinstance(manifest, Manifest):
            raise VerificationFailed(Reason.SUBJECT_MISMATCH, "a file-level signature cannot be about an index")
        try:
            files = files_of_manifest(manifest)
        except FileSignatureUnsupported as exc:
            raise VerificationFailed(Reason.UNSUPPORTED_FILE, exc.message) from None
        check_resources(parse_files_statement(statement), files)
    else:
        check_subject(statement, digest)
    return VerifiedBundle(
        referrer=stored.referrer.digest, predicate_type=statement.predicate_type, signers=frozenset(signers),
        predicate=statement.predicate,
    )


def _is_keyless(bundle: bytes) -> bool:
    """Whether the bundle's verification material is a certificate (Fulcio, keyless).
    Malformed bundles raise here with the same reasons the key verifier gives."""
    return material_kind(load_bundle(bundle)) != "publicKey"


def keyless_module():
    """``ocimodel.trust.keyless``, imported only when a keyless bundle or signer is met
    (it pulls in sigstore)."""
    try:
        from ocimodel.trust import keyless
    except ImportError as exc:
        if exc.name not in ("ocimodel.trust.keyless", None):
            raise
        raise VerificationFailed(
            Reason.NOT_A_KEY_BUNDLE, "keyless (Sigstore) verification is not available in this installation"
        ) from None
    return keyless


def _verify_keyless(bundle: bytes, trust: TrustPolicy, options: KeylessOptions) -> tuple[Any, set[str]]:
    if not trust.identities:
        raise VerificationFailed(
            Reason.UNTRUSTED_SIGNATURE,
            "signed keyless (a certificate), and the policy trusts no identity",
            hint="add the identity and its OIDC issuer to the policy's signers",
        )
    keyless = keyless_module()
    names: set[str] = set()
    payload = None  # a keyless.KeylessVerified: .statement as in VerifiedPayload
    first_failure: VerificationFailed | None = None
    # One identity at a time: the name of each identity that matches is what the rules need,
    # and it does not depend on how the keyless verifier reports the identity it saw.
    for signer in trust.identities.values():
        try:
            payload = keyless.verify_keyless(
                bundle, trusted_root=options.trusted_root, identities=[(signer.identity, signer.issuer)],
                offline=options.offline,
            )
        except VerificationFailed as exc:
            first_failure = first_failure or exc
            continue
        names.add(signer.name)
    if payload is None:
        assert first_failure is not None
        raise first_failure
    return payload, names


def _rule(found: _Found, rule: str, predicate_type: str, signers: list[str], match: str, digest: str) -> RuleResult:
    satisfied = {name for v in found.verified if v.predicate_type == predicate_type for name in v.signers}
    wanted = [name for name in signers if name in satisfied]
    missing = [name for name in signers if name not in satisfied]
    passed = bool(wanted) and (match == "any-of" or not missing)
    signature_rule = rule in ("signature", "file-signature")
    what = "signed" if signature_rule else "attested"
    if passed:
        return RuleResult(rule=rule, passed=True, detail=f"{what} by {', '.join(wanted)}")
    if found.listed == 0:
        detail = f"unsigned: no signature or attestation refers to {digest}"
        reason: str = Reason.UNSIGNED if signature_rule else Reason.MISSING_ATTESTATION
    elif wanted:  # all-of, partly met
        detail = f"all-of: {what} by {', '.join(wanted)} but not by {', '.join(missing)}"
        reason = Reason.MISSING_SIGNER
    else:
        detail = f"no valid {_kind(rule, predicate_type)} by {_who(signers, match)}"
        others = sorted({v.predicate_type for v in found.verified if v.predicate_type != predicate_type})
        if others and signature_rule:  # predicate confusion, spelled out
            detail += f"; verified bundles are of other types ({', '.join(others)}), which do not count"
        if found.refused:
            first = found.refused[0]
            more = f" and {len(found.refused) - 1} more" if len(found.refused) > 1 else ""
            detail += f"; refused {first.referrer} ({first.reason}){more}"
        reason = _failure_reason(found, predicate_type, signature_rule, bool(others))
    return RuleResult(rule=rule, passed=False, detail=detail, reason=str(reason))


def _scan_rule(found: _Found, trust: TrustPolicy, manifest: Any, digest: str, local: LocalScan | None) -> RuleResult:
    """The policy's scan rule: a signed scan of every layer that found nothing worse than
    max_severity, by the rule's signers; or, with ``verify --scan``, a scan made here."""
    from ocimodel.scanning.findings import Severity
    from ocimodel.scanning.predicate import SCAN_PREDICATE, judge_predicate

    rule = trust.policy.scan
    limit = Severity(rule.max_severity if rule is not None else local.max_severity if local is not None else "medium")
    name = f"scan (at most {limit.value})"
    if not isinstance(manifest, Manifest):  # before a local scan: an index has no layers of its own
        return RuleResult(rule=name, passed=False, detail=f"{digest} is an index: a scan covers a model's layers",
                          reason=str(Reason.MISSING_ATTESTATION))
    if local is not None:
        worst = Severity(local.worst) if local.worst is not None else None
        if worst is None or worst.rank <= limit.rank:
            return RuleResult(rule=name, passed=True, detail=f"scanned here: worst finding {local.worst or 'none'}")
        return RuleResult(rule=name, passed=False, detail=f"scanned here: found {worst.value}, above {limit.value}",
                          reason=str(Reason.MISSING_ATTESTATION))
    assert rule is not None  # without a rule, only a local scan gets here
    layers = [layer.digest for layer in manifest.layers]
    satisfied: set[str] = set()
    problems: list[str] = []
    for bundle in found.verified:
        if bundle.predicate_type != SCAN_PREDICATE:
            continue
        problem = judge_predicate(bundle.predicate, layers, limit)
        if problem is None:
            satisfied |= bundle.signers
        else:
            problems.append(f"{bundle.referrer[:19]}: {problem}")
    signers = trust.signers_of(rule.signers)
    wanted = [n for n in signers if n in satisfied]
    missing = [n for n in signers if n not in satisfied]
    if wanted and (rule.match == "any-of" or not missing):
        return RuleResult(rule=name, passed=True, detail=f"attested by {', '.join(wanted)}")
    if problems:
        detail = f"no attested scan by {_who(signers, rule.match)} passes: {problems[0]}" + (
            f" and {len(problems) - 1} more" if len(problems) > 1 else "")
    elif wanted:
        detail = f"all-of: attested by {', '.join(wanted)} but not by {', '.join(missing)}"
    else:
        detail = f"no valid scan attestation ({SCAN_PREDICATE}) by {_who(signers, rule.match)}"
    hint = "; `ocimodel scan REF --attest` attaches one, `verify --scan` scans here instead"
    return RuleResult(rule=name, passed=False, detail=detail + hint, reason=str(Reason.MISSING_ATTESTATION))


def _evaluation_rule(found: _Found, trust: TrustPolicy, rule: Any) -> RuleResult:
    """One evaluation rule of the policy, over the evaluation records that verified
    (a signer the policy trusts, about this model): ocimodel.monitoring.policy."""
    from ocimodel.monitoring.policy import EVALUATION_PREDICATE, Signed, judge

    signed = [Signed(v.referrer, v.signers, v.predicate) for v in found.verified if v.predicate_type == EVALUATION_PREDICATE]
    verdict = judge(rule, signed, trust.signers_of(rule.signers))
    return RuleResult(rule=rule.name, passed=verdict.passed, detail=verdict.detail,
                      reason=None if verdict.passed else str(Reason.MISSING_ATTESTATION))


def _failure_reason(found: _Found, predicate_type: str, signature_rule: bool, other_types: bool) -> str:
    """The code of a rule that nothing satisfied although bundles are listed: why the
    first bundle offered for it was refused, else what was wrong with what verified."""
    # The annotation is unsigned; it only picks which refusal to report.
    offered = [r for r in found.refused if r.predicate_type == predicate_type]
    if offered:
        return offered[0].reason
    if not signature_rule:
        return Reason.MISSING_ATTESTATION
    if found.refused:
        return found.refused[0].reason
    if other_types and not any(v.predicate_type == predicate_type for v in found.verified):
        return Reason.PREDICATE_TYPE  # e.g. an SBOM offered as "the signature"
    return Reason.UNTRUSTED_SIGNATURE  # signed, but not by a signer this rule names


def _kind(rule: str, predicate_type: str) -> str:
    if rule == "signature":
        return f"signature ({predicate_type})"
    if rule == "file-signature":
        return f"file-level signature ({predicate_type})"
    return f"attestation of type {predicate_type}"


def _who(signers: list[str], match: str) -> str:
    if len(signers) == 1:
        return signers[0]
    return ("any of " if match == "any-of" else "all of ") + ", ".join(signers)


def check_trusted_root(path: str | os.PathLike[str] | None) -> Path | None:
    """A trusted root that cannot be read fails closed, before anything is verified (19)."""
    if path is None:
        return None
    path = Path(path)
    # A configuration error (CLI exit 2), raised before anything is verified: never allow.
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"cannot read the trusted root {path}: {exc.strerror}",
            hint="nothing was verified; give a readable trusted_root.json",
        ) from None
    try:
        document = loads_strict(data, f"trusted root {path}")
    except InvalidManifest as exc:
        raise UsageError(exc.message, hint="nothing was verified") from None
    if not isinstance(document, dict):
        raise UsageError(f"trusted root {path} is not a JSON object", hint="nothing was verified")
    return path
