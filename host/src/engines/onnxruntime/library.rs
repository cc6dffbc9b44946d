//! Finding and loading `libonnxruntime.so`: the places searched, in order,
//! and the one environment per process every session is built on.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The name dlopen looks for in the standard library directories.
const LIBRARY_NAME: &str = "libonnxruntime.so";

/// The onnxruntime library this process loaded, and the environment every
/// session is built on.
pub struct Runtime {
    /// The file that loaded, as it was found.
    pub library: PathBuf,
    /// Where it was found (which rule of [`candidates`] matched).
    pub found_by: &'static str,
    pub(super) environment: ort::environment::Environment,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "onnxruntime from {} ({})",
            self.library.display(),
            self.found_by
        )
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

/// No onnxruntime library loaded: every place tried and why it failed.
#[derive(Debug)]
pub struct NotLoaded {
    pub tried: Vec<(String, String)>,
}

impl fmt::Display for NotLoaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "cannot load the onnxruntime library; tried:")?;
        for (place, why) in &self.tried {
            writeln!(f, "  - {place}: {why}")?;
        }
        write!(
            f,
            "install it with `pip install onnxruntime` (1.31 or later) into the python3 on PATH, \
             or pass --onnxruntime_library=/path/to/libonnxruntime.so"
        )
    }
}

impl std::error::Error for NotLoaded {}

impl NotLoaded {
    /// The places tried and why each failed, on one line.
    pub fn summary(&self) -> String {
        self.tried
            .iter()
            .map(|(place, why)| format!("{place}: {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One place the library may be.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub rule: &'static str,
    /// The file to load, or why this rule has none to offer.
    pub path: Result<PathBuf, String>,
}

impl Candidate {
    fn new(rule: &'static str, path: PathBuf) -> Candidate {
        Candidate {
            rule,
            path: Ok(path),
        }
    }
}

/// Where to look, in order; the first that loads wins. An explicit
/// `--onnxruntime_library` is the only candidate: a path the user named is
/// never silently replaced by another.
pub fn candidates(explicit: Option<&Path>) -> Vec<Candidate> {
    if let Some(path) = explicit {
        return vec![Candidate::new("--onnxruntime_library", path.to_path_buf())];
    }
    let mut out = Vec::new();
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push(Candidate::new("ORT_DYLIB_PATH", path.into()));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        out.extend(libraries_in(&dir, "next to the vitrine binary"));
    }
    // A bare name: dlopen searches LD_LIBRARY_PATH, the ld.so cache, /lib and /usr/lib.
    out.push(Candidate::new(
        "the standard library directories",
        PathBuf::from(LIBRARY_NAME),
    ));
    const PYTHON: &str = "the onnxruntime package of python3";
    match python_package_dir() {
        Ok(dir) => out.extend(libraries_in(&dir.join("capi"), PYTHON)),
        Err(why) => out.push(Candidate {
            rule: PYTHON,
            path: Err(why),
        }),
    }
    out
}

/// `libonnxruntime.so*` in `dir` (not the providers' libraries), the exact
/// name first; the exact name alone when there is none, for the error.
pub(super) fn libraries_in(dir: &Path, rule: &'static str) -> Vec<Candidate> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == LIBRARY_NAME || n.starts_with("libonnxruntime.so."))
        })
        .collect();
    found.sort_by_key(|p| (p.file_name().map(|n| n != LIBRARY_NAME), p.clone()));
    if found.is_empty() {
        found.push(dir.join(LIBRARY_NAME));
    }
    found
        .into_iter()
        .map(|path| Candidate::new(rule, path))
        .collect()
}

/// The folder of the `onnxruntime` package of the `python3` on PATH, found
/// without importing it (an import takes most of a second).
fn python_package_dir() -> Result<PathBuf, String> {
    let script = "import importlib.util as u\n\
                  s = u.find_spec('onnxruntime')\n\
                  print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')";
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .map_err(|e| format!("no python3 on PATH ({e})"))?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || dir.is_empty() {
        return Err("python3 on PATH has no onnxruntime package".into());
    }
    Ok(PathBuf::from(dir))
}

/// Loads the library once per process, from the first candidate that
/// loads; later calls return the same runtime (the `ort` crate binds one
/// library per process).
pub fn runtime(explicit: Option<&Path>) -> Result<&'static Runtime, NotLoaded> {
    let _once = LOADING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(runtime) = RUNTIME.get() {
        return match explicit {
            Some(path) if path != runtime.library => Err(NotLoaded {
                tried: vec![(
                    format!("{} (--onnxruntime_library)", path.display()),
                    format!(
                        "this process already loaded {}, and a process can load only one",
                        runtime.library.display()
                    ),
                )],
            }),
            _ => Ok(runtime),
        };
    }
    let mut tried = Vec::new();
    for candidate in candidates(explicit) {
        let path = match candidate.path {
            Ok(path) => path,
            Err(why) => {
                tried.push((candidate.rule.to_string(), why));
                continue;
            }
        };
        let place = format!("{} ({})", path.display(), candidate.rule);
        let loaded = ort::init_from(&path)
            .map_err(|e| match &e {
                // ort's error drops dlopen's reason; libloading's keeps it as its cause.
                ort::LoadDynamicError::Dlopen { error, .. } => with_causes(error),
                _ => e.to_string(),
            })
            .and_then(|builder| {
                builder
                    .with_name("vitrine")
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| {
                        format!("the library loaded but its environment did not start: {e}")
                    })
            });
        match loaded {
            Ok(environment) => {
                let runtime = Runtime {
                    library: path,
                    found_by: candidate.rule,
                    environment,
                };
                return Ok(RUNTIME.get_or_init(|| runtime));
            }
            Err(why) => tried.push((place, why)),
        }
    }
    Err(NotLoaded { tried })
}

/// An error and its causes on one line: dlopen's own reason is a cause.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
