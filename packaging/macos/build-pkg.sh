#!/bin/sh
# Builds Airlock's macOS installer package from built binaries:
#
#   packaging/macos/build-pkg.sh [BIN_DIR] [OUT_DIR]
#
# BIN_DIR holds airlockd and airlock for macOS (default target/release; a universal pair from
# `lipo -create` for both architectures), OUT_DIR gets Airlock-VERSION.pkg (default target/pkg).
# Environment: VERSION (default: the workspace version in Cargo.toml), SIGN_IDENTITY (a "Developer
# ID Installer: …" identity: the product is signed with it; notarize it afterwards with
# `xcrun notarytool submit --wait` and `xcrun stapler staple`).
#
# It always checks its inputs (the definitions here, and the binaries when BIN_DIR has them); it builds
# only where pkgbuild and productbuild exist (macOS). Elsewhere it says so and exits 0.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN_DIR=${1:-$ROOT/target/release}
OUT_DIR=${2:-$ROOT/target/pkg}
PKG_ID=com.airlock.pkg
LAUNCHD=$ROOT/packaging/launchd

fail() {
  echo "build-pkg.sh: $*" >&2
  exit 1
}

VERSION=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)}
[ -n "$VERSION" ] || fail "cannot read the workspace version from $ROOT/Cargo.toml; set VERSION"

for f in "$HERE/distribution.xml" "$HERE/uninstall.sh" "$LAUNCHD/com.airlock.airlockd.plist" \
  "$LAUNCHD/com.airlock.tray.plist"; do
  [ -f "$f" ] || fail "missing $f"
done
for s in preinstall postinstall; do
  [ -x "$HERE/scripts/$s" ] || fail "$HERE/scripts/$s is missing or not executable"
  sh -n "$HERE/scripts/$s" || fail "$HERE/scripts/$s has a syntax error"
done
grep -q '@VERSION@' "$HERE/distribution.xml" || fail "$HERE/distribution.xml has no @VERSION@ to fill in"
grep -q '>airlock-component.pkg</pkg-ref>' "$HERE/distribution.xml" ||
  fail "$HERE/distribution.xml does not refer to airlock-component.pkg, the component this script builds"

if ! command -v pkgbuild >/dev/null 2>&1 || ! command -v productbuild >/dev/null 2>&1; then
  echo "build-pkg.sh: inputs are in order (version $VERSION); pkgbuild/productbuild are not on this machine ($(uname -s)), so no .pkg is built here"
  exit 0
fi

for b in airlockd airlock; do
  [ -x "$BIN_DIR/$b" ] || fail "$BIN_DIR/$b is missing: build the release binaries for macOS first (cargo build --release --bins)"
  file "$BIN_DIR/$b" | grep -q 'Mach-O' || fail "$BIN_DIR/$b is not a macOS (Mach-O) binary"
done
plutil -lint "$LAUNCHD/com.airlock.airlockd.plist" "$LAUNCHD/com.airlock.tray.plist" >/dev/null ||
  fail "a launchd plist does not parse"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/root
mkdir -p "$STAGE/usr/local/bin" "$STAGE/Library/LaunchDaemons" "$STAGE/Library/LaunchAgents" \
  "$STAGE/usr/local/share/airlock" "$STAGE/usr/local/share/man/man1" \
  "$STAGE/usr/local/share/zsh/site-functions" "$STAGE/usr/local/etc/bash_completion.d" \
  "$STAGE/usr/local/share/fish/vendor_completions.d"
install -m 0755 "$BIN_DIR/airlockd" "$BIN_DIR/airlock" "$STAGE/usr/local/bin/"
install -m 0644 "$LAUNCHD/com.airlock.airlockd.plist" "$STAGE/Library/LaunchDaemons/"
install -m 0644 "$LAUNCHD/com.airlock.tray.plist" "$STAGE/Library/LaunchAgents/"
install -m 0755 "$HERE/uninstall.sh" "$STAGE/usr/local/share/airlock/uninstall.sh"
# Completions and the man page come from the binary being packaged.
"$BIN_DIR/airlock" completions zsh >"$STAGE/usr/local/share/zsh/site-functions/_airlock"
"$BIN_DIR/airlock" completions bash >"$STAGE/usr/local/etc/bash_completion.d/airlock"
"$BIN_DIR/airlock" completions fish >"$STAGE/usr/local/share/fish/vendor_completions.d/airlock.fish"
"$BIN_DIR/airlock" man >"$STAGE/usr/local/share/man/man1/airlock.1"

mkdir -p "$OUT_DIR"
pkgbuild --root "$STAGE" --identifier "$PKG_ID" --version "$VERSION" --install-location / \
  --ownership recommended --scripts "$HERE/scripts" "$WORK/airlock-component.pkg"
sed "s/@VERSION@/$VERSION/g" "$HERE/distribution.xml" >"$WORK/distribution.xml"
PRODUCT=$OUT_DIR/Airlock-$VERSION.pkg
if [ -n "${SIGN_IDENTITY:-}" ]; then
  productbuild --distribution "$WORK/distribution.xml" --package-path "$WORK" --sign "$SIGN_IDENTITY" "$PRODUCT"
else
  productbuild --distribution "$WORK/distribution.xml" --package-path "$WORK" "$PRODUCT"
  echo "build-pkg.sh: $PRODUCT is unsigned (set SIGN_IDENTITY to a Developer ID Installer identity)"
fi
echo "built $PRODUCT"
