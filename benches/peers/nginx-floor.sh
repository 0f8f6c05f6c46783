#!/usr/bin/env bash
# A floor for ../shared/bench/peers.sh: nginx, one worker per core, relaying every request to the
# harness's origin through a pool of kept-alive connections, and answering the block list with a
# canned 403 of the size of egressd's (its headers and body). Not a forward proxy at all: no
# target parsing beyond nginx's own, no identity, no policy beyond a hash lookup, no audit, no
# DNS, no CONNECT (that column fails). What it shows is how fast a mature C event loop relays a
# request or answers one from memory on this machine, in the same harness as the proxies.
#
#   ../shared/bench/peers.sh --only squid,candidate --candidate benches/peers/nginx-floor.sh \
#       --candidate-port 13132 --candidate-name nginx-floor
#
# The block list is an nginx `map ... { hostnames; }`: `.domain` entries match the domain and
# its subdomains, as in the peers' configurations.
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
body='Access to $host is blocked by egressd.\n\nMinistry: bench\nRule: _organization/blocklist\nReason: on the benchmark block list\n'
{
  echo "map \$host \$blocked {"
  echo "  hostnames;"
  echo "  default 0;"
  sed 's/^/  ./; s/$/ 1;/' "$BENCH_BLOCKLIST"
  echo "}"
} > "$dir/blocked.map"
cat > "$dir/nginx.conf" <<CONF
daemon off;
worker_processes $(nproc);
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 8192; }
http {
  access_log off;
  server_tokens off;
  keepalive_requests 1000000;
  map_hash_bucket_size 128;
  map_hash_max_size 8192;
  include $dir/blocked.map;
  upstream origin {
    server ${BENCH_ORIGIN};
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${BENCH_PORT};
    location / {
      if (\$blocked) {
        add_header proxy-status 'egressd; error=http_request_denied; details="_organization/blocklist"' always;
        add_header cache-control no-store always;
        return 403 '${body}';
      }
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
    default_type 'text/plain; charset=utf-8';
  }
}
CONF
nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
child=$!
trap 'kill -QUIT $child 2>/dev/null; wait $child; rm -rf "$dir"' TERM INT
wait $child
