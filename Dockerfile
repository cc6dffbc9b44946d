# syntax=docker/dockerfile:1
#
# vitrine in a distroless image: the host binary, its component precompiled
# for the build machine's CPU (.cwasm), the shared libraries the binary
# needs, and a model.
#
#   docker build -t vitrine:0.1.0 .                      # demo ViT-B/16 (random weights) baked in
#   docker build --build-arg MODEL=local -t vitrine .    # bake ./models/ (e.g. an optimum export)
#   docker build --build-arg MODEL=none -t vitrine .     # no model: mount one at /models
#
# The precompiled component is only used on a CPU with the features of the
# machine that ran `docker build`; elsewhere vitrine compiles the (embedded,
# 1.3 MB) component again at start, in memory, with a warning. See DEPLOY.md.
#
# ./image.sh builds this same file with podman and no registry: it passes
# BUILDER and RUNTIME bases it makes itself (debootstrap) and BINARY=context.

# Base images. Defaults are the official ones; any Debian 12 (glibc 2.36)
# builder with Rust 1.95 works, and any runtime with a `nonroot` 65532 user.
ARG BUILDER=docker.io/library/rust:1.95.0-slim-bookworm
ARG RUNTIME=gcr.io/distroless/static-debian12:nonroot
# Which model stage ends up in /models: demo, local or none.
ARG MODEL=demo
# Where vitrine comes from: `build` compiles it here (the default);
# `context` takes .image/vitrine and .image/vitrine_component.wasm, written
# by image/build-binary.sh outside (CI, whose build cache is warm).
ARG BINARY=build
# `wheel` (the default): libonnxruntime.so from the onnxruntime PyPI wheel,
# so the host path serves on the onnxruntime engine; `none`: tract only.
ARG ONNXRUNTIME=wheel
ARG ONNXRUNTIME_VERSION=1.32.0

FROM ${BUILDER} AS binary-build
# The toolchain rust-toolchain.toml pins is the image's own; naming it here
# keeps rustup from fetching the components the file lists for developers.
ENV RUSTUP_TOOLCHAIN=1.95.0 \
    CARGO_TERM_PROGRESS_WHEN=never
# (A builder made from another toolchain, as ./image.sh --in-container does, has no rustup.)
RUN if command -v rustup >/dev/null; then rustup target add wasm32-wasip2; fi
WORKDIR /src
COPY . .
# Both caches outlive the build (buildah and BuildKit keep them on the
# machine): a rebuild after a source change recompiles vitrine, not
# wasmtime and tract.
ARG ONNXRUNTIME
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    image/build-binary.sh /build

FROM ${BUILDER} AS binary-context
COPY .image/vitrine .image/vitrine_component.wasm /build/

FROM binary-${BINARY} AS binary

FROM ${BUILDER} AS onnxruntime
ARG ONNXRUNTIME
ARG ONNXRUNTIME_VERSION
RUN mkdir -p /onnxruntime \
    && if [ "$ONNXRUNTIME" = wheel ]; then \
        apt-get update && apt-get install -y --no-install-recommends python3-pip \
        && pip download --no-deps --only-binary=:all: --dest /wheel "onnxruntime==${ONNXRUNTIME_VERSION}" \
        && python3 -m zipfile -e /wheel/onnxruntime-*.whl /wheel/x \
        && cp -L /wheel/x/onnxruntime/capi/libonnxruntime.so.* /onnxruntime/libonnxruntime.so \
        && rm -rf /wheel /var/lib/apt/lists/*; \
    elif [ "$ONNXRUNTIME" != none ]; then \
        echo "ONNXRUNTIME must be none or wheel, not $ONNXRUNTIME" >&2; exit 1; \
    fi

# Everything the runtime stage copies, laid out under /rootfs.
FROM binary AS builder
COPY --from=onnxruntime /onnxruntime /rootfs/usr/lib/onnxruntime
# Cranelift runs here, once, instead of in every pod: the .cwasm lands in
# /rootfs/cache/components/, keyed by the component and this CPU's features.
RUN mkdir -p /rootfs/cache \
    && cp /build/vitrine /rootfs/vitrine \
    && VITRINE_CACHE_DIR=/rootfs/cache /build/vitrine compile --component /build/vitrine_component.wasm
# Only the shared libraries the binary (and libonnxruntime) link, at the
# paths ldd resolves them to.
RUN set -eu; \
    for lib in $(ldd /build/vitrine /rootfs/usr/lib/onnxruntime/*.so* 2>/dev/null \
            | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u); do \
        mkdir -p "/rootfs/libs$(dirname "$lib")" && cp -L "$lib" "/rootfs/libs$lib"; \
    done; \
    ls -lR /rootfs/libs

# Model stages: the runtime copies /models from the one MODEL names.
FROM builder AS model-demo
RUN /build/vitrine demo-model --size base --out /models/hf-vit/1

FROM builder AS model-local
COPY models/ /models/

FROM builder AS model-none
RUN mkdir -p /models

FROM model-${MODEL} AS model

# No shell, no package manager, no libc of its own: glibc and libgcc come
# from the builder, as the binary links them. One layer per part, so
# `podman history` shows each one's size.
FROM ${RUNTIME}
COPY --from=builder /rootfs/libs/ /
COPY --from=builder /rootfs/usr/lib/onnxruntime /usr/lib/onnxruntime
COPY --from=builder /rootfs/vitrine /vitrine
# Root-owned and read-only for the nonroot user: a pod never writes here.
COPY --from=builder /rootfs/cache /cache
COPY --from=model /models /models
# Where vitrine looks for onnxruntime first after --onnxruntime_library; with
# ONNXRUNTIME=none the file is absent and `--native_engine=auto` uses tract.
ENV VITRINE_CACHE_DIR=/cache \
    ORT_DYLIB_PATH=/usr/lib/onnxruntime/libonnxruntime.so
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 65532:65532
EXPOSE 8500 8501
ENTRYPOINT ["/vitrine", "serve"]
# The blog's TF Serving arguments; Kubernetes `args` replace them.
CMD ["--port=8500", "--rest_api_port=8501", "--model_name=hf-vit", "--model_base_path=/models/hf-vit"]
