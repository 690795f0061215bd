"""``ocimodel sbom``: a CycloneDX 1.6 ML bill of materials of a model (docs/sbom.md).

Built with cyclonedx-python-lib (components, hashes, licenses, package URLs, the dependency
graph), which has no model card class yet: the ``modelCard`` of the model component is added
to the serialized document, and the whole document is checked against the 1.6 JSON schema
before it leaves. The same model gives the same bytes: the serial number is derived from the
manifest digest, the timestamp is the card's created time, every bom-ref is a name of ours."""

from __future__ import annotations

import json
import os
import re
import tomllib
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ocimodel.api.common import as_reference, open_store
from ocimodel.api.licenses import DetectedLicense, detected_in
from ocimodel.api.transfer import ModelInfo, inspect
from ocimodel.errors import NotAModel, OcimodelError, UsageError
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Manifest, parse_manifest
from ocimodel.targets.copy import verified
from ocimodel.transport.connection import ConnectionOptions

SBOM_PREDICATE_TYPE = "https://cyclonedx.org/bom"
# Requirement files read from the model: small text, so a larger layer is not read. Each
# is parsed as data (setup.cfg by configparser, pyproject.toml and Pipfile by tomllib);
# setup.py is a program, and is never run: what it would install is not listed.
_REQUIREMENT_FILES = ("requirements.txt", "pyproject.toml", "setup.cfg", "Pipfile")
_MAX_REQUIREMENT_BYTES = 1 << 20
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


class SbomResult(BaseModel):
    """What `ocimodel sbom --json` prints and ocimodel.sbom() returns."""

    reference: str = Field(description="The model as named.")
    digest: str = Field(description="Its manifest digest: the model the BOM describes.")
    components: int = Field(description="How many components the BOM lists (files, base models, datasets, packages).")
    output: str | None = Field(default=None, description="The file the BOM was written to, if any.")
    attestation: str | None = Field(default=None, description="The referrer digest of the signed attestation, with --attest.")
    bom: dict[str, Any] = Field(description="The CycloneDX 1.6 JSON document.")


def _hashes(digest: str | None) -> list[Any]:
    """The CycloneDX hash of an OCI digest (``sha256:`` or ``sha512:``); none for another algorithm."""
    from cyclonedx.model import HashAlgorithm, HashType

    algorithm, _, hexdigest = (digest or "").partition(":")
    known = {"sha256": HashAlgorithm.SHA_256, "sha512": HashAlgorithm.SHA_512}
    return [HashType(alg=known[algorithm], content=hexdigest)] if algorithm in known else []


