#!/usr/bin/env bash
# Side-by-side benchmark: egressd against Squid, tinyproxy and Privoxy on this machine, with
# ../shared/bench/peers.sh (installs the peers, nginx and wrk with apt-get; runs as root; loopback
# only). Extra arguments go to peers.sh, e.g. `--duration 5 --reps 1` or `--only candidate`.
#
#   benches/peers/run.sh                       # full run, about 8 minutes on 2 cores
#   benches/peers/run.sh --only egressd --reps 1 --duration 5   # egressd alone, quick
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
peers=${PEERS_SH:-$root/../shared/bench/peers.sh}
cargo build --release --manifest-path "$root/Cargo.toml"
exec "$peers" --candidate "$root/benches/peers/candidate.sh" --candidate-port 13130 \
  --candidate-name egressd --out "$root/benches/peers/last-run.md" "$@"
