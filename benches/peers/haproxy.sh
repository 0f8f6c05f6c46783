#!/usr/bin/env bash
# A reference candidate for ../shared/bench/peers.sh: HAProxy as a bare forward proxy, to show
# what a mature event-driven proxy written in C does in the same harness on the same machine.
# Not an egress filter: no identity, no policy beyond the block list, no audit, no DNS (the
# origin is an address), and no CONNECT (HAProxy 2.6 does not tunnel; that column fails).
#
#   apt-get install haproxy
#   ../shared/bench/peers.sh --only squid,candidate --candidate benches/peers/haproxy.sh \
#       --candidate-port 13131 --candidate-name haproxy
#
# The block list is matched as exact host names in HAProxy's tree, the host itself and its
# parent (www.facebook.com -> facebook.com): what the harness's checks need, at the cheapest
# lookup HAProxy has (a `-m dom` list is scanned entry by entry).
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/haproxy.cfg" <<CFG
global
    maxconn 8000
    nbthread $(nproc)
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend fwd
    bind 127.0.0.1:${BENCH_PORT}
    http-request set-var(txn.host) req.hdr(host),field(1,:),lower
    http-request deny deny_status 403 if { var(txn.host) -m str -f ${BENCH_BLOCKLIST} }
    http-request deny deny_status 403 if { var(txn.host),regsub(^[^.]*\\.,) -m str -f ${BENCH_BLOCKLIST} }
    http-request set-dst url_ip
    http-request set-dst-port url_port
    http-request set-uri %[pathq]
    default_backend origin
backend origin
    server any 0.0.0.0:0
CFG
haproxy -db -f "$dir/haproxy.cfg" &
child=$!
trap 'kill -TERM $child 2>/dev/null; wait $child; rm -rf "$dir"' TERM INT
wait $child
