#!/usr/bin/env bash
# An end-to-end model pipeline: train a small scikit-learn model, push it with its metrics,
# scan it, sign it, attest its provenance and its bill of materials, record its evaluation,
# promote it to staging and then to production through the policy's gates, and verify the
# production alias as the cluster would (`ocimodel verify --policy`, the admission check).
#
#   examples/pipeline/pipeline.sh localhost:5000/team/iris      # into a registry repository
#   examples/pipeline/pipeline.sh                               # into a fresh OCI layout
#
# Signing: with OCIMODEL_PIPELINE_KEY=PATH (an ECDSA P-256 private key; its public key
# beside it as PATH with .pub instead of .key) every signature is made with that key;
# with OCIMODEL_PIPELINE_KEYLESS=1 they are keyless (Sigstore, the CI job's OIDC identity:
# set OCIMODEL_PIPELINE_IDENTITY and OCIMODEL_PIPELINE_ISSUER to that identity, which the
# policy then trusts); with neither (a laptop, the test suite) a throwaway key pair is
# generated in $WORK.
#
# The evaluation step (`ocimodel eval record`, and the evaluations rule in the production
# gate) is on by default; OCIMODEL_PIPELINE_EVAL=0 leaves both out.
#
# Outputs: the last line is `pipeline OK REPO@DIGEST`; $WORK keeps the model, the policy,
# scan.sarif, sbom.cdx.json and verify.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # the repo root: the local provenance records its commit

OCIMODEL=${OCIMODEL:-ocimodel}
PYTHON=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d)}
REPO=${1:-oci:$WORK/store}
VERSION=${VERSION:-1.0}
export OCIMODEL_ACTOR=${OCIMODEL_ACTOR:-pipeline}
EVAL=${OCIMODEL_PIPELINE_EVAL:-1}

step() { printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; "$@"; }

# -- who signs --------------------------------------------------------------------------
if [[ "${OCIMODEL_PIPELINE_KEYLESS:-0}" == 1 ]]; then
    : "${OCIMODEL_PIPELINE_IDENTITY:?keyless: the identity the policy trusts (e.g. https://github.com/ORG/REPO/.github/workflows/release.yml@refs/heads/main)}"
    : "${OCIMODEL_PIPELINE_ISSUER:?keyless: its OIDC issuer (e.g. https://token.actions.githubusercontent.com)}"
    signing=()   # sign, scan --attest, attest and sbom --attest use the ambient CI identity
    recording=(--keyless)   # eval record writes an unsigned record without a signing option
    # promote signs its record only when given a signing option: hand it the job's token.
    if [[ -z "${SIGSTORE_ID_TOKEN:-}" ]]; then
        SIGSTORE_ID_TOKEN=$("$PYTHON" -c 'from ocimodel.trust.keyless import identity_token_from_environment as t; print(t() or "")')
        export SIGSTORE_ID_TOKEN
    fi
    if [[ -z "$SIGSTORE_ID_TOKEN" ]]; then
        echo "keyless: no OIDC token (GitHub Actions: permissions id-token: write; GitLab: id_tokens SIGSTORE_ID_TOKEN, aud sigstore)" >&2
        exit 1
    fi
    signer="{identity: \"$OCIMODEL_PIPELINE_IDENTITY\", issuer: \"$OCIMODEL_PIPELINE_ISSUER\"}"
else
    unset SIGSTORE_ID_TOKEN OCIMODEL_IDENTITY_TOKEN   # a key and a token together are refused
    KEY=${OCIMODEL_PIPELINE_KEY:-}
    if [[ -z "$KEY" ]]; then
        export OCIMODEL_KEY_PASSWORD=${OCIMODEL_KEY_PASSWORD:-example-only-password}
        step "$OCIMODEL" key generate --output-key-prefix "$WORK/release" >&2
        KEY=$WORK/release.key
    fi
    [[ "${KEY%.key}.pub" -ef "$WORK/release.pub" ]] || cp "${KEY%.key}.pub" "$WORK/release.pub"
    signing=(--key "$KEY")
    recording=(--key "$KEY")
    signer="{key: release.pub}"
