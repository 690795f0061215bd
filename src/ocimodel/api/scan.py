"""Scanning models for what loading them would run (issue 16; docs/scanning-cli.md).

    import ocimodel
    report = ocimodel.scan("./my-model")                        # a file or a directory
    report = ocimodel.scan("localhost:5000/team/sentiment:1.0")  # a model's layers
    if report.failed:
        for finding in report.findings: print(finding.file, finding.severity, finding.detail)

A path that exists on this machine is scanned as a path; anything else is a reference
(a registry or ``oci:`` layout). The operation does not raise on findings: ``failed``
says whether anything at or above ``fail_on`` was found. It raises IntegrityError when a
layer's bytes do not match its digest (nothing judged on such bytes is reported)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from ocimodel.api.common import DEFAULT_TAG, as_reference, model_manifest, open_store, read_config
from ocimodel.errors import NotAModel, ScanFailed, UsageError
from ocimodel.oci.kind import artifact_kind
from ocimodel.oci.models import Descriptor, Manifest, parse_manifest
from ocimodel.oci.reference import LayoutReference
from ocimodel.packaging.kitfile import is_modelkit, plan_modelkit
from ocimodel.packaging.unpack import plan_files
from ocimodel.scanning.cache import ScanCache
from ocimodel.scanning.engine import Allowlist, scan_files, scan_layers, scan_path
from ocimodel.scanning.findings import ScanReport, Severity
from ocimodel.scanning.predicate import SCAN_PREDICATE, build_predicate
from ocimodel.transport.connection import ConnectionOptions

PathLike = str | os.PathLike[str]

# The push annotation that records a push made with --allow-unsafe over a failed scan
# (signed with the manifest, shown by inspect as any annotation).
SCAN_OVERRIDE_ANNOTATION = "dev.ocimodel.scan.override"


class ScanAttestation(BaseModel):
    predicate_type: str
    referrer: str = Field(description="Digest of the bundle referrer that holds the signed scan.")
    signer: str


class ScanResult(ScanReport):
    """A :class:`ScanReport` with the verdict against ``fail_on``."""

    fail_on: Severity = Field(description="The severity at or above which the scan fails.")
    failed: bool = Field(description="Whether a finding at or above fail_on was found.")
    attestation: ScanAttestation | None = Field(default=None, description="The signed scan attached with attest=True.")


def severity(value: Severity | str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        raise UsageError(
            f"unknown severity {str(value)[:40]!r}", hint="one of " + ", ".join(s.value for s in Severity)
        ) from None


def allowlist(allow: Sequence[str] = (), allow_file: PathLike | None = None) -> Allowlist:
    if isinstance(allow, str):
        allow = [allow]
    return Allowlist.from_file(allow_file, allow) if allow_file is not None else Allowlist(allow)


def scan(
    connection: ConnectionOptions,
    target: PathLike,
    *,
    fail_on: Severity | str = Severity.HIGH,
    allow: Sequence[str] = (),
    allow_file: PathLike | None = None,
    cache: bool = True,
    trust_ranges: bool = False,
    attest: bool = False,
    key: PathLike | None = None,
    password: str | bytes | None = None,
    identity_token: str | None = None,
    trust_config: PathLike | None = None,
    staging: bool = False,
    variant: Sequence[str] | Mapping[str, str] = (),
) -> ScanResult:
    """Scan a file, a model directory, or the model at a reference, with every format
    scanner whose format the bytes show.

    ``allow`` (globs) and ``allow_file`` (one glob a line, ``#`` comments) trust callables
    the scanners reported for review (medium and below; never high or critical). Results
    for a model's layers are cached by layer digest (``cache=False`` rescans).

    On a registry, a scanner that needs only a header reads it by HTTP Range; the layer is
    then streamed once more and checked against its digest (hashed, never stored), unless
    ``trust_ranges``: the header is then taken from the registry unverified and the layer's
    report says so (an info finding ``scan.unverified-ranges``).

    ``attest=True`` (a reference only; not with ``trust_ranges``) attaches the result as a
    signed in-toto statement of type ``https://ocimodel.dev/scan/v1`` over the manifest
    digest, listing every layer digest; ``key`` or the keyless options as for
    :func:`ocimodel.attest`. ``variant`` chooses a model of a variant index, as
    :func:`ocimodel.pull` does."""
    fail_on = severity(fail_on)
    allowed = allowlist(allow, allow_file)
    scan_cache = ScanCache() if cache else None
    if os.path.lexists(os.fspath(target)) and not str(target).startswith("oci:"):
        if attest:
            raise UsageError("--attest needs a model reference: an attestation is attached to a model in a registry or layout")
        if variant:
            raise UsageError("--variant chooses a model of a variant index: a file or a directory has none")
        report = scan_path(target, allow=allowed, cache=scan_cache)
        return _result(report, fail_on)
    if _missing_path(os.fspath(target)):
        raise UsageError(f"{os.fspath(target)} does not exist",
                         hint="name a file, a model directory, or a model (registry/repo:tag, oci:DIR:TAG)")
    if attest and trust_ranges:
        raise UsageError("an attested scan reads every byte it judges verified: drop --trust-ranges to attest")
    ref = as_reference(str(target))
    # The signer first: a wrong key (or both a key and keyless options) fails before a
    # model is downloaded and scanned, not after.
    signer = _signer(key, password, identity_token, trust_config, staging) if attest else None
    with open_store(connection, ref) as store:
        root, manifest = _resolve(store, ref, variant)
        planned = plan_modelkit(manifest, read_config(store, manifest.config)) if is_modelkit(manifest) else plan_files(manifest)
        report = scan_layers(store, manifest, planned, target=str(ref), digest=root.digest, allow=allowed,
                             cache=scan_cache, trust_ranges=trust_ranges)
    result = _result(report, fail_on)
    if signer is not None:
        result.attestation = _attest(connection, ref, root, manifest, report, allowed, signer)
    return result


def _missing_path(text: str) -> bool:
    """``text`` is written as a local path (``./x``, ``/x``, ``~/x``, or ``dir/x`` without a
    tag under a directory that is here) and names nothing: a typo, which read as a
    reference would be looked up on Docker Hub, sending the name there."""
    if text.startswith("oci:"):
        return False
    if text in (".", "..") or text.startswith(("/", "./", "../", "~")):
        return True
    head, slash, _ = text.partition("/")
    return bool(slash) and ":" not in text and "@" not in text and os.path.isdir(head)


def _resolve(store, ref, variant: Sequence[str] | Mapping[str, str] = ()) -> tuple[Descriptor, Manifest]:
    from ocimodel.api.variants import choose_variant

    root = store.resolve(ref.reference or DEFAULT_TAG)
    data = store.fetch_manifest(root)
    root, data, _ = choose_variant(store, root, data, variant, str(ref))
    kind = artifact_kind(parse_manifest(data, root.media_type))
    if not kind.pullable:  # as pull says it: what this is and what a scan would need
        raise NotAModel(f"{ref} is {kind.description}, not a model", hint=f"ocimodel scan needs {kind.needed}")
    return root, model_manifest(data, root, str(ref))


def _result(report: ScanReport, fail_on: Severity) -> ScanResult:
    return ScanResult(**report.model_dump(), fail_on=fail_on, failed=report.fails(fail_on))


def _signer(key, password, identity_token, trust_config, staging):
    from ocimodel.signing import keys as signing_keys
    from ocimodel.trust.sign import KeylessSigner, KeySigner

    if key is not None:
        if identity_token is not None or staging or trust_config is not None:
            raise UsageError("sign with a key or keyless, not both", hint="drop --key, or the keyless options")
        return KeySigner(signing_keys.load_private_key(key, password))
    return KeylessSigner(identity_token=identity_token, trust_config=Path(trust_config) if trust_config else None,
                         staging=staging)


def _attest(connection, ref, root: Descriptor, manifest: Manifest, report: ScanReport, allowed: Allowlist,
            signer) -> ScanAttestation:
    """Sign the scan as an in-toto statement about exactly the manifest whose layers were
    scanned (by digest), stored as a bundle referrer as ``ocimodel attest`` stores one."""
    from ocimodel.signing.statement import attestation_statement
    from ocimodel.trust.sign import attest_model

    predicate = build_predicate(report, [layer.digest for layer in manifest.layers], allowed.patterns, allowed.digest)
    statement = attestation_statement(root.digest, SCAN_PREDICATE, predicate)
    with open_store(connection, ref, for_write=True) as store:
        written = attest_model(store, root, statement, signer, name=_fallback_name(ref))
    return ScanAttestation(predicate_type=SCAN_PREDICATE, referrer=written.referrer.digest, signer=signer.description)


def _fallback_name(ref) -> str:
    """The name a referrer index tag falls back to (as ``ocimodel attest`` names it)."""
    if isinstance(ref, LayoutReference):
        return ref.tag or Path(ref.path).name or "model"
    return ref.repository.rsplit("/", 1)[-1]


# -- the gates (push --scan, pull --scan, verify --scan) -------------------------------------


def scan_local_files(target: str, files: Sequence[tuple[str, Path]], fail_on: Severity | str = Severity.HIGH,
                     allow: Sequence[str] = (), allow_file: PathLike | None = None) -> ScanResult:
    """The files a push would upload, or a pull has staged: (name, path) pairs."""
    fail_on = severity(fail_on)
    report = scan_files(target, files, allow=allowlist(allow, allow_file))
    return _result(report, fail_on)


def refused(result: ScanResult, what: str, hint: str) -> ScanFailed:
    worst = result.worst()
    bad = [f for f in result.findings if f.severity.at_least(result.fail_on)]
    first = bad[0]
    more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    return ScanFailed(
        f"{what}: the scan found {worst.value if worst else 'nothing'} (at or above {result.fail_on.value}): "
        f"{first.file}: {first.rule}: {first.detail[:200]}{more}",
        hint=hint, report=result,
    )


def push_gate(files: Sequence[tuple[str, Path]], shown: str, *, fail_on: Severity | str, allow: Sequence[str],
              allow_file: PathLike | None, allow_unsafe: bool) -> tuple[ScanResult, dict[str, str]]:
    """The scan of the files a push would upload; raises ScanFailed before anything is
    uploaded when it fails, unless ``allow_unsafe``: the override is then recorded in the
    manifest (the annotation returned), so whoever pulls the model can see it was pushed
    over a failed scan, and what the scan found."""
    result = scan_local_files(shown, files, fail_on, allow, allow_file)
    if not result.failed:
        return result, {}
    if not allow_unsafe:
        raise refused(result, f"push of {shown} refused", "nothing was uploaded; `ocimodel scan PATH` lists every "
                      "finding; --allow-unsafe pushes anyway and records the override in the model")
    worst = result.worst()
    bad = sorted({f"{f.file}: {f.rule}" for f in result.findings if f.severity.at_least(result.fail_on)})
    record = {
        "worst": worst.value if worst else None, "failOn": result.fail_on.value,
        "findings": len([f for f in result.findings if f.severity.at_least(result.fail_on)]),
        "scannerVersion": result.scanner_version, "first": bad[:10],
    }
    return result, {SCAN_OVERRIDE_ANNOTATION: json.dumps(record, separators=(",", ":"), sort_keys=True)}


__all__ = [
    "SCAN_OVERRIDE_ANNOTATION", "ScanAttestation", "ScanResult", "push_gate", "refused", "scan", "scan_local_files",
]
