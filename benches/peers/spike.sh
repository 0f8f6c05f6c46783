#!/usr/bin/env bash
# A floor for ../shared/bench/peers.sh: benches/peers/spike, the least a forward proxy can do
# per request (httparse, a hash set of the block list, fixed 403 bytes, one origin connection
# per client connection; one runtime per core, as egressd). Not a proxy to run: no policy, audit,
# timeouts or CONNECT (that column fails). Built here on first use.
#
#   ../shared/bench/peers.sh --only squid,candidate --candidate benches/peers/spike.sh \
#       --candidate-port 13133 --candidate-name spike
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$here/spike/target/release/egressd-spike
if [ ! -x "$bin" ]; then
  cargo build --release --quiet --manifest-path "$here/spike/Cargo.toml" >&2
fi
exec "$bin" "$BENCH_PORT" "$BENCH_BLOCKLIST"
