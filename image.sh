#!/usr/bin/env bash
# Builds the container image from ./Dockerfile with podman, with no container
# registry, runs the container checks (tests/e2e/image.rs) and prints the
# size of the image built with MODEL=none as its last line.
#
#   ./image.sh                # install podman if missing, build, check, print the size
#   ./image.sh --build-only   # build only (./test.sh then runs the checks with the suite)
#   ./image.sh --in-container # compile vitrine inside the builder stage, as a user's
#                             # `docker build` does, instead of taking CI's build
#
# The bases are made here and passed as build arguments, the only difference
# from a user's `docker build`:
# - BUILDER: a `debootstrap --variant=minbase bookworm` root, `podman import`ed
#   (with --in-container, plus gcc and this machine's Rust toolchain);
# - RUNTIME: a root holding only /etc/passwd and /etc/group with `nonroot`
#   (65532), in place of distroless/static;
# - BINARY=context: vitrine and its component built by image/build-binary.sh
#   with this machine's warm cargo cache (unless --in-container).
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '\nimage.sh: %s\n' "$*" >&2; exit 1; }
# Exit status 3: containers cannot run on this machine (./test.sh then says
# SKIPPED outside CI); any other failure is 1.
cannot_run() { printf '\nimage.sh: %s\n' "$*" >&2; exit 3; }

build_only=false
in_container=false
for arg in "$@"; do
    case $arg in
        --build-only) build_only=true ;;
        --in-container) in_container=true ;;
        *) die "unknown argument $arg; see the top of image.sh for usage" ;;
    esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vitrine-target}"
image=${VITRINE_IMAGE:-localhost/vitrine:ci}
base_dir=${VITRINE_IMAGE_BASES:-/var/tmp/vitrine-image-bases}
builder_base=localhost/vitrine-base/bookworm-minbase
runtime_base=localhost/vitrine-base/runtime
started=$(date +%s)
elapsed() { echo "$(( $(date +%s) - started )) s"; }

# --- podman -----------------------------------------------------------------
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
    step "installing podman and runc (apt-get)"
    [ "$(id -u)" = 0 ] || cannot_run "podman is missing and installing it needs root: run 'sudo apt-get install -y podman runc debootstrap', then ./image.sh again"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null \
        || cannot_run "apt-get could not install podman, runc and debootstrap; install them by hand and run ./image.sh again"
fi
command -v debootstrap >/dev/null || {
    step "installing debootstrap (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
        || die "apt-get could not install debootstrap; install it and run ./image.sh again"
}
# setrlimit fails in containers on this kind of machine unless podman leaves
# the ulimits alone.
conf=/etc/containers/containers.conf
if ! grep -qs '^[[:space:]]*default_ulimits' "$conf"; then
    step "setting default_ulimits = [] in $conf"
    mkdir -p "$(dirname "$conf")"
    if grep -qs '^\[containers\]' "$conf"; then
        sed -i 's/^\[containers\]/[containers]\ndefault_ulimits = []/' "$conf"
    else
        printf '\n[containers]\ndefault_ulimits = []\n' >>"$conf"
    fi
fi
# crun fails on hybrid cgroup layouts; runc works.
podman=(podman --runtime runc)
"${podman[@]}" info >/dev/null 2>&1 \
    || cannot_run "podman cannot run here ('podman --runtime runc info' fails); run it to see why"

# --- base images, without a registry ----------------------------------------
if ! podman image exists "$builder_base"; then
    step "making the builder base $builder_base (debootstrap --variant=minbase bookworm, about 2 minutes)"
    rm -rf "$base_dir/bookworm"
    mkdir -p "$base_dir"
    debootstrap --variant=minbase bookworm "$base_dir/bookworm" http://deb.debian.org/debian >"$base_dir/debootstrap.log" 2>&1 \
        || die "debootstrap failed (log: $base_dir/debootstrap.log); check that deb.debian.org is reachable"
    rm -rf "$base_dir/bookworm/var/cache/apt/archives/"*.deb "$base_dir/bookworm/var/lib/apt/lists/"*
    tar -C "$base_dir/bookworm" -c . | podman import --quiet - "$builder_base" >/dev/null
    rm -rf "$base_dir/bookworm"
