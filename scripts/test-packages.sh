#!/usr/bin/env bash
# Builds the hostbeat .deb and .rpm (packaging/build.sh) and tests them on
# this machine: contents and modes, lintian, install / upgrade / purge of the
# .deb, install / upgrade / erase of the .rpm (into a private rpm database),
# the installed binary as the service user, and the unit with
# systemd-analyze verify and security.
#
# Needs root and Debian (or Ubuntu); does not need systemd as PID 1.
# Installs what is missing: lintian, rpm, systemd (systemd-analyze) with apt,
# cargo-deb and cargo-generate-rpm with cargo install (build.sh).
# Leaves nothing installed: the package is purged on exit, even on failure.
#
#   scripts/test-packages.sh          # exit 0 when every step passes
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

MAX_EXPOSURE=2.0
UNIT=hostbeat.service
UNIT_PATH=/usr/lib/systemd/system/$UNIT
WANTS_LINK=/etc/systemd/system/multi-user.target.wants/$UNIT
CONF=/etc/hostbeat/hostbeat.toml
STATE=/var/lib/hostbeat

started=$(date +%s)
work=$(mktemp -d /tmp/hostbeat-pkgtest.XXXXXX)
chmod 0755 "$work"
rpmdb="$work/rpmdb"
step_names=()
step_results=()
step_times=()
failures=0
deb1='' deb2='' deb3='' rpm1='' rpm2='' exposure='n/a' lintian_counts='n/a'

# --- helpers ---------------------------------------------------------------

log() { printf '%s\n' "$*"; }
bad() { printf 'FAIL: %s\n' "$*"; step_ok=0; }
# check DESCRIPTION COMMAND...: runs the command, records a failure if it
# fails and then shows its output.
check() {
    local what=$1 out; shift
    if out=$("$@" 2>&1); then printf '  ok: %s\n' "$what"
    else bad "$what"; [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/    | /'; fi
}
# same VALUE EXPECTED DESCRIPTION: a value, or a list (one item a line).
same() {
    if [ "$1" = "$2" ]; then
        case "$1" in
            *$'\n'*) printf '  ok: %s (%d lines)\n' "$3" "$(printf '%s\n' "$1" | wc -l)" ;;
            *) printf '  ok: %s (%s)\n' "$3" "$1" ;;
        esac
    else
        bad "$3"
        diff <(printf '%s\n' "$2") <(printf '%s\n' "$1") | sed -n 's/^[<>]/    &/p' | sed 's/    </    want/; s/    >/    got /'
    fi
}
# step NAME FUNCTION: runs one step, records PASS/FAIL and its duration.
step() {
    local name=$1 fn=$2 t0
    t0=$(date +%s)
    log ""
    log "=== $name"
    step_ok=1
    "$fn" || step_ok=0
    step_names+=("$name")
    step_times+=("$(( $(date +%s) - t0 ))s")
    if [ "$step_ok" = 1 ]; then step_results+=(PASS); else step_results+=(FAIL); failures=$((failures + 1)); fi
}
mode_owner() { stat -c '%a %U:%G' "$1" 2>/dev/null || echo missing; }
deb_installed() { dpkg-query -W -f '${db:Status-Status}' hostbeat 2>/dev/null | grep -qv '^not-installed$'; }
deb_not_installed() { ! deb_installed; }