def _pypi_name(name: str) -> str:
    """The purl name of a PyPI distribution: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(text: str) -> list[tuple[str, str | None, str]]:
    """(name, pinned version or None, the requirement as written) of each line of a
    requirements.txt; options (``-r``, ``--index-url``), URLs and comments are left out."""
    found = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")) or "://" in line:
            continue
        found.append(_requirement(line))
    return [r for r in found if r is not None]


def _requirement(line: str) -> tuple[str, str | None, str] | None:
    match = _NAME.match(line.split(";", 1)[0])
    if match is None:
        return None
    pinned = re.fullmatch(r"===?\s*([A-Za-z0-9.+!_-]+)", match.group(3).strip())
    return match.group(1), pinned.group(1) if pinned else None, line


def parse_pyproject(text: str) -> list[tuple[str, str | None, str]]:
    try:
        document = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):  # RecursionError: nesting past the parser's stack
        return []
    project = document.get("project")
    dependencies = project.get("dependencies") if isinstance(project, dict) else None
    if not isinstance(dependencies, list):
        return []
    return [r for r in (_requirement(d) for d in dependencies if isinstance(d, str)) if r is not None]


def parse_setup_cfg(text: str) -> list[tuple[str, str | None, str]]:
    """``[options] install_requires`` of a setup.cfg, as setuptools reads it: one requirement
    per line, or a single line of requirements separated by ``;``. A ``file:`` value (the
    requirements in another file) and anything that is not a requirement are left out."""
    import configparser

    from packaging.requirements import InvalidRequirement, Requirement

    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
        value = parser.get("options", "install_requires", fallback="")
    except configparser.Error:
        return []
    value = value.strip()
    if not value or value.startswith("file:"):
        return []
    items = value.splitlines() if "\n" in value else value.split(";")
    found = []
    for item in (i.split(" #", 1)[0].strip() for i in items):
        if not item or item.startswith("#"):
            continue
        try:
            Requirement(item)
        except InvalidRequirement:
            continue
        requirement = _requirement(item)
        if requirement is not None:
            found.append(requirement)
    return found


def parse_pipfile(text: str) -> list[tuple[str, str | None, str]]:
    """The ``[packages]`` of a Pipfile (not ``[dev-packages]``: they do not run with the
    model). ``"*"`` is any version, ``"==1.2"`` a pin; a table gives its ``version``; one
    from a git repository, a path or a file has no PyPI name to list and is left out."""
    try:
        document = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):  # RecursionError: nesting past the parser's stack
        return []
    packages = document.get("packages")
    if not isinstance(packages, dict):
        return []
    found = []
    for name, spec in packages.items():
        if isinstance(spec, dict):
            if any(k in spec for k in ("git", "path", "file", "hg", "svn", "bzr")):
                continue
            spec = spec.get("version", "*")
        if not isinstance(spec, str) or not isinstance(name, str):
            continue
        spec = spec.strip()
        requirement = _requirement(name if spec in ("", "*") else f"{name}{spec}")
        if requirement is not None:
            found.append(requirement)
    return found


_PARSERS = {"requirements.txt": parse_requirements, "pyproject.toml": parse_pyproject,
            "setup.cfg": parse_setup_cfg, "Pipfile": parse_pipfile}


def _read_requirement_files(connection: ConnectionOptions, info: ModelInfo, reference: str) -> dict[str, str]:
    """The requirement files of the model (at its top level, raw one-file layers), each
    checked against its layer digest; read from the manifest pinned by digest."""
    wanted = [f for f in info.files if f.path in _REQUIREMENT_FILES and f.size <= _MAX_REQUIREMENT_BYTES]
    if not wanted:
        return {}
    ref = as_reference(reference).with_digest(info.digest)
    texts: dict[str, str] = {}
    with open_store(connection, ref) as source:
        root = source.resolve(info.digest)
        parsed = parse_manifest(source.fetch_manifest(root), root.media_type)
        if not isinstance(parsed, Manifest):
            return {}
        for layer in parsed.layers:
            entry = next((f for f in wanted if f.digest == layer.digest), None)
            packing = mt.parse_model_layer(layer.media_type)
            if entry is None or (packing is not None and packing[1] != "raw"):
                continue
            with source.open_blob(layer) as chunks:
                data = b"".join(verified(chunks, layer))
            texts[entry.path] = data.decode("utf-8", errors="replace")
    return texts


def _license(license_id: str, acknowledgement: Any) -> Any:
    """A CycloneDX license: ``id`` for an id on its SPDX list (canonical case), else ``name``
    (our LicenseRef- ids, a README value that is no SPDX id)."""
    from cyclonedx.model.license import DisjunctiveLicense
    from cyclonedx.spdx import fixup_id

    known = fixup_id(license_id)
    return DisjunctiveLicense(id=known, acknowledgement=acknowledgement) if known else \
        DisjunctiveLicense(name=license_id, acknowledgement=acknowledgement)


def _single_licenses(expressions: Sequence[str]) -> list[str] | None:
    """The licenses of ``expressions`` when each is one license alone (no AND, OR, WITH),
    canonicalised; None otherwise."""
    from ocimodel.licensing.expression import Leaf, parse

    single = []
    for expression in expressions:
        try:
            tree = parse(expression)
        except ValueError:
            return None
        if not isinstance(tree, Leaf) or tree.exception is not None:
            return None
        single.append(tree.license)
    return single


def _found(detected: Sequence[DetectedLicense]) -> list[tuple[str, str, Any]]:
    """(file, license, acknowledgement) of each license found whole: a license text is what
    the analysis concluded, a README's ``license:`` is what its authors declared."""
    from cyclonedx.model.license import LicenseAcknowledgement

    return [(d.file, d.license, LicenseAcknowledgement.CONCLUDED if d.how == "text" else LicenseAcknowledgement.DECLARED)
            for d in detected if d.confidence == 1.0]


