"""The trust commands as a user runs them: key generate, sign, attest, verify (exit 0 allow,
1 deny, reasons one per line, --json), signature export, and their usage errors."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import ocimodel
from tests.test_cli import json_of, ocimodel_cli, ok, usage_error_problems

# every test runs the CLI in subprocesses, several times
pytestmark = pytest.mark.slow

NO_PASSWORD = {"OCIMODEL_KEY_PASSWORD": ""}
TRUST_COMMANDS = ["sign", "attest", "verify", "signature export", "key generate"]


def test_help_teaches_by_example():
    with ThreadPoolExecutor(max_workers=len(TRUST_COMMANDS) + 1) as pool:
        runs = list(pool.map(lambda argv: ok(*argv), [["--help"], *([*c.split(), "--help"] for c in TRUST_COMMANDS)]))
    for command in ("sign", "attest", "verify", "signature", "key"):
        assert f" {command} " in runs[0].out
    for command, run in zip(TRUST_COMMANDS, runs[1:]):
        assert any(line.strip().startswith(f"ocimodel {command} ") for line in run.out.splitlines()), str(run)


def test_key_generate_sign_verify_round_trip(registry, repo_name, model_dir, tmp_path: Path):
    ref = f"{registry.host}/{repo_name}:1"
    ocimodel.push(model_dir, ref)
    generated = json_of(ok("key", "generate", "--output-key-prefix", tmp_path / "release", "--json",
                           env={"OCIMODEL_KEY_PASSWORD": "s3cret"}))
    assert generated["encrypted"] and Path(generated["private_key"]).stat().st_mode & 0o777 == 0o600
    ok("generate-key-pair", "--output-key-prefix", tmp_path / "other", "--no-password")
    again = ocimodel_cli("key", "generate", "--output-key-prefix", tmp_path / "release", env=NO_PASSWORD)
    assert again.code == 2 and "refusing to overwrite" in again.err

    # Encrypted key, no password, no terminal: an error that says how to give it.
    refused = ocimodel_cli("sign", ref, "--key", tmp_path / "release.key")
    assert refused.code == 2 and "OCIMODEL_KEY_PASSWORD" in refused.err and "Traceback" not in refused.err
    missing_key = ocimodel_cli("sign", ref, "--key", tmp_path / "no-such.key")
    assert missing_key.code == 2 and "Traceback" not in missing_key.err

    signed = ok("sign", ref, "--key", tmp_path / "release.key", "-q", env={"OCIMODEL_KEY_PASSWORD": "s3cret"})
    referrers = signed.out.split()
    assert len(referrers) == 2 and all(r.startswith("sha256:") for r in referrers)

    allowed = ok("verify", ref, "--key", tmp_path / "release.pub")
    lines = allowed.out.splitlines()
    assert lines[0].startswith(f"Allowed: {ref} (sha256:")
    assert lines[1] == f"pass signature: signed by {tmp_path / 'release.pub'}"

    denied = ocimodel_cli("verify", ref, "--key", tmp_path / "other.pub")
    assert denied.code == 1, str(denied)
    assert denied.out.startswith("Denied: ")
    assert any(line.startswith("FAIL signature: no valid signature") for line in denied.out.splitlines())
    assert sum(line.startswith("refused sha256:") for line in denied.out.splitlines()) == 2

    # Any one of several keys.
    ok("verify", ref, "--key", tmp_path / "other.pub", "--key", tmp_path / "release.pub")

    decision = json.loads(ocimodel_cli("verify", ref, "--key", tmp_path / "other.pub", "--json").out)
    assert decision["allowed"] is False and decision["reasons"][0]["rule"] == "signature"
    assert {r["reason"] for r in decision["refused"]} == {"untrusted-signature"}

    # pull --verify: denied before any file is written; allowed pulls as usual.
    denied_pull = ocimodel_cli("pull", ref, tmp_path / "denied", "--verify", "--key", tmp_path / "other.pub")
    assert denied_pull.code == 1 and "denied by the policy" in denied_pull.err and "Traceback" not in denied_pull.err
    assert not (tmp_path / "denied").exists()
    ok("pull", ref, tmp_path / "allowed", "--verify", "--key", tmp_path / "release.pub")
    assert (tmp_path / "allowed" / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    for args in (("--key", tmp_path / "release.pub"), ("--verify",)):
        assert not usage_error_problems(ocimodel_cli("pull", ref, tmp_path / "x", *args)), args


def test_unsigned_attest_policy_and_export(model_dir, tmp_path: Path):
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    ok("key", "generate", "--output-key-prefix", tmp_path / "k", env=NO_PASSWORD)

    unsigned = ocimodel_cli("verify", ref, "--key", tmp_path / "k.pub")
    assert unsigned.code == 1 and "FAIL signature: unsigned" in unsigned.out

    ok("sign", ref, "--key", tmp_path / "k.key", "--no-file-signature")
    (tmp_path / "policy.yaml").write_text(
        "signers: {k: {key: k.pub}}\n"
        "attestations: [{type: 'https://cyclonedx.org/bom'}]\n"
    )
    missing = ocimodel_cli("verify", ref, "--policy", tmp_path / "policy.yaml")
    assert missing.code == 1
    assert missing.out.splitlines()[1:] == [
        "pass signature: signed by k",
        "FAIL attestation https://cyclonedx.org/bom: no valid attestation of type https://cyclonedx.org/bom by k",
    ]
    (tmp_path / "sbom.json").write_text(json.dumps({"bomFormat": "CycloneDX"}))
    attested = json_of(ok("attest", ref, "--predicate", tmp_path / "sbom.json", "--type", "https://cyclonedx.org/bom",
                          "--key", tmp_path / "k.key", "--json"))
    assert attested["predicate_type"] == "https://cyclonedx.org/bom"
    ok("verify", ref, "--policy", tmp_path / "policy.yaml")

    no_files = ocimodel_cli("signature", "export", ref, "--format", "model-signing", "-o", tmp_path / "model.sig")
    assert no_files.code == 1 and "no file-level signature" in no_files.err
    ok("sign", ref, "--key", tmp_path / "k.key")
    exported = json_of(ok("signature", "export", ref, "--format", "model-signing", "-o", tmp_path / "model.sig", "--json"))
    bundle = json.loads((tmp_path / "model.sig").read_text())
    assert exported["path"] == str(tmp_path / "model.sig")
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"


def test_usage_errors(model_dir, tmp_path: Path):
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    (tmp_path / "bad.yaml").write_text("signers: {a: {key: a.pub}}\nsignature: {match: all_of}\n")
    calls = [
        (("verify", ref), NO_PASSWORD),
        (("verify", ref, "--certificate-identity", "dev@example.com"), NO_PASSWORD),
        (("verify", ref, "--policy", tmp_path / "bad.yaml"), NO_PASSWORD),
        (("attest", ref, "--predicate", tmp_path / "bad.yaml"), NO_PASSWORD),
        (("signature", "export", ref, "--format", "cosign", "-o", tmp_path / "x"), NO_PASSWORD),
        # No password anywhere and no terminal: the new key cannot be encrypted.
        (("key", "generate", "--output-key-prefix", tmp_path / "k"), {}),
    ]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        runs = list(pool.map(lambda call: ocimodel_cli(*call[0], env=call[1]), calls))
    for run in runs:
        assert not usage_error_problems(run), usage_error_problems(run)
    assert "OCIMODEL_KEY_PASSWORD" in runs[-1].err


def test_configuration_errors_are_usage_errors_not_denials(model_dir, tmp_path: Path):
    """Issue 7 review: a key, policy key or trusted root that cannot be read is a mistake
    in the command (exit 2, nothing verified), not a verdict about the model (exit 1)."""
    ref = f"oci:{tmp_path / 'store'}:1"
    ocimodel.push(model_dir, ref)
    ok("key", "generate", "--output-key-prefix", tmp_path / "k", env=NO_PASSWORD)
    (tmp_path / "not-pem.pub").write_text("not a key\n")
    (tmp_path / "missing-key.yaml").write_text("signers: {release: {key: missing.pub}}\n")
    (tmp_path / "not-pem.yaml").write_text("signers: {release: {key: not-pem.pub}}\n")
    (tmp_path / "same-key.yaml").write_text("signers: {a: {key: k.pub}, b: {key: ./k.pub}}\nsignature: {match: all-of}\n")
    (tmp_path / "binary-key.yaml").write_text("signers:\n  a: {key: k.pub}\n  !!binary YQ==: {key: not-pem.pub}\n")
    calls = [
        (("verify", ref, "--key", tmp_path / "missing.pub"), "missing.pub does not exist"),
        (("verify", ref, "--key", tmp_path / "not-pem.pub"), "is not a PEM public key"),
        (("verify", ref, "--policy", tmp_path / "missing-key.yaml"), "signer 'release': "),
        (("verify", ref, "--policy", tmp_path / "not-pem.yaml"), "is not a PEM public key"),
        (("verify", ref, "--policy", tmp_path / "same-key.yaml"), "the same public key"),
        (("verify", ref, "--policy", tmp_path / "binary-key.yaml"), "a key must be a string"),
        (("verify", ref, "--key", tmp_path / "k.pub", "--trusted-root", tmp_path / "nope.json"), "cannot read the trusted root"),
        (("verify", ref, "--certificate-identity", "a@b", "--certificate-oidc-issuer", "https://x",
          "--trusted-root", tmp_path / "nope.json"), "cannot read the trusted root"),
        (("pull", ref, tmp_path / "out", "--verify", "--key", tmp_path / "missing.pub"), "does not exist"),
        (("signature", "export", ref, "-o", tmp_path / "m.sig", "--key", tmp_path / "missing.pub"), "does not exist"),
    ]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        runs = list(pool.map(lambda call: ocimodel_cli(*call[0], env=NO_PASSWORD), calls))
    for (argv, message), run in zip(calls, runs):
        assert not usage_error_problems(run), usage_error_problems(run)
        assert message in run.err, (argv, run.err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.sig").exists()


def test_verify_and_export_help_name_the_trust_root_actually_used():
    for command in (("verify",), ("signature", "export")):
        text = " ".join(ok(*command, "--help").out.split())
        assert "shipped with sigstore-python" in text and "never a cached copy" in text, text