fi
if ! podman image exists "$runtime_base"; then
    step "making the runtime base $runtime_base (users nonroot 65532 and root, nothing else)"
    root=$(mktemp -d)
    mkdir -p "$root/etc" "$root/home/nonroot"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
    chown 65532:65532 "$root/home/nonroot"
    tar -C "$root" -c . | podman import --quiet - "$runtime_base" >/dev/null
    rm -rf "$root"
fi
# The machine's own certificate authorities (a TLS-inspecting proxy's, say)
# on top: the builder stage fetches onnxruntime from PyPI and must trust what
# this machine trusts. Debian's ca-certificates, installed in that stage,
# adds them to the store its pip uses.
ca_base=localhost/vitrine-base/bookworm-builder
ctx=$(mktemp -d)
mkdir -p "$ctx/ca"
cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
printf 'FROM %s\nCOPY ca/ /usr/local/share/ca-certificates/\n' "$builder_base" >"$ctx/Containerfile"
"${podman[@]}" build --quiet -t "$ca_base" "$ctx" >/dev/null \
    || die "could not add this machine's certificate authorities to $builder_base; see the podman output above"
rm -rf "$ctx"
builder_base=$ca_base
build_args=(--build-arg "RUNTIME=$runtime_base" --build-arg MODEL=none)

if $in_container; then
    rust_base=localhost/vitrine-base/bookworm-rust
    toolchain=$(rustup toolchain list | awk '/^1\.95/ { print $1; exit }')
    [ -n "$toolchain" ] || die "no Rust 1.95 toolchain here; run 'rustup toolchain install 1.95.0 --target wasm32-wasip2'"
    if ! podman image exists "$rust_base"; then
        step "making the builder base $rust_base (gcc from Debian, this machine's $toolchain)"
        ctx=$(mktemp -d)
        cp -a "$(rustup run "$toolchain" rustc --print sysroot)" "$ctx/toolchain"
        printf 'FROM %s\nRUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates && rm -rf /var/lib/apt/lists/*\nCOPY toolchain /usr/local/rust\nENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/bin:/bin CARGO_HOME=/usr/local/cargo\n' \
            "$builder_base" >"$ctx/Containerfile"
        "${podman[@]}" build --quiet -t "$rust_base" "$ctx" >/dev/null \
            || die "could not make $rust_base; see the podman output above"
        rm -rf "$ctx"
    fi
    build_args+=(--build-arg "BUILDER=$rust_base" --build-arg BINARY=build)
else
    build_args+=(--build-arg "BUILDER=$builder_base" --build-arg BINARY=context)
    step "building vitrine and its component for the image (image/build-binary.sh; warm: a minute or two)"
    rm -rf .image
    image/build-binary.sh .image \
        || die "building vitrine for the image failed; the cargo output above says why"
fi

# --- the image ----------------------------------------------------------------
step "building $image from ./Dockerfile (podman build, MODEL=none)"
"${podman[@]}" build --layers -t "$image" "${build_args[@]}" . \
    || die "podman build failed; the step above it says why"
echo "built $image in $(elapsed)" >&2

step "the image's layers (newest first)"
podman history --format '{{.Size}}\t{{.CreatedBy}}' "$image" | cut -c1-140 >&2

if ! $build_only; then
    step "running the container checks (cargo test --test e2e -- image::)"
    VITRINE_IMAGE=$image cargo test --release -p vitrine --test e2e -- image:: \
        || die "a container check failed; its output above says which and why"
fi
echo "image.sh finished in $(elapsed)" >&2
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image size: $(( (size + 500000) / 1000000 )) MB"
