//! Choosing the host's native engine (`--native_engine`,
//! `--onnxruntime_library`): what is asked for is what serves, an explicit
//! onnxruntime that cannot load stops the server at start naming the paths
//! it tried, and `auto` without a library serves on tract and says how to get
//! onnxruntime.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::*;

/// Runs `cmd` to its exit, at most `limit`; a server that starts serving
/// instead of exiting fails the test rather than hanging it.
fn run_to_exit(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vitrine");
    let pid = child.id();
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit.saturating_sub(started.elapsed())) {
        Ok(out) => out.expect("wait for vitrine"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("vitrine did not exit within {limit:?}");
        }
    }
}

/// The served version's engine, from its metadata and from `/vitrine/stats`.
fn engine_of(server: &Server) -> (String, String) {
    let (_, metadata) = server.get(&format!("/v1/models/{}/metadata", server.model));
    let (_, stats) = server.get("/vitrine/stats");
    let name = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    (
        name(&metadata["vitrine"]["engine"]),
        name(&stats["models"][&server.model][0]["engine"]),
    )
}

#[test]
fn an_onnxruntime_library_that_does_not_load_stops_the_server_naming_it() {
    let mut cmd = vitrine();
    cmd.arg("serve")
        .args(model_args("hf-vit", &tiny_repo(), &[]))
        .args([
            "--rest_api_host=127.0.0.1",
            "--rest_api_port=0",
            "--port=0",
            "--native_engine=onnxruntime",
            "--onnxruntime_library=/nonexistent/libonnxruntime.so",
        ]);
    let out = run_to_exit(cmd, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so"),
        "the error names the path: {stderr}"
    );
    assert!(stderr.contains("pip install onnxruntime"), "{stderr}");
}

#[test]
fn auto_without_a_library_serves_on_tract_and_says_how_to_get_onnxruntime() {
    let args = model_args("hf-vit", &tiny_repo(), &["--native_engine=auto"]);
    // No ORT_DYLIB_PATH, and no python3 on PATH to ask for its package.
    let mut server = Server::spawn_with("hf-vit", &args, |cmd| {
        cmd.env_remove("ORT_DYLIB_PATH").env("PATH", "/nonexistent");
    });
    server.wait_available();
    assert_eq!(
        engine_of(&server),
        ("tract".to_string(), "tract".to_string())
    );
    let (status, reply) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "{reply}");
    let log = server.log();
    let hints = log.matches("pip install onnxruntime").count();
    assert_eq!(hints, 1, "one line says how to get onnxruntime:\n{log}");
}

#[test]
fn auto_with_a_library_serves_on_onnxruntime_and_tract_when_asked() {
    // `vitrine()` passes the .venv's library in ORT_DYLIB_PATH.
    let server = Server::start("hf-vit", &tiny_repo(), &[]);
    assert_eq!(
        engine_of(&server),
        ("onnxruntime".to_string(), "onnxruntime".to_string())
    );
    let log = server.log();
    assert!(
        log.contains("onnxruntime") && log.contains(&onnxruntime_library().display().to_string()),
        "the startup log names the engine and its library:\n{log}"
    );
    drop(server);
    let server = Server::start("hf-vit", &tiny_repo(), &["--native_engine=tract"]);
    assert_eq!(
        engine_of(&server),
        ("tract".to_string(), "tract".to_string())
    );
}
