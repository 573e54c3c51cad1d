#!/bin/sh
# Jamf policy script for Airlock: installs the pkg if needed, writes the fleet enrollment the
# configuration profile (airlock-enrollment.mobileconfig) delivered, and runs `airlock setup`.
# Run it as a policy's script (priority After, so the policy's Packages payload has installed or
# cached the pkg), at enrollment and at each recurring check-in ("Ongoing"): it changes nothing when
# everything is already in place, and follows a changed or removed profile.
#
# Jamf passes $1 mount point, $2 computer name, $3 user; the policy's own parameters start at $4:
#   $4  path of the Airlock pkg to install when airlock is missing or older (optional when the
#       policy's Packages payload installs it), e.g. "/Library/Application Support/JAMF/Waiting Room/Airlock-0.1.0.pkg"
set -eu

PKG=${4:-}
BIN=/usr/local/bin
STATE="/Library/Application Support/Airlock"
CONFIG="$STATE/Config"
PREFS="/Library/Managed Preferences/com.airlock.airlockd.plist"
MARKER="# Managed by the MDM (profile com.airlock.airlockd): edit the profile, not this file."

log() { echo "airlock-jamf: $*"; }
fail() {
  echo "airlock-jamf: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || fail "run as root (Jamf runs policy scripts as root)"

# 1. The package.
if [ -n "$PKG" ]; then
  [ -f "$PKG" ] || fail "no pkg at $PKG"
  log "installing $PKG"
  installer -pkg "$PKG" -target / || fail "installer failed for $PKG (see /var/log/install.log)"
fi
if [ ! -x "$BIN/airlock" ] || [ ! -x "$BIN/airlockd" ]; then
  fail "Airlock is not installed: add the pkg to this policy, or pass its path as parameter 4"
fi

# 2. The enrollment, from the profile's managed preferences.
if [ -f "$PREFS" ]; then
  text=$(/usr/bin/plutil -extract EnrollmentTOML raw -o - "$PREFS") ||
    fail "$PREFS has no EnrollmentTOML string: check the profile"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  printf '%s\n%s\n' "$MARKER" "$text" >"$tmp/enrollment.toml"
  # The agent's own parser decides whether it is a usable enrollment.
  "$BIN/airlock" enroll --show --config-dir "$tmp" >/dev/null ||
    fail "the profile's EnrollmentTOML is not a valid enrollment; nothing changed"
  if cmp -s "$tmp/enrollment.toml" "$CONFIG/enrollment.toml"; then
    log "enrollment unchanged"
  else
    mkdir -p "$CONFIG"
    install -o root -g wheel -m 0644 "$tmp/enrollment.toml" "$CONFIG/.enrollment.toml.new"
    # A rename, so the agents never read half a file.
    mv -f "$CONFIG/.enrollment.toml.new" "$CONFIG/enrollment.toml"
    log "wrote $CONFIG/enrollment.toml; the agents follow it within a second"
  fi
elif [ -f "$CONFIG/enrollment.toml" ] && head -n 1 "$CONFIG/enrollment.toml" | grep -qxF "$MARKER"; then
  # The profile was removed: the enrollment it put there goes with it (one written by hand stays).
  rm -f "$CONFIG/enrollment.toml"
  log "the profile is gone: removed the enrollment it had written"
else
  log "no Airlock profile on this Mac ($PREFS): enrollment left as it is"
fi

# 3. Trust stores, environment, proxy settings (idempotent; the pkg's postinstall ran it too).
"$BIN/airlock" --state-dir "$STATE" setup --system --yes ||
  fail "airlock setup did not finish; see its output above"
"$BIN/airlock" --state-dir "$STATE" status || true
exit 0
