#!/usr/bin/env bash
# Vitrine's benchmark: builds, then runs bench/bench.py, which writes
# BENCHMARKS.md. Takes about 15 minutes on 2 cores; --quick for a dry run.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vitrine-target}"

echo "==> building vitrine (release)"
cargo build --release --workspace
if ! command -v oha >/dev/null; then
  echo "==> installing the load generator oha (once, a few minutes)"
  cargo install oha --locked
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with onnxruntime"
  python3 -m venv .venv
  .venv/bin/pip install --quiet -r tests/requirements.txt
fi
exec .venv/bin/python bench/bench.py \
  --vitrine "$CARGO_TARGET_DIR/release/vitrine" \
  --oha "$(command -v oha || echo "$HOME/.cargo/bin/oha")" \
  --work "${VITRINE_BENCH_DIR:-$HOME/.cache/vitrine/bench}" "$@"
