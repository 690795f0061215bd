"""`ocimodel scan` and ``ocimodel.scan`` (issue 16): exit codes, text, JSON and SARIF
output, the allowlist, the cache, remote reads by HTTP Range, and a layer whose bytes do
not match its digest.

The format scanner here is a test double (tests/support/evilscanner.py: files starting
with EVIL are critical, MAYBE medium); what is tested is the engine, the command and the
sources, which are independent of which real scanners exist."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

import ocimodel
from ocimodel.errors import IntegrityError
from tests.support import evilscanner
from tests.support.faultproxy import FaultProxy

# The official SARIF 2.1.0 schema, vendored byte for byte from the OASIS SARIF TC's
# repository: github.com/oasis-tcs/sarif-spec, sarif-2.1/schema/sarif-schema-2.1.0.json
# (last changed in commit a560296ca8c921f3bdb8d4a8db57ab83dae968a7; its "id" is
# https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json).
SARIF_SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"


@pytest.fixture
def evil(monkeypatch):
    evilscanner.install(monkeypatch)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_bytes(b'{"a": 1}\n')
    (root / "sub" / "weights.pkl").write_bytes(b"EVIL" + b"\0" * 60)
    (root / "review.bin").write_bytes(b"MAYBE" + b"\0" * 59)
    return root


def _cli(tmp_path: Path, *args):
    return evilscanner.cli(*args, cache_dir=tmp_path / "cache")


# -- paths -----------------------------------------------------------------------------------


def test_exit_codes_follow_fail_on_and_usage_errors_exit_2(model: Path, tmp_path: Path):
    run = _cli(tmp_path, "scan", model)
    assert run.returncode == 1, run.stderr
    # One line a finding: severity, file @offset, format, rule; the detail indented below.
    lines = run.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "evil.magic" in line)
    assert lines[at].split() == ["critical", "sub/weights.pkl", "@0", "evil", "evil.magic"]
    assert lines[at + 1].startswith("          the callable") and "os.system" in lines[at + 1]
    assert "FAIL" in run.stdout

    assert _cli(tmp_path, "scan", model / "config.json").returncode == 0
    review = model / "review.bin"
    assert _cli(tmp_path, "scan", review).returncode == 0  # medium < high, the default
    assert _cli(tmp_path, "scan", review, "--fail-on", "medium").returncode == 1
    assert _cli(tmp_path, "scan", review, "--fail-on", "critical").returncode == 0
    bad = _cli(tmp_path, "scan", review, "--fail-on", "severe")
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown severity") and not bad.stdout
    missing = _cli(tmp_path, "scan", tmp_path / "nothing-here")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr


def test_a_path_that_does_not_exist_is_named_not_looked_up_on_docker_hub(model: Path, tmp_path: Path, monkeypatch):
    # A typo in a path read as a Docker Hub reference sent the name to docker.io and
    # answered "cannot reach docker.io" (or "leading '/'"), never that the path is missing.
    monkeypatch.chdir(tmp_path)
    for missing in (tmp_path / "nothing-here", "./nothing-here", "model/nothing.pkl"):
        run = _cli(tmp_path, "scan", missing)
        assert run.returncode == 2, run.stderr
        assert run.stderr.splitlines()[0] == f"error: {missing} does not exist", run.stderr
        assert "docker.io" not in run.stderr and "Traceback" not in run.stderr


def test_a_sarif_file_that_cannot_be_written_is_one_line(model: Path, tmp_path: Path):
    run = _cli(tmp_path, "scan", model, "--sarif", tmp_path / "no-such-dir" / "scan.sarif")
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("error: cannot write ") and len(run.stderr.splitlines()) <= 2, run.stderr


def test_allowlist_trusts_review_findings_never_critical_ones(model: Path, tmp_path: Path):
    review = model / "review.bin"
    assert _cli(tmp_path, "scan", review, "--fail-on", "medium", "--allow", "maybe.*").returncode == 0
    allow_file = tmp_path / "allow.txt"
    allow_file.write_text("# trusted by the team\nmaybe.callable\n")
    assert _cli(tmp_path, "scan", review, "--fail-on", "medium", "--allow-file", allow_file).returncode == 0
    # A known-dangerous callable stays dangerous whatever an allowlist says.
    run = _cli(tmp_path, "scan", model / "sub" / "weights.pkl", "--allow", "os.*", "--allow", "*", "--json")
    assert run.returncode == 1
    assert [f["rule"] for f in json.loads(run.stdout)["files"][0]["findings"]] == ["evil.magic"]


def test_symlinks_in_a_directory_are_reported_not_followed(model: Path, tmp_path: Path):
    outside = tmp_path / "outside.pkl"
    outside.write_bytes(b"EVIL outside the model")
    (model / "sub" / "weights.pkl").write_bytes(b"clean")
    (model / "link.pkl").symlink_to(outside)
    run = _cli(tmp_path, "scan", model, "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    files = {f["file"]: f for f in json.loads(run.stdout)["files"]}
    assert [(f["rule"], f["severity"]) for f in files["link.pkl"]["findings"]] == [("scan.symlink", "info")]
    assert str(outside) in files["link.pkl"]["findings"][0]["detail"]


def test_json_is_the_report(model: Path, tmp_path: Path):
    run = _cli(tmp_path, "scan", model, "--json")
    assert run.returncode == 1
    document = json.loads(run.stdout)
    assert document["failed"] is True and document["fail_on"] == "high"
    files = {f["file"]: f for f in document["files"]}
    assert set(files) == {"config.json", "review.bin", "sub/weights.pkl"}
    assert files["sub/weights.pkl"]["formats"] == ["evil"]
    assert files["sub/weights.pkl"]["findings"][0] == {
        "file": "sub/weights.pkl", "format": "evil", "severity": "critical", "rule": "evil.magic",
        "detail": "the callable os.system", "offset": 0, "member": None,
    }
    assert files["config.json"]["findings"] == []


def test_sarif_is_valid_against_the_official_schema(model: Path, tmp_path: Path):
    (model / "odd name #1?.pkl").write_bytes(b"EVIL odd")
    out = tmp_path / "scan.sarif"
    run = _cli(tmp_path, "scan", model, "--sarif", out)
    assert run.returncode == 1
    document = json.loads(out.read_text())
    schema = json.loads(SARIF_SCHEMA.read_text())
    jsonschema.Draft4Validator(schema).validate(document)
    assert document["version"] == "2.1.0"
    (sarif_run,) = document["runs"]
    rules = {r["id"]: r for r in sarif_run["tool"]["driver"]["rules"]}
    assert set(rules) == {"evil.magic", "evil.review"}
    assert all(r["shortDescription"]["text"] for r in rules.values())
    assert rules["evil.magic"]["properties"]["security-severity"] == "9.5"
    results = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: r for r in sarif_run["results"]}
    assert set(results) == {"sub/weights.pkl", "review.bin", "odd%20name%20%231%3F.pkl"}
    weights = results["sub/weights.pkl"]
    assert weights["ruleId"] == "evil.magic" and weights["level"] == "error"
    assert weights["locations"][0]["physicalLocation"]["region"] == {"byteOffset": 0}
    assert results["review.bin"]["level"] == "warning"
    assert results["review.bin"]["locations"][0]["physicalLocation"]["region"] == {"byteOffset": 5}
    # A document that breaks a rule of the schema is refused (the check bites): SARIF's
    # levels are none, note, warning and error, not our severities.
    weights["level"] = "critical"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(document)


def test_sarif_to_standard_output_alone(model: Path, tmp_path: Path):
    run = _cli(tmp_path, "scan", model, "--sarif", "-")
    assert run.returncode == 1
    assert json.loads(run.stdout)["version"] == "2.1.0"  # stdout is the one document


def test_text_output_shows_user_text_as_typed(tmp_path: Path):
    root = tmp_path / "m"
    root.mkdir()
    (root / "[red]x[b]\x1b[31m.pkl").write_bytes(b"EVIL")
    run = _cli(tmp_path, "scan", root)
    assert run.returncode == 1
    assert "[red]x[b]\\x1b[31m.pkl" in run.stdout and "\x1b" not in run.stdout


# -- models in a registry or a layout ---------------------------------------------------------


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.host) as p:
        yield p


def _blob_bytes(proxy: FaultProxy, digest: str) -> int:
    return sum(s.down for s in proxy.seen("GET", rf"/blobs/{digest}"))


def test_scan_ref_json_and_second_scan_comes_from_the_cache(evil, registry, proxy, model: Path, repo_name: str, tmp_path):
    ocimodel.push(model, f"{registry.host}/{repo_name}:1")
    ref = f"{proxy.host}/{repo_name}:1"
    first = ocimodel.scan(ref)
    assert first.failed and first.digest is not None
    by_file = {f.file: f for f in first.files}
    assert by_file["sub/weights.pkl"].findings[0].rule == "evil.magic"
    assert by_file["sub/weights.pkl"].digest.startswith("sha256:")
    assert not any(f.cached for f in first.files)
    assert proxy.count("GET", r"/blobs/") > 0

    proxy.clear()
    second = ocimodel.scan(ref)
    assert all(f.cached for f in second.files)
    assert [f.findings for f in second.files] == [f.findings for f in first.files]
    assert proxy.count("GET", r"/blobs/") == 0  # nothing fetched but the manifest

    proxy.clear()
    third = ocimodel.scan(ref, cache=False)
    assert not any(f.cached for f in third.files) and proxy.count("GET", r"/blobs/") > 0
    # Another allowlist is another key: the cached verdicts of the first are not reused.
    proxy.clear()
    other = ocimodel.scan(ref, allow=["maybe.*"])
    assert not any(f.cached for f in other.files)
    assert [f.rule for f in other.findings] == ["evil.magic"]


def test_cli_scan_ref_exit_code(registry, model: Path, repo_name: str, tmp_path: Path):
    ocimodel.push(model, f"{registry.host}/{repo_name}:1")
    run = _cli(tmp_path, "scan", f"{registry.host}/{repo_name}:1", "--json")
    assert run.returncode == 1, run.stderr
    document = json.loads(run.stdout)
    assert document["digest"].startswith("sha256:") and document["failed"]
    (model / "sub" / "weights.pkl").write_bytes(b"clean now")
    ocimodel.push(model, f"{registry.host}/{repo_name}:2")
    assert _cli(tmp_path, "scan", f"{registry.host}/{repo_name}:2").returncode == 0


def test_range_reads_fetch_only_a_header_when_ranges_are_trusted(evil, registry, proxy, tmp_path, repo_name):
    root = tmp_path / "big"
    root.mkdir()
    size = 8 * 1024 * 1024
    (root / "model.bin").write_bytes(b"MAYBE" + b"\0" * (size - 5))
    pushed = ocimodel.push(root, f"{registry.host}/{repo_name}:1")
    (layer,) = [f for f in pushed.files if f.path == "model.bin"]
    ref = f"{proxy.host}/{repo_name}:1"

    trusted = ocimodel.scan(ref, trust_ranges=True)
    fetched = _blob_bytes(proxy, layer.digest)
    assert 0 < fetched <= 64 * 1024, fetched
    gets = proxy.seen("GET", rf"/blobs/{layer.digest}")
    assert len(gets) == 1 and gets[0].headers.get("range", "").startswith("bytes=0-")  # the engine's head, shared
    rules = [f.rule for f in trusted.findings]
    assert rules == ["evil.review", "scan.unverified-ranges"]  # and it says so

    proxy.clear()
    verified = ocimodel.scan(ref, cache=False)
    # By default the layer is then read through once, so every byte judged is verified.
    assert _blob_bytes(proxy, layer.digest) >= size
    assert [f.rule for f in verified.findings] == ["evil.review"]

    proxy.clear()  # a registry that ignores Range: still only a piece read off the body
    proxy.ignore_range()
    again = ocimodel.scan(ref, trust_ranges=True, cache=False)
    assert [f.rule for f in again.findings] == ["evil.review", "scan.unverified-ranges"]


def test_a_layer_that_does_not_match_its_digest_fails_the_scan(evil, model: Path, tmp_path: Path):
    layout = tmp_path / "store"
    pushed = ocimodel.push(model, f"oci:{layout}:m")
    (weights,) = [f for f in pushed.files if f.path == "sub/weights.pkl"]
    blob = layout / "blobs" / "sha256" / weights.digest.split(":", 1)[1]
    blob.chmod(0o644)
    blob.write_bytes(b"SAFE" + b"\0" * 60)  # same size, the bytes a scanner would pass

    with pytest.raises(IntegrityError):
        ocimodel.scan(f"oci:{layout}:m", cache=False)
    run = _cli(tmp_path, "scan", f"oci:{layout}:m", "--json")
    assert run.returncode == 1 and "digest mismatch" in run.stdout + run.stderr
    assert '"failed"' not in run.stdout  # no report at all, let alone a clean one


def test_a_streamed_layer_is_verified_by_the_scanner_read(evil, tmp_path: Path):
    root = tmp_path / "m"
    root.mkdir()
    (root / "a.pkl").write_bytes(b"STREAM" + b"\0" * 100 + b"EVIL")
    layout = tmp_path / "store"
    pushed = ocimodel.push(root, f"oci:{layout}:m")
    assert [f.rule for f in ocimodel.scan(f"oci:{layout}:m").findings] == ["evil.streamed"]
    blob = layout / "blobs" / "sha256" / pushed.files[0].digest.split(":", 1)[1]
    blob.chmod(0o644)
    blob.write_bytes(b"STREAM" + b"\0" * 104)
    with pytest.raises(IntegrityError):
        ocimodel.scan(f"oci:{layout}:m", cache=False)


def test_tar_layers_are_scanned_member_by_member(evil, registry, repo_name: str, tmp_path: Path):
    """modctl-style tar layers (plain and gzip): each member is judged under the path a
    pull would give it, read in memory under pull's tar guards."""
    import gzip

    from tests.test_archive import go_style_tar, push_artifact

    root = tmp_path / "m"
    (root / "pkg" / "inner").mkdir(parents=True)
    (root / "pkg" / "inner" / "evil.pkl").write_bytes(b"EVIL in a tar")
    (root / "pkg" / "ok.txt").write_bytes(b"fine")
    (root / "review.bin").write_bytes(b"MAYBE gz")
    kind = "application/vnd.cncf.model.weight.v1"
    push_artifact(registry, repo_name, "v1", [
        (f"{kind}.tar", go_style_tar(root, "pkg"), {"org.cncf.model.filepath": "pkg"}),
        (f"{kind}.tar+gzip", gzip.compress(go_style_tar(root, "review.bin")), {"org.cncf.model.filepath": "review.bin"}),
    ])
    report = ocimodel.scan(f"{registry.host}/{repo_name}:v1")
    found = {(f.file, f.rule) for f in report.findings}
    assert found == {("pkg/inner/evil.pkl", "evil.magic"), ("review.bin", "evil.review")}
    assert {f.file for f in report.files} == {"pkg/inner/evil.pkl", "pkg/ok.txt", "review.bin"}
    assert report.failed


