#!/usr/bin/env bash
# Regenerates benches/hot-text.ld: the linker script that places the code of
# hostbeat's steady loop together at the start of .text (build.rs passes it
# to release links). With that code contiguous, the pages the loop needs are
# few, and src/residency.rs can give the rest back once start-up is over.
#
#   benches/hot-text.sh [SECONDS]     profile SECONDS of steady loop (default 15)
#
# How: builds an unstripped release binary (target/hot-text), runs it under
# valgrind's callgrind with a 1 s interval against the loopback receiver
# (benches/receiver.py), with two quiet alert rules and the management API
# on, as a typical host runs it; switches instrumentation on after the 6th
# payload (the loop is steady and start-up pages have been released), dumps
# after SECONDS more, and keeps every function of the hostbeat binary that
# ran. Functions that identical-code folding merged count under every name
# at the same address (the linker keeps whichever it meets first). Names are
# written with their hash and LLVM's ".N" suffix as wildcards, so the list
# survives small changes; a function the list misses is only placed among
# the cold code. Re-run after larger changes to the loop, then check with
# benches/footprint.sh.
#
# Needs: valgrind (installed with apt-get if missing and root), python3, nm.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_ON=${1:-15}
[[ $SECONDS_ON =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }

if ! command -v callgrind_control >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends valgrind >/dev/null
    else
        echo "$0: needs valgrind (callgrind)" >&2
        exit 1
    fi
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hostbeat-hot-text.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${HOT_TEXT_KEEP:-}" ] && echo "kept $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT

BIN=$ROOT/target/hot-text/release/hostbeat
echo "building an unstripped release binary (target/hot-text)" >&2
CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --locked --bin hostbeat \
    --target-dir "$ROOT/target/hot-text" >&2

python3 benches/receiver.py "$TMP/received.log" "$TMP/port" >"$TMP/receiver.err" 2>&1 &
PIDS+=($!)
for ((i = 0; i < 200; i++)); do [ -s "$TMP/port" ] && break; sleep 0.025; done
mkdir -p "$TMP/state"
cat >"$TMP/hostbeat.toml" <<EOF
[agent]
interval = "1s"
state_dir = "$TMP/state"

[postback]
url = "http://127.0.0.1:$(cat "$TMP/port")/postback/"
agent_key = "hot-text"
min_interval = "1s"

[api]
listen = "127.0.0.1:0"
token = "hot-text-profile-token"

[[alert]]
name = "mem"
metric = "mem.used_pct"
warn = 1000
for = "1m"

[[alert]]
name = "load"
metric = "load.1"
crit = 100000
EOF
chmod 600 "$TMP/hostbeat.toml"

valgrind --tool=callgrind --instr-atstart=no --demangle=no \
    --callgrind-out-file="$TMP/cg.out" "$BIN" run -c "$TMP/hostbeat.toml" \
    >"$TMP/hostbeat.out" 2>"$TMP/hostbeat.err" &
HB=$!
PIDS+=($HB)

payloads() { if [ -e "$TMP/received.log" ]; then wc -l <"$TMP/received.log"; else echo 0; fi; }
wait_payloads() {
    local deadline=$((SECONDS + $1 * 3 + 60))
    until (($(payloads) >= $2)); do
        if ! kill -0 "$HB" 2>/dev/null || ((SECONDS > deadline)); then
            echo "$0: hostbeat did not deliver $2 payloads; its log:" >&2
            tail -n 20 "$TMP/hostbeat.err" >&2
            exit 1
        fi
        sleep 0.2
    done
}
wait_payloads 6 6
callgrind_control -i on "$HB" >/dev/null
wait_payloads "$SECONDS_ON" $((6 + SECONDS_ON))
callgrind_control -d "$HB" >/dev/null
kill -TERM "$HB"
wait "$HB" 2>/dev/null || true

python3 - "$BIN" "$TMP" "$ROOT/benches/hot-text.ld" <<'PY'
"""Writes the linker script from the callgrind dump."""
import collections, glob, re, subprocess, sys

binary, tmp, out = sys.argv[1:]
dumps = [p for p in glob.glob(tmp + "/cg.out.*") if re.search(r"\.\d+$", p)]
if not dumps:
    sys.exit("no callgrind dump")

# Functions of the binary that ran. Valgrind may name the binary's object
# "???" (it does not know the .text.hot section); nm decides below.
ran = set()
for path in dumps:
    objs, fns, ob, cob = {}, {}, None, None
    for line in open(path, errors="replace"):
        m = re.match(r"^(c?ob|c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if not m:
            continue
        kind, ident, name = m.groups()
        table = objs if kind.endswith("ob") else fns
        if name:
            table[ident] = name
        if kind == "ob":
            ob = cob = objs[ident]
        elif kind == "cob":
            cob = objs[ident]
        elif kind == "fn":
            cob = ob
            if ob in (binary, "???"):
                ran.add(fns[ident])
        elif cob in (binary, "???"):
            ran.add(fns[ident])

# Every name at the address of a function that ran (identical-code folding).
by_addr, addr_of = collections.defaultdict(list), {}
nm = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True)
for line in nm.stdout.splitlines():
    f = line.split()
    if len(f) == 3 and f[1] in "tT":
        a = int(f[0], 16)
        by_addr[a].append(f[2])
        addr_of.setdefault(f[2], a)
ran = {n for n in ran if n in addr_of}
names = set()
for n in ran:
    names.update(by_addr[addr_of[n]])

patterns = set()
for n in names:
    n = re.sub(r"\.\d+$", "", n)  # LLVM's suffix for renamed local copies
    n = re.sub(r"17h[0-9a-f]{16}E$", "17h*E", n)  # legacy mangling hash
    patterns.add(n)
# Runs right after the pages are released: it must be among the hot code.
patterns.add("*residency*release_startup_code*")

with open(out, "w") as f:
    f.write("/* Generated by benches/hot-text.sh: the functions hostbeat's steady loop\n")
    f.write("   runs, placed together before the rest of .text (see src/residency.rs).\n")
    f.write("   Wildcards stand for symbol hashes. Do not edit; re-run the script. */\n")
    f.write("SECTIONS {\n  .text.hot : {\n")
    for p in sorted(patterns):
        f.write(f"    *(.text.{p} .text.{p}.*)\n")
    f.write("  }\n} INSERT BEFORE .text;\n")
print(f"{len(ran)} functions ran; {len(patterns)} patterns written to {out}", file=sys.stderr)
PY
