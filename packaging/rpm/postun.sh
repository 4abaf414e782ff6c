# %postun (hostbeat). $1: 0 = erase, 1 = upgrade.
# RPM has no purge: on erase the hostbeat user and /var/lib/hostbeat (unsent
# payloads, webhook secrets) stay, as Fedora's packaging guidelines ask, and
# a modified hostbeat.toml is kept as hostbeat.toml.rpmsave. Remove them by
# hand: rm -rf /var/lib/hostbeat /etc/hostbeat; userdel hostbeat
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
