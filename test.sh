#!/usr/bin/env bash
# Runs Vitrine's whole test suite on a fresh machine: installs the wasm target
# and the Python reference (transformers + onnxruntime, no torch) into .venv,
# then runs every unit and end-to-end test. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*" >&2; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    step "installing the wasm32-wasip2 target (pinned in rust-toolchain.toml)"
    rustup target add wasm32-wasip2
fi

if ! .venv/bin/python -c 'import numpy, PIL, onnxruntime, transformers, kubernetes_validate, grpc, grpc_tools, grpc_health, tritonclient.http, prometheus_client' 2>/dev/null; then
    step "creating .venv with the Python reference (tests/requirements.txt)"
    python3 -m venv .venv
    .venv/bin/pip install --disable-pip-version-check --progress-bar off -r tests/requirements.txt
fi

# TF Serving's official Python stubs, without the TensorFlow they depend on
# only for TensorFlow's own protos (the test supplies those from wire/proto).
if ! .venv/bin/python -c 'import tensorflow_serving.apis' 2>/dev/null; then
    step "installing tensorflow-serving-api (without TensorFlow) into .venv"
    .venv/bin/pip install --disable-pip-version-check --progress-bar off --no-deps tensorflow-serving-api
fi

# wasmtime-cli for the `wasmtime serve` tests (tests/e2e/wasmtime_serve.rs),
# built from crates.io with only what `serve` needs. A tool cache, not part of
# the build: kept in $VITRINE_TOOLS_DIR between runs, so only a cold machine
# pays the build (about 9 minutes on 2 cores).
WASMTIME_VERSION=48.0.8
tools="${VITRINE_TOOLS_DIR:-$HOME/.cache/vitrine-tools}"
if ! "$tools/bin/wasmtime" --version 2>/dev/null | grep -qx "wasmtime $WASMTIME_VERSION.*"; then
    step "installing wasmtime-cli $WASMTIME_VERSION into $tools for the wasmtime serve tests (about 9 minutes on 2 cores, once)"
    # Its own target folder: the cargo lock of the project's build is not held,
    # and the project's CARGO_TARGET_DIR stays free of wasmtime-cli's crates.
    CARGO_TARGET_DIR="$tools/target" cargo install --locked wasmtime-cli --version "$WASMTIME_VERSION" \
        --no-default-features \
        --features serve,run,cranelift,cache,pooling-allocator,parallel-compilation,component-model,component-model-async \
        --root "$tools"
    rm -rf "$tools/target"
fi
export VITRINE_WASMTIME="$tools/bin/wasmtime"

# The container image, from ./Dockerfile with podman (installed if missing);
# tests/e2e/image.rs runs it with the suite. Where containers cannot run,
# the checks say SKIPPED; in CI (CI=true) that is a failure.
step "building the container image (./image.sh --build-only)"
image_rc=0
./image.sh --build-only || image_rc=$?
if [ "$image_rc" = 0 ]; then
    export VITRINE_IMAGE="${VITRINE_IMAGE:-localhost/vitrine:ci}"
elif [ "$image_rc" = 3 ] && [ "${CI:-}" != true ]; then
    echo "SKIPPED: container checks: containers cannot run here (./image.sh said why above)" >&2
    unset VITRINE_IMAGE
else
    echo "test.sh: ./image.sh --build-only failed (exit $image_rc); see above" >&2
    exit 1
fi

step "building and running the tests (a cold build of wasmtime and tract takes about 25 minutes on 2 cores)"
cargo test --release --workspace "$@"
