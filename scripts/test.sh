#!/usr/bin/env bash
# Runs every check and test hostbeat has. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test --locked"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked 2>&1 | tee "$log"

echo "== packages (.deb, .rpm, systemd unit)"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    ./scripts/test-packages.sh 2>&1 | tee -a "$log"
else
    echo "skipped: the package tests need root on a Debian-like machine (CI has both)"
fi

echo "== footprint smoke run (benches/footprint.sh 3; the full run is N=60)"
bash benches/footprint.sh 3

# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