cleanup() {
    local p
    for p in ${daemon_pid:-} ${listener_pid:-}; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    if deb_installed; then
        log "cleanup: dpkg --purge hostbeat"
        dpkg --purge hostbeat >/dev/null 2>&1 || true
    fi
    if [ -d "$rpmdb" ] && rpm --dbpath "$rpmdb" -q hostbeat >/dev/null 2>&1; then
        log "cleanup: rpm -e hostbeat"
        rpm --dbpath "$rpmdb" -e --nodeps hostbeat >/dev/null 2>&1 || true
    fi
    # The rpm test leaves these by design (RPM has no purge); so may a failure.
    if [ -n "${rpm_made_user:-}" ] && getent passwd hostbeat >/dev/null; then
        userdel hostbeat 2>/dev/null || true
        groupdel hostbeat 2>/dev/null || true
        rm -rf "$STATE" /etc/hostbeat
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 0. tools ----------------------------------------------------------------

step_tools() {
    if [ "$(id -u)" != 0 ]; then bad "must run as root (dpkg -i, adduser)"; return 1; fi
    local need=()
    command -v lintian >/dev/null || need+=(lintian)
    command -v rpm >/dev/null || need+=(rpm)
    command -v rpm2cpio >/dev/null || need+=(rpm2cpio)
    command -v systemd-analyze >/dev/null || need+=(systemd)
    command -v adduser >/dev/null || need+=(adduser)
    command -v cpio >/dev/null || need+=(cpio)
    if [ ${#need[@]} -gt 0 ]; then
        log "apt-get install ${need[*]}"
        apt-get update -qq || { bad "apt-get update"; return 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
            || { bad "apt-get install ${need[*]}"; return 1; }
    fi
    log "$(lintian --version) | $(rpm --version) | $(systemd-analyze --version | head -n 1)"
    packaging/build.sh --install-tools || { bad "cargo install cargo-deb cargo-generate-rpm"; return 1; }
}

# --- 1. build ----------------------------------------------------------------

step_build() {
    packaging/build.sh || { bad "packaging/build.sh"; return 1; }
    packaging/build.sh --revision 2 | tail -n 3 || { bad "packaging/build.sh --revision 2"; return 1; }
    local v
    v=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
    deb1=$(ls target/packages/hostbeat_"$v"-1_*.deb)
    deb2=$(ls target/packages/hostbeat_"$v"-2_*.deb)
    rpm1=$(ls target/packages/hostbeat-"$v"-1.*.rpm)
    rpm2=$(ls target/packages/hostbeat-"$v"-2.*.rpm)
    check "built $deb1 $deb2 $rpm1 $rpm2" test -s "$deb1" -a -s "$deb2" -a -s "$rpm1" -a -s "$rpm2"
}

# --- 2. contents -------------------------------------------------------------

# The files both packages install; documentation aside, they must be the same.
COMMON_FILES="\
/etc/hostbeat/hostbeat.toml
/usr/bin/hostbeat
/usr/lib/systemd/system/hostbeat.service
/usr/share/man/man1/hostbeat.1.gz"

step_contents() {
    local got want
    log "--- dpkg-deb --contents $deb1"
    dpkg-deb --contents "$deb1" | tee "$work/deb.contents"
    # Files: mode, owner/group, path. Owners are numeric in the archive; the
    # group of hostbeat.toml is set by postinst (the group does not exist yet).
    got=$(awk '$1 !~ /^d/ { print $1, $2, $6 }' "$work/deb.contents" | sort)
    want=$(sort <<'EOF'
-rwxr-xr-x 0/0 ./usr/bin/hostbeat
-rw-r--r-- 0/0 ./usr/lib/systemd/system/hostbeat.service
-rw-r----- 0/0 ./etc/hostbeat/hostbeat.toml
-rw-r--r-- 0/0 ./usr/share/man/man1/hostbeat.1.gz
-rw-r--r-- 0/0 ./usr/share/doc/hostbeat/changelog.Debian.gz
-rw-r--r-- 0/0 ./usr/share/doc/hostbeat/copyright
-rw-r--r-- 0/0 ./usr/share/lintian/overrides/hostbeat
EOF
)
    same "$got" "$want" ".deb files, modes and owners"
    got=$(awk '$1 ~ /^d/ && ($1 != "drwxr-xr-x" || $2 != "0/0")' "$work/deb.contents")
    same "$got" "" ".deb directories all drwxr-xr-x root"
    same "$(dpkg-deb -I "$deb1" conffiles)" "$CONF" ".deb conffiles"
    dpkg-deb -e "$deb1" "$work/deb.control"
    check ".deb postinst creates the user" grep -q 'adduser --quiet --system' "$work/deb.control/postinst"
    check ".deb postinst enables the unit" grep -q "deb-systemd-helper enable $UNIT" "$work/deb.control/postinst"
    check ".deb postinst starts only under systemd" grep -q 'if \[ -d /run/systemd/system \]' "$work/deb.control/postinst"
    check ".deb prerm stops the unit" grep -q "deb-systemd-invoke stop $UNIT" "$work/deb.control/prerm"
    check ".deb postrm purges" grep -q "deb-systemd-helper purge $UNIT" "$work/deb.control/postrm"
    for s in postinst prerm postrm; do
        check ".deb $s: sh -n" sh -n "$work/deb.control/$s"
    done

    log "--- rpm -qplv $rpm1"
    rpm -qplv "$rpm1"
    got=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm1" | sort)
    want=$(sort <<'EOF'
-rwxr-xr-x root:root  /usr/bin/hostbeat
-rw-r--r-- root:root  /usr/lib/systemd/system/hostbeat.service
-rw-r----- root:hostbeat cn /etc/hostbeat/hostbeat.toml
-rw-r--r-- root:root d /usr/share/man/man1/hostbeat.1.gz
-rw-r--r-- root:root d /usr/share/doc/hostbeat/changelog
EOF
)
    same "$got" "$want" ".rpm files, modes, owners and flags (c = config, n = noreplace, d = doc)"
    same "$(rpm -qp --configfiles "$rpm1")" "$CONF" ".rpm --configfiles"
    rpm -qp --scripts "$rpm1" > "$work/rpm.scripts"
    check ".rpm --scripts not empty" test -s "$work/rpm.scripts"
    check ".rpm %pre creates the user" grep -q 'useradd -r' "$work/rpm.scripts"
    check ".rpm %post enables the unit" grep -q "systemctl --no-reload enable" "$work/rpm.scripts"
    for tag in PREIN POSTIN PREUN POSTUN; do
        rpm -qp --qf "%{$tag}" "$rpm1" > "$work/rpm.$tag"
        check ".rpm $tag: sh -n" sh -n "$work/rpm.$tag"
    done

    # Same content: the path lists, then the bytes, after unpacking both.
    # Only documentation differs, each in its format's convention: the .deb
    # has changelog.Debian.gz, copyright (cargo-deb) and the lintian
    # overrides; the .rpm has doc/hostbeat/changelog (and License: MIT in
    # its header).
    local deb_paths rpm_paths
    deb_paths=$(awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' "$work/deb.contents" \
        | grep -v -e '^/usr/share/doc/' -e '^/usr/share/lintian/' | sort)
    rpm_paths=$(rpm -qpl "$rpm1" | grep -v '^/usr/share/doc/' | sort)
    same "$deb_paths" "$COMMON_FILES" ".deb paths (documentation aside)"
    same "$rpm_paths" "$COMMON_FILES" ".rpm paths (documentation aside)"
    mkdir -p "$work/deb.root" "$work/rpm.root"
    dpkg-deb -x "$deb1" "$work/deb.root"
    (cd "$work/rpm.root" && rpm2cpio "$OLDPWD/$rpm1" | cpio -idm --quiet)
    local f
    while read -r f; do
        case "$f" in
            *.gz) check "same content: $f (gunzipped)" \
                      cmp -s <(zcat "$work/deb.root$f") <(zcat "$work/rpm.root$f") ;;
            *)    check "same content: $f" cmp -s "$work/deb.root$f" "$work/rpm.root$f" ;;
        esac
    done <<< "$COMMON_FILES"
    check "the packaged unit is systemd/$UNIT" cmp -s "$work/deb.root$UNIT_PATH" "systemd/$UNIT"
    check "the packaged config is config.example.toml" cmp -s "$work/deb.root$CONF" config.example.toml
    check "the man page renders without warnings" \
        sh -c "LC_ALL=C.UTF-8 man --warnings -l '$work/deb.root/usr/share/man/man1/hostbeat.1.gz' 2>&1 >/dev/null | (! grep .)"
}

# --- 3. lintian ----------------------------------------------------------------

step_lintian() {
    lintian --display-info "$deb1" 2>/dev/null | tee "$work/lintian.out"
    local e w
    e=$(grep -c '^E:' "$work/lintian.out")
    w=$(grep -c '^W:' "$work/lintian.out")
    lintian_counts="$e errors, $w warnings"
    log "lintian: $lintian_counts"
    same "$e" 0 "lintian errors"
}

# --- 4. install the .deb -------------------------------------------------------

step_deb_install() {
    if deb_installed; then log "purging a hostbeat left installed"; dpkg --purge hostbeat >/dev/null; fi
    DEBIAN_FRONTEND=noninteractive dpkg -i "$deb1" </dev/null || { bad "dpkg -i $deb1"; return 1; }
    local pw
    pw=$(getent passwd hostbeat) || { bad "user hostbeat exists"; return 1; }
    log "  $pw"
    check "group hostbeat exists" getent group hostbeat
    check "hostbeat is a system user (uid < 1000)" test "$(id -u hostbeat)" -lt 1000
    same "$(echo "$pw" | cut -d: -f6,7)" "$STATE:/usr/sbin/nologin" "home and shell"
    same "$(mode_owner "$STATE")" "750 hostbeat:hostbeat" "$STATE"
    same "$(mode_owner "$CONF")" "640 root:hostbeat" "$CONF"
    same "$(mode_owner /usr/bin/hostbeat)" "755 root:root" /usr/bin/hostbeat
    same "$(mode_owner "$UNIT_PATH")" "644 root:root" "$UNIT_PATH"
    check "enable link $WANTS_LINK" test -L "$WANTS_LINK"
    same "$(readlink -f "$WANTS_LINK")" "$(readlink -f "$UNIT_PATH")" "enable link target"
    check "man page installed" test -f /usr/share/man/man1/hostbeat.1.gz
    check "hostbeat check-config (root)" hostbeat check-config -c "$CONF"
    check "hostbeat check-config (as hostbeat)" runuser -u hostbeat -- hostbeat check-config -c "$CONF"
}

# --- 5. the installed binary as the service user ---------------------------------

# What systemd would do, minus the sandbox: run as hostbeat with the packaged
# config, expect READY=1, WATCHDOG=1, RELOADING=1 + READY=1 on HUP, STOPPING=1
# and exit 0 within 5 s of SIGTERM.
step_daemon() {
    if ! command -v python3 >/dev/null; then log "python3 missing: notify messages not checked"; fi
    local sock="$work/notify" pid listener='' t0 t1 rc msgs
    if command -v python3 >/dev/null; then
        python3 - "$sock" > "$work/notify.out" <<'EOF' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
s.settimeout(15)
try:
    while True:
        msg = s.recv(4096).decode()
        print(" ".join(msg.split()), flush=True)
        if "STOPPING=1" in msg:
            break
except socket.timeout:
    pass
EOF
        listener=$!
        listener_pid=$listener
        for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
    fi
    # setpriv execs the daemon itself (runuser would stand in between and
    # catch the signals).
    NOTIFY_SOCKET=$sock WATCHDOG_USEC=2000000 \
        setpriv --reuid=hostbeat --regid=hostbeat --init-groups -- \
        /usr/bin/hostbeat run -c "$CONF" >"$work/daemon.out" 2>"$work/daemon.err" &
    pid=$!
    daemon_pid=$pid
    sleep 2
    kill -HUP "$pid"
    sleep 1.5
    t0=$(date +%s%N)
    kill -TERM "$pid"
    wait "$pid"; rc=$?
    daemon_pid=
    t1=$(date +%s%N)
    sed 's/^/  daemon: /' "$work/daemon.err"
    same "$rc" 0 "exit status after SIGTERM"
    check "stopped within 5 s of SIGTERM ($(( (t1 - t0) / 1000000 )) ms)" test $(( (t1 - t0) / 1000000 )) -lt 5000
    check "printed a payload (no postback url in the default config)" grep -q '"agentVersion"' "$work/daemon.out"
    if [ -n "$listener" ]; then
        wait "$listener"
        listener_pid=
        msgs=$(tr '\n' ' ' < "$work/notify.out")
        log "  notify: $msgs"
        check "READY=1 first" test "$(head -n 1 "$work/notify.out")" = READY=1
        check "WATCHDOG=1 at WATCHDOG_USEC/2" grep -qx 'WATCHDOG=1' "$work/notify.out"
        check "HUP: RELOADING=1, then READY=1" sh -c "grep -A1 '^RELOADING=1' '$work/notify.out' | grep -q '^READY=1'"
        check "STOPPING=1 last" test "$(tail -n 1 "$work/notify.out")" = STOPPING=1
    fi
}

# --- 6. systemd-analyze ----------------------------------------------------------

step_analyze() {
    # verify needs the unit's binaries (ExecStart, ExecReload's /bin/kill) in
    # place, hence after dpkg -i. Without systemd as PID 1 it still parses and
    # checks the unit fully; nothing is filtered.
    systemd-analyze verify "$UNIT_PATH" > "$work/verify.out" 2>&1
    local rc=$?
    cat "$work/verify.out"
    same "$rc" 0 "systemd-analyze verify $UNIT_PATH exit status"
    same "$(cat "$work/verify.out")" "" "systemd-analyze verify prints nothing"

    systemd-analyze security --offline=true "systemd/$UNIT" > "$work/security.out" 2>&1
    grep -E '^✗|Overall exposure' "$work/security.out"
    exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$work/security.out")
    if [ -z "$exposure" ]; then bad "no exposure score in systemd-analyze security output"; exposure='n/a'; return 1; fi
    check "exposure $exposure <= $MAX_EXPOSURE" awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }'
    # What a monitoring agent must keep (see the comment in the unit).
    local k
    for k in ProtectProc ProcSubset PrivateUsers PrivateNetwork IPAddressDeny IPAddressAllow; do
        check "the unit does not set $k=" sh -c "! grep -q '^$k=' 'systemd/$UNIT'"
    done
    check "the unit keeps AF_INET and AF_INET6" grep -q '^RestrictAddressFamilies=.*AF_INET .*AF_INET6' "systemd/$UNIT"
}

# --- 7. upgrade keeps the edited conffile ------------------------------------------

step_deb_upgrade() {
    deb_installed || { bad "hostbeat is not installed"; return 1; }
    local mark="# local edit by test-packages.sh $$"
    echo "$mark" >> "$CONF"

    # 0.1.0-2 from build.sh: the packaged conffile is unchanged.
    DEBIAN_FRONTEND=noninteractive timeout 120 dpkg -i --force-confold "$deb2" </dev/null \
        || { bad "dpkg -i $deb2"; return 1; }
    same "$(dpkg-query -W -f '${Version}' hostbeat)" "$(dpkg-deb -f "$deb2" Version)" "upgraded to"
    check "the edit survived" grep -qxF "$mark" "$CONF"
    same "$(mode_owner "$CONF")" "640 root:hostbeat" "$CONF after upgrade"

    # 0.1.0-3: the packaged conffile changed too, the case where dpkg would
    # ask. --force-confold keeps the edit and puts the new one aside.
    local v3 root="$work/deb3"
    v3="$(dpkg-deb -f "$deb2" Version | sed 's/-[^-]*$//')-3"
    dpkg-deb -R "$deb2" "$root"
    sed -i "s/^Version: .*/Version: $v3/" "$root/DEBIAN/control"
    echo "# changed upstream in $v3" >> "$root$CONF"
    deb3="$work/hostbeat_${v3}.deb"
    dpkg-deb --root-owner-group -b "$root" "$deb3" >/dev/null || { bad "repacking $v3"; return 1; }
    DEBIAN_FRONTEND=noninteractive timeout 120 dpkg -i --force-confold "$deb3" </dev/null \
        || { bad "dpkg -i $deb3 (no prompt)"; return 1; }
    same "$(dpkg-query -W -f '${Version}' hostbeat)" "$v3" "upgraded to"
    check "the edit survived a changed conffile" grep -qxF "$mark" "$CONF"
    check "the new conffile is set aside as $CONF.dpkg-dist" grep -q "changed upstream" "$CONF.dpkg-dist"
    same "$(mode_owner "$CONF")" "640 root:hostbeat" "$CONF after upgrade"
    check "user still there" getent passwd hostbeat
    check "enable link still there" test -L "$WANTS_LINK"
}

# --- 8. purge ----------------------------------------------------------------------

step_deb_purge() {
    # Something for purge to take: a spool file and an administrator's token.
    runuser -u hostbeat -- sh -c "mkdir -p $STATE/spool && echo {} > $STATE/spool/1.json"
    echo secret > /etc/hostbeat/token
    dpkg --purge hostbeat || { bad "dpkg --purge hostbeat"; return 1; }
    check "package gone" deb_not_installed
    check "user hostbeat gone" sh -c '! getent passwd hostbeat'
    check "group hostbeat gone" sh -c '! getent group hostbeat'
    check "$STATE gone" test ! -e "$STATE"
    check "/etc/hostbeat gone" test ! -e /etc/hostbeat
    check "enable link gone" test ! -e "$WANTS_LINK" -a ! -L "$WANTS_LINK"
    check "no mask left" test ! -e /etc/systemd/system/$UNIT -a ! -L /etc/systemd/system/$UNIT
    check "/usr/bin/hostbeat gone" test ! -e /usr/bin/hostbeat
    check "$UNIT_PATH gone" test ! -e "$UNIT_PATH"
    check "deb-systemd-helper state gone" sh -c "! ls /var/lib/systemd/deb-systemd-helper-*/ 2>/dev/null | grep -q hostbeat"
}

# --- 9. the .rpm: install, upgrade, erase (private rpm database) --------------------

step_rpm() {
    if getent passwd hostbeat >/dev/null; then bad "user hostbeat exists before the rpm test"; return 1; fi
    rpm_made_user=1
    mkdir -p "$rpmdb"
    # --nodeps: this database knows nothing of Debian's libc.
    rpm --dbpath "$rpmdb" -i --nodeps "$rpm1" || { bad "rpm -i $rpm1"; return 1; }
    check "user hostbeat exists (%pre)" getent passwd hostbeat
    same "$(mode_owner "$CONF")" "640 root:hostbeat" "$CONF"
    same "$(mode_owner "$STATE")" "750 hostbeat:hostbeat" "$STATE"
    same "$(mode_owner /usr/bin/hostbeat)" "755 root:root" /usr/bin/hostbeat
    check "enable link $WANTS_LINK" test -L "$WANTS_LINK"
    check "rpm -V" rpm --dbpath "$rpmdb" -V --nodeps hostbeat
    check "hostbeat check-config (as hostbeat)" runuser -u hostbeat -- hostbeat check-config -c "$CONF"
    local mark="# local edit by test-packages.sh $$"
    echo "$mark" >> "$CONF"
    rpm --dbpath "$rpmdb" -U --nodeps "$rpm2" || { bad "rpm -U $rpm2"; return 1; }
    same "$(rpm --dbpath "$rpmdb" -q --qf '%{VERSION}-%{RELEASE}' hostbeat)" "$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$rpm2")" "upgraded to"
    check "the edit survived (noreplace)" grep -qxF "$mark" "$CONF"
    check "enable link still there" test -L "$WANTS_LINK"
    rpm --dbpath "$rpmdb" -e --nodeps hostbeat || { bad "rpm -e hostbeat"; return 1; }
    check "/usr/bin/hostbeat gone" test ! -e /usr/bin/hostbeat
    check "enable link gone (%preun)" test ! -e "$WANTS_LINK" -a ! -L "$WANTS_LINK"
    check "edited config kept as $CONF.rpmsave" grep -qxF "$mark" "$CONF.rpmsave"
    # RPM has no purge: the user and the state stay (Fedora's guidelines).
    check "user kept on erase" getent passwd hostbeat
    userdel hostbeat; getent group hostbeat >/dev/null && groupdel hostbeat
    rm -rf "$STATE" /etc/hostbeat
    rpm_made_user=
}

# --- run ---------------------------------------------------------------------------

step "0. tools (apt: lintian rpm systemd; cargo-deb, cargo-generate-rpm)" step_tools
if [ "${step_results[0]}" = PASS ]; then
    step "1. build (packaging/build.sh, revisions 1 and 2)" step_build
fi
if [ "${step_results[1]:-FAIL}" = PASS ]; then
    step "2. contents: dpkg-deb --contents, rpm -qp, same files in both" step_contents
    step "3. lintian" step_lintian
    step "4. dpkg -i: user, dirs, modes, enable link, check-config" step_deb_install
    if deb_installed; then
        step "5. the installed daemon as hostbeat: notify, HUP, TERM" step_daemon
        step "6. systemd-analyze verify + security" step_analyze
        step "7. upgrade (0.1.0-2, -3) keeps the edited conffile" step_deb_upgrade
        step "8. dpkg --purge removes everything" step_deb_purge
    fi
    if ! deb_installed; then
        step "9. rpm -i / -U / -e (private rpm database)" step_rpm
    fi
fi

log ""
log "=== summary"
for f in ${deb1:+"$deb1"} ${rpm1:+"$rpm1"}; do
    printf 'package   %10d bytes  %s\n' "$(stat -c %s "$f")" "$f"
done
log "exposure  $exposure (systemd-analyze security --offline=true systemd/$UNIT; max $MAX_EXPOSURE)"
log "lintian   $lintian_counts (E: fails the test)"
for i in "${!step_names[@]}"; do
    printf '%s  %5s  %s\n' "${step_results[$i]}" "${step_times[$i]}" "${step_names[$i]}"
done
log "total $(( $(date +%s) - started ))s"
if [ "$failures" -gt 0 ] || [ "${#step_names[@]}" -lt 10 ]; then
    log "test-packages: FAILED ($failures failed step(s), ${#step_names[@]} of 10 run)"
    exit 1
fi
log "test-packages: all 10 steps passed"
