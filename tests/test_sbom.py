"""`ocimodel sbom` (issue 17, docs/sbom.md): the CycloneDX 1.6 ML-BOM of a model with base
models, datasets, metrics and code requirements passes cyclonedx-python-lib's strict 1.6 JSON
validator, names every file by its SHA-256, is the same for the same model, reads the
requirement files only after checking their digests, and attached with --attest satisfies a
policy that requires an SBOM attestation (and its absence denies)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import ocimodel
from ocimodel.api.sbom import parse_pipfile, parse_pyproject, parse_requirements, parse_setup_cfg
from ocimodel.errors import OcimodelError
from tests.test_cli import json_of, ocimodel_cli, ok

SBOM = "https://cyclonedx.org/bom"
BASE_DIGEST = "sha512:" + "b" * 128  # sha512 digests are OCI digests too
DATA_DIGEST = "sha256:" + "d" * 64
CARD = f"""\
name: sentiment
version: "1.0"
licenses: [Apache-2.0, MIT OR BSD-3-Clause]
framework: transformers
task: text-classification
metrics: {{accuracy: 0.93, f1: {{value: 0.9, dataset: sst2, split: validation}}}}
datasets: [{{uri: "hf://datasets/stanfordnlp/sst2", digest: "{DATA_DIGEST}"}}]
base_models: [{{reference: "hf://google-bert/bert-base-uncased", digest: "{BASE_DIGEST}", relation: fine-tune}}]
environment: {{python: "3.11.9", packages: {{torch: "2.3.1", Scikit_Learn: "1.5.0"}}}}
created: "2026-01-02T03:04:05Z"
"""
FILES = {
    "model.safetensors": b"weights, not really",
    "requirements.txt": b"torch==2.3.1\nnumpy>=1.26  # arrays\n-r more.txt\ntransformers[torch]==4.41.2; python_version > '3'\n",
    "pyproject.toml": b'[project]\nname = "x"\ndependencies = ["tokenizers==0.19.1", "safetensors"]\n',
    "ocimodel.yaml": CARD.encode(),
    "LICENSE": (Path(__file__).parent / "data" / "licenses" / "apache-2.0-LICENSE").read_bytes(),
}


@pytest.fixture(params=[pytest.param("registry", marks=pytest.mark.registry), "layout"])
def repo(request, tmp_path: Path) -> str:
    if request.param == "layout":
        return f"oci:{tmp_path / 'store'}"
    registry = request.getfixturevalue("registry")
    return f"{registry.host}/{request.getfixturevalue('repo_name')}"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    for name, data in FILES.items():
        (root / name).write_bytes(data)
    return root


def _strictly_valid(document: dict) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))
    assert error is None, error


def test_bom_of_a_model_with_lineage_metrics_and_requirements(repo, model):
    ocimodel.push(model, f"{repo}:1")
    result = ocimodel.sbom(f"{repo}:1")
    bom = result.bom
    _strictly_valid(bom)
    assert bom["specVersion"] == "1.6"

    main = bom["metadata"]["component"]
    assert main["type"] == "machine-learning-model" and main["name"] == "sentiment" and main["version"] == "1.0"
    assert main["hashes"] == [{"alg": "SHA-256", "content": result.digest.removeprefix("sha256:")}]
    # Declared as an expression (1.6 allows one expression, or license objects, not both):
    # the license detected in LICENSE goes to the evidence, and to the file itself.
    assert main["licenses"] == [{"expression": "Apache-2.0 AND (MIT OR BSD-3-Clause)", "acknowledgement": "declared"}]
    concluded = [{"license": {"id": "Apache-2.0", "acknowledgement": "concluded"}}]
    assert main["evidence"]["licenses"] == concluded
    card = main["modelCard"]
    assert card["modelParameters"]["task"] == "text-classification"
    assert card["modelParameters"]["architectureFamily"] == "transformers"
    assert card["modelParameters"]["datasets"] == [{"ref": "dataset:0"}]
    assert card["quantitativeAnalysis"]["performanceMetrics"] == [
        {"type": "accuracy", "value": "0.93"},
        {"type": "f1", "value": "0.9", "slice": "sst2/validation"},
    ]

    by_ref = {c["bom-ref"]: c for c in bom["components"]}
    for name, data in FILES.items():  # every file, by the SHA-256 of its bytes
        assert by_ref[f"file:{name}"]["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(data).hexdigest()}]
    assert by_ref["file:LICENSE"]["licenses"] == concluded
    assert "licenses" not in by_ref["file:model.safetensors"]
    assert by_ref["dataset:0"]["type"] == "data"
    assert by_ref["dataset:0"]["hashes"][0]["content"] == "d" * 64
    assert by_ref["base-model:0"]["type"] == "machine-learning-model"
    assert by_ref["base-model:0"]["name"] == "hf://google-bert/bert-base-uncased"
    assert by_ref["base-model:0"]["hashes"] == [{"alg": "SHA-512", "content": "b" * 128}]

    purls = {c["purl"] for c in bom["components"] if c["type"] == "library"}
    assert purls == {
        "pkg:pypi/torch@2.3.1", "pkg:pypi/numpy", "pkg:pypi/transformers@4.41.2",  # requirements.txt
        "pkg:pypi/tokenizers@0.19.1", "pkg:pypi/safetensors",  # pyproject.toml
        "pkg:pypi/scikit-learn@1.5.0",  # recorded environment, name normalized
    }
    graph = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    assert graph["model"] == set(by_ref)

    # Deterministic: again, and under another tag, the same document.
    ocimodel.tag(f"{repo}:1", "2")
    assert ocimodel.sbom(f"{repo}:2").bom == bom
    assert bom["serialNumber"].startswith("urn:uuid:") and bom["metadata"]["timestamp"].startswith("2026-01-02T03:04:05")


def test_requirement_files_are_read_only_after_their_digest_is_checked(model, tmp_path):
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model, ref)
    digest = hashlib.sha256(FILES["requirements.txt"]).hexdigest()
    evil = b"evil-package==6.6.6\n"
    (tmp_path / "store" / "blobs" / "sha256" / digest).write_bytes(evil.ljust(len(FILES["requirements.txt"]), b"#"))
    with pytest.raises(OcimodelError) as caught:  # same size: only the digest tells
        ocimodel.sbom(ref)
    assert "digest" in str(caught.value)


def test_without_the_extra_it_is_a_usage_error_naming_it(monkeypatch):
    import sys

    from ocimodel.errors import UsageError

    monkeypatch.setitem(sys.modules, "cyclonedx", None)  # as if not installed
    with pytest.raises(UsageError) as caught:
        ocimodel.sbom("oci:/nonexistent:1")
    assert "ocimodel[sbom]" in caught.value.hint


def test_requirement_parsing():
    assert parse_requirements("A_b.C==1.0\n# c\n--index-url https://x\nhttps://x/y.whl\nd ~= 2\n\n") == [
        ("A_b.C", "1.0", "A_b.C==1.0"), ("d", None, "d ~= 2"),
    ]
    assert parse_pyproject('[project]\ndependencies = ["e===3", "f[x]>=1"]\n') == [("e", "3", "e===3"), ("f", None, "f[x]>=1")]
    assert parse_pyproject("not toml [") == []


def test_setup_cfg_and_pipfile_parsing():
    # setup.cfg as setuptools reads install_requires: one per line (markers kept with their
    # line), or one line split on ";"; no interpolation of %; a file: value is not followed.
    assert parse_setup_cfg("[metadata]\nname = x%\n[options]\ninstall_requires =\n    numpy>=1.26\n"
                           "    Torch==2.3.1  # gpu\n    foo; python_version < '3.8'\n") == [
        ("numpy", None, "numpy>=1.26"), ("Torch", "2.3.1", "Torch==2.3.1"), ("foo", None, "foo; python_version < '3.8'")]
    assert parse_setup_cfg("[options]\ninstall_requires = a==1; b>2\n") == [("a", "1", "a==1"), ("b", None, "b>2")]
    assert parse_setup_cfg("[options]\ninstall_requires = file: requirements.in\n") == []
    assert parse_setup_cfg("not [ an ini") == []
    # Pipfile: [packages] only; "*" is any version; a table's version; git/path ones left out.
    assert parse_pipfile('[packages]\nrequests = "*"\nnumpy = "==1.26.4"\nflask = {version = ">=2", extras = ["async"]}\n'
                         'mine = {path = ".", editable = true}\nlib = {git = "https://x/y.git"}\n'
                         '[dev-packages]\npytest = "*"\n') == [
        ("requests", None, "requests"), ("numpy", "1.26.4", "numpy==1.26.4"), ("flask", None, "flask>=2")]
    assert parse_pipfile("not toml [") == []
    # a model's own file, nested deeper than the TOML parser recurses: no requirements, no crash
    assert parse_pipfile("[packages]\nx = " + "[" * 3000) == []
    assert parse_pyproject("[project]\ndependencies = " + "[" * 3000) == []


def test_requirements_from_setup_cfg_and_pipfile_and_setup_py_never_run(tmp_path):
    marker = tmp_path / "setup-py-ran"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.bin").write_bytes(b"x")
    (tmp_path / "m" / "setup.cfg").write_text("[options]\ninstall_requires =\n    Scikit_Learn==1.5.0\n    scipy\n")
    (tmp_path / "m" / "Pipfile").write_text('[packages]\nnumpy = "==1.26.4"\n[dev-packages]\npytest = "*"\n')
    (tmp_path / "m" / "setup.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom setuptools import setup\nsetup(install_requires=['evil==6.6.6'])\n")
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(tmp_path / "m", ref)
    bom = ocimodel.sbom(ref).bom
    _strictly_valid(bom)
    libraries = {c["purl"]: {p["name"]: p["value"] for p in c.get("properties", [])}
                 for c in bom["components"] if c["type"] == "library"}
    assert set(libraries) == {"pkg:pypi/scikit-learn@1.5.0", "pkg:pypi/scipy", "pkg:pypi/numpy@1.26.4"}
    assert libraries["pkg:pypi/scipy"] == {"ocimodel:source": "setup.cfg", "ocimodel:requirement": "scipy"}
    assert libraries["pkg:pypi/numpy@1.26.4"]["ocimodel:source"] == "Pipfile"
    assert not marker.exists()  # setup.py is a program: never run, its requirements not listed


@pytest.mark.slow
def test_sbom_attestation_is_required_by_a_policy(repo, model, tmp_path):
    ocimodel.push(model, f"{repo}:with")
    (model / "model.safetensors").write_bytes(b"other weights")
    ocimodel.push(model, f"{repo}:without")
    ocimodel.generate_key_pair(tmp_path / "k.key", tmp_path / "k.pub")
    (tmp_path / "policy.yaml").write_text(f"signers: {{k: {{key: k.pub}}}}\nattestations: [{{type: '{SBOM}', signers: [k]}}]\n")
    for tag in ("with", "without"):
        ok("sign", f"{repo}:{tag}", "--key", tmp_path / "k.key", "--no-file-signature")

    attested = json_of(ok("sbom", f"{repo}:with", "--attest", "--key", tmp_path / "k.key",
                          "-o", tmp_path / "bom.json", "--json"))
    assert attested["attestation"].startswith("sha256:")
    written = json.loads((tmp_path / "bom.json").read_text())
    _strictly_valid(written)
    assert written == attested["bom"]

    ok("verify", f"{repo}:with", "--policy", tmp_path / "policy.yaml")
    denied = ocimodel_cli("verify", f"{repo}:without", "--policy", tmp_path / "policy.yaml")
    assert denied.code == 1, str(denied)
    assert f"FAIL attestation {SBOM}: no valid attestation of type {SBOM} by k" in denied.out.splitlines()

    again = ocimodel_cli("sbom", f"{repo}:with", "-o", tmp_path / "bom.json")
    assert again.code == 2 and "already exists" in again.err  # the safe output helper: no silent overwrite
    both = ocimodel_cli("sbom", f"{repo}:with", "-o", "-", "--json")
    assert both.code == 2 and "standard output" in both.err

    # -o - with --attest: standard output is the BOM alone, the summary goes to stderr.
    piped = ok("sbom", f"{repo}:without", "--attest", "--key", tmp_path / "k.key", "-o", "-")
    _strictly_valid(json.loads(piped.out))
    assert "Attested" in piped.err
    ok("verify", f"{repo}:without", "--policy", tmp_path / "policy.yaml")


def test_declared_and_detected_licenses_of_the_model_component(tmp_path):
    """Declared single ids and the licenses found in the files, side by side on the model
    component, told apart by acknowledgement: declared (the card, a README license:) or
    concluded (a license text); strictly valid 1.6 (LicenseRef ids are names, not ids)."""
    data = Path(__file__).parent / "data" / "licenses"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "ocimodel.yaml").write_text("name: tuned\nlicenses: [mit]\n")  # any case; id canonical
    (tmp_path / "m" / "LICENSE").write_bytes((data / "apache-2.0-LICENSE").read_bytes())
    (tmp_path / "m" / "TERMS.txt").write_bytes((data / "gemma-GEMMA_TERMS_OF_USE.txt").read_bytes())
    (tmp_path / "m" / "README.md").write_text("---\nlicense: gemma\n---\n# Tuned\nUnder the Gemma Terms of Use.\n")
    (tmp_path / "m" / "model.bin").write_bytes(b"x")
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(tmp_path / "m", ref)
    bom = ocimodel.sbom(ref).bom
    _strictly_valid(bom)
    main = bom["metadata"]["component"]
    gemma = "LicenseRef-gemma-terms-of-use"
    assert sorted(json.dumps(x, sort_keys=True) for x in main["licenses"]) == sorted(json.dumps(x, sort_keys=True) for x in [
        {"license": {"id": "MIT", "acknowledgement": "declared"}},
        {"license": {"id": "Apache-2.0", "acknowledgement": "concluded"}},
        {"license": {"name": gemma, "acknowledgement": "concluded"}},
        {"license": {"name": gemma, "acknowledgement": "declared"}},
    ])
    assert "evidence" not in main
    by_ref = {c["bom-ref"]: c for c in bom["components"]}
    assert by_ref["file:TERMS.txt"]["licenses"] == [{"license": {"name": gemma, "acknowledgement": "concluded"}}]
    assert by_ref["file:README.md"]["licenses"] == [{"license": {"name": gemma, "acknowledgement": "declared"}}]


def test_licenses_found_in_a_modelkit_s_tar_layers(tmp_path):
    from tests.test_licenses import _kit_project, _layout_modelkit

    kitfile, layers = _kit_project(tmp_path)  # LICENSE (Llama 3.2) and src/TERMS (Gemma) in tar layers
    bom = ocimodel.sbom(_layout_modelkit(tmp_path / "store", kitfile, layers)).bom
    _strictly_valid(bom)
    assert {json.dumps(x, sort_keys=True) for x in bom["metadata"]["component"]["licenses"]} == {json.dumps(x, sort_keys=True) for x in [
        {"license": {"id": "Apache-2.0", "acknowledgement": "declared"}},  # the Kitfile's
        {"license": {"name": "LicenseRef-llama3.2-community-license", "acknowledgement": "concluded"}},
        {"license": {"name": "LicenseRef-gemma-terms-of-use", "acknowledgement": "concluded"}}]}
    by_ref = {c["bom-ref"]: c for c in bom["components"]}
    assert by_ref["file:src"]["licenses"] == [{"license": {"name": "LicenseRef-gemma-terms-of-use", "acknowledgement": "concluded"}}]
    assert "licenses" not in by_ref["file:models/model.gguf"]


def test_a_model_without_a_name_is_named_by_its_repository(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.bin").write_bytes(b"x")
    ocimodel.push(tmp_path / "m", f"oci:{tmp_path / 'store'}:1")
    ocimodel.tag(f"oci:{tmp_path / 'store'}:1", "2")
    one, two = (ocimodel.sbom(f"oci:{tmp_path / 'store'}:{tag}").bom for tag in ("1", "2"))
    assert one == two and one["metadata"]["component"]["name"] == f"oci:{tmp_path / 'store'}"
    assert "timestamp" not in one["metadata"]  # no created time: none, not the time of the run
    _strictly_valid(one)


@pytest.mark.slow
def test_help_teaches_by_example():
    shown = ok("sbom", "--help").out
    assert any(line.strip().startswith("ocimodel sbom ") for line in shown.splitlines())
    assert "--attest" in shown and "--output" in shown


def test_a_variant_index_is_refused_and_its_variant_described(model, tmp_path):
    store = f"oci:{tmp_path / 'store'}"
    ocimodel.push(model, f"{store}:1.0-a")
    (model / "model.safetensors").write_bytes(b"quantized")
    ocimodel.push(model, f"{store}:1.0-b")
    ocimodel.create_index(f"{store}:1.0", {"1.0-a": {"quant": "none"}, "1.0-b": {"quant": "q4"}})
    from ocimodel.errors import NotAModel

    with pytest.raises(NotAModel):
        ocimodel.sbom(f"{store}:1.0")
    variant = ocimodel.inspect(f"{store}:1.0-b").digest
    assert ocimodel.sbom(f"{store}@{variant}").digest == variant


@pytest.mark.slow
def test_verify_with_a_license_rule_and_an_sbom_requirement_allows_only_the_compliant_model(repo, model, tmp_path):
    """The issue's gate: one policy with a licenses rule and an SBOM attestation
    requirement. A signed, SBOM-attested model under allowed licenses passes; one whose
    license is denied, and one without the SBOM, are each denied with their own reason."""
    ocimodel.generate_key_pair(tmp_path / "k.key", tmp_path / "k.pub")
    (tmp_path / "policy.yaml").write_text(
        f"signers: {{k: {{key: k.pub}}}}\n"
        f"attestations: [{{type: '{SBOM}', signers: [k]}}]\n"
        "licenses: {allow: [Apache-2.0, MIT, BSD-3-Clause], deny: [CC-BY-NC-4.0], unknown: deny, base_models: false}\n")
    ocimodel.push(model, f"{repo}:compliant")
    (model / "model.safetensors").write_bytes(b"no sbom for these")
    ocimodel.push(model, f"{repo}:no-sbom")
    (model / "ocimodel.yaml").write_text(CARD.replace("licenses: [Apache-2.0, MIT OR BSD-3-Clause]", "licenses: [CC-BY-NC-4.0]"))
    ocimodel.push(model, f"{repo}:non-commercial")
    for tag in ("compliant", "no-sbom", "non-commercial"):
        ok("sign", f"{repo}:{tag}", "--key", tmp_path / "k.key", "--no-file-signature")
    for tag in ("compliant", "non-commercial"):
        ok("sbom", f"{repo}:{tag}", "--attest", "--key", tmp_path / "k.key", "-o", tmp_path / f"{tag}.json")

    ok("verify", f"{repo}:compliant", "--policy", tmp_path / "policy.yaml")
    no_sbom = ocimodel_cli("verify", f"{repo}:no-sbom", "--policy", tmp_path / "policy.yaml")
    assert no_sbom.code == 1 and f"FAIL attestation {SBOM}" in no_sbom.out, str(no_sbom)
    assert "FAIL licenses" not in no_sbom.out
    denied = ocimodel_cli("verify", f"{repo}:non-commercial", "--policy", tmp_path / "policy.yaml")
    assert denied.code == 1, str(denied)
    assert any(line.startswith("FAIL licenses") and "CC-BY-NC-4.0" in line for line in denied.out.splitlines()), str(denied)
    assert f"FAIL attestation {SBOM}" not in denied.out
