#!/usr/bin/env bash
# Footprint benchmark: hostbeat side by side with prometheus-node-exporter,
# collectd and a "floor" program that only reads the /proc files hostbeat
# reads, in one run on one machine.
#
#   benches/footprint.sh [N]      N samples per agent (default 60)
#
# For each agent it reads /proc/PID/stat (utime, stime in clock ticks) and
# /proc/PID/status (VmRSS, VmHWM, Threads) and prints one table: CPU per
# sample (user, system, total ms), steady RSS, peak RSS, threads, binary
# size, time from start to the first payload; then the ratios and the
# issue-7 targets as MET / NOT MET. It reports; it does not gate: it exits 0
# whatever the figures (non-zero only when hostbeat or the floor cannot be
# built or run at all). A peer that cannot be installed is "skipped".
#
# - hostbeat: release build, interval 1s, postback to a loopback receiver
#   (benches/receiver.py) with min_interval 1s. CPU is read right after the
#   first payload arrives and right after payload 1+N: (difference) / N.
# - floor: benches/floor (std only), same cadence, same reading points.
# - prometheus-node-exporter (apt, default collectors, 127.0.0.1 only):
#   scraped N times with curl at 1 s intervals; CPU per scrape.
# - collectd (apt package collectd-core; Interval 1; cpu, load, memory, df,
#   disk, interface, processes; csv to a temp dir): CPU over N s / N.
# - scaling: hostbeat and the floor again with 1000 and 5000 extra idle
#   processes (sleep 3600, in their own process group, reaped at the end),
#   min(N, 20) samples each; per-process cost = (cpu@5000 - cpu@0) / 5000.
#
# Everything binds 127.0.0.1; every process started here is stopped at the
# end, also on error or Ctrl-C. Needs: cargo, python3, curl; root + apt-get
# for the peers (else they are skipped). CPU figures come in clock ticks
# (usually 10 ms), so one figure is precise to tick / N: use N >= 20 for
# numbers worth quoting; N = 3 is a smoke run. FOOTPRINT_KEEP=1 keeps the
# temp dir (logs, configs, what the receiver got) for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

N=${1:-60}
if ! [[ $N =~ ^[0-9]+$ ]] || ((N < 1)); then
    echo "usage: $0 [N]   (N samples per agent, default 60)" >&2
    exit 2
fi
SCALE_N=$((N < 20 ? N : 20))
SCALES=(1000 5000)
TICK=$(getconf CLK_TCK)
PAGE_TIMEOUT=30 # s to wait for a first payload / scrape / sample

unset HOSTBEAT_PROCFS RUST_LOG HOSTBEAT_POSTBACK_TOKEN HOSTBEAT_API_TOKEN NOTIFY_SOCKET WATCHDOG_USEC

