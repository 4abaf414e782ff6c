# %preun (hostbeat). $1: 0 = erase, 1 = upgrade.
unit=hostbeat.service
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop "$unit" >/dev/null 2>&1 || :
    fi
    systemctl --no-reload disable "$unit" >/dev/null 2>&1 || :
    link="/etc/systemd/system/multi-user.target.wants/$unit"
    if [ -L "$link" ]; then
        rm -f "$link"
    fi
fi
exit 0
