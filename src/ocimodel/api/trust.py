"""Signatures, attestations and verification.

    import ocimodel
    ocimodel.generate_key_pair("release.key", "release.pub")
    client = ocimodel.Client()
    client.sign("localhost:5000/team/sentiment:1.0", key="release.key")
    decision = client.verify("localhost:5000/team/sentiment:1.0", keys=["release.pub"])
    assert decision.allowed, decision.lines()
    client.pull(ref, "./out", verify=ocimodel.api.trust.verify_hook(policy="policy.yaml"))

Signatures and attestations are Sigstore bundles stored as referrers of the model, as
cosign v3 stores them; a tag is resolved to a digest once, and everything after that is
about the digest (docs/threats.md 1)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ocimodel.api.common import DEFAULT_TAG, as_reference, open_store, read_config
from ocimodel.errors import NotFound, UsageError
from ocimodel.metadata.encoding import read_card
from ocimodel.oci.models import Descriptor, Manifest, parse_manifest
from ocimodel.oci.reference import LayoutReference, Reference
from ocimodel.outputs import check_output, is_stdout, write_output
from ocimodel.signing import keys as signing_keys
from ocimodel.signing.bundle import unverified_statement
from ocimodel.signing.errors import FileSignatureUnsupported, Reason, VerificationFailed
from ocimodel.signing.files_statement import (
    MODEL_SIGNING_PREDICATE,
    check_resources,
    files_of_manifest,
)
from ocimodel.signing.statement import attestation_statement
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.trust import attest as attestations
from ocimodel.trust.policy import Policy, TrustPolicy, load_policy, policy_for
from ocimodel.trust.sign import BundleSigner, KeylessSigner, KeySigner, attest_model, sign_model
from ocimodel.trust.store import StoredBundle, read_bundles
from ocimodel.trust.verify import (
    Decision,
    KeylessOptions,
    LocalScan,
    PolicyDenied,
    RuleResult,
    check_trusted_root,
    evaluate,
    verify_bundle,
)

PathLike = str | os.PathLike[str]


class SignedBundle(BaseModel):
    predicate_type: str
    referrer: str  # digest of the bundle referrer manifest


class SignResult(BaseModel):
    reference: str
    digest: str  # the model's manifest digest: what was signed
    signer: str
    bundles: list[SignedBundle]


class AttestResult(BaseModel):
    reference: str
    digest: str
    signer: str
    predicate_type: str
    referrer: str


class ExportSignatureResult(BaseModel):
    reference: str
    digest: str
    format: str
    referrer: str
    path: str
    # File-level bundles about exactly this manifest's files (and, with trusted signers,
    # verified by one of them); with several, the newest is exported.
    candidates: int
    verified: bool  # signature checked against the trusted signers given
    signers: list[str]  # who signed it, by the policy's names; empty when not verified


class KeyPairResult(BaseModel):
    private_key: str
    public_key: str
    key_hint: str  # sha256 of the public key's PEM: the hint bundles carry
    encrypted: bool


def sign(
    connection: ConnectionOptions,
    reference: str,
    *,
    key: PathLike | None = None,
    password: str | bytes | None = None,
    identity_token: str | None = None,
    trust_config: PathLike | None = None,
    staging: bool = False,
    file_signature: bool = True,
) -> SignResult:
    """Sign the model at ``reference``: a cosign signature of its manifest digest and (with
    ``file_signature``) an OpenSSF model-signing statement over its files, each stored as a
    bundle referrer. With ``key`` (ECDSA P-256 PEM; ``password`` or $OCIMODEL_KEY_PASSWORD
    if encrypted) the bundles are key bundles; without, keyless through Sigstore."""
    signer = _signer(key, password, identity_token, trust_config, staging)
    ref = as_reference(reference)
    with open_store(connection, ref, for_write=True) as target:
        root = target.resolve(ref.reference or DEFAULT_TAG)
        data = target.fetch_manifest(root)
        written = sign_model(target, root, data, signer, file_signature=file_signature, name=_fallback_name(ref))
    return SignResult(
        reference=str(ref),
        digest=root.digest,
        signer=signer.description,
        bundles=[SignedBundle(predicate_type=w.predicate_type, referrer=w.referrer.digest) for w in written],
    )


def attest(
    connection: ConnectionOptions,
    reference: str,
    *,
    predicate_file: PathLike | None = None,
    predicate_type: str | None = None,
    predicate: Mapping[str, Any] | None = None,
    provenance: bool = False,
    source_dir: PathLike | None = None,
    env: Mapping[str, str] | None = None,
    key: PathLike | None = None,
    password: str | bytes | None = None,
    identity_token: str | None = None,
    trust_config: PathLike | None = None,
    staging: bool = False,
) -> AttestResult:
    """Attest something about the model at ``reference`` and store the signed statement as
    a bundle referrer.

    Either a predicate (``predicate_file`` or ``predicate``) with its ``predicate_type``
    URI, or ``provenance=True``: SLSA provenance v1 for the current build (GitHub Actions
    from its GITHUB_* variables, else a local build from git in ``source_dir``), with the
    model's datasets and base models as materials."""
    given = sum(x is not None for x in (predicate_file, predicate)) + bool(provenance)
    if given != 1:
        raise UsageError("attest needs exactly one of a predicate file, a predicate, or provenance")
    if provenance:
        if predicate_type not in (None, attestations.SLSA_PROVENANCE_V1):
            raise UsageError(f"provenance is of type {attestations.SLSA_PROVENANCE_V1}, not {predicate_type}")
        predicate_type = attestations.SLSA_PROVENANCE_V1
    elif predicate_type is None:
        raise UsageError("an attestation needs its predicate type (a URI)", hint="e.g. --type https://cyclonedx.org/bom")
    predicate_type = attestations.check_predicate_type(predicate_type)
    body = attestations.load_predicate(predicate_file) if predicate_file is not None else dict(predicate or {})
    signer = _signer(key, password, identity_token, trust_config, staging)
    ref = as_reference(reference)
    with open_store(connection, ref, for_write=True) as target:
        root = target.resolve(ref.reference or DEFAULT_TAG)
        if provenance:
            body = attestations.provenance(_card_of(target, root), env=env, source_dir=source_dir)
        statement = attestation_statement(root.digest, predicate_type, body)
        written = attest_model(target, root, statement, signer, name=_fallback_name(ref))
    return AttestResult(
        reference=str(ref), digest=root.digest, signer=signer.description,
        predicate_type=predicate_type, referrer=written.referrer.digest,
    )


