#!/usr/bin/env bash
# Profile a benchmark with pyinstrument (a statistical profiler, installed by setup.sh as a test extra).
#
#   bash scripts/profile-bench.sh OUT.txt segments [bench args...]
#   bash scripts/profile-bench.sh OUT.txt tun --quick --offload      (root: a TUN in a lab namespace)
#
# Runs `netstack bench ARGS` under pyinstrument (sampling every 1 ms, so the overhead is small and
# spread evenly, unlike cProfile's per-call cost) and writes the call tree as text to OUT.txt; the
# bench's own table still goes to stdout.  The tree covers the whole run (all rows of the bench):
# read the branch under the row you care about, e.g. ReceivePath.run for `segments`.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 OUT.txt segments|tun|... [bench args...]" >&2
    exit 2
fi
out=$1; shift
here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"
[ -x "$py" ] || py=python3
"$py" -c "import pyinstrument" 2>/dev/null || { echo "$0: pyinstrument missing: run scripts/setup.sh" >&2; exit 2; }
exec "$py" -m pyinstrument --interval 0.001 -r text --show-all -o "$out" -m netstack bench "$@"
