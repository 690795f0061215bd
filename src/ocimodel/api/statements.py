"""Everything attached to the models of a repository, read back as records: the referrers
of each tagged model, each read in full (manifest, then its one layer) on worker threads,
and each signed statement checked against a policy when one is given.

This is what ``deployments``, ``audit`` and evaluations share. A listing of many referrers
on a registry without the referrers API is one GET of the fallback index per model, then
one GET of each referrer's manifest: a record's one small layer is embedded in it (the
layer descriptor's ``data``, written by targets/referrers.push_record and checked against
the layer's digest before use), so only records written by older versions or other tools
cost a second GET, of the blob. The reads are independent and run in parallel
(threads.map_threads).

What can be trusted (docs/audit.md, "Trust marks"):

- ``trusted``: the bundle verified with a signer of the policy, and its statement is about
  this model;
- ``untrusted``: signed, but not by a signer of the policy, or it does not verify;
- ``signed``: signed, and no policy was given to check by whom;
- ``unsigned``: an in-toto statement stored without a signature (deploy with no key);
- ``malformed``: a referrer that claims to be a bundle or statement and is not one.

Nothing here is believed without those checks except what is marked as a hint: the
listing, the ``created`` annotation of a referrer, and the identity printed for a bundle
that was not verified."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ocimodel.errors import IntegrityError, InvalidManifest, NotFound, OcimodelError, UsageError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Descriptor, Manifest, parse_manifest
from ocimodel.oci.reference import LayoutReference
from ocimodel.signing import keys as signing_keys
from ocimodel.signing.bundle import load_bundle, material_kind, unverified_statement
from ocimodel.signing.errors import VerificationFailed
from ocimodel.signing.statement import Statement, check_subject, parse_statement
from ocimodel.targets.referrers import is_fallback_tag, push_record, read_small_layer
from ocimodel.targets.remote import RemoteRepository
from ocimodel.threads import map_threads
from ocimodel.trust.policy import TrustPolicy
from ocimodel.trust.sign import BundleSigner, KeylessSigner, KeySigner, model_name
from ocimodel.trust.store import RefusedBundle, read_bundle
from ocimodel.trust.verify import KeylessOptions, verify_bundle

# An in-toto statement stored without a signature: artifact type and layer media type of
# the referrer (the DSSE payload type of a signed one), and the annotation naming its
# predicate type (a hint, as on bundles; the statement inside is what counts).
UNSIGNED_STATEMENT = mt.IN_TOTO_PAYLOAD_TYPE
ANNOTATION_STATEMENT_PREDICATE = "dev.ocimodel.statement.predicateType"
MAX_STATEMENT_LAYER = 1024 * 1024  # an unsigned record is a few hundred bytes

TRUSTED, UNTRUSTED, SIGNED, UNSIGNED, MALFORMED = "trusted", "untrusted", "signed", "unsigned", "malformed"


@dataclass(frozen=True)
class Referrer:
    """One referrer of one model, read and judged."""

    subject: str  # the model's digest
    digest: str  # the referrer manifest's digest
    artifact_type: str | None
    annotations: dict[str, str]  # of the listing: hints
    created: str | None  # the referrer's created annotation: unsigned, a hint
    statement: Statement | None = None  # the statement it carries (bundles and unsigned statements)
    trust: str | None = None  # None: neither a bundle nor a statement (another kind of referrer)
    signers: tuple[str, ...] = ()  # the policy's names of who signed it, when trusted
    identity: str | None = None  # who signed, as the bundle says (unverified unless trusted)
    logged: str | None = None  # when a transparency log recorded it (keyless), RFC 3339
    detail: str | None = None  # why it is untrusted or malformed


@dataclass
class Scan:
    referrers: list[Referrer] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def reader_threads(connection) -> int:
    """Referrers read at once: as many as the connection settings allow connections
    (twice the concurrency), since each read mostly waits on the registry."""
    return max(1, 2 * connection.concurrency)


def write_unsigned(target, root: Descriptor, statement: Statement) -> Descriptor:
    """Store ``statement`` unsigned as a referrer of ``root``; its descriptor."""
    return push_record(target, root, UNSIGNED_STATEMENT, UNSIGNED_STATEMENT, statement.to_json(),
                       {ANNOTATION_STATEMENT_PREDICATE: statement.predicate_type})


def scan(
    target,
    digests: list[str],
    *,
    trust: TrustPolicy | None = None,
    keyless: KeylessOptions | None = None,
    manifests: dict[str, Any] | None = None,
    skip: tuple[str, ...] = (),
    workers: int = 8,
) -> Scan:
    """Every referrer of each model in ``digests``, read and judged (see the module
    docstring). Referrers whose artifact type is in ``skip`` are left out unread.
    ``manifests`` (digest -> parsed manifest) is needed only to check file-level
    signatures against a policy. ``workers``: referrers read at once (each read holds one
    HTTP connection while it waits)."""
    keyless = keyless or KeylessOptions()
    manifests = manifests or {}
    out = Scan()

    def listing(digest: str) -> tuple[str, list[Descriptor] | None, str | None]:
        try:
            return digest, target.referrers(digest), None
        except OcimodelError as exc:
            return digest, None, exc.message

    jobs: list[tuple[str, Descriptor]] = []
    for digest, listed, problem in map_threads(listing, digests):
        if listed is None:
            # Said, never taken as "nothing attached": an outage is not an empty record.
            out.warnings.append(f"could not list the referrers of {digest}: {problem}")
            continue
        jobs += [(digest, d) for d in listed if d.artifact_type not in skip]
    out.referrers = map_threads(lambda job: _read(target, job[0], job[1], trust, keyless, manifests), jobs, workers)
    return out


def _read(target, subject: str, listed: Descriptor, trust, keyless, manifests) -> Referrer:
    annotations = dict(listed.annotations or {})
    base = Referrer(subject=subject, digest=listed.digest, artifact_type=listed.artifact_type,
                    annotations=annotations, created=annotations.get(mt.ANNOTATION_CREATED))
    kind = listed.artifact_type or ""
    if kind.startswith(mt.BUNDLE_ARTIFACT_PREFIX):
        return _read_bundle(target, base, listed, trust, keyless, manifests)
    if kind == UNSIGNED_STATEMENT:
        return _read_unsigned(target, base, listed)
    return base


def _malformed(base: Referrer, detail: str) -> Referrer:
    return _replace(base, trust=MALFORMED, detail=detail[:500])


def _replace(base: Referrer, **changes: Any) -> Referrer:
    return Referrer(**{**base.__dict__, **changes})


def _read_bundle(target, base: Referrer, listed: Descriptor, trust, keyless, manifests) -> Referrer:
    stored = read_bundle(target, listed, base.subject)
    if isinstance(stored, RefusedBundle):
        return _malformed(base, f"{stored.reason}: {stored.detail}")
    base = _replace(base, created=stored.created or base.created)
    try:
        document = load_bundle(stored.bundle)
        statement = unverified_statement(stored.bundle)
        identity, logged = _identity(document)
    except VerificationFailed as exc:
        return _malformed(base, f"{exc.reason}: {exc.message}")
    base = _replace(base, statement=statement, identity=identity, logged=logged)
    if trust is None:
        return _replace(base, trust=SIGNED)
    try:
        verified = verify_bundle(stored, trust, base.subject, manifests.get(base.subject), keyless)
    except VerificationFailed as exc:
        return _replace(base, trust=UNTRUSTED, detail=f"{exc.reason}: {exc.message}"[:500])
    if not verified.signers:
        return _replace(base, trust=UNTRUSTED, detail="verified, but by no signer the policy names")
    return _replace(base, trust=TRUSTED, signers=tuple(sorted(verified.signers)))


def _read_unsigned(target, base: Referrer, listed: Descriptor) -> Referrer:
    """An unsigned statement referrer, read as strictly as a bundle: by digest, its one
    layer bounded and checked against its digest, its statement about this model."""
    if listed.media_type != mt.OCI_MANIFEST:
        return _malformed(base, f"listed as {listed.media_type[:80]!r}, not an OCI image manifest")
    try:
        manifest = parse_manifest(target.fetch_manifest(listed), mt.OCI_MANIFEST)
    except (InvalidManifest, IntegrityError, NotFound) as exc:
        return _malformed(base, exc.message)
    if not isinstance(manifest, Manifest) or len(manifest.layers) != 1:
        return _malformed(base, "an unsigned statement referrer has exactly one layer")
    if manifest.subject is None or manifest.subject.digest != base.subject:
        return _malformed(base, f"its subject is not {base.subject}")
    layer = manifest.layers[0]
    if layer.media_type != UNSIGNED_STATEMENT or layer.size > MAX_STATEMENT_LAYER:
        return _malformed(base, f"layer {layer.media_type[:80]!r} of {layer.size} bytes is not a statement")
    annotations = manifest.annotations or {}
    base = _replace(base, created=annotations.get(mt.ANNOTATION_CREATED) or base.created)
    try:
        statement = parse_statement(read_small_layer(target, layer, f"statement {layer.digest}"))
        check_subject(statement, base.subject)
    except VerificationFailed as exc:
        return _malformed(base, f"{exc.reason}: {exc.message}")
    except OcimodelError as exc:
        return _malformed(base, exc.message)
    return _replace(base, statement=statement, trust=UNSIGNED)


def _identity(document: dict) -> tuple[str | None, str | None]:
    """Who signed a bundle and when a log recorded it, as the bundle says: a key by its
    hint, a certificate by its subject alternative name and OIDC issuer. For display and
    for entries that were not verified; a policy decides what is trusted."""
    material = document["verificationMaterial"]
    kind = material_kind(document)
    logged = None
    entries = material.get("tlogEntries")
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        try:
            seconds = int(entries[0].get("integratedTime"))
            logged = datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")
        except (TypeError, ValueError, OverflowError, OSError):
            logged = None
    if kind == "publicKey":
        hint = material["publicKey"].get("hint") if isinstance(material["publicKey"], dict) else None
        return (f"key {str(hint)[:16]}" if hint else "a key (no hint)"), logged
    return _certificate_identity(material.get(kind)), logged


def _certificate_identity(material: Any) -> str:
    try:
        if isinstance(material, dict) and "certificates" in material:
            material = material["certificates"][0]
        raw = base64.b64decode(material["rawBytes"], validate=True)
        from cryptography import x509

        cert = x509.load_der_x509_certificate(raw)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.RFC822Name), *san.get_values_for_type(x509.UniformResourceIdentifier)]
        issuer = None
        try:
            ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")).value
            issuer = ext.value.decode("utf-8", "replace")  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - best effort: shown, never trusted
            issuer = None
        who = names[0] if names else "a certificate"
        return f"{who} ({issuer})" if issuer else who
    except Exception:  # noqa: BLE001 - best effort: shown, never trusted
        return "a certificate"


MAX_TAGS = 2000  # as `versions` and `history` read


def tagged(target, *, missing_ok: bool = True) -> dict[str, str]:
    """Every tag of the repository (not the fallback referrers tags) and the digest it
    names now, resolved in parallel."""
    listed = target.list_tags(missing_ok=False) if not missing_ok and isinstance(target, RemoteRepository) else target.list_tags()
    tags = [t for t in listed if not is_fallback_tag(t)]
    if len(tags) > MAX_TAGS:
        raise UsageError(f"{target.name} has {len(tags)} tags; over the {MAX_TAGS} this reads")

    def resolve(tag: str) -> tuple[str, str | None]:
        try:
            return tag, target.resolve(tag).digest
        except NotFound:
            return tag, None  # deleted meanwhile

    return {tag: digest for tag, digest in map_threads(resolve, tags) if digest}


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time (with a zone; a date alone is midnight UTC) as an aware datetime,
    or None when it is not one: records written by other clocks and tools are compared by
    the instant they name, not by their spelling."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        if len(text) != 10:  # a time without a zone names no instant
            return None
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


# -- writing records ----------------------------------------------------------------------


def statement_signer(key, password, keyless, identity_token, trust_config, staging) -> BundleSigner | None:
    """The signer of a record (a deployment, an evaluation): a key, keyless when asked or
    when any keyless option is given, else None (the record is written unsigned)."""
    wants_keyless = keyless or identity_token is not None or trust_config is not None or staging
    if key is not None:
        if wants_keyless:
            raise UsageError("sign with a key or keyless, not both", hint="drop --key, or the keyless options")
        return KeySigner(signing_keys.load_private_key(key, password))
    if wants_keyless:
        return KeylessSigner(identity_token=identity_token, trust_config=Path(trust_config) if trust_config else None,
                             staging=staging)
    return None


def model_display_name(store, root: Descriptor, ref) -> str:
    """The model's name for a record's bundle: its card's, else the tag or repository (the
    name is informative only, so an unreadable manifest gives the fallback)."""
    if isinstance(ref, LayoutReference):
        fallback = ref.tag or Path(ref.path).name or "model"
    else:
        fallback = ref.repository.rsplit("/", 1)[-1]
    try:
        manifest = parse_manifest(store.fetch_manifest(root), root.media_type)
    except OcimodelError:
        return fallback
    return model_name(manifest, fallback) if isinstance(manifest, Manifest) else fallback
