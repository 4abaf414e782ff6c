# %pre (hostbeat). $1: 1 = install, 2 = upgrade.
# The service user and group exist before the files land, so that
# /etc/hostbeat/hostbeat.toml is installed as root:hostbeat.
getent group hostbeat >/dev/null || groupadd -r hostbeat
getent passwd hostbeat >/dev/null || \
    useradd -r -g hostbeat -M -d /var/lib/hostbeat -s /sbin/nologin \
        -c "hostbeat monitoring agent" hostbeat
exit 0
