# Airlock %postun: the state directory stays on erase (rpm has no purge); remove it by hand with
# `rm -rf /var/lib/airlock` when the device CA and journal are no longer wanted.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
