# Airlock %preun: on erase ($1 = 0, not on upgrade) stop the units and remove every trace of
# `airlock setup` outside the state directory.
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl disable --now airlockd.service airlockd.socket airlockd-control.socket >/dev/null 2>&1 || :
    fi
    airlock uninstall --system --yes || echo "airlock: 'airlock uninstall --system' did not finish; run it again" >&2
fi
