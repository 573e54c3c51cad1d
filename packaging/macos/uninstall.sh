#!/bin/sh
# Removes Airlock installed by the pkg: `airlock uninstall --yes` first (the device CA out of every
# trust store, the environment files and proxy settings setup made), then the tray and the daemon,
# the binaries, completions and man page, and the pkg receipt. The state directory (device CA,
# journal, ratchet, credentials), the managed configuration and the _airlock user are kept unless
# --purge is given. Installed as /usr/local/share/airlock/uninstall.sh; run it with sudo.
#
#   sudo /usr/local/share/airlock/uninstall.sh [--purge]
set -eu

PURGE=0
case "${1:-}" in
  --purge) PURGE=1 ;;
  "") ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  echo "run it as root: sudo $0 ${1:-}" >&2
  exit 1
fi

LABEL=com.airlock.airlockd
BIN=/usr/local/bin
STATE="/Library/Application Support/Airlock"
LOGS=/Library/Logs/Airlock
NAME=_airlock
PKG_ID=com.airlock.pkg

if [ -x "$BIN/airlock" ]; then
  if [ "$PURGE" -eq 1 ]; then
    "$BIN/airlock" --state-dir "$STATE" uninstall --yes --purge || echo "airlock uninstall failed; continuing" >&2
  else
    "$BIN/airlock" --state-dir "$STATE" uninstall --yes || echo "airlock uninstall failed; continuing" >&2
  fi
fi

# The tray in every login session, then the daemon.
for uid in $(ps -axo uid=,comm= | awk '$2 ~ /loginwindow$/ {print $1}' | sort -u); do
  launchctl bootout "gui/$uid/com.airlock.tray" 2>/dev/null || true
done
launchctl bootout "system/$LABEL" 2>/dev/null || true

rm -f "/Library/LaunchDaemons/$LABEL.plist" /Library/LaunchAgents/com.airlock.tray.plist
rm -f "$BIN/airlockd" "$BIN/airlock"
rm -f /usr/local/share/zsh/site-functions/_airlock /usr/local/etc/bash_completion.d/airlock \
  /usr/local/share/fish/vendor_completions.d/airlock.fish /usr/local/share/man/man1/airlock.1
pkgutil --forget "$PKG_ID" >/dev/null 2>&1 || true

if [ "$PURGE" -eq 1 ]; then
  rm -rf "$STATE" "$LOGS"
  dscl . -delete "/Users/$NAME" 2>/dev/null || true
  dscl . -delete "/Groups/$NAME" 2>/dev/null || true
  echo "removed Airlock, its state, logs and the $NAME user"
else
  echo "removed Airlock; kept $STATE (device CA, journal, managed Config) and the $NAME user: --purge removes them"
fi
rm -rf /usr/local/share/airlock
