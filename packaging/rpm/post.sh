# %post (hostbeat). $1: 1 = install, 2 = upgrade.
unit=hostbeat.service
if [ ! -d /var/lib/hostbeat ]; then
    install -d -o hostbeat -g hostbeat -m 0750 /var/lib/hostbeat
fi
if [ "$1" -eq 1 ]; then
    # Enable on first install. systemctl enable works without a running
    # systemd (it only makes links); the plain link is the fallback.
    if ! systemctl --no-reload enable "$unit" >/dev/null 2>&1; then
        mkdir -p /etc/systemd/system/multi-user.target.wants
        ln -sf "/usr/lib/systemd/system/$unit" "/etc/systemd/system/multi-user.target.wants/$unit"
    fi
fi
# Start (or restart on upgrade) only where systemd is running.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl start "$unit" >/dev/null 2>&1 || :
    else
        systemctl try-restart "$unit" >/dev/null 2>&1 || :
    fi
fi
exit 0
