"""Applies the reliability changes to a worktree in the House (host) layout."""
import shutil, sys, os
root = sys.argv[1]
src = os.path.join(root, "host/src")
stage = os.path.dirname(os.path.abspath(__file__))

def edit(path, pairs):
    p = os.path.join(src, path)
    s = open(p).read()
    for old, new in pairs:
        assert s.count(old) == 1, (path, old, s.count(old))
        s = s.replace(old, new)
    open(p, "w").write(s)

# 1a: the cache's integrity, in its own module.
shutil.copy(f"{stage}/cwasm.rs", os.path.join(src, "runtime/cwasm.rs"))
edit("runtime/mod.rs", [("pub mod engine;", "pub mod cwasm;\npub mod engine;")])
edit("runtime/engine.rs", [
    ("""    let path = cache_path(engine, wasm, cache);
    if path.is_file() {
        // SAFETY: the file was written by `precompile_component` for an engine
        // with the same compatibility hash (part of its name), and the cache
        // folder is ours.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                tracing::debug!("loaded compiled component from {}", path.display());
                return Ok(component);
            }
            Err(e) => tracing::warn!(
                "ignoring unusable compiled component {}: {e:#}",
                path.display()
            ),
        }
    }
""", """    let path = cache_path(engine, wasm, cache);
    match cwasm::read_verified(&path) {
        Cached::Verified => {
            // SAFETY: the file was written by `precompile_component` for an
            // engine with the same compatibility hash (part of its name), and
            // its bytes match the checksum written beside them.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    tracing::debug!("loaded compiled component from {}", path.display());
                    return Ok(component);
                }
                Err(e) => tracing::warn!(
                    "ignoring unusable compiled component {}: {e:#}",
                    path.display()
                ),
            }
        }
        Cached::Unusable(why) => tracing::warn!(
            "not using the compiled component {}: {why}; compiling it again",
            path.display()
        ),
        Cached::Missing => {}
    }
"""),
    ("""    if let Err(e) = write_atomically(&path, &compiled) {
        tracing::warn!(
            "cannot cache the compiled component at {}: {e:#}",
            path.display()
        );
    }""", """    if let Err(e) = cwasm::write_verified(&path, &compiled) {
        tracing::warn!(
            "cannot cache the compiled component at {}: {e:#}; serving anyway, but every start compiles it again: free space there or point --cache_dir at a writable folder",
            path.display()
        );
    }"""),
    ("use crate::config::cli::CompileArgs;", "use crate::config::cli::CompileArgs;\nuse crate::runtime::cwasm::{self, Cached};"),
])
# write_atomically moved to cwasm.rs.
p = os.path.join(src, "runtime/engine.rs")
s = open(p).read()
a = s.index("fn write_atomically(")
b = s.index("pub fn compile_command")
s = s[:a] + s[b:]
open(p, "w").write(s)

# 1c: a served version whose folder is deleted keeps serving.
edit("models/registry.rs", [
    ("""struct ModelEntry {
    versions: BTreeMap<u64, VersionState>,
    labels: BTreeMap<String, u64>,
}""", """struct ModelEntry {
    versions: BTreeMap<u64, VersionState>,
    labels: BTreeMap<String, u64>,
    /// What the status says of a version that is not failed, e.g. that its
    /// folder was deleted while it serves.
    notes: BTreeMap<u64, String>,
}"""),
    ("""        if let Some(m) = self.write().get_mut(model) {
            m.versions.remove(&version);
        }""", """        if let Some(m) = self.write().get_mut(model) {
            m.versions.remove(&version);
            m.notes.remove(&version);
        }"""),
    ("""    pub fn state(&self, model: &str, version: u64) -> Option<VersionState> {""",
     """    /// Sets or clears the note the status shows for a version; true if it
    /// changed.
    pub fn set_note(&self, model: &str, version: u64, note: Option<String>) -> bool {
        let mut models = self.write();
        let Some(m) = models.get_mut(model) else {
            return false;
        };
        match note {
            Some(note) => m.notes.insert(version, note.clone()).as_ref() != Some(&note),
            None => m.notes.remove(&version).is_some(),
        }
    }

    pub fn state(&self, model: &str, version: u64) -> Option<VersionState> {"""),
    ("""                error: match s {
                    VersionState::End(Some(e)) => Some(e.clone()),
                    _ => None,
                },""", """                error: match s {
                    VersionState::End(Some(e)) => Some(e.clone()),
                    _ => entry.notes.get(v).cloned(),
                },"""),
])
edit("models/lifecycle/mod.rs", [
    ("""        let wanted = t.config.policy.select(&candidates);
""", """        let mut wanted = t.config.policy.select(&candidates);
        let gone = self.note_deleted_folders(name, t, &states);
        // A served version whose folder was deleted keeps serving from
        // memory until the policy has a version on disk to serve instead:
        // deleting files never takes a model dark.
        if wanted.is_empty() {
            wanted = gone;
        }
"""),
    ("""    async fn load(
        self: Arc<Self>,""", """    /// The AVAILABLE versions whose folder is gone, newest first; says so in
    /// their status and the log when that changes.
    fn note_deleted_folders(
        &self,
        name: &str,
        t: &Tracked,
        states: &BTreeMap<u64, VersionState>,
    ) -> Vec<u64> {
        let mut gone = Vec::new();
        for (&v, s) in states.iter().rev() {
            if !matches!(s, VersionState::Available(_)) {
                continue;
            }
            let folder = t.config.base_path.join(v.to_string());
            if t.seen.contains_key(&v) {
                if self.registry.set_note(name, v, None) {
                    tracing::info!("model {name} version {v}: its folder is back");
                }
                continue;
            }
            gone.push(v);
            let note = format!(
                "its folder {} was removed from disk while it served; it serves from memory and cannot be reloaded: publish a new version",
                folder.display()
            );
            if self.registry.set_note(name, v, Some(note)) {
                tracing::warn!(
                    "model {name} version {v}: its folder {} was removed from disk; serving it from memory until another version can replace it",
                    folder.display()
                );
            }
        }
        gone
    }

    async fn load(
        self: Arc<Self>,"""),
])

