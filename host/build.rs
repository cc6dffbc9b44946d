//! Builds the ViT component for `wasm32-wasip2` and hands its path to the
//! host, which embeds it: `vitrine` is one self-contained binary. Also
//! generates the gRPC services from `wire/proto`.
//!
//! Set `VITRINE_COMPONENT_WASM` to a prebuilt component to skip the nested build.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=VITRINE_COMPONENT_WASM");
    println!("cargo:rerun-if-env-changed=VITRINE_WASM_TARGET_DIR");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let wasm = match env::var("VITRINE_COMPONENT_WASM") {
        Ok(path) if !path.is_empty() => PathBuf::from(path),
        _ => build_component(&out_dir),
    };
    println!("cargo:rustc-env=VITRINE_COMPONENT_WASM={}", wasm.display());
    compile_protos();
}

/// TF Serving's gRPC services, compiled by protox (pure Rust, so no
/// `protoc` is needed on any machine) from `wire/proto` into tonic servers
/// over the message types of `vitrine-wire`, which compiles the same files.
fn compile_protos() {
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("../wire/proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let files = [
        "tensorflow_serving/apis/prediction_service.proto",
        "tensorflow_serving/apis/model_service.proto",
    ];
    let descriptors = protox::compile(files, [&root])
        .unwrap_or_else(|e| panic!("the protos under {} do not compile: {e:?}", root.display()));
    let mut config = tonic_prost_build::configure()
        .build_client(false)
        .build_server(true);
    // Every message is vitrine-wire's; only the services are generated here.
    for package in ["tensorflow", "vitrine"] {
        config = config.extern_path(
            format!(".{package}"),
            format!("::vitrine_wire::proto::{package}"),
        );
    }
    config
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("cannot generate the gRPC code: {e}"));
}

fn build_component(out_dir: &Path) -> PathBuf {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.parent().expect("host/ lives in the workspace");
    for watched in [
        "component/src",
        "component/Cargo.toml",
        "wit",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // <target>/<profile>/build/vitrine-<hash>/out: a sibling target dir of our
    // own avoids deadlocking on the lock the outer cargo holds.
    // Two checkouts sharing one CARGO_TARGET_DIR set VITRINE_WASM_TARGET_DIR
    // apart, or each would embed whichever component was built last.
    let target_dir = match env::var("VITRINE_WASM_TARGET_DIR") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => out_dir
            .ancestors()
            .nth(4)
            .map(|t| t.join("wasm-component"))
            .unwrap_or_else(|| out_dir.join("wasm-component")),
    };
    ensure_wasm_target(root);
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "vitrine-component",
            // The host offers wasi:nn, so embed the build that can use it;
            // it falls back to tract in the guest under --inference=guest.
            "--features",
            "wasi-nn",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags and wrappers are for the host target, not wasm.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cannot run cargo to build the component");
    if !status.success() {
        panic!(
            "building the component for wasm32-wasip2 failed; run `rustup target add wasm32-wasip2` \
             and `cargo build --release --target wasm32-wasip2 -p vitrine-component` to see why"
        );
    }
    // Embed a private copy: the nested target dir's output may be replaced
    // later (the lifecycle test builds a variant there), and rustc rebuilds
    // the host whenever an included file changes.
    let built = target_dir.join("wasm32-wasip2/release/vitrine_component.wasm");
    let copy = out_dir.join("vitrine_component.wasm");
    std::fs::copy(&built, &copy)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", built.display(), copy.display()));
    copy
}

/// rustup installs the targets in `rust-toolchain.toml` only along with the
/// toolchain itself; on a machine that already has 1.95 the wasm target may
/// be missing, so the README's first command adds it.
fn ensure_wasm_target(root: &Path) {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = sysroot.is_some_and(|s| s.join("lib/rustlib/wasm32-wasip2").is_dir());
    if installed {
        return;
    }
    println!("cargo:warning=wasm32-wasip2 was missing: added it with `rustup target add`");
    let added = Command::new("rustup")
        .current_dir(root)
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .is_ok_and(|s| s.success());
    if !added {
        panic!(
            "the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed; run it by hand"
        );
    }
}
