#!/usr/bin/env bash
# Vitrine's reliability run: builds the release server, then runs
# bench/reliability.py, which serves the tiny demo model on loopback under
# minutes of mixed, hostile load and writes RELIABILITY.md. Takes the
# --duration (default 180 s) plus the build; extra arguments go to the
# script (--help lists them).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vitrine-target}"

echo "==> building vitrine (release)"
cargo build --release -p vitrine
# The report quotes the command as it was typed.
export VITRINE_RELIABILITY_COMMAND="./reliability.sh $*"
exec python3 bench/reliability.py \
  --vitrine "$CARGO_TARGET_DIR/release/vitrine" \
  --work "${VITRINE_RELIABILITY_DIR:-$HOME/.cache/vitrine/reliability}" "$@"