# 2: gRPC read deadlines below HTTP/2.
shutil.copy(f"{stage}/deadlines.rs", os.path.join(src, "frontends/grpc/deadlines.rs"))
edit("frontends/grpc/mod.rs", [
    ("//! - [`models`]: `ModelService`.", "//! - [`models`]: `ModelService`.\n//! - [`deadlines`]: the preface and every frame must arrive in time."),
    ("mod convert;\n", "mod convert;\nmod deadlines;\n"),
    ("""    pub call_timeout: Option<Duration>,
}""", """    pub call_timeout: Option<Duration>,
    /// `--grpc_read_timeout_in_ms`: time to send the HTTP/2 preface after
    /// connecting, and each frame once its first byte is in.
    pub read_timeout: Option<Duration>,
}"""),
    ("""            tonic::transport::server::TcpIncoming::from(listener),""",
     """            deadlines::incoming(listener, options.read_timeout),"""),
])
edit("server.rs", [
    ("""        call_timeout: limits::grpc_call_timeout(&args),""",
     """        call_timeout: limits::grpc_call_timeout(&args),
        read_timeout: limits::timeout(args.grpc_read_timeout_in_ms),"""),
])
edit("config/cli.rs", [
    ("""    #[arg(long = "rest_api_body_read_timeout_in_ms", default_value_t = 30_000)]
    pub rest_api_body_read_timeout_in_ms: u64,""", """    #[arg(long = "rest_api_body_read_timeout_in_ms", default_value_t = 30_000)]
    pub rest_api_body_read_timeout_in_ms: u64,
    /// Time a gRPC client has to send the HTTP/2 connection preface after
    /// connecting, and to finish each frame once its first byte is in, in
    /// ms; past it the connection is closed. A connection idle between
    /// frames is kept (keep-alive pings cover it). 0: no limit.
    #[arg(long = "grpc_read_timeout_in_ms", default_value_t = 10_000)]
    pub grpc_read_timeout_in_ms: u64,"""),
])
edit("config/limits.rs", [
    ("""        "grpc_call_timeout_in_ms": grpc_call_timeout(args).map(|d| d.as_millis() as u64),""",
     """        "grpc_call_timeout_in_ms": grpc_call_timeout(args).map(|d| d.as_millis() as u64),
        "grpc_read_timeout_in_ms": args.grpc_read_timeout_in_ms,"""),
])
p = os.path.join(root, "host/Cargo.toml")
s = open(p).read()
assert s.count('tonic-health = "0.14"\n') == 1
s = s.replace('tonic-health = "0.14"\n', 'tonic-health = "0.14"\ntokio-stream = { version = "0.1", features = ["net"] }\n')
open(p, "w").write(s)
print("applied")

# 3: trim malloc's arenas after each unload.
shutil.copy(f"{stage}/memory.rs", os.path.join(src, "runtime/memory.rs"))
edit("runtime/mod.rs", [("pub mod engine;", "pub mod engine;\npub mod memory;")])
edit("models/lifecycle/mod.rs", [
    ("""                "model {name} version {version} unloaded: its last request finished {:.1} s after it left routing, and its instances and their memory are freed",
                started.elapsed().as_secs_f64()
            );
""", """                "model {name} version {version} unloaded: its last request finished {:.1} s after it left routing, and its instances and their memory are freed",
                started.elapsed().as_secs_f64()
            );
            // Freed is not returned: see `runtime::memory`.
            let _ = tokio::task::spawn_blocking(crate::runtime::memory::release_freed_memory).await;
"""),
])
p = os.path.join(root, "host/Cargo.toml")
s = open(p).read()
s = s.replace('tokio-stream = { version = "0.1", features = ["net"] }\n', 'tokio-stream = { version = "0.1", features = ["net"] }\nlibc = "0.2"\n')
open(p, "w").write(s)
print("applied memory")
