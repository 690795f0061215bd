"""A model's licenses: declared in its card, found in its files, carried from its base
models, and the verdict of a policy's ``licenses:`` rules (docs/licenses.md).

    import ocimodel
    report = ocimodel.license_report("localhost:5000/team/sentiment:1.0", policy="policy.yaml")
    if not report.allowed: print(report.verdict.reasons)

A path that exists here is read as a model directory (its card file ``ocimodel.yaml``,
its files); anything else is a reference. Base models are followed through the cards'
``base_models`` (pinned digests when recorded), at most MAX_BASE_DEPTH generations up."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ocimodel.api.common import DEFAULT_TAG, as_reference, model_manifest, open_store, read_config
from ocimodel.errors import NotAModel, OcimodelError, UsageError
from ocimodel.licensing.detect import LICENSE_NAMES, MAX_LICENSE_BYTES, from_hf_license, identify
from ocimodel.licensing.expression import leaves, parse
from ocimodel.licensing.policy import LicenseRule, Verdict, judge
from ocimodel.metadata.card import ModelCard
from ocimodel.metadata.encoding import read_card
from ocimodel.oci.reference import parse_reference
from ocimodel.packaging.kitfile import is_modelkit
from ocimodel.transport.connection import ConnectionOptions

PathLike = str | os.PathLike[str]
MAX_BASE_DEPTH = 8
MAX_BASE_MODELS = 64
_TEXT_SUFFIXES = (".md", ".txt", ".rst", "")
# Tar layers are read for license texts in memory, so within bounds: a layer larger than
# this is taken for weights and not read; what one decompresses to, its member count, and
# the license-like text kept from all layers are capped too.
MAX_ARCHIVE_LAYER_BYTES = 64 << 20
MAX_ARCHIVE_READ_BYTES = 256 << 20
MAX_ARCHIVE_MEMBERS = 10_000
MAX_LICENSE_TOTAL_BYTES = 8 << 20
_FRONT_MATTER_LICENSE = re.compile(r"^license:\s*['\"]?([^'\"\s#]+)", re.MULTILINE)


class DetectedLicense(BaseModel):
    file: str = Field(description="The file, relative to the model root.")
    license: str = Field(description="SPDX id, or LicenseRef- id of ours (docs/licenses.md).")
    confidence: float = Field(description="Share of the license's distinctive phrases found (1.0: all).")
    how: str = Field(description="text: the license text; front-matter: a README's `license:`.")


class BaseModelLicenses(BaseModel):
    reference: str
    digest: str | None = None
    licenses: list[str] = Field(default_factory=list, description="Declared in the base model's card.")
    readable: bool = Field(description="Whether its card could be read (hf:// and unreachable bases cannot).")
    child: str = Field(description="The model whose card names it.")


class LicenseReport(BaseModel):
    """``ocimodel license``: what a model is licensed under, and whether a policy allows it."""

    target: str
    digest: str | None = None
    declared: list[str] = Field(default_factory=list, description="Licenses in the model card.")
    detected: list[DetectedLicense] = Field(default_factory=list)
    base_models: list[BaseModelLicenses] = Field(default_factory=list)
    findings: list[str] = Field(default_factory=list, description="Contradictions and unreadable sources.")
    verdict: Verdict | None = Field(default=None, description="With a policy: its licenses rule's verdict.")
    allowed: bool = Field(description="False only when a policy's licenses rule denies the model.")


def license_report(connection: ConnectionOptions, target: PathLike, *, policy: PathLike | None = None) -> LicenseReport:
    """The licenses of a model directory or of the model at a reference, judged by the
    ``licenses:`` section of ``policy`` when given (UsageError if it has none)."""
    rules = _rules(policy) if policy is not None else None
    text = os.fspath(target)
    if os.path.lexists(text) and not text.startswith("oci:"):
        report = _local(Path(text))
    elif text in (".", "..") or text.startswith(("/", "./", "../", "~")):
        # Written as a path and missing: a typo, not a reference to look up on Docker Hub.
        raise UsageError(f"{text} does not exist", hint="name a model directory, or a model (registry/repo:tag, oci:DIR:TAG)")
    else:
        report = _remote(connection, text)
    return _finish(connection, report, rules)


def _finish(connection: ConnectionOptions, report: LicenseReport, rules: LicenseRule | None) -> LicenseReport:
    declared = [(e, "card") for e in report.declared]
    _contradictions(report)
    if rules is None or rules.base_models:
        _bases(connection, report)
    if rules is not None:
        applied = declared + [(d.license, d.file) for d in report.detected if d.confidence == 1.0]
        if rules.base_models:
            for base in report.base_models:
                if not base.readable or not base.licenses:
                    applied.append(("", f"base model {base.reference}"))  # unknown: nothing to judge
                applied += [(e, f"base model {base.reference}") for e in base.licenses]
        report.verdict = judge(_dedupe(applied), rules)
        report.allowed = report.verdict.allowed
    return report


def judge_stored(connection: ConnectionOptions, store: Any, shown: str, root: Any, manifest_bytes: bytes,
                 rules: LicenseRule) -> LicenseReport:
    """The report and verdict for the manifest ``root`` (verified bytes ``manifest_bytes``)
    of an open store: what `verify` and `pull --verify` judge a policy's licenses rule by,
    on exactly the digest they verify. Raises NotAModel for an index."""
    report = _from_store(store, shown, root, manifest_bytes)
    return _finish(connection, report, rules)


def detected_in(connection: ConnectionOptions, reference: str) -> list[DetectedLicense]:
    """The licenses found in the files of the model at ``reference`` (a pinned digest, for
    `sbom`), each file read only after its layer digest is checked."""
    ref = as_reference(reference)
    with open_store(connection, ref) as store:
        root = store.resolve(ref.reference or DEFAULT_TAG)
        return _from_store(store, str(ref), root, store.fetch_manifest(root)).detected


def _rules(policy: PathLike) -> LicenseRule:
    from ocimodel.trust.policy import load_policy

    loaded = load_policy(policy)
    if loaded.licenses is None:
        raise UsageError(f"policy {os.fspath(policy)} has no licenses: section",
                         hint="add licenses: {allow: [...], deny: [...], unknown: deny}")
    return loaded.licenses


def _dedupe(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    return [p for p in pairs if not (p in seen or seen.add(p))]


# -- a directory on this machine ----------------------------------------------------------


def _local(path: Path) -> LicenseReport:
    from ocimodel.metadata.sources import find_card_file, load_card_file

    card_path = find_card_file(path)
    card = load_card_file(card_path) if card_path is not None else ModelCard()
    report = LicenseReport(target=str(path), declared=list(card.licenses or []), allowed=True)
    report.base_models = [_base_entry(b, str(path)) for b in card.base_models or []]
    root = path if path.is_dir() else path.parent
    for name in ("Kitfile", "kitfile", ".kitfile"):  # the names KitOps reads
        if (root / name).is_file():
            report.declared += [e for e in _kitfile_licenses(root / name, report) if e not in report.declared]
            break
    files = sorted(p for p in (root.rglob("*") if path.is_dir() else [path]) if p.is_file() and not p.is_symlink())
    for file in files:
        rel = file.relative_to(root).as_posix()
        if file.stat().st_size > MAX_LICENSE_BYTES or not _worth_reading(rel):
            continue
        data = file.read_bytes()
        report.detected += _detect(rel, data)
    return report


def _kitfile_licenses(path: Path, report: LicenseReport) -> list[str]:
    from ocimodel.metadata.kitcard import kitfile_card
    from ocimodel.strict_yaml import StrictYamlError, loads_yaml_strict

    try:
        fields = kitfile_card(loads_yaml_strict(path.read_bytes()[:MAX_LICENSE_BYTES + 1], max_bytes=MAX_LICENSE_BYTES))
    except (StrictYamlError, OSError) as exc:
        report.findings.append(f"{path.name}: cannot be read ({exc}); its licenses are not included")
        return []
    report.findings += [p for p in fields["card_problems"] if "licens" in p]
    return list(fields["card"].get("licenses", []))


def _worth_reading(relpath: str) -> bool:
    """License-like names, and any small text file (a license can have any name); weights,
    archives and code are not license texts."""
    name = relpath.rsplit("/", 1)[-1]
    return bool(LICENSE_NAMES.match(name)) or os.path.splitext(name)[1].lower() in _TEXT_SUFFIXES


def _detect(relpath: str, data: bytes) -> list[DetectedLicense]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return []
    out = []
    name = relpath.rsplit("/", 1)[-1].lower()
    if name.startswith("readme") and text.startswith("---"):
        end = text.find("\n---", 3)
        match = _FRONT_MATTER_LICENSE.search(text[3:end] if end > 0 else "")
        if match:
            out.append(DetectedLicense(file=relpath, license=from_hf_license(match.group(1)), confidence=1.0,
                                       how="front-matter"))
    found = identify(text)
    if found is not None:
        out.append(DetectedLicense(file=relpath, license=found.license, confidence=found.confidence, how="text"))
    return out


# -- a model at a reference ---------------------------------------------------------------


def _remote(connection: ConnectionOptions, text: str) -> LicenseReport:
    ref = as_reference(text)
    with open_store(connection, ref) as store:
        root = store.resolve(ref.reference or DEFAULT_TAG)
        return _from_store(store, str(ref), root, store.fetch_manifest(root))


def _from_store(store: Any, shown: str, root: Any, manifest_bytes: bytes) -> LicenseReport:
    from ocimodel.packaging.unpack import plan_files

    manifest = model_manifest(manifest_bytes, root, shown)
    config = read_config(store, manifest.config)
    if is_modelkit(manifest):
        # A ModelKit's licenses are its Kitfile's (package, model, parts, code, datasets),
        # and the texts in its layers: tar layers (each Kitfile entry is one), read below.
        from ocimodel.metadata.kitcard import kitfile_card
        from ocimodel.packaging.kitfile import plan_modelkit

        fields = kitfile_card(config)
        report = LicenseReport(target=shown, digest=root.digest, declared=fields["card"].get("licenses", []), allowed=True)
        report.findings += [p for p in fields["card_problems"] if "licens" in p]
        try:
            planned_files = plan_modelkit(manifest, config)  # every path checked before a byte is read
        except NotAModel as exc:  # layers pull would refuse too (zstd without zstandard...)
            report.findings.append(f"the ModelKit's layers were not read: {exc.message}")
            planned_files = []
    else:
        card = read_card(config, manifest.annotations or {})
        report = LicenseReport(target=shown, digest=root.digest, declared=list(card.card.licenses or []), allowed=True)
        report.findings += [f"card: {p}" for p in card.problems if "licenses" in p]
        report.base_models = [_base_entry(b, shown) for b in card.card.base_models or []]
        planned_files = plan_files(manifest)
    budget = [MAX_LICENSE_TOTAL_BYTES]
    for planned in planned_files:
        if planned.streamed:
            report.detected += _from_archive(store, planned, report, budget)
        elif planned.relpath and planned.descriptor.size <= MAX_LICENSE_BYTES and _worth_reading(planned.relpath):
            report.detected += _detect(planned.relpath, _verified_bytes(store, planned.descriptor))
    return report


def _verified_bytes(store: Any, layer: Any) -> bytes:
    from ocimodel.targets.copy import verified

    with store.open_blob(layer) as chunks:
        return b"".join(verified(chunks, layer))  # raises on bytes that are not the digest's


def _from_archive(store: Any, planned: Any, report: LicenseReport, budget: list[int]) -> list[DetectedLicense]:
    """The license texts inside a tar layer (a ModelKit entry, a ModelPack directory) or a
    compressed one-file layer: read in memory, never written, under the caps a pull applies
    (member names and types checked, docs/threats.md 10) and tighter ones of ours. Nothing
    read is judged before the whole layer has matched its digest."""
    from ocimodel.oci.targuard import ArchiveTooLarge, ExtractLimits
    from ocimodel.packaging.archive import iter_member_bytes
    from ocimodel.targets.copy import verified

    layer = planned.descriptor
    where = planned.relpath or f"layer {layer.digest[:19]}"
    if layer.size > MAX_ARCHIVE_LAYER_BYTES:
        return []  # weights, not license texts (docs/licenses.md says so)
    if planned.packed is not None and not _worth_reading(planned.relpath):
        return []  # one compressed file, by its name no text: not even decompressed
    texts: list[tuple[str, bytes]] = []
    limits = ExtractLimits(max_total_bytes=MAX_ARCHIVE_READ_BYTES, max_members=MAX_ARCHIVE_MEMBERS)
    try:
        with store.open_blob(layer) as chunks:
            stream = verified(chunks, layer)
            if planned.packed is not None:
                members = iter_member_bytes(stream, compression=planned.packed, single=planned.relpath,
                                            max_bytes=MAX_LICENSE_BYTES, label=where, limits=limits)
            else:
                members = iter_member_bytes(stream, compression=planned.archive, max_bytes=MAX_LICENSE_BYTES,
                                            label=where, prefix=planned.relpath or None,
                                            names_from=planned.names_from, limits=limits)
            for name, data in members:
                if data is None or not _worth_reading(name):
                    continue
                if len(data) > budget[0]:
                    report.findings.append(f"{name}: not read, more than {MAX_LICENSE_TOTAL_BYTES} bytes of text files in all")
                    continue
                budget[0] -= len(data)
                texts.append((name, data))
            for _ in stream:  # what follows the archive (padding): hashed too
                pass
    except ArchiveTooLarge:
        report.findings.append(f"{where}: not read for license texts (holds more than {MAX_ARCHIVE_READ_BYTES} bytes "
                               f"or {MAX_ARCHIVE_MEMBERS} members)")
        return []
    # The stream has ended and its digest matched (verified raises otherwise): now judge.
    return [found for name, data in texts for found in _detect(name, data)]


# -- base models ----------------------------------------------------------------------------


def _base_entry(base: Any, child: str) -> BaseModelLicenses:
    return BaseModelLicenses(reference=base.reference, digest=base.digest, readable=False, child=child)


def _bases(connection: ConnectionOptions, report: LicenseReport) -> None:
    """Read each base model's card, and its bases in turn (cycles and depth bounded)."""
    queue = [(b, 1) for b in report.base_models]
    done: list[BaseModelLicenses] = []
    seen: set[str] = set()
    while queue and len(done) < MAX_BASE_MODELS:
        base, depth = queue.pop(0)
        key = base.digest or base.reference
        if key in seen:
            continue
        seen.add(key)
        done.append(base)
        try:
            ref = parse_reference(base.reference.removeprefix("oci://"))
        except OcimodelError:
            report.findings.append(f"base model {base.reference}: not an OCI reference; its licenses are unknown")
            continue
        if base.digest:
            ref = ref.with_digest(base.digest)
        try:
            with open_store(connection, ref) as store:
                root = store.resolve(ref.reference or DEFAULT_TAG)
                manifest = model_manifest(store.fetch_manifest(root), root, str(ref))
                card = read_card(read_config(store, manifest.config), manifest.annotations or {}).card
        except OcimodelError as exc:
            report.findings.append(f"base model {base.reference}: cannot be read ({exc.message}); its licenses are unknown")
            continue
        base.readable, base.digest, base.licenses = True, root.digest, list(card.licenses or [])
        if depth < MAX_BASE_DEPTH:
            queue += [(_base_entry(b, base.reference), depth + 1) for b in card.base_models or []]
    report.base_models = done


# -- declared against detected ----------------------------------------------------------------


def _contradictions(report: LicenseReport) -> None:
    """A license text in the model (found whole) that no declared expression names: the
    card says one thing, the files another (`--license MIT` over an Apache-2.0 LICENSE)."""
    if not report.declared:
        return
    named: set[str] = set()
    for expression in report.declared:
        try:
            named |= {leaf.license.lower() for leaf in leaves(parse(expression))}
        except ValueError:
            continue
    for found in report.detected:
        if found.confidence == 1.0 and found.license.lower() not in named:
            report.findings.append(
                f"{found.file} is {found.license} ({'its text' if found.how == 'text' else 'README license:'}), "
                f"which the declared license{'s' if len(report.declared) > 1 else ''} "
                f"{', '.join(report.declared)} do{'' if len(report.declared) > 1 else 'es'} not name"
            )


__all__ = ["BaseModelLicenses", "DetectedLicense", "LicenseReport", "detected_in", "judge_stored", "license_report"]
