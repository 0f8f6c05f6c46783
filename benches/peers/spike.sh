#!/usr/bin/env bash
# A floor for ../shared/bench/peers.sh: benches/peers/spike, the least a forward proxy can do
# per request (httparse, a hash set of the block list, fixed 403 bytes, one origin connection
# per client connection; one runtime per core, as egressd). Not a proxy to run: no policy, audit,
# timeouts or CONNECT (that column fails). Build it first: peers.sh gives a candidate 20 s to
# listen, less than a cold fat-LTO build may take (this script builds it if it is missing).
#
#   cargo build --release --manifest-path benches/peers/spike/Cargo.toml
#   ../shared/bench/peers.sh --only squid,candidate --candidate benches/peers/spike.sh \
#       --candidate-port 13133 --candidate-name spike
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$here/spike/target/release/egressd-spike
if [ ! -x "$bin" ]; then
  cargo build --release --quiet --manifest-path "$here/spike/Cargo.toml" >&2
fi
exec "$bin" "$BENCH_PORT" "$BENCH_BLOCKLIST"
