#!/usr/bin/env bash
# Crash-loop durability test, long variant: starts the real daemon ROUNDS
# times on one state directory, SIGKILLs it at a random moment (0.3-2 s)
# while a loopback receiver flips between up, down (503), slow (500 ms) and
# too slow (1.5 s > the 1 s timeout), then drains the spool with the receiver
# up and checks that nothing was lost. Prints: rounds, produced, delivered,
# duplicates, lost (must be 0), unspooled (must be 0).
#
#   scripts/crash-loop.sh [ROUNDS]          # default 50
#   HOSTBEAT_CRASH_SEED=123 scripts/crash-loop.sh 30   # replay a run
#
# It runs the #[ignore]d test `crash_loop_long` in tests/durability_e2e.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-50}"
case "$rounds" in
    '' | *[!0-9]*) echo "usage: $0 [ROUNDS]" >&2; exit 64 ;;
esac
HOSTBEAT_CRASH_ROUNDS="$rounds" exec cargo test --locked --test durability_e2e crash_loop_long \
    -- --ignored --exact --nocapture
