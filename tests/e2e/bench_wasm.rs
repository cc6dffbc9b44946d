//! `vitrine bench-wasm`: the benchmark's "tract in wasm" row is the guest's
//! tract built as a wasm32-wasip2 command and run in the host's engine.

use super::support::{build_wasm, coco_jpeg, tiny_repo, vitrine};

/// The command ./bench.sh builds (a bin keeps its dashes in the file name).
fn program() -> std::path::PathBuf {
    build_wasm("vitrine-bench-wasm", &[], &[]).with_file_name("vitrine-bench-wasm.wasm")
}

/// `vitrine bench-wasm` on the tiny model with `args` added; its JSON line.
fn bench_wasm(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = vitrine()
        .args(["bench-wasm", "--model"])
        .arg(tiny_repo().join("1"))
        .args(args)
        .arg("--program")
        .arg(program())
        .output()
        .expect("run vitrine bench-wasm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench-wasm failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
}

#[test]
fn bench_wasm_times_the_guest_tract_in_wasm() {
    let report = bench_wasm(&["--iterations".as_ref(), "3".as_ref()]);
    assert_eq!(report["engine"], "tract in wasm", "{report}");
    assert_eq!(report["threads"], 1, "{report}");
    assert_eq!(report["iterations"], 3, "{report}");
    let p50 = report["p50_ms"].as_f64().unwrap_or(0.0);
    let p99 = report["p99_ms"].as_f64().unwrap_or(0.0);
    assert!(p50 > 0.0 && p99 >= p50, "{report}");
    for field in ["load_s", "compile_s", "instantiate_s", "images_per_s"] {
        assert!(report[field].as_f64().is_some(), "no {field} in {report}");
    }
    assert!(
        report.get("preprocess_p50_ms").is_none(),
        "no image given: {report}"
    );
}

#[test]
fn bench_wasm_times_the_guests_preprocessing_of_an_image() {
    let image = coco_jpeg();
    let report = bench_wasm(&[
        "--iterations".as_ref(),
        "1".as_ref(),
        "--image".as_ref(),
        image.as_os_str(),
    ]);
    let decode = report["decode_p50_ms"].as_f64().unwrap_or(0.0);
    let whole = report["preprocess_p50_ms"].as_f64().unwrap_or(0.0);
    // The whole preprocessing decodes too, then resizes and normalises.
    assert!(decode > 0.0 && whole > decode, "{report}");
    assert!(
        report["preprocess_p99_ms"].as_f64() >= Some(whole),
        "{report}"
    );
}

#[test]
fn bench_wasm_without_its_program_says_how_to_build_it() {
    let out = vitrine()
        .args(["bench-wasm", "--model"])
        .arg(tiny_repo().join("1"))
        .args(["--program", "/nonexistent/vitrine-bench-wasm.wasm"])
        .output()
        .expect("run vitrine bench-wasm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bench-wasm ran without a program");
    assert!(
        stderr.contains("cargo build --release --target wasm32-wasip2 -p vitrine-bench-wasm"),
        "{stderr}"
    );
}
