#!/usr/bin/env bash
# Set everything up, then run the whole test suite (the unit, system and integration tiers).
# Integration tests need root and /dev/net/tun; with CI=true they fail rather than skip without them.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k trace`, or `bash scripts/test.sh -m unit`
# for the pure tier alone.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$here/scripts/setup.sh"
cd "$here"
set +e
"$here/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@" tests
status=$?
set -e
# pytest's 5 means "no tests collected": that is a failure for us, never a pass.
exit $status
