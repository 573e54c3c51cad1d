#!/usr/bin/env bash
# Guardrail accuracy evaluation: runs `airlock guard scan --jsonl` over the vendored corpora in
# tests/guardrails/corpora and prints precision / recall tables (see tests/guardrails/README.md).
# Fetches nothing: the corpora are committed, and the scorer is Python 3 standard library only.
#
#   scripts/eval-guardrails.sh                       build airlock (release), then evaluate
#   AIRLOCK_BIN=path/to/airlock scripts/eval-guardrails.sh    evaluate that binary, no build
#   AIRLOCK_BIN_DIR=target/debug scripts/eval-guardrails.sh   evaluate $AIRLOCK_BIN_DIR/airlock, no build
#   scripts/eval-guardrails.sh --check --json out.json        extra arguments go to tests/guardrails/eval.py
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${AIRLOCK_BIN:-}" ]; then
  if [ -n "${AIRLOCK_BIN_DIR:-}" ]; then
    AIRLOCK_BIN=$AIRLOCK_BIN_DIR/airlock
  else
    # shellcheck source=lib/toolchain.sh
    source scripts/lib/toolchain.sh
    ensure_toolchain >/dev/null
    LOCKED=()
    if [ -n "${CI:-}" ]; then LOCKED=(--locked); fi
    cargo build --release --quiet "${LOCKED[@]}" -p airlock-cli
    AIRLOCK_BIN=${CARGO_TARGET_DIR:-target}/release/airlock
  fi
fi
if [ ! -x "$AIRLOCK_BIN" ]; then
  echo "error: $AIRLOCK_BIN is not an executable airlock binary" >&2
  exit 2
fi

PYTHON=${PYTHON:-python3}
exec "$PYTHON" tests/guardrails/eval.py --bin "$AIRLOCK_BIN" "$@"
