//! A bad day on disk: a corrupt or truncated compiled component in the
//! cache, a cache folder that is full or cannot be written, the served
//! version's folder deleted while it serves, and `kill -9` in the middle of
//! a swap. None of them may lose the model, and none may run bad code.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::lifecycle::{copy_dir, post, publish, serve_args, states, wait_until};
use crate::support::*;

/// `vitrine compile` with `cache` as the cache folder: its stderr, and the
/// `.cwasm` path it prints.
fn compile_into(cache: &Path) -> (String, PathBuf) {
    let output = vitrine()
        .env("VITRINE_CACHE_DIR", cache)
        .arg("compile")
        .output()
        .expect("run vitrine compile");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "vitrine compile failed:\n{stderr}");
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (stderr, PathBuf::from(path))
}

/// The checksum file the server writes beside a `.cwasm`.
fn checksum_file(cwasm: &Path) -> PathBuf {
    cwasm.with_extension("cwasm.crc32c")
}

/// The `.cwasm` matches the checksum beside it.
fn verifies(cwasm: &Path) -> bool {
    let bytes = std::fs::read(cwasm).expect("read .cwasm");
    let line = std::fs::read_to_string(checksum_file(cwasm)).unwrap_or_default();
    line.trim() == format!("crc32c {:08x} len {}", crc32c::crc32c(&bytes), bytes.len())
}

#[test]
fn a_corrupt_or_truncated_compiled_component_is_recompiled_not_run() {
    // The shared cache's copy (compiled once per test run), into a cache
    // folder of this test's own.
    precompile();
    let (_, shared) = compile_into(&cache_dir());
    assert!(
        verifies(&shared),
        "{} has no valid checksum",
        shared.display()
    );
    let dir = fresh_dir("corrupt-cache");
    let cache = dir.path().join("cache");
    let cwasm = cache
        .join("components")
        .join(shared.file_name().expect("name"));
    std::fs::create_dir_all(cwasm.parent().expect("parent")).expect("mkdir");
    std::fs::copy(&shared, &cwasm).expect("copy .cwasm");
    std::fs::copy(checksum_file(&shared), checksum_file(&cwasm)).expect("copy checksum");

    // One flipped byte in the middle: still a well-formed ELF file that
    // wasmtime would load and run; only the checksum tells.
    let mut bytes = std::fs::read(&cwasm).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&cwasm, &bytes).expect("write");
    let server = Server::start(
        "hf-vit",
        &tiny_repo(),
        &[
            "--inference=guest",
            &format!("--cache_dir={}", cache.display()),
        ],
    );
    let log = server.log();
    assert!(
        log.contains("does not match its checksum") && log.contains("compiling the component"),
        "the corrupt .cwasm was not detected and recompiled:\n{log}"
    );
    let (status, reply) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "{reply}");
    assert!(verifies(&cwasm), "the cache holds a good copy again");
    drop(server);

    // Cut in half, as a crash or a full disk leaves a file copied by hand.
    let bytes = std::fs::read(&cwasm).expect("read");
    std::fs::write(&cwasm, &bytes[..bytes.len() / 2]).expect("truncate");
    let (stderr, path) = compile_into(&cache);
    assert_eq!(path, cwasm);
    assert!(
        stderr.contains("does not match its checksum") && stderr.contains("compiling"),
        "the truncated .cwasm was not detected:\n{stderr}"
    );
    assert!(verifies(&cwasm));
    // A .cwasm without its checksum (an older vitrine's, or a crash between
    // the two writes) is not trusted either.
    std::fs::remove_file(checksum_file(&cwasm)).expect("remove checksum");
    let (stderr, _) = compile_into(&cache);
    assert!(stderr.contains("has no checksum"), "{stderr}");
    assert!(verifies(&cwasm));
}

/// A cache folder that refuses writes: the server compiles in memory,
/// warns, and serves. Leaves no temporary file behind.
fn serves_with_unwritable_cache(cache: &Path, what: &str) {
    let server = Server::start(
        "hf-vit",
        &tiny_repo(),
        &[
            "--inference=guest",
            &format!("--cache_dir={}", cache.display()),
        ],
    );
    let (status, reply) = server.predict(&blog_request(&coco_jpeg()));
    assert_eq!(status, 200, "{what}: {reply}");
    let log = server.log();
    assert!(
        log.contains("cannot cache the compiled component") && log.contains("--cache_dir"),
        "{what}: no warning naming the flag:\n{log}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(cache.join("components"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{what}: left {leftovers:?}");
}

#[test]
fn a_cache_folder_that_cannot_be_written_still_serves_with_a_warning() {
    // Root ignores permission bits, so "cannot be written" is a cache path
    // below a regular file: every create fails, as on a read-only volume.
    let dir = fresh_dir("unwritable-cache");
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"").expect("write");
    serves_with_unwritable_cache(&file.join("cache"), "a cache below a file");
}

