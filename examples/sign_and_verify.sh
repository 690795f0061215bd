#!/usr/bin/env bash
# Key-based signing end to end: make a key pair, push and sign a model, attest an
# evaluation, verify with a policy file, pull only after the policy allows it, and check
# the pulled directory with the OpenSSF model-signing format.
#
#   examples/sign_and_verify.sh                                  # into a fresh OCI layout, no server
#   examples/sign_and_verify.sh localhost:5000/team/sentiment    # into a registry repository
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."   # the repo root

OCIMODEL=${OCIMODEL:-.venv/bin/ocimodel}
PYTHON=${PYTHON:-.venv/bin/python}
WORK=${WORK:-$(mktemp -d)}
REPO=${1:-oci:$WORK/store}
export OCIMODEL_KEY_PASSWORD=${OCIMODEL_KEY_PASSWORD:-example-only-password}

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

"$PYTHON" examples/make_example_model.py "$WORK/model" >/dev/null
step "$OCIMODEL" key generate --output-key-prefix "$WORK/release"
step "$OCIMODEL" push "$WORK/model" "$REPO:1.0" --name sentiment --version 1.0 -q
step "$OCIMODEL" sign "$REPO:1.0" --key "$WORK/release.key"

printf '{"accuracy": 0.93, "dataset": "imdb"}\n' > "$WORK/eval.json"
step "$OCIMODEL" attest "$REPO:1.0" --predicate "$WORK/eval.json" --type https://example.com/eval/v1 --key "$WORK/release.key"

cat > "$WORK/policy.yaml" <<POLICY
version: 1
signers:
  release: {key: release.pub}
signature:
  signers: [release]
  files: true
attestations:
  - type: https://example.com/eval/v1
    signers: [release]
POLICY
step "$OCIMODEL" verify "$REPO:1.0" --policy "$WORK/policy.yaml"
step "$OCIMODEL" pull "$REPO:1.0" "$WORK/pulled" --verify --policy "$WORK/policy.yaml"
step "$OCIMODEL" signature export "$REPO:1.0" --format model-signing --key "$WORK/release.pub" -o "$WORK/model.sig"
if [[ -x .venv/bin/model_signing ]]; then
    step .venv/bin/model_signing verify key "$WORK/pulled" --signature "$WORK/model.sig" --public_key "$WORK/release.pub"
fi

echo
echo "sign and verify OK ($REPO)"
