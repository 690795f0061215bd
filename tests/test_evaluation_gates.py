"""The policy's evaluations rule (issue 18) at the gates: a promotion gate, verify and
pull --verify judge the latest evaluation record signed by a signer the policy trusts.
A good record that is unsigned, or signed by a key the policy does not trust, counts for
nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import ocimodel
from ocimodel.api.common import as_reference, open_store
from ocimodel.api.promotions import PromotionDenied
from ocimodel.api.statements import write_unsigned
from ocimodel.monitoring.policy import EVALUATION_PREDICATE
from ocimodel.signing.statement import attestation_statement
from ocimodel.transport.connection import ConnectionOptions
from ocimodel.trust.verify import PolicyDenied

pytestmark = pytest.mark.registry


def _when(days_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days_ago)).isoformat(timespec="seconds").replace("+00:00", "Z")


def _predicate(accuracy: float, days_ago: float, environment: str = "production") -> dict:
    return {"metrics": [{"name": "accuracy", "value": accuracy, "dataset": "https://data.example/holdout"}],
            "environment": environment, "time": _when(days_ago), "recorder": "ci"}


def _record(ref: str, key: Path, accuracy: float, days_ago: float = 0, environment: str = "production") -> None:
    ocimodel.attest(ref, predicate_type=EVALUATION_PREDICATE, key=key,
                    predicate=_predicate(accuracy, days_ago, environment))


def _unsigned(ref: str, accuracy: float) -> None:
    reference = as_reference(ref)
    with open_store(ConnectionOptions(), reference, for_write=True) as target:
        root = target.resolve(reference.reference)
        write_unsigned(target, root, attestation_statement(root.digest, EVALUATION_PREDICATE, _predicate(accuracy, 0)))


@pytest.fixture
def setup(tmp_path: Path, registry, repo_name: str):
    ci, ci_pub = tmp_path / "ci.key", tmp_path / "ci.pub"
    rogue, rogue_pub = tmp_path / "rogue.key", tmp_path / "rogue.pub"
    release, release_pub = tmp_path / "release.key", tmp_path / "release.pub"
    for private, public in ((ci, ci_pub), (rogue, rogue_pub), (release, release_pub)):
        ocimodel.generate_key_pair(private, public)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({
        # release is trusted, but not for evaluations; rogue is not trusted at all
        "signers": {"ci": {"key": str(ci_pub)}, "release": {"key": str(release_pub)}},
        "evaluations": [{"metric": "accuracy", "min": 0.9, "max_age": "7d", "signers": ["ci"],
                         "environment": "production"}],
        "aliases": {"production": {"require": ["evaluations"], "promoters": ["ci"]}},
    }))
    repository = f"{registry.host}/{repo_name}"
    refs = {}
    for version in ("1.0", "1.1", "1.2", "1.3"):
        model = tmp_path / f"m{version}"
        model.mkdir()
        (model / "weights.bin").write_bytes(f"weights of {version}".encode())
        refs[version] = f"{repository}:{version}"
        ocimodel.push(model, refs[version])
    return {"ci": ci, "rogue": rogue, "release": release, "policy": policy, "refs": refs, "repository": repository}


def test_promotion_gate_needs_a_fresh_good_record_from_a_trusted_signer(setup):
    ci, rogue, policy, refs = setup["ci"], setup["rogue"], setup["policy"], setup["refs"]
    # 1.0: its last trusted record is below the threshold (an earlier one was fine)
    _record(refs["1.0"], ci, 0.95, days_ago=2)
    _record(refs["1.0"], ci, 0.85, days_ago=1)
    # 1.1: good, but measured ten days ago
    _record(refs["1.1"], ci, 0.95, days_ago=10)
    # 1.2: good and fresh
    _record(refs["1.2"], ci, 0.93, days_ago=1)
    # 1.3: the trusted record is bad; newer good ones are unsigned, by an untrusted key,
    # by a signer the rule does not name, or of another environment: none of them counts
    _record(refs["1.3"], ci, 0.80, days_ago=3)
    _unsigned(refs["1.3"], 0.99)
    _record(refs["1.3"], rogue, 0.99, days_ago=0)
    _record(refs["1.3"], setup["release"], 0.99, days_ago=0)
    _record(refs["1.3"], ci, 0.99, days_ago=0, environment="staging")

    for version, said in (("1.0", "accuracy is 0.85"), ("1.1", "older than 7d"), ("1.3", "accuracy is 0.8")):
        with pytest.raises(PromotionDenied) as denied:
            ocimodel.promote(refs[version], "production", key=ci, policy=policy)
        assert said in denied.value.message, (version, denied.value.message)
    with pytest.raises(ocimodel.OcimodelError):
        ocimodel.inspect(f"{setup['repository']}:production")  # nothing moved it

    moved = ocimodel.promote(refs["1.2"], "production", key=ci, policy=policy)
    assert moved.gate is not None and moved.gate.allowed
    assert [r.rule for r in moved.gate.reasons] == ["evaluation accuracy (>= 0.9, within 7d)"]
    assert ocimodel.inspect(f"{setup['repository']}:production").digest == moved.to_digest


def test_verify_and_pull_verify_apply_the_rule(setup, tmp_path: Path):
    ci, rogue, policy, refs = setup["ci"], setup["rogue"], setup["policy"], setup["refs"]
    ocimodel.sign(refs["1.0"], key=ci, file_signature=False)
    _record(refs["1.0"], rogue, 0.97)  # a key the policy does not trust: no record at all
    decision = ocimodel.verify(refs["1.0"], policy=policy)
    failed = [r for r in decision.reasons if not r.passed]
    assert not decision.allowed and [r.rule for r in failed] == ["evaluation accuracy (>= 0.9, within 7d)"]
    assert "no evaluation record of accuracy in production signed by ci" in failed[0].detail
    out = tmp_path / "out"
    with pytest.raises(PolicyDenied):
        ocimodel.pull(refs["1.0"], out, verify=ocimodel.api.trust.verify_hook(policy=policy))
    assert not out.exists()
    _record(refs["1.0"], ci, 0.91)
    assert ocimodel.verify(refs["1.0"], policy=policy).allowed
    ocimodel.pull(refs["1.0"], out, verify=ocimodel.api.trust.verify_hook(policy=policy))
    assert (out / "weights.bin").exists()