def test_ocimodel_scan_is_the_function_even_once_the_package_is_imported(evil, model: Path):
    import inspect

    import ocimodel.scanning.engine  # noqa: F401  an imported subpackage must not replace the function

    assert inspect.isfunction(ocimodel.scan)
    assert ocimodel.scan(model).failed
    assert ocimodel.Client().scan(model / "config.json").failed is False


def test_a_cached_verdict_is_reported_under_the_file_name_of_this_model(evil, tmp_path: Path):
    layout = tmp_path / "store"
    for tag, name in (("a", "first.pkl"), ("b", "second.pkl")):
        root = tmp_path / tag
        root.mkdir()
        (root / name).write_bytes(b"EVIL same bytes")
        ocimodel.push(root, f"oci:{layout}:{tag}")
    ocimodel.scan(f"oci:{layout}:a")
    second = ocimodel.scan(f"oci:{layout}:b")
    assert [(f.file, f.cached) for f in second.files] == [("second.pkl", True)]
    assert [f.file for f in second.findings] == ["second.pkl"]


def test_a_variant_index_is_scanned_one_variant_chosen_with_variant(evil, tmp_path: Path):
    # `scan` of an index answered "choose one with --variant", an option scan did not have.
    layout = tmp_path / "store"
    for tag, content in (("1.0-clean", b"clean"), ("1.0-evil", b"EVIL here")):
        root = tmp_path / tag
        root.mkdir()
        (root / "weights.pkl").write_bytes(content)
        ocimodel.push(root, f"oci:{layout}:{tag}")
    ocimodel.create_index(f"oci:{layout}:1.0", ["1.0-clean,quant=q4", "1.0-evil,quant=f16"])
    chosen = ocimodel.scan(f"oci:{layout}:1.0", variant=["quant=f16"])
    assert chosen.failed and chosen.digest == ocimodel.inspect(f"oci:{layout}:1.0-evil").digest
    unchosen = _cli(tmp_path, "scan", f"oci:{layout}:1.0")
    assert unchosen.returncode == 2 and "--variant" in unchosen.stderr, unchosen.stderr
    assert _cli(tmp_path, "scan", f"oci:{layout}:1.0", "--variant", "quant=q4").returncode == 0
    run = _cli(tmp_path, "scan", f"oci:{layout}:1.0", "--variant", "quant=f16")
    assert run.returncode == 1 and "evil.magic" in run.stdout, run.stdout + run.stderr


