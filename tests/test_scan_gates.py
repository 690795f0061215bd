"""The scan gates (issue 16): `push --scan` refuses before uploading (or, with
--allow-unsafe, records the override in the model), `pull --scan` refuses before anything
is moved into the destination, `scan REF --attest` attaches a signed scan covering every
layer, and a verify policy with a `scan` rule requires one (`verify --scan` scans instead),
for `verify` and `pull --verify` alike.

The format scanner is the test double of tests/support/evilscanner.py (EVIL: critical)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ocimodel
from ocimodel.api.promotions import PromotionDenied
from ocimodel.errors import NotFound, ScanFailed
from ocimodel.trust.verify import PolicyDenied
from tests.support import evilscanner
from tests.support.faultproxy import FaultProxy


@pytest.fixture(autouse=True)
def evil(monkeypatch):
    evilscanner.install(monkeypatch)


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.host) as p:
        yield p


def _model(root: Path, weights: bytes) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_bytes(b'{"a": 1}\n')
    (root / "weights.pkl").write_bytes(weights)
    return root


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    return _model(tmp_path / "bad", b"EVIL" + b"\0" * 60)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return _model(tmp_path / "good", b"fine" + b"\0" * 60)


def _cli(tmp_path: Path, *args):
    return evilscanner.cli(*args, cache_dir=tmp_path / "cache")


# -- push ------------------------------------------------------------------------------------


def test_push_scan_refuses_before_uploading(bad: Path, proxy: FaultProxy, repo_name: str, tmp_path: Path):
    ref = f"{proxy.host}/{repo_name}:1"
    with pytest.raises(ScanFailed, match="weights.pkl: evil.magic"):
        ocimodel.push(bad, ref, scan=True)
    assert proxy.count("POST", r"/blobs/uploads/") == 0 and proxy.count("PUT", ".*") == 0
    assert proxy.count("HEAD", r"/blobs/") == 0  # not even asked what the registry has

    run = _cli(tmp_path, "push", bad, ref, "--scan")
    assert run.returncode == 1 and run.stderr.startswith("error: push of") and "nothing was uploaded" in run.stderr
    with pytest.raises(NotFound):  # not a blob, not a tag: the repository was never made
        ocimodel.list_tags(f"{proxy.host}/{repo_name}")
    # Without --scan the same push goes through (the gate is what refused).
    ocimodel.push(bad, ref)
    assert ocimodel.list_tags(f"{proxy.host}/{repo_name}") == ["1"]


def test_push_allow_unsafe_records_the_override(bad: Path, good: Path, registry, repo_name: str):
    ref = f"{registry.host}/{repo_name}:1"
    pushed = ocimodel.push(bad, ref, scan=True, allow_unsafe=True)
    info = ocimodel.inspect(f"{registry.host}/{repo_name}@{pushed.digest}")
    record = json.loads(info.annotations["dev.ocimodel.scan.override"])
    assert record["worst"] == "critical" and record["failOn"] == "high"
    assert record["first"] == ["weights.pkl: evil.magic"]
    # A clean model pushed with --scan carries no override.
    clean = ocimodel.push(good, f"{registry.host}/{repo_name}:2", scan=True, allow_unsafe=True)
    info = ocimodel.inspect(f"{registry.host}/{repo_name}@{clean.digest}")
    assert "dev.ocimodel.scan.override" not in info.annotations


# -- pull ------------------------------------------------------------------------------------


def test_pull_scan_leaves_nothing_behind(bad: Path, registry, repo_name: str, tmp_path: Path):
    ref = f"{registry.host}/{repo_name}:1"
    ocimodel.push(bad, ref)
    fresh = tmp_path / "fresh"
    with pytest.raises(ScanFailed, match="pull of"):
        ocimodel.pull(ref, fresh, scan=True)
    assert not fresh.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ocimodel-pull-")]

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "weights.pkl").write_bytes(b"mine")
    run = _cli(tmp_path, "pull", ref, existing, "--scan")
    assert run.returncode == 1 and "nothing was written" in run.stderr
    assert sorted(p.name for p in existing.iterdir()) == ["weights.pkl"]
    assert (existing / "weights.pkl").read_bytes() == b"mine"

    ocimodel.pull(ref, fresh)  # without --scan: the gate was what refused
    assert (fresh / "weights.pkl").read_bytes().startswith(b"EVIL")


def test_pull_scan_passes_a_clean_model(good: Path, registry, repo_name: str, tmp_path: Path):
    ref = f"{registry.host}/{repo_name}:1"
    ocimodel.push(good, ref)
    ocimodel.pull(ref, tmp_path / "out", scan=True)
    assert (tmp_path / "out" / "weights.pkl").read_bytes() == (good / "weights.pkl").read_bytes()


# -- attestations and the verify policy ------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "ci.key", tmp_path / "ci.pub"
    ocimodel.generate_key_pair(private, public)
    return private, public


def _policy(tmp_path: Path, public: Path, max_severity: str = "medium") -> Path:
    path = tmp_path / f"policy-{max_severity}.json"
    path.write_text(json.dumps({
        "signers": {"ci": {"key": str(public)}},
        "scan": {"max_severity": max_severity, "signers": ["ci"]},
    }))
    return path


def test_verify_with_a_scan_rule_needs_a_passing_signed_scan(bad, good, registry, repo_name, tmp_path, keys):
    private, public = keys
    policy = _policy(tmp_path, public)
    good_ref, bad_ref = f"{registry.host}/{repo_name}:good", f"{registry.host}/{repo_name}:bad"
    for model, ref in ((good, good_ref), (bad, bad_ref)):
        ocimodel.push(model, ref)
        ocimodel.sign(ref, key=private, file_signature=False)

    # Signed, but no scan attested: denied by the scan rule alone.
    decision = ocimodel.verify(good_ref, policy=policy)
    assert not decision.allowed
    assert [r.rule for r in decision.reasons if not r.passed] == ["scan (at most medium)"]

    attested = ocimodel.scan(good_ref, attest=True, key=private)
    assert attested.attestation is not None and not attested.failed
    assert ocimodel.verify(good_ref, policy=policy).allowed

    # The malicious model's attested scan says critical: the attestation is there and
    # signed, and the policy still denies.
    flagged = ocimodel.scan(bad_ref, attest=True, key=private)
    assert flagged.failed and flagged.attestation is not None
    decision = ocimodel.verify(bad_ref, policy=policy)
    assert not decision.allowed
    failed = [r for r in decision.reasons if not r.passed]
    assert len(failed) == 1 and "found critical, above the policy's medium" in failed[0].detail
    assert ocimodel.verify(bad_ref, policy=_policy(tmp_path, public, "critical")).allowed

    run = _cli(tmp_path, "verify", bad_ref, "--policy", policy)
    assert run.returncode == 1 and "FAIL scan" in run.stdout

    # pull --verify refuses before a byte is downloaded, leaving nothing behind.
    out = tmp_path / "out"
    with pytest.raises(PolicyDenied):
        ocimodel.pull(bad_ref, out, verify=ocimodel.api.trust.verify_hook(policy=policy))
    assert not out.exists()
    run = _cli(tmp_path, "pull", bad_ref, out, "--verify", "--policy", policy)
    assert run.returncode == 1 and not out.exists()


def test_a_scan_attestation_must_cover_every_layer(registry, repo_name, tmp_path, keys, good: Path):
    """A signed scan of another model (same signer) does not count for this one."""
    private, public = keys
    policy = _policy(tmp_path, public)
    ref = f"{registry.host}/{repo_name}:1"
    pushed = ocimodel.push(good, ref)
    ocimodel.sign(ref, key=private, file_signature=False)
    from ocimodel.scanning.predicate import SCAN_PREDICATE

    # An attestation of our type about this manifest that lists only one of its layers.
    only = [f.digest for f in pushed.files][:1]
    ocimodel.attest(ref, predicate_type=SCAN_PREDICATE, key=private, predicate={
        "layers": [{"digest": d} for d in only], "maxSeverity": None,
    })
    decision = ocimodel.verify(ref, policy=policy)
    assert not decision.allowed
    assert "does not cover layer" in next(r.detail for r in decision.reasons if not r.passed)


def test_verify_scan_scans_then_and_there(bad, good, registry, repo_name, tmp_path, keys):
    private, public = keys
    policy = _policy(tmp_path, public)
    good_ref, bad_ref = f"{registry.host}/{repo_name}:good", f"{registry.host}/{repo_name}:bad"
    for model, ref in ((good, good_ref), (bad, bad_ref)):
        ocimodel.push(model, ref)
        ocimodel.sign(ref, key=private, file_signature=False)
    assert ocimodel.verify(good_ref, policy=policy, scan=True).allowed
    decision = ocimodel.verify(bad_ref, policy=policy, scan=True)
    assert not decision.allowed
    assert [r.detail for r in decision.reasons if not r.passed] == ["scanned here: found critical, above medium"]
    # Without a scan rule, --scan still denies what scan would fail (high or worse).
    run = _cli(tmp_path, "verify", bad_ref, "--key", public, "--scan")
    assert run.returncode == 1 and "FAIL scan" in run.stdout
    assert _cli(tmp_path, "verify", good_ref, "--key", public, "--scan").returncode == 0


def test_verify_scan_of_a_variant_index_is_a_failed_rule_not_a_usage_error(good, registry, repo_name, tmp_path, keys):
    # `verify INDEX --scan` answered "holds 2 variants: choose one with --variant" (exit 2),
    # an option verify does not have; an attested scan of an index is already a failed
    # rule saying a scan covers a model's layers, and --scan now says the same.
    private, public = keys
    repository = f"{registry.host}/{repo_name}"
    ocimodel.push(good, f"{repository}:1.0-a")
    (good / "weights.pkl").write_bytes(b"fine too")
    ocimodel.push(good, f"{repository}:1.0-b")
    ocimodel.create_index(f"{repository}:1.0", ["1.0-a,quant=a", "1.0-b,quant=b"])
    ocimodel.sign(f"{repository}:1.0", key=private, file_signature=False)
    run = _cli(tmp_path, "verify", f"{repository}:1.0", "--key", public, "--scan")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "--variant" not in run.stderr + run.stdout
    assert any(line.startswith("FAIL scan") and "is an index" in line for line in run.stdout.splitlines()), run.stdout


def test_promote_with_a_scan_requirement_refuses_a_flagged_model(bad, good, registry, repo_name, tmp_path, keys):
    """A promotion gate that requires the scan section: the alias moves only onto a model
    whose signed scan passes; a flagged model is refused and the alias stays put."""
    private, public = keys
    policy = tmp_path / "gate.json"
    policy.write_text(json.dumps({
        "signers": {"ci": {"key": str(public)}},
        "scan": {"max_severity": "medium", "signers": ["ci"]},
        "aliases": {"production": {"require": ["scan"], "promoters": ["ci"]}},
    }))
    good_ref, bad_ref = f"{registry.host}/{repo_name}:1.0", f"{registry.host}/{repo_name}:1.1"
    ocimodel.push(good, good_ref)
    ocimodel.push(bad, bad_ref)
    ocimodel.scan(good_ref, attest=True, key=private)
    ocimodel.scan(bad_ref, attest=True, key=private)

    moved = ocimodel.promote(good_ref, "production", key=private, policy=policy)
    assert moved.gate is not None and moved.gate.allowed
    with pytest.raises(PromotionDenied) as denied:
        ocimodel.promote(bad_ref, "production", key=private, policy=policy)
    assert "scan" in denied.value.message
    production = ocimodel.inspect(f"{registry.host}/{repo_name}:production")
    assert production.digest == moved.to_digest  # still the clean model

    run = _cli(tmp_path, "promote", bad_ref, "--to", "production", "--key", private, "--policy", policy)
    assert run.returncode == 1 and "scan" in run.stderr
    assert ocimodel.inspect(f"{registry.host}/{repo_name}:production").digest == moved.to_digest