def verify(
    connection: ConnectionOptions,
    reference: str,
    *,
    keys: Sequence[PathLike] = (),
    identities: Sequence[tuple[str, str]] = (),
    policy: Policy | PathLike | None = None,
    trusted_root: PathLike | None = None,
    offline: bool = True,
    scan: bool = False,
) -> Decision:
    """Decide whether the model at ``reference`` is allowed by ``policy`` (a Policy or a
    YAML / JSON file), or else by "signed by any of ``keys`` / ``identities``" (pairs of
    identity and OIDC issuer). Returns the Decision; it does not raise on deny.

    Keyless bundles are verified against ``trusted_root`` (a trusted_root.json), else the
    Sigstore production root shipped inside sigstore-python when ``offline`` (not
    refreshed; never the unchecked copy in the user cache dir), else the production root
    refreshed through TUF (network).

    ``scan``: scan the model's layers here (as :func:`ocimodel.scan` does, every byte
    verified) and judge the policy's scan rule by that instead of a signed scan; without
    a scan rule, a finding of high or worse denies."""
    trust = _trust(keys, identities, policy)
    keyless = KeylessOptions(trusted_root=check_trusted_root(trusted_root), offline=offline)
    ref = as_reference(reference)
    with open_store(connection, ref) as target:
        root = target.resolve(ref.reference or DEFAULT_TAG)
        data = target.fetch_manifest(root)
        local = None
        if scan and not isinstance(parse_manifest(data, root.media_type), Manifest):
            # An index has no layers to scan: the scan rule then fails saying so (as it
            # does for an attested scan), instead of the scan asking for a --variant.
            local = LocalScan(worst=None, digest=root.digest)
        elif scan:
            from ocimodel.api.scan import scan as scan_model

            scanned = scan_model(connection, str(ref.with_tag(None).with_digest(root.digest)))
            worst = scanned.worst()
            local = LocalScan(worst=worst.value if worst is not None else None, digest=root.digest)
        licenses = license_rule(connection, target, str(ref), root, data, trust)
        return evaluate(target, root, data, trust, reference=str(ref), keyless=keyless, local_scan=local,
                        licenses=licenses)


