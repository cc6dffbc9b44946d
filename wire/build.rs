//! Compiles TF Serving's protos in `proto/` with protox (pure Rust, so no
//! `protoc` is needed on any machine) into prost message types, and writes
//! the descriptor set the config files' text format is read with. The host
//! generates its tonic services from the same files, over these types.

use std::env;
use std::path::PathBuf;

/// The roots: everything they import comes along.
const FILES: [&str; 5] = [
    "tensorflow_serving/apis/prediction_service.proto",
    "tensorflow_serving/apis/model_service.proto",
    "tensorflow_serving/config/monitoring_config.proto",
    "tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
    "vitrine/config.proto",
];

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let descriptors = protox::compile(FILES, [&root])
        .unwrap_or_else(|e| panic!("the protos under {} do not compile: {e:?}", root.display()));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(
        out_dir.join("file_descriptor_set.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )
    .unwrap_or_else(|e| panic!("cannot write the descriptor set: {e}"));
    prost_build::Config::new()
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("cannot generate the message types: {e}"));
}
