#!/usr/bin/env bash
# The main job on the bundled example: decrypt the committed encrypted file with the demo age key,
# pull one value out, then encrypt the plain example and show that decryption gives it back byte
# for byte.
set -euo pipefail
cd "$(dirname "$0")/.."

# the demo needs only age: the core build is the fast one on a fresh machine
cargo build --release --locked --quiet --no-default-features
veil="$PWD/target/release/veil"
cd examples
export SOPS_AGE_KEY_FILE="$PWD/demo-age-key.txt"

echo "== veil decrypt examples/secrets.enc.yaml"
"$veil" decrypt secrets.enc.yaml

echo
echo "== veil decrypt --extract '[\"database\"][\"password\"]' examples/secrets.enc.yaml"
"$veil" decrypt --extract '["database"]["password"]' secrets.enc.yaml
echo

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp secrets.yaml "$work/secrets.yaml"
echo
echo "== veil encrypt examples/secrets.yaml (recipient from examples/.sops.yaml), first lines:"
"$veil" encrypt secrets.yaml > "$work/secrets.enc.yaml"
head -n 8 "$work/secrets.enc.yaml"
echo "..."
"$veil" decrypt "$work/secrets.enc.yaml" > "$work/roundtrip.yaml"
if cmp -s secrets.yaml "$work/roundtrip.yaml"; then
  echo "== decrypting gives back examples/secrets.yaml byte for byte"
else
  echo "!! round trip differs:"; diff secrets.yaml "$work/roundtrip.yaml"; exit 1
fi
echo "== veil filestatus: $("$veil" filestatus "$work/secrets.enc.yaml")"