def license_rule(connection: ConnectionOptions, store, shown: str, root: Descriptor, manifest_bytes: bytes,
                 trust) -> RuleResult | None:
    """The policy's licenses rule over the verified manifest (None without one): its
    card, its license texts and its base models' cards (``options`` reaches them)."""
    rules = trust.policy.licenses
    if rules is None:
        return None
    from ocimodel.api.licenses import judge_stored
    from ocimodel.errors import OcimodelError

    name = "licenses"
    try:
        report = judge_stored(connection, store, shown, root, manifest_bytes, rules)
    except OcimodelError as exc:  # an index, or a card or file that cannot be read
        return RuleResult(rule=name, passed=False, detail=f"cannot judge the licenses: {exc.message}",
                          reason=str(Reason.LICENSE_DENIED))
    verdict = report.verdict
    assert verdict is not None
    if verdict.allowed:
        judged = ", ".join(dict.fromkeys(j.expression for j in verdict.judged if j.expression)) or "none"
        warned = f" (warning: {'; '.join(verdict.warnings)})" if verdict.warnings else ""
        return RuleResult(rule=name, passed=True, detail=f"allowed: {judged}{warned}")
    return RuleResult(rule=name, passed=False, detail="; ".join(verdict.reasons), reason=str(Reason.LICENSE_DENIED))


def verify_hook(
    *,
    keys: Sequence[PathLike] = (),
    identities: Sequence[tuple[str, str]] = (),
    policy: Policy | PathLike | None = None,
    trusted_root: PathLike | None = None,
    offline: bool = True,
    options: ConnectionOptions | None = None,
) -> Callable[[Any, Descriptor, bytes], None]:
    """A ``verify=`` hook for :func:`ocimodel.pull`: it judges the digest pull resolved,
    before any file is downloaded, and raises :class:`PolicyDenied` (a
    VerificationFailed) when the policy denies. Keys and the policy are loaded now, so a
    wrong path fails before the pull starts."""
    trust = _trust(keys, identities, policy)
    keyless = KeylessOptions(trusted_root=check_trusted_root(trusted_root), offline=offline)

    def hook(source, root: Descriptor, manifest_bytes: bytes) -> None:
        shown = f"{source.name}@{root.digest}"
        licenses = license_rule(options or ConnectionOptions(), source, shown, root, manifest_bytes, trust)
        decision = evaluate(source, root, manifest_bytes, trust, reference=shown, keyless=keyless, licenses=licenses)
        if not decision.allowed:
            raise PolicyDenied(decision)

    return hook


