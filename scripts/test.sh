#!/usr/bin/env bash
# Runs every check and test hostbeat has. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

# Tools the end-to-end tests drive: promtool (Debian package prometheus)
# checks the /metrics exposition (tests/prometheus_e2e.rs), openssl makes
# the test CA of tests/tls_e2e.rs. Installed here when missing, without
# starting any service; where present, the tests require them.
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})) && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== apt-get install ${missing[*]}"
    added=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
    [ -z "$added" ] || rm -f /usr/sbin/policy-rc.d
fi
if command -v promtool >/dev/null; then export HOSTBEAT_REQUIRE_PROMTOOL=1; fi
if command -v openssl >/dev/null; then export HOSTBEAT_REQUIRE_OPENSSL=1; fi

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
