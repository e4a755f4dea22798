#!/usr/bin/env bash
# Runs the whole test suite. The real sops files live outside the project, in
# ../shared/vectors/sops; the tests find them through VEIL_SOPS_VECTORS and say so when it is unset.
set -euo pipefail
cd "$(dirname "$0")/.."

vectors="${VEIL_SOPS_VECTORS:-$(cd .. && pwd)/shared/vectors/sops}"
if [ -d "$vectors" ]; then
  export VEIL_SOPS_VECTORS="$vectors"
else
  echo "note: no sops vectors at $vectors; the tests that need them will be skipped" >&2
  unset VEIL_SOPS_VECTORS
fi

cargo test --all-targets --locked "$@"
