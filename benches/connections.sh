#!/usr/bin/env bash
# connections.sh - egressd's throughput and latency against the number of client connections.
#
# Usage: benches/connections.sh [--duration S] [--connections "N1 N2 ..."] [--keep-tmp]
#
#   --duration S        seconds of each wrk run (default 5)
#   --connections LIST  client connection counts (default "1 10 50 200 1000")
#   --keep-tmp          keep the temp dir (configs, logs, wrk output)
#   env EGRESSD_BIN     the binary (default target/release/egressd; `cargo build --release`)
#
# What it does (loopback only, bounded: about 3 x S seconds per count plus start-up):
#   1. writes into a temp dir an nginx origin (2 workers, 100-byte answers, a free 127.0.0.1
#      port) and an egressd configuration that allows the loopback origin and blocks
#      `blocked.test`, with the per-client connection cap above the largest count;
#   2. for each count N: `wrk -cN` keep-alive GETs straight to the origin (the ceiling), through
#      egressd to the origin (allowed), and through egressd to `blocked.test` (403 from egressd);
#      two wrk threads (one for N = 1);
#   3. prints a markdown table: requests/s, p50 and p99 of each, egressd's share of the ceiling,
#      and egressd's resident memory after the largest count.
# Everything runs on the same cores (wrk, nginx, egressd): read the ratios, not the rates.
# Processes started here are stopped by PID on exit.
set -euo pipefail

DURATION=5 COUNTS="1 10 50 200 1000" KEEP_TMP=0
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${EGRESSD_BIN:-$root/target/release/egressd}

# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"

while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --connections) COUNTS=$2; shift 2 ;;
    --keep-tmp) KEEP_TMP=1; shift ;;
    -h|--help) usage 0 ;;
    *) log "unknown option: $1"; usage 2 ;;
  esac
done
[ -x "$BIN" ] || die "$BIN not found: cargo build --release (or set EGRESSD_BIN)"
for tool in wrk nginx python3 curl; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done
max=0
for n in $COUNTS; do [ "$n" -gt "$max" ] && max=$n; done
# wrk, nginx and egressd each hold a descriptor per connection (egressd two: client and origin).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -gt $((2 * max + 100)) ] || die "open-file limit $(ulimit -n) too low for $max connections"

# ---------- origin ----------
start_origin 2 $((2 * max + 512))

# ---------- egressd ----------
C=$T/config
mkdir -p "$C/policies" "$C/categories"
cat > "$C/policies/_organization.yaml" <<'YAML'
default: allow
baseline:
  - {id: blocked, action: block, domains: [blocked.test]}
YAML
echo "ministry: bench" > "$C/policies/bench.yaml"
cat > "$C/egressd.yaml" <<YAML
listen: {proxy: 127.0.0.1:0, admin: 127.0.0.1:0}
identity: {default_ministry: bench}
egress: {allow_private_cidrs: [127.0.0.0/8]}
limits: {max_connections: $((max + 1000)), max_connections_per_client: $((max + 100))}
audit: {file: /dev/null}
YAML
start_egressd "$BIN" "$C/egressd.yaml" 10
check=$(curl -s -o /dev/null -w '%{http_code}' -x "http://$PROXY" "http://$ORIGIN/" || true)
[ "$check" = 200 ] || die "a GET through egressd answered $check, not 200 (see $T/egressd.log)"
blocked=$(curl -s -o /dev/null -w '%{http_code}' -x "http://$PROXY" "http://blocked.test/" || true)
[ "$blocked" = 403 ] || die "blocked.test answered $blocked, not 403"
log "egressd on $PROXY, origin on $ORIGIN"

# ---------- load ----------
lua() {  # lua FILE TARGET: absolute-form GETs to TARGET (origin-form when TARGET is empty)
  cat > "$1" <<EOF
wrk.method = "GET"
wrk.path = "${2:+http://$2}/"
wrk.headers["Host"] = "${2:-$ORIGIN}"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.0f p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
EOF
}
lua "$T/direct.lua" ""
lua "$T/allowed.lua" "$ORIGIN"
lua "$T/blocked.lua" "blocked.test"

run_wrk() {  # run_wrk NAME N URL SCRIPT: prints "rps p50_ms p99_ms socket_errors non2xx"
  local threads=2 r
  [ "$2" -lt 2 ] && threads=1
  wrk -t"$threads" -c"$2" -d"${DURATION}s" --latency --timeout 5s -s "$4" "$3" > "$T/wrk-$1-$2.txt" 2>&1
  r=$(grep '^RESULT' "$T/wrk-$1-$2.txt") || { cat "$T/wrk-$1-$2.txt" >&2; die "wrk failed ($1, $2)"; }
  awk -v r="$r" 'BEGIN { n = split(r, kv, " "); for (i = 2; i <= n; i++) { split(kv[i], p, "="); v[p[1]] = p[2] }
    printf "%d %.2f %.2f %d %d\n", v["rps"], v["p50_us"] / 1000, v["p99_us"] / 1000, v["errors"], v["non2xx"] }'
}

log "warm-up (2 s)"
DURATION_SAVED=$DURATION; DURATION=2
run_wrk warm 10 "http://$PROXY/" "$T/allowed.lua" >/dev/null
DURATION=$DURATION_SAVED

echo "| connections | direct rps | direct p99 ms | egressd rps | p50 ms | p99 ms | of direct | blocked rps | blocked p99 ms | errors |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $COUNTS; do
  log "$n connections"
  # errors: socket errors of all three, answers other than 2xx to the direct and allowed runs
  read -r d_rps _ d_p99 d_err d_bad < <(run_wrk direct "$n" "http://$ORIGIN/" "$T/direct.lua")
  read -r a_rps a_p50 a_p99 a_err a_bad < <(run_wrk allowed "$n" "http://$PROXY/" "$T/allowed.lua")
  read -r b_rps _ b_p99 b_err _ < <(run_wrk blocked "$n" "http://$PROXY/" "$T/blocked.lua")
  share=$(awk -v a="$a_rps" -v d="$d_rps" 'BEGIN { printf "%.2f", (d > 0) ? a / d : 0 }')
  echo "| $n | $d_rps | $d_p99 | $a_rps | $a_p50 | $a_p99 | $share | $b_rps | $b_p99 | $((d_err + a_err + b_err + d_bad + a_bad)) |"
done
echo
echo "egressd $("$BIN" --version | awk '{print $2}'), wrk ${DURATION} s per cell, $(nproc) cores shared by wrk, nginx (2 workers) and egressd;" \
  "egressd RSS after the runs $(awk '/VmRSS/ {print $2 / 1024 " MiB"}' /proc/$EGRESSD/status), peak $(awk '/VmHWM/ {print $2 / 1024 " MiB"}' /proc/$EGRESSD/status)"