TARGET=${CARGO_TARGET_DIR:-target}
[[ $TARGET == /* ]] || TARGET=$ROOT/$TARGET

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hostbeat-footprint.XXXXXX")
declare -A PIDS=()   # our background processes: pid -> name
declare -A PGROUPS=() # process groups of idle sleepers: pgid -> pid of our setsid child
POLICY_RC_ADDED=

log() { printf '%s\n' "$*" >&2; }
T_START=${EPOCHREALTIME/./}
section() { log "== [$(((${EPOCHREALTIME/./} - T_START) / 1000000)) s] $*"; }

# Stops one of our processes: SIGTERM, up to 5 s, then SIGKILL. Sets STOP_RC.
stop_pid() {
    local pid=$1 i
    STOP_RC=0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "  ${PIDS[$pid]:-pid $pid} still running 5 s after SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || STOP_RC=$?
    unset "PIDS[$pid]"
}

# Stops a group of idle sleepers: SIGTERM to the group ends the sleepers; the
# spawner (the group leader, pid = pgid) reaps every one of them, then exits.
# Up to 10 s, then SIGKILL to whatever is left of the group.
stop_group() {
    local pg=$1 i state line
    kill -TERM -- "-$pg" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        state=
        if read -r line 2>/dev/null <"/proc/$pg/stat"; then
            state=${line##*) }
            state=${state%% *}
        fi
        [ -z "$state" ] || [ "$state" = Z ] && break
        sleep 0.05
    done
    if ((i == 200)); then
        log "  idle processes of group $pg still there 10 s after SIGTERM: SIGKILL"
        kill -KILL -- "-$pg" 2>/dev/null || true
    fi
    wait "${PGROUPS[$pg]}" 2>/dev/null || true
    unset "PGROUPS[$pg]"
}

cleanup() {
    local rc=$? pid pg
    trap - EXIT INT TERM
    for pid in "${!PIDS[@]}"; do stop_pid "$pid"; done
    for pg in "${!PGROUPS[@]}"; do stop_group "$pg"; done
    if [ -n "$POLICY_RC_ADDED" ]; then rm -f /usr/sbin/policy-rc.d; fi
    if [ -n "${FOOTPRINT_KEEP:-}" ]; then
        log "logs, configs and receiver logs kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_us() { REPLY=${EPOCHREALTIME/./}; }

# Sleeps until the wall-clock time $1 (µs), if it is still ahead.
sleep_until_us() {
    local now rem
    now=${EPOCHREALTIME/./}
    rem=$(($1 - now))
    if ((rem > 0)); then
        printf -v rem '%d.%06d' $((rem / 1000000)) $((rem % 1000000))
        sleep "$rem"
    fi
}

# CPU_U CPU_S (clock ticks, the whole process) of pid $1; CPU_NS: the
# same time to the nanosecond (the scheduler's run time, summed over the
# threads: /proc/PID/task/*/schedstat), and THREAD_NS[name] per thread name.
# Ticks are sampled by the timer interrupt, so a process that runs for a
# millisecond once a second is over- or under-counted by whole ticks; the
# run time is exact. Both go in the table; ratios and targets use the run time.
declare -A THREAD_NS=()
read_cpu() {
    local line f t run rest name
    read -r line <"/proc/$1/stat"
    read -ra f <<<"${line##*) }"
    CPU_U=${f[11]} CPU_S=${f[12]}
    CPU_NS=0
    THREAD_NS=()
    for t in /proc/"$1"/task/*; do
        read -r run rest 2>/dev/null <"$t/schedstat" || continue
        read -r name 2>/dev/null <"$t/comm" || name=?
        CPU_NS=$((CPU_NS + run))
        THREAD_NS[$name]=$((${THREAD_NS[$name]:-0} + run))
    done
}

# SYS_BUSY SYS_ALL: machine-wide busy and total jiffies (/proc/stat), to
# tell how busy the machine was during a measurement window.
read_sys() {
    local cpu user nice system idle iowait rest
    read -r cpu user nice system idle iowait rest </proc/stat
    local -a r
    read -ra r <<<"$rest"
    SYS_ALL=$((user + nice + system + idle + iowait + r[0] + r[1] + r[2]))
    SYS_BUSY=$((SYS_ALL - idle - iowait))
}

# Percent of all cores busy between a read_sys of B0 A0 and one now, less
# the measured process's own ticks $3: "others used X % of the machine".
busy_note() {
    local b0=$1 a0=$2 own=$3
    read_sys
    local d=$((SYS_ALL - a0))
    ((d > 0)) || d=1
    REPLY="rest of the machine $(((SYS_BUSY - b0 - own) * 100 / d)) % busy"
}

# RSS_KB HWM_KB THREADS of pid $1.
read_status() {
    local k v rest
    RSS_KB=0 HWM_KB=0 THREADS=0
    while read -r k v rest; do
        case $k in
        VmRSS:) RSS_KB=$v ;;
        VmHWM:) HWM_KB=$v ;;
        Threads:) THREADS=$v ;;
        esac
    done <"/proc/$1/status"
}

# LINES: the number of lines in file $1.
count_lines() {
    local -a l=()
    [ -e "$1" ] && mapfile -t l <"$1"
    LINES=${#l[@]}
}

# Waits until file $1 has at least $2 lines, for at most $3 s, while pid $4
# lives. Returns 0, 1 on timeout, 2 when the process died.
wait_lines() {
    local file=$1 want=$2 deadline
    now_us
    deadline=$((REPLY + $3 * 1000000))
    while :; do
        count_lines "$file"
        ((LINES >= want)) && return 0
        kill -0 "$4" 2>/dev/null || return 2
        now_us
        ((REPLY > deadline)) && return 1
        sleep 0.05
    done
}

# Field $2 (1-based) of line $3 (1-based) of file $1, into REPLY.
field_of_line() {
    local -a l=() f=()
    mapfile -t l <"$1"
    read -ra f <<<"${l[$3 - 1]}"
    REPLY=${f[$2 - 1]}
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Results, by row: tab-separated into $TMP/results.tsv.
# row user_us sys_us (per sample, ticks) rss_kb hwm_kb threads binary_bytes first_ms samples
#     run_us (per sample, schedstat) note
result() {
    local IFS=$'\t'
    printf '%s\n' "$*" >>"$TMP/results.tsv"
}

# Measures a process that logs one line per sample (first field: arrival
# time, Unix ns) to $EVENTS. Args: row samples binary_bytes cmd...
# The process is started here; t0 is taken just before.
measure_sampled() {
    local row=$1 samples=$2 bin_bytes=$3 pid t0 rc first_ns first_ms c0 u0 s0 t_a t_b
    shift 3
    now_us
    t0=$REPLY
    "$@" >"$TMP/$row.out" 2>"$TMP/$row.err" </dev/null &
    pid=$!
    PIDS[$pid]=$row
    rc=0
    wait_lines "$EVENTS" 1 "$PAGE_TIMEOUT" "$pid" || rc=$?
    if ((rc != 0)); then
        log "  $row: no first sample within ${PAGE_TIMEOUT}s ($([ $rc = 2 ] && echo exited || echo timeout)); last log lines:"
        tail -n 20 "$TMP/$row.err" "$TMP/$row.out" >&2 || true
        stop_pid "$pid"
        return 1
    fi
    read_cpu "$pid"
    u0=$CPU_U s0=$CPU_S
    local ns0=$CPU_NS name
    local -A thread0=()
    for name in "${!THREAD_NS[@]}"; do thread0[$name]=${THREAD_NS[$name]}; done
    read_sys
    local b0=$SYS_BUSY a0=$SYS_ALL
    c0=$LINES
    field_of_line "$EVENTS" 1 1
    first_ns=$REPLY
    first_ms=$(((first_ns / 1000 - t0) / 1000))
    rc=0
    wait_lines "$EVENTS" $((c0 + samples)) $((samples * 2 + PAGE_TIMEOUT)) "$pid" || rc=$?
    if ((rc != 0)); then
        log "  $row: only $((LINES - c0)) of $samples samples arrived; last log lines:"
        tail -n 20 "$TMP/$row.err" "$TMP/$row.out" >&2 || true
        stop_pid "$pid"
        return 1
    fi
    read_cpu "$pid"
    read_status "$pid"
    busy_note "$b0" "$a0" $((CPU_U - u0 + CPU_S - s0))
    local busy=$REPLY
    field_of_line "$EVENTS" 1 "$c0"
    t_a=$REPLY
    field_of_line "$EVENTS" 1 $((c0 + samples))
    t_b=$REPLY
    stop_pid "$pid"
    local note="window $(((t_b - t_a) / 1000000)) ms for $samples samples; $busy"
    if ((${#THREAD_NS[@]} > 1)); then
        local per=()
        for name in "${!THREAD_NS[@]}"; do
            per+=("$name thread $(((THREAD_NS[$name] - ${thread0[$name]:-0}) / samples / 1000)) µs")
        done
        note+="; per sample: ${per[*]}"
    fi
    # The floor has no SIGTERM handler: 143 is its normal end.
    if ((STOP_RC != 0)) && ! { [ "$1" = "$FLOOR" ] && ((STOP_RC == 143)); }; then
        note+="; exit status $STOP_RC after SIGTERM"
    fi
    result "$row" \
        "$(((CPU_U - u0) * 1000 * 1000 / TICK / samples))" \
        "$(((CPU_S - s0) * 1000 * 1000 / TICK / samples))" \
        "$RSS_KB" "$HWM_KB" "$THREADS" "$bin_bytes" "$first_ms" "$samples" \
        "$(((CPU_NS - ns0) / 1000 / samples))" "$note"
    log "  $row: $samples samples, $(((CPU_U - u0 + CPU_S - s0) * 1000 / TICK)) ms CPU, RSS ${RSS_KB} kB, first after ${first_ms} ms ($note)"
}

# hostbeat with its own receiver and state dir. Args: row samples.
run_hostbeat() {
    local row=$1 samples=$2 dir rpid port i ok=0
    dir="$TMP/$row"
    mkdir -p "$dir/state"
    EVENTS="$dir/received.log"
    python3 "$ROOT/benches/receiver.py" "$EVENTS" "$dir/port" </dev/null >"$dir/receiver.err" 2>&1 &
    rpid=$!
    PIDS[$rpid]="receiver"
    for ((i = 0; i < 200; i++)); do
        [ -s "$dir/port" ] && break
        sleep 0.025
    done
    if ! read -r port <"$dir/port" || [ -z "$port" ]; then
        log "  $row: the receiver did not start:"
        cat "$dir/receiver.err" >&2
        stop_pid "$rpid"
        return 1
    fi
    cat >"$dir/hostbeat.toml" <<EOF
[agent]
interval = "1s"
state_dir = "$dir/state"

[postback]
url = "http://127.0.0.1:$port/postback/"
agent_key = "bench"
min_interval = "1s"
EOF
    measure_sampled "$row" "$samples" "$HB_BYTES" "$HB" run -c "$dir/hostbeat.toml" || ok=$?
    if ((ok == 0)); then
        local -a l=()
        local total=0 line f
        mapfile -t l <"$EVENTS"
        for line in "${l[@]}"; do
            read -ra f <<<"$line"
            total=$((total + f[1]))
        done
        log "  $row: ${#l[@]} payloads received, $((total / ${#l[@]})) bytes each on average"
    fi
    stop_pid "$rpid"
    return "$ok"
}

run_floor() {
    local row=$1 samples=$2
    EVENTS="$TMP/$row.out"
    measure_sampled "$row" "$samples" "$FLOOR_BYTES" "$FLOOR" 1000
}

# Spawns $1 idle processes in a process group of their own; sets SPAWNED_PG
# (registered for cleanup, also when this fails).
spawn_idle() {
    local count=$1 i
    rm -f "$TMP/idle.pg" "$TMP/idle.ready"
    # The spawner traps TERM (a handler, not "ignore", so its children keep
    # the default action), so stop_group's SIGTERM ends the sleepers and the
    # spawner reaps every one of them before it exits.
    setsid bash -c '
        echo $$ >"$1.pg"
        trap ":" TERM
        for ((i = 0; i < $2; i++)); do sleep 3600 & done
        : >"$1.ready"
        until wait; do :; done
    ' spawner "$TMP/idle" "$count" </dev/null >/dev/null 2>&1 &
    local child=$!
    for ((i = 0; i < 200; i++)); do
        [ -s "$TMP/idle.pg" ] && break
        sleep 0.025
    done
    # Without the file (it never happens) the child is the group leader as
    # long as setsid did not need to fork, which it does not here.
    read -r SPAWNED_PG 2>/dev/null <"$TMP/idle.pg" || SPAWNED_PG=$child
    PGROUPS[$SPAWNED_PG]=$child
    for ((i = 0; i < 2400; i++)); do
        [ -e "$TMP/idle.ready" ] && return 0
        sleep 0.05
    done
    log "  could not spawn $count idle processes within 120 s"
    return 1
}

# Installs Debian package $2 unless command $1 exists; never fatal. Keeps the
# package's service from being started (a peer must bind to 127.0.0.1 only).
ensure_pkg() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        log "  $pkg: not installed, and installing it needs root and apt-get"
        return 1
    fi
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_ADDED=1
    fi
    log "  installing $pkg with apt-get"
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg" >"$TMP/apt-$pkg.log" 2>&1 ||
        { DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$TMP/apt-$pkg.log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg" >>"$TMP/apt-$pkg.log" 2>&1; } ||
        rc=$?
    if [ -n "$POLICY_RC_ADDED" ]; then
        rm -f /usr/sbin/policy-rc.d
        POLICY_RC_ADDED=
    fi
    if ((rc != 0)) || ! command -v "$cmd" >/dev/null 2>&1; then
        log "  $pkg: apt-get install failed:"
        tail -n 5 "$TMP/apt-$pkg.log" >&2 || true
        return 1
    fi
}

run_node_exporter() {
    local ne port pid t0 i rc=1 first_ms u0 s0 next bytes=0 fails=0
    ne=$(command -v prometheus-node-exporter)
    port=$(free_port)
    now_us
    t0=$REPLY
    "$ne" --web.listen-address="127.0.0.1:$port" >"$TMP/ne.out" 2>"$TMP/ne.err" </dev/null &
    pid=$!
    PIDS[$pid]=node_exporter
    for ((i = 0; i < PAGE_TIMEOUT * 100; i++)); do
        if curl -sf -o /dev/null "http://127.0.0.1:$port/metrics"; then
            rc=0
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.01
    done
    now_us
    first_ms=$(((REPLY - t0) / 1000))
    if ((rc != 0)); then
        log "  node_exporter: no successful scrape; last log lines:"
        tail -n 20 "$TMP/ne.err" >&2 || true
        stop_pid "$pid"
        return 1
    fi
    read_cpu "$pid"
    u0=$CPU_U s0=$CPU_S
    local ns0=$CPU_NS
    read_sys
    local b0=$SYS_BUSY a0=$SYS_ALL
    now_us
    next=$REPLY
    for ((i = 0; i < N; i++)); do
        next=$((next + 1000000))
        sleep_until_us "$next"
        if curl -sf -o "$TMP/ne.scrape" "http://127.0.0.1:$port/metrics"; then
            bytes=$(stat -c %s "$TMP/ne.scrape")
        else
            fails=$((fails + 1))
        fi
    done
    read_cpu "$pid"
    read_status "$pid"
    busy_note "$b0" "$a0" $((CPU_U - u0 + CPU_S - s0))
    stop_pid "$pid"
    result node_exporter \
        "$(((CPU_U - u0) * 1000 * 1000 / TICK / N))" \
        "$(((CPU_S - s0) * 1000 * 1000 / TICK / N))" \
        "$RSS_KB" "$HWM_KB" "$THREADS" "$(stat -c %s "$ne")" "$first_ms" "$N" \
        "$(((CPU_NS - ns0) / 1000 / N))" \
        "first = first successful scrape; $bytes bytes a scrape; $fails failed scrapes; $REPLY (curl included)"
    log "  node_exporter: $N scrapes ($fails failed, $bytes bytes each), RSS ${RSS_KB} kB, first scrape after ${first_ms} ms"
}

run_collectd() {
    local cd dir pid t0 i first_ms=-1 u0 s0 start bin_bytes plugin plugdir
    cd=$(command -v collectd)
    dir="$TMP/collectd"
    mkdir -p "$dir/csv"
    plugdir=/usr/lib/collectd
    local plugins=(cpu load memory df disk interface processes csv)
    {
        echo "Hostname \"bench\""
        echo "FQDNLookup false"
        echo "BaseDir \"$dir\""
        echo "PIDFile \"$dir/collectd.pid\""
        echo "PluginDir \"$plugdir\""
        echo "TypesDB \"/usr/share/collectd/types.db\""
        echo "Interval 1"
        for plugin in "${plugins[@]}"; do echo "LoadPlugin $plugin"; done
        echo "<Plugin csv>"
        echo "  DataDir \"$dir/csv\""
        echo "  StoreRates true"
        echo "</Plugin>"
    } >"$dir/collectd.conf"
    # Its binary and the plugins it loads.
    bin_bytes=$(stat -c %s "$cd")
    for plugin in "${plugins[@]}"; do
        bin_bytes=$((bin_bytes + $(stat -c %s "$plugdir/$plugin.so")))
    done
    now_us
    t0=$REPLY
    "$cd" -f -C "$dir/collectd.conf" >"$TMP/collectd.out" 2>"$TMP/collectd.err" </dev/null &
    pid=$!
    PIDS[$pid]=collectd
    shopt -s nullglob
    local files=()
    for ((i = 0; i < PAGE_TIMEOUT * 100; i++)); do
        files=("$dir/csv"/*/*/*)
        if ((${#files[@]} > 0)); then
            now_us
            first_ms=$(((REPLY - t0) / 1000))
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.01
    done
    shopt -u nullglob
    if ((first_ms < 0)); then
        log "  collectd: wrote no csv; last log lines:"
        tail -n 20 "$TMP/collectd.err" "$TMP/collectd.out" >&2 || true
        stop_pid "$pid"
        return 1
    fi
    # Read half a cycle after the first write, then exactly N cycles later:
    # the window holds N collection cycles.
    sleep 0.5
    read_cpu "$pid"
    u0=$CPU_U s0=$CPU_S
    local ns0=$CPU_NS
    read_sys
    local b0=$SYS_BUSY a0=$SYS_ALL
    now_us
    start=$REPLY
    sleep_until_us $((start + N * 1000000))
    kill -0 "$pid" 2>/dev/null || {
        log "  collectd exited"
        tail -n 20 "$TMP/collectd.err" >&2
        stop_pid "$pid"
        return 1
    }
    read_cpu "$pid"
    read_status "$pid"
    busy_note "$b0" "$a0" $((CPU_U - u0 + CPU_S - s0))
    local busy=$REPLY
    stop_pid "$pid"
    local nfiles
    shopt -s nullglob
    files=("$dir/csv"/*/*/*)
    nfiles=${#files[@]}
    shopt -u nullglob
    result collectd \
        "$(((CPU_U - u0) * 1000 * 1000 / TICK / N))" \
        "$(((CPU_S - s0) * 1000 * 1000 / TICK / N))" \
        "$RSS_KB" "$HWM_KB" "$THREADS" "$bin_bytes" "$first_ms" "$N" \
        "$(((CPU_NS - ns0) / 1000 / N))" \
        "first = first csv file written; binary = collectd + the ${#plugins[@]} plugins loaded; $nfiles csv files; $busy"
    log "  collectd: $N cycles, RSS ${RSS_KB} kB, first csv after ${first_ms} ms, $nfiles csv files; $busy"
}

# --- run ---------------------------------------------------------------------

: >"$TMP/results.tsv"
section "footprint, N = $N samples (scaling: $SCALE_N), $(nproc) cores, $(grep -c '^[0-9]' <(ls /proc)) processes"

section "building hostbeat and the floor"
if ! cargo build --release --locked >"$TMP/build.log" 2>&1; then
    cat "$TMP/build.log" >&2
    exit 1
fi
if ! cargo build --release --locked --manifest-path benches/floor/Cargo.toml \
    --target-dir "$TARGET/floor" >"$TMP/build-floor.log" 2>&1; then
    cat "$TMP/build-floor.log" >&2
    exit 1
fi
HB=$TARGET/release/hostbeat
FLOOR=$TARGET/floor/release/hostbeat-floor
HB_BYTES=$(stat -c %s "$HB")
FLOOR_BYTES=$(stat -c %s "$FLOOR")
log "  hostbeat $HB_BYTES bytes, floor $FLOOR_BYTES bytes"

section "hostbeat ($N samples)"
run_hostbeat hostbeat "$N" || {
    log "hostbeat did not run: no figures"
    exit 1
}

section "floor ($N samples)"
run_floor floor "$N" || {
    log "the floor did not run"
    exit 1
}

section "prometheus-node-exporter ($N scrapes)"
if ensure_pkg prometheus-node-exporter prometheus-node-exporter; then
    run_node_exporter || log "  node_exporter: skipped"
else
    log "  node_exporter: skipped"
fi

section "collectd ($N cycles)"
PATH=$PATH:/usr/sbin
if ensure_pkg collectd collectd-core; then
    run_collectd || log "  collectd: skipped"
else
    log "  collectd: skipped"
fi

for count in "${SCALES[@]}"; do
    section "$count extra idle processes"
    if spawn_idle "$count"; then
        run_hostbeat "hostbeat+$count" "$SCALE_N" || log "  hostbeat+$count: failed"
        if ((count == ${SCALES[-1]})); then
            run_floor "floor+$count" "$SCALE_N" || log "  floor+$count: failed"
        fi
    fi
    stop_group "$SPAWNED_PG"
done

# --- report ------------------------------------------------------------------

REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then REV+="+changes"; fi
CONTEXT="hostbeat $REV, $(uname -sr), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
python3 - "$TMP/results.tsv" "$N" "$TICK" "${SCALES[-1]}" "$CONTEXT" <<'EOF'
import re
import sys

path, n, tick, big, context = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rows = {}
order = []
for line in open(path):
    f = line.rstrip("\n").split("\t")
    name = f[0]
    user_us, sys_us, rss_kb, hwm_kb, threads, binary, first_ms, samples, run_us = map(int, f[1:10])
    rows[name] = dict(
        user=user_us / 1000, sys=sys_us / 1000, ticks=(user_us + sys_us) / 1000, cpu=run_us / 1000,
        rss=rss_kb / 1024, hwm=hwm_kb / 1024, threads=threads, binary=binary / 1e6,
        first=first_ms, samples=samples, note=f[10] if len(f) > 10 else "",
    )
    order.append(name)

want = ["hostbeat", "floor", "node_exporter", "collectd", "hostbeat+1000", f"hostbeat+{big}", f"floor+{big}"]
order = [r for r in want if r in rows] + [r for r in order if r not in want]
head = ["", "CPU/sample ms", "user ms (ticks)", "sys ms (ticks)", "RSS MiB", "HWM MiB", "threads", "binary MB", "first payload ms"]
table = [head]
for name in order:
    r = rows[name]
    table.append([name, f"{r['cpu']:.2f}", f"{r['user']:.2f}", f"{r['sys']:.2f}", f"{r['rss']:.1f}",
                  f"{r['hwm']:.1f}", str(r["threads"]), f"{r['binary']:.2f}", str(r["first"])])
print()
print(f"`benches/footprint.sh {n}`: {context}")
print()
print("| " + " | ".join(table[0]) + " |")
print("| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |")
for t in table[1:]:
    print("| " + " | ".join(t) + " |")
print()
print("CPU/sample: run time from /proc/PID/task/*/schedstat (ns), summed over threads; ratios and targets use it.")
print(f"user/sys: /proc/PID/stat, in ticks of {1000 / tick:.0f} ms, sampled by the timer: each row is within "
      + ", ".join(sorted({f"±{1000 / tick / rows[x]['samples']:.2f} ms ({rows[x]['samples']} samples)" for x in order}))
      + " at best, and biased for a process that runs briefly once a second.")
print("first payload: hostbeat rows: start to the first POST at the receiver; floor: to its first sample; "
      "node_exporter: to the first successful scrape; collectd: to its first csv file.")
for name in order:
    if rows[name]["note"]:
        print(f"  {name}: {rows[name]['note']}")

hb = rows["hostbeat"]
def ratio(a, b):
    return f"{a / b:.2f}" if b else "n/a"
print()
print("ratios (hostbeat / peer):")
for peer in ("collectd", "node_exporter"):
    if peer in rows:
        p = rows[peer]
        print(f"  hostbeat/{peer}: CPU {ratio(hb['cpu'], p['cpu'])}, RSS {ratio(hb['rss'], p['rss'])}, "
              f"binary {ratio(hb['binary'], p['binary'])}")
    else:
        print(f"  hostbeat/{peer}: n/a ({peer} skipped)")
if "floor" in rows:
    print(f"  hostbeat CPU = {ratio(hb['cpu'], rows['floor']['cpu'])} x floor")
    m = re.search(r"sampler thread (\d+) µs", hb["note"])
    if m:
        print(f"  hostbeat sampler thread (the /proc reads, parsing, payload JSON and MD5) = "
              f"{ratio(int(m[1]) / 1000, rows['floor']['cpu'])} x floor; the other thread delivers "
              "(spool file, HTTP POST), which the floor does not do")
for name in order:
    if name.startswith("hostbeat+"):
        k = int(name.split("+")[1])
        us = (rows[name]["cpu"] - hb["cpu"]) * 1000 / k
        print(f"  per process (hostbeat, +{k}): {us:.1f} µs = ({rows[name]['cpu']:.2f} - {hb['cpu']:.2f}) ms / {k}")
if f"floor+{big}" in rows and "floor" in rows:
    us = (rows[f"floor+{big}"]["cpu"] - rows["floor"]["cpu"]) * 1000 / big
    print(f"  per process (floor, +{big}): {us:.1f} µs")

print()
print("targets (issue 7):")
def check(label, ok):
    state = "n/a" if ok is None else ("MET" if ok else "NOT MET")
    print(f"  {state:8} {label}")
cd, ne, fl = rows.get("collectd"), rows.get("node_exporter"), rows.get("floor")
check(f"CPU per sample <= 1/2 collectd's: {hb['cpu']:.2f} vs {cd['cpu'] / 2:.2f} ms" if cd
      else "CPU per sample <= 1/2 collectd's (collectd skipped)", hb["cpu"] <= cd["cpu"] / 2 if cd else None)
check(f"CPU per sample <= 1.5 x floor: {hb['cpu']:.2f} vs {fl['cpu'] * 1.5:.2f} ms" if fl
      else "CPU per sample <= 1.5 x floor (floor missing)", hb["cpu"] <= fl["cpu"] * 1.5 if fl else None)
check(f"steady RSS <= collectd's: {hb['rss']:.1f} vs {cd['rss']:.1f} MiB" if cd
      else "steady RSS <= collectd's (collectd skipped)", hb["rss"] <= cd["rss"] if cd else None)
check(f"steady RSS <= 1/4 node_exporter's: {hb['rss']:.1f} vs {ne['rss'] / 4:.1f} MiB" if ne
      else "steady RSS <= 1/4 node_exporter's (node_exporter skipped)", hb["rss"] <= ne["rss"] / 4 if ne else None)
check(f"stripped binary <= 3 MB: {hb['binary']:.2f} MB", hb["binary"] <= 3.0)
check(f"first payload within 1.5 s of start: {hb['first']} ms", hb["first"] <= 1500)
if n < 20:
    print(f"\n(N = {n}: a smoke run; CPU figures are too coarse to judge the targets)")
EOF
