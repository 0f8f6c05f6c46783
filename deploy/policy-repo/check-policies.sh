#!/usr/bin/env bash
# Policy repository CI: run on every change to the policies, before review and before merge.
#   deploy/policy-repo/check-policies.sh [CONFIG]     (default: egressd.yaml at the repo root)
# Uses the egressd binary on PATH (or $EGRESSD) of the SAME version as production, so that
# what passes here is what the proxies will accept on reload.
#   1. egressd check --strict: every error and every warning fails (rules expiring within 14
#      days, urls: block rules that block whole hosts on tunnels, identity settings that can
#      never apply), each printed as FILE:LINE:COLUMN.
#   2. egressd test: every case in the tests folder (allow / block / report, deciding rule).
# Exit 0 only if both pass; both always run, so one CI run shows every problem.
set -uo pipefail
config=${1:-egressd.yaml}
egressd=${EGRESSD:-egressd}
if ! command -v "$egressd" >/dev/null 2>&1; then
  echo "egressd not found: install the release the proxies run (or set EGRESSD=path)" >&2
  exit 2
fi
echo "--- $("$egressd" --version 2>/dev/null || echo egressd)"
status=0
echo "--- egressd check --strict --config $config"
"$egressd" check --strict --config "$config" || status=1
echo "--- egressd test --config $config"
"$egressd" test --config "$config" || status=1
if [ "$status" -ne 0 ]; then
  echo "policy check FAILED: fix the lines above (egressd explain shows why a case decides as it does)" >&2
fi
exit "$status"
