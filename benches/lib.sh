# lib.sh - what the load scripts in benches/ share; sourced, not run.
#
# Defines log/die/usage, a temp dir $T removed on exit (kept with KEEP_TMP=1), PIDS (stopped by
# PID on exit, first to last), free_port, start_origin and start_egressd. Everything listens on
# 127.0.0.1 only.

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# The script's header comment from its third line up to "# What it does".
usage() { awk 'NR >= 3 { if (/^# What it does/) exit; sub(/^# ?/, ""); print }' "$0"; exit "${1:-0}"; }

T=$(mktemp -d)
PIDS=()
KEEP_TMP=${KEEP_TMP:-0}
cleanup() {
  local pid i
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || continue
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$KEEP_TMP" = 1 ]; then log "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {  # a port the kernel hands out for 127.0.0.1:0 (closed again before use)
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_origin WORKERS CONNECTIONS: nginx answering `GET /` with 100 bytes, in $T/nginx, on a
# free port; sets ORIGIN (127.0.0.1:port).
start_origin() {
  ORIGIN=127.0.0.1:$(free_port)
  mkdir -p "$T/nginx/tmp"
  cat > "$T/nginx/nginx.conf" <<EOF
worker_processes $1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
daemon off;
events { worker_connections $2; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $T/nginx/tmp; proxy_temp_path $T/nginx/tmp; fastcgi_temp_path $T/nginx/tmp;
  uwsgi_temp_path $T/nginx/tmp; scgi_temp_path $T/nginx/tmp;
  server {
    listen $ORIGIN backlog=4096;
    location = / { default_type text/plain; return 200 "$(printf '%099d' 0 | tr 0 x)\n"; }
  }
}
EOF
  nginx -e "$T/nginx/error.log" -p "$T/nginx" -c "$T/nginx/nginx.conf" &
  PIDS+=($!)
}

# start_egressd BIN CONFIG WAIT_S: runs egressd (log in $T/egressd.log), waits up to WAIT_S
# seconds for its proxy listener; sets EGRESSD (pid) and PROXY (address). Extra environment
# for egressd goes before the call (`GLIBC_TUNABLES=... start_egressd ...`).
start_egressd() {
  RUST_LOG=egressd=info "$1" run --config "$2" 2> "$T/egressd.log" &
  EGRESSD=$!
  PIDS=("$EGRESSD" "${PIDS[@]}")   # stopped first
  PROXY=""
  for _ in $(seq $(($3 * 10))); do
    PROXY=$(sed -n 's/.*proxy listening.*address=\([0-9.:]*\).*/\1/p' "$T/egressd.log" | head -1)
    [ -n "$PROXY" ] && return 0
    kill -0 "$EGRESSD" 2>/dev/null || { cat "$T/egressd.log" >&2; die "egressd exited"; }
    sleep 0.1
  done
  die "egressd did not start in $3 s"
}
