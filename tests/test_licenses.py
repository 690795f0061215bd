"""`ocimodel license` / ocimodel.license_report on models in a real registry: declared,
detected by text, carried from base models, judged by a policy's licenses: rules."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ocimodel

DATA = Path(__file__).parent / "data" / "licenses"


def _model(tmp_path: Path, name: str, license_file: str | None) -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "weights.bin").write_bytes(name.encode() * 16)
    if license_file:
        shutil.copy(DATA / license_file, root / "LICENSE")
    return root


def _policy(tmp_path: Path, rules: str) -> Path:
    path = tmp_path / f"policy-{len(list(tmp_path.glob('policy-*')))}.yaml"
    path.write_text(f"signers: {{ci: {{key: ci.pub}}}}\nlicenses: {rules}\n")
    return path


def test_fine_tune_of_a_denied_base_is_denied(registry, repo_name, tmp_path):
    repo = f"{registry.host}/{repo_name}"
    ocimodel.push(_model(tmp_path, "base", "llama3-LICENSE"), f"{repo}:base", plain_http=True,
                  metadata={"licenses": ["LicenseRef-llama3-community-license"]})
    ocimodel.push(_model(tmp_path, "tuned", "apache-2.0-LICENSE"), f"{repo}:tuned", plain_http=True,
                  metadata={"licenses": ["Apache-2.0"], "base_models": [{"reference": f"{repo}:base"}]})
    policy = _policy(tmp_path, '{allow: [Apache-2.0, MIT], deny: ["LicenseRef-*-community-license"]}')

    report = ocimodel.license_report(f"{repo}:tuned", policy=policy, plain_http=True)
    assert report.declared == ["Apache-2.0"]
    assert [(d.file, d.license) for d in report.detected] == [("LICENSE", "Apache-2.0")]
    assert [(b.reference, b.licenses, b.readable) for b in report.base_models] == [
        (f"{repo}:base", ["LicenseRef-llama3-community-license"], True)]
    assert not report.allowed and report.verdict.status == "denied"
    assert report.verdict.reasons == [
        f"base model {repo}:base: LicenseRef-llama3-community-license is denied (deny: LicenseRef-*-community-license)"]
    assert report.findings == []

    # base_models: false judges the model alone.
    alone = _policy(tmp_path, '{allow: [Apache-2.0], deny: ["LicenseRef-*-community-license"], base_models: false}')
    assert ocimodel.license_report(f"{repo}:tuned", policy=alone, plain_http=True).allowed

    # The CLI: exit 1 on a denial, the report as JSON.
    run = subprocess.run([sys.executable, "-m", "ocimodel", "license", f"{repo}:tuned", "--policy", str(policy),
                          "--plain-http", "--json"], capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    assert json.loads(run.stdout)["verdict"]["status"] == "denied"


def test_declared_license_contradicted_by_the_text(registry, repo_name, tmp_path):
    repo = f"{registry.host}/{repo_name}"
    ocimodel.push(_model(tmp_path, "m", "apache-2.0-LICENSE"), f"{repo}:1", plain_http=True,
                  metadata={"licenses": ["MIT"]})
    report = ocimodel.license_report(f"{repo}:1", plain_http=True)
    assert report.findings == ["LICENSE is Apache-2.0 (its text), which the declared license MIT does not name"]
    assert report.allowed and report.verdict is None  # no policy: a report, no verdict
    # Under a policy the shipped text applies too: Apache-2.0 is not allowed here.
    report = ocimodel.license_report(f"{repo}:1", policy=_policy(tmp_path, "{allow: [MIT]}"), plain_http=True)
    assert not report.allowed and report.verdict.reasons == ["LICENSE: Apache-2.0 is not in allow"]


def test_unknown_licenses_deny_or_warn(registry, repo_name, tmp_path):
    repo = f"{registry.host}/{repo_name}"
    ocimodel.push(_model(tmp_path, "m", None), f"{repo}:1", plain_http=True,
                  metadata={"licenses": ["Apache-2.0"], "base_models": [{"reference": "hf://org/unreadable"}]})
    deny = ocimodel.license_report(f"{repo}:1", policy=_policy(tmp_path, "{allow: [Apache-2.0]}"), plain_http=True)
    assert not deny.allowed and deny.verdict.status == "unknown"
    assert "base model hf://org/unreadable" in deny.verdict.reasons[0]
    warn = ocimodel.license_report(f"{repo}:1", policy=_policy(tmp_path, "{allow: [Apache-2.0], unknown: warn}"),
                                   plain_http=True)
    assert warn.allowed and warn.verdict.warnings


def test_policy_without_licenses_section_is_a_usage_error(tmp_path):
    (tmp_path / "p.yaml").write_text("signers: {ci: {key: ci.pub}}\n")
    with pytest.raises(ocimodel.OcimodelError, match="no licenses: section"):
        ocimodel.license_report(_model(tmp_path, "m", None), policy=tmp_path / "p.yaml")


def test_verify_and_pull_verify_judge_the_licenses_rule(registry, repo_name, tmp_path):
    from ocimodel.api.trust import verify_hook
    from ocimodel.trust.verify import PolicyDenied

    repo = f"{registry.host}/{repo_name}"
    ocimodel.generate_key_pair(tmp_path / "ci.key", tmp_path / "ci.pub")
    ocimodel.push(_model(tmp_path, "base", "cc-by-nc-4.0-LICENSE_weights"), f"{repo}:base", plain_http=True,
                  metadata={"licenses": ["CC-BY-NC-4.0"]})
    ocimodel.push(_model(tmp_path, "tuned", None), f"{repo}:tuned", plain_http=True,
                  metadata={"licenses": ["MIT"], "base_models": [{"reference": f"{repo}:base"}]})
    ocimodel.push(_model(tmp_path, "own", "mit-LICENSE"), f"{repo}:own", plain_http=True, metadata={"licenses": ["MIT"]})
    for tag in ("base", "tuned", "own"):
        ocimodel.sign(f"{repo}:{tag}", key=tmp_path / "ci.key", plain_http=True)
    policy = _policy(tmp_path, "{allow: [MIT, Apache-2.0], deny: [CC-BY-NC-*]}")

    allowed = ocimodel.verify(f"{repo}:own", policy=policy, plain_http=True)
    assert allowed.allowed and [r.rule for r in allowed.reasons] == ["signature", "licenses"]
    assert allowed.reasons[1].detail == "allowed: MIT"

    denied = ocimodel.verify(f"{repo}:tuned", policy=policy, plain_http=True)
    assert not denied.allowed and denied.reasons[0].passed  # signed, and still denied
    assert denied.reasons[1].rule == "licenses" and denied.reasons[1].reason == "license-denied"
    assert denied.reasons[1].detail == f"base model {repo}:base: CC-BY-NC-4.0 is denied (deny: CC-BY-NC-*)"

    # pull --verify: denied before a file is written.
    hook = verify_hook(policy=policy)
    with pytest.raises(PolicyDenied, match="licenses: base model"):
        ocimodel.pull(f"{repo}:tuned", tmp_path / "out", plain_http=True, verify=hook)
    assert not (tmp_path / "out" / "weights.bin").exists()
    ocimodel.pull(f"{repo}:own", tmp_path / "out2", plain_http=True, verify=hook)
    assert (tmp_path / "out2" / "LICENSE").exists()

    # The CLI: verify exits 1 naming the licenses rule.
    run = subprocess.run([sys.executable, "-m", "ocimodel", "verify", f"{repo}:tuned", "--policy", str(policy),
                          "--plain-http"], capture_output=True, text=True)
    assert run.returncode == 1 and "FAIL licenses: base model" in run.stdout + run.stderr, run.stdout + run.stderr


def test_promotion_gate_requires_the_licenses_rule(registry, repo_name, tmp_path):
    from ocimodel.api.promotions import PromotionDenied

    repo = f"{registry.host}/{repo_name}"
    ocimodel.generate_key_pair(tmp_path / "ci.key", tmp_path / "ci.pub")
    ocimodel.push(_model(tmp_path, "nc", "cc-by-nc-4.0-LICENSE_weights"), f"{repo}:1.0", plain_http=True,
                  metadata={"licenses": ["CC-BY-NC-4.0"]})
    ocimodel.push(_model(tmp_path, "ok", "apache-2.0-LICENSE"), f"{repo}:1.1", plain_http=True,
                  metadata={"licenses": ["Apache-2.0"]})
    for tag in ("1.0", "1.1"):
        ocimodel.sign(f"{repo}:{tag}", key=tmp_path / "ci.key", plain_http=True)
    policy = tmp_path / "gate.yaml"
    policy.write_text("signers: {ci: {key: ci.pub}}\nlicenses: {deny: [CC-BY-NC-*]}\n"
                      "aliases: {production: {require: [signature, licenses]}}\n")
    with pytest.raises(PromotionDenied, match="licenses: card: CC-BY-NC-4.0 is denied"):
        ocimodel.promote(f"{repo}:1.0", "production", policy=policy, key=tmp_path / "ci.key", plain_http=True)
    promoted = ocimodel.promote(f"{repo}:1.1", "production", policy=policy, key=tmp_path / "ci.key", plain_http=True)
    assert [r.rule for r in promoted.gate.reasons] == ["signature", "licenses"]


def test_a_modelkit_is_judged_by_its_kitfile_licenses(registry, repo_name, tmp_path):
    from tests.test_kitops import kitfile_for, modelkit_layers, push_modelkit

    project = tmp_path / "project"
    for rel, data in {"models/model.gguf": b"GGUF" + b"\0" * 60, "models/lora.safetensors": b"x" * 16,
                      "src/train.py": b"print(1)\n", "data/train.csv": b"x\n", "eval/eval/scores.csv": b"a\n",
                      "docs/README.md": b"# t\n", "prompts/system.md": b"terse\n"}.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_bytes(data)
    kitfile, layers = modelkit_layers(project)
    assert kitfile["package"]["license"] == kitfile_for()["package"]["license"]
    push_modelkit(registry, repo_name, "1", kitfile, layers)
    policy = _policy(tmp_path, "{deny: [CC-BY-*]}")
    report = ocimodel.license_report(f"{registry.host}/{repo_name}:1", policy=policy, plain_http=True)
    assert sorted(report.declared) == ["Apache-2.0", "BSD-3-Clause", "CC-BY-4.0", "MIT"]
    assert not report.allowed and report.verdict.reasons == ["card: CC-BY-4.0 is denied (deny: CC-BY-*)"]


# -- license texts inside a ModelKit's tar layers -----------------------------------------------


def _layout_modelkit(root: Path, kitfile: dict, layers: list[tuple[str, bytes, dict]]) -> str:
    """A ModelKit in an OCI layout, as `kit push` would have put it in a registry."""
    from tests.test_kitops import KIT_CONFIG, OCI_MANIFEST, go_json, sha

    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    config = go_json(kitfile)
    manifest = go_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": KIT_CONFIG, "digest": sha(config), "size": len(config)},
                        "layers": [{"mediaType": m, "digest": sha(b), "size": len(b), **({"annotations": a} if a else {})}
                                   for m, b, a in layers]})
    for blob in (config, manifest, *(b for _, b, _ in layers)):
        (blobs / sha(blob).removeprefix("sha256:")).write_bytes(blob)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))
    return f"oci:{root}:1"


def _kit_project(tmp_path: Path) -> tuple[dict, list[tuple[str, bytes, dict]]]:
    """A ModelKit as KitOps >= 0.5 packs it: weights, a docs entry that is the Llama 3.2
    license (while the Kitfile declares Apache-2.0), and code whose directory holds the
    Gemma terms under a name of no license kind."""
    from tests.test_kitops import compress, kit_tar, layer_type, sha

    project = tmp_path / "project"
    for rel, data in {"models/model.gguf": b"GGUF" + b"\0" * 60, "src/train.py": b"print(1)\n",
                      "src/TERMS": (DATA / "gemma-GEMMA_TERMS_OF_USE.txt").read_bytes(),
                      "LICENSE": (DATA / "llama3_2-LICENSE").read_bytes()}.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_bytes(data)
    plan = [("model", "models/model.gguf", "gzip"), ("code", "src", ""), ("docs", "LICENSE", "gzip")]
    layers = [(layer_type(base, "tar", comp), compress(kit_tar(project, path), comp), {}) for base, path, comp in plan]
    model, code, docs = (sha(blob) for _, blob, _ in layers)
    kitfile = {"manifestVersion": "1.0.0", "package": {"name": "kit", "license": "Apache-2.0"},
               "model": {"path": "models/model.gguf", "digest": model},
               "code": [{"path": "src", "digest": code}], "docs": [{"path": "LICENSE", "digest": docs}]}
    return kitfile, layers


def test_license_texts_inside_modelkit_tar_layers_are_read(tmp_path):
    kitfile, layers = _kit_project(tmp_path)
    ref = _layout_modelkit(tmp_path / "store", kitfile, layers)
    report = ocimodel.license_report(ref)
    assert report.declared == ["Apache-2.0"]
    assert [(d.file, d.license, d.confidence) for d in report.detected] == [
        ("src/TERMS", "LicenseRef-gemma-terms-of-use", 1.0), ("LICENSE", "LicenseRef-llama3.2-community-license", 1.0)]
    assert "LICENSE is LicenseRef-llama3.2-community-license (its text), which the declared license Apache-2.0 does not name" \
        in report.findings


@pytest.mark.slow
def test_ocimodel_license_reads_a_modelkit_s_tar_layers(tmp_path):
    kitfile, layers = _kit_project(tmp_path)
    ref = _layout_modelkit(tmp_path / "store", kitfile, layers)
    run = subprocess.run([sys.executable, "-m", "ocimodel", "license", ref, "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert [d["file"] for d in json.loads(run.stdout)["detected"]] == ["src/TERMS", "LICENSE"]


def test_a_modelkit_layer_is_judged_only_after_its_digest_matches(tmp_path):
    from ocimodel.errors import OcimodelError

    kitfile, layers = _kit_project(tmp_path)
    ref = _layout_modelkit(tmp_path / "store", kitfile, layers)
    import hashlib

    docs = hashlib.sha256(layers[2][1]).hexdigest()
    swapped = gzip_tar({"LICENSE": (DATA / "mit-LICENSE").read_bytes()})  # a valid layer, of another license
    assert len(swapped) <= len(layers[2][1])
    (tmp_path / "store" / "blobs" / "sha256" / docs).write_bytes(swapped.ljust(len(layers[2][1]), b"\0"))
    with pytest.raises(OcimodelError, match="digest"):  # same size: only the digest tells
        ocimodel.license_report(ref)


def gzip_tar(files: dict[str, bytes]) -> bytes:
    import gzip
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def test_hostile_or_oversized_modelkit_layers(tmp_path, monkeypatch):
    from ocimodel.errors import UnsafePath
    from tests.test_kitops import layer_type, sha

    # A member that climbs out of its entry: refused as pull refuses it, nothing judged.
    evil = gzip_tar({"../LICENSE": (DATA / "apache-2.0-LICENSE").read_bytes()})
    kitfile = {"manifestVersion": "1.0.0", "package": {"name": "k"}, "docs": [{"path": "LICENSE", "digest": sha(evil)}]}
    with pytest.raises(UnsafePath):
        ocimodel.license_report(_layout_modelkit(tmp_path / "evil", kitfile, [(layer_type("docs", "tar", "gzip"), evil, {})]))

    # A member over the size read, and a layer over the size read: not read, not an error.
    big = gzip_tar({"LICENSE": (DATA / "apache-2.0-LICENSE").read_bytes() + b"\n" * (600 * 1024)})
    kitfile = {"manifestVersion": "1.0.0", "package": {"name": "k"}, "docs": [{"path": "LICENSE", "digest": sha(big)}]}
    ref = _layout_modelkit(tmp_path / "big", kitfile, [(layer_type("docs", "tar", "gzip"), big, {})])
    assert ocimodel.license_report(ref).detected == []
    kitfile, layers = _kit_project(tmp_path)
    ref = _layout_modelkit(tmp_path / "store", kitfile, layers)
    import ocimodel.api.licenses as licenses

    monkeypatch.setattr(licenses, "MAX_ARCHIVE_READ_BYTES", 8000)  # LICENSE is less, the code layer more
    report = ocimodel.license_report(ref)
    assert [d.file for d in report.detected] == ["LICENSE"]
    assert any(f.startswith("src: not read for license texts") for f in report.findings), report.findings
    monkeypatch.setattr(licenses, "MAX_ARCHIVE_LAYER_BYTES", 1000)  # every layer is larger: weights, not read
    assert ocimodel.license_report(ref).detected == []


def test_a_compressed_one_file_modelkit_layer_is_read(tmp_path):
    import gzip

    from tests.test_kitops import layer_type, sha

    # The newest KitOps packs a single file as raw+gzip: decompressed in memory, then judged.
    packed = gzip.compress((DATA / "mit-LICENSE").read_bytes(), mtime=0)
    weights = gzip.compress(b"\0" * 4096, mtime=0)
    kitfile = {"manifestVersion": "1.0.0", "package": {"name": "k", "license": "MIT"},
               "model": {"path": "model.bin", "digest": sha(weights)}, "docs": [{"path": "LICENSE", "digest": sha(packed)}]}
    ref = _layout_modelkit(tmp_path / "store", kitfile, [(layer_type("model", "raw", "gzip"), weights, {}),
                                                         (layer_type("docs", "raw", "gzip"), packed, {})])
    report = ocimodel.license_report(ref)
    assert [(d.file, d.license) for d in report.detected] == [("LICENSE", "MIT")] and report.findings == []