def build_bom(info: ModelInfo, requirement_files: Mapping[str, str],
              detected: Sequence[DetectedLicense] = ()) -> dict[str, Any]:
    """The CycloneDX 1.6 document (a JSON object) of the model ``info`` describes, with the
    licenses ``detected`` in its files."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentEvidence, ComponentType
    from cyclonedx.model.license import LicenseAcknowledgement, LicenseExpression
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    card = info.card
    # Without a name, the repository: the tag would make the BOM differ between tags.
    repository = str(as_reference(info.reference).with_tag(None).with_digest(None))
    name = card.get("name") or info.name or repository
    # CycloneDX 1.6 takes either license objects or one expression, not both. Declared
    # licenses that are single ids are objects beside the detected ones; an AND/OR/WITH
    # expression stays one (declared) expression, and the detected go to the evidence.
    declared = list(card.get("licenses") or [])
    found = _found(detected)
    single = _single_licenses(declared)
    detected_licenses = [_license(lic, ack) for lic, ack in dict.fromkeys((lic, ack) for _, lic, ack in found)]
    evidence = None
    if single is not None:
        licenses = [_license(lic, LicenseAcknowledgement.DECLARED) for lic in single] + detected_licenses
    else:
        licenses = [LicenseExpression(" AND ".join(f"({x})" if " " in x else x for x in declared),
                                      acknowledgement=LicenseAcknowledgement.DECLARED)]
        evidence = ComponentEvidence(licenses=detected_licenses) if detected_licenses else None
    model = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL, name=name, version=card.get("version"),
        description=card.get("description"), bom_ref="model",
        hashes=_hashes(info.digest),
        licenses=licenses, evidence=evidence,
        properties=[Property(name="ocimodel:manifest-digest", value=info.digest)],
    )
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"ocimodel:{info.digest}"))
    bom.metadata.component = model
    created = card.get("created")
    if created:
        bom.metadata.timestamp = datetime.fromisoformat(created)
    dependencies: list[Component] = []

    for entry in info.files:
        packing = mt.parse_model_layer(entry.media_type)
        one_file = packing is not None and packing[1] == "raw"
        file = Component(
            type=ComponentType.FILE, name=entry.path or entry.digest, bom_ref=f"file:{entry.path or entry.digest}",
            hashes=_hashes(entry.digest) if one_file else [],
            # A tar layer (a directory) carries the licenses found in the files inside it.
            licenses=[_license(lic, ack) for file, lic, ack in found
                      if file == entry.path or (entry.path and file.startswith(entry.path + "/"))],
            properties=[Property(name="ocimodel:layer-digest", value=entry.digest),
                        Property(name="ocimodel:media-type", value=entry.media_type),
                        Property(name="ocimodel:size", value=str(entry.size))],
        )
        bom.components.add(file)
        dependencies.append(file)

    datasets: list[str] = []
    for number, dataset in enumerate(card.get("datasets", [])):
        ref = f"dataset:{number}"
        datasets.append(ref)
        digest = dataset.get("digest")
        component = Component(
            type=ComponentType.DATA, name=dataset["uri"], bom_ref=ref,
            hashes=_hashes(digest),
        )
        bom.components.add(component)
        dependencies.append(component)

    for number, base in enumerate(card.get("base_models", [])):
        digest = base.get("digest")
        component = Component(
            type=ComponentType.MACHINE_LEARNING_MODEL, name=base["reference"], bom_ref=f"base-model:{number}",
            hashes=_hashes(digest),
            properties=[Property(name="ocimodel:relation", value=base.get("relation", "fine-tune"))],
        )
        bom.components.add(component)
        dependencies.append(component)

    packages: dict[str, Component] = {}

    def package(name: str, version: str | None, source: str, requirement: str | None = None) -> None:
        purl = PackageURL(type="pypi", name=_pypi_name(name), version=version)
        ref = str(purl)
        properties = [Property(name="ocimodel:source", value=source)]
        if requirement is not None and version is None:
            properties.append(Property(name="ocimodel:requirement", value=requirement))
        if ref in packages:
            packages[ref].properties.update(properties)
            return
        packages[ref] = Component(
            type=ComponentType.LIBRARY, name=_pypi_name(name), version=version, purl=purl, bom_ref=ref,
            properties=properties,
        )

    for path, text in sorted(requirement_files.items()):
        for package_name, version, line in _PARSERS[path](text):
            package(package_name, version, path, line)
    environment = card.get("environment") or {}
    for package_name, version in sorted((environment.get("packages") or {}).items()):
        package(package_name, version, "environment")
    for component in packages.values():
        bom.components.add(component)
        dependencies.append(component)
    bom.register_dependency(model, dependencies)

    document = json.loads(JsonV1Dot6(bom).output_as_string())
    document["metadata"]["component"]["modelCard"] = _model_card(card, datasets)
    if not created:  # the library stamps the time of the run: no time rather than a changing one
        document["metadata"].pop("timestamp", None)
    return document


def _model_card(card: Mapping[str, Any], datasets: list[str]) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    if card.get("task"):
        parameters["task"] = card["task"]
    if card.get("framework"):
        parameters["architectureFamily"] = card["framework"]
    if card.get("format"):
        parameters["modelArchitecture"] = card["format"]
    if datasets:
        parameters["datasets"] = [{"ref": ref} for ref in datasets]
    model_card: dict[str, Any] = {"bom-ref": "model-card"}
    if parameters:
        model_card["modelParameters"] = parameters
    metrics = []
    for key, metric in sorted((card.get("metrics") or {}).items()):
        item: dict[str, Any] = {"type": key}
        if isinstance(metric, Mapping):
            item["value"] = str(metric["value"])
            where = "/".join(str(metric[k]) for k in ("dataset", "split") if metric.get(k))
            if where:
                item["slice"] = where
        else:
            item["value"] = str(metric)
        metrics.append(item)
    if metrics:
        model_card["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    return model_card


def validate_bom(document: Mapping[str, Any]) -> None:
    """Raise if ``document`` is not valid CycloneDX 1.6 JSON (the strict schema)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))
    if error is not None:  # a defect of ours, not of the model: never write or attest it
        raise OcimodelError(f"the bill of materials is not valid CycloneDX 1.6: {error}",
                            hint="please report it with the model's card (ocimodel inspect REF --json)")


