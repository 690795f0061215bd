#!/usr/bin/env bash
# End-to-end demo: push an example model into a local OCI layout, inspect it, list it,
# pull it back and check the pulled files are identical. Run with `make demo`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # the repo root

OCIMODEL=.venv/bin/ocimodel
if [[ ! -x "$OCIMODEL" ]]; then
    echo "error: $OCIMODEL not found: run 'make venv' (or 'make demo') first" >&2
    exit 1
fi

rm -rf demo
mkdir demo

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step .venv/bin/python examples/make_example_model.py demo/model
step "$OCIMODEL" push demo/model oci:demo/store:example:1.0 \
    --name example --version 1.0 --description "Demo model" --license Apache-2.0
step "$OCIMODEL" inspect oci:demo/store:example:1.0
step "$OCIMODEL" ls oci:demo/store
step "$OCIMODEL" pull oci:demo/store:example:1.0 demo/pulled
step diff -r demo/model demo/pulled

echo
echo "demo OK: demo/pulled is identical to demo/model"
