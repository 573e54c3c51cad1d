#!/usr/bin/env bash
# Airlock benchmark, one command: builds the release binaries (airlockd, airlock-mock, airlock-bench),
# installs mitmproxy from PyPI if it is missing, runs the whole suite on loopback with the agent and
# mitmproxy pinned to CPU 0 and the load generator + mock to CPU 1, writes bench/results/latest.json
# (and latest.md) and prints the markdown tables. Extra arguments go to `airlock-bench run`
# (e.g. --quick for a short smoke run, --no-mitmproxy, --duration 10, --rates 200,1000).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p airlock-agent -p airlock-mock -p airlock-bench

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import mitmproxy' 2>/dev/null; then
    echo "installing mitmproxy from PyPI ..." >&2
    "$PYTHON" -m pip install --quiet mitmproxy
fi
# The mitmdump script installed next to this Python (not a pyenv shim, so its pid is the proxy's).
MITMDUMP=$("$PYTHON" -c 'import os, sys; print(os.path.join(os.path.dirname(sys.executable), "mitmdump"))')
if [ ! -x "$MITMDUMP" ]; then
    MITMDUMP=$(command -v mitmdump)
fi

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps \
    | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

export AIRLOCK_BENCH_COMMAND="bench/run.sh $*"
exec "$TARGET_DIR/release/airlock-bench" run \
    --bin-dir "$TARGET_DIR/release" \
    --mitmdump "$MITMDUMP" \
    "$@"
