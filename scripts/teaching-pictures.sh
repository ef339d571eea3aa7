#!/usr/bin/env bash
# Regenerate the pictures of the README's "For teachers" section from the classroom scenarios:
#   bash scripts/teaching-pictures.sh [OUTDIR]      (default: docs/teaching)
# tests/system/test_teaching_pictures.py runs it and checks the committed pictures are current.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$here/docs/teaching}
netstack=${NETSTACK:-$here/.venv/bin/netstack}
tmp=$(mktemp -d /tmp/netstack-pictures.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
"$netstack" scenario run fast-retransmit -o "$tmp/fr" >/dev/null
"$netstack" scenario run zero-window -o "$tmp/zw" >/dev/null
"$netstack" scenario run time-wait -o "$tmp/tw" >/dev/null
cp "$tmp/fr/ladder.svg" "$out/fast-retransmit-ladder.svg"
cp "$tmp/zw/seq.png" "$out/zero-window-seq.png"
cp "$tmp/tw/states-A.svg" "$out/time-wait-states.svg"
echo "wrote $out/fast-retransmit-ladder.svg $out/zero-window-seq.png $out/time-wait-states.svg"