def export_signature(
    connection: ConnectionOptions,
    reference: str,
    output: PathLike,
    *,
    fmt: str = "model-signing",
    referrer: str | None = None,
    keys: Sequence[PathLike] = (),
    identities: Sequence[tuple[str, str]] = (),
    policy: Policy | PathLike | None = None,
    trusted_root: PathLike | None = None,
    offline: bool = True,
    overwrite: bool = False,
) -> ExportSignatureResult:
    """Write the model's file-level (OpenSSF model-signing) bundle to ``output``, so that
    ``model_signing verify key DIR --signature OUTPUT --public_key PUB`` checks a pulled
    copy of the model.

    Anyone who can push can attach a bundle, and its ``created`` annotation is not signed,
    so the choice never rests on it alone. Only bundles whose statement lists exactly this
    manifest's files are candidates. With trusted signers (``keys``, ``identities`` or a
    ``policy``, as for :func:`verify`) only candidates whose signature verifies with one of
    them count, and the newest of those is written. Without signers the signature is not
    checked (model_signing, or :func:`verify`, does that), and more than one candidate is
    refused as ambiguous: pass a key, or ``referrer`` to name one.

    ``output`` is a new regular file, or an existing one with ``overwrite``; a symlink,
    directory, fifo, socket or device there is refused (:class:`UnsafeOutput`) and left
    alone. ``"-"`` writes the bundle to standard output."""
    if fmt != "model-signing":
        raise UsageError(f"unknown signature format {fmt!r}: the one format is model-signing")
    check_output(output, replace=overwrite, example="model.sig")
    trust = _trust(keys, identities, policy) if (keys or identities or policy is not None) else None
    keyless = KeylessOptions(trusted_root=check_trusted_root(trusted_root), offline=offline)
    ref = as_reference(reference)
    with open_store(connection, ref) as target:
        root = target.resolve(ref.reference or DEFAULT_TAG)
        data = target.fetch_manifest(root)
        found = [
            b for b in read_bundles(target, root.digest)
            if isinstance(b, StoredBundle) and b.predicate_type == MODEL_SIGNING_PREDICATE
        ]
    if referrer is not None:
        found = [b for b in found if b.referrer.digest == referrer]
    named = f" named {referrer}" if referrer else ""
    if not found:
        raise NotFound(
            f"{ref} ({root.digest}) has no file-level signature{named}",
            hint="sign it with `ocimodel sign` (the file-level signature is on by default)",
        )
    manifest = parse_manifest(data, root.media_type)
    if not isinstance(manifest, Manifest):
        raise UsageError(f"{root.digest} is an index: a file-level signature describes a model manifest")
    try:
        files = files_of_manifest(manifest)
    except FileSignatureUnsupported as exc:
        raise UsageError(f"{ref} ({root.digest}): {exc.message}", hint=exc.hint) from None
    candidates: list[tuple[StoredBundle, list[str]]] = []
    refused: list[tuple[str, VerificationFailed]] = []
    for bundle in found:
        try:
            if trust is None:
                check_resources(unverified_statement(bundle.bundle), files)
                signers: list[str] = []
            else:
                verified = verify_bundle(bundle, trust, root.digest, manifest, keyless)
                if verified.predicate_type != MODEL_SIGNING_PREDICATE:
                    raise VerificationFailed(Reason.PREDICATE_TYPE, "not a file-level signature")
                signers = sorted(verified.signers)
        except VerificationFailed as exc:
            refused.append((bundle.referrer.digest, exc))
            continue
        candidates.append((bundle, signers))
    if not candidates:
        by = " by a trusted signer" if trust is not None else ""
        digest, first = refused[0]
        more = f" and {len(refused) - 1} more" if len(refused) > 1 else ""
        raise VerificationFailed(
            first.reason,
            f"{ref} ({root.digest}) has no file-level signature{named} of its files{by}: "
            f"refused {digest} ({first.reason}: {first.message}){more}",
            hint="`ocimodel verify` shows every bundle and why it was refused",
        )
    if trust is None and len(candidates) > 1:
        raise UsageError(
            f"{ref} ({root.digest}) has {len(candidates)} file-level signatures of its files; "
            "which one to export depends on who you trust",
            hint="pass --key PUB (or --certificate-identity / --certificate-oidc-issuer, or --policy) "
            "to export the one your trusted signer made, or --referrer DIGEST",
        )
    chosen, signers = max(candidates, key=lambda c: (c[0].created or "", c[0].referrer.digest))
    if not is_stdout(output):
        Path(output).parent.mkdir(parents=True, exist_ok=True)
    write_output(output, chosen.bundle, replace=overwrite, example="model.sig")  # public: 0644
    return ExportSignatureResult(
        reference=str(ref), digest=root.digest, format=fmt, referrer=chosen.referrer.digest,
        path=os.fspath(output), candidates=len(candidates), verified=trust is not None, signers=signers,
    )


