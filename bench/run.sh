#!/usr/bin/env bash
# Airlock benchmark, one command: builds the release binaries (airlockd, airlock-mock, airlock-bench),
# installs mitmproxy from PyPI and Debian's nginx (and the openssl CLI that makes its certificate) if
# they are missing, runs the whole suite on loopback with the agent, nginx and mitmproxy pinned to
# CPU 0 and the load generator + mock to CPU 1, writes bench/results/latest.json (and latest.md) and
# prints the markdown tables. Extra arguments go to `airlock-bench run` (e.g. --quick for a short
# smoke run, --no-mitmproxy, --no-nginx, --noisy, --hostile, --duration 10, --rates 200,1000).
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

# nginx: the floor (a plain TLS-terminating reverse proxy on the agent's core). Debian's package, as
# root with apt-get; otherwise say how and run without it.
NGINX_ARGS=()
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] || ! command -v openssl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's nginx and openssl ..." >&2
        apt-get install -y -q nginx openssl >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q nginx openssl >/dev/null; } \
            || echo "apt-get could not install nginx" >&2
    fi
fi
NGINX=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
if [ -n "$NGINX" ]; then
    NGINX_ARGS=(--nginx "$NGINX")
else
    echo "nginx not found (apt-get install nginx): running without the nginx floor" >&2
    NGINX_ARGS=(--no-nginx)
fi

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps \
    | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

export AIRLOCK_BENCH_COMMAND="bench/run.sh $*"
exec "$TARGET_DIR/release/airlock-bench" run \
    --bin-dir "$TARGET_DIR/release" \
    --mitmdump "$MITMDUMP" \
    "${NGINX_ARGS[@]}" \
    "$@"
