#!/usr/bin/env bash
# egressd as the candidate of ../shared/bench/peers.sh: the same policy as the peers'
# (the block list in $BENCH_BLOCKLIST, every entry blocking its domain and subdomains, the rest
# allowed), the loopback origin reachable, CONNECT allowed to the origin's port without TLS.
# peers.sh sets BENCH_BLOCKLIST, BENCH_PORT and BENCH_ORIGIN and stops us with SIGTERM.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${EGRESSD_BIN:-$here/../../target/release/egressd}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/policies" "$dir/categories"
origin_port=${BENCH_ORIGIN##*:}
{
  echo "description: peers.sh block list"
  echo "domains:"
  sed 's/^/  - /' "$BENCH_BLOCKLIST"
} > "$dir/categories/blocklist.yaml"
cat > "$dir/policies/_organization.yaml" <<YAML
default: allow
baseline:
  - id: blocklist
    action: block
    categories: [blocklist]
    reason: on the benchmark block list
YAML
cat > "$dir/policies/bench.yaml" <<YAML
ministry: bench
YAML
cat > "$dir/egressd.yaml" <<YAML
listen:
  proxy: 127.0.0.1:${BENCH_PORT}
  admin: 127.0.0.1:0
identity:
  default_ministry: bench
egress:
  allow_private_cidrs: [127.0.0.0/8]
  connect_ports: [443, ${origin_port}]
tunnel:
  allow_non_tls: true
audit:
  file: ${EGRESSD_AUDIT:-/dev/null}
YAML
# Not exec: the trap must remove the temp dir after egressd drains.
"$bin" run --config "$dir/egressd.yaml" &
child=$!
trap 'kill -TERM $child 2>/dev/null; wait $child; rm -rf "$dir"' TERM INT
wait $child