def generate_key_pair(
    private_key: PathLike = "ocimodel.key",
    public_key: PathLike = "ocimodel.pub",
    password: str | bytes | None = None,
    *,
    overwrite: bool = False,
) -> KeyPairResult:
    """Write a new ECDSA P-256 key pair: PKCS#8 PEM private key (mode 0600; encrypted when
    ``password`` is given) and PEM public key, as cosign and model-signing read them. An
    existing key file is replaced only with ``overwrite``; a symlink, fifo, socket or
    device at either path is refused and left alone."""
    key = signing_keys.generate_key_pair(private_key, public_key, password or None, overwrite=overwrite)
    return KeyPairResult(
        private_key=str(private_key), public_key=str(public_key),
        key_hint=signing_keys.key_hint(key), encrypted=bool(password),
    )


# -- helpers ----------------------------------------------------------------------------


def _signer(key, password, identity_token, trust_config, staging) -> BundleSigner:
    if key is not None:
        if identity_token is not None or staging or trust_config is not None:
            raise UsageError("sign with a key or keyless, not both", hint="drop --key, or the keyless options")
        return KeySigner(signing_keys.load_private_key(key, password))
    return KeylessSigner(
        identity_token=identity_token, trust_config=Path(trust_config) if trust_config else None, staging=staging
    )


def record_signer(
    key: PathLike | None = None,
    password: str | bytes | None = None,
    identity_token: str | None = None,
    trust_config: PathLike | None = None,
    staging: bool = False,
) -> BundleSigner | None:
    """The signer of a record (a promotion): a key, keyless when any keyless option is
    given, else None (the record is written unsigned)."""
    if key is None and identity_token is None and trust_config is None and not staging:
        return None
    return _signer(key, password, identity_token, trust_config, staging)


def compile_policy(policy: Policy | PathLike) -> TrustPolicy:
    """A policy (a Policy or a YAML / JSON file) with its keys loaded."""
    return _trust((), (), policy)


def _trust(keys: Sequence[PathLike], identities: Sequence[tuple[str, str]], policy) -> TrustPolicy:
    if isinstance(keys, (str, os.PathLike)):
        keys = [keys]
    if policy is not None:
        if keys or identities:
            raise UsageError("give either a policy or keys / identities, not both")
        if not isinstance(policy, Policy):
            policy = load_policy(policy)
        return policy.compile()
    pairs = []
    for item in identities:
        if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) and x for x in item)):
            raise UsageError("identities are (identity, issuer) pairs")
        pairs.append(item)
    return policy_for([(str(k), k) for k in keys], pairs).compile()


def _card_of(target, root: Descriptor):
    manifest = parse_manifest(target.fetch_manifest(root), root.media_type)
    if not isinstance(manifest, Manifest):
        raise UsageError(f"{root.digest} is an index: provenance describes a model manifest")
    config = read_config(target, manifest.config)
    return read_card(config, manifest.annotations).card


def _fallback_name(ref: Reference) -> str:
    if isinstance(ref, LayoutReference):
        return ref.tag or Path(ref.path).name or "model"
    return ref.repository.rsplit("/", 1)[-1]


__all__ = [
    "AttestResult", "Decision", "ExportSignatureResult", "KeyPairResult", "Policy", "PolicyDenied",
    "SignResult", "SignedBundle", "attest", "export_signature", "generate_key_pair", "load_policy",
    "sign", "verify", "verify_hook",
]
