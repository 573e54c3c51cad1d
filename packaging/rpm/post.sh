# Airlock %post: the service user and its state directory, `airlock setup --system --yes`, and the
# units enabled (systemd's own preset/enable when systemd runs the machine). $1 is 1 on install,
# 2 on upgrade; an upgrade keeps the state directory as it is.
if ! getent passwd airlock >/dev/null; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers /usr/lib/sysusers.d/airlock.conf
    else
        useradd --system --home-dir /var/lib/airlock --no-create-home --shell /sbin/nologin \
            --comment "Airlock agent" --user-group airlock
    fi
fi
[ -d /var/lib/airlock ] || install -d -m 0711 -o airlock -g airlock /var/lib/airlock
install -d -m 0755 /etc/airlock /etc/airlock/policy.d
airlock setup --system --yes || echo "airlock: 'airlock setup --system' did not finish; run it again after fixing what it says" >&2
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl enable --now airlockd.socket airlockd-control.socket airlockd.service >/dev/null 2>&1 || :
    else
        systemctl try-restart airlockd.service >/dev/null 2>&1 || :
    fi
fi
