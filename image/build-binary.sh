#!/usr/bin/env bash
# Builds what the container image ships, into the folder $1:
# - vitrine_component.wasm: the host-path component (`--no-default-features
#   --features wasi-nn`: no tract inside, it decodes, preprocesses and
#   postprocesses; the host runs the model through wasi:nn), its name section
#   stripped;
# - vitrine: the host without default features (no `vitrine preinit`, and no
#   tract engine unless ONNXRUNTIME=none), with that component embedded,
#   stripped.
# The Dockerfile's builder stage runs it; ./image.sh runs it on the CI machine
# and hands the result to the Dockerfile (`--build-arg BINARY=context`), so a
# CI run reuses its warm build cache instead of building wasmtime and tract
# again inside the builder. Same commands either way.
set -euo pipefail
out=${1:?usage: image/build-binary.sh OUT_DIR}
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
# Its own folder: a profile of its own (strip) for the wasm build, apart from
# the test suite's component build.
wasm_target=$target/image-component
mkdir -p "$out"

echo "image/build-binary.sh: building the host-path component (wasm32-wasip2, no tract)" >&2
CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked --target wasm32-wasip2 \
    -p vitrine-component --no-default-features --features wasi-nn --target-dir "$wasm_target"
wasm=$(realpath "$wasm_target/wasm32-wasip2/release/vitrine_component.wasm")

# With onnxruntime in the image (ONNXRUNTIME=wheel, the default) the host
# needs no tract of its own (20 MB of binary); with ONNXRUNTIME=none tract is
# its engine.
features=()
[ "${ONNXRUNTIME:-wheel}" = none ] && features=(--features tract)
echo "image/build-binary.sh: building vitrine (release, no default features${features[*]:+, ${features[*]}})" >&2
VITRINE_COMPONENT_WASM=$wasm cargo build --release --locked -p vitrine --no-default-features "${features[@]}"
strip -o "$out/vitrine" "$target/release/vitrine"
cp "$wasm" "$out/vitrine_component.wasm"
ls -l "$out" >&2