#[test]
fn a_full_cache_folder_still_serves_with_a_warning() {
    // A 1 MiB tmpfs: the compiled component (tens of MB) does not fit.
    let dir = fresh_dir("full-cache");
    let mount = dir.path().join("small");
    std::fs::create_dir_all(&mount).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "SKIPPED: cannot mount a small tmpfs here (needs root and mount rights); the read-only case is covered by a_cache_folder_that_cannot_be_written_still_serves_with_a_warning"
        );
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    serves_with_unwritable_cache(&mount.join("cache"), "a full cache");
}

#[test]
fn the_served_version_keeps_serving_from_memory_when_its_folder_is_deleted() {
    let repo_dir = fresh_dir("deleted-version");
    let repo = repo_dir.path();
    publish(&tiny_version(0), &repo.join("1"));
    let mut server = Server::spawn("m", &serve_args(repo, &[]));
    server.wait_ready();
    let body = blog_request(&coco_jpeg()).to_string();
    let url = server.url("/v1/models/m:predict");
    std::fs::remove_dir_all(repo.join("1")).expect("remove the served version");
    wait_until(&server, "the status says the folder is gone", || {
        states(&server, "m")
            .get(&1)
            .is_some_and(|(s, e)| s == "AVAILABLE" && e.contains("removed from disk"))
    });
    // Several looks later, it still serves.
    std::thread::sleep(std::time::Duration::from_secs(3));
    for _ in 0..3 {
        let seen = post(&url, &body);
        assert_eq!((seen.status, seen.version), (200, Some(1)), "{}", seen.body);
    }
    assert_eq!(server.get("/readyz").0, 200);
    assert!(
        server.log().contains("serving it from memory"),
        "{}",
        server.log()
    );

    // A new version replaces it as usual, and the gone one leaves the status.
    publish(&tiny_version(1), &repo.join("2"));
    wait_until(&server, "version 2 serves and version 1 is gone", || {
        let s = states(&server, "m");
        s.get(&2).is_some_and(|(s, _)| s == "AVAILABLE") && !s.contains_key(&1)
    });
    assert_eq!(post(&url, &body).version, Some(2));

    // With an older version on disk, deleting the served one rolls back to
    // it, as in TF Serving.
    publish(&tiny_version(0), &repo.join("3"));
    wait_until(&server, "version 3 serves", || {
        let s = states(&server, "m");
        s.get(&3).is_some_and(|(s, _)| s == "AVAILABLE")
            && s.get(&2).is_none_or(|(s, _)| s == "END")
    });
    std::fs::remove_dir_all(repo.join("3")).expect("remove version 3");
    wait_until(&server, "version 2 serves again and 3 is gone", || {
        let s = states(&server, "m");
        s.get(&2).is_some_and(|(s, _)| s == "AVAILABLE") && !s.contains_key(&3)
    });
    assert_eq!(post(&url, &body).version, Some(2));
}

#[test]
fn after_kill_9_during_a_swap_the_highest_complete_version_serves() {
    let repo_dir = fresh_dir("kill-9");
    let repo = repo_dir.path();
    publish(&tiny_version(0), &repo.join("1"));
    let mut server = Server::spawn("m", &serve_args(repo, &[]));
    server.wait_ready();
    // Version 2 arrives complete; the server is killed while it swaps.
    publish(&tiny_version(1), &repo.join("2"));
    let mut seen = None;
    wait_until(&server, "version 2 is found", || {
        seen = states(&server, "m").get(&2).map(|(s, _)| s.clone());
        seen.is_some()
    });
    drop(server); // SIGKILL: no drain, no cleanup.
    eprintln!("killed with version 2 {seen:?}");

    // What a publisher killed at the same moment leaves behind: a hidden
    // half copy, and a numbered folder whose model never arrived.
    let model = std::fs::read(tiny_version(2).join("model.onnx")).expect("model");
    let hidden = repo.join(".incoming-3");
    copy_dir(&tiny_version(2), &hidden);
    std::fs::write(hidden.join("model.onnx"), &model[..model.len() / 3]).expect("write");
    let partial = repo.join("4");
    copy_dir(&tiny_version(2), &partial);
    std::fs::remove_file(partial.join("model.onnx")).expect("remove");

    let mut server = Server::spawn("m", &serve_args(repo, &[]));
    server.wait_ready();
    let body = blog_request(&coco_jpeg()).to_string();
    let url = server.url("/v1/models/m:predict");
    wait_until(&server, "version 2 serves", || {
        post(&url, &body).version == Some(2)
    });
    // Several looks later: nothing else was loaded or tried.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let s = states(&server, "m");
    assert_eq!(
        s.keys().copied().collect::<Vec<_>>(),
        [2],
        "only version 2 is known: {s:?}"
    );
    assert_eq!(post(&url, &body).version, Some(2));
    let log = server.log();
    assert!(
        !log.contains("version 3") && !log.contains("version 4 is complete"),
        "{log}"
    );
}
