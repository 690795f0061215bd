"""examples/pipeline/pipeline.sh end to end against the real registry: train a scikit-learn
model, push it with its metrics, scan, sign, attest, record its evaluation, promote it to
staging and production through the policy's gates, and verify production as a cluster
would. Then the gate the pipeline relies on: an unsigned model cannot take production."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.support.cli_env import user_env

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_the_pipeline_trains_pushes_signs_attests_evaluates_promotes_and_verifies(registry, repo_name, model_dir, tmp_path):
    repository = f"{registry.host}/{repo_name}"
    work = tmp_path / "work"
    work.mkdir()
    env = user_env(OCIMODEL=str(BIN / "ocimodel"), PYTHON=sys.executable, WORK=str(work), PATH=f"{BIN}:{user_env().get('PATH', '')}")
    env.pop("SIGSTORE_ID_TOKEN", None)
    done = subprocess.run(["bash", str(ROOT / "examples" / "pipeline" / "pipeline.sh"), repository],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    match = re.search(rf"^pipeline OK {re.escape(repository)}@(sha256:[0-9a-f]{{64}})$", done.stdout, re.M)
    assert match, done.stdout
    digest = match.group(1)

    # The gates were passed, each on its own rules: staging on signature and scan,
    # production on everything, the evaluation included.
    log = done.stderr
    assert log.count("Gate: allowed by the policy") == 2
    production_gate = log[log.index("--to production"):]
    for rule in ("pass signature", "pass file-signature", "pass attestation https://slsa.dev/provenance/v1",
                 "pass attestation https://cyclonedx.org/bom", "pass scan", "pass licenses: allowed: Apache-2.0",
                 "pass evaluation accuracy"):
        assert rule in production_gate, rule

    # Verified as the cluster would: the alias, by the whole policy, is the pushed digest.
    decision = json.loads((work / "verify.json").read_text())
    assert decision["allowed"] and decision["digest"] == digest

    # The gate is what keeps production safe: an unsigned model is refused and nothing moves.
    policy = work / "policy.yaml"
    pushed = subprocess.run([str(BIN / "ocimodel"), "push", str(model_dir), f"{repository}:2.0", "--license", "Apache-2.0", "-q"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert pushed.returncode == 0, pushed.stderr
    refused = subprocess.run(
        [str(BIN / "ocimodel"), "promote", f"{repository}:2.0", "--to", "production", "--policy", str(policy),
         "--key", str(work / "release.key")],
        capture_output=True, text=True, env={**env, "OCIMODEL_KEY_PASSWORD": "example-only-password"}, timeout=60,
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "signature" in refused.stderr and "unsigned" in refused.stderr
    after = subprocess.run([str(BIN / "ocimodel"), "inspect", f"{repository}:production", "--json"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert after.returncode == 0 and json.loads(after.stdout)["digest"] == digest
    metrics = json.loads((work / "model" / "metrics.json").read_text())
    assert f"{metrics['accuracy']}" in after.stdout  # the model was pushed with its metrics
