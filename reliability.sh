#!/usr/bin/env bash
# Vitrine's reliability runs; each writes its own section of RELIABILITY.md.
#   ./reliability.sh [--duration 180]      minutes of mixed, hostile load on
#                                          the tiny demo model, on loopback
#   ./reliability.sh --duration 3600 --model base
#                                          an hour's soak on ViT-B/16: latency
#                                          per 5 min, RSS every minute, slope
#   ./reliability.sh --swaps 100           the e2e hot-swap tests with 100
#                                          swaps each (under load on every
#                                          path and engine; memory)
# Builds the release server first; other arguments go to
# bench/reliability.py (--help lists them).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vitrine-target}"

echo "==> building vitrine (release)"
cargo build --release -p vitrine
# The host path's default engine is onnxruntime: the server finds the wheel's
# library through python3 on PATH.
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with onnxruntime"
  python3 -m venv .venv
  .venv/bin/pip install --quiet -r tests/requirements.txt
fi
export PATH="$PWD/.venv/bin:$PATH"
# The report quotes the command as it was typed.
export VITRINE_RELIABILITY_COMMAND="./reliability.sh $*"
exec python3 bench/reliability.py \
  --vitrine "$CARGO_TARGET_DIR/release/vitrine" \
  --work "${VITRINE_RELIABILITY_DIR:-$HOME/.cache/vitrine/reliability}" "$@"
