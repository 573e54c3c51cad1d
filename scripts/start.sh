#!/usr/bin/env bash
# Builds airlockd and airlock (release) and starts the agent on its embedded default policy, in the
# foreground. It prints how to point a shell at it. Extra arguments go to airlockd, e.g.
#   scripts/start.sh --listen 127.0.0.1:9000 --policy my-policy.toml
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/toolchain.sh
source scripts/lib/toolchain.sh

ensure_toolchain >/dev/null
cargo build --release --quiet -p airlock-agent -p airlock-cli
TARGET=${CARGO_TARGET_DIR:-target}
exec "$TARGET/release/airlockd" "$@"
