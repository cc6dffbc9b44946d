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
# only for TensorFlow's own protos (the test supplies those from host/proto).
if ! .venv/bin/python -c 'import tensorflow_serving.apis' 2>/dev/null; then
    step "installing tensorflow-serving-api (without TensorFlow) into .venv"
    .venv/bin/pip install --disable-pip-version-check --progress-bar off --no-deps tensorflow-serving-api
fi

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
