#!/usr/bin/env bash
# cpu.sh - what a request costs the proxy itself: CPU time (user + system, every thread and
# child process) per request for egressd and Squid under the same wrk load, alternating.
#
#   benches/peers/cpu.sh [--rounds N] [--duration S] [--bin PATH] [--pin] [--also NAME=SCRIPT ...]
#
# ../shared/bench/peers.sh ranks proxies by throughput on a machine whose cores the proxy
# shares with wrk and the nginx origin, so its ratios include their cost per request, the same
# for every proxy. This script divides each proxy's own CPU ticks (/proc/PID/stat of its
# process tree) by the requests wrk completed: the cost per request on a machine where clients
# and origins are elsewhere, as at the network edge.
#
# Same set-up as peers.sh: nginx origin answering `GET /` with 100 bytes, the 1,000-domain block
# list (blocked-NNNN.example, facebook.com, youtube.com), Squid 5 with 2 workers and its
# dstdomain ACL, egressd through benches/peers/candidate.sh; wrk -t2 -c50, kept-alive `GET
# http://ORIGIN/` and blocked `GET http://www.facebook.com/`. `--also name=script` adds another
# candidate script of the peers.sh kind (BENCH_PORT, BENCH_BLOCKLIST, BENCH_ORIGIN), e.g.
# `--also haproxy=benches/peers/haproxy.sh`. A run with socket errors, a failed kept-alive
# request or a blocked one answered with success stops the script. `--pin` gives the proxies the upper half of the
# CPUs and wrk and the origin the rest (taskset), so that each proxy's throughput is bounded by
# its own cost, not by the load's: on two cores, one each. Needs nginx, squid, wrk, python3 and
# taskset (util-linux); run as root (Squid drops to its `proxy` user). Prints one line per
# measurement, a table of medians and each candidate's ratios to Squid.
#
# What it does: everything on 127.0.0.1, ports from the kernel, stops what it started.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"

ROUNDS=3 DURATION=5 BIN=$here/../../target/release/egressd ALSO=() PIN=0
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --also) ALSO+=("$2"); shift 2 ;;
    --pin) PIN=1; shift ;;
    -h|--help) usage ;;
    *) usage 1 ;;
  esac
done
for cmd in nginx squid wrk python3 taskset; do
  command -v "$cmd" > /dev/null || die "$cmd is not installed"
done
[ -x "$BIN" ] || die "no egressd binary at $BIN (cargo build --release)"

