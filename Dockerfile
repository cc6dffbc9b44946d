# syntax=docker/dockerfile:1
#
# vitrine in a distroless image: the host binary (with the component embedded),
# the component precompiled for the build machine's CPU, and a model.
#
#   docker build -t vitrine:0.1.0 .                      # demo ViT-B/16 (random weights) baked in
#   docker build --build-arg MODEL=local -t vitrine .    # bake ./models/ (e.g. an optimum export)
#   docker build --build-arg MODEL=none -t vitrine .     # no model: mount one at /models
#
# The precompiled component is only used on a CPU with the features of the
# machine that ran `docker build`; elsewhere vitrine compiles it again at
# start (~35 s, in memory, with a warning). See DEPLOY.md.

# Which model stage ends up in /models: demo, local or none.
ARG MODEL=demo

FROM rust:1.95.0-slim-bookworm AS builder
# The toolchain rust-toolchain.toml pins is the image's own; naming it here
# keeps rustup from fetching the components the file lists for developers.
ENV RUSTUP_TOOLCHAIN=1.95.0 \
    CARGO_TERM_PROGRESS_WHEN=never
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
# build.rs builds the component for wasm32-wasip2 and embeds it in the binary.
# No default features: `vitrine preinit` (wasmtime-wizer) is a build-time tool.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p vitrine --no-default-features \
    && strip -o /vitrine target/release/vitrine
# Cranelift runs here, once, instead of in every pod: the .cwasm lands in
# /cache/components/, keyed by the component and this CPU's features.
RUN VITRINE_CACHE_DIR=/cache /vitrine compile

# Model stages: the runtime copies /models from the one MODEL names.
FROM builder AS model-demo
RUN /vitrine demo-model --size base --out /models/hf-vit/1

FROM builder AS model-local
COPY models/ /models/

FROM builder AS model-none
RUN mkdir -p /models

FROM model-${MODEL} AS model

# glibc + libgcc, nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /vitrine /vitrine
# Root-owned and read-only for the nonroot user: a pod never writes here.
COPY --from=builder /cache /cache
COPY --from=model /models /models
ENV VITRINE_CACHE_DIR=/cache
USER nonroot
EXPOSE 8500 8501
ENTRYPOINT ["/vitrine", "serve"]
# The blog's TF Serving arguments; Kubernetes `args` replace them.
CMD ["--port=8500", "--rest_api_port=8501", "--model_name=hf-vit", "--model_base_path=/models/hf-vit"]