def test_a_directory_that_cannot_be_listed_fails_the_scan(evil, model: Path, monkeypatch):
    # os.walk skips a directory it cannot list (no permission, a path too long) without a
    # word: the files in it were not scanned and the scan passed. The directory is made
    # unlistable here by refusing its scandir, as a permission would for a user who is
    # not root (the tests run as root, which no permission stops).
    import os

    (model / "sub" / "weights.pkl").write_bytes(b"clean")
    (model / "review.bin").unlink()
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = ocimodel.scan(model, cache=False)
    assert report.failed
    assert [(f.file, f.rule, f.severity.value) for f in report.findings] == [("sub", "scan.unreadable", "high")]


def test_a_container_image_is_named_as_one_not_a_layer_without_a_name(tmp_path: Path):
    # `scan` of an image said "layer sha256:... has no file name: no org.cncf.model.filepath
    # ...", where pull says what the reference is and what would be needed.
    import hashlib

    layout = tmp_path / "store"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')

    def blob(data: bytes, media_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (layout / "blobs" / "sha256" / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(b'{"architecture":"amd64","os":"linux"}', "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(b"\x1f\x8b\x08\x00" + b"\0" * 20, "application/vnd.oci.image.layer.v1.tar+gzip")],
    }).encode()
    entry = {**blob(manifest, "application/vnd.oci.image.manifest.v1+json"),
             "annotations": {"org.opencontainers.image.ref.name": "img"}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    run = _cli(tmp_path, "scan", f"oci:{layout}:img")
    assert run.returncode == 1 and not run.stdout, run.stdout + run.stderr
    assert run.stderr.splitlines()[0] == f"error: oci:{layout}:img is a container image, not a model", run.stderr
    assert "docker, podman or skopeo" in run.stderr


def test_a_fifo_in_a_directory_is_listed_not_skipped_silently(model: Path, tmp_path: Path):
    # A fifo (or socket, device) was left out without a word ("3 files", pass), where
    # push refuses the directory for it: the report now names it, as it names symlinks.
    import os

    os.mkfifo(model / "sub" / "pipe")
    run = _cli(tmp_path, "scan", model, "--json")
    files = {f["file"]: f for f in json.loads(run.stdout)["files"]}
    assert [(f["rule"], f["severity"]) for f in files["sub/pipe"]["findings"]] == [("scan.not-regular", "info")]
    assert "fifo" in files["sub/pipe"]["findings"][0]["detail"]


def test_scan_attest_with_a_bad_key_fails_before_downloading_anything(evil, registry, proxy, model: Path,
                                                                      repo_name: str, tmp_path: Path):
    # The key was loaded after the whole model was downloaded and scanned: a wrong key
    # file cost a full download before the one-line error.
    ocimodel.push(model, f"{registry.host}/{repo_name}:1")
    not_a_key = tmp_path / "ci.key"
    not_a_key.write_text("not a key\n")
    proxy.clear()
    with pytest.raises(ocimodel.errors.OcimodelError, match="not a PEM private key"):
        ocimodel.scan(f"{proxy.host}/{repo_name}:1", attest=True, key=not_a_key, cache=False)
    assert proxy.seen("GET", "/blobs/") == []