wait_port() {  # wait_port PORT: until something accepts on 127.0.0.1:PORT (60 s: spike.sh may
  # build its binary first)
  for _ in $(seq 600); do
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on 127.0.0.1:$1"
}
tree_pids() {  # a PID and all its descendants
  local queue=("$1") i=0 kids
  while [ $i -lt ${#queue[@]} ]; do
    kids=$(ps -o pid= --ppid "${queue[i]}" 2> /dev/null || true)
    # shellcheck disable=SC2206
    queue+=($kids)
    i=$((i + 1))
  done
  echo "${queue[@]}"
}
ticks() {  # CPU ticks (user + system) of a process tree
  local sum=0 p
  for p in $(tree_pids "$1"); do
    sum=$((sum + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2> /dev/null || echo 0)))
  done
  echo "$sum"
}

# Without --pin everything shares every CPU (as in peers.sh).
LOAD=() PROXY_CPUS=()
if [ "$PIN" = 1 ]; then
  cpus=$(nproc)
  [ "$cpus" -ge 2 ] || die "--pin needs two CPUs"
  LOAD=(taskset -c "0-$((cpus - cpus / 2 - 1))")
  PROXY_CPUS=(taskset -c "$((cpus - cpus / 2))-$((cpus - 1))")
  log "pinned: wrk and the origin on CPUs ${LOAD[2]}, the proxies on ${PROXY_CPUS[2]}"
fi

start_origin 2 4096
wait_port "${ORIGIN##*:}"
if [ "$PIN" = 1 ]; then
  for p in $(tree_pids "${PIDS[0]}"); do taskset -a -p -c "${LOAD[2]}" "$p" > /dev/null; done
fi
{ for i in $(seq 1 998); do printf 'blocked-%04d.example\n' "$i"; done
  echo facebook.com; echo youtube.com; } > "$T/blocklist.txt"
chmod 644 "$T/blocklist.txt"

declare -A PORT ROOT
NAMES=()
launch() {  # launch NAME CMD...: start in the background with the peers.sh environment
  local name=$1; shift
  PORT[$name]=$(free_port)
  BENCH_PORT=${PORT[$name]} BENCH_BLOCKLIST=$T/blocklist.txt BENCH_ORIGIN=$ORIGIN \
    EGRESSD_BIN=$BIN "${PROXY_CPUS[@]}" "$@" > "$T/$name.log" 2>&1 &
  ROOT[$name]=$!
  PIDS=("$!" "${PIDS[@]}")
  NAMES+=("$name")
  wait_port "${PORT[$name]}"
  log "started $name on 127.0.0.1:${PORT[$name]}"
}

# Squid as peers.sh configures it.
mkdir -p "$T/squid" /run/squid
chown proxy:proxy /run/squid
sed 's/^/./' "$T/blocklist.txt" > "$T/squid/blocked.txt"
cat > "$T/squid/squid.conf" <<EOF
http_port 127.0.0.1:SQUID_PORT
workers 2
visible_hostname bench-squid
acl blocked dstdomain -n "$T/squid/blocked.txt"
http_access deny blocked
http_access allow all
cache deny all
cache_mem 0 MB
access_log none
cache_log $T/squid/cache.log
pid_filename $T/squid/squid.pid
coredump_dir $T/squid
cache_effective_user proxy
max_filedescriptors 16384
shutdown_lifetime 1 seconds
EOF
squid_run() {
  sed -i "s/SQUID_PORT/$BENCH_PORT/" "$T/squid/squid.conf"
  chown -R proxy:proxy "$T/squid"
  exec squid --foreground -f "$T/squid/squid.conf"
}
export -f squid_run
export T
launch squid bash -c squid_run
launch egressd "$here/candidate.sh"
for also in "${ALSO[@]}"; do launch "${also%%=*}" "${also#*=}"; done

cat > "$T/bench.lua" <<'EOF'
local target = os.getenv("BENCH_TARGET")
wrk.method = "GET"
wrk.path = "http://" .. target .. "/"
wrk.headers["Host"] = target
EOF
sleep 1
for name in "${NAMES[@]}"; do  # warm-up: worker start-up, origin connections
  BENCH_TARGET=$ORIGIN "${LOAD[@]}" wrk -t2 -c50 -d1s -s "$T/bench.lua" "http://127.0.0.1:${PORT[$name]}/" > /dev/null
done

hz=$(getconf CLK_TCK)
: > "$T/results"
for round in $(seq "$ROUNDS"); do
  for test in keep-alive blocked; do
    target=$ORIGIN
    [ "$test" = blocked ] && target=www.facebook.com
    for name in "${NAMES[@]}"; do
      before=$(ticks "${ROOT[$name]}")
      out=$(BENCH_TARGET=$target "${LOAD[@]}" wrk -t2 -c50 -d"${DURATION}s" -s "$T/bench.lua" \
        "http://127.0.0.1:${PORT[$name]}/")
      after=$(ticks "${ROOT[$name]}")
      reqs=$(awk '/requests in/ { print $1 }' <<< "$out")
      # A number from a run that went wrong is not a cost: every kept-alive answer must be a
      # success and every blocked one a refusal, without socket errors.
      refused=$(awk '/Non-2xx or 3xx/ { print $NF }' <<< "$out")
      want=0
      [ "$test" = blocked ] && want=$reqs
      if [ -z "$reqs" ] || [ "${refused:-0}" != "$want" ] || grep -q "Socket errors" <<< "$out"; then
        die "$name, $test: $reqs requests, ${refused:-0} not 2xx/3xx (want $want): $out"
      fi
      rps=$(awk '/Requests\/sec/ { printf "%.0f", $2 }' <<< "$out")
      us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" \
        'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
      echo "$name $test $rps $us" >> "$T/results"
      log "round $round $test $name: $rps requests/s, $us µs CPU per request"
    done
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
pick() { awk -v n="$1" -v t="$2" -v c="$3" '$1 == n && $2 == t { print $c }' "$T/results" | median; }
echo
echo "wrk -t2 -c50 -d${DURATION}s, $ROUNDS rounds alternating, medians; CPU = the proxy's own"
echo "user + system time per request (its whole process tree)$([ "$PIN" = 1 ] && echo "; proxies on CPUs ${PROXY_CPUS[2]}, wrk and the origin on ${LOAD[2]}")."
echo
echo "| proxy | keep-alive rps | CPU µs / request | blocked rps | CPU µs / request |"
echo "|---|---:|---:|---:|---:|"
for name in "${NAMES[@]}"; do
  echo "| $name | $(pick "$name" keep-alive 3) | $(pick "$name" keep-alive 4) |" \
    "$(pick "$name" blocked 3) | $(pick "$name" blocked 4) |"
done
echo
for name in "${NAMES[@]}"; do
  [ "$name" = squid ] && continue
  awk -v n="$name" -v ka="$(pick squid keep-alive 4)" -v kb="$(pick "$name" keep-alive 4)" \
    -v ba="$(pick squid blocked 4)" -v bb="$(pick "$name" blocked 4)" \
    'BEGIN { printf "Squid'\''s CPU per request / %s'\''s: keep-alive %.2f×, blocked %.2f×\n", n, ka / kb, ba / bb }'
  awk -v n="$name" -v ka="$(pick squid keep-alive 3)" -v kb="$(pick "$name" keep-alive 3)" \
    -v ba="$(pick squid blocked 3)" -v bb="$(pick "$name" blocked 3)" \
    'BEGIN { printf "%s'\''s requests/s / Squid'\''s: keep-alive %.2f×, blocked %.2f×\n", n, kb / ka, bb / ba }'
done
