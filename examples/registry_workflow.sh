#!/usr/bin/env bash
# The model registry workflow: three versions with metrics and lineage, promotion to
# production and a rollback with an audit trail, an evaluation attached as a referrer,
# a diff, and an air-gapped export/import.
#
#   examples/registry_workflow.sh                          # into a fresh OCI layout, no server
#   examples/registry_workflow.sh localhost:5000/team/sentiment   # into a registry repository
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."   # the repo root

OCIMODEL=${OCIMODEL:-.venv/bin/ocimodel}
PYTHON=${PYTHON:-.venv/bin/python}
WORK=${WORK:-$(mktemp -d)}
REPO=${1:-oci:$WORK/store}
export OCIMODEL_ACTOR=${OCIMODEL_ACTOR:-example-user}

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

"$PYTHON" examples/make_example_model.py "$WORK/v1" >/dev/null
cp -r "$WORK/v1" "$WORK/v2" && printf 'fine-tuned\n' >> "$WORK/v2/README.md"
cp -r "$WORK/v2" "$WORK/v3" && printf 'more data\n' >> "$WORK/v3/README.md"

step "$OCIMODEL" push "$WORK/v1" "$REPO:1.0" --name sentiment --version 1.0 --license Apache-2.0 \
    --task text-classification --metric accuracy=0.90@imdb:test -q
step "$OCIMODEL" push "$WORK/v2" "$REPO:1.1" --name sentiment --version 1.1 --license Apache-2.0 \
    --metric accuracy=0.93@imdb:test --param lr=3e-5 --base "$REPO:1.0" -q
step "$OCIMODEL" push "$WORK/v3" "$REPO:1.2" --name sentiment --version 1.2 --license Apache-2.0 \
    --metric accuracy=0.95@imdb:test -q

step "$OCIMODEL" promote "$REPO:1.1" --to production --reason "beats 1.0 on imdb"
step "$OCIMODEL" promote "$REPO:1.2" --to production --reason "more data"
step "$OCIMODEL" rollback "$REPO" --alias production --reason "latency regression in 1.2"
step "$OCIMODEL" history "$REPO" --alias production
step "$OCIMODEL" versions "$REPO"
step "$OCIMODEL" lineage "$REPO:1.0" --down
step "$OCIMODEL" diff "$REPO:1.0" "$REPO:1.1"

printf '{"accuracy": 0.93, "dataset": "imdb", "split": "test"}\n' > "$WORK/eval.json"
step "$OCIMODEL" attach "$REPO:1.1" "$WORK/eval.json" --artifact-type application/vnd.example.eval.v1+json -a dataset=imdb
step "$OCIMODEL" discover "$REPO:1.1"
step "$OCIMODEL" export "$REPO:1.1" "$WORK/sentiment-1.1.tar"
step "$OCIMODEL" import "$WORK/sentiment-1.1.tar" "oci:$WORK/airgap"
step "$OCIMODEL" discover "oci:$WORK/airgap:1.1"

echo
echo "registry workflow OK ($REPO)"