fi

# -- the policy: what verify, the promotion gates and the cluster require ----------------
evaluation_gate=""
if [[ "$EVAL" == 1 ]]; then
    evaluation_gate=", evaluations"
fi
cat > "$WORK/policy.yaml" <<POLICY
version: 1
signers:
  release: $signer
signature:
  signers: [release]
  files: true                      # the OpenSSF model-signing file statement too
attestations:
  - type: https://slsa.dev/provenance/v1
    signers: [release]
  - type: https://cyclonedx.org/bom
    signers: [release]
scan:
  max_severity: low                # a signed scan of this very digest, nothing above low
  signers: [release]
licenses:
  allow: [Apache-2.0, MIT, BSD-3-Clause]
  unknown: deny
aliases:
  staging:
    require: [signature, scan]
  production:
    require: [signature, attestations, scan, licenses$evaluation_gate]
    promoters: [release]
POLICY
if [[ "$EVAL" == 1 ]]; then
    # The newest evaluation record of the pipeline's own environment, signed by release,
    # must say accuracy >= 0.9 and be at most a week old.
    cat >> "$WORK/policy.yaml" <<POLICY
evaluations:
  - metric: accuracy
    min: 0.9
    max_age: 7d
    signers: [release]
    environment: ci
POLICY
fi

# -- train ----------------------------------------------------------------------------------
step "$PYTHON" examples/pipeline/train.py "$WORK/model" >&2
metric() { "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/model/metrics.json" "$1"; }
ACCURACY=$(metric accuracy)
F1=$(metric f1_macro)

# -- push with the metrics: from here on everything is about this digest ------------------
DIGEST=$(step "$OCIMODEL" push "$WORK/model" "$REPO:$VERSION" --name iris-classifier --version "$VERSION" \
    --license Apache-2.0 --framework scikit-learn --task tabular-classification \
    --metric "accuracy=$ACCURACY@iris:test" --metric "f1_macro=$F1@iris:test" --param seed=7 -q)
REF="$REPO@$DIGEST"
echo "pushed $REF" >&2

# -- scan, sign, attest ---------------------------------------------------------------------
step "$OCIMODEL" scan "$REF" --fail-on medium --sarif "$WORK/scan.sarif" --attest "${signing[@]}" >&2
step "$OCIMODEL" sign "$REF" "${signing[@]}" >&2
step "$OCIMODEL" attest "$REF" --provenance "${signing[@]}" -q >&2
step "$OCIMODEL" sbom "$REF" --attest -o "$WORK/sbom.cdx.json" --force "${signing[@]}" >&2

# -- record the evaluation ------------------------------------------------------------------
if [[ "$EVAL" == 1 ]]; then
    step "$OCIMODEL" eval record "$REF" --metric "accuracy=$ACCURACY" --metric "f1_macro=$F1" \
        --dataset sklearn:iris --split test --environment ci "${recording[@]}" >&2
fi

# -- promote through the gates --------------------------------------------------------------
step "$OCIMODEL" promote "$REF" --to staging --policy "$WORK/policy.yaml" \
    --reason "scanned and signed; held-out accuracy $ACCURACY" "${signing[@]}" >&2
step "$OCIMODEL" promote "$REF" --to production --policy "$WORK/policy.yaml" \
    --reason "provenance and SBOM attested; license allowed; evaluated" "${signing[@]}" >&2

# -- verify as the cluster would: the alias, resolved once, judged by the whole policy ------
step "$OCIMODEL" verify "$REPO:production" --policy "$WORK/policy.yaml" --json > "$WORK/verify.json"
"$PYTHON" - "$WORK/verify.json" "$DIGEST" <<'CHECK'
import json, sys
decision = json.load(open(sys.argv[1]))
if decision["digest"] != sys.argv[2]:
    sys.exit(f"production names {decision['digest']}, the pipeline verified {sys.argv[2]}")
CHECK

echo "pipeline OK $REF"
