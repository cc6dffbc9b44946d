#!/usr/bin/env bash
# Vitrine's benchmark: builds, then runs bench/bench.py, which writes
# BENCHMARKS.md. Takes about 30 minutes on 2 cores; --quick for a dry run,
# --runtimes-only for the wasmtime serve / spin up section alone.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vitrine-target}"

echo "==> building vitrine (release)"
cargo build --release --workspace
# The bare guest tract as a wasm command, for `vitrine bench-wasm`; built in
# the component's own target dir (host/build.rs's), so tract for wasm is
# compiled once for both. Without RUSTFLAGS, as there: they would replace
# .cargo/config.toml's +simd128 for wasm.
WASM_TARGET_DIR="${VITRINE_WASM_TARGET_DIR:-$CARGO_TARGET_DIR/wasm-component}"
echo "==> building the bench-wasm program (wasm32-wasip2, release)"
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS cargo build --release --target wasm32-wasip2 -p vitrine-bench-wasm --target-dir "$WASM_TARGET_DIR"
# The runtimes section's components (bench/runtimes.py): the plain build
# `wasmtime serve` runs, and spin.toml's build (spin-variables). Same target
# dir; each copied out, since both builds write the same file name.
RUNTIME_COMPONENTS="${VITRINE_BENCH_DIR:-$HOME/.cache/vitrine/bench}/components"
mkdir -p "$RUNTIME_COMPONENTS"
for build in plain:"" spin:"--features=spin-variables"; do
  echo "==> building the component for the runtimes section (${build%%:*} build, wasm32-wasip2, release)"
  env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS cargo build --release --target wasm32-wasip2 -p vitrine-component ${build#*:} --target-dir "$WASM_TARGET_DIR"
  cp "$WASM_TARGET_DIR/wasm32-wasip2/release/vitrine_component.wasm" "$RUNTIME_COMPONENTS/${build%%:*}.wasm"
done
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
  --bench-wasm-program "$WASM_TARGET_DIR/wasm32-wasip2/release/vitrine-bench-wasm.wasm" \
  --oha "$(command -v oha || echo "$HOME/.cargo/bin/oha")" \
  --plain-component "$RUNTIME_COMPONENTS/plain.wasm" --spin-component "$RUNTIME_COMPONENTS/spin.wasm" \
  --work "${VITRINE_BENCH_DIR:-$HOME/.cache/vitrine/bench}" "$@"