def sbom(
    connection: ConnectionOptions,
    reference: str,
    *,
    output: str | None = None,
    overwrite: bool = False,
    attest: bool = False,
    key: str | os.PathLike[str] | None = None,
    password: str | bytes | None = None,
    identity_token: str | None = None,
    trust_config: str | os.PathLike[str] | None = None,
    staging: bool = False,
) -> SbomResult:
    """The CycloneDX 1.6 ML bill of materials of the model at ``reference``; written to
    ``output`` (a file, ``-`` for standard output) when given, and attached as a signed
    attestation of type https://cyclonedx.org/bom with ``attest``."""
    try:
        import cyclonedx  # noqa: F401
    except ImportError:
        raise UsageError("the bill of materials needs cyclonedx-python-lib",
                         hint="pip install 'ocimodel[sbom]'") from None
    info = inspect(connection, reference)
    if not info.is_model or info.kind == "variants":
        raise NotAModel(f"{reference} is {info.kind_description or 'not a model'}: a bill of materials describes one model",
                        hint="name one model (a variant of an index by its digest)")
    pinned = str(as_reference(reference).with_digest(info.digest))
    document = build_bom(info, _read_requirement_files(connection, info, reference), detected_in(connection, pinned))
    validate_bom(document)
    if output is not None:
        from ocimodel.outputs import write_output
        write_output(output, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode(),
                     replace=overwrite, example="model.cdx.json")
    referrer = None
    if attest:
        from ocimodel.api.trust import attest as attest_model
        referrer = attest_model(
            connection, pinned, predicate=document, predicate_type=SBOM_PREDICATE_TYPE, key=key, password=password,
            identity_token=identity_token, trust_config=trust_config, staging=staging,
        ).referrer
    return SbomResult(reference=info.reference, digest=info.digest, components=len(document.get("components", [])),
                      output=output, attestation=referrer, bom=document)
