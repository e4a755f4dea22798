#!/usr/bin/env bash
# Side-by-side benchmark: veil vs rops 0.1.7 (the other Rust implementation of the sops format).
# Builds veil in release mode, installs rops-cli into bench/work (once), generates inputs with
# ../shared/bench/gen_corpus.py and prints a Markdown table (median of 5 runs, peak RSS).
set -euo pipefail
cd "$(dirname "$0")/.."

work=bench/work
mkdir -p "$work"
# the default build, as `cargo install veil` gives it (the key sources do not touch the hot path)
cargo build --release --locked --quiet
target_dir="${CARGO_TARGET_DIR:-target}"
if [ ! -x "$work/rops/bin/rops" ]; then
  echo "installing rops-cli 0.1.7 into $work/rops (one time, a few minutes)" >&2
  cargo install --quiet --locked rops-cli --version 0.1.7 --root "$work/rops"
fi
command -v age-keygen >/dev/null || { echo "age-keygen is needed (apt-get install age)" >&2; exit 1; }
# the launcher that reports each run's own peak RSS (see bench/peak.c)
cc -O2 -o "$work/peak" bench/peak.c

exec python3 bench/measure.py \
  --veil "$target_dir/release/veil" \
  --rops "$work/rops/bin/rops" \
  --corpus ../shared/bench/gen_corpus.py \
  --work "$work" --peak "$work/peak" "$@"
