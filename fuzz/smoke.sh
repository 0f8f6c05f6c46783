#!/usr/bin/env bash
# Fuzz smoke run: builds the four cargo-fuzz targets and runs each for a short time, one after
# the other, on a scratch corpus seeded from fuzz/corpus/<target>/. Exits non-zero on the first
# crash, timeout or leak (the failing input is left in fuzz/artifacts/<target>/).
#
#   fuzz/smoke.sh [SECONDS_PER_TARGET]     (default 45)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a C++ compiler (libFuzzer is built
# from source). Works on stable Rust: RUSTC_BOOTSTRAP=1 lets stable rustc take the -Z flags
# cargo-fuzz passes (AddressSanitizer, sanitizer coverage).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-45}"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2; exit 2; }
targets=(target_authority policy_yaml client_hello request_path)
start=$(date +%s)
nice -n 19 cargo fuzz build
built=$(date +%s)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
    echo "== $t: ${secs}s"
    mkdir -p "$scratch/$t"
    # The scratch directory comes first: libFuzzer writes new inputs there, never into the
    # committed seeds.
    if ! nice -n 19 cargo fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1; then
        tail -n 80 "$scratch/$t.log"
        echo "== $t FAILED (input in fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    grep -E '^(Done [0-9]+ runs|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' "$scratch/$t.log"
    grep -E '^#[0-9]+' "$scratch/$t.log" | tail -n 1
done
echo "fuzz smoke: build $((built - start))s, total $(($(date +%s) - start))s"
